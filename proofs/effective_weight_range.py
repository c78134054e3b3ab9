r"""Beyond the paper: the range of the effective weight :math:`w(A, \rho = 1)` for every built-in divergence.

Statement. With :math:`s = A/\eta`, the weight on :math:`\nabla\log\pi_\theta(y)` at the start of an iteration
(:math:`\rho = 1`) is :math:`w(s) = -f'(e^{-s})`. Its limits as :math:`A \to -\infty` and :math:`A \to
+\infty`
are, for the registry's built-ins (computed by sympy below; "exp" means growth like :math:`e^{c|A|/\eta}`):

=============  =========================  ======================  ========
divergence     A -> -inf                  A -> +inf               group
=============  =========================  ======================  ========
kl             -inf (linear)              +inf (linear)           weak
rkl            0                          +inf (exp, c = 1)       weak
jeffreys       -inf (linear)              +inf (exp, c = 1)       weak
js             -log(2)/2                  +inf (linear, 1/2)      strict
hellinger      -1                         +inf (exp, c = 1/2)     strict
tv             -1                         1                       strict
pearson        -inf (exp, c = 1)          2                       [ours]
neyman         -1                         +inf (exp, c = 2)       [ours]
triangular     -1                         3                       [ours]
=============  =========================  ======================  ========

What this says about the paper's finding that the "strict" divergences (TV, Hellinger, JS) beat the
"weak" ones (KL, reverse KL, Jeffreys): every strict divergence has a weight that is **bounded below**
(a low-advantage response is pushed down with at most a fixed force) and grows **at most like**
:math:`e^{|A|/(2\eta)}` above; every weak one breaks one of the two: KL and Jeffreys push low-advantage
responses down without bound, reverse KL and Jeffreys reinforce high-advantage responses like
:math:`e^{A/\eta}` (the target ratio itself). Bounded-below alone does not separate the groups (reverse
KL is bounded below, by 0); the growth rate above is needed too. The exponential rates take the values
0 (linear or bounded), 1/2 (Hellinger), 1 and 2: every strict divergence has rate at most 1/2 and every weak
one either is unbounded below or has rate 1, so any threshold in (1/2, 1) separates the groups; none
separates them "at" 1/2. Every limit and every rate below is a step-checked derivation (``sympy.limit``,
confirmed by a leading-term expansion where sympy gives one and by evaluation at ever larger ``|s|``).
This is a statement about :math:`\rho = 1` only. Away from it the per-sample brake (descent raises
:math:`\log\pi(y)` while :math:`\rho < e^{A/\eta}` and lowers it beyond) needs :math:`f'(1) = 0` and
:math:`f` strictly convex at 1: it holds for every built-in but ``kl`` (brake at
:math:`\rho = e^{A/\eta - 1}`), ``rkl`` (no brake: its weight is :math:`e^{A/\eta} > 0` at every :math:`\rho`)
and
``tv`` (not strictly convex at 1: its weight is a sign).

Assumptions: :math:`\rho = 1`; :math:`\eta > 0` fixed (limits in :math:`A`). A constant shift of :math:`f'`
(:math:`f \to f + c(u - 1)`) shifts :math:`w` by :math:`-c`, which changes the limits but not whether they
are finite nor the growth rates. Runtime twin: ``ladtheory.reductions.weight_range``.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from ladtheory import divergences, objective, reductions
from ladtheory.proof import Derivation, NumericCheck, Result

S = reductions.S  # s = A / eta
STRICT_GROUP = ("tv", "hellinger", "js")
WEAK_GROUP = ("kl", "rkl", "jeffreys")
_oo, _half = sp.oo, sp.Rational(1, 2)
TABLE = {
    # name: (lim A->-inf, lim A->+inf, growth at -inf, growth at +inf); growth: ("linear", c) means w/s -> c,
    # ("exp", c) means log|w| / |s| -> c, None a finite limit.
    "kl": (-_oo, _oo, ("linear", 1), ("linear", 1)),
    "rkl": (0, _oo, None, ("exp", 1)),
    "jeffreys": (-_oo, _oo, ("linear", 1), ("exp", 1)),
    "js": (-sp.log(2) / 2, _oo, None, ("linear", _half)),
    "hellinger": (-1, _oo, None, ("exp", _half)),
    "tv": (-1, 1, None, None),
    "pearson": (-_oo, 2, ("exp", 1), None),
    "neyman": (-1, _oo, None, ("exp", 2)),
    "triangular": (-1, 3, None, None),
}
"""The claimed table: every entry is the claim of a derivation below (so it cannot be wrong and pass)."""


def weight(name: str) -> sp.Expr:
    """w(s) = -f'(e^{-s}), from the registry's sympy generator."""
    return -divergences.get(name).f_prime_expr.subs(divergences.U, sp.exp(-S))


def limits(name: str) -> list[Derivation]:
    """Per divergence and end: the limit of w, and for an infinite limit its growth rate."""
    w_def = weight(name)
    low, high, g_low, g_high = TABLE[name]
    out = []
    for end, point, value, growth in (("A -> -inf", -_oo, low, g_low), ("A -> +inf", _oo, high, g_high)):
        value = sp.sympify(value)
        d = Derivation(
            f"{name}: {end}", rf"`{name}`: $w \to {sp.latex(value)}$ as $A\to{sp.latex(point)}$",
            w_def, claim=sp.Eq(sp.Limit(w_def, S, point), value),
        )
        d.step(sp.simplify(w_def), "algebra", r"simplify $-f'(e^{-s})$, $s = A/\eta$")
        d.step(value, "limit", var=S, point=point)
        out.append(d)
        if growth is None:
            continue
        kind, rate = growth
        side = sp.sign(point)  # |s| = side * s near this end
        if kind == "linear":
            expr = w_def / S
            title = rf"`{name}`: $w/s \to {sp.latex(rate)}$ as $A\to{sp.latex(point)}$ (linear growth)"
        else:
            expr = sp.log(sp.sign(value) * w_def) / (side * S)
            title = (
                rf"`{name}`: $\log|w|/|s| \to {sp.latex(rate)}$ as $A\to{sp.latex(point)}$ (exponential rate)"
            )
        g = Derivation(f"{name}: growth {end}", title, expr, claim=sp.Eq(sp.Limit(expr, S, point), rate))
        g.step(sp.Integer(rate) if rate == int(rate) else rate, "limit", var=S, point=point)
        out.append(g)
    return out


def exp_rate(name: str, end: int) -> sp.Expr:
    """The exponential growth rate at one end from TABLE (0 for linear growth or a finite limit)."""
    growth = TABLE[name][2 + end]
    return sp.sympify(growth[1]) if growth is not None and growth[0] == "exp" else sp.Integer(0)


def _same_limit(a, b) -> bool:
    a, b = sp.sympify(a), sp.sympify(b)
    return a == b or bool(a.is_finite and b.is_finite and sp.simplify(a - b) == 0)


def _check_runtime_tails() -> tuple[float, str]:
    """The runtime effective_weight equals the sympy w(s), and the runtime twin reductions.weight_range
    reports the table's limits."""
    worst = 0.0
    for name in divergences.BUILTIN_NAMES:
        w_fn = sp.lambdify(S, weight(name), "numpy")
        s_grid = np.linspace(-8.0, 8.0, 33)
        runtime = objective.effective_weight(s_grid, np.zeros_like(s_grid), name, 1.0)
        worst = max(worst, float(np.abs(runtime - w_fn(s_grid)).max() / max(1.0, np.abs(runtime).max())))
        twin = reductions.weight_range(name)
        if not (_same_limit(twin.low, TABLE[name][0]) and _same_limit(twin.high, TABLE[name][1])):
            return float("inf"), f"{name}: reductions.weight_range gives ({twin.low}, {twin.high})"
    return worst, "runtime effective_weight = sympy w(s) on [-8, 8]; reductions.weight_range = the table"


