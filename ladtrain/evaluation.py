r"""Evaluation metrics for k sampled completions per prompt: accuracy and diversity.

All functions are pure (lists/arrays in, numbers out). The input for one evaluation is, per problem
``i``, its ``n_i`` samples: correctness ``c_ij`` (a bool, or a reward turned into one by
``reward >= threshold``), the task's normalised final answer ``a_ij`` (``None`` = no answer could be
extracted) and the completion text or token ids.

Per-problem values are averaged over problems with equal weight (a problem with more samples does not
weigh more). Definitions (each function's docstring repeats its own):

- ``pass@k``  unbiased estimator of P(at least one of k samples is correct) (Chen et al. 2021);
- ``avg@k``   mean correctness of the samples of a problem ("mean@k", pass@1 averaged over k samples);
- ``maj@k``   correctness of the most frequent answer among the first k samples, ties split evenly;
- ``dist-n``  distinct n-grams / total n-grams over the k samples of one problem, then averaged;
- ``distinct correct``  number of distinct answers among the correct samples of a problem;
- ``answer entropy``  Shannon entropy (nats) of the empirical answer distribution of a problem.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np


class EvaluationError(ValueError):
    """Inconsistent evaluation input (a user mistake: shown as one line)."""


# ---------------------------------------------------------------------------------------------------
# Accuracy


def pass_at_k(n: int, c: int, k: int) -> float:
    r"""Unbiased pass@k for one problem with ``n`` samples of which ``c`` are correct (Chen et al. 2021).

    .. math::  \mathrm{pass@}k = 1 - \binom{n-c}{k} \Big/ \binom{n}{k}
               = 1 - \prod_{j=n-c+1}^{n} \Big(1 - \frac{k}{j}\Big),

    the probability that a uniformly random k-subset of the n samples contains a correct one. The
    product form avoids huge binomials; it equals 1 when ``n - c < k`` (every k-subset holds a correct
    sample). Requires ``0 <= c <= n`` and ``1 <= k <= n``.
    """
    n, c, k = int(n), int(c), int(k)
    if not 0 <= c <= n:
        raise EvaluationError(f"need 0 <= c <= n, got c={c}, n={n}")
    if not 1 <= k <= n:
        raise EvaluationError(f"pass@{k} needs 1 <= k <= n samples, got n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def _as_correct(correct: Sequence[Sequence[object]], threshold: float) -> list[list[bool]]:
    out = []
    for row in correct:
        out.append([bool(v) if isinstance(v, (bool, np.bool_)) else (v is not None and v >= threshold)
                    for v in row])
    return out


def pass_at_k_per_problem(correct: Sequence[Sequence[object]], k: int, *, threshold: float = 1.0) -> np.ndarray:
    """pass@k of every problem (shape (P,)); ``correct[i]`` is problem i's samples (bools or rewards,
    a reward counts as correct when ``>= threshold``; ``None`` is incorrect)."""
    rows = _as_correct(correct, threshold)
    return np.array([pass_at_k(len(r), sum(r), k) for r in rows], dtype=np.float64)


def avg_at_k_per_problem(correct: Sequence[Sequence[object]], *, threshold: float = 1.0) -> np.ndarray:
    r"""avg@k of every problem: ``(1/n_i) sum_j c_ij`` (shape (P,)). Its mean over problems is the
    unbiased estimate of pass@1 and what FlowRL/LAD report as Avg@16/Avg@32."""
    rows = _as_correct(correct, threshold)
    if any(len(r) == 0 for r in rows):
        raise EvaluationError("every problem needs at least one sample")
    return np.array([sum(r) / len(r) for r in rows], dtype=np.float64)


def maj_at_k(answers: Sequence[Hashable | None], correct: Sequence[bool], k: int | None = None) -> float:
    r"""Majority-vote accuracy for one problem over its first ``k`` samples (all when ``k`` is None).

    The vote is over the non-``None`` answers. Let ``M`` be the set of answers with the highest count.
    An answer's correctness is the share of its samples that were scored correct (1 or 0 when the
    task's answer normalisation is consistent). Then

    .. math::  \mathrm{maj@}k = \frac{1}{|M|}\sum_{a\in M} \mathrm{correct}(a),

    i.e. ties are broken uniformly at random, in expectation, so the value does not depend on sample
    order. No answer at all gives 0. Samples are i.i.d., so the first k are a fair subset.
    """
    if len(answers) != len(correct):
        raise EvaluationError(f"{len(answers)} answers but {len(correct)} correctness values")
    k = len(answers) if k is None else int(k)
    if not 1 <= k <= len(answers):
        raise EvaluationError(f"maj@{k} needs 1 <= k <= n samples, got n={len(answers)}")
    votes: Counter = Counter()
    right: Counter = Counter()
    for a, c in zip(answers[:k], correct[:k]):
        if a is None:
            continue
        votes[a] += 1
        right[a] += bool(c)
    if not votes:
        return 0.0
    top = max(votes.values())
    winners = [a for a, v in votes.items() if v == top]
    return sum(right[a] / votes[a] for a in winners) / len(winners)


# ---------------------------------------------------------------------------------------------------
# Diversity


def ngrams(tokens: Sequence[Hashable], n: int) -> list[tuple]:
    """The contiguous n-grams of one token sequence (none when it has fewer than n tokens)."""
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def tokenize(text: str) -> list[str]:
    """Default tokenisation for dist-n on text: whitespace split (words and symbols as written)."""
    return text.split()


def dist_n(samples: Sequence[Sequence[Hashable] | str], n: int) -> float:
    r"""dist-n of one problem's k samples (Li et al. 2016, as used by FlowRL/LAD):

    .. math::  \mathrm{dist}\text{-}n = \frac{|\bigcup_j \mathrm{ngrams}_n(y_j)|}{\sum_j |\mathrm{ngrams}_n(y_j)|}

    where ``ngrams_n(y)`` is the list of contiguous n-grams of sample ``y`` (n-grams never span two
    samples), the numerator counts distinct n-grams pooled over the k samples and the denominator all of
    them with repetition. Text samples are split on whitespace (:func:`tokenize`); token-id sequences are
    used as given. Returns NaN when the samples hold no n-gram at all (all shorter than n); averages over
    problems skip NaN. Range (0, 1]; 1 = no n-gram repeats within or across the samples.
    """
    if n < 1:
        raise EvaluationError(f"dist-n needs n >= 1, got {n}")
    grams: list[tuple] = []
    for s in samples:
        grams.extend(ngrams(tokenize(s) if isinstance(s, str) else list(s), n))
    if not grams:
        return math.nan
    return len(set(grams)) / len(grams)


def distinct_correct_answers(answers: Sequence[Hashable | None], correct: Sequence[bool]) -> int:
    """Number of distinct non-None answers among the correct samples of one problem. For tasks with
    one right answer it is 0 or 1; for tasks with many (Countdown: any expression reaching the target)
    it counts the different solutions found."""
    if len(answers) != len(correct):
        raise EvaluationError(f"{len(answers)} answers but {len(correct)} correctness values")
    return len({a for a, c in zip(answers, correct) if c and a is not None})


NO_ANSWER = "<no answer>"


def answer_entropy(answers: Sequence[Hashable | None]) -> float:
    r"""Shannon entropy (nats) of the empirical distribution of one problem's final answers:

    .. math::  H = -\sum_a \hat p(a) \log \hat p(a), \qquad \hat p(a) = \#\{j: a_j = a\}/k,

    where all unparsable answers (``None``) form one category. 0 when every sample gives the same
    answer; ``log k`` when all k differ."""
    if len(answers) == 0:
        raise EvaluationError("answer entropy needs at least one sample")
    counts = Counter(NO_ANSWER if a is None else a for a in answers)
    k = len(answers)
    return float(-sum((c / k) * math.log(c / k) for c in counts.values()))


# ---------------------------------------------------------------------------------------------------
# One summary for a whole evaluation


@dataclass(frozen=True)
class Samples:
    """k samples for each of P problems: ``correct[i][j]``, ``answers[i][j]``, ``texts[i][j]`` (text or
    token ids). All three have the same ragged shape."""

    correct: Sequence[Sequence[bool]]
    answers: Sequence[Sequence[Hashable | None]]
    texts: Sequence[Sequence[Sequence[Hashable] | str]]

    def __post_init__(self) -> None:
        shapes = [[len(r) for r in x] for x in (self.correct, self.answers, self.texts)]
        if not shapes[0] == shapes[1] == shapes[2]:
            raise EvaluationError("correct, answers and texts must have the same number of samples per problem")
        if not shapes[0] or min(shapes[0]) == 0:
            raise EvaluationError("need at least one problem and one sample per problem")


def _nanmean(x: Sequence[float]) -> float:
    a = np.asarray(x, dtype=np.float64)
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else math.nan


def per_problem(samples: Samples, *, ks: Sequence[int] = (1, 2, 4, 8, 16), ns: Sequence[int] = (2, 3, 4)) -> dict:
    """Every metric per problem (lists of length P), for paired comparisons across methods. ``pass@k``
    is reported for each k in ``ks`` not larger than the smallest sample count."""
    n_min = min(len(r) for r in samples.correct)
    out: dict[str, list] = {}
    for k in ks:
        if k <= n_min:
            out[f"pass@{k}"] = pass_at_k_per_problem(samples.correct, k).tolist()
    out["avg@k"] = avg_at_k_per_problem(samples.correct).tolist()
    out["maj@k"] = [maj_at_k(a, c) for a, c in zip(samples.answers, samples.correct)]
    for n in ns:
        out[f"dist-{n}"] = [dist_n(t, n) for t in samples.texts]
    out["distinct_correct"] = [distinct_correct_answers(a, c) for a, c in zip(samples.answers, samples.correct)]
    out["answer_entropy"] = [answer_entropy(a) for a in samples.answers]
    return out


def summarize(samples: Samples, *, ks: Sequence[int] = (1, 2, 4, 8, 16), ns: Sequence[int] = (2, 3, 4)) -> dict:
    """Mean over problems of every metric of :func:`per_problem` (NaN dist-n values skipped), plus
    ``problems`` and ``samples_per_problem`` (the smallest count)."""
    rows = per_problem(samples, ks=ks, ns=ns)
    out = {name: _nanmean(v) for name, v in rows.items()}
    out["problems"] = len(samples.correct)
    out["samples_per_problem"] = min(len(r) for r in samples.correct)
    return out


__all__ = [
    "EvaluationError",
    "NO_ANSWER",
    "Samples",
    "answer_entropy",
    "avg_at_k_per_problem",
    "dist_n",
    "distinct_correct_answers",
    "maj_at_k",
    "ngrams",
    "pass_at_k",
    "pass_at_k_per_problem",
    "per_problem",
    "summarize",
    "tokenize",
]
