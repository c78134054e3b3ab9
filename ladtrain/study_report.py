"""``report.md`` of a study: the settings, the held-out table, paired differences, cost, training
diagnostics and the answer in words, all from ``results.json``'s content (:func:`ladtrain.study.collect`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ladtrain.study_stats import paired, verdict

METRICS_FOR_PAIRS = (
    "pass@1",
    "pass@2",
    "pass@4",
    "pass@8",
    "pass@16",
    "maj@k",
    "distinct_correct",
    "answer_entropy",
    "dist-3",
    "dist-4",
)


def _fmt(mu: float, sd: float) -> str:
    if math.isnan(mu):
        return "n/a"
    return f"{mu:.3f}" if math.isnan(sd) else f"{mu:.3f} ± {sd:.3f}"


def report(results: dict[str, Any]) -> str:
    """``report.md``: settings, held-out table, paired differences, cost, and the answer in words."""
    tr, seeds, ref = results["train"], results["seeds"], results["reference"]
    labels = [a["label"] for a in results["arms"]]
    shown = [
        m
        for m in (
            "avg@k",
            "pass@1",
            "pass@4",
            "pass@8",
            "pass@16",
            "maj@k",
            "distinct_correct",
            "answer_entropy",
            "dist-2",
            "dist-3",
            "dist-4",
        )
        if m in results["metrics"]
    ]
    lines = [
        "# LAD vs baselines: held-out comparison",
        "",
        f"Command: `{results['command']}`  ",
        f"Finished {results['finished']} in {results['seconds'] / 60:.1f} min; "
        f"code {results.get('code', 'unknown')}.",
        "",
        "## Setup",
        f"- task `{tr['task']}`, base model `{results['base_model'].get('model')}` "
        f"({results['base_model'].get('parameters', '?')} parameters), the same base for every run",
        f"- seeds {seeds}; arms: {', '.join(f'`{x}`' for x in labels)}; reference arm `{ref}`",
        f"- {tr['steps']} RL steps x {tr['prompts_per_step']} prompts x {tr['group_size']} samples, "
        f"lr {tr['lr']}, "
        f"eta {tr['eta']} (LAD level `{tr['level']}`), clip eps {tr['clip_eps']}, "
        f"max {tr['max_new_tokens']} new tokens, temperature {tr['temperature']}",
        f"- held-out evaluation: {results['eval_problems']} problems x {tr['eval_samples']} samples at "
        f"temperature {tr['eval_temperature']}",
        f"- same prompts in the same order for every arm of a seed: **{results['same_prompts']}**; "
        f"same held-out problems for every run: **{results['same_eval_problems']}**",
        "",
        *tuning_lines(results),
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
    lines += [
        "",
        f"## Paired differences against `{ref}` (per problem, seed-averaged; 95% t-interval)",
        "",
        "| arm | metric | mean diff | 95% CI | p | wins/ties/losses | per-seed diffs | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, per_metric in results["pairs"].items():
        for m in [m for m in METRICS_FOR_PAIRS if m in per_metric]:
            p = per_metric[m]
            seed_d = ", ".join(f"{x:+.3f}" for x in p["seed_diffs"])
            lines.append(
                f"| {label} | {m} | {p['mean_diff']:+.4f} | [{p['ci'][0]:+.4f}, {p['ci'][1]:+.4f}] | "
                f"{p['p_value']:.3g} | {p['wins']}/{p['ties']}/{p['losses']} | {seed_d} | {verdict(p)} |"
            )
    lines += [
        "",
        f"## Cost (mean wall time per RL step; ratio to `{ref}`)",
        "",
        "| arm | step s | ratio | update s | ratio |",
        "|---|---|---|---|---|",
    ]
    for label in labels:
        c = results["cost"][label]
        lines.append(
            f"| {label} | {c['step_seconds']:.3f} | {c['step_seconds_ratio']:.2f} | "
            f"{c['update_seconds']:.3f} | {c['update_seconds_ratio']:.2f} |"
        )
    lines += [
        "",
        "Update = log-prob forward, loss, backward and optimizer step(s) of one rollout; step also "
        "includes sampling and scoring. Measured in the same study, on a shared machine.",
        "",
    ]
    lines += [
        "## Training (mean over steps and seeds)",
        "",
        "final reward = mean training reward over the last 10% of steps (mean ± std over seeds); "
        "past target = LAD's share of tokens with rho > e^{A/eta}, where its gradient lowers log pi (at "
        "ratio 1 these are exactly the A < 0 tokens; the brake proper is what several updates add to "
        "that share); clipped = share of tokens whose gradient GRPO's clip cuts; mean log-ratio = mean "
        "log(pi/pi_old) seen by the loss (0 with one update per rollout); mean |log-ratio| = over the "
        "rollout's optimizer steps (--mini-batches, --updates-per-rollout); grad clip binds = share of "
        "optimizer steps whose gradient norm exceeded --max-grad-norm (0 when it is 0 = off).",
        "",
        "| arm | final reward | past target | clipped | mean log-ratio | mean abs log-ratio "
        "| grad clip binds |",
        "|---|---|---|---|---|---|---|",
    ]
    for label in labels:
        t = results["training"][label]
        keys = ("past_target_frac", "clip_frac", "log_ratio_mean", "abs_log_ratio_mean", "grad_clip_frac")
        cell = [f"{t[k]:.4f}" if k in t else "-" for k in keys]
        lines.append(f"| {label} | {_fmt(*t['final_reward'])} | " + " | ".join(cell) + " |")
    lines.append("")
    lines += ["## Answer", ""] + answer_lines(results) + [""]
    lines += [
        "## Figures",
        "",
        "![reward curves](reward_curves.png)",
        "",
        "![pass@k](pass_at_k.png)",
        "",
        "![diversity](diversity.png)",
        "",
        "![cost](cost.png)",
        "",
    ]
    return "\n".join(lines)


def answer_lines(results: dict[str, Any]) -> list[str]:
    """The hypothesis of the study in words, from the paired intervals (no threshold tuning)."""
    ref = results["reference"]
    out = []
    lad_arms = [a["label"] for a in results["arms"] if a["loss"].startswith("lad:")]
    others = [a["label"] for a in results["arms"] if not a["loss"].startswith("lad:")]
    seeds, P = len(results["seeds"]), results["eval_problems"]
    out.append(
        f"Based on {seeds} seed(s) and {P} held-out problems; an interval that contains 0 is reported "
        "as no clear difference."
    )
    hyp = results["pairs"].get("lad:js") if ref == "grpo" else None
    if hyp:
        checks = [("pass@1", "matches GRPO (interval contains 0)", lambda v: v == "no clear difference")]
        checks += [(f"pass@{k}", "beats GRPO", lambda v: v == "better") for k in (4, 8, 16)]
        checks += [("distinct_correct", "beats GRPO", lambda v: v == "better")]
        parts = []
        for m, claim, ok in checks:
            if m in hyp:
                v = verdict(hyp[m])
                parts.append(
                    f"{m}: {claim}? {'yes' if ok(v) else 'no'} ({v}, {hyp[m]['mean_diff']:+.3f} "
                    f"[{hyp[m]['ci'][0]:+.3f}, {hyp[m]['ci'][1]:+.3f}])"
                )
        out.append(
            "Hypothesis: LAD(js) matches GRPO on pass@1 and beats it on pass@k for k >= 4 and on distinct "
            "correct answers. Measured: " + "; ".join(parts) + "."
        )
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
            for m in (
                "pass@1",
                "pass@4",
                "pass@8",
                "pass@16",
                "distinct_correct",
                "answer_entropy",
                "dist-4",
            ):
                if m in pair:
                    p = pair[m]
                    lo, hi = sorted((sign * p["ci"][0], sign * p["ci"][1]))
                    v = verdict({"ci": [lo, hi]})
                    parts.append(f"{m} {sign * p['mean_diff']:+.3f} [{lo:+.3f}, {hi:+.3f}] ({v})")
            out.append(f"- `{lad}` vs `{other}`: " + "; ".join(parts) + ".")
    return out


def _setting_text(setting: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in setting.items())


def tuning_lines(results: dict[str, Any]) -> list[str]:
    """The settings each arm chose on the validation split (``results["tuning"]``; none without
    ``--grid``), every grid point's validation value, the choice in bold."""
    tuning = results.get("tuning") or {}
    if not tuning:
        return []
    first = next(iter(tuning.values()))
    lines = [
        "## Settings chosen on validation (before any test run)",
        "",
        f"Each arm trained at every grid point with seed(s) {first['seeds']}, evaluated on the task's "
        f"{first['split']} split ({first['samples']} samples per problem), scored by `{first['select']}`; "
        "the best point (first on ties) is the arm's setting in every test run below. The base settings "
        "above apply where an arm chose nothing.",
        "",
        "| arm | grid point: validation value | chosen |",
        "|---|---|---|",
    ]
    for label, entry in tuning.items():
        cells = []
        for row in entry["grid"]:
            cell = f"{_setting_text(row['setting']) or '(no key)'}: {row['mean']:.4f}"
            cells.append(f"**{cell}**" if row["setting"] == entry["chosen"] else cell)
        chosen = _setting_text(entry["chosen"])
        lines.append(f"| {label} | {'; '.join(cells)} | {chosen or '-'} |")
    return lines + [""]


