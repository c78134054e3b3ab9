"""The command line of a config dataclass whose fields are declared with :func:`ladtheory.options.option`:
one argparse flag per field (its help followed by its domain and default in brackets), parsing that keeps
values as text until :func:`values` converts and checks them (so that an error names the flag), and an
argparse parser whose errors are one ``--flag: ...`` line. Used by every command of the package:
``python -m ladtrain train|eval|compare``, ``python -m ladtheory bandit`` and ``check``."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import MISSING
from typing import Any, Iterable

from ladtheory.options import Flag, OptionError, convert, declared, flag, shown


class Parser(argparse.ArgumentParser):
    """argparse that raises :class:`OptionError` (one line, ``--flag: ...``) instead of printing usage."""

    def error(self, text: str):  # type: ignore[override]
        if text.startswith("argument "):  # "argument --progress/--no-progress: ignored explicit argument"
            names, _, rest = text[len("argument ") :].partition(": ")
            if rest.startswith("ignored explicit argument "):
                rest = f"takes no value (got {rest[len('ignored explicit argument ') :]})"
            elif rest == "expected one argument":
                rest = "expects a value (got none)"
            text = f"{names.split('/')[0]}: {rest}"
        elif text.startswith("the following arguments are required: "):
            text = f"{text.split(': ', 1)[1].split(',')[0]}: required (got none)"
        elif text.startswith("unrecognized arguments: "):
            rest = text[len("unrecognized arguments: ") :]
            text = f"{rest.split()[0]}: unknown option, see --help (got {shown(rest)})"
        raise OptionError(" ".join(text.split()))


def help_text(f: dataclasses.Field) -> str:
    """The field's help, then its domain and default in brackets (``%`` escaped for argparse)."""
    meta, domain = f.metadata, f.metadata["domain"]
    parts = [domain.describe() + (f" ({domain.why})" if domain.why else "")]
    if meta["nullable"]:
        parts.append("or none")
    if "default" not in meta["help"] and f.default is not MISSING:
        d = f.default
        parts.append(f"default {','.join(map(str, d)) if isinstance(d, tuple) else d}")
    extra = "; ".join(p for p in parts if p)
    return (meta["help"] + (f" [{extra}]" if extra else "")).replace("%", "%%")


def add_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    prefix: str = "",
    only: Iterable[str] | None = None,
    skip: Iterable[str] = (),
) -> None:
    """One flag per field of ``cls`` (``cli=True`` fields, restricted to ``only``, minus ``skip``); values
    stay raw text (:func:`values` converts them, so that errors name the flag); an absent flag is absent
    from the namespace. ``prefix`` is put before each destination name (two configs in one parser)."""
    keep = set(only) if only is not None else None
    for f in declared(cls):
        if not f.metadata["cli"] or f.name in set(skip) or (keep is not None and f.name not in keep):
            continue
        kw: dict[str, Any] = {"dest": prefix + f.name, "default": argparse.SUPPRESS, "help": help_text(f)}
        if isinstance(f.metadata["domain"], Flag):
            kw["action"] = argparse.BooleanOptionalAction
        elif f.metadata.get("repeat"):  # --reward a --reward b: the values in order
            kw.update(action="append", metavar=f.metadata["domain"].metavar)
        elif getattr(f.metadata["domain"], "repeatable", False):  # options.Repeated: one value per use
            kw["action"], kw["metavar"] = "append", f.metadata["domain"].metavar
        else:
            kw["metavar"] = f.metadata["domain"].metavar
            if f.default is MISSING:
                kw["required"] = True
        parser.add_argument(flag(f.name), *f.metadata["aliases"], **kw)


def values(namespace: dict[str, Any], cls: type, *, prefix: str = "") -> dict[str, Any]:
    """The typed, checked values of ``cls``'s fields found in a parsed namespace (``prefix`` as given to
    :func:`add_arguments`)."""
    names = {f.name for f in declared(cls)}
    out = {}
    for key, raw in namespace.items():
        if key.startswith(prefix) and key[len(prefix) :] in names:
            name = key[len(prefix) :]
            out[name] = convert(cls, name, raw)
    return out


__all__ = ["Parser", "add_arguments", "help_text", "values"]
