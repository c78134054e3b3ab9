"""ARCHITECTURE.md stays true: every file it names exists, every ``ladtrain`` module is in its ownership
table, and the step functions it shows are the ones the trainer and the benchmark use."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = (ROOT / "ARCHITECTURE.md").read_text()


def test_every_path_it_names_exists():
    paths = set(re.findall(r"`((?:ladtrain|ladtheory|benchmarks|tests)/[\w/.]+?\.py)", TEXT))
    assert len(paths) > 15  # the pattern found the table
    assert sorted(p for p in paths if not (ROOT / p).is_file()) == []


def test_every_ladtrain_module_has_an_owner_line():
    modules = {
        f"ladtrain/{p.name}"
        for p in (ROOT / "ladtrain").glob("*.py")
        if p.stem not in ("__init__", "__main__")
    }
    listed = set(re.findall(r"`(ladtrain/\w+\.py)`", TEXT))
    assert sorted(modules - listed) == []


def test_the_step_it_shows_is_the_one_trainer_and_benchmark_run():
    import ladtrain.step as step
    import ladtrain.trainer as trainer

    for name in ("draw", "collect", "update", "backward", "metrics"):
        assert f"{name}(" in TEXT and callable(getattr(step, name))
    for name in ("collect", "update"):
        assert getattr(trainer, name) is getattr(step, name)
    bench = (ROOT / "benchmarks" / "step_profile.py").read_text()
    assert "from ladtrain.step import collect, draw, metrics, update" in bench
