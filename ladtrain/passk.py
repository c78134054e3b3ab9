r"""pass@k for any k up to the number of samples, pass@k curves of two policies, and their crossover.

**Estimator** (Chen et al. 2021, arXiv 2107.03374, eq. 1). A problem has ``n`` i.i.d. samples of which
``c`` are correct. For ``1 <= k <= n``

.. math::  \widehat{\mathrm{pass@}k} = 1 - \binom{n-c}{k} \Big/ \binom{n}{k}
           = 1 - \prod_{j=n-c+1}^{n} \Big(1 - \frac{k}{j}\Big)

is the probability that a uniformly random k-subset of the n samples holds a correct one, and an
unbiased estimate of ``1 - (1 - p)^k`` (``p`` the policy's probability of a correct sample): over
``c ~ Binomial(n, p)`` its mean is exactly that (tested in rational arithmetic). It is 1 when
``n - c < k``. The plug-in ``1 - (1 - c/n)^k`` is biased (it is low for ``1 < k``).

**Numerics.** The binomials overflow a float from ``n ~ 1030`` on, so the product is used, evaluated as
``-expm1(sum_j log1p(-k/j))``: every factor lies in (0, 1), the sum of logs neither under- nor
overflows, and ``expm1`` keeps full relative precision when pass@k is tiny (one correct sample in
1024 and ``k = 1`` gives ``1/1024`` to the last bit). At ``n = 1024`` the result agrees with the exact
rational value ``1 - C(n-c,k)/C(n,k)`` (Python ``fractions``) to a relative error below 1e-12 for every
``c`` and every ``k`` (tested).

**Curves.** The pass@k curve of a policy is the mean over problems of its per-problem estimates at each
k of a list; two curves of the same problems give the **crossover k**: the smallest listed k at which
the base's mean pass@k is at least the trained policy's (:func:`crossover`), or ``None``, "no crossover
up to k_max" (Yue et al. 2025, arXiv 2504.13837, find it at k of 64 to 256 for RLVR models).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


class EvaluationError(ValueError):
    """Inconsistent evaluation input or options (a user mistake: shown as one line). Shared by the
    evaluation modules (:mod:`ladtrain.evaluation`, :mod:`ladtrain.coverage`)."""


def pass_at_k(n: int, c: int, k: int) -> float:
    r"""Unbiased pass@k of one problem with ``n`` samples, ``c`` of them correct:
    ``1 - C(n-c, k) / C(n, k)`` (see the module docstring for the stable evaluation).
    Requires ``0 <= c <= n`` and ``1 <= k <= n``."""
    return float(pass_at_k_curve(n, c, [k])[0])


def pass_at_k_curve(n: int, c: int, ks: Sequence[int]) -> np.ndarray:
    r"""pass@k of one problem (``n`` samples, ``c`` correct) at every k of ``ks``, shape ``(len(ks),)``:
    ``1 - prod_{j=n-c+1}^{n} (1 - k/j)``, computed as ``-expm1(sum_j log1p(-k/j))``, and exactly 1
    where ``n - c < k``."""
    n, c = int(n), int(c)
    if not 0 <= c <= n:
        raise EvaluationError(f"need 0 <= c <= n, got c={c}, n={n}")
    k = np.asarray([int(x) for x in ks], dtype=np.float64)  # (K,)
    bad = [int(x) for x in k if not 1 <= x <= n]
    if bad:
        raise EvaluationError(f"pass@{bad[0]} needs 1 <= k <= n samples, got n={n}")
    out = np.ones_like(k)
    if c == 0:
        return np.zeros_like(k)
    j = np.arange(n - c + 1, n + 1, dtype=np.float64)  # (c,)
    finite = (n - c) >= k  # else every k-subset holds a correct sample
    if finite.any():
        logs = np.log1p(-k[finite, None] / j[None, :]).sum(axis=1)  # (K',) each term in (-inf, 0)
        out[finite] = -np.expm1(logs)
    return out


def pass_at_k_table(counts: Sequence[tuple[int, int]], ks: Sequence[int]) -> np.ndarray:
    """Per-problem pass@k, shape ``(P, K)``, from ``counts[i] = (n_i, c_i)``."""
    if not counts:
        return np.zeros((0, len(ks)))
    return np.stack([pass_at_k_curve(n, c, ks) for n, c in counts])


def powers_of_two(k_max: int) -> list[int]:
    """``1, 2, 4, ...`` up to ``k_max``, with ``k_max`` itself last when it is not a power of two."""
    if k_max < 1:
        raise EvaluationError(f"k_max must be >= 1, got {k_max}")
    ks = [1 << i for i in range(int(math.log2(k_max)) + 1)]
    return ks if ks[-1] == k_max else [*ks, k_max]


def parse_ks(text: str, flag: str = "--k") -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]``; one value ``K`` means every power of two up to K and K itself
    (:func:`powers_of_two`). Sorted, duplicates dropped; each k must be an integer >= 1."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise EvaluationError(f"{flag}: give k values, e.g. 1,2,4,8 or one k_max")
    ks = []
    for p in parts:
        try:
            ks.append(int(p))
        except ValueError:
            raise EvaluationError(f"{flag}: {p!r} is not an integer") from None
    if min(ks) < 1:
        raise EvaluationError(f"{flag}: every k must be >= 1, got {min(ks)}")
    return powers_of_two(ks[0]) if len(ks) == 1 else sorted(set(ks))


def resolve_ks(k: str = "", k_max: int = 0, samples: int = 0) -> tuple[list[int], int]:
    """The k values to report and the number of samples per problem to draw, from the options
    ``--k LIST`` (see :func:`parse_ks`), ``--k-max K`` (= ``--k K``) and ``--eval-samples N``:
    samples per problem = ``max(N, largest k)``; with neither ``--k`` nor ``--k-max`` the k values are
    the powers of two up to N and N."""
    if k and k_max:
        raise EvaluationError("--k and --k-max: give one of them")
    if k:
        ks = parse_ks(k)
    elif k_max:
        ks = parse_ks(str(k_max), "--k-max")
    elif samples >= 1:
        ks = powers_of_two(samples)
    else:
        raise EvaluationError("give --k, --k-max or a number of samples >= 1")
    return ks, max(int(samples), ks[-1])


def ks_of(cfg) -> tuple[list[int], int]:
    """:func:`resolve_ks` for a run's options: a TrainConfig's ``--k``, ``--k-max`` and
    ``--eval-samples``, or an EvalConfig's ``--k`` (default 16), ``--k-max`` and ``--samples``."""
    if hasattr(cfg, "eval_samples"):
        return resolve_ks(cfg.eval_k or "", cfg.eval_k_max, cfg.eval_samples)
    return resolve_ks(cfg.k or ("" if cfg.k_max else "16"), cfg.k_max, cfg.samples)


def crossover(ks: Sequence[int], base: Sequence[float], trained: Sequence[float]) -> int | None:
    """The smallest ``k`` of ``ks`` (sorted ascending) with ``base[k] >= trained[k]`` (mean pass@k over
    the same problems), or ``None`` when the trained curve lies above the base at every listed k.
    ``1`` means the trained policy is never ahead. NaN entries never count as a crossover."""
    for k, b, t in zip(ks, base, trained):
        if not (math.isnan(b) or math.isnan(t)) and b >= t:
            return int(k)
    return None


__all__ = ["EvaluationError", "crossover", "ks_of", "parse_ks", "pass_at_k", "pass_at_k_curve",
           "pass_at_k_table", "powers_of_two", "resolve_ks"]
