"""Deciding ``a == b``: sympy first (each method under a time budget), an honest numeric stand-in second.

The numeric stand-in (:func:`numeric_equal`) samples **the whole declared domain** of every symbol, as its
sympy assumptions declare it (positive, nonnegative, real, integer): both signs where allowed, 0 where
allowed, magnitudes from 1e-9 to 1e9, and, for every kink of ``Abs``/``sign``/``Heaviside``/``Min``/``Max``/
``Piecewise``, the kink itself and points just either side of it. Its tolerance is fixed here
(:data:`NUMERIC_RTOL` at :data:`NUMERIC_DIGITS` digits); a proof file cannot loosen it. A numeric verdict
is evidence, never a proof: it is reported as ``NUMERIC`` and counted as such in every summary.
"""

from __future__ import annotations

import random
from typing import Callable

import mpmath
import sympy as sp
from sympy.core.function import AppliedUndef

from ladtheory.proof.core import Context, Status, Verdict, as_difference
from ladtheory.timebudget import Timeout, within

NUMERIC_DIGITS = 40  # mpmath working precision for numeric stand-ins
NUMERIC_POINTS = 40  # sampled points (plus the kink points)
NUMERIC_MIN_POINTS = 16  # valid evaluations needed for a numeric verdict
NUMERIC_RTOL = mpmath.mpf(10) ** -25  # agreement required at 40 digits, relative to max(1, |a|, |b|)
SYMBOLIC_BUDGET_S = 5.0  # seconds per sympy simplification attempt
NUMERIC_BUDGET_S = 20.0  # seconds for one whole numeric stand-in
MAGNITUDES = (1e-9, 1e-4, 0.013, 0.3, 0.7, 1.0, 1.9, 3.7, 42.0, 1e4, 1e9)

_CANONICAL_INDEX = sp.Symbol("i_", integer=True)


def canonical_sums(expr: sp.Basic) -> sp.Basic:
    """Rename the bound index of every innermost single sum to one symbol (alpha-equivalence), so that
    ``Sum(x[y], (y, 1, n))`` and ``Sum(x[z], (z, 1, n))`` compare equal."""
    def rename(s: sp.Sum) -> sp.Sum:
        (i, lo, hi), = s.limits
        return sp.Sum(s.function.xreplace({i: _CANONICAL_INDEX}), (_CANONICAL_INDEX, lo, hi))

    return expr.replace(lambda x: isinstance(x, sp.Sum) and len(x.limits) == 1
                        and not x.function.has(sp.Sum) and not x.has(_CANONICAL_INDEX), rename)


def symbolic_zero(expr: sp.Expr, doit: bool = True) -> str | None:
    """The name of the sympy method that reduced ``expr`` to 0 within its budget, or None."""
    expr = canonical_sums(expr)
    if expr == 0:
        return "structural"
    methods = [("expand", sp.expand), ("simplify", sp.simplify)]
    if doit:
        methods += [("simplify(doit)", lambda e: sp.simplify(e.doit())),
                    ("simplify(expand_log)", lambda e: sp.simplify(sp.expand_log(sp.expand(e))))]
    for name, fn in methods:
        try:
            if within(lambda: fn(expr), SYMBOLIC_BUDGET_S) == 0:
                return name
        except Exception:  # a sympy method failing or timing out only means it could not decide
            continue
    return None


def _kinks(expr: sp.Basic) -> list[sp.Expr]:
    """Expressions whose zeros are kinks: arguments of Abs/sign/Heaviside, Min/Max pair differences,
    Piecewise condition boundaries."""
    out = []
    for node in sp.preorder_traversal(expr):
        if isinstance(node, (sp.Abs, sp.sign, sp.Heaviside)):
            out.append(node.args[0])
        elif isinstance(node, (sp.Min, sp.Max)):
            args = node.args
            out += [args[i] - args[j] for i in range(len(args)) for j in range(i + 1, len(args))]
        elif isinstance(node, sp.Piecewise):
            for _, cond in node.args:
                for rel in cond.atoms(sp.core.relational.Relational):
                    out.append(rel.lhs - rel.rhs)
    return out


def _kink_points(expr: sp.Basic) -> list[dict]:
    """Points at and just either side of every kink of a one-symbol kink expression."""
    points = []
    for g in _kinks(expr):
        syms = sorted(g.free_symbols, key=str)
        if len(syms) != 1:
            continue
        s = syms[0]
        try:
            roots = within(lambda: sp.solve(g, s), 2.0)
        except Exception:
            continue
        for r in roots:
            if not (r.is_real and r.is_finite):
                continue
            r = mpmath.mpf(sp.N(r, NUMERIC_DIGITS))
            for off in (0, 1e-9, -1e-9, 1e-4, -1e-4, 0.05, -0.05):
                points.append({s: r + mpmath.mpf(off) * max(1, abs(r))})
    return points


