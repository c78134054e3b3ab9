r"""Lemma 3.1 (trust region), in both KL directions.

Statement. Let :math:`\pi_{\mathrm{old}}(y) > 0` be a distribution on responses :math:`y = 1..n`,
:math:`A(y)` real advantages and :math:`\eta > 0`. Over distributions :math:`\pi`:

(a) forward penalty, the direction that gives the paper's target:

.. math:: \max_\pi \sum_y \pi(y)A(y) - \eta\,\mathrm{KL}(\pi\|\pi_{\mathrm{old}})
          \ \text{ has the unique maximiser }\
          \pi^*(y) = \frac{\pi_{\mathrm{old}}(y)e^{A(y)/\eta}}{Z},\quad Z = \sum_y
          \pi_{\mathrm{old}}(y)e^{A(y)/\eta};

(b) reverse penalty, the direction the paper writes:

.. math:: \max_\pi \sum_y \pi(y)A(y) - \eta\,\mathrm{KL}(\pi_{\mathrm{old}}\|\pi)
          \ \text{ has the unique maximiser }\
          \pi^*(y) = \frac{\eta\,\pi_{\mathrm{old}}(y)}{\lambda - A(y)},\quad
          \sum_y \frac{\eta\,\pi_{\mathrm{old}}(y)}{\lambda - A(y)} = 1,\ \lambda > \max_y A(y);

(c) the two differ: for :math:`\pi_{\mathrm{old}} = (1/3, 1/3, 1/3)`, :math:`A = (1, 0, -1)`, :math:`\eta =
1`,
the maximisers' first coordinates differ by :math:`0.0178\ldots`.

Assumptions: :math:`\pi_{\mathrm{old}} > 0`; the maximiser lies in the interior of the simplex (it does:
(a) gives positive values, and in (b) the objective tends to :math:`-\infty` at the boundary).

Proof sketch. Both objectives are sums of strictly concave functions of the coordinates
(second derivatives :math:`-\eta/\pi(y)` and :math:`-\eta\pi_{\mathrm{old}}(y)/\pi(y)^2`), so a stationary
point
of the Lagrangian :math:`\mathcal L = \sum_y \phi_y(\pi(y)) - \lambda(\sum_y \pi(y) - 1)` on the simplex is
the
unique maximiser. The derivations below compute the stationary points; the normalisation fixes
:math:`\lambda` (in (b) each term :math:`\eta\pi_{\mathrm{old}}(y)/(\lambda - A(y))` falls strictly from
:math:`+\infty` to 0 on :math:`(\max A, \infty)`, so exactly one :math:`\lambda` there gives total 1).
Runtime twin: ``ladtheory/trust_region.py``.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from ladtheory import trust_region
from ladtheory.proof import Derivation, Fact, NumericCheck, Result, approximately

n = sp.Symbol("n", integer=True, positive=True)
y, k = sp.symbols("y k", integer=True)
A = sp.IndexedBase("A", real=True)
pi = sp.IndexedBase("pi", positive=True)
q = sp.IndexedBase("pi_old", positive=True)
eta, Z = sp.symbols("eta Z", positive=True)
lam = sp.Symbol("lambda", real=True)

Z_DEF = Fact("Z", sp.Eq(Z, sp.Sum(q[y] * sp.exp(A[y] / eta), (y, 1, n))), "definition", "partition function")
NORMALISED = Fact("normalised", sp.Eq(sp.Sum(pi[y], (y, 1, n)), 1), "hypothesis", r"$\pi$ is a distribution")

# The two Lagrangians, built once and shared by every part that is about them.
L_FORWARD = sp.Sum(pi[y] * A[y] - eta * pi[y] * sp.log(pi[y] / q[y]) - lam * pi[y], (y, 1, n)) + lam
"""sum_y [pi_y A_y - eta pi_y log(pi_y / pi_old,y)] - lambda (sum_y pi_y - 1): KL(pi || pi_old)."""
L_REVERSE = sp.Sum(pi[y] * A[y] - eta * q[y] * sp.log(q[y] / pi[y]) - lam * pi[y], (y, 1, n)) + lam
"""sum_y [pi_y A_y - eta pi_old,y log(pi_old,y / pi_y)] - lambda (sum_y pi_y - 1): KL(pi_old || pi)."""

PI_K_OF_LAMBDA = q[k] * sp.exp(A[k] / eta) * sp.exp(-(lam + eta) / eta)  # the stationary point, lambda open
PI_STAR_FORWARD = q[k] * sp.exp(A[k] / eta) / Z
PI_STAR_REVERSE = eta * q[k] / (lam - A[k])
STATIONARY_FORWARD = sp.Eq(sp.Derivative(L_FORWARD, pi[k]), 0)
STATIONARY_REVERSE = sp.Eq(sp.Derivative(L_REVERSE, pi[k]), 0)


def forward_stationarity() -> Derivation:
    g = A[k] - eta * (sp.log(pi[k] / q[k]) + 1) - lam
    d = Derivation(
        "forward: stationary point", r"(a) KKT for $\mathrm{KL}(\pi\|\pi_{old})$: $\pi_k$ given $\lambda$",
        L_FORWARD,
        claim=sp.Implies(STATIONARY_FORWARD, sp.Eq(pi[k], PI_K_OF_LAMBDA)),
        assumptions=[r"$\mathcal L$ is the Lagrangian of the forward problem"],
    )
    d.step(g, "partial_separable", r"only the $k$-th summand depends on $\pi_k$", base=pi, index=k)
    d.step(sp.Eq(g, 0), "stationary", "interior maximiser")
    d.step(sp.Eq(pi[k], PI_K_OF_LAMBDA), "solve", r"$\log$ is injective", var=pi[k])
    return d


def forward_multiplier() -> Derivation:
    d = Derivation(
        "forward: multiplier", r"(a) the normalisation fixes $\lambda = \eta\log Z - \eta$",
        sp.Eq(pi[k], PI_K_OF_LAMBDA),
        claim=sp.Implies(sp.Eq(pi[k], PI_K_OF_LAMBDA), sp.Eq(lam, eta * sp.log(Z) - eta)),
        facts=[Z_DEF, NORMALISED],
    )
    d.step(
        sp.Eq(
            sp.Sum(pi[y], (y, 1, n)),
            sp.exp(-(lam + eta) / eta) * sp.Sum(q[y] * sp.exp(A[y] / eta), (y, 1, n)),
        ),
        "sum_both_sides",
        "sum over all responses",
        index=k,
        as_index=y,
        limits=(1, n),
    )
    d.step(
        sp.Eq(1, sp.exp(-(lam + eta) / eta) * Z),
        "substitute",
        r"$\sum_y\pi_y = 1$ and the definition of $Z$",
        using=["normalised", "Z"],
    )
    d.step(sp.Eq(lam, eta * sp.log(Z) - eta), "solve", r"unique real solution", var=lam)
    return d


LAMBDA_FORWARD = Fact("lambda", sp.Eq(lam, eta * sp.log(Z) - eta), "derived", proved_by="forward: multiplier")


def forward_solution() -> Derivation:
    d = Derivation(
        "forward: closed form", r"(a) the maximiser is $\pi_{old} e^{A/\eta}/Z$",
        sp.Eq(pi[k], PI_K_OF_LAMBDA),
        claim=sp.Implies(sp.Eq(pi[k], PI_K_OF_LAMBDA), sp.Eq(pi[k], PI_STAR_FORWARD)),
        facts=[LAMBDA_FORWARD],
    )
    d.step(
        sp.Eq(pi[k], q[k] * sp.exp(A[k] / eta) * sp.exp(-sp.log(Z))),
        "substitute",
        r"the multiplier $\lambda$",
        using="lambda",
    )
    d.step(sp.Eq(pi[k], PI_STAR_FORWARD), "algebra", r"$e^{-\log Z} = 1/Z$")
    return d


def forward_concavity() -> Derivation:
    d = Derivation(
        "forward: strict concavity", r"(a) the Lagrangian is separable and strictly concave in each $\pi_k$",
        L_FORWARD,
        claim=sp.Lt(sp.Derivative(L_FORWARD, (pi[k], 2)), 0),
    )
    d.step(A[k] - eta * (sp.log(pi[k] / q[k]) + 1) - lam, "partial_separable",
           r"only the $k$-th summand depends on $\pi_k$ (so the Hessian is diagonal)", base=pi, index=k)
    d.step(-eta / pi[k], "diff", var=pi[k])
    d.step(sp.Integer(0), "negative", r"$\eta > 0$, $\pi_k > 0$")
    return d


def reverse_stationarity() -> Derivation:
    g = A[k] + eta * q[k] / pi[k] - lam
    d = Derivation(
        "reverse: stationary point", r"(b) KKT for $\mathrm{KL}(\pi_{old}\|\pi)$: the reciprocal form",
        L_REVERSE,
        claim=sp.Implies(STATIONARY_REVERSE, sp.Eq(pi[k], PI_STAR_REVERSE)),
        assumptions=[r"$\mathcal L$ is the Lagrangian of the reverse problem",
                     r"$\lambda > \max_y A_y$ (so that $\pi^* > 0$)"],
    )
    d.step(g, "partial_separable", r"only the $k$-th summand depends on $\pi_k$", base=pi, index=k)
    d.step(sp.Eq(g, 0), "stationary", "interior maximiser")
    d.step(sp.Eq(pi[k], PI_STAR_REVERSE), "solve", "linear in $1/\\pi_k$", var=pi[k])
    return d


REVERSE_NORMALISATION = sp.Eq(1, sp.Sum(eta * q[y] / (lam - A[y]), (y, 1, n)))


def reverse_normalisation() -> Derivation:
    d = Derivation(
        "reverse: normalisation", r"(b) the multiplier solves $\sum_y \eta\pi_{old,y}/(\lambda - A_y) = 1$",
        sp.Eq(pi[k], PI_STAR_REVERSE),
        claim=sp.Implies(sp.Eq(pi[k], PI_STAR_REVERSE), REVERSE_NORMALISATION),
        facts=[NORMALISED],
    )
    d.step(sp.Eq(sp.Sum(pi[y], (y, 1, n)), sp.Sum(eta * q[y] / (lam - A[y]), (y, 1, n))), "sum_both_sides",
           "sum over all responses", index=k, as_index=y, limits=(1, n))
    d.step(REVERSE_NORMALISATION, "substitute", r"$\sum_y\pi_y = 1$", using="normalised")
    return d


def reverse_multiplier_unique() -> list[Derivation]:
    """Each term eta c / t of the normalisation, t = lambda - A_y > 0, falls strictly from +inf (t -> 0)
    to 0 (t -> inf); so the sum falls strictly from +inf (lambda -> max A) to 0 and equals 1 exactly once."""
    t, cc = sp.symbols("t c", positive=True)
    term = eta * cc / t
    common = dict(
        assumptions=[r"$t = \lambda - A_y > 0$ (i.e. $\lambda > \max_y A_y$), $c = \pi_{old,y} > 0$"]
    )
    slope = Derivation("reverse: multiplier, monotone", r"(b) each normalisation term decreases in $\lambda$",
                       term, claim=sp.Lt(sp.Derivative(term, t), 0), **common)
    slope.step(-eta * cc / t**2, "diff", r"$\partial_\lambda = \partial_t$ since $t = \lambda - A_y$", var=t)
    slope.step(sp.Integer(0), "negative", r"$\eta, c, t > 0$")
    near = Derivation("reverse: multiplier, near max A", r"(b) the term blows up as $\lambda \downarrow A_y$",
                      term, claim=sp.Eq(sp.Limit(term, t, 0, "+"), sp.oo), **common)
    near.step(sp.oo, "limit", var=t, point=0, dir="+")
    far = Derivation("reverse: multiplier, far", r"(b) the term vanishes as $\lambda \to \infty$",
                     term, claim=sp.Eq(sp.Limit(term, t, sp.oo), 0), **common)
    far.step(sp.Integer(0), "limit", var=t, point=sp.oo)
    return [slope, near, far]


def reverse_concavity() -> Derivation:
    d = Derivation(
        "reverse: strict concavity", r"(b) the Lagrangian is separable and strictly concave in each $\pi_k$",
        L_REVERSE,
        claim=sp.Lt(sp.Derivative(L_REVERSE, (pi[k], 2)), 0),
    )
    d.step(A[k] + eta * q[k] / pi[k] - lam, "partial_separable",
           r"only the $k$-th summand depends on $\pi_k$ (so the Hessian is diagonal)", base=pi, index=k)
    d.step(-eta * q[k] / pi[k] ** 2, "diff", var=pi[k])
    d.step(sp.Integer(0), "negative", r"$\eta, \pi_{old,k}, \pi_k > 0$")
    return d


# (c) The counterexample: pi_old uniform on 3 responses, A = (1, 0, -1), eta = 1.
# Reverse: (1/3) sum_y 1/(lambda - A_y) = 1  <=>  3 lambda^3 - 3 lambda^2 - 3 lambda + 1 = 0 (times
# 3 lambda (lambda^2 - 1)); its largest root is the multiplier (> max A = 1).
_L = sp.Symbol("L", real=True)
CUBIC = 3 * _L**3 - 3 * _L**2 - 3 * _L + 1
LAMBDA_C = sp.CRootOf(CUBIC, 2)
FORWARD_C = sp.E / (sp.E + 1 + sp.exp(-1))  # pi*(y=1) under (a)
REVERSE_C = sp.Rational(1, 3) / (LAMBDA_C - 1)  # pi*(y=1) under (b)
GAP_C = sp.Float("0.017827005451599837359145551124", 30)


def counterexample() -> list[Derivation]:
    common = dict(
        assumptions=[
            r"$\pi_{old} = (\frac13,\frac13,\frac13)$, $A = (1,0,-1)$, $\eta = 1$; $\lambda$ is "
            r"the largest root of $3\lambda^3 - 3\lambda^2 - 3\lambda + 1$ (the reverse "
            r"normalisation times $3\lambda(\lambda^2 - 1)$)"
        ]
    )
    sign = Derivation("counterexample: the two differ", r"(c) the two maximisers differ at $y = 1$",
                      FORWARD_C - REVERSE_C, claim=sp.Gt(FORWARD_C - REVERSE_C, 0, evaluate=False), **common)
    sign.step(sp.Integer(0), "positive", "sympy decides the sign of the exact constant")
    size = Derivation("counterexample: the gap", r"(c) by how much", FORWARD_C - REVERSE_C,
                      claim=approximately(FORWARD_C - REVERSE_C, GAP_C), **common)
    size.step(GAP_C, "evaluate", "50-digit evaluation")
    return [sign, size]


def _check_cubic() -> tuple[float, str]:
    """The cubic's largest root solves the reverse normalisation exactly, and lies above max A = 1."""
    normalisation = sp.Rational(1, 3) * sum(1 / (LAMBDA_C - a) for a in (1, 0, -1)) - 1
    err = abs(sp.N(normalisation, 50))
    return (float(err) if LAMBDA_C > 1 else float("inf")), f"lambda = {sp.N(LAMBDA_C, 20)}"


