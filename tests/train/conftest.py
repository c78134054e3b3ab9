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
