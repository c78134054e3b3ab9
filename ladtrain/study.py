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
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ladtheory import options
from ladtheory.options import Flag, Int, Invalid, Listed, Real, Text, option
from ladtrain.config import SEED, ConfigError, TrainConfig
from ladtrain.plots import study_figures
from ladtrain.study_arms import Arm, arm_grid, choose, label_of, parse_arms, parse_grid, score
from ladtrain.study_collect import _json_default, code_revision, collect, cpu_seconds
from ladtrain.study_report import report

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
    arms: str | None = option(
        None,
        "arms with their own settings, LOSS[,KEY=VALUE]... separated by ';' (replaces --losses), e.g. "
        "'grpo;lad:js;lad:js,mini_batches=4' (keys: ladtrain/study_arms.py ARM_KEYS)",
        Text(hint="arm specs"),
    )
    grid: str | None = option(
        None,
        "settings to choose per arm on the validation split, KEY=V1,V2,... (';' between keys: their "
        "product), e.g. 'lr=5e-5,1e-4,2e-4'; keys an arm fixes are not tuned for it",
        Text(hint="a grid"),
    )
    tune_seeds: str = option("1000,", "seeds of the tuning runs (a count or a list, as --seeds)", Seeds())
    tune_samples: int = option(64, "samples per validation problem in tuning (k up to it)", Int(ge=1))
    select: str = option(
        "pass_auc",
        "validation metric maximised in tuning: pass_auc (mean of pass@k over k = 1, 2, 4, ... up to "
        "--tune-samples) or an evaluation metric such as pass@1",
        Text(hint="pass_auc or a metric name"),
    )

    def validate(self) -> CompareConfig:
        return options.validate(self, error=ConfigError)


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
    """The study's arms: ``--arms`` (or ``--losses``) plus ablations, x etas (LAD-family only) x updates per
    rollout (:mod:`ladtrain.study_arms` for the labels)."""
    from ladtrain import losses

    specs = parse_arms(study.arms) if study.arms else [(s, {}) for s in _items(study, "losses")]
    if study.divergence_ablation:
        specs += [(s, {}) for s in DIVERGENCE_ABLATION]
    if study.mechanism_ablation:
        specs += [(s, {}) for s in MECHANISM_ABLATION]
    canonical: list[tuple[str, dict]] = []
    for s, settings in specs:
        item = (losses.get(s).name, settings)  # canonical name ("lad" -> "lad:js")
        if item not in canonical:
            canonical.append(item)
    etas = _items(study, "etas") if study.etas else [base.eta]
    if study.updates:
        updates = _items(study, "updates")
    elif study.mechanism_ablation:
        updates = sorted({base.updates_per_rollout, 4})
    else:
        updates = [base.updates_per_rollout]
    arms = []
    for name, settings in canonical:
        uses_eta = losses.get(name).uses_eta
        eta_list = [settings["eta"]] if "eta" in settings else etas if uses_eta else [base.eta]
        u_list = [settings["updates_per_rollout"]] if "updates_per_rollout" in settings else updates
        for eta in eta_list:
            for u in u_list:
                if name.startswith("ladw:") and u == 1 and len(updates) > 1:
                    continue  # at ratio 1 ladw has LAD's gradient exactly (tested): the lad arm is this run
                sweep = {}
                if uses_eta and len(etas) > 1 and "eta" not in settings:
                    sweep["eta"] = eta
                if len(updates) > 1 and "updates_per_rollout" not in settings:
                    sweep["updates_per_rollout"] = u
                fixed = {**settings, **sweep}
                arms.append(Arm(label_of(name, fixed), name, eta, u, fixed))
    labels = [a.label for a in arms]
    if len(set(labels)) != len(labels):
        raise ConfigError(options.message("arms", "two arms have the same label", study.arms or study.losses))
    return arms


# --------------------------------------------------------------------------------------------------
# Running the study