def _check_counterexample_scipy() -> tuple[float, str]:
    q_, a_ = np.full(3, 1.0 / 3.0), np.array([1.0, 0.0, -1.0])
    fwd = trust_region.maximise(q_, a_, 1.0, "forward", method="scipy")
    rev = trust_region.maximise(q_, a_, 1.0, "reverse", method="scipy")
    exact_f = np.array([float(sp.N(FORWARD_C)), float(sp.N(1 / (sp.E + 1 + sp.exp(-1)))),
                        float(sp.N(sp.exp(-1) / (sp.E + 1 + sp.exp(-1))))])
    exact_r = np.array([float(sp.N(sp.Rational(1, 3) / (LAMBDA_C - a))) for a in (1, 0, -1)])
    err = max(np.abs(fwd - exact_f).max(), np.abs(rev - exact_r).max())
    gap = np.abs(fwd - rev).max()
    detail = f"scipy forward {np.round(fwd, 6)}, reverse {np.round(rev, 6)}; gap {gap:.4f}"
    return (err if gap > 0.01 else float("inf")), detail


def _check_random_instances() -> tuple[float, str]:
    rng = np.random.default_rng(31)
    worst = 0.0
    for size in (2, 3, 5, 16, 64):
        for eta_ in (0.25, 1.0, 4.0):
            q_ = rng.dirichlet(np.ones(size))
            a_ = rng.normal(0.0, 1.5, size)
            fwd = trust_region.maximise(q_, a_, eta_, "forward")
            rev = trust_region.maximise(q_, a_, eta_, "reverse")
            worst = max(worst, np.abs(fwd - trust_region.forward_solution(q_, a_, eta_)).max(),
                        np.abs(rev - trust_region.reverse_solution(q_, a_, eta_).pi).max())
    return worst, "exact convex solver (KKT bisection, no closed form) vs closed forms; sizes 2..64"


