r"""Reductions: FlowRL as a special case of LAD, GRPO as its small-step limit, and the effective-weight range.

**FlowRL** (docs/paper-notes.md section 5). With :math:`f(u) = u\log u` (``divergences.get("kl")``) the exact
practical LAD loss is

.. math:: \mathcal L_{\mathrm{LAD}}(\theta) = \sum_y \pi_{\mathrm{old}} e^{A/\eta} f\!\big(\rho
e^{-A/\eta}\big)
          = \mathrm{KL}\!\big(\pi_\theta \,\|\, \pi_{\mathrm{old}} e^{A/\eta}/Z\big) - \log Z,
          \qquad Z = \sum_y \pi_{\mathrm{old}} e^{A/\eta},

which is FlowRL's objective :math:`\mathrm{KL}(\pi_\theta \| \pi_{\mathrm{ref}} e^{\beta \hat r}/Z)` under
:math:`\pi_{\mathrm{ref}} = \pi_{\mathrm{old}}`, :math:`\beta = 1/\eta`, :math:`\hat r = A`, up to the
constant :math:`-\log Z`. FlowRL's Prop. 1: the on-policy expected gradient of the trajectory-balance
loss :math:`\tfrac12(\log Z_\phi + \log\pi_\theta(y) - \beta\hat r(y) - \log\pi_{\mathrm{ref}}(y))^2`
equals :math:`\nabla_\theta \mathrm{KL}(\pi_\theta\|\pi_{\mathrm{ref}} e^{\beta\hat r}/Z)`. Our proof shows it
holds for *every* constant :math:`\log Z_\phi`, since :math:`\mathbb E_{\pi_\theta}[\nabla\log\pi_\theta] =
0`;
exactness of :math:`Z_\phi` matters for the variance of the sampled estimate, not for its mean.
(FlowRL's length normalisation ``1/|y|`` of the log-probabilities is left out: this is the theory over
whole responses.) Proofs: ``proofs/flowrl_special_case.py``.

**GRPO** (docs/paper-notes.md section 6). At :math:`\rho = 1` the effective weight is
:math:`w(A, 1) = -f'(e^{-A/\eta}) = -f'(1) + f''(1)\,A/\eta + O(\eta^{-2})`; the constant
:math:`-f'(1)` multiplies :math:`\mathbb E_{\pi_\theta}[\nabla\log\pi_\theta] = 0`, so the LAD descent
direction is :math:`(f''(1)/\eta)\,\mathbb E[A\nabla\log\pi_\theta] + O(\eta^{-2})`, the unclipped
GRPO/REINFORCE direction. Proof: ``proofs/grpo_small_step_limit.py``.

**Effective-weight range** (beyond the paper): :func:`weight_range` computes with sympy the limits of
:math:`w(A, 1)` as :math:`A \to \pm\infty` and how fast it grows when unbounded. Proof and table:
``proofs/effective_weight_range.py``.

Tensor functions here take float64 torch tensors of shape (n,) over a finite response set.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
import torch

from ladtheory import divergences
from ladtheory.divergences import FDivergence

# ------------------------------------------------------------------------------------------------
# FlowRL.


def log_partition(log_ref: torch.Tensor, r_hat: torch.Tensor, beta: float) -> torch.Tensor:
    """``log Z = log sum_y pi_ref(y) e^{beta r_hat(y)}``."""
    return torch.logsumexp(log_ref + beta * r_hat, dim=-1)


def flowrl_objective(
    log_pi: torch.Tensor, log_ref: torch.Tensor, r_hat: torch.Tensor, beta: float
) -> torch.Tensor:
    """FlowRL's target objective ``KL(pi || pi_ref e^{beta r_hat} / Z)`` (exact, over the response set)."""
    log_target = log_ref + beta * r_hat - log_partition(log_ref, r_hat, beta)
    return torch.sum(log_pi.exp() * (log_pi - log_target), dim=-1)


def lad_exact_loss(log_pi: torch.Tensor, log_old: torch.Tensor, A: torch.Tensor, eta: float,
                   divergence: str | FDivergence = "kl") -> torch.Tensor:
    """The exact practical LAD loss ``sum_y pi_old e^{A/eta} f(rho e^{-A/eta})`` (``rho = pi / pi_old``),
    i.e. the pi_old-expectation that ``ladtheory.objective.lad_loss`` estimates at ``level="sequence"``."""
    div = divergences.get(divergence)
    z = log_pi - log_old - A / eta  # log u
    return torch.sum(torch.exp(log_old + A / eta) * div.f_log(z), dim=-1)


def tb_loss(log_z: torch.Tensor, log_pi: torch.Tensor, log_ref: torch.Tensor, r_hat: torch.Tensor,
            beta: float) -> torch.Tensor:
    """Per-response trajectory-balance loss ``1/2 (log Z_phi + log pi - beta r_hat - log pi_ref)^2``."""
    return 0.5 * (log_z + log_pi - beta * r_hat - log_ref) ** 2