# fields added to TrainConfig after runs were committed, with the value that does what the code did before
# the field existed: a config.json without the field was made with that value
ADDED_LATER = {"sampler_draws": "generate"}
# settings that do not make two runs different runs: the folder itself (it differs when a study's folder is
# moved or committed and checked out elsewhere) and the library of the linear products (the same products
# in another summation order, as on another CPU: ladtrain.onednn_linears)
NOT_COMPARED = ("out", "linear_kernels")


def _same_config(folder: Path, cfg: TrainConfig) -> bool:
    """The run in ``folder`` was made with ``cfg`` (every setting but those of :data:`NOT_COMPARED`; a field
    of :data:`ADDED_LATER` missing from its ``config.json`` counts as that field's earlier behaviour)."""
    try:
        saved = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(saved, dict):
        return False
    saved = {**ADDED_LATER, **saved}
    wanted = json.loads(json.dumps(cfg.to_dict()))
    return ({k: v for k, v in saved.items() if k not in NOT_COMPARED}
            == {k: v for k, v in wanted.items() if k not in NOT_COMPARED})


def _slug(label: str) -> str:
    slug = label.replace(":", "-").replace("/", "-").replace("@", "-").replace("=", "").strip("-")
    return slug or "default"


# settings that change training but not the base model's evaluation: runs that differ only in these share
# one base evaluation per seed (the same model sampled with the same stream)
TRAINING_ONLY = (
    "loss", "eta", "level", "clip_eps", "clip_eps_high", "flowrl_beta", "adv_scale", "steps",
    "prompts_per_step", "group_size", "updates_per_rollout", "mini_batches", "lr", "lr_schedule",
    "lr_warmup_steps", "weight_decay", "max_grad_norm", "temperature", "reward", "reward_weights", "out",
    "checkpoint_every", "keep_checkpoints", "keep_resumable", "optimizer_state", "resume", "progress",
    "threads", "report_to", "log_samples", "stop_on_no_signal", "eval_every", "sampler_draws",
    "linear_kernels",
)


def base_eval_key(cfg: TrainConfig) -> str:
    """What the base evaluation of a run depends on: its configuration without :data:`TRAINING_ONLY`."""
    return json.dumps({k: v for k, v in cfg.to_dict().items() if k not in TRAINING_ONLY}, sort_keys=True,
                      default=str)


def run_one(cfg: TrainConfig, base_evals: dict[str, Any]) -> dict[str, Any]:
    """One run of the study in ``cfg.out``: reused when finished with the same configuration, continued
    from its newest checkpoint when killed, else trained; a run without ``--eval-task`` sets takes the base
    evaluation of an earlier run with the same :func:`base_eval_key` (``base_evals``, filled here)."""
    from ladtrain import checkpoint, heldout, trainer

    folder = Path(cfg.out)
    key = base_eval_key(cfg) if not cfg.eval_task else None
    if (folder / "summary.json").is_file() and _same_config(folder, cfg):
        summary = json.loads((folder / "summary.json").read_text())
    elif checkpoint.complete_checkpoints(folder) and _same_config(folder, cfg):
        summary = trainer.train(replace(cfg, resume=str(folder)))  # a killed study continues this run
    else:
        summary = trainer.train(cfg, base_eval=base_evals.get(key) if key else None)
    if key and key not in base_evals:
        base_evals[key] = {heldout.MAIN: summary["base"]}
    return summary


def tuning_folder(out: Path, arm: str, point: dict[str, Any], seed: int) -> Path:
    """The folder of ``arm``'s tuning run at grid ``point`` with ``seed`` in the study folder ``out``."""
    return out / "tuning" / _slug(arm) / _slug(label_of("", point)) / f"seed{seed}"


