r"""A study: LAD against GRPO and FlowRL (and ablations) under one budget (``python -m ladtrain compare``).

A *study* trains several *arms* (a loss spec, an ``eta``, a number of updates per rollout) for each of
several seeds, and evaluates every trained policy on the same held-out problems. What is held equal
(so that differences come from the loss alone):

* the **same base model**: the built-in model is warmed up once (the study fixes ``--warmup-seed``, default 0;
  the first run warms it up, the others load it from the cache); a ``--model PATH`` is shared as is;
* the **same prompts in the same order**: the trainer draws a step's prompts from ``random.Random(seed)``
  alone, so runs with one seed see identical prompt sequences; this is *checked* from the prompt ids
  each run logs (``results.json["same_prompts"]``);
* the **same number of samples**: prompts per step, group size, steps, evaluation problems and samples
  per problem are study-wide settings;
* the **same evaluation stream**: held-out sampling is seeded by the run seed, independently of training.

Statistics (:mod:`ladtrain.study_stats`; nothing is selected after the fact; every arm and seed that ran
is in the report, :mod:`ladtrain.study_report`):

* per arm and metric: the mean and the standard deviation (ddof 1) over seeds of the held-out value;
* paired comparisons of each arm with a reference arm (``--reference``, default ``grpo``): for every
  held-out problem ``p`` the difference ``d_p`` of the seed-averaged per-problem metric, then the mean of
  ``d_p`` over problems with a 95% Student-t interval over problems, the paired t-test p-value,
  win / tie / loss counts over problems, and the difference of each seed's means (its spread across seeds
  is the seed-level uncertainty the problem-level interval does not contain);
* cost: the mean wall time per RL step and of its update phase (forward, loss, backward, optimizer step)
  per arm, as a ratio to the reference.

Ablations (flags): ``--divergence-ablation`` adds ``lad:kl, lad:rkl, lad:jeffreys, lad:tv,
lad:hellinger, lad:js``; ``--etas 0.1,0.25,1`` runs every LAD arm at each eta; ``--updates 1,4`` runs
every arm at each number of updates per rollout; ``--mechanism-ablation`` adds ``ladw:js``, GRPO's
clipped surrogate with LAD's effective weights at ratio 1 in place of the advantages. With one update per
rollout the ratio stays at 1 and LAD's brake never acts, so LAD and ``ladw`` differ only with several
updates (with one update ``ladw`` *is* LAD: the same gradient, tested; so it is not run at 1 update when
other update counts are in the study); ``ladw`` vs ``grpo`` isolates the **reweighting**, ``lad`` vs
``ladw`` the **brake** (against GRPO's clip). The mechanism ablation therefore also runs at 4 updates per
rollout unless ``--updates``
is given.

Outputs in ``--out`` (default ``results/compare/<date>-<time>``): ``report.md``, ``results.json`` (every
number in the report plus per-problem values), ``reward_curves.png``, ``pass_at_k.png``,
``diversity.png``, ``cost.png``, and ``runs/<arm>/seed<s>/`` (each run's folder; a finished run is
reused when the study is started again with the same settings, and an unfinished one, killed with the
study, continues from its newest checkpoint).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ladtheory import options
from ladtheory.options import Flag, Int, Invalid, Listed, Real, Text, option
from ladtrain.config import SEED, ConfigError, TrainConfig
from ladtrain.plots import study_figures
from ladtrain.study_report import report
from ladtrain.study_stats import mean_std, paired

DIVERGENCE_ABLATION = ("lad:kl", "lad:rkl", "lad:jeffreys", "lad:tv", "lad:hellinger", "lad:js")
MECHANISM_ABLATION = ("ladw:js",)


@dataclass(frozen=True)
class Seeds(Listed):
    """A count ``N`` (seeds 0..N-1, N >= 1) or a comma-separated list of distinct seeds (``"5,"``: seed 5)."""

    item: options.Domain = SEED
    unique: bool = True

    def items(self, value: str) -> list:
        if isinstance(value, str) and "," not in value:
            count = Int(ge=1)
            n = count.coerce(value)
            problem = count.check(n)
            if problem:
                raise Invalid(problem)
            return list(range(n))
        return super().items(value)

    def describe(self) -> str:
        return "a count N (seeds 0..N-1) or comma-separated distinct seeds"


@dataclass(frozen=True)
class CompareConfig:
    """Study settings on top of the per-run :class:`TrainConfig` (whose flags compare also takes)."""

    losses: str = option(
        "lad:js,grpo,flowrl",
        "comma-separated loss specs to compare (each as --loss of train)",
        Listed(Text(lookup="ladtrain.config:check_loss", hint="loss specs")),
    )
    seeds: str = option("3", "seeds: a count N (seeds 0..N-1) or a comma-separated list", Seeds())
    reference: str = option(
        "grpo",
        "arm every other arm is paired with (a loss spec in --losses)",
        Text(hint="a loss spec or an arm label of the study"),
    )
    etas: str | None = option(
        None, "comma-separated eta values: run every LAD arm at each (eta sweep)", Listed(Real(gt=0))
    )
    updates: str | None = option(
        None, "comma-separated updates per rollout: run every arm at each", Listed(Int(ge=1))
    )
    divergence_ablation: bool = option(False, "add LAD arms for kl, rkl, jeffreys, tv, hellinger, js", Flag())
    mechanism_ablation: bool = option(
        False,
        "add ladw:js (GRPO clip with LAD's weights at ratio 1) and, unless "
        "--updates is given, run at 1 and 4 updates per rollout",
        Flag(),
    )

    def validate(self) -> CompareConfig:
        return options.validate(self, error=ConfigError)


@dataclass(frozen=True)
class Arm:
    """One trained configuration of the study."""

    label: str
    loss: str
    eta: float
    updates: int


def _items(study: CompareConfig, name: str) -> list:
    """The typed items of the list field ``name`` (ConfigError naming its flag)."""
    value = getattr(study, name)
    try:
        return options.field_of(CompareConfig, name).metadata["domain"].items(value)
    except Invalid as err:
        raise ConfigError(options.message(name, str(err), value)) from None


def seeds_of(text: str) -> list[int]:
    """``"3"`` -> [0, 1, 2]; ``"4,7"`` -> [4, 7]; ``"5,"`` -> [5]."""
    return _items(CompareConfig(seeds=text), "seeds")


def arms_of(study: CompareConfig, base: TrainConfig) -> list[Arm]:
    """The study's arms: losses (+ ablations) x etas (LAD-family only) x updates per rollout."""
    from ladtrain import losses

    specs = _items(study, "losses")
    if study.divergence_ablation:
        specs += [s for s in DIVERGENCE_ABLATION if s not in specs]
    if study.mechanism_ablation:
        specs += [s for s in MECHANISM_ABLATION if s not in specs]
    names = []
    for s in specs:
        name = losses.get(s).name  # canonical name ("lad" -> "lad:js")
        if name not in names:
            names.append(name)
    etas = _items(study, "etas") if study.etas else [base.eta]
    if study.updates:
        updates = _items(study, "updates")
    elif study.mechanism_ablation:
        updates = sorted({base.updates_per_rollout, 4})
    else:
        updates = [base.updates_per_rollout]
    arms = []
    for name in names:
        uses_eta = losses.get(name).uses_eta
        for eta in etas if uses_eta else [base.eta]:
            for u in updates:
                if name.startswith("ladw:") and u == 1 and len(updates) > 1:
                    continue  # at ratio 1 ladw has LAD's gradient exactly (tested): the lad arm is this run
                label = name
                if uses_eta and len(etas) > 1:
                    label += f"@eta={eta:g}"
                if len(updates) > 1:
                    label += f"/u{u}"
                arms.append(Arm(label, name, eta, u))
    return arms


