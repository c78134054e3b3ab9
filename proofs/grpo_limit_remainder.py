r"""The GRPO small-step limit with an explicit remainder, and what it says at the default eta = 0.25.

Statement. With :math:`s = A/\eta` and :math:`w(s) = -f'(e^{-s})` (the effective weight at :math:`\rho = 1`),
for :math:`f` three times differentiable on :math:`(0,\infty)`,

.. math:: w(s) = -f'(1) + f''(1)\,s + R(s),\qquad R(s) = \int_0^s (s - t)\,w''(t)\,dt,\qquad
          |R(s)| \le \frac{s^2}{2}\max_{|t|\le|s|}|w''(t)|,

with :math:`w''(t) = -f'''(e^{-t})e^{-2t} - f''(e^{-t})e^{-t}` and :math:`w''(0) = -f'''(1) - f''(1)`. In the
expected direction, :math:`\|\mathbb E_\pi[R(A/\eta)\nabla\log\pi]\| \le \frac{C_f(S)}{\eta^2}
\mathbb E_\pi[A^2\|\nabla\log\pi\|]` with :math:`C_f(S) = \tfrac12\max_{|t|\le S}|w''(t)|` and
:math:`S = \max|A|/\eta`.

For ``js`` the bound is global and two-sided: :math:`w(s) = \tfrac12\log\frac{1+e^s}{2}`,
:math:`w''(s) = \frac{e^s}{2(1+e^s)^2}\in(0, \tfrac18]`, so

.. math:: 0 \le w(s) - \frac s4 \le \frac{s^2}{16}\quad\text{for every } s,

and the relative error of the linear term is at most :math:`|s|/4`: it is accurate to 10% only for
:math:`|A|/\eta \le 0.4`, i.e. :math:`|A| \le 0.1` at :math:`\eta = 0.25`. ``kl`` (:math:`u\log u`) has
:math:`w = s - 1` exactly (:math:`R \equiv 0`).

What it says at the default :math:`\eta = 0.25` with group-normalised :math:`|A|` up to about 3
(:math:`|s|` up to 12): nothing quantitative. The bound :math:`s^2/16 = 9` exceeds the linear term
:math:`|s|/4 = 3`; the exact JS weight is :math:`w(12) = 5.65` (1.9 times the linear :math:`3`) and
:math:`w(-12) = -0.347` (0.12 times :math:`-3`). At the default, one LAD(js) update per rollout is a strongly
asymmetric reweighting of GRPO's direction: for :math:`s\to\infty`, :math:`w \approx s/2 - \tfrac12\log 2`
(slope :math:`2f''(1)`), and for :math:`s\to-\infty`, :math:`w\to -\tfrac12\log 2`: bad responses are pushed
down with a bounded weight. The limit does not say LAD and GRPO train alike there; it says they do as
:math:`\eta\to\infty` (or for :math:`|A| \ll \eta`).

Assumptions: :math:`f\in C^3(0,\infty)` (all built-ins but TV); :math:`\rho = 1`; a finite response set.

Proof. Taylor's theorem with integral remainder. For JS: differentiate twice;
:math:`\tfrac18 - w''(s) = \frac{(e^s - 1)^2}{8(1+e^s)^2} = v^2/8 \ge 0` with :math:`v = \tanh(s/2)`, so
:math:`D(s) = s^2/16 - R(s)` has :math:`D(0) = D'(0) = 0` and :math:`D'' \ge 0`, hence :math:`D \ge 0`;
likewise :math:`R(0) = R'(0) = 0`, :math:`R'' = w'' > 0` gives :math:`R \ge 0`. Runtime:
``ladtheory.objective.effective_weight``, ``ladtheory.reductions.first_order_weight``; tests:
``tests/theory/test_grpo_limit_remainder.py``.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from ladtheory import divergences, reductions
from ladtheory.objective import effective_weight
from ladtheory.proof import Derivation, Fact, NumericCheck, Result

s = sp.Symbol("s", real=True)
v = sp.Symbol("v", real=True, nonzero=True)  # tanh(s/2), nonzero for s != 0
x = sp.Symbol("x", positive=True)
fp = sp.Function("f'")
c2, c3 = sp.symbols("f''(1) f'''(1)", real=True)
W_JS = sp.log((1 + sp.exp(s)) / 2) / 2
R_JS = W_JS - s / 4
V_DEF = Fact(
    "v = tanh(s/2)", sp.Eq(v, (sp.exp(s) - 1) / (sp.exp(s) + 1)), "definition", r"nonzero for $s\ne0$"
)
C2_DEF = Fact("f''(1)", sp.Eq(c2, sp.diff(fp(x), x).subs(x, 1)), "definition")
C3_DEF = Fact("f'''(1)", sp.Eq(c3, sp.diff(fp(x), x, 2).subs(x, 1)), "definition")


def second_order() -> Derivation:
    d = Derivation(
        "second-order coefficient, generic f",
        r"$w''(0) = -f'''(1) - f''(1)$",
        -fp(sp.exp(-s)),
        claim=sp.Eq(-fp(sp.exp(-s)), -fp(1) + c2 * s - (c3 + c2) * s**2 / 2 + sp.O(s**3)),
        facts=[C2_DEF, C3_DEF],
        assumptions=[r"$f'$ twice differentiable at 1"],
    )
    d.step(
        -fp(1)
        + s * sp.diff(fp(x), x).subs(x, 1)
        - s**2 / 2 * (sp.diff(fp(x), x, 2).subs(x, 1) + sp.diff(fp(x), x).subs(x, 1)),
        "series",
        "second order in $s = A/\\eta$",
        var=s,
        point=0,
        order=3,
    )
    d.step(
        -fp(1) + c2 * s - (c3 + c2) * s**2 / 2,
        "substitute",
        r"name $f''(1)$, $f'''(1)$",
        using=["f''(1)", "f'''(1)"],
    )
    return d


def js_weight() -> Derivation:
    d = Derivation(
        "js weight at rho = 1",
        r"$w_{js}(s) = -f'(e^{-s}) = \tfrac12\log\frac{1+e^s}{2}$",
        -divergences.get("js").f_prime_expr.subs(divergences.U, sp.exp(-s)),
        claim=sp.Eq(-divergences.get("js").f_prime_expr.subs(divergences.U, sp.exp(-s)), W_JS),
    )
    d.step(W_JS, "algebra", r"$\frac{2e^{-s}}{1+e^{-s}} = \frac{2}{1+e^{s}}$")
    return d


def js_upper() -> Derivation:
    D = s**2 / 16 - R_JS
    d = Derivation(
        "js: R(s) <= s^2/16",
        r"$D = s^2/16 - R$ has $D'' = v^2/8 > 0$ ($s\ne 0$)",
        D,
        claim=sp.Gt(sp.Derivative(s**2 / 16 - R_JS, s, 2), 0),
        facts=[V_DEF],
        assumptions=[r"$D(0) = D'(0) = 0$ (next derivations) and $D'' \ge 0$ give $D \ge 0$ (Taylor)"],
    )
    d.step(s / 8 + sp.Rational(1, 4) - sp.exp(s) / (2 * (1 + sp.exp(s))), "diff", "first derivative", var=s)
    d.step(sp.Rational(1, 8) - sp.exp(s) / (2 * (1 + sp.exp(s)) ** 2), "diff", "second derivative", var=s)
    d.step((sp.exp(s) - 1) ** 2 / (8 * (sp.exp(s) + 1) ** 2), "algebra", "a square")
    d.step(v**2 / 8, "substitute", r"$v = \tanh(s/2)$", using="v = tanh(s/2)")
    d.step(sp.Integer(0), "positive", r"$v \ne 0$")
    return d


def js_lower() -> Derivation:
    d = Derivation(
        "js: R(s) >= 0",
        r"$R'' = w'' = \frac{e^s}{2(1+e^s)^2} > 0$",
        R_JS,
        claim=sp.Gt(sp.Derivative(R_JS, s, 2), 0),
        assumptions=[r"$R(0) = R'(0) = 0$ and $R'' > 0$ give $R \ge 0$ (Taylor)"],
    )
    d.step(sp.exp(s) / (2 * (1 + sp.exp(s))) - sp.Rational(1, 4), "diff", "first derivative", var=s)
    d.step(sp.exp(s) / (2 * (1 + sp.exp(s)) ** 2), "diff", "second derivative", var=s)
    d.step(sp.Integer(0), "positive", "a ratio of exponentials")
    return d


def js_value_at_0() -> Derivation:
    start = sp.Subs(R_JS, s, 0)
    d = Derivation("js: R(0) = 0", r"value of $R_{js}$ at $s = 0$", start, claim=sp.Eq(start, 0))
    d.step(sp.Integer(0), "algebra", r"$\log 1 = 0$")
    return d


def js_slope_at_0() -> Derivation:
    start = sp.Subs(sp.Derivative(R_JS, s), s, 0)
    d = Derivation("js: R'(0) = 0", r"slope of $R_{js}$ at $s = 0$", start, claim=sp.Eq(start, 0))
    d.step(sp.Integer(0), "algebra", r"$\tfrac12\cdot\tfrac12 - \tfrac14 = 0$")
    return d


def kl_exact() -> Derivation:
    d = Derivation(
        "kl: no remainder",
        r"$w_{kl}(s) = -(\log e^{-s} + 1) = s - 1$ exactly",
        -divergences.get("kl").f_prime_expr.subs(divergences.U, sp.exp(-s)),
        claim=sp.Eq(-divergences.get("kl").f_prime_expr.subs(divergences.U, sp.exp(-s)), s - 1,
                    evaluate=False),
    )
    d.step(s - 1, "algebra", r"$\log e^{-s} = -s$")
    return d


SMOOTH = ("kl", "rkl", "js", "hellinger", "jeffreys", "pearson", "neyman", "triangular")


def _w_second(name: str):
    t = sp.Symbol("t", real=True)
    w = -divergences.get(name).f_prime_expr.subs(divergences.U, sp.exp(-t))
    return sp.lambdify(t, sp.diff(w, t, 2), "numpy")


def _check_taylor_bound() -> tuple[float, str]:
    """|R(s)| <= s^2/2 max_{|t| <= |s|} |w''(t)| on a grid: the runtime weight against the sympy w''."""
    worst = -np.inf
    half = np.linspace(0.0, 12.0, 2401)  # |s| grid; the max of |w''| over [-S, S] is a running max
    for name in SMOOTH:
        w2 = _w_second(name)
        envelope = np.maximum.accumulate(
            np.maximum(np.abs(w2(half) * np.ones_like(half)), np.abs(w2(-half) * np.ones_like(half)))
        )
        for sign in (1.0, -1.0):
            s_ = sign * half[1:]
            bound = 0.5 * s_**2 * envelope[1:]
            rem = effective_weight(s_ * 0.25, 0.0, name, 0.25) - reductions.first_order_weight(
                s_ * 0.25, 0.25, name
            )
            worst = max(worst, float(np.max((np.abs(rem) - bound) / np.maximum(1.0, bound))))
    return max(
        worst, 0.0
    ), f"{len(SMOOTH)} generators, s in [-12, 12]: max (|R| - bound)/max(1, bound) {worst:.1e}"


def _check_js_two_sided() -> tuple[float, str]:
    s_ = np.linspace(-40.0, 40.0, 8001)
    rem = effective_weight(s_ * 0.25, 0.0, "js", 0.25) - s_ / 4
    low, high = float(np.min(rem)), float(np.max(rem - s_**2 / 16))
    tight = float(effective_weight(0.01 * 0.25, 0.0, "js", 0.25) - 0.01 / 4) / (0.01**2 / 16)
    return max(-low, high, 0.0), (
        f"s in [-40, 40]: min R {low:.1e} (>= 0), max R - s^2/16 {high:.1e} (<= 0); "
        f"R(0.01)/(0.01^2/16) = {tight:.6f}"
    )


DEFAULT_TABLE = (0.1, 0.5, 1.0, 3.0)
"""|A| at which the default eta = 0.25 is tabulated (group-normalised advantages reach about 3)."""


def default_table(eta: float = 0.25) -> list[dict]:
    """Exact JS weight w(A/eta) against the linear term A/(4 eta), for A = +-DEFAULT_TABLE."""
    rows = []
    for mag in DEFAULT_TABLE:
        for a_ in (mag, -mag):
            exact = float(effective_weight(a_, 0.0, "js", eta))
            linear = float(reductions.grpo_limit_weight(a_, eta, "js"))
            rows.append(
                {
                    "A": a_,
                    "s": a_ / eta,
                    "exact": exact,
                    "linear": linear,
                    "ratio": exact / linear,
                    "bound": (a_ / eta) ** 2 / 16,
                }
            )
    return rows


def _check_default() -> tuple[float, str]:
    rows = {r["A"]: r for r in default_table()}
    expected = {3.0: 0.5 * np.log((1 + np.exp(12.0)) / 2), -3.0: 0.5 * np.log((1 + np.exp(-12.0)) / 2)}
    err = max(abs(rows[a_]["exact"] - val) for a_, val in expected.items())
    if not (rows[3.0]["ratio"] > 1.8 and rows[-3.0]["ratio"] < 0.2 and abs(rows[0.1]["ratio"] - 1) < 0.1):
        return float("inf"), f"the default-settings ratios are not as stated: {rows}"
    return err, (
        f"eta = 0.25: w(A=3)/linear = {rows[3.0]['ratio']:.3f}, w(A=-3)/linear = {rows[-3.0]['ratio']:.3f}, "
        f"w(A=0.1)/linear = {rows[0.1]['ratio']:.3f}"
    )


def result() -> Result:
    return Result(
        name="grpo_limit_remainder",
        title="The GRPO limit with a remainder bound, and the default eta = 0.25",
        claims=[second_order().claim, js_weight().claim, js_upper().claim, js_lower().claim,
                js_value_at_0().claim, js_slope_at_0().claim, kl_exact().claim],
        assumptions=(r"$f \in C^3(0,\infty)$ (not TV)", r"$\rho = 1$", r"$s = A/\eta$"),
        parts=[
            second_order(),
            js_weight(),
            js_upper(),
            js_lower(),
            js_value_at_0(),
            js_slope_at_0(),
            kl_exact(),
            NumericCheck(
                "Taylor bound, every smooth built-in",
                "the remainder bound holds on s in [-12, 12]",
                r"|R(s)| \le \tfrac{s^2}{2}\max_{|t|\le|s|}|w''(t)|",
                _check_taylor_bound,
                1e-9,
            ),
            NumericCheck(
                "js two-sided bound",
                "0 <= R_js(s) <= s^2/16, tight at 0",
                r"0 \le w_{js}(s) - s/4 \le s^2/16",
                _check_js_two_sided,
                1e-12,
            ),
            NumericCheck(
                "default eta = 0.25",
                "exact JS weight vs the linear term at |A| = 0.1 .. 3",
                r"w(12)/3 \approx 1.88,\ w(-12)/(-3) \approx 0.12",
                _check_default,
                1e-12,
            ),
        ],
    )
