r"""Evaluation metrics for k sampled completions per prompt: accuracy, diversity, base against trained.

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
- ``dist-n_per_token``  distinct n-grams / generated tokens (Li et al. 2016's own denominator);
- ``distinct correct``  number of distinct answers among the correct samples of a problem;
- ``distinct_correct@k``  unbiased expected number of distinct correct answers among k samples
  (:mod:`ladtrain.coverage`);
- ``answer entropy``  Shannon entropy (nats) of the empirical answer distribution of a problem.

pass@k itself (any k up to n, stable at n = 1024) and the crossover k are in :mod:`ladtrain.passk`,
retained base answers in :mod:`ladtrain.coverage`, the 95% intervals over problems in
:mod:`ladtrain.intervals`; :func:`versus` puts them together for a base and a trained policy.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Hashable, Sequence

import numpy as np

from ladtrain import coverage, intervals
from ladtrain.passk import EvaluationError, crossover, pass_at_k, pass_at_k_curve

# ---------------------------------------------------------------------------------------------------
# Accuracy


def _as_correct(correct: Sequence[Sequence[object]], threshold: float) -> list[list[bool]]:
    out = []
    for row in correct:
        out.append([bool(v) if isinstance(v, (bool, np.bool_)) else (v is not None and v >= threshold)
                    for v in row])
    return out


def pass_at_k_per_problem(correct: Sequence[Sequence[object]], k: int, *,
                          threshold: float = 1.0) -> np.ndarray:
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
    r"""dist-n of one problem's k samples as distinct / total n-grams (Li et al. 2016 divide by generated
    tokens instead: :func:`dist_n_per_token`; the LAD paper's exact definition was not found):

    .. math::  \mathrm{dist}\text{-}n
               = \frac{|\bigcup_j \mathrm{ngrams}_n(y_j)|}{\sum_j |\mathrm{ngrams}_n(y_j)|}

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


def dist_n_per_token(samples: Sequence[Sequence[Hashable] | str], n: int) -> float:
    r"""dist-n per generated token (the definition of Li et al. 2016, arXiv 1510.03055: distinct n-grams
    divided by the number of generated tokens) of one problem's k samples:

    .. math::  \frac{|\bigcup_j \mathrm{ngrams}_n(y_j)|}{\sum_j |y_j|}

    Same numerator as :func:`dist_n`; the denominator counts tokens, not n-grams, so it is :func:`dist_n`
    times (total n-grams) / (total tokens), at most :func:`dist_n`. NaN when the samples hold no token."""
    if n < 1:
        raise EvaluationError(f"dist-n needs n >= 1, got {n}")
    grams: set[tuple] = set()
    tokens = 0
    for s in samples:
        seq = tokenize(s) if isinstance(s, str) else list(s)
        tokens += len(seq)
        grams.update(ngrams(seq, n))
    return len(grams) / tokens if tokens else math.nan


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
            raise EvaluationError("correct, answers and texts must have the same number of samples per "
                                  "problem")
        if not shapes[0] or min(shapes[0]) == 0:
            raise EvaluationError("need at least one problem and one sample per problem")


def _nanmean(x: Sequence[float]) -> float:
    a = np.asarray(x, dtype=np.float64)
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else math.nan


