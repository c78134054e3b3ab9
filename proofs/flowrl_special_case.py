r"""FlowRL as a special case of LAD, and FlowRL's Proposition 1.

Statement (a). With the KL generator :math:`f(u) = u\log u` (``divergences.get("kl")``), for every
distribution :math:`\pi_\theta`,

.. math:: \sum_y \pi_{\mathrm{old}}e^{A/\eta} f\!\big(\rho e^{-A/\eta}\big)
          = \mathrm{KL}\!\Big(\pi_\theta \,\Big\|\, \frac{\pi_{\mathrm{old}}e^{A/\eta}}{Z}\Big) - \log Z,
          \qquad Z = \sum_y \pi_{\mathrm{old}}(y)e^{A(y)/\eta},

which is FlowRL's objective :math:`\mathrm{KL}(\pi_\theta\|\pi_{\mathrm{ref}}e^{\beta\hat r}/Z)` under
:math:`\pi_{\mathrm{ref}} = \pi_{\mathrm{old}}`, :math:`\beta = 1/\eta`, :math:`\hat r = A`, up to the
constant
:math:`-\log Z`: the two have the same minimiser and the same gradient.

Statement (b) (FlowRL Prop. 1). With :math:`b(y) = \log\pi_{\mathrm{ref}}(y) + \beta\hat r(y)` and the
trajectory-balance loss :math:`\ell_y(\theta) = \tfrac12(c + \log\pi_\theta(y) - b(y))^2`, :math:`c = \log
Z_\phi`,

.. math:: \sum_y \pi_\theta(y)\,\partial_\theta\ell_y(\theta)
          = \partial_\theta\,\mathrm{KL}\big(\pi_\theta\,\|\,e^{b}/Z\big)
          \quad\text{for every constant } c.

So the expected on-policy TB gradient equals the KL gradient whether or not :math:`\log Z_\phi` is exact
(the difference is :math:`(c - \log Z - 1)\sum_y\partial_\theta\pi_\theta(y) = 0`); exactness matters for
the variance of the sampled estimate and for the :math:`Z_\phi` update, not for the mean :math:`\theta` step.

Assumptions: :math:`\pi_{\mathrm{old}}, \pi_\theta > 0` distributions on a finite response set; whole-response
log-probabilities (FlowRL's :math:`1/|y|` length normalisation is left out); in (b) the sampling
distribution is held fixed when differentiating (on-policy, as FlowRL's update does).
Runtime twin: ``ladtheory/reductions.py``.
"""

from __future__ import annotations

import sympy as sp
import torch

from ladtheory import divergences, reductions
from ladtheory.proof import Derivation, Fact, NumericCheck, Result

n = sp.Symbol("n", integer=True, positive=True)
y = sp.Symbol("y", integer=True)
A = sp.IndexedBase("A", real=True)
r = sp.IndexedBase(r"\hat{r}", real=True)
b = sp.IndexedBase("b", real=True)
pi = sp.IndexedBase("pi", positive=True)
q = sp.IndexedBase("pi_old", positive=True)
ref = sp.IndexedBase("pi_ref", positive=True)
eta, beta, Z = sp.symbols("eta beta Z", positive=True)
c = sp.Symbol("c", real=True)
theta = sp.Symbol("theta", real=True)
P = sp.Function(r"pi_theta", positive=True)

KL_F = divergences.get("kl").expr  # u log u, in divergences.U: the registry's definition, not a copy


def kl_generator(arg: sp.Expr) -> sp.Expr:
    return KL_F.subs(divergences.U, arg)


NORMALISED = Fact(
    "normalised", sp.Eq(sp.Sum(pi[y], (y, 1, n)), 1), "hypothesis", r"$\pi_\theta$ is a distribution"
)
BETA = Fact("beta", sp.Eq(beta, 1 / eta), "hypothesis", r"FlowRL's $\beta = 1/\eta$")
R_HAT = Fact("r_hat", sp.Eq(r[y], A[y]), "hypothesis", r"FlowRL's $\hat r = A$", forall=y)
REF = Fact("pi_ref", sp.Eq(ref[y], q[y]), "hypothesis", r"$\pi_{ref} = \pi_{old}$", forall=y)
THETA_NORMALISED = Fact("normalised(theta)", sp.Eq(sp.Sum(P(theta, y), (y, 1, n)), 1), "hypothesis",
                        r"$\sum_y\pi_\theta(y) = 1$ for every $\theta$")
