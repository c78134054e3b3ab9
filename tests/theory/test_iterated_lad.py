"""Iterated LAD (proofs/iterated_lad.py, ladtheory/iteration.py): exact per-round minimisers compose to
pi_0 e^{kA/eta}, equal-advantage ratios are preserved for every generator, mass concentrates on argmax A at
rate e^{-Delta/eta}; a policy-gradient step favours the more probable of two equal-advantage responses."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ladtheory import iteration, surrogate


@st.composite
def instance(draw, max_size=10):
    n = draw(st.integers(3, max_size))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pi0 = rng.dirichlet(np.ones(n))
    A = rng.normal(0, 1, n)
    A[1] = A[0]
    return pi0, A, draw(st.sampled_from([0.25, 1.0, 2.0]))


@settings(max_examples=12, deadline=None)
@given(instance(max_size=6), st.sampled_from(["js", "hellinger", "kl", "neyman"]))
def test_iterated_lad_exact_rounds_compose_and_keep_equal_advantage_ratios(inst, name):
    pi0, A, eta = inst
    eta = max(eta, 1.0)  # keep e^{3A/eta} moderate for the exact solver
    pi = pi0
    for k in range(1, 4):
        pi = surrogate.minimise(surrogate.log_weights(pi, A, eta), name)
        np.testing.assert_allclose(np.log(pi), np.log(iteration.iterated_target(pi0, A, eta, k)), atol=1e-7)
    assert pi[0] / pi[1] == pytest.approx(pi0[0] / pi0[1], rel=1e-7)


@settings(max_examples=50, deadline=None)
@given(instance(), st.floats(0, 200))
def test_iterated_lad_ratio_and_odds_bound_for_every_k(inst, k):
    pi0, A, eta = inst
    log_pk = iteration.log_iterated_target(pi0, A, eta, k)
    assert log_pk[0] - log_pk[1] == pytest.approx(np.log(pi0[0] / pi0[1]), abs=1e-9)
    pk = np.exp(log_pk)
    best = iteration.best_set(A)
    if not best.all() and pk[best].sum() > 0:
        odds = pk[~best].sum() / pk[best].sum()
        assert odds <= iteration.odds_bound(pi0, A, eta, k) * (1 + 1e-9) + 1e-300


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), lr=st.floats(1e-3, 1.0), which=st.sampled_from(["grpo", "lad", "pg"]))
def test_iterated_lad_policy_gradient_step_rich_get_richer(seed, lr, which):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 12))
    logits = rng.normal(0, 1, n)
    A = rng.normal(0, 1, n)
    A[0] = A[1] = A.max() + 0.5  # two responses with the best (above-average) advantage
    pi = np.exp(logits - np.logaddexp.reduce(logits))
    c = {"grpo": iteration.grpo_weights(pi, A), "lad": iteration.lad_weights(A, 0.25), "pg": A}[which]
    change = iteration.ratio_change(logits, c, lr, 0, 1)
    assert change == pytest.approx(lr * (c[0] - pi @ c) * (pi[0] - pi[1]), rel=1e-12, abs=1e-15)
    if abs(pi[0] - pi[1]) > 1e-9:
        assert np.sign(change) == np.sign(pi[0] - pi[1])  # the more probable one gains


def test_iterated_lad_below_average_pair_moves_towards_equal():
    logits = np.log(np.array([0.4, 0.1, 0.5]))
    A = np.array([-1.0, -1.0, 2.0])  # the pair is below average
    change = iteration.ratio_change(logits, A, 0.1, 0, 1)
    assert change < 0  # log(pi_0/pi_1) > 0 shrinks: towards 1
