"""python -m ladtrain.decisive_report on synthetic studies (tests/train/decisive_fixture.py): what it
writes, that verdicts.json recomputes from the per-problem data (and a tampered one does not), and bad
input (one line naming the flag, exit 2, nothing overwritten)."""

from __future__ import annotations

import json
import subprocess
import sys

import decisive_fixture as F  # sibling helper module (tests/train/decisive_fixture.py)
import pytest

from ladtrain import decisive_report as R


def argv(studies, out):
    args = []
    for task, kinds in studies.items():
        for kind, folder in kinds.items():
            args += [f"--{kind}", f"{task}={folder}"]
    return args + ["--out", str(out)]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("decisive")
    studies = F.decisive(root / "in")
    out = root / "out"
    differs = "objective and aggregation (LAD: global token mean; GRPO: per-sequence mean)"
    assert R.main(argv(studies, out) + ["--differs", f"lad,grpo={differs}"]) == 0
    return studies, out


def test_it_writes_the_report_the_verdicts_and_both_figures(written):
    _, out = written
    assert sorted(p.name for p in out.iterdir()) == ["pass_at_k_vs_base.png", "report.md", "verdicts.json",
                                                     "verdicts_forest.png"]
    pngs = ("pass_at_k_vs_base.png", "verdicts_forest.png")
    assert all((out / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)
    doc = json.loads((out / "verdicts.json").read_text())
    assert [(v["task"], v["hypothesis"]) for v in doc["verdicts"]] == [
        (t, h) for t in ("countdown", "puzzle24") for h in ("H1", "H2", "H3", "H4", "H5")]
    by = {(v["task"], v["hypothesis"]): v for v in doc["verdicts"]}
    # the fixture's planted effects: LAD keeps the rare problems GRPO loses, the brake arm equals LAD
    assert by["countdown", "H2"]["verdict"] == "supported" and by["countdown", "H2"]["k"] == 256
    assert by["puzzle24", "H2"]["k"] == 64
    assert by["countdown", "H3"]["verdict"] == "supported" and by["countdown", "H4"]["k"] == 64
    assert by["countdown", "H5"]["verdict"] == "no detectable change"
    # the caller's line, then every setting in which the two arms differ (here the tuned lr), read from
    # the studies' arms, train settings and tuning choices
    assert by["countdown", "H1"]["rows"][0]["differs"] == (
        "objective and aggregation (LAD: global token mean; GRPO: per-sequence mean); "
        "settings: loss lad:js vs grpo; lr 1e-05 vs 3e-05")
    assert by["countdown", "H5"]["rows"][0]["differs"] == (
        "minibatches per rollout (K > 1 vs K = 1); settings: mini_batches 4 vs None")
    assert doc["studies"]["countdown"] == {"main": "../in/countdown-main",
                                           "ablation": "../in/countdown-ablation"}


def test_the_report_shows_every_arm_the_base_both_dist_definitions_verdicts_tuning_and_provenance(written):
    studies, out = written
    text = (out / "report.md").read_text()
    for label in ("base", *F.MAIN_ARMS, *F.ABLATION_ARMS):
        assert f"| {label} |" in text, label
    assert "distinct/total n-grams" in text and "distinct n-grams/generated token" in text
    assert "| pass@256 |" in text and "| pass@64 |" in text and "retained base answers" in text
    for h in ("H1", "H2", "H3", "H4", "H5"):
        assert f"| {h} | countdown | **" in text and f"| {h} | puzzle24 | **" in text
    assert "(shown, not in the rule)" in text and "64, none, 64, none, 64" in text
    assert "## Tuning on validation" in text
    assert "| lad:js | lr=1e-05 | 0.5500 | 0.5000, 0.6000 | **yes** |" in text
    assert "python -m ladtrain compare --task countdown (synthetic)" in text
    assert "0.51 h (test runs 0.34 h, tuning 0.17 h)" in text
    assert "python -m ladtrain.decisive_report --main countdown=" in text


def test_recompute_reproduces_the_committed_verdicts_and_catches_a_tampered_one(written):
    _, out = written
    committed, again = R.recompute(out)
    assert committed == again
    doc = json.loads((out / "verdicts.json").read_text())
    doc["verdicts"][0]["verdict"] = "refuted" if doc["verdicts"][0]["verdict"] != "refuted" else "supported"
    forged = out.parent / "forged"  # a sibling of out: the same relative paths to the studies
    forged.mkdir()
    (forged / "verdicts.json").write_text(json.dumps(doc))
    committed, again = R.recompute(forged)
    assert committed != again and committed[1:] == again[1:]


def _cli(args):
    return subprocess.run([sys.executable, "-m", "ladtrain.decisive_report", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("bad, flag", [
    (["--main", "countdown"], "--main 'countdown': expected NAME=VALUE"),
    (["--main", "countdown=/nonexistent"], "--main countdown=/nonexistent: no results.json there"),
    (["--ablation", "countdown=X"], "--main: at least one TASK=DIR"),
    (["--role", "boss=grpo"], "--role boss: not a role"),
    (["--role", "flowrl=flowrl2"], "--role flowrl=flowrl2: no study has an arm flowrl2"),
    (["--differs", "lad=loss"], "--differs lad: expected ROLE,ROLE=TEXT"),
])
def test_bad_flags_are_one_line_naming_the_flag_exit_2_nothing_written(written, tmp_path, bad, flag):
    studies, _ = written
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("previous")
    main = ["--main", f"countdown={studies['countdown']['main']}"]
    base = [] if bad[0] in ("--main", "--ablation") else main
    r = _cli(base + bad + ["--out", str(out)])
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and flag in r.stderr, r.stderr
    assert [p.name for p in out.iterdir()] == ["report.md"] and (out / "report.md").read_text() == "previous"


def test_an_ablation_on_other_problems_is_named_and_rejected(written, tmp_path):
    studies, _ = written
    res = json.loads((studies["countdown"]["ablation"] / "results.json").read_text())
    res["problem_ids"] = res["problem_ids"][::-1]
    bad = F.write(tmp_path / "abl", res)
    r = _cli(["--main", f"countdown={studies['countdown']['main']}", "--ablation", f"countdown={bad}",
              "--out", str(tmp_path / "out")])
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert f"--ablation countdown={bad}" in r.stderr and "different problems" in r.stderr
    assert not (tmp_path / "out").exists()
