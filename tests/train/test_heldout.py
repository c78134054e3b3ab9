"""Held-out evaluation of a run: set names, k options, the schedule, eval.jsonl rows and their resume."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace

import pytest

from ladtrain import coverage, evaluation, heldout, models
from ladtrain.config import ConfigError, EvalConfig, TrainConfig
from ladtrain.passk import ks_of
from ladtrain.tasks import named_spec
from ladtrain.tasks.base import Problem, Score


@pytest.mark.parametrize("text, expected", [
    ("gsm=jsonl:data/gsm8k_test.jsonl,test_every=0", ("gsm", "jsonl:data/gsm8k_test.jsonl,test_every=0")),
    ("jsonl:data/gsm8k_test.jsonl,prompt_field=q",
     ("gsm8k_test", "jsonl:data/gsm8k_test.jsonl,prompt_field=q")),
    ("hf:/data/math500/", ("math500", "hf:/data/math500/")),
    ("countdown:3", ("countdown_3", "countdown:3")),
    ("humaneval", ("humaneval", "humaneval")),
    # an '=' inside the options is not a name
    ("jsonl:x.jsonl,instruction=a=b", ("x", "jsonl:x.jsonl,instruction=a=b")),
])
def test_eval_task_names(text, expected):
    assert named_spec(text, reserved=(heldout.MAIN,)) == expected


def test_eval_task_name_errors():
    with pytest.raises(ValueError, match="'held_out' is taken"):
        named_spec("held_out=countdown", reserved=(heldout.MAIN,))
    with pytest.raises(ValueError, match="empty task spec"):
        named_spec("name=")


def test_options_together_are_checked_once_with_the_flag():
    with pytest.raises(ConfigError, match="--k and --k-max"):
        replace(TrainConfig(), eval_k="4", eval_k_max=8).validate()
    with pytest.raises(ConfigError, match="--eval-task: two evaluation sets are named 'countdown'"):
        replace(TrainConfig(), eval_task=("countdown", "countdown")).validate()
    cfg = replace(TrainConfig(), eval_k_max=256, eval_samples=16).validate()
    assert ks_of(cfg) == ([1, 2, 4, 8, 16, 32, 64, 128, 256], 256)
    assert ks_of(replace(TrainConfig(), eval_samples=12)) == ([1, 2, 4, 8, 12], 12)
    assert ks_of(EvalConfig()) == ([1, 2, 4, 8, 16], 16)  # eval's default k = 16
    assert ks_of(replace(EvalConfig(), k_max=4)) == ([1, 2, 4], 4)
    assert ks_of(replace(EvalConfig(), k="1,8", samples=32)) == ([1, 8], 32)


def test_schedule():
    assert [s for s in range(1, 11) if heldout.due(s, 3, 10)] == [3, 6, 9]
    assert [s for s in range(1, 10) if heldout.due(s, 3, 9)] == [3, 6]  # the last is the final evaluation
    assert not any(heldout.due(s, 0, 10) for s in range(1, 11))


class EvenTask:
    name = "even"

    def problems(self, split):
        return [Problem(f"e{i}", f"{i} {i} -> {2 * i}\n") for i in range(3)]

    def score(self, problem, completion):
        return Score(1.0 if len(completion) % 2 == 0 else 0.0, completion[:1] or None)


def test_evaluator_writes_a_row_per_set_and_resume_drops_later_rows(tmp_path):
    tok = models.build_tokenizer()
    model = models.build_tiny_model(tok, models.TinySpec(hidden=32, layers=1, heads=2, intermediate=64))
    task = EvenTask()
    sets = [heldout.EvalSet(heldout.MAIN, "even", task, tuple(task.problems("test"))),
            heldout.EvalSet("again", "even", task, tuple(task.problems("test"))[:2])]
    log = tmp_path / "eval.jsonl"

    class Recorder:
        def __init__(self):
            self.rows, self.tables = [], []

        def evaluation(self, row):
            self.rows.append(row)

        def samples(self, name, step, columns, rows):
            self.tables.append((name, step, rows))

    rec = Recorder()
    ev = heldout.Evaluator(sets, ks=[1, 2, 4], samples=4, temperature=1.0, max_new_tokens=3, seed=1, batch=8,
                           progress=False, log=log, trackers=rec, sample_rows=2)
    base = ev.run(model, tok, 0, "base")
    ev.run(model, tok, 2, "step")
    ev.run(model, tok, 4, "trained")
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["step"], r["label"], r["eval"]) for r in rows] == [
        (0, "base", "held_out"), (0, "base", "again"), (2, "step", "held_out"), (2, "step", "again"),
        (4, "trained", "held_out"), (4, "trained", "again")]
    assert rows[0]["pass@4"] == base["held_out"]["pass@4"] and rows[1]["problems"] == 2
    assert "per_problem" not in rows[0] and rows[0]["intervals"]["pass@1"]["n"] == 3
    assert rows[2]["pass@1"] == rows[0]["pass@1"]  # the same policy and seed: the same stream
    assert [(r["step"], r["eval"], r["pass@2"]) for r in rec.rows] == [(r["step"], r["eval"], r["pass@2"])
                                                                       for r in rows]
    assert [t[:2] for t in rec.tables][:2] == [("held_out", 0), ("again", 0)]
    assert len(rec.tables[0][2]) == 2 and rec.tables[0][2][0][0] == "e0"  # sample_rows problems shown
    again = heldout.Evaluator(sets, ks=[1], samples=1, temperature=1.0, max_new_tokens=3, seed=1, batch=8,
                              log=log)
    again.resume(before_step=3)  # a run resumed from the checkpoint of step 2
    assert [r["step"] for r in map(json.loads, log.read_text().splitlines())] == [0, 0, 2, 2]


def _result(correct, answers, ks):
    rows = [evaluation.problem_metrics(c, a, [[1]] * len(c), ks=ks) for c, a in zip(correct, answers)]
    counts = [coverage.correct_answer_counts(a, c) for c, a in zip(correct, answers)]
    return evaluation.result(rows, counts, [f"p{i}" for i in range(len(rows))], len(correct[0]), ks)


def test_summary_lines_show_intervals_crossover_and_retained():
    ks = [1, 2, 4]
    base = _result([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]], [list("abcd"), list("xyzw"), list("qqqq")], ks)
    trained = _result([[1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]], [list("aaaa"), list("xyzw"), list("qqqq")],
                      ks)
    v = heldout.versus_all({"held_out": base}, {"held_out": trained})
    text = "\n".join(heldout.summary_lines(v, "lad"))
    assert "held_out: 3 problems x 4 samples" in text and "lad" in text
    acc = v["held_out"]["metrics"]["pass@1"]
    assert re.search(rf"pass@1 \(accuracy\) +{acc['base']['mean']:.3f} \[", text)
    assert "crossover: k=2" in text  # pass@2: base (0.5 + 5/6) / 3 >= trained 1/3
    assert "retained base answers: 0.500 [" in text and "over the 2 problems the base solved" in text
    assert not math.isnan(v["held_out"]["retained"]["lo"])
