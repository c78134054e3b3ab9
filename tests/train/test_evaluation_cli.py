"""``python -m ladtrain eval``: metrics of a saved model on held-out problems; one-line errors."""

from __future__ import annotations

import json

import pytest

from ladtrain import cli, models


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
    assert res["config"]["k"] == 4 and len(res["problem_ids"]) == 3
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


@pytest.mark.parametrize("argv, flag", [
    (["--model", "/no/such/folder"], "--model"),
    (["--k", "0"], "--k"),
    (["--temperature", "0"], "--temperature"),
    (["--split", "dev"], "--split"),
    (["--task", "nope"], "--task"),
])
def test_eval_bad_input_is_one_line_with_exit_code_2(capsys, cache, model_folder, argv, flag):
    base = ["eval", "--model", str(model_folder), "--no-progress"]
    code = cli.main(base + argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and flag in err and "Traceback" not in err, err
