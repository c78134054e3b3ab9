"""Resume under ``torchrun`` (two real processes, gloo on CPU): a killed DDP or FSDP2 run, resumed from its
newest complete checkpoint, gives every metrics row and the final weights of the uninterrupted run, bit for
bit; a kill while a sharded (FSDP2) checkpoint is being written leaves the previous one usable.

DDP: the whole launch is killed with SIGKILL (torchrun and both ranks at once, as a pre-empted node) after
its second checkpoint. FSDP2: rank 0 kills itself with SIGKILL right after every rank's shards of the third
checkpoint are on disk and before its manifest (a wrapper script around ``ladtrain.cli.main``), torchrun
then stops rank 1. Each run is compared with an uninterrupted run of the same flags."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from ports import free_port  # sibling helper module (tests/train/ports.py)
from test_resume import metric_rows  # sibling test module

from ladtrain import checkpoint

HERE = Path(__file__).resolve()
REPO = HERE.parents[2]
STEPS = 4

# torchrun runs this file: ladtrain's command line, with torch.distributed.checkpoint.save wrapped so that
# rank 0 dies (SIGKILL) right after the collective write of checkpoint number LAD_TEST_KILL_AT_SAVE
KILLER = """
import os, signal, sys
import torch.distributed.checkpoint as dcp
real_save, calls = dcp.save, []
def save_then_die(*args, **kwargs):
    result = real_save(*args, **kwargs)
    calls.append(1)
    if len(calls) == int(os.environ["LAD_TEST_KILL_AT_SAVE"]) and os.environ["RANK"] == "0":
        os.kill(os.getpid(), signal.SIGKILL)  # every rank's shards are written; the manifest is not
    return result
dcp.save = save_then_die
from ladtrain.cli import main
sys.exit(main(sys.argv[1:]))
"""


# the reward: distinct characters / 8 (it varies within a group, so the weights move), with a sleep per
# call that lets the test kill between steps, and a draw from torch's global RNG of 1 + RANK numbers, so
# the ranks' random streams differ (as they do whenever ranks consume different amounts of randomness,
# e.g. generations of different lengths): a resume that gave every rank rank 0's streams would then
# sample other completions on rank 1 and change the rows
REWARD = """
import os, time, torch
def reward(prompts, completions, **kwargs):
    time.sleep(float(os.environ.get("LAD_TEST_REWARD_SLEEP", "0")))
    torch.rand(1 + int(os.environ.get("RANK", "0")))
    return [len(set(c)) / 8 for c in completions]
"""


def train_flags(out: Path, parallel: str) -> list[str]:
    return ["train", "--out", str(out), "--steps", str(STEPS), "--warmup-steps", "4", "--warmup-batch", "8",
            "--prompts-per-step", "4", "--group-size", "2", "--eval-problems", "2", "--eval-samples", "2",
            "--max-new-tokens", "6", "--checkpoint-every", "1", "--keep-checkpoints", "100", "--threads", "1",
            "--reward", f"{out.parent / 'reward.py'}:reward", "--lr", "3e-3", "--device", "cpu",
            "--no-progress", "--parallel", parallel]


def launch(cwd: Path, cache: Path, *args: str, script: Path | None = None, **env: str) -> subprocess.Popen:
    target = [str(script)] if script else ["-m", "ladtrain"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(free_port()), *target, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "LADTRAIN_CACHE": str(cache), **env}
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from ``/proc``): torchrun starts its workers in sessions of their
    own, so killing torchrun's process group would leave them running."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo.extend(children.get(tree[-1], []))
    return tree


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL torchrun and every rank at once (as a pre-empted node); wait for all of them to be gone."""
    tree = process_tree(proc.pid)
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)
    deadline = time.time() + 30
    while any(Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid) for pid in tree[1:]):
        assert time.time() < deadline, "a rank survived SIGKILL"
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}") / "status").read_text().split("State:")[1].split("\n")[0]
    except (OSError, IndexError):
        return "zombie"


def finish(proc: subprocess.Popen, timeout: float = 400) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            kill_tree(proc)
    return out


