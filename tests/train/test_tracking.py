"""Experiment tracking: TensorBoard events read back with TensorBoard's own reader; W&B offline files."""

from __future__ import annotations

import math

import pytest

from ladtrain import tracking

METRICS = [{"step": s, "loss": 0.5 / s, "reward_mean": 0.1 * s, "prompt_ids": ["a", "b"], "lr": 1e-4,
            "unscored": 0, "note": "text is left out"} for s in (1, 2, 3)]
EVAL = {"step": 3, "eval": "held_out", "pass@1": 0.25, "pass@8": 0.75, "accuracy": 0.25, "seconds": 1.5,
        "intervals": {"pass@1": {"mean": 0.25, "lo": 0.1, "hi": 0.4, "n": 8},
                      "retained": {"mean": 1.0, "lo": math.nan, "hi": math.nan, "n": 1}}}
COLUMNS = ["problem", "completion", "answer", "reward"]
ROWS = [["p1", "1+2|3\nx", "3", 1.0], ["p2", "no", None, 0.0]]


def write(report_to, out):
    with tracking.open_trackers(report_to, out, {"loss": "lad"}, name="test") as t:
        t.evaluation({**EVAL, "step": 0, "pass@1": 0.125})
        for row in METRICS:
            t.metrics(row)
        t.evaluation(EVAL)
        t.samples("held_out", 3, COLUMNS, ROWS)


def test_tensorboard_scalars_and_text_read_back_with_tensorboards_reader(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing import event_accumulator as ea

    write("tensorboard", tmp_path)
    acc = ea.EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/reward_mean", "train/lr", "train/unscored"} <= tags
    assert not {t for t in tags if "prompt_ids" in t or "note" in t}  # lists and strings are not scalars
    loss = [(e.step, round(e.value, 6)) for e in acc.Scalars("train/loss")]
    assert loss == [(1, 0.5), (2, 0.25), (3, 0.166667)]
    assert [(e.step, e.value) for e in acc.Scalars("eval/held_out/pass@1")] == [(0, 0.125), (3, 0.25)]
    lo = [(e.step, round(e.value, 6)) for e in acc.Scalars("eval/held_out/pass@1/lo")]
    assert lo == [(0, 0.1), (3, 0.1)]
    assert "eval/held_out/retained/lo" not in tags  # an unknown bound is not written as a number
    text = acc.Tensors("samples/held_out/text_summary")
    assert [e.step for e in text] == [3]
    table = text[0].tensor_proto.string_val[0].decode()
    assert "| problem | completion | answer | reward |" in table
    assert "1+2\\|3\\nx" in table and "| p2 | no |  |" in table  # | and newlines escaped; None empty


def test_unknown_or_contradictory_report_to_is_a_one_line_error(tmp_path):
    with pytest.raises(tracking.TrackingError, match="unknown 'mlflow'; known: none, tensorboard, wandb"):
        tracking.parse_report_to("tensorboard,mlflow")
    with pytest.raises(tracking.TrackingError, match="none cannot be combined"):
        tracking.parse_report_to("none,wandb")
    assert tracking.parse_report_to("none") == []
    assert tracking.parse_report_to(["tensorboard"]) == ["tensorboard"]
    with tracking.open_trackers("none", tmp_path) as t:  # nothing is written
        t.metrics(METRICS[0])
    assert list(tmp_path.iterdir()) == []


def test_missing_package_names_the_extra(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb" or name.startswith("wandb."):
            raise ImportError("no wandb")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    with pytest.raises(tracking.TrackingError, match=r"needs the wandb package \(pip install 'lad\[wandb\]'"):
        tracking.open_trackers("wandb", tmp_path)


@pytest.mark.slow
def test_wandb_writes_an_offline_run_only(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "online")  # overridden: the tracker is offline whatever this says
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "elsewhere"))
    write("wandb", tmp_path)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((tmp_path / "wandb").iterdir())
    data = next(runs[0].glob("run-*.wandb")).read_bytes()
    for key in (b"train/loss", b"eval/held_out/pass@1", b"eval/held_out/pass@1/lo"):
        assert key in data
    tables = list(runs[0].rglob("*.table.json"))
    assert len(tables) == 1 and '"p2"' in tables[0].read_text()