# --------------------------------------------------------------------------------------------------
# Running the study


def _same_config(folder: Path, cfg: TrainConfig) -> bool:
    try:
        return json.loads((folder / "config.json").read_text()) == json.loads(json.dumps(cfg.to_dict()))
    except (OSError, ValueError):
        return False


def run_study(study: CompareConfig, base: TrainConfig, command: str = "") -> dict[str, Any]:
    """Train and evaluate every arm for every seed; write the report; return ``results.json``'s content."""
    from tqdm.auto import tqdm

    from ladtrain import checkpoint, trainer

    seeds = seeds_of(study.seeds)
    arms = arms_of(study, base)
    labels = [a.label for a in arms]
    ref_candidates = [a.label for a in arms if a.loss == study.reference or a.label == study.reference]
    if not ref_candidates:
        raise ConfigError(
            options.message("reference", f"not among the arms ({', '.join(labels)})", study.reference)
        )
    out = Path(base.out) if base.out else Path("results/compare") / datetime.now().strftime("%Y%m%d-%H%M%S")
    trainer.run_folder(replace(base, out=str(out)))  # checks that it is writable
    t0 = time.time()

    runs: dict[str, dict[int, dict[str, Any]]] = {a.label: {} for a in arms}
    bar = tqdm(total=len(arms) * len(seeds), desc="compare", disable=not base.progress, dynamic_ncols=True)
    for seed in seeds:
        for arm in arms:
            folder = (
                out / "runs" / arm.label.replace(":", "-").replace("/", "-").replace("@", "-") / f"seed{seed}"
            )
            cfg = replace(
                base,
                loss=arm.loss,
                eta=arm.eta,
                updates_per_rollout=arm.updates,
                seed=seed,
                out=str(folder),
                progress=False,
            )
            bar.set_postfix(arm=arm.label, seed=seed)
            if (folder / "summary.json").is_file() and _same_config(folder, cfg):
                summary = json.loads((folder / "summary.json").read_text())
            elif checkpoint.complete_checkpoints(folder) and _same_config(folder, cfg):
                summary = trainer.train(replace(cfg, resume=str(folder)))  # a killed study continues this run
            else:
                summary = trainer.train(cfg)
            rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line]
            runs[arm.label][seed] = {"summary": summary, "metrics": rows, "folder": str(folder)}
            bar.update(1)
    bar.close()

    base_info = runs[arms[0].label][seeds[0]]["summary"]["model"]
    results = collect(study, base, arms, seeds, runs, ref_candidates[0], base_info)
    results["seconds"] = time.time() - t0
    results["command"] = command or "python -m ladtrain compare (called from Python)"
    results["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results["code"] = code_revision()
    (out / "results.json").write_text(json.dumps(results, indent=2, default=_json_default))
    study_figures(results, out)
    (out / "report.md").write_text(report(results))
    if base.progress:
        print(f"report: {out / 'report.md'}")
    return results


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
    study: CompareConfig,
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
        "study": {f.name: getattr(study, f.name) for f in fields(CompareConfig)},
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
        "runs": {a.label: {str(s): runs[a.label][s]["folder"] for s in seeds} for a in arms},
    }


__all__ = [
    "Arm",
    "CompareConfig",
    "DIVERGENCE_ABLATION",
    "MECHANISM_ABLATION",
    "Seeds",
    "arms_of",
    "code_revision",
    "collect",
    "run_study",
    "seeds_of",
]
