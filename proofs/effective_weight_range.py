r"""Beyond the paper: the range of the effective weight :math:`w(A, \rho = 1)` for every built-in divergence.

Statement. With :math:`s = A/\eta`, the weight on :math:`\nabla\log\pi_\theta(y)` at the start of an iteration
(:math:`\rho = 1`) is :math:`w(s) = -f'(e^{-s})`. Its limits as :math:`A \to -\infty` and :math:`A \to +\infty`
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
KL is bounded below, by 0); the growth rate above is needed too. This is a statement about
:math:`\rho = 1` only; away from it the brake at :math:`\rho = e^{A/\eta}` acts for every divergence.

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


def limits(name: str) -> list[Derivation]:
    """Two derivations per divergence: the weight's closed form, then its limit at each end."""
    div = divergences.get(name)
    w_def = -div.f_prime_expr.subs(divergences.U, sp.exp(-S))
    rng = reductions.weight_range(name)
    out = []
    for end, point, value, growth in (("A -> -inf", -sp.oo, rng.low, rng.growth_low),
                                      ("A -> +inf", sp.oo, rng.high, rng.growth_high)):
        d = Derivation(
            f"{name}: {end}", rf"`{name}`: $w \to {sp.latex(value)}$ as $A\to{sp.latex(point)}$ ({growth})",
            w_def,
            statement=rf"\lim_{{A\to{sp.latex(point)}}} -f'(e^{{-A/\eta}}) = {sp.latex(value)}",
        )
        d.step(rng.weight, "algebra", r"simplify $-f'(e^{-s})$, $s = A/\eta$")
        d.step(value, "limit", growth, var=S, point=point)
        out.append(d)
    return out


def _check_runtime_tails() -> tuple[float, str]:
    """The runtime effective_weight approaches the sympy limits (finite ones) or exceeds any bound."""
    worst = 0.0
    for name in divergences.BUILTIN_NAMES:
        rng = reductions.weight_range(name)
        w_fn = sp.lambdify(S, rng.weight, "numpy")
        s_grid = np.linspace(-8.0, 8.0, 33)
        runtime = objective.effective_weight(s_grid, np.zeros_like(s_grid), name, 1.0)
        worst = max(worst, float(np.abs(runtime - w_fn(s_grid)).max() / max(1.0, np.abs(runtime).max())))
        for value, s_far in ((rng.low, -80.0), (rng.high, 80.0)):
            far = float(objective.effective_weight(s_far, 0.0, name, 1.0))
            if value.is_finite:
                worst = max(worst, abs(far - float(value)))
            elif np.sign(far) != (1 if value == sp.oo else -1) or abs(far) < 30.0:  # slowest: js, 80/2
                return float("inf"), f"{name}: w({s_far}) = {far}, expected {value}"
    return worst, "runtime effective_weight = sympy w(s) on [-8, 8]; at |s| = 80 it meets the limits"


def _check_grouping() -> tuple[float, str]:
    """The two groups as the table claims: strict = bounded below and growth at most e^{|A|/(2 eta)}."""
    def growth_rate(r: reductions.WeightRange) -> sp.Expr:
        if r.high.is_finite:
            return sp.Integer(0)
        return sp.limit(sp.log(sp.Abs(r.weight)) / S, S, sp.oo)

    bad = []
    for name in STRICT_GROUP:
        r = reductions.weight_range(name)
        if not (r.bounded_below and growth_rate(r) <= sp.Rational(1, 2)):
            bad.append(name)
    for name in WEAK_GROUP:
        r = reductions.weight_range(name)
        if r.bounded_below and growth_rate(r) <= sp.Rational(1, 2):
            bad.append(name)
    return float(len(bad)), "misclassified: " + (", ".join(bad) if bad else "none")


def result() -> Result:
    parts: list = []
    for name in divergences.BUILTIN_NAMES:
        parts += limits(name)
    parts += [
        NumericCheck("runtime tails", "effective_weight meets the symbolic limits",
                     r"|w_{\mathrm{runtime}}(s) - w_{\mathrm{sympy}}(s)| \le 10^{-9}", _check_runtime_tails, 1e-9),
        NumericCheck("strict vs weak", "the grouping: bounded below and growth at most e^{|A|/(2 eta)}",
                     r"\text{strict} \iff \inf_A w > -\infty \wedge w = O(e^{A/(2\eta)})", _check_grouping, 0.0),
    ]
    return Result(
        name="effective_weight_range",
        title=r"The range of the effective weight $w(A, 1)$ per divergence",
        statement=r"w(A, 1) = -f'(e^{-A/\eta}):\ \text{limits as } A\to\pm\infty",
        assumptions=(r"$\rho = 1$", r"$\eta > 0$ fixed"),
        parts=parts,
        notes="Strict (TV, Hellinger, JS): bounded below and at most e^{|A|/(2 eta)} above. Weak: KL and "
              "Jeffreys unbounded below; reverse KL and Jeffreys grow like e^{A/eta}.",
    )
