"""FlowRL as the KL special case, FlowRL Prop. 1, GRPO as the small-step limit, and the weight range."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ladtheory import divergences, objective, reductions


def _tensors(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    r = lambda: torch.randn(n, generator=g, dtype=torch.float64)  # noqa: E731
    return torch.log_softmax(r(), -1), torch.log_softmax(r(), -1), r()


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 64), st.integers(0, 2**31 - 1), st.sampled_from([0.25, 0.5, 1.0, 3.0]))
def test_flowrl_special_case_lad_kl_equals_flowrl_kl_minus_log_z(n, seed, eta):
    log_pi, log_old, A = _tensors(n, seed)
    lad = reductions.lad_exact_loss(log_pi, log_old, A, eta, divergences.get("kl"))
    flow = reductions.flowrl_objective(log_pi, log_old, A, 1.0 / eta)
    log_z = reductions.log_partition(log_old, A, 1.0 / eta)
    assert float(lad) == pytest.approx(float(flow - log_z), rel=1e-12, abs=1e-12)


def test_flowrl_special_case_fails_for_other_generators_and_wrong_beta():
    """The identity is specific: JS, or beta = 2/eta, break it (the oracle can fail)."""
    log_pi, log_old, A = _tensors(8, 1)
    target = float(
        reductions.flowrl_objective(log_pi, log_old, A, 2.0) - reductions.log_partition(log_old, A, 2.0)
    )
    assert abs(float(reductions.lad_exact_loss(log_pi, log_old, A, 0.5, "js")) - target) > 1e-3
    wrong_beta = float(
        reductions.flowrl_objective(log_pi, log_old, A, 4.0) - reductions.log_partition(log_old, A, 4.0)
    )
    assert abs(float(reductions.lad_exact_loss(log_pi, log_old, A, 0.5, "kl")) - wrong_beta) > 1e-3


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 64), st.integers(0, 2**31 - 1), st.floats(-5.0, 5.0))
def test_flowrl_prop_1_expected_tb_gradient_equals_kl_gradient_for_any_log_z(n, seed, shift):
    logits, log_ref, r_hat = _tensors(n, seed)
    beta = 3.0
    exact = float(reductions.log_partition(log_ref, r_hat, beta))
    kl_grad = reductions.kl_gradient(logits, log_ref, r_hat, beta)
    for log_z in (exact, exact + shift):
        tb = reductions.tb_expected_gradient(logits, log_ref, r_hat, beta, log_z)
        torch.testing.assert_close(tb, kl_grad, rtol=1e-10, atol=1e-12)


def test_flowrl_prop_1_needs_the_expectation_a_single_sample_differs_with_wrong_log_z():
    logits, log_ref, r_hat = _tensors(6, 3)
    theta = logits.clone().requires_grad_(True)
    exact = float(reductions.log_partition(log_ref, r_hat, 3.0))
    grads = []
    for log_z in (exact, exact + 1.0):
        loss = reductions.tb_loss(
            torch.tensor(log_z, dtype=torch.float64), torch.log_softmax(theta, -1), log_ref, r_hat, 3.0
        )[0]
        grads.append(torch.autograd.grad(loss, theta)[0])
    assert (grads[0] - grads[1]).abs().max() > 1e-3  # per-sample gradients depend on log Z


@pytest.mark.parametrize(
    "name", ["kl", "rkl", "js", "hellinger", "jeffreys", "pearson", "neyman", "triangular"]
)
def test_grpo_limit_weight_at_rho_1_is_f2_times_a_over_eta(name):
    A = np.array([-1.5, -0.3, 0.4, 2.0])
    c1 = divergences.get(name).f_prime_at_1
    for eta in (1e2, 1e3, 1e4):
        w = objective.effective_weight(A, np.zeros_like(A), name, eta)
        first = reductions.first_order_weight(A, eta, name)
        np.testing.assert_allclose(first, -c1 + reductions.grpo_limit_weight(A, eta, name), rtol=1e-15)
        # the remainder is O(1/eta^2): scaled by eta^2 it stays bounded (<= 10 here)
        assert np.abs(w - first).max() * eta**2 <= 10.0
        # and a factor-2 error in f''(1) would leave an O(1/eta) remainder
        wrong = -c1 + 2.0 * reductions.grpo_limit_weight(A, eta, name)
        assert np.abs(w - wrong).max() * eta > 0.25 * divergences.get(name).f2_at_1


def test_grpo_limit_f2_values_of_the_builtins():
    exact = {"kl": 1, "rkl": 1, "js": sp.Rational(1, 4), "hellinger": sp.Rational(1, 2), "jeffreys": 2,
             "pearson": 2, "neyman": 2, "triangular": 1}
    for name, value in exact.items():
        # independent oracle: f''(1) by finite differences of the runtime f
        h = 1e-4
        fd = (divergences.get(name).f(np.array(1 + h)) - 2 * divergences.get(name).f(np.array(1.0))
              + divergences.get(name).f(np.array(1 - h))) / h**2
        assert float(fd) == pytest.approx(float(value), rel=1e-5)
        assert divergences.get(name).f2_at_1 == pytest.approx(float(value), rel=1e-14)
    assert math.isnan(divergences.get("tv").f2_at_1)


def test_grpo_limit_direction_in_expectation_is_reinforce_scaled():
    """E_pi[w(A,1) grad log pi] -> (f''(1)/eta) E_pi[A grad log pi] for a softmax policy: the f'(1) part
    cancels."""
    logits, _, A = _tensors(7, 9)
    pi = torch.softmax(logits, -1)
    score = torch.eye(7, dtype=torch.float64) - pi  # grad_logits log pi(y), row y
    grpo = (pi * A) @ score
    for name in ("kl", "rkl", "js"):
        eta = 1e3
        w = objective.effective_weight(A, torch.zeros(7, dtype=torch.float64), name, eta)
        lad = (pi * w) @ score
        expected = divergences.get(name).f2_at_1 / eta * grpo
        assert float((lad - expected).abs().max()) <= 50.0 / eta**2


TABLE = {  # (limit as A -> -inf, limit as A -> +inf)
    "kl": (-sp.oo, sp.oo), "rkl": (0, sp.oo), "js": (-sp.log(2) / 2, sp.oo), "hellinger": (-1, sp.oo),
    "tv": (-1, 1), "jeffreys": (-sp.oo, sp.oo), "pearson": (-sp.oo, 2), "neyman": (-1, sp.oo),
    "triangular": (-1, 3),
}


@pytest.mark.parametrize("name", list(TABLE))
def test_effective_weight_range_limits(name):
    r = reductions.weight_range(name)
    low, high = TABLE[name]
    assert sp.simplify(r.low - low) == 0 if low not in (sp.oo, -sp.oo) else r.low == low
    assert sp.simplify(r.high - high) == 0 if high not in (sp.oo, -sp.oo) else r.high == high
    # cross-check with the runtime far out (theory function, no clamps)
    for value, s in ((r.low, -60.0), (r.high, 60.0)):
        far = float(objective.effective_weight(s, 0.0, name, 1.0))
        if value.is_finite:
            assert far == pytest.approx(float(value), abs=1e-9)
        else:
            assert np.sign(far) == (1 if value == sp.oo else -1) and abs(far) > 25


def test_effective_weight_range_js_matches_paper_notes_closed_form():
    s = np.linspace(-6, 6, 25)
    w = objective.effective_weight(s, np.zeros_like(s), "js", 1.0)
    np.testing.assert_allclose(w, 0.5 * np.log((1 + np.exp(s)) / 2), rtol=1e-12, atol=1e-14)


def test_effective_weight_range_growth_laws():
    assert reductions.weight_range("rkl").growth_high == r"exponential e^{|A|/\eta}"
    assert reductions.weight_range("hellinger").growth_high == r"exponential e^{\frac{1}{2}|A|/\eta}"
    assert reductions.weight_range("js").growth_high == r"linear \frac{1}{2}|A|/\eta"
    assert reductions.weight_range("kl").growth_low == r"linear |A|/\eta"
    assert reductions.weight_range("tv").growth_low == "bounded"
