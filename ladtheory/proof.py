r"""A small engine for step-checked derivations, and ``python -m ladtheory proofs``.

A :class:`Derivation` is a chain of expressions

.. math:: e_0 \;R_1\; e_1 \;R_2\; e_2 \cdots R_k\; e_k

under stated assumptions (:class:`Fact` objects: definitions and hypotheses, each a sympy equation).
Every link :math:`e_{i-1} R_i e_i` is a :class:`Step` that names a *rule* from the registry
:data:`RULES`; the rule's checker decides the link with sympy and records how:

* ``SYMBOLIC``: sympy established the link (``simplify(lhs - rhs) == 0``, a series whose
  remainder vanishes, a limit, a verified unique solution, a pattern check of Jensen's inequality...);
* ``NUMERIC``: sympy could not decide an *equality*, and a randomised check with mpmath at 40
  significant digits at many random points (respecting the symbols' assumptions) stood in.  This is
  evidence, not a proof, and it is always reported as such;
* ``FAILED``: the link is false, or neither check could decide it.

For the other relations (``\ge`` for Jensen, ``\Longleftrightarrow`` for solving an equation,
``\to`` for a limit, ``\partial`` for differentiation, ``= ... + O(x^k)`` for a series, ``< 0`` for a
sign) sympy always does the mathematical work (the derivative, the unique solution, the limit, the
series remainder, Jensen's pattern, the sign); only the final comparison of two expressions for equality
may fall back to the numeric check, and then the step is reported NUMERIC. Series and sign steps never
fall back.

A :class:`Result` groups the derivations of one theorem (one file in ``proofs/``) with
:class:`NumericCheck` parts (optimisation experiments, runtime-versus-sympy comparisons), each of which
reports ``NUMERIC`` with its measured error and tolerance.

API for renderers (the book) -- stable:

* ``load_results(directory=None) -> list[Result]``: one per ``proofs/*.py`` file; each file defines
  ``result() -> Result``.
* ``Result`` fields: ``name``, ``title``, ``statement`` (LaTeX), ``assumptions`` (Markdown with ``$..$``),
  ``parts`` (``Derivation`` and ``NumericCheck`` objects, in reading order), ``notes``, ``source`` (file
  path), ``doc`` (the file's docstring).
* ``Result.check() -> ResultReport``; ``ResultReport.ok``; ``ResultReport.parts`` aligned with
  ``Result.parts``; ``Result.to_markdown(report=None)``.
* ``Derivation.check() -> DerivationReport``; ``Derivation.rows(report=None)`` gives one dict per line
  (keys ``relation``, ``latex``, ``rule``, ``why``, ``status``, ``method``, ``detail``);
  ``Derivation.to_markdown(report=None)`` and ``_repr_markdown_`` render it.
* ``NumericCheck.check() -> NumericReport`` (``error``, ``tolerance``, ``status``, ``detail``).
"""

from __future__ import annotations

import argparse
import enum
import importlib.util
import random
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import mpmath
import sympy as sp
from sympy.core.function import AppliedUndef

__all__ = [
    "Status",
    "Fact",
    "Step",
    "Rule",
    "RULES",
    "Derivation",
    "DerivationReport",
    "StepReport",
    "NumericCheck",
    "NumericReport",
    "Result",
    "ResultReport",
    "ProofError",
    "load_results",
    "main",
]

NUMERIC_DIGITS = 40  # mpmath working precision for numeric stand-ins
NUMERIC_POINTS = 24  # random points per numeric stand-in
NUMERIC_MIN_POINTS = 12  # valid evaluations needed for a numeric verdict
NUMERIC_RTOL = mpmath.mpf(10) ** -25  # agreement required at 40 digits


class ProofError(ValueError):
    """A malformed derivation (unknown rule, missing parameter, unknown fact): a user mistake."""


class Status(str, enum.Enum):
    SYMBOLIC = "symbolic"
    NUMERIC = "numeric"
    FAILED = "failed"


def _worst(statuses: Sequence[Status]) -> Status:
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
    """A stated assumption: ``eq`` is a sympy ``Eq`` (a definition or a hypothesis).

    ``kind`` is ``"definition"``, ``"hypothesis"`` or ``"derived"`` (proved in another derivation);
    ``text`` is an optional Markdown gloss (maths in ``$..$``).
    """

    name: str
    eq: sp.Eq
    kind: str = "hypothesis"
    text: str = ""
    forall: sp.Symbol | None = None  # with eq = Eq(x[i], rhs(i)): replaces x[j] by rhs(j) for every j

    def latex(self) -> str:
        """The equation in LaTeX (the gloss ``text`` is Markdown, rendered next to it)."""
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


