"""The sampler's linear layers through transposed weight copies, where this machine runs them faster.

``nn.Linear`` computes ``x @ W.T`` with its weight ``W`` stored (out, in), so the matrix product receives
a transposed operand. Decoding multiplies every weight by few rows (one per live sequence), and whether
that is faster through a contiguous (in, out) copy of ``W`` depends on the CPU (``benchmarks/linear_rows.py``,
one thread, medians of 7 calls): on one Intel Xeon machine the copy was 1.4-2.8x faster at SmolLM2-135M's
MLP products at 4-16 rows (576 -> 1536 at 15 rows: 0.57 ms against 0.24 ms) and 1.2-2.0x at its output
layer (576 -> 49,152); on one AMD EPYC machine it was 0.71-0.93x as fast at the same sizes. At the
update's 1,281 rows both are equal. So the sampler does not assume either: :func:`pays` measures it.

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
* **When** (``enabled=None``, the sampler's default): :func:`pays` times, for every distinct weight shape
  of the model, ``F.linear`` against the copy at the decode's row counts (the batch and half of it),
  interleaved, and switches the copies on only if the products of one decoding step, weighted by how many
  layers have each shape, take at most :data:`MARGIN` of their time through ``F.linear``. The answer is
  remembered per shapes, rows, dtype and thread count, so a process measures once (0.6 s at 135M: the
  output layer's products dominate), and the trainer keeps it in its cache folder
  (``transposed_linears.json``, by CPU and torch version), so that later runs on the machine decide the
  same without measuring, and in ``run.json`` (``sampler_transposed``), which ``--resume`` reads.
* **Cost**: one pass over the linear weights per rollout, and one more copy of them in memory while
  sampling (540 MB at 135M: below the update's peak, so the step's peak does not move).
"""

from __future__ import annotations

import contextlib
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import Tensor

from ladtrain import atomic

DTYPES = (torch.float32, torch.float64)
MARGIN = 0.9  # pays(): the copies' products must take at most this share of F.linear's
decided: dict[tuple, bool] = {}  # pays()'s answers in this process, by (shapes, rows, dtype, threads)


def eligible(module: torch.nn.Module) -> bool:
    """Whether :func:`transposed_linears` gives ``module`` a transposed copy (see the module docstring)."""
    if type(module) is not torch.nn.Linear:
        return False
    w = module.weight
    return type(w) is torch.nn.Parameter and w.device.type == "cpu" and w.dtype in DTYPES


def shapes(model: torch.nn.Module) -> dict[tuple, tuple[int, torch.nn.Linear]]:
    """The products of one decoding step: for each (out, in, has bias, dtype) of the eligible layers, how
    many layers have it and one of them."""
    found: dict[tuple, tuple[int, torch.nn.Linear]] = {}
    for m in model.modules():
        if eligible(m):
            key = (*m.weight.shape, m.bias is not None, m.weight.dtype)
            count, first = found.get(key, (0, m))
            found[key] = (count + 1, first)
    return found


def product_times(layer: torch.nn.Linear, rows: int, calls: int = 3) -> tuple[float, float]:
    """Seconds of ``layer``'s product with ``rows`` random rows through ``F.linear`` and through a copy
    of its weight: the median of ``calls`` interleaved calls each, after one warm-up call of each. The
    rows come from a generator of its own: torch's global one (the sampler's draws) is not touched."""
    w, b = layer.weight.detach(), None if layer.bias is None else layer.bias.detach()
    copy = _copy(w)
    x = torch.randn(rows, w.shape[1], dtype=w.dtype, generator=torch.Generator().manual_seed(0))  # own RNG

    def own() -> Tensor:
        return torch.nn.functional.linear(x, w, b)

    def through() -> Tensor:
        return torch.mm(x, copy) if b is None else torch.addmm(b, x, copy)

    return interleaved(own, through, calls)


def interleaved(own: Callable[[], Any], other: Callable[[], Any], calls: int = 3) -> tuple[float, float]:
    """Median seconds of ``calls`` calls of ``own`` and of ``other``, interleaved, after one warm-up call of
    each (the machine's load drifts, so the two are timed in turn)."""
    own(), other()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(calls):
        for i, f in enumerate((own, other)):
            start = time.perf_counter()
            f()
            times[i].append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``; else what :mod:`platform` says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def pays(model: torch.nn.Module, rows: int, store: Path | None = None) -> bool:
    """Whether the copies make ``model``'s decoding products faster on this machine at ``rows`` live
    rows (see the module docstring: measured once per shapes, rows, dtype and threads, then remembered).
    ``store``: a JSON file of earlier answers on this machine (by CPU, torch version, threads, rows and
    shapes), read before measuring and written after, so that later runs here decide the same."""
    found = shapes(model)
    if not found or rows < 1:
        return False
    return remembered("transposed", found, (rows,), store, lambda: _measure(found, rows))


def remembered(kind: str, shapes: dict[tuple, tuple[int, torch.nn.Linear]], rows: tuple[int, ...],
               store: Path | None, measure: Callable[[], bool]) -> bool:
    """``measure()``'s answer for a ``kind`` of products of ``shapes`` at ``rows``: measured once per
    process (by shapes, rows and thread count) and, with a ``store`` (a JSON file), kept there by CPU,
    torch version, threads, rows and shapes, read before measuring and written after, so that later runs
    on this machine decide the same without measuring."""
    counts = tuple(sorted(((k, n) for k, (n, _) in shapes.items()), key=str))
    key = (kind, counts, rows, torch.get_num_threads())
    if store is None:
        if key not in decided:
            decided[key] = measure()
        return decided[key]
    counted = " + ".join(map(str, rows))
    name = ("" if kind == "transposed" else f"{kind} | ") + (
        f"{cpu_name()} | torch {torch.__version__} | {key[3]} threads | {counted} rows | {key[1]}")
    stored = _read(store)
    if key not in decided:
        decided[key] = stored[name] if isinstance(stored.get(name), bool) else measure()
    if stored.get(name) is not decided[key]:
        try:
            atomic.write_atomically(store, json.dumps({**stored, name: decided[key]}, indent=1))
        except atomic.WriteError:  # no or a read-only cache folder: measured again next time
            pass
    return decided[key]


def _measure(shapes: dict[tuple, tuple[int, torch.nn.Linear]], rows: int) -> bool:
    """:func:`pays`'s measurement: one decoding step's products (each shape times its layer count) at
    ``rows`` and half of them, through the copies at most :data:`MARGIN` of their time through F.linear."""
    own = through = 0.0
    with torch.no_grad():
        for count, layer in shapes.values():
            for r in sorted({rows, max(1, (rows + 1) // 2)}):
                a, b = product_times(layer, r)
                own, through = own + count * a, through + count * b
    return through <= MARGIN * own


def _read(store: Path) -> dict:
    try:
        found = json.loads(Path(store).read_text())
    except (OSError, ValueError):  # none yet, or unreadable: measure
        return {}
    return found if isinstance(found, dict) else {}


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
def transposed_linears(model: torch.nn.Module, enabled: bool | None = None,
                       rows: int = 1) -> Iterator[int]:
    """Inside: the eligible linear layers of ``model`` run through transposed weight copies (see the
    module docstring); ``enabled`` None: where :func:`pays` at ``rows`` rows. Yields how many layers
    were switched."""
    if enabled is None:
        enabled = pays(model, rows)
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


__all__ = ["DTYPES", "MARGIN", "decided", "eligible", "interleaved", "pays", "product_times", "remembered",
           "shapes", "transposed_linears"]
