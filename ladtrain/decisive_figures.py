"""Figures of the decisive study (matplotlib, Agg backend), from ``verdicts.json``'s content
(:func:`ladtrain.decisive_report.build`):

* ``pass_at_k_vs_base.png``: per task (rows) and study (columns), every arm's pass@k minus the base's
  against k (log2 axis, whole-number ticks at the measured k) with its 95% seed-then-problem bootstrap
  band, and the zero line; one legend below the panels;
* ``verdicts_forest.png``: every compared pair of H1-H5 (one line each: estimate, bootstrap interval as a
  thick bar, problem-level t-interval as a thin one), the zero line and the margin -delta, with the
  verdict in the label."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def curves_figure(doc: dict[str, Any], path: Path) -> Path | None:
    """``pass_at_k_vs_base.png`` (None when no study has the base's per-problem data)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t, kinds in doc["curves"].items() if kinds]
    if not tasks:
        return None
    kinds = [k for k in ("main", "ablation") if any(k in doc["curves"][t] for t in tasks)]
    arms = list(dict.fromkeys(a for t in tasks for k in kinds for a in doc["curves"][t].get(k, {})))
    color = {a: f"C{i % 10}" for i, a in enumerate(arms)}
    style = {a: ("--" if i >= 10 else "-") for i, a in enumerate(arms)}
    marker = {a: "osD^vP*Xhp"[i % 10] for i, a in enumerate(arms)}
    fig, axes = plt.subplots(
        len(tasks),
        len(kinds),
        figsize=(5.6 * len(kinds), 3.6 * len(tasks)),
        squeeze=False,
        constrained_layout=True,
    )
    for row, task in enumerate(tasks):
        for col, kind in enumerate(kinds):
            ax = axes[row][col]
            data = doc["curves"][task].get(kind)
            if not data:
                ax.set_axis_off()
                ax.text(
                    0.5, 0.5, f"{task}: no {kind} study", ha="center", va="center", transform=ax.transAxes
                )
                continue
            ks = sorted({k for c in data.values() for k in c["ks"]})
            for arm, c in data.items():
                ax.plot(
                    c["ks"],
                    c["estimate"],
                    marker=marker[arm],
                    ms=4,
                    color=color[arm],
                    ls=style[arm],
                    label=arm,
                )
                ax.fill_between(c["ks"], c["lo"], c["hi"], color=color[arm], alpha=0.15, lw=0)
            ax.axhline(0.0, color="0.2", lw=0.9)
            ax.set_xscale("log", base=2)
            ax.set_xticks(ks)
            ax.set_xticklabels([str(k) for k in ks])
            ax.minorticks_off()
            ax.grid(alpha=0.3)
            ax.set_title(f"{task}, {kind} study", fontsize=10)
            ax.set_xlabel("k (log scale)")
            ax.set_ylabel("pass@k of arm - base")
    handles = {a: h for ax in axes.flat for h, a in zip(*ax.get_legend_handles_labels())}
    fig.legend(
        list(handles.values()),
        list(handles),
        loc="outside lower center",
        ncol=min(5, len(handles)),
        fontsize=8,
        frameon=False,
    )
    fig.suptitle("pass@k minus the base, paired over seeds and problems (95% bootstrap band)", fontsize=11)
    _save(fig, path)
    return path


def _color(v: dict[str, Any], r: dict[str, Any]) -> str:
    if not r.get("decides", True):
        return "0.65"
    word = v["verdict"]
    return {"supported": "C2", "refuted": "C3", "inconclusive": "C0"}.get(
        word, "C1" if "changes" in word else "C4"
    )


def forest_figure(doc: dict[str, Any], path: Path) -> Path | None:
    """``verdicts_forest.png`` (None when no hypothesis ran): one panel for the pass@1 comparisons and one
    for the others (pass@k_max), each on its own scale, so a 0.01 difference is not flattened by a 0.2 one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(v, r) for v in doc["verdicts"] for r in v["rows"]]
    if not rows:
        return None
    groups = [
        ("pass@1", [x for x in rows if x[1]["metric"] == "pass@1"]),
        ("pass@k (largest k of the study)", [x for x in rows if x[1]["metric"] != "pass@1"]),
    ]
    groups = [g for g in groups if g[1]]
    fig, axes = plt.subplots(
        len(groups),
        1,
        figsize=(9.6, 0.3 * len(rows) + 2.4),
        squeeze=False,
        gridspec_kw={"height_ratios": [len(g[1]) + 1 for g in groups]},
        constrained_layout=True,
    )
    delta = doc.get("delta", math.nan)
    for ax, (title, members) in zip(axes[:, 0], groups):
        n = len(members)
        labels = []
        for i, (v, r) in enumerate(members):
            y = n - 1 - i
            ax.plot(r["t_ci"], [y - 0.25] * 2, color="0.45", lw=1.0)
            ax.plot([r["lo"], r["hi"]], [y, y], color=_color(v, r), lw=4.0, solid_capstyle="butt")
            ax.plot([r["estimate"]], [y], "o", color="black", ms=3.5)
            word = v["verdict"] if r.get("decides", True) else "shown, not in the rule"
            word = word if len(word) < 34 else word[:32] + "..."
            labels.append(f"{v['hypothesis']} {v['task']}: {r['x']} - {r['y']}, {r['metric']}  [{word}]")
        ax.axvline(0.0, color="0.2", lw=0.9)
        ax.axvline(-delta, color="0.4", lw=0.9, ls=":")
        ax.set_yticks(range(n))
        ax.set_yticklabels(labels[::-1], fontsize=7.5)
        ax.set_ylim(-0.8, n - 0.4)
        ax.grid(alpha=0.3, axis="x")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("difference X - Y", fontsize=9)
    names = [
        ("C2", "supported"),
        ("C3", "refuted"),
        ("C0", "inconclusive"),
        ("C1", "H5: changes"),
        ("C4", "H5: no detectable change"),
        ("0.65", "shown, not in the rule"),
    ]
    present = {_color(v, r) for v, r in rows}
    ax = axes[0, 0]
    handles = [ax.plot([], [], color=c, lw=4)[0] for c, _ in names if c in present]
    labels = [name for c, name in names if c in present]
    handles += [ax.plot([], [], color="0.45", lw=1)[0], ax.plot([], [], color="0.4", ls=":")[0]]
    labels += ["problem-level t 95% CI", f"-delta = -{delta}"]
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle("H1-H5: estimate (dot) and 95% seed-then-problem bootstrap interval (bar)", fontsize=11)
    _save(fig, path)
    return path


def figures(doc: dict[str, Any], out: str | Path) -> list[Path]:
    """Both figures into ``out``; returns the paths written."""
    out = Path(out)
    written = [
        curves_figure(doc, out / "pass_at_k_vs_base.png"),
        forest_figure(doc, out / "verdicts_forest.png"),
    ]
    return [p for p in written if p is not None]


__all__ = ["curves_figure", "figures", "forest_figure"]
