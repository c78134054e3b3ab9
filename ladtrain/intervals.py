r"""95% Student-t intervals over problems: of one policy's mean, and of a paired difference of two.

Held-out metrics are means over problems of a per-problem value ``x_p`` (pass@k, accuracy, distinct
correct answers, ...). Treating the P problems as a sample from the task's distribution of problems,

.. math::  \bar x \pm t_{(1+c)/2,\,P-1}\, \frac{s_x}{\sqrt P}

(``s_x`` the sample standard deviation, ddof 1; confidence ``c`` = 0.95) is the interval of
:func:`mean_interval`. A base and a trained policy evaluated on the **same** problems are compared with
the paired differences ``d_p = trained_p - base_p`` and the same formula on ``d``
(:func:`paired_interval`), which is what ``python -m ladtrain compare`` reports per problem
(:func:`ladtrain.study_stats.paired`). The intervals cover problem-sampling noise and the sampling noise of
the per-problem estimates; they do not cover seed-to-seed variation of training.

Undefined per-problem values (NaN, e.g. retained answers of a problem the base never solved) are left
out. With fewer than two defined values the interval is unknown: ``lo = hi = NaN`` (printed ``n/a``).
When every value is equal the formula gives the point itself (``s_x = 0``).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

CONFIDENCE = 0.95


def _t_half(x: np.ndarray, confidence: float) -> float:
    from scipy import stats

    if x.size < 2:
        return math.nan
    return float(stats.t.ppf((1 + confidence) / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, float]:
    """``{"mean", "lo", "hi", "n"}`` of the defined (non-NaN) values: the mean and its Student-t
    interval over them (module docstring); ``n`` is how many values were defined."""
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    mean = float(x.mean()) if x.size else math.nan
    half = _t_half(x, confidence)
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "n": int(x.size)}


def paired_interval(trained: Sequence[float], base: Sequence[float],
                    confidence: float = CONFIDENCE) -> dict[str, float]:
    """The mean of ``d_p = trained_p - base_p`` over problems where both are defined, with its
    Student-t interval (``{"mean", "lo", "hi", "n"}``). ``trained`` and ``base`` list the same problems
    in the same order."""
    t, b = np.asarray(trained, dtype=np.float64), np.asarray(base, dtype=np.float64)
    if t.shape != b.shape or t.ndim != 1:
        raise ValueError(f"paired_interval needs two 1-d arrays of one shape, got {t.shape} and {b.shape}")
    return mean_interval(t - b, confidence)  # NaN on either side gives NaN: left out


def excludes_zero(interval: dict[str, float]) -> bool:
    """True when the interval is known and lies entirely above or below 0."""
    lo, hi = interval["lo"], interval["hi"]
    return not (math.isnan(lo) or math.isnan(hi)) and (lo > 0 or hi < 0)


def fmt(interval: dict[str, float], digits: int = 3, sign: bool = False) -> str:
    """``0.412 [0.380, 0.444]``; ``n/a`` for an unknown bound."""
    spec = f"{'+' if sign else ''}.{digits}f"

    def one(v: float) -> str:
        return "n/a" if math.isnan(v) else format(v, spec)

    return f"{one(interval['mean'])} [{one(interval['lo'])}, {one(interval['hi'])}]"


__all__ = ["CONFIDENCE", "excludes_zero", "fmt", "mean_interval", "paired_interval"]
