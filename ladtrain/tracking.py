"""Experiment tracking: ``--report-to tensorboard`` and ``--report-to wandb`` (offline), like TRL's
``report_to``.

:func:`open_trackers` returns one :class:`Trackers` object for the names given (``none`` or nothing:
it does nothing). The trainer calls

* :meth:`Trackers.metrics` with every ``metrics.jsonl`` row: each numeric value becomes a scalar
  ``train/<key>`` at the row's step (lists, strings and None are left out; booleans are 0/1);
* :meth:`Trackers.evaluation` with every ``eval.jsonl`` row: scalars ``eval/<set>/<metric>`` at the
  row's step, and ``eval/<set>/<metric>/lo`` and ``/hi`` for its 95% interval over problems;
* :meth:`Trackers.samples` with a few completions of an evaluation: a text table (Markdown in
  TensorBoard, a ``wandb.Table`` in W&B) under ``samples/<set>``.

Steps must not decrease from call to call (W&B drops a row logged at an earlier step); the trainer logs
the base evaluation at step 0, then each RL step's row, then the evaluations of that step.

**TensorBoard**: event files in ``RUN/tensorboard/`` (``tensorboard --logdir RUN/tensorboard``), written
with ``torch.utils.tensorboard.SummaryWriter`` (needs the ``tensorboard`` package: the ``tracking``
extra). **W&B**: ``wandb.init(mode="offline")`` only, files in ``RUN/wandb/`` (``wandb sync`` uploads
them later, if the user wants); ``WANDB_MODE=offline`` is set for the process too, so nothing here
touches the network. Needs the ``wandb`` extra.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

from ladtrain.config import ConfigError

REPORTERS = ("none", "tensorboard", "wandb")


class TrackingError(ConfigError):
    """A tracker that cannot be used (unknown name, package missing): one line."""


def parse_report_to(text: str | Sequence[str]) -> list[str]:
    """``"tensorboard,wandb"`` (or a list) -> the names, checked; ``none`` alone means no tracker."""
    names = [n.strip() for part in ([text] if isinstance(text, str) else text) for n in str(part).split(",")]
    names = [n for n in names if n]
    for n in names:
        if n not in REPORTERS:
            raise TrackingError(f"--report-to: unknown {n!r}; known: {', '.join(REPORTERS)}")
    if "none" in names and len(names) > 1:
        raise TrackingError("--report-to: none cannot be combined with a tracker")
    return [n for n in names if n != "none"]


def scalars(row: dict[str, Any]) -> dict[str, float]:
    """The numeric values of a row (booleans as 0/1); NaN is kept (TensorBoard draws a gap)."""
    out = {}
    for key, value in row.items():
        if isinstance(value, bool):
            out[key] = float(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


def _cell(value: Any, width: int = 200) -> str:
    text = "" if value is None else str(value)
    text = text.replace("|", "\\|").replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 1] + "…"


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (TensorBoard's text plugin renders it); ``|`` and newlines escaped, long cells cut."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


class _TensorBoard:
    def __init__(self, out: Path, purge_step: int | None = None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise TrackingError("--report-to tensorboard: needs the tensorboard package "
                                "(pip install 'lad[tracking]')") from None
        self.folder = out / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.folder), purge_step=purge_step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def table(self, tag: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], step: int) -> None:
        self.writer.add_text(tag, markdown_table(columns, rows), step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


class _WandB:
    def __init__(self, out: Path, config: dict[str, Any], name: str):
        os.environ["WANDB_MODE"] = "offline"  # never online, whatever the user's settings say
        try:
            import wandb
        except ImportError:
            raise TrackingError("--report-to wandb: needs the wandb package "
                                "(pip install 'lad[wandb]')") from None
        self.wandb = wandb
        settings = wandb.Settings(silent=True, console="off", save_code=False)
        self.run = wandb.init(mode="offline", dir=str(out), config=config, name=name, project="ladtrain",
                              reinit="create_new", settings=settings)

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def table(self, tag: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], step: int) -> None:
        table = self.wandb.Table(columns=list(columns), data=[[_cell(v) for v in r] for r in rows])
        self.run.log({tag: table}, step=step)

    def close(self) -> None:
        self.run.finish()


class Trackers:
    """Every open tracker; each call goes to all of them (none: nothing happens)."""

    def __init__(self, backends: Sequence[Any] = ()):
        self.backends = list(backends)

    def metrics(self, row: dict[str, Any]) -> None:
        """One ``metrics.jsonl`` row: ``train/<key>`` scalars at ``row["step"]``."""
        values = {f"train/{k}": v for k, v in scalars(row).items() if k != "step"}
        for b in self.backends:
            b.scalars(values, int(row["step"]))

    def evaluation(self, row: dict[str, Any]) -> None:
        """One ``eval.jsonl`` row (``step``, ``eval`` = the set's name, metric means, ``intervals``):
        ``eval/<set>/<metric>`` and ``.../lo``, ``.../hi`` scalars at ``row["step"]``."""
        name = row["eval"]
        values = {f"eval/{name}/{k}": v for k, v in scalars(row).items() if k != "step"}
        for metric, ci in (row.get("intervals") or {}).items():
            for side in ("lo", "hi"):
                if ci.get(side) is not None and not math.isnan(ci[side]):
                    values[f"eval/{name}/{metric}/{side}"] = float(ci[side])
        for b in self.backends:
            b.scalars(values, int(row["step"]))

    def samples(self, name: str, step: int, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """A text table of sample completions under ``samples/<name>``."""
        for b in self.backends:
            b.table(f"samples/{name}", columns, rows, step)

    def close(self) -> None:
        """Flush and close every tracker (once; also at interpreter exit when a run stops on an error)."""
        backends, self.backends = self.backends, []
        for b in backends:
            b.close()

    def __enter__(self) -> Trackers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_trackers(report_to: str | Sequence[str], out: str | Path, config: dict[str, Any] | None = None,
                  name: str = "", purge_step: int | None = None) -> Trackers:
    """The trackers named in ``report_to`` (:func:`parse_report_to`), writing under the run folder ``out``.
    ``purge_step``: a resumed run's first step; TensorBoard then hides the events a killed run had logged
    from that step on (``SummaryWriter(purge_step=...)``), which the resumed run logs again."""
    import atexit

    out = Path(out)
    backends: list[Any] = []
    for n in parse_report_to(report_to):
        if n == "tensorboard":
            backends.append(_TensorBoard(out, purge_step))
        elif n == "wandb":
            backends.append(_WandB(out, config or {}, name or out.name))
    trackers = Trackers(backends)
    if backends:
        atexit.register(trackers.close)
    return trackers


__all__ = ["REPORTERS", "Trackers", "TrackingError", "markdown_table", "open_trackers", "parse_report_to",
           "scalars"]
