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
        applied = result["trl"]["applied"]  # what TRL really ran with, read back from the trainer
        assert applied["gradient_checkpointing"] is False and applied["bf16"] is False
        assert applied["model_dtype"] == "torch.float32" and applied["loss_type"] == "grpo"
        assert applied["optimizer"] == "AdamW"
        assert all(g["weight_decay"] == 0.0 for g in applied["optimizer_groups"])
        assert all(g["fused"] is True for g in applied["optimizer_groups"])  # ladtrain's AdamW: fused too
        assert r2["memory_peak"] > 0 and result["trl"]["memory"]["update_mb"] > 0
        # the same work: same weights (lr 0), prompts and generator seed give the same completion lengths
        assert result["setup"]["lr"] == 0.0
        assert result["trl"]["completion_len"] == lad["completion_tokens"] / result["batch"]
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
    # memory per phase: peaks are at least the step's start, the process high-water mark at least every peak
    m = lad["memory"]
    assert 0 < m["start_mb"] <= m["peak_mb"] and m["generation_mb"] <= m["peak_mb"] <= lad["peak_rss_mb"] + 1
    # the limit is the model's kernels: positive, and the step is not faster than its forward calls alone
    assert 0 < lad["kernel_limit"] and lad["kernel"]["forward:forward_backward"] > 0
    assert doc["trl_settings"] and all(len(row) == 3 for row in doc["trl_settings"])


def test_grpo_only_worker_and_before_configuration(step_profile, cache):
    """The large shapes' mode: GRPO steps only, no snapshot; and the before-issue-24 configuration
    (generate's sampler, full logits) runs the same step."""
    import torch

    torch.set_num_threads(1)
    setup = step_profile.Setup(model="tiny", prompts=2, group=2, max_new_tokens=5, pairs=False)
    now = step_profile.ladtrain_worker(setup, 1)
    before_setup = step_profile.replace(setup, sampler="hf", chunked=False, buckets=False)
    before = step_profile.ladtrain_worker(before_setup, 1)
    assert set(now["records"]) == {"grpo"} == set(before["records"])
    result = step_profile.summarise(setup, [now], [], [before])
    assert "ratio_lad_over_grpo" not in result and result["ratio_before_over_now"]["cpu"] > 0
    assert "pairs not run" in step_profile.report(result) and "before issue 24" in step_profile.report(result)


def test_the_lean_ablation_runs_without_lean_layers_and_is_reported(step_profile, cache, monkeypatch):
    """``--lean-ablation``: a worker without lean layers (and, without ``pack``, with buckets or one pass),
    summarised beside the default one."""
    import torch

    from ladtrain import lean_layers

    torch.set_num_threads(1)
    applied = []
    real = lean_layers.apply
    monkeypatch.setattr(lean_layers, "pays", lambda m: True)  # the tiny model is narrower than MIN_WIDTH
    monkeypatch.setattr(lean_layers, "apply", lambda m: applied.append(real(m)) or applied[-1])
    setup = step_profile.Setup(model="tiny", prompts=2, group=2, max_new_tokens=5, pairs=False)
    now = step_profile.ladtrain_worker(setup, 1)
    assert applied and applied[0] > 0
    plain = step_profile.ladtrain_worker(step_profile.replace(setup, lean=False, pack=False), 1)
    assert len(applied) == 1  # the ablation's worker did not switch them on
    result = step_profile.summarise(setup, [now], [], None, [plain])
    assert result["ratio_no_lean_over_now"]["cpu"] > 0 and result["no_lean"]["setup"]["lean"] is False
    assert "without lean layers" in step_profile.report(result)


def test_unknown_shape_is_a_usage_error(step_profile, capsys):
    with pytest.raises(SystemExit) as exit_:
        step_profile.main(["--shape", "smollm2-1b"])
    assert exit_.value.code == 2 and "--shape" in capsys.readouterr().err


def test_lad_and_grpo_steps_see_the_same_rollout(step_profile, cache):
    """The interleaved pair restores model, optimizer and RNG: the only difference is the loss."""
    import torch

    torch.set_num_threads(1)
    setup = step_profile.Setup(model="tiny", prompts=2, group=4, max_new_tokens=6)  # rewards differ here
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


def test_the_draws_benchmark_times_both_draws(capsys):
    """benchmarks/draws.py: softmax and both draws of ladtrain.compact_sampler timed, and their ratio."""
    spec = importlib.util.spec_from_file_location("draws_bench", ROOT / "benchmarks" / "draws.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--rows", "3", "--vocab", "50", "--calls", "2", "--repeats", "2"])
    out = capsys.readouterr().out
    assert "3 rows x 50 tokens" in out
    for name in ("softmax", "generate", "inverse-cdf"):
        assert f"{name}: median " in out
    assert "inverse-cdf / generate: " in out


def test_the_step_benchmark_says_when_the_two_sides_sampled_other_completions(step_profile):
    """With ``--draws inverse-cdf`` ladtrain samples other completions than TRL; the report says the step
    ratio is then not like for like and gives it per completion token. Control: equal lengths, no line."""
    ladtrain = {"completion_tokens": 1200.0, "transposed_copies": []}
    result = {"setup": {"draws": "inverse-cdf"}, "batch": 16, "ladtrain": ladtrain,
              "trl": {"completion_len": 81.0}, "ratio_trl_over_ladtrain_grpo": {"wall": 1.5}}
    assert step_profile.token_mismatch_line(result) == (
        "    NOT like for like in tokens: the two sides sampled different completions (ladtrain's draws "
        "inverse-cdf); per completion token ladtrain is 1.39x faster (wall)")
    ladtrain["completion_tokens"] = 81.0 * 16
    assert step_profile.token_mismatch_line(result) is None
