"""User reward functions with the TRL signature, wrapped as a task.

``--reward module:function`` (or ``path/to/file.py:function``) names a function

    reward(prompts: list[str], completions: list[str], **columns) -> list[float | None]

called once per batch, exactly as TRL's ``GRPOTrainer`` calls its ``reward_funcs``: ``prompts[i]`` and
``completions[i]`` are plain strings, and ``columns`` holds one list per dataset column, aligned with
the batch: every key of the problems' ``meta`` (missing values are None), plus ``reference`` (the task's
reference answer) and ``problem_id``. A function should accept ``**kwargs`` for columns it ignores.
``None`` means "could not score" (counted and skipped, as in TRL). The user reward replaces the task's
own scorer; the task still supplies the prompts.

Mistakes are one-line :class:`RewardError` messages (a :class:`~ladtrain.tasks.TaskError`): a spec
that does not import, a name that is not callable, a result of the wrong length or type.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import numbers
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ladtrain.tasks import TaskError
from ladtrain.tasks.base import Problem, Score, Task

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
    except Exception as e:  # the user's module failed to import: say which and why, in one line
        raise RewardError(f"--reward {spec}: cannot import {target}: {type(e).__name__}: {e}") from None
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
        return [Score(r, None, "custom reward" if r is not None else "reward function returned None")
                for r in rewards]


def with_reward(task: Task, reward: str | RewardFn) -> RewardTask:
    """Wrap ``task`` so that ``reward`` (a ``module:function`` spec or a callable) scores it."""
    if isinstance(reward, str):
        return RewardTask(task, load_reward(reward), reward)
    if not callable(reward):
        raise RewardError(f"reward must be a module:function spec or a callable, got {type(reward).__name__}")
    return RewardTask(task, reward, getattr(reward, "__qualname__", repr(reward)))


__all__ = ["RewardError", "RewardTask", "load_reward", "with_reward"]
