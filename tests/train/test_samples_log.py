"""samples.jsonl: the records, the size caps, the resume cut."""

from __future__ import annotations

import json

import pytest

from ladtrain import samples_log
from ladtrain.samples_log import SamplesLog, SamplesLogError, per_step, records


def _recs(kind="train", step=1, n=4, text="x", eval_name=None):
    return records(
        kind=kind,
        step=step,
        problem_ids=[f"p{i // 2}" for i in range(n)],
        prompts=["P"] * n,
        completions=[text] * n,
        answers=["1"] * n,
        rewards=[1.0] * n,
        correct=[1.0] * n,
        reasons=["correct"] * n,
        truncated=[False] * n,
        lengths=[3] * n,
        group_size=2,
        advantages=None if kind == "eval" else [0.5] * n,
        eval_name=eval_name,
    )


def test_per_step_values():
    assert per_step(None) == samples_log.DEFAULT_PER_STEP and per_step("all") is None and per_step("0") == 0
    assert per_step(7) == 7
    for bad in ("-1", "some", -2, 1.5, True):
        with pytest.raises(SamplesLogError, match="--log-samples"):
            per_step(bad)


def test_record_fields_and_clipping():
    long = "y" * (samples_log.MAX_TEXT_CHARS + 5)
    rec = _recs(text=long, n=2)[1]
    assert set(rec) >= {
        "kind",
        "step",
        "eval",
        "problem_id",
        "sample",
        "prompt",
        "completion",
        "answer",
        "reward",
        "correct",
        "reason",
        "advantage",
        "truncated",
        "completion_tokens",
    }
    assert rec["sample"] == 1 and rec["problem_id"] == "p0" and rec["advantage"] == 0.5
    assert len(rec["completion"]) == samples_log.MAX_TEXT_CHARS and rec["clipped"] is True
    nan = records(
        kind="train",
        step=1,
        problem_ids=["a"],
        prompts=["p"],
        completions=["c"],
        answers=[None],
        rewards=[float("nan")],
        correct=[None],
        reasons=["reward_error"],
        truncated=[True],
        lengths=[9],
        group_size=1,
        advantages=[0.0],
    )[0]
    assert nan["reward"] is None and json.loads(json.dumps(nan)) == nan


def test_train_records_stop_at_the_cap_and_eval_records_never_do(tmp_path):
    path = tmp_path / "samples.jsonl"
    log = SamplesLog(path, per_step_count=2, max_train_bytes=2000)
    assert log.train_rows(8) == [0, 1] and SamplesLog(path, None).train_rows(3) == [0, 1, 2]
    with pytest.warns(UserWarning, match="cap of"):
        for step in range(1, 30):
            log.write(_recs(step=step, text="z" * 100))
    log.write(_recs(kind="eval", step=29, text="z" * 100, eval_name="trained"))
    rows = samples_log.read(path)
    caps = [r for r in rows if r["kind"] == "cap"]
    assert len(caps) == 1
    train = [r for r in rows if r["kind"] == "train"]
    assert train and path.stat().st_size < 2000 + 4000  # stopped near the cap, then only eval
    assert sum(r["kind"] == "eval" for r in rows) == 4
    assert SamplesLog(path).capped  # a resumed log knows it is capped


def test_drop_after_keeps_base_eval_and_steps_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "samples.jsonl"
    log = SamplesLog(path)
    log.write(_recs(kind="eval", step=0, eval_name="base"))
    for step in (1, 2, 3):
        log.write(_recs(step=step))
    log.write(_recs(kind="eval", step=3, eval_name="trained"))
    with open(path, "a") as f:
        f.write('{"kind": "train", "st')  # a torn line from a killed writer
    log.drop_after(2)
    rows = samples_log.read(path)
    assert [(r["kind"], r["step"]) for r in rows] == [("eval", 0)] * 4 + [("train", 1)] * 4 + [
        ("train", 2)
    ] * 4


def test_no_path_writes_nothing(tmp_path):
    log = SamplesLog(None)
    log.write(_recs())
    log.drop_after(0)
    assert list(tmp_path.iterdir()) == []