def tune(study: CompareConfig, base: TrainConfig, arms: Sequence[Arm], out: Path, base_evals: dict,
         bar=None) -> dict[str, Any]:
    """For every arm, train at each point of its grid (:func:`ladtrain.study_arms.arm_grid`) with the
    tuning seeds, evaluate on the **validation** split, and choose the point with the best ``--select``
    value; returns ``{arm: {"grid": [...], "chosen": {...}, ...}}`` ({} without ``--grid``)."""
    if not study.grid:
        return {}
    grid, seeds = parse_grid(study.grid), seeds_of(study.tune_seeds)
    tuning: dict[str, Any] = {}
    for arm in arms:
        points, values, rows = arm_grid(arm, grid), [], []
        for point in points:
            per_seed, cpu = [], 0.0
            for seed in seeds:
                folder = tuning_folder(out, arm.label, point, seed)
                cfg = arm.config(base, **point, seed=seed, out=str(folder), progress=False,
                                 eval_split="validation", eval_samples=study.tune_samples, eval_k=None,
                                 eval_k_max=0, eval_every=0)
                if bar is not None:
                    bar.set_postfix(arm=arm.label, tune=label_of("", point) or "-", seed=seed)
                summary = run_one(cfg, base_evals)
                per_seed.append(score(summary["trained"], study.select))
                cpu += summary.get("seconds", {}).get("cpu", 0.0)
                if bar is not None:
                    bar.update(1)
            values.append(per_seed)
            rows.append({"setting": point, "per_seed": per_seed, "mean": float(np.mean(per_seed)),
                         "folder": str(folder.parent), "cpu_seconds": cpu})
        best = choose(points, values)
        tuning[arm.label] = {"grid": rows, "chosen": points[best], "select": study.select,
                             "split": "validation", "seeds": seeds, "samples": study.tune_samples}
    return tuning


def run_study(study: CompareConfig, base: TrainConfig, command: str = "") -> dict[str, Any]:
    """Choose each arm's settings on validation (``--grid``), then train and evaluate every arm for every
    seed on the test split; write the report; return ``results.json``'s content."""
    from tqdm.auto import tqdm

    from ladtrain import trainer

    seeds = seeds_of(study.seeds)
    arms = arms_of(study, base)
    labels = [a.label for a in arms]
    ref_candidates = [a.label for a in arms if a.loss == study.reference or a.label == study.reference]
    if not ref_candidates:
        raise ConfigError(
            options.message("reference", f"not among the arms ({', '.join(labels)})", study.reference)
        )
    grid = parse_grid(study.grid)
    for arm in arms:  # every configuration is checked before anything runs
        for point in arm_grid(arm, grid):
            arm.config(base, **point)
    out = Path(base.out) if base.out else Path("results/compare") / datetime.now().strftime("%Y%m%d-%H%M%S")
    trainer.run_folder(replace(base, out=str(out)))  # checks that it is writable
    t0 = time.time()

    n_tune = sum(len(arm_grid(a, grid)) for a in arms) * len(seeds_of(study.tune_seeds)) if study.grid else 0
    bar = tqdm(total=n_tune + len(arms) * len(seeds), desc="compare", disable=not base.progress,
               dynamic_ncols=True)
    base_evals: dict[str, Any] = {}
    tuning = tune(study, base, arms, out, base_evals, bar)
    runs: dict[str, dict[int, dict[str, Any]]] = {a.label: {} for a in arms}
    for seed in seeds:
        for arm in arms:
            folder = out / "runs" / _slug(arm.label) / f"seed{seed}"
            chosen = tuning.get(arm.label, {}).get("chosen", {})
            cfg = arm.config(base, **chosen, seed=seed, out=str(folder), progress=False)
            bar.set_postfix(arm=arm.label, seed=seed)
            summary = run_one(cfg, base_evals)
            rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line]
            runs[arm.label][seed] = {"summary": summary, "metrics": rows, "folder": str(folder)}
            bar.update(1)
    bar.close()

    base_info = runs[arms[0].label][seeds[0]]["summary"]["model"]
    results = collect(study, base, arms, seeds, runs, ref_candidates[0], base_info)
    results["tuning"] = tuning
    results["seconds"] = time.time() - t0
    results["cpu_seconds"] = cpu_seconds(runs, tuning)
    results["command"] = command or "python -m ladtrain compare (called from Python)"
    results["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results["code"] = code_revision()
    (out / "results.json").write_text(json.dumps(results, indent=2, default=_json_default))
    study_figures(results, out)
    (out / "report.md").write_text(report(results))
    if base.progress:
        print(f"report: {out / 'report.md'}")
    return results


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
