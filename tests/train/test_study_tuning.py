"""A study's arms with their own settings, its tuning grid chosen on validation only, the validation split
itself, and one base evaluation per seed shared by the arms (ladtrain/study_arms.py, ladtrain/study.py)."""

from __future__ import annotations

import json
import math

import pytest

from ladtrain import cli, compare
from ladtrain.config import ConfigError
from ladtrain.study_arms import Arm, arm_grid, choose, parse_arms, parse_grid, score
from ladtrain.tasks import get_task

SPEC = "countdown,validation_fraction=0.1"


def _argv(tmp_path, *extra):
    return ["--task", SPEC, "--seeds", "1", "--steps", "2", "--prompts-per-step", "2", "--group-size", "2",
            "--eval-problems", "3", "--eval-samples", "2", "--max-new-tokens", "6", "--warmup-steps", "3",
            "--warmup-batch", "4", "--no-progress", "--out", str(tmp_path / "study"), *extra]


def test_countdown_validation_split_is_disjoint_and_leaves_test_unchanged():
    plain, split = get_task("countdown"), get_task(SPEC)
    ids = {s: {p.id for p in split.problems(s)} for s in ("train", "validation", "test")}
    assert ids["validation"] and not ids["validation"] & ids["test"] and not ids["validation"] & ids["train"]
    assert ids["test"] == {p.id for p in plain.problems("test")}  # test is the same for every V
    # validation is carved out of train: together they are the plain task's train split
    assert ids["train"] | ids["validation"] == {p.id for p in plain.problems("train")}
    assert plain.problems("validation") == []


def test_arm_specs_labels_and_bad_input():
    assert parse_arms("grpo; lad:js,mini_batches=4 ;lad:js,eta=1,lr=2e-4") == [
        ("grpo", {}), ("lad:js", {"mini_batches": 4}), ("lad:js", {"eta": 1.0, "lr": 2e-4})]
    base = compare.parse(["--steps", "1"])[1]
    arms = compare.arms_of(compare.CompareConfig(arms="grpo;lad;lad,mini_batches=4;lad,eta=1"), base)
    assert [a.label for a in arms] == ["grpo", "lad:js", "lad:js/mb4", "lad:js@eta=1"]
    assert arms[2].config(base).mini_batches == 4 and arms[3].config(base).eta == 1.0
    for bad in ("grpo,lr", "grpo,steps=3", "nope", "lad:js,mini_batches=0", ";"):
        with pytest.raises(ConfigError, match="--arms"):
            parse_arms(bad)
    with pytest.raises(ConfigError, match="--arms"):  # the same arm twice
        compare.arms_of(compare.CompareConfig(arms="grpo;grpo,lr=1e-4;grpo,lr=0.0001"), base)


def test_grid_product_and_the_keys_an_arm_fixes_are_not_tuned():
    grid = parse_grid("lr=1e-4,2e-4; eta=0.25,1")
    assert grid == [{"lr": 1e-4, "eta": 0.25}, {"lr": 1e-4, "eta": 1.0}, {"lr": 2e-4, "eta": 0.25},
                    {"lr": 2e-4, "eta": 1.0}]
    assert parse_grid(None) == [{}]
    # GRPO has no eta: its grid is lr alone; an arm that fixes lr is tuned on eta only
    assert arm_grid(Arm("grpo", "grpo", 0.25, 1), grid) == [{"lr": 1e-4}, {"lr": 2e-4}]
    assert arm_grid(Arm("lad:js/lr=1e-4", "lad:js", 0.25, 1, {"lr": 1e-4}), grid) == [{"eta": 0.25},
                                                                                     {"eta": 1.0}]
    for bad in ("lr", "lr=", "steps=1,2", "lr=1e-4,1e-4", "lr=1e-4;lr=2e-4", "lr=-1"):
        with pytest.raises(ConfigError, match="--grid"):
            parse_grid(bad)


