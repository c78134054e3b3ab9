r"""One RL step as two plain functions: :func:`collect` (sample, score, advantages, masks) and
:func:`update` (log-probs, the loss call, backward, clip, optimizer step). :func:`ladtrain.trainer.train`
calls them once per step, and ``benchmarks/step_profile.py`` times these very functions.

Data flow of one step (``n`` prompts, ``G`` completions each, ``B = n G`` rows prompt-major, ``T``
completion tokens)::

    prompts --Sampler.sample--> Rollout (B, T) --rewards.compute--> verdicts, rewards (B,)
      --group_advantages--> A (B,) --> Batch (rollout, rewards, advantages, mask, per-sample truncation)

The rewards are :func:`ladtrain.rewards.compute`'s: the weighted sum of the run's reward components
(default: the task's verifier alone), a completion cut at ``--max-new-tokens`` scoring 0 under the
default truncation policy; the verifier's verdicts (correctness, reasons) travel with the batch.
    Batch --token_logprobs--> logp (b, T) per micro-batch --Loss(LossInputs)--> loss --backward--> .grad
      --clip_grad_norm_--> faults.update_ok? --> optimizer.step, schedule.step

**On-policy.** With one update per rollout the policy has not moved when the loss is formed, so
``logp_old`` is the update's own ``logp``, detached (``LossInputs.logp_old=None``; the same numbers as a
separate no-grad pass, bit for bit, and one forward pass fewer, as TRL does). With several updates per
rollout or ``--mini-batches K > 1`` a no-grad pass records the rollout policy's log-probs first; each
epoch then takes one optimizer step per minibatch (K contiguous blocks of whole groups, in rollout order),
so from the second step on pi has moved from pi_old and LAD's brake and the clips can act (PPO's
minibatch regime); the unit weights below then apply within each minibatch.

**Exact accumulation and data parallelism.** Every loss is a mean over *units* of the step's batch,
declared by the loss (``Loss.unit``: tokens, or sequences). Write ``n_p`` for the units of one piece of
the batch (a micro-batch of one rank's shard) and ``N`` for the units of the whole step's batch (all
ranks; one all-reduce). The piece's loss is its own mean times

.. math::  c_p = W \, n_p / N,

where ``W`` is the number of processes: DDP and FSDP2 *average* gradients over ranks and accumulation
*sums* them over micro-batches, so ``sum_p c_p mean_p / W = N^{-1} sum_units l``: exactly the loss of the
whole batch on one process, hence the same gradient and the same optimizer step (tested:
``tests/train/test_accumulation.py``, and with two real processes ``tests/train/test_distributed.py``).
DDP's gradient all-reduce runs only on the last micro-batch (``no_sync`` before).

FlowRL's extra inputs (a frozen reference model's log-probs, the learned log Z of each prompt) are
computed per micro-batch from that micro-batch's rows; FlowRL needs one process and
``--grad-accumulation 1`` (its log Z head is not wrapped for data parallelism, and a micro-batch must hold
whole groups), checked at start-up by :func:`check`.
"""

from __future__ import annotations

import contextlib
import math
import random
from dataclasses import dataclass, field, replace
from typing import Any, Callable, ContextManager, Sequence

import torch
from torch import Tensor

from ladtrain import distributed, models, partition, prompts, rewards, scoring
from ladtrain.advantages import group_advantages
from ladtrain.config import ConfigError
from ladtrain.distributed import World
from ladtrain.faults import Faults
from ladtrain.losses import Loss, LossInputs
from ladtrain.rollout import Rollout, Sampler, ends_with_eos, token_logprobs
from ladtrain.tasks.base import Problem, Score, Task

Phase = Callable[[str], ContextManager[Any]]


def no_phase(name: str) -> ContextManager[Any]:
    """The default ``phase`` hook: times nothing (the benchmark passes its clock's ``phase``)."""
    return contextlib.nullcontext()


