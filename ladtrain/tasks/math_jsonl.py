r"""Math word problems from a JSONL file (GSM8K, MATH, or any file with a prompt and an answer field).

Spec: ``jsonl:PATH[,KEY=VALUE]...`` with the keys of :class:`MathOptions`, for example
``jsonl:gsm8k.jsonl,prompt_field=question,answer_field=answer`` or
``jsonl:math.jsonl,prompt_field=problem,answer_field=solution,extract=boxed``.

* **Validation before the run**: every line is checked when the task is built; the first bad line is
  reported as ``file:line: what is wrong`` (invalid JSON, not an object, a missing or empty field, no
  answer found in the reference) and :class:`~ladtrain.tasks.TaskError` stops the run.
* **Reference**: the answer field through ``reference_extract`` (``auto``: ``\boxed{}`` if present, else
  the text after ``####``, else the whole field).
* **Completion answer** (``extract``): ``boxed`` (the last ``\boxed{...}``, nested braces allowed),
  ``hash`` (text after the last ``####``), ``last_number``, or ``auto`` (boxed, else hash, else last number).
* **Equivalence**: ``math_verify.parse``/``verify`` on both answers wrapped as ``$...$`` (so
  ``\frac{1}{2}`` = ``0.5`` and ``2\sqrt{2}`` = ``\sqrt{8}``); reward 1 if equivalent, else 0.
  Timeout-safe: in the main thread math-verify's own ``SIGALRM`` timeouts apply; in any other thread the
  check runs in a helper process that is killed after ``timeout`` seconds (reward 0, info "timeout").
* **Split**: ``test_every=N`` puts every N-th valid line in ``test`` (default 10); ``test_file=PATH`` uses a
  separate file instead (validated the same way).
* **Instruction** (``instruction=TEXT``, ``instruction_file=PATH``, or ``auto``, the default): added after
  the question, separated by a blank line. ``auto`` adds nothing for a model without a chat template (the
  question alone, as a base model continues it) and, for a chat model (:meth:`MathTask.for_chat`, called
  by the trainer when the tokenizer has a chat template), the instruction of :data:`INSTRUCTIONS` that
  matches ``extract``, so the model is asked for the format the extractor reads. ``none``: never.
* **Reasons** (:data:`ladtrain.tasks.base.REASONS`): ``no_tag`` when ``extract`` is ``boxed`` or ``hash``
  and the completion has no ``\boxed{}`` / ``####``; ``no_answer`` when ``auto`` or ``last_number`` finds
  nothing; ``unparsable`` when math-verify cannot read the answer (and it is not the reference's text);
  ``timeout``; ``correct``; ``wrong``.
"""

from __future__ import annotations

import re
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable

from ladtrain.tasks import TaskError, jsonl
from ladtrain.tasks.base import (
    SEPARATOR,
    HeldOutSplit,
    Problem,
    Score,
    every_nth,
    instruction_text,
    options_of,
    with_instruction,
)

# ---------------------------------------------------------------- answer extraction


