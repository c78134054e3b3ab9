r"""Verdicts of the decisive study (H1-H5), from the per-problem data of finished ``compare`` studies.

Pre-registration: the rules below were written before any study of this kind had run; the code applies
them verbatim (each verdict carries its rule's text, and tests check that this text is this docstring's).
Every interval is 95%; ``lo``/``hi`` are the hierarchical-bootstrap bounds of a paired difference;
``delta`` = 0.01 is the non-inferiority margin; ``k_max`` is the largest k with pass@k in the study.
Conditions are checked in the order written: supported, then refuted, else inconclusive. A hypothesis whose
arms (roles) or data are missing is "not run".

- H1 (LAD(js) >= GRPO on pass@1): d = lad - grpo on pass@1. Rule: supported if lo > -delta; refuted if
  hi < 0; else inconclusive.
- H2 (LAD(js) > GRPO on pass@k for large k): d = lad - grpo on pass@k_max. Rule: supported if lo > 0;
  refuted if hi < 0; else inconclusive. Also reported: the smallest k from which every larger k of the
  study has lo > 0 (none if lo <= 0 at k_max).
- H3 (LAD(js) keeps the base's pass@k_max, GRPO does not): L = lad - base and G = grpo - base on
  pass@k_max. Rule: supported if L.lo > -delta and G.hi < 0; refuted if L.hi < 0 or G.lo > -delta; else
  inconclusive. Also reported per arm: the crossover k against the base on the seed- and problem-averaged
  curves (smallest k with base mean >= arm mean, :func:`ladtrain.passk.crossover`) and the smallest k
  whose interval of arm - base lies entirely below 0.
- H4 (strict divergences tv, js beat the weak kl): tv - kl and js - kl at the ablation's largest k (js
  from the main study, paired on the common seeds), pass@1 shown too. Rule: supported if both have lo > 0
  at that k; refuted if both have hi < 0; else inconclusive.
- H5 (the brake, K > 1 minibatches, changes the outcome vs K = 1): lad_brake - lad on pass@1 and
  pass@k_max. Rule: changes if either interval excludes 0 (the direction is stated); else no detectable
  change (with the interval widths: not a proof of no effect).

Statistics of a paired difference of arm X and arm Y (or the base) on the same problems and seeds:
``d[s,p] = X[s,p] - Y[s,p]`` over the seeds both studies ran (common seeds, in the first study's order) and
the problems (the same ids in the same order, checked). Estimate: the mean of the defined (non-NaN) cells.
Interval (:func:`hierarchical_bootstrap`): B = 4000 replicates, each drawing S seeds with replacement and,
independently, P problems with replacement, the same problem draw for every seed of the replicate (the
two-way crossed "pigeonhole" bootstrap of A. B. Owen, The pigeonhole bootstrap, Ann. Appl. Stat. 1(2),
2007); the replicate's
statistic is the mean of its cells, and the interval the 2.5 and 97.5 percentiles. Resampling seeds is
what makes one lucky training run count as one run, not as P problems; with 5 seeds it is still a
5-point resample, so when seed-to-seed variance dominates it under-covers (measured in
tests/train/test_study_verdicts.py). Shown beside it: the problem-level Student-t interval of the
seed-averaged differences (:func:`ladtrain.study_stats.paired`, which ignores seed variance) and each
seed's mean difference.

Input (:func:`study`): a study's ``results.json`` content (:func:`ladtrain.study.collect`) with
``seeds``, ``problem_ids`` (a list, or ``{arm: list}``), ``per_problem[arm][metric]`` (S, P) and, for
comparisons with the base, ``per_problem_base[metric]`` (S, P).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ladtrain.passk import crossover
from ladtrain.study_stats import paired

DELTA = 0.01
REPLICATES = 4000
BOOTSTRAP_SEED = 20260
CONFIDENCE = 0.95
ROLES = ("grpo", "lad", "lad_brake", "flowrl", "kl", "tv")
DEFAULT_ROLES = {"grpo": "grpo", "lad": "lad:js", "lad_brake": "lad:js/mb4", "flowrl": "flowrl",
                 "kl": "lad:kl", "tv": "lad:tv"}
DEFAULT_DIFFERS = {("lad_brake", "lad"): "minibatches per rollout (K > 1 vs K = 1)",
                   ("tv", "kl"): "the divergence (tv vs kl)", ("lad", "kl"): "the divergence (js vs kl)"}
RULES = {
    "H1": "supported if lo > -delta; refuted if hi < 0; else inconclusive.",
    "H2": "supported if lo > 0; refuted if hi < 0; else inconclusive.",
    "H3": "supported if L.lo > -delta and G.hi < 0; refuted if L.hi < 0 or G.lo > -delta; else inconclusive.",
    "H4": "supported if both have lo > 0 at that k; refuted if both have hi < 0; else inconclusive.",
    "H5": "changes if either interval excludes 0 (the direction is stated); else no detectable change "
          "(with the interval widths: not a proof of no effect).",
}
CLAIMS = {
    "H1": "LAD(js) >= GRPO on pass@1",
    "H2": "LAD(js) > GRPO on pass@k for large k",
    "H3": "LAD(js) keeps the base's pass@k_max, GRPO does not",
    "H4": "strict divergences tv, js beat the weak kl",
    "H5": "the brake, K > 1 minibatches, changes the outcome vs K = 1",
}


class VerdictError(ValueError):
    """Inputs that cannot be compared (shapes, seeds, problem ids): one line naming what."""


@dataclass(frozen=True)
class Study:
    """One study's per-problem data, checked: ``arms[label][metric]`` and ``base[metric]`` are (S, P)."""

    name: str
    seeds: tuple[int, ...]
    problem_ids: tuple[str, ...]
    arms: dict[str, dict[str, np.ndarray]]
    base: dict[str, np.ndarray]
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)

    def ks(self, label: str | None = None) -> list[int]:
        """The k of every pass@k the arm (or, with None, the base) has."""
        return sorted(int(m[5:]) for m in (self.base if label is None else self.arms[label])
                      if re.fullmatch(r"pass@\d+", m))

    def k_max(self) -> int:
        """The largest k with pass@k for every arm and (when present) the base."""
        sets = [set(self.ks(a)) for a in self.arms] + ([set(self.ks())] if self.base else [])
        common = set.intersection(*sets) if sets else set()
        if not common:
            raise VerdictError(f"{self.name}: no pass@k common to every arm")
        return max(common)