SCORE_SUM = sp.Sum(sp.Derivative(P(theta, y), theta), (y, 1, n))
SCORE_MEAN_ZERO = Fact("score has mean 0", sp.Eq(SCORE_SUM, 0), "derived", proved_by="score has mean zero")


LAD_KL = sp.Sum(q[y] * sp.exp(A[y] / eta) * kl_generator(pi[y] * sp.exp(-A[y] / eta) / q[y]), (y, 1, n))
FLOWRL_KL = sp.Sum(pi[y] * sp.log(pi[y] / (ref[y] * sp.exp(beta * r[y]) / Z)), (y, 1, n)) - sp.log(Z)


def special_case() -> Derivation:
    d = Derivation(
        "LAD with f = u log u", r"(a) the KL generator turns the practical loss into FlowRL's KL",
        LAD_KL,
        claim=sp.Eq(LAD_KL, FLOWRL_KL),
        facts=[NORMALISED, BETA, R_HAT, REF],
        assumptions=[r"$f(u) = u\log u$ from the divergence registry (`kl`)"],
    )
    d.step(
        sp.Sum(pi[y] * (sp.log(pi[y] / q[y]) - A[y] / eta), (y, 1, n)),
        "algebra",
        r"$\pi_{old}e^{A/\eta}\,u\log u$ with $u = \rho e^{-A/\eta}$: the weights cancel; "
        r"$\log$ of a product",
    )
    d.step(sp.Sum(pi[y] * sp.log(pi[y] / (q[y] * sp.exp(A[y] / eta) / Z)), (y, 1, n))
           - sp.log(Z) * sp.Sum(pi[y], (y, 1, n)), "algebra", r"add and subtract $\log Z$ inside the sum")
    d.step(
        sp.Sum(pi[y] * sp.log(pi[y] / (q[y] * sp.exp(A[y] / eta) / Z)), (y, 1, n)) - sp.log(Z),
        "substitute",
        r"$\sum_y\pi_\theta(y) = 1$: this is $\mathrm{KL}(\pi_\theta\|\pi_{old}e^{A/\eta}/Z) - \log Z$",
        using="normalised",
    )
    d.step(FLOWRL_KL, "substitute",
           r"FlowRL's objective $\mathrm{KL}(\pi_\theta\|\pi_{ref}e^{\beta\hat r}/Z)$, shifted by $-\log Z$",
           using=["beta", "r_hat", "pi_ref"])
    return d


def score_mean_zero() -> Derivation:
    d = Derivation(
        "score has mean zero", r"$\sum_y \partial_\theta\pi_\theta(y) = 0$",
        SCORE_SUM,
        claim=sp.Eq(SCORE_SUM, 0),
        facts=[THETA_NORMALISED],
    )
    d.step(sp.Derivative(sp.Sum(P(theta, y), (y, 1, n)), theta), "algebra", "the sum is finite")
    d.step(
        sp.Integer(0),
        "substitute",
        r"$\sum_y\pi_\theta(y) = 1$ for every $\theta$",
        using="normalised(theta)",
    )
    return d


def _tb(yy) -> sp.Expr:
    return sp.Rational(1, 2) * (c + sp.log(P(theta, yy)) - b[yy]) ** 2


KL_B = sp.Sum(P(theta, y) * (sp.log(P(theta, y)) - b[y] + sp.log(Z)), (y, 1, n))
TB_MINUS_KL = sp.Sum(P(theta, y) * sp.diff(_tb(y), theta), (y, 1, n)) - sp.diff(KL_B, theta)


