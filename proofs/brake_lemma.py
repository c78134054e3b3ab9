r"""The brake lemma: a per-sample LAD descent step raises log pi exactly while rho < e^{A/eta}.

Statement. Let :math:`f:(0,\infty)\to\mathbb R` be convex and differentiable, :math:`a = A/\eta`,
:math:`s = \log\pi_\theta(y)`, :math:`\rho = \pi_\theta(y)/\pi_{\mathrm{old}}(y)` and
:math:`u = \rho e^{-a}`. The per-sample LAD loss :math:`\ell = e^{a} f(\rho e^{-a})` has

.. math:: \frac{\partial\ell}{\partial s} = \rho\, f'(u), \qquad
          w := -\rho f'(u) \quad\text{(the effective weight)},

so a descent step moves :math:`s` by :math:`\mathrm{lr}\cdot w` (in the coordinates :math:`s`) and, for
parameters :math:`\theta`, by :math:`\mathrm{lr}\cdot w\,\|\nabla_\theta s\|^2 + O(\mathrm{lr}^2)`.
If moreover :math:`f'(1) = 0` and :math:`f` is *strictly convex at 1*, i.e.
:math:`f(u) > f(1) + f'(1)(u - 1)` for every :math:`u \ne 1`, then

.. math:: w\,(u - 1) < 0 \quad (u \ne 1): \qquad
          w > 0 \iff \rho < e^{A/\eta},\qquad w = 0 \iff \rho = e^{A/\eta},\qquad w < 0 \iff \rho >
          e^{A/\eta}.

Cases. ``kl`` (:math:`u\log u`, :math:`f'(1) = 1`): :math:`w = -\rho(\log\rho - a + 1)`, the brake point
is :math:`\rho = e^{A/\eta - 1}`. ``rkl`` (:math:`-\log u`, :math:`f'(1) = -1`): :math:`w = e^{A/\eta} > 0`
for every :math:`\rho`: no per-sample brake. Without strict convexity at 1 the equivalence fails: a
generator that is flat on :math:`[1-\delta, 1+\delta]` (convex, :math:`f(1) = f'(1) = 0`) has :math:`w = 0`
for :math:`\rho\in[(1-\delta)e^{a}, e^{a})`, so the step does *not* raise :math:`\log\pi` there although
:math:`\rho` is below its target. A sufficient condition for strictness at 1 is :math:`f''(1) > 0`
(with :math:`f'` non-decreasing, :math:`f'(u) \le f'(1-\epsilon) < 0` for :math:`u \le 1 - \epsilon`).
TV (:math:`|u - 1|`, not differentiable at 1) is strictly convex at 1; with the subgradient convention
:math:`f'(1) = 0` its weight is :math:`\rho\,\mathrm{sign}(1 - u)`, and the equivalence holds.

Assumptions: :math:`f` convex and differentiable on :math:`(0,\infty)`, :math:`\rho > 0`; for the sign
statement :math:`f'(1) = 0` and strict convexity at 1.

Proof. Differentiate :math:`e^a f(e^{s - s_{\mathrm{old}} - a})` in :math:`s`. For the sign, write
:math:`f'(u)(u-1) = T + B` with the tangent gap at 1, :math:`T = f(u) - f(1) - f'(1)(u - 1) > 0` (strictness
at 1, :math:`f'(1) = 0`), and the tangent gap at :math:`u`, :math:`B = f(1) - f(u) - f'(u)(1 - u) \ge 0`
(convexity); then :math:`w(u-1) = -\rho(T + B) < 0`. Runtime twin: ``ladtheory.objective.effective_weight``;
tests: ``tests/theory/test_brake_lemma.py``.
"""

from __future__ import annotations

import numpy as np
import sympy as sp
import torch

from ladtheory import divergences
from ladtheory.objective import effective_weight, lad_loss
from ladtheory.proof import Derivation, Fact, NumericCheck, Result

s, s_old, a = sp.symbols("s s_old a", real=True)  # log pi_theta(y), log pi_old(y), A/eta
u, rho, lr, G2 = sp.symbols("u rho lr G2", positive=True)  # G2 = ||grad_theta log pi(y)||^2
x = sp.Symbol("x", positive=True)
T = sp.Symbol("T", positive=True)  # tangent gap at 1: > 0 by strict convexity at 1 (u != 1)
B = sp.Symbol("B", nonnegative=True)  # tangent gap at u: >= 0 by convexity
f = sp.Function("f")
fp = sp.Function("f'")
log_rho = sp.Symbol("log_rho", real=True)

T_DEF = Fact(
    "strict at 1",
    sp.Eq(T, f(u) - f(1) - fp(1) * (u - 1)),
    "hypothesis",
    r"$f(u) > f(1) + f'(1)(u-1)$ for $u \ne 1$: $T > 0$",
)
B_DEF = Fact(
    "convex",
    sp.Eq(B, f(1) - f(u) - fp(u) * (1 - u)),
    "hypothesis",
    r"the tangent at $u$ lies below $f$: $B \ge 0$",
)
SLOPE_AT_1 = Fact("f'(1) = 0", sp.Eq(fp(1), 0), "hypothesis")
W_DEF = Fact("w", sp.Eq(sp.Symbol("w"), -rho * fp(u)), "definition", "the effective weight")


