"""Losses the trainer can use: adapters only, no maths here.

LAD is :func:`ladtheory.objective.lad_loss` itself (``ladtrain.losses.lad_loss is
ladtheory.objective.lad_loss``; tested); the GRPO family comes from :mod:`ladtrain.baselines`.

A loss is picked by a spec string (``--loss``):

* ``lad`` (= ``lad:js``), ``lad:<divergence>`` (any name of ``ladtheory.divergences.names()``, or
  ``alpha:<a>``): the LAD loss with ``eta`` and ``level`` from the config;
* ``grpo``: GRPO's clipped surrogate (``clip_eps``, ``clip_eps_high`` from the config).

Each spec resolves to a small frozen :class:`Loss` whose call takes a frozen :class:`LossInputs` and the
hyperparameter source (the run config: anything with the attributes the entry reads) and returns
``(loss, terms)``. ``needs_ref`` / ``needs_log_z`` tell the trainer which optional inputs to supply.
To add a loss, add one entry to :data:`FAMILIES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import Tensor

from ladtheory import divergences
from ladtheory.objective import lad_loss
from ladtrain.baselines import grpo_loss


class LossError(ValueError):
    """An unknown loss spec (a user mistake: one line naming --loss)."""


@dataclass(frozen=True)
class LossInputs:
    """What a loss may read. Shapes: B sequences, T completion tokens."""

    logp: Tensor  # (B, T) log pi_theta of the sampled tokens (with grad)
    logp_old: Tensor  # (B, T) log pi_old (the rollout policy), detached
    advantages: Tensor  # (B,)
    mask: Tensor  # (B, T) 1 on completion tokens
    logp_ref: Tensor | None = None  # (B, T) log pi_ref of a frozen reference model (when needs_ref)
    log_z: Tensor | None = None  # (B,) a learned log-partition per sequence's prompt (when needs_log_z)


@dataclass(frozen=True)
class Loss:
    """A resolved loss spec: ``loss(inputs, hp) -> (loss, terms)``."""

    name: str
    fn: Callable[[LossInputs, Any], tuple[Tensor, dict[str, Tensor]]]
    needs_ref: bool = False
    needs_log_z: bool = False

    def __call__(self, inputs: LossInputs, hp: Any) -> tuple[Tensor, dict[str, Tensor]]:
        return self.fn(inputs, hp)


@dataclass(frozen=True)
class Family:
    """A registry entry: ``make(arg)`` builds the :class:`Loss` for ``name`` or ``name:arg``."""

    make: Callable[[str | None], Loss]
    help: str


def _lad(arg: str | None) -> Loss:
    try:
        divergence = divergences.get(arg or "js").name
    except divergences.DivergenceError as err:
        raise LossError(f"--loss lad:{arg}: {err}") from None

    def fn(x: LossInputs, hp: Any) -> tuple[Tensor, dict[str, Tensor]]:
        return lad_loss(x.logp, x.logp_old, x.advantages, x.mask, divergence=divergence, eta=hp.eta, level=hp.level)

    return Loss(f"lad:{divergence}", fn)


def _no_arg(name: str, fn: Callable[[LossInputs, Any], tuple[Tensor, dict[str, Tensor]]]) -> Callable[[str | None], Loss]:
    def make(arg: str | None) -> Loss:
        if arg:
            raise LossError(f"--loss {name}:{arg}: {name} takes no argument")
        return Loss(name, fn)

    return make


def _grpo(x: LossInputs, hp: Any) -> tuple[Tensor, dict[str, Tensor]]:
    return grpo_loss(x.logp, x.logp_old, x.advantages, x.mask, clip_eps=hp.clip_eps, clip_eps_high=hp.clip_eps_high)


FAMILIES: dict[str, Family] = {
    "lad": Family(_lad, "LAD, lad:<divergence> (default js): ladtheory.objective.lad_loss with --eta, --level"),
    "grpo": Family(_no_arg("grpo", _grpo), "GRPO clipped surrogate with --clip-eps (--clip-eps-high)"),
}


def get(spec: str) -> Loss:
    """Resolve ``name`` or ``name:arg`` (e.g. ``lad``, ``lad:tv``, ``grpo``) to a :class:`Loss`."""
    name, _, arg = spec.partition(":")
    if name not in FAMILIES:
        raise LossError(f"--loss: unknown loss {spec!r}; known: {', '.join(FAMILIES)} (lad:<divergence>)")
    return FAMILIES[name].make(arg or None)


__all__ = ["FAMILIES", "Family", "Loss", "LossError", "LossInputs", "get", "lad_loss"]
