"""Any ``reasoning-gym`` generator as a task, scored by that generator's own ``score_answer``.

Spec: ``reasoning_gym:NAME[,KEY=VALUE]...``. The keys ``size`` (train problems, default 1000),
``test_size`` (default 200), ``seed`` (default 0) and ``instruction`` are ours; every other key goes to
the generator's config class (for example ``reasoning_gym:basic_arithmetic,max_terms=4``), which
validates it; a bad key or value is a one-line :class:`~ladtrain.tasks.TaskError`.

* **Split**: train is generated with ``seed``, test with ``seed + 1_000_003``; test problems whose question
  also occurs in train are dropped, so the splits are disjoint.
* **Prompt**: the generator's question plus an instruction to put the final answer in
  ``<answer>...</answer>`` (``instruction=none`` leaves the question alone; the chat template, if any,
  is applied by the trainer).
* **Score**: the text inside the last ``<answer>`` tags (reasoning-gym's ``extract_answer``), given to
  the generator's ``score_answer``; partial credit in [0, 1] is kept as the reward. Reasoning-gym's
  scorers compare strings or parse numbers; a few (countdown) call sympy on model text, so for countdown
  use the built-in ``countdown`` task instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ladtrain.tasks import TaskError
from ladtrain.tasks.base import Problem, Score

INSTRUCTION = "\n\nThink step by step, then give only the final answer inside <answer></answer> tags."
_TEST_SEED_OFFSET = 1_000_003


@dataclass(frozen=True)
class GymTask:
    """A reasoning-gym generator; ``reference`` is the generator's entry (question, answer, metadata)."""

    name: str
    train: tuple[Problem, ...]
    test: tuple[Problem, ...]
    dataset: Any  # the reasoning_gym ProceduralDataset whose score_answer scores both splits

    def problems(self, split: str) -> tuple[Problem, ...]:
        if split not in ("train", "test"):
            raise TaskError(f"{self.name}: unknown split {split!r}; known: train, test")
        return self.train if split == "train" else self.test

    def score(self, problem: Problem, completion: str) -> Score:
        from reasoning_gym.utils import extract_answer

        answer = extract_answer(completion, tag_name="answer")
        if answer is None:
            return Score(0.0, None, "no <answer> tag")
        try:
            reward = float(self.dataset.score_answer(answer=answer, entry=problem.reference))
        except Exception as e:  # a scorer that chokes on odd text: the answer is wrong, not the run
            return Score(0.0, answer, f"scorer error: {type(e).__name__}")
        return Score(reward, answer, "correct" if reward == 1.0 else f"score {reward:g}")


def _dataset(name: str, spec: str, **config):
    import reasoning_gym

    try:
        return reasoning_gym.create_dataset(name, **config)
    except (TypeError, AssertionError, ValueError) as e:
        raise TaskError(f"{spec}: {type(e).__name__}: {e}") from None


def make(arg: str | None = None, size: int = 1000, test_size: int = 200, seed: int = 0,
         instruction: str | None = INSTRUCTION, **config) -> GymTask:
    """Registry factory for ``reasoning_gym:NAME``."""
    from reasoning_gym.factory import DATASETS

    spec = f"reasoning_gym:{arg}"
    if not arg:
        raise TaskError(f"reasoning_gym: give a generator name; known: {', '.join(sorted(DATASETS))}")
    if arg not in DATASETS:
        raise TaskError(f"{spec}: unknown generator; known: {', '.join(sorted(DATASETS))}")
    for key, value in (("size", size), ("test_size", test_size), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if key != "seed" else 0):
            raise TaskError(f"{spec}: option {key}={value!r} must be a positive integer")
    suffix = "" if instruction in (None, "none", "") else str(instruction)
    train_ds = _dataset(arg, spec, size=size, seed=seed, **config)
    test_ds = _dataset(arg, spec, size=test_size, seed=seed + _TEST_SEED_OFFSET, **config)
    train = tuple(Problem(f"{arg}/train/{i}", e["question"] + suffix, e, {"answer": e["answer"]})
                  for i, e in enumerate(train_ds))
    seen = {p.reference["question"] for p in train}
    test = tuple(Problem(f"{arg}/test/{i}", e["question"] + suffix, e, {"answer": e["answer"]})
                 for i, e in enumerate(test_ds) if e["question"] not in seen)
    if not test:
        raise TaskError(f"{spec}: every test problem also occurs in train; use a larger generator config")
    return GymTask(spec, train, test, train_ds)


__all__ = ["GymTask", "INSTRUCTION", "make"]
