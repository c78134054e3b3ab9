r"""Lemma 3.2: the practical loss with unnormalised weights has the trust-region target as its minimiser.

Statement. Let :math:`g(y) = \pi_{\mathrm{old}}(y)e^{A(y)/\eta} > 0` for responses :math:`y = 1..n` and
:math:`Z_g = \sum_y g(y)`. For every strictly convex :math:`f:(0,\infty)\to\mathbb R`,

.. math:: \sum_y g(y)\, f\!\left(\frac{\pi(y)}{g(y)}\right) \;\ge\; Z_g\, f(1/Z_g)
          \quad\text{for every distribution } \pi,

with equality if and only if :math:`\pi = g/Z_g`. Since :math:`Z_g = Z` (Lemma 3.1's partition function),
the minimiser :math:`g/Z_g` is exactly :math:`\pi^* = \pi_{\mathrm{old}}e^{A/\eta}/Z`: replacing both
normalised
weights of :math:`D_f(P_\theta\|P_A)` by the same unnormalised :math:`g` leaves the minimiser unchanged.

Assumptions: :math:`f` strictly convex (:math:`f(1) = 0` is not needed); :math:`g > 0`; :math:`\pi` a
distribution. The sum :math:`\sum_y g f(\pi/g)` is the :math:`\pi_{\mathrm{old}}`-expectation of the
per-sample
LAD loss :math:`e^{A/\eta}f(\rho e^{-A/\eta})`, :math:`\rho = \pi/\pi_{\mathrm{old}}`.

Proof. Jensen's inequality with weights :math:`g(y)/Z_g` (positive, summing to one) at the points
:math:`\pi(y)/g(y)`; strict convexity gives equality only when :math:`\pi(y)/g(y)` is constant, and the
normalisation fixes the constant. Runtime twin: ``ladtheory/surrogate.py``.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from ladtheory import divergences, surrogate
from ladtheory.proof import Derivation, Fact, NumericCheck, Result

n = sp.Symbol("n", integer=True, positive=True)
y = sp.Symbol("y", integer=True)
A = sp.IndexedBase("A", real=True)
g = sp.IndexedBase("g", positive=True)
pi = sp.IndexedBase("pi", positive=True)
q = sp.IndexedBase("pi_old", positive=True)
eta, Zg, Z, c = sp.symbols("eta Z_g Z c", positive=True)
f = sp.Function("f")

ZG_DEF = Fact("Z_g", sp.Eq(Zg, sp.Sum(g[y], (y, 1, n))), "definition")
NORMALISED = Fact("normalised", sp.Eq(sp.Sum(pi[y], (y, 1, n)), 1), "hypothesis", r"$\pi$ is a distribution")
PROPORTIONAL = Fact("pi = g/Z_g", sp.Eq(pi[y], g[y] / Zg), "hypothesis", "the candidate", forall=y)
G_DEF = Fact("g", sp.Eq(g[y], q[y] * sp.exp(A[y] / eta)), "definition", forall=y)
Z_DEF = Fact("Z", sp.Eq(Z, sp.Sum(q[y] * sp.exp(A[y] / eta), (y, 1, n))), "definition",
             "Lemma 3.1's partition function")

LOSS = sp.Sum(g[y] * f(pi[y] / g[y]), (y, 1, n))


def lower_bound() -> Derivation:
    d = Derivation(
        "lower bound (Jensen)", r"the practical loss is at least $Z_g f(1/Z_g)$",
        LOSS,
        claim=sp.Ge(LOSS, Zg * f(1 / Zg)),
        facts=[ZG_DEF, NORMALISED],
        convex=[f],
        assumptions=[r"$f$ strictly convex on $(0,\infty)$"],
    )
    d.step(Zg * sp.Sum(g[y] / Zg * f(pi[y] / g[y]), (y, 1, n)), "linearity", r"multiply and divide by $Z_g$")
    d.step(Zg * f(sp.Sum(g[y] / Zg * (pi[y] / g[y]), (y, 1, n))), "jensen",
           r"weights $g_y/Z_g > 0$ sum to 1", function=f, weights_sum=["Z_g"])
    d.step(Zg * f(sp.Sum(pi[y], (y, 1, n)) / Zg), "linearity", r"$g_y$ cancels; $1/Z_g$ leaves the sum")
    d.step(Zg * f(1 / Zg), "substitute", r"$\sum_y \pi_y = 1$", using="normalised")
    return d


def bound_attained() -> Derivation:
    d = Derivation(
        "the bound is attained at g/Z_g", r"at $\pi = g/Z_g$ the loss equals the bound",
        LOSS,
        claim=sp.Eq(LOSS, Zg * f(1 / Zg)),
        facts=[ZG_DEF, PROPORTIONAL],
    )
    d.step(sp.Sum(g[y] * f(1 / Zg), (y, 1, n)), "substitute", r"$\pi_y = g_y/Z_g$", using="pi = g/Z_g")
    d.step(f(1 / Zg) * sp.Sum(g[y], (y, 1, n)), "linearity", r"$f(1/Z_g)$ leaves the sum")
    d.step(Zg * f(1 / Zg), "substitute", r"definition of $Z_g$", using="Z_g")
    return d


def equality_case() -> Derivation:
    d = Derivation(
        "equality only at g/Z_g", r"equality in Jensen forces $\pi = g/Z_g$",
        sp.Eq(pi[y], c * g[y]),
        claim=sp.Implies(sp.Eq(pi[y], c * g[y]), sp.Eq(c, 1 / Zg)),
        facts=[ZG_DEF, NORMALISED],
        assumptions=[r"strict convexity: equality in Jensen iff $\pi_y/g_y = c$ is constant in $y$"],
    )
    d.step(sp.Eq(sp.Sum(pi[y], (y, 1, n)), c * sp.Sum(g[y], (y, 1, n))), "sum_both_sides",
           "sum over all responses", index=y, limits=(1, n))
    d.step(
        sp.Eq(1, c * Zg), "substitute", r"$\sum_y\pi_y = 1$, definition of $Z_g$", using=["normalised", "Z_g"]
    )
    d.step(sp.Eq(c, 1 / Zg), "solve", "linear", var=c)
    return d


def same_minimiser() -> Derivation:
    d = Derivation(
        "the minimiser is Lemma 3.1's target", r"$g/Z_g = \pi_{old}e^{A/\eta}/Z = \pi^*$",
        g[y] / Zg,
        claim=sp.Eq(g[y] / Zg, q[y] * sp.exp(A[y] / eta) / Z),
        facts=[G_DEF, ZG_DEF, Z_DEF],
    )
    d.step(q[y] * sp.exp(A[y] / eta) / sp.Sum(q[y] * sp.exp(A[y] / eta), (y, 1, n)), "substitute",
           r"definitions of $g$ and $Z_g$", using=["Z_g", "g"])
    d.step(q[y] * sp.exp(A[y] / eta) / Z, "substitute", r"definition of $Z$", using="Z")
    return d


STRICT = ("kl", "rkl", "js", "hellinger", "jeffreys", "pearson", "neyman", "triangular")
"""Built-ins that are strictly convex (TV is not: |u - 1| is affine on each side of 1)."""


def _check_every_builtin() -> tuple[float, str]:
    rng = np.random.default_rng(11)
    worst = 0.0
    for name in STRICT:
        for size in (2, 5, 64):
            q_ = rng.dirichlet(np.ones(size))
            a_ = rng.normal(0.0, 1.0, size)
            log_g = surrogate.log_weights(q_, a_, 0.5)
            worst = max(worst, np.abs(surrogate.minimise(log_g, name) - surrogate.target(log_g)).max())
    return worst, f"exact convex solver on f' only, {', '.join(STRICT)}; sizes 2, 5, 64"


def _check_scipy() -> tuple[float, str]:
    rng = np.random.default_rng(12)
    worst = 0.0
    for name in ("js", "kl", "hellinger"):
        q_ = rng.dirichlet(np.ones(4))
        log_g = surrogate.log_weights(q_, rng.normal(0.0, 1.0, 4), 1.0)
        pi_ = surrogate.minimise(log_g, name, method="scipy")
        star = surrogate.target(log_g)
        worst = max(worst, np.abs(pi_ - star).max())
        # and the minimum value is the bound Z_g f(1/Z_g)
        zg = float(np.exp(log_g).sum())
        bound = zg * float(divergences.get(name).f(np.array(1.0 / zg)))
        worst = max(worst, abs(surrogate.practical_loss(star, log_g, name) - bound))
    return worst, "scipy L-BFGS-B over the simplex (js, kl, hellinger), and the value at the minimiser"


def _check_tv_not_unique() -> tuple[float, str]:
    """TV is convex but not strictly: the practical loss has other minimisers, so strictness is needed."""
    log_g = np.log(np.array([1.0, 0.6, 0.4]))  # g = 2 (0.5, 0.3, 0.2): Z_g = 2
    star, other = surrogate.target(log_g), np.array([0.45, 0.35, 0.2])
    # Every pi <= g (coordinatewise) has loss sum_y |pi - g| = Z_g - 1: a flat set of minimisers.
    flat = abs(surrogate.practical_loss(other, log_g, "tv") - surrogate.practical_loss(star, log_g, "tv"))
    js_gap = surrogate.practical_loss(other, log_g, "js") - surrogate.practical_loss(star, log_g, "js")
    if not js_gap > 1e-6:  # control: a strictly convex f does separate the two
        return float("inf"), f"JS did not separate the two points (gap {js_gap:.3g})"
    return flat, f"TV: loss(other) - loss(g/Z_g) = {flat:.2e} (second minimiser); JS gap {js_gap:.4f}"


def result() -> Result:
    return Result(
        name="lemma_3_2_surrogate",
        title="Lemma 3.2: the practical loss has the same minimiser",
        claims=[
            sp.Ge(LOSS, Zg * f(1 / Zg)),
            sp.Eq(LOSS, Zg * f(1 / Zg)),
            sp.Implies(sp.Eq(pi[y], c * g[y]), sp.Eq(c, 1 / Zg)),
            sp.Eq(g[y] / Zg, q[y] * sp.exp(A[y] / eta) / Z),
        ],
        assumptions=(
            r"$f$ strictly convex on $(0,\infty)$",
            r"$g(y) > 0$ for all $y$",
            r"$\pi$ ranges over distributions",
        ),
        parts=[
            lower_bound(),
            bound_attained(),
            equality_case(),
            same_minimiser(),
            NumericCheck(
                "every strictly convex built-in",
                "numeric minimiser = g/Z_g for each built-in",
                r"\|\pi_{\mathrm{solver}} - g/Z_g\|_\infty \le 10^{-6}",
                _check_every_builtin,
                1e-6,
            ),
            NumericCheck(
                "scipy",
                "scipy minimiser and minimum value",
                r"\|\pi_{\mathrm{scipy}} - g/Z_g\|_\infty \le 10^{-6}",
                _check_scipy,
                1e-6,
            ),
            NumericCheck(
                "TV needs strictness",
                "TV is not strictly convex: a second minimiser exists",
                r"Z_g = 2:\ L_{TV}(\pi') = L_{TV}(g/Z_g),\ \pi' \ne g/Z_g",
                _check_tv_not_unique,
                1e-12,
            ),
        ],
        notes="Strict convexity is what makes the minimiser unique: for TV (|u - 1|, convex but piecewise "
        "affine) with Z_g = 2, every pi with pi <= g gives the same loss sum(g) - 1.",
    )