# ---------------------------------------------------------------------------------------------
# Equality: sympy first, numeric stand-in second.


def _as_difference(a: sp.Basic) -> sp.Expr:
    return a.lhs - a.rhs if isinstance(a, sp.Equality) else a


_CANONICAL_INDEX = sp.Symbol("i_", integer=True)


def _canonical_sums(expr: sp.Basic) -> sp.Basic:
    """Rename the bound index of every innermost single sum to one symbol (alpha-equivalence), so that
    ``Sum(x[y], (y, 1, n))`` and ``Sum(x[z], (z, 1, n))`` compare equal."""
    def rename(s: sp.Sum) -> sp.Sum:
        (i, lo, hi), = s.limits
        return sp.Sum(s.function.xreplace({i: _CANONICAL_INDEX}), (_CANONICAL_INDEX, lo, hi))

    return expr.replace(lambda x: isinstance(x, sp.Sum) and len(x.limits) == 1
                        and not x.function.has(sp.Sum) and not x.has(_CANONICAL_INDEX), rename)


def _symbolic_zero(expr: sp.Expr) -> str | None:
    """Return the name of the sympy method that reduced ``expr`` to 0, or None."""
    expr = _canonical_sums(expr)
    if expr == 0:
        return "structural"
    for name, fn in (
        ("expand", lambda e: sp.expand(e)),
        ("simplify", sp.simplify),
        ("simplify(doit)", lambda e: sp.simplify(e.doit())),
        ("simplify(expand_log)", lambda e: sp.simplify(sp.expand_log(sp.expand(e)))),
    ):
        try:
            if fn(expr) == 0:
                return name
        except Exception:  # a sympy method failing only means it could not decide
            continue
    return None


def _sample_value(symbol: sp.Basic, rng: random.Random, domains: Mapping) -> mpmath.mpf:
    base = symbol.base if isinstance(symbol, sp.Indexed) else None
    for key in (symbol, base, getattr(base, "label", None)):
        if key is not None and key in domains:
            lo, hi = domains[key]
            break
    else:
        lo, hi = (0.2, 3.0) if symbol.is_positive else (-2.0, 2.0)
    return mpmath.mpf(lo) + (mpmath.mpf(hi) - mpmath.mpf(lo)) * mpmath.mpf(rng.random())


def _instantiate_sizes(expr: sp.Basic, size: int) -> sp.Basic:
    """Replace every integer symbol used as a summation bound by ``size`` and expand the sums."""
    bounds = set()
    for s in expr.atoms(sp.Sum):
        for _, lo, hi in s.limits:
            bounds |= {b for b in (sp.sympify(lo).free_symbols | sp.sympify(hi).free_symbols) if b.is_integer}
    if bounds:
        expr = expr.subs({b: size for b in bounds})
    return expr.doit()


def _to_mp(value: sp.Basic):
    value = complex(value)
    return mpmath.mpf(value.real) if value.imag == 0 else mpmath.mpc(value.real, value.imag)


def numeric_equal(a: sp.Basic, b: sp.Basic, domains: Mapping | None = None, seed: int = 0) -> Verdict:
    """Randomised check of ``a == b`` at 40 digits; NUMERIC if they agree, FAILED otherwise.

    Summation bounds are instantiated with sizes 2..5 and the sums expanded; every remaining symbol
    (and every ``x[i]``) gets a random value in its domain (``domains``, else (0.2, 3) for positive
    symbols and (-2, 2) otherwise).
    """
    domains = dict(domains or {})
    rng = random.Random(seed)
    worst = mpmath.mpf(0)
    valid = 0
    with mpmath.workdps(NUMERIC_DIGITS):
        for k in range(NUMERIC_POINTS):
            ea = _instantiate_sizes(_as_difference(a), 2 + k % 4)
            diff = _instantiate_sizes(_as_difference(a) - _as_difference(b), 2 + k % 4)
            both = sp.Tuple(ea, diff)
            if both.atoms(AppliedUndef):
                return Verdict(Status.FAILED, "numeric impossible",
                               "sympy could not decide and the expression holds an undefined function")
            labels = {i.base.label for i in both.atoms(sp.Indexed)}
            syms = sorted((s for s in both.free_symbols if not s.is_integer and s not in labels), key=str)
            syms += sorted(both.atoms(sp.Indexed), key=str)
            values = {s: sp.Float(_sample_value(s, rng, domains), NUMERIC_DIGITS) for s in syms}
            scale_expr = ea.xreplace(values)
            try:
                d = _to_mp(sp.N(diff.xreplace(values), NUMERIC_DIGITS))
                scale = _to_mp(sp.N(scale_expr, NUMERIC_DIGITS))
            except (TypeError, ValueError, ZeroDivisionError):
                continue
            if not (mpmath.isfinite(d) and mpmath.isfinite(scale)):
                continue
            valid += 1
            err = abs(d) / max(mpmath.mpf(1), abs(scale))
            worst = max(worst, err)
            if err > NUMERIC_RTOL:
                at = ", ".join(f"{s}={float(v):.4g}" for s, v in values.items())
                return Verdict(Status.FAILED, "numeric counterexample",
                               f"previous - this line = {mpmath.nstr(d, 8)} at {at}")
    if valid < NUMERIC_MIN_POINTS:
        return Verdict(Status.FAILED, "numeric undecided", f"only {valid} valid evaluation points")
    return Verdict(Status.NUMERIC, "mpmath random points",
                   f"{valid} points at {NUMERIC_DIGITS} digits, max rel. diff {mpmath.nstr(worst, 3)}")


