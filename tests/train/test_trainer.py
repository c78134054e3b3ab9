"""The training loop: the LAD identity, the loss registry, advantages, and a seconds-long whole run."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

import ladtheory.objective
from ladtrain import losses, models, trainer
from ladtrain.advantages import group_advantages
from ladtrain.config import TrainConfig
from ladtrain.rollout import HFSampler


def test_the_trainer_uses_the_theory_lad_loss_itself():
    assert losses.lad_loss is ladtheory.objective.lad_loss


def test_loss_specs_resolve_to_registry_entries_and_unknown_ones_name_the_flag():
    assert losses.get("lad").name == "lad:js"
    assert losses.get("lad:tv").name == "lad:tv"
    assert losses.get("grpo").name == "grpo"
    for bad, match in [
        ("ppo", "unknown loss"),
        ("lad:nope", "unknown divergence"),
        ("grpo:x", "no argument"),
    ]:
        with pytest.raises(losses.LossError, match="--loss"):
            losses.get(bad)


def test_lad_entry_passes_eta_level_and_divergence_to_lad_loss():
    torch.manual_seed(0)
    B, T = 6, 5
    x = losses.LossInputs(logp=torch.randn(B, T, dtype=torch.float64) * 0.1,
                          logp_old=torch.randn(B, T, dtype=torch.float64) * 0.1,
                          advantages=torch.randn(B, dtype=torch.float64),
                          mask=(torch.rand(B, T) > 0.3).double())
    hp = TrainConfig(eta=0.7, level="sequence")
    got, _ = losses.get("lad:hellinger")(x, hp)
    want, _ = ladtheory.objective.lad_loss(x.logp, x.logp_old, x.advantages, x.mask, divergence="hellinger",
                                          eta=0.7, level="sequence")
    assert torch.equal(got, want)
    other, _ = losses.get("lad:hellinger")(x, replace(hp, eta=0.25))
    assert not torch.isclose(got, other)


def test_grpo_entry_is_the_baselines_grpo_loss_with_the_config_clip():
    from ladtrain.baselines import grpo_loss

    torch.manual_seed(1)
    B, T = 4, 3
    x = losses.LossInputs(logp=torch.randn(B, T) * 0.3, logp_old=torch.randn(B, T) * 0.3,
                          advantages=torch.randn(B), mask=torch.ones(B, T))
    got, _ = losses.get("grpo")(x, TrainConfig(clip_eps=0.1))
    want, _ = grpo_loss(x.logp, x.logp_old, x.advantages, x.mask, clip_eps=0.1)
    assert torch.equal(got, want)
    assert not torch.equal(got, losses.get("grpo")(x, TrainConfig(clip_eps=0.3))[0])


def test_group_advantages_are_centred_and_scaled_within_each_group():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])  # two groups of G = 4
    a = group_advantages(rewards, 4)
    # group 1: mean 1/4, sample std sqrt(1/4) = 0.5 -> (0.75, -0.25, -0.25, -0.25) / 0.5
    torch.testing.assert_close(a[:4], torch.tensor([1.5, -0.5, -0.5, -0.5]), atol=1e-5, rtol=0)
    assert torch.all(a[4:] == 0)  # a solved group carries no signal
    torch.testing.assert_close(
        group_advantages(rewards, 4, scale="none")[:4], torch.tensor([0.75, -0.25, -0.25, -0.25])
    )
    with pytest.raises(ValueError):
        group_advantages(rewards, 3)


def test_lr_schedule_ramps_then_holds_or_decays():
    f = trainer.lr_lambda(TrainConfig(steps=10, lr_warmup_steps=4))
    assert [round(f(u), 3) for u in (0, 3, 9)] == [0.25, 1.0, 1.0]
    g = trainer.lr_lambda(TrainConfig(steps=10, lr_warmup_steps=0, lr_schedule="cosine"))
    assert g(0) == 1.0 and abs(g(5) - 0.5) < 1e-9 and g(10) < 1e-9


def test_warm_up_is_cached_and_the_next_run_starts_from_the_same_base(cache):
    from ladtrain.tasks import get_task

    problems = get_task("countdown").problems("train")
    spec = models.WarmUp(steps=3, batch=4)
    m1, tok, info1 = models.base_policy("builtin", "countdown", problems, spec, cache, progress=False)
    m2, _, info2 = models.base_policy("builtin", "countdown", problems, spec, cache, progress=False)
    assert info1["warmup_cached"] is False and info2["warmup_cached"] is True
    assert torch.equal(m1.lm_head.weight, m2.lm_head.weight)
    other = models.base_key(models.TinySpec(), "countdown", replace(spec, steps=4))
    assert other != models.base_key(models.TinySpec(), "countdown", spec)
    assert models.base_key(models.TinySpec(), "countdown", spec, problems[:5]) != models.base_key(
        models.TinySpec(), "countdown", spec, problems[:6])  # a changed task never reuses a stale base


def test_warm_up_demonstrations_draw_uniformly_among_the_valid_solutions():
    import random

    from ladtrain.tasks.base import Problem

    p = Problem("p", "x", meta={"solutions": ["a", "b", "c"]})
    draws = [s for _, s in models._demonstrations([p], random.Random(0), 3000)]
    counts = [draws.count(s) for s in "abc"]
    assert all(abs(c - 1000) < 100 for c in counts), counts  # binomial sd ~26


def test_whole_pipeline_smoke_run_writes_the_run_folder(cache, tmp_path, tiny):
    cfg = replace(TrainConfig(), out=str(tmp_path / "run"), **tiny).validate()
    summary = trainer.train(cfg)
    run = tmp_path / "run"
    names = {p.name for p in run.iterdir()}
    assert {
        "metrics.jsonl",
        "summary.json",
        "config.json",
        "run.json",
        "learning_curves.png",
        "checkpoint",
    } <= names
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all({"reward_mean", "loss", "log_ratio_mean"} <= set(r) for r in rows)
    saved = json.loads((run / "summary.json").read_text())
    assert saved["loss"] == "lad:js" and saved == json.loads(json.dumps(summary))
    for key in ("accuracy", "pass@2", "distinct_correct"):
        assert 0.0 <= saved["base"][key] <= 2 and key in saved["trained"]
    run_info = json.loads((run / "run.json").read_text())
    assert run_info["seed"] == 0 and "torch" in run_info["versions"]
    assert json.loads((run / "config.json").read_text())["steps"] == 2
    assert (run / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    model, _ = models.load(run / "checkpoint")
    assert models.count_parameters(model) > 0


def test_first_update_on_a_rollout_is_on_policy_and_later_ones_are_not(cache, tmp_path, tiny, monkeypatch):
    """With several updates per rollout the first sees rho = 1 exactly (logp_old is the rollout policy),
    the later ones see the policy after the previous steps."""
    cfg = replace(TrainConfig(), out=str(tmp_path / "run"), **{**tiny, "steps": 1, "updates_per_rollout": 3,
                                                               "lr": 1e-2})
    seen = []
    real = losses.get(cfg.loss)

    def spy(x, hp):
        seen.append(float((x.logp - x.logp_old).detach().abs().max()))
        signal = torch.tensor([1.0, -1.0]).repeat(x.advantages.shape[0] // 2)  # the tiny base solves nothing
        return real(replace(x, advantages=signal), hp)

    monkeypatch.setattr(losses, "get", lambda spec: replace(real, fn=spy))
    trainer.train(cfg.validate())
    assert len(seen) == 3
    assert seen[0] == 0.0 and seen[1] > 0 and seen[2] > 0


def test_seeded_runs_are_reproducible(cache, tmp_path, tiny):
    a = trainer.train(replace(TrainConfig(), out=str(tmp_path / "a"), **tiny).validate())
    b = trainer.train(replace(TrainConfig(), out=str(tmp_path / "b"), **tiny).validate())
    rows_a = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    rows_b = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    strip = [{k: v for k, v in json.loads(r).items() if not k.endswith("seconds")} for r in rows_a]
    assert strip == [{k: v for k, v in json.loads(r).items() if not k.endswith("seconds")} for r in rows_b]
    assert a["trained"]["accuracy"] == b["trained"]["accuracy"]


def test_sampler_rows_are_prompt_major_groups():
    tok = models.build_tokenizer()
    model = models.build_tiny_model(tok, seed=0)
    prompts = ["1 -> 1\n", "2 2 2 -> 6\n", "3 3 -> 9\n"]
    r = HFSampler(model, tok, max_new_tokens=3).sample(prompts, group_size=2)
    assert r.completion_ids.shape[0] == 6 and len(r.texts) == 6
    decoded = tok.batch_decode(r.prompt_ids, skip_special_tokens=True)
    assert decoded == [p for p in prompts for _ in range(2)]


def test_rl_prompts_come_from_training_problems_the_warm_up_did_not_see(cache, tmp_path, tiny, monkeypatch):
    from ladtrain import compact_sampler, rollout

    warm_ids, rl_prompts = [], []
    real_base, real_sample = models.base_policy, rollout.HFSampler.sample
    real_compact = compact_sampler.CompactSampler.sample

    def base_spy(model, task_spec, problems, *args, **kwargs):
        warm_ids.extend(p.prompt for p in problems)
        return real_base(model, task_spec, problems, *args, **kwargs)

    def sample_spy(self, prompts, group_size):
        rl_prompts.extend(prompts)
        return real_sample(self, prompts, group_size)

    monkeypatch.setattr(models, "base_policy", base_spy)
    def compact_spy(self, prompts, group_size):  # the RL sampler (the evaluation's is HFSampler)
        rl_prompts.extend(prompts)
        return real_compact(self, prompts, group_size)

    monkeypatch.setattr(rollout.HFSampler, "sample", sample_spy)
    monkeypatch.setattr(compact_sampler.CompactSampler, "sample", compact_spy)
    trainer.train(replace(TrainConfig(), out=str(tmp_path / "run"), warmup_share=0.5, **tiny).validate())
    from ladtrain.tasks import get_task

    task = get_task("countdown")
    train, test = [p.prompt for p in task.problems("train")], {p.prompt for p in task.problems("test")}
    assert warm_ids == train[: round(0.5 * len(train))]
    training_rl = [p for p in rl_prompts if p not in test]  # the evaluation also samples (held-out prompts)
    assert training_rl and not set(training_rl) & set(warm_ids)


def test_sampler_draws_reaches_the_rollout_sampler(cache, tmp_path, tiny, monkeypatch):
    """``--sampler-draws inverse-cdf``: every rollout token comes from ``compact_sampler.inverse_cdf``;
    control: the default run never calls it (its draws are generate's exponentials)."""
    from ladtrain import compact_sampler

    calls = []
    real = compact_sampler.inverse_cdf

    def counting(probs, live, batch):
        calls.append(int(live.numel()))
        return real(probs, live, batch)

    monkeypatch.setattr(compact_sampler, "inverse_cdf", counting)
    base = replace(TrainConfig(), **tiny)
    trainer.train(replace(base, out=str(tmp_path / "generate")).validate())
    assert calls == []
    trainer.train(replace(base, out=str(tmp_path / "icdf"), sampler_draws="inverse-cdf").validate())
    assert len(calls) >= tiny["steps"] and sum(calls) >= tiny["steps"] * tiny["prompts_per_step"] * 2
    config = json.loads((tmp_path / "icdf" / "config.json").read_text())
    assert config["sampler_draws"] == "inverse-cdf"


@pytest.mark.skipif(not __import__("ladtrain.onednn_linears").onednn_linears.available(),
                    reason="this torch build has no oneDNN linear product")
def test_linear_kernels_reach_the_sampler_and_the_update_and_run_json(cache, tmp_path, tiny, monkeypatch):
    """``--linear-kernels onednn``: the rollouts, the update and the evaluation multiply through oneDNN
    (``ladtrain.onednn_linears.linear``), and run.json records the library (``--resume`` reads it);
    control: ``--linear-kernels torch`` never calls it."""
    from ladtrain import onednn_linears

    calls = []
    real = onednn_linears.linear
    monkeypatch.setattr(onednn_linears, "linear", lambda *a: calls.append(a[0].shape) or real(*a))
    base = replace(TrainConfig(), **tiny)
    trainer.train(replace(base, out=str(tmp_path / "torch"), linear_kernels="torch").validate())
    assert calls == []
    assert json.loads((tmp_path / "torch" / "run.json").read_text())["linear_kernels"] == "torch"
    summary = trainer.train(replace(base, out=str(tmp_path / "onednn"), linear_kernels="onednn").validate())
    assert json.loads((tmp_path / "onednn" / "run.json").read_text())["linear_kernels"] == "onednn"
    assert any(len(s) == 2 and s[0] > 8 for s in calls)  # the update's rows (many positions at once)
    assert sum(1 for s in calls if s[0] <= 8) > tiny["steps"] * tiny["max_new_tokens"]  # decode steps
    assert summary is not None
