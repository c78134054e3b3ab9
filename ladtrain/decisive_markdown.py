"""``report.md`` of the decisive study, from ``verdicts.json``'s content
(:func:`ladtrain.decisive_report.build`) and the studies' ``results.json``: per task the tables of every
arm and the base, the H1-H5 table with what differs between each compared pair, the tuning on
validation, and the provenance (commands, code revisions, CPU time)."""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

import numpy as np

from ladtrain import study_verdicts as V
from ladtrain.decisive_controls import lines as controls_lines

KINDS = ("main", "ablation", "controls")


def _ms(row: dict | None) -> str:
    if not row or row.get("mean") is None or math.isnan(row["mean"]):
        return "n/a"
    sd = row.get("std")
    return f"{row['mean']:.3f}" + ("" if sd is None or math.isnan(sd) else f" ± {sd:.3f}")


def _seed_stat(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    a = a[~np.isnan(a)]
    if not a.size:
        return {"mean": math.nan, "std": math.nan}
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else math.nan}


def study_tables(task: str, kind: str, res: dict, doc: dict, main: dict) -> list[str]:
    """The accuracy and diversity tables of one study: every arm and the base."""
    st = V.study(res, f"{task}-{kind}")
    k_max = st.k_max()
    arms = list(st.arms)
    table = res.get("table", {})
    grpo = doc["roles"]["grpo"]
    cost = res.get("cost", {})
    ref_s = (cost.get(grpo) or {}).get("step_seconds")
    ref_note = ""
    if ref_s is None:
        ref_s, ref_note = (main.get("cost", {}).get(grpo) or {}).get("step_seconds"), " †"
    cross = doc["crossovers"].get(task, {}).get(kind, {})
    ks = list(dict.fromkeys(["pass@1"] + (["pass@16"] if k_max > 16 else []) + [f"pass@{k_max}"]))
    lines = [
        f"Per-seed values are means over {len(st.problem_ids)} test problems; cells: mean ± std over "
        f"the {len(st.seeds)} seeds {list(st.seeds)}.",
        "",
        f"| arm | {' | '.join(ks)} | retained base answers | crossover k vs base, per seed "
        "| crossover k vs base, mean curves / interval below 0 | step time vs GRPO |",
        "|---|" + "---|" * (len(ks) + 4),
    ]
    for arm in ["base"] + arms:
        row = table.get(arm, {})
        if arm == "base":
            extra = ["(itself)", "-", "-", "-"]
        else:
            ret = _seed_stat([(r or {}).get("mean", math.nan) for r in res.get("retained", {}).get(arm, [])])
            per_seed = res.get("crossover", {}).get(arm)
            c = cross.get(arm, {})
            step = (cost.get(arm) or {}).get("step_seconds")
            ratio = step / ref_s if step is not None and ref_s else None
            extra = [
                _ms(ret),
                ", ".join("none" if k is None else str(k) for k in per_seed) if per_seed else "n/a",
                f"{c.get('crossover_k') or 'none'} / {c.get('significant_k') or 'none'}" if c else "n/a",
                (f"{ratio:.2f}{ref_note}" if ratio is not None else "n/a"),
            ]
        lines.append(f"| {arm} | " + " | ".join([_ms(row.get(m)) for m in ks] + extra) + " |")
    lines += [
        "",
        "| arm | distinct correct | answer entropy (nats) | dist-2 | dist-3 | dist-4 "
        "| dist-2 | dist-3 | dist-4 |",
        "|---|---|---|---|---|---|---|---|---|",
        "| | | | distinct/total n-grams | | | distinct n-grams/generated token | | |",
    ]
    div = (
        "distinct_correct",
        "answer_entropy",
        "dist-2",
        "dist-3",
        "dist-4",
        "dist-2_per_token",
        "dist-3_per_token",
        "dist-4_per_token",
    )
    for arm in ["base"] + arms:
        lines.append(f"| {arm} | " + " | ".join(_ms(table.get(arm, {}).get(m)) for m in div) + " |")
    lines.append("")
    if ref_note:
        lines += [f"† relative to the main study's `{grpo}` (this study has none; times of another run).", ""]
    return lines


def _esc(text: str) -> str:
    """Text for a markdown table cell (a ``|`` would end the cell)."""
    return str(text).replace("|", "\\|")


def _interval(lo: float, hi: float) -> str:
    return f"[{lo:+.4f}, {hi:+.4f}]"


