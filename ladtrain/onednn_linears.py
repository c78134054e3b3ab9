"""Linear layers and the output layer's products through oneDNN, where this CPU runs them faster.

PyTorch's CPU wheel multiplies float32 matrices through its default BLAS (MKL on x86). On an AMD EPYC
machine that is the slower of the two libraries the wheel carries: one thread, SmolLM2-135M's shapes,
``benchmarks/linear_rows.py`` measured oneDNN's product (``torch.ops.mkldnn._linear_pointwise``) at
0.46x of ``F.linear``'s time at 1,281 rows (576 -> 1536: 10.6 against 23.0 ms), and, with the weight
reordered once into oneDNN's blocked layout, at 0.39-0.49x at the decode's 16 rows (the output layer
576 -> 49,152: 7.9 against 20.2 ms); at one row it can be slower. On another CPU it can be the other way
round, so the trainer measures it (:func:`pays`) and decides once per run (``--linear-kernels auto``:
:func:`ladtrain.start.linear_kernels`, kept in ``run.json``, which ``--resume`` reads).

* **What runs through oneDNN** once :func:`apply` has switched a model: every eligible ``nn.Linear``'s
  forward (with gradients through :class:`Linear`: ``dx = g W``, ``dW = g^T x``, ``db = sum g``, each a
  oneDNN product), and the chunked output layer of :mod:`ladtrain.logprobs` (:func:`linear`, :func:`mm`).
  Inside :func:`packed` (the sampler's loop, no gradients) the layers multiply by weights reordered once
  per rollout; a reordered copy is used only while its weight's version counter is unchanged.
* **Eligible**: a plain ``nn.Linear`` whose weight is a plain float32 ``nn.Parameter`` on the CPU (a LoRA
  layer's frozen base included). Anything else (float64, autocast, another device, a sharded ``DTensor``,
  extra arguments) runs the layer's own forward.
* **Values**: the same products in another summation order: outputs and gradients equal the plain path's
  to float32 round-off, not bit for bit (``tests/train/test_onednn_linears.py``, with a control that a
  weight off by one part in a thousand is caught).
* **Cost**: nothing in memory outside :func:`packed`; inside it one reordered copy of the linear weights
  (540 MB at 135M, below the update's peak); reordering them takes about 0.2 s per rollout at 135M.
"""

from __future__ import annotations

import contextlib
import types
import weakref
from typing import Any, Iterator

import torch
from torch import Tensor

from ladtrain import transposed_linears

_OWN = "_onednn_own_forward"  # a switched layer keeps its own forward here (the fallback)
UPDATE_ROWS = 256  # pays(): the update's products are timed at this many rows (or the rollout's tokens)
MARGIN = 0.9  # pays(): oneDNN's products must take at most this share of F.linear's
_PLAIN = (torch.Tensor, torch.nn.Parameter)
_OP = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
_switched: dict[int, weakref.ref] = {}  # id(weight) -> the weight, for the weights apply() switched
_reordered: dict[int, tuple[int, Tensor]] = {}  # inside packed(): id(weight) -> (its version, the copy)


def available() -> bool:
    """Whether this torch build has oneDNN's linear product on the CPU."""
    return _OP is not None and torch.backends.mkldnn.is_available()


def _usable(*tensors: Tensor | None) -> bool:
    """Plain float32 CPU tensors outside autocast (not a tensor subclass: FSDP2's sharded ``DTensor``
    weights, which its forward replaces by gathered plain ones, are left to torch)."""
    return available() and not torch.is_autocast_enabled("cpu") and all(
        t is None or (type(t) in _PLAIN and t.dtype == torch.float32 and t.device.type == "cpu"
                      and t.layout == torch.strided)
        for t in tensors)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` for ``x`` (..., in), ``weight`` (out, in) (strided views are fine) or its
    reordered copy: through oneDNN when the operands are float32 CPU tensors, else ``F.linear``."""
    if weight.layout != torch.strided or _usable(x, weight, bias):
        flat = x.reshape(-1, x.shape[-1])  # (N, in)
        out = _OP(flat, weight, bias, "none", [], "")  # (N, out)
        return out.view(*x.shape[:-1], out.shape[-1])
    return torch.nn.functional.linear(x, weight, bias)


def mm(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` for matrices ``a`` (n, k), ``b`` (k, m): oneDNN's product of ``a`` and ``b.T``'s view."""
    return linear(a, b.t())


class Linear(torch.autograd.Function):
    """``x @ W.T + b`` with its gradients, each product through oneDNN (:func:`linear`, :func:`mm`)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        g = grad.reshape(-1, grad.shape[-1])  # (N, out)
        grad_x = linear(grad, weight.t()) if need_x else None  # (..., in) = g W
        grad_w = mm(g.t(), x.reshape(-1, x.shape[-1])) if need_w else None  # (out, in) = g^T x
        grad_b = g.sum(0) if need_b and ctx.has_bias else None  # (out,)
        return grad_x, grad_w, grad_b


def eligible(module: torch.nn.Module) -> bool:
    """Whether :func:`apply` switches ``module`` (see the module docstring)."""
    if type(module) is not torch.nn.Linear:
        return False
    w = module.weight
    return type(w) is torch.nn.Parameter and w.device.type == "cpu" and w.dtype == torch.float32


