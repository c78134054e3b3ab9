"""Learning-curve figure of a run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def _smooth(values: Sequence[float], window: int) -> list[float]:
    out, acc = [], []
    for v in values:
        acc.append(v)
        if len(acc) > window:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def learning_curves(rows: Sequence[dict], path: str | Path, title: str = "", reference: dict | None = None) -> Path:
    """Write :func:`figure` to ``path`` (PNG)."""
    fig = figure(rows, title, reference)  # selects the Agg backend before pyplot is imported here
    import matplotlib.pyplot as plt

    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def figure(rows: Sequence[dict], title: str = "", reference: dict | None = None):
    """The figure with training reward, loss and completion length per step (raw and a moving average).
    ``reference`` maps a label to a held-out accuracy drawn as a horizontal line on the reward panel.
    Steps are whole numbers on the axis; the legend sits below the panels, so it covers no line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    steps = [r["step"] for r in rows]
    window = max(1, len(rows) // 20)
    panels = [("reward_mean", "training reward (mean)"), ("loss", "loss"), ("completion_len", "completion tokens")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), constrained_layout=True)
    for ax, (key, label) in zip(axes, panels):
        values = [r.get(key, float("nan")) for r in rows]
        ax.plot(steps, values, color="0.75", lw=0.8, label="per step")
        ax.plot(steps, _smooth(values, window), color="C0", lw=1.8, label=f"mean of {window}")
        ax.set_xlabel("RL step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(label)
        ax.grid(alpha=0.3)
    for i, (name, value) in enumerate((reference or {}).items()):
        axes[0].axhline(value, color=f"C{i + 1}", ls="--", lw=1.2, label=f"{name} (held-out)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    return fig


__all__ = ["figure", "learning_curves"]