def verdict_lines(doc: dict) -> list[str]:
    lines = [
        "| | task | verdict | compared (X - Y) | what differs | metric | estimate | 95% CI, bootstrap "
        "over seeds and problems | 95% t-CI over problems | per-seed means | rule |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for v in doc["verdicts"]:
        head = f"| {v['hypothesis']} | {v['task']} | **{v['verdict']}** |"
        if not v["rows"]:
            lines.append(f"{head} {_esc(v['reason'])} | | | | | | | | {v['rule']} |")
        for r in v["rows"]:
            if not r["decides"]:
                head = f"| {v['hypothesis']} | {v['task']} | (shown, not in the rule) |"
            seeds = ", ".join(f"{s}: {m:+.3f}" for s, m in zip(r["seeds"], r["seed_means"]))
            lines.append(
                f"{head} `{r['x']}` - `{r['y']}` | {_esc(r['differs'])} | {r['metric']} | "
                f"{r['estimate']:+.4f} | {_interval(r['lo'], r['hi'])} | {_interval(*r['t_ci'])} | "
                f"{seeds} | {v['rule']} |"
            )
        if v["hypothesis"] == "H2" and v["rows"]:
            fk = v["from_k"]
            notes.append(
                f"- H2, {v['task']}: every k >= {fk} has lo > 0."
                if fk
                else f"- H2, {v['task']}: no k from which every larger k has lo > 0 (k_max = {v['k']})."
            )
        if v["hypothesis"] == "H2" and v.get("all_k"):
            by_k = "; ".join(
                f"pass@{r['metric'][5:]} {r['estimate']:+.4f} {_interval(r['lo'], r['hi'])}"
                for r in v["all_k"]
            )
            notes.append(
                f"- H2, {v['task']}, `{v['rows'][0]['x']}` - `{v['rows'][0]['y']}` at every k: {by_k}."
            )
        if v["hypothesis"] == "H3" and v["rows"]:
            for c in v["crossovers"]:
                notes.append(
                    f"- H3, {v['task']}: `{c['arm']}` crossover k against the base: "
                    f"{c['crossover_k'] or 'none'} on the mean curves, {c['significant_k'] or 'none'} "
                    f"with the interval below 0 (k up to {c['ks'][-1]})."
                )
        if v["hypothesis"] == "H5" and v["rows"]:
            w = ", ".join(f"{r['metric']} {x:.4f}" for r, x in zip(v["rows"], v["widths"]))
            notes.append(f"- H5, {v['task']}: interval widths {w}.")
    return lines + [""] + notes + [""]


def _cpu(cpu: Any) -> str:
    """``cpu_seconds`` of a study: a number or ``{"test", "tuning", "total"}`` (seconds) -> hours."""
    if isinstance(cpu, (int, float)):
        return f"{cpu / 3600:.2f} h"
    if isinstance(cpu, dict) and all(
        isinstance(cpu.get(k), (int, float)) for k in ("test", "tuning", "total")
    ):
        h = {k: cpu[k] / 3600 for k in ("test", "tuning", "total")}
        return f"{h['total']:.2f} h (test runs {h['test']:.2f} h, tuning {h['tuning']:.2f} h)"
    return "not recorded"


def tuning_lines(tuning: dict) -> list[str]:
    """Per arm every grid point's validation score (mean and per tuning seed) and the chosen point; a
    tuning record of another layout is shown as JSON."""
    try:
        lines = [
            "| arm | setting | validation score: mean | per tuning seed | chosen |",
            "|---|---|---|---|---|",
        ]
        for arm, t in tuning.items():
            for row in t["grid"]:
                setting = ", ".join(f"{k}={v}" for k, v in row["setting"].items()) or "(defaults)"
                seeds = ", ".join(f"{x:.4f}" for x in row["per_seed"])
                chosen = "**yes**" if row["setting"] == t["chosen"] else ""
                lines.append(f"| {arm} | {setting} | {row['mean']:.4f} | {seeds} | {chosen} |")
        first = next(iter(tuning.values()))
        lines += [
            "",
            f"Score: `{first['select']}` on the `{first['split']}` split, tuning seeds "
            f"{first['seeds']}, {first['samples']} samples per problem.",
        ]
        return lines
    except (KeyError, TypeError, AttributeError, ValueError, StopIteration):
        return ["```json", json.dumps(tuning, indent=1, default=str), "```"]


def report(doc: dict, results: dict) -> str:
    """``report.md``: per task the tables of every study, then H1-H5, tuning and provenance."""
    lines = [
        "# The decisive study: does LAD keep what GRPO loses?",
        "",
        "Paired differences over the same test problems and seeds; 95% intervals by a seed-then-problem "
        f"bootstrap ({doc['replicates']} replicates, numpy seed {doc['bootstrap_seed']}); rules "
        f"pre-registered in `ladtrain/study_verdicts.py` (delta = {doc['delta']}). Crossover k: the "
        "smallest k with base pass@k >= the arm's. Retained base answers: the share of the base's "
        "correct answers the trained policy still produces (mean over seeds of each seed's mean).",
        "",
    ]
    for task, kinds in results.items():
        lines += [f"## {task}", ""]
        for kind in KINDS:
            if kind in kinds:
                lines += [f"### {kind} study (`{doc['studies'][task][kind]}`)", ""]
                lines += study_tables(task, kind, kinds[kind], doc, kinds["main"])
    lines += ["## Verdicts H1-H5", ""] + verdict_lines(doc)
    lines += controls_lines(doc.get("controls", {}))
    lines += ["![pass@k minus the base](pass_at_k_vs_base.png)", "", "![verdicts](verdicts_forest.png)", ""]
    tuned = [(t, k, r["tuning"]) for t, kinds in results.items() for k, r in kinds.items() if r.get("tuning")]
    if tuned:
        lines += ["## Tuning on validation", ""]
        for task, kind, tuning in tuned:
            lines += [f"{task}, {kind} study:", ""] + tuning_lines(tuning) + [""]
    lines += [
        "## Provenance",
        "",
        f"This report: `{doc['command']}` at code {doc['code']}, {doc['created']}.",
        "",
        "| task | study | command | code | CPU time | finished |",
        "|---|---|---|---|---|---|",
    ]
    for task, kinds in results.items():
        for kind, r in kinds.items():
            cpu = _cpu(r.get("cpu_seconds"))
            lines.append(
                f"| {task} | {kind} | `{r.get('command', 'not recorded')}` | "
                f"{r.get('code', 'not recorded')} | {cpu} | {r.get('finished', 'n/a')} |"
            )
    return "\n".join(lines) + "\n"


__all__ = ["KINDS", "report", "study_tables", "tuning_lines", "verdict_lines"]
