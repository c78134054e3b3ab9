r"""A :class:`Derivation`: a chain of lines, each step checked, and the claim it proves computed from it.

The engine does not take a claim on trust. While it checks the steps it builds the statement the chain
actually proves from its first line, its last line and the relation symbols of its steps, and compares
that with the author's ``claim`` (:func:`ladtheory.proof.equality.same_relation`):

* an **expression chain** ``e_0 R_1 e_1 ... R_k e_k`` proves ``L R e_k``, where ``L`` starts as ``e_0`` and
  the operator steps act on it (``diff``: ``L -> dL/dx``; ``partial_separable``: ``L -> dL/dx_k``;
  ``limit``: ``L -> Limit(L, x, p)``; ``series``: ``L = e_k + O(x^n)``; ``evaluate``: ``|L - e_k| < tol``),
  and ``R`` composes the steps' relations: ``=`` then ``\ge`` is ``\ge``, ``\ge`` then ``> 0`` is ``> 0``;
  a step whose direction is opposite to the chain's so far (``\ge`` then ``< 0``), or an operator applied
  to an inequality (differentiating ``\ge``), breaks the chain and fails it;
* an **equation chain** (its first line an ``Eq``, or after a ``stationary`` step, whose premise is
  ``Eq(L, 0)``) proves ``Implies(first equation, last equation)`` (``Equivalent`` when every step was
  reversible).

The statement holds under the hypotheses and derived facts the steps used; they are listed with it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import sympy as sp

from ladtheory.proof.core import Context, Fact, ProofError, Status, Step, Verdict, worst
from ladtheory.proof.equality import same_relation
from ladtheory.proof.rules import RULES, evaluate_tolerance

_COMPOSE = {
    (sp.Equality, sp.GreaterThan): sp.GreaterThan, (sp.GreaterThan, sp.GreaterThan): sp.GreaterThan,
    (sp.StrictGreaterThan, sp.GreaterThan): sp.StrictGreaterThan,
    (sp.Equality, sp.StrictGreaterThan): sp.StrictGreaterThan,
    (sp.GreaterThan, sp.StrictGreaterThan): sp.StrictGreaterThan,
    (sp.StrictGreaterThan, sp.StrictGreaterThan): sp.StrictGreaterThan,
    (sp.Equality, sp.StrictLessThan): sp.StrictLessThan, (sp.LessThan, sp.StrictLessThan): sp.StrictLessThan,
    (sp.StrictLessThan, sp.StrictLessThan): sp.StrictLessThan,
}
_STEP_RELATION = {"ge": sp.GreaterThan, "gt0": sp.StrictGreaterThan, "lt0": sp.StrictLessThan}


@dataclass
class _Chain:
    """What the chain proves so far (see the module docstring)."""

    subject: sp.Basic
    value: sp.Basic
    equation: bool
    relation: type = sp.Equality
    order: sp.Expr | None = None
    approx: sp.Expr | None = None
    reversible: bool = True
    broken: str = ""

    def advance(self, rule, st: Step) -> None:
        effect, new, p = rule.effect, st.expr, st.params
        if self.broken:
            return
        if self.approx is not None:
            self.broken = f"step [{rule.name}] after an 'evaluate' step: an approximation ends a chain"
            return
        if self.equation:
            if effect not in ("eq", "equiv", "implies"):
                self.broken = f"step [{rule.name}] does not apply to an equation chain"
            elif not isinstance(new, sp.Equality):
                self.broken = f"step [{rule.name}] leaves an equation chain: its line is not an equation"
            self.reversible &= effect != "implies"
            self.value = new
            return
        plain = self.relation is sp.Equality and self.order is None
        if effect == "eq":
            self.value = new
        elif effect in _STEP_RELATION:
            nxt = _COMPOSE.get((self.relation, _STEP_RELATION[effect]))
            if nxt is None or self.order is not None:
                self.broken = (
                    f"step [{rule.name}] ({_STEP_RELATION[effect].rel_op}) cannot follow a chain that "
                    f"so far shows {self.relation.rel_op}" + (" + O(..)" if self.order else "")
                )
            self.relation, self.value = nxt or self.relation, new
        elif not plain:
            self.broken = f"step [{rule.name}] applies an operator to a chain that is not an exact equality"
        elif effect == "diff":
            self.subject, self.value = sp.Derivative(self.subject, p["var"]), new
        elif effect == "partial":
            self.subject, self.value = sp.Derivative(self.subject, p["base"][p["index"]]), new
        elif effect == "limit":
            direction = p.get("dir", "+" if p["point"] != sp.oo else "-")
            self.subject, self.value = sp.Limit(self.subject, p["var"], p["point"], direction), new
        elif effect == "series":
            self.order, self.value = sp.Order(p["var"] ** p["order"], (p["var"], p["point"])), new
        elif effect == "approx":
            self.approx, self.value = evaluate_tolerance(new), new
        elif effect == "stationary":
            self.subject, self.value, self.equation = sp.Eq(self.subject, 0, evaluate=False), new, True
        else:
            self.broken = f"step [{rule.name}] does not apply to an expression chain"

    def proved(self) -> sp.Basic:
        if self.equation:
            kind = sp.Equivalent if self.reversible else sp.Implies
            return kind(self.subject, self.value, evaluate=False)
        if self.approx is not None:
            return sp.Lt(sp.Abs(self.subject - self.value), self.approx, evaluate=False)
        rhs = self.value + self.order if self.order is not None else self.value
        return self.relation(self.subject, rhs, evaluate=False)


def claim_verdict(claim: sp.Basic, chain: _Chain) -> Verdict:
    if chain.broken:
        return Verdict(Status.FAILED, "chain", chain.broken)
    proved = chain.proved()
    if chain.equation and isinstance(claim, sp.Implies):  # an equivalence proves the implication too
        proved = sp.Implies(chain.subject, chain.value, evaluate=False)
    if same_relation(claim, proved):
        return Verdict(
            Status.SYMBOLIC,
            "claim",
            "the first line, the last line and the steps' relations give exactly the claim",
        )
    return Verdict(
        Status.FAILED, "claim", f"the chain proves {sp.sstr(proved)}, not the claim {sp.sstr(claim)}"
    )


@dataclass(frozen=True)
class StepReport:
    index: int
    relation: str
    latex: str
    rule: str
    why: str
    status: Status
    method: str
    detail: str
    seconds: float


@dataclass(frozen=True)
class DerivationReport:
    name: str
    steps: tuple[StepReport, ...]
    claim: Verdict
    proved: sp.Basic | None
    hypotheses: tuple[str, ...]  # the hypothesis and derived facts the steps used
    seconds: float
    links: tuple[Verdict, ...] = ()  # derived facts checked against the derivations that prove them

    @property
    def status(self) -> Status:
        if not self.steps:
            return Status.FAILED
        return worst([s.status for s in self.steps] + [self.claim.status] + [v.status for v in self.links])

    @property
    def ok(self) -> bool:
        return self.status is not Status.FAILED

    @property
    def numeric_steps(self) -> int:
        return sum(s.status is Status.NUMERIC for s in self.steps)


class Derivation:
    """A chain ``start R_1 e_1 R_2 e_2 ...`` under stated facts that proves ``claim``; built with
    :meth:`step`.

    ``claim`` is a sympy relation (``Eq``, ``Ge``, ``Gt``, ``Lt``, ``Le``, ``Implies``, ``Equivalent``):
    what the chain must prove (module docstring). ``convex`` lists undefined functions assumed strictly
    convex (for the ``jensen`` rule). ``assumptions`` are prose conditions shown with the claim.
    """

    def __init__(self, name: str, title: str, start: sp.Basic, *, claim: sp.Basic,
                 facts: Sequence[Fact] = (), assumptions: Sequence[str] = (), convex: Sequence = ()):
        if not isinstance(claim, (sp.core.relational.Relational, sp.Implies, sp.Equivalent)):
            raise ProofError(
                f"derivation {name!r}: claim must be a sympy relation, got {type(claim).__name__}"
            )
        self.name, self.title, self.start, self.claim = name, title, sp.sympify(start), claim
        self.facts = {f.name: f for f in facts}
        if len(self.facts) != len(facts):
            raise ProofError(f"derivation {name!r}: two facts share a name")
        self.assumptions = tuple(assumptions)
        self.convex = frozenset(convex)
        self.steps: list[Step] = []

    def step(self, expr, rule: str, why: str = "", **params) -> "Derivation":
        if rule not in RULES:
            raise ProofError(f"unknown rule {rule!r} (known: {', '.join(sorted(RULES))})")
        missing = [k for k in RULES[rule].params if k not in params]
        if missing:
            raise ProofError(f"rule {rule!r} needs parameter {missing[0]!r}")
        self.steps.append(Step(sp.sympify(expr), rule, why, dict(params)))
        return self

    @property
    def end(self) -> sp.Basic:
        return self.steps[-1].expr if self.steps else self.start

    @property
    def hypotheses(self) -> list[Fact]:
        return [f for f in self.facts.values() if f.kind != "definition"]

    def check(self) -> DerivationReport:
        ctx = Context(self.facts, self.convex)
        t0 = time.perf_counter()
        reports, used = [], []
        chain = _Chain(self.start, self.start, isinstance(self.start, sp.Equality))
        prev = self.start
        for k, st in enumerate(self.steps, 1):
            rule = RULES[st.rule]
            t = time.perf_counter()
            try:
                v = rule.check(prev, st.expr, st.params, ctx)
            except ProofError:
                raise
            except Exception as exc:  # a checker crash is a failed step, with the reason
                v = Verdict(Status.FAILED, "checker error", f"{type(exc).__name__}: {exc}")
            chain.advance(rule, st)
            for key in ("using", "weights_sum"):
                names = st.params.get(key, ())
                used += [names] if isinstance(names, str) else list(names)
            reports.append(StepReport(k, rule.relation, latex_line(st), st.rule, st.why, v.status, v.method,
                                      v.detail, time.perf_counter() - t))
            prev = st.expr
        if not self.steps:
            claim, proved = Verdict(Status.FAILED, "claim", "a derivation needs at least one step"), None
        else:
            claim, proved = claim_verdict(self.claim, chain), (None if chain.broken else chain.proved())
        hyps = tuple(dict.fromkeys(n for n in used if self.facts[n].kind != "definition"))
        return DerivationReport(self.name, tuple(reports), claim, proved, hyps, time.perf_counter() - t0)

    def rows(self, report: DerivationReport | None = None) -> list[dict]:
        from ladtheory.proof.render import rows

        return rows(self, report)

    def to_markdown(self, report: DerivationReport | None = None) -> str:
        from ladtheory.proof.render import derivation_markdown

        return derivation_markdown(self, report)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


def latex_line(st: Step) -> str:
    body = sp.latex(st.expr)
    if st.rule == "series":
        body += f" + O\\left({sp.latex(st.params['var'])}^{{{st.params['order']}}}\\right)"
    if st.rule == "limit":
        body += f"\\quad ({sp.latex(st.params['var'])}\\to {sp.latex(st.params['point'])})"
    return body
