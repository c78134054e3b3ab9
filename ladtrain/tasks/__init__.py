"""Tasks: prompts + verifiers. See :mod:`ladtrain.tasks.base` for the protocol.

``get_task(spec)`` resolves a task spec through the registry below; each entry names a factory
``make(arg: str | None, **options) -> Task`` imported only when used.

Spec grammar: ``NAME[:ARG][,KEY=VALUE]...``

- ``countdown``, ``countdown:3``
- ``puzzle24``, ``puzzle24,validation_fraction=0.1`` (make 24 from four numbers, ``+ - * /`` and parentheses)
- ``reasoning_gym:leg_counting,size=500,seed=1`` (unknown keys go to the generator's config)
- ``jsonl:data/gsm8k.jsonl,prompt_field=question,answer_field=answer,extract=auto``
- ``parquet:test.parquet,preset=math``, ``hf:saved_folder,split=train,test_split=test``,
  ``gsm8k:local/gsm8k``, ``math:math500.jsonl`` (local data only: :mod:`ladtrain.tasks.sources`)
- ``humaneval``, ``humaneval,timeout=10,test_every=0``
- ``code_jsonl:problems.jsonl,workers=2``

``ARG`` is everything between the first ``:`` and the first ``,`` (so a path may contain ``:`` but not
``,``). Values are typed: ``true``/``false``, ``none``, integers and floats become Python values, anything
else stays a string. Keyword ``options`` given to ``get_task`` override those in the spec string.

Escapes in values (so that an instruction can hold any text): ``\,`` is a comma that does not end the
value, ``\n`` a newline, ``\t`` a tab and ``\\`` one backslash; any other backslash stays as written
(``\boxed{}`` needs no escaping). An escaped value is always a string. Longer texts: the tasks that take an
``instruction`` also take ``instruction_file=PATH``.
"""

from __future__ import annotations

import importlib
import re
from pathlib import PurePath
from typing import Any

from ladtrain.tasks.base import (
    REASONS,
    Problem,
    Score,
    Task,
    TaskError,
    reason_counts,
    score_all,
    score_completions,
)

# spec prefix -> "module:factory"
TASKS: dict[str, str] = {
    "countdown": "ladtrain.tasks.countdown:make",
    "puzzle24": "ladtrain.tasks.puzzle24:make",
    "reasoning_gym": "ladtrain.tasks.gym:make",
    "jsonl": "ladtrain.tasks.sources:make_jsonl",
    "parquet": "ladtrain.tasks.sources:make_parquet",
    "hf": "ladtrain.tasks.sources:make_hf",
    "gsm8k": "ladtrain.tasks.sources:make_gsm8k",
    "math": "ladtrain.tasks.sources:make_math",
    "humaneval": "ladtrain.tasks.code:make_humaneval",
    "code_jsonl": "ladtrain.tasks.code:make_jsonl",
}


def parse_value(text: str) -> Any:
    """``"3"`` -> 3, ``"0.5"`` -> 0.5, ``"true"`` -> True, ``"none"`` -> None, else the string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


_ESCAPES = {",": ",", "n": "\n", "t": "\t", "\\": "\\"}


def _split_unescaped(spec: str) -> list[tuple[str, bool]]:
    """Split at commas not written ``\,``; each part unescaped, with whether it held an escape."""
    parts: list[tuple[str, bool]] = []
    buf: list[str] = []
    escaped, i = False, 0
    while i < len(spec):
        c = spec[i]
        if c == "\\" and i + 1 < len(spec) and spec[i + 1] in _ESCAPES:
            buf.append(_ESCAPES[spec[i + 1]])
            escaped, i = True, i + 2
            continue
        if c == ",":
            parts.append(("".join(buf), escaped))
            buf, escaped = [], False
        else:
            buf.append(c)
        i += 1
    parts.append(("".join(buf), escaped))
    return parts


def parse_spec(spec: str) -> tuple[str, str | None, dict[str, Any]]:
    """Split ``NAME[:ARG][,KEY=VALUE]...`` into ``(name, arg, options)`` (escapes: module docstring)."""
    (head, _), *pairs = _split_unescaped(spec)
    name, _, arg = head.partition(":")
    options: dict[str, Any] = {}
    for pair, escaped in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key.strip().isidentifier():
            raise TaskError(f"task spec {spec!r}: expected KEY=VALUE after a comma, got {pair!r}")
        options[key.strip()] = value if escaped else parse_value(value.strip())
    return name.strip(), (arg.strip() or None), options


_SET_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def named_spec(text: str, reserved: tuple[str, ...] = ()) -> tuple[str, str]:
    """``NAME=SPEC`` -> ``(NAME, SPEC)`` (an evaluation set's name and task spec); a plain ``SPEC`` gets
    a name from its argument's file or folder stem (``jsonl:data/gsm8k_test.jsonl`` -> ``gsm8k_test``),
    else ``NAME_ARG`` or the task's name (``countdown:3`` -> ``countdown_3``). An ``=`` after the first
    ``:`` or ``,`` belongs to the spec. ValueError for an empty spec or a ``reserved`` name."""
    head, eq, rest = text.partition("=")
    if eq and _SET_NAME.fullmatch(head.strip()) and not any(c in head for c in ":,/"):
        name, spec = head.strip(), rest.strip()
    else:
        name, spec = "", text.strip()
    if not spec:
        raise ValueError("empty task spec (give NAME=SPEC or SPEC)")
    if not name:
        task, arg, _ = parse_spec(spec)
        if arg and any(c in arg for c in "/.\\"):
            name = PurePath(arg.rstrip("/")).stem or task
        else:
            name = f"{task}_{arg}" if arg else task
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    if name in reserved:
        raise ValueError(f"the name {name!r} is taken (the task's own held-out split); choose another")
    return name, spec


def get_task(spec: str, **options) -> Task:
    """Build the task named by ``spec`` (see the module docstring for the grammar)."""
    name, arg, spec_options = parse_spec(spec)
    if name not in TASKS:
        raise TaskError(f"unknown task {spec!r}; known: {', '.join(sorted(TASKS))}")
    module_name, factory = TASKS[name].split(":")
    make = getattr(importlib.import_module(module_name), factory)
    try:
        return make(arg, **{**spec_options, **options})
    except TypeError as err:  # an unknown keyword option is a user mistake, whichever factory
        if "unexpected keyword argument" not in str(err):
            raise
        bad = str(err).rsplit("argument", 1)[1].strip()
        raise TaskError(f"task spec {spec!r}: unknown option {bad}") from None


__all__ = ["REASONS", "Problem", "Score", "Task", "TaskError", "TASKS", "get_task", "named_spec",
           "parse_spec", "parse_value", "reason_counts", "score_all", "score_completions"]
