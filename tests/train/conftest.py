"""Shared fixtures for the trainer tests: a private cache folder and a tiny, seconds-long configuration."""

from __future__ import annotations

import shutil

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """The CPU is shared: keep each test on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def _problems_cache(tmp_path_factory):
    """Countdown problems generated once per session (about 2 s) and copied into each fresh cache."""
    import os

    folder = tmp_path_factory.mktemp("problems-cache")
    old = os.environ.get("LADTRAIN_CACHE")
    os.environ["LADTRAIN_CACHE"] = str(folder)
    try:
        from ladtrain.tasks.countdown import make

        make().problems("train")
    finally:
        if old is None:
            os.environ.pop("LADTRAIN_CACHE")
        else:
            os.environ["LADTRAIN_CACHE"] = old
    return folder


@pytest.fixture
def cache(tmp_path, monkeypatch, _problems_cache):
    """A fresh ``$LADTRAIN_CACHE`` holding only the generated problems (no warmed-up base model)."""
    folder = tmp_path / "cache"
    shutil.copytree(_problems_cache, folder)
    monkeypatch.setenv("LADTRAIN_CACHE", str(folder))
    return folder


@pytest.fixture
def tiny():
    """Overrides for a whole-pipeline run that takes seconds (it learns nothing)."""
    return dict(warmup_steps=4, warmup_batch=8, steps=2, prompts_per_step=4, group_size=2, eval_problems=4,
                eval_samples=2, max_new_tokens=8, progress=False)


@pytest.fixture
def llama_in_float64(monkeypatch):
    """HF Llama computing in the input dtype throughout: RMSNorm and the rotary tables (transformers
    computes both in float32 even for a float64 model), so that exactness tests of a float64 model can
    use 1e-12 tolerances. Returns transformers' Llama module."""
    from transformers.models.llama import modeling_llama as ml

    def rope(self, x, position_ids):
        freqs = position_ids[..., None].to(torch.float64) * self.inv_freq.to(torch.float64)
        emb = torch.cat((freqs, freqs), dim=-1)
        scale = self.attention_scaling
        return (emb.cos() * scale).to(x.dtype), (emb.sin() * scale).to(x.dtype)

    def norm(self, h):
        return self.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    monkeypatch.setattr(ml.LlamaRotaryEmbedding, "forward", rope)
    monkeypatch.setattr(ml.LlamaRMSNorm, "forward", norm)
    return ml
