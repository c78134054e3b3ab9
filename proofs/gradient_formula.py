r"""The LAD gradient: :math:`\nabla_\theta\mathcal L = \mathbb E_{\pi_\theta}[f'(\rho
e^{-A/\eta})\nabla_\theta\log\pi_\theta]`.

Statement. For a differentiable generator :math:`f`, a policy :math:`\pi_\theta(y) > 0` differentiable in
:math:`\theta`, and :math:`\rho(y) = \pi_\theta(y)/\pi_{\mathrm{old}}(y)`,

.. math:: \nabla_\theta \sum_y \pi_{\mathrm{old}}(y)e^{A(y)/\eta} f\!\big(\rho(y)e^{-A(y)/\eta}\big)
          = \sum_y \pi_\theta(y)\, f'\!\big(\rho(y)e^{-A(y)/\eta}\big)\,\nabla_\theta\log\pi_\theta(y)
          = \mathbb E_{y\sim\pi_\theta}\big[f'(\rho e^{-A/\eta})\,\nabla_\theta\log\pi_\theta(y)\big].

Per sample, in the log-probability :math:`s = \log\pi_\theta(y)` that ``lad_loss`` differentiates:
:math:`\partial_s\, e^{A/\eta}f(e^{s - s_{\mathrm{old}} - A/\eta}) = \rho\, f'(\rho e^{-A/\eta}) =
-w(A,\rho)`,
the negative effective weight of ``ladtheory.objective.effective_weight``.

Assumptions: :math:`f` differentiable on :math:`(0,\infty)` (TV: away from :math:`u = 1`, where the
subgradient convention :math:`f'(1) = 0` is used); a finite response set (so differentiation passes
through the sum); :math:`\theta` a scalar coordinate of the parameters (the gradient is the vector of these).

The numeric parts check the *training* code, ``ladtheory.objective.lad_loss``, by autograd against this
formula evaluated with the sympy derivative of each built-in generator, at ``level="sequence"`` and
``level="token"``.
"""

from __future__ import annotations

import numpy as np
import sympy as sp
import torch

from ladtheory import divergences, objective
from ladtheory.proof import Derivation, NumericCheck, Result

n = sp.Symbol("n", integer=True, positive=True)
y = sp.Symbol("y", integer=True)
A = sp.IndexedBase("A", real=True)
q = sp.IndexedBase("pi_old", positive=True)
eta = sp.Symbol("eta", positive=True)
theta = sp.Symbol("theta", real=True)
P = sp.Function(r"pi_theta", positive=True)
f = sp.Function("f")
x = sp.Symbol("x", positive=True)


def f_prime(arg: sp.Expr) -> sp.Expr:
    """``f'(arg)`` as sympy writes it (a derivative evaluated at ``arg``)."""
    return sp.diff(f(x), x).subs(x, arg)


U_Y = P(theta, y) * sp.exp(-A[y] / eta) / q[y]  # u = rho e^{-A/eta}


LOSS = sp.Sum(q[y] * sp.exp(A[y] / eta) * f(U_Y), (y, 1, n))
GRADIENT = sp.Sum(P(theta, y) * f_prime(U_Y) * sp.Derivative(sp.log(P(theta, y)), theta), (y, 1, n))
S_LOG, S_OLD = sp.symbols("s s_old", real=True)
A_ETA = sp.Symbol("a", real=True)  # a = A / eta
PER_SAMPLE = sp.exp(A_ETA) * f(sp.exp(S_LOG - S_OLD - A_ETA))
PER_SAMPLE_SLOPE = sp.exp(S_LOG - S_OLD) * f_prime(sp.exp(S_LOG - S_OLD - A_ETA))


def gradient() -> Derivation:
    d = Derivation(
        "gradient of the exact loss", r"$\partial_\theta$ of the practical loss",
        LOSS,
        claim=sp.Eq(sp.Derivative(LOSS, theta), GRADIENT),
        assumptions=[r"$f$ differentiable; $\pi_\theta(y) > 0$ differentiable in $\theta$; finite sum"],
    )
    d.step(sp.Sum(f_prime(U_Y) * sp.Derivative(P(theta, y), theta), (y, 1, n)), "diff",
           r"chain rule; $\pi_{old}e^{A/\eta}$ cancels $e^{-A/\eta}/\pi_{old}$", var=theta)
    d.step(
        GRADIENT,
        "algebra",
        r"$\partial_\theta\pi = \pi\,\partial_\theta\log\pi$: "
        r"this is $\mathbb E_{\pi_\theta}[f'(u)\nabla\log\pi_\theta]$",
    )
    return d