def decide_equal(a: sp.Basic, b: sp.Basic, ctx: "Context", hint: Callable | None = None,
                 hint_name: str = "") -> Verdict:
    """Decide ``a == b``: the rule's own transformation, then sympy simplification, then numbers."""
    if isinstance(a, sp.Equality) != isinstance(b, sp.Equality):
        return Verdict(Status.FAILED, "shape", "an equation cannot equal an expression")
    if isinstance(a, sp.Equality):
        sides = [decide_equal(a.lhs, b.lhs, ctx, hint, hint_name), decide_equal(a.rhs, b.rhs, ctx, hint, hint_name)]
        if all(v.status is Status.SYMBOLIC for v in sides):
            return Verdict(Status.SYMBOLIC, "both sides", "; ".join(v.method for v in sides))
        moved = decide_equal(a.lhs - a.rhs, b.lhs - b.rhs, ctx, hint, hint_name)
        if moved.status is not Status.FAILED:
            return Verdict(moved.status, "lhs - rhs unchanged: " + moved.method, moved.detail)
        if all(v.status is not Status.FAILED for v in sides):
            return Verdict(Status.NUMERIC, "both sides", "; ".join(f"{v.method} {v.detail}" for v in sides))
        return moved
    if hint is not None:
        try:
            if _symbolic_zero(hint(a) - b) is not None:
                return Verdict(Status.SYMBOLIC, hint_name, f"{hint_name}(previous) = this line")
        except Exception:
            pass
    method = _symbolic_zero(a - b)
    if method is not None:
        return Verdict(Status.SYMBOLIC, method, f"{method}(previous - this line) = 0")
    return numeric_equal(a, b, ctx.domains, ctx.seed)


# ---------------------------------------------------------------------------------------------
# Rules: a registry of small frozen objects.


@dataclass(frozen=True)
class Context:
    facts: Mapping[str, Fact]
    domains: Mapping
    convex: frozenset
    seed: int = 0


@dataclass(frozen=True)
class Rule:
    """A named inference rule: the relation it establishes, what it means, and its checker."""

    name: str
    relation: str  # LaTeX placed between the previous line and this one
    description: str
    check: Callable[[sp.Basic, sp.Basic, Mapping, Context], Verdict]
    params: tuple[str, ...] = ()


RULES: dict[str, Rule] = {}


def _register(name: str, relation: str, description: str, params: tuple[str, ...] = ()):
    def wrap(fn):
        RULES[name] = Rule(name, relation, description, fn, params)
        return fn
    return wrap


def _need(params: Mapping, key: str, rule: str):
    if key not in params:
        raise ProofError(f"rule {rule!r} needs parameter {key!r}")
    return params[key]


def _equality_rule(name: str, transform: Callable | None, description: str):
    def check(prev, new, params, ctx):
        return decide_equal(prev, new, ctx, transform, name)
    _register(name, "=", description)(check)


_equality_rule("algebra", None, "equal expressions (sympy simplification)")
_equality_rule("expand", sp.expand, "multiply out")
_equality_rule("expand_log", lambda e: sp.expand_log(e, force=False), "log of a product is a sum of logs")
_equality_rule("factor", sp.factor, "factorise")
_equality_rule("cancel", sp.cancel, "cancel common factors")
_equality_rule("powsimp", sp.powsimp, "combine powers")
_equality_rule("logcombine", sp.logcombine, "sum of logs is a log of a product")
_equality_rule("linearity", lambda e: sp.factor_terms(sp.expand(e)),
               "linearity of finite sums / expectations")