def prop_1() -> Derivation:
    d = Derivation(
        "FlowRL Prop. 1",
        r"(b) expected TB gradient minus KL gradient vanishes, for any $c = \log Z_\phi$",
        TB_MINUS_KL,
        claim=sp.Eq(TB_MINUS_KL, 0),
        facts=[SCORE_MEAN_ZERO],
        assumptions=[
            r"$\ell_y = \frac12(c + \log\pi_\theta(y) - b_y)^2$, $b_y = \log\pi_{ref}(y) + \beta\hat r(y)$,"
            r" $Z = \sum_y e^{b_y}$"
        ],
    )
    d.step(sp.Sum((c - sp.log(Z) - 1) * sp.Derivative(P(theta, y), theta), (y, 1, n)), "algebra",
           r"the $\log\pi_\theta - b$ terms cancel between the two gradients")
    d.step((c - sp.log(Z) - 1) * sp.Sum(sp.Derivative(P(theta, y), theta), (y, 1, n)), "linearity",
           r"the factor does not depend on $y$")
    d.step(sp.Integer(0), "substitute", "the score has mean zero", using="score has mean 0")
    return d


def _check_special_case() -> tuple[float, str]:
    gen = torch.Generator().manual_seed(3)
    worst = 0.0
    for size in (2, 7, 64):
        for eta_ in (0.25, 1.0):
            log_pi = torch.log_softmax(torch.randn(size, generator=gen, dtype=torch.float64), -1)
            log_old = torch.log_softmax(torch.randn(size, generator=gen, dtype=torch.float64), -1)
            adv = torch.randn(size, generator=gen, dtype=torch.float64)
            lad = reductions.lad_exact_loss(log_pi, log_old, adv, eta_, "kl")
            flow = reductions.flowrl_objective(log_pi, log_old, adv, 1.0 / eta_) - reductions.log_partition(
                log_old, adv, 1.0 / eta_)
            worst = max(worst, float(abs(lad - flow) / max(1.0, float(abs(flow)))))
    return worst, "exact LAD-KL loss vs FlowRL KL - log Z (pi_ref = pi_old, beta = 1/eta, r_hat = A)"


def _check_prop_1() -> tuple[float, str]:
    gen = torch.Generator().manual_seed(4)
    worst = 0.0
    for size in (2, 5, 32):
        logits = torch.randn(size, generator=gen, dtype=torch.float64)
        log_ref = torch.log_softmax(torch.randn(size, generator=gen, dtype=torch.float64), -1)
        r_hat = torch.randn(size, generator=gen, dtype=torch.float64)
        exact = float(reductions.log_partition(log_ref, r_hat, 4.0))
        kl_grad = reductions.kl_gradient(logits, log_ref, r_hat, 4.0)
        for log_z in (exact, exact + 2.5, -3.0):
            tb = reductions.tb_expected_gradient(logits, log_ref, r_hat, 4.0, log_z)
            worst = max(worst, float((tb - kl_grad).abs().max() / max(1.0, float(kl_grad.abs().max()))))
    return worst, "E_pi[grad TB] vs grad KL (autograd, softmax policy) at exact and wrong log Z_phi"


def result() -> Result:
    return Result(
        name="flowrl_special_case",
        title="FlowRL as the KL special case of LAD; FlowRL Prop. 1",
        claims=[sp.Eq(LAD_KL, FLOWRL_KL), sp.Eq(TB_MINUS_KL, 0)],
        assumptions=(
            r"$\pi_{old}, \pi_\theta > 0$ distributions on a finite response set",
            "whole-response log-probabilities (no 1/|y| normalisation)",
            "(b): the sampling distribution is not differentiated (on-policy update)",
        ),
        parts=[
            special_case(),
            score_mean_zero(),
            prop_1(),
            NumericCheck(
                "special case",
                "(a) on random instances",
                r"|\mathcal L_{\mathrm{LAD,KL}} - (\mathrm{KL} - \log Z)| \le 10^{-12}",
                _check_special_case,
                1e-12,
            ),
            NumericCheck(
                "Prop. 1",
                "(b) on random softmax policies, exact and inexact log Z",
                r"\|\mathbb E_\pi[\nabla\ell] - \nabla\mathrm{KL}\|_\infty \le 10^{-12}",
                _check_prop_1,
                1e-12,
            ),
        ],
        notes="Prop. 1 holds for every constant log Z_phi, not only the exact one: E_pi[grad log pi] = 0 "
        "removes it. What the learned log Z buys is a lower-variance sampled estimate.",
    )
