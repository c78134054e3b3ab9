"""Losses the trainer can use: adapters only, no maths here.

LAD is :func:`ladtheory.objective.lad_loss` itself (``ladtrain.losses.lad_loss is
ladtheory.objective.lad_loss``; tested); the baselines come from :mod:`ladtrain.baselines`.

A loss is picked by a spec string (``--loss``):

* ``lad`` (= ``lad:js``), ``lad:<divergence>`` (any name of ``ladtheory.divergences.names()``, or
  ``alpha:<a>``): the LAD loss with ``eta`` and ``level`` from the config;
* ``grpo``: GRPO's clipped surrogate, per-sequence token mean (``clip_eps``, ``clip_eps_high``);
* ``dr_grpo``: the same surrogate summed over tokens and divided by ``B * max_new_tokens`` (Dr. GRPO);
* ``dapo``: the same surrogate, global token mean, clip-higher (``clip_eps_high`` defaults to 0.28);
* ``grpo_tokenmean`` (control): GRPO's surrogate with its symmetric clip, aggregated as ``lad`` at
  ``level="token"`` (global token mean), so ``lad`` vs ``grpo_tokenmean`` differs in the objective alone
  and ``grpo_tokenmean`` vs ``grpo`` in the aggregation alone (``dapo`` without clip-higher);
* ``gspo``: sequence-level length-normalised ratio with GSPO's clip range (3e-4, 4e-4);
* ``flowrl``: FlowRL's trajectory balance (``flowrl_beta``) with a learned log Z head and a frozen
  reference model (the trainer supplies both: ``needs_ref``, ``needs_log_z``);
* ``ladw:<divergence>`` (ablation): GRPO's clipped surrogate, global token mean, with the advantages
  replaced by LAD's effective weights at ratio 1, ``w(A, 1) = -f'(e^{-A/eta})``. At ratio 1 its gradient
  equals LAD's (tested), so ``lad`` vs ``ladw`` isolates LAD's brake (against GRPO's clip) and ``ladw``
  vs ``grpo`` LAD's reweighting of the advantages.

Each spec resolves to a small frozen :class:`Loss` whose call takes a frozen :class:`LossInputs` and the
hyperparameter source (the run config: anything with the attributes the entry reads) and returns
``(loss, terms)``. ``needs_ref`` / ``needs_log_z`` tell the trainer which optional inputs to supply.
``unit`` is the one answer to "what does this loss average over" (``"token"``: a mean over the batch's
completion tokens; ``"sequence"``: a mean over its sequences): the step (:mod:`ladtrain.step`) weights
micro-batches and processes by it so that their gradients add up to the whole batch's exactly.
To add a loss, add one entry to :data:`FAMILIES`, declaring its unit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import torch
from torch import Tensor

from ladtheory import divergences
from ladtheory.objective import effective_weight, lad_loss
from ladtrain.baselines import flowrl_loss, grpo_loss, gspo_loss


class LossError(ValueError):
    """An unknown loss spec (a user mistake: one line naming --loss)."""


@dataclass(frozen=True)
class LossInputs:
    """What a loss may read. Shapes: B sequences, T completion tokens.

    ``logp_old=None`` means on-policy: the rollout policy is the policy being trained, so ``logp_old`` is
    ``logp`` itself, detached (:class:`Loss` fills it in; the same numbers as a separate no-grad pass, one
    forward pass fewer). :meth:`rows` slices every tensor to a micro-batch."""

    logp: Tensor  # (B, T) log pi_theta of the sampled tokens (with grad)
    logp_old: Tensor | None  # (B, T) log pi_old (the rollout policy), detached; None: logp.detach()
    advantages: Tensor  # (B,)
    mask: Tensor  # (B, T) 1 on completion tokens
    logp_ref: Tensor | None = None  # (B, T) log pi_ref of a frozen reference model (when needs_ref)
    log_z: Tensor | None = None  # (B,) a learned log-partition per sequence's prompt (when needs_log_z)

    def rows(self, s: slice) -> LossInputs:
        """The rows ``s`` of every input (``None`` stays ``None``)."""
        return LossInputs(*(None if t is None else t[s] for t in (self.logp, self.logp_old, self.advantages,
                                                                   self.mask, self.logp_ref, self.log_z)))


def _level_unit(hp: Any) -> str:
    """LAD's unit: a global token mean at ``level="token"``, a mean over sequences at the sequence levels."""
    return "token" if getattr(hp, "level", "token") == "token" else "sequence"


def _unit(name: str) -> Callable[[Any], str]:
    return lambda hp: name


@dataclass(frozen=True)
class Loss:
    """A resolved loss spec: ``loss(inputs, hp) -> (loss, terms)``; ``unit(hp)`` is what it averages over,
    ``"token"`` or ``"sequence"`` (exact gradient accumulation and data parallelism rely on it)."""

    name: str
    fn: Callable[[LossInputs, Any], tuple[Tensor, dict[str, Tensor]]]
    unit: Callable[[Any], str]
    needs_ref: bool = False
    needs_log_z: bool = False
    uses_eta: bool = False  # reads the config's eta (an eta sweep varies it)

    def __call__(self, inputs: LossInputs, hp: Any) -> tuple[Tensor, dict[str, Tensor]]:
        if inputs.logp_old is None:  # on-policy: the rollout policy is the current one
            inputs = replace(inputs, logp_old=inputs.logp.detach())
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
        return lad_loss(
            x.logp, x.logp_old, x.advantages, x.mask, divergence=divergence, eta=hp.eta, level=hp.level
        )

    return Loss(f"lad:{divergence}", fn, _level_unit, uses_eta=True)