def _facts(params: Mapping, ctx: Context, rule: str) -> list[Fact]:
    names = _need(params, "using", rule)
    names = [names] if isinstance(names, str) else list(names)
    out = []
    for n in names:
        if n not in ctx.facts:
            raise ProofError(f"rule {rule!r} uses unknown fact {n!r} (known: {', '.join(ctx.facts) or 'none'})")
        out.append(ctx.facts[n])
    return out


def _subs_all(e: sp.Basic, facts: Sequence[Fact]) -> sp.Basic:
    for fact in facts:
        e = fact.apply(e)
    return e


@_register("substitute", "=", "use stated facts (replace each fact's left side by its right side)", ("using",))
def _check_substitute(prev, new, params, ctx):
    facts = _facts(params, ctx, "substitute")
    a, b = _subs_all(prev, facts), _subs_all(new, facts)
    v = decide_equal(a, b, ctx)
    return Verdict(v.status, f"substitute {', '.join(f.name for f in facts)}; {v.method}", v.detail)


@_register("diff", r"\xrightarrow{\;\partial\;}", "differentiate the previous line", ("var",))
def _check_diff(prev, new, params, ctx):
    var = _need(params, "var", "diff")
    v = decide_equal(sp.diff(_as_difference(prev), var), _as_difference(new), ctx)
    return Verdict(v.status, f"d/d{var}; {v.method}", v.detail)


@_register("partial_separable", r"\xrightarrow{\;\partial\;}",
           "partial derivative of a separable sum in one coordinate", ("base", "index"))
def _check_partial_separable(prev, new, params, ctx):
    base, k = _need(params, "base", "partial_separable"), _need(params, "index", "partial_separable")
    prev = _as_difference(prev)
    sums = [t for t in sp.Add.make_args(prev) if isinstance(t, sp.Sum)]
    rest = sp.Add(*[t for t in sp.Add.make_args(prev) if not isinstance(t, sp.Sum)])
    if any(i.base == base for i in rest.atoms(sp.Indexed)):
        return Verdict(Status.FAILED, "not separable", f"{base} appears outside the sums")
    total = sp.Integer(0)
    for s in sums:
        if len(s.limits) != 1:
            return Verdict(Status.FAILED, "not separable", "only single sums are supported")
        i = s.limits[0][0]
        term = s.function
        if any(x.base == base and x.indices != (i,) for x in term.atoms(sp.Indexed)):
            return Verdict(Status.FAILED, "not separable", f"{base} indexed by something other than {i}")
        x = sp.Dummy("x", **({"positive": True} if base.label.is_positive else {}))
        total += sp.diff(term.subs(base[i], x), x).subs(x, base[i]).subs(i, k)
    v = decide_equal(total, _as_difference(new), ctx)
    return Verdict(v.status, f"d/d{base}[{k}] termwise; {v.method}", v.detail)


@_register("solve", r"\Longleftrightarrow", "solve the equation for one unknown (unique solution)", ("var",))
def _check_solve(prev, new, params, ctx):
    var = _need(params, "var", "solve")
    if not (isinstance(new, sp.Equality) and new.lhs == var):
        raise ProofError(f"rule 'solve' needs the new line to be Eq({var}, solution)")
    eq = _as_difference(prev)
    sub = decide_equal(eq.subs(var, new.rhs), sp.Integer(0), ctx)
    if sub.status is Status.FAILED:
        return Verdict(Status.FAILED, "substitution", f"{new.rhs} does not solve the equation: {sub.detail}")
    try:
        sols = sp.solve(eq, var, dict=False)
    except Exception as exc:  # sympy's solver failing is 'undecided', reported as failure
        return Verdict(Status.FAILED, "solve", f"sympy.solve failed: {exc}")
    if len(sols) != 1:
        return Verdict(Status.FAILED, "uniqueness", f"sympy.solve found {len(sols)} solutions: {sols}")
    same = decide_equal(sols[0], new.rhs, ctx)
    status = _worst([sub.status, same.status])
    return Verdict(status, "unique solution (sympy.solve) verified by substitution", same.detail)


@_register("multiply", r"\Longleftrightarrow", "multiply both sides by a nonzero factor", ("factor",))
def _check_multiply(prev, new, params, ctx):
    c = sp.sympify(_need(params, "factor", "multiply"))
    if not (c.is_nonzero or c.is_positive or c.is_negative):
        return Verdict(Status.FAILED, "factor", f"cannot show the factor {c} is nonzero")
    v = decide_equal(c * _as_difference(prev), _as_difference(new), ctx)
    return Verdict(v.status, f"times {c}; {v.method}", v.detail)


