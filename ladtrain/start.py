"""Set-up of a training run, before the RL loop: the run folder and its provenance, the task's splits, the
policy to start from (fresh: the base policy; ``--resume``: the newest checkpoint), the model options,
and the objects of the step (:class:`ladtrain.step.Step`: sampler, optimizer, schedule, FlowRL's
reference and log Z head).

Resume is one decision, :class:`Begin`: :meth:`Begin.fresh` or :meth:`Begin.resumed`. Everything that
differs between the two (the model and tokenizer, the base evaluation, how to get the base policy again,
the optimizer / scheduler / RNG / fault-counter states and the metrics rows so far) is a field or method
of it; :func:`ladtrain.trainer.train` reads it without asking which it is.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import random
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ladtrain import (
    atomic,
    checkpoint,
    distributed,
    lean_layers,
    models,
    onednn_linears,
    partition,
    transposed_linears,
)
from ladtrain.compact_sampler import CompactSampler
from ladtrain.config import ConfigError, TrainConfig
from ladtrain.faults import Faults
from ladtrain.losses import Loss
from ladtrain.prompts import system_of
from ladtrain.rollout import HFSampler
from ladtrain.step import Step, check
from ladtrain.tasks import Problem, Task

PACKAGES = ("lad", "torch", "transformers", "tokenizers", "safetensors", "numpy", "reasoning_gym", "sympy")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def start_up(cfg: TrainConfig, loss: Loss) -> tuple[distributed.World, torch.device]:
    """Threads, the global seed, the process group (torchrun) and this rank's device; every configuration
    error that needs the process count is raised here, before any work."""
    torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 2) // 2))
    seed_everything(cfg.seed)
    world, device = distributed.setup(cfg.device)  # torchrun: join the group; rank 0 alone writes files
    distributed.check_batch(cfg.prompts_per_step, world)
    check(loss, world, cfg.grad_accumulation, cfg)
    return world, device


def run_folder(cfg: TrainConfig) -> Path:
    """Create the run folder (checking that it is writable); ConfigError naming --out otherwise."""
    if cfg.out:
        out = Path(cfg.out)
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{stamp}-{cfg.loss.replace(':', '-')}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"--out: cannot write to {out}: {err.strerror or err}") from None
    if not cfg.resume and checkpoint.complete_checkpoints(out) and not (out / "summary.json").is_file():
        raise ConfigError(f"--out: {out} holds an unfinished run; continue it with --resume {out} or choose "
                          "another --out (nothing was overwritten)")
    return out


def checkpoint_every(cfg: TrainConfig, world: distributed.World) -> int:
    """``--checkpoint-every``, or 0 (with a warning) where resumable checkpoints are not supported yet:
    LoRA under FSDP2 across processes. FSDP2 alone writes sharded ones
    (:func:`ladtrain.checkpoint.save_training`); a LoRA checkpoint holds the adapters and the optimizer,
    and the frozen base is the base policy, loaded again."""
    if cfg.checkpoint_every and cfg.lora_r and world.is_distributed and cfg.parallel == "fsdp2":
        warnings.warn("resumable checkpoints are off with --lora-r under --parallel fsdp2 "
                      "(not supported yet)")
        return 0
    return cfg.checkpoint_every


def lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    """The learning-rate factor after ``update`` optimizer steps: a linear warm-up over
    ``--lr-warmup-steps``, then constant or a cosine decay to 0 at the last update."""
    total = cfg.steps * cfg.updates_per_rollout * cfg.mini_batches  # the run's optimizer steps

    def factor(update: int) -> float:
        ramp = min(1.0, (update + 1) / cfg.lr_warmup_steps) if cfg.lr_warmup_steps else 1.0
        if cfg.lr_schedule == "cosine":
            return ramp * 0.5 * (1.0 + math.cos(math.pi * min(1.0, update / max(1, total))))
        return ramp

    return factor


# --------------------------------------------------------------------------------------------------
# Problems and the policy to start from


def splits(cfg: TrainConfig, task: Task) -> dict[str, list[Problem]]:
    """``{"warm": ..., "train": ..., "test": ...}``. The built-in model is warmed up on a share of the
    training problems and RL draws its prompts from the others, so RL starts on prompts whose solutions the
    base has not memorised (as on held-out ones). ``test`` holds the split ``--eval-split`` names (the
    task's test split, or its validation split when settings are being chosen)."""
    train = list(task.problems("train"))
    try:
        test = list(task.problems(cfg.eval_split))
    except (ValueError, KeyError):  # TaskError is a ValueError
        test = []
    if cfg.eval_split == "validation" and not test:
        raise ConfigError(f"--eval-split validation: --task {cfg.task} has no validation problems "
                          "(countdown and puzzle24 take validation_fraction=, e.g. "
                          "countdown,validation_fraction=0.1)")
    if not train or not test:
        raise ConfigError(f"--task {cfg.task}: needs non-empty train and test splits")
    n_warm = max(1, round(cfg.warmup_share * len(train)))
    rl = train[n_warm:] if cfg.model == models.BUILTIN and n_warm < len(train) else train
    return {"warm": train[:n_warm], "train": rl, "test": test}


def warmup_spec(cfg: TrainConfig) -> models.WarmUp:
    return models.WarmUp(
        steps=cfg.warmup_steps,
        batch=cfg.warmup_batch,
        lr=cfg.warmup_lr,
        seed=cfg.seed if cfg.warmup_seed is None else cfg.warmup_seed,
        share=cfg.warmup_share,
    )


def base_policy(cfg: TrainConfig, warm: list[Problem], world: distributed.World, progress: bool):
    """``(model, tokenizer, info)`` of the base (rank 0 fills the cache, the others read it)."""
    with distributed.main_first(world):
        return models.base_policy(cfg.model, cfg.task, warm, warmup_spec(cfg), cfg.resolved_cache(),
                                  progress=progress)


@dataclass
class Begin:
    """Where the RL loop begins: the policy, its description and base evaluation (None: evaluate it),
    how to get the base policy again (FlowRL's reference), and the training state to put back."""

    model: Any
    tokenizer: Any
    base_info: dict[str, Any]
    base: Callable[
        [], Any
    ]  # the base policy (on --resume loaded again: the checkpoint holds the trained one)
    warm_seconds: float = 0.0
    base_eval: dict[str, Any] | None = None
    state: checkpoint.TrainingState | None = None  # --resume: the checkpoint's
    previous_run: dict[str, Any] | None = None  # --resume: run.json as it was

    @classmethod
    def fresh(cls, cfg: TrainConfig, problems: dict[str, list[Problem]], world: distributed.World) -> Begin:
        t = time.time()
        model, tokenizer, info = base_policy(cfg, problems["warm"], world, cfg.progress)
        return cls(model, tokenizer, info, base=lambda: model, warm_seconds=time.time() - t)

    @classmethod
    def resumed(cls, cfg: TrainConfig, out: Path, world: distributed.World,
                problems: dict[str, list[Problem]]) -> Begin:
        state = checkpoint.latest_training(out, clean=world.is_main)  # the newest complete checkpoint
        model = state.model
        if model is None:  # LoRA: the checkpoint holds the adapters; the frozen base is the base policy
            model = base_policy(cfg, problems["warm"], world, False)[0]
        return cls(model, state.tokenizer, state.info["base_info"],
                   base=lambda: base_policy(cfg, problems["warm"], world, False)[0],
                   base_eval=state.info["base_eval"], state=state,
                   previous_run=json.loads((out / "run.json").read_text()))

    def restore(self, out: Path, step: Step, data_rng: random.Random, faults: Faults,
                world: distributed.World) -> tuple[int, list[dict[str, Any]]]:
        """``(first step, metrics rows so far)``; a resumed run gets its optimizer, scheduler, RNG states,
        data position, fault counters and log Z head back (:func:`ladtrain.checkpoint.restore_training`)."""
        if self.state is None:
            return 1, []
        return checkpoint.restore_training(out, self.state, optimizer=step.optimizer, scheduler=step.schedule,
                                           data_rng=data_rng, faults=faults, write=world.is_main,
                                           modules=trained_modules(step), model=step.trained, world=world)


def write_run_info(cfg: TrainConfig, out: Path, world: distributed.World, device: torch.device,
                   begin: Begin) -> None:
    """``config.json`` (a fresh run only) and ``run.json`` (seed, argv, device, package versions; a
    resumed run appends a record of this resume to the first run's)."""
    info = {"seed": cfg.seed, "argv": sys.argv, "started": datetime.now(timezone.utc).isoformat(),
            "device": str(device), "processes": world.size, "versions": package_versions()}
    if begin.state is not None:  # config.json stays as it was
        first = begin.previous_run or {}
        info = {**first, "resumed": [*first.get("resumed", []), {**info, "from_step": begin.state.step}]}
    if world.is_main:
        if begin.state is None:
            atomic.write_atomically(out / "config.json", json.dumps(cfg.to_dict(), indent=2))
        atomic.write_atomically(out / "run.json", json.dumps(info, indent=2))


def prepare_model(cfg: TrainConfig, model, world: distributed.World, device: torch.device, adapters=None,
                  kernels: str = "torch"):
    """``(model, train_model)``: the policy on its device with the model options on (gradient
    checkpointing, ``kernels`` "onednn": its linear layers through oneDNN (:func:`linear_kernels`), LoRA;
    ``adapters``: a resumed LoRA run's trained adapter weights, put on the new adapters), and its DDP/FSDP2
    wrapper for the update's forward passes. Gradients left by the warm-up are cleared first: under LoRA
    the frozen base keeps them otherwise, and they entered the gradient norm (found by the LoRA resume
    test: a fresh run's grad_norm depended on whether the base was just warmed up in the same process)."""
    model.zero_grad(set_to_none=True)
    model.to(device)
    if cfg.gradient_checkpointing:
        models.enable_gradient_checkpointing(model)
    elif lean_layers.pays(model):  # fewer saved activations, the same bits (ladtrain.lean_layers)
        lean_layers.apply(model)
    if kernels == "onednn":  # the same products through oneDNN (ladtrain.onednn_linears)
        onednn_linears.apply(model)
    if cfg.lora_r:
        model = models.apply_lora(model, models.Lora(r=cfg.lora_r, alpha=cfg.lora_alpha))
        if adapters is not None:  # --resume of a LoRA run: its trained adapters
            models.load_adapters(model, adapters)
    return model, distributed.prepare(model, cfg.parallel, world, device)[0]


def fit_context(train: list[Problem], test: list[Problem], model, tokenizer, cfg: TrainConfig,
                faults: Faults) -> tuple[list[Problem], list[Problem]]:
    """Drop the problems whose prompt (in the chat template) plus ``--max-new-tokens`` does not fit the
    model's context, counted as ``prompts_too_long``; ConfigError if a split becomes empty."""
    context = models.context_length(model)
    kept = []
    for split, problems in (("train", train), ("test", test)):
        system = system_of(cfg)
        fit, dropped = models.fitting_prompts(problems, tokenizer, context, cfg.max_new_tokens,
                                              lambda tok, text: models.format_prompt(tok, text, system))
        if not fit:
            raise ConfigError(
                f"--max-new-tokens {cfg.max_new_tokens}: no {split} prompt of --task {cfg.task} "
                f"fits the model's context of {context} tokens with room for the completion"
            )
        faults.count("prompts_too_long", dropped,
                     f"{dropped} {split} prompts + --max-new-tokens exceed the model's context ({context})")
        kept.append(fit)
    return kept[0], kept[1]


def adamw(params: list, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` with its fused kernel where torch has one for every parameter (plain
    floating-point parameters on the CPU or a CUDA device), else torch's default implementation (sharded
    DTensor parameters under FSDP2, other devices). The same update to round-off; on the SmolLM2-135M
    shape's CPU step 0.17 s against the default's 0.80 s (``results/benchmarks/before-after.md``)."""
    fused = bool(params) and all(type(p) is torch.nn.Parameter and p.dtype.is_floating_point
                                 and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True if fused else None)


def sampler_transposed(cfg: TrainConfig, model, begin: Begin, world: distributed.World) -> bool:
    """Whether the sampler multiplies by transposed weight copies (:mod:`ladtrain.transposed_linears`),
    decided once per run so that the run samples through the same products throughout: on a fresh run
    rank 0's answer of :func:`transposed_linears.pays` (kept per machine in the cache folder, so runs on
    one machine decide alike), on ``--resume`` read back from ``run.json``, where
    :func:`record_sampler` writes it."""
    previous = (begin.previous_run or {}).get("sampler_transposed")
    if previous is not None:
        return bool(previous)
    rows = cfg.prompts_per_step // world.size * cfg.group_size  # this rank's rows of a rollout
    store = cfg.resolved_cache() / "transposed_linears.json"  # this machine's earlier answers
    measured = transposed_linears.pays(model, rows, store) if world.is_main else None
    return bool(distributed.broadcast_object(measured, world))


def linear_kernels(cfg: TrainConfig, model, begin: Begin, world: distributed.World,
                   device: torch.device) -> str:
    """"onednn" or "torch": the library of the linear layers' products (:mod:`ladtrain.onednn_linears`),
    decided once per run so that the run computes through the same products throughout: on ``--resume``
    read back from ``run.json`` (a run.json without it: "torch", what the trainer did before it existed);
    else ``--linear-kernels``, where ``auto`` is rank 0's answer of :func:`onednn_linears.pays` (kept per
    machine in the cache folder) on a CPU, "torch" on another device. :func:`record` writes it."""
    if begin.previous_run is not None:
        return str(begin.previous_run.get("linear_kernels", "torch"))
    if cfg.linear_kernels != "auto":
        return cfg.linear_kernels
    if device.type != "cpu":
        return "torch"
    rows = cfg.prompts_per_step // world.size * cfg.group_size  # this rank's rows of a rollout
    store = cfg.resolved_cache() / "linear_kernels.json"  # this machine's earlier answers
    measured = onednn_linears.pays(model, rows, cfg.max_new_tokens or 1, store) if world.is_main else None
    return "onednn" if distributed.broadcast_object(measured, world) else "torch"


def record(out: Path, world: distributed.World, **choices: Any) -> None:
    """Add ``choices`` to ``run.json`` (rank 0): the run's decisions that ``--resume`` reads back."""
    if world.is_main and choices:
        info = json.loads((out / "run.json").read_text())
        atomic.write_atomically(out / "run.json", json.dumps({**info, **choices}, indent=2))


def record_sampler(out: Path, step: Step, world: distributed.World) -> None:
    """``run.json["sampler_transposed"]``: the sampler's decision (:func:`sampler_transposed`)."""
    transposed = getattr(step.sampler, "transposed", None)
    if transposed is not None:
        record(out, world, sampler_transposed=transposed)


def rl_step(cfg: TrainConfig, loss: Loss, task: Task, model, train_model, begin: Begin,
            world: distributed.World, device: torch.device) -> Step:
    """The step's objects: the sampler, FlowRL's frozen reference (a copy of the base) and learned log Z
    head, and AdamW over the policy and the head with the warm-up-then-constant/cosine schedule."""
    if cfg.top_p < 1 or cfg.top_k:  # truncated sampling: generate's (CompactSampler: the full policy)
        sampler = HFSampler(model, begin.tokenizer, cfg.temperature, cfg.max_new_tokens, top_p=cfg.top_p,
                            top_k=cfg.top_k)
    else:
        transposed = False if onednn_linears.switched(model) else sampler_transposed(cfg, model, begin, world)
        sampler = CompactSampler(model, begin.tokenizer, cfg.temperature, cfg.max_new_tokens,
                                 draws=cfg.sampler_draws, transposed=transposed)  # ended rows free
    ref_model = (
        copy.deepcopy(begin.base().to(device)).eval().requires_grad_(False) if loss.needs_ref else None
    )
    z_head = partition.LogZHead(model.config.hidden_size).to(device) if loss.needs_log_z else None
    head = list(z_head.parameters()) if z_head is not None else []
    distributed.reshard(train_model)  # FSDP2: the optimizer gets the sharded parameters, not evaluation's
    optimizer = adamw(list(models.trainable_parameters(train_model)) + head, cfg.lr, cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    return Step(cfg, loss, task, model, begin.tokenizer, sampler, optimizer, schedule,
                train_model=train_model, world=world, ref_model=ref_model, z_head=z_head,
                rewards=reward_components(cfg))


def reward_components(cfg: TrainConfig):
    """The training reward's components (``--reward``, ``--reward-weights``; :mod:`ladtrain.rewards`)."""
    from ladtrain.rewards import RewardError, components

    try:
        return components(cfg.reward, cfg.reward_weights)
    except RewardError as err:
        raise ConfigError(str(err) if str(err).startswith("--reward") else f"--reward: {err}") from None


def trained_modules(step: Step) -> dict[str, torch.nn.Module]:
    """Trained modules besides the policy, saved and restored with resumable checkpoints."""
    return {"log_z_head": step.z_head} if step.z_head is not None else {}


__all__ = ["Begin", "PACKAGES", "base_policy", "checkpoint_every", "fit_context", "lr_lambda",
           "linear_kernels", "package_versions", "prepare_model", "record", "reward_components", "rl_step",
           "run_folder",
           "seed_everything", "splits", "start_up", "trained_modules", "warmup_spec", "write_run_info"]
