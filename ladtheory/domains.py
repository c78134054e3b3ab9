"""The domains of declared options (:mod:`ladtheory.options`): which values a field takes, how a string
from the command line or a config file becomes a typed value (``coerce``), what is wrong with a value
(``problem``, ``None`` when it is in the domain) and how the domain reads in a flag's help
(``describe``). :mod:`ladtheory.options` re-exports every name here; declare fields through it.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Callable


def shown(value: Any, limit: int = 80) -> str:
    """``value`` as it appears in an error: ``repr`` for text (so a newline stays on the line), at most
    ``limit`` characters (a longer one is cut and says how long it was)."""
    text = repr(value) if isinstance(value, str) else str(value)
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    if len(text) <= limit:
        return text
    tail = f"... [{len(text)} chars]"
    return text[: limit - len(tail)] + tail


class Invalid(Exception):
    """Raised by :meth:`Domain.coerce` with the problem in words (turned into an OptionError naming the
    option by the caller, who knows the option's name)."""


@dataclass(frozen=True)
class Limit:
    """A bound read from the machine when checked: ``fn()`` and what it is, in words."""

    fn: Callable[[], float]
    what: str

    def __call__(self) -> float:
        return self.fn()


def cpu_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


CPU_CORES = Limit(cpu_cores, "this machine's CPU cores")


@dataclass(frozen=True)
class Domain:
    """The values a field takes. ``why`` is appended to a violation's message (the reason for a bound)."""

    why: str = dataclasses.field(default="", kw_only=True)
    metavar = "VALUE"

    def coerce(self, value: Any) -> Any:
        """A command-line string or a config-file value -> the field's type; :class:`Invalid` if
        impossible."""
        return value

    def problem(self, value: Any) -> str | None:
        """What is wrong with a typed value, or None."""
        return None

    def describe(self) -> str:
        return ""

    def check(self, value: Any) -> str | None:
        problem = self.problem(value)
        return f"{problem} ({self.why})" if problem and self.why else problem


def _bound(value: Any) -> Any:
    return value() if isinstance(value, Limit) else value


def _num(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def _range_text(gt, ge, lt, le) -> str:
    """``> 0``, ``<= 1``, ``in (0, 1]``, ... ('' when unbounded)."""
    gt, ge, lt, le = (_bound(b) for b in (gt, ge, lt, le))
    low = f"({_num(gt)}" if gt is not None else f"[{_num(ge)}" if ge is not None else None
    high = f"{_num(lt)})" if lt is not None else f"{_num(le)}]" if le is not None else None
    if low and high:
        return f"in {low}, {high}"
    if low:
        return f"> {_num(gt)}" if gt is not None else f">= {_num(ge)}"
    if high:
        return f"< {_num(lt)}" if lt is not None else f"<= {_num(le)}"
    return ""


def _limits(*bounds: Any) -> str:
    named = [b for b in bounds if isinstance(b, Limit)]
    return f" ({', '.join(f'{_num(b())} = {b.what}' for b in named)})" if named else ""


def _outside(v: float, gt, ge, lt, le) -> bool:
    gt, ge, lt, le = (_bound(b) for b in (gt, ge, lt, le))
    return (
        (gt is not None and not v > gt)
        or (ge is not None and not v >= ge)
        or (lt is not None and not v < lt)
        or (le is not None and not v <= le)
    )


@dataclass(frozen=True)
class Real(Domain):
    """A real number; NaN never, infinities only with ``finite=False``."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    finite: bool = True
    metavar = "REAL"

    def coerce(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise Invalid("expected a number")
        try:
            return float(value.strip() if isinstance(value, str) else value)
        except (ValueError, OverflowError):
            raise Invalid("expected a number") from None

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "expected a number"
        if math.isnan(value):
            return "must be a number, not nan"
        if self.finite and math.isinf(value):
            return "must be finite"
        if _outside(value, self.gt, self.ge, self.lt, self.le):
            return f"must be {_range_text(self.gt, self.ge, self.lt, self.le)}" + _limits(self.lt, self.le)
        return None

    def describe(self) -> str:
        text = " ".join(x for x in ("real", _range_text(self.gt, self.ge, self.lt, self.le)) if x)
        return text + ("" if self.finite else ", inf allowed") + _limits(self.gt, self.ge, self.lt, self.le)


@dataclass(frozen=True)
class Int(Domain):
    """An integer (``3.0`` from a config file is 3; ``3.5``, ``true`` and ``1e3`` on the command line are
    not)."""

    ge: int | Limit | None = None
    le: int | Limit | None = None
    metavar = "INT"

    def coerce(self, value: Any) -> Any:
        if isinstance(value, bool):
            raise Invalid("expected an integer")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise Invalid("expected an integer")

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return "expected an integer"
        if _outside(value, None, self.ge, None, self.le):
            return f"must be {_range_text(None, self.ge, None, self.le)}" + _limits(self.ge, self.le)
        return None

    def describe(self) -> str:
        text = " ".join(x for x in ("integer", _range_text(None, self.ge, None, self.le)) if x)
        return text + _limits(self.ge, self.le)


@dataclass(frozen=True)
class Flag(Domain):
    """True or false (``--name`` / ``--no-name``; in a config file true/false, yes/no, on/off, 1/0)."""

    metavar = "BOOL"

    def coerce(self, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower() if isinstance(value, (str, int)) else None
        if text in ("true", "yes", "1", "on"):
            return True
        if text in ("false", "no", "0", "off"):
            return False
        raise Invalid("expected true or false")

    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, bool) else "expected true or false"


@dataclass(frozen=True)
class Choice(Domain):
    """One of fixed strings."""

    values: tuple[str, ...] = ()

    def __init__(self, *values: str, why: str = "") -> None:
        object.__setattr__(self, "values", tuple(values))
        object.__setattr__(self, "why", why)

    @property
    def metavar(self) -> str:  # type: ignore[override]
        return "|".join(self.values)

    def coerce(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise Invalid(f"must be {self._words()}")
        return value

    def _words(self) -> str:
        v = self.values
        return f"{v[0]} or {v[1]}" if len(v) == 2 else "one of " + ", ".join(v)

    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, str) and value in self.values else f"must be {self._words()}"

    def describe(self) -> str:
        return "one of " + ", ".join(self.values)


def _call(spec: str, value: Any) -> str | None:
    """Run ``module:function`` on ``value``; its ValueError's text is the problem."""
    module, _, name = spec.partition(":")
    try:
        getattr(importlib.import_module(module), name)(value)
    except ValueError as err:  # a registry's message may start with the flag itself: said once, by the caller
        return re.sub(r"^--[\w-]+:? ", "", " ".join(str(err).split()))
    return None


@dataclass(frozen=True)
class Text(Domain):
    """A non-empty string of at most ``max_len`` characters; ``lookup`` (``"module:function"``) raises
    ValueError for a value it refuses (a registry lookup: an unknown loss, divergence, task). ``hint``
    describes the accepted values in the help."""

    max_len: int = 10_000
    lookup: str | None = None
    hint: str = "text"
    metavar = "TEXT"

    def coerce(self, value: Any) -> Any:
        if isinstance(value, (dict, list, tuple, set)) or value is None:
            raise Invalid("expected a string")
        return str(value)

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, str):
            return "expected a string"
        if not value.strip():
            return "must not be empty"
        if len(value) > self.max_len:
            return f"longer than {self.max_len} characters"
        if any(ord(c) < 32 and c not in "\t" for c in value):
            return "holds a control character"
        return _call(self.lookup, value) if self.lookup else None

    def describe(self) -> str:
        return self.hint


@dataclass(frozen=True)
class Path(Text):
    """A file-system path. ``exists``: True (must exist), False (need not). ``folder``: it must be a folder
    (when it exists); ``file``: it must not be a folder; ``holding``: a file it must hold (``what`` names
    such a folder in errors);
    ``keywords``: literal values accepted besides paths (``builtin``)."""

    exists: bool = False
    folder: bool = False
    file: bool = False
    holding: str | None = None
    what: str = "a folder"
    keywords: tuple[str, ...] = ()
    metavar = "PATH"

    def problem(self, value: Any) -> str | None:
        problem = super().problem(value)
        if problem or value in self.keywords:
            return problem
        import pathlib

        path = pathlib.Path(value)
        expected = (
            f" (expected {' or '.join(repr(k) for k in self.keywords)} or {self.what})"
            if self.keywords
            else ""
        )
        if self.exists and not path.exists():
            return f"does not exist{expected}"
        if self.folder and path.exists() and not path.is_dir():
            return f"is not a folder{expected}"
        if self.file and path.is_dir():
            return "is a folder (expected a file path)"
        if self.holding and self.exists and not (path / self.holding).is_file():
            return f"is not {self.what} (no {self.holding})"
        return None

    def describe(self) -> str:
        if self.holding:  # "a run folder holding config.json"
            text = f"{self.what} holding {self.holding}"
        else:
            text = ("a folder" if self.folder else "a file" if self.file else "a path") + (
                " that exists" if self.exists else "")
        return " or ".join([*self.keywords, text]) if self.keywords else text


@dataclass(frozen=True)
class Listed(Domain):
    """A comma-separated string whose items are in ``item`` (empty items are ignored; at least one item;
    ``unique``: no item twice)."""

    item: Domain = dataclasses.field(default_factory=Text)
    unique: bool = False
    metavar = "LIST"

    def coerce(self, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return ",".join(str(v) for v in value)
        if isinstance(value, (dict, set, bool)) or value is None:
            raise Invalid("expected a comma-separated list")
        return str(value)

    def items(self, value: str) -> list:
        """The typed items; :class:`Invalid` for the first bad one."""
        if not isinstance(value, str):
            raise Invalid("expected a comma-separated list")
        out = []
        for text in (t.strip() for t in value.split(",")):
            if not text:
                continue
            try:
                typed = self.item.coerce(text)
            except Invalid as err:
                raise Invalid(f"item {text!r}: {err}") from None
            problem = self.item.check(typed)
            if problem:
                raise Invalid(f"item {text!r}: {problem}")
            out.append(typed)
        if not out:
            raise Invalid("empty list")
        if self.unique and len(set(out)) != len(out):
            raise Invalid("an item is repeated")
        return out

    def problem(self, value: Any) -> str | None:
        try:
            self.items(value)
        except Invalid as err:
            return str(err)
        return None

    def describe(self) -> str:
        return f"comma-separated {self.item.describe() or 'items'}" + (", distinct" if self.unique else "")


def _items_problem(item: "Domain", value: Any) -> str | None:
    """What is wrong with a tuple of ``item`` values (``Several`` and ``Repeated``), or None."""
    if not isinstance(value, (tuple, list)):
        return "expected a tuple"
    for v in value:
        problem = item.check(v)
        if problem:
            return f"item {shown(v)}: {problem}"
    return None


@dataclass(frozen=True)
class Several(Domain):
    """A tuple of items of ``item`` (written comma-separated; ``none`` is the empty tuple)."""

    item: Domain = dataclasses.field(default_factory=Text)
    metavar = "LIST"

    def coerce(self, value: Any) -> Any:
        if isinstance(value, str):
            items = tuple(t.strip() for t in value.split(",") if t.strip())
            return () if items == ("none",) else items
        if isinstance(value, (list, tuple)):  # a YAML list, or a repeated flag's values (each may list some)
            items = tuple(x for v in value for x in (self.coerce(v) if isinstance(v, str) else (v,)))
            return items
        raise Invalid("expected a comma-separated list")

    def problem(self, value: Any) -> str | None:
        return _items_problem(self.item, value)

    def describe(self) -> str:
        return f"comma-separated {self.item.describe() or 'items'}, or none"


@dataclass(frozen=True)
class Repeated(Domain):
    """A tuple of items of ``item``, one per use of a repeatable flag (``--eval-task A --eval-task B``;
    items may contain commas); in a config file, a list. The empty tuple is the default (none given)."""

    item: Domain = dataclasses.field(default_factory=Text)
    metavar = "VALUE"
    repeatable = True  # add_arguments: argparse's action="append"

    def coerce(self, value: Any) -> Any:
        if isinstance(value, str):
            return (value,)
        if isinstance(value, (list, tuple)):
            return tuple(value)
        raise Invalid("expected one value per use of the flag (a list in a config file)")

    def problem(self, value: Any) -> str | None:
        return _items_problem(self.item, value)

    def describe(self) -> str:
        return f"{self.item.describe() or 'a value'}; repeat the flag for several"


__all__ = ["CPU_CORES", "Choice", "Domain", "Flag", "Int", "Invalid", "Limit", "Listed", "Path", "Real",
           "Repeated", "Several", "Text", "cpu_cores", "shown"]