def _sample_value(symbol: sp.Basic, k: int, rng: random.Random) -> mpmath.mpf:
    base = symbol.base.label if isinstance(symbol, sp.Indexed) else symbol
    positive = bool(base.is_positive or symbol.is_positive)
    nonneg = bool(base.is_nonnegative or symbol.is_nonnegative)
    integer = bool(base.is_integer or symbol.is_integer)
    if integer:
        lo = 1 if positive else (0 if nonneg else -6)
        return mpmath.mpf(rng.randint(lo, 6))
    if k % 5 == 4:  # every fifth point: log-uniform anywhere in [1e-6, 1e6]
        mag = mpmath.mpf(10) ** mpmath.mpf(rng.uniform(-6, 6))
    else:
        mag = mpmath.mpf(MAGNITUDES[rng.randrange(len(MAGNITUDES))]) * (
            1 + mpmath.mpf(rng.uniform(-0.1, 0.1))
        )
    if positive:
        return mag
    if nonneg:
        return mpmath.mpf(0) if rng.random() < 0.08 else mag
    if rng.random() < 0.06:
        return mpmath.mpf(0)
    return mag if rng.random() < 0.5 else -mag


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


def numeric_equal(a: sp.Basic, b: sp.Basic, seed: int = 0) -> Verdict:
    """Sampled check of ``a == b`` at 40 digits over the whole declared domain (see the module docstring)."""
    try:
        return within(lambda: _numeric_equal(a, b, seed), NUMERIC_BUDGET_S)
    except Timeout as exc:
        return Verdict(Status.FAILED, "numeric undecided", f"the numeric stand-in {exc}")


