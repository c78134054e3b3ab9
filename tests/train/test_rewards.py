"""User reward functions (TRL signature) wrapped as a task."""

from __future__ import annotations

from pathlib import Path

import pytest

from ladtrain.rewards import RewardError, with_reward
from ladtrain.tasks import TaskError, get_task, score_all
from ladtrain.tasks.base import Problem, Task

DATA = Path(__file__).resolve().parents[1] / "data"
FNS = DATA / "reward_functions.py"


@pytest.fixture(scope="module")
def gym():
    return get_task("reasoning_gym:leg_counting,size=6,test_size=3,seed=1")


def test_a_file_reward_receives_prompts_completions_and_columns(gym):
    task = with_reward(gym, f"{FNS}:matches_answer_column")
    assert isinstance(task, Task) and task.problems("train") == gym.problems("train")
    probs = task.problems("train")[:3]
    completions = [f"so {probs[0].meta['answer']} legs", "no idea", f"{probs[2].meta['answer']}"]
    assert [s.reward for s in score_all(task, probs, completions)] == [1.0, 0.0, 1.0]


def test_the_batch_reaches_the_function_once_with_aligned_columns(gym):
    calls = []

    def spy(prompts, completions, **columns):
        calls.append((prompts, completions, columns))
        return [float(i) for i in range(len(completions))]

    probs = gym.problems("test")
    task = with_reward(gym, spy)
    scores = task.score_batch(probs, ["a", "b", "c"][: len(probs)])
    assert [s.reward for s in scores] == [float(i) for i in range(len(probs))]
    assert len(calls) == 1
    prompts, completions, columns = calls[0]
    assert prompts == [p.prompt for p in probs]
    assert columns["answer"] == [p.meta["answer"] for p in probs]
    assert columns["reference"] == [p.reference for p in probs]
    assert columns["problem_id"] == [p.id for p in probs]


def test_none_means_could_not_score():
    probs = [Problem("a", "p1", meta={"answer": "4"}), Problem("b", "p2", meta={})]
    base = type("T", (), {"name": "t", "problems": lambda self, split: probs})()
    task = with_reward(base, f"{FNS}:matches_answer_column")
    scores = score_all(task, probs, ["4", "4"])
    assert [s.reward for s in scores] == [1.0, None]


def test_a_module_reward_is_imported_by_name(gym, monkeypatch):
    monkeypatch.syspath_prepend(str(DATA))
    task = with_reward(gym, "reward_functions:length_penalty")
    p = gym.problems("train")[0]
    assert task.score(p, "abc").reward == pytest.approx(0.25, rel=1e-12)


@pytest.mark.parametrize("spec, message", [
    ("no_colon", "expected module:function"),
    ("no_such_module_xyz:f", "cannot import no_such_module_xyz: ModuleNotFoundError"),
    ("/nonexistent/r.py:f", "no such file /nonexistent/r.py"),
    (f"{FNS}:missing", "has no attribute 'missing'"),
    (f"{FNS}:not_callable", "not_callable is not callable"),
])
def test_bad_reward_specs_give_one_line_errors(gym, spec, message):
    with pytest.raises(RewardError, match=message) as err:
        with_reward(gym, spec)
    assert isinstance(err.value, TaskError) and "\n" not in str(err.value)


@pytest.mark.parametrize("name, message", [
    ("wrong_length", "returned 1 rewards for 2 completions"),
    ("not_a_number", "returned 'high' at index 0"),
    ("nan_reward", "returned nan at index 0"),
])
def test_bad_reward_results_are_rejected(gym, name, message):
    task = with_reward(gym, f"{FNS}:{name}")
    with pytest.raises(RewardError, match=message):
        score_all(task, gym.problems("train")[:2], ["x", "y"])
