"""Resume without loss: a run killed with SIGKILL and resumed from its newest checkpoint gives, from the
checkpoint on, exactly the metrics of an uninterrupted run with the same seed (CPU, one thread), and no
checkpoint folder is ever visible half-written."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from ladtrain import checkpoint, cli, samples_log

HERE = Path(__file__).resolve()
REPO = HERE.parents[2]


def varied_reward(prompts, completions, **kwargs):
    """Distinct characters / 8: a reward that varies within a group, so the tiny model gets non-zero
    advantages and its weights really move. ``LAD_TEST_REWARD_SLEEP`` seconds of sleep per call let the
    test kill the subprocess between steps reliably."""
    time.sleep(float(os.environ.get("LAD_TEST_REWARD_SLEEP", "0")))
    return [len(set(c)) / 8 for c in completions]


def flags(out: Path, steps: int = 6) -> list[str]:
    return ["--out", str(out), "--steps", str(steps), "--warmup-steps", "4", "--warmup-batch", "8",
            "--prompts-per-step", "3", "--group-size", "2", "--eval-problems", "3", "--eval-samples", "2",
            "--max-new-tokens", "6", "--checkpoint-every", "1", "--keep-checkpoints", "100",
            "--keep-resumable",
            "--threads", "1",
            "--reward", f"{HERE}:varied_reward", "--lr", "3e-3", "--device", "cpu", "--no-progress"]


def metric_rows(run: Path) -> list[dict]:
    """metrics.jsonl rows without the wall-clock columns (compared as JSON text so that NaN == NaN)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [
        json.dumps({k: v for k, v in r.items() if not k.endswith("seconds")}, sort_keys=True) for r in rows
    ]


def watch_checkpoints(run: Path, stop: threading.Event, seen: dict[str, str]) -> None:
    """Poll the checkpoints folder; every visible step-* folder must verify against its manifest."""
    folder = run / checkpoint.CHECKPOINTS
    while not stop.is_set():
        for p in sorted(folder.iterdir()) if folder.is_dir() else []:
            if not p.name.startswith(".") and p.name not in seen:
                try:
                    checkpoint.verify(p)
                    seen[p.name] = "complete"
                except checkpoint.CheckpointError as err:
                    seen[p.name] = f"HALF-WRITTEN: {err}"
        time.sleep(0.005)


