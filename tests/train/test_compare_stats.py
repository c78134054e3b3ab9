"""Oracle tests for the statistics of ``python -m ladtrain compare`` (hand-computed values)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ladtrain.compare import mean_std, paired, seeds_of, verdict
from ladtrain.config import ConfigError


def test_paired_difference_interval_and_t_test_by_hand():
    # seed-averaged per problem: arm [1, .5, .5], ref [.5, 0, .5] -> d = [.5, .5, 0]
    # mean 1/3, s_d = sqrt(1/12), se = 1/6, t_{0.975, 2} = 4.302653 -> half width 0.7171088
    # t = 2 with 2 df: p = 2 (1 - F(2)), F(t) = 1/2 + t / (2 sqrt(2 + t^2)) -> p = 1 - 2/sqrt(6)
    arm = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    ref = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    p = paired(arm, ref)
    assert p["mean_diff"] == pytest.approx(1 / 3, rel=1e-12)
    half = 4.302652729749464 / 6
    assert p["ci"] == pytest.approx([1 / 3 - half, 1 / 3 + half], rel=1e-9)
    assert p["p_value"] == pytest.approx(1 - 2 / math.sqrt(6), rel=1e-9)
    assert (p["wins"], p["ties"], p["losses"]) == (2, 1, 0)
    assert p["seed_diffs"] == pytest.approx([1 / 3, 1 / 3])
    assert verdict(p) == "no clear difference"
    # swapping the arms flips every sign
    q = paired(ref, arm)
    assert q["mean_diff"] == pytest.approx(-1 / 3) and q["ci"] == pytest.approx(
        [-1 / 3 - half, -1 / 3 + half]
    )
    assert (q["wins"], q["losses"]) == (0, 2)


def test_paired_skips_undefined_values_per_seed():
    # problem 2 is undefined (NaN) in seed 0 for the arm: only seed 1 counts there: d_2 = 0 - 0 = 0
    arm = np.array([[1.0, 0.0, math.nan], [1.0, 1.0, 0.0]])
    ref = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    p = paired(arm, ref)
    assert p["mean_diff"] == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    assert p["seed_diffs"] == pytest.approx([0.5, 1 / 3])


def test_paired_constant_difference_has_a_point_interval_and_clear_verdict():
    arm = np.full((2, 4), 0.75)
    ref = np.full((2, 4), 0.5)
    p = paired(arm, ref)
    assert p["ci"] == pytest.approx([0.25, 0.25])
    assert verdict(p) == "better"
    assert verdict(paired(ref, arm)) == "worse"
    same = paired(ref, ref)
    assert same["mean_diff"] == 0.0 and same["p_value"] == 1.0 and verdict(same) == "no clear difference"


def test_mean_std_uses_sample_std_and_drops_nan():
    mu, sd = mean_std([1.0, 2.0, 3.0, math.nan])
    assert mu == pytest.approx(2.0) and sd == pytest.approx(1.0)  # ddof 1
    mu, sd = mean_std([4.0])
    assert mu == 4.0 and math.isnan(sd)


def test_seeds_count_or_list():
    assert seeds_of("3") == [0, 1, 2]
    assert seeds_of("4,7") == [4, 7]
    assert seeds_of("5,") == [5]
    with pytest.raises(ConfigError, match="--seeds"):
        seeds_of("0")
    with pytest.raises(ConfigError, match="--seeds"):
        seeds_of("1,1")
    with pytest.raises(ConfigError, match="--seeds"):
        seeds_of("a,b")


def test_mechanism_lines_split_brake_and_reweighting_by_hand():
    from ladtrain.compare import mechanism_lines

    arms = [{"label": "lad:js/u4", "loss": "lad:js", "updates": 4, "eta": 0.25},
            {"label": "ladw:js/u4", "loss": "ladw:js", "updates": 4, "eta": 0.25},
            {"label": "grpo/u4", "loss": "grpo", "updates": 4, "eta": 0.25}]
    # one seed, two problems: lad [0.5, 0.5], ladw [0.25, 0.25], grpo [0.25, 0.25]
    pp = {"lad:js/u4": [[0.5, 0.5]], "ladw:js/u4": [[0.25, 0.25]], "grpo/u4": [[0.25, 0.25]]}
    results = {"arms": arms, "train": {"eta": 0.25}, "metrics": ["pass@1"],
               "per_problem": {k: {"pass@1": v} for k, v in pp.items()}}
    lines = mechanism_lines(results)
    brake = next(x for x in lines if x.startswith("- brake"))
    reweight = next(x for x in lines if x.startswith("- reweighting"))
    assert "pass@1 +0.250 [+0.250, +0.250] (better)" in brake
    assert "pass@1 +0.000 [+0.000, +0.000] (no clear difference)" in reweight
