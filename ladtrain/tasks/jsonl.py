"""Reading JSONL task files line by line, with ``file:line: what is wrong`` for every bad line.

Shared by the math (:mod:`ladtrain.tasks.math_jsonl`) and code (:mod:`ladtrain.tasks.code`) tasks: they
walk :func:`objects`, validate each row their own way, collect errors in line order, and finish with
:func:`raise_on_errors` so that a run never starts on bad data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Sequence

from ladtrain.tasks import TaskError


def objects(
    path: Path, lines: Sequence[str] | None = None
) -> Iterator[tuple[int, str, dict | None, str | None]]:
    """Yield ``(lineno, where, row, error)`` for each non-blank line: ``row`` is the JSON object, or None
    with ``error`` saying what is wrong (``where`` is ``file:line``). An unreadable file raises TaskError."""
    if lines is None:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise TaskError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise TaskError(f"{path}: cannot read: {e}") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            yield lineno, where, None, f"{where}: invalid JSON: {e.msg} (column {e.colno})"
            continue
        if not isinstance(row, dict):
            yield lineno, where, None, f"{where}: expected a JSON object, got {type(row).__name__}"
            continue
        yield lineno, where, row, None


def raise_on_errors(path: Path, problems: Sequence, errors: Sequence[str]) -> None:
    """The first bad line (and how many more there are), or an empty file, as one TaskError."""
    if errors:
        more = f" (and {len(errors) - 1} more bad lines)" if len(errors) > 1 else ""
        raise TaskError(errors[0] + more)
    if not problems:
        raise TaskError(f"{path}: no problems (the file is empty)")
