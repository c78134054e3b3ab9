"""What a study's report shows, computed from its finished runs (:func:`collect`), its CPU time and the code
revision it ran (:mod:`ladtrain.study` runs the study)."""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ladtrain.config import TrainConfig
from ladtrain.study_arms import Arm
from ladtrain.study_stats import mean_std, paired


def cpu_seconds(runs: dict[str, dict[int, dict[str, Any]]], tuning: dict[str, Any]) -> dict[str, float]:
    """CPU time of the study's runs (``summary.json``'s ``seconds.cpu``, summed; the warm-up of the shared
    base is in the first run's): ``test`` runs, ``tuning`` runs (each grid row's ``cpu_seconds``, summed
    by :func:`ladtrain.study.tune`) and their ``total``."""
    test = sum(r["summary"].get("seconds", {}).get("cpu", 0.0) for arm in runs.values() for r in arm.values())
    tune_s = sum(row["cpu_seconds"] for entry in tuning.values() for row in entry["grid"])
    return {"test": test, "tuning": tune_s, "total": test + tune_s}


def code_revision() -> str:
    """``git describe``-style revision of the package source (``unknown`` outside a git checkout)."""
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "."], cwd=here, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev + (" (with uncommitted changes under ladtrain/)" if dirty else "")) if rev else "unknown"


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x)}")


def _per_seed_problem(
    runs: dict[int, dict[str, Any]], seeds: Sequence[int], which: str, metric: str
) -> np.ndarray:
    """(S, P) per-problem values of ``metric`` in the ``which`` ("base"/"trained") evaluation."""
    rows = [runs[s]["summary"][which]["per_problem"].get(metric) for s in seeds]
    if any(r is None for r in rows):
        return np.full((len(seeds), 0), np.nan)
    return np.asarray(rows, dtype=np.float64)


def collect(
    study: Any,  # ladtrain.study.CompareConfig
    base: TrainConfig,
    arms: Sequence[Arm],
    seeds: Sequence[int],
    runs: dict[str, dict[int, dict[str, Any]]],
    reference: str,
    base_info: dict[str, Any],
) -> dict[str, Any]:
    """Everything the report shows, computed from the run summaries and metrics."""
    first = runs[arms[0].label][seeds[0]]["summary"]
    metric_names = [m for m in first["trained"]["per_problem"]]
    # --- same prompts in the same order: per seed, every arm logged the same prompt ids per step
    same_prompts = True
    for s in seeds:
        seqs = {a.label: [r.get("prompt_ids") for r in runs[a.label][s]["metrics"]] for a in arms}
        ref_seq = seqs[arms[0].label]
        if any(v != ref_seq for v in seqs.values()) or any(x is None for x in ref_seq):
            same_prompts = False
    problems_per_seed = [runs[arms[0].label][s]["summary"]["trained"].get("problem_ids") for s in seeds]
    same_eval_problems = all(
        runs[a.label][s]["summary"]["trained"].get("problem_ids") == problems_per_seed[0]
        for a in arms
        for s in seeds
    )

    table: dict[str, dict[str, Any]] = {}
    base_rows = {
        m: mean_std([runs[arms[0].label][s]["summary"]["base"][m] for s in seeds]) for m in metric_names
    }
    table["base"] = {m: {"mean": v[0], "std": v[1]} for m, v in base_rows.items()}
    for a in arms:
        table[a.label] = {}
        for m in metric_names:
            mu, sd = mean_std([runs[a.label][s]["summary"]["trained"][m] for s in seeds])
            table[a.label][m] = {
                "mean": mu,
                "std": sd,
                "per_seed": [runs[a.label][s]["summary"]["trained"][m] for s in seeds],
            }

    pairs: dict[str, dict[str, Any]] = {}
    for a in arms:
        if a.label == reference:
            continue
        pairs[a.label] = {}
        for m in metric_names:
            x = _per_seed_problem(runs[a.label], seeds, "trained", m)
            y = _per_seed_problem(runs[reference], seeds, "trained", m)
            if x.shape[1] and x.shape == y.shape:
                pairs[a.label][m] = paired(x, y)

    curves: dict[str, dict[str, list[float]]] = {}
    cost: dict[str, dict[str, float]] = {}
    training: dict[str, dict[str, Any]] = {}
    for a in arms:
        per_seed = [[r["reward_mean"] for r in runs[a.label][s]["metrics"]] for s in seeds]
        n = min(len(p) for p in per_seed)
        arr = np.asarray([p[:n] for p in per_seed], dtype=np.float64)  # (S, steps)
        curves[a.label] = {
            "mean": np.nanmean(arr, 0).tolist(),
            "std": (np.nanstd(arr, 0, ddof=1) if len(seeds) > 1 else np.zeros(n)).tolist(),
        }
        step_s = [
            r["step_seconds"] for s in seeds for r in runs[a.label][s]["metrics"] if "step_seconds" in r
        ]
        upd_s = [
            r["update_seconds"] for s in seeds for r in runs[a.label][s]["metrics"] if "update_seconds" in r
        ]
        cost[a.label] = {
            "step_seconds": float(np.mean(step_s)) if step_s else math.nan,
            "update_seconds": float(np.mean(upd_s)) if upd_s else math.nan,
        }
        tail = max(1, n // 10)
        finals = [float(np.nanmean(arr[i, -tail:])) for i in range(arr.shape[0])]
        diag = {}
        for key in ("past_target_frac", "clip_frac", "weight_clip_frac", "log_ratio_mean", "brake_frac",
                    "abs_log_ratio_mean", "clip_frac_mean", "grad_clip_frac"):  # the last four: step.update
            vals = [r[key] for s in seeds for r in runs[a.label][s]["metrics"] if key in r]
            if vals:
                diag[key] = float(np.mean(vals))
        training[a.label] = {"final_reward": mean_std(finals), "final_steps": tail, **diag}
    for a in arms:
        for key in ("step_seconds", "update_seconds"):
            cost[a.label][f"{key}_ratio"] = cost[a.label][key] / cost[reference][key]

    return {
        "study": {f.name: getattr(study, f.name) for f in fields(study)},
        "train": base.to_dict(),
        "base_model": base_info,
        "seeds": list(seeds),
        "arms": [a.__dict__ for a in arms],
        "reference": reference,
        "same_prompts": same_prompts,
        "same_eval_problems": same_eval_problems,
        "eval_problems": len(problems_per_seed[0] or []),
        "metrics": metric_names,
        "table": table,
        "pairs": pairs,
        "curves": curves,
        "cost": cost,
        "training": training,
        "per_problem": {
            a.label: {m: _per_seed_problem(runs[a.label], seeds, "trained", m).tolist() for m in metric_names}
            for a in arms
        },
        # the base evaluated with each seed's evaluation stream (the same in every arm's run of a seed)
        "per_problem_base": {
            m: _per_seed_problem(runs[arms[0].label], seeds, "base", m).tolist() for m in metric_names
        },
        "problem_ids": problems_per_seed[0],
        "retained": {a.label: [runs[a.label][s]["summary"].get("retained") for s in seeds] for a in arms},
        "crossover": {a.label: [runs[a.label][s]["summary"].get("crossover_k") for s in seeds] for a in arms},
        "runs": {a.label: {str(s): runs[a.label][s]["folder"] for s in seeds} for a in arms},
    }


__all__ = ["code_revision", "collect", "cpu_seconds"]