@dataclass
class Step:
    """What one RL step needs and changes: the policy (``model`` samples and is saved; ``train_model``, its
    DDP/FSDP2 wrapper or itself, runs the update's forward passes), the loss and its hyperparameters (the run
    config), the optimizer and learning-rate schedule, and FlowRL's frozen reference and log Z head."""

    cfg: Any  # TrainConfig (or anything with its fields)
    loss: Loss
    task: Task
    model: torch.nn.Module
    tokenizer: Any
    sampler: Sampler
    optimizer: torch.optim.Optimizer
    schedule: Any  # torch.optim.lr_scheduler.LRScheduler
    train_model: torch.nn.Module | None = None  # None: model itself
    world: World = World()
    ref_model: torch.nn.Module | None = None  # FlowRL's frozen reference (loss.needs_ref)
    z_head: partition.LogZHead | None = None  # FlowRL's learned log Z (loss.needs_log_z)
    share_prompts: bool | None = None  # token_logprobs: None = run each group's prompt once where exact
    old_pass: bool = False  # a no-grad logp_old pass even at one update per rollout (benchmark ablation)
    rewards: tuple[rewards.Component, ...] = ()  # the training reward's components (): the verifier alone
    chunked: bool | None = None  # token_logprobs: None = chunked where exact; False = the (B, T, V) logits
    buckets: bool = True  # token_logprobs: length buckets where they save work; False = one pass (ablation)
    pack: bool | None = None  # token_logprobs: None = the MLPs skip the padding where exact (packing)

    @property
    def logprob_options(self) -> dict[str, Any]:
        """How :func:`ladtrain.rollout.token_logprobs` scores this step's tokens (all exact)."""
        return {"share_prompts": self.share_prompts, "chunked": self.chunked,
                "buckets": None if self.buckets else [], "pack": self.pack}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def trained(self) -> torch.nn.Module:
        return self.model if self.train_model is None else self.train_model

    def parameters(self) -> list[torch.nn.Parameter]:
        """Everything the optimizer steps: the policy's parameters and the log Z head's."""
        head = list(self.z_head.parameters()) if self.z_head is not None else []
        return list(self.trained.parameters()) + head


def check(loss: Loss, world: World, accumulation: int, cfg: Any = None) -> None:
    """Configuration errors of the step, raised at start-up (not mid-run); with ``cfg``, also that each
    process's prompts split into ``--mini-batches`` minibatches, each with ``--grad-accumulation`` rows."""
    if cfg is not None and getattr(cfg, "mini_batches", 1) > 1:
        groups = cfg.prompts_per_step // world.size
        parts = group_slices(groups * cfg.group_size, cfg.group_size, cfg.mini_batches)
        micro_batches(min(s.stop - s.start for s in parts), accumulation)
    if (loss.needs_ref or loss.needs_log_z) and (world.is_distributed or accumulation != 1):
        raise ConfigError(f"--loss {loss.name}: needs one process and --grad-accumulation 1")


def draw(rng: random.Random, pool: Sequence[Problem], n: int, world: World = World()) -> list[Problem]:
    """This rank's prompts of a step: ``n`` drawn without replacement from ``pool`` by the run's seeded
    ``rng`` (the same draw on every rank), then this rank's share (:func:`ladtrain.distributed.shard`)."""
    return distributed.shard(rng.sample(list(pool), min(n, len(pool))), world)


# --------------------------------------------------------------------------------------------------
# collect: sample, score, advantages, masks


@dataclass(frozen=True)
class Batch:
    """One step's rollout, scored: what :func:`update` trains on and what a per-sample log records.
    Shapes: ``B = n G`` rows prompt-major (rows ``i G .. i G + G - 1`` share ``problems[i]``)."""

    problems: list[Problem]  # (n,) this rank's prompts
    rollout: Rollout  # (B, T) completions and their texts
    scores: list[Score]  # (B,) reward None: unscored (dropped from the loss, A = 0)
    rewards: Tensor  # (B,) float32, NaN where unscored
    rewards_filled: Tensor  # (B,) unscored samples filled with their group's mean reward
    scored: Tensor  # (B,) bool
    advantages: Tensor  # (B,)
    mask: Tensor  # (B, T) completion tokens of the scored samples
    finished: Tensor  # (B,) bool: the completion ended with EOS
    rewarded: rewards.Rewarded | None = None  # the verifier's verdicts and reasons, each component's values
    prompts: list[str] | None = None  # (n,) the text each prompt was given to the tokenizer as

    @property
    def group_size(self) -> int:
        return self.rollout.group_size

    @property
    def completions(self) -> list[str]:
        return self.rollout.texts

    @property
    def truncated(self) -> Tensor:
        """(B,) bool: cut at ``--max-new-tokens`` (no EOS)."""
        return ~self.finished & (self.rollout.lengths > 0)


