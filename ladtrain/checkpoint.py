"""Resumable training state: ``RUN/checkpoints/step-NNNNNN/``, every ``--checkpoint-every`` steps (and
when a fault stops the run), the newest ``--keep-checkpoints`` kept.

What one checkpoint folder holds:

* the trained policy and its tokenizer, as a Hugging Face folder (:func:`ladtrain.models.save_folder`:
  ``config.json``, ``model.safetensors``, tokenizer files; ``from_pretrained`` loads it);
* ``trainer_state.pt`` (``torch.save``, loaded with ``weights_only=True``): the optimizer and learning-rate
  scheduler state dicts, the torch RNG states (CPU and every CUDA device), and the state dicts of the other
  trained modules the trainer names (FlowRL's learned log Z head, ``modules["log_z_head"]``);
* ``state.json``: the step, the prompt sampler's RNG state (the data position), the python and numpy RNG
  states, the fault counters (:meth:`ladtrain.faults.Faults.state_dict`), and what the trainer adds under
  ``extra`` (the base policy's description and its held-out evaluation);
* written last, the completion marker ``manifest.json``: the size and sha256 of every other file.

Under ``torchrun`` every rank takes part: ``state.json`` and ``trainer_state.pt`` also hold every rank's
RNG states (``rank_rng``, in rank order; each rank gets its own back) and the number of processes. A DDP
run's folder is the one above, written by rank 0. An FSDP2 run keeps model and optimizer sharded: they are
in ``shards/`` (``torch.distributed.checkpoint``: one ``__RANK_0.distcp`` per rank and ``.metadata``),
with the model's ``config.json`` and the tokenizer beside them and no ``model.safetensors``; the
optimizer entry of ``trainer_state.pt`` is then ``None`` (see :func:`save_state` for the order of writes).

The folder is built in a hidden temporary sibling and renamed into place only when complete
(:func:`ladtrain.atomic.replace_folder`), so a run killed at any instant leaves either no
``step-NNNNNN`` folder or a complete one. ``--resume RUN`` removes what a killed writer left (hidden
folders, step folders without a manifest), verifies the newest checkpoint against its manifest, puts
every state back and drops metrics rows logged after it; on CPU the resumed run then reproduces the
uninterrupted one exactly (tested with a real SIGKILL: ``tests/train/test_resume.py``; two processes,
DDP and FSDP2: ``tests/train/test_resume_distributed.py``).

Failures are one-line :class:`CheckpointError` messages: a full or unwritable disk (the temporary folder
is removed, earlier checkpoints stay), a corrupt or unreadable checkpoint (nothing is changed). The final
model of a run (``RUN/checkpoint/``) is a plain Hugging Face folder written by
:func:`ladtrain.models.save`, not a resumable state.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ladtrain import atomic, distributed, models
from ladtrain.distributed import World

# --------------------------------------------------------------------------------------------------

CHECKPOINTS = "checkpoints"  # RUN/checkpoints/step-000012/ ...
MANIFEST = "manifest.json"  # written last: the completion marker (size and sha256 of every other file)
TENSORS = "trainer_state.pt"  # optimizer, scheduler, torch RNG, trained modules (torch.save; weights_only)
STATE = "state.json"  # step, data position, python/numpy RNG states, fault counters, base evaluation
SHARDS = "shards"  # FSDP2: model and optimizer state, one file per rank (torch.distributed.checkpoint)
_STEP = re.compile(r"step-(\d+)")


class CheckpointError(ValueError):
    """A checkpoint that cannot be written (disk full, not writable) or read back (corrupt): one line."""


def step_folder(run: str | Path, step: int) -> Path:
    return Path(run) / CHECKPOINTS / f"step-{step:06d}"


def rng_state() -> dict[str, Any]:
    """The global RNG states of python, numpy and torch (CPU and every CUDA device), JSON/tensor parts
    split: ``{"json": ..., "tensors": ...}``."""
    import numpy as np
    import torch

    name, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["cuda"] = torch.cuda.get_rng_state_all()
    return {"json": {"python": _jsonable(random.getstate()),
                     "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(gauss)]},
            "tensors": tensors}


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(_tupled(state["json"]["python"]))
    name, keys, pos, has_gauss, gauss = state["json"]["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["tensors"]["torch"])
    if "cuda" in state["tensors"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["tensors"]["cuda"])


def save_state(run: str | Path, step: int, model, tokenizer, *, tensors: dict[str, Any], info: dict[str, Any],
               keep: int = 2, world: World = World(), shards: Callable[[str], None] | None = None) -> Path:
    """Write ``RUN/checkpoints/step-NNNNNN`` atomically: the model and tokenizer (a Hugging Face folder,
    loadable with ``from_pretrained``), ``tensors`` (``torch.save``: optimizer, scheduler, torch RNG),
    ``info`` (JSON: step, data position, ...) and, last, the manifest. Everything is written into a
    hidden temporary sibling which is renamed into place only when complete, so a kill at any moment
    leaves either no ``step-NNNNNN`` folder or a complete one. Then all but the newest ``keep``
    complete checkpoints are removed (renamed away first, so no half-deleted folder is ever visible
    under a checkpoint name). An ``OSError`` (disk full, not writable) becomes a one-line
    :class:`CheckpointError`; the temporary folder is removed and earlier checkpoints stay intact.

    Under ``torchrun`` every rank calls it. ``shards`` (FSDP2): a collective writer of the sharded model
    and optimizer state into a folder (:func:`ladtrain.distributed.save_shards`); rank 0 makes the
    temporary folder and sends its name to every rank, all write their shards into ``SHARDS/`` in it, and
    only after that collective write has returned on rank 0 (every rank done) does rank 0 add the model's
    ``config.json``, the tokenizer, ``tensors``, ``info``, the manifest, and rename. Without ``shards``
    rank 0 alone writes. Every rank returns after the rename (a barrier)."""
    import torch

    final = step_folder(run, step)
    sent = []

    saved = dict(tensors)
    if models.is_adapter_model(model):  # LoRA: the trained state is the adapters (the base is frozen)
        saved["adapters"] = models.adapter_state(model)

    def write(tmp: Path) -> None:
        if shards is not None:
            sent.append(distributed.broadcast_object(str(tmp), world))  # the other ranks join the write
            shards(str(tmp / SHARDS))
            model.config.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        elif "adapters" in saved:
            tokenizer.save_pretrained(tmp)  # the base weights are the base policy's, loaded again on resume
        else:
            models.save_folder(model, tokenizer, tmp)
        torch.save(saved, tmp / TENSORS)
        (tmp / STATE).write_text(json.dumps(info, indent=1))
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        manifest = {"step": step, "files": {name: _digest(tmp / name) for name in files}}
        atomic.durable_write(tmp / MANIFEST, json.dumps(manifest, indent=1))

    if not world.is_main:
        tmp = distributed.broadcast_object(None, world) if shards is not None else None
        if shards is not None and tmp is None:
            raise CheckpointError(f"cannot write checkpoint {final}: rank 0 could not create its folder")
        if tmp is not None:
            try:
                shards(str(Path(tmp) / SHARDS))
            except atomic.write_errors() as err:
                raise CheckpointError(f"cannot write checkpoint {final}: {atomic.reason(err)}") from None
        distributed.barrier(world)
        return final
    try:
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            atomic.replace_folder(final, write)
        finally:
            if shards is not None and not sent:
                distributed.broadcast_object(None, world)  # rank 0 failed first: the others stop waiting
        for old in complete_checkpoints(run)[:-keep] if keep > 0 else []:
            atomic.remove_folder(old)
    except atomic.write_errors() as err:
        raise CheckpointError(f"cannot write checkpoint {final}: {atomic.reason(err)}") from None
    distributed.barrier(world)
    return final


def remove_all(run: str | Path) -> None:
    """Remove ``RUN/checkpoints/`` (a finished run's resumable states; its final model is
    ``RUN/checkpoint/``)."""
    folder = Path(run) / CHECKPOINTS
    if folder.is_dir():
        atomic.remove_folder(folder)


def complete_checkpoints(run: str | Path) -> list[Path]:
    """Checkpoint folders that carry a manifest, oldest first (hidden temporary folders are ignored)."""
    folder = Path(run) / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir()
             if (m := _STEP.fullmatch(p.name)) and (p / MANIFEST).is_file()]
    return [p for _, p in sorted(found)]


def clean_leftovers(run: str | Path) -> list[str]:
    """Remove what a killed writer left behind (hidden temporary or half-deleted folders, step folders
    without a manifest); return their names."""
    folder = Path(run) / CHECKPOINTS
    if not folder.is_dir():
        return []
    gone = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or (_STEP.fullmatch(p.name) and not (p / MANIFEST).is_file()):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            gone.append(p.name)
    return gone


def verify(folder: str | Path) -> dict[str, Any]:
    """Check every file of a checkpoint against its manifest; return the manifest or raise a one-line
    :class:`CheckpointError` naming the file."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"checkpoint {folder}: unreadable {MANIFEST} ({type(err).__name__})") from None
    for name, want in files.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"checkpoint {folder} is corrupt: {name} is missing")
        size = path.stat().st_size
        if size != want["bytes"]:
            raise CheckpointError(
                f"checkpoint {folder} is corrupt: {name} has {size} bytes, expected {want['bytes']}"
            )
        if _digest(path)["sha256"] != want["sha256"]:
            raise CheckpointError(f"checkpoint {folder} is corrupt: {name} does not match its sha256")
    return manifest


