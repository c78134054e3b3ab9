r"""Convexity and the behaviour at 1 of a generator ``f(u)``, decided honestly: proved, checked, refuted or
undecided, and said which.

Every sympy call runs under a wall-clock budget (:func:`ladtheory.timebudget.within`); a call that runs
out is "undecided (timed out after N s)" and the numeric route takes over. Decimal coefficients are turned
into exact rationals (``nsimplify``) before any symbolic claim, so ``1e-7`` is ``1/10000000``.

* :func:`convexity` -- **proved** when sympy shows ``f''(u) >= 0`` for ``u > 0`` (for every value of the
  declared parameters: each parameter with range ``(lo, hi)`` is written ``lo + (hi - lo) s/(1 + s)``,
  ``lo + s`` or ``hi - s`` with ``s > 0``); otherwise **checked** numerically: at 50 digits, ``f''`` (or, for
  non-smooth ``f``, chord slopes) on a log grid of ``u`` in ``[e^-60, e^60]``, at ``1 +- k 10^-j`` (``j`` up
  to
  12), at and around every kink, for parameter values across their range (ends included), *plus* the
  asymptotic behaviour of ``f''`` as ``u -> 0+`` and ``u -> inf`` (``sympy.limit``, and the sign of ``f''`` at
  ``u = 10^{+-30, 60, 100, 200}``); **refuted** with the point where it fails; **undecided** when neither
  route could answer.
* :func:`at_one` -- one-sided derivatives at 1 (``f'(1-)``, ``f'(1+)``, ``f''(1-)``, ``f''(1+)``), from the
  two sides ``u = 1 -+ t`` with ``t > 0`` (so ``Abs``, ``Max``, ``Piecewise`` resolve), and whether ``f`` is
  **strictly convex at 1** (``f'`` strictly increasing through 1): a kink ``f'(1-) < f'(1+)``, or
  ``f''(1+-) > 0``, or, where ``f''(1) = 0``, ``f'(1 - d) < f'(1) < f'(1 + d)`` for ``d = 10^-1..10^-12``
  (numeric); a dead zone (``f' = f'(1)`` near 1) is reported as not strict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import mpmath
import sympy as sp

from ladtheory.timebudget import Timeout, within

BUDGET_S = 8.0  # seconds for one sympy call
DPS = 50
NON_SMOOTH = (sp.Abs, sp.Max, sp.Min, sp.Piecewise, sp.sign, sp.Heaviside)
_T = sp.Symbol("t_", positive=True)
_S = sp.Symbol("s_", positive=True)


def exact(expr: sp.Expr) -> sp.Expr:
    """Decimal numbers as exact rationals (``0.1`` -> ``1/10``)."""
    return sp.nsimplify(expr, rational=True) if expr.atoms(sp.Float) else expr


def budgeted(fn, seconds: float = BUDGET_S):
    """``(value, None)``, or ``(None, reason)`` if the sympy call failed or ran out of time."""
    try:
        return within(fn, seconds), None
    except Timeout as exc:
        return None, f"undecided ({exc})"
    except Exception as exc:  # sympy raising means it could not decide
        return None, f"undecided ({type(exc).__name__})"


def smooth(expr: sp.Expr) -> bool:
    return not expr.has(*NON_SMOOTH)


def parameter_map(params: Mapping[sp.Symbol, tuple]) -> dict:
    """Each parameter as a function of a positive symbol that sweeps exactly its open range."""
    out = {}
    for k, (p, (lo, hi)) in enumerate(params.items()):
        s = sp.Symbol(f"s{k}_", positive=True)
        lo, hi = sp.sympify(lo), sp.sympify(hi)
        if lo.is_finite and hi.is_finite:
            out[p] = lo + (hi - lo) * s / (1 + s)
        elif lo.is_finite:
            out[p] = lo + s
        elif hi.is_finite:
            out[p] = hi - s
        else:
            out[p] = sp.Symbol(f"r{k}_", real=True)
    return out


def parameter_samples(params: Mapping[sp.Symbol, tuple]) -> list[dict]:
    """Values across each range, ends approached (1e-9 inside), combined one parameter at a time."""
    if not params:
        return [{}]
    per = {}
    for p, (lo, hi) in params.items():
        lo, hi = sp.sympify(lo), sp.sympify(hi)
        if lo.is_finite and hi.is_finite:
            fr = [1e-9, 0.01, 0.25, 0.5, 0.75, 0.99, 1 - 1e-9]
            per[p] = [lo + (hi - lo) * sp.Float(f, 30) for f in fr]
        elif lo.is_finite:
            per[p] = [lo + sp.Float(d, 30) for d in (1e-9, 0.01, 0.5, 1, 3, 10, 1e3, 1e6)]
        elif hi.is_finite:
            per[p] = [hi - sp.Float(d, 30) for d in (1e-9, 0.01, 0.5, 1, 3, 10, 1e3, 1e6)]
        else:
            per[p] = [sp.Float(v, 30) for v in (-1e6, -10, -1, -0.1, 0, 0.1, 1, 10, 1e6)]
    mid = {p: vals[len(vals) // 2] for p, vals in per.items()}
    return [{**mid, p: v} for p, vals in per.items() for v in vals]


@dataclass(frozen=True)
class Convexity:
    verdict: str  # "proved", "checked", "refuted", "undecided"
    detail: str

    @property
    def convex(self) -> bool | None:
        return {"proved": True, "checked": True, "refuted": False}.get(self.verdict)


def _symbolic(second: sp.Expr, u: sp.Symbol, params: Mapping) -> tuple[bool, str]:
    second = second.xreplace(parameter_map(params))
    z = sp.Symbol("z_", real=True)
    attempts = [("f''", lambda: second), ("simplify", lambda: sp.simplify(second)),
                ("factor", lambda: sp.factor(second)), ("together", lambda: sp.together(second)),
                ("u = e^z", lambda: sp.simplify(second.subs(u, sp.exp(z))))]
    notes = []
    for name, make in attempts:
        value, why = budgeted(lambda: bool(make().is_nonnegative))
        if value:
            return True, name
        if why:
            notes.append(f"{name}: {why}")
    return False, "; ".join(notes)


def _points(expr: sp.Expr, u: sp.Symbol) -> list[mpmath.mpf]:
    with mpmath.workdps(DPS):
        pts = {mpmath.e ** (mpmath.mpf(k) / 20) for k in range(-1200, 1201)}
        for j in range(1, 13):
            for c in (1, 2, 5):
                d = mpmath.mpf(c) * mpmath.mpf(10) ** -j
                pts |= {1 + d, 1 - d}
        for g in _kink_args(expr):
            roots, _ = budgeted(lambda: sp.solve(g, u), 2.0)
            for r in roots or []:
                if r.is_real and r.is_positive:
                    r = mpmath.mpf(sp.N(r, DPS))
                    for j in range(1, 13):
                        pts |= {r * (1 + mpmath.mpf(10) ** -j), r * (1 - mpmath.mpf(10) ** -j)}
                    pts.add(r)
        return sorted(pts)


def _kink_args(expr: sp.Expr) -> list[sp.Expr]:
    out = []
    for node in sp.preorder_traversal(expr):
        if isinstance(node, (sp.Abs, sp.sign, sp.Heaviside)):
            out.append(node.args[0])
        elif isinstance(node, (sp.Max, sp.Min)):
            out += [a - b for i, a in enumerate(node.args) for b in node.args[i + 1:]]
        elif isinstance(node, sp.Piecewise):
            out += [r.lhs - r.rhs for _, c in node.args for r in c.atoms(sp.core.relational.Relational)]
    return out


def _numeric(expr: sp.Expr, u: sp.Symbol, sample: dict) -> str | None:
    """None if convex at the sampled points, else where it fails."""
    e = expr.xreplace(sample)
    pts = _points(e, u)
    with mpmath.workdps(DPS):
        if smooth(e):
            f2 = sp.lambdify(u, sp.diff(e, u, 2), modules="mpmath")
            for x in pts:
                try:
                    v = f2(x)
                except (ZeroDivisionError, ValueError, OverflowError):
                    return f"f'' cannot be evaluated at u = {mpmath.nstr(x, 8)}"
                if mpmath.im(v) != 0 or not mpmath.isfinite(v):
                    return f"f'' is not finite and real at u = {mpmath.nstr(x, 8)}"
                if v < 0:
                    return f"f''({mpmath.nstr(x, 12)}) = {mpmath.nstr(v, 6)} < 0"
            return None
        f = sp.lambdify(u, e, modules="mpmath")
        try:
            vals = [f(x) for x in pts]
        except (ZeroDivisionError, ValueError, OverflowError, TypeError) as err:
            return f"f cannot be evaluated on (0, inf): {err}"
        if any(mpmath.im(v) != 0 or not mpmath.isfinite(v) for v in vals):
            return "f is not finite and real everywhere on (0, inf)"
        slopes = [(vals[i + 1] - vals[i]) / (pts[i + 1] - pts[i]) for i in range(len(pts) - 1)]
        eps = mpmath.mpf(10) ** (10 - DPS)  # rounding of f at DPS digits, with room
        for i in range(len(slopes) - 1):
            size = max(abs(vals[i]), abs(vals[i + 1]), abs(vals[i + 2]), 1)
            noise = 4 * eps * size / min(pts[i + 1] - pts[i], pts[i + 2] - pts[i + 1])
            scale = max(abs(slopes[i]), abs(slopes[i + 1]), 1)
            if slopes[i + 1] - slopes[i] < -(noise + mpmath.mpf(10) ** -30 * scale):
                return f"chord slopes decrease near u = {mpmath.nstr(pts[i + 1], 12)}"
    return None


def _asymptotic(second: sp.Expr, u: sp.Symbol, sample: dict) -> tuple[str | None, str]:
    """(failure or None, how the ends were checked)."""
    e = second.xreplace(sample).replace(sp.DiracDelta, lambda *args: sp.Integer(0))
    how = []
    for point, label in ((0, "u -> 0+"), (sp.oo, "u -> inf")):
        lim, why = budgeted(lambda: sp.limit(e, u, point, "+" if point == 0 else "-"))
        if lim is not None and lim.is_extended_real:
            if lim.is_extended_negative:
                return f"f'' -> {lim} as {label}", ""
            how.append(f"f'' -> {lim} as {label}")
        else:
            how.append(f"{label}: sympy.limit {why or 'gave no real value'}")
        fn = sp.lambdify(u, e, modules="mpmath")
        with mpmath.workdps(DPS):
            for k in (30, 60, 100, 200):
                x = mpmath.mpf(10) ** (-k if point == 0 else k)
                try:
                    v = fn(x)
                except (ZeroDivisionError, ValueError, OverflowError):
                    continue
                if mpmath.im(v) == 0 and v < 0:
                    return f"f''({mpmath.nstr(x, 3)}) = {mpmath.nstr(v, 6)} < 0", ""
    return None, "; ".join(how) + "; sign of f'' at u = 10^(+-30, 60, 100, 200)"


def convexity(expr: sp.Expr, u: sp.Symbol, params: Mapping | None = None) -> Convexity:
    """Is ``f`` convex on ``(0, inf)`` (for every value of the parameters)? See the module docstring."""
    params = dict(params or {})
    expr = exact(expr)
    second, why = budgeted(lambda: sp.diff(expr, u, 2))
    if second is None:
        return Convexity("undecided", f"f'' could not be formed: {why}")
    notes = ""
    if smooth(expr):
        ok, notes = _symbolic(second, u, params)
        if ok:
            return Convexity("proved", f"sympy shows f''(u) >= 0 for u > 0 ({notes})"
                             + (" for every parameter value in its range" if params else ""))
    samples = parameter_samples(params)
    for sample in samples:
        try:
            problem = within(lambda: _numeric(expr, u, sample), 4 * BUDGET_S)
        except Timeout as exc:
            return Convexity("undecided", f"the numeric grid {exc}")
        if problem is None:
            problem, how = _asymptotic(second, u, sample)
        if problem is not None:
            at = ", ".join(f"{p} = {sp.N(v, 6)}" for p, v in sample.items())
            return Convexity("refuted", problem + (f" (at {at})" if at else ""))
    label = "checked numerically on a grid plus the asymptotics (a check, not a proof)"
    reason = f"; sympy could not prove it: {notes}" if notes else ""
    count = f"; {len(samples)} parameter values" if params else ""
    return Convexity("checked", f"{label}: {how}{count}{reason}")


@dataclass(frozen=True)
class AtOne:
    f1_left: sp.Expr | None
    f1_right: sp.Expr | None
    f2_left: sp.Expr | None
    f2_right: sp.Expr | None
    strict: bool | None
    strict_detail: str
    method: str  # "symbolic" or "numeric"

    @property
    def f1(self) -> sp.Expr | None:
        """f'(1) when both sides agree, else None."""
        if (
            self.f1_left is not None
            and self.f1_right is not None
            and sp.simplify(self.f1_left - self.f1_right) == 0
        ):
            return self.f1_right
        return None

    @property
    def f2(self) -> sp.Expr | None:
        if (
            self.f2_left is not None
            and self.f2_right is not None
            and sp.simplify(self.f2_left - self.f2_right) == 0
        ):
            return self.f2_right
        return None


