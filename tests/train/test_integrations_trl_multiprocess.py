"""TRL plug-in on two processes (``torchrun``, gloo on CPU): TRL splits the generation batch over the
processes and DDP averages their gradients, so the mean of the two processes' losses must be
``lad_loss`` over all the window's tokens (a global token mean), although the processes hold different
numbers of tokens."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest
import torch
from ports import torchrun  # sibling helper module (tests/train/ports.py)

pytest.importorskip("trl")

from ladtheory.objective import lad_loss  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

WORKER = textwrap.dedent('''
    import sys
    import torch
    sys.path.insert(0, sys.argv[1])
    from datasets import Dataset
    from test_integrations_trl import _config, _independent_logp, _reward, _tiny
    from ladtrain.integrations.trl import LADGRPOTrainer

    out = sys.argv[2]
    torch.set_num_threads(1)
    model, tokenizer = _tiny()
    with torch.no_grad():  # lengths vary (see test_integrations_trl)
        model.get_input_embeddings().weight[tokenizer.eos_token_id] *= 40
    calls = []

    class Recording(LADGRPOTrainer):
        def _compute_loss(self, model, inputs):
            loss = super()._compute_loss(model, inputs)
            calls.append({"mask": inputs["completion_mask"], "adv": inputs["advantages"],
                          "logp": _independent_logp(model, inputs), "loss": loss.detach()})
            return loss

    args = _config(out + "-trl", max_steps=1, num_iterations=1, per_device_train_batch_size=4,
                   max_completion_length=8)
    dataset = Dataset.from_dict({"prompt": ["12+3=", "7*8=", "5-2=", "9+9="]})
    trainer = Recording(model=model, reward_funcs=_reward, args=args, train_dataset=dataset,
                        processing_class=tokenizer)
    trainer.train()
    torch.save(calls, f"{out}.{trainer.accelerator.process_index}")
''')


@pytest.mark.slow  # about 40 s: two processes importing TRL on 2 shared cores
def test_trl_two_processes_loss_is_the_global_token_mean_of_the_window(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "calls"
    cmd = [
        *torchrun(2),
        str(script),
        str(Path(__file__).parent),
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "ACCELERATE_USE_CPU": "true"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    calls = [torch.load(f"{out}.{r}")[0] for r in (0, 1)]
    counts = [int(c["mask"].sum()) for c in calls]
    assert counts[0] != counts[1], counts
    T = max(c["mask"].shape[1] for c in calls)

    def pad(x):
        return torch.nn.functional.pad(x, (0, T - x.shape[1]))

    logp = torch.cat([pad(c["logp"]) for c in calls]).double()  # (2b, T)
    mask = torch.cat([pad(c["mask"]) for c in calls])  # (2b, T)
    adv = torch.cat([c["adv"] for c in calls]).double()  # (2b,)
    want, _ = lad_loss(logp, logp.detach(), adv, mask, divergence="js", eta=0.5)
    got = (calls[0]["loss"].double() + calls[1]["loss"].double()) / 2  # DDP averages the processes
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
