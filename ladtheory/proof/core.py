"""The engine's small value types: statuses, verdicts, facts, steps, and the user-error exception."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import sympy as sp

FACT_KINDS = ("definition", "hypothesis", "derived")


class ProofError(ValueError):
    """A malformed derivation (unknown rule, missing parameter, unknown fact, no claim): a user mistake."""


class Status(str, enum.Enum):
    SYMBOLIC = "symbolic"
    NUMERIC = "numeric"
    FAILED = "failed"


def worst(statuses: Sequence[Status]) -> Status:
    if any(s is Status.FAILED for s in statuses):
        return Status.FAILED
    if any(s is Status.NUMERIC for s in statuses):
        return Status.NUMERIC
    return Status.SYMBOLIC


@dataclass(frozen=True)
class Verdict:
    status: Status
    method: str
    detail: str = ""


@dataclass(frozen=True)
class Fact:
    """A stated fact: ``eq`` is a sympy ``Eq``.

    ``kind``:

    * ``"definition"``: names an expression (``Z = sum_y ...``); substituting it changes nothing;
    * ``"hypothesis"``: an assumption of the result; it is listed as an assumption wherever the result is
      shown;
    * ``"derived"``: proved elsewhere. ``proved_by`` must name the derivation that proves it: a part of the
      same result by its name (``"forward: multiplier"``), or of another proof file as ``(file_stem, part
      name)`` (``("flowrl_special_case", "score has mean zero")``). The engine checks that ``eq`` *is* that
      part's claim (or the conclusion of its implication) and that the part checks; otherwise the consumer
      fails.

    ``forall``: with ``eq = Eq(x[i], rhs(i))``, :meth:`apply` replaces ``x[j]`` by ``rhs(j)`` for every ``j``.
    ``text`` is an optional Markdown gloss (maths in ``$..$``).
    """

    name: str
    eq: sp.Eq
    kind: str = "hypothesis"
    text: str = ""
    forall: sp.Symbol | None = None
    proved_by: str | tuple[str, str] = ""

    def __post_init__(self):
        if self.kind not in FACT_KINDS:
            raise ProofError(f"fact {self.name!r}: kind {self.kind!r} is not one of {', '.join(FACT_KINDS)}")
        if not isinstance(self.eq, sp.Equality):
            raise ProofError(f"fact {self.name!r}: eq must be a sympy Eq, got {type(self.eq).__name__}")
        if self.kind == "derived" and not self.proved_by:
            raise ProofError(f"fact {self.name!r} is 'derived' but names no proved_by derivation")
        if self.kind != "derived" and self.proved_by:
            raise ProofError(f"fact {self.name!r}: only a 'derived' fact has proved_by")

    def latex(self) -> str:
        body = sp.latex(self.eq)
        if self.forall is not None:
            body += f"\\ \\text{{for all }} {sp.latex(self.forall)}"
        return body

    def apply(self, e: sp.Basic) -> sp.Basic:
        """Replace the left side by the right side everywhere in ``e``."""
        lhs, rhs = self.eq.lhs, self.eq.rhs
        if self.forall is None:
            return e.subs(lhs, rhs)
        if not isinstance(lhs, sp.Indexed) or lhs.indices != (self.forall,):
            raise ProofError(f"fact {self.name!r}: 'forall' needs a left side x[{self.forall}]")
        return e.replace(lambda x: isinstance(x, sp.Indexed) and x.base == lhs.base,
                         lambda x: rhs.xreplace({self.forall: x.indices[0]}))


@dataclass(frozen=True)
class Step:
    """One link of a chain: the new expression, the rule that justifies it, and why (prose).

    ``params`` holds the rule's parameters (e.g. ``var`` for ``diff``, ``using`` for ``substitute``).
    """

    expr: sp.Basic
    rule: str
    why: str = ""
    params: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    facts: Mapping[str, Fact]
    convex: frozenset
    seed: int = 0


def need(params: Mapping, key: str, rule: str):
    if key not in params:
        raise ProofError(f"rule {rule!r} needs parameter {key!r}")
    return params[key]


def facts_used(params: Mapping, ctx: Context, rule: str) -> list[Fact]:
    names = need(params, "using", rule)
    names = [names] if isinstance(names, str) else list(names)
    out = []
    for n in names:
        if n not in ctx.facts:
            known = ", ".join(ctx.facts) or "none"
            raise ProofError(f"rule {rule!r} uses unknown fact {n!r} (known: {known})")
        out.append(ctx.facts[n])
    return out


def as_difference(a: sp.Basic) -> sp.Expr:
    return a.lhs - a.rhs if isinstance(a, sp.Equality) else a
