"""The sampler's linear layers through transposed weight copies: few rows at full speed on CPU.

``nn.Linear`` computes ``x @ W.T`` with its weight ``W`` stored (out, in), so the matrix product receives
a transposed operand. On the CPU build of torch used here, a product with few rows through that operand
is much slower than the same product through a contiguous (in, out) copy of ``W``: its time steps up
every three rows until 16. Decoding is exactly that case (one row per live sequence, 1 to 16 rows at the
benchmark's 135M shape). Measured on one thread, median of 11 calls (the script in
``results/benchmarks/before-after.md``, fourth pass): at SmolLM2-135M's MLP product (576 -> 1536) and
15 rows, 0.58 ms through ``F.linear`` against 0.23 ms through the copy; at its output layer
(576 -> 49,152), 54 ms against 25 ms; at 1,281 rows (the update) both 14.3-14.5 ms.

:func:`transposed_linears` is a context manager: on entry every eligible ``nn.Linear`` of the module
gets a contiguous copy of ``W.T`` (one per weight tensor: a tied output layer and its twin share one),
and its forward computes ``x @ W.T`` as ``addmm(b, x, copy)``; on exit the forwards are restored and the
copies freed. It is used only by :class:`ladtrain.compact_sampler.CompactSampler`, around its loop.

* **Eligible**: a plain ``nn.Linear`` (not a subclass) whose weight is a plain ``nn.Parameter`` (not a
  sharded ``DTensor``) of float32 or float64 on the CPU. Everything else keeps its own forward.
* **Only without gradients and without autocast**: the copies are not parameters, so a forward that
  records a graph (``torch.is_grad_enabled()``) or runs under autocast, or receives another dtype or
  extra arguments, runs the layer's own forward instead.
* **Values**: the same products in another summation order, so the outputs equal ``F.linear``'s to
  round-off, not bit for bit (``tests/train/test_transposed_linears.py``: float64 to 1e-12, float32 to
  round-off, with a control that a copy off by one part in a million is caught).
* **Cost**: one pass over the linear weights per rollout (0.25 s at 135M), and one more copy of them in
  memory while sampling (540 MB at 135M: below the update's peak, so the step's peak does not move).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch
from torch import Tensor

DTYPES = (torch.float32, torch.float64)
MIN_TOTAL_BYTES = 64 << 20  # pays(): eligible weights of at least this many bytes in all


def eligible(module: torch.nn.Module) -> bool:
    """Whether :func:`transposed_linears` gives ``module`` a transposed copy (see the module docstring)."""
    if type(module) is not torch.nn.Linear:
        return False
    w = module.weight
    return type(w) is torch.nn.Parameter and w.device.type == "cpu" and w.dtype in DTYPES


def pays(model: torch.nn.Module) -> bool:
    """Whether the copies pay for ``model`` (the sampler's default): its eligible weights hold at least
    :data:`MIN_TOTAL_BYTES`, more than a CPU's caches, so that decoding reads them from memory."""
    weights = {id(m.weight): m.weight for m in model.modules() if eligible(m)}
    return sum(w.numel() * w.element_size() for w in weights.values()) >= MIN_TOTAL_BYTES


def _copy(weight: Tensor) -> Tensor:
    """The contiguous (in, out) copy of a weight (out, in)."""
    return weight.detach().t().contiguous()


def _forward(module: torch.nn.Linear, copy: Tensor, own: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """``module``'s forward through ``copy`` (in, out) where that is exact; else its own forward ``own``."""

    def run(x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if (args or kwargs or torch.is_grad_enabled() or x.dtype != copy.dtype or x.device != copy.device
                or torch.is_autocast_enabled(x.device.type)):
            return own(x, *args, **kwargs)
        flat = x.reshape(-1, x.shape[-1])  # (N, in)
        bias = module.bias
        out = torch.mm(flat, copy) if bias is None else torch.addmm(bias, flat, copy)  # (N, out)
        return out.view(*x.shape[:-1], copy.shape[1])

    return run


@contextlib.contextmanager
def transposed_linears(model: torch.nn.Module, enabled: bool | None = None) -> Iterator[int]:
    """Inside: the eligible linear layers of ``model`` run through transposed weight copies (see the
    module docstring); ``enabled`` None: where :func:`pays`. Yields how many layers were switched."""
    if enabled is None:
        enabled = pays(model)
    switched: list[tuple[torch.nn.Module, Any]] = []
    copies: dict[int, Tensor] = {}
    try:
        for module in model.modules() if enabled else ():
            if not eligible(module):
                continue
            w = module.weight
            if id(w) not in copies:
                copies[id(w)] = _copy(w)  # (in, out)
            switched.append((module, module.__dict__.get("forward")))
            module.forward = _forward(module, copies[id(w)], module.forward)
        yield len(switched)
    finally:
        for module, before in reversed(switched):
            if before is None:
                del module.forward  # the class's forward again
            else:
                module.forward = before
        copies.clear()


__all__ = ["DTYPES", "MIN_TOTAL_BYTES", "eligible", "pays", "transposed_linears"]