def slope() -> Derivation:
    d = Derivation(
        "per-sample slope",
        r"$\partial\ell/\partial\log\pi_\theta(y) = \rho f'(u)$",
        sp.exp(a) * f(sp.exp(s - s_old - a)),
        claim=sp.Eq(sp.Derivative(sp.exp(a) * f(sp.exp(s - s_old - a)), s),
                    sp.exp(s - s_old) * sp.Subs(sp.Derivative(f(x), x), x, sp.exp(s - s_old - a))),
        assumptions=[r"$f$ differentiable"],
    )
    d.step(
        sp.exp(s - s_old) * sp.Subs(sp.Derivative(f(x), x), x, sp.exp(s - s_old - a)),
        "diff",
        r"chain rule: $\partial_s u = u$ and $e^{a}u = \rho$",
        var=s,
    )
    return d


def first_order_change() -> Derivation:
    d = Derivation(
        "first-order change of log pi",
        r"a descent step of size lr moves $\log\pi(y)$ by lr $w\|\nabla s\|^2$",
        -lr * rho * fp(u) * G2,
        claim=sp.Eq(-lr * rho * fp(u) * G2, lr * sp.Symbol("w") * G2),
        facts=[W_DEF],
        assumptions=[r"$\nabla_\theta\ell = \rho f'(u)\nabla_\theta s$ (previous derivation)"],
    )
    d.step(lr * sp.Symbol("w") * G2, "substitute", r"$w = -\rho f'(u)$", using="w")
    return d


def sign() -> Derivation:
    d = Derivation(
        "the weight has the sign of 1 - u",
        r"$w\,(u-1) = -\rho\,(T + B) < 0$ for $u\ne 1$",
        -rho * fp(u) * (u - 1),
        claim=sp.Lt(-rho * fp(u) * (u - 1), 0),
        facts=[T_DEF, B_DEF, SLOPE_AT_1],
        assumptions=[
            r"$f$ convex, differentiable",
            r"$f'(1) = 0$",
            r"$f$ strictly convex at 1",
            r"$u \ne 1$",
        ],
    )
    d.step(
        -rho * (T + B + fp(1) * (u - 1)),
        "substitute",
        "the two tangent gaps add up to $f'(u)(u-1)$",
        using=["strict at 1", "convex"],
    )
    d.step(-rho * (T + B), "substitute", r"$f'(1) = 0$", using="f'(1) = 0")
    d.step(sp.Integer(0), "negative", r"$\rho > 0$, $T > 0$, $B \ge 0$")
    return d


def kl_brake_point() -> Derivation:
    z = log_rho - a
    d = Derivation(
        "kl: the brake point moves to e^{A/eta - 1}",
        r"`kl` ($u\log u$): $w = 0 \iff \log\rho = A/\eta - 1$",
        sp.Eq(-sp.exp(log_rho) * (divergences.get("kl").f_prime_expr.subs(divergences.U, sp.exp(z))), 0),
        claim=sp.Equivalent(sp.Eq(-sp.exp(log_rho) * (z + 1), 0), sp.Eq(log_rho, a - 1)),
    )
    d.step(sp.Eq(-sp.exp(log_rho) * (z + 1), 0), "algebra", r"$f'(u) = \log u + 1$, $\log u = \log\rho - a$")
    d.step(sp.Eq(log_rho, a - 1), "solve", r"$e^{\log\rho} > 0$", var=log_rho)
    return d


def rkl_no_brake() -> Derivation:
    z = log_rho - a
    d = Derivation(
        "rkl: no brake",
        r"`rkl` ($-\log u$): $w = e^{A/\eta} > 0$ for every $\rho$",
        -sp.exp(log_rho) * divergences.get("rkl").f_prime_expr.subs(divergences.U, sp.exp(z)),
        claim=sp.Gt(-sp.exp(log_rho) * divergences.get("rkl").f_prime_expr.subs(divergences.U, sp.exp(z)), 0,
                    evaluate=False),
    )
    d.step(sp.exp(a), "algebra", r"$\rho/u = e^{a}$")
    d.step(sp.Integer(0), "positive", "an exponential")
    return d


BRAKING = ("js", "hellinger", "tv", "jeffreys", "pearson", "neyman", "triangular")
"""Built-ins with f'(1) = 0 that are strictly convex at 1 (TV through its subgradient convention)."""


def _dead_zone_f_prime(delta: float):
    """f(u) = max(0, u-1-delta)^2 + max(0, 1-delta-u)^2: convex, f(1) = f'(1) = 0, flat on [1-d, 1+d]."""
    return lambda uu: 2.0 * np.maximum(0.0, uu - 1.0 - delta) - 2.0 * np.maximum(0.0, 1.0 - delta - uu)


