r"""Lemma 3.2's minimiser is unique, from strict convexity alone; and the unnormalised case.

Statement. Let :math:`g(y) > 0` (:math:`y = 1..n`), :math:`Z_g = \sum_y g(y)`, :math:`c = 1/Z_g` and
:math:`L(\pi) = \sum_y g(y) f(\pi(y)/g(y))`. For every convex :math:`f` and every subgradient :math:`s_c` of
:math:`f` at :math:`c` (:math:`f'(c)` where :math:`f` is differentiable), and every distribution :math:`\pi`,

.. math:: L(\pi) - Z_g f(1/Z_g) = \sum_y g(y)\, T_c\!\left(\frac{\pi(y)}{g(y)}\right), \qquad
          T_c(x) = f(x) - f(c) - s_c (x - c) \;\ge 0 .

If :math:`f` is strictly convex, :math:`T_c(x) > 0` for :math:`x \ne c`, so :math:`L(\pi) = Z_g f(1/Z_g)`
forces :math:`\pi(y)/g(y) = c` for every :math:`y`, i.e. :math:`\pi = g/Z_g`: the minimiser is unique and
nothing about its form is assumed (the earlier proof, ``proofs/lemma_3_2_surrogate.py``, took the
equality case of Jensen's inequality as an assumption). Strict convexity *at* :math:`c` suffices.

Unnormalised case. Over unnormalised :math:`\pi \in (0,\infty)^n` (no :math:`\sum_y \pi(y) = 1`), if
:math:`f` has a minimiser :math:`m` (for :math:`f'(1) = 0`, :math:`m = 1`), then
:math:`L(\pi) - Z_g f(m) = \sum_y g(y)\,[f(\pi(y)/g(y)) - f(m)] \ge 0`, with equality iff
:math:`\pi = m\,g` when :math:`m` is the unique minimiser (strict convexity). For :math:`f'(1) = 0` the
unnormalised minimiser is :math:`\pi = g = \pi_{\mathrm{old}} e^{A/\eta}`: every response at its per-sample
brake point :math:`\rho = e^{A/\eta}` (``proofs/brake_lemma.py``), of total mass :math:`Z_g`, not 1. The
normalisation is what turns the per-sample target :math:`e^{A/\eta}` into :math:`e^{A/\eta}/Z`.
For ``kl`` (:math:`u\log u`, :math:`m = 1/e`) the unnormalised minimiser is :math:`g/e`.

Assumptions: :math:`g > 0`; :math:`f` convex on :math:`(0,\infty)` (strictly, or strictly at the point
:math:`c`, for uniqueness); :math:`\pi` a distribution (normalised case) or any positive vector.

Proof. Expand the right side: :math:`\sum g f(\pi/g) - f(c)\sum g - s_c(\sum\pi - c\sum g)`; the last
bracket is :math:`1 - 1 = 0`. The unnormalised identity is the definition of :math:`Z_g`. Runtime twin:
``ladtheory.surrogate``; tests: ``tests/theory/test_lemma_3_2_uniqueness.py``.
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from scipy.optimize import minimize_scalar

from ladtheory import divergences, surrogate
from ladtheory.proof import Derivation, Fact, NumericCheck, Result

n = sp.Symbol("n", integer=True, positive=True)
y = sp.Symbol("y", integer=True)
g = sp.IndexedBase("g", positive=True)
pi = sp.IndexedBase("pi", positive=True)
Zg, c, m, Tpos = sp.symbols("Z_g c m T", positive=True)
sc = sp.Symbol("s_c", real=True)
f = sp.Function("f")

ZG_DEF = Fact("Z_g", sp.Eq(Zg, sp.Sum(g[y], (y, 1, n))), "definition")
NORMALISED = Fact("normalised", sp.Eq(sp.Sum(pi[y], (y, 1, n)), 1), "hypothesis", r"$\pi$ is a distribution")
C_DEF = Fact("c", sp.Eq(c, 1 / Zg), "definition")
LOSS = sp.Sum(g[y] * f(pi[y] / g[y]), (y, 1, n))
GAPS = sp.Sum(g[y] * (f(pi[y] / g[y]) - f(c) - sc * (pi[y] / g[y] - c)), (y, 1, n))


def gap_identity() -> Derivation:
    d = Derivation(
        "gap identity",
        r"$L(\pi) - Z_g f(1/Z_g)$ is a $g$-weighted sum of tangent gaps at $c = 1/Z_g$",
        sp.Sum(g[y] * (f(pi[y] / g[y]) - f(c) - sc * (pi[y] / g[y] - c)), (y, 1, n)),
        claim=sp.Eq(GAPS, LOSS - Zg * f(1 / Zg)),
        facts=[ZG_DEF, NORMALISED, C_DEF],
        assumptions=[r"$s_c$ a subgradient of $f$ at $c$"],
    )
    d.step(
        LOSS
        - f(c) * sp.Sum(g[y], (y, 1, n))
        - sc * sp.Sum(pi[y], (y, 1, n))
        + sc * c * sp.Sum(g[y], (y, 1, n)),
        "linearity",
        "split the sum; $g_y$ cancels in $g_y\\,\\pi_y/g_y$",
    )
    d.step(
        LOSS - f(c) * Zg - sc + sc * c * Zg,
        "substitute",
        r"definition of $Z_g$; $\sum_y\pi_y = 1$",
        using=["Z_g", "normalised"],
    )
    d.step(LOSS - Zg * f(1 / Zg), "substitute", r"$c = 1/Z_g$: the subgradient terms cancel", using="c")
    return d


def equality_forces_target() -> Derivation:
    d = Derivation(
        "a zero gap forces pi = g/Z_g",
        r"strict convexity: $T_c(\pi_y/g_y) = 0 \Rightarrow \pi_y/g_y = c$",
        sp.Eq(pi[y] / g[y], c),
        claim=sp.Equivalent(sp.Eq(pi[y] / g[y], c), sp.Eq(pi[y], g[y] / Zg)),
        facts=[C_DEF],
        assumptions=[
            r"$T_c(x) > 0$ for $x \ne c$ (strict convexity at $c$), and every term "
            r"$g_y T_c \ge 0$, so a zero sum makes every term zero"
        ],
    )
    d.step(sp.Eq(pi[y] / g[y], 1 / Zg), "substitute", r"$c = 1/Z_g$", using="c")
    d.step(sp.Eq(pi[y], g[y] / Zg), "solve", r"linear in $\pi_y$", var=pi[y])
    return d


def term_positive() -> Derivation:
    d = Derivation(
        "every other pi costs more",
        r"a term with $\pi_y/g_y \ne c$ adds $g_y T > 0$",
        g[y] * Tpos,
        claim=sp.Gt(g[y] * Tpos, 0, evaluate=False),
        assumptions=[r"$T = T_c(\pi_y/g_y) > 0$ (strict convexity, $\pi_y/g_y\ne c$)"],
    )
    d.step(sp.Integer(0), "positive", r"$g_y > 0$, $T > 0$")
    return d


def unnormalised() -> Derivation:
    d = Derivation(
        "unnormalised case",
        r"without $\sum\pi = 1$: $L(\pi) - Z_g f(m) = \sum_y g_y[f(\pi_y/g_y) - f(m)]$",
        sp.Sum(g[y] * (f(pi[y] / g[y]) - f(m)), (y, 1, n)),
        claim=sp.Eq(sp.Sum(g[y] * (f(pi[y] / g[y]) - f(m)), (y, 1, n)), LOSS - Zg * f(m)),
        facts=[ZG_DEF],
        assumptions=[
            r"$m$ the unique minimiser of $f$ ($m = 1$ when $f'(1) = 0$)",
            r"$\pi > 0$, unnormalised",
        ],
    )
    d.step(LOSS - f(m) * sp.Sum(g[y], (y, 1, n)), "linearity", r"$f(m)$ leaves the sum")
    d.step(LOSS - Zg * f(m), "substitute", r"definition of $Z_g$", using="Z_g")
    return d


STRICT = ("kl", "rkl", "js", "hellinger", "jeffreys", "pearson", "neyman", "triangular")


def _instances(seed: int, count: int = 40):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        k = int(rng.integers(2, 12))
        yield rng, rng.dirichlet(np.ones(k)), rng.normal(0.0, 1.0, k), float(rng.choice([0.25, 0.5, 1.0]))


def _check_gap_identity() -> tuple[float, str]:
    worst, smallest_gap = 0.0, np.inf
    for rng, q, A, eta in _instances(21):
        log_g = surrogate.log_weights(q, A, eta)
        gg = np.exp(log_g)
        zg = gg.sum()
        cc = 1.0 / zg
        pi_ = rng.dirichlet(np.ones(len(q)))
        for name in STRICT:
            div = divergences.get(name)
            x_ = pi_ / gg
            tangent_gaps = div.f(x_) - div.f(np.array(cc)) - div.f_prime(np.array(cc)) * (x_ - cc)
            lhs = surrogate.practical_loss(pi_, log_g, name) - zg * float(div.f(np.array(cc)))
            rhs = float(np.sum(gg * tangent_gaps))
            worst = max(worst, abs(lhs - rhs) / max(1.0, abs(lhs)))
            smallest_gap = min(smallest_gap, lhs)
    if not smallest_gap > 0:
        return float("inf"), f"a random pi reached the minimum value (gap {smallest_gap:.3g})"
    return (
        worst,
        f"40 instances x {len(STRICT)} generators; smallest L(pi) - L* at a random pi {smallest_gap:.2e} > 0",
    )


def _check_unnormalised() -> tuple[float, str]:
    """Minimise sum_y g f(pi/g) over unnormalised pi > 0: the sum is separable, so each coordinate is a
    one-dimensional problem in t = log pi(y), solved by Brent's method (no claim used)."""
    worst = 0.0
    for _, q, A, eta in _instances(22, 10):
        log_g = surrogate.log_weights(q, A, eta)
        for name in ("js", "hellinger", "pearson", "kl"):
            div = divergences.get(name)
            for lg in log_g:
                res = minimize_scalar(
                    lambda t, lg=lg: float(np.exp(lg) * div.f_log(np.array(t - lg))),
                    bracket=(lg - 3.0, lg + 3.0),
                    method="brent",
                    tol=1e-12,
                )
                expected = lg - (1.0 if name == "kl" else 0.0)
                worst = max(worst, abs(float(res.x) - expected))
    return worst, "max |log pi - log(m g)| over 10 instances, js/hellinger/pearson (m = 1) and kl (m = 1/e)"


