"""The LAD gradient formula, checked against the training loss's autograd and the exact expectation."""

from __future__ import annotations

import numpy as np
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ladtheory import divergences, objective, reductions


def _sympy_rho_fprime(name: str):
    fp = sp.lambdify(divergences.U, divergences.get(name).f_prime_expr, "numpy")
    return lambda log_rho, a: np.exp(log_rho) * fp(np.exp(log_rho - a))


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(list(divergences.BUILTIN_NAMES)),
    st.sampled_from(["sequence", "token", "sequence_mean"]),
    st.integers(1, 5),
    st.integers(1, 6),
    st.integers(0, 2**31 - 1),
    st.sampled_from([0.25, 0.5, 2.0]),
)
def test_gradient_formula_matches_lad_loss_autograd(name, level, B, T, seed, eta):
    rng = np.random.default_rng(seed)
    logp_old = torch.tensor(rng.normal(-1.0, 0.3, (B, T)), dtype=torch.float64)
    logp = (logp_old + torch.tensor(rng.normal(0.0, 0.3, (B, T)), dtype=torch.float64)).requires_grad_(True)
    adv = torch.tensor(rng.normal(0.0, 1.0, B), dtype=torch.float64)
    mask = torch.tensor(rng.random((B, T)) < 0.8, dtype=torch.float64)
    mask[:, 0] = 1.0
    loss, _ = objective.lad_loss(logp, logp_old, adv, mask, divergence=name, eta=eta, level=level)
    (grad,) = torch.autograd.grad(loss, logp)
    m = mask.numpy()
    diff = (logp - logp_old).detach().numpy() * m
    a = adv.numpy() / eta
    weight = _sympy_rho_fprime(name)
    if level == "token":
        expected = weight(diff, a[:, None]) / m.sum() * m
    else:
        n_tok = m.sum(1)
        log_rho = diff.sum(1) / (n_tok if level == "sequence_mean" else 1.0)
        scale = 1.0 / (B * n_tok) if level == "sequence_mean" else np.full(B, 1.0 / B)
        expected = (weight(log_rho, a) * scale)[:, None] * m
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-10, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(["kl", "rkl", "js", "hellinger", "jeffreys", "pearson", "neyman", "triangular", "tv"]),
       st.integers(2, 32), st.integers(0, 2**31 - 1))
def test_gradient_formula_exact_expectation_for_a_softmax_policy(name, n, seed):
    """grad_theta sum_y pi_old e^{A/eta} f(rho e^{-A/eta}) = E_{pi_theta}[f'(u) grad log pi_theta]
    (softmax)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, generator=g, dtype=torch.float64).requires_grad_(True)
    log_old = torch.log_softmax(torch.randn(n, generator=g, dtype=torch.float64), -1)
    A = torch.randn(n, generator=g, dtype=torch.float64)
    eta = 0.7
    log_pi = torch.log_softmax(logits, -1)
    (auto,) = torch.autograd.grad(reductions.lad_exact_loss(log_pi, log_old, A, eta, name), logits)
    pi = log_pi.detach().exp()
    u = torch.exp(log_pi.detach() - log_old - A / eta)
    fp = sp.lambdify(divergences.U, divergences.get(name).f_prime_expr, "numpy")  # the sympy spec's f'
    fprime = torch.as_tensor(fp(u.numpy()) * np.ones(n), dtype=torch.float64)
    score = torch.eye(n, dtype=torch.float64) - pi  # row y: grad_logits log pi(y)
    formula = (pi * fprime) @ score
    torch.testing.assert_close(auto, formula, rtol=1e-9, atol=1e-12)
