"""Padding costs nothing in the update's MLPs: they run only on the positions that are read.

The update scores a batch of completions of different lengths as one (B, T) pass (each group's prompt is
in the KV cache, :func:`ladtrain.rollout.token_logprobs`). Positions after a row's last scored token are
padding: their outputs are never read, and under causal attention they change nothing before them. At
the SmolLM2-135M benchmark shape (16 completions, at most 96 tokens, 81 on average) they are 16% of the
positions, and the gated MLP is 75% of a decoder layer's multiply-adds. Inside :func:`only_rows` each
MLP gathers the live positions of its (B, T, H) input into one (N, H) block, runs on it, and scatters
its output back into zeros at the padded positions; everything else (norms, attention and its
projections, the residual stream) sees the (B, T) layout as before. A padded position then carries finite
values (its MLP output is zero) and is still never read.

The attention projections are not packed: at that shape their gathers and scatters (fresh tensors, each
paying its page faults under the benchmark's allocator settings) cost more than the 16% of their products
they saved. Measured on one rollout of that shape (the update's forward and backward, four interleaved
runs each, one thread): with the projections packed too, the forward was 0.6 s slower and the backward
0.7 s faster; with the MLPs alone, the two together took 19.7 s against 20.8 s unpacked.

Exact: a row of a matrix product does not depend on the other rows, so the live positions' values and
every gradient are those of the padded pass (float64 to 1e-12 and float32 to round-off in
``tests/train/test_packing.py``; bit for bit in float32 on the models tested there). Not used under
gradient checkpointing (the replay in backward runs outside the context; :func:`applicable`), where the
length buckets of :func:`ladtrain.rollout.length_buckets` still skip padding.

Modules changed: every gated MLP (``gate_proj``, ``up_proj``, ``down_proj``, ``act_fn``; the lean forward of
:mod:`ladtrain.lean_layers` runs on the gathered block when it is on).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import Tensor


class _Pack:
    """The live positions of a (B, T) layout: ``index`` (N,) into the flattened B * T positions."""

    def __init__(self, keep: Tensor) -> None:
        self.shape = tuple(keep.shape)  # (B, T)
        self.index = keep.reshape(-1).nonzero().squeeze(1)  # (N,)

    def fits(self, x: Tensor) -> bool:
        return x.dim() == 3 and tuple(x.shape[:2]) == self.shape

    def gather(self, x: Tensor) -> Tensor:
        """(N, H) rows of ``x`` (B, T, H) at the live positions."""
        return x.reshape(-1, x.shape[-1]).index_select(0, self.index)

    def scatter(self, block: Tensor) -> Tensor:
        """(B, T, H') with ``block`` (N, H') at the live positions and zeros elsewhere."""
        B, T = self.shape
        full = block.new_zeros(B * T, block.shape[-1])
        return full.index_copy(0, self.index, block).view(B, T, block.shape[-1])


def _packed(forward, pack: _Pack):
    def run(x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if not pack.fits(x):
            return forward(x, *args, **kwargs)
        return pack.scatter(forward(pack.gather(x), *args, **kwargs))

    return run


def _targets(model: torch.nn.Module) -> list[torch.nn.Module]:
    from ladtrain.lean_layers import is_gated_mlp

    return [m for m in model.modules() if is_gated_mlp(m)]


def applicable(model: torch.nn.Module) -> bool:
    """Whether :func:`only_rows` can pack ``model``'s forward: it has gated MLPs, and no gradient
    checkpointing (whose replay would run them unpacked)."""
    from ladtrain import checkpointing

    return not checkpointing.checkpointing_on(model) and bool(_targets(model))


@contextlib.contextmanager
def only_rows(model: torch.nn.Module, keep: Tensor) -> Iterator[None]:
    """Inside, ``model``'s MLPs run only where ``keep`` (B, T) is true, for inputs of the (B, T) layout
    (any other input runs as usual); their outputs are zero at the other positions."""
    pack = _Pack(keep)
    changed = []
    try:
        for m in _targets(model):
            own = m.__dict__.get("forward")  # an instance forward already set (lean layers), if any
            changed.append((m, own))
            m.forward = _packed(m.forward, pack)  # an instance attribute: called as m.forward(x)
        yield
    finally:
        for m, own in changed:
            if own is None:
                del m.forward
            else:
                m.forward = own


__all__ = ["applicable", "only_rows"]
