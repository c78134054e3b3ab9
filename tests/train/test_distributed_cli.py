"""``torchrun --nproc-per-node 2 -m ladtrain train``: the whole pipeline on two CPU processes (gloo).

What is checked: the run finishes; rank 0 alone writes (one metrics line per step, a summary, a
checkpoint that reloads as a plain Hugging Face model); the metrics describe the global batch. The exact
equality of the parallel update with the one-process update is ``test_distributed.py``'s business."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from ports import torchrun  # sibling helper module (tests/train/ports.py)

from ladtrain import onednn_linears

REPO = Path(__file__).resolve().parents[2]


def torchrun_train(tmp_path: Path, cache: Path, tiny: dict, *extra: str) -> subprocess.CompletedProcess:
    args = [
        (f"--{k}" if v else f"--no-{k}") if isinstance(v, bool) else f"--{k}={v}" for k, v in tiny.items()
    ]
    args = [a.replace("_", "-") for a in args]
    cmd = [
        *torchrun(2),
        "-m",
        "ladtrain",
        "train",
        *args,
        "--out",
        str(tmp_path / "run"),
        "--device",
        "cpu",
        "--threads",
        "1",
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "LADTRAIN_CACHE": str(cache)}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)


def _check_run(run: Path, steps: int) -> None:
    from transformers import AutoModelForCausalLM

    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, steps + 1))  # rank 0 alone wrote them, once each
    assert all(r["loss"] == r["loss"] for r in rows)  # finite (not NaN)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == steps
    assert json.loads((run / "run.json").read_text())["processes"] == 2
    model = AutoModelForCausalLM.from_pretrained(run / "checkpoint")
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.slow  # about 35 s on 2 shared cores
@pytest.mark.parametrize("kernels", ["torch", "onednn"])
def test_torchrun_two_processes_ddp_trains_and_rank_0_writes_the_run(tmp_path, cache, tiny, kernels):
    if kernels == "onednn" and not onednn_linears.available():
        pytest.skip("this torch build has no oneDNN linear product")
    proc = torchrun_train(tmp_path, cache, tiny, "--parallel", "ddp", "--grad-accumulation", "2",
                          "--linear-kernels", kernels)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_run(tmp_path / "run", tiny["steps"])
    assert json.loads((tmp_path / "run" / "run.json").read_text())["linear_kernels"] == kernels
    assert proc.stdout.count("run folder:") == 1  # the summary table is printed by rank 0 only


@pytest.mark.slow  # about 35 s on 2 shared cores
@pytest.mark.parametrize("kernels", ["torch", "onednn"])  # oneDNN: FSDP2 gathers plain weights to multiply
def test_torchrun_two_processes_fsdp2_trains_and_saves_a_gathered_checkpoint(tmp_path, cache, tiny, kernels):
    if kernels == "onednn" and not onednn_linears.available():
        pytest.skip("this torch build has no oneDNN linear product")
    proc = torchrun_train(tmp_path, cache, tiny, "--parallel", "fsdp2", "--linear-kernels", kernels)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_run(tmp_path / "run", tiny["steps"])
    assert json.loads((tmp_path / "run" / "run.json").read_text())["linear_kernels"] == kernels


def test_torchrun_with_prompts_not_divisible_by_processes_is_one_line_exit_2(tmp_path, cache, tiny):
    proc = torchrun_train(tmp_path, cache, {**tiny, "prompts_per_step": 3, "steps": 1})
    assert proc.returncode != 0
    assert "--prompts-per-step 3 is not divisible by the 2 processes" in proc.stderr
    assert "ladtrain/" not in proc.stderr  # no traceback through our code (torchrun adds its own report)