def _side_limit(expr: sp.Expr, order: int):
    value, _ = budgeted(lambda: sp.limit(sp.diff(expr, _T, order), _T, 0, "+"))
    if value is None or value.has(sp.Limit, sp.nan, sp.zoo):
        return None
    return sp.simplify(value)


def at_one(expr: sp.Expr, u: sp.Symbol) -> AtOne:
    """One-sided derivatives at 1 and strict convexity at 1 (module docstring)."""
    expr = exact(expr)
    right, left = expr.subs(u, 1 + _T), expr.subs(u, 1 - _T)
    f1r, f1l = _side_limit(right, 1), _side_limit(left, 1)
    f1l = None if f1l is None else -f1l  # d/dt f(1 - t) = -f'(1 - t)
    f2r, f2l = _side_limit(right, 2), _side_limit(left, 2)
    method = "symbolic"
    with mpmath.workdps(DPS):
        fp = sp.lambdify(u, sp.diff(expr, u), modules="mpmath") if smooth(expr) else None
        f = sp.lambdify(u, expr, modules="mpmath")

        def slope(x, side):  # one-sided difference quotient, for non-smooth f
            h = mpmath.mpf(10) ** -20
            return (f(x + h) - f(x)) / h if side > 0 else (f(x) - f(x - h)) / h

        def d1(x, side):
            return fp(x) if fp is not None else slope(x, side)

        if f1r is None or f1l is None:
            method = "numeric"
            f1r = f1r if f1r is not None else sp.Float(d1(mpmath.mpf(1), 1), 15)
            f1l = f1l if f1l is not None else sp.Float(d1(mpmath.mpf(1), -1), 15)
        strict, detail = None, ""
        if f1r.is_number and f1l.is_number and (f1r - f1l) > 0:
            strict, detail = True, f"a kink at 1: f'(1-) = {f1l} < f'(1+) = {f1r}"
        elif f2r is not None and f2l is not None and f2r.is_number and f2l.is_number and f2r > 0 and f2l > 0:
            strict, detail = True, f"f''(1-) = {f2l} > 0 and f''(1+) = {f2r} > 0"
        else:
            base_r, base_l = d1(mpmath.mpf(1), 1), d1(mpmath.mpf(1), -1)
            flat = []
            for j in range(1, 13):
                dlt = mpmath.mpf(10) ** -j
                up, down = d1(1 + dlt, 1) - base_r, base_l - d1(1 - dlt, -1)
                if not (up > 0 and down > 0):
                    flat.append(f"1 {'+' if not up > 0 else '-'} 1e-{j}")
            if flat:
                strict, detail = (
                    False,
                    f"f' does not increase through 1: f'(u) = f'(1) or less at u = {flat[0]}",
                )
            else:
                strict, detail = (
                    True,
                    ("f''(1) = 0, but f' increases strictly through 1 at u = 1 +- 10^-1..10^-12 (numeric)"),
                )
                method = "numeric"
    return AtOne(f1l, f1r, f2l, f2r, strict, detail, method)


def zero_of_f_prime(expr: sp.Expr, u: sp.Symbol) -> tuple[mpmath.mpf | None, str]:
    """Where ``f'`` vanishes on ``(0, inf)`` (a sign change on the log grid, refined), or None and why not."""
    expr = exact(expr)
    with mpmath.workdps(DPS):
        fp = sp.lambdify(u, sp.diff(expr, u), modules="mpmath")
        pts = [mpmath.e ** (mpmath.mpf(k) / 20) for k in range(-1200, 1201)]
        try:
            vals = [fp(x) for x in pts]
        except (ZeroDivisionError, ValueError, OverflowError, TypeError):
            return None, "f' could not be evaluated on the grid"
        for i in range(len(pts) - 1):
            if vals[i] == 0:
                return pts[i], "f' = 0 on the grid"
            if vals[i] * vals[i + 1] < 0:
                root = mpmath.findroot(fp, (pts[i], pts[i + 1]), solver="bisect")
                return root, "sign change of f'"
        sign = "negative" if vals[0] < 0 else "positive"
        return None, f"f' is {sign} at every grid point u in [e^-60, e^60]"
