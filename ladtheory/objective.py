r"""The LAD training loss and its effective weight. **This is the loss ``ladtrain`` trains with.**

Practical LAD loss (paper Eq. 8; docs/paper-notes.md section 2), for a convex generator ``f`` with
``f(1) = 0``:

.. math::

    \mathcal L_{\mathrm{LAD}}(\theta)
      = \mathbb E_{y\sim\pi_{\mathrm{old}}}\Big[ e^{A(y)/\eta}\, f\big(\rho(y)\, e^{-A(y)/\eta}\big) \Big],
    \qquad \rho(y) = \frac{\pi_\theta(y)}{\pi_{\mathrm{old}}(y)},

where

* ``A(y)``: the advantage of response ``y`` (group-normalised reward, computed by the trainer);
* ``eta > 0``: the temperature, the Lagrange multiplier of the trust region (default 0.25, i.e. 1/eta = 4);
* ``pi_old``: the rollout policy that sampled ``y``; ``pi_theta``: the policy being trained;
* ``u = rho e^{-A/eta}``: the ratio measured against its *target* ``e^{A/eta}``; the loss is computed in
  log coordinates ``z = log u = (log pi_theta - log pi_old) - A/eta`` (never exponentiating first).

It is the f-divergence ``D_f(P_theta || P_A)`` between the policy-induced distribution
``P_theta ∝ pi_theta / pi_old`` and the advantage-induced distribution ``P_A ∝ e^{A/eta}`` with both
normalisers replaced by the same unnormalised weight ``g = pi_old e^{A/eta}`` (Lemma 3.2; ``proofs/``).

Gradient (``proofs/`` "gradient"; tested in ``tests/theory/test_objective.py``):

.. math::  \nabla_\theta \mathcal L = \mathbb E_{\pi_{\mathrm{old}}}\big[\rho\, f'(\rho e^{-A/\eta})\,
           \nabla_\theta \log\pi_\theta\big]
           \quad\Longrightarrow\quad
           \frac{\partial \ell}{\partial \log\pi_\theta(y)} = \rho\, f'(u).

So the descent direction is ``w(A, rho) grad log pi`` with the **effective weight**
``w(A, rho) = -rho f'(rho e^{-A/eta})`` (the analogue of GRPO's advantage, :func:`effective_weight`).
Since ``f'`` is non-decreasing, for a generator with ``f'(1) = 0`` that is strictly convex at 1 (``f'``
strictly increasing through 1) descent raises ``log pi(y)`` exactly while ``rho < e^{A/eta}`` and lowers it
once ``rho > e^{A/eta}``: the **brake** on over-confident growth (a generator flat near 1 takes a zero step
there instead; ``python -m ladtheory check`` says which case a generator is in; ``proofs/brake_lemma.py``).
The brake acts per unit of the chosen ``level``: per token, a response's ratio can reach ``e^{|y| A/eta}``
(``proofs/token_level_ratio.py``).
Every built-in has ``f'(1) = 0`` except the paper's ``kl = u log u`` (``f'(1) = 1``: the per-sample brake
point moves to ``rho = e^{A/eta - 1}``) and ``rkl = -log u`` (``f'(1) = -1``: ``w = e^{A/eta} > 0``, no
per-sample brake at all). The term ``f'(1) rho grad log pi`` that separates them from their
``f'(1) = 0`` versions has zero mean under ``pi_old`` (``E[rho grad log pi] = grad sum_y pi = 0``), so
the expected gradient is the same; the per-sample behaviour is not. (``FDivergence.f_prime_at_1``.)

Which ratio (docs/paper-notes.md section 4, **[open]** in the paper; our choice is the option ``level``):

* ``"token"`` (default): per-token ``z_t = (logp_t - logp_old_t) - A/eta`` with the sequence advantage
  broadcast to every token; token-mean over all unmasked tokens of the batch (GRPO/verl/DAPO
  convention; a drop-in policy loss). ``dL/dlogp_t = rho_t f'(u_t) / N_tokens``.
* ``"sequence"``: ``log rho = sum_t (logp_t - logp_old_t)``, the exact theory over whole responses;
  mean over sequences. ``dL/dlogp_t = rho f'(u) / B``.
* ``"sequence_mean"``: ``log rho = mean_t (logp_t - logp_old_t)`` (length-normalised, GSPO-like); mean
  over sequences. ``dL/dlogp_t = rho f'(u) / (B T_b)``.

Numerical safety (what is clamped, and why):

* The computation runs in float64 (float32 on devices without float64) whatever the input dtype, and
  the loss comes back in the input dtype promoted to at least float32.
* ``A/eta`` is clamped to ``[-40, 40]``: a target ratio beyond ``e^40 ≈ 2e17`` is indistinguishable
  from infinity for any step a policy can take, and ``e^{A/eta}`` multiplies the loss.
* ``z`` is clamped to ``[-20, 20]`` (``u`` within a factor ``5e8`` of its target) with a
  *straight-through* gradient: the value and the weight ``rho f'(u)`` are evaluated at the clamped
  point, so the step keeps its sign and direction but its size is capped. With both clamps every
  built-in's loss element and gradient stays below ``2 e^80 ≈ 1.1e35`` (float32 and bfloat16 reach
  ``3.4e38``); this holds for any generator growing at most like ``u^2`` and ``1/u`` (alpha family with
  ``-1 <= a <= 2``). A faster-growing user generator (``alpha:3``) can still overflow float32 at the
  extremes. Inside these ranges nothing is changed.
* Masked (padding) positions are replaced by 0 before any arithmetic, so NaN/inf in padding is harmless.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ladtheory import divergences
from ladtheory.divergences import FDivergence

LEVELS = ("token", "sequence", "sequence_mean")
A_OVER_ETA_CLAMP = 40.0
Z_CLAMP = 20.0


def _work_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def lad_loss(
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    divergence: str | FDivergence = "js",
    eta: float = 0.25,
    level: str = "token",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The practical LAD loss ``E_{pi_old}[e^{A/eta} f(rho e^{-A/eta})]`` (see the module docstring).

    Args:
        logp: (B, T) log pi_theta of each response token (requires grad).
        logp_old: (B, T) log pi_old of the same tokens (no grad needed; detached here).
        advantages: (B,) one advantage per response.
        mask: (B, T) 1 for response tokens, 0 for padding (bool or float).
        divergence: a registered name (``divergences.names()``, ``alpha:A``) or an FDivergence.
        eta: the temperature, > 0.
        level: ``"token"``, ``"sequence"`` or ``"sequence_mean"``.

    Returns:
        ``(loss, terms)``: the scalar loss and detached diagnostics: ``log_ratio_mean`` (mean log rho),
        ``log_ratio_abs_max``, ``past_target_frac`` (fraction of units with rho > e^{A/eta}, i.e. braked),
        ``weight_mean`` / ``weight_abs_mean`` (effective weight w = -rho f'(u)), ``clamped_frac``.
        A "unit" is a token for ``level="token"`` and a sequence otherwise.
    """
    div = divergences.get(divergence)
    if not eta > 0:
        raise ValueError(f"eta must be > 0, got {eta}")
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    if logp.shape != logp_old.shape or logp.shape != mask.shape or logp.dim() != 2:
        raise ValueError(f"logp, logp_old, mask must share shape (B, T); got {logp.shape}, {logp_old.shape}, "
                         f"{mask.shape}")
    if advantages.shape != logp.shape[:1]:
        raise ValueError(
            f"advantages must have shape (B,) = {tuple(logp.shape[:1])}, got {tuple(advantages.shape)}"
        )

    work = _work_dtype(logp.device)
    keep = mask.to(torch.bool)  # (B, T)
    weight = keep.to(work)  # (B, T)
    diff = torch.where(
        keep, logp.to(work) - logp_old.detach().to(work), torch.zeros((), dtype=work)
    )  # (B, T)
    a = (advantages.detach().to(work) / eta).clamp(-A_OVER_ETA_CLAMP, A_OVER_ETA_CLAMP)  # (B,)

    n_tokens = weight.sum(-1)  # (B,)
    if level == "token":
        log_rho = diff  # (B, T)
        a_units = a[:, None].expand_as(diff)  # (B, T)
        unit_w = weight / weight.sum().clamp(min=1.0)  # (B, T): global token mean
        unit_keep = keep
    else:
        log_rho = diff.sum(-1)  # (B,)
        if level == "sequence_mean":
            log_rho = log_rho / n_tokens.clamp(min=1.0)
        a_units = a
        unit_keep = n_tokens > 0  # (B,)
        unit_w = unit_keep.to(work) / max(logp.shape[0], 1)  # (B,): mean over sequences

    z = log_rho - a_units
    z_clamped = z.clamp(-Z_CLAMP, Z_CLAMP).detach()
    with torch.no_grad():
        value = torch.exp(a_units) * div.f_log(z_clamped)  # e^{A/eta} f(u)
        slope = torch.exp(a_units + z_clamped) * div.f_prime_log(z_clamped)  # d value / d z = rho f'(u)
    # The value is e^{A/eta} f(u); its gradient with respect to z is the closed form rho f'(u), evaluated
    # from the stable f'(e^z) rather than by differentiating f(e^z) (autograd through expm1 loses
    # relative precision when u << 1). At the clamp the value and slope are taken at the clamped point
    # and the gradient passes straight through (module docstring).
    elements = value + slope * (z - z.detach())
    elements = torch.where(unit_keep, elements, torch.zeros((), dtype=work))
    loss = (elements * unit_w).sum()

    with torch.no_grad():
        u_units = unit_keep.to(work)
        count = u_units.sum().clamp(min=1.0)
        w = torch.where(unit_keep, -slope, torch.zeros((), dtype=work))  # effective weight -rho f'(u)
        terms = {
            "log_ratio_mean": (log_rho * u_units).sum() / count,
            "log_ratio_abs_max": (log_rho.abs() * u_units).max() if log_rho.numel() else log_rho.sum(),
            "past_target_frac": ((z > 0) & unit_keep).to(work).sum() / count,
            "weight_mean": w.sum() / count,
            "weight_abs_mean": w.abs().sum() / count,
            "clamped_frac": ((z.abs() > Z_CLAMP) & unit_keep).to(work).sum() / count,
        }
    out_dtype = torch.promote_types(logp.dtype, torch.float32)
    return loss.to(out_dtype), {k: v.to(torch.float32) for k, v in terms.items()}