def mechanism_lines(results: dict[str, Any]) -> list[str]:
    """Brake vs reweighting: at each number of updates, ``lad:<d>`` - ``ladw:<d>`` (the brake against
    GRPO's clip, same weights at ratio 1) and ``ladw:<d>`` - ``grpo`` (the reweighting, same clip)."""
    arms = {(a["loss"], a["updates"], a["eta"]): a["label"] for a in results["arms"]}
    out = []
    for (loss, u, eta), label in arms.items():
        if not loss.startswith("ladw:"):
            continue
        lad, grpo = (
            arms.get(("lad:" + loss.split(":", 1)[1], u, eta)),
            arms.get(("grpo", u, results["train"]["eta"])),
        )
        for what, a, b in (
            ("brake (LAD minus ladw)", lad, label),
            ("reweighting (ladw minus GRPO)", label, grpo),
        ):
            if a is None or b is None:
                continue
            pair = _pair_between(results, a, b)
            parts = [
                f"{m} {pair[m]['mean_diff']:+.3f} [{pair[m]['ci'][0]:+.3f}, {pair[m]['ci'][1]:+.3f}] "
                f"({verdict(pair[m])})"
                for m in ("pass@1", "pass@4", "pass@16", "distinct_correct", "answer_entropy")
                if m in pair
            ]
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


__all__ = ["METRICS_FOR_PAIRS", "answer_lines", "mechanism_lines", "report"]