def problem_metrics(correct: Sequence[bool], answers: Sequence[Hashable | None],
                    texts: Sequence[Sequence[Hashable] | str], *, ks: Sequence[int] = (1, 2, 4, 8, 16),
                    ns: Sequence[int] = (2, 3, 4)) -> dict[str, float]:
    """Every metric of one problem from its n samples: ``pass@k`` and ``distinct_correct@k``
    (:func:`ladtrain.coverage.distinct_correct_at_k`) for each k of ``ks`` (all must be <= n),
    ``avg@k``, ``maj@k``, ``dist-n`` for each n of ``ns``, ``distinct_correct`` (at k = n) and
    ``answer_entropy``."""
    n = len(correct)
    if n == 0:
        raise EvaluationError("every problem needs at least one sample")
    c = int(sum(bool(v) for v in correct))
    out: dict[str, float] = dict(zip((f"pass@{k}" for k in ks), pass_at_k_curve(n, c, ks).tolist()))
    counts = coverage.correct_answer_counts(answers, correct)
    distinct = coverage.distinct_correct_at_k(n, counts, ks).tolist()
    out.update(zip((f"distinct_correct@{k}" for k in ks), distinct))
    out["avg@k"] = c / n
    out["maj@k"] = maj_at_k(answers, correct)
    for m in ns:
        out[f"dist-{m}"] = dist_n(texts, m)
        out[f"dist-{m}_per_token"] = dist_n_per_token(texts, m)
    out["distinct_correct"] = float(len(counts))
    out["answer_entropy"] = answer_entropy(answers)
    return out


def per_problem(samples: Samples, *, ks: Sequence[int] = (1, 2, 4, 8, 16),
                ns: Sequence[int] = (2, 3, 4)) -> dict:
    """Every metric per problem (lists of length P, :func:`problem_metrics`), for paired comparisons
    across methods. ``pass@k`` is reported for each k in ``ks`` not larger than the smallest sample
    count."""
    n_min = min(len(r) for r in samples.correct)
    ks = [k for k in ks if k <= n_min]
    rows = [problem_metrics(c, a, t, ks=ks, ns=ns) for c, a, t in zip(samples.correct, samples.answers,
                                                                       samples.texts)]
    return {name: [r[name] for r in rows] for name in rows[0]}


def summarize(samples: Samples, *, ks: Sequence[int] = (1, 2, 4, 8, 16),
              ns: Sequence[int] = (2, 3, 4)) -> dict:
    """Mean over problems of every metric of :func:`per_problem` (NaN dist-n values skipped), plus
    ``problems`` and ``samples_per_problem`` (the smallest count)."""
    rows = per_problem(samples, ks=ks, ns=ns)
    out = {name: _nanmean(v) for name, v in rows.items()}
    out["problems"] = len(samples.correct)
    out["samples_per_problem"] = min(len(r) for r in samples.correct)
    return out


def intervals_of(rows: dict[str, Sequence[float]]) -> dict[str, dict[str, float]]:
    """The 95% interval over problems (:func:`ladtrain.intervals.mean_interval`) of every per-problem
    metric in ``rows``."""
    return {name: intervals.mean_interval(values) for name, values in rows.items()}


def result(rows: Sequence[dict[str, float]], correct_answers: Sequence[dict], problem_ids: Sequence[str],
           samples: int, ks: Sequence[int]) -> dict[str, Any]:
    """One evaluation as a JSON-ready dict, from the :func:`problem_metrics` row and the correct-answer
    counts (:func:`ladtrain.coverage.correct_answer_counts`) of each problem: the mean of every metric
    (NaN skipped), ``accuracy`` (= ``avg@k``), ``intervals`` (:func:`intervals_of`, ``accuracy``'s too),
    ``problems``,
    ``samples_per_problem``, ``ks``, ``problem_ids``, ``per_problem`` and ``correct_answers``."""
    if not rows or len(rows) != len(correct_answers) or len(rows) != len(problem_ids):
        raise EvaluationError(f"need one row, one answer count and one id per problem, got {len(rows)}, "
                              f"{len(correct_answers)} and {len(problem_ids)}")
    per = {name: [r[name] for r in rows] for name in rows[0]}
    out: dict[str, Any] = {name: _nanmean(v) for name, v in per.items()}
    out.update(problems=len(rows), samples_per_problem=int(samples), ks=list(ks))
    out["accuracy"] = out["avg@k"]
    out["intervals"] = intervals_of(per)
    out["intervals"]["accuracy"] = out["intervals"]["avg@k"]
    out["problem_ids"] = list(problem_ids)
    out["per_problem"] = per
    out["correct_answers"] = [dict(c) for c in correct_answers]
    return out


