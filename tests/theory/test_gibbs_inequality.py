"""Gibbs' inequality for D_f(P_theta || P_A) (proofs/gibbs_inequality.py): >= 0, a sum of tangent gaps at
1, zero exactly at pi = pi* for generators strictly convex at 1 (TV included), not for a flat one."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ladtheory import divergences, trust_region

STRICT_AT_1 = ["kl", "rkl", "js", "hellinger", "tv", "jeffreys", "pearson", "neyman", "triangular", "alpha:3"]


def d_f(p, q, name):
    return float(np.sum(q * divergences.get(name).f_log(np.log(p) - np.log(q))))


@st.composite
def instance(draw):
    n = draw(st.integers(2, 30))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return (
        rng.dirichlet(np.ones(n)),
        rng.normal(0, 1, n),
        draw(st.sampled_from([0.25, 1.0])),
        rng.dirichlet(np.ones(n)),
    )


@settings(max_examples=50, deadline=None)
@given(instance(), st.sampled_from(STRICT_AT_1))
def test_gibbs_inequality_nonnegative_zero_only_at_pi_star(inst, name):
    q_old, A, eta, pi = inst
    p_a = trust_region.advantage_induced(A, eta)
    value = d_f(trust_region.policy_induced(pi, q_old), p_a, name)
    assert value >= -1e-12
    star = trust_region.forward_solution(q_old, A, eta)
    assert abs(d_f(trust_region.policy_induced(star, q_old), p_a, name)) < 1e-12
    if np.abs(trust_region.policy_induced(pi, q_old) - p_a).max() > 1e-3:
        assert value > 0


@settings(max_examples=40, deadline=None)
@given(instance(), st.sampled_from(["js", "kl", "hellinger", "pearson"]), st.floats(-2, 2))
def test_gibbs_inequality_tangent_gap_identity_for_any_subgradient_offset(inst, name, offset):
    """sum P_A T_1(P/P_A) = D_f for the tangent with slope f'(1) + anything: the slope terms cancel."""
    _, A, eta, pi = inst
    p, q = pi, trust_region.advantage_induced(A, eta)
    div = divergences.get(name)
    x = p / q
    slope = div.f_prime_at_1 + offset
    gaps = div.f(x) - 0.0 - slope * (x - 1.0)
    assert float(np.sum(q * gaps)) == pytest.approx(d_f(p, q, name), rel=1e-9, abs=1e-12)


def test_gibbs_inequality_flat_generator_does_not_separate():
    q = np.array([0.5, 0.3, 0.2])
    p = np.array([0.55, 0.27, 0.18])
    flat = np.maximum(0, p / q - 1.3) ** 2 + np.maximum(0, 0.7 - p / q) ** 2
    assert float(np.sum(q * flat)) == 0.0
    assert d_f(p, q, "tv") > 0.01  # TV is strictly convex at 1 and separates them
