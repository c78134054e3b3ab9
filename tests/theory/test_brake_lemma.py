"""The brake lemma (proofs/brake_lemma.py): with f'(1) = 0 and f strictly convex at 1, a descent step on
the per-sample LAD loss raises log pi(y) exactly while rho < e^{A/eta}; kl and rkl differ; a generator
flat around 1 does not brake."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ladtheory import divergences
from ladtheory.objective import effective_weight, lad_loss
from ladtheory.proof import load_results

BRAKING = [
    "js",
    "hellinger",
    "tv",
    "jeffreys",
    "pearson",
    "neyman",
    "triangular",
    "alpha:0.5",
    "alpha:2",
    "alpha:-1",
]


@pytest.mark.parametrize("name", BRAKING)
def test_brake_lemma_hypotheses_hold_for_the_braking_generators(name):
    div = divergences.get(name)
    assert div.f_prime_at_1 == 0.0
    if name != "tv":  # f''(1) > 0 is the sufficient condition for strictness at 1
        assert div.f2_at_1 > 0


@pytest.mark.parametrize("name", BRAKING)
@settings(max_examples=60, deadline=None)
@given(log_rho=st.floats(-8, 8), s=st.floats(-8, 8), eta=st.sampled_from([0.25, 1.0, 4.0]))
def test_brake_lemma_weight_sign_is_sign_of_target_minus_rho(name, log_rho, s, eta):
    gap = s - log_rho  # log e^{A/eta} - log rho
    w = effective_weight(s * eta, log_rho, name, eta)
    if abs(gap) < 1e-9:
        return
    assert np.sign(w) == np.sign(gap), (name, log_rho, s, w)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1), s=st.floats(-3, 3), name=st.sampled_from(["js", "hellinger", "pearson"])
)
def test_brake_lemma_small_step_of_a_network_moves_log_pi_by_lr_w_grad_norm_squared(seed, s, name):
    """A softmax-linear 'network' over 5 tokens: one SGD step on the per-sample lad_loss changes log pi(y)
    by lr * w * ||grad log pi(y)||^2 to first order, with the brake's sign."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    feat = torch.randn(3, generator=g, dtype=torch.float64)
    y, eta, lr = 2, 0.5, 1e-6
    logp_old = float(torch.log_softmax(W @ feat, 0)[y].detach()) + float(
        torch.randn((), generator=g, dtype=torch.float64)
    )
    logp = torch.log_softmax(W @ feat, 0)[y]
    loss, _ = lad_loss(
        logp.reshape(1, 1),
        torch.tensor([[logp_old]], dtype=torch.float64),
        torch.tensor([s * eta], dtype=torch.float64),
        torch.ones(1, 1, dtype=torch.bool),
        divergence=name,
        eta=eta,
        level="sequence",
    )
    (grad_loss,) = torch.autograd.grad(loss, W)
    (grad_s,) = torch.autograd.grad(torch.log_softmax(W @ feat, 0)[y], W)
    logp = logp.detach()
    w = effective_weight(s * eta, float(logp) - logp_old, name, eta)
    g2 = float((grad_s**2).sum())
    lr = lr / max(1.0, abs(w) * g2)  # keep the step first-order small whatever the weight
    with torch.no_grad():
        new = float(torch.log_softmax((W - lr * grad_loss) @ feat, 0)[y])
    predicted = lr * w * g2
    assert new - float(logp) == pytest.approx(predicted, rel=1e-4, abs=1e-15)
    if abs(predicted) > 1e-12:
        assert np.sign(new - float(logp)) == np.sign(s - (float(logp) - logp_old))


@settings(max_examples=40, deadline=None)
@given(log_rho=st.floats(-6, 6), s=st.floats(-6, 6))
def test_brake_lemma_kl_brakes_at_target_minus_one_and_rkl_never(log_rho, s):
    eta = 0.5
    w_kl = effective_weight(s * eta, log_rho, "kl", eta)
    assert w_kl == pytest.approx(-np.exp(log_rho) * (log_rho - s + 1.0), rel=1e-12, abs=1e-12)
    assert effective_weight(s * eta, log_rho, "rkl", eta) > 0  # pushed up whatever rho is


def test_brake_lemma_needs_strictness_a_flat_generator_gives_zero_step_below_target():
    delta, s = 0.3, 1.5
    u = np.linspace(0.72, 0.99, 28)  # below target (u < 1), inside the flat zone [1 - delta, 1]
    f_prime = 2 * np.maximum(0, u - 1 - delta) - 2 * np.maximum(0, 1 - delta - u)
    w_flat = -(u * np.exp(s)) * f_prime
    assert np.all(w_flat == 0.0)
    assert np.all(effective_weight(s * 0.25, np.log(u) + s, "js", 0.25) > 0)  # the strictly convex control


def test_brake_lemma_result_checks():
    (res,) = [r for r in load_results() if r.name == "brake_lemma"]
    report = res.check()
    assert report.ok, [p.name for p in report.parts if not p.ok]
