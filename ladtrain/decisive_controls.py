"""Like-for-like controls of the decisive study: paired differences that each isolate one thing that
differs between LAD and a baseline (the aggregation, the objective, the regime), from a task's controls
study (``countdown-controls`` of :mod:`ladtrain.protocol`) and its main study.

These are estimates with intervals, not pre-registered hypotheses: no verdict word is attached (H1-H5 are in
:mod:`ladtrain.study_verdicts`). Each row: X - Y on pass@1 and on the largest k both studies have, the
seed-then-problem bootstrap interval and the problem-level t-interval of
:func:`ladtrain.study_verdicts.difference`, the common seeds, and what the pair isolates.

A control arm is found by the start of its label (the controls study fixes each arm's learning rate, which
is part of the label: ``grpo_tokenmean/lr=5e-05``).
"""

from __future__ import annotations

from typing import Any

from ladtrain import study_verdicts as V

# (X: (study kind, label prefix), Y: (study kind, label prefix), what the pair isolates)
PAIRS = (
    (("controls", "grpo_tokenmean"), ("main", "grpo"),
     "the aggregation alone: GRPO's objective with the global token mean (LAD's) vs the per-sequence mean"),
    (("main", "lad:js"), ("controls", "grpo_tokenmean"),
     "the objective alone: LAD(js) vs GRPO's clipped surrogate, both with the global token mean"),
    (("main", "lad:js/mb4"), ("main", "grpo/mb4"),
     "LAD vs GRPO at 4 minibatches per rollout, where LAD's brake and GRPO's clip act"),
    (("main", "lad:js/mb4"), ("controls", "dapo/mb4"),
     "LAD vs DAPO (clip-higher 0.28, global token mean) at 4 minibatches, where DAPO's clip acts"),
    (("main", "lad:js/mb4"), ("controls", "gspo/mb4"),
     "LAD vs GSPO (sequence-level ratio) at 4 minibatches, where GSPO's clip acts"),
    (("main", "lad:js/mb4"), ("controls", "flowrl/mb4"),
     "LAD vs FlowRL, both at 4 minibatches (FlowRL's own regime updates several times per rollout)"),
    (("main", "lad:js"), ("main", "flowrl"), "LAD vs FlowRL at 1 minibatch per rollout"),
)


def _arm(st: V.Study, prefix: str) -> str | None:
    """The arm whose label is ``prefix`` or starts with ``prefix/`` (None if there is none)."""
    exact = [a for a in st.arms if a == prefix]
    return exact[0] if exact else next((a for a in st.arms if a.startswith(prefix + "/")), None)


def controls(studies: dict[str, V.Study | None], replicates: int = V.REPLICATES) -> list[dict[str, Any]]:
    """Every row of :data:`PAIRS` whose two arms exist (``studies``: kind -> Study; rows whose arm is
    missing are listed with ``missing``)."""
    rows = []
    for (kx, px), (ky, py), isolates in PAIRS:
        sx, sy = studies.get(kx), studies.get(ky)
        ax = _arm(sx, px) if sx is not None else None
        ay = _arm(sy, py) if sy is not None else None
        if ax is None or ay is None:
            rows.append({"x": px, "y": py, "isolates": isolates, "missing": px if ax is None else py})
            continue
        k = min(sx.k_max(), sy.k_max())
        for metric in ("pass@1", f"pass@{k}"):
            d = V.difference(sx, ax, sy, ay, metric, differs=V.differing(sx, ax, sy, ay),
                             replicates=replicates)
            rows.append({**d, "isolates": isolates})
    return rows


def lines(rows_by_task: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The markdown section of the controls (none when no task has a controls study)."""
    if not rows_by_task:
        return []
    out = ["## Like-for-like controls (estimates, not pre-registered hypotheses)", "",
           "X - Y paired over problems and the seeds both ran; 95% bootstrap interval (seeds, then problems) "
           "and problem-level t-interval. Settings that differ between the two runs are listed.", "",
           "| task | X - Y | isolates | metric | estimate | bootstrap 95% | t 95% | seeds "
           "| settings that differ |",
           "|---|---|---|---|---|---|---|---|---|"]
    for task, rows in rows_by_task.items():
        for r in rows:
            if "missing" in r:
                out.append(f"| {task} | {r['x']} - {r['y']} | {r['isolates']} | - | not run "
                           f"(no arm {r['missing']}) | | | | |")
                continue
            t_lo, t_hi = r["t_ci"]
            out.append(f"| {task} | {r['x']} - {r['y']} | {r['isolates']} | {r['metric']} | "
                       f"{r['estimate']:+.4f} | [{r['lo']:+.4f}, {r['hi']:+.4f}] | "
                       f"[{t_lo:+.4f}, {t_hi:+.4f}] | {r['seeds']} | {r['differs'].replace('|', '/')} |")
    return out + [""]


__all__ = ["PAIRS", "controls", "lines"]
