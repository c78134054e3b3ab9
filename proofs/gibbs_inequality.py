r"""Gibbs' inequality for the theoretical LAD objective: D_f(P_theta || P_A) >= 0, = 0 iff P_theta = P_A.

Statement. Let :math:`P_\theta` and :math:`P_A` be distributions on responses :math:`y = 1..n` with
:math:`P_A(y) > 0` (as defined in ``proofs/equivalence_policy_advantage.py``: :math:`P_\theta \propto
\pi_\theta/\pi_{\mathrm{old}}`, :math:`P_A \propto e^{A/\eta}`, both positive when :math:`\pi_\theta,
\pi_{\mathrm{old}} > 0`). For every convex :math:`f` with :math:`f(1) = 0`,

.. math:: D_f(P_\theta\,\|\,P_A) = \sum_y P_A(y)\, f\!\left(\frac{P_\theta(y)}{P_A(y)}\right) \;\ge\; 0,

and, for any subgradient :math:`s_1` of :math:`f` at 1,

.. math:: D_f(P_\theta\,\|\,P_A) = \sum_y P_A(y)\, T_1\!\left(\frac{P_\theta(y)}{P_A(y)}\right),\qquad
          T_1(x) = f(x) - f(1) - s_1(x - 1) \ge 0 .

If :math:`f` is strictly convex at 1 (:math:`T_1(x) > 0` for :math:`x \ne 1`), then
:math:`D_f(P_\theta\|P_A) = 0` iff :math:`P_\theta = P_A`, which by the equivalence result holds iff
:math:`\pi_\theta = \pi^* = \pi_{\mathrm{old}}e^{A/\eta}/Z`. Strict convexity at 1 is necessary: a
generator flat on :math:`[1-\delta, 1+\delta]` gives :math:`D_f = 0` for every :math:`P_\theta` whose ratios
:math:`P_\theta/P_A` stay in that interval. TV (:math:`|u - 1|`) *is* strictly convex at 1 (take
:math:`s_1 = 0`), so it separates distributions although it is not strictly convex.

Assumptions: :math:`f` convex on :math:`(0,\infty)`, :math:`f(1) = 0`; :math:`P_A > 0`; both sum to one.

Proof. Jensen's inequality with the weights :math:`P_A(y)` at the points :math:`P_\theta(y)/P_A(y)`:
:math:`\sum P_A f(P_\theta/P_A) \ge f(\sum P_\theta) = f(1) = 0`. For the equality case expand the tangent
gaps: :math:`\sum P_A T_1 = D_f - f(1)\sum P_A - s_1(\sum P_\theta - \sum P_A) = D_f`. Runtime:
``ladtheory.trust_region.policy_induced`` / ``advantage_induced``; tests:
``tests/theory/test_gibbs_inequality.py``.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from ladtheory import divergences, trust_region
from ladtheory.proof import Derivation, Fact, NumericCheck, Result

n = sp.Symbol("n", integer=True, positive=True)
y = sp.Symbol("y", integer=True)
P = sp.IndexedBase("P_theta", positive=True)
Q = sp.IndexedBase("P_A", positive=True)
s1 = sp.Symbol("s_1", real=True)
f = sp.Function("f")

P_NORM = Fact("P_theta sums to 1", sp.Eq(sp.Sum(P[y], (y, 1, n)), 1), "hypothesis")
Q_NORM = Fact("P_A sums to 1", sp.Eq(sp.Sum(Q[y], (y, 1, n)), 1), "hypothesis")
F1 = Fact("f(1) = 0", sp.Eq(f(1), 0), "hypothesis")
D_F = sp.Sum(Q[y] * f(P[y] / Q[y]), (y, 1, n))


def nonnegative() -> Derivation:
    d = Derivation(
        "D_f >= 0 (Jensen)",
        r"$D_f(P_\theta\|P_A) \ge f(1) = 0$",
        D_F,
        claim=sp.Ge(D_F, 0),
        facts=[P_NORM, Q_NORM, F1],
        convex=[f],
        assumptions=[r"$f$ convex", r"$f(1) = 0$"],
    )
    d.step(
        f(sp.Sum(Q[y] * (P[y] / Q[y]), (y, 1, n))),
        "jensen",
        r"weights $P_A(y) > 0$ sum to 1",
        function=f,
        weights_sum=["P_A sums to 1"],
    )
    d.step(f(sp.Sum(P[y], (y, 1, n))), "algebra", r"$P_A$ cancels")
    d.step(f(1), "substitute", r"$\sum_y P_\theta(y) = 1$", using="P_theta sums to 1")
    d.step(sp.Integer(0), "substitute", r"$f(1) = 0$", using="f(1) = 0")
    return d


def tangent_gaps() -> Derivation:
    x_ = P[y] / Q[y]
    d = Derivation(
        "D_f is a sum of tangent gaps at 1",
        r"$\sum_y P_A T_1(P_\theta/P_A) = D_f(P_\theta\|P_A)$",
        sp.Sum(Q[y] * (f(x_) - f(1) - s1 * (x_ - 1)), (y, 1, n)),
        claim=sp.Eq(sp.Sum(Q[y] * (f(P[y] / Q[y]) - f(1) - s1 * (P[y] / Q[y] - 1)), (y, 1, n)), D_F),
        facts=[P_NORM, Q_NORM, F1],
        assumptions=[r"$s_1$ a subgradient of $f$ at 1"],
    )
    d.step(
        D_F - f(1) * sp.Sum(Q[y], (y, 1, n)) - s1 * sp.Sum(P[y], (y, 1, n)) + s1 * sp.Sum(Q[y], (y, 1, n)),
        "linearity",
        "split the sum",
    )
    d.step(
        D_F - f(1) - s1 + s1,
        "substitute",
        "both distributions sum to 1",
        using=["P_theta sums to 1", "P_A sums to 1"],
    )
    d.step(D_F, "substitute", r"$f(1) = 0$; the subgradient terms cancel", using="f(1) = 0")
    return d


def equality_case() -> Derivation:
    d = Derivation(
        "D_f = 0 forces P_theta = P_A",
        r"every tangent gap is zero: $P_\theta(y)/P_A(y) = 1$",
        sp.Eq(P[y] / Q[y], 1),
        claim=sp.Equivalent(sp.Eq(P[y] / Q[y], 1), sp.Eq(P[y], Q[y])),
        assumptions=[
            r"strict convexity at 1: $T_1(x) = 0 \iff x = 1$; a zero sum of nonnegative terms "
            r"with positive weights $P_A(y)$ has every term zero"
        ],
    )
    d.step(sp.Eq(P[y], Q[y]), "solve", r"linear in $P_\theta(y)$", var=P[y])
    return d


STRICT_AT_1 = ("kl", "rkl", "js", "hellinger", "tv", "jeffreys", "pearson", "neyman", "triangular")


def _d_f(p: np.ndarray, q: np.ndarray, name: str) -> float:
    div = divergences.get(name)
    return float(np.sum(q * div.f_log(np.log(p) - np.log(q))))


def _check_gibbs() -> tuple[float, str]:
    """D_f >= 0 at random pi; = 0 at pi = pi* (error = worst violation or value at the optimum)."""
    rng = np.random.default_rng(31)
    worst_neg, worst_zero, smallest = 0.0, 0.0, np.inf
    for _ in range(60):
        k = int(rng.integers(2, 20))
        q_old = rng.dirichlet(np.ones(k))
        A = rng.normal(0.0, 1.0, k)
        eta = float(rng.choice([0.25, 0.5, 1.0, 2.0]))
        p_a = trust_region.advantage_induced(A, eta)
        pi = rng.dirichlet(np.ones(k))
        p_theta = trust_region.policy_induced(pi, q_old)
        star = trust_region.forward_solution(q_old, A, eta)
        p_star = trust_region.policy_induced(star, q_old)
        for name in STRICT_AT_1:
            value = _d_f(p_theta, p_a, name)
            worst_neg = max(worst_neg, -value)
            smallest = min(smallest, value)
            worst_zero = max(worst_zero, abs(_d_f(p_star, p_a, name)))
    if not smallest > 0:
        return float("inf"), f"a random pi gave D_f = {smallest:.3g}, not > 0"
    return max(worst_neg, worst_zero), (
        f"60 instances x {len(STRICT_AT_1)} generators: min D_f at random pi "
        f"{smallest:.2e} > 0, max |D_f| at pi* {worst_zero:.1e}"
    )


def _check_flat_generator() -> tuple[float, str]:
    """A convex f(1) = 0 generator flat on [0.7, 1.3] has D_f = 0 at P_theta != P_A."""

    def flat(u_):
        return np.maximum(0.0, u_ - 1.3) ** 2 + np.maximum(0.0, 0.7 - u_) ** 2

    q = np.array([0.5, 0.3, 0.2])
    p = np.array([0.55, 0.27, 0.18])  # ratios 1.1, 0.9, 0.9
    value = float(np.sum(q * flat(p / q)))
    js = _d_f(p, q, "js")
    if not js > 1e-4:
        return float("inf"), f"JS control did not separate the two ({js:.3g})"
    return abs(value), f"flat generator: D_f(P || Q) = {value:.1e} with P != Q; JS control {js:.2e} > 0"


def result() -> Result:
    return Result(
        name="gibbs_inequality",
        title="Gibbs' inequality for D_f(P_theta || P_A)",
        claims=[nonnegative().claim, tangent_gaps().claim, equality_case().claim],
        assumptions=(
            r"$f$ convex on $(0,\infty)$, $f(1) = 0$",
            r"$P_A > 0$, both distributions sum to 1",
            r"for '$= 0 \Rightarrow P_\theta = P_A$': $f$ strictly convex at 1",
        ),
        parts=[
            nonnegative(),
            tangent_gaps(),
            equality_case(),
            NumericCheck(
                "D_f on random instances",
                "D_f > 0 at random pi, 0 at pi*",
                r"\min D_f(\mathrm{random}) > 0,\ |D_f(\pi^*)| \le 10^{-12}",
                _check_gibbs,
                1e-12,
            ),
            NumericCheck(
                "strictness at 1 is needed",
                "a generator flat around 1 does not separate",
                r"f = (u - 1.3)_+^2 + (0.7 - u)_+^2:\ D_f = 0,\ P_\theta \ne P_A",
                _check_flat_generator,
                0.0,
            ),
        ],
    )
