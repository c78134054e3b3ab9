"""``python -m ladtrain compare`` end to end on a seconds-long study: outputs exist and are consistent."""

from __future__ import annotations

import json

import pytest

from ladtrain import cli, compare


def _tiny_argv(tmp_path, *extra):
    return [
        "--losses",
        "lad:js,grpo,flowrl",
        "--seeds",
        "2",
        "--steps",
        "2",
        "--prompts-per-step",
        "2",
        "--group-size",
        "2",
        "--eval-problems",
        "3",
        "--eval-samples",
        "4",
        "--max-new-tokens",
        "6",
        "--warmup-steps",
        "3",
        "--warmup-batch",
        "4",
        "--no-progress",
        "--out",
        str(tmp_path / "study"),
        *extra,
    ]


def test_compare_tiny_study_writes_a_consistent_report(cache, tmp_path):
    assert cli.main(["compare", *_tiny_argv(tmp_path)]) == 0
    out = tmp_path / "study"
    for name in (
        "report.md",
        "results.json",
        "reward_curves.png",
        "pass_at_k.png",
        "diversity.png",
        "cost.png",
    ):
        assert (out / name).is_file(), name
    res = json.loads((out / "results.json").read_text())
    labels = [a["label"] for a in res["arms"]]
    assert labels == ["lad:js", "grpo", "flowrl"] and res["seeds"] == [0, 1] and res["reference"] == "grpo"
    # the same prompts in the same order for every arm of a seed, checked from the logged prompt ids
    assert res["same_prompts"] is True and res["same_eval_problems"] is True
    for seed in ("0", "1"):
        ids = [
            [
                json.loads(line)["prompt_ids"]
                for line in (
                    tmp_path / "study" / "runs" / lab.replace(":", "-") / f"seed{seed}" / "metrics.jsonl"
                )
                .read_text()
                .splitlines()
            ]
            for lab in labels
        ]
        assert ids[0] == ids[1] == ids[2] and len(ids[0]) == 2
    # every run started from one base: the base evaluation is identical across arms of a seed
    for seed in ("0", "1"):
        bases = [
            json.loads(
                (
                    tmp_path / "study" / "runs" / lab.replace(":", "-") / f"seed{seed}" / "summary.json"
                ).read_text()
            )["base"]["per_problem"]
            for lab in labels
        ]
        assert bases[0] == bases[1] == bases[2]
    # per-problem arrays: seeds x problems, and the table's mean is their mean
    pp = res["per_problem"]["lad:js"]["pass@1"]
    assert len(pp) == 2 and all(len(row) == 3 for row in pp)
    mean_of_runs = sum(sum(row) / 3 for row in pp) / 2
    assert res["table"]["lad:js"]["pass@1"]["mean"] == pytest.approx(mean_of_runs)
    assert set(res["pairs"]) == {"lad:js", "flowrl"} and res["pairs"]["lad:js"]["pass@1"]["problems"] == 3
    assert res["cost"]["grpo"]["update_seconds_ratio"] == pytest.approx(1.0)
    for lab in labels:  # the share of optimizer steps where gradient-norm clipping bound, per arm
        rows = [
            json.loads(line)
            for s in ("0", "1")
            for line in (out / "runs" / lab.replace(":", "-") / f"seed{s}" / "metrics.jsonl")
            .read_text()
            .splitlines()
        ]
        assert res["training"][lab]["grad_clip_frac"] == pytest.approx(sum(r["grad_clip_frac"] for r in rows)
                                                                      / len(rows))
    text = (out / "report.md").read_text()
    assert "grad clip binds" in text
    assert "| lad:js |" in text and "`lad:js` vs `grpo`" in text and "`lad:js` vs `flowrl`" in text


def test_compare_rerun_reuses_finished_runs_and_resumes_an_unfinished_one(cache, tmp_path):
    """A study killed mid-run is started again: finished runs are reused as they are, and a run with
    checkpoints but no summary continues from its newest checkpoint instead of stopping at its folder."""
    argv = ["--losses", "lad:js,grpo", "--seeds", "1", "--steps", "2", "--prompts-per-step", "2",
            "--group-size", "2", "--eval-problems", "3", "--eval-samples", "2", "--max-new-tokens", "6",
            "--warmup-steps", "3", "--warmup-batch", "4", "--checkpoint-every", "1", "--no-progress",
            "--keep-resumable", "--out", str(tmp_path / "study")]  # kept: the "kill" below needs them
    assert cli.main(["compare", *argv]) == 0
    runs = tmp_path / "study" / "runs"
    finished = (runs / "lad-js" / "seed0" / "summary.json").read_text()
    killed = runs / "grpo" / "seed0"
    (killed / "summary.json").unlink()  # as if the study had been killed before this run ended
    assert cli.main(["compare", *argv]) == 0
    assert (runs / "lad-js" / "seed0" / "summary.json").read_text() == finished  # reused, not retrained
    run_info = json.loads((killed / "run.json").read_text())
    assert run_info.get("resumed") and run_info["resumed"][-1]["from_step"] == 2
    assert (killed / "summary.json").is_file()


