"""Faults during training: each has one defined behaviour, is counted in ``metrics.jsonl``, and is tested.

This module counts and decides; it computes nothing itself. The trainer keeps one :class:`Faults` record
per run: :meth:`Faults.record` counts what the pure scorer :func:`ladtrain.scoring.score` reports
(:meth:`Faults.score` does both), :meth:`Faults.rollout` counts what a rollout looks like,
:meth:`Faults.update_ok` decides before every optimizer step, and :meth:`Faults.row` goes into every
metrics row. Prompts too long for the model's context are found by
:func:`ladtrain.models.fitting_prompts` and counted here (``prompts_too_long``). A fault that cannot be
skipped sets
:attr:`Faults.fatal`; the trainer then saves a checkpoint and raises :class:`TrainingFault` (one line;
``python -m ladtrain`` prints it and exits with code 1; ``--resume RUN`` continues from that checkpoint).

=======================================  =============================================  =====================
fault                                    behaviour                                      metrics key
=======================================  =============================================  =====================
reward function raises on a sample       that sample is unscored: reward None, masked   ``reward_errors``
                                         out of the loss, A = 0 (the batch is
                                         re-scored one sample at a time to find the
                                         failing ones)
reward is NaN, inf or not a number       the same (skipped and counted)                 ``reward_invalid``
reward is None ("could not score")       the same (TRL's convention)                    ``unscored``
every sample of a step fails to score    the update is skipped; after ``FAULT_LIMIT``   ``skipped_updates``
                                         such steps in a row: stop (checkpoint +
                                         error)
a batch fails but no single sample does  stop at once: the reward function is broken
                                         for batches (e.g. returns a list of the wrong
                                         length)
all rewards of a group are equal         kept at A = 0 (no signal, as in GRPO),         ``zero_adv_groups``
                                         counted
empty completion (EOS first)             scored and trained as any other, counted       ``empty_completions``
truncated completion (no EOS)            scored and trained as any other, counted       ``truncated``
prompt + max_new_tokens > model context  dropped from the split at start-up, counted    ``prompts_too_long``
                                         (summary.json); none left: a one-line
                                         ConfigError
non-finite loss or gradient norm         the optimizer step is skipped; after           ``skipped_updates``
                                         ``FAULT_LIMIT`` in a row: stop (checkpoint +
                                         error)
=======================================  =============================================  =====================

The first skipped fault of each kind in a run also raises a :class:`FaultWarning` (Python ``warnings``),
so a researcher watching the console sees it once; every later one is only counted. Equal-reward groups,
empty and truncated completions are ordinary events of RL on verifiable tasks: only counted.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

from torch import Tensor

from ladtrain import scoring
from ladtrain.rollout import ends_with_eos
from ladtrain.tasks.base import Problem, Score, Task

FAULT_LIMIT = 3  # consecutive failed steps / updates before the run stops
QUIET = ("zero_adv_groups", "empty_completions", "truncated")  # ordinary events: counted, no warning
COUNTERS = ("reward_errors", "reward_invalid", "zero_adv_groups", "empty_completions", "truncated",
            "skipped_updates")


class TrainingFault(RuntimeError):
    """A fault the run cannot skip: one line; a checkpoint was saved first."""


class FaultWarning(UserWarning):
    """The first occurrence of a counted, skipped fault."""


@dataclass
class Faults:
    """Per-run fault accounting (per-step counts, run totals, consecutive-failure counters)."""

    limit: int = FAULT_LIMIT
    step: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS + ("prompts_too_long",), 0))
    failed_reward_steps: int = 0  # consecutive steps where no sample could be scored
    failed_updates: int = 0  # consecutive updates skipped for a non-finite loss or gradient
    fatal: str | None = None
    warned: set[str] = field(default_factory=set)

    # --- accounting
    def count(self, kind: str, n: int = 1, detail: str = "") -> None:
        if n <= 0:
            return
        if kind in self.step:
            self.step[kind] += n
        self.totals[kind] += n
        if kind not in self.warned and kind not in QUIET:
            self.warned.add(kind)
            warnings.warn(FaultWarning(f"{kind}: {detail} (skipped and counted in metrics as {kind!r}; "
                                       f"later ones are only counted)"), stacklevel=3)

    def begin_step(self) -> None:
        self.step = dict.fromkeys(COUNTERS, 0)

    def row(self) -> dict[str, int]:
        """This step's counts, for the metrics row."""
        return dict(self.step)

    # --- rewards
    def score(self, task: Task, problems: Sequence[Problem], completions: Sequence[str]) -> list[Score]:
        """Score a rollout (:func:`ladtrain.scoring.score`) and :meth:`record` what went wrong."""
        return self.record(scoring.score(task, problems, completions))

    def record(self, scored: scoring.Scored) -> list[Score]:
        """Count the failures of a scored batch (a sample whose reward raised or is not a finite number
        is unscored: ``Score(None)``); set :attr:`fatal` when the reward is broken for batches, or when no
        sample could be scored on ``limit`` consecutive steps. Returns the scores."""
        for kind, detail in scored.failures:
            self.count(kind, detail=detail)
        if scored.batch_error is not None:
            self.fatal = scored.batch_error
        scores = scored.scores
        if scores and all(s.reward is None for s in scores):
            self.failed_reward_steps += 1
            if self.failed_reward_steps >= self.limit and self.fatal is None:
                reasons = sorted({s.info for s in scores})
                self.fatal = (f"no sample could be scored on {self.failed_reward_steps} consecutive steps "
                              f"({'; '.join(reasons)[:300]})")
        else:
            self.failed_reward_steps = 0
        return scores

    # --- rollouts
    def rollout(self, rollout, eos_id: int | None, rewards: Tensor) -> None:
        """Count empty and truncated completions of a :class:`~ladtrain.rollout.Rollout` and its groups of
        equal rewards; ``rewards`` (B,) with unscored samples already filled."""
        lengths = rollout.completion_mask.sum(-1)  # (B,)
        finished = ends_with_eos(rollout, eos_id)  # (B,)
        self.count("empty_completions", int(((lengths == 1) & finished).sum()),
                   "a completion with no text (EOS first)")
        self.count("truncated", int((~finished & (lengths > 0)).sum()),
                   "a completion cut at --max-new-tokens (no EOS)")
        groups = rewards.view(-1, rollout.group_size)  # (n_prompts, G)
        equal = (groups == groups[:, :1]).all(dim=1)  # (n_prompts,)
        self.count("zero_adv_groups", int(equal.sum()), "a group whose rewards are all equal (A = 0)")

    # --- updates
    def update_ok(self, loss: Tensor, grad_norm: Tensor, tokens: Tensor | float) -> bool:
        """Whether to take the optimizer step: some token is trained (``tokens``: the step's unmasked
        tokens, summed over all processes so that every rank decides alike) and the loss and gradient norm
        are finite. A skipped step is counted; ``limit`` non-finite ones in a row set :attr:`fatal`."""
        if not float(tokens) > 0:
            self.count("skipped_updates", detail="no sample of the step could be scored")
            return False
        loss, grad_norm = float(loss.detach()), float(grad_norm)
        if math.isfinite(loss) and math.isfinite(grad_norm):
            self.failed_updates = 0
            return True
        self.failed_updates += 1
        self.count("skipped_updates", detail=f"non-finite loss {loss} or gradient norm {grad_norm}")
        if self.failed_updates >= self.limit and self.fatal is None:
            self.fatal = (f"the loss or gradient was non-finite on {self.failed_updates} consecutive updates "
                          f"(loss {loss}, gradient norm {grad_norm}); try a lower --lr")
        return False

    # --- several processes
    def agree(self, all_sum, world) -> None:
        """Under ``torchrun``: when any process has a fatal fault, every process stops (a rank that went
        on alone would wait forever in the next collective). ``all_sum(value, world)`` sums over ranks."""
        if not getattr(world, "is_distributed", False):
            return
        if float(all_sum(float(self.fatal is not None), world)) > 0 and self.fatal is None:
            self.fatal = "another process stopped on a fault (its message says which)"

    # --- resume
    def state_dict(self) -> dict[str, Any]:
        return {"totals": dict(self.totals), "failed_reward_steps": self.failed_reward_steps,
                "failed_updates": self.failed_updates, "warned": sorted(self.warned)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.totals.update(state["totals"])
        self.failed_reward_steps = state["failed_reward_steps"]
        self.failed_updates = state["failed_updates"]
        self.warned = set(state["warned"])


__all__ = ["COUNTERS", "FAULT_LIMIT", "FaultWarning", "Faults", "TrainingFault"]
