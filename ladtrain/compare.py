r"""``python -m ladtrain compare``: LAD against GRPO and FlowRL (and ablations) under one budget.

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

Statistics (nothing is selected after the fact; every arm and seed that ran is in the report):

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
other update counts are in the study); ``ladw`` vs ``grpo`` isolates the **reweighting**, ``lad`` vs ``ladw`` the **brake** (against
GRPO's clip). The mechanism ablation therefore also runs at 4 updates per rollout unless ``--updates``
is given.

Outputs in ``--out`` (default ``results/compare/<date>-<time>``): ``report.md``, ``results.json`` (every
number in the report plus per-problem values), ``reward_curves.png``, ``pass_at_k.png``,
``diversity.png``, ``cost.png``, and ``runs/<arm>/seed<s>/`` (each run's folder; a finished run is
reused when the study is started again with the same settings, and an unfinished one, killed with the
study, continues from its newest checkpoint).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ladtrain.config import ConfigError, TrainConfig, convert, flag, load_yaml

DIVERGENCE_ABLATION = ("lad:kl", "lad:rkl", "lad:jeffreys", "lad:tv", "lad:hellinger", "lad:js")
MECHANISM_ABLATION = ("ladw:js",)
METRICS_FOR_PAIRS = ("pass@1", "pass@2", "pass@4", "pass@8", "pass@16", "maj@k", "distinct_correct",
                     "answer_entropy", "dist-3", "dist-4")

# The default study (3 arms x 3 seeds x 150 steps; measured 14.5 minutes of RL and evaluation, plus about 3
# minutes of warm-up when the base is not cached, on this shared 2-core machine; results/compare/): these
# replace the TrainConfig
# defaults for compare only; YAML and flags override them.
STUDY_DEFAULTS: dict[str, Any] = {
    "steps": 150,
    "prompts_per_step": 16,
    "group_size": 8,
    "eval_problems": 64,
    "eval_samples": 16,
    "warmup_seed": 0,  # one base model for every run of the study
    "warmup_share": 0.5,  # RL prompts are problems whose solutions the warm-up never showed
}


def _f(default: Any, help: str) -> Any:
    from dataclasses import field

    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class CompareConfig:
    """Study settings on top of the per-run :class:`TrainConfig` (whose flags compare also takes)."""

    losses: str = _f("lad:js,grpo,flowrl", "comma-separated loss specs to compare (each as --loss of train)")
    seeds: str = _f("3", "seeds: a count N (seeds 0..N-1) or a comma-separated list")
    reference: str = _f("grpo", "arm every other arm is paired with (a loss spec in --losses)")
    etas: str | None = _f(None, "comma-separated eta values: run every LAD arm at each (eta sweep)")
    updates: str | None = _f(None, "comma-separated updates per rollout: run every arm at each")
    divergence_ablation: bool = _f(False, "add LAD arms for kl, rkl, jeffreys, tv, hellinger, js")
    mechanism_ablation: bool = _f(False, "add ladw:js (GRPO clip with LAD's weights at ratio 1) and, unless "
                                         "--updates is given, run at 1 and 4 updates per rollout")


@dataclass(frozen=True)
class Arm:
    """One trained configuration of the study."""

    label: str
    loss: str
    eta: float
    updates: int


# --------------------------------------------------------------------------------------------------
# Parsing


def _split(text: str, kind: type, name: str) -> list:
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise ConfigError(f"{flag(name)}: empty list")
    try:
        return [kind(t) for t in items]
    except ValueError:
        raise ConfigError(f"{flag(name)}: expected comma-separated {kind.__name__} values, got {text!r}") from None


def seeds_of(text: str) -> list[int]:
    """``"3"`` -> [0, 1, 2]; ``"4,7"`` -> [4, 7]."""
    values = _split(text, int, "seeds")
    if len(values) == 1 and "," not in str(text):
        if values[0] < 1:
            raise ConfigError(f"--seeds must be >= 1, got {values[0]}")
        return list(range(values[0]))
    if len(set(values)) != len(values):
        raise ConfigError(f"--seeds: repeated seed in {text!r}")
    return values


def arms_of(study: CompareConfig, base: TrainConfig) -> list[Arm]:
    """The study's arms: losses (+ ablations) x etas (LAD-family only) x updates per rollout."""
    from ladtrain import losses

    specs = _split(study.losses, str, "losses")
    if study.divergence_ablation:
        specs += [s for s in DIVERGENCE_ABLATION if s not in specs]
    if study.mechanism_ablation:
        specs += [s for s in MECHANISM_ABLATION if s not in specs]
    names = []
    for s in specs:
        name = losses.get(s).name  # validates; canonical name ("lad" -> "lad:js")
        if name not in names:
            names.append(name)
    etas = _split(study.etas, float, "etas") if study.etas else [base.eta]
    if any(not e > 0 for e in etas):
        raise ConfigError(f"--etas must all be > 0, got {study.etas}")
    if study.updates:
        updates = _split(study.updates, int, "updates")
    elif study.mechanism_ablation:
        updates = sorted({base.updates_per_rollout, 4})
    else:
        updates = [base.updates_per_rollout]
    if any(u < 1 for u in updates):
        raise ConfigError(f"--updates must all be >= 1, got {study.updates}")
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


