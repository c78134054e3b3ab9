"""Coverage metrics and intervals over problems, against independent computations; base against trained."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from ladtrain import coverage, evaluation, intervals, study_stats
from ladtrain.passk import EvaluationError


def exact_distinct(n: int, counts: dict, k: int) -> Fraction:
    """Oracle: the mean number of distinct correct answers over every k-subset of n samples, enumerated."""
    samples = [a for a, m in counts.items() for _ in range(m)] + [None] * (n - sum(counts.values()))
    subsets = list(itertools.combinations(range(n), k))
    total = sum(len({samples[i] for i in s} - {None}) for s in subsets)
    return Fraction(total, len(subsets))


@pytest.mark.parametrize("counts", [{"a": 3, "b": 1}, {"a": 1, "b": 1, "c": 1, "d": 2}, {}, {"x": 8}])
def test_distinct_correct_at_k_is_the_mean_over_every_k_subset(counts):
    n = 8
    ks = list(range(1, n + 1))
    got = coverage.distinct_correct_at_k(n, counts, ks)
    for k, value in zip(ks, got):
        assert value == pytest.approx(float(exact_distinct(n, counts, k)), rel=1e-12, abs=1e-15)
    assert got[-1] == len(counts)  # at k = n: the plain count


def test_distinct_correct_at_k_is_unbiased_over_a_multinomial():
    """E[D_k estimate] = sum_a 1 - (1 - p_a)^k, enumerating every outcome of n = 6 samples over two
    correct answers and a wrong one (exact rationals for the weights)."""
    n, p = 6, {"a": Fraction(1, 2), "b": Fraction(1, 6)}
    wrong = 1 - sum(p.values())
    for k in range(1, n + 1):
        mean = 0.0
        for ma in range(n + 1):
            for mb in range(n + 1 - ma):
                ways = math.factorial(ma) * math.factorial(mb) * math.factorial(n - ma - mb)
                w = Fraction(math.factorial(n), ways)
                w *= p["a"] ** ma * p["b"] ** mb * wrong ** (n - ma - mb)
                counts = {a: m for a, m in (("a", ma), ("b", mb)) if m}
                mean += float(w) * float(coverage.distinct_correct_at_k(n, counts, [k])[0])
        truth = sum(1 - (1 - q) ** k for q in p.values())
        assert mean == pytest.approx(float(truth), rel=1e-12)


def test_correct_answer_counts_and_retained():
    counts = coverage.correct_answer_counts(["1", "2", "1", None, "3"], [True, True, True, True, False])
    assert counts == {"1": 2, "2": 1}  # a correct sample without an answer is not an answer
    assert coverage.retained({"1": 2, "2": 1}, {"2": 5, "9": 1}) == 0.5
    assert coverage.new_answers({"1": 2, "2": 1}, {"2": 5, "9": 1}) == 1
    assert math.isnan(coverage.retained({}, {"1": 1}))  # undefined when the base found nothing
    assert coverage.retained({"1": 1}, {}) == 0.0
    with pytest.raises(EvaluationError, match="same number of samples"):
        coverage.per_problem([{"1": 1}], [{"1": 1}], [8], [16])
    with pytest.raises(EvaluationError, match="only n=2"):
        coverage.distinct_correct_at_k(2, {"1": 2, "2": 1}, [1])


def test_mean_interval_is_the_student_t_interval():
    x = np.array([0.1, 0.4, 0.35, 0.8, 0.0, 1.0, 0.55])
    lo, hi = stats.t.interval(0.95, x.size - 1, loc=x.mean(), scale=stats.sem(x))
    got = intervals.mean_interval(list(x) + [math.nan])  # NaN is left out
    assert got["n"] == x.size and got["mean"] == pytest.approx(x.mean(), rel=1e-14)
    assert got["lo"] == pytest.approx(lo, rel=1e-12) and got["hi"] == pytest.approx(hi, rel=1e-12)
    one = intervals.mean_interval([0.5, math.nan])
    assert one["mean"] == 0.5 and math.isnan(one["lo"]) and math.isnan(one["hi"])  # unknown, not a point
    assert intervals.fmt(one) == "0.500 [n/a, n/a]"


def test_paired_interval_agrees_with_compare_on_one_seed():
    rng = np.random.default_rng(0)
    base, trained = rng.random(40), rng.random(40)
    ours = intervals.paired_interval(trained, base)
    theirs = study_stats.paired(trained[None, :], base[None, :])
    assert ours["mean"] == pytest.approx(theirs["mean_diff"], rel=1e-12)
    assert [ours["lo"], ours["hi"]] == pytest.approx(theirs["ci"], rel=1e-12)
    assert intervals.excludes_zero({"lo": 0.01, "hi": 0.2})
    assert not intervals.excludes_zero({"lo": -0.1, "hi": 0.2})
    assert not intervals.excludes_zero({"lo": math.nan, "hi": math.nan})


def _eval(correct, answers, ks):
    rows, counts = [], []
    for c, a in zip(correct, answers):
        rows.append(evaluation.problem_metrics(c, a, [[1, 2]] * len(c), ks=ks))
        counts.append(coverage.correct_answer_counts(a, c))
    return evaluation.result(rows, counts, [f"p{i}" for i in range(len(rows))], len(correct[0]), ks)


def test_versus_reports_intervals_crossover_and_retained_answers():
    ks = [1, 2, 4]
    # trained: sharper on problems 0-1 (one answer, more often), lost problem 2 and base answer "y" of 0
    base = _eval([[1, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]],
                 [["x", "y", "z", "w"], ["5", "6", "7", "8"], ["a", "b", "c", "d"], ["q"] * 4], ks)
    base_more = _eval([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]],
                      [["x", "y", "z", "w"], ["5", "6", "7", "8"], ["a", "b", "c", "d"], ["q"] * 4], ks)
    trained = _eval([[1, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]],
                    [["x", "x", "x", "w"], ["5", "5", "5", "5"], ["a", "b", "c", "d"], ["q"] * 4], ks)
    v = evaluation.versus(base_more, trained)
    m = v["metrics"]
    # pass@1: base (0.5 + 0.25 + 0.5 + 0) / 4, trained (0.75 + 1 + 0 + 0) / 4
    assert m["pass@1"]["base"]["mean"] == pytest.approx(1.25 / 4)
    assert m["pass@1"]["trained"]["mean"] == pytest.approx(1.75 / 4)
    d = np.array([0.25, 0.75, -0.5, 0.0])
    assert m["pass@1"]["difference"]["mean"] == pytest.approx(d.mean())
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert m["pass@1"]["difference"]["hi"] == pytest.approx(d.mean() + half)
    # pass@4: base 1, 1, 1, 0 vs trained 1, 1, 0, 0 -> the base catches up and overtakes by k = 2
    assert v["pass_at_k"]["base"][-1] == pytest.approx(0.75)
    assert v["pass_at_k"]["trained"][-1] == pytest.approx(0.5)
    assert v["crossover_k"] == 2
    assert v["crossover_significant_k"] is None  # four problems: nothing is beyond noise
    assert "none" not in evaluation.crossover_text(v) and "at no k up to 4" in evaluation.crossover_text(v)
    # retained: problem 0 keeps x of {x, y}: 1/2; problem 1 keeps 5: 1; problem 2 keeps none of {a, b}: 0;
    # problem 3 is undefined (the base found nothing)
    assert v["per_problem"]["retained"][:3] == [0.5, 1.0, 0.0] and math.isnan(v["per_problem"]["retained"][3])
    assert v["retained"]["mean"] == pytest.approx(0.5) and v["retained"]["n"] == 3
    assert v["per_problem"]["new"] == [0.0, 0.0, 0.0, 0.0]
    same = evaluation.versus(base, base)
    assert same["crossover_k"] == 1  # equal curves: base >= trained at once, and said so
    text = "crossover: k=1 (base and trained pass@k are equal at every k up to 4)"
    assert evaluation.crossover_text(same) == text
    with pytest.raises(EvaluationError, match="different problems"):
        evaluation.versus(base, {**trained, "problem_ids": ["a", "b", "c", "d"]})


def test_versus_says_none_up_to_k_max_when_trained_stays_ahead():
    ks = [1, 2]
    base = _eval([[0, 0], [1, 0], [0, 0]], [["a", "b"], ["a", "b"], ["a", "b"]], ks)
    trained = _eval([[1, 1], [1, 1], [1, 1]], [["a", "a"], ["a", "a"], ["a", "a"]], ks)
    v = evaluation.versus(base, trained)
    assert v["crossover_k"] is None and evaluation.crossover_text(v).startswith("crossover: none up to k=2")
