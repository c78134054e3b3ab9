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

The domains themselves live in :mod:`ladtheory.domains` (re-exported here); the command-line side (flags
whose help shows the domain) is :mod:`ladtheory.flags`.

Errors read ``--flag: what is wrong (got VALUE)`` with ``VALUE`` shortened to at most 80 characters
(:func:`shown`); :class:`OptionError` is a ``ValueError``. This module is the base package's (stdlib
only) so that the bandit's command line in ``ladtheory`` and every ``ladtrain`` command share it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING
from typing import Any, Sequence

from ladtheory.domains import (  # noqa: F401 (re-exported: declare fields through this module)
    CPU_CORES,
    Choice,
    Domain,
    Flag,
    Int,
    Invalid,
    Limit,
    Listed,
    Path,
    Real,
    Repeated,
    Several,
    Text,
    _bound,
    cpu_cores,
    shown,
)


class OptionError(ValueError):
    """A value outside its declared domain (or an unusable option): shown as one line, exit code 2."""


def flag(name: str) -> str:
    """``prompts_per_step`` -> ``--prompts-per-step``."""
    return "--" + name.replace("_", "-")


def message(name: str, problem: str, value: Any, *, flags: bool = True) -> str:
    """``--name: problem (got VALUE)`` (``name: ...`` with ``flags=False``: a config file's key)."""
    return f"{flag(name) if flags else name}: {problem} (got {shown(value)})"


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
