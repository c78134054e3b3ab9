"""Figures (matplotlib, Agg backend: no display needed): a run's learning curves with the periodic
held-out evaluations, pass@k curves of the base and the trained policy with 95% intervals, and a
study's reward curves, pass@k, diversity and cost (:func:`study_figures`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np


def _smooth(values: Sequence[float], window: int) -> list[float]:
    out, acc = [], []
    for v in values:
        acc.append(v)
        if len(acc) > window:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def learning_curves(rows: Sequence[dict], path: str | Path, title: str = "", reference: dict | None = None,
                    evals: Sequence[dict] | None = None) -> Path:
    """Write :func:`figure` to ``path`` (PNG)."""
    fig = figure(rows, title, reference, evals)  # selects the Agg backend before pyplot is imported here
    import matplotlib.pyplot as plt

    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def figure(rows: Sequence[dict], title: str = "", reference: dict | None = None,
           evals: Sequence[dict] | None = None):
    """The figure of training reward, loss and completion length per step (raw and a moving average).
    ``reference`` maps a label to a held-out accuracy drawn as a horizontal line on the reward panel.
    ``evals``: the rows of ``eval.jsonl`` (``step``, ``eval`` = the set, ``accuracy``, ``intervals``);
    when given, a fourth panel shows each set's held-out accuracy against the RL step with its 95%
    interval over problems. Steps are whole numbers on every axis; the reward panel's legend sits below
    the panels, so it covers no line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    steps = [r["step"] for r in rows]
    window = max(1, len(rows) // 20)
    panels = [("reward_mean", "training reward (mean)"), ("loss", "loss"),
              ("completion_len", "completion tokens")]
    n_panels = len(panels) + bool(evals)
    fig, axes = plt.subplots(1, n_panels, figsize=(4.2 * n_panels, 3.4), constrained_layout=True)
    for ax, (key, label) in zip(axes, panels):
        values = [r.get(key, float("nan")) for r in rows]
        ax.plot(steps, values, color="0.75", lw=0.8, label="per step")
        ax.plot(steps, _smooth(values, window), color="C0", lw=1.8, label=f"mean of {window}")
        ax.set_xlabel("RL step")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    for i, (name, value) in enumerate((reference or {}).items()):
        axes[0].axhline(value, color=f"C{i + 1}", ls="--", lw=1.2, label=f"{name} (held-out)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8, frameon=False)
    if evals:
        _eval_panel(axes[-1], evals)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    return fig




def _eval_panel(ax, evals: Sequence[dict]) -> None:
    names = list(dict.fromkeys(r["eval"] for r in evals))
    for i, name in enumerate(names):
        mine = sorted((r for r in evals if r["eval"] == name), key=lambda r: r["step"])
        steps = [r["step"] for r in mine]
        acc = [r["accuracy"] for r in mine]
        ci = [(r.get("intervals") or {}).get("accuracy", {}) for r in mine]
        lo = [c.get("lo", math.nan) for c in ci]
        hi = [c.get("hi", math.nan) for c in ci]
        ax.plot(steps, acc, marker="o", ms=3, color=f"C{i}", label=name)
        ax.fill_between(steps, lo, hi, color=f"C{i}", alpha=0.2, lw=0)
    ax.set_xlabel("RL step")
    ax.set_title("held-out accuracy (95% interval)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def pass_at_k_curves(results: dict[str, dict], path: str | Path, title: str = "",
                     labels: Sequence[str] = ("base", "trained")) -> Path:
    """PNG: for each evaluation set (``results[name]`` = :func:`ladtrain.evaluation.versus`), the mean
    pass@k of the base and the trained policy against k on a log2 axis with their 95% intervals over
    problems (shaded), the crossover k (dotted line) when there is one, and below it the paired
    difference trained - base with its interval and the zero line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(2, len(names), figsize=(4.6 * len(names), 6.0), squeeze=False, sharex="col",
                             gridspec_kw={"height_ratios": [2, 1]}, constrained_layout=True)
    for col, name in enumerate(names):
        v = results[name]
        ks = v["ks"]
        top, bottom = axes[0][col], axes[1][col]
        for i, (side, label) in enumerate(zip(("base", "trained"), labels)):
            stats = [v["metrics"][f"pass@{k}"][side] for k in ks]
            top.plot(ks, [s["mean"] for s in stats], marker="o", ms=3, color=f"C{i}", label=label)
            top.fill_between(ks, [s["lo"] for s in stats], [s["hi"] for s in stats], color=f"C{i}", alpha=0.2,
                             lw=0)
        diff = [v["metrics"][f"pass@{k}"]["difference"] for k in ks]
        bottom.plot(ks, [d["mean"] for d in diff], marker="o", ms=3, color="C2")
        bottom.fill_between(ks, [d["lo"] for d in diff], [d["hi"] for d in diff], color="C2", alpha=0.2, lw=0)
        bottom.axhline(0.0, color="0.3", lw=0.8)
        cross = v.get("crossover_k")
        for ax in (top, bottom):
            if cross is not None:
                ax.axvline(cross, color="0.4", ls=":", lw=1.2)
            ax.set_xscale("log", base=2)
            ax.grid(alpha=0.3)
        top.set_title(f"{name}: {v['problems']} problems x {v['samples_per_problem']} samples", fontsize=10)
        top.set_ylabel("pass@k")
        note = f"crossover k = {cross}" if cross is not None else f"no crossover up to k = {v['k_max']}"
        top.legend(fontsize=8, loc="lower right", title=note, title_fontsize=8)
        bottom.set_ylabel(f"{labels[1]} - {labels[0]}")
        bottom.set_xlabel("k (log scale)")
        bottom.set_xticks(ks)
        bottom.set_xticklabels([str(k) for k in ks], fontsize=7, rotation=45 if len(ks) > 8 else 0)
    if title:
        fig.suptitle(title)
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def study_figures(results: dict[str, Any], out: Path) -> None:
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
        ax.errorbar(
            ks,
            mu,
            yerr=sd,
            marker="o",
            capsize=3,
            label=label,
            color="0.5" if label == "base" else f"C{i - 1}",
            ls="--" if label == "base" else "-",
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k")
    ax.set_ylabel("held-out pass@k")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(out / "pass_at_k.png", dpi=110)
    plt.close(fig)

    # diversity
    div_metrics = [
        m for m in ("distinct_correct", "answer_entropy", "dist-3", "dist-4") if m in results["metrics"]
    ]
    fig, axes = plt.subplots(
        1, len(div_metrics), figsize=(3.2 * len(div_metrics), 3.6), constrained_layout=True
    )
    for ax, m in zip(np.atleast_1d(axes), div_metrics):
        names = ["base"] + labels
        mu = [results["table"][n][m]["mean"] for n in names]
        sd = [
            0.0 if math.isnan(results["table"][n][m]["std"]) else results["table"][n][m]["std"] for n in names
        ]
        ax.bar(
            range(len(names)), mu, yerr=sd, capsize=3, color=["0.6"] + [f"C{i}" for i in range(len(labels))]
        )
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


__all__ = ["figure", "learning_curves", "pass_at_k_curves", "study_figures"]