@_register("apply_log", r"\Longleftrightarrow", "take logarithms of two positive sides (log is injective)")
def _check_apply_log(prev, new, params, ctx):
    if not (isinstance(prev, sp.Equality) and isinstance(new, sp.Equality)):
        raise ProofError("rule 'apply_log' relates two equations")
    if not (prev.lhs.is_positive and prev.rhs.is_positive):
        return Verdict(Status.FAILED, "positivity", "sympy cannot show both sides are positive")
    v = decide_equal(sp.Eq(sp.log(prev.lhs), sp.log(prev.rhs), evaluate=False), new, ctx, sp.expand_log, "log")
    return Verdict(v.status, f"log both sides; {v.method}", v.detail)


@_register("sum_both_sides", r"\Longrightarrow", "sum both sides of an equation over an index",
           ("index", "limits"))
def _check_sum_both_sides(prev, new, params, ctx):
    i = _need(params, "index", "sum_both_sides")
    lo, hi = _need(params, "limits", "sum_both_sides")
    if not isinstance(prev, sp.Equality):
        raise ProofError("rule 'sum_both_sides' needs an equation")
    j = params.get("as_index", i)  # the summation index (renaming the free index i)
    lhs, rhs = prev.lhs.xreplace({i: j}), prev.rhs.xreplace({i: j})
    summed = sp.Eq(sp.Sum(lhs, (j, lo, hi)), sp.Sum(rhs, (j, lo, hi)), evaluate=False)
    v = decide_equal(summed, new, ctx, lambda e: sp.factor_terms(sp.expand(e)), "linearity")
    return Verdict(v.status, f"sum over {i}; {v.method}", v.detail)


@_register("series", "=", "Taylor expansion; the remainder is O(var^order)", ("var", "point", "order"))
def _check_series(prev, new, params, ctx):
    var, point, order = (_need(params, k, "series") for k in ("var", "point", "order"))
    try:
        rem = sp.series(_as_difference(prev) - _as_difference(new), var, point, order).removeO()
    except Exception as exc:
        return Verdict(Status.FAILED, "series", f"sympy.series failed: {exc}")
    z = _symbolic_zero(rem)
    if z is None:
        return Verdict(Status.FAILED, "series", f"remainder below order {order} is {rem}, not 0")
    return Verdict(Status.SYMBOLIC, "series", f"previous - this line = O({var}^{order}) at {var}={point}")


@_register("limit", r"\longrightarrow", "limit of the previous line", ("var", "point"))
def _check_limit(prev, new, params, ctx):
    var, point = _need(params, "var", "limit"), _need(params, "point", "limit")
    direction = params.get("dir", "+" if point != sp.oo else "-")
    try:
        lim = sp.limit(_as_difference(prev), var, point, direction)
    except Exception as exc:
        return Verdict(Status.FAILED, "limit", f"sympy.limit failed: {exc}")
    if lim.has(sp.Limit):
        return Verdict(Status.FAILED, "limit", "sympy could not evaluate the limit")
    if lim in (sp.oo, -sp.oo, sp.zoo) or new in (sp.oo, -sp.oo, sp.zoo):
        ok = lim == new
        return Verdict(Status.SYMBOLIC if ok else Status.FAILED, "limit", f"limit is {lim}")
    v = decide_equal(lim, new, ctx)
    return Verdict(v.status, f"limit {var}->{point}; {v.method}", f"limit is {lim}. {v.detail}")


@_register("stationary", r"\Longrightarrow",
           "first-order condition: at an interior extremum the partial derivative vanishes")
def _check_stationary(prev, new, params, ctx):
    if not isinstance(new, sp.Equality):
        raise ProofError("rule 'stationary' needs the new line to be an equation")
    v = decide_equal(sp.Eq(_as_difference(prev), 0, evaluate=False), new, ctx)
    return Verdict(v.status, f"set to zero; {v.method}", v.detail)


def _sign_rule(name: str, relation: str, attr: str, word: str):
    def check(prev, new, params, ctx):
        if new != 0:
            raise ProofError(f"rule {name!r} compares the previous line with 0; write 0 as the new line")
        value = getattr(_as_difference(prev), attr)
        if value:
            return Verdict(Status.SYMBOLIC, "sympy assumptions", f"previous line is {word}")
        return Verdict(Status.FAILED, "sympy assumptions", f"sympy cannot show the previous line is {word}")
    _register(name, relation, f"the previous line is {word} (sympy's assumption system)")(check)


_sign_rule("positive", ">", "is_positive", "positive")
_sign_rule("negative", "<", "is_negative", "negative")


