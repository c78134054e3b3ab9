r"""Beyond one process: ``torchrun`` data parallelism (DDP or FSDP2), gradient accumulation, LoRA, and the
memory options the trainer switches on with one line each.

Launch (CPU: gloo backend; CUDA: nccl, one GPU per process)::

    torchrun --nproc-per-node N -m ladtrain train --parallel ddp ...

**What is exact.** Every loss the trainer uses is a mean over *units* of the step's batch: tokens for
LAD at ``level="token"`` (a global token mean), sequences for LAD's sequence levels and for GRPO (a mean
over sequences). Write ``n_p`` for the units held by one piece of the batch (a rank's shard, or a
micro-batch of it) and ``N`` for the units of the whole step's batch. The piece's loss is its own mean
times

.. math::  c_p = W \, n_p / N,

where ``W`` is the number of processes: DDP and FSDP2 *average* gradients over ranks and accumulation
*sums* them over micro-batches, so ``sum_p c_p mean_p / W = N^{-1} sum_units l`` -- exactly the loss of
the whole batch on one process, hence the same gradient and the same optimiser step (tested with two
real processes: ``tests/train/test_distributed.py``). ``N`` is one all-reduce of the unit counts.

**Prompts.** Every rank draws the same step batch from the same seeded RNG and keeps the rows
``rank, rank + W, ...`` (:func:`shard`): no prompt is used twice, none is dropped, and the union is what one
process would have drawn. ``prompts_per_step`` must be divisible by ``W``.

**Rank 0** alone writes metrics, checkpoints and plots; every rank runs evaluation (needed for FSDP2,
whose forward passes are collective) on the same seeded stream.

Strategies (:data:`STRATEGIES`): ``none``; ``ddp`` (``DistributedDataParallel``); ``fsdp2``
(``torch.distributed.fsdp.fully_shard`` on every decoder layer, then the root: parameters sharded across
ranks, ZeRO-3-like; generation runs with ``synced_gpus`` because each forward is collective).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor

from ladtrain.config import ConfigError
from ladtrain.rollout import Rollout, token_logprobs


class DistributedError(ConfigError):
    """A launch or option that cannot work (a user mistake: one line, exit code 2)."""


@dataclass(frozen=True)
class World:
    """This process's place among the ``size`` processes of a ``torchrun`` job."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.size > 1


def world_from_env(env: dict[str, str] | None = None) -> World:
    """The :class:`World` that ``torchrun`` describes in ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``."""
    env = os.environ if env is None else env
    size = int(env.get("WORLD_SIZE", "1"))
    return World(rank=int(env.get("RANK", "0")), size=size, local_rank=int(env.get("LOCAL_RANK", "0")))


def setup(device: str = "auto") -> tuple[World, torch.device]:
    """Join the process group when launched by ``torchrun`` (gloo on CPU, nccl on CUDA) and pick this
    rank's device (``cuda:LOCAL_RANK`` when CUDA is used)."""
    world = world_from_env()
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda and world.is_distributed:
        dev = torch.device(f"cuda:{world.local_rank}")
    elif device == "auto":
        dev = torch.device("cuda" if use_cuda else "cpu")
    else:
        dev = torch.device(device)
    if use_cuda:
        torch.cuda.set_device(dev)
    if world.is_distributed and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo")
    return world, dev


def teardown() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def shard(items: Sequence[Any], world: World) -> list[Any]:
    """Rows ``rank, rank + W, ...`` of ``items``: disjoint across ranks, their union is ``items``."""
    if len(items) % world.size:
        raise DistributedError(f"--prompts-per-step {len(items)} is not divisible by the {world.size} processes")
    return list(items[world.rank :: world.size])


def check_batch(prompts_per_step: int, world: World) -> None:
    """Fail at start-up (not after the warm-up) when the step's prompts cannot be split evenly."""
    shard(range(prompts_per_step), world)


def all_sum(value: Tensor | float, world: World) -> Tensor:
    """Sum of ``value`` over ranks (a float64 0-dim tensor; no communication on one process)."""
    t = torch.as_tensor(value, dtype=torch.float64).detach().clone().reshape(())
    if world.is_distributed:
        backend = torch.distributed.get_backend()
        device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        t = t.to(device)
        torch.distributed.all_reduce(t)
        t = t.cpu()
    return t


def barrier(world: World) -> None:
    if world.is_distributed:
        torch.distributed.barrier()


@contextlib.contextmanager
def main_first(world: World) -> Iterator[None]:
    """Rank 0 runs the block first (filling caches: generated problems, the warmed-up base model), the
    other ranks after it, so no two processes write the same cache file."""
    if not world.is_main:
        barrier(world)
    yield
    if world.is_main:
        barrier(world)


