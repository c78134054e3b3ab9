"""The dead-run watch: it fires on runs without signal, says why, and stays quiet on healthy ones."""

from __future__ import annotations

import pytest

from ladtrain.dead_run import CONSECUTIVE_STEPS, FIRST_STEPS, SignalWatch, likely_cause

G = 4


def _step(watch, rewards, reasons):
    return watch.step(rewards, G, reasons)


def test_a_task_whose_answers_never_parse_fires_after_the_first_steps_with_the_cause():
    watch = SignalWatch()
    msgs = [_step(watch, [0.0] * 8, ["no_tag"] * 6 + ["truncated"] * 2) for _ in range(FIRST_STEPS)]
    assert msgs[:-1] == [None] * (FIRST_STEPS - 1)
    msg = msgs[-1]
    assert msg is not None and f"first {FIRST_STEPS} steps" in msg
    assert f"no_tag {6 * FIRST_STEPS}, truncated {2 * FIRST_STEPS}" in msg
    assert "<answer> tags" in msg and "samples.jsonl" in msg
    assert _step(watch, [0.0] * 8, ["no_tag"] * 8) is None  # once per run


def test_one_differing_reward_in_the_first_steps_is_signal():
    watch = SignalWatch()
    for i in range(FIRST_STEPS + 2):
        rewards = [0.0] * 8
        if i == 1:
            rewards[0] = 1.0
        assert _step(watch, rewards, ["wrong"] * 8) is None


def test_mostly_zero_advantage_groups_for_consecutive_steps_fire_and_a_break_resets():
    watch = SignalWatch()
    healthy = [0.0, 1.0, 0.0, 1.0] + [1.0] * 4  # one live group of two: 50% flat
    assert _step(watch, healthy, ["correct"] * 8) is None
    flat = [1.0] * 4 + [0.0] * 4  # every group equal, but the step's rewards differ
    for _ in range(CONSECUTIVE_STEPS - 1):
        assert _step(watch, flat, ["correct"] * 4 + ["wrong"] * 4) is None
    assert _step(watch, healthy, ["correct"] * 8) is None  # a live step resets the count
    for _ in range(CONSECUTIVE_STEPS - 1):
        assert _step(watch, flat, ["correct"] * 4 + ["wrong"] * 4) is None
    msg = _step(watch, flat, ["correct"] * 4 + ["wrong"] * 4)
    assert msg is not None and f"{CONSECUTIVE_STEPS} consecutive steps" in msg


def test_the_watch_resumes_where_it_was():
    a = SignalWatch()
    for _ in range(FIRST_STEPS - 1):
        a.step([0.0] * 8, G, ["no_tag"] * 8)
    b = SignalWatch()
    b.load_state_dict(a.state_dict())
    assert b.step([0.0] * 8, G, ["no_tag"] * 8) is not None


@pytest.mark.parametrize(
    "reason, words",
    [("truncated", "--max-new-tokens"), ("correct", "too easy"), ("reward_error", "reward function")],
)
def test_likely_causes(reason, words):
    from collections import Counter

    assert words in likely_cause(Counter({reason: 3, "wrong": 1}))