@_register("evaluate", r"pprox", "evaluate a constant expression at 50 digits (a numeric step)")
def _check_evaluate(prev, new, params, ctx):
    prev = _as_difference(prev)
    if prev.free_symbols:
        raise ProofError(f"rule 'evaluate' needs a constant; free symbols {sorted(map(str, prev.free_symbols))}")
    value = sp.N(prev, 50)
    digits = params.get("digits", 12)
    ok = abs(value - sp.N(new, 50)) <= sp.Float(10) ** (-digits) * max(1, abs(value))
    if ok:
        return Verdict(Status.NUMERIC, "50-digit evaluation", f"value {sp.N(value, 20)}")
    return Verdict(Status.FAILED, "50-digit evaluation", f"value is {sp.N(value, 20)}, not {new}")


@_register("jensen", r"\ge", "Jensen's inequality for a convex function and weights summing to one",
           ("function", "weights_sum"))
def _check_jensen(prev, new, params, ctx):
    fn = _need(params, "function", "jensen")
    if fn not in ctx.convex:
        return Verdict(Status.FAILED, "convexity", f"{fn} is not declared convex in the assumptions")
    prev = _as_difference(prev)
    coeff, body = prev.as_independent(sp.Sum, as_Add=False)
    if not isinstance(body, sp.Sum) or len(body.limits) != 1:
        return Verdict(Status.FAILED, "pattern", "expected c * Sum(w_i * f(x_i), (i, a, b))")
    i, lo, hi = body.limits[0]
    w, fx = body.function.as_independent(fn, as_Add=False)
    if not (isinstance(fx, AppliedUndef) and fx.func == fn):
        return Verdict(Status.FAILED, "pattern", f"summand is not weight * {fn}(...)")
    if not (w.is_nonnegative or w.is_positive):
        return Verdict(Status.FAILED, "weights", f"cannot show the weight {w} is nonnegative")
    facts = _facts({"using": params["weights_sum"]}, ctx, "jensen")
    total = sp.factor_terms(sp.expand(sp.Sum(w, (i, lo, hi))))  # constants leave the sum first
    one = decide_equal(_subs_all(total, facts), sp.Integer(1), ctx)
    if one.status is Status.FAILED:
        return Verdict(Status.FAILED, "weights", "the weights do not sum to one")
    target = coeff * fn(sp.Sum(w * fx.args[0], (i, lo, hi)))
    v = decide_equal(target, _as_difference(new), ctx)
    status = _worst([one.status, v.status])
    return Verdict(status, "Jensen pattern: convex f, nonnegative weights summing to 1",
                   f"equality iff {fx.args[0]} is constant in {i} where the weight is positive "
                   f"(f strictly convex); {v.method}")


# ---------------------------------------------------------------------------------------------
# Derivations.


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
    seconds: float

    @property
    def status(self) -> Status:
        return _worst([s.status for s in self.steps]) if self.steps else Status.FAILED

    @property
    def ok(self) -> bool:
        return self.status is not Status.FAILED


class Derivation:
    """A chain ``start R_1 e_1 R_2 e_2 ...`` under stated facts; built with :meth:`step`.

    ``domains`` maps symbols (or IndexedBase labels) to ``(lo, hi)`` sampling ranges for the
    numeric stand-in; ``convex`` lists undefined functions assumed (strictly) convex.
    """

    def __init__(self, name: str, title: str, start: sp.Basic, *, statement: str = "",
                 facts: Sequence[Fact] = (), assumptions: Sequence[str] = (),
                 convex: Sequence = (), domains: Mapping | None = None):
        self.name, self.title, self.start, self.statement = name, title, start, statement
        self.facts = {f.name: f for f in facts}
        self.assumptions = tuple(assumptions)
        self.convex = frozenset(convex)
        self.domains = dict(domains or {})
        self.steps: list[Step] = []
        self._report: DerivationReport | None = None

    def step(self, expr, rule: str, why: str = "", **params) -> "Derivation":
        if rule not in RULES:
            raise ProofError(f"unknown rule {rule!r} (known: {', '.join(sorted(RULES))})")
        self.steps.append(Step(sp.sympify(expr), rule, why, dict(params)))
        self._report = None
        return self

    @property
    def end(self) -> sp.Basic:
        return self.steps[-1].expr if self.steps else self.start

    def check(self) -> DerivationReport:
        ctx = Context(self.facts, self.domains, self.convex)
        t0 = time.perf_counter()
        reports = []
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
            reports.append(StepReport(k, rule.relation, _latex(st.expr, st), st.rule, st.why, v.status,
                                      v.method, v.detail, time.perf_counter() - t))
            prev = st.expr
        self._report = DerivationReport(self.name, tuple(reports), time.perf_counter() - t0)
        return self._report

    def rows(self, report: DerivationReport | None = None) -> list[dict]:
        report = report or self._report
        rows = [dict(relation="", latex=sp.latex(self.start), rule="", why="start", status="",
                     method="", detail="")]
        for k, st in enumerate(self.steps):
            r = report.steps[k] if report else None
            rows.append(dict(relation=RULES[st.rule].relation, latex=_latex(st.expr, st), rule=st.rule,
                             why=st.why, status=r.status.value if r else "unchecked",
                             method=r.method if r else "", detail=r.detail if r else ""))
        return rows

    def to_markdown(self, report: DerivationReport | None = None) -> str:
        out = [f"**{self.title}**", ""]
        if self.statement:
            out += [f"Claim: ${self.statement}$", ""]
        if self.facts or self.assumptions:
            out.append("Assumptions:")
            out += [f"- {a}" for a in self.assumptions]
            out += [f"- ({f.name}, {f.kind}) ${f.latex()}$" + (f": {f.text}" if f.text else "")
                    for f in self.facts.values()]
            out.append("")
        rows = self.rows(report)
        body = [f"&{rows[0]['latex']}"] + [f"&{r['relation']} {r['latex']}" for r in rows[1:]]
        out += ["$$", "\\begin{aligned}", " \\\\\n".join(body), "\\end{aligned}", "$$", ""]
        out += ["| # | rule | why | check |", "|---|---|---|---|"]
        for k, r in enumerate(rows[1:], 1):
            check = f"{r['status']} ({r['method']})" if r["method"] else r["status"]
            out.append(f"| {k} | `{r['rule']}` | {r['why']} | {check} |")
        return "\n".join(out) + "\n"

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


