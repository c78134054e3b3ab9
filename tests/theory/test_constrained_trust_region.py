"""The constrained trust region (proofs/constrained_trust_region.py, ladtheory/constrained.py): the radius
K(eta) = KL(pi_eta || pi_old) decreases in eta, delta <-> eta is a bijection onto (0, -log pi_old(M)), and
pi_eta(delta) beats every feasible policy; the dual eta log Z + eta delta is minimised there."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar

from ladtheory import constrained, trust_region


@st.composite
def instance(draw):
    n = draw(st.integers(2, 16))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    q = rng.dirichlet(np.ones(n))
    A = rng.normal(0, 1, n)
    return q, A, rng


@settings(max_examples=40, deadline=None)
@given(instance(), st.floats(0.05, 0.95))
def test_constrained_trust_region_radius_round_trip_and_optimality(inst, frac):
    q, A, rng = inst
    delta = frac * constrained.max_radius(q, A)
    star, eta = constrained.constrained_solution(q, A, delta)
    assert trust_region.kl(star, q) == pytest.approx(delta, rel=1e-9, abs=1e-12)
    value = float(star @ A)
    assert value == pytest.approx(constrained.dual(q, A, eta, delta), rel=1e-10, abs=1e-12)
    # every feasible policy does no better: random directions, scaled back into the ball
    for _ in range(20):
        other = rng.dirichlet(np.ones(len(q)))
        lo, hi = 0.0, 1.0
        for _ in range(60):  # largest t with KL((1-t) q + t other || q) <= delta
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if trust_region.kl((1 - mid) * q + mid * other, q) <= delta else (lo, mid)
        assert float(((1 - lo) * q + lo * other) @ A) <= value + 1e-12


@settings(max_examples=30, deadline=None)
@given(instance())
def test_constrained_trust_region_radius_decreases_in_eta(inst):
    q, A, _ = inst
    etas = np.geomspace(0.01, 100.0, 60)
    ks = np.array([constrained.radius(q, A, e) for e in etas])
    assert np.all(np.diff(ks) < 1e-12)
    assert ks[-1] < 1e-3 and ks[0] <= constrained.max_radius(q, A) + 1e-12


@settings(max_examples=25, deadline=None)
@given(instance(), st.floats(0.1, 0.9))
def test_constrained_trust_region_dual_minimiser_is_the_temperature(inst, frac):
    q, A, _ = inst
    delta = frac * constrained.max_radius(q, A)
    eta = constrained.temperature_for_radius(q, A, delta)
    res = minimize_scalar(
        lambda le: constrained.dual(q, A, float(np.exp(le)), delta),
        bracket=(np.log(eta) - 1, np.log(eta) + 1),
        method="brent",
        tol=1e-12,
    )
    assert np.exp(res.x) == pytest.approx(eta, rel=1e-4)


def test_constrained_trust_region_rejects_radius_outside_the_binding_range():
    q, A = np.array([0.5, 0.3, 0.2]), np.array([1.0, 0.0, -1.0])
    with pytest.raises(ValueError, match="delta must lie in"):
        constrained.temperature_for_radius(q, A, -np.log(0.5))  # = max_radius: the constraint does not bind
    with pytest.raises(ValueError, match="delta must lie in"):
        constrained.temperature_for_radius(q, A, 0.0)