def _check_sign_runtime() -> tuple[float, str]:
    """Sign of the autograd descent step of lad_loss (the trained loss) against sign(e^{A/eta} - rho)."""
    rng = np.random.default_rng(1)
    log_rho_ = rng.uniform(-5.0, 5.0, 4000)
    eta = 0.25
    adv = rng.uniform(-1.0, 1.0, 4000)
    gap = log_rho_ - adv / eta
    keep = np.abs(gap) > 1e-6
    wrong = 0
    for name in BRAKING:
        logp = torch.tensor(log_rho_[:, None], dtype=torch.float64, requires_grad=True)
        loss, _ = lad_loss(
            logp,
            torch.zeros_like(logp),
            torch.tensor(adv),
            torch.ones_like(logp, dtype=torch.bool),
            divergence=name,
            eta=eta,
            level="sequence",
        )
        (grad,) = torch.autograd.grad(loss, logp)
        step = -grad.numpy()[:, 0]
        wrong += int(np.sum(np.sign(step[keep]) != np.sign(-gap[keep])))
    return float(wrong), f"{len(BRAKING)} generators x {int(keep.sum())} samples: {wrong} wrong signs"


def _check_kl_rkl() -> tuple[float, str]:
    rng = np.random.default_rng(2)
    log_rho_, A_ = rng.uniform(-4, 4, 500), rng.uniform(-1, 1, 500)
    eta = 0.5
    w_kl = effective_weight(A_, log_rho_, "kl", eta)
    err_kl = float(np.max(np.abs(w_kl + np.exp(log_rho_) * (log_rho_ - A_ / eta + 1.0))))
    err_rkl = float(np.max(np.abs(effective_weight(A_, log_rho_, "rkl", eta) / np.exp(A_ / eta) - 1.0)))
    at_shifted = float(abs(effective_weight(0.3, 0.3 / eta - 1.0, "kl", eta)))
    return max(err_kl, err_rkl, at_shifted), (
        f"kl closed form {err_kl:.1e}, rkl w/e^(A/eta) - 1 {err_rkl:.1e}, "
        f"kl weight at log rho = A/eta - 1: {at_shifted:.1e}"
    )


def _check_dead_zone() -> tuple[float, str]:
    """Without strict convexity at 1 the weight is 0 below the target (the JS control is not)."""
    delta, a_ = 0.3, 2.0
    below = np.log(np.linspace(0.75, 0.99, 25)) + a_  # log rho with u in [0.75, 0.99]: inside the flat zone
    u_ = np.exp(below - a_)
    w_dead = -np.exp(below) * _dead_zone_f_prime(delta)(u_)
    w_js = effective_weight(a_ * 0.25, below, "js", 0.25)
    if not np.all(w_js > 0):
        return float("inf"), "control failed: JS weight is not positive below the target"
    return float(np.abs(w_dead).max()), (
        f"dead zone delta={delta}: max |w| below target {np.abs(w_dead).max():.1e}; "
        f"JS control min w {w_js.min():.3f} > 0"
    )


def result() -> Result:
    return Result(
        name="brake_lemma",
        title="The brake lemma: descent raises log pi exactly while rho < e^{A/eta}",
        claims=[slope().claim, sign().claim, kl_brake_point().claim, rkl_no_brake().claim],
        assumptions=(
            r"$f$ convex and differentiable on $(0,\infty)$",
            r"$f'(1) = 0$",
            r"strict convexity at 1: $f(u) > f(1) + f'(1)(u-1)$ for $u\ne 1$ (e.g. $f''(1) > 0$)",
        ),
        parts=[
            slope(),
            first_order_change(),
            sign(),
            kl_brake_point(),
            rkl_no_brake(),
            NumericCheck(
                "lad_loss descent sign",
                "the trained loss's descent step has the sign of e^{A/eta} - rho",
                r"\#\{\operatorname{sign}(-\partial_s L) \ne \operatorname{sign}(a - \log\rho)\} = 0",
                _check_sign_runtime,
                0.0,
            ),
            NumericCheck(
                "kl and rkl",
                "kl brakes at e^{A/eta-1}, rkl never",
                r"w_{kl} = -\rho(\log\rho - a + 1),\ w_{rkl} = e^{a}",
                _check_kl_rkl,
                1e-12,
            ),
            NumericCheck(
                "no strictness, no brake",
                "a generator flat around 1 gives w = 0 below the target",
                r"f = (u-1-\delta)_+^2 + (1-\delta-u)_+^2:\ w = 0 \text{ for } u\in[1-\delta, 1)",
                _check_dead_zone,
                0.0,
            ),
        ],
        notes="The equivalence is per sample and to first order in the step size; in expectation over pi_old "
        "the f'(1) offset of kl and rkl is a zero-mean term (proofs/gradient_formula.py).",
    )
