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
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


def _group_std(r: Tensor, eps: float) -> Tensor:
    return r.std(dim=1, keepdim=True) + eps  # (n_prompts, 1)


def _batch_std(r: Tensor, eps: float) -> Tensor:
    return r.std() + eps  # scalar


def _none(r: Tensor, eps: float) -> Tensor:
    return torch.ones((), dtype=r.dtype)


SCALES: dict[str, Callable[[Tensor, float], Tensor]] = {
    "group_std": _group_std,
    "batch_std": _batch_std,
    "none": _none,
}


def group_advantages(rewards: Tensor, group_size: int, *, scale: str = "group_std", eps: float = 1e-6) -> Tensor:
    """(B,) advantages from (B,) rewards, normalised within each group of ``group_size`` rows."""
    if scale not in SCALES:
        raise ValueError(f"unknown advantage scale {scale!r}; known: {', '.join(SCALES)}")
    if group_size < 2 or rewards.shape[0] % group_size:
        raise ValueError(f"need group_size >= 2 dividing B = {rewards.shape[0]}, got {group_size}")
    r = rewards.view(-1, group_size)  # (n_prompts, G)
    centred = r - r.mean(dim=1, keepdim=True)  # (n_prompts, G)
    return (centred / SCALES[scale](r, eps)).reshape(-1)  # (B,)


__all__ = ["SCALES", "group_advantages"]
