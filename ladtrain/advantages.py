r"""Group-normalised advantages (the GRPO convention: Shao et al. 2024, arXiv 2402.03300).

For prompt ``x`` with ``G`` sampled responses and rewards ``r_1..r_G``:

.. math::  A_i = \frac{r_i - \bar r}{s + \epsilon}, \qquad \bar r = \frac1G \sum_j r_j,

where the scale ``s`` is chosen by ``scale``:

* ``"group_std"`` (default, GRPO; TRL ``scale_rewards="group"``): the sample standard deviation of the
  group (Bessel-corrected, as ``torch.std``, TRL and verl compute it);
* ``"batch_std"`` (TRL ``scale_rewards="batch"``): the standard deviation of all rewards in the batch;
* ``"none"`` (Dr. GRPO): no scaling, centring only (the ``epsilon`` is not added).

A group whose rewards are all equal gets ``A = 0`` for every response (no signal), whatever the scale.
Shapes: rewards (B,) prompt-major with ``B = n_prompts * G``; advantages (B,).

**Unscorable samples** (reward NaN: the scorer failed) drop out of the statistics, as in TRL 1.16
(``GRPOTrainer``: unscorable rows set to NaN, then ``nanmean`` and its Bessel-corrected ``nanstd``): the
mean and standard deviation are those of the group's scored rewards only, and an unscored sample gets
``A = 0``. (Filling it with the group mean instead keeps the centred sum but shrinks the standard
deviation, inflating the other advantages by ``sqrt((G - 1) / (m - 1))`` with ``m`` of ``G`` scored:
1.53 for 4 of 8.) A group with fewer than two scored samples has no spread and gets ``A = 0``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


def _nanstd(r: Tensor, dim: int | None = None) -> Tensor:
    """Bessel-corrected standard deviation of the non-NaN entries (NaN where fewer than two)."""
    keep = ~torch.isnan(r)
    count = keep.sum(dim=dim, keepdim=dim is not None)
    mean = torch.nanmean(r, dim=dim, keepdim=True)
    squares = torch.where(keep, (r - mean) ** 2, torch.zeros((), dtype=r.dtype))
    total = squares.sum(dim=dim, keepdim=dim is not None)
    return torch.where(count > 1, total / (count - 1).clamp(min=1), torch.full_like(total, torch.nan)).sqrt()


def _group_std(r: Tensor, eps: float) -> Tensor:
    return _nanstd(r, dim=1) + eps  # (n_prompts, 1)


def _batch_std(r: Tensor, eps: float) -> Tensor:
    return _nanstd(r) + eps  # scalar


def _none(r: Tensor, eps: float) -> Tensor:
    return torch.ones((), dtype=r.dtype)


SCALES: dict[str, Callable[[Tensor, float], Tensor]] = {
    "group_std": _group_std,
    "batch_std": _batch_std,
    "none": _none,
}


def group_advantages(
    rewards: Tensor, group_size: int, *, scale: str = "group_std", eps: float = 1e-6
) -> Tensor:
    """(B,) advantages from (B,) rewards, normalised within each group of ``group_size`` rows."""
    if scale not in SCALES:
        raise ValueError(f"unknown advantage scale {scale!r}; known: {', '.join(SCALES)}")
    if group_size < 2 or rewards.shape[0] % group_size:
        raise ValueError(f"need group_size >= 2 dividing B = {rewards.shape[0]}, got {group_size}")
    r = rewards.view(-1, group_size)  # (n_prompts, G), NaN where unscored
    scored = ~torch.isnan(r)
    centred = r - torch.nanmean(r, dim=1, keepdim=True)  # (n_prompts, G)
    spread = scored.sum(dim=1, keepdim=True) > 1  # (n_prompts, 1)
    A = centred / SCALES[scale](r, eps)
    keep = scored & spread & ~torch.isnan(A)
    return torch.where(keep, A, torch.zeros((), dtype=A.dtype)).reshape(-1)  # (B,)


__all__ = ["SCALES", "group_advantages"]