def per_sample() -> Derivation:
    d = Derivation(
        "per-sample weight",
        r"the derivative ``lad_loss`` sees: $\partial \ell/\partial \log\pi_\theta = \rho f'(u)$",
        PER_SAMPLE,
        claim=sp.Eq(sp.Derivative(PER_SAMPLE, S_LOG), PER_SAMPLE_SLOPE),
        assumptions=[r"$s = \log\pi_\theta$, $a = A/\eta$; $\rho f'(u) = -w(A,\rho)$"],
    )
    d.step(PER_SAMPLE_SLOPE, "diff", r"chain rule: $\rho = e^{s - s_{old}}$", var=S_LOG)
    return d


def _sympy_weight(name: str):
    """``(log_rho, a) -> rho f'(rho e^{-a})`` from the sympy spec (independent of the runtime's f')."""
    fp = sp.lambdify(divergences.U, divergences.get(name).f_prime_expr, "numpy")
    return lambda log_rho, a: np.exp(log_rho) * fp(np.exp(log_rho - a))


def _autograd_case(name: str, level: str, rng: np.random.Generator) -> float:
    B, T, eta_ = 4, 3, 0.5
    logp_old = torch.tensor(rng.normal(-1.0, 0.3, (B, T)), dtype=torch.float64)
    logp = (logp_old + torch.tensor(rng.normal(0.0, 0.2, (B, T)), dtype=torch.float64)).requires_grad_(True)
    adv = torch.tensor(rng.normal(0.0, 1.0, B), dtype=torch.float64)
    mask = torch.ones(B, T, dtype=torch.float64)
    mask[1, 2] = 0.0
    mask[3, 1:] = 0.0
    loss, _ = objective.lad_loss(logp, logp_old, adv, mask, divergence=name, eta=eta_, level=level)
    (grad,) = torch.autograd.grad(loss, logp)
    weight = _sympy_weight(name)
    diff = ((logp - logp_old) * mask).detach().numpy()
    a = (adv / eta_).numpy()
    m = mask.numpy()
    if level == "sequence":
        expected = weight(diff.sum(1), a)[:, None] / B * m
    else:  # token: per-token ratio, global token mean
        expected = weight(diff, a[:, None]) / m.sum() * m
    return float(np.abs(grad.numpy() - expected).max() / max(1.0, np.abs(expected).max()))


def _check_lad_loss_autograd() -> tuple[float, str]:
    rng = np.random.default_rng(5)
    worst, names = 0.0, []
    for name in divergences.BUILTIN_NAMES:
        for level in ("sequence", "token"):
            worst = max(worst, _autograd_case(name, level, rng))
        names.append(name)
    return worst, f"autograd of lad_loss vs rho f'(u) from sympy, levels sequence/token, {', '.join(names)}"


def _check_effective_weight() -> tuple[float, str]:
    rng = np.random.default_rng(6)
    worst = 0.0
    for name in divergences.BUILTIN_NAMES:
        A_ = rng.normal(0.0, 1.5, 50)
        log_rho = rng.normal(0.0, 0.5, 50)
        w = objective.effective_weight(A_, log_rho, name, 0.7)
        ref = -_sympy_weight(name)(log_rho, A_ / 0.7)
        worst = max(worst, float(np.abs(w - ref).max() / max(1.0, np.abs(ref).max())))
    return worst, "effective_weight vs -rho f'(rho e^{-A/eta}) from the sympy spec, every built-in"


def result() -> Result:
    return Result(
        name="gradient_formula",
        title="The LAD gradient formula",
        claims=[sp.Eq(sp.Derivative(LOSS, theta), GRADIENT),
                sp.Eq(sp.Derivative(PER_SAMPLE, S_LOG), PER_SAMPLE_SLOPE)],
        assumptions=(r"$f$ differentiable on $(0,\infty)$ (TV: away from $u = 1$)",
                     r"$\pi_\theta(y) > 0$ differentiable in $\theta$", "finite response set"),
        parts=[
            gradient(), per_sample(),
            NumericCheck("lad_loss autograd", "the training loss's autograd gradient matches the formula",
                         r"\max|\partial L/\partial\log\pi_t - \rho f'(u)/N| \le 10^{-10}",
                         _check_lad_loss_autograd, 1e-10),
            NumericCheck("effective_weight", "effective_weight is -rho f'(u) of the sympy spec",
                         r"\max|w - (-\rho f'(u))| \le 10^{-10}", _check_effective_weight, 1e-10),
        ],
    )