def _check_grouping() -> tuple[float, str]:
    """The groups from the proved table: strict = bounded below and exponential rate above <= 1/2;
    weak = unbounded below or rate 1. The gap between 1/2 and 1 is what separates them."""
    bad, rates = [], {}
    for name in STRICT_GROUP + WEAK_GROUP:
        low = sp.sympify(TABLE[name][0])
        rates[name] = exp_rate(name, 1)
        strict = bool(low.is_finite) and rates[name] <= _half
        if strict != (name in STRICT_GROUP):
            bad.append(name)
    weak_min = min(rates[n] for n in WEAK_GROUP if sp.sympify(TABLE[n][0]).is_finite)
    strict_max = max(rates[n] for n in STRICT_GROUP)
    detail = (f"misclassified: {', '.join(bad) or 'none'}; strict rates <= {strict_max}, weak bounded-below "
              f"rates >= {weak_min}")
    return float(len(bad)) + float(not strict_max < weak_min), detail


def result() -> Result:
    parts: list = []
    for name in divergences.BUILTIN_NAMES:
        parts += limits(name)
    parts += [
        NumericCheck(
            "runtime tails",
            "effective_weight and reductions.weight_range against the table",
            r"|w_{\mathrm{runtime}}(s) - w_{\mathrm{sympy}}(s)| \le 10^{-9}",
            _check_runtime_tails,
            1e-9,
        ),
        NumericCheck(
            "strict vs weak",
            "the grouping, from the proved limits and rates",
            r"\text{strict} \iff \inf_A w > -\infty \wedge \text{rate}_{+\infty} \le 1/2",
            _check_grouping,
            0.0,
        ),
    ]
    return Result(
        name="effective_weight_range",
        title=r"The range of the effective weight $w(A, 1)$ per divergence",
        claims=[p.claim for p in parts if isinstance(p, Derivation)],
        assumptions=(r"$\rho = 1$", r"$\eta > 0$ fixed (limits in $s = A/\eta$)"),
        parts=parts,
        notes="Strict (TV, Hellinger, JS): bounded below and exponential rate at most 1/2 above. "
        "Weak: KL and Jeffreys unbounded below; reverse KL and Jeffreys grow like e^{A/eta} (rate 1).",
    )
