"""Faults during training: each has one defined behaviour, is counted in ``metrics.jsonl``, and is tested.

The trainer keeps one :class:`Faults` record per run. It scores rollouts through :meth:`Faults.score`,
counts what a rollout looks like with :meth:`Faults.rollout`, asks :meth:`Faults.update_ok` before every
optimizer step, and adds :meth:`Faults.row` to every metrics row. A fault that cannot be skipped sets
:attr:`Faults.fatal`; the trainer then saves a checkpoint and raises :class:`TrainingFault` (one line;
``python -m ladtrain`` prints it and exits with code 1; ``--resume RUN`` continues from that checkpoint).

========================================  ===================================================  ==================
fault                                     behaviour                                            metrics key
========================================  ===================================================  ==================
reward function raises on a sample        that sample is unscored: reward None, masked out     ``reward_errors``
                                          of the loss, A = 0 (the batch is re-scored one
                                          sample at a time to find the failing ones)
reward is NaN, inf or not a number        the same (skipped and counted)                       ``reward_invalid``
reward is None ("could not score")        the same (TRL's convention)                          ``unscored``
every sample of a step fails to score     the update is skipped; after ``FAULT_LIMIT``         ``skipped_updates``
                                          such steps in a row: stop (checkpoint + error)
a batch fails but no single sample does   stop at once: the reward function is broken for
                                          batches (e.g. returns a list of the wrong length)
all rewards of a group are equal          kept at A = 0 (no signal, as in GRPO), counted       ``zero_adv_groups``
empty completion (EOS first)              scored and trained as any other, counted             ``empty_completions``
truncated completion (no EOS)             scored and trained as any other, counted             ``truncated``
prompt + max_new_tokens > model context   dropped from the split at start-up, counted          ``prompts_too_long``
                                          (summary.json); none left: a one-line ConfigError
non-finite loss or gradient norm          the optimizer step is skipped; after ``FAULT_LIMIT``  ``skipped_updates``
                                          in a row: stop (checkpoint + error)
========================================  ===================================================  ==================

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

from ladtrain.tasks.base import Problem, Score, Task, score_all

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

    # --- prompts
    def fit_context(self, train: Sequence[Problem], test: Sequence[Problem], model, tokenizer,
                    cfg) -> tuple[list[Problem], list[Problem]]:
        """Drop the problems whose prompt (in the chat template) plus ``cfg.max_new_tokens`` does not fit
        the model's context; count them (``prompts_too_long``). ConfigError if a split becomes empty."""
        from ladtrain.config import ConfigError
        from ladtrain.models import format_prompt

        context = context_length(model)
        kept = []
        for split, problems in (("train", train), ("test", test)):
            fit, dropped = fitting_prompts(problems, tokenizer, context, cfg.max_new_tokens, format_prompt)
            if not fit:
                raise ConfigError(f"--max-new-tokens {cfg.max_new_tokens}: no {split} prompt of --task {cfg.task} "
                                  f"fits the model's context of {context} tokens with room for the completion")
            self.count("prompts_too_long", dropped,
                       f"{dropped} {split} prompts + --max-new-tokens exceed the model's context ({context})")
            kept.append(fit)
        return kept[0], kept[1]

    # --- rewards
    def score(self, task: Task, problems: Sequence[Problem], completions: Sequence[str]) -> list[Score]:
        """Score a rollout; a sample whose reward raises or is not a finite number becomes ``Score(None)``."""
        try:
            scores = list(score_all(task, problems, completions))
        except Exception as batch_error:  # find the failing samples: score one at a time
            scores = [self._score_one(task, p, c) for p, c in zip(problems, completions)]
            if not any(s.info.startswith(("reward_errors:", "reward_invalid:")) for s in scores):
                self.fatal = (f"the reward failed on the whole batch but on no single sample: "
                              f"{type(batch_error).__name__}: {_line(batch_error)}")
        scores = [self._finite(s) for s in scores]
        if scores and all(s.reward is None for s in scores):
            self.failed_reward_steps += 1
            if self.failed_reward_steps >= self.limit and self.fatal is None:
                reasons = sorted({s.info for s in scores})
                self.fatal = (f"no sample could be scored on {self.failed_reward_steps} consecutive steps "
                              f"({'; '.join(reasons)[:300]})")
        else:
            self.failed_reward_steps = 0
        return scores

    def _score_one(self, task: Task, problem: Problem, completion: str) -> Score:
        from ladtrain.rewards import RewardError

        try:
            return task.score(problem, completion)
        except Exception as err:
            kind = "reward_invalid" if isinstance(err, RewardError) else "reward_errors"
            self.count(kind, detail=f"{type(err).__name__}: {_line(err)}")
            return Score(None, None, f"{kind}: {type(err).__name__}: {_line(err)}")

    def _finite(self, s: Score) -> Score:
        if s.reward is None:
            return s
        try:
            ok = math.isfinite(float(s.reward))
        except (TypeError, ValueError):
            ok = False
        if ok:
            return s
        self.count("reward_invalid", detail=f"reward {s.reward!r}")
        return Score(None, s.answer, f"reward_invalid: {s.reward!r}")

    # --- rollouts
    def rollout(self, rollout, eos_id: int | None, rewards: Tensor) -> None:
        """Count empty and truncated completions of a :class:`~ladtrain.rollout.Rollout` and its groups of
        equal rewards; ``rewards`` (B,) with unscored samples already filled."""
        completion_ids, group_size = rollout.completion_ids, rollout.group_size  # (B, T)
        lengths = rollout.completion_mask.sum(-1)  # (B,)
        last = completion_ids.gather(1, (lengths - 1).clamp(min=0).long().unsqueeze(1)).squeeze(1)  # (B,)
        ends_with_eos = (last == eos_id) & (lengths > 0)  # (B,)
        self.count("empty_completions", int(((lengths == 1) & ends_with_eos).sum()),
                   "a completion with no text (EOS first)")
        self.count("truncated", int((~ends_with_eos & (lengths > 0)).sum()),
                   "a completion cut at --max-new-tokens (no EOS)")
        groups = rewards.view(-1, group_size)  # (n_prompts, G)
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


def context_length(model) -> int | None:
    """The model's context in tokens (``max_position_embeddings`` or ``n_positions``), None if unknown."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def fitting_prompts(problems: Sequence[Problem], tokenizer, context: int | None, max_new_tokens: int,
                    render=lambda tok, prompt: prompt) -> tuple[list[Problem], int]:
    """``(kept, dropped)``: the problems whose rendered prompt plus ``max_new_tokens`` fits ``context``."""
    if context is None:
        return list(problems), 0
    kept = [p for p in problems
            if len(tokenizer(render(tokenizer, p.prompt), add_special_tokens=False)["input_ids"]) + max_new_tokens
            <= context]
    return kept, len(problems) - len(kept)


def _line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else ""


__all__ = ["COUNTERS", "FAULT_LIMIT", "FaultWarning", "Faults", "TrainingFault", "context_length",
           "fitting_prompts"]
