"""Checkpoints sized for real models: a finished run prunes its resumable states; AdamW state in full,
bf16 or not at all, each with its stated consequence."""

from __future__ import annotations

import warnings
from dataclasses import replace

import pytest
import torch

from ladtrain import checkpoint, trainer
from ladtrain.config import TrainConfig


def _cfg(tmp_path, tiny, name, **kw):
    return replace(TrainConfig(), **{**tiny, "steps": 2, "checkpoint_every": 1, "threads": 1, "device": "cpu",
                                     "out": str(tmp_path / name), **kw}).validate()


def _quiet(cfg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return trainer.train(cfg)


def test_a_finished_run_keeps_its_final_model_and_prunes_resumable_states_unless_asked(cache, tmp_path, tiny):
    _quiet(_cfg(tmp_path, tiny, "pruned"))
    assert (tmp_path / "pruned" / "checkpoint" / "model.safetensors").is_file()
    assert not (tmp_path / "pruned" / checkpoint.CHECKPOINTS).exists()
    _quiet(_cfg(tmp_path, tiny, "kept", keep_resumable=True))
    kept = [p.name for p in checkpoint.complete_checkpoints(tmp_path / "kept")]
    assert kept == ["step-000001", "step-000002"]


def test_optimizer_state_full_bf16_none(cache, tmp_path, tiny):
    sizes, states = {}, {}
    for how in ("full", "bf16", "none"):
        _quiet(_cfg(tmp_path, tiny, how, keep_resumable=True, optimizer_state=how))
        path = checkpoint.step_folder(tmp_path / how, 2) / checkpoint.TENSORS
        sizes[how] = path.stat().st_size
        states[how] = torch.load(path, weights_only=True)["optimizer"]
    assert states["none"] is None and sizes["none"] < sizes["bf16"] < sizes["full"]
    full = states["full"]["state"]
    bf16 = states["bf16"]["state"]
    for k, per in full.items():
        assert bf16[k]["exp_avg"].dtype == torch.bfloat16 and per["exp_avg"].dtype == torch.float32
        torch.testing.assert_close(bf16[k]["exp_avg"].float(), per["exp_avg"], rtol=1e-2, atol=1e-30)
        assert bf16[k]["step"] == per["step"]
    # the tensors are most of the file: bf16 moments take about half the bytes of fp32 ones
    moments = sum(v.numel() for per in full.values() for n, v in per.items() if n != "step")
    assert sizes["full"] - sizes["bf16"] == pytest.approx(2 * moments, rel=0.05)


def test_resume_without_optimizer_state_warns_that_it_is_not_exact(cache, tmp_path, tiny):
    cfg = _cfg(tmp_path, tiny, "none", steps=3, keep_resumable=True, optimizer_state="none")
    _quiet(cfg)
    cut = tmp_path / "none"
    import shutil

    shutil.rmtree(checkpoint.step_folder(cut, 3))
    (cut / "summary.json").unlink()
    with pytest.warns(UserWarning, match="no optimizer state.*not the uninterrupted one"):
        trainer.train(replace(cfg, resume=str(cut)).validate())