def test_compare_arms_for_ablations():
    base = compare.parse(["--steps", "1"])[1]
    arms = compare.arms_of(compare.CompareConfig(losses="lad:js,grpo", etas="0.1,1", updates="1,4"), base)
    labels = [a.label for a in arms]
    assert labels == ["lad:js@eta=0.1/u1", "lad:js@eta=0.1/u4", "lad:js@eta=1/u1", "lad:js@eta=1/u4",
                      "grpo/u1", "grpo/u4"]  # eta varies only for the LAD family
    mech = compare.arms_of(compare.CompareConfig(losses="lad:js,grpo", mechanism_ablation=True), base)
    # ladw at one update per rollout is LAD itself (same gradient at ratio 1), so it runs only at 4
    assert {(a.loss, a.updates) for a in mech} == {("lad:js", 1), ("lad:js", 4), ("grpo", 1), ("grpo", 4),
                                                   ("ladw:js", 4)}
    div = compare.arms_of(compare.CompareConfig(losses="grpo", divergence_ablation=True), base)
    assert [a.loss for a in div] == ["grpo", "lad:kl", "lad:rkl", "lad:jeffreys", "lad:tv", "lad:hellinger",
                                     "lad:js"]


@pytest.mark.parametrize("argv, flag", [
    (["--losses", "grpo,nope"], "--loss"),
    (["--seeds", "0"], "--seeds"),
    (["--loss", "grpo"], "--losses"),
    (["--seed", "3"], "--seeds"),
    (["--etas", "0,1"], "--etas"),
    (["--losses", "lad:js", "--reference", "grpo"], "--reference"),
])
def test_compare_bad_input_is_one_line_with_exit_code_2(capsys, cache, tmp_path, argv, flag):
    code = cli.main(["compare", "--out", str(tmp_path / "s"), "--no-progress", *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and flag in err and "Traceback" not in err, err


def test_a_run_saved_before_sampler_draws_existed_counts_as_generate_draws(tmp_path):
    """A config.json written before ``--sampler-draws`` existed (the committed decisive study's) is the
    same run as today's configuration with the default draws, generate's, which is what that code did.
    Controls: against inverse-cdf draws it is another run, and so is a saved inverse-cdf run."""
    import json
    from dataclasses import replace

    from ladtrain import study
    from ladtrain.config import TrainConfig

    cfg = replace(TrainConfig(), out=str(tmp_path))
    saved = json.loads(json.dumps(cfg.to_dict()))
    del saved["sampler_draws"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert study._same_config(tmp_path, cfg)
    assert not study._same_config(tmp_path, replace(cfg, sampler_draws="inverse-cdf"))
    (tmp_path / "config.json").write_text(json.dumps({**saved, "sampler_draws": "inverse-cdf"}))
    assert not study._same_config(tmp_path, cfg)
    assert study._same_config(tmp_path, replace(cfg, sampler_draws="inverse-cdf"))


def test_runs_that_differ_only_in_the_library_of_the_linear_products_are_one_run(tmp_path):
    """``--linear-kernels`` picks the library of the same products (another summation order, as on
    another CPU): a committed run without the field, or with another library, is the same run. Control:
    a run that differs in a setting that changes the computation (the learning rate) is another run."""
    import json
    from dataclasses import replace

    from ladtrain import study
    from ladtrain.config import TrainConfig

    cfg = replace(TrainConfig(), out=str(tmp_path))
    saved = json.loads(json.dumps(cfg.to_dict()))
    del saved["linear_kernels"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert study._same_config(tmp_path, cfg)
    assert study._same_config(tmp_path, replace(cfg, linear_kernels="onednn"))
    (tmp_path / "config.json").write_text(json.dumps({**saved, "linear_kernels": "torch"}))
    assert study._same_config(tmp_path, replace(cfg, linear_kernels="auto"))
    assert not study._same_config(tmp_path, replace(cfg, lr=cfg.lr * 2))
    assert "linear_kernels" in study.TRAINING_ONLY  # and one base evaluation serves both
