"""The step benchmark (benchmarks/step_profile.py) runs on a tiny configuration and reports its three
ratios. No wall-clock assertions: the machine is shared; the checks are on what the numbers mean."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def step_profile():
    spec = importlib.util.spec_from_file_location("step_profile", ROOT / "benchmarks" / "step_profile.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["step_profile"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_quick_benchmark_reports_the_three_ratios(step_profile, cache, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert step_profile.main(["--quick", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    doc = json.loads(out.read_text())
    (result,) = doc["results"]
    assert result["setup"]["model"] == "tiny" and result["batch"] == 16
    # (1) LAD / GRPO: both steps ran on the identical rollout (only the loss changed)
    lad = result["ladtrain"]
    r1 = result["ratio_lad_over_grpo"]
    assert r1["wall"]["n"] >= 1 and r1["wall"]["min"] <= r1["wall"]["median"] <= r1["wall"]["max"]
    assert 0 < r1["cpu"]["median"] < math.inf
    assert "(1) LAD / GRPO step time" in printed
    assert result["loss_only_cpu"]["lad"] > 0 and result["loss_only_cpu"]["grpo"] > 0
    # (2) TRL, when installed
    if step_profile.trl_available():
        r2 = result["ratio_trl_over_ladtrain_grpo"]
        assert r2["wall_low"] <= r2["wall"] <= r2["wall_high"] and r2["wall"] > 0
        assert "(2) TRL" in printed and "GRPOTrainer" in printed
    else:
        assert "(2) TRL comparison not run" in printed
    # (3) overhead: a fraction; the kernels it subtracts are no longer than the step
    r3 = result["overhead_fraction"]
    assert 0.0 <= r3["min"] <= r3["median"] <= r3["max"] < 1.0
    assert sum(lad["kernel"].values()) <= lad["lad_step_wall"]["max"]
    assert "(3) share of the step outside" in printed
    # the phases partition the step
    assert sum(lad["phases_wall"].values()) == pytest.approx(lad["lad_step_wall"]["median"], rel=0.5)
    # --quick runs the workers in this process, so the peak RSS is this process's: earlier tests in the same
    # pytest process may have set it already (then peak == the value read before the model was built)
    assert lad["peak_rss_mb"] >= lad["import_rss_mb"] > 0


def test_lad_and_grpo_steps_see_the_same_rollout(step_profile, cache):
    """The interleaved pair restores model, optimizer and RNG: the only difference is the loss."""
    import torch

    torch.set_num_threads(1)
    setup = step_profile.Setup(model="tiny", prompts=2, group=2, max_new_tokens=6)
    st = step_profile.lad_state(setup)
    snap = step_profile.snapshot(st)
    rows = {}
    for spec in ("lad", "grpo"):
        step_profile.restore(st, snap)
        rows[spec] = step_profile.lad_step(st, spec, step_profile.Clock())
    assert rows["lad"]["completion_tokens"] == rows["grpo"]["completion_tokens"]
    assert rows["lad"]["reward_mean"] == rows["grpo"]["reward_mean"] or math.isnan(rows["lad"]["reward_mean"])
    # and the two losses really differ in the update they made
    assert rows["lad"]["reward_std"] > 0 and rows["lad"]["loss"] != rows["grpo"]["loss"]