def build_parser() -> argparse.ArgumentParser:
    from ladtrain import cli

    parser = cli.build_parser(prog="python -m ladtrain compare")
    parser.description = (
        "Compare losses under one budget: the same base model, the same prompts in the same order, the same "
        "samples per method; several seeds; writes report.md, results.json and plots. Every train flag "
        "below applies to all runs (except --loss and --seed: use --losses and --seeds). Study defaults: "
        + ", ".join(f"{flag(k)} {v}" for k, v in STUDY_DEFAULTS.items()) + ".")
    parser.epilog = None
    group = parser.add_argument_group("study")
    for f in fields(CompareConfig):
        kw: dict[str, Any] = {"dest": f"study_{f.name}", "default": argparse.SUPPRESS,
                              "help": f"{f.metadata['help']} (default: {f.default})"}
        if f.type in (bool, "bool"):
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["metavar"] = "LIST"
        group.add_argument(flag(f.name), **kw)
    return parser


def parse(argv: Sequence[str]) -> tuple[CompareConfig, TrainConfig]:
    ns = vars(build_parser().parse_args(list(argv)))
    for name, instead in (("loss", "--losses"), ("seed", "--seeds")):
        if name in ns:
            raise ConfigError(f"{flag(name)}: compare takes {instead} instead")
    study_values = {k[len("study_"):]: v for k, v in ns.items() if k.startswith("study_")}
    study = CompareConfig(**study_values)
    config_file = ns.pop("config", None)
    train_values = {k: v for k, v in ns.items() if not k.startswith("study_")}
    values = {**{k: convert(k, v) for k, v in STUDY_DEFAULTS.items()},
              **(load_yaml(config_file) if config_file else {}), **train_values}
    base = replace(TrainConfig(), **values).validate()
    return study, base