def result() -> Result:
    return Result(
        name="lemma_3_1_trust_region",
        title="Lemma 3.1: the trust-region maximiser, in both KL directions",
        claims=[
            sp.Implies(STATIONARY_FORWARD, sp.Eq(pi[k], PI_STAR_FORWARD)),
            sp.Lt(sp.Derivative(L_FORWARD, (pi[k], 2)), 0),
            sp.Implies(STATIONARY_REVERSE, sp.Eq(pi[k], PI_STAR_REVERSE)),
            sp.Implies(STATIONARY_REVERSE, REVERSE_NORMALISATION),
            sp.Lt(sp.Derivative(L_REVERSE, (pi[k], 2)), 0),
            sp.Gt(FORWARD_C - REVERSE_C, 0, evaluate=False),
        ],
        assumptions=(
            r"$\pi_{old}(y) > 0$ for every response $y$",
            r"$\eta > 0$",
            "the maximum over the simplex is attained in its interior",
        ),
        parts=[
            forward_stationarity(),
            forward_multiplier(),
            forward_solution(),
            forward_concavity(),
            reverse_stationarity(),
            reverse_normalisation(),
            *reverse_multiplier_unique(),
            reverse_concavity(),
            *counterexample(),
            NumericCheck(
                "counterexample: cubic root",
                "(c) the multiplier solves the normalisation",
                r"\tfrac13\sum_y 1/(\lambda - A_y) = 1,\ \lambda > 1",
                _check_cubic,
                1e-40,
            ),
            NumericCheck(
                "counterexample: scipy",
                "(c) scipy optimisation agrees with both closed forms",
                r"\|\pi_{\mathrm{scipy}} - \pi^*\|_\infty \le 10^{-6}\ \text{and the two differ}",
                _check_counterexample_scipy,
                1e-6,
            ),
            NumericCheck(
                "random instances",
                "(a), (b) on random instances",
                r"\|\pi_{\mathrm{solver}} - \pi^*\|_\infty \le 10^{-6}",
                _check_random_instances,
                1e-6,
            ),
        ],
        notes="The paper writes the constraint as KL(pi_old || pi); its exponential target needs "
        "KL(pi || pi_old). Part (c) shows the two maximisers differ on a three-response instance.",
    )