def _numeric_equal(a: sp.Basic, b: sp.Basic, seed: int) -> Verdict:
    rng = random.Random(seed)
    worst_err, valid, tried = mpmath.mpf(0), 0, 0
    with mpmath.workdps(NUMERIC_DIGITS):
        base_a, base_diff = as_difference(a), as_difference(a) - as_difference(b)
        if sp.Tuple(base_a, base_diff).atoms(AppliedUndef):
            return Verdict(Status.FAILED, "numeric impossible",
                           "sympy could not decide and the expression holds an undefined function")
        kinks = _kink_points(base_diff)
        for k in range(NUMERIC_POINTS + len(kinks)):
            size = 2 + k % 4
            ea, diff = _instantiate_sizes(base_a, size), _instantiate_sizes(base_diff, size)
            eb = ea - diff
            both = sp.Tuple(ea, diff)
            labels = {i.base.label for i in both.atoms(sp.Indexed)}
            syms = sorted((s for s in both.free_symbols if s not in labels), key=str)
            syms += sorted(both.atoms(sp.Indexed), key=str)
            values = {s: _sample_value(s, k, rng) for s in syms}
            if k >= NUMERIC_POINTS:
                values.update({s: v for s, v in kinks[k - NUMERIC_POINTS].items() if s in values})
            subs = {s: sp.Float(v, NUMERIC_DIGITS) for s, v in values.items()}
            tried += 1
            try:
                d = _to_mp(sp.N(diff.xreplace(subs), NUMERIC_DIGITS))
                scale = max(abs(_to_mp(sp.N(ea.xreplace(subs), NUMERIC_DIGITS))),
                            abs(_to_mp(sp.N(eb.xreplace(subs), NUMERIC_DIGITS))))
            except (TypeError, ValueError, ZeroDivisionError, OverflowError):
                continue
            if not (mpmath.isfinite(d) and mpmath.isfinite(scale)):
                continue
            valid += 1
            err = abs(d) / max(mpmath.mpf(1), scale)
            worst_err = max(worst_err, err)
            if err > NUMERIC_RTOL:
                at = ", ".join(f"{s}={mpmath.nstr(v, 6)}" for s, v in values.items())
                return Verdict(Status.FAILED, "numeric counterexample",
                               f"previous - this line = {mpmath.nstr(d, 8)} at {at}")
    if valid < max(NUMERIC_MIN_POINTS, tried // 2):
        return Verdict(
            Status.FAILED, "numeric undecided", f"only {valid} of {tried} points could be evaluated"
        )
    return Verdict(
        Status.NUMERIC,
        "mpmath sampled points",
        f"{valid} points ({len(kinks)} at kinks) over the whole domain at {NUMERIC_DIGITS} digits, "
        f"max rel. diff {mpmath.nstr(worst_err, 3)}",
    )


def decide_equal(a: sp.Basic, b: sp.Basic, ctx: Context, hint: Callable | None = None,
                 hint_name: str = "") -> Verdict:
    """Decide ``a == b``: the rule's own transformation, then sympy simplification, then numbers."""
    if isinstance(a, sp.Equality) != isinstance(b, sp.Equality):
        return Verdict(Status.FAILED, "shape", "an equation cannot equal an expression")
    if isinstance(a, sp.Equality):
        sides = [
            decide_equal(a.lhs, b.lhs, ctx, hint, hint_name),
            decide_equal(a.rhs, b.rhs, ctx, hint, hint_name),
        ]
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
            if symbolic_zero(within(lambda: hint(a), SYMBOLIC_BUDGET_S) - b) is not None:
                return Verdict(Status.SYMBOLIC, hint_name, f"{hint_name}(previous) = this line")
        except Exception:
            pass
    method = symbolic_zero(a - b)
    if method is not None:
        return Verdict(Status.SYMBOLIC, method, f"{method}(previous - this line) = 0")
    return numeric_equal(a, b, ctx.seed)


def _split_order(e: sp.Expr) -> tuple[sp.Expr, sp.Expr | None]:
    if isinstance(e, sp.Expr) and e.has(sp.Order):
        return e.removeO(), e.getO()
    return e, None


def _operators(e: sp.Basic) -> set:
    return (
        e.atoms(sp.Derivative, sp.Limit, sp.Sum, sp.Integral, AppliedUndef)
        if isinstance(e, sp.Basic)
        else set()
    )


def same_expression(a: sp.Basic, b: sp.Basic) -> bool:
    """Symbolically equal (no numeric stand-in), with ``O(...)`` terms, derivatives, limits, sums and
    undefined
    functions compared as written (the rest of the expression may be simplified)."""
    (a0, ao), (b0, bo) = _split_order(a), _split_order(b)
    if (ao is None) != (bo is None) or (ao is not None and ao != bo):
        return False
    a0, b0 = canonical_sums(a0), canonical_sums(b0)
    if a0 == b0:
        return True
    if _operators(a0) != _operators(b0):  # claims compare derivatives, limits, sums and functions as written
        return False
    try:
        if a0.free_symbols != b0.free_symbols:  # only an expansion may cancel a symbol away
            return within(lambda: sp.expand(a0 - b0), SYMBOLIC_BUDGET_S) == 0
        return symbolic_zero(a0 - b0, doit=False) is not None
    except (TypeError, AttributeError, Timeout):  # e.g. a Boolean on one side
        return False


_REVERSED = {sp.StrictGreaterThan: sp.StrictLessThan, sp.GreaterThan: sp.LessThan}


def same_relation(a: sp.Basic, b: sp.Basic) -> bool:
    """``a`` and ``b`` state the same claim: the same relation (``x > y`` is ``y < x``; ``Eq`` is symmetric)
    between symbolically equal sides, recursively through ``Implies``, ``Equivalent`` and ``And``."""
    if isinstance(a, sp.Implies) or isinstance(b, sp.Implies):
        return type(a) is type(b) and len(a.args) == len(b.args) and all(
            same_relation(x, y) for x, y in zip(a.args, b.args))
    for kind in (sp.And, sp.Equivalent):  # sympy sorts their arguments: compare as multisets
        if not (isinstance(a, kind) or isinstance(b, kind)):
            continue
        if not (isinstance(a, kind) and isinstance(b, kind) and len(a.args) == len(b.args)):
            return False
        rest = list(b.args)
        for x in a.args:
            match = next((y for y in rest if same_relation(x, y)), None)
            if match is None:
                return False
            rest.remove(match)
        return True
    if not (isinstance(a, sp.core.relational.Relational) and isinstance(b, sp.core.relational.Relational)):
        return False

    def normal(r):
        if type(r) in _REVERSED:
            return _REVERSED[type(r)], r.rhs, r.lhs
        return type(r), r.lhs, r.rhs

    (ta, la, ra), (tb, lb, rb) = normal(a), normal(b)
    if ta is not tb:
        return False
    if same_expression(la, lb) and same_expression(ra, rb):
        return True
    return ta in (sp.Equality, sp.Unequality) and same_expression(la, rb) and same_expression(ra, lb)
