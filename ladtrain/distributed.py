r"""Beyond one process: ``torchrun`` data parallelism (DDP or FSDP2): the process group, this rank's
device and prompts, sums and means over ranks, and the parallel wrappers.

Launch (CPU: gloo backend; CUDA: nccl, one GPU per process)::

    torchrun --nproc-per-node N -m ladtrain train --parallel ddp ...

**What is exact.** DDP and FSDP2 *average* gradients over the ``W`` processes. The step
(:func:`ladtrain.step.update`) scales each rank's micro-batch losses so that the average is exactly the
gradient of the whole step's batch on one process (the scale, and why, are in :mod:`ladtrain.step`;
tested with two real processes: ``tests/train/test_distributed.py``).

**Prompts.** Every rank draws the same step batch from the same seeded RNG and keeps the rows
``rank, rank + W, ...`` (:func:`shard`): no prompt is used twice, none is dropped, and the union is what one
process would have drawn. ``prompts_per_step`` must be divisible by ``W``.

**Rank 0** alone writes metrics, the final model and plots; every rank runs evaluation (needed for FSDP2,
whose forward passes are collective) on the same seeded stream. Resumable checkpoints
(:mod:`ladtrain.checkpoint`) are collective: every rank's RNG states are gathered, and under FSDP2 every
rank writes its own shard of model and optimizer (:func:`save_shards`).

Strategies (:data:`STRATEGIES`): ``none``; ``ddp`` (``DistributedDataParallel``); ``fsdp2``
(``torch.distributed.fsdp.fully_shard`` on every decoder layer, then the root: parameters sharded across
ranks, ZeRO-3-like; generation runs with ``synced_gpus`` because each forward is collective).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor

from ladtrain.config import ConfigError
from ladtrain.models import merged


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


def pick_device(device: str = "auto", world: World = World()) -> torch.device:
    """The device of ``--device`` (``auto``: CUDA when available, else CPU) for this rank: under
    ``torchrun`` with CUDA, ``cuda:LOCAL_RANK``."""
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda and world.is_distributed:
        return torch.device(f"cuda:{world.local_rank}")
    if device == "auto":
        return torch.device("cuda" if use_cuda else "cpu")
    return torch.device(device)


def setup(device: str = "auto") -> tuple[World, torch.device]:
    """Join the process group when launched by ``torchrun`` (gloo on CPU, nccl on CUDA) and pick this
    rank's device (:func:`pick_device`)."""
    world = world_from_env()
    dev = pick_device(device, world)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world.is_distributed and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return world, dev


def teardown() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def shard(items: Sequence[Any], world: World) -> list[Any]:
    """Rows ``rank, rank + W, ...`` of ``items``: disjoint across ranks, their union is ``items``."""
    if len(items) % world.size:
        raise DistributedError(
            f"--prompts-per-step {len(items)} is not divisible by the {world.size} processes"
        )
    return list(items[world.rank :: world.size])


def check_batch(prompts_per_step: int, world: World) -> None:
    """Fail at start-up (not after the warm-up) when the step's prompts cannot be split evenly."""
    shard(range(prompts_per_step), world)


def all_sum(value: Tensor | float, world: World) -> Tensor:
    """Sum of ``value`` over ranks (a float64 0-dim tensor; no communication on one process)."""
    t = torch.as_tensor(value, dtype=torch.float64).detach().clone().reshape(())
    if world.is_distributed:
        backend = torch.distributed.get_backend()
        device = (
            torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        )
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


def _none(
    model: torch.nn.Module, world: World, device: torch.device
) -> tuple[torch.nn.Module, torch.nn.Module]:
    return model, model


def _ddp(
    model: torch.nn.Module, world: World, device: torch.device
) -> tuple[torch.nn.Module, torch.nn.Module]:
    if not world.is_distributed:
        return model, model
    from torch.nn.parallel import DistributedDataParallel

    wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return wrapped, model  # generation uses the bare module (no gradient, no collective)


def _fsdp2(
    model: torch.nn.Module, world: World, device: torch.device
) -> tuple[torch.nn.Module, torch.nn.Module]:
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


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("none", _none, "one process (no wrapper)"),
        Strategy("ddp", _ddp, "DistributedDataParallel: a full replica per process, gradients all-reduced"),
        Strategy(
            "fsdp2", _fsdp2, "torch FSDP2 fully_shard per decoder layer: parameters sharded across processes"
        ),
    )
}


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
# What resumable checkpoints need across ranks (ladtrain.checkpoint writes and reads the folders)


def gather_objects(obj: Any, world: World) -> list[Any]:
    """``obj`` of every rank, in rank order, on every rank (``[obj]`` on one process; a collective call)."""
    if not world.is_distributed:
        return [obj]
    out: list[Any] = [None] * world.size
    torch.distributed.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, world: World) -> Any:
    """Rank 0's ``obj`` on every rank (a collective call; ``obj`` itself on one process)."""
    if not world.is_distributed:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether ``model`` holds only this rank's shard of its parameters (FSDP2 ``fully_shard``)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def reshard(model: torch.nn.Module) -> None:
    """Put FSDP2's sharded parameters back on every module: a forward without backward (generation,
    evaluation) leaves the root's unsharded ones registered, and an optimizer built then, or a state
    dict read then, would see those instead of the trained shards (nothing on a model without FSDP2)."""
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def save_shards(folder: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Write the model's and the optimizer's state with ``torch.distributed.checkpoint`` into ``folder``:
    every rank writes its own shard (``__RANK_0.distcp``), the coordinator (rank 0) the ``.metadata``
    last, after all ranks' writes have succeeded (a collective call; files are fsynced). A failed write
    on any rank raises an ``OSError`` on every rank."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    reshard(model)
    from torch.distributed.checkpoint.api import CheckpointException

    model_state, optimizer_state = get_state_dict(model, optimizer)
    try:
        dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=folder)
    except CheckpointException as err:  # a rank's write failed (disk full, ...): an OSError, one line
        first = next(iter(err.failures.values()))[0] if err.failures else err
        if isinstance(first, OSError) and first.strerror:
            raise OSError(first.errno, first.strerror) from None
        raise OSError(f"{type(first).__name__}: {(str(first).strip() or '?').splitlines()[0]}") from None


def load_shards(folder: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Read :func:`save_shards`' folder into ``model`` and ``optimizer`` (a collective call). DCP
    re-shards on load: each rank reads the slices its own shards need, so the checkpoint may have been
    written by another number of processes (or read on one process, unsharded)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    reshard(model)
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(state, checkpoint_id=folder)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


__all__ = ["STRATEGIES", "DistributedError", "Strategy", "World", "all_sum", "barrier", "broadcast_object",
           "check_batch", "full_state_dict", "gather_objects", "is_sharded", "load_shards", "main_first",
           "mean_over_ranks", "pick_device", "plain_model", "prepare", "reshard", "save_shards", "setup",
           "shard", "teardown", "world_from_env"]