def load_state(folder: str | Path) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
    """``(model, tokenizer, tensors, info)`` from a verified checkpoint folder; CheckpointError if corrupt.
    A sharded (FSDP2) checkpoint gives a model built from its ``config.json`` whose weights are not
    loaded yet: :func:`restore_training` reads them from ``SHARDS/`` once the model is sharded."""
    import torch

    folder = Path(folder)
    verify(folder)
    try:
        tensors = torch.load(folder / TENSORS, map_location="cpu", weights_only=True)
        if (folder / SHARDS).is_dir():
            model, tokenizer = _skeleton(folder)
        elif "adapters" in tensors:  # LoRA: no model here; the caller loads the base and puts the adapters on
            model, tokenizer = None, models.load_tokenizer(folder)
        else:
            model, tokenizer = models.load(folder)
        info = json.loads((folder / STATE).read_text())
    except (models.ModelError, OSError, ValueError, RuntimeError, KeyError) as err:
        raise CheckpointError(
            f"checkpoint {folder} cannot be loaded: {str(err).strip().splitlines()[0][:200]}"
        ) from None
    return model, tokenizer, tensors, info


def _skeleton(folder: Path) -> tuple[Any, Any]:
    """The model of ``folder/config.json`` (its dtype, weights freshly initialised) and the tokenizer,
    padded on the left as :func:`ladtrain.models.load` does."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(folder)
    model = AutoModelForCausalLM.from_config(config)
    dtype = getattr(config, "dtype", None)
    if isinstance(dtype, torch.dtype):
        model.to(dtype)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return model, tokenizer


def _digest(path: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


def _jsonable(x: Any) -> Any:
    return [_jsonable(v) for v in x] if isinstance(x, (tuple, list)) else x


def _tupled(x: Any) -> Any:
    return tuple(_tupled(v) for v in x) if isinstance(x, list) else x


def stored_optimizer_state(optimizer, how: str = "full") -> dict[str, Any] | None:
    """The optimizer's state dict as a checkpoint stores it: ``full`` (exact), ``bf16`` (every floating
    state tensor but ``step`` in bfloat16: about half the size of fp32 AdamW state; a resume loads it back
    into the parameters' dtype, so the moments carry bf16 rounding and the resumed run is close to the
    uninterrupted one, not equal) or ``none`` (None: the resumed optimizer starts from zero moments, as a
    fresh AdamW does; not exactly resumable)."""
    import torch

    if how == "none":
        return None
    state = optimizer.state_dict()
    if how == "full":
        return state
    if how != "bf16":
        raise ValueError(f"optimizer state must be full, bf16 or none, got {how!r}")
    cast = {k: {name: (v.to(torch.bfloat16) if torch.is_tensor(v) and v.is_floating_point() and name != "step"
                       else v) for name, v in per.items()} for k, per in state["state"].items()}
    return {**state, "state": cast}


def save_training(run: str | Path, step: int, model, tokenizer, *, optimizer, scheduler,
                  data_rng: random.Random, faults, extra: dict[str, Any], keep: int = 2,
                  modules: dict[str, Any] | None = None, world: World = World(),
                  optimizer_state: str = "full") -> Path:
    """The whole training state after RL step ``step``: model, tokenizer, optimizer, scheduler, the global
    RNG states (python, numpy, torch) of every rank, the prompt sampler's RNG state (the data position,
    the same on every rank), the fault counters, the state dicts of any other trained ``modules``
    (FlowRL's log Z head) and ``extra`` (JSON: base evaluation, timings); the optimizer as
    :func:`stored_optimizer_state` stores it (``optimizer_state``). Under ``torchrun`` every rank
    calls it: rank 0 gathers every rank's RNG states; an FSDP2 model's and optimizer's state is written
    sharded, one file per rank (``SHARDS/``), a DDP replica's by rank 0 as on one process. See
    :func:`save_state`."""
    rng = distributed.gather_objects(rng_state(), world)  # rank order
    sharded = distributed.is_sharded(model)
    how = optimizer_state
    stored = None if sharded else stored_optimizer_state(optimizer, how)
    tensors = {"optimizer": stored, "scheduler": scheduler.state_dict(),
               "rng": rng[0]["tensors"], "rank_rng": [r["tensors"] for r in rng],
               "modules": {name: m.state_dict() for name, m in (modules or {}).items()}}
    info = {"step": step, "data_position": _jsonable(data_rng.getstate()), "rng": rng[0]["json"],
            "rank_rng": [r["json"] for r in rng], "processes": world.size, "sharded": sharded,
            "faults": faults.state_dict(), "optimizer_state": how, **extra}

    def shards(folder: str) -> None:
        distributed.save_shards(folder, model, optimizer)

    return save_state(run, step, model, tokenizer, tensors=tensors, info=info, keep=keep, world=world,
                      shards=shards if sharded else None)


@dataclass(frozen=True)
class TrainingState:
    """A loaded checkpoint: the model and tokenizer, ``tensors`` (optimizer, scheduler, torch RNG) and
    ``info`` (JSON: step, data position, python/numpy RNG, fault counters, base evaluation)."""

    model: Any
    tokenizer: Any
    tensors: dict[str, Any]
    info: dict[str, Any]
    folder: Path | None = None  # the checkpoint folder (a sharded one's weights are read from it)

    @property
    def step(self) -> int:
        return int(self.info["step"])


def latest_training(run: str | Path, clean: bool = True) -> TrainingState:
    """The :class:`TrainingState` of the newest complete checkpoint of ``run``, after removing
    what a killed writer left behind. One-line :class:`CheckpointError` when there is none or it is
    corrupt (nothing is deleted or overwritten then)."""
    if clean:  # (under torchrun only rank 0 cleans)
        clean_leftovers(run)
    found = complete_checkpoints(run)
    if not found:
        raise CheckpointError(
            f"--resume {run}: no complete checkpoint in {Path(run) / CHECKPOINTS} "
            "(was the run started with --checkpoint-every 0, or killed before its first one?)"
        )
    try:
        return TrainingState(*load_state(found[-1]), folder=found[-1])
    except CheckpointError as err:
        hint = f"; the older {found[-2].name} may be intact: move {found[-1].name} away to resume from it" \
            if len(found) > 1 else ""
        raise CheckpointError(f"--resume: {err}{hint}") from None


def restore_training(run: str | Path, state: TrainingState, *, optimizer, scheduler, data_rng: random.Random,
                     faults, write: bool = True, modules: dict[str, Any] | None = None, model=None,
                     world: World = World()) -> tuple[int, list[dict[str, Any]]]:
    """Put a loaded training state back; drop metrics rows written after the checkpoint (a killed run may
    have logged a step it did not checkpoint; ``write=False``: only read them, as ranks other than 0 do).
    A sharded checkpoint's model and optimizer state is read into ``model`` (the FSDP2-wrapped policy;
    a collective call). Each rank gets its own RNG states back; a checkpoint written by another number
    of processes is restored with a warning (rank ``r`` takes rank ``r``'s RNG states, or rank 0's
    where the checkpoint has no rank ``r``): a valid continuation, not the uninterrupted run.
    Returns ``(next step, metrics rows so far)``."""
    tensors, info = state.tensors, state.info
    for name, module in (modules or {}).items():
        if name not in tensors.get("modules", {}):
            raise CheckpointError(f"--resume: checkpoint {state.step} has no state for {name}")
        module.load_state_dict(tensors["modules"][name])
    if info.get("sharded"):  # sharded: model and optimizer from SHARDS/
        if model is None or state.folder is None:
            raise CheckpointError(f"--resume: checkpoint {state.step} is sharded; loading it needs the model")
        distributed.load_shards(str(state.folder / SHARDS), model, optimizer)
    elif tensors["optimizer"] is not None:
        optimizer.load_state_dict(tensors["optimizer"])
    else:  # saved with --optimizer-state none: AdamW restarts at zero moments
        import warnings

        warnings.warn(f"--resume: checkpoint {state.step} holds no optimizer state (--optimizer-state none): "
                      "AdamW restarts from zero moments, so this run is not the uninterrupted one",
                      stacklevel=2)
    scheduler.load_state_dict(tensors["scheduler"])
    saved = int(info.get("processes", 1))
    if saved != world.size and world.is_main:
        import warnings

        warnings.warn(f"--resume: checkpoint {state.step} was written by {saved} processes, resumed on "
                      f"{world.size}: model, optimizer and data position are restored, but not every rank's "
                      "random stream, so the run continues validly but not as the uninterrupted one would")
    ranks = list(zip(info.get("rank_rng", [info["rng"]]), tensors.get("rank_rng", [tensors["rng"]])))
    mine = ranks[world.rank] if world.rank < len(ranks) else ranks[0]
    set_rng_state({"json": mine[0], "tensors": mine[1]})
    data_rng.setstate(_tupled(info["data_position"]))
    faults.load_state_dict(info["faults"])
    step = int(info["step"])
    path = Path(run) / "metrics.jsonl"
    rows = []
    for n, line in enumerate(path.read_text().splitlines() if path.is_file() else [], 1):
        try:
            row = json.loads(line)
        except ValueError:
            if rows and rows[-1]["step"] >= step:  # a torn last line after the checkpoint: dropped
                break
            raise CheckpointError(f"--resume: {path}:{n}: not a JSON metrics row") from None
        if row["step"] <= step:
            rows.append(row)
    if [r["step"] for r in rows] != list(range(1, step + 1)):
        raise CheckpointError(f"--resume: {path} does not hold the rows of steps 1..{step}")
    if write:
        atomic.write_atomically(path, "".join(json.dumps(r) + "\n" for r in rows))
    return step + 1, rows


__all__ = ["CHECKPOINTS", "MANIFEST", "SHARDS", "CheckpointError", "TrainingState", "clean_leftovers",
           "complete_checkpoints", "latest_training", "load_state", "remove_all", "restore_training",
           "rng_state", "save_state", "save_training", "set_rng_state", "step_folder",
           "stored_optimizer_state", "verify"]
