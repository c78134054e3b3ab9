r"""The constrained trust region (KL <= delta) and its relation to the penalised one (Lemma 3.1).

Statement. Let :math:`\pi_{\mathrm{old}} > 0` on responses :math:`y = 1..n`, :math:`A` not constant,
:math:`\pi_\eta = \pi_{\mathrm{old}}e^{A/\eta}/Z(\eta)`, :math:`Z(\eta) = \sum_y\pi_{\mathrm{old}}e^{A/\eta}`,
:math:`K(\eta) = \mathrm{KL}(\pi_\eta\|\pi_{\mathrm{old}})`, :math:`M = \arg\max A`.

1. (Gibbs' variational identity) for every distribution :math:`\pi`,
   :math:`\mathbb E_\pi[A] - \eta\,\mathrm{KL}(\pi\|\pi_{\mathrm{old}}) = \eta\log Z -
   \eta\,\mathrm{KL}(\pi\|\pi_\eta)`;
   so the penalised optimum is :math:`\eta\log Z(\eta)`, attained only at :math:`\pi_\eta`.
2. (constrained optimum) if :math:`K(\eta) = \delta`, every :math:`\pi \ne \pi_\eta` with
   :math:`\mathrm{KL}(\pi\|\pi_{\mathrm{old}}) \le \delta` has :math:`\mathbb E_\pi[A] < \eta\log Z +
   \eta\delta
   = \mathbb E_{\pi_\eta}[A]`: :math:`\pi_\eta` is the unique maximiser of :math:`\mathbb E_\pi[A]` on the
   ball.
3. (monotonicity) :math:`K'(\eta) = -\mathrm{Var}_{\pi_\eta}(A)/\eta^3 < 0`; with the limits
   :math:`K(\infty) = 0` and :math:`K(0^+) = -\log\pi_{\mathrm{old}}(M)`, :math:`\delta\leftrightarrow\eta`
   is a
   decreasing bijection :math:`(0, -\log\pi_{\mathrm{old}}(M)) \to (0,\infty)`. Larger radius, smaller
   :math:`\eta`. For :math:`\delta \ge -\log\pi_{\mathrm{old}}(M)` the constraint does not bind.
4. (duality) :math:`\frac{d}{d\eta}\big[\eta\log Z(\eta) + \eta\delta\big] = \delta - K(\eta)`: the dual
   function is minimised where :math:`K(\eta) = \delta`, and its minimum is the constrained value.

Assumptions: :math:`\pi_{\mathrm{old}} > 0`; :math:`A` not constant (so :math:`\mathrm{Var}_{\pi_\eta}(A) >
0`);
:math:`\eta > 0`; :math:`0 < \delta < -\log\pi_{\mathrm{old}}(M)` for the binding case.

Proof. (1) expand :math:`\log(\pi/\pi_\eta) = \log\pi - \log\pi_{\mathrm{old}} - A/\eta + \log Z` and use
:math:`\sum\pi = 1`. (2) by (1), :math:`\eta\log Z + \eta\delta - \mathbb E_\pi[A] =
\eta\,\mathrm{KL}(\pi\|\pi_\eta)
+ \eta(\delta - \mathrm{KL}(\pi\|\pi_{\mathrm{old}}))`, a positive plus a nonnegative term. (3), (4)
differentiate the closed forms. The limits are checked numerically. Runtime twin:
``ladtheory/constrained.py``; tests: ``tests/theory/test_constrained_trust_region.py``.
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from scipy.optimize import minimize

from ladtheory import constrained, trust_region
from ladtheory.proof import Derivation, Fact, NumericCheck, Result

n = sp.Symbol("n", integer=True, positive=True)
y = sp.Symbol("y", integer=True)
A = sp.IndexedBase("A", real=True)
q = sp.IndexedBase("pi_old", positive=True)
pi = sp.IndexedBase("pi", positive=True)
eta, Z, delta = sp.symbols("eta Z delta", positive=True)
K1 = sp.Symbol(r"KL_{pi||pi_eta}", positive=True)  # > 0 for pi != pi_eta (Gibbs)
Kq = sp.Symbol(r"KL_{pi||pi_old}", nonnegative=True)
slack = sp.Symbol("sigma", nonnegative=True)  # delta - KL(pi || pi_old) >= 0: pi is feasible
Var = sp.Symbol("Var", positive=True)


def _s(k: int) -> sp.Expr:
    """``sum_y pi_old A^k e^{A/eta}``: Z is _s(0)."""
    return sp.Sum(q[y] * A[y] ** k * sp.exp(A[y] / eta), (y, 1, n))


Z_DEF = Fact("Z", sp.Eq(Z, _s(0)), "definition")
NORMALISED = Fact("normalised", sp.Eq(sp.Sum(pi[y], (y, 1, n)), 1), "hypothesis")
PI_ETA = Fact(
    "pi_eta", sp.Eq(pi[y], q[y] * sp.exp(A[y] / eta) / Z), "hypothesis", r"$\pi = \pi_\eta$", forall=y
)
E_PI = sp.Sum(pi[y] * A[y], (y, 1, n))
KL_TO_TARGET = sp.Sum(pi[y] * sp.log(pi[y] * Z / (q[y] * sp.exp(A[y] / eta))), (y, 1, n))  # KL(pi || pi_eta)
KL_TO_OLD = sp.Sum(pi[y] * sp.log(pi[y] / q[y]), (y, 1, n))  # KL(pi || pi_old)
IDENTITY = Fact(
    "identity",
    sp.Eq(E_PI, eta * sp.log(Z) - eta * KL_TO_TARGET + eta * KL_TO_OLD),
    "derived",
    "part 1 (Gibbs' variational identity)",
    proved_by="Gibbs' variational identity",
)
K1_DEF = Fact("KL to pi_eta", sp.Eq(K1, KL_TO_TARGET), "definition",
              r"positive for $\pi\ne\pi_\eta$ (Gibbs)")
KQ_DEF = Fact("KL to pi_old", sp.Eq(Kq, KL_TO_OLD), "definition")
FEASIBLE = Fact(
    "feasible", sp.Eq(delta, Kq + slack), "hypothesis", r"$\mathrm{KL}(\pi\|\pi_{old}) \le \delta$"
)
VAR_DEF = Fact(
    "Var",
    sp.Eq(Var, _s(2) / _s(0) - (_s(1) / _s(0)) ** 2),
    "hypothesis",
    r"$\mathrm{Var}_{\pi_\eta}(A) > 0$ ($A$ not constant)",
)


def variational_identity() -> Derivation:
    d = Derivation(
        "Gibbs' variational identity",
        r"$\mathbb E_\pi[A] = \eta\log Z - \eta KL(\pi\|\pi_\eta) + \eta KL(\pi\|\pi_{old})$",
        E_PI,
        claim=sp.Eq(E_PI, eta * sp.log(Z) - eta * KL_TO_TARGET + eta * KL_TO_OLD),
        facts=[NORMALISED],
    )
    d.step(
        E_PI + eta * sp.log(Z) - eta * sp.log(Z) * sp.Sum(pi[y], (y, 1, n)),
        "substitute",
        r"add $\eta\log Z(1 - \sum_y\pi_y) = 0$",
        using="normalised",
    )
    d.step(
        eta * sp.log(Z)
        - eta * sp.Sum(pi[y] * (sp.log(pi[y] / q[y]) + sp.log(Z) - A[y] / eta), (y, 1, n))
        + eta * KL_TO_OLD,
        "linearity",
        r"add and subtract $\eta KL(\pi\|\pi_{old})$; one sum",
    )
    d.step(
        eta * sp.log(Z) - eta * KL_TO_TARGET + eta * KL_TO_OLD,
        "algebra",
        r"$\log(\pi/\pi_{old}) + \log Z - A/\eta = \log(\pi/\pi_\eta)$",
    )
    return d


def penalised_value() -> Derivation:
    d = Derivation(
        "penalised optimum eta log Z",
        r"at $\pi = \pi_\eta$: $\mathbb E_\pi[A] - \eta KL(\pi\|\pi_{old}) = \eta\log Z$",
        sp.Sum(pi[y] * A[y], (y, 1, n)) - eta * sp.Sum(pi[y] * sp.log(pi[y] / q[y]), (y, 1, n)),
        claim=sp.Eq(E_PI - eta * KL_TO_OLD, eta * sp.log(Z)),
        facts=[PI_ETA, Z_DEF],
    )
    d.step(
        sp.Sum(q[y] * sp.exp(A[y] / eta) * A[y] / Z, (y, 1, n))
        - eta * sp.Sum(q[y] * sp.exp(A[y] / eta) / Z * (A[y] / eta - sp.log(Z)), (y, 1, n)),
        "substitute",
        r"$\pi = \pi_\eta$; $\log(\pi_\eta/\pi_{old}) = A/\eta - \log Z$",
        using="pi_eta",
    )
    d.step(sp.log(Z) * _s(0) * eta / Z, "linearity", r"the $A$ terms cancel")
    d.step(eta * sp.log(Z), "substitute", r"definition of $Z$", using="Z")
    return d


def constrained_optimum() -> Derivation:
    d = Derivation(
        "pi_eta is the unique constrained maximiser",
        r"feasible $\pi \ne \pi_\eta$: $\eta\log Z + \eta\delta - \mathbb E_\pi[A] = \eta "
        r"KL(\pi\|\pi_\eta) + \eta\sigma > 0$",
        eta * sp.log(Z) + eta * delta - E_PI,
        claim=sp.Gt(eta * sp.log(Z) + eta * delta - E_PI, 0),
        facts=[IDENTITY, K1_DEF, KQ_DEF, FEASIBLE],
        assumptions=[
            r"$KL(\pi\|\pi_\eta) > 0$ for $\pi \ne \pi_\eta$ (proofs/gibbs_inequality.py, KL case)",
            r"$\sigma = \delta - KL(\pi\|\pi_{old}) \ge 0$",
        ],
    )
    d.step(
        eta * sp.log(Z) + eta * delta - (eta * sp.log(Z) - eta * K1 + eta * Kq),
        "substitute",
        "part 1",
        using=["identity", "KL to pi_eta", "KL to pi_old"],
    )
    d.step(eta * K1 + eta * slack, "substitute", r"$\delta = KL(\pi\|\pi_{old}) + \sigma$", using="feasible")
    d.step(sp.Integer(0), "positive", r"$\eta > 0$, $KL(\pi\|\pi_\eta) > 0$, $\sigma \ge 0$")
    return d


def radius_decreases() -> Derivation:
    d = Derivation(
        "KL(pi_eta || pi_old) decreases in eta",
        r"$K'(\eta) = -\mathrm{Var}_{\pi_\eta}(A)/\eta^3 < 0$",
        _s(1) / _s(0) / eta - sp.log(_s(0)),
        claim=sp.Lt(sp.Derivative(_s(1) / _s(0) / eta - sp.log(_s(0)), eta), 0),
        facts=[VAR_DEF],
        assumptions=[r"$K(\eta) = \mathbb E_{\pi_\eta}[A]/\eta - \log Z(\eta)$ (part 1 at $\pi = \pi_\eta$)"],
    )
    d.step(-(_s(2) / _s(0) - (_s(1) / _s(0)) ** 2) / eta**3, "diff", "quotient rule", var=eta)
    d.step(-Var / eta**3, "substitute", r"the variance under $\pi_\eta$", using="Var")
    d.step(sp.Integer(0), "negative", r"$\mathrm{Var} > 0$, $\eta > 0$")
    return d


def dual_derivative() -> Derivation:
    d = Derivation(
        "the dual is minimised at K(eta) = delta",
        r"$\frac{d}{d\eta}[\eta\log Z + \eta\delta] = \delta - K(\eta)$",
        eta * sp.log(_s(0)) + eta * delta,
        claim=sp.Eq(sp.Derivative(eta * sp.log(_s(0)) + eta * delta, eta),
                    delta - (_s(1) / _s(0) / eta - sp.log(_s(0)))),
    )
    d.step(
        sp.log(_s(0)) - _s(1) / (eta * _s(0)) + delta,
        "diff",
        r"$\partial_\eta e^{A/\eta} = -A e^{A/\eta}/\eta^2$",
        var=eta,
    )
    d.step(delta - (_s(1) / _s(0) / eta - sp.log(_s(0))), "algebra", r"this is $\delta - K(\eta)$")
    return d


def _instances(seed: int, count: int):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        k = int(rng.integers(2, 10))
        yield rng.dirichlet(np.ones(k)), rng.normal(0.0, 1.0, k)


def _check_constrained_vs_scipy() -> tuple[float, str]:
    """SLSQP on max E_pi[A] s.t. KL <= delta (no closed form used) against pi_eta(delta)."""
    worst, worst_value = 0.0, 0.0
    for q_, A_ in _instances(41, 6):
        top = constrained.max_radius(q_, A_)
        for frac in (0.1, 0.5, 0.9):
            delta_ = frac * top
            star, eta_ = constrained.constrained_solution(q_, A_, delta_)
            cons = [
                {"type": "ineq", "fun": lambda p, d_=delta_, q0=q_: d_ - trust_region.kl(p, q0)},
                {"type": "eq", "fun": lambda p: p.sum() - 1.0},
            ]
            res = minimize(
                lambda p, a_=A_: -float(p @ a_),
                q_,
                jac=lambda p, a_=A_: -a_,
                method="SLSQP",
                bounds=[(1e-12, 1.0)] * len(q_),
                constraints=cons,
                options={"ftol": 1e-15, "maxiter": 2000},
            )
            found = res.x
            worst = max(worst, float(np.abs(found - star).max()))
            worst_value = max(worst_value, abs(float(star @ A_) - constrained.dual(q_, A_, eta_, delta_)))
    return max(worst, worst_value), (
        f"12 instances x 3 radii: max |pi_SLSQP - pi_eta(delta)| {worst:.1e}, "
        f"|E_pi_eta[A] - (eta log Z + eta delta)| {worst_value:.1e}"
    )


def _check_monotone_and_limits() -> tuple[float, str]:
    worst_increase, worst_limit = 0.0, 0.0
    etas = np.geomspace(1e-3, 1e3, 200)
    for q_, A_ in _instances(42, 20):
        ks = np.array([constrained.radius(q_, A_, e) for e in etas])
        worst_increase = max(worst_increase, float(np.max(np.diff(ks))))
        worst_limit = max(worst_limit, ks[-1], abs(ks[0] - constrained.max_radius(q_, A_)))
    return max(worst_increase, 0.0) + worst_limit, (
        f"K on eta in [1e-3, 1e3]: max increase {worst_increase:.1e}; "
        f"K(1e3) and |K(1e-3) + log pi_old(M)| <= {worst_limit:.1e}"
    )


def result() -> Result:
    return Result(
        name="constrained_trust_region",
        title="The constrained trust region and the delta <-> eta correspondence",
        claims=[variational_identity().claim, penalised_value().claim, constrained_optimum().claim,
                radius_decreases().claim, dual_derivative().claim],
        assumptions=(r"$\pi_{old} > 0$", r"$A$ not constant", r"$0 < \delta < -\log\pi_{old}(\arg\max A)$"),
        parts=[
            variational_identity(),
            penalised_value(),
            constrained_optimum(),
            radius_decreases(),
            dual_derivative(),
            NumericCheck(
                "constrained optimum vs SLSQP",
                "a constrained optimiser finds pi_eta(delta)",
                r"\|\pi_{\mathrm{SLSQP}} - \pi_{\eta(\delta)}\|_\infty \le 10^{-5}",
                _check_constrained_vs_scipy,
                1e-5,
            ),
            NumericCheck(
                "monotone radius and its limits",
                "K decreases from -log pi_old(M) to 0",
                r"K(10^3) \approx 0,\ K(10^{-3}) \approx -\log\pi_{old}(M),\ \Delta K \le 0",
                _check_monotone_and_limits,
                2e-3,
            ),
        ],
        notes="The penalty weight eta is the Lagrange multiplier of the radius delta: a larger trust "
              "region is a "
        "smaller eta, and eta -> 0 (delta -> -log pi_old(M)) is pure advantage maximisation on argmax A.",
    )