def mean_over_ranks(row: dict[str, Any], world: World) -> dict[str, Any]:
    """Every float/int value of a metrics row averaged over ranks (exact for means over equal shards)."""
    if not world.is_distributed:
        return row
    keys = [k for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    values = torch.tensor([float(row[k]) for k in keys], dtype=torch.float64)
    backend = torch.distributed.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    values = values.to(device)
    torch.distributed.all_reduce(values)
    mean = (values / world.size).cpu().tolist()
    return {**row, **{k: (round(m) if isinstance(row[k], int) else m) for k, m in zip(keys, mean)}}


# --------------------------------------------------------------------------------------------------
# Units of a loss's mean, and the scale that makes pieces of a batch add up to the whole batch


def _lad_unit(hp: Any) -> str:
    return "token" if getattr(hp, "level", "token") == "token" else "sequence"


UNITS: dict[str, Callable[[Any], str]] = {
    "lad": _lad_unit,  # lad_loss: global token mean at level="token", mean over sequences otherwise
    "grpo": lambda hp: "sequence",  # grpo_loss(norm="grpo"): mean over sequences of per-sequence token means
}


def loss_unit(loss_name: str, hp: Any) -> str:
    """``"token"`` or ``"sequence"``: what the loss ``loss_name`` (``lad:js``, ``grpo``) averages over."""
    family = loss_name.partition(":")[0]
    if family not in UNITS:
        raise DistributedError(f"--loss {loss_name}: no averaging unit known for data parallelism or accumulation")
    return UNITS[family](hp)


def count_units(mask: Tensor, unit: str) -> Tensor:
    """Units of a (B, T) mask: its tokens, or its rows."""
    return mask.to(torch.bool).sum() if unit == "token" else torch.tensor(mask.shape[0])


def piece_scale(mask: Tensor, unit: str, total: Tensor | float, world: World) -> float:
    """``c_p = W n_p / N`` (module docstring): the factor on a piece's mean loss."""
    return world.size * float(count_units(mask, unit)) / max(float(total), 1.0)


def micro_batches(rows: int, accumulation: int) -> list[slice]:
    """``accumulation`` contiguous row slices of sizes differing by at most one (none empty)."""
    if accumulation < 1 or accumulation > rows:
        raise DistributedError(f"--grad-accumulation {accumulation} must be between 1 and the {rows} rows per "
                               "process")
    bounds = [round(i * rows / accumulation) for i in range(accumulation + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def rows(rollout: Rollout, s: slice | Tensor) -> Rollout:
    """The rows ``s`` (a slice or a 1-D index tensor) of a rollout, texts included."""
    texts = rollout.texts[s] if isinstance(s, slice) else [rollout.texts[i] for i in s.tolist()]
    return replace(rollout, prompt_ids=rollout.prompt_ids[s], prompt_mask=rollout.prompt_mask[s],
                   completion_ids=rollout.completion_ids[s], completion_mask=rollout.completion_mask[s],
                   texts=list(texts))


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on CUDA when asked; a no-op context otherwise (CPU bf16 matmuls are slow, not tested)."""
    if bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def backward(model: torch.nn.Module, rollout: Rollout, logp_old: Tensor, advantages: Tensor, mask: Tensor,
             loss: Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, dict[str, Tensor]]], *, unit: str,
             world: World, accumulation: int = 1, temperature: float = 1.0, bf16: bool = False
             ) -> tuple[Tensor, dict[str, Tensor]]:
    """Accumulate into ``.grad`` the gradient of the whole step's loss (all ranks' rows together).

    The rows of this rank are split into ``accumulation`` micro-batches; micro-batch ``p`` contributes
    ``c_p * loss(logp_p, logp_old_p, A_p, mask_p)`` (``c_p`` from :func:`piece_scale`), with DDP's
    gradient all-reduce only on the last one. Returns the step's loss value (the same on every rank) and
    the diagnostics of the last micro-batch. Shapes: ``logp_old``/``mask`` (B, T), ``advantages`` (B,).
    """
    total = all_sum(count_units(mask, unit), world)  # N: units of the whole step batch
    pieces = micro_batches(mask.shape[0], accumulation)
    device = mask.device
    value = torch.zeros((), dtype=torch.float64)
    terms: dict[str, Tensor] = {}
    for i, s in enumerate(pieces):
        last = i == len(pieces) - 1
        sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with autocast(device, bf16):
                logp = token_logprobs(model, rows(rollout, s), temperature)  # (b, T)
            piece_loss, terms = loss(logp, logp_old[s], advantages[s], mask[s])
            c = piece_scale(mask[s], unit, total, world)
            (c * piece_loss).backward()
        value += c * piece_loss.detach().double().cpu()
    return all_sum(value, world) / world.size, terms


# --------------------------------------------------------------------------------------------------
# Parallel strategies


def _decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks of a Hugging Face causal LM (``model.model.layers`` for Llama/Qwen/Mistral)."""
    for path in ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers",
                 "base_model.model.model.layers"):  # the last: a peft (LoRA) model around a Llama-style one
        obj: Any = model
        for name in path.split("."):
            obj = getattr(obj, name, None)
            if obj is None:
                break
        if isinstance(obj, torch.nn.ModuleList):
            return list(obj)
    return []


def _none(model: torch.nn.Module, world: World, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    return model, model


def _ddp(model: torch.nn.Module, world: World, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    if not world.is_distributed:
        return model, model
    from torch.nn.parallel import DistributedDataParallel

    wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return wrapped, model  # generation uses the bare module (no gradient, no collective)


def _fsdp2(model: torch.nn.Module, world: World, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    if not world.is_distributed:
        return model, model
    from torch.distributed.fsdp import fully_shard

    for layer in _decoder_layers(model):
        fully_shard(layer)
    fully_shard(model)
    # transformers' generate() then runs with synced_gpus=True (every rank keeps stepping until all are
    # done), which FSDP2 needs because each forward all-gathers parameters.
    model._is_fsdp_managed_module = True
    return model, model


@dataclass(frozen=True)
class Strategy:
    name: str
    wrap: Callable[[torch.nn.Module, World, torch.device], tuple[torch.nn.Module, torch.nn.Module]]
    help: str


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("none", _none, "one process (no wrapper)"),
    Strategy("ddp", _ddp, "DistributedDataParallel: a full replica per process, gradients all-reduced"),
    Strategy("fsdp2", _fsdp2, "torch FSDP2 fully_shard per decoder layer: parameters sharded across processes"),
)}


def prepare(model: torch.nn.Module, strategy: str, world: World, device: torch.device
            ) -> tuple[torch.nn.Module, torch.nn.Module]:
    """``(train_model, generate_model)``: the model wrapped for ``strategy`` and the module to sample with."""
    if strategy not in STRATEGIES:
        raise DistributedError(f"--parallel: unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    return STRATEGIES[strategy].wrap(model, world, device)


def full_state_dict(model: torch.nn.Module, world: World) -> dict[str, Tensor] | None:
    """The full (unsharded) state dict on rank 0 (``None`` elsewhere); a collective call under FSDP2."""
    from torch.distributed.fsdp import FSDPModule

    if isinstance(model, FSDPModule):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return state if world.is_main else None
    module = getattr(model, "module", model)
    return module.state_dict() if world.is_main else None


def plain_model(model: torch.nn.Module, world: World) -> torch.nn.Module | None:
    """On rank 0, an ordinary Hugging Face model holding the trained weights, to ``save_pretrained``
    (``None`` elsewhere; a collective call under FSDP2): DDP's module, LoRA merged into the base weights,
    or FSDP2's gathered state loaded into a fresh CPU copy built from the model's config."""
    from torch.distributed.fsdp import FSDPModule

    if isinstance(model, FSDPModule):
        state = full_state_dict(model, world)
        if not world.is_main:
            return None
        from transformers import AutoModelForCausalLM

        fresh = AutoModelForCausalLM.from_config(model.config)
        fresh.load_state_dict(state)
        return fresh
    if not world.is_main:
        return None
    return merged(getattr(model, "module", model))


# --------------------------------------------------------------------------------------------------
# Memory options


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """Recompute activations in the backward pass (Hugging Face models); ``use_cache`` is turned off for
    training forwards (generation still passes ``use_cache=True`` explicitly)."""
    if not hasattr(model, "gradient_checkpointing_enable"):
        raise DistributedError("--gradient-checkpointing: this model has no gradient_checkpointing_enable()")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if getattr(model, "config", None) is not None:
        model.config.use_cache = False


@dataclass(frozen=True)
class Lora:
    """LoRA adapters through ``peft`` (extra ``lad[lora]``): rank ``r``, scale ``alpha / r``."""

    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def apply_lora(model: torch.nn.Module, lora: Lora) -> torch.nn.Module:
    """Freeze ``model`` and add trainable LoRA adapters on ``lora.target_modules`` that exist in it."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise DistributedError("--lora-r: needs peft (pip install 'lad[lora]')") from None
    present = sorted({name.rsplit(".", 1)[-1] for name, _ in model.named_modules()} & set(lora.target_modules))
    if not present:
        raise DistributedError(f"--lora-r: none of {', '.join(lora.target_modules)} is a module of this model")
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=present,
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def merged(model: torch.nn.Module) -> torch.nn.Module:
    """A plain Hugging Face model to save: LoRA adapters merged into the base weights (in place)."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def trainable_parameters(model: torch.nn.Module) -> Iterator[torch.nn.Parameter]:
    return (p for p in model.parameters() if p.requires_grad)


__all__ = ["STRATEGIES", "UNITS", "DistributedError", "Lora", "Strategy", "World", "all_sum", "apply_lora",
           "autocast", "backward", "barrier", "check_batch", "count_units", "enable_gradient_checkpointing",
           "full_state_dict", "loss_unit", "main_first", "mean_over_ranks", "merged", "micro_batches", "piece_scale",
           "plain_model", "prepare", "rows", "setup", "shard", "teardown", "trainable_parameters", "world_from_env"]
