"""Every scorer says why: reasons from the fixed vocabulary, and the truncation policy.

Fooling inputs: a cut-off completion whose last number happens to be the reference (scored correct
without the policy), a chat answer whose first line is a valid Countdown expression but carries no tag
(scored correct by the compact style's first-line rule), a shaped reward that could pass for accuracy.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ladtrain.sandbox import Result, isolation_mode
from ladtrain.tasks import REASONS, Score, get_task, reason_counts, score_completions
from ladtrain.tasks.base import Problem, default_reason
from ladtrain.tasks.code import reason_of

DATA = Path(__file__).resolve().parents[1] / "data"
NO_SANDBOX = isolation_mode() is None and os.environ.get("LAD_REQUIRE_SANDBOX") != "1"


def test_a_reason_outside_the_vocabulary_is_refused_and_a_missing_one_follows_the_reward():
    with pytest.raises(ValueError, match="not one of"):
        Score(0.0, None, "", "nope")
    assert [Score(r).reason for r in (1.0, 0.5, 0.0, None)] == ["correct", "partial", "wrong", "reward_error"]
    assert default_reason(float("nan")) == "reward_error"
    assert set(REASONS) >= {"correct", "wrong", "no_answer", "no_tag", "unparsable", "truncated", "timeout",
                            "sandbox_error", "reward_error"}


def test_math_reasons():
    auto = get_task(f"jsonl:{DATA / 'gsm8k_style.jsonl'},test_every=0")
    p = auto.problems("train")[0]  # reference 29
    assert auto.score(p, "so 29").reason == "correct"
    assert auto.score(p, "so 30").reason == "wrong"
    assert auto.score(p, "I do not know").reason == "no_answer"
    assert auto.score(p, "\\boxed{\\frac{}{}}").reason in ("unparsable", "wrong")
    boxed = get_task(f"jsonl:{DATA / 'gsm8k_style.jsonl'},test_every=0,extract=boxed")
    assert boxed.score(p, "29").reason == "no_tag" and boxed.score(p, "\\boxed{29}").reason == "correct"
    hashed = get_task(f"jsonl:{DATA / 'gsm8k_style.jsonl'},test_every=0,extract=hash")
    assert hashed.score(p, "29").reason == "no_tag" and hashed.score(p, "#### 29").reason == "correct"


def test_math_unparsable_answer_is_named():
    task = get_task(f"jsonl:{DATA / 'gsm8k_style.jsonl'},test_every=0,extract=hash")
    p = task.problems("train")[0]
    s = task.score(p, "#### ???")
    assert s.reward == 0.0 and s.reason == "unparsable"


def test_a_truncated_completion_scores_zero_even_when_its_last_number_is_the_reference():
    """The issue's false positive: cut text whose last number happens to equal the reference."""
    task = get_task(f"jsonl:{DATA / 'gsm8k_style.jsonl'},test_every=0")
    p = task.problems("train")[0]  # reference 29
    cut = "3 boxes of 12 is 36 pens, minus 7 gives 29 or maybe 11,21 X 29"
    fooled = score_completions(task, [p], [cut], [True], truncation="score")[0]
    assert fooled.reward == 1.0  # without the policy, the cut text scores as correct
    s = score_completions(task, [p], [cut], [True])[0]
    assert (s.reward, s.reason, s.answer) == (0.0, "truncated", None)
    kept = score_completions(task, [p, p], ["so 29", cut], [False, True])
    assert [x.reason for x in kept] == ["correct", "truncated"]
    with pytest.raises(ValueError, match="truncation"):
        score_completions(task, [p], [cut], [True], truncation="maybe")


def test_truncated_completions_never_reach_the_scorer():
    seen = []

    class Spy:
        name = "spy"

        def problems(self, split):
            return []

        def score(self, problem, completion):
            seen.append(completion)
            return Score(1.0)

    probs = [Problem("a", "q"), Problem("b", "q"), Problem("c", "q")]
    scores = score_completions(Spy(), probs, ["x", "y", "z"], [False, True, False])
    assert seen == ["x", "z"] and [s.reason for s in scores] == ["correct", "truncated", "correct"]
    assert reason_counts(scores) == {"correct": 2, "truncated": 1}


def test_gym_reasons():
    task = get_task("reasoning_gym:leg_counting,size=4,test_size=2,seed=3")
    p = task.problems("train")[0]
    answer = p.reference["answer"]
    assert task.score(p, f"<answer>{answer}</answer>").reason == "correct"
    assert task.score(p, f"<answer>{int(answer) + 1}</answer>").reason == "wrong"
    assert task.score(p, answer).reason == "no_tag"
    assert task.score(p, "<answer> </answer>").reason == "no_answer"
    spell = get_task("reasoning_gym:spell_backward,size=4,test_size=2,seed=3")
    q = spell.problems("train")[0]
    partial = spell.score(q, f"<answer>{q.reference['answer'][:-1]}x</answer>")
    assert 0 < partial.reward < 1 and partial.reason == "partial"


def test_countdown_reasons_and_the_worded_style_requires_the_tag():
    compact = get_task("countdown")
    p = next(p for p in compact.problems("train") if p.meta["target"] > 1)
    good = p.meta["solutions"][0]
    assert compact.score(p, good).reason == "correct"
    assert compact.score(p, "").reason == "no_answer"
    assert compact.score(p, "five plus").reason == "unparsable"
    assert compact.score(p, "1+1").reason == "wrong"
    worded = compact.for_chat()
    q = next(x for x in worded.problems("train") if x.id == p.id)
    chat_text = f"{good}\nis what I would try first, but let me check"
    assert compact.score(p, chat_text).reason == "correct"  # the compact rule reads the first line
    assert worded.score(q, chat_text).reason == "no_tag"  # the worded prompt asked for tags: none, no credit
    assert worded.score(q, f"Let me think. <answer>{good}</answer>").reason == "correct"


def test_code_reasons_from_sandbox_results():
    assert reason_of(Result(True, "passed"), "x") == "correct"
    assert reason_of(Result(False, "cannot start sandbox: x", error=True), "x") == "sandbox_error"
    assert reason_of(Result(False, "timeout after 5s"), "x") == "timeout"
    assert reason_of(Result(False, "killed by SIGXCPU (CPU limit)"), "x") == "timeout"
    assert reason_of(Result(False, "failed: the program was killed by SIGXCPU (CPU limit)"), "x") == "timeout"
    load = "failed: the program did not load or define the function ({})"
    assert reason_of(Result(False, load.format("SyntaxError")), "x") == "unparsable"
    assert reason_of(Result(False, load.format("IndentationError")), "x") == "unparsable"
    assert reason_of(Result(False, load.format("NameError")), "x") == "wrong"
    assert reason_of(Result(False, "failed: AssertionError in the test (line 2)"), "x") == "wrong"
    assert reason_of(Result(False, "failed: AssertionError in the test (line 2)"), "  \n") == "no_answer"


@pytest.mark.skipif(NO_SANDBOX, reason="no isolation on this machine")
def test_code_task_reasons_in_the_sandbox():
    task = get_task(f"code_jsonl:{DATA / 'code_small.jsonl'},test_every=0,workers=1")
    p = task.problems("train")[0]
    got = [s.reason for s in task.score_batch([p] * 3, [p.reference["canonical_solution"], "    return 0\n",
                                                        "    return (\n"])]
    assert got == ["correct", "wrong", "unparsable"]
