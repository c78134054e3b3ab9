"""Oracle tests for the evaluation metrics: hand-computed values and independent exact formulas."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from ladtrain.evaluation import (
    EvaluationError,
    Samples,
    answer_entropy,
    avg_at_k_per_problem,
    dist_n,
    dist_n_per_token,
    distinct_correct_answers,
    maj_at_k,
    pass_at_k,
    pass_at_k_per_problem,
    per_problem,
    summarize,
)


@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (5, 2, 2, 1 - 3 / 10),  # 1 - C(3,2)/C(5,2)
        (4, 1, 1, 0.25),  # pass@1 = c/n
        (3, 0, 3, 0.0),
        (5, 4, 2, 1.0),  # n - c = 1 < k: every pair holds a correct sample
        (10, 3, 4, 1 - 35 / 210),  # 1 - C(7,4)/C(10,4)
    ],
)
def test_pass_at_k_unbiased_estimator_hand_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_pass_at_k_product_form_equals_binomial_ratio_exactly():
    for n in range(1, 13):
        for c in range(0, n + 1):
            for k in range(1, n + 1):
                exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
                assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12, abs=1e-14)


def test_pass_at_k_is_stable_for_many_samples():
    # C(1000, 500) overflows float; the product form does not. pass@1 = c/n exactly.
    assert pass_at_k(1000, 1, 1) == pytest.approx(1e-3, rel=1e-12)
    exact = 1 - Fraction(math.comb(990, 500), math.comb(1000, 500))
    assert pass_at_k(1000, 10, 500) == pytest.approx(float(exact), rel=1e-12)


def test_pass_at_k_rejects_k_above_n_and_bad_counts():
    with pytest.raises(EvaluationError, match="k <= n"):
        pass_at_k(4, 1, 5)
    with pytest.raises(EvaluationError, match="c <= n"):
        pass_at_k(4, 5, 1)


def test_pass_at_k_and_avg_at_k_per_problem_with_rewards_and_threshold():
    rewards = [[1.0, 0.1, 1.0, None], [0.0, 0.0]]
    assert pass_at_k_per_problem(rewards, 1).tolist() == pytest.approx([0.5, 0.0])
    assert pass_at_k_per_problem(rewards, 2).tolist() == pytest.approx([1 - 1 / 6, 0.0])  # 1 - C(2,2)/C(4,2)
    assert avg_at_k_per_problem(rewards).tolist() == pytest.approx([0.5, 0.0])
    assert avg_at_k_per_problem(rewards, threshold=0.1).tolist() == pytest.approx([0.75, 0.0])


def test_maj_at_k_splits_ties_evenly_and_ignores_missing_answers():
    answers = ["4", "5", "4", None, "5"]
    correct = [True, False, True, False, False]
    assert maj_at_k(answers, correct) == pytest.approx(0.5)  # "4" and "5" tie at 2 votes
    assert maj_at_k(answers, correct, k=3) == pytest.approx(1.0)  # "4" wins 2:1
    assert maj_at_k(["7", "7", "8"], [False, False, True]) == pytest.approx(0.0)
    assert maj_at_k([None, None], [False, False]) == 0.0
    with pytest.raises(EvaluationError):
        maj_at_k(answers, correct, k=6)


def test_dist_n_per_token_divides_distinct_ngrams_by_generated_tokens():
    samples = ["a b a b", "a b c"]  # 7 tokens; bigrams 3 distinct of 5; 4-grams 1 of 1
    assert dist_n_per_token(samples, 2) == pytest.approx(3 / 7)
    assert dist_n_per_token(samples, 1) == pytest.approx(3 / 7)  # unigrams: both definitions agree
    assert dist_n_per_token(samples, 4) == pytest.approx(1 / 7)  # dist_n says 1.0 here
    assert dist_n_per_token(samples, 5) == 0.0  # tokens but no 5-gram: nothing distinct
    assert math.isnan(dist_n_per_token([], 2))
    assert dist_n_per_token([[1, 2, 1, 2], [1, 2, 3]], 2) == pytest.approx(3 / 7)


def test_dist_n_pools_ngrams_per_prompt_without_crossing_samples():
    samples = ["a b a b", "a b c"]
    # bigrams: (a b)(b a)(a b) + (a b)(b c): 5 total, 3 distinct
    assert dist_n(samples, 2) == pytest.approx(3 / 5)
    assert dist_n(samples, 1) == pytest.approx(3 / 7)
    assert dist_n(samples, 4) == pytest.approx(1.0)  # only "a b a b"
    assert math.isnan(dist_n(samples, 5))
    # n-grams never span two samples: "a" + "b" has no bigram
    assert math.isnan(dist_n(["a", "b"], 2))
    # token ids work as given
    assert dist_n([[1, 2, 1, 2], [1, 2, 3]], 2) == pytest.approx(3 / 5)


def test_distinct_correct_answers_counts_different_solutions():
    answers = ["1+2", "2+1", "1+2", None, "3"]
    correct = [True, True, True, True, False]
    assert distinct_correct_answers(answers, correct) == 2


def test_answer_entropy_in_nats():
    assert answer_entropy(["x", "x", "y", None]) == pytest.approx(1.5 * math.log(2), rel=1e-12)
    assert answer_entropy(["x"] * 5) == pytest.approx(0.0, abs=1e-15)
    assert answer_entropy(["a", "b", "c", "d"]) == pytest.approx(math.log(4), rel=1e-12)
    assert answer_entropy([None, None]) == pytest.approx(0.0, abs=1e-15)  # one "no answer" category


def test_summary_weighs_problems_equally():
    s = Samples(
        correct=[[True, False, False, False], [True, True]],
        answers=[["3", "4", "4", None], ["9", "10"]],
        texts=[["a b", "a b", "c d", "e"], ["x y z", "x y w"]],
    )
    rows = per_problem(s, ks=(1, 2, 4))
    assert "pass@4" not in rows  # the second problem has only 2 samples
    out = summarize(s, ks=(1, 2, 4))
    assert out["pass@1"] == pytest.approx((0.25 + 1.0) / 2)
    assert out["pass@2"] == pytest.approx((0.5 + 1.0) / 2)  # 1 - C(3,2)/C(4,2) = 0.5
    assert out["maj@k"] == pytest.approx((0.0 + 1.0) / 2)  # "4" wins (wrong); "9"/"10" tie, both right
    assert out["distinct_correct"] == pytest.approx((1 + 2) / 2)
    # dist-2: problem 1 bigrams (a b)(a b)(c d): 2/3; problem 2 (x y)(y z)(x y)(y w): 3/4
    assert out["dist-2"] == pytest.approx((2 / 3 + 3 / 4) / 2)
    assert out["problems"] == 2 and out["samples_per_problem"] == 2


def test_samples_rejects_ragged_mismatch():
    with pytest.raises(EvaluationError, match="same number"):
        Samples(correct=[[True]], answers=[["1", "2"]], texts=[["a"]])