def test_selection_score_and_choice():
    trained = {"samples_per_problem": 4, "pass@1": 0.2, "pass@2": 0.3, "pass@4": 0.7, "pass@3": 9.0}
    assert score(trained, "pass_auc") == pytest.approx((0.2 + 0.3 + 0.7) / 3)  # k = 1, 2, 4 only
    assert score(trained, "pass@1") == 0.2
    with pytest.raises(ConfigError, match="--select"):
        score(trained, "pass@64")
    assert choose([{"a": 1}, {"a": 2}, {"a": 3}], [[0.1, 0.3], [0.3, 0.1], [0.0, 0.1]]) == 0  # tie: first
    assert choose([{"a": 1}, {"a": 2}], [[math.nan], [0.0]]) == 1  # a failed point is never chosen


def test_tuning_chooses_on_validation_and_test_runs_use_the_choice(cache, tmp_path):
    """The tuning runs evaluate validation problems (none of them a test problem) and the test runs train
    with the chosen setting, evaluated on test; the choice and the grid are recorded."""
    argv = _argv(tmp_path, "--arms", "grpo;lad:js", "--grid", "lr=1e-4,3e-4", "--tune-samples", "4",
                 "--select", "pass@1")
    assert cli.main(["compare", *argv]) == 0
    out = tmp_path / "study"
    res = json.loads((out / "results.json").read_text())
    task = get_task(SPEC)
    test_ids = {p.id for p in task.problems("test")}
    validation_ids = {p.id for p in task.problems("validation")}
    for label, slug in (("grpo", "grpo"), ("lad:js", "lad-js")):
        entry = res["tuning"][label]
        assert [r["setting"] for r in entry["grid"]] == [{"lr": 1e-4}, {"lr": 3e-4}]
        assert entry["split"] == "validation" and entry["seeds"] == [1000]
        means = [r["mean"] for r in entry["grid"]]
        assert entry["chosen"] == entry["grid"][choose([r["setting"] for r in entry["grid"]],
                                                       [r["per_seed"] for r in entry["grid"]])]["setting"]
        for r in entry["grid"]:
            summary = json.loads((out / "tuning" / slug / f"lr{r['setting']['lr']:g}" / "seed1000" /
                                  "summary.json").read_text())
            ids = set(summary["trained"]["problem_ids"])
            assert ids <= validation_ids and not ids & test_ids  # tuning never sees a test problem
            assert summary["trained"]["pass@1"] == pytest.approx(r["per_seed"][0])
        assert len(means) == 2
        run = out / "runs" / slug / "seed0"
        config = json.loads((run / "config.json").read_text())
        assert config["lr"] == entry["chosen"]["lr"] and config["eval_split"] == "test"
        summary = json.loads((run / "summary.json").read_text())
        assert set(summary["trained"]["problem_ids"]) <= test_ids
    assert res["cpu_seconds"]["tuning"] > 0 and res["cpu_seconds"]["test"] > 0
    report = (out / "report.md").read_text()
    assert "## Settings chosen on validation" in report and "| grpo | " in report
    assert "per_problem_base" in res and len(res["per_problem_base"]["pass@1"]) == 1


def test_arms_of_a_seed_share_one_base_evaluation_identical_to_sampling_it(cache, tmp_path):
    """The second arm of a seed takes the base evaluation of the first (same base, same settings, same
    stream); it equals what that run gets when it samples the base itself."""
    assert cli.main(["compare", *_argv(tmp_path, "--losses", "lad:js,grpo")]) == 0
    runs = tmp_path / "study" / "runs"
    first = json.loads((runs / "lad-js" / "seed0" / "summary.json").read_text())
    second = json.loads((runs / "grpo" / "seed0" / "summary.json").read_text())
    assert first["base_eval_reused"] is False and second["base_eval_reused"] is True
    alone = tmp_path / "alone"
    assert cli.main(["compare", *_argv(alone, "--losses", "grpo")]) == 0
    fresh = json.loads((alone / "study" / "runs" / "grpo" / "seed0" / "summary.json").read_text())
    assert fresh["base_eval_reused"] is False
    assert fresh["base"]["per_problem"] == second["base"]["per_problem"]
    assert fresh["trained"]["per_problem"] == second["trained"]["per_problem"]
    rows = [json.loads(x) for x in (runs / "grpo" / "seed0" / "eval.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows] == ["base", "trained"]


def test_eval_split_validation_needs_a_task_with_one(capsys, cache, tmp_path):
    code = cli.main(["--task", "countdown", "--eval-split", "validation", "--steps", "1", "--no-progress",
                     "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "--eval-split" in err and err.count("\n") == 1, err
