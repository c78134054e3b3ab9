r"""GRPO as the small-step limit of LAD.

Statement. Let :math:`f` be twice differentiable at 1 and :math:`\epsilon = 1/\eta`. At :math:`\rho = 1` the
effective weight :math:`w(A, 1) = -f'(e^{-A/\eta})` satisfies

.. math:: w(A, 1) = -f'(1) + f''(1)\,\frac{A}{\eta} + O(\eta^{-2}),

and, since :math:`\mathbb E_{\pi_\theta}[\nabla\log\pi_\theta] = 0`, the LAD descent direction is

.. math:: \mathbb E_{\pi_\theta}\big[w(A,1)\,\nabla_\theta\log\pi_\theta\big]
          = \frac{f''(1)}{\eta}\,\mathbb E_{\pi_\theta}\big[A\,\nabla_\theta\log\pi_\theta\big] +
          O(\eta^{-2}),

the unclipped GRPO/REINFORCE direction scaled by the curvature :math:`f''(1)`. The constant
:math:`-f'(1)` (nonzero for ``kl``: 1, and ``rkl``: -1) vanishes only in expectation; in a sampled group
it adds zero-mean noise :math:`-f'(1)\sum_i\nabla\log\pi(y_i)`.

Assumptions: :math:`f` twice differentiable at 1 (TV is not: its weight is :math:`\mathrm{sign}(A)` for
every :math:`\eta`, a sign-GRPO that has no small-step linear regime); a finite response set.
Per built-in, :math:`f''(1)` is computed below from the registry's sympy generator and checked against
``FDivergence.f2_at_1`` and the runtime ``effective_weight``. Runtime twin: ``ladtheory/reductions.py``.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from ladtheory import divergences, objective, reductions
from ladtheory.proof import Derivation, Fact, NumericCheck, Result

n = sp.Symbol("n", integer=True, positive=True)
y = sp.Symbol("y", integer=True)
A = sp.IndexedBase("A", real=True)
a = sp.Symbol("A", real=True)  # one response's advantage
eps = sp.Symbol("epsilon", positive=True)  # 1 / eta
theta = sp.Symbol("theta", real=True)
P = sp.Function(r"pi_theta", positive=True)
fp = sp.Function("f'")  # the generator's derivative, generic
x = sp.Symbol("x", positive=True)
c1, c2 = sp.symbols(r"f'(1) f''(1)", real=True)

C1_DEF = Fact("f'(1)", sp.Eq(c1, fp(1)), "definition")
C2_DEF = Fact("f''(1)", sp.Eq(c2, sp.diff(fp(x), x).subs(x, 1)), "definition")
SCORE_MEAN_ZERO = Fact("score has mean 0", sp.Eq(sp.Sum(sp.Derivative(P(theta, y), theta), (y, 1, n)), 0),
                       "derived", proved_by=("flowrl_special_case", "score has mean zero"))
W_GENERIC = -fp(sp.exp(-a * eps))
W_FIRST_ORDER = -c1 + c2 * a * eps + sp.O(eps**2)
DIRECTION = sp.Sum(
    P(theta, y) * (-c1 + c2 * A[y] * eps) * sp.Derivative(sp.log(P(theta, y)), theta), (y, 1, n)
)
GRPO_DIRECTION = c2 * eps * sp.Sum(P(theta, y) * A[y] * sp.Derivative(sp.log(P(theta, y)), theta), (y, 1, n))

STRICT = ("kl", "rkl", "js", "hellinger", "jeffreys", "pearson", "neyman", "triangular",
          "alpha:-1", "alpha:0.5", "alpha:2")
"""Every built-in twice differentiable at 1 (all but TV), and three members of the alpha family."""


def generic_weight() -> Derivation:
    d = Derivation(
        "weight at rho = 1, generic f",
        r"Taylor expansion of $w(A,1) = -f'(e^{-A\epsilon})$ in $\epsilon = 1/\eta$",
        W_GENERIC,
        claim=sp.Eq(W_GENERIC, W_FIRST_ORDER),
        facts=[C1_DEF, C2_DEF],
        assumptions=[r"$f'$ differentiable at 1"],
    )
    d.step(-fp(1) + a * eps * sp.diff(fp(x), x).subs(x, 1), "series", r"first order in $\epsilon$",
           var=eps, point=0, order=2)
    d.step(-c1 + c2 * a * eps, "substitute", r"name $f'(1)$ and $f''(1)$", using=["f'(1)", "f''(1)"])
    return d


def expected_direction() -> Derivation:
    d = Derivation(
        "expected direction", r"the constant $-f'(1)$ drops out in expectation",
        DIRECTION,
        claim=sp.Eq(DIRECTION, GRPO_DIRECTION),
        facts=[SCORE_MEAN_ZERO],
    )
    d.step(-c1 * sp.Sum(sp.Derivative(P(theta, y), theta), (y, 1, n))
           + c2 * eps * sp.Sum(P(theta, y) * A[y] * sp.Derivative(sp.log(P(theta, y)), theta), (y, 1, n)),
           "algebra", r"linearity; $\pi\,\partial\log\pi = \partial\pi$")
    d.step(GRPO_DIRECTION, "substitute", "the score has mean zero", using="score has mean 0")
    return d


def _coefficients(name: str) -> tuple[sp.Expr, sp.Expr]:
    fprime = divergences.get(name).f_prime_expr
    return sp.simplify(fprime.subs(divergences.U, 1)), sp.simplify(
        sp.diff(fprime, divergences.U).subs(divergences.U, 1)
    )


def builtin_weight(name: str) -> Derivation:
    fprime = divergences.get(name).f_prime_expr
    k1, k2 = _coefficients(name)
    d = Derivation(
        f"f = {name}", rf"`{name}`: $w(A,1) = {sp.latex(-k1 + k2 * a * eps)} + O(\epsilon^2)$",
        -fprime.subs(divergences.U, sp.exp(-a * eps)),
        claim=sp.Eq(-fprime.subs(divergences.U, sp.exp(-a * eps)), -k1 + k2 * a * eps + sp.O(eps**2)),
        assumptions=[rf"$f'(1) = {sp.latex(k1)}$, $f''(1) = {sp.latex(k2)}$"],
    )
    d.step(-k1 + k2 * a * eps, "series", r"first order in $\epsilon = 1/\eta$", var=eps, point=0, order=2)
    return d


def _check_f2_at_1() -> tuple[float, str]:
    worst, rows = 0.0, []
    for name in STRICT:
        k1, k2 = _coefficients(name)
        div = divergences.get(name)
        worst = max(worst, abs(float(k2) - div.f2_at_1), abs(float(k1) - div.f_prime_at_1))
        rows.append(f"{name} ({sp.nsimplify(k1)}, {sp.nsimplify(k2)})")
    return worst, "(f'(1), f''(1)): " + ", ".join(rows)


def _check_runtime_limit() -> tuple[float, str]:
    """effective_weight minus its first-order part, times eta^2, tends to the sympy eps^2 coefficient."""
    worst = 0.0
    A_ = np.array([-2.0, -0.5, 0.7, 1.9])
    eta_ = 1e3
    for name in STRICT:
        fprime = divergences.get(name).f_prime_expr
        w = -fprime.subs(divergences.U, sp.exp(-a * eps))
        k0 = float(w.subs(eps, 0))
        k1 = float(sp.diff(w, eps).subs(eps, 0).subs(a, 1))
        k2 = sp.lambdify(a, sp.diff(w, eps, 2).subs(eps, 0) / 2, "numpy")
        runtime = objective.effective_weight(A_, np.zeros_like(A_), name, eta_)
        scaled = (runtime - (k0 + k1 * A_ / eta_)) * eta_**2
        expected = k2(A_) * np.ones_like(A_)
        worst = max(worst, float(np.abs(scaled - expected).max() / max(1.0, np.abs(expected).max())))
        # first-order coefficient is f''(1) (a factor-2 error in f2_at_1 would show here)
        worst = max(worst, abs(k1 - reductions.grpo_limit_weight(1.0, 1.0, name)))
    return worst, f"eta = {eta_:g}: eta^2 (w - (-f'(1) + f''(1)A/eta)) vs the sympy eps^2 coefficient"


def _check_tv() -> tuple[float, str]:
    A_ = np.array([-3.0, -0.1, 0.2, 2.0])
    worst = 0.0
    for eta_ in (0.1, 1.0, 1e3):
        worst = max(
            worst, float(np.abs(objective.effective_weight(A_, np.zeros(4), "tv", eta_) - np.sign(A_)).max())
        )
    return worst, "TV: w(A, 1) = sign(A) at eta = 0.1, 1, 1000 (no O(1/eta) regime)"


def result() -> Result:
    return Result(
        name="grpo_small_step_limit",
        title="GRPO as the small-step limit of LAD",
        claims=[
            sp.Eq(W_GENERIC, W_FIRST_ORDER),
            sp.Eq(DIRECTION, GRPO_DIRECTION),
            *[builtin_weight(name).claim for name in STRICT],
        ],
        assumptions=(
            r"$f$ twice differentiable at 1 (not TV)",
            r"$\rho = 1$ (the first step of an iteration)",
            "finite response set",
        ),
        parts=[
            generic_weight(),
            expected_direction(),
            *[builtin_weight(name) for name in STRICT],
            NumericCheck(
                "f'(1), f''(1) vs registry",
                "the registry's f_prime_at_1 and f2_at_1 equal the series coefficients",
                r"|f^{(k)}(1)_{\mathrm{series}} - \mathrm{registry}| \le 10^{-12}",
                _check_f2_at_1,
                1e-12,
            ),
            NumericCheck(
                "runtime weight, second order",
                "effective_weight follows the expansion",
                r"\eta^2|w - (-f'(1) + f''(1)A/\eta) - k_2A^2/\eta^2| \to 0",
                _check_runtime_limit,
                1e-2,
            ),
            NumericCheck(
                "TV is sign-GRPO",
                "TV has no small-step regime",
                r"w_{TV}(A,1) = \mathrm{sign}(A)",
                _check_tv,
                0.0,
            ),
        ],
        notes="f''(1) per built-in: kl 1, rkl 1, js 1/4, hellinger 1/2, jeffreys 2, pearson 2, neyman 2, "
        "triangular 1; 1 for every alpha-family member. At equal eta, JS takes a 4x smaller "
        "GRPO-like step than KL.",
    )