# --------------------------------------------------------------------------------------------------
# Statistics


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; NaN for a single value), NaNs dropped."""
    a = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if a.size == 0:
        return math.nan, math.nan
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else math.nan


def paired(arm: np.ndarray, ref: np.ndarray, confidence: float = 0.95) -> dict[str, Any]:
    r"""Paired comparison of two arms on the same problems and seeds.

    ``arm`` and ``ref`` are (S, P): per-seed, per-problem values (NaN = undefined, e.g. dist-n of empty
    samples). Per problem, ``d_p = mean_s arm[s,p] - mean_s ref[s,p]`` (over seeds where both are
    defined); over the P problems with a defined ``d_p``:

    .. math::  \bar d \pm t_{(1+c)/2,\,P-1}\, \frac{s_d}{\sqrt P}

    (Student-t interval, ``s_d`` the sample standard deviation of ``d``), the two-sided paired t-test
    p-value, and wins / ties / losses (``d_p > 0``, ``= 0``, ``< 0``). ``seed_diffs``: per seed, the mean
    over problems of ``arm[s] - ref[s]``."""
    from scipy import stats

    arm, ref = np.asarray(arm, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if arm.shape != ref.shape or arm.ndim != 2:
        raise ValueError(f"paired needs two (S, P) arrays of one shape, got {arm.shape} and {ref.shape}")
    both = ~(np.isnan(arm) | np.isnan(ref))  # (S, P)
    a = np.where(both, arm, 0.0).sum(0)
    b = np.where(both, ref, 0.0).sum(0)
    n = both.sum(0)  # (P,)
    keep = n > 0
    d = (a[keep] - b[keep]) / n[keep]  # (P',)
    out: dict[str, Any] = {"problems": int(d.size), "seeds": int(arm.shape[0])}
    out["mean_diff"] = float(d.mean()) if d.size else math.nan
    if d.size > 1 and np.ptp(d) > 0:
        half = stats.t.ppf((1 + confidence) / 2, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
        out["ci"] = [out["mean_diff"] - half, out["mean_diff"] + half]
        out["p_value"] = float(stats.ttest_1samp(d, 0.0).pvalue)
    else:  # all differences equal (often all zero): the interval is the point, no test
        out["ci"] = [out["mean_diff"], out["mean_diff"]]
        out["p_value"] = math.nan if not d.size or out["mean_diff"] != 0 else 1.0
    out["wins"], out["ties"], out["losses"] = int((d > 0).sum()), int((d == 0).sum()), int((d < 0).sum())
    seed_diffs = []
    for s in range(arm.shape[0]):
        m = both[s]
        seed_diffs.append(float((arm[s, m] - ref[s, m]).mean()) if m.any() else math.nan)
    out["seed_diffs"] = seed_diffs
    return out


def verdict(p: dict[str, Any]) -> str:
    """``better`` / ``worse`` when the interval excludes 0, else ``no clear difference``."""
    lo, hi = p["ci"]
    if math.isnan(lo):
        return "undefined"
    if lo > 0:
        return "better"
    if hi < 0:
        return "worse"
    return "no clear difference"


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
        raise ConfigError(f"--reference {study.reference}: not among the arms ({', '.join(labels)})")
    out = Path(base.out) if base.out else Path("results/compare") / datetime.now().strftime("%Y%m%d-%H%M%S")
    trainer.run_folder(replace(base, out=str(out)))  # checks that it is writable
    t0 = time.time()

    runs: dict[str, dict[int, dict[str, Any]]] = {a.label: {} for a in arms}
    bar = tqdm(total=len(arms) * len(seeds), desc="compare", disable=not base.progress, dynamic_ncols=True)
    for seed in seeds:
        for arm in arms:
            folder = out / "runs" / arm.label.replace(":", "-").replace("/", "-").replace("@", "-") / f"seed{seed}"
            cfg = replace(base, loss=arm.loss, eta=arm.eta, updates_per_rollout=arm.updates, seed=seed,
                          out=str(folder), progress=False)
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
    plots(results, out)
    (out / "report.md").write_text(report(results))
    if base.progress:
        print(f"report: {out / 'report.md'}")
    return results


def code_revision() -> str:
    """``git describe``-style revision of the package source (``unknown`` outside a git checkout)."""
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=here, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev + (" (with uncommitted changes under ladtrain/)" if dirty else "")) if rev else "unknown"


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x)}")


def _per_seed_problem(runs: dict[int, dict[str, Any]], seeds: Sequence[int], which: str, metric: str) -> np.ndarray:
    """(S, P) per-problem values of ``metric`` in the ``which`` ("base"/"trained") evaluation."""
    rows = [runs[s]["summary"][which]["per_problem"].get(metric) for s in seeds]
    if any(r is None for r in rows):
        return np.full((len(seeds), 0), np.nan)
    return np.asarray(rows, dtype=np.float64)


def collect(study: CompareConfig, base: TrainConfig, arms: Sequence[Arm], seeds: Sequence[int],
            runs: dict[str, dict[int, dict[str, Any]]], reference: str, base_info: dict[str, Any]) -> dict[str, Any]:
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
    same_eval_problems = all(runs[a.label][s]["summary"]["trained"].get("problem_ids") == problems_per_seed[0]
                             for a in arms for s in seeds)

    table: dict[str, dict[str, Any]] = {}
    base_rows = {m: mean_std([runs[arms[0].label][s]["summary"]["base"][m] for s in seeds]) for m in metric_names}
    table["base"] = {m: {"mean": v[0], "std": v[1]} for m, v in base_rows.items()}
    for a in arms:
        table[a.label] = {}
        for m in metric_names:
            mu, sd = mean_std([runs[a.label][s]["summary"]["trained"][m] for s in seeds])
            table[a.label][m] = {"mean": mu, "std": sd,
                                 "per_seed": [runs[a.label][s]["summary"]["trained"][m] for s in seeds]}

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
        curves[a.label] = {"mean": np.nanmean(arr, 0).tolist(),
                           "std": (np.nanstd(arr, 0, ddof=1) if len(seeds) > 1 else np.zeros(n)).tolist()}
        step_s = [r["step_seconds"] for s in seeds for r in runs[a.label][s]["metrics"] if "step_seconds" in r]
        upd_s = [r["update_seconds"] for s in seeds for r in runs[a.label][s]["metrics"] if "update_seconds" in r]
        cost[a.label] = {"step_seconds": float(np.mean(step_s)) if step_s else math.nan,
                         "update_seconds": float(np.mean(upd_s)) if upd_s else math.nan}
        tail = max(1, n // 10)
        finals = [float(np.nanmean(arr[i, -tail:])) for i in range(arr.shape[0])]
        diag = {}
        for key in ("past_target_frac", "clip_frac", "weight_clip_frac", "log_ratio_mean"):
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
        "per_problem": {a.label: {m: _per_seed_problem(runs[a.label], seeds, "trained", m).tolist()
                                  for m in metric_names} for a in arms},
        "runs": {a.label: {str(s): runs[a.label][s]["folder"] for s in seeds} for a in arms},
    }


# --------------------------------------------------------------------------------------------------
# Report and plots


def _fmt(mu: float, sd: float) -> str:
    if math.isnan(mu):
        return "n/a"
    return f"{mu:.3f}" if math.isnan(sd) else f"{mu:.3f} ± {sd:.3f}"


def report(results: dict[str, Any]) -> str:
    """``report.md``: settings, held-out table, paired differences, cost, and the answer in words."""
    tr, seeds, ref = results["train"], results["seeds"], results["reference"]
    labels = [a["label"] for a in results["arms"]]
    shown = [m for m in ("avg@k", "pass@1", "pass@4", "pass@8", "pass@16", "maj@k", "distinct_correct",
                         "answer_entropy", "dist-2", "dist-3", "dist-4") if m in results["metrics"]]
    lines = [
        "# LAD vs baselines: held-out comparison",
        "",
        f"Command: `{results['command']}`  ",
        f"Finished {results['finished']} in {results['seconds'] / 60:.1f} min; code {results.get('code', 'unknown')}.",
        "",
        "## Setup",
        f"- task `{tr['task']}`, base model `{results['base_model'].get('model')}` "
        f"({results['base_model'].get('parameters', '?')} parameters), the same base for every run",
        f"- seeds {seeds}; arms: {', '.join(f'`{x}`' for x in labels)}; reference arm `{ref}`",
        f"- {tr['steps']} RL steps x {tr['prompts_per_step']} prompts x {tr['group_size']} samples, lr {tr['lr']}, "
        f"eta {tr['eta']} (LAD level `{tr['level']}`), clip eps {tr['clip_eps']}, "
        f"max {tr['max_new_tokens']} new tokens, temperature {tr['temperature']}",
        f"- held-out evaluation: {results['eval_problems']} problems x {tr['eval_samples']} samples at "
        f"temperature {tr['eval_temperature']}",
        f"- same prompts in the same order for every arm of a seed: **{results['same_prompts']}**; "
        f"same held-out problems for every run: **{results['same_eval_problems']}**",
        "",
        "## Held-out metrics (mean ± std over seeds)",
        "",
        "avg@k = mean accuracy over the k samples (pass@1 estimate); pass@k unbiased (Chen et al. 2021); "
        "maj@k majority vote; distinct_correct = distinct correct answers per problem; answer_entropy in "
        "nats; dist-n = distinct / total n-grams of the model's tokens over a problem's k completions, "
        "averaged over problems.",
        "",
        "| arm | " + " | ".join(shown) + " |",
        "|---|" + "---|" * len(shown),
    ]
    for label in ["base"] + labels:
        row = results["table"][label]
        lines.append(f"| {label} | " + " | ".join(_fmt(row[m]["mean"], row[m]["std"]) for m in shown) + " |")
    lines += ["", f"## Paired differences against `{ref}` (per problem, seed-averaged; 95% t-interval)", "",
              "| arm | metric | mean diff | 95% CI | p | wins/ties/losses | per-seed diffs | verdict |",
              "|---|---|---|---|---|---|---|---|"]
    for label, per_metric in results["pairs"].items():
        for m in [m for m in METRICS_FOR_PAIRS if m in per_metric]:
            p = per_metric[m]
            seed_d = ", ".join(f"{x:+.3f}" for x in p["seed_diffs"])
            lines.append(f"| {label} | {m} | {p['mean_diff']:+.4f} | [{p['ci'][0]:+.4f}, {p['ci'][1]:+.4f}] | "
                         f"{p['p_value']:.3g} | {p['wins']}/{p['ties']}/{p['losses']} | {seed_d} | {verdict(p)} |")
    lines += ["", f"## Cost (mean wall time per RL step; ratio to `{ref}`)", "",
              "| arm | step s | ratio | update s | ratio |", "|---|---|---|---|---|"]
    for label in labels:
        c = results["cost"][label]
        lines.append(f"| {label} | {c['step_seconds']:.3f} | {c['step_seconds_ratio']:.2f} | "
                     f"{c['update_seconds']:.3f} | {c['update_seconds_ratio']:.2f} |")
    lines += ["", "Update = log-prob forward, loss, backward and optimizer step(s) of one rollout; step also "
              "includes sampling and scoring. Measured in the same study, on a shared machine.", ""]
    lines += ["## Training (mean over steps and seeds)", "",
              "final reward = mean training reward over the last 10% of steps (mean ± std over seeds); "
              "past target = LAD's share of tokens with rho > e^{A/eta}, where its gradient lowers log pi (at "
              "ratio 1 these are exactly the A < 0 tokens; the brake proper is what several updates add to "
              "that share); clipped = share of tokens whose gradient GRPO's clip cuts; mean log-ratio = mean "
              "log(pi/pi_old) seen by the loss (0 with one update per rollout).", "",
              "| arm | final reward | past target | clipped | mean log-ratio |", "|---|---|---|---|---|"]
    for label in labels:
        t = results["training"][label]
        cell = [f"{t[k]:.4f}" if k in t else "-" for k in ("past_target_frac", "clip_frac", "log_ratio_mean")]
        lines.append(f"| {label} | {_fmt(*t['final_reward'])} | " + " | ".join(cell) + " |")
    lines.append("")
    lines += ["## Answer", ""] + answer_lines(results) + [""]
    lines += ["## Figures", "", "![reward curves](reward_curves.png)", "", "![pass@k](pass_at_k.png)", "",
              "![diversity](diversity.png)", "", "![cost](cost.png)", ""]
    return "\n".join(lines)


def answer_lines(results: dict[str, Any]) -> list[str]:
    """The hypothesis of the study in words, from the paired intervals (no threshold tuning)."""
    ref = results["reference"]
    out = []
    lad_arms = [a["label"] for a in results["arms"] if a["loss"].startswith("lad:")]
    others = [a["label"] for a in results["arms"] if not a["loss"].startswith("lad:")]
    seeds, P = len(results["seeds"]), results["eval_problems"]
    out.append(f"Based on {seeds} seed(s) and {P} held-out problems; an interval that contains 0 is reported "
               "as no clear difference.")
    hyp = results["pairs"].get("lad:js") if ref == "grpo" else None
    if hyp:
        checks = [("pass@1", "matches GRPO (interval contains 0)", lambda v: v == "no clear difference")]
        checks += [(f"pass@{k}", "beats GRPO", lambda v: v == "better") for k in (4, 8, 16)]
        checks += [("distinct_correct", "beats GRPO", lambda v: v == "better")]
        parts = []
        for m, claim, ok in checks:
            if m in hyp:
                v = verdict(hyp[m])
                parts.append(f"{m}: {claim}? {'yes' if ok(v) else 'no'} ({v}, {hyp[m]['mean_diff']:+.3f} "
                             f"[{hyp[m]['ci'][0]:+.3f}, {hyp[m]['ci'][1]:+.3f}])")
        out.append("Hypothesis: LAD(js) matches GRPO on pass@1 and beats it on pass@k for k >= 4 and on distinct "
                   "correct answers. Measured: " + "; ".join(parts) + ".")
        out.append("")
    out += mechanism_lines(results)
    for lad in lad_arms:
        for other in others:
            if other == ref:
                pair = results["pairs"].get(lad, {})
                sign = 1.0
            elif lad == ref:
                pair = results["pairs"].get(other, {})
                sign = -1.0
            else:
                pair = _pair_between(results, lad, other)
                sign = 1.0
            if not pair:
                continue
            parts = []
            for m in ("pass@1", "pass@4", "pass@8", "pass@16", "distinct_correct", "answer_entropy", "dist-4"):
                if m in pair:
                    p = pair[m]
                    lo, hi = sorted((sign * p["ci"][0], sign * p["ci"][1]))
                    v = verdict({"ci": [lo, hi]})
                    parts.append(f"{m} {sign * p['mean_diff']:+.3f} [{lo:+.3f}, {hi:+.3f}] ({v})")
            out.append(f"- `{lad}` vs `{other}`: " + "; ".join(parts) + ".")
    return out


def mechanism_lines(results: dict[str, Any]) -> list[str]:
    """Brake vs reweighting: at each number of updates, ``lad:<d>`` - ``ladw:<d>`` (the brake against
    GRPO's clip, same weights at ratio 1) and ``ladw:<d>`` - ``grpo`` (the reweighting, same clip)."""
    arms = {(a["loss"], a["updates"], a["eta"]): a["label"] for a in results["arms"]}
    out = []
    for (loss, u, eta), label in arms.items():
        if not loss.startswith("ladw:"):
            continue
        lad, grpo = arms.get(("lad:" + loss.split(":", 1)[1], u, eta)), arms.get(("grpo", u, results["train"]["eta"]))
        for what, a, b in (("brake (LAD minus ladw)", lad, label), ("reweighting (ladw minus GRPO)", label, grpo)):
            if a is None or b is None:
                continue
            pair = _pair_between(results, a, b)
            parts = [f"{m} {pair[m]['mean_diff']:+.3f} [{pair[m]['ci'][0]:+.3f}, {pair[m]['ci'][1]:+.3f}] "
                     f"({verdict(pair[m])})" for m in ("pass@1", "pass@4", "pass@16", "distinct_correct",
                                                        "answer_entropy") if m in pair]
            out.append(f"- {what} at {u} update(s) per rollout, `{a}` vs `{b}`: " + "; ".join(parts) + ".")
    if out:
        out = ["Mechanism (paired per problem, seed-averaged):"] + out + [""]
    return out


def _pair_between(results: dict[str, Any], a: str, b: str) -> dict[str, Any]:
    out = {}
    for m in results["metrics"]:
        x = np.asarray(results["per_problem"][a][m], dtype=np.float64)
        y = np.asarray(results["per_problem"][b][m], dtype=np.float64)
        if x.size and x.shape == y.shape:
            out[m] = paired(x, y)
    return out


def plots(results: dict[str, Any], out: Path) -> None:
    """reward_curves.png, pass_at_k.png, diversity.png, cost.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [a["label"] for a in results["arms"]]
    # reward curves with seed bands (moving average of the per-step mean; band = std over seeds)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), constrained_layout=True)
    for i, label in enumerate(labels):
        mu = np.asarray(results["curves"][label]["mean"])
        sd = np.asarray(results["curves"][label]["std"])
        w = max(1, len(mu) // 15)
        kernel = np.ones(w) / w
        mu_s = np.convolve(mu, kernel, mode="valid")
        sd_s = np.convolve(sd, kernel, mode="valid")
        x = np.arange(w, len(mu) + 1)
        ax.plot(x, mu_s, color=f"C{i}", label=label)
        ax.fill_between(x, mu_s - sd_s, mu_s + sd_s, color=f"C{i}", alpha=0.2)
    ax.set_xlabel("RL step")
    ax.set_ylabel("training reward (moving mean)")
    ax.set_title(f"mean ± std over {len(results['seeds'])} seed(s)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(out / "reward_curves.png", dpi=110)
    plt.close(fig)

    # pass@k against k
    ks = sorted(int(m.split("@")[1]) for m in results["metrics"] if m.startswith("pass@"))
    fig, ax = plt.subplots(figsize=(6.4, 4.0), constrained_layout=True)
    for i, label in enumerate(["base"] + labels):
        row = results["table"][label]
        mu = [row[f"pass@{k}"]["mean"] for k in ks]
        sd = [0.0 if math.isnan(row[f"pass@{k}"]["std"]) else row[f"pass@{k}"]["std"] for k in ks]
        ax.errorbar(ks, mu, yerr=sd, marker="o", capsize=3, label=label, color="0.5" if label == "base" else f"C{i - 1}",
                    ls="--" if label == "base" else "-")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k")
    ax.set_ylabel("held-out pass@k")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(out / "pass_at_k.png", dpi=110)
    plt.close(fig)

    # diversity
    div_metrics = [m for m in ("distinct_correct", "answer_entropy", "dist-3", "dist-4") if m in results["metrics"]]
    fig, axes = plt.subplots(1, len(div_metrics), figsize=(3.2 * len(div_metrics), 3.6), constrained_layout=True)
    for ax, m in zip(np.atleast_1d(axes), div_metrics):
        names = ["base"] + labels
        mu = [results["table"][n][m]["mean"] for n in names]
        sd = [0.0 if math.isnan(results["table"][n][m]["std"]) else results["table"][n][m]["std"] for n in names]
        ax.bar(range(len(names)), mu, yerr=sd, capsize=3, color=["0.6"] + [f"C{i}" for i in range(len(labels))])
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        ax.set_title(m)
        ax.grid(alpha=0.3, axis="y")
    fig.savefig(out / "diversity.png", dpi=110)
    plt.close(fig)

    # cost
    fig, ax = plt.subplots(figsize=(5.0, 3.4), constrained_layout=True)
    x = np.arange(len(labels))
    ax.bar(x - 0.2, [results["cost"][n]["step_seconds"] for n in labels], 0.4, label="whole step")
    ax.bar(x + 0.2, [results["cost"][n]["update_seconds"] for n in labels], 0.4, label="update phase")
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("seconds per RL step")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.savefig(out / "cost.png", dpi=110)
    plt.close(fig)


def main(argv: Sequence[str]) -> int:
    import shlex

    study, base = parse(argv)
    run_study(study, base, command="python -m ladtrain compare " + " ".join(shlex.quote(a) for a in argv))
    return 0


__all__ = ["Arm", "CompareConfig", "DIVERGENCE_ABLATION", "STUDY_DEFAULTS", "arms_of", "build_parser", "main",
           "mean_std", "paired", "parse", "report", "run_study", "seeds_of", "verdict"]
