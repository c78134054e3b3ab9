"""Figures (matplotlib, Agg backend: no display needed): a run's learning curves, and a study's reward curves,
pass@k, diversity and cost."""

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


def learning_curves(
    rows: Sequence[dict], path: str | Path, title: str = "", reference: dict | None = None
) -> Path:
    """PNG with training reward, loss and completion length per step (raw and a moving average).
    ``reference`` maps a label to a held-out accuracy drawn as a horizontal line on the reward panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    window = max(1, len(rows) // 20)
    panels = [
        ("reward_mean", "training reward (mean)"),
        ("loss", "loss"),
        ("completion_len", "completion tokens"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), constrained_layout=True)
    for ax, (key, label) in zip(axes, panels):
        values = [r.get(key, float("nan")) for r in rows]
        ax.plot(steps, values, color="0.75", lw=0.8, label="per step")
        ax.plot(steps, _smooth(values, window), color="C0", lw=1.8, label=f"mean of {window}")
        ax.set_xlabel("RL step")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    for i, (name, value) in enumerate((reference or {}).items()):
        axes[0].axhline(value, color=f"C{i + 1}", ls="--", lw=1.2, label=f"{name} (held-out)")
    axes[0].legend(fontsize=8)
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


__all__ = ["learning_curves", "study_figures"]
