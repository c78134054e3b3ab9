"""Several weighted reward components; the task's verifier alone defines correctness."""

from __future__ import annotations

from pathlib import Path

import pytest

from ladtrain.rewards import RewardError, components, compute, overlong_penalty, parse_weights
from ladtrain.tasks import get_task

DATA = Path(__file__).resolve().parents[1] / "data"
FNS = DATA / "reward_functions.py"


@pytest.fixture(scope="module")
def gsm():
    return get_task(f"jsonl:{DATA / 'gsm8k_style.jsonl'},test_every=0")


def test_no_reward_means_the_verifier_alone(gsm):
    (only,) = components()
    assert (only.name, only.spec, only.weight) == ("task", "task", 1.0)
    p = gsm.problems("train")[0]
    out = compute(components(), gsm, [p, p], ["29", "30"])
    assert out.rewards == [1.0, 0.0] and out.reasons == ["correct", "wrong"]


def test_two_weighted_rewards_are_summed_and_each_is_logged(gsm):
    parts = components([f"{FNS}:length_penalty", "task"], "0.5,2")
    assert [(c.name, c.weight) for c in parts] == [("length_penalty", 0.5), ("task", 2.0)]
    p = gsm.problems("train")[0]
    out = compute(parts, gsm, [p, p], ["29", "no idea"])
    lp = [1 / (1 + 2), 1 / (1 + 7)]
    assert out.components["length_penalty"] == pytest.approx(lp, rel=1e-12)
    assert out.rewards == pytest.approx([0.5 * lp[0] + 2.0, 0.5 * lp[1] + 0.0], rel=1e-12)
    means = out.component_means()
    assert means["rewards/task/mean"] == 0.5
    assert means["rewards/length_penalty/mean"] == pytest.approx(sum(lp) / 2, rel=1e-12)


def test_a_shaped_reward_never_becomes_correctness(gsm):
    """A reward that pays for length would read as accuracy if correctness were ``reward >= 1``."""

    def long_is_good(prompts, completions, **kw):
        return [float(len(c)) for c in completions]

    p = gsm.problems("train")[0]
    out = compute(components([long_is_good]), gsm, [p, p], ["a long wrong answer: 30", "29"])
    assert out.rewards == [23.0, 2.0]  # the training reward: the shaped one alone
    assert [v.reward for v in out.verdicts] == [0.0, 1.0]  # correctness: the verifier's
    assert out.reasons == ["wrong", "correct"]


def test_reward_functions_receive_the_formatted_prompt_and_rollout_columns(gsm):
    seen = {}

    def spy(prompts, completions, **columns):
        seen.update(columns, prompts=prompts)
        return [0.0] * len(completions)

    p = gsm.problems("train")[0]
    compute(components([spy]), gsm, [p], ["x"], formatted_prompts=["<chat>" + p.prompt], truncated=[True],
            lengths=[7])
    assert seen["prompts"] == [p.prompt] and seen["formatted_prompt"] == ["<chat>" + p.prompt]
    assert seen["truncated"] == [True] and seen["completion_tokens"] == [7]
    assert seen["problem_id"] == [p.id] and seen["reference"] == [p.reference]


def test_a_reward_that_gives_none_marks_the_sample_and_the_others_still_count(gsm):
    p = gsm.problems("train")[0]

    def half(prompts, completions, **kw):
        return [None, 1.0]

    out = compute(components([half, "task"]), gsm, [p, p], ["29", "30"])
    assert out.rewards == [1.0, 1.0]  # TRL's nansum: the None term is left out
    assert out.reasons == ["reward_error", "wrong"]


def test_overlong_penalty_is_daposs_soft_punishment():
    # L_max 20, buffer 5: 0 up to 15, then (15 - L) / 5, -1 at 20
    assert overlong_penalty([0, 15, 16, 18, 20], 20, 5) == pytest.approx([0, 0, -0.2, -0.6, -1.0], abs=1e-15)
    assert overlong_penalty([17, 20], 20) == pytest.approx([-0.25, -1.0], abs=1e-15)  # buffer 20 // 5
    (part,) = components(["overlong:8"])
    assert (part.name, part.buffer) == ("overlong", 8)


def test_overlong_as_a_component_uses_token_lengths(gsm):
    p = gsm.problems("train")[0]
    out = compute(components(["task", "overlong:4"], [1, 1]), gsm, [p, p], ["29", "29"], lengths=[3, 10],
                  truncated=[False, True], max_new_tokens=10)
    assert out.components["overlong"] == [0.0, -1.0]
    assert out.rewards == [1.0, -1.0] and out.reasons == ["correct", "truncated"]


@pytest.mark.parametrize("specs, weights, message", [
    (["task"], "1,2", "2 weights for 1 reward"),
    (["task", "overlong"], "1,x", "comma-separated numbers"),
    (["overlong:0"], None, "N >= 1"),
    ([""], None, "expected task"),
])
def test_bad_reward_lists_are_one_line_errors(specs, weights, message):
    with pytest.raises(RewardError, match=message):
        components(specs, weights)
    assert parse_weights(None, 3) == [1.0, 1.0, 1.0]


def test_duplicate_names_get_a_suffix():
    assert [c.name for c in components(["task", "task"])] == ["task", "task_2"]