def _ladw(arg: str | None) -> Loss:
    try:
        divergence = divergences.get(arg or "js").name
    except divergences.DivergenceError as err:
        raise LossError(f"--loss ladw:{arg}: {err}") from None

    def fn(x: LossInputs, hp: Any) -> tuple[Tensor, dict[str, Tensor]]:
        A = x.advantages.detach()
        w = effective_weight(A.double(), torch.zeros_like(A, dtype=torch.float64), divergence, hp.eta).to(
            x.logp.dtype
        )
        loss, terms = grpo_loss(
            x.logp, x.logp_old, w, x.mask, clip_eps=hp.clip_eps, clip_eps_high=hp.clip_eps_high, norm="dapo"
        )
        return loss, terms

    return Loss(f"ladw:{divergence}", fn, _unit("token"), uses_eta=True)


def _no_arg(name: str, fn: Callable[[LossInputs, Any], tuple[Tensor, dict[str, Tensor]]],
            unit: str) -> Callable[[str | None], Loss]:
    def make(arg: str | None) -> Loss:
        if arg:
            raise LossError(f"--loss {name}:{arg}: {name} takes no argument")
        return Loss(name, fn, _unit(unit))

    return make


def _grpo_family(norm: str, default_high: float | None = None):
    def fn(x: LossInputs, hp: Any) -> tuple[Tensor, dict[str, Tensor]]:
        high = hp.clip_eps_high if hp.clip_eps_high is not None else default_high
        max_len = (
            hp.max_new_tokens if norm == "dr_grpo" else None
        )  # Dr. GRPO's constant: the generation budget
        return grpo_loss(x.logp, x.logp_old, x.advantages, x.mask, clip_eps=hp.clip_eps, clip_eps_high=high,
                         norm=norm, max_len=max_len)

    return fn


def _gspo(x: LossInputs, hp: Any) -> tuple[Tensor, dict[str, Tensor]]:
    return gspo_loss(x.logp, x.logp_old, x.advantages, x.mask)


def _flowrl(arg: str | None) -> Loss:
    if arg:
        raise LossError(f"--loss flowrl:{arg}: flowrl takes no argument")

    def fn(x: LossInputs, hp: Any) -> tuple[Tensor, dict[str, Tensor]]:
        if x.logp_ref is None or x.log_z is None:
            raise LossError("--loss flowrl: needs logp_ref and log_z from the trainer")
        return flowrl_loss(x.logp, x.logp_ref, x.logp_old, x.advantages, x.mask, x.log_z, beta=hp.flowrl_beta)

    return Loss("flowrl", fn, _unit("sequence"), needs_ref=True, needs_log_z=True)


FAMILIES: dict[str, Family] = {
    "lad": Family(
        _lad, "LAD, lad:<divergence> (default js): ladtheory.objective.lad_loss with --eta, --level"
    ),
    # grpo: a mean over sequences of per-sequence token means
    "grpo": Family(
        _no_arg("grpo", _grpo_family("grpo"), "sequence"),
        "GRPO clipped surrogate, per-sequence token mean, --clip-eps (--clip-eps-high)",
    ),
    # dr_grpo: (token sum / max_new_tokens) averaged over sequences
    "dr_grpo": Family(
        _no_arg("dr_grpo", _grpo_family("dr_grpo"), "sequence"),
        "Dr. GRPO: clipped surrogate, token sum / (B * --max-new-tokens)",
    ),
    # grpo_tokenmean: the control arm with GRPO's objective and LAD's (token-level) aggregation
    "grpo_tokenmean": Family(
        _no_arg("grpo_tokenmean", _grpo_family("dapo"), "token"),
        "control: GRPO clipped surrogate (symmetric --clip-eps unless --clip-eps-high), "
        "global token mean as lad",
    ),
    "dapo": Family(
        _no_arg("dapo", _grpo_family("dapo", default_high=0.28), "token"),
        "DAPO: clipped surrogate, global token mean, clip-higher (--clip-eps-high, default 0.28)",
    ),
    "gspo": Family(
        _no_arg("gspo", _gspo, "sequence"), "GSPO: clip (3e-4, 4e-4) on the length-normalised sequence ratio"
    ),
    "flowrl": Family(
        _flowrl, "FlowRL trajectory balance (--flowrl-beta), learned log Z head, frozen reference"
    ),
    "ladw": Family(_ladw, "ablation ladw:<divergence>: GRPO clip with LAD's effective weights at ratio 1"),
}


def get(spec: str) -> Loss:
    """Resolve ``name`` or ``name:arg`` (e.g. ``lad``, ``lad:tv``, ``grpo``) to a :class:`Loss`."""
    name, _, arg = spec.partition(":")
    if name not in FAMILIES:
        raise LossError(f"--loss: unknown loss {spec!r}; known: {', '.join(FAMILIES)} (lad:<divergence>)")
    return FAMILIES[name].make(arg or None)


__all__ = ["FAMILIES", "Family", "Loss", "LossError", "LossInputs", "get", "lad_loss"]