def _latex(expr: sp.Basic, st: Step | None = None) -> str:
    body = sp.latex(expr)
    if st is not None and st.rule == "series":
        body += f" + O\\left({sp.latex(st.params['var'])}^{{{st.params['order']}}}\\right)"
    if st is not None and st.rule == "limit":
        body += f"\\quad ({sp.latex(st.params['var'])}\\to {sp.latex(st.params['point'])})"
    return body


# ---------------------------------------------------------------------------------------------
# Numeric checks (optimisation experiments, runtime code versus sympy).


@dataclass(frozen=True)
class NumericReport:
    name: str
    error: float
    tolerance: float
    detail: str
    seconds: float

    @property
    def status(self) -> Status:
        return Status.NUMERIC if self.error <= self.tolerance else Status.FAILED

    @property
    def ok(self) -> bool:
        return self.status is not Status.FAILED


@dataclass(frozen=True)
class NumericCheck:
    """A numeric claim: ``run()`` returns ``(error, detail)``; it passes when ``error <= tolerance``.

    Always reported as NUMERIC (evidence), never as a proof.
    """

    name: str
    title: str
    claim: str  # LaTeX
    run: Callable[[], tuple[float, str]]
    tolerance: float

    def check(self) -> NumericReport:
        t = time.perf_counter()
        try:
            error, detail = self.run()
            error = float(error)
        except Exception as exc:
            error, detail = float("inf"), f"{type(exc).__name__}: {exc}"
        if error != error:  # NaN never passes
            error = float("inf")
        return NumericReport(self.name, error, self.tolerance, detail, time.perf_counter() - t)

    def to_markdown(self, report: NumericReport | None = None) -> str:
        out = [f"**{self.title}** (numeric check)", "", f"Claim: ${self.claim}$", ""]
        if report is not None:
            out.append(f"Measured error {report.error:.3g} (tolerance {self.tolerance:.0e}): "
                       f"{report.status.value}. {report.detail}")
        return "\n".join(out) + "\n"

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


@dataclass(frozen=True)
class ResultReport:
    name: str
    parts: tuple  # DerivationReport | NumericReport
    seconds: float

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.parts)


@dataclass
class Result:
    """One theorem: statement (LaTeX), assumptions, and its parts (derivations and numeric checks)."""

    name: str
    title: str
    statement: str
    assumptions: tuple[str, ...]
    parts: list
    notes: str = ""
    source: str = ""  # the proof file (set by load_results)
    doc: str = ""  # the proof file's docstring: statement, assumptions, proof sketch (reST maths)

    def check(self) -> ResultReport:
        t = time.perf_counter()
        parts = tuple(p.check() for p in self.parts)
        return ResultReport(self.name, parts, time.perf_counter() - t)

    def to_markdown(self, report: ResultReport | None = None) -> str:
        out = [f"### {self.title}", "", f"$${self.statement}$$", ""]
        if self.assumptions:
            out += ["Assumptions:"] + [f"- {a}" for a in self.assumptions] + [""]
        for k, part in enumerate(self.parts):
            out.append(part.to_markdown(report.parts[k] if report else None))
        if self.notes:
            out += ["", self.notes]
        return "\n".join(out) + "\n"

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