def study(results: dict[str, Any], name: str) -> Study:
    """Check one ``results.json`` (seeds distinct, one (S, P) shape, the same problem ids for every arm)."""
    seeds = [int(s) for s in results.get("seeds", [])]
    if not seeds or len(set(seeds)) != len(seeds):
        raise VerdictError(f"{name}: seeds {results.get('seeds')} are empty or repeated")
    if results.get("same_eval_problems") is False:
        raise VerdictError(f"{name}: its runs were evaluated on different problems (same_eval_problems)")
    ids = results.get("problem_ids")
    if ids is None:
        raise VerdictError(f"{name}: no problem_ids, so the problems of two arms cannot be checked equal")
    per_arm = ids if isinstance(ids, dict) else {label: ids for label in results["per_problem"]}
    first = None
    for label, arm_ids in per_arm.items():
        if first is None:
            first = (label, [str(i) for i in arm_ids])
        elif [str(i) for i in arm_ids] != first[1]:
            raise VerdictError(f"{name}: arm {label}'s problem ids differ from {first[0]}'s (ids or order)")
    P = len(first[1]) if first else 0

    def matrix(values: Any, where: str) -> np.ndarray:
        a = np.asarray(values, dtype=np.float64)
        if a.shape != (len(seeds), P):
            raise VerdictError(f"{name}: {where} has shape {a.shape}, expected "
                               f"({len(seeds)} seeds, {P} problems)")
        return a

    arms = {}
    for label, metrics in results["per_problem"].items():
        if label not in per_arm:
            raise VerdictError(f"{name}: arm {label} has no problem ids")
        arms[label] = {m: matrix(v, f"per_problem[{label}][{m}]") for m, v in metrics.items() if np.size(v)}
    base = {m: matrix(v, f"per_problem_base[{m}]") for m, v in (results.get("per_problem_base") or {}).items()
            if np.size(v)}
    return Study(name, tuple(seeds), tuple(first[1]) if first else (), arms, base, settings_of(results))


