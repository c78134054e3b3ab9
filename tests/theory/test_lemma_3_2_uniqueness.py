"""Lemma 3.2 uniqueness (proofs/lemma_3_2_uniqueness.py): L(pi) - Z_g f(1/Z_g) is a g-weighted sum of
tangent gaps at c = 1/Z_g, so any pi != g/Z_g costs strictly more; unnormalised, the minimiser is m g."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar

from ladtheory import divergences, surrogate

STRICT = ["kl", "rkl", "js", "hellinger", "jeffreys", "pearson", "neyman", "triangular"]


@st.composite
def instance(draw):
    n = draw(st.integers(2, 24))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return (
        rng.dirichlet(np.ones(n)),
        rng.normal(0.0, 1.0, n),
        draw(st.sampled_from([0.25, 0.5, 2.0])),
        rng.dirichlet(np.ones(n) * draw(st.sampled_from([0.3, 1.0, 5.0]))),
    )


@settings(max_examples=40, deadline=None)
@given(instance(), st.sampled_from(STRICT))
def test_lemma_3_2_uniqueness_gap_identity_and_strict_excess(inst, name):
    q, A, eta, pi = inst
    log_g = surrogate.log_weights(q, A, eta)
    g = np.exp(log_g)
    c = 1.0 / g.sum()
    div = divergences.get(name)
    x = pi / g
    gaps = div.f(x) - div.f(np.array(c)) - div.f_prime(np.array(c)) * (x - c)
    assert np.all(gaps >= -1e-12)
    excess = surrogate.practical_loss(pi, log_g, name) - g.sum() * float(div.f(np.array(c)))
    assert excess == pytest.approx(float(np.sum(g * gaps)), rel=1e-9, abs=1e-12)
    if np.abs(pi - surrogate.target(log_g)).max() > 1e-3:
        assert excess > 0


@settings(max_examples=20, deadline=None)
@given(instance(), st.sampled_from(["js", "hellinger", "pearson", "kl", "neyman"]))
def test_lemma_3_2_uniqueness_unnormalised_minimiser_is_m_times_g(inst, name):
    q, A, eta, _ = inst
    log_g = surrogate.log_weights(q, A, eta)
    div = divergences.get(name)
    m = np.exp(-1.0) if name == "kl" else 1.0  # argmin of u log u is 1/e; f'(1) = 0 otherwise
    for lg in log_g[:4]:
        res = minimize_scalar(
            lambda t, lg=lg: float(np.exp(lg) * div.f_log(np.array(t - lg))),
            bracket=(lg - 3, lg + 3),
            method="brent",
            tol=1e-12,
        )
        assert res.x == pytest.approx(lg + np.log(m), abs=1e-6)


def test_lemma_3_2_uniqueness_fails_without_strict_convexity_at_c():
    log_g = np.log(np.array([1.0, 0.6, 0.4]))  # Z_g = 2, c = 1/2: TV is affine around 1/2
    star, other = surrogate.target(log_g), np.array([0.45, 0.35, 0.2])
    assert surrogate.practical_loss(other, log_g, "tv") == pytest.approx(
        surrogate.practical_loss(star, log_g, "tv"), abs=1e-12
    )
    assert surrogate.practical_loss(other, log_g, "js") > surrogate.practical_loss(star, log_g, "js") + 1e-4