def tb_expected_gradient(logits: torch.Tensor, log_ref: torch.Tensor, r_hat: torch.Tensor, beta: float,
                         log_z: float) -> torch.Tensor:
    """``E_{y ~ pi_theta}[grad_theta tb_loss(y)]`` for the softmax policy ``pi_theta = softmax(logits)``:
    the sampling distribution is held fixed (detached), as in FlowRL's on-policy update."""
    theta = logits.detach().clone().requires_grad_(True)
    log_pi = torch.log_softmax(theta, dim=-1)
    weights = log_pi.detach().exp()
    loss = torch.sum(
        weights * tb_loss(torch.as_tensor(log_z, dtype=theta.dtype), log_pi, log_ref, r_hat, beta)
    )
    (grad,) = torch.autograd.grad(loss, theta)
    return grad


def kl_gradient(
    logits: torch.Tensor, log_ref: torch.Tensor, r_hat: torch.Tensor, beta: float
) -> torch.Tensor:
    """``grad_theta KL(pi_theta || pi_ref e^{beta r_hat}/Z)`` for ``pi_theta = softmax(logits)``
    (autograd)."""
    theta = logits.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(flowrl_objective(torch.log_softmax(theta, -1), log_ref, r_hat, beta), theta)
    return grad


# ------------------------------------------------------------------------------------------------
# GRPO small-step limit.


def grpo_limit_weight(A, eta: float, divergence: str | FDivergence = "js"):
    """The first-order term ``f''(1) A / eta`` of the effective weight at ``rho = 1`` (GRPO's direction,
    scaled by the curvature ``f''(1)``); ``nan`` for TV, which has no second derivative at 1."""
    return divergences.get(divergence).f2_at_1 * A / eta


def first_order_weight(A, eta: float, divergence: str | FDivergence = "js"):
    """``-f'(1) + f''(1) A / eta``: the effective weight at ``rho = 1`` to first order in ``1/eta``
    (``FDivergence.f_prime_at_1`` and ``f2_at_1`` from the registry)."""
    div = divergences.get(divergence)
    return -div.f_prime_at_1 + div.f2_at_1 * A / eta


# ------------------------------------------------------------------------------------------------
# Effective weight range at rho = 1.

S = sp.Symbol("s", real=True)
"""``s = A / eta``: the effective weight at ``rho = 1`` depends on ``A`` and ``eta`` only through it."""


def weight_at_rho_1(divergence: str | FDivergence) -> sp.Expr:
    """``w(s) = -f'(e^{-s})``, ``s = A/eta``: the effective weight at ``rho = 1`` as a sympy expression."""
    div = divergences.get(divergence)
    return sp.simplify(-div.f_prime_expr.subs(divergences.U, sp.exp(-S)))


@dataclass(frozen=True)
class WeightRange:
    """Limits of ``w(A, rho=1)`` as ``A -> -inf`` (``low``) and ``A -> +inf`` (``high``), with the growth
    law when a limit is infinite: ``"bounded"``, ``"linear c|A|/eta"`` or ``"exponential e^{c|A|/eta}"``."""

    name: str
    weight: sp.Expr  # in S = A/eta
    low: sp.Expr
    high: sp.Expr
    growth_low: str
    growth_high: str

    @property
    def bounded_below(self) -> bool:
        return bool(self.low.is_finite)

    @property
    def bounded_above(self) -> bool:
        return bool(self.high.is_finite)


def _growth(w: sp.Expr, limit: sp.Expr, direction) -> str:
    if limit.is_finite:
        return "bounded"
    rate = sp.limit(sp.log(sp.Abs(w)) / sp.Abs(S), S, direction)
    if rate != 0:
        return f"exponential e^{{{_coef(rate)}|A|/\\eta}}"
    slope = sp.limit(w / sp.Abs(S), S, direction)
    return f"linear {_coef(sp.Abs(slope))}|A|/\\eta" if slope.is_finite else "superlinear"


def _coef(c: sp.Expr) -> str:
    return "" if c == 1 else sp.latex(c)


def weight_range(divergence: str | FDivergence) -> WeightRange:
    """The range of the effective weight ``w(A, 1) = -f'(e^{-A/eta})`` by sympy limits."""
    div = divergences.get(divergence)
    w = weight_at_rho_1(div)
    low, high = sp.limit(w, S, -sp.oo), sp.limit(w, S, sp.oo)
    return WeightRange(div.name, w, low, high, _growth(w, low, -sp.oo), _growth(w, high, sp.oo))


__all__ = [
    "S",
    "WeightRange",
    "first_order_weight",
    "flowrl_objective",
    "grpo_limit_weight",
    "kl_gradient",
    "lad_exact_loss",
    "log_partition",
    "tb_expected_gradient",
    "tb_loss",
    "weight_at_rho_1",
    "weight_range",
]
