"""Evaluation during training, end to end at a tiny size: --eval-every, several --eval-task sets, k up to
256, --report-to tensorboard; eval.jsonl, pass_at_k.png, the crossover and retained answers in
summary.json and on the console, TensorBoard events read back with TensorBoard's reader; resume."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from ladtrain import checkpoint, cli, trainer
from ladtrain.config import TrainConfig


def short_gsm8k(folder: Path) -> Path:
    """GSM8K-format lines short enough for the built-in model's 64-token context."""
    path = folder / "short_gsm8k.jsonl"
    path.write_text("".join(json.dumps({"question": f"{a}+{b}=", "answer": f"so #### {a + b}"}) + "\n"
                            for a, b in ((1, 2), (3, 4), (2, 2))))
    return path


def run_argv(out: Path, k_max: int, steps: int = 2) -> list[str]:
    gsm = short_gsm8k(out.parent)
    return ["train", "--out", str(out), "--steps", str(steps), "--warmup-steps", "4", "--warmup-batch", "8",
            "--prompts-per-step", "3", "--group-size", "2", "--max-new-tokens", "6", "--eval-problems", "2",
            "--eval-every", "1", "--k-max", str(k_max), "--eval-batch", "128", "--threads", "1",
            "--device", "cpu", "--no-progress", "--report-to", "tensorboard",
            "--eval-task", "small=countdown", "--eval-task", f"gsm=gsm8k:{gsm},test_every=0"]


def check_run(out: Path, k_max: int, steps: int, printed: str) -> None:
    sets = ["held_out", "small", "gsm"]
    rows = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    schedule = [(0, "base"), *((i, "step") for i in range(1, steps)), (steps, "trained")]
    expected = [(s, label, e) for s, label in schedule for e in sets]
    assert [(r["step"], r["label"], r["eval"]) for r in rows] == expected
    n = max(16, k_max)  # samples per problem: max(--eval-samples (default 16), largest k)
    assert all(r["samples_per_problem"] == n and r["ks"][-1] == k_max for r in rows)
    assert all(r["problems"] == 2 for r in rows)
    assert all(f"pass@{k_max}" in r and r["intervals"][f"pass@{k_max}"]["n"] == 2 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval_samples"] == n and summary["ks"][-1] == k_max
    assert set(summary["versus"]) == set(sets) and set(summary["eval_sets"]) == {"small", "gsm"}
    main = summary["versus"]["held_out"]
    assert summary["crossover_k"] == main["crossover_k"]
    assert summary["crossover_k"] is None or summary["crossover_k"] in summary["ks"]
    assert set(summary["retained"]) == {"mean", "lo", "hi", "n"}
    assert main["pass_at_k"]["base"][-1] == summary["base"][f"pass@{k_max}"]
    # the final rows of eval.jsonl are the summary's trained results, the first the base's
    assert rows[-3]["pass@1"] == summary["trained"]["pass@1"]
    assert rows[0]["pass@1"] == summary["base"]["pass@1"]
    for name in ("pass_at_k.png", "learning_curves.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert "crossover: " in printed and "retained base answers" in printed
    assert "gsm: 2 problems x" in printed and "[" in printed.split("pass@1 (accuracy)")[1].splitlines()[0]

    from tensorboard.backend.event_processing import event_accumulator as ea

    acc = ea.EventAccumulator(str(out / "tensorboard"), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == list(range(1, steps + 1))
    for name in sets:
        assert [e.step for e in acc.Scalars(f"eval/{name}/pass@{k_max}")] == list(range(0, steps + 1))
    gsm = [r["pass@1"] for r in rows if r["eval"] == "gsm"]
    assert [e.value for e in acc.Scalars("eval/gsm/pass@1")] == pytest.approx(gsm, abs=1e-7)  # float32 events
    assert "samples/small/text_summary" in acc.Tags()["tensors"]


def test_eval_every_several_sets_and_tensorboard_end_to_end(cache, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    assert cli.main(run_argv(out, 8)) == 0
    check_run(out, 8, 2, capsys.readouterr().out)


@pytest.mark.slow  # 3 sets x 3 evaluations x 2 problems x 256 samples: about a minute on 2 shared cores
def test_the_done_when_run_with_k_up_to_256(cache, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    assert cli.main(run_argv(out, 256)) == 0
    check_run(out, 256, 2, capsys.readouterr().out)


def test_bad_evaluation_flags_are_one_line_errors(cache, tmp_path, capsys):
    missing = tmp_path / "missing.jsonl"
    for argv, flag in ((["--eval-task", "x=nope"], "--eval-task"), (["--k", "4", "--k-max", "8"], "--k-max"),
                       (["--report-to", "mlflow"], "--report-to"), (["--eval-every", "-1"], "--eval-every"),
                       (["--eval-task", f"gsm=gsm8k:{missing}"], "--eval-task")):
        code = cli.main(["train", "--out", str(tmp_path / "bad"), "--no-progress", "--warmup-steps", "2",
                         "--steps", "1", *argv])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and flag in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "bad" / "summary.json").exists()


def test_resume_keeps_the_evaluations_up_to_the_checkpoint_and_redoes_the_rest(cache, tmp_path, tiny,
                                                                                monkeypatch):
    from ladtrain.rewards import with_reward

    def varied(prompts, completions, **kwargs):
        return [len(set(c)) / 8 for c in completions]

    monkeypatch.setattr(trainer, "load_task", lambda cfg: with_reward(trainer.get_task(cfg.task), varied))
    cfg = replace(TrainConfig(), **{**tiny, "steps": 4, "checkpoint_every": 1, "keep_checkpoints": 10,
                                    "keep_resumable": True, "lr": 3e-3, "device": "cpu", "threads": 1,
                                    "eval_every": 1,
                                    "eval_k_max": 4, "eval_task": ("small=countdown",)})
    trainer.train(replace(cfg, out=str(tmp_path / "reference")).validate())
    cut = tmp_path / "cut"
    trainer.train(replace(cfg, out=str(cut)).validate())
    for step in (3, 4):  # as if killed right after step 2's checkpoint (and step 3's evaluation)
        shutil.rmtree(checkpoint.step_folder(cut, step))
    (cut / "summary.json").unlink()
    trainer.train(replace(cfg, out=str(cut), resume=str(cut)).validate())

    def rows(run):
        return [json.dumps({k: v for k, v in json.loads(line).items() if k != "seconds"}, sort_keys=True)
                for line in (run / "eval.jsonl").read_text().splitlines()]

    assert rows(cut) == rows(tmp_path / "reference")  # no duplicate of step 3, nothing lost, same numbers
    a, b = (json.loads((tmp_path / n / "summary.json").read_text()) for n in ("cut", "reference"))
    assert a["versus"]["small"]["metrics"]["pass@4"] == b["versus"]["small"]["metrics"]["pass@4"]
