"""Synthetic ``results.json`` contents in the layout of :func:`ladtrain.study.collect` (plus the decisive
study's ``per_problem_base``, ``retained``, ``crossover``, ``problem_ids``, ``cpu_seconds``), for the
tests of :mod:`ladtrain.study_verdicts`, :mod:`ladtrain.decisive_report` and the decisive-study page.

Each problem has a base solve probability ``q_p``; an arm maps it to a trained probability per seed
(``effect(q, rng)``), and pass@k is the exact ``1 - (1 - q)^k`` of that probability: no sampling noise,
so the planted effects are known exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

Effect = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def sharpen(q: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """GRPO-like: solves the easy problems more often, loses the rare ones (pass@1 up, pass@k_max down)."""
    return np.where(q > 0.1, np.minimum(1.0, q * 1.6), q * 0.1) * rng.uniform(0.97, 1.03, q.shape)


def keep(q: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """LAD-like: pass@1 up as much, the rare problems kept."""
    return np.where(q > 0.1, np.minimum(1.0, q * 1.6), q) * rng.uniform(0.97, 1.03, q.shape)


def same(q: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return q * rng.uniform(0.97, 1.03, q.shape)


def results(arms: dict[str, Effect], seeds=(0, 1, 2, 3, 4), problems: int = 60, ks=(1, 2, 4, 8, 16, 64, 256),
            seed: int = 0, task: str = "countdown") -> dict:
    rng = np.random.default_rng(seed)
    q = rng.beta(0.4, 1.5, problems)  # (P,) base solve probabilities: many rare problems
    S = len(seeds)

    def metrics(qq: np.ndarray) -> dict[str, np.ndarray]:
        qq = np.clip(qq, 0.0, 1.0)
        out = {f"pass@{k}": 1.0 - (1.0 - qq) ** k for k in ks}
        out["distinct_correct"] = qq * rng.uniform(1.0, 3.0, qq.shape)
        out["answer_entropy"] = rng.uniform(0.5, 2.0, qq.shape)
        for n in (2, 3, 4):
            out[f"dist-{n}"] = rng.uniform(0.2, 0.6, qq.shape)
            out[f"dist-{n}_per_token"] = rng.uniform(0.1, 0.4, qq.shape)
        return out

    base = metrics(np.tile(q, (S, 1)))
    per_problem = {label: metrics(effect(np.tile(q, (S, 1)), rng)) for label, effect in arms.items()}

    def table(m: dict[str, np.ndarray]) -> dict:
        return {k: {"mean": float(v.mean(1).mean()), "std": float(v.mean(1).std(ddof=1)),
                    "per_seed": v.mean(1).tolist()} for k, v in m.items()}

    labels = list(arms)
    ref = labels[0]
    return {
        "train": {"task": task, "eval_samples": max(ks)},
        "seeds": list(seeds),
        "arms": [{"label": a, "loss": a.split("/")[0].split("@")[0], "eta": 1.0, "updates": 1,
                  "overrides": {"mini_batches": 4} if a.endswith("/mb4") else {}} for a in labels],
        "reference": ref,
        "eval_problems": problems,
        "problem_ids": [f"{task}-{i}" for i in range(problems)],
        "metrics": list(base),
        "table": {"base": table(base), **{a: table(m) for a, m in per_problem.items()}},
        "per_problem": {a: {k: v.tolist() for k, v in m.items()} for a, m in per_problem.items()},
        "per_problem_base": {k: v.tolist() for k, v in base.items()},
        "retained": {a: [{"mean": 0.8, "lo": 0.7, "hi": 0.9, "n": problems} for _ in seeds] for a in labels},
        "crossover": {a: [None if i % 2 else 64 for i, _ in enumerate(seeds)] for a in labels},
        "cost": {a: {"step_seconds": 1.0 + i, "step_seconds_ratio": 1.0 + i} for i, a in enumerate(labels)},
        "command": f"python -m ladtrain compare --task {task} (synthetic)",
        "code": "abc1234",
        "cpu_seconds": {"test": 1234.5, "tuning": 600.0, "total": 1834.5},
        "finished": "2026-12-02T00:00:00+00:00",
        "tuning": {a: {"grid": [{"setting": {"lr": lr}, "per_seed": [0.5, 0.6], "mean": 0.55, "folder": "x"}
                                for lr in (1e-5, 3e-5)], "chosen": {"lr": 3e-5 if a == "grpo" else 1e-5},
                       "select": "pass_auc",
                       "split": "validation", "seeds": [1000, 1001], "samples": 64} for a in labels},
    }


MAIN_ARMS = {"grpo": sharpen, "lad:js": keep, "lad:js/mb4": keep, "flowrl": same}
ABLATION_ARMS = {"lad:tv": keep, "lad:kl": sharpen, "lad:js@eta=0.1": same}


def write(folder: Path, content: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(content))
    return folder


def decisive(root: Path) -> dict[str, dict[str, Path]]:
    """Main and ablation studies of two tasks under ``root``: ``{task: {"main": dir, "ablation": dir}}``."""
    out = {}
    for i, (task, ks) in enumerate((("countdown", (1, 2, 4, 16, 64, 256)), ("puzzle24", (1, 2, 4, 16, 64)))):
        main = write(root / f"{task}-main", results(MAIN_ARMS, ks=ks, seed=10 * i, task=task))
        abl = write(root / f"{task}-ablation",
                    results(ABLATION_ARMS, seeds=(0, 1, 2), ks=(1, 2, 4, 16, 64), seed=10 * i, task=task))
        out[task] = {"main": main, "ablation": abl}
    return out
