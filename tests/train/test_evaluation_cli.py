"""``python -m ladtrain eval``: metrics of a saved model on held-out problems; one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ladtrain import cli, models

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture
def model_folder(tmp_path):
    tok = models.build_tokenizer()
    model = models.build_tiny_model(
        tok, models.TinySpec(hidden=32, layers=1, heads=2, intermediate=64), seed=0
    )
    return models.save(model, tok, tmp_path / "model")


def test_eval_writes_every_metric_per_problem(cache, tmp_path, model_folder, capsys):
    out = tmp_path / "eval.json"
    code = cli.main(
        [
            "eval",
            "--model",
            str(model_folder),
            "--task",
            "countdown",
            "--k",
            "4",
            "--problems",
            "3",
            "--max-new-tokens",
            "6",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    res = json.loads(out.read_text())
    assert res["config"]["k"] == "4" and len(res["problem_ids"]) == 3
    for key in (
        "pass@1",
        "pass@2",
        "pass@4",
        "avg@k",
        "maj@k",
        "dist-2",
        "distinct_correct",
        "answer_entropy",
    ):
        assert key in res and len(res["per_problem"][key]) == 3
    assert "pass@8" not in res  # k = 4 samples cannot estimate pass@8
    assert res["pass@1"] == pytest.approx(res["avg@k"])  # the unbiased pass@1 is the mean accuracy
    assert "pass@4" in capsys.readouterr().out


def test_eval_takes_several_sets_and_a_list_of_k(cache, tmp_path, model_folder, capsys):
    out = tmp_path / "eval.json"
    gsm = DATA / "gsm8k_style.jsonl"
    code = cli.main(["eval", "--model", str(model_folder), "--task", "countdown", "--k", "1,3",
                     "--samples", "5", "--problems", "2", "--max-new-tokens", "4", "--no-progress",
                     "--out", str(out), "--eval-task", f"gsm=gsm8k:{gsm},test_every=0",
                     "--eval-task", f"jsonl:{gsm},test_every=0"])
    assert code == 0
    res = json.loads(out.read_text())
    assert res["samples_per_problem"] == 5 and res["ks"] == [1, 3] and "pass@5" not in res
    assert set(res["eval_sets"]) == {"gsm", "gsm8k_style"}  # the second named from its file
    for extra in res["eval_sets"].values():
        assert len(extra["problem_ids"]) == 2 and extra["ks"] == [1, 3]
        assert extra["intervals"]["pass@3"]["n"] == 2
    printed = capsys.readouterr().out
    assert "set gsm)" in printed and "set gsm8k_style)" in printed and "set held_out)" in printed


@pytest.mark.parametrize("argv, flag", [
    (["--model", "/no/such/folder"], "--model"),
    (["--k", "0"], "--k"),
    (["--temperature", "0"], "--temperature"),
    (["--split", "dev"], "--split"),
    (["--task", "nope"], "--task"),
    (["--k", "4", "--k-max", "8"], "--k-max"),
    (["--k", "1,x"], "--k"),
    (["--eval-task", "a=countdown", "--eval-task", "a=countdown"], "--eval-task"),
    (["--eval-task", "held_out=countdown"], "--eval-task"),
    (["--eval-task", "nope:x"], "--eval-task"),
])
def test_eval_bad_input_is_one_line_with_exit_code_2(capsys, cache, model_folder, argv, flag):
    base = ["eval", "--model", str(model_folder), "--no-progress"]
    code = cli.main(base + argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and flag in err and "Traceback" not in err, err
