r"""Coverage: how many different correct answers a policy finds, and which of the base's it keeps.

Input per problem: the **answer counts** of its correct samples, ``m = {a: m_a}`` (``m_a`` = number of
the ``n`` samples that were scored correct with the normalised final answer ``a``; samples with no
answer are not counted), and ``n``.

**Distinct correct answers at k** (:func:`distinct_correct_at_k`). The number ``D_k`` of distinct
correct answers among k fresh samples has mean ``sum_a 1 - (1 - p_a)^k`` (``p_a`` the probability of a
correct sample with answer ``a``). Its unbiased estimate from n >= k samples is

.. math::  \widehat{D}_k = \sum_a \Big(1 - \binom{n - m_a}{k} \Big/ \binom{n}{k}\Big)
           = \sum_a \widehat{\mathrm{pass@}k}(n, m_a),

the expected number of distinct correct answers in a uniformly random k-subset of the n samples: each
term is Chen et al.'s estimator (arXiv 2107.03374) applied to "answer a was produced", unbiased for
``1 - (1 - p_a)^k``, and the sum is unbiased by linearity (answers never sampled contribute 0 on both
sides). At ``k = n`` it is the plain count ``|{a : m_a > 0}|``. For tasks with one right answer it is
pass@k; for tasks with many (Countdown: any expression reaching the target) it counts solutions.

**Retained base answers** (:func:`retained`). With ``A_base`` and ``A_trained`` the sets of distinct
correct answers of the base and the trained policy on the same problem, **from the same number of
samples** n,

.. math::  \mathrm{retained} = |A_\mathrm{base} \cap A_\mathrm{trained}| \,/\, |A_\mathrm{base}|,

undefined (NaN, left out of the mean) when the base found no correct answer. ``new`` =
``|A_trained \ A_base|`` counts answers only the trained policy found. Caveat, stated because it is
easy to misread: this is a finite-sample quantity. A policy compared with a second independent draw of
n samples *of itself* retains less than 1 whenever some answers are rare, so retained < 1 alone is not
evidence of narrowing; compare it across methods at the same n (and report n).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Hashable, Mapping, Sequence

import numpy as np

from ladtrain.passk import EvaluationError, pass_at_k_curve


def correct_answer_counts(answers: Sequence[Hashable | None], correct: Sequence[bool]) -> dict:
    """``{answer: m_a}`` over the correct samples with an answer (``None`` answers are not counted)."""
    if len(answers) != len(correct):
        raise EvaluationError(f"{len(answers)} answers but {len(correct)} correctness values")
    return dict(Counter(a for a, c in zip(answers, correct) if c and a is not None))


def distinct_correct_at_k(n: int, counts: Mapping[Hashable, int], ks: Sequence[int]) -> np.ndarray:
    r"""Unbiased expected number of distinct correct answers among k samples, at each k of ``ks``:
    ``sum_a 1 - C(n - m_a, k) / C(n, k)`` (module docstring). Shape ``(len(ks),)``."""
    if sum(counts.values()) > n:
        raise EvaluationError(f"{sum(counts.values())} correct samples counted but only n={n} samples")
    out = np.zeros(len(ks), dtype=np.float64)
    for m in counts.values():
        out += pass_at_k_curve(n, int(m), ks)
    return out


def retained(base: Mapping[Hashable, int] | set, trained: Mapping[Hashable, int] | set) -> float:
    """Share of the base's distinct correct answers that the trained policy also produced:
    ``|A_base & A_trained| / |A_base|``; NaN when ``A_base`` is empty (module docstring)."""
    a_base, a_trained = set(base), set(trained)
    return len(a_base & a_trained) / len(a_base) if a_base else math.nan


def new_answers(base: Mapping[Hashable, int] | set, trained: Mapping[Hashable, int] | set) -> int:
    """``|A_trained - A_base|``: distinct correct answers only the trained policy produced."""
    return len(set(trained) - set(base))


def per_problem(base_counts: Sequence[Mapping], trained_counts: Sequence[Mapping], base_n: Sequence[int],
                trained_n: Sequence[int]) -> dict[str, list[float]]:
    """``retained`` and ``new`` per problem for two evaluations of the same problems; both must have
    drawn the same number of samples of each problem (else the comparison would favour the larger)."""
    if len(base_counts) != len(trained_counts):
        raise EvaluationError(f"{len(base_counts)} base problems but {len(trained_counts)} trained ones")
    if list(base_n) != list(trained_n):
        raise EvaluationError("retained answers need the same number of samples per problem for both "
                              "policies")
    return {"retained": [retained(b, t) for b, t in zip(base_counts, trained_counts)],
            "new": [float(new_answers(b, t)) for b, t in zip(base_counts, trained_counts)]}


__all__ = ["correct_answer_counts", "distinct_correct_at_k", "new_answers", "per_problem", "retained"]
