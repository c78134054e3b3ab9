"""``samples.jsonl``: what the model saw, wrote and was rewarded for, one JSON object per sample.

Written by the trainer into the run folder (:class:`SamplesLog`):

* RL steps: ``--log-samples N`` samples per step (default :data:`DEFAULT_PER_STEP`; ``0`` = none,
  ``all`` = every sample of the step), the first ``N`` rows of the step's rollout (prompt-major, so the
  first group's completions side by side, with their advantages);
* every evaluation (``eval base``, ``eval trained``): all its samples.

Each record: ``kind`` (``train`` or ``eval``), ``step`` (RL step; ``eval`` records: the step the policy
had reached), ``eval`` (the evaluation's name, ``train`` records: null), ``problem_id``, ``sample``
(index within the problem's group), ``prompt`` (exactly the text given to the tokenizer, after the
chat template and system prompt), ``completion`` (the decoded completion), ``answer`` (what the
verifier extracted), ``reward`` (the training reward; eval records: the verifier's), ``correct`` (the
verifier's reward, which defines held-out accuracy), ``reason`` (:data:`ladtrain.tasks.base.REASONS`),
``advantage`` (eval records: null), ``truncated`` (cut at ``max_new_tokens``), ``completion_tokens``,
and ``rewards`` (each reward component's value, when there are several).

Bounded size: ``prompt`` and ``completion`` are clipped at :data:`MAX_TEXT_CHARS` characters each
(the record then says ``"clipped": true``); RL records stop once the file reaches
:data:`MAX_TRAIN_BYTES` (one record ``{"kind": "cap", ...}`` says so, and the console warns once);
evaluation records are always written (their number is fixed: problems x samples). On ``--resume`` the
records of steps after the checkpoint are dropped, as ``metrics.jsonl``'s rows are.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

DEFAULT_PER_STEP = 4
MAX_TEXT_CHARS = 8000
MAX_TRAIN_BYTES = 50 * 2**20
FILE = "samples.jsonl"


class SamplesLogError(ValueError):
    """A ``--log-samples`` value that is not a count (a user mistake: one line)."""


def per_step(value: int | str | None) -> int | None:
    """``--log-samples`` as a count: an integer >= 0, or None for ``all``."""
    if value is None:
        return DEFAULT_PER_STEP
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "all":
            return None
        if not text.isdigit():
            raise SamplesLogError(f"--log-samples must be a count >= 0 or 'all', got {value!r}")
        return int(text)
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise SamplesLogError(f"--log-samples must be a count >= 0 or 'all', got {value!r}")
    return int(value)


def _clip(text: str) -> tuple[str, bool]:
    return (text, False) if len(text) <= MAX_TEXT_CHARS else (text[:MAX_TEXT_CHARS], True)


def _number(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def records(
    *,
    kind: str,
    step: int,
    problem_ids: Sequence[str],
    prompts: Sequence[str],
    completions: Sequence[str],
    answers: Sequence[str | None],
    rewards: Sequence[float | None],
    correct: Sequence[float | None],
    reasons: Sequence[str],
    truncated: Sequence[bool],
    lengths: Sequence[int],
    group_size: int,
    advantages: Sequence[float] | None = None,
    components: dict[str, Sequence[float | None]] | None = None,
    eval_name: str | None = None,
    rows: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """The records of the given ``rows`` (default: all) of one rollout. ``prompts`` has one entry per
    row (the rendered prompt of its problem); ``group_size`` numbers each row within its problem."""
    rows = range(len(completions)) if rows is None else rows
    out = []
    for i in rows:
        prompt, clipped_p = _clip(prompts[i])
        completion, clipped_c = _clip(completions[i])
        rec: dict[str, Any] = {
            "kind": kind,
            "step": step,
            "eval": eval_name,
            "problem_id": problem_ids[i],
            "sample": i % group_size,
            "prompt": prompt,
            "completion": completion,
            "answer": answers[i],
            "reward": _number(rewards[i]),
            "correct": _number(correct[i]),
            "reason": reasons[i],
            "advantage": None if advantages is None else _number(advantages[i]),
            "truncated": bool(truncated[i]),
            "completion_tokens": None if lengths[i] is None else int(lengths[i]),
        }
        if components and len(components) > 1:
            rec["rewards"] = {name: _number(v[i]) for name, v in components.items()}
        if clipped_p or clipped_c:
            rec["clipped"] = True
        out.append(rec)
    return out


class SamplesLog:
    """Appends records to ``RUN/samples.jsonl`` (flushed after each batch); see the module docstring.
    ``path=None`` (ranks other than 0) writes nothing."""

    def __init__(
        self,
        path: str | Path | None,
        per_step_count: int | None = DEFAULT_PER_STEP,
        max_train_bytes: int = MAX_TRAIN_BYTES,
    ):
        self.path = None if path is None else Path(path)
        self.per_step = per_step_count
        self.max_train_bytes = max_train_bytes
        self.capped = self.path is not None and self.path.is_file() and self._capped_in_file()

    def _capped_in_file(self) -> bool:
        with open(self.path, "rb") as f:
            return any(b'"kind": "cap"' in line for line in f)

    def train_rows(self, batch_size: int) -> list[int]:
        """Which rows of a step's rollout to record: the first ``--log-samples`` (all for ``all``)."""
        n = batch_size if self.per_step is None else min(self.per_step, batch_size)
        return list(range(n))

    def size(self) -> int:
        return self.path.stat().st_size if self.path is not None and self.path.is_file() else 0

    def write(self, recs: Sequence[dict[str, Any]]) -> None:
        """Append ``recs``; RL records past the size cap are replaced by one ``cap`` record."""
        if self.path is None or not recs:
            return
        lines = []
        for rec in recs:
            if rec["kind"] == "train":
                if self.capped:
                    continue
                if self.size() + sum(len(x) for x in lines) >= self.max_train_bytes:
                    self.capped = True
                    lines.append(
                        json.dumps(
                            {
                                "kind": "cap",
                                "step": rec["step"],
                                "bytes": self.max_train_bytes,
                                "note": "no more RL samples are logged (size cap); evaluation "
                                "samples still are",
                            }
                        )
                        + "\n"
                    )
                    warnings.warn(
                        f"{self.path}: reached its cap of {self.max_train_bytes / 2**20:g} MiB: no more "
                        "RL samples are logged (evaluation samples still are)",
                        stacklevel=2,
                    )
                    continue
            lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
        from ladtrain.atomic import WriteError

        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.writelines(lines)
                f.flush()
        except OSError as err:
            raise WriteError(f"cannot write {self.path}: {err.strerror or err}") from None

    def drop_after(self, step: int) -> None:
        """Keep only the records of steps <= ``step`` (a resume from the checkpoint of ``step``) and the
        base evaluation's; a torn last line is dropped."""
        if self.path is None or not self.path.is_file():
            return
        kept = []
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("step", 0) <= step and not (rec.get("eval") == "trained"):
                    kept.append(line if line.endswith("\n") else line + "\n")
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        tmp.write_text("".join(kept), encoding="utf-8")
        os.replace(tmp, self.path)
        self.capped = any('"kind": "cap"' in line for line in kept)


def read(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a ``samples.jsonl`` file."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


__all__ = [
    "DEFAULT_PER_STEP",
    "FILE",
    "MAX_TEXT_CHARS",
    "MAX_TRAIN_BYTES",
    "SamplesLog",
    "SamplesLogError",
    "per_step",
    "read",
    "records",
]
