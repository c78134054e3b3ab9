"""Tasks: prompts + verifiers. See :mod:`ladtrain.tasks.base` for the protocol."""

from ladtrain.tasks.base import Problem, Score, Task

__all__ = ["Problem", "Score", "Task"]
