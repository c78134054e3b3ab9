"""The baseline entries of the loss registry: each passes the right hyperparameters, ``ladw`` equals LAD
at ratio 1 (so LAD vs ladw isolates the brake), and FlowRL gets a frozen reference and a log Z head."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

import ladtheory.objective
from ladtrain import baselines, losses, trainer
from ladtrain.config import TrainConfig

F64 = torch.float64


def _inputs(seed=0, B=6, T=5, spread=0.0):
    g = torch.Generator().manual_seed(seed)
    logp_old = -torch.rand(B, T, generator=g, dtype=F64) * 3
    logp = (logp_old + spread * torch.randn(B, T, generator=g, dtype=F64)).requires_grad_(True)
    adv = torch.randn(B, generator=g, dtype=F64)
    mask = torch.ones(B, T, dtype=F64)
    mask[0, 3:] = 0
    mask[2, 1:] = 0
    return losses.LossInputs(logp, logp_old, adv, mask)


def test_every_baseline_spec_resolves_and_flowrl_asks_for_reference_and_log_z():
    names = {s: losses.get(s) for s in ("grpo", "dr_grpo", "dapo", "gspo", "flowrl", "ladw", "ladw:tv")}
    assert {s: x.name for s, x in names.items()} == {"grpo": "grpo", "dr_grpo": "dr_grpo", "dapo": "dapo",
                                                     "gspo": "gspo", "flowrl": "flowrl", "ladw": "ladw:js",
                                                     "ladw:tv": "ladw:tv"}
    assert names["flowrl"].needs_ref and names["flowrl"].needs_log_z
    assert not any(names[s].needs_ref or names[s].needs_log_z for s in ("grpo", "dapo", "gspo", "ladw"))
    assert losses.get("lad:kl").uses_eta and names["ladw"].uses_eta and not names["grpo"].uses_eta
    for bad in ("gspo:x", "flowrl:x", "ladw:nope"):
        with pytest.raises(losses.LossError, match="--loss"):
            losses.get(bad)


@pytest.mark.parametrize("divergence", ["js", "tv", "kl", "hellinger"])
def test_ladw_gradient_equals_lad_gradient_at_ratio_one(divergence):
    """At rho = 1 both give dL/dlogp_t = f'(e^{-A/eta}) / N_tokens: only the brake can separate them."""
    hp = TrainConfig(eta=0.5)
    x = _inputs()
    g_ladw = torch.autograd.grad(losses.get(f"ladw:{divergence}")(x, hp)[0], x.logp)[0]
    g_lad = torch.autograd.grad(losses.get(f"lad:{divergence}")(x, hp)[0], x.logp)[0]
    torch.testing.assert_close(g_ladw, g_lad, rtol=1e-10, atol=1e-12)
    # and the weight is LAD's effective weight, not the advantage: for JS w(A,1) = 0.5 log((1 + e^{A/eta}) /
    # 2)
    if divergence == "js":
        A = x.advantages
        w = 0.5 * torch.log((1 + torch.exp(A / 0.5)) / 2)
        n = x.mask.sum()
        torch.testing.assert_close(g_ladw, -(w[:, None] * x.mask) / n, rtol=1e-10, atol=1e-12)


def test_ladw_and_lad_differ_once_the_ratio_moves():
    hp = TrainConfig(eta=0.5)
    x = _inputs(spread=0.5)
    g_ladw = torch.autograd.grad(losses.get("ladw:js")(x, hp)[0], x.logp)[0]
    g_lad = torch.autograd.grad(losses.get("lad:js")(x, hp)[0], x.logp)[0]
    assert (g_ladw - g_lad).abs().max() > 1e-3


def test_grpo_family_entries_pass_their_normalisation_and_clip():
    x = _inputs(spread=0.3)
    hp = TrainConfig(clip_eps=0.2, max_new_tokens=7)
    args = (x.logp, x.logp_old, x.advantages, x.mask)
    cases = {
        "grpo": baselines.grpo_loss(*args, clip_eps=0.2, norm="grpo"),
        "dr_grpo": baselines.grpo_loss(*args, clip_eps=0.2, norm="dr_grpo", max_len=7),
        "dapo": baselines.grpo_loss(*args, clip_eps=0.2, clip_eps_high=0.28, norm="dapo"),
        "gspo": baselines.gspo_loss(*args),
    }
    for name, (want, _) in cases.items():
        got, _ = losses.get(name)(x, hp)
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    # an explicit --clip-eps-high overrides DAPO's 0.28
    got, _ = losses.get("dapo")(x, replace(hp, clip_eps_high=0.5))
    want, _ = baselines.grpo_loss(*args, clip_eps=0.2, clip_eps_high=0.5, norm="dapo")
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    # dr_grpo divides by B * max_new_tokens: a different budget changes the value by that factor
    got7, _ = losses.get("dr_grpo")(x, hp)
    got14, _ = losses.get("dr_grpo")(x, replace(hp, max_new_tokens=14))
    torch.testing.assert_close(got14 * 2, got7, rtol=1e-12, atol=0)


def test_flowrl_entry_passes_beta_and_refuses_missing_inputs():
    x = _inputs()
    B = x.advantages.shape[0]
    full = replace(x, logp_ref=x.logp_old - 0.1, log_z=torch.zeros(B, dtype=F64))
    got, _ = losses.get("flowrl")(full, TrainConfig(flowrl_beta=2.0))
    want, _ = baselines.flowrl_loss(full.logp, full.logp_ref, full.logp_old, full.advantages, full.mask,
                                    full.log_z, beta=2.0)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    with pytest.raises(losses.LossError, match="flowrl"):
        losses.get("flowrl")(x, TrainConfig())


def test_flowrl_run_uses_a_frozen_copy_of_the_base_as_reference(cache, tmp_path, tiny):
    """Before the first update the policy is the base, so ref_kl is exactly 0 and w = 1; after one
    update the policy moved and the frozen reference did not."""
    cfg = replace(TrainConfig(), out=str(tmp_path / "run"), loss="flowrl", **{**tiny, "lr": 1e-2}).validate()
    trainer.train(cfg)
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert abs(rows[0]["ref_kl"]) < 1e-6 and rows[0]["weight_mean"] == pytest.approx(1.0, abs=1e-6)
    assert abs(rows[1]["ref_kl"]) > 1e-4
    assert all(math.isfinite(r["log_z_mean"]) and "tb_loss" in r for r in rows)


def test_the_trainer_uses_the_theory_effective_weight_for_ladw():
    assert losses.effective_weight is ladtheory.objective.effective_weight
