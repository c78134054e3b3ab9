"""The like-for-like controls of the decisive report (ladtrain/decisive_controls.py): each row is the paired
difference of the two arms it names, from the right studies, and the committed rows are recomputed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from decisive_fixture import keep, results, same, sharpen, write

from ladtrain import decisive_report
from ladtrain import study_verdicts as V
from ladtrain.decisive_controls import PAIRS, controls


@pytest.fixture
def folders(tmp_path):
    ks = (1, 2, 4, 16, 64, 256)
    main = write(tmp_path / "main", results({"grpo": sharpen, "lad:js": keep, "lad:js/mb4": keep,
                                             "grpo/mb4": sharpen, "flowrl": same}, ks=ks))
    ctl = write(tmp_path / "controls", results({"grpo_tokenmean/lr=5e-05": sharpen, "dapo/mb4/lr=5e-05": same,
                                                "flowrl/mb4/lr=5e-05": same}, seeds=(0, 1, 2),
                                               ks=(1, 2, 4, 16, 64)))
    return main, ctl


def test_each_row_is_the_paired_difference_of_the_arms_it_names(folders):
    main, ctl = folders
    st = {k: V.study(json.loads((f / "results.json").read_text()), k) for k, f in (("main", main),
                                                                                   ("controls", ctl))}
    rows = controls(st, replicates=200)
    first = [r for r in rows if r.get("x") == "grpo_tokenmean/lr=5e-05" and r.get("metric") == "pass@64"][0]
    x = np.asarray(st["controls"].arms["grpo_tokenmean/lr=5e-05"]["pass@64"])  # seeds 0, 1, 2
    y = np.asarray(st["main"].arms["grpo"]["pass@64"])[:3]  # the same seeds of the main study
    assert first["y"] == "grpo" and first["seeds"] == [0, 1, 2]
    assert first["estimate"] == pytest.approx(float(np.mean(x - y)), abs=1e-12)
    assert first["lo"] <= first["estimate"] <= first["hi"]
    # the largest k both studies have: 64 when the controls study (which stops there) is one of them
    for r in rows:
        if "metric" in r and r["metric"] != "pass@1":
            both_main = r["x_study"] == r["y_study"] == "main"
            assert r["metric"] == ("pass@256" if both_main else "pass@64"), r
    # an arm no study has is listed as not run, never silently dropped
    missing = [r for r in rows if "missing" in r]
    assert [r["missing"] for r in missing] == ["gspo/mb4"]
    assert len(rows) == 2 * (len(PAIRS) - 1) + 1


def test_the_report_shows_the_controls_and_recompute_catches_a_tampered_row(folders, tmp_path):
    main, ctl = folders
    out = tmp_path / "report"
    assert decisive_report.main(["--main", f"countdown={main}", "--controls", f"countdown={ctl}",
                                 "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "## Like-for-like controls" in text and "grpo_tokenmean/lr=5e-05 - grpo" in text
    committed, again = decisive_report.recompute_controls(out)
    assert committed == again and committed["countdown"]
    doc = json.loads((out / "verdicts.json").read_text())
    doc["controls"]["countdown"][0]["estimate"] += 0.05  # a forged number
    (out / "verdicts.json").write_text(json.dumps(doc))
    committed, again = decisive_report.recompute_controls(out)
    assert committed != again


def test_controls_without_a_main_study_are_refused(folders, tmp_path, capsys):
    _, ctl = folders
    with pytest.raises(SystemExit) as err:
        decisive_report.main(["--main", f"puzzle24={ctl}", "--controls", f"countdown={ctl}", "--out",
                              str(tmp_path / "x")])
    assert err.value.code == 2 and "--controls countdown" in capsys.readouterr().err
