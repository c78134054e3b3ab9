r"""The statistics of a study (:mod:`ladtrain.compare`): mean and spread over seeds, and paired comparisons of
two arms on the same held-out problems (a Student-t interval over problems, the paired t-test, wins / ties /
losses, per-seed differences), and the verdict an interval supports."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; NaN for a single value), NaNs dropped."""
    a = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if a.size == 0:
        return math.nan, math.nan
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else math.nan


def paired(arm: np.ndarray, ref: np.ndarray, confidence: float = 0.95) -> dict[str, Any]:
    r"""Paired comparison of two arms on the same problems and seeds.

    ``arm`` and ``ref`` are (S, P): per-seed, per-problem values (NaN = undefined, e.g. dist-n of empty
    samples). Per problem, ``d_p = mean_s arm[s,p] - mean_s ref[s,p]`` (over seeds where both are
    defined); over the P problems with a defined ``d_p``:

    .. math::  \bar d \pm t_{(1+c)/2,\,P-1}\, \frac{s_d}{\sqrt P}

    (Student-t interval, ``s_d`` the sample standard deviation of ``d``), the two-sided paired t-test
    p-value, and wins / ties / losses (``d_p > 0``, ``= 0``, ``< 0``). ``seed_diffs``: per seed, the mean
    over problems of ``arm[s] - ref[s]``."""
    from scipy import stats

    arm, ref = np.asarray(arm, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if arm.shape != ref.shape or arm.ndim != 2:
        raise ValueError(f"paired needs two (S, P) arrays of one shape, got {arm.shape} and {ref.shape}")
    both = ~(np.isnan(arm) | np.isnan(ref))  # (S, P)
    a = np.where(both, arm, 0.0).sum(0)
    b = np.where(both, ref, 0.0).sum(0)
    n = both.sum(0)  # (P,)
    keep = n > 0
    d = (a[keep] - b[keep]) / n[keep]  # (P',)
    out: dict[str, Any] = {"problems": int(d.size), "seeds": int(arm.shape[0])}
    out["mean_diff"] = float(d.mean()) if d.size else math.nan
    if d.size > 1 and np.ptp(d) > 0:
        half = stats.t.ppf((1 + confidence) / 2, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
        out["ci"] = [out["mean_diff"] - half, out["mean_diff"] + half]
        out["p_value"] = float(stats.ttest_1samp(d, 0.0).pvalue)
    else:  # all differences equal (often all zero): the interval is the point, no test
        out["ci"] = [out["mean_diff"], out["mean_diff"]]
        out["p_value"] = math.nan if not d.size or out["mean_diff"] != 0 else 1.0
    out["wins"], out["ties"], out["losses"] = int((d > 0).sum()), int((d == 0).sum()), int((d < 0).sum())
    seed_diffs = []
    for s in range(arm.shape[0]):
        m = both[s]
        seed_diffs.append(float((arm[s, m] - ref[s, m]).mean()) if m.any() else math.nan)
    out["seed_diffs"] = seed_diffs
    return out


def verdict(p: dict[str, Any]) -> str:
    """``better`` / ``worse`` when the interval excludes 0, else ``no clear difference``."""
    lo, hi = p["ci"]
    if math.isnan(lo):
        return "undefined"
    if lo > 0:
        return "better"
    if hi < 0:
        return "worse"
    return "no clear difference"


__all__ = ["mean_std", "paired", "verdict"]
