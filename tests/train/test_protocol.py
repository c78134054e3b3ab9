"""The decisive study's protocol (ladtrain/protocol.py): every part is a valid compare study, and the
ablation takes the learning rates the main part chose on validation, never another."""

from __future__ import annotations

import json

import pytest

from ladtrain import compare, protocol
from ladtrain.study import arms_of


def _tuning(out, arm, values):
    for lr, auc in values.items():
        folder = out / "countdown-main" / "tuning" / arm.replace(":", "-") / f"lr{lr:g}" / "seed1000"
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"lr": lr}))
        trained = {"samples_per_problem": 4, "pass@1": auc, "pass@2": auc, "pass@4": auc}
        (folder / "summary.json").write_text(json.dumps({"trained": trained}))


def test_main_parts_are_valid_studies_with_the_declared_arms(tmp_path):
    for part, k in (("countdown-main", 256), ("puzzle24-main", 64)):
        study, base = compare.parse(protocol.part_argv(part, tmp_path))
        labels = [a.label for a in arms_of(study, base)]
        assert labels == ["grpo", "lad:js", "lad:js/mb4", "grpo/mb4", "flowrl"]
        assert base.eval_k == str(k)  # k = 1, 2, 4, ..., k: that many samples per problem
        assert base.eval_problems == 0 and base.steps == 150 and study.seeds == "5"
        assert study.grid == protocol.GRID and study.select == "pass_auc"
    assert set(protocol.ROLES.values()) >= {"grpo", "lad:js", "lad:js/mb4", "flowrl"}


def test_ablation_uses_the_learning_rates_chosen_on_validation(tmp_path):
    with pytest.raises(SystemExit, match="tuning"):
        protocol.part_argv("countdown-ablation", tmp_path)  # the main part's tuning has not run
    _tuning(tmp_path, "lad:js", {5e-5: 0.30, 1e-4: 0.35, 2e-4: 0.33})
    _tuning(tmp_path, "grpo", {5e-5: 0.40, 1e-4: 0.20, 2e-4: 0.40})  # a tie: the first (smaller) lr
    _tuning(tmp_path, "flowrl", {5e-5: 0.1, 1e-4: 0.2, 2e-4: 0.3})
    assert protocol.chosen_lr(tmp_path, "countdown-main", "lad:js") == 1e-4
    assert protocol.chosen_lr(tmp_path, "countdown-main", "grpo") == 5e-5
    study, base = compare.parse(protocol.part_argv("countdown-ablation", tmp_path))
    arms = {a.label: a.config(base) for a in arms_of(study, base)}
    study, base = compare.parse(protocol.part_argv("countdown-controls", tmp_path))
    arms.update({a.label: a.config(base) for a in arms_of(study, base)})
    assert base.lr == 1e-4 and arms["lad:tv"].lr == 1e-4 and arms["lad:kl"].lr == 1e-4
    assert arms["lad:js@eta=4"].eta == 4.0 and arms["lad:js@eta=4"].lr == 1e-4
    assert arms["grpo_tokenmean/lr=5e-05"].lr == 5e-5
    assert arms["flowrl/mb4/lr=0.0002"].mini_batches == 4 and arms["flowrl/mb4/lr=0.0002"].lr == 2e-4
    assert {"dapo/mb4/lr=5e-05", "gspo/mb4/lr=5e-05"} <= set(arms)
    assert study.seeds == "3"


def test_the_committed_parts_are_reused_without_training(tmp_path, monkeypatch):
    """A part committed under results/compare/decisive/ (its runs' config.json and summary.json) is rebuilt
    by the protocol without training or evaluating anything: the command continues from what is on disk."""
    import shutil
    from pathlib import Path

    from ladtrain import trainer

    committed = Path(__file__).resolve().parents[2] / "results" / "compare" / "decisive"
    part = "countdown-controls"
    if not (committed / part / "results.json").is_file():
        pytest.skip("the decisive study's parts are not committed in this checkout")
    shutil.copytree(committed / "countdown-main", tmp_path / "countdown-main")
    shutil.copytree(committed / part, tmp_path / part)
    before = json.loads((tmp_path / part / "results.json").read_text())

    def no_training(*args, **kwargs):
        raise AssertionError("a committed run was trained again")

    monkeypatch.setattr(trainer, "train", no_training)
    protocol.run_part(part, tmp_path)
    after = json.loads((tmp_path / part / "results.json").read_text())
    assert after["per_problem"] == before["per_problem"] and after["table"] == before["table"]
    assert after["arms"] == before["arms"]