# ---------------------------------------------------------------------------------------------
# Loading proofs/ and the CLI.

PROOFS_DIR = Path(__file__).resolve().parent.parent / "proofs"


def _load_file(path: Path) -> Result:
    spec = importlib.util.spec_from_file_location(f"ladproofs.{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "result"):
        raise ProofError(f"{path}:1: defines no result() function")
    res = module.result()
    res.source = str(path)
    res.doc = module.__doc__ or ""
    return res


def load_results(directory: str | Path | None = None) -> list[Result]:
    """Every ``proofs/*.py`` file's ``result()``, sorted by file name."""
    directory = Path(directory) if directory else PROOFS_DIR
    if not directory.is_dir():
        raise ProofError(f"{directory}: no such directory")
    return [_load_file(p) for p in sorted(directory.glob("*.py")) if not p.name.startswith("_")]


def _error_location(exc: BaseException, path: Path) -> str:
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if Path(frame.filename).resolve() == path.resolve():
            return f"{path}:{frame.lineno}"
    return f"{path}:1"


def _parts_line(part, rep) -> tuple[str, str, str, float]:
    if isinstance(rep, DerivationReport):
        marks = "".join({Status.SYMBOLIC: "S", Status.NUMERIC: "N", Status.FAILED: "F"}[s.status]
                        for s in rep.steps)
        return part.name, str(len(rep.steps)), marks, rep.seconds
    return part.name, "1", "N" if rep.ok else "F", rep.seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ladtheory proofs",
        description="Check every step-checked derivation in proofs/ and print a table. "
                    "Step marks: S symbolic (sympy), N numeric stand-in (mpmath / optimisation), F failed.")
    parser.add_argument("--dir", default=None, help="folder of proof files (default: the repository's proofs/)")
    parser.add_argument("--only", action="append", default=[], help="check only results whose file "
                        "name contains this text (repeatable)")
    parser.add_argument("--verbose", "-v", action="store_true", help="print every step with its method")
    parser.add_argument("--markdown", action="store_true", help="print the checked derivations as Markdown")
    args = parser.parse_args(argv)
    directory = Path(args.dir) if args.dir else PROOFS_DIR
    if not directory.is_dir():
        print(f"error: {directory}: no such directory", file=sys.stderr)
        return 2
    files = [p for p in sorted(directory.glob("*.py")) if not p.name.startswith("_")]
    if args.only:
        files = [p for p in files if any(o in p.stem for o in args.only)]
        if not files:
            print(f"error: no proof file matches {args.only}", file=sys.stderr)
            return 2
    failed = 0
    counts = {Status.SYMBOLIC: 0, Status.NUMERIC: 0, Status.FAILED: 0}
    t_all = time.perf_counter()
    print(f"{'result':<34} {'part':<44} {'steps':>5}  {'checks':<14} {'time':>7}")
    print("-" * 110)
    for path in files:
        try:
            res = _load_file(path)
            report = res.check()
        except ProofError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:  # a proof file that crashes is a failed result, with its location
            print(f"{path.stem:<34} FAILED to build: {_error_location(exc, path)}: {type(exc).__name__}: {exc}")
            failed += 1
            continue
        for part, rep in zip(res.parts, report.parts):
            pname, nsteps, marks, secs = _parts_line(part, rep)
            print(f"{res.name:<34} {pname:<44} {nsteps:>5}  {marks:<14} {secs:7.2f}s")
            steps = rep.steps if isinstance(rep, DerivationReport) else [rep]
            for s in steps:
                counts[s.status] += 1
                if s.status is Status.FAILED or args.verbose:
                    label = f"step {s.index} [{s.rule}]" if isinstance(s, StepReport) else "check"
                    extra = f"{s.method}: {s.detail}" if isinstance(s, StepReport) else (
                        f"error {s.error:.3g} <= {s.tolerance:.0e}? {s.detail}")
                    print(f"    {label} {s.status.value.upper()}: {extra}")
            if not rep.ok:
                failed += 1
        if args.markdown:
            print(res.to_markdown(report))
    print("-" * 110)
    print(f"{counts[Status.SYMBOLIC]} symbolic, {counts[Status.NUMERIC]} numeric, "
          f"{counts[Status.FAILED]} failed; {len(files)} results in {time.perf_counter() - t_all:.1f}s")
    if failed:
        print(f"FAILED: {failed} part(s) have a failing step")
        return 1
    print("all derivations check")
    return 0
