"""Reliability of a run folder: determinism and provenance, atomic checkpoints, a full or unwritable disk,
a corrupt checkpoint, bad configuration input. Every error is one line and overwrites nothing."""

from __future__ import annotations

import errno
import hashlib
import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ladtrain import atomic, checkpoint, cli, trainer
from ladtrain.config import TrainConfig
from ladtrain.rewards import with_reward


def varied(prompts, completions, **kw):
    """Distinct characters / 8: non-zero advantages for the tiny model, so the weights move."""
    return [len(set(c)) / 8 for c in completions]


@pytest.fixture
def varied_task(monkeypatch):
    monkeypatch.setattr(trainer, "load_task", lambda cfg: with_reward(trainer.get_task(cfg.task), varied))


def config(tmp_path, tiny, name="run", **kw) -> TrainConfig:
    return replace(TrainConfig(), out=str(tmp_path / name), device="cpu", threads=1,
                   **{**tiny, "checkpoint_every": 1, "keep_checkpoints": 10, "keep_resumable": True,
                      **kw}).validate()


def tiny_argv(tiny, out) -> list[str]:
    return [
        "train",
        *[f"--{k.replace('_', '-')}={v}" for k, v in tiny.items() if k != "progress"],
        "--no-progress",
        "--out",
        str(out),
        "--threads",
        "1",
        "--device",
        "cpu",
        "--checkpoint-every",
        "1",
    ]


