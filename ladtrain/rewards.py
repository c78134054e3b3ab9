"""Training rewards: the task's verifier, user reward functions with the TRL signature, DAPO's overlong
penalty, each with a weight; the verifier alone decides correctness.

``--reward SPEC`` (repeatable) names the components of the training reward, ``--reward-weights 1,0.1``
their weights (default 1 each); no ``--reward``: the task's verifier alone (``task``, weight 1). A
sample's training reward is ``sum_i w_i r_i`` over the components that scored it (a component that gave
None is left out, as TRL's ``nansum`` does; None if none scored it). A SPEC is one of

* ``task``: the task's own verifier (reward in [0, 1], the truncation policy applied:
  :func:`ladtrain.tasks.base.score_completions`);
* ``overlong`` or ``overlong:N``: DAPO's soft overlong punishment (Yu et al. 2025, arXiv 2503.14476,
  eq. 13) with ``L_max = max_new_tokens`` and a buffer of ``N`` tokens (default ``max_new_tokens // 5``,
  at least 1) for a completion of ``L`` tokens: 0 when ``L <= L_max - N``, ``((L_max - N) - L) / N``
  in the buffer, so -1 at ``L = L_max`` (a completion cut there is the one DAPO calls overlong);
* ``module:function`` or ``path/to/file.py:function``: a function

      reward(prompts: list[str], completions: list[str], **columns) -> list[float | None]

  called once per batch, exactly as TRL's ``GRPOTrainer`` calls its ``reward_funcs``: ``prompts[i]``
  (the task's prompt) and ``completions[i]`` are plain strings, and ``columns`` holds one list per
  column, aligned with the batch: every key of the problems' ``meta`` (missing values are None), plus
  ``reference`` (the task's reference answer), ``problem_id`` and, when the trainer scores a rollout,
  ``formatted_prompt`` (the text the model saw, after the chat template), ``truncated`` (cut at
  ``max_new_tokens``) and ``completion_tokens``. A function should accept ``**kwargs`` for columns it
  ignores. ``None`` means "could not score" (counted, as in TRL).

Whatever the training reward, the task's verifier scores every sample too (:class:`Rewarded`): its
reward and reason are what held-out accuracy, pass@k and the reason counts use, so a shaped reward can
never become the evaluation metric. A sample's reason is the verifier's, or ``reward_error`` when a
user component raised or gave None for it.

Mistakes are one-line :class:`RewardError` messages (a :class:`~ladtrain.tasks.TaskError`): a spec
that does not import, a name that is not callable, a result of the wrong length or type, weights that
do not match the rewards.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import numbers
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from ladtrain.tasks import TaskError
from ladtrain.tasks.base import Problem, Score, Task, score_all, score_completions

RewardFn = Callable[..., Sequence[Any]]


class RewardError(TaskError):
    """A reward spec or a reward function result that cannot be used."""


def load_reward(spec: str) -> RewardFn:
    """Import ``module:function`` or ``path/to/file.py:function``."""
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise RewardError(f"--reward {spec!r}: expected module:function or path/to/file.py:function")
    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise RewardError(f"--reward {spec}: no such file {target}")
            mod_name = f"_lad_reward_{path.stem}"
            module_spec = importlib.util.spec_from_file_location(mod_name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[mod_name] = module
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except RewardError:
        raise
    except BaseException as e:  # the user's module failed to import (SystemExit, KeyboardInterrupt in it too)
        why = " ".join(str(e).split())[:120]
        raise RewardError(f"--reward {spec}: cannot import {target}: {type(e).__name__}: {why}") from None
    fn = getattr(module, name, None)
    if fn is None:
        raise RewardError(f"--reward {spec}: {target} has no attribute {name!r}")
    if not callable(fn):
        raise RewardError(f"--reward {spec}: {name} is not callable")
    return fn


def _check(spec: str, values: Any, n: int) -> list[float | None]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise RewardError(f"reward {spec} returned {type(values).__name__}, expected a list of {n} floats")
    if len(values) != n:
        raise RewardError(f"reward {spec} returned {len(values)} rewards for {n} completions")
    out: list[float | None] = []
    for i, v in enumerate(values):
        if v is None:
            out.append(None)
        elif isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v)):
            out.append(float(v))
        else:
            raise RewardError(f"reward {spec} returned {v!r} at index {i}; expected a finite float or None")
    return out


@dataclass(frozen=True)
class RewardTask:
    """``task``'s problems, scored by a user reward function (batched, TRL signature)."""

    task: Task
    fn: RewardFn
    spec: str

    @property
    def name(self) -> str:
        return f"{self.task.name}+reward:{self.spec}"

    def problems(self, split: str) -> Sequence[Problem]:
        return self.task.problems(split)

    def score(self, problem: Problem, completion: str) -> Score:
        return self.score_batch([problem], [completion])[0]

    def score_batch(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[Score]:
        keys = sorted({k for p in problems for k in p.meta} - {"prompts", "completions"})
        columns = {k: [p.meta.get(k) for p in problems] for k in keys}
        columns["reference"] = [p.reference for p in problems]
        columns["problem_id"] = [p.id for p in problems]
        values = self.fn(prompts=[p.prompt for p in problems], completions=list(completions), **columns)
        rewards = _check(self.spec, values, len(problems))
        return [Score(r, None, "custom reward" if r is not None else "reward function returned None",
                      "reward_error" if r is None else "")
                for r in rewards]


def with_reward(task: Task, reward: str | RewardFn) -> RewardTask:
    """Wrap ``task`` so that ``reward`` (a ``module:function`` spec or a callable) scores it."""
    if isinstance(reward, str):
        return RewardTask(task, load_reward(reward), reward)
    if not callable(reward):
        raise RewardError(f"reward must be a module:function spec or a callable, got {type(reward).__name__}")
    return RewardTask(task, reward, getattr(reward, "__qualname__", repr(reward)))


# --------------------------------------------------------------------------------------------------
# Several weighted components


@dataclass(frozen=True)
class Component:
    """One term of the training reward: ``name`` (logged as ``rewards/<name>/mean``), the ``spec`` as
    given, its ``weight``; ``fn`` for a user function, ``buffer`` for ``overlong`` (None: default)."""

    name: str
    spec: str
    weight: float = 1.0
    fn: RewardFn | None = field(default=None, compare=False)
    buffer: int | None = None

    def describe(self) -> dict[str, Any]:
        """What ``summary.json`` records of this component."""
        out: dict[str, Any] = {"name": self.name, "spec": self.spec, "weight": self.weight}
        if self.buffer is not None:
            out["buffer_tokens"] = self.buffer
        return out


def parse_weights(text: str | Sequence[float] | None, n: int) -> list[float]:
    """``"1,0.1"`` (or a list) -> ``[1.0, 0.1]``; None -> ``[1.0] * n``; RewardError naming the flag."""
    if text is None or text == "":
        return [1.0] * n
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    try:
        weights = [float(p) for p in parts]
    except (TypeError, ValueError):
        raise RewardError(f"--reward-weights {text!r}: expected comma-separated numbers") from None
    if len(weights) != n:
        raise RewardError(f"--reward-weights: {len(weights)} weights for {n} reward"
                          f"{'s' if n != 1 else ''} (--reward {n}x; no --reward counts as 'task')")
    if not all(math.isfinite(w) for w in weights):
        raise RewardError(f"--reward-weights {text!r}: weights must be finite")
    return weights


def components(specs: Sequence[str | RewardFn] | str | None = None,
               weights: str | Sequence[float] | None = None) -> tuple[Component, ...]:
    """The components named by ``specs`` (none: ``task``) with ``weights`` (:func:`parse_weights`)."""
    if specs is None or specs == "":
        specs = []
    elif isinstance(specs, str) or callable(specs):
        specs = [specs]
    specs = list(specs) or ["task"]
    out: list[Component] = []
    used: set[str] = set()
    for spec, weight in zip(specs, parse_weights(weights, len(specs))):
        buffer, fn = None, None
        if callable(spec):
            fn, text = spec, getattr(spec, "__qualname__", repr(spec))
            name = getattr(spec, "__name__", "reward")
        elif not isinstance(spec, str) or not spec.strip():
            raise RewardError(f"--reward {spec!r}: expected task, overlong[:N] or module:function")
        elif spec.strip() == "task":
            text = name = "task"
        elif spec.strip() == "overlong" or spec.strip().startswith("overlong:"):
            text, name = spec.strip(), "overlong"
            arg = text.partition(":")[2]
            if arg:
                if not arg.isdigit() or int(arg) < 1:
                    raise RewardError(f"--reward {spec}: overlong:N needs a buffer of N >= 1 tokens")
                buffer = int(arg)
        else:
            fn, text, name = load_reward(spec), spec, spec.rpartition(":")[2]
        unique, i = name, 2
        while unique in used:
            unique, i = f"{name}_{i}", i + 1
        used.add(unique)
        out.append(Component(unique, text, weight, fn, buffer))
    return tuple(out)


def overlong_penalty(lengths: Sequence[int], max_new_tokens: int, buffer: int | None = None) -> list[float]:
    """DAPO's soft overlong punishment (arXiv 2503.14476, eq. 13) of completions of ``lengths`` tokens
    with ``L_max = max_new_tokens`` and ``buffer`` tokens (default ``max_new_tokens // 5``, >= 1, at most
    ``max_new_tokens``): 0 up to ``L_max - buffer``, then falling linearly to -1 at ``L_max``."""
    cache = max(1, max_new_tokens // 5) if buffer is None else int(buffer)
    cache = min(cache, max_new_tokens)
    free = max_new_tokens - cache
    return [0.0 if n <= free else -1.0 if n >= max_new_tokens else (free - n) / cache for n in lengths]


@dataclass(frozen=True)
class Rewarded:
    """A scored rollout: ``verdicts`` (the task's verifier, truncation policy applied: correctness and
    reasons), ``rewards`` (the training reward of each sample, None = unscored), ``components``
    (name -> each sample's value of that component, None where it gave none) and ``reasons``."""

    verdicts: list[Score]
    rewards: list[float | None]
    components: dict[str, list[float | None]]
    reasons: list[str]
    notes: list[str] = field(default_factory=list)  # a failed component's info, else the verdict's

    def scores(self) -> list[Score]:
        """One Score per sample carrying the training reward (the verifier's answer, the sample's reason)."""
        notes = self.notes or [v.info for v in self.verdicts]
        return [Score(r, v.answer, note, reason)
                for r, v, note, reason in zip(self.rewards, self.verdicts, notes, self.reasons)]

    def component_means(self) -> dict[str, float]:
        """``rewards/<name>/mean`` of every component (mean over the samples it scored; NaN if none)."""
        out = {}
        for name, values in self.components.items():
            got = [v for v in values if v is not None]
            out[f"rewards/{name}/mean"] = sum(got) / len(got) if got else math.nan
        return out


def compute(parts: Sequence[Component], task: Task, problems: Sequence[Problem], completions: Sequence[str],
            *,
            formatted_prompts: Sequence[str] | None = None, truncated: Sequence[bool] | None = None,
            lengths: Sequence[int] | None = None, max_new_tokens: int | None = None, truncation: str = "zero",
            score: Callable[[Task, Sequence[Problem], Sequence[str]], list[Score]] = score_all) -> Rewarded:
    """Score a rollout with the verifier and every component (see the module docstring). ``score`` runs a
    task on a batch (the trainer passes :meth:`ladtrain.faults.Faults.score`, which turns a raising or
    non-finite reward into ``Score(None)`` and counts it); ``lengths`` are completion lengths in tokens
    (needed by ``overlong``; default: characters)."""
    n = len(completions)
    truncated = [False] * n if truncated is None else [bool(t) for t in truncated]
    lengths = [len(c) for c in completions] if lengths is None else [int(x) for x in lengths]
    verdicts = score_completions(task, problems, completions, truncated, truncation,
                                 scorer=lambda ps, cs: score(task, ps, cs))
    values: dict[str, list[float | None]] = {}
    failed = [False] * n
    notes = [v.info for v in verdicts]
    for part in parts:
        if part.fn is None and part.spec == "task":
            values[part.name] = [v.reward for v in verdicts]
        elif part.fn is None:
            if max_new_tokens is None:
                raise RewardError(f"--reward {part.spec}: needs max_new_tokens")
            values[part.name] = list(overlong_penalty(lengths, max_new_tokens, part.buffer))
        else:
            extra = [{"truncated": t, "completion_tokens": L} for t, L in zip(truncated, lengths)]
            if formatted_prompts is not None:
                for e, fp in zip(extra, formatted_prompts):
                    e["formatted_prompt"] = fp
            rows = [replace(p, meta={**p.meta, **e}) for p, e in zip(problems, extra)]
            got = score(RewardTask(task, part.fn, part.spec), rows, completions)
            for i, s in enumerate(got):
                if s.reward is None and not failed[i]:
                    failed[i], notes[i] = True, f"{part.name}: {s.info}"
            values[part.name] = [s.reward for s in got]
    weights = {p.name: p.weight for p in parts}
    rewards: list[float | None] = []
    for i in range(n):
        terms = [weights[name] * v[i] for name, v in values.items() if v[i] is not None]
        rewards.append(float(sum(terms)) if terms else None)
    reasons = ["reward_error" if f else v.reason for f, v in zip(failed, verdicts)]
    return Rewarded(verdicts, rewards, values, reasons, notes)


__all__ = ["Component", "RewardError", "RewardTask", "Rewarded", "components", "compute", "load_reward",
           "overlong_penalty", "parse_weights", "with_reward"]
