"""pass@k for any k <= n against independent oracles: exact rational arithmetic at n = 1024, exact
unbiasedness over a binomial, and the options that choose k."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from ladtrain.passk import (
    EvaluationError,
    crossover,
    parse_ks,
    pass_at_k,
    pass_at_k_curve,
    pass_at_k_table,
    powers_of_two,
    resolve_ks,
)

N = 1024
KS = sorted({*powers_of_two(N), 3, 5, 7, 100, 333, 500, 511, 513, 777, 1000, 1023})


def exact(n: int, c: int, k: int) -> Fraction:
    """The oracle: 1 - C(n-c, k) / C(n, k) in exact rational arithmetic (math.comb is 0 for k > n-c)."""
    return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))


def relerr(x: float, ref: Fraction) -> float:
    return 0.0 if ref == 0 and x == 0 else abs(Fraction(x) - ref) / abs(ref)


def test_every_c_and_k_at_n_1024_matches_exact_rational_arithmetic():
    worst = 0.0
    for c in range(0, N + 1):
        got = pass_at_k_curve(N, c, KS)
        for k, value in zip(KS, got):
            ref = exact(N, c, k)
            if ref == 0:
                assert value == 0.0
                continue
            worst = max(worst, relerr(float(value), ref))
    assert worst < 1e-12, worst


def test_tiny_values_keep_full_relative_precision():
    # one correct sample in 1024, k = 1: exactly 1/1024; k = 2: 2/1024 - nothing cancels away
    assert pass_at_k(N, 1, 1) == 1 / 1024
    for k in (1, 2, 3, 7):
        assert relerr(pass_at_k(N, 1, k), exact(N, 1, k)) < 1e-14
    # and at n = 2048, where C(n, k) no longer fits a float
    assert relerr(pass_at_k(2048, 1, 1), exact(2048, 1, 1)) < 1e-14


def test_the_float_binomial_formula_fails_where_this_one_does_not():
    """The textbook float formula overflows from n ~ 1030: the oracle test above would catch it."""
    n, c, k = 2048, 5, 1024
    with pytest.raises(OverflowError):
        _ = 1 - float(math.comb(n - c, k)) / float(math.comb(n, k))
    assert relerr(pass_at_k(n, c, k), exact(n, c, k)) < 1e-12


def test_the_plug_in_estimator_would_fail_the_oracle():
    """1 - (1 - c/n)^k is a common mistake; at n = 1024 it misses the exact value by far more than the
    tolerance of the oracle test, so that test can tell the two apart."""
    c, k = 3, 256
    plug_in = 1 - (1 - c / N) ** k
    assert relerr(plug_in, exact(N, c, k)) > 1e-3
    assert relerr(pass_at_k(N, c, k), exact(N, c, k)) < 1e-12


@pytest.mark.parametrize("n, p", [(12, Fraction(1, 3)), (20, Fraction(1, 10))])
def test_estimator_is_unbiased_over_a_binomial_count(n, p):
    """E_c[pass@k(n, c)] = 1 - (1 - p)^k with c ~ Binomial(n, p): exact in rationals, and the float code
    agrees to 1e-12 (the plug-in estimator does not)."""
    pmf = [math.comb(n, c) * p**c * (1 - p) ** (n - c) for c in range(n + 1)]
    for k in range(1, n + 1):
        truth = 1 - (1 - p) ** k
        assert sum(w * exact(n, c, k) for c, w in enumerate(pmf)) == truth
        mean = sum(float(w) * pass_at_k(n, c, k) for c, w in enumerate(pmf))
        assert mean == pytest.approx(float(truth), rel=1e-12)
        if k > 1:
            plug = sum(float(w) * (1 - (1 - c / n) ** k) for c, w in enumerate(pmf))
            assert plug < float(truth) - 1e-4  # biased low


def test_pass_at_k_edges_and_errors():
    assert pass_at_k(N, 0, 512) == 0.0
    assert pass_at_k(N, N, 1) == 1.0
    assert pass_at_k(N, 1, N) == 1.0  # n - c < k: every k-subset holds the correct sample
    assert pass_at_k(10, 5, 6) == 1.0 and pass_at_k(10, 5, 5) == pytest.approx(1 - 1 / 252, rel=1e-14)
    with pytest.raises(EvaluationError, match="k <= n"):
        pass_at_k(N, 1, N + 1)
    with pytest.raises(EvaluationError, match="k <= n"):
        pass_at_k_curve(4, 1, [1, 0])
    with pytest.raises(EvaluationError, match="c <= n"):
        pass_at_k(4, 5, 1)


def test_table_is_per_problem_and_monotone_in_k():
    table = pass_at_k_table([(N, 0), (N, 1), (N, 40), (N, N)], KS)
    assert table.shape == (4, len(KS))
    assert np.all(np.diff(table, axis=1) >= 0)  # more samples never lower pass@k
    assert table[0].max() == 0 and table[3].min() == 1


def test_k_lists():
    assert powers_of_two(1) == [1] and powers_of_two(16) == [1, 2, 4, 8, 16]
    assert powers_of_two(24) == [1, 2, 4, 8, 16, 24]
    assert parse_ks("1024") == powers_of_two(1024)
    assert parse_ks("8, 1,2,2") == [1, 2, 8]
    assert resolve_ks("", 256, 16) == (powers_of_two(256), 256)  # samples = largest k
    assert resolve_ks("1,4", 0, 16) == ([1, 4], 16)  # more samples than the largest k is allowed
    assert resolve_ks("", 0, 12) == ([1, 2, 4, 8, 12], 12)
    for bad, match in (("1,x", "not an integer"), ("0,2", ">= 1"), ("", "give k")):
        with pytest.raises(EvaluationError, match=match):
            parse_ks(bad)
    with pytest.raises(EvaluationError, match="one of them"):
        resolve_ks("4", 8, 16)


def test_crossover():
    ks = [1, 2, 4, 8]
    assert crossover(ks, [0.1, 0.3, 0.6, 0.9], [0.3, 0.5, 0.6, 0.8]) == 4  # equal counts as base >= trained
    assert crossover(ks, [0.1, 0.2, 0.3, 0.4], [0.2, 0.3, 0.4, 0.5]) is None
    assert crossover(ks, [0.5, 0.6, 0.7, 0.8], [0.4, 0.7, 0.8, 0.9]) == 1  # trained never ahead at k = 1
    assert crossover(ks, [math.nan, 0.6, 0.7, 0.8], [0.7, 0.7, 0.6, 0.9]) == 4