def effective_weight(A: Any, log_rho: Any, divergence: str | FDivergence = "js", eta: float = 0.25) -> Any:
    """``w(A, rho) = -rho f'(rho e^{-A/eta})``: the coefficient on ``grad log pi(y)`` in the descent
    direction of the LAD loss (GRPO's is ``A``). Works on numpy arrays, torch tensors or floats
    (broadcasting); no clamping (this is the theory function).

    At ``rho = 1``: JS gives ``0.5 log((1 + e^{A/eta}) / 2)``, bounded below by ``-0.5 log 2``;
    TV gives ``sign(A)``; KL (``u log u``) gives ``A/eta - 1``, and its ``f'(1) = 0`` version
    ``u log u - u + 1`` gives ``A/eta``.
    """
    div = divergences.get(divergence)
    if not eta > 0:
        raise ValueError(f"eta must be > 0, got {eta}")
    if isinstance(A, torch.Tensor) or isinstance(log_rho, torch.Tensor):
        A_t = torch.as_tensor(A, dtype=torch.float64)
        lr = torch.as_tensor(log_rho, dtype=torch.float64)
        return -torch.exp(lr) * div.f_prime_log(lr - A_t / eta)
    A_n = np.asarray(A, dtype=float)
    lr = np.asarray(log_rho, dtype=float)
    out = -np.exp(lr) * div.f_prime_log(lr - A_n / eta)
    return float(out) if np.ndim(out) == 0 else out


__all__ = ["LEVELS", "A_OVER_ETA_CLAMP", "Z_CLAMP", "lad_loss", "effective_weight"]
