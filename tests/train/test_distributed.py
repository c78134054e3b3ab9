"""Two real processes (``torchrun``, gloo on CPU) take the same optimiser step as one process on the
batch of both.

The worker below runs under ``python -m torch.distributed.run --nproc-per-node 2``. Every rank builds the
same tiny model and the same fixed rollout of 4 prompts x G=3 completions (unequal completion lengths,
off-policy ``logp_old``; :func:`test_accumulation.fixed_batch`), keeps its prompts with
:func:`ladtrain.distributed.shard` (rank 0: prompts 0 and 2; rank 1: prompts 1 and 3, so the ranks hold
different numbers of tokens), wraps the model with DDP (then, separately, FSDP2 ``fully_shard``), accumulates
the gradient over 2
micro-batches with :func:`ladtrain.step.backward` and takes one SGD step. Rank 0 also takes the step on one
process
with the whole batch (the reference) and with the naive data-parallel loss (each rank's own mean, no unit
weights: the control that shows the tolerance can fail). Tolerance: the update (parameter change) must
agree to ``1e-5`` of its largest entry (float32 log-probs, different summation order).
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest
import torch
from ports import torchrun  # sibling helper module (tests/train/ports.py)

REPO = Path(__file__).resolve().parents[2]

WORKER = textwrap.dedent("""
    import copy, sys
    import torch
    sys.path.insert(0, sys.argv[1])
    from test_accumulation import G, HP, PROMPTS, fixed_batch, loss_of
    from ladtrain import distributed
    from ladtrain.losses import LossInputs
    from ladtrain.step import Targets, backward

    accumulation, out = int(sys.argv[2]), sys.argv[3]
    torch.set_num_threads(1)
    world, device = distributed.setup("cpu")
    model, rollout, logp_old, advantages, mask = fixed_batch()
    loss = loss_of("lad:js")
    LR = 0.5

    def step(m, rows, world, accumulation, unit_weights=True):
        opt = torch.optim.SGD(m.parameters(), lr=LR)
        ro = rollout.rows(rows)
        if unit_weights:
            backward(m, ro, Targets(advantages[rows], mask[rows], logp_old[rows]), loss, HP, world=world,
                     accumulation=accumulation)
        else:  # naive: this rank's own mean; DDP averages the ranks
            from ladtrain.rollout import token_logprobs
            x = LossInputs(token_logprobs(m, ro), logp_old[rows], advantages[rows], mask[rows])
            loss(x, HP)[0].backward()
        opt.step()

    before = {k: v.clone() for k, v in model.state_dict().items()}
    prompts = distributed.shard(list(range(PROMPTS)), world)
    mine = torch.tensor([p * G + j for p in prompts for j in range(G)])
    result = {"prompts": prompts}
    if world.is_main:
        ref = copy.deepcopy(model)
        step(ref, slice(None), distributed.World(), 1)
        result["reference"] = {k: ref.state_dict()[k] - before[k] for k in before}
    for strategy, name, weights in (("ddp", "ddp", True), ("ddp", "naive", False), ("fsdp2", "fsdp2", True)):
        m = copy.deepcopy(model)
        train_model, _ = distributed.prepare(m, strategy, world, device)
        step(train_model, mine, world, accumulation, unit_weights=weights)
        state = distributed.full_state_dict(train_model, world)
        if world.is_main:
            result[name] = {k: state[k] - before[k] for k in before}
    torch.save(result, f"{out}.{world.rank}")
    distributed.teardown()
""")


@pytest.fixture(scope="module")
def two_process_step(tmp_path_factory) -> dict:
    """One torchrun launch (process start-up dominates: about 20 s) serving both strategies' tests."""
    return run_two_processes(tmp_path_factory.mktemp("two-processes"), accumulation=2)


def run_two_processes(tmp_path: Path, accumulation: int = 1) -> dict:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "result"
    cmd = [
        *torchrun(2),
        str(script),
        str(Path(__file__).parent),
        str(accumulation),
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = torch.load(f"{out}.0"), torch.load(f"{out}.1")
    assert sorted(r0["prompts"] + r1["prompts"]) == [0, 1, 2, 3] and not set(r0["prompts"]) & set(
        r1["prompts"]
    )
    return r0


def _assert_same_update(got: dict, want: dict) -> float:
    scale = max(v.abs().max().item() for v in want.values())
    assert scale > 1e-4
    worst = max((got[k] - want[k]).abs().max().item() for k in want)
    assert worst <= 1e-5 * scale, f"updates differ by {worst:.3g} (largest update entry {scale:.3g})"
    return scale


def test_ddp_two_processes_times_batch_b_take_the_step_of_one_process_times_2b(two_process_step):
    result = two_process_step
    scale = _assert_same_update(result["ddp"], result["reference"])
    # control: without the unit weights the two ranks' unequal token counts change the update
    naive_gap = max(
        (result["naive"][k] - result["reference"][k]).abs().max().item() for k in result["reference"]
    )
    assert naive_gap > 100 * 1e-5 * scale


def test_fsdp2_two_processes_on_gloo_take_the_same_step(two_process_step):
    result = two_process_step
    _assert_same_update(result["fsdp2"], result["reference"])


def test_shard_is_disjoint_and_covers_the_batch_and_refuses_uneven_splits():
    from ladtrain import distributed

    items = list(range(12))
    parts = [distributed.shard(items, distributed.World(rank=r, size=3)) for r in range(3)]
    assert sorted(sum(parts, [])) == items and parts[1] == [1, 4, 7, 10]
    with pytest.raises(distributed.DistributedError, match="not divisible"):
        distributed.shard(items[:10], distributed.World(rank=0, size=3))


def test_world_reads_torchrun_environment():
    from ladtrain import distributed

    w = distributed.world_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (w.rank, w.size, w.local_rank, w.is_main, w.is_distributed) == (3, 4, 1, False, True)
    assert distributed.world_from_env({}) == distributed.World()
    assert torch.distributed.is_available()
