r"""Declared options: each field of a command's config dataclass states once, next to its help text, which
values it takes; one generic validator checks every field against its declaration, one builder
(:mod:`ladtheory.flags`) turns the dataclass into argparse flags whose help shows the domain, and every
error is one line.

Declaring a field (the whole recipe for a new option of ``TrainConfig``, ``EvalConfig``, the compare study
or the bandit):

.. code-block:: python

    from ladtheory.options import Choice, Int, Real, option

    @dataclass(frozen=True)
    class RunConfig:
        eta: float = option(0.25, "LAD temperature", Real(gt=0))             # a finite real > 0
        share: float = option(1.0, "share of problems", Real(gt=0, le=1))     # in (0, 1]
        steps: int = option(200, "RL steps", Int(ge=1))
        level: str = option("token", "ratio level", Choice("token", "sequence"))
        out: str | None = option(None, "run folder", Text())                  # default None: None allowed

The vocabulary: :class:`Real` (bounds ``gt``/``ge``/``lt``/``le``, open or closed, finite unless
``finite=False``; NaN is never in a domain), :class:`Int` (``ge``/``le``; a bound may be a :class:`Limit`
read from the machine at check time, e.g. :data:`CPU_CORES`), :class:`Flag` (true/false),
:class:`Choice` (fixed strings), :class:`Text` (a non-empty string; ``lookup="module:function"`` names a
function that raises ``ValueError`` with the reason, e.g. a registry lookup), :class:`Path` (must exist
or not; a folder, maybe holding a named file; literal keywords such as ``builtin`` besides paths),
:class:`Listed` (a comma-separated string of items of another domain). A new kind subclasses
:class:`Domain` (``coerce``, ``problem``, ``describe``); ``tests/test_options.py`` must then learn to draw
values inside and outside it (its property test fails on a kind it does not know).

The command-line side (flags whose help shows the domain) is :mod:`ladtheory.flags`.

Errors read ``--flag: what is wrong (got VALUE)`` with ``VALUE`` shortened to at most 80 characters
(:func:`shown`); :class:`OptionError` is a ``ValueError``. This module is the base package's (stdlib
only) so that the bandit's command line in ``ladtheory`` and every ``ladtrain`` command share it.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import re
from dataclasses import MISSING, dataclass
from typing import Any, Callable, Sequence


class OptionError(ValueError):
    """A value outside its declared domain (or an unusable option): shown as one line, exit code 2."""


def shown(value: Any, limit: int = 80) -> str:
    """``value`` as it appears in an error: ``repr`` for text (so a newline stays on the line), at most
    ``limit`` characters (a longer one is cut and says how long it was)."""
    text = repr(value) if isinstance(value, str) else str(value)
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    if len(text) <= limit:
        return text
    tail = f"... [{len(text)} chars]"
    return text[: limit - len(tail)] + tail


def flag(name: str) -> str:
    """``prompts_per_step`` -> ``--prompts-per-step``."""
    return "--" + name.replace("_", "-")


def message(name: str, problem: str, value: Any, *, flags: bool = True) -> str:
    """``--name: problem (got VALUE)`` (``name: ...`` with ``flags=False``: a config file's key)."""
    return f"{flag(name) if flags else name}: {problem} (got {shown(value)})"


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


# --------------------------------------------------------------------------------------------------
# Declaring fields, validating instances


def option(
    default: Any = MISSING,
    help: str = "",
    domain: Domain | None = None,
    *,
    aliases: Sequence[str] = (),
    cli: bool = True,
    nullable: bool | None = None,
    repeat: bool = False,
) -> Any:
    """A dataclass field with its help text and domain (``nullable``: None is allowed; default: when the
    default is None). ``cli=False``: Python API only (no flag), still validated. ``repeat``: the flag may
    be given several times, its values collected in order into a list (for a :class:`Several` domain)."""
    if not isinstance(domain, Domain):
        raise TypeError(
            f"option({default!r}, {help[:30]!r}...): a Domain is required (see ladtheory.options)"
        )
    meta = {
        "help": help,
        "domain": domain,
        "aliases": tuple(aliases),
        "cli": cli,
        "nullable": default is None if nullable is None else nullable,
        "repeat": repeat,
    }
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable defaults are not allowed in a frozen config")
    return dataclasses.field(default=default, metadata=meta)


def declared(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls``; TypeError naming any field declared without a domain."""
    out = list(dataclasses.fields(cls))
    missing = [f.name for f in out if not isinstance(f.metadata.get("domain"), Domain)]
    if missing:
        raise TypeError(f"{cls.__name__}: fields without a declared domain: {', '.join(missing)}")
    return out


def field_of(cls: type, name: str) -> dataclasses.Field:
    for f in declared(cls):
        if f.name == name:
            return f
    raise KeyError(name)


def convert(
    cls: type, name: str, value: Any, *, error: type[OptionError] = OptionError, flags: bool = True
) -> Any:
    """A command-line string or config-file value for field ``name`` of ``cls``, typed and checked."""
    f = field_of(cls, name)
    meta = f.metadata
    if meta["nullable"] and (
        value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", ""))
    ):
        return None
    if value is None:
        raise error(message(name, "a value is required", value, flags=flags))
    try:
        typed = meta["domain"].coerce(value)
    except Invalid as err:
        raise error(message(name, str(err), value, flags=flags)) from None
    problem = meta["domain"].check(typed)
    if problem:  # the typed value is shown (-0.5, not '-0.5'), as the user wrote it
        raise error(message(name, problem, typed, flags=flags))
    return typed


def validate(obj: Any, *, error: type[OptionError] = OptionError, flags: bool = True) -> Any:
    """Check every field of the dataclass instance ``obj`` against its declared domain; return ``obj``.
    The first violation raises ``error`` (``--name: what is wrong (got VALUE)``)."""
    for f in declared(type(obj)):
        value = getattr(obj, f.name)
        if value is None and f.metadata["nullable"]:
            continue
        problem = f.metadata["domain"].check(value)
        if problem:
            raise error(message(f.name, problem, value, flags=flags))
    return obj


def __getattr__(name: str) -> Any:
    """The command-line helpers live in :mod:`ladtheory.flags`; ``options.Parser`` and friends still
    resolve there, for code written against the first layout."""
    if name in ("Parser", "add_arguments", "help_text", "values"):
        from ladtheory import flags

        return getattr(flags, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CPU_CORES",
    "Choice",
    "Domain",
    "Flag",
    "Int",
    "Invalid",
    "Limit",
    "Listed",
    "OptionError",
    "Path",
    "Real",
    "Repeated",
    "Several",
    "Text",
    "convert",
    "cpu_cores",
    "declared",
    "field_of",
    "flag",
    "message",
    "option",
    "shown",
    "validate",
]
