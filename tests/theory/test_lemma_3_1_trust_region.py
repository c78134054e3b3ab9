"""Lemma 3.1 (both KL directions) and the equivalence pi = pi* <=> P_theta = P_A, on random instances."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ladtheory import trust_region as tr

TOL = 1e-6  # the agreement target; the solvers reach ~1e-13


@st.composite
def instances(draw, max_size: int = 64):
    n = draw(st.integers(2, max_size))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    pi_old = rng.dirichlet(np.full(n, draw(st.sampled_from([0.3, 1.0, 5.0]))))
    pi_old = np.maximum(pi_old, 1e-12)
    pi_old /= pi_old.sum()
    A = rng.normal(0.0, draw(st.sampled_from([0.5, 1.0, 2.0])), n)
    eta = draw(st.sampled_from([0.25, 0.5, 1.0, 4.0]))
    return pi_old, A, eta


@settings(max_examples=40, deadline=None)
@given(instances())
def test_lemma_3_1_forward_kl_maximiser_is_exponential_tilt(inst):
    pi_old, A, eta = inst
    closed = tr.forward_solution(pi_old, A, eta)
    numeric = tr.maximise(pi_old, A, eta, "forward")
    np.testing.assert_allclose(numeric, closed, atol=TOL, rtol=0)
    assert abs(closed.sum() - 1.0) < 1e-12


@settings(max_examples=40, deadline=None)
@given(instances())
def test_lemma_3_1_reverse_kl_maximiser_is_reciprocal_form(inst):
    pi_old, A, eta = inst
    sol = tr.reverse_solution(pi_old, A, eta)
    assert sol.lam > A.max()
    stated = eta * pi_old / (sol.lam - A)  # the reciprocal form with the root lambda
    # Normalisation holds up to the root's conditioning: one ulp of lambda moves the sum by
    # sum_y pi(y) |lambda| / (lambda - A(y)), which is large when a tiny pi_old(y) sits at the top advantage.
    cond = float(np.sum(stated * abs(sol.lam) / (sol.lam - A)))
    bound = 1e-10 + 8 * np.finfo(float).eps * cond
    assert abs(stated.sum() - 1.0) < bound
    np.testing.assert_allclose(sol.pi, stated, rtol=2 * bound)  # sol.pi = stated / sum
    np.testing.assert_allclose(tr.maximise(pi_old, A, eta, "reverse"), sol.pi, atol=TOL, rtol=0)


@settings(max_examples=25, deadline=None)
@given(instances(max_size=8))
def test_lemma_3_1_scipy_optimiser_agrees_with_both_closed_forms(inst):
    pi_old, A, eta = inst
    fwd = tr.maximise(pi_old, A, eta, "forward", method="scipy")
    rev = tr.maximise(pi_old, A, eta, "reverse", method="scipy")
    np.testing.assert_allclose(fwd, tr.forward_solution(pi_old, A, eta), atol=TOL, rtol=0)
    np.testing.assert_allclose(rev, tr.reverse_solution(pi_old, A, eta).pi, atol=TOL, rtol=0)


@settings(max_examples=30, deadline=None)
@given(instances(max_size=16), st.integers(0, 2**32 - 1))
def test_lemma_3_1_closed_forms_beat_every_perturbation(inst, seed):
    """An oracle independent of any solver: the objective at the closed form exceeds its value at nearby
    and random distributions."""
    pi_old, A, eta = inst
    rng = np.random.default_rng(seed)
    for direction, star in (("forward", tr.forward_solution(pi_old, A, eta)),
                            ("reverse", tr.reverse_solution(pi_old, A, eta).pi)):
        best = tr.objective(star, pi_old, A, eta, direction)
        for scale in (1e-3, 1e-1, 1.0):
            other = star * np.exp(scale * rng.normal(size=len(star)))
            other /= other.sum()
            assert tr.objective(other, pi_old, A, eta, direction) <= best + 1e-12


def test_lemma_3_1_counterexample_the_two_directions_differ():
    pi_old, A = np.full(3, 1 / 3), np.array([1.0, 0.0, -1.0])
    fwd = tr.forward_solution(pi_old, A, 1.0)
    rev = tr.reverse_solution(pi_old, A, 1.0)
    # forward: e^A / (e + 1 + 1/e); reverse: (1/3) / (lambda - A), lambda root of 3L^3 - 3L^2 - 3L + 1
    np.testing.assert_allclose(fwd, np.exp(A) / np.exp(A).sum(), rtol=1e-14)
    assert abs(3 * rev.lam**3 - 3 * rev.lam**2 - 3 * rev.lam + 1) < 1e-12
    assert np.abs(fwd - rev.pi).max() > 0.04
    np.testing.assert_allclose(tr.maximise(pi_old, A, 1.0, "forward", method="scipy"), fwd, atol=TOL)
    np.testing.assert_allclose(tr.maximise(pi_old, A, 1.0, "reverse", method="scipy"), rev.pi, atol=TOL)


@settings(max_examples=40, deadline=None)
@given(instances())
def test_equivalence_pi_star_iff_policy_induced_equals_advantage_induced(inst):
    pi_old, A, eta = inst
    star = tr.forward_solution(pi_old, A, eta)
    p_a = tr.advantage_induced(A, eta)
    np.testing.assert_allclose(tr.policy_induced(star, pi_old), p_a, atol=1e-12)
    rev = tr.reverse_solution(pi_old, A, eta).pi  # a different policy: its P_theta is not P_A
    if np.abs(rev - star).max() > 1e-6:
        assert np.abs(tr.policy_induced(rev, pi_old) - p_a).max() > 1e-9


def test_trust_region_rejects_bad_input_with_a_message():
    with pytest.raises(ValueError, match="eta must be > 0"):
        tr.forward_solution(np.full(2, 0.5), np.zeros(2), 0.0)
    with pytest.raises(ValueError, match="one length"):
        tr.forward_solution(np.full(2, 0.5), np.zeros(3), 1.0)
    with pytest.raises(ValueError, match="strictly positive distribution"):
        tr.reverse_solution(np.array([1.0, 0.0]), np.zeros(2), 1.0)
    with pytest.raises(ValueError, match="direction"):
        tr.maximise(np.full(2, 0.5), np.zeros(2), 1.0, "sideways")