def rows_text(run: Path) -> list[str]:
    """metrics rows without the wall-clock columns (*seconds), as JSON text (NaN compares equal to NaN)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [
        json.dumps({k: v for k, v in r.items() if not k.endswith("seconds")}, sort_keys=True) for r in rows
    ]


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (to show that an error changed nothing)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    return err[0]


# --------------------------------------------------------------------------------------------------
# determinism and provenance


def test_same_seed_gives_identical_metrics_and_another_seed_does_not(cache, tmp_path, tiny, varied_task):
    a = trainer.train(config(tmp_path, tiny, "a", steps=3))
    b = trainer.train(config(tmp_path, tiny, "b", steps=3))
    c = trainer.train(config(tmp_path, tiny, "c", steps=3, seed=1))
    assert rows_text(tmp_path / "a") == rows_text(tmp_path / "b")
    assert rows_text(tmp_path / "a") != rows_text(tmp_path / "c")  # the comparison can fail
    assert a["trained"]["accuracy"] == b["trained"]["accuracy"]
    assert a["base"]["answer_entropy"] == b["base"]["answer_entropy"]
    from safetensors.torch import load_file

    wa, wb = (load_file(tmp_path / n / "checkpoint" / "model.safetensors") for n in "ab")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    del c


def test_run_folder_records_seed_full_resolved_config_and_package_versions(cache, tmp_path, tiny):
    cfg = config(tmp_path, tiny, steps=1, seed=7)
    trainer.train(cfg)
    run = tmp_path / "run"
    assert json.loads((run / "config.json").read_text()) == cfg.to_dict()  # every field, resolved
    info = json.loads((run / "run.json").read_text())
    assert info["seed"] == 7 and info["device"] == "cpu"
    assert (
        info["versions"]["torch"] == torch.__version__.split("+")[0]
        or info["versions"]["torch"] == torch.__version__
    )
    assert {"python", "lad", "transformers", "numpy", "safetensors"} <= set(info["versions"])


# --------------------------------------------------------------------------------------------------
# atomic checkpoints


def test_checkpoint_holds_model_optimizer_scheduler_rng_and_data_position(cache, tmp_path, tiny):
    trainer.train(config(tmp_path, tiny, steps=2))
    run = tmp_path / "run"
    assert [p.name for p in checkpoint.complete_checkpoints(run)] == ["step-000001", "step-000002"]
    state = checkpoint.latest_training(run)
    assert state.step == 2
    assert {"optimizer", "scheduler", "rng"} <= set(state.tensors) and state.tensors["optimizer"]["state"]
    assert state.tensors["scheduler"]["last_epoch"] == 2  # one update per step
    assert {"python", "numpy"} <= set(state.info["rng"]) and state.info["data_position"]
    manifest = checkpoint.verify(checkpoint.step_folder(run, 2))
    assert {"model.safetensors", "trainer_state.pt", "state.json", "config.json"} <= set(manifest["files"])
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(checkpoint.step_folder(run, 2)) is not None  # an HF folder


def test_old_checkpoints_are_pruned_to_keep_and_never_through_a_visible_partial_folder(cache, tmp_path, tiny,
                                                                                       monkeypatch):
    removed = []
    real_rmtree = checkpoint.shutil.rmtree

    def spy(path, *a, **kw):
        removed.append(Path(path).name)
        return real_rmtree(path, *a, **kw)

    monkeypatch.setattr(checkpoint.shutil, "rmtree", spy)
    trainer.train(config(tmp_path, tiny, steps=3, keep_checkpoints=2))
    run = tmp_path / "run"
    assert [p.name for p in checkpoint.complete_checkpoints(run)] == ["step-000002", "step-000003"]
    assert all(name.startswith(".") for name in removed)  # renamed away before deletion
    assert not [p for p in (run / checkpoint.CHECKPOINTS).iterdir() if p.name.startswith(".")]


def test_a_fresh_run_refuses_a_folder_that_holds_an_unfinished_run(cache, tmp_path, tiny, capsys):
    trainer.train(config(tmp_path, tiny, steps=1))
    (tmp_path / "run" / "summary.json").unlink()  # as if killed before the end (a finished run may be redone)
    before = snapshot(tmp_path / "run")
    assert cli.main(tiny_argv(tiny, tmp_path / "run")) == 2
    line = one_line_error(capsys)
    assert "--out" in line and f"--resume {tmp_path / 'run'}" in line
    assert snapshot(tmp_path / "run") == before


# --------------------------------------------------------------------------------------------------
# disk full, not writable


def test_disk_full_while_checkpointing_is_one_line_and_keeps_the_previous_checkpoint(cache, tmp_path, tiny,
                                                                                     monkeypatch, capsys):
    real_save = torch.save
    calls = {"n": 0}

    def full_disk(obj, f, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint (step 2) hits a full disk half-way through its folder
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", full_disk)
    run = tmp_path / "run"
    assert cli.main([*tiny_argv(tiny, run), "--steps", "4"]) == 2
    line = one_line_error(capsys)
    assert "cannot write checkpoint" in line and "step-000002" in line and "No space left on device" in line
    assert [p.name for p in (run / checkpoint.CHECKPOINTS).iterdir()] == ["step-000001"]  # no temporary left
    checkpoint.verify(run / checkpoint.CHECKPOINTS / "step-000001")
    monkeypatch.setattr(torch, "save", real_save)  # space freed: the run resumes from step 1
    assert cli.main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert [json.loads(r)["step"] for r in rows_text(run)] == [1, 2, 3, 4]


def test_a_real_full_filesystem_gives_one_line_and_keeps_the_previous_checkpoint(
    cache, tmp_path, tiny, capsys
):
    """A 12 MB tmpfs holds one checkpoint of the tiny model (about 9.5 MB) but not two. Needs root."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        run = mount / "run"
        assert cli.main([*tiny_argv(tiny, run), "--steps", "3"]) == 2
        line = one_line_error(capsys)
        assert "No space left on device" in line and "step-000002" in line
        assert [p.name for p in (run / checkpoint.CHECKPOINTS).iterdir()] == ["step-000001"]
        checkpoint.verify(run / checkpoint.CHECKPOINTS / "step-000001")
        assert json.loads((run / "config.json").read_text())["steps"] == 3
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_read_only_output_folder_is_one_line_and_creates_nothing(cache, tmp_path, tiny, capsys):
    """A read-only tmpfs as root (permissions do not stop root), a 0500 folder otherwise."""
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    mounted = False
    if os.geteuid() == 0:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(locked)], capture_output=True
        )
        if done.returncode != 0:
            pytest.skip("root without permission to mount a tmpfs")
        mounted = True
    else:
        locked.chmod(0o500)
    try:
        assert cli.main(tiny_argv(tiny, locked / "run")) == 2
        line = one_line_error(capsys)
        assert "--out" in line and ("Read-only file system" in line or "Permission denied" in line), line
        assert list(locked.iterdir()) == []
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(locked)], check=False)
        else:
            locked.chmod(0o700)