def collect(step: Step, problems: Sequence[Problem], faults: Faults, phase: Phase = no_phase) -> Batch:
    """Sample ``G`` completions per prompt, score them, and form the advantages and loss mask; faults
    (a reward that raises or is not finite, empty, truncated, equal-reward groups) are counted."""
    G, device, cfg = step.cfg.group_size, step.device, step.cfg
    system = prompts.system_of(cfg)
    with phase("generation"):
        step.model.eval()
        texts = [models.format_prompt(step.tokenizer, p.prompt, system) for p in problems]
        rollout = step.sampler.sample(texts, G)
    with phase("reward"):
        finished = ends_with_eos(rollout, step.tokenizer.eos_token_id)  # (B,)
        found: list[scoring.Scored] = []  # every scoring pass (the verifier, each user reward function)

        def score(task: Task, ps: Sequence[Problem], cs: Sequence[str]) -> list[Score]:
            found.append(scoring.score(task, ps, cs))
            return found[-1].scores

        rewarded = rewards.compute(
            step.rewards or rewards.components(), step.task, [p for p in problems for _ in range(G)],
            rollout.texts, formatted_prompts=[t for t in texts for _ in range(G)],
            truncated=(~finished & (rollout.lengths > 0)).tolist(), lengths=rollout.lengths.tolist(),
            max_new_tokens=getattr(cfg, "max_new_tokens", None),
            truncation=getattr(cfg, "truncation", "zero"),
            score=score)
        batch_error = next((s.batch_error for s in found if s.batch_error), None)
        scores = faults.record(scoring.Scored(rewarded.scores(), [f for s in found for f in s.failures],
                                              batch_error))  # the training rewards; raising, NaN: None
        scored = torch.tensor([s.reward is not None for s in scores], device=device)  # (B,)
        reward_values = torch.tensor([s.reward if s.reward is not None else math.nan for s in scores],
                                     dtype=torch.float32, device=device)  # (B,)
        group_mean = torch.nanmean(reward_values.view(-1, G), dim=1).nan_to_num(0.0)  # (n,)
        group_mean = group_mean.repeat_interleave(G)  # (B,)
        rewards_filled = torch.where(scored, reward_values, group_mean)  # (B,)
        advantages = group_advantages(reward_values, G, scale=step.cfg.adv_scale)  # (B,) unscored: A = 0
        faults.rollout(rollout, step.tokenizer.eos_token_id, rewards_filled)  # empty, truncated, equal groups
        mask = rollout.completion_mask * scored[:, None]  # (B, T)
    return Batch(list(problems), rollout, scores, reward_values, rewards_filled, scored, advantages, mask,
                 finished, rewarded, texts)


# --------------------------------------------------------------------------------------------------
# update: log-probs, the loss, backward, clip, optimizer step


@dataclass(frozen=True)
class Targets:
    """The loss inputs of the whole batch other than the policy's own log-probs (computed per micro-batch
    by :func:`backward`); :meth:`rows` slices them to a micro-batch."""

    advantages: Tensor  # (B,)
    mask: Tensor  # (B, T)
    logp_old: Tensor | None = None  # (B, T) the rollout policy's log-probs; None: on-policy
    logp_ref: Tensor | None = None  # (B, T) FlowRL's frozen reference

    def rows(self, s: slice) -> Targets:
        return Targets(*(None if t is None else t[s] for t in (self.advantages, self.mask, self.logp_old,
                                                                self.logp_ref)))


@dataclass(frozen=True)
class UpdateStats:
    """The last optimizer step's loss (its minibatch's value, equal on every rank), gradient norm (before
    clipping) and the loss's diagnostics (of its last micro-batch); ``per_rollout``: the means over the
    rollout's optimizer steps (:func:`update`) of the brake, ratio, clip and gradient-clip diagnostics."""

    loss: Tensor
    grad_norm: Tensor
    terms: dict[str, Tensor]
    per_rollout: dict[str, float] = field(default_factory=dict)


# loss terms averaged over a rollout's optimizer steps (where the loss reports them), and their row names
PER_ROLLOUT = {"past_target_frac": "brake_frac", "log_ratio_abs_mean": "abs_log_ratio_mean",
               "clip_frac": "clip_frac_mean"}


