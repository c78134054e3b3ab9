"""Tasks: prompts + verifiers. See :mod:`ladtrain.tasks.base` for the protocol.

``get_task(spec)`` resolves a task spec ``NAME`` or ``NAME:ARG`` (``countdown``, ``reasoning_gym:leg_counting``,
``jsonl:data/gsm8k.jsonl``, ``humaneval``, ``code_jsonl:problems.jsonl``) through the registry below; each
entry names a factory ``make(arg: str | None, **options) -> Task`` imported only when used.
"""

from __future__ import annotations

import importlib

from ladtrain.tasks.base import Problem, Score, Task, score_all

# spec prefix -> "module:factory"
TASKS: dict[str, str] = {
    "countdown": "ladtrain.tasks.countdown:make",
    "reasoning_gym": "ladtrain.tasks.gym:make",
    "jsonl": "ladtrain.tasks.math_jsonl:make",
    "humaneval": "ladtrain.tasks.code:make_humaneval",
    "code_jsonl": "ladtrain.tasks.code:make_jsonl",
}


class TaskError(ValueError):
    """A task spec or task data that cannot be used (a user mistake: shown as one line, no traceback)."""


def get_task(spec: str, **options) -> Task:
    name, _, arg = spec.partition(":")
    if name not in TASKS:
        raise TaskError(f"unknown task {spec!r}; known: {', '.join(sorted(TASKS))}")
    module_name, factory = TASKS[name].split(":")
    return getattr(importlib.import_module(module_name), factory)(arg or None, **options)


__all__ = ["Problem", "Score", "Task", "TaskError", "TASKS", "get_task", "score_all"]