def test_metrics_and_small_files_on_a_full_device_raise_one_line_errors():
    """/dev/full answers every write with ENOSPC: the real error path, no root needed."""
    full = Path("/dev/full")
    if not full.exists():
        pytest.skip("no /dev/full on this system")
    with pytest.raises(atomic.WriteError, match=r"cannot write /dev/full: No space left on device$"):
        with atomic.MetricsLog(full) as log:
            log.write({"step": 1, "loss": 0.5})


def test_a_failed_small_file_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    path.write_text("old")

    def full(tmp, text):
        Path(tmp).write_text(text[:3])  # part of it reached the disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "durable_write", full)
    with pytest.raises(atomic.WriteError, match="cannot write .*summary.json: No space left on device"):
        atomic.write_atomically(path, "new contents")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


# --------------------------------------------------------------------------------------------------
# corrupt checkpoint, bad configuration


@pytest.mark.parametrize("damage, message", [
    ("flip", "model.safetensors does not match its sha256"),
    ("truncate", "trainer_state.pt has 100 bytes"),
    ("manifest", "unreadable manifest.json"),
])
def test_corrupt_checkpoint_on_resume_is_one_line_and_changes_nothing(cache, tmp_path, tiny, capsys, damage,
                                                                      message):
    trainer.train(config(tmp_path, tiny, steps=2))
    run = tmp_path / "run"
    (run / "summary.json").unlink()  # as if killed before the end
    newest = checkpoint.step_folder(run, 2)
    if damage == "flip":
        data = bytearray((newest / "model.safetensors").read_bytes())
        data[-5] ^= 0xFF
        (newest / "model.safetensors").write_bytes(bytes(data))
    elif damage == "truncate":
        (newest / "trainer_state.pt").write_bytes((newest / "trainer_state.pt").read_bytes()[:100])
    else:
        (newest / "manifest.json").write_text("{not json")
    before = snapshot(run)
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(run), "--no-progress"]) == 2
    line = one_line_error(capsys)
    assert line.startswith("error: --resume: checkpoint") and message in line
    assert "the older step-000001 may be intact" in line
    assert snapshot(run) == before


def test_unknown_key_in_a_config_file_is_one_line_with_file_and_line_and_writes_nothing(cache, tmp_path, tiny,
                                                                                        capsys):
    path = tmp_path / "run.yaml"
    path.write_text("steps: 2\nlearning_rate: 0.1\n")
    assert cli.main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    assert f"{path}:2: unknown key 'learning_rate'" in one_line_error(capsys)
    assert not (tmp_path / "run").exists()


def test_resume_reads_the_run_config_and_rejects_changes_and_unknown_keys(cache, tmp_path, tiny, capsys):
    run = tmp_path / "run"
    trainer.train(config(tmp_path, tiny, steps=1))
    assert cli.parse_config(["--resume", str(run), "--threads", "2"]) == replace(
        config(tmp_path, tiny, steps=1), threads=2, resume=str(run))
    for argv, text in [
        (["--resume", str(run), "--lr", "0.5"], "--lr cannot change when resuming"),
        (["--resume", str(tmp_path)], "is not a run folder (no config.json)"),
        (["--resume", str(run), "--config", str(run / "config.json")], "cannot be combined with --config"),
    ]:
        assert cli.main(["train", *argv]) == 2
        assert text in one_line_error(capsys)
    before = snapshot(run)
    text = (run / "config.json").read_text().replace('"seed": 0,', '"seed": 0,\n  "sed": 1,')
    (run / "config.json").write_text(text)
    assert cli.main(["train", "--resume", str(run)]) == 2
    line = one_line_error(capsys)
    assert f"{run / 'config.json'}:" in line and "unknown key 'sed'" in line
    assert snapshot(run).keys() == before.keys()