def update(step: Step, batch: Batch, faults: Faults, phase: Phase = no_phase) -> UpdateStats:
    """``--updates-per-rollout`` epochs over ``batch``, each one optimizer step per minibatch of
    ``--mini-batches`` (:func:`group_slices`: whole groups, in rollout order, no shuffling); ``K = 1`` and
    one epoch is the on-policy step. A step whose loss or gradient is not finite (or that has no scored
    token on any rank) is skipped and counted by ``faults``. ``per_rollout`` holds the means over the
    rollout's optimizer steps of the loss's ``past_target_frac`` (LAD: the share of units past their target
    ratio, the brake active; as ``brake_frac``), ``log_ratio_abs_mean`` (mean |log rho| over tokens; as
    ``abs_log_ratio_mean``), ``clip_frac`` (a clipped loss's share of clipped units; as ``clip_frac_mean``),
    each from a step's last micro-batch, and ``grad_clip_frac`` (the share of optimizer steps whose gradient
    norm exceeded ``--max-grad-norm``, 0 when it is 0 = off)."""
    cfg, model = step.cfg, step.model
    K = getattr(cfg, "mini_batches", 1)
    with phase("old_logprobs"):
        model.train()
        targets = Targets(batch.advantages, batch.mask)  # on-policy: logp_old = the update's own, detached
        with torch.no_grad(), models.autocast(step.device, cfg.bf16):
            if cfg.updates_per_rollout > 1 or K > 1 or step.old_pass:
                targets = replace(
                    targets,
                    logp_old=token_logprobs(
                        model, batch.rollout, cfg.temperature, **step.logprob_options
                    ),
                )  # (B, T)
            if step.ref_model is not None:
                targets = replace(
                    targets, logp_ref=token_logprobs(step.ref_model, batch.rollout, cfg.temperature)
                )
    seen: dict[str, list[float]] = {}
    for _ in range(cfg.updates_per_rollout):
        for s in group_slices(targets.mask.shape[0], batch.group_size, K):
            rows, part = batch.rollout.rows(s), targets.rows(s)
            tokens = distributed.all_sum(part.mask.sum(), step.world)  # this minibatch's tokens, all ranks
            with phase("forward_backward"):
                step.optimizer.zero_grad(set_to_none=True)
                loss, terms = backward(step.trained, rows, part, step.loss, cfg, world=step.world,
                                       accumulation=cfg.grad_accumulation, z_head=step.z_head,
                                       **step.logprob_options)
            with phase("optimizer"):
                grad_norm = torch.nn.utils.clip_grad_norm_(step.parameters(), cfg.max_grad_norm or math.inf)
                if faults.update_ok(loss, grad_norm, tokens):  # else skipped and counted
                    step.optimizer.step()
                    step.schedule.step()
                # free the gradients now: kept until the next backward, they would sit in memory through the
                # next rollout's sampling (one parameter-sized buffer; the next zero_grad sets None anyway)
                step.optimizer.zero_grad(set_to_none=True)
            for k in PER_ROLLOUT:
                if k in terms:
                    seen.setdefault(k, []).append(float(terms[k]))
            seen.setdefault("grad_clip_frac", []).append(float(bool(cfg.max_grad_norm)
                                                               and float(grad_norm) > cfg.max_grad_norm))
    per_rollout = {PER_ROLLOUT.get(k, k): sum(v) / len(v) for k, v in seen.items()}
    return UpdateStats(loss, grad_norm, terms, per_rollout)


def group_slices(rows: int, group_size: int, k: int) -> list[slice]:
    """``k`` contiguous row slices made of whole groups of ``group_size`` rows, group counts differing by
    at most one (the minibatches of :func:`update`); ConfigError unless ``1 <= k <= groups``."""
    groups = rows // group_size
    if k < 1 or k > groups:
        raise ConfigError(f"--mini-batches {k} must be between 1 and the {groups} prompts per process")
    return [slice(a.start * group_size, a.stop * group_size) for a in micro_batches(groups, k)]