NOT_SETTINGS = {"out", "seed", "resume", "progress", "threads", "report_to", "run_name"}


def settings_of(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per arm the settings it trained and was evaluated with: the study's ``train`` settings, the arm's
    loss, eta, updates and overrides, and its ``tuning`` choice (empty when ``results`` lacks them)."""
    train, tuning = results.get("train") or {}, results.get("tuning") or {}
    out = {}
    for arm in results.get("arms") or []:
        chosen = (tuning.get(arm["label"]) or {}).get("chosen") or {}
        own = {"loss": arm.get("loss"), "eta": arm.get("eta"), "updates_per_rollout": arm.get("updates")}
        out[arm["label"]] = {**train, **{k: v for k, v in own.items() if v is not None},
                             **(arm.get("overrides") or {}), **chosen}
    return out


def differing(x: Study, x_arm: str, y: Study, y_arm: str) -> str:
    """``"lr 0.0001 vs 0.0002; mini_batches 2 vs 1"``: the settings in which two arms differ ("" when
    either study did not record its settings)."""
    a, b = x.settings.get(x_arm), y.settings.get(y_arm)
    if not a or not b:
        return ""
    keys = sorted(k for k in set(a) | set(b) if k not in NOT_SETTINGS and a.get(k) != b.get(k))
    return "; ".join(f"{k} {a.get(k)} vs {b.get(k)}" for k in keys)


def hierarchical_bootstrap(d: np.ndarray, replicates: int = REPLICATES, seed: int = BOOTSTRAP_SEED,
                           confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile interval of the mean of ``d`` (S, P) under seed-then-problem resampling (docstring).

    A replicate with seed counts ``c`` (S,) and problem counts ``w`` (P,) has the statistic
    ``sum c_s w_p m_sp d_sp / sum c_s w_p m_sp`` (``m`` = defined cells), computed for all replicates at
    once as two matrix products."""
    d = np.asarray(d, dtype=np.float64)
    S, P = d.shape
    rng = np.random.default_rng(seed)
    c = rng.multinomial(S, np.full(S, 1.0 / S), size=replicates).astype(np.float64)  # (B, S)
    w = rng.multinomial(P, np.full(P, 1.0 / P), size=replicates).astype(np.float64)  # (B, P)
    return percentile_interval(replicate_means(d, c, w), confidence)


def replicate_means(d: np.ndarray, c: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The statistic of each replicate (rows of the seed counts ``c`` and problem counts ``w``)."""
    m = ~np.isnan(d)
    num = np.einsum("bs,sp,bp->b", c, np.where(m, d, 0.0), w)
    den = np.einsum("bs,sp,bp->b", c, m.astype(np.float64), w)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def percentile_interval(stats: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    stats = stats[~np.isnan(stats)]
    if not stats.size:
        return math.nan, math.nan
    lo, hi = np.percentile(stats, [50 * (1 - confidence), 50 * (1 + confidence)])
    return float(lo), float(hi)


def aligned(x: Study, y: Study) -> tuple[list[int], list[int]]:
    """Row indices of the common seeds (in ``x``'s order) in ``x`` and ``y``; problems must be equal."""
    if x.problem_ids != y.problem_ids:
        raise VerdictError(f"{x.name} and {y.name} were evaluated on different problems (ids or order)")
    common = [s for s in x.seeds if s in y.seeds]
    if len(common) < 2:
        raise VerdictError(f"{x.name} and {y.name} share {len(common)} seed(s) {common}: at least 2 needed")
    return [x.seeds.index(s) for s in common], [y.seeds.index(s) for s in common]


def difference(x: Study, x_arm: str, y: Study, y_arm: str | None, metric: str, differs: str = "loss only",
               replicates: int = REPLICATES) -> dict[str, Any]:
    """Paired difference X - Y on ``metric`` (``y_arm=None``: ``y``'s base): estimate, bootstrap interval,
    problem-level t-interval, per-seed means (module docstring)."""
    ix, iy = aligned(x, y)
    X = x.arms[x_arm].get(metric)
    Y = (y.base if y_arm is None else y.arms[y_arm]).get(metric)
    if X is None or Y is None:
        raise VerdictError(f"{metric} missing for {x_arm if X is None else (y_arm or 'base')}")
    X, Y = X[ix], Y[iy]
    d = X - Y
    lo, hi = hierarchical_bootstrap(d, replicates)
    t = paired(X, Y)
    with np.errstate(invalid="ignore"):
        seed_means = [float(np.nanmean(r)) if np.any(~np.isnan(r)) else math.nan for r in d]
    return {"x": x_arm, "y": y_arm or "base", "x_study": x.name, "y_study": y.name, "differs": differs,
            "metric": metric, "estimate": float(np.nanmean(d)), "lo": lo, "hi": hi, "t_ci": t["ci"],
            "seeds": [x.seeds[i] for i in ix], "seed_means": seed_means, "problems": len(x.problem_ids)}


def crossovers(st: Study, arm: str, replicates: int = REPLICATES) -> dict[str, Any]:
    """Crossover k of ``arm`` against the base: on the averaged curves, and the smallest k whose
    interval of arm - base lies below 0 (None = none up to the largest k)."""
    ks = [k for k in st.ks(arm) if k in st.ks()]
    mean_arm = [float(np.nanmean(st.arms[arm][f"pass@{k}"])) for k in ks]
    mean_base = [float(np.nanmean(st.base[f"pass@{k}"])) for k in ks]
    below = [k for k in ks if difference(st, arm, st, None, f"pass@{k}", replicates=replicates)["hi"] < 0]
    return {"arm": arm, "ks": ks, "crossover_k": crossover(ks, mean_base, mean_arm),
            "significant_k": below[0] if below else None}


def _verdict(h: str, task: str, word: str, rows: list[dict], **notes: Any) -> dict[str, Any]:
    return {"hypothesis": h, "claim": CLAIMS[h], "task": task, "verdict": word, "rule": RULES[h],
            "rows": rows, **notes}


def _not_run(h: str, task: str, why: str) -> dict[str, Any]:
    return _verdict(h, task, "not run", [], reason=why)


def rule_h1(d: dict) -> str:
    return "supported" if d["lo"] > -DELTA else "refuted" if d["hi"] < 0 else "inconclusive"


def rule_h2(d: dict) -> str:
    return "supported" if d["lo"] > 0 else "refuted" if d["hi"] < 0 else "inconclusive"


def rule_h3(lad: dict, grpo: dict) -> str:
    if lad["lo"] > -DELTA and grpo["hi"] < 0:
        return "supported"
    return "refuted" if lad["hi"] < 0 or grpo["lo"] > -DELTA else "inconclusive"


def rule_h4(tv: dict, js: dict) -> str:
    if tv["lo"] > 0 and js["lo"] > 0:
        return "supported"
    return "refuted" if tv["hi"] < 0 and js["hi"] < 0 else "inconclusive"


def rule_h5(rows: Sequence[dict]) -> str:
    moved = [f"{r['metric']} {'higher' if r['lo'] > 0 else 'lower'} with the brake" for r in rows
             if r["lo"] > 0 or r["hi"] < 0]
    return "changes: " + ", ".join(moved) if moved else "no detectable change"


def verdicts(tasks: dict[str, dict[str, Study | None]], roles: dict[str, str] | None = None,
             differs: dict[tuple[str, str], str] | None = None,
             replicates: int = REPLICATES) -> list[dict[str, Any]]:
    """H1-H5 for every task (``tasks[task] = {"main": Study, "ablation": Study or None}``). ``roles``
    maps a role of :data:`ROLES` to an arm label (default :data:`DEFAULT_ROLES`); ``differs[(role_x,
    role_y)]`` says in one line what differs between the two arms (default "loss only")."""
    roles = {**DEFAULT_ROLES, **(roles or {})}
    differs = differs or {}
    out = []
    for task, pair in tasks.items():
        main, abl = pair["main"], pair.get("ablation")

        def find(role: str, main_first: bool = True) -> Study | None:
            order = [main, abl] if main_first else [abl, main]
            return next((s for s in order if s is not None and roles.get(role) in s.arms), None)

        def diff(rx: str, ry: str | None, metric: str) -> dict[str, Any]:
            sx = find(rx, rx not in ("kl", "tv"))
            sy = main if ry is None else find(ry, ry not in ("kl", "tv"))
            auto = "" if ry is None else differing(sx, roles[rx], sy, roles[ry])
            text = differs.get((rx, ry or "base"), "the training (base: untrained)" if ry is None
                               else DEFAULT_DIFFERS.get((rx, ry), "loss only" if not auto else ""))
            text = "; ".join(t for t in (text, f"settings: {auto}" if auto else "") if t)
            if sx is not sy:
                text += f"; arms of two studies ({sx.name}, {sy.name}), paired on their common seeds"
            return {**difference(sx, roles[rx], sy, None if ry is None else roles[ry], metric, text,
                                 replicates), "roles": [rx, ry or "base"], "decides": True}

        def missing(*needed: str) -> str:
            gone = [r for r in needed if find(r) is None]
            return f"no arm for role(s) {', '.join(f'{r} ({roles.get(r)})' for r in gone)}" if gone else ""

        k_max = main.k_max()
        for h, needed in (("H1", ("lad", "grpo")), ("H2", ("lad", "grpo"))):
            if missing(*needed):
                out.append(_not_run(h, task, missing(*needed)))
                continue
            if h == "H1":
                row = diff("lad", "grpo", "pass@1")
                out.append(_verdict(h, task, rule_h1(row), [row]))
                continue
            ks = [k for k in main.ks(roles["lad"]) if k in main.ks(roles["grpo"]) and k <= k_max]
            rows = [diff("lad", "grpo", f"pass@{k}") for k in ks]
            tail = [k for i, k in enumerate(ks) if all(r["lo"] > 0 for r in rows[i:])]
            out.append(_verdict(h, task, rule_h2(rows[-1]), [rows[-1]], k=ks[-1],
                                from_k=tail[0] if tail else None, all_k=rows))
        if missing("lad", "grpo") or not main.base:
            why = missing("lad", "grpo") or "no per_problem_base in the main study"
            out.append(_not_run("H3", task, why))
        else:
            lad, grpo = diff("lad", None, f"pass@{k_max}"), diff("grpo", None, f"pass@{k_max}")
            out.append(_verdict("H3", task, rule_h3(lad, grpo), [lad, grpo], k=k_max,
                                crossovers=[crossovers(main, roles[r], replicates) for r in ("lad", "grpo")]))
        if missing("kl", "tv", "lad"):
            out.append(_not_run("H4", task, missing("kl", "tv", "lad")))
        else:
            sk = find("kl", False)
            k4 = max(k for k in sk.ks(roles["kl"]) if k in find("lad").ks(roles["lad"])
                     and k in find("tv", False).ks(roles["tv"]))
            at_k = [diff("tv", "kl", f"pass@{k4}"), diff("lad", "kl", f"pass@{k4}")]
            at_1 = [{**diff(r, "kl", "pass@1"), "decides": False} for r in ("tv", "lad")]
            out.append(_verdict("H4", task, rule_h4(*at_k), at_k + at_1, k=k4))
        if missing("lad_brake", "lad"):
            out.append(_not_run("H5", task, missing("lad_brake", "lad")))
        else:
            rows = [diff("lad_brake", "lad", m) for m in ("pass@1", f"pass@{k_max}")]
            out.append(_verdict("H5", task, rule_h5(rows), rows, widths=[r["hi"] - r["lo"] for r in rows]))
    return out


__all__ = ["CLAIMS", "DEFAULT_DIFFERS", "DEFAULT_ROLES", "DELTA", "REPLICATES", "ROLES", "RULES", "Study",
           "VerdictError", "aligned", "crossovers", "difference", "differing", "hierarchical_bootstrap",
           "percentile_interval", "replicate_means", "rule_h1", "rule_h2", "rule_h3", "rule_h4", "rule_h5",
           "settings_of", "study", "verdicts"]