# ---------------------------------------------------------------------------------------------------
# Base against trained


def versus(base: dict[str, Any], trained: dict[str, Any]) -> dict[str, Any]:
    """Two evaluations of the same problems with the same number of samples (the results of
    :func:`ladtrain.eval_sampling.evaluate`): per metric the base and trained means with their 95%
    intervals over problems and the paired difference ``trained - base`` with its interval
    (:mod:`ladtrain.intervals`); the pass@k curves; the **crossover k** (:func:`ladtrain.passk.crossover`:
    smallest k with base mean >= trained mean, None = "none up to k_max") and ``crossover_significant_k``
    (smallest k whose difference interval lies entirely below 0: the base is ahead beyond problem
    noise); **retained** base answers and **new** answers per problem (:mod:`ladtrain.coverage`), with
    intervals."""
    if base["problem_ids"] != trained["problem_ids"]:
        raise EvaluationError("base and trained evaluations are of different problems")
    pb, pt = base["per_problem"], trained["per_problem"]
    metrics = {}
    for name in pb:
        if name in pt:
            metrics[name] = {"base": intervals.mean_interval(pb[name]),
                             "trained": intervals.mean_interval(pt[name]),
                             "difference": intervals.paired_interval(pt[name], pb[name])}
    ks = [k for k in base["ks"] if k in trained["ks"]]
    curve_b = [metrics[f"pass@{k}"]["base"]["mean"] for k in ks]
    curve_t = [metrics[f"pass@{k}"]["trained"]["mean"] for k in ks]
    significant = next((k for k in ks if metrics[f"pass@{k}"]["difference"]["hi"] < 0), None)
    n = [base["samples_per_problem"]] * len(pb["avg@k"])
    cov = coverage.per_problem(base["correct_answers"], trained["correct_answers"], n,
                               [trained["samples_per_problem"]] * len(pt["avg@k"]))
    return {
        "problems": len(base["problem_ids"]),
        "samples_per_problem": base["samples_per_problem"],
        "ks": ks,
        "k_max": ks[-1] if ks else None,
        "metrics": metrics,
        "pass_at_k": {"base": curve_b, "trained": curve_t},
        "crossover_k": crossover(ks, curve_b, curve_t),
        "crossover_significant_k": significant,
        "retained": intervals.mean_interval(cov["retained"]),
        "new_answers": intervals.mean_interval(cov["new"]),
        "per_problem": cov,
    }


def crossover_text(v: dict[str, Any]) -> str:
    """One line on the crossover of :func:`versus`, true whatever the numbers: the k, and whether the
    base is ahead there beyond problem noise."""
    k, sig, k_max = v["crossover_k"], v["crossover_significant_k"], v["k_max"]
    if k is None:
        return f"crossover: none up to k={k_max} (trained pass@k above the base at every k)"
    d = v["metrics"][f"pass@{k}"]["difference"]
    if all(b == t for b, t in zip(v["pass_at_k"]["base"], v["pass_at_k"]["trained"])):
        return f"crossover: k={k} (base and trained pass@k are equal at every k up to {k_max})"
    line = f"crossover: k={k} (base pass@{k} >= trained; trained - base {intervals.fmt(d, sign=True)})"
    if sig is None:
        return line + f"; at no k up to {k_max} is the base ahead beyond problem noise"
    return line + f"; base ahead beyond problem noise from k={sig}"


__all__ = [
    "EvaluationError",
    "NO_ANSWER",
    "Samples",
    "answer_entropy",
    "avg_at_k_per_problem",
    "crossover_text",
    "dist_n",
    "distinct_correct_answers",
    "intervals_of",
    "maj_at_k",
    "ngrams",
    "pass_at_k",
    "pass_at_k_per_problem",
    "per_problem",
    "problem_metrics",
    "result",
    "summarize",
    "tokenize",
    "versus",
]
