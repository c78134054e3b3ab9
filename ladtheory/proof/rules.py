r"""The inference rules: each decides one link ``previous R new`` with sympy and says how.

A rule's ``effect`` tells the chain (:mod:`ladtheory.proof.chain`) what the link does to the statement
being proved: ``eq`` keeps the relation and replaces the right side; ``ge`` (Jensen) turns it into ``\ge``;
``diff``/``partial``/``limit``/``series`` apply an operator to the left side; ``gt0``/``lt0`` compare with 0;
``approx`` bounds the distance to a constant; ``equiv``/``implies``/``stationary`` act on equations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import mpmath
import sympy as sp
from sympy.core.function import AppliedUndef

from ladtheory.proof.core import (
    Context,
    Fact,
    ProofError,
    Status,
    Verdict,
    as_difference,
    facts_used,
    need,
    worst,
)
from ladtheory.proof.equality import decide_equal, symbolic_zero
from ladtheory.timebudget import within

EVALUATE_DIGITS = 50  # precision of the 'evaluate' rule
EVALUATE_RTOL = sp.Rational(1, 10**12)  # fixed: |value - written| <= 1e-12 max(1, |written|)
SYMPY_CALL_BUDGET_S = 20.0  # seconds for one sympy solve/series/limit call inside a rule


@dataclass(frozen=True)
class Rule:
    """A named inference rule: the relation it shows, what it does to the claim, and its checker."""

    name: str
    relation: str  # LaTeX placed between the previous line and this one
    effect: str
    description: str
    check: Callable[[sp.Basic, sp.Basic, Mapping, Context], Verdict]
    params: tuple[str, ...] = ()


RULES: dict[str, Rule] = {}


def _register(name: str, relation: str, effect: str, description: str, params: tuple[str, ...] = ()):
    def wrap(fn):
        RULES[name] = Rule(name, relation, effect, description, fn, params)
        return fn
    return wrap


@_register("algebra", "=", "eq", "equal expressions (sympy simplification)")
def _check_algebra(prev, new, params, ctx):
    return decide_equal(prev, new, ctx)


@_register("linearity", "=", "eq", "linearity of finite sums / expectations")
def _check_linearity(prev, new, params, ctx):
    return decide_equal(prev, new, ctx, lambda e: sp.factor_terms(sp.expand(e)), "linearity")


def subs_all(e: sp.Basic, facts: Sequence[Fact]) -> sp.Basic:
    for fact in facts:
        e = fact.apply(e)
    return e


@_register("substitute", "=", "eq", "use stated facts (replace each fact's left side by its right side)",
           ("using",))
def _check_substitute(prev, new, params, ctx):
    facts = facts_used(params, ctx, "substitute")
    v = decide_equal(subs_all(prev, facts), subs_all(new, facts), ctx)
    return Verdict(v.status, f"substitute {', '.join(f.name for f in facts)}; {v.method}", v.detail)


@_register("diff", r"\xrightarrow{\;\partial\;}", "diff", "differentiate the previous line", ("var",))
def _check_diff(prev, new, params, ctx):
    var = need(params, "var", "diff")
    v = decide_equal(sp.diff(as_difference(prev), var), as_difference(new), ctx)
    return Verdict(v.status, f"d/d{var}; {v.method}", v.detail)


@_register("partial_separable", r"\xrightarrow{\;\partial\;}", "partial",
           "partial derivative of a separable sum in one coordinate", ("base", "index"))
def _check_partial_separable(prev, new, params, ctx):
    base, k = need(params, "base", "partial_separable"), need(params, "index", "partial_separable")
    prev = as_difference(prev)
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
    v = decide_equal(total, as_difference(new), ctx)
    return Verdict(v.status, f"d/d{base}[{k}] termwise; {v.method}", v.detail)


@_register("solve", r"\Longleftrightarrow", "equiv", "solve the equation for one unknown (unique solution)",
           ("var",))
def _check_solve(prev, new, params, ctx):
    var = need(params, "var", "solve")
    if not (isinstance(new, sp.Equality) and new.lhs == var):
        raise ProofError(f"rule 'solve' needs the new line to be Eq({var}, solution)")
    eq = as_difference(prev)
    sub = decide_equal(eq.subs(var, new.rhs), sp.Integer(0), ctx)
    if sub.status is Status.FAILED:
        return Verdict(Status.FAILED, "substitution", f"{new.rhs} does not solve the equation: {sub.detail}")
    try:
        sols = within(lambda: sp.solve(eq, var, dict=False), SYMPY_CALL_BUDGET_S)
    except Exception as exc:  # sympy's solver failing or timing out is 'undecided', reported as failure
        return Verdict(Status.FAILED, "solve", f"sympy.solve did not decide: {exc}")
    if len(sols) != 1:
        return Verdict(Status.FAILED, "uniqueness", f"sympy.solve found {len(sols)} solutions: {sols}")
    same = decide_equal(sols[0], new.rhs, ctx)
    return Verdict(worst([sub.status, same.status]), "unique solution (sympy.solve) verified by substitution",
                   same.detail)


@_register("sum_both_sides", r"\Longrightarrow", "implies", "sum both sides of an equation over an index",
           ("index", "limits"))
def _check_sum_both_sides(prev, new, params, ctx):
    i = need(params, "index", "sum_both_sides")
    lo, hi = need(params, "limits", "sum_both_sides")
    if not isinstance(prev, sp.Equality):
        raise ProofError("rule 'sum_both_sides' needs an equation")
    j = params.get("as_index", i)  # the summation index (renaming the free index i)
    lhs, rhs = prev.lhs.xreplace({i: j}), prev.rhs.xreplace({i: j})
    summed = sp.Eq(sp.Sum(lhs, (j, lo, hi)), sp.Sum(rhs, (j, lo, hi)), evaluate=False)
    v = decide_equal(summed, new, ctx, lambda e: sp.factor_terms(sp.expand(e)), "linearity")
    return Verdict(v.status, f"sum over {i}; {v.method}", v.detail)


@_register(
    "series", "=", "series", "Taylor expansion; the remainder is O(var^order)", ("var", "point", "order")
)
def _check_series(prev, new, params, ctx):
    var, point, order = (need(params, k, "series") for k in ("var", "point", "order"))
    try:
        rem = within(lambda: sp.series(as_difference(prev) - as_difference(new), var, point, order).removeO(),
                     SYMPY_CALL_BUDGET_S)
    except Exception as exc:
        return Verdict(Status.FAILED, "series", f"sympy.series did not decide: {exc}")
    if symbolic_zero(rem) is None:
        return Verdict(Status.FAILED, "series", f"remainder below order {order} is {rem}, not 0")
    return Verdict(Status.SYMBOLIC, "series", f"previous - this line = O({var}^{order}) at {var}={point}")


@_register("stationary", r"\Longrightarrow", "stationary",
           "first-order condition: at an interior extremum the partial derivative vanishes")
def _check_stationary(prev, new, params, ctx):
    if not isinstance(new, sp.Equality):
        raise ProofError("rule 'stationary' needs the new line to be an equation")
    v = decide_equal(sp.Eq(as_difference(prev), 0, evaluate=False), new, ctx)
    return Verdict(v.status, f"set to zero; {v.method}", v.detail)


def _sign_rule(name: str, relation: str, effect: str, attr: str, word: str):
    def check(prev, new, params, ctx):
        if new != 0:
            raise ProofError(f"rule {name!r} compares the previous line with 0; write 0 as the new line")
        if getattr(as_difference(prev), attr):
            return Verdict(Status.SYMBOLIC, "sympy assumptions", f"previous line is {word}")
        return Verdict(Status.FAILED, "sympy assumptions", f"sympy cannot show the previous line is {word}")
    _register(name, relation, effect, f"the previous line is {word} (sympy's assumption system)")(check)


_sign_rule("positive", ">", "gt0", "is_positive", "positive")
_sign_rule("negative", "<", "lt0", "is_negative", "negative")


def evaluate_tolerance(value: sp.Expr) -> sp.Expr:
    """The fixed bound of the 'evaluate' rule for a written value: 1e-12 max(1, |value|)."""
    return EVALUATE_RTOL * sp.Max(1, sp.Abs(sp.nsimplify(value, rational=True)))


def approximately(expr: sp.Expr, value: sp.Expr) -> sp.Lt:
    """The claim an 'evaluate' step proves: ``|expr - value| < 1e-12 max(1, |value|)``."""
    return sp.Lt(sp.Abs(expr - value), evaluate_tolerance(value), evaluate=False)


@_register("evaluate", r"\approx", "approx",
           "evaluate a constant at 50 digits; the written value must agree to 1e-12 (fixed)")
def _check_evaluate(prev, new, params, ctx):
    prev = as_difference(prev)
    if prev.free_symbols or new.free_symbols:
        raise ProofError(f"rule 'evaluate' needs constants; free symbols "
                         f"{sorted(map(str, prev.free_symbols | new.free_symbols))}")
    if set(params) - {"why"}:
        raise ProofError(
            f"rule 'evaluate' takes no parameters (its tolerance is fixed); got {sorted(params)}"
        )
    value = sp.N(prev, EVALUATE_DIGITS)
    bound = sp.N(evaluate_tolerance(new), EVALUATE_DIGITS)
    gap = abs(value - sp.N(new, EVALUATE_DIGITS))
    if gap < bound:
        return Verdict(
            Status.NUMERIC, "50-digit evaluation", f"value {sp.N(value, 20)}, |gap| {sp.N(gap, 3)}"
        )
    return Verdict(
        Status.FAILED, "50-digit evaluation", f"value is {sp.N(value, 20)}, not {new} (within 1e-12)"
    )


@_register("jensen", r"\ge", "ge", "Jensen's inequality for a convex function and weights summing to one",
           ("function", "weights_sum"))
def _check_jensen(prev, new, params, ctx):
    fn = need(params, "function", "jensen")
    if fn not in ctx.convex:
        return Verdict(Status.FAILED, "convexity", f"{fn} is not declared convex in the assumptions")
    prev = as_difference(prev)
    coeff, body = prev.as_independent(sp.Sum, as_Add=False)
    if not isinstance(body, sp.Sum) or len(body.limits) != 1:
        return Verdict(Status.FAILED, "pattern", "expected c * Sum(w_i * f(x_i), (i, a, b))")
    if not coeff.is_positive:  # c Sum w f(x) >= c f(Sum w x) only for c > 0: a negative c reverses it
        return Verdict(Status.FAILED, "sign", f"cannot show the outer coefficient {coeff} is positive "
                       "(a negative one reverses the inequality)")
    i, lo, hi = body.limits[0]
    w, fx = body.function.as_independent(fn, as_Add=False)
    if not (isinstance(fx, AppliedUndef) and fx.func == fn):
        return Verdict(Status.FAILED, "pattern", f"summand is not weight * {fn}(...)")
    if not (w.is_nonnegative or w.is_positive):
        return Verdict(Status.FAILED, "weights", f"cannot show the weight {w} is nonnegative")
    facts = facts_used({"using": need(params, "weights_sum", "jensen")}, ctx, "jensen")
    total = sp.factor_terms(sp.expand(sp.Sum(w, (i, lo, hi))))  # constants leave the sum first
    one = decide_equal(subs_all(total, facts), sp.Integer(1), ctx)
    if one.status is Status.FAILED:
        return Verdict(Status.FAILED, "weights", "the weights do not sum to one")
    v = decide_equal(coeff * fn(sp.Sum(w * fx.args[0], (i, lo, hi))), as_difference(new), ctx)
    return Verdict(worst([one.status, v.status]), "Jensen: convex f, c > 0, nonnegative weights summing to 1",
                   f"equality iff {fx.args[0]} is constant in {i} where the weight is positive "
                   f"(f strictly convex); {v.method}")


# --- limits, confirmed by two further routes ---------------------------------------------------------------

_LIMIT_STEPS = (1e1, 1e2, 1e4, 1e8, 1e16)


def _numeric_approach(expr: sp.Expr, var: sp.Symbol, point, direction: str, value) -> str | None:
    """None if ``expr`` visibly approaches ``value`` along ``var -> point`` (other symbols at three sampled
    values in (0.3, 3) with their signs), else the reason."""
    others = sorted(expr.free_symbols - {var}, key=str)
    for trial, base in enumerate((0.37, 1.3, 2.9)):
        subs = {s: sp.Float(base if (s.is_positive or s.is_nonnegative) else (-base if trial == 1 else base))
                for s in others}
        e = expr.xreplace(subs)
        seq = []
        for t in _LIMIT_STEPS:
            x = (t if point == sp.oo else -t) if point in (sp.oo, -sp.oo) else (
                point + (1 if direction == "+" else -1) / sp.Float(t))
            try:
                seq.append(mpmath.mpf(sp.N(e.xreplace({var: sp.Float(x, 60)}), 30)))
            except (TypeError, ValueError, ZeroDivisionError, OverflowError):
                return f"could not evaluate at {var} = {x:g}"
        if value in (sp.oo, -sp.oo):
            sgn = 1 if value == sp.oo else -1
            if not (all(sgn * b > sgn * a for a, b in zip(seq[1:], seq[2:])) and sgn * seq[-1] > 10):
                return f"values {[mpmath.nstr(v, 4) for v in seq]} do not grow towards {value}"
        else:
            target = mpmath.mpf(sp.N(value, 30))
            err = abs(seq[-1] - target)
            if not err <= mpmath.mpf("1e-6") * max(1, abs(target)):
                return (f"at the last point the value {mpmath.nstr(seq[-1], 8)} is "
                        f"{mpmath.nstr(err, 3)} from {value}")
    return None


def _leading_term_limit(expr: sp.Expr, var: sp.Symbol, point, direction: str):
    """The limit from the leading term of the expansion at the point (a second symbolic route), or None."""
    t = sp.Symbol("t_", positive=True)
    sub = {sp.oo: 1 / t, -sp.oo: -1 / t}.get(point, point + (t if direction == "+" else -t))
    lead = within(lambda: expr.xreplace({var: sub}).as_leading_term(t), SYMPY_CALL_BUDGET_S)
    coeff, power = lead.as_coeff_exponent(t)
    if coeff.has(t) or not power.is_number:
        return None
    if power > 0:
        return sp.Integer(0)
    if power == 0:
        return coeff
    sign = sp.sign(coeff)
    return {1: sp.oo, -1: -sp.oo}.get(sign)


@_register("limit", r"\longrightarrow", "limit",
           "limit of the previous line (sympy.limit, confirmed by a leading-term expansion where it answers "
           "and by evaluation ever closer to the point)", ("var", "point"))
def _check_limit(prev, new, params, ctx):
    var, point = need(params, "var", "limit"), need(params, "point", "limit")
    direction = params.get("dir", "+" if point != sp.oo else "-")
    expr = as_difference(prev)
    try:
        lim = within(lambda: sp.limit(expr, var, point, direction), SYMPY_CALL_BUDGET_S)
    except Exception as exc:
        return Verdict(Status.FAILED, "limit", f"sympy.limit did not decide: {exc}")
    if lim.has(sp.Limit):
        return Verdict(Status.FAILED, "limit", "sympy could not evaluate the limit")
    if lim in (sp.oo, -sp.oo, sp.zoo) or new in (sp.oo, -sp.oo, sp.zoo):
        if lim != new:
            return Verdict(Status.FAILED, "limit", f"sympy.limit gives {lim}")
        same = Verdict(Status.SYMBOLIC, "limit", "")
    else:
        same = decide_equal(lim, new, ctx)
        if same.status is Status.FAILED:
            return Verdict(Status.FAILED, "limit", f"sympy.limit gives {lim}, not {new}")
    routes = ["sympy.limit"]
    try:
        lead = _leading_term_limit(expr, var, point, direction)
    except Exception:
        lead = None
    if lead is not None and not (lead.has(sp.nan, sp.zoo)):
        agrees = lead == new if (lead in (sp.oo, -sp.oo) or new in (sp.oo, -sp.oo)) else (
            symbolic_zero(lead - new) is not None)
        if not agrees:
            return Verdict(
                Status.FAILED, "limit", f"sympy.limit gives {lim} but the leading term gives {lead}"
            )
        routes.append("leading term")
    problem = _numeric_approach(expr, var, point, direction, new)
    if problem is not None:
        return Verdict(Status.FAILED, "limit", f"sympy.limit gives {lim}, but numerically: {problem}")
    routes.append(f"evaluation at {var} -> {point}")
    return Verdict(same.status, "limit: " + " + ".join(routes), f"limit is {lim}")