def backward(model: torch.nn.Module, rollout: Rollout, targets: Targets, loss: Loss, hp: Any, *,
             world: World = World(), accumulation: int = 1, z_head: partition.LogZHead | None = None,
             share_prompts: bool | None = None, chunked: bool | None = None, buckets: list | None = None,
             pack: bool | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Accumulate into ``.grad`` the gradient of the whole step's loss (all ranks' rows together).

    This rank's rows are split into ``accumulation`` micro-batches; micro-batch ``p`` contributes
    ``c_p * loss(LossInputs(logp_p, ...))`` (``c_p`` from :func:`piece_scale`, the module docstring says
    why). ``hp`` is the run config (temperature, bf16 and the loss's hyperparameters). Returns the step's
    loss value (the same on every rank) and the diagnostics of the last micro-batch."""
    unit = loss.unit(hp)
    total = distributed.all_sum(count_units(targets.mask, unit), world)  # N: units of the whole step batch
    pieces = micro_batches(targets.mask.shape[0], accumulation)
    device = targets.mask.device
    value = torch.zeros((), dtype=torch.float64)
    terms: dict[str, Tensor] = {}
    for i, s in enumerate(pieces):
        last = i == len(pieces) - 1
        sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
        rows, piece = rollout.rows(s), targets.rows(s)
        with sync:
            with models.autocast(device, getattr(hp, "bf16", False)):
                logp = token_logprobs(model, rows, getattr(hp, "temperature", 1.0), share_prompts, chunked,
                                      buckets, pack)  # (b, T)
            log_z = (partition.log_z(model, z_head, rows.prompt_ids, rows.prompt_mask, rows.group_size)
                     if z_head is not None else None)  # (b,)
            piece_loss, terms = loss(LossInputs(logp, piece.logp_old, piece.advantages, piece.mask,
                                                piece.logp_ref, log_z), hp)
            terms = {**terms, "log_ratio_abs_mean": abs_log_ratio(logp, piece.logp_old, piece.mask)}
            c = piece_scale(piece.mask, unit, total, world)
            (c * piece_loss).backward()
        value += c * piece_loss.detach().double().cpu()
    return distributed.all_sum(value, world) / world.size, terms


def abs_log_ratio(logp: Tensor, logp_old: Tensor | None, mask: Tensor) -> Tensor:
    """Mean ``|log pi - log pi_old|`` over the masked tokens of (b, T) log-probs (0 on-policy: ``None``)."""
    if logp_old is None:
        return torch.zeros(())
    keep = mask.to(torch.bool)
    return ((logp.detach() - logp_old).abs() * keep).sum().float().cpu() / keep.sum().clamp(min=1).cpu()


def count_units(mask: Tensor, unit: str) -> Tensor:
    """Units of a (B, T) mask: its tokens, or its rows."""
    return mask.to(torch.bool).sum() if unit == "token" else torch.tensor(mask.shape[0])


def piece_scale(mask: Tensor, unit: str, total: Tensor | float, world: World) -> float:
    """``c_p = W n_p / N`` (module docstring): the factor on a piece's mean loss."""
    return world.size * float(count_units(mask, unit)) / max(float(total), 1.0)


def micro_batches(rows: int, accumulation: int) -> list[slice]:
    """``accumulation`` contiguous row slices of sizes differing by at most one (none empty)."""
    if accumulation < 1 or accumulation > rows:
        raise ConfigError(f"--grad-accumulation {accumulation} must be between 1 and the {rows} rows per "
                          "process")
    bounds = [round(i * rows / accumulation) for i in range(accumulation + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


# --------------------------------------------------------------------------------------------------
# the step's metrics


def metrics(batch: Batch, stats: UpdateStats, schedule) -> dict[str, Any]:
    """The per-step numbers of ``metrics.jsonl`` that describe the rollout and the update (the benchmark
    records the same)."""
    G, filled = batch.group_size, batch.rewards_filled
    return {
        "reward_mean": float(torch.nanmean(batch.rewards)) if bool(batch.scored.any()) else math.nan,
        "loss": stats.loss.item(),
        "reward_std": float(filled.std()),
        "solved_groups": float((filled.view(-1, G).max(dim=1).values >= 1.0).float().mean()),
        "completion_len": float(batch.rollout.lengths.float().mean()),
        "unscored": int((~batch.scored).sum()),
        "grad_norm": float(stats.grad_norm),
        **stats.per_rollout,
        "lr": schedule.get_last_lr()[0],
    }


__all__ = ["Batch", "Step", "Targets", "UpdateStats", "backward", "check", "collect", "count_units", "draw",
           "group_slices", "metrics", "micro_batches", "no_phase", "piece_scale", "update"]
