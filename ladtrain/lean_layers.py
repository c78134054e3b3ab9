"""Lean layers: the training forward keeps fewer activations for the backward pass, with the same values
and the same gradients, bit for bit.

Without gradient checkpointing, most of a step's memory is what autograd saves for the backward pass,
and in a Llama-family decoder layer much of it is cheap to recompute:

* **the gated MLP**, ``down(act(gate(x)) * up(x))``: autograd saves ``gate(x)`` (for ``act``'s
  backward), ``up(x)`` and ``s = act(gate(x))`` (for the product's), and ``h = s * up(x)`` (for
  ``down``'s weight gradient): four tensors of the intermediate width per position. :func:`lean_mlp`
  keeps the first two and replaces ``s`` and ``h`` by a recipe that recomputes them from those two when
  the backward pass asks for them (:func:`torch.autograd.graph.saved_tensors_hooks`). The recomputation
  runs the same operations on the same inputs, so it returns the same bits, and the gradients are
  autograd's own formulas on them: nothing about the arithmetic changes. At the SmolLM2-135M shape
  (intermediate 1536, 30 layers) this is 12 KB per position and layer, about 0.5 GB at 1,350 positions;
* **RMSNorm**: autograd saves the input and the normalised input; the normalised one is recomputed
  (non-reentrant :func:`torch.utils.checkpoint.checkpoint` of the norm alone, which saves only its
  input). Two norms per layer, 2.3 KB per position and layer each at hidden 576.

The extra work is elementwise (one ``act``, one product and two norms per layer, recomputed in the
backward pass), against matrix products that dominate the step.

:func:`apply` switches the lean forwards on for a model's modules that have this structure (an ``MLP``
with ``gate_proj``, ``up_proj``, ``down_proj`` and ``act_fn``; an ``RMSNorm`` class) and leaves every other
module alone; :func:`remove` restores the original forwards. Outside autograd (generation, evaluation,
``torch.no_grad``) the original forward runs unchanged. With gradient checkpointing on the layer
already recomputes everything in backward, so :func:`ladtrain.models.enable_gradient_checkpointing`
removes the lean forwards (saved-tensor hooks do not nest with the checkpoint's own).

The trainer switches them on only where :func:`pays` (MLPs at least :data:`MIN_WIDTH` wide: measured
faster at the SmolLM2-135M shape, slower at the 6.4M one).

Exactness is tested bit for bit in float32 and float64, values and every parameter's gradient, against
the same model without lean layers, and by a whole training run (``tests/train/test_lean_layers.py``).
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

_ORIGINAL = "_lad_original_forward"  # the module's own forward, kept while a lean one is on


def _storage(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


class _Recipe:
    """A saved tensor that was not kept: ``which`` ("s" or "h") of an MLP, recomputed from ``gate`` and
    ``up`` as a view with the saved tensor's size, strides and offset."""

    __slots__ = ("act", "gate", "up", "which", "size", "stride", "offset")

    def __init__(self, act, gate, up, which: str, t: torch.Tensor) -> None:
        self.act, self.gate, self.up, self.which = act, gate, up, which
        self.size, self.stride, self.offset = t.size(), t.stride(), t.storage_offset()

    def unpack(self) -> torch.Tensor:
        with torch.no_grad():
            s = self.act(self.gate)
            full = s if self.which == "s" else s * self.up
        return full.as_strided(self.size, self.stride, self.offset)


def lean_mlp(self, x: torch.Tensor) -> torch.Tensor:
    """``down_proj(act_fn(gate_proj(x)) * up_proj(x))`` that saves ``gate`` and ``up`` only (see the module
    docstring)."""
    if not torch.is_grad_enabled():
        return getattr(self, _ORIGINAL)(x)
    gate, up = self.gate_proj(x), self.up_proj(x)
    act = self.act_fn
    gate_d, up_d = gate.detach(), up.detach()  # what the recipe holds: the same storage, no graph
    recomputed: dict[int, str] = {}  # storage address of s and h while they are alive -> their name

    def pack(t: torch.Tensor) -> Any:
        which = recomputed.get(_storage(t))
        return t if which is None else _Recipe(act, gate_d, up_d, which, t)

    def unpack(p: Any) -> torch.Tensor:
        return p.unpack() if isinstance(p, _Recipe) else p

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        s = act(gate)
        recomputed[_storage(s)] = "s"
        h = s * up
        recomputed[_storage(h)] = "h"
        out = self.down_proj(h)
    return out


def lean_norm(self, hidden_states: torch.Tensor) -> torch.Tensor:
    """The norm's own forward, checkpointed alone: only its input is saved."""
    original = getattr(self, _ORIGINAL)
    if not (torch.is_grad_enabled() and hidden_states.requires_grad):
        return original(hidden_states)
    return checkpoint(original, hidden_states, use_reentrant=False, preserve_rng_state=False)


def is_gated_mlp(m: torch.nn.Module) -> bool:
    """A Llama-family MLP: ``down_proj(act_fn(gate_proj(x)) * up_proj(x))`` (also what packing packs)."""
    return all(hasattr(m, a) for a in ("gate_proj", "up_proj", "down_proj", "act_fn"))


def _is_rms_norm(m: torch.nn.Module) -> bool:
    return type(m).__name__.endswith("RMSNorm")


def targets(model: torch.nn.Module) -> list[tuple[torch.nn.Module, Any]]:
    """The modules :func:`apply` changes, each with its lean forward."""
    found = []
    for m in model.modules():
        if is_gated_mlp(m):
            found.append((m, lean_mlp))
        elif _is_rms_norm(m):
            found.append((m, lean_norm))
    return found


MIN_WIDTH = 1024  # the narrowest MLP for which the trainer switches them on (:func:`pays`)


def pays(model: torch.nn.Module) -> bool:
    """Whether lean layers are worth their cost for ``model``: its widest gated MLP has at least
    :data:`MIN_WIDTH` intermediate units. The saving grows with the width and the recomputation's cost is
    mostly per call, so narrow models lose. Measured (``benchmarks/step_profile.py --lean-ablation`` and
    four interleaved updates of one rollout per setting): at the SmolLM2-135M shape (width 1536) the step
    was 1.09x and 1.24x faster with them in two runs and its peak memory 0.84-0.85 of the step without
    them; at the 6.4M built-in shape (width 688) the update took 1.11x longer (2.38 s against 2.14 s,
    medians of 6), for 0.88 of the memory. The trainer's default model (width 352) is therefore left
    alone."""
    widths = [getattr(m.gate_proj, "out_features", 0) for m, lean in targets(model) if lean is lean_mlp]
    return bool(widths) and max(widths) >= MIN_WIDTH


def apply(model: torch.nn.Module) -> int:
    """Switch the lean forwards on (idempotent); returns how many modules have one."""
    count = 0
    for module, lean in targets(model):
        if not hasattr(module, _ORIGINAL):
            setattr(module, _ORIGINAL, module.forward)
            module.forward = types.MethodType(lean, module)
        count += 1
    return count


def remove(model: torch.nn.Module) -> int:
    """Restore every original forward; returns how many were restored."""
    count = 0
    for m in model.modules():
        if hasattr(m, _ORIGINAL):
            del m.forward  # the instance attribute; the class's forward shows again
            delattr(m, _ORIGINAL)
            count += 1
    return count


def active(model: torch.nn.Module) -> bool:
    """Whether any module of ``model`` runs a lean forward."""
    return any(hasattr(m, _ORIGINAL) for m in model.modules())


__all__ = ["MIN_WIDTH", "apply", "remove", "active", "is_gated_mlp", "pays", "targets", "lean_mlp",
           "lean_norm"]