def assert_same_as_uninterrupted(killed: Path, reference: Path, resumed_from: int) -> None:
    rows, want = metric_rows(killed), metric_rows(reference)
    assert len(rows) == len(want) == STEPS
    assert rows == want  # every row, the killed run's own and the resumed ones
    assert len({json.loads(r)["loss"] for r in want}) > 1  # the metrics carry information
    from safetensors.torch import load_file

    a = load_file(killed / "checkpoint" / "model.safetensors")
    b = load_file(reference / "checkpoint" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
    base = load_file(Path(json.loads((reference / "summary.json").read_text())["model"]["base_folder"])
                     / "model.safetensors")
    assert any(not torch.equal(a[n], base[n]) for n in a)  # training moved the weights
    info = json.loads((killed / "run.json").read_text())
    assert info["processes"] == 2 and [r["from_step"] for r in info["resumed"]] == [resumed_from]


@pytest.mark.slow  # three torchrun launches of two processes: about a minute on 2 shared cores
def test_ddp_run_killed_after_its_second_checkpoint_resumes_bit_identically(tmp_path, cache):
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    (tmp_path / "reward.py").write_text(REWARD)
    proc = launch(tmp_path, cache, *train_flags(killed, "ddp"), LAD_TEST_REWARD_SLEEP="0.3")
    try:
        deadline = time.time() + 300
        while len(checkpoint.complete_checkpoints(killed)) < 2:
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.time() < deadline, "no second checkpoint in 300 s"
            time.sleep(0.01)
        kill_tree(proc)  # torchrun and both ranks at once
    finally:
        if proc.poll() is None:
            kill_tree(proc)
    at_kill = [p.name for p in checkpoint.complete_checkpoints(killed)]
    assert not (killed / "summary.json").exists() and 2 <= len(at_kill) < STEPS, at_kill
    state = json.loads((checkpoint.step_folder(killed, 1) / checkpoint.STATE).read_text())
    assert state["processes"] == 2 and len(state["rank_rng"]) == 2
    tensors = torch.load(checkpoint.step_folder(killed, 1) / checkpoint.TENSORS, weights_only=True)
    ranks = [r["torch"] for r in tensors["rank_rng"]]
    assert len(ranks) == 2 and not torch.equal(*ranks)  # the ranks' sampling streams differ: each is kept

    resumed = launch(tmp_path, cache, "train", "--resume", str(killed), "--no-progress")
    uninterrupted = launch(tmp_path, cache, *train_flags(reference, "ddp"))
    for p in (resumed, uninterrupted):
        log = finish(p)
        assert p.returncode == 0, log[-3000:]
    assert_same_as_uninterrupted(killed, reference, int(at_kill[-1].split("-")[1]))


@pytest.mark.slow  # three torchrun launches of two processes: about a minute on 2 shared cores
def test_fsdp2_run_killed_while_writing_a_sharded_checkpoint_resumes_from_the_previous_one(tmp_path, cache):
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    (tmp_path / "reward.py").write_text(REWARD)
    proc = launch(tmp_path, cache, *train_flags(killed, "fsdp2"), script=script, LAD_TEST_KILL_AT_SAVE="3")
    log = finish(proc)
    assert proc.returncode != 0, log[-3000:]
    folder = killed / checkpoint.CHECKPOINTS
    names = sorted(p.name for p in folder.iterdir())
    assert [n for n in names if not n.startswith(".")] == ["step-000001", "step-000002"], (names, log[-3000:])
    leftover = [folder / n for n in names if n.startswith(".step-000003.tmp-")]
    assert len(leftover) == 1, names  # the killed write: both ranks' shards, no manifest
    shards = sorted(p.name for p in (leftover[0] / checkpoint.SHARDS).iterdir())
    assert "__0_0.distcp" in shards and "__1_0.distcp" in shards, shards
    assert not (leftover[0] / checkpoint.MANIFEST).exists()
    previous = checkpoint.step_folder(killed, 2)
    checkpoint.verify(previous)  # the previous checkpoint is complete: the manifest covers every shard
    manifest = json.loads((previous / checkpoint.MANIFEST).read_text())["files"]
    assert {f"{checkpoint.SHARDS}/__0_0.distcp", f"{checkpoint.SHARDS}/__1_0.distcp"} <= manifest.keys()
    assert "model.safetensors" not in manifest  # the weights are in the shards only
    tensors = torch.load(previous / checkpoint.TENSORS, weights_only=True)
    assert tensors["optimizer"] is None and not torch.equal(*[r["torch"] for r in tensors["rank_rng"]])

    resumed = launch(tmp_path, cache, "train", "--resume", str(killed), "--no-progress")
    uninterrupted = launch(tmp_path, cache, *train_flags(reference, "fsdp2"))
    for p in (resumed, uninterrupted):
        log = finish(p)
        assert p.returncode == 0, log[-3000:]
    assert not leftover[0].exists()  # resume removed what the killed writer left
    assert_same_as_uninterrupted(killed, reference, 2)


def test_shards_round_trip_on_one_process_and_a_failed_write_is_an_oserror(tmp_path):
    """``save_shards`` / ``load_shards`` without a process group (how a sharded checkpoint reads on one
    process): weights and AdamW state come back equal; a folder that cannot be created is an OSError (which
    ``checkpoint.save_state`` turns into one line)."""
    from ladtrain import distributed, models

    tok = models.build_tokenizer()
    model = models.build_tiny_model(tok, seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(input_ids=torch.tensor([[1, 2, 3]]), labels=torch.tensor([[1, 2, 3]])).loss.backward()
    opt.step()
    distributed.save_shards(str(tmp_path / "shards"), model, opt)
    fresh = models.build_tiny_model(tok, seed=2)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    assert any(not torch.equal(a, b) for a, b in zip(model.parameters(), fresh.parameters()))
    distributed.load_shards(str(tmp_path / "shards"), fresh, fresh_opt)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), fresh.parameters()))
    want, got = opt.state_dict()["state"], fresh_opt.state_dict()["state"]
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k]["exp_avg_sq"], got[k]["exp_avg_sq"]) for k in want)
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError):
        distributed.save_shards(str(tmp_path / "file" / "shards"), model, opt)