def _forward(self: torch.nn.Linear, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
    """A switched layer's forward (bound to the layer, so that a deep copy of the model stays right)."""
    w, b = self.weight, self.bias
    if args or kwargs or not _usable(x, w, b):
        own = getattr(self, _OWN)  # an instance forward set before apply(), else the class's
        return own(x, *args, **kwargs) if own is not None else type(self).forward(self, x, *args, **kwargs)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, w, b)):
        return Linear.apply(x, w, b)
    found = _reordered.get(id(w))
    return linear(x, found[1] if found is not None and found[0] == w._version else w, b)


def apply(model: torch.nn.Module) -> int:
    """Switch ``model``'s eligible linear layers to oneDNN (idempotent; see the module docstring).
    Returns how many layers are switched."""
    n = 0
    for module in model.modules():
        if eligible(module):
            if not hasattr(module, _OWN):
                setattr(module, _OWN, module.__dict__.get("forward"))
                module.forward = types.MethodType(_forward, module)
            _switched[id(module.weight)] = weakref.ref(module.weight)
            n += 1
    return n


def remove(model: torch.nn.Module) -> int:
    """Undo :func:`apply` (each layer's own forward again). Returns how many layers were restored."""
    n = 0
    for module in model.modules():
        if hasattr(module, _OWN):
            own = getattr(module, _OWN)
            if own is None:
                del module.forward  # the class's forward again
            else:
                module.forward = own
            delattr(module, _OWN)
            _switched.pop(id(module.weight), None)
            n += 1
    return n


def switched(model: torch.nn.Module) -> bool:
    """Whether :func:`apply` switched any layer of ``model``."""
    return any(hasattr(m, _OWN) for m in model.modules())


def active(weight: Tensor) -> bool:
    """Whether ``weight``'s layer was switched by :func:`apply` (the output layer's products of
    :mod:`ladtrain.logprobs` then go through oneDNN too)."""
    found = _switched.get(id(weight))
    return found is not None and found() is weight


@contextlib.contextmanager
def packed(model: torch.nn.Module, rows: int = 16) -> Iterator[int]:
    """Inside: the switched layers of ``model`` multiply by weights reordered for about ``rows`` rows
    (no gradients); freed on exit. Yields how many weights were reordered."""
    mine: list[int] = []
    try:
        for module in model.modules():
            w = getattr(module, "weight", None)
            if hasattr(module, _OWN) and id(w) not in _reordered and _usable(w):
                _reordered[id(w)] = (w._version, torch.ops.mkldnn._reorder_linear_weight(w.detach(), rows))
                mine.append(id(w))
        yield len(mine)
    finally:
        for key in mine:
            _reordered.pop(key, None)


def product_times(layer: torch.nn.Linear, rows: int, calls: int = 3) -> tuple[float, float]:
    """Seconds of ``layer``'s product with ``rows`` random rows through ``F.linear`` and through oneDNN
    (reordered weight below 64 rows, as :func:`packed` does while decoding): medians of ``calls``
    interleaved calls after a warm-up of each; torch's global generator is not touched."""
    w, b = layer.weight.detach(), None if layer.bias is None else layer.bias.detach()
    x = torch.randn(rows, w.shape[1], dtype=w.dtype, generator=torch.Generator().manual_seed(0))
    weight = torch.ops.mkldnn._reorder_linear_weight(w, rows) if rows < 64 else w
    return transposed_linears.interleaved(lambda: torch.nn.functional.linear(x, w, b),
                                          lambda: linear(x, weight, b), calls)


def _measure(shapes: dict[tuple, tuple[int, torch.nn.Linear]], rows: tuple[int, ...]) -> bool:
    own = through = 0.0
    with torch.no_grad():
        for count, layer in shapes.values():
            for r in rows:
                a, b = product_times(layer, r)
                own, through = own + count * a / r, through + count * b / r  # per token
    return through <= MARGIN * own


def pays(model: torch.nn.Module, rows: int, new_tokens: int = 16, store=None) -> bool:
    """Whether oneDNN makes ``model``'s linear products faster on this machine: one decoding step's
    products at ``rows`` live rows and the update's at ``rows x new_tokens`` rows (at most
    :data:`UPDATE_ROWS`), each shape weighted by its layer
    count and the rows by the tokens they carry, at most :data:`MARGIN` of ``F.linear``'s time. Measured
    once per shapes, rows and threads in a process and remembered in ``store`` (a JSON file of this
    machine's answers, see :func:`ladtrain.transposed_linears.remembered`)."""
    if not available():
        return False
    shapes = {k: v for k, v in transposed_linears.shapes(model).items() if k[-1] == torch.float32}
    if not shapes or rows < 1:
        return False
    measure_rows = (rows, min(UPDATE_ROWS, rows * max(1, new_tokens)))
    return transposed_linears.remembered("onednn", shapes, measure_rows, store,
                                         lambda: _measure(shapes, measure_rows))


__all__ = ["UPDATE_ROWS", "Linear", "active", "apply", "available", "eligible", "linear", "mm", "packed",
           "pays", "product_times", "remove", "switched"]
