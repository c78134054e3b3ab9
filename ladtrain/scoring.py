"""Scoring a batch of completions: a pure function shared by the trainer's step, held-out evaluation and
the step benchmark.

:func:`score` never raises for a reward that misbehaves on a sample: such a sample becomes
``Score(None, ...)`` (unscored) and is reported in :attr:`Scored.failures`; what to do about it (count it,
warn once, stop the run) is :mod:`ladtrain.faults`' decision, not this module's.

* A task that scores in batches (``score_batch``) and raises is re-scored one sample at a time to find
  the failing samples; if none fails alone, :attr:`Scored.batch_error` says so (the reward is broken for
  batches, e.g. it returns a list of the wrong length).
* A sample whose scorer raises is a ``reward_errors`` failure (``reward_invalid`` when the scorer raised
  :class:`ladtrain.rewards.RewardError`, a result of the wrong type); a reward that is NaN, infinite or
  not a number is a ``reward_invalid`` failure. ``Score(None)`` from the task itself ("could not score",
  TRL's convention) is not a failure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from ladtrain.rewards import RewardError
from ladtrain.tasks.base import Problem, Score, Task, score_all


@dataclass(frozen=True)
class Scored:
    """The scores of a batch (one per completion, in order) and what went wrong while computing them."""

    scores: list[Score]
    failures: list[
        tuple[str, str]
    ]  # (kind, detail): kind "reward_errors" or "reward_invalid", in order found
    batch_error: str | None = None  # the batch raised but no single sample did (its one-line reason)


def score(task: Task, problems: Sequence[Problem], completions: Sequence[str]) -> Scored:
    """Score ``completions[i]`` against ``problems[i]``; see the module docstring for the failures."""
    failures: list[tuple[str, str]] = []
    batch_error = None
    try:
        scores = list(score_all(task, problems, completions))
    except Exception as err:  # find the failing samples: score one at a time
        scores = [_score_one(task, p, c, failures) for p, c in zip(problems, completions)]
        if not failures:
            batch_error = (f"the reward failed on the whole batch but on no single sample: "
                           f"{type(err).__name__}: {_line(err)}")
    return Scored([_finite(s, failures) for s in scores], failures, batch_error)


def _score_one(task: Task, problem: Problem, completion: str, failures: list[tuple[str, str]]) -> Score:
    try:
        return task.score(problem, completion)
    except Exception as err:
        kind = "reward_invalid" if isinstance(err, RewardError) else "reward_errors"
        failures.append((kind, f"{type(err).__name__}: {_line(err)}"))
        return Score(None, None, f"{kind}: {type(err).__name__}: {_line(err)}")


def _finite(s: Score, failures: list[tuple[str, str]]) -> Score:
    if s.reward is None:
        return s
    try:
        ok = math.isfinite(float(s.reward))
    except (TypeError, ValueError):
        ok = False
    if ok:
        return s
    failures.append(("reward_invalid", f"reward {s.reward!r}"))
    return Score(None, s.answer, f"reward_invalid: {s.reward!r}")


def _line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else ""


__all__ = ["Scored", "score"]
