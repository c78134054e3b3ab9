"""Lemma 3.2: the practical loss sum_y g f(pi/g) is minimised over distributions at pi = g / Z_g."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ladtheory import divergences, reductions, surrogate, trust_region

STRICT = ["kl", "rkl", "js", "hellinger", "jeffreys", "pearson", "neyman", "triangular"]
TOL = 1e-6


@st.composite
def weights(draw, max_size: int = 64):
    n = draw(st.integers(2, max_size))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pi_old = rng.dirichlet(np.ones(n))
    A = rng.normal(0.0, 1.0, n)
    eta = draw(st.sampled_from([0.25, 0.5, 1.0, 2.0]))
    return pi_old, A, eta


@settings(max_examples=30, deadline=None)
@given(weights(), st.sampled_from(STRICT))
def test_lemma_3_2_minimiser_is_g_over_z_for_every_strictly_convex_builtin(inst, name):
    pi_old, A, eta = inst
    log_g = surrogate.log_weights(pi_old, A, eta)
    np.testing.assert_allclose(surrogate.minimise(log_g, name), surrogate.target(log_g), atol=TOL, rtol=0)


@settings(max_examples=20, deadline=None)
@given(weights(max_size=6), st.sampled_from(["js", "kl", "hellinger", "neyman"]))
def test_lemma_3_2_scipy_minimiser_agrees(inst, name):
    pi_old, A, eta = inst
    log_g = surrogate.log_weights(pi_old, A, max(eta, 0.5))
    np.testing.assert_allclose(surrogate.minimise(log_g, name, method="scipy"), surrogate.target(log_g),
                               atol=TOL, rtol=0)


@settings(max_examples=30, deadline=None)
@given(weights(max_size=16), st.sampled_from(STRICT), st.integers(0, 2**32 - 1))
def test_lemma_3_2_jensen_lower_bound_holds_and_is_attained(inst, name, seed):
    pi_old, A, eta = inst
    log_g = surrogate.log_weights(pi_old, A, eta)
    zg = float(np.exp(log_g).sum())
    bound = zg * float(divergences.get(name).f(np.array(1.0 / zg)))
    star = surrogate.target(log_g)
    assert surrogate.practical_loss(star, log_g, name) == pytest.approx(bound, rel=1e-10, abs=1e-10)
    rng = np.random.default_rng(seed)
    for _ in range(5):
        other = rng.dirichlet(np.ones(len(star)))
        assert surrogate.practical_loss(other, log_g, name) >= bound - 1e-9 * max(1.0, abs(bound))


@settings(max_examples=30, deadline=None)
@given(weights())
def test_lemma_3_2_target_is_lemma_3_1_forward_solution(inst):
    pi_old, A, eta = inst
    np.testing.assert_allclose(surrogate.target(surrogate.log_weights(pi_old, A, eta)),
                               trust_region.forward_solution(pi_old, A, eta), rtol=1e-12, atol=1e-15)


@settings(max_examples=20, deadline=None)
@given(weights(max_size=16), st.sampled_from(STRICT))
def test_lemma_3_2_practical_loss_is_the_pi_old_expectation_of_the_lad_sample_loss(inst, name):
    """Two implementations: numpy sum_y g f(pi/g) and the torch exact LAD loss E_{pi_old}[e^{A/eta} f(rho
    e^{-A/eta})]."""
    pi_old, A, eta = inst
    rng = np.random.default_rng(0)
    pi = rng.dirichlet(np.ones(len(pi_old)))
    ours = surrogate.practical_loss(pi, surrogate.log_weights(pi_old, A, eta), name)
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    other = float(reductions.lad_exact_loss(t(np.log(pi)), t(np.log(pi_old)), t(A), eta, name))
    assert ours == pytest.approx(other, rel=1e-10, abs=1e-10)


def test_lemma_3_2_needs_strict_convexity_tv_has_a_flat_set_of_minimisers():
    log_g = np.log(np.array([1.0, 0.6, 0.4]))  # Z_g = 2
    star, other = surrogate.target(log_g), np.array([0.45, 0.35, 0.2])
    assert surrogate.practical_loss(other, log_g, "tv") == pytest.approx(
        surrogate.practical_loss(star, log_g, "tv"), abs=1e-14
    )
    assert surrogate.practical_loss(other, log_g, "js") > surrogate.practical_loss(star, log_g, "js") + 1e-4
