"""The Task protocol: prompts, a reference answer, and a safe scorer.

A task yields :class:`Problem` records (a prompt and whatever the scorer needs) and scores one
completion at a time. Scorers never ``eval`` model text.

Every :class:`Score` carries a ``reason`` from the fixed vocabulary :data:`REASONS` (why it scored
what it did; ``info`` keeps the scorer's free-text detail):

=================  ===============================================================================
``correct``        the verifier accepted the answer (reward 1)
``partial``        partial credit: 0 < reward < 1 (reasoning-gym scorers)
``wrong``          an answer was found and parsed, and it is not the reference
``no_answer``      nothing the extractor could take (an empty completion or tag, no number)
``no_tag``         the required answer marker is missing (``<answer>`` tags, ``\boxed{}``, ``####``)
``unparsable``     an answer was found but could not be read (not an expression, a syntax error)
``truncated``      the completion was cut at ``max_new_tokens``: no final answer, not scored
``timeout``        the check ran out of time (math-verify, the sandbox's wall or CPU limit)
``sandbox_error``  the sandbox itself failed (reward None: no verdict on the code)
``reward_error``   a reward function raised, returned None or a non-number for this sample
=================  ===============================================================================

A scorer that gives no reason gets one from its reward (:func:`default_reason`).
:func:`score_completions` scores a rollout with the truncation policy: by default a completion cut at
``max_new_tokens`` scores 0 with reason ``truncated`` (its text has no final answer, and a fallback
such as "the last number" would read one out of cut text); ``truncation="score"`` scores it like any
other (the behaviour before the policy existed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence, runtime_checkable


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


SEPARATOR = "\n\n"  # between a question and its answer instruction
REASONS = ("correct", "partial", "wrong", "no_answer", "no_tag", "unparsable", "truncated", "timeout",
           "sandbox_error", "reward_error")
TRUNCATION = ("zero", "score")  # what a completion cut at max_new_tokens scores (see the module docstring)


def default_reason(reward: float | None) -> str:
    """The reason of a score whose scorer gave none: ``reward_error`` for None, ``correct`` at >= 1,
    ``partial`` in (0, 1), else ``wrong``."""
    if reward is None:
        return "reward_error"
    try:
        value = float(reward)
    except (TypeError, ValueError):
        return "reward_error"
    if value != value:  # NaN
        return "reward_error"
    return "correct" if value >= 1.0 else "partial" if value > 0.0 else "wrong"


@dataclass(frozen=True)
class Score:
    """``reward`` in [0, 1] for verifiable tasks (None = could not score: counted and skipped);
    ``answer`` is the normalised final answer (for diversity metrics); ``info`` a short free-text
    detail; ``reason`` one word of :data:`REASONS` (default: from the reward, :func:`default_reason`).
    A reason outside the vocabulary is a ValueError (a scorer bug)."""

    reward: float | None
    answer: str | None = None
    info: str = ""
    reason: str = ""

    def __post_init__(self) -> None:
        if not self.reason:
            object.__setattr__(self, "reason", default_reason(self.reward))
        elif self.reason not in REASONS:
            raise ValueError(f"score reason {self.reason!r} is not one of {', '.join(REASONS)}")


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


SPLITS = ("train", "validation", "test")  # a task's splits; validation may be empty (none asked for)


def check_split(split: str) -> None:
    """ValueError unless ``split`` is one of :data:`SPLITS`."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use 'train', 'validation' or 'test'")


def cached_rows(path, make: Callable[[], list]) -> list:
    """The JSON list cached in ``path``; on first use ``make()`` builds it and it is written atomically
    (a temporary file then ``os.replace``, so a concurrent or killed writer never leaves half a file)."""
    import json
    import os
    from pathlib import Path

    path = Path(path)
    if path.exists():
        return json.loads(path.read_text())
    rows = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(rows))
    os.replace(tmp, path)
    return rows


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


def score_completions(task: Task, problems: Sequence[Problem], completions: Sequence[str],
                      truncated: Sequence[bool] | None = None, truncation: str = "zero",
                      scorer=None) -> list[Score]:
    """Score a rollout under the truncation policy: with ``truncation="zero"`` (default) every completion
    whose ``truncated`` flag is set scores 0 with reason ``truncated`` and is never shown to the scorer;
    ``"score"`` scores it as any other. The others go, in one batch, through ``scorer(problems,
    completions)`` (default: :func:`score_all` on ``task``)."""
    if truncation not in TRUNCATION:
        raise ValueError(f"truncation must be one of {', '.join(TRUNCATION)}, got {truncation!r}")
    n = len(completions)
    cut = [False] * n if truncated is None or truncation == "score" else [bool(t) for t in truncated]
    if len(cut) != n or len(problems) != n:
        raise ValueError(f"{len(problems)} problems, {n} completions and {len(cut)} truncation flags")
    keep = [i for i in range(n) if not cut[i]]
    run = scorer or (lambda ps, cs: score_all(task, ps, cs))
    scored = iter(run([problems[i] for i in keep], [completions[i] for i in keep]) if keep else [])
    cut_score = Score(0.0, None, "cut at max_new_tokens: no final answer", "truncated")
    return [cut_score if cut[i] else next(scored) for i in range(n)]


def reason_counts(scores: Sequence[Score | str]) -> dict[str, int]:
    """How many scores (or reason strings) have each reason, in the order of :data:`REASONS` (reasons
    with no score left out)."""
    counts = {r: 0 for r in REASONS}
    for s in scores:
        r = s if isinstance(s, str) else s.reason
        counts[r] = counts.get(r, 0) + 1
    return {r: c for r, c in counts.items() if c}


def instruction_text(instruction: str, instruction_file: str, where: str) -> str | None:
    """The explicit instruction (``instruction_file`` wins), ``""`` for ``none``, None for ``auto``."""
    if instruction_file:
        from pathlib import Path

        try:
            text = Path(instruction_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise TaskError(f"{where}: instruction_file={instruction_file}: cannot read: "
                            f"{getattr(e, 'strerror', None) or e}") from None
        if not text.strip():
            raise TaskError(f"{where}: instruction_file={instruction_file} is empty")
        return text.strip()
    text = "" if instruction is None else str(instruction)
    if text.strip().lower() == "auto":
        return None
    return "" if text.strip().lower() in ("none", "") else text.strip()


def with_instruction(question: str, instruction: str | None) -> str:
    """The question, then a blank line and the instruction (the question alone when there is none)."""
    return question if not instruction else question.rstrip() + SEPARATOR + instruction


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