def test_resume_after_sigkill_reproduces_the_uninterrupted_run_exactly(cache, tmp_path, capsys):
    steps = 6
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    env = {**os.environ, "LAD_TEST_REWARD_SLEEP": "0.4", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ladtrain", "train", *flags(killed, steps)], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    stop, seen = threading.Event(), {}
    watcher = threading.Thread(target=watch_checkpoints, args=(killed, stop, seen), daemon=True)
    watcher.start()
    try:
        deadline = time.time() + 120
        while (
            len(checkpoint.complete_checkpoints(killed)) < 3
        ):  # kill in the middle: after step 3's checkpoint
            assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
            assert time.time() < deadline, "the run wrote no third checkpoint in 120 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        stop.set()
        watcher.join()
    at_kill = [p.name for p in checkpoint.complete_checkpoints(killed)]
    assert not (killed / "summary.json").exists() and 3 <= len(at_kill) < steps, at_kill
    assert seen and all(v == "complete" for v in seen.values()), seen  # never a half-written step folder
    # what a writer killed mid-checkpoint leaves: a hidden temporary folder (and, say, a copied step folder
    # without its manifest); resume ignores both and removes them
    leftover = killed / checkpoint.CHECKPOINTS / f".step-{steps:06d}.tmp-abc"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"\0" * 100)
    unfinished = checkpoint.step_folder(killed, steps + 1)
    unfinished.mkdir()
    (unfinished / "model.safetensors").write_bytes(b"\0" * 100)

    assert cli.main(["train", "--resume", str(killed), "--no-progress"]) == 0
    assert cli.main(["train", *flags(reference, steps)]) == 0
    capsys.readouterr()

    assert not leftover.exists() and not unfinished.exists()
    k = int(at_kill[-1].split("-")[1])
    resumed_rows, reference_rows = metric_rows(killed), metric_rows(reference)
    assert len(resumed_rows) == len(reference_rows) == steps
    assert resumed_rows[k:] == reference_rows[k:]  # from the checkpoint on: identical
    assert resumed_rows == reference_rows  # and the killed run's own rows before it too
    assert len({json.loads(r)["loss"] for r in reference_rows}) > 1  # the metrics carry information
    # the final policy is bit-identical, and so is its held-out evaluation
    from safetensors.torch import load_file

    a = load_file(killed / "checkpoint" / "model.safetensors")
    b = load_file(reference / "checkpoint" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
    start = load_file(checkpoint.step_folder(killed, 1) / "model.safetensors")
    assert any(not torch.equal(a[n], start[n]) for n in a)  # training moved the weights
    summary_a = json.loads((killed / "summary.json").read_text())
    summary_b = json.loads((reference / "summary.json").read_text())
    assert summary_a["trained"]["accuracy"] == summary_b["trained"]["accuracy"]
    same = [json.dumps({k: v for k, v in s[part].items() if k != "seconds"}, sort_keys=True)
            for s in (summary_a, summary_b) for part in ("base", "trained")]
    assert same[:2] == same[2:]
    run_info = json.loads((killed / "run.json").read_text())
    assert run_info["seed"] == 0 and [r["from_step"] for r in run_info["resumed"]] == [k]


KILL_MID_WRITE = """
import os, random, signal, sys, torch
from ladtrain import checkpoint, faults, models
tok = models.build_tokenizer()
model = models.build_tiny_model(tok)
optimizer = torch.optim.AdamW(model.parameters())
kw = dict(optimizer=optimizer, scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0),
          data_rng=random.Random(0), faults=faults.Faults(), extra={})
checkpoint.save_training(sys.argv[1], 1, model, tok, **kw)
real_save = torch.save
def save_then_die(*args, **kwargs):  # step 2: model and optimizer state on disk, manifest not yet
    real_save(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = save_then_die
checkpoint.save_training(sys.argv[1], 2, model, tok, **kw)
"""


def test_sigkill_in_the_middle_of_writing_a_checkpoint_leaves_only_complete_ones(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", KILL_MID_WRITE, str(run)], env=env, capture_output=True, timeout=120
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    names = sorted(p.name for p in (run / checkpoint.CHECKPOINTS).iterdir())
    assert names[0].startswith(".step-000002.tmp-") and names[1:] == ["step-000001"], names
    leftover = run / checkpoint.CHECKPOINTS / names[0]
    assert (leftover / "trainer_state.pt").is_file() and not (leftover / checkpoint.MANIFEST).exists()
    state = checkpoint.latest_training(run)  # what --resume reads: the older, complete checkpoint
    assert state.step == 1 and not leftover.exists()


@pytest.mark.parametrize("options", [
    {"loss": "grpo", "updates_per_rollout": 2, "lr_schedule": "cosine"},  # a no-grad logp_old pass, a decay
    {"loss": "lad:kl", "level": "sequence", "adv_scale": "batch_std"},
    {"loss": "flowrl"},  # its frozen reference (the base, loaded again) and its trained log Z head
    {"lora_r": 4, "lora_alpha": 8.0},  # the checkpoint holds adapters and optimizer; the base is loaded again
])
def test_resume_from_a_middle_checkpoint_is_exact_for_other_losses_and_schedules(
    cache, tmp_path, tiny, options, monkeypatch
):
    from dataclasses import replace

    from ladtrain import trainer
    from ladtrain.config import TrainConfig
    from ladtrain.rewards import with_reward

    monkeypatch.setattr(trainer, "load_task",
                        lambda cfg: with_reward(trainer.get_task(cfg.task), varied_reward))
    cfg = replace(TrainConfig(), **{**tiny, "steps": 4, "checkpoint_every": 1, "keep_checkpoints": 10,
                                    "keep_resumable": True, "lr": 3e-3, "device": "cpu", "threads": 1,
                                    **options})
    trainer.train(replace(cfg, out=str(tmp_path / "reference")).validate())
    cut = tmp_path / "cut"
    trainer.train(replace(cfg, out=str(cut)).validate())
    for step in (3, 4):  # as if killed right after step 2's checkpoint
        shutil.rmtree(checkpoint.step_folder(cut, step))
    (cut / "summary.json").unlink()
    trainer.train(replace(cfg, out=str(cut), resume=str(cut)).validate())
    assert metric_rows(cut) == metric_rows(tmp_path / "reference")
    # samples.jsonl: the records after the checkpoint were dropped and written again, as in the reference
    reference = samples_log.read(tmp_path / "reference" / "samples.jsonl")
    assert samples_log.read(cut / "samples.jsonl") == reference
    seconds = json.loads((cut / "summary.json").read_text())["seconds"]  # total counts the earlier session
    assert seconds["total"] >= seconds["rl"]
    if options.get("lora_r"):  # adapters and optimizer only: no copy of the base weights in the checkpoint
        assert not (checkpoint.step_folder(cut, 2) / "model.safetensors").exists()
    from safetensors.torch import load_file

    a, b = (load_file(tmp_path / n / "checkpoint" / "model.safetensors") for n in ("cut", "reference"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_resumed_run_samples_through_the_products_of_the_run_it_resumes(cache, tmp_path, tiny, monkeypatch):
    """Whether the sampler runs transposed weight copies is measured once, on a fresh run, and written to
    ``run.json``; ``--resume`` takes it from there, even where this machine would now measure otherwise
    (else a resumed run could sample through other products than the run it continues). Control: a fresh
    run under the new measurement does decide otherwise."""
    from dataclasses import replace

    from ladtrain import start, trainer, transposed_linears
    from ladtrain.config import TrainConfig

    made = []

    class Recording(start.CompactSampler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self.transposed)

    monkeypatch.setattr(start, "CompactSampler", Recording)
    monkeypatch.setattr(transposed_linears, "pays", lambda model, rows, store=None: True)
    cfg = replace(TrainConfig(), **{**tiny, "checkpoint_every": 1, "keep_checkpoints": 10,
                                    "keep_resumable": True, "device": "cpu", "threads": 1})
    out = tmp_path / "run"
    trainer.train(replace(cfg, out=str(out)).validate())
    assert json.loads((out / "run.json").read_text())["sampler_transposed"] is True
    shutil.rmtree(checkpoint.step_folder(out, 2))  # as if killed right after step 1's checkpoint
    (out / "summary.json").unlink()
    monkeypatch.setattr(transposed_linears, "pays", lambda model, rows, store=None: False)  # now: otherwise
    trainer.train(replace(cfg, out=str(out), resume=str(out)).validate())
    run = json.loads((out / "run.json").read_text())
    assert made == [True, True] and run["sampler_transposed"] is True and len(run["resumed"]) == 1
    trainer.train(replace(cfg, out=str(tmp_path / "fresh")).validate())
    assert made[-1] is False
    assert json.loads((tmp_path / "fresh" / "run.json").read_text())["sampler_transposed"] is False