def extract_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` (or ``\fbox{...}``), balanced braces; ``\boxed 5`` also works."""
    best = None
    for m in re.finditer(r"\\(?:boxed|fbox)\s*", text):
        i = m.end()
        if i < len(text) and text[i] == "{":
            depth, j = 0, i
            while j < len(text):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            if depth == 0:
                best = text[i + 1 : j]
        else:
            tail = re.match(r"[^\s$]+", text[i:])
            if tail:
                best = tail.group(0)
    return best.strip() if best is not None and best.strip() else None


def extract_hash(text: str) -> str | None:
    """Text after the last ``####`` up to the end of its line (GSM8K)."""
    if "####" not in text:
        return None
    answer = text.rsplit("####", 1)[1].strip().splitlines()
    return answer[0].strip() if answer and answer[0].strip() else None


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def extract_last_number(text: str) -> str | None:
    """The last number in the text, thousands separators removed."""
    found = _NUMBER.findall(text)
    return found[-1].replace(",", "").rstrip(".") if found else None


def _extract_auto(text: str) -> str | None:
    return extract_boxed(text) or extract_hash(text) or extract_last_number(text)


def _reference_auto(text: str) -> str | None:
    return extract_boxed(text) or extract_hash(text) or (text.strip() or None)


EXTRACTORS: dict[str, Callable[[str], str | None]] = {
    "boxed": extract_boxed,
    "hash": extract_hash,
    "last_number": extract_last_number,
    "auto": _extract_auto,
}
REFERENCE_EXTRACTORS: dict[str, Callable[[str], str | None]] = {
    **EXTRACTORS,
    "auto": _reference_auto,
    "none": lambda text: text.strip() or None,
}

# ---------------------------------------------------------------- equivalence


def _verify(gold: str, pred: str, timeout: int | None) -> bool | str:
    """True/False, or ``"unparsable"`` when math-verify cannot read the answer as maths (it parses to
    nothing, or only to its raw text, while the reference is maths) and it is not equivalent to it."""
    from math_verify import parse, verify

    kw = {"parsing_timeout": timeout}
    g, p = parse(f"${gold}$", **kw), parse(f"${pred}$", **kw)
    if not g or not p:
        return True if gold.strip() == pred.strip() else "unparsable"
    if verify(g, p, timeout_seconds=timeout):
        return True
    def text_only(parsed) -> bool:  # math-verify gives back only the raw text: not maths
        return all(isinstance(x, str) for x in parsed)

    return "unparsable" if text_only(p) and not text_only(g) else False


_POOL: list[ProcessPoolExecutor] = []
_POOL_LOCK = threading.Lock()


def _helper() -> ProcessPoolExecutor:
    import multiprocessing

    with _POOL_LOCK:
        if not _POOL:
            _POOL.append(ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")))
        return _POOL[0]


def _reset_helper(pool: ProcessPoolExecutor) -> None:
    with _POOL_LOCK:
        if _POOL and _POOL[0] is pool:
            _POOL.pop()
    for proc in list(getattr(pool, "_processes", {}).values()):
        proc.kill()
    pool.shutdown(wait=False, cancel_futures=True)


def equivalent(gold: str, pred: str, timeout: int = 5) -> bool | str | None:
    """math-verify equivalence of two answers; ``"unparsable"`` when one side cannot be parsed (and the
    texts differ); None if it did not finish within ``timeout`` seconds."""
    if threading.current_thread() is threading.main_thread():
        try:
            return _verify(gold, pred, timeout)
        except TimeoutError:
            return None
    pool = _helper()
    future = pool.submit(_verify, gold, pred, timeout)
    try:
        return future.result(timeout=timeout + 30)  # the helper applies `timeout` itself; this is a backstop
    except FutureTimeout:
        _reset_helper(pool)
        return None


# ---------------------------------------------------------------- the task


@dataclass(frozen=True)
class MathOptions:
    prompt_field: str = ""
    """Field holding the problem text; default: the first of prompt, question, problem present."""
    answer_field: str = ""
    """Field holding the reference; default: the first of answer, solution, reference present."""
    id_field: str = ""
    """Field holding an id; default: FILE:LINE."""
    extract: str = "auto"
    """How the completion's answer is found: auto, boxed, hash, last_number."""
    reference_extract: str = "auto"
    """How the reference answer is found: auto, boxed, hash, last_number, none (whole field)."""
    instruction: str = "auto"
    """Text after the question (a blank line between): ``auto`` (chat models: :data:`INSTRUCTIONS`
    for ``extract``; others: none), ``none``, or the text itself."""
    instruction_file: str = ""
    """A file whose whole text is the instruction (overrides ``instruction``)."""
    test_every: int = 10
    """Every N-th problem goes to the test split (0: test = train = all)."""
    test_file: str = ""
    """A separate JSONL file for the test split (overrides test_every)."""
    timeout: int = 5
    """Seconds allowed for one math-verify comparison."""


# the default instruction for chat models, one per completion extractor (what the extractor reads)
INSTRUCTIONS: dict[str, str] = {
    "auto": "Reason step by step, then give the final answer in \\boxed{}.",
    "boxed": "Reason step by step, then give the final answer in \\boxed{}.",
    "hash": "Reason step by step, then write the final answer alone on the last line, after ####.",
    "last_number": "Reason step by step and end with the final answer as a number.",
}
_PROMPT_FIELDS = ("prompt", "question", "problem")
_ANSWER_FIELDS = ("answer", "solution", "reference")


def load_problems(path: Path, opts: MathOptions, instruction: str | None = None,
                  rows: Iterable[tuple[str, str, dict | None, str | None]] | None = None) -> list[Problem]:
    """Parse and validate every line; raise TaskError(``file:line: what is wrong``) on the first bad one.
    ``instruction`` (if any) follows each question after a blank line. ``rows``: ``(default id, where,
    row, error)`` records from another reader (parquet, a ``datasets`` folder:
    :mod:`ladtrain.tasks.sources`); default: the lines of the JSONL file ``path``."""
    get_reference = REFERENCE_EXTRACTORS[opts.reference_extract]
    prompt_field, answer_field = opts.prompt_field, opts.answer_field
    problems: list[Problem] = []
    errors: list[str] = []
    if rows is None:
        rows = ((f"{path.name}:{line}", where, row, error) for line, where, row, error in jsonl.objects(path))
    for default_id, where, row, error in rows:
        if error:
            errors.append(error)
            continue
        if not prompt_field:
            prompt_field = next((f for f in _PROMPT_FIELDS if f in row), "")
        if not answer_field:
            answer_field = next((f for f in _ANSWER_FIELDS if f in row), "")
        bad = None
        for role, key, fallback in (("prompt", prompt_field, _PROMPT_FIELDS),
                                    ("answer", answer_field, _ANSWER_FIELDS)):
            if not key:
                bad = f"no {role} field (looked for {', '.join(fallback)}; set {role}_field=NAME)"
            elif key not in row:
                bad = f"missing field {key!r}"
            elif not isinstance(row[key], (str, int, float)) or isinstance(row[key], bool):
                bad = f"field {key!r} must be a string or a number, got {type(row[key]).__name__}"
            elif not str(row[key]).strip():
                bad = f"field {key!r} is empty"
            if bad:
                break
        if bad is None:
            reference = get_reference(str(row[answer_field]))
            if reference is None:
                how = opts.reference_extract
                bad = f"no answer found in field {answer_field!r} (reference_extract={how})"
        if bad is not None:
            errors.append(f"{where}: {bad}")
            continue
        pid = str(row[opts.id_field]) if opts.id_field and opts.id_field in row else default_id
        meta = {k: v for k, v in row.items() if k not in (prompt_field, answer_field)}
        problems.append(Problem(pid, with_instruction(str(row[prompt_field]), instruction), reference, meta))
    jsonl.raise_on_errors(path, problems, errors)
    return problems


@dataclass(frozen=True)
class MathTask(HeldOutSplit):
    """Problems from JSONL; reward 1 when the extracted answer is math-verify-equivalent to the reference."""

    name: str
    train: tuple[Problem, ...]
    test: tuple[Problem, ...]
    options: MathOptions

    def for_chat(self) -> MathTask:
        """This task for a chat model: with ``instruction=auto``, every prompt gets the instruction of
        :data:`INSTRUCTIONS` for ``extract``; any other setting is kept as given."""
        opts = self.options
        if instruction_text(opts.instruction, opts.instruction_file, self.name) is not None:
            return self
        text = INSTRUCTIONS[opts.extract]

        def add(problems: tuple[Problem, ...]) -> tuple[Problem, ...]:
            return tuple(replace(p, prompt=with_instruction(p.prompt, text)) for p in problems)

        return replace(self, train=add(self.train), test=add(self.test),
                       options=replace(opts, instruction=text))

    def score(self, problem: Problem, completion: str) -> Score:
        extract = self.options.extract
        answer = EXTRACTORS[extract](completion)
        if answer is None:
            marker = {"boxed": "\\boxed{}", "hash": "####"}.get(extract)
            if marker:
                return Score(0.0, None, f"no {marker} in the completion (extract={extract})", "no_tag")
            return Score(0.0, None, f"no answer found (extract={extract})", "no_answer")
        same = equivalent(str(problem.reference), answer, self.options.timeout)
        if same is None:
            return Score(0.0, answer, "timeout in math-verify", "timeout")
        if same == "unparsable":
            return Score(0.0, answer, "math-verify cannot parse the answer", "unparsable")
        return Score(1.0 if same else 0.0, answer, "correct" if same else "wrong",
                     "correct" if same else "wrong")


def check_options(where: str, options: dict) -> MathOptions:
    """:class:`MathOptions` from a spec's options; a bad key or value is a TaskError naming ``where``."""
    opts = options_of(MathOptions, options, where)
    if opts.extract not in EXTRACTORS:
        raise TaskError(f"{where}: unknown extract={opts.extract!r}; known: {', '.join(EXTRACTORS)}")
    if opts.reference_extract not in REFERENCE_EXTRACTORS:
        raise TaskError(f"{where}: unknown reference_extract={opts.reference_extract!r}; "
                        f"known: {', '.join(REFERENCE_EXTRACTORS)}")
    if opts.test_every < 0 or opts.timeout <= 0:
        raise TaskError(f"{where}: test_every must be >= 0 and timeout > 0")
    return opts


def make(arg: str | None = None, **options) -> MathTask:
    """Registry factory for ``jsonl:PATH``."""
    if not arg:
        raise TaskError("jsonl: give a file, e.g. jsonl:data/gsm8k.jsonl")
    opts = check_options(f"jsonl:{arg}", options)
    instruction = instruction_text(opts.instruction, opts.instruction_file, f"jsonl:{arg}")
    problems = load_problems(Path(arg), opts, instruction)
    if opts.test_file:
        train, test = problems, load_problems(Path(opts.test_file), opts, instruction)
    else:
        train, test = every_nth(problems, opts.test_every, at_least_one=True)
    return MathTask(f"jsonl:{arg}", tuple(train), tuple(test), opts)


__all__ = ["EXTRACTORS", "INSTRUCTIONS", "SEPARATOR", "MathOptions", "MathTask", "check_options",
           "equivalent", "extract_boxed", "extract_hash", "extract_last_number", "instruction_text",
           "load_problems", "make", "with_instruction"]
