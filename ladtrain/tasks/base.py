"""The Task protocol: prompts, a reference answer, and a safe scorer.

A task yields :class:`Problem` records (a prompt and whatever the scorer needs) and scores one
completion at a time. Scorers never ``eval`` model text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable


class TaskError(ValueError):
    """A task spec or task data that cannot be used (a user mistake: shown as one line, no traceback)."""


@dataclass(frozen=True)
class Problem:
    """One prompt. ``reference`` is what the scorer compares against; ``meta`` holds extra columns
    (passed to user reward functions as keyword columns, TRL style)."""

    id: str
    prompt: str
    reference: Any = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Score:
    """``reward`` in [0, 1] for verifiable tasks (None = could not score: counted and skipped);
    ``answer`` is the normalised final answer (for diversity metrics); ``info`` a short reason."""

    reward: float | None
    answer: str | None = None
    info: str = ""


@runtime_checkable
class Task(Protocol):
    """What the trainer needs from a task."""

    name: str

    def problems(self, split: str) -> Sequence[Problem]:
        """The problems of a split: ``"train"`` or ``"test"`` (held out, disjoint from train)."""
        ...

    def score(self, problem: Problem, completion: str) -> Score:
        """Score one completion (the generated text after the prompt)."""
        ...


class HeldOutSplit:
    """Mixin of a task dataclass that holds its splits in fields ``train`` and ``test`` (tuples of
    problems) and its name in ``name``: :meth:`problems` returns one of them."""

    def problems(self, split: str) -> tuple[Problem, ...]:
        if split not in ("train", "test"):
            raise TaskError(f"{self.name}: unknown split {split!r}; known: train, test")
        return self.train if split == "train" else self.test


def every_nth(problems: Sequence[Problem], n: int, *, at_least_one: bool = False
              ) -> tuple[list[Problem], list[Problem]]:
    """``(train, test)``: every ``n``-th problem (``n-1, 2n-1, ...``) is held out for test. ``n = 0``, or a
    split that would be empty: both splits are all the problems. ``at_least_one``: a file shorter than
    ``n`` (and longer than one problem) still holds out its last problem."""
    problems = list(problems)
    if not n:
        return problems, problems
    held = [i % n == n - 1 for i in range(len(problems))]
    if at_least_one and not any(held) and len(problems) > 1:
        held[-1] = True
    train = [p for p, h in zip(problems, held) if not h] or problems
    test = [p for p, h in zip(problems, held) if h] or problems
    return train, test


def score_all(task: Task, problems: Sequence[Problem], completions: Sequence[str]) -> list[Score]:
    """Score a batch. Tasks that score in batches (a user reward function with the TRL signature, a
    sandbox worker pool) define ``score_batch(problems, completions) -> list[Score]``; otherwise
    ``score`` is called once per completion."""
    batch = getattr(task, "score_batch", None)
    if batch is not None:
        return list(batch(problems, completions))
    return [task.score(p, c) for p, c in zip(problems, completions)]


def options_of(cls: type, options: dict[str, Any], where: str):
    """Build the frozen options dataclass ``cls`` from ``options``; an unknown key or a value of the
    wrong kind is a :class:`TaskError` naming ``where`` (the task spec)."""
    from dataclasses import fields

    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TaskError(f"{where}: unknown option {unknown[0]!r}; known: {', '.join(sorted(known))}")
    for key, value in options.items():
        default = known[key].default
        if isinstance(default, bool) and not isinstance(value, bool):
            raise TaskError(f"{where}: option {key}={value!r} must be true or false")
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TaskError(f"{where}: option {key}={value!r} must be a number")
    return cls(**options)
