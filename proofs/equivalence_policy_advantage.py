r"""The equivalence of the abstract: :math:`\pi = \pi^* \iff P_\theta = P_A`.

Statement. Let :math:`\pi_{\mathrm{old}} > 0` and :math:`\pi > 0` be distributions on responses
:math:`y = 1..n`, :math:`\eta > 0`, and define

.. math:: P_\theta(y) = \frac{\pi(y)/\pi_{\mathrm{old}}(y)}{S_\pi},\quad S_\pi = \sum_z
\frac{\pi(z)}{\pi_{\mathrm{old}}(z)};
          \qquad P_A(y) = \frac{e^{A(y)/\eta}}{S_A},\quad S_A = \sum_z e^{A(z)/\eta};
          \qquad \pi^*(y) = \frac{\pi_{\mathrm{old}}(y)e^{A(y)/\eta}}{Z},\quad Z = \sum_z
          \pi_{\mathrm{old}}(z)e^{A(z)/\eta}.

Then :math:`\pi = \pi^*` if and only if :math:`P_\theta = P_A`.

Assumptions: :math:`\pi_{\mathrm{old}}(y) > 0` for all :math:`y` (the statement is "up to the support of
:math:`\pi_{\mathrm{old}}`"); :math:`\pi` is a distribution.

Proof. (:math:`\Rightarrow`) substitute :math:`\pi^*` into :math:`P_\theta`: the :math:`\pi_{\mathrm{old}}`
cancel and
:math:`1/Z` cancels between numerator and :math:`S_\pi`. (:math:`\Leftarrow`) solve :math:`P_\theta(y) =
P_A(y)` for
:math:`\pi(y)`, sum over :math:`y` and use :math:`\sum_y\pi(y) = 1` to find :math:`S_\pi = S_A/Z`.
Runtime twin: ``ladtheory.trust_region.policy_induced`` / ``advantage_induced``.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from ladtheory import trust_region
from ladtheory.proof import Derivation, Fact, NumericCheck, Result

n = sp.Symbol("n", integer=True, positive=True)
y, z = sp.symbols("y z", integer=True)
A = sp.IndexedBase("A", real=True)
pi = sp.IndexedBase("pi", positive=True)
q = sp.IndexedBase("pi_old", positive=True)
eta, Z, S_pi, S_A = sp.symbols(r"eta Z S_pi S_A", positive=True)

Z_DEF = Fact("Z", sp.Eq(Z, sp.Sum(q[z] * sp.exp(A[z] / eta), (z, 1, n))), "definition")
S_PI_DEF = Fact("S_pi", sp.Eq(S_pi, sp.Sum(pi[z] / q[z], (z, 1, n))), "definition")
S_A_DEF = Fact("S_A", sp.Eq(S_A, sp.Sum(sp.exp(A[z] / eta), (z, 1, n))), "definition")
PI_STAR_FACT = Fact(
    "pi = pi*", sp.Eq(pi[y], q[y] * sp.exp(A[y] / eta) / Z), "hypothesis", r"for $\Rightarrow$", forall=y
)
NORMALISED = Fact("normalised", sp.Eq(sp.Sum(pi[y], (y, 1, n)), 1), "hypothesis")


P_THETA = (pi[y] / q[y]) / S_pi
P_A = sp.exp(A[y] / eta) / S_A
PI_STAR = q[y] * sp.exp(A[y] / eta) / Z
PI_OF_NORMALISERS = q[y] * sp.exp(A[y] / eta) * S_pi / S_A


def forward_direction() -> Derivation:
    d = Derivation(
        "pi = pi* implies P_theta = P_A", r"($\Rightarrow$) $P_\theta$ at $\pi = \pi^*$ is $P_A$",
        P_THETA,
        claim=sp.Eq(P_THETA, P_A),
        facts=[PI_STAR_FACT, S_PI_DEF, S_A_DEF],
    )
    d.step((sp.exp(A[y] / eta) / Z) / sp.Sum(sp.exp(A[z] / eta) / Z, (z, 1, n)), "substitute",
           r"$\pi = \pi^*$ in the numerator and in $S_\pi$", using=["S_pi", "pi = pi*"])
    d.step(sp.exp(A[y] / eta) / sp.Sum(sp.exp(A[z] / eta), (z, 1, n)), "linearity", r"$1/Z$ leaves the sum")
    d.step(P_A, "substitute", r"definition of $S_A$: this is $P_A(y)$", using="S_A")
    return d


def converse_solve() -> Derivation:
    d = Derivation(
        "P_theta = P_A: solve for pi", r"($\Leftarrow$) $P_\theta = P_A$ is linear in $\pi(y)$",
        sp.Eq(P_THETA, P_A),
        claim=sp.Implies(sp.Eq(P_THETA, P_A), sp.Eq(pi[y], PI_OF_NORMALISERS)),
    )
    d.step(sp.Eq(pi[y], PI_OF_NORMALISERS), "solve", r"linear in $\pi(y)$", var=pi[y])
    return d


def converse_direction() -> Derivation:
    d = Derivation(
        "P_theta = P_A implies pi = pi*: normaliser", r"($\Leftarrow$) summing fixes $S_\pi = S_A/Z$",
        sp.Eq(pi[y], PI_OF_NORMALISERS),
        claim=sp.Implies(sp.Eq(pi[y], PI_OF_NORMALISERS), sp.Eq(S_pi, S_A / Z)),
        facts=[Z_DEF, NORMALISED],
    )
    d.step(sp.Eq(sp.Sum(pi[y], (y, 1, n)), S_pi / S_A * sp.Sum(q[y] * sp.exp(A[y] / eta), (y, 1, n))),
           "sum_both_sides", "sum over all responses", index=y, limits=(1, n))
    d.step(sp.Eq(1, S_pi * Z / S_A), "substitute", r"$\sum_y\pi(y) = 1$, definition of $Z$",
           using=["normalised", "Z"])
    d.step(sp.Eq(S_pi, S_A / Z), "solve", "linear", var=S_pi)
    return d


def converse_conclusion() -> Derivation:
    d = Derivation(
        "P_theta = P_A implies pi = pi*", r"($\Leftarrow$) hence $\pi = \pi^*$",
        sp.Eq(pi[y], PI_OF_NORMALISERS),
        claim=sp.Implies(sp.Eq(pi[y], PI_OF_NORMALISERS), sp.Eq(pi[y], PI_STAR)),
        facts=[Fact("S_pi value", sp.Eq(S_pi, S_A / Z), "derived",
                    proved_by="P_theta = P_A implies pi = pi*: normaliser")],
    )
    d.step(sp.Eq(pi[y], PI_STAR), "substitute", r"$S_\pi = S_A/Z$", using="S_pi value")
    return d


def _check_random() -> tuple[float, str]:
    rng = np.random.default_rng(7)
    worst = 0.0
    for size in (2, 3, 8, 64):
        for eta_ in (0.25, 1.0, 3.0):
            q_ = rng.dirichlet(np.ones(size))
            a_ = rng.normal(0.0, 1.0, size)
            star = trust_region.forward_solution(q_, a_, eta_)
            p_a = trust_region.advantage_induced(a_, eta_)
            # =>: P_theta at pi* is P_A.
            worst = max(worst, np.abs(trust_region.policy_induced(star, q_) - p_a).max())
            # <=: the unique pi with P_theta = P_A is pi_old * P_A, normalised.
            back = q_ * p_a / np.sum(q_ * p_a)
            worst = max(worst, np.abs(back - star).max())
            # and a different pi gives a different P_theta.
            other = rng.dirichlet(np.ones(size))
            if np.abs(trust_region.policy_induced(other, q_) - p_a).max() < 1e-3:
                return float("inf"), "a random policy matched P_A"
    return worst, "runtime P_theta(pi*) vs P_A, and pi_old P_A / norm vs pi*; sizes 2..64"


def result() -> Result:
    return Result(
        name="equivalence_policy_advantage",
        title=r"Equivalence: $\pi = \pi^*$ iff $P_\theta = P_A$",
        claims=[sp.Eq(P_THETA, P_A), sp.Implies(sp.Eq(P_THETA, P_A), sp.Eq(pi[y], PI_STAR))],
        assumptions=(r"$\pi_{old}(y) > 0$ for all $y$", r"$\pi$ is a distribution", r"$\eta > 0$"),
        parts=[
            forward_direction(), converse_solve(), converse_direction(), converse_conclusion(),
            NumericCheck("random instances", "both directions on random instances",
                         r"\|P_\theta(\pi^*) - P_A\|_\infty \le 10^{-12}", _check_random, 1e-12),
        ],
    )