def _check_tv_counterexample() -> tuple[float, str]:
    """TV is strictly convex at 1 but not at c = 1/Z_g < 1: the gap vanishes at a pi != g/Z_g."""
    log_g = np.log(np.array([1.0, 0.6, 0.4]))  # Z_g = 2, c = 1/2
    other = np.array([0.45, 0.35, 0.2])
    star = surrogate.target(log_g)
    gap = surrogate.practical_loss(other, log_g, "tv") - surrogate.practical_loss(star, log_g, "tv")
    return abs(gap), f"TV at Z_g = 2: L(pi') - L(g/Z_g) = {gap:.1e} with pi' = (0.45, 0.35, 0.2)"


def result() -> Result:
    return Result(
        name="lemma_3_2_uniqueness",
        title="Lemma 3.2: uniqueness from strict convexity, and the unnormalised minimiser",
        claims=[gap_identity().claim, equality_forces_target().claim, unnormalised().claim],
        assumptions=(
            r"$g > 0$",
            r"$f$ convex; strictly convex at $c = 1/Z_g$ for uniqueness",
            r"normalised case: $\sum_y\pi_y = 1$; unnormalised: $m$ the unique minimiser of $f$",
        ),
        parts=[
            gap_identity(),
            equality_forces_target(),
            term_positive(),
            unnormalised(),
            NumericCheck(
                "gap identity on random instances",
                "the identity on random instances, every strictly convex built-in",
                r"|L(\pi) - L^* - \sum_y g_y T_c(\pi_y/g_y)| \le 10^{-12}",
                _check_gap_identity,
                1e-12,
            ),
            NumericCheck(
                "unnormalised minimiser",
                "unconstrained minimiser is m g",
                r"\|\log\pi_{\mathrm{opt}} - \log(m g)\|_\infty \le 10^{-6}",
                _check_unnormalised,
                1e-6,
            ),
            NumericCheck(
                "strictness at c is needed",
                "TV is not strictly convex at c = 1/2: a second minimiser",
                r"L_{TV}(\pi') = L_{TV}(g/Z_g)",
                _check_tv_counterexample,
                1e-12,
            ),
        ],
        notes="Strict convexity at the single point c = 1/Z_g is what uniqueness needs; TV is strictly "
              "convex "
        "at 1 (so it still brakes per sample) but affine around c = 1/2 in the counterexample.",
    )
