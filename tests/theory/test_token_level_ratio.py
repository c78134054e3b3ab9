"""Token-level ratios (proofs/token_level_ratio.py): at rho = 1 the token and sequence levels give the same
gradient up to B/N; off it, each token is braked at rho_t = e^{A/eta}, so the implied sequence ratio is
e^{|y| A/eta}; the expected minimiser of a fully expressive policy agrees with pi* iff A is fixed by y_1."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ladtheory.objective import lad_loss
from ladtheory.proof import PROOFS_DIR

GENERATORS = ["js", "hellinger", "pearson", "kl", "rkl", "tv"]


def _proof_module():
    spec = importlib.util.spec_from_file_location("token_level_ratio", PROOFS_DIR / "token_level_ratio.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), name=st.sampled_from(GENERATORS), eta=st.sampled_from([0.25, 1.0]))
def test_token_level_ratio_gradients_agree_at_rho_1_up_to_b_over_n(seed, name, eta):
    rng = np.random.default_rng(seed)
    b, t = int(rng.integers(1, 6)), int(rng.integers(1, 10))
    lengths = rng.integers(1, t + 1, b)
    mask = (np.arange(t)[None, :] < lengths[:, None]).astype(float)
    logp_old = -rng.uniform(0.05, 4.0, (b, t))
    adv = rng.normal(0, 1.5, b)
    mod = _proof_module()
    g_tok = mod._grad("token", name, logp_old, logp_old, adv, mask, eta)
    g_seq = mod._grad("sequence", name, logp_old, logp_old, adv, mask, eta)
    np.testing.assert_allclose(g_tok, b / mask.sum() * g_seq, rtol=1e-12, atol=1e-14)


@settings(max_examples=12, deadline=None)
@given(
    a=st.floats(-1.0, 1.0).filter(lambda v: abs(v) > 0.05),
    length=st.integers(2, 6),
    name=st.sampled_from(["js", "hellinger", "pearson"]),
)
def test_token_level_ratio_per_sample_target_is_length_times_a(a, length, name):
    mod = _proof_module()
    d_tok = mod._per_sample_minimiser("token", name, a, length)
    np.testing.assert_allclose(d_tok, a, atol=1e-6)  # every token at its own target
    assert d_tok.sum() == pytest.approx(length * a, abs=1e-5)  # sequence ratio e^{|y| a}
    d_seq = mod._per_sample_minimiser("sequence", name, a, length)
    assert d_seq.sum() == pytest.approx(a, abs=1e-6)  # sequence level: e^{a}


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), name=st.sampled_from(["js", "kl", "hellinger"]))
def test_token_level_ratio_tree_minimiser_agrees_iff_a_fixed_by_first_token(seed, name):
    mod = _proof_module()
    rng = np.random.default_rng(seed)
    eta = 0.5
    first = np.repeat(rng.normal(0, 1, 2), 2)  # A depends on y_1 only
    star = np.exp(first / eta) / np.exp(first / eta).sum()
    np.testing.assert_allclose(mod._tree_minimiser("token", name, first, eta), star, atol=1e-6)
    # A varies after the first token 1, both first tokens carrying mass (|A_1 - A_2| <= 1: each subtree
    # holds at least 1 / (1 + e^2) of the target), so a disagreement inside subtree 1 is visible
    varying = np.repeat(rng.uniform(-0.5, 0.5, 2), 2) + np.array([0.8, -0.8, 0.0, 0.0])
    star_v = np.exp(varying / eta) / np.exp(varying / eta).sum()
    assert np.abs(mod._tree_minimiser("token", name, varying, eta) - star_v).max() > 1e-3
    np.testing.assert_allclose(mod._tree_minimiser("sequence", name, varying, eta), star_v, atol=1e-6)


def test_token_level_ratio_long_response_target_is_astronomical():
    """The docstring's example: 200 tokens at A/eta = 4 brake token by token at log rho = 800."""
    eta, a, length = 0.25, 4.0, 200
    logp_old = torch.full((1, length), -2.0, dtype=torch.float64)
    mask = torch.ones((1, length), dtype=torch.bool)
    at_token_target = (logp_old + a).requires_grad_()
    loss, _ = lad_loss(
        at_token_target,
        logp_old,
        torch.tensor([a * eta], dtype=torch.float64),
        mask,
        divergence="js",
        eta=eta,
        level="token",
    )
    (g,) = torch.autograd.grad(loss, at_token_target)
    assert float(g.abs().max()) < 1e-12  # stationary
    assert float((at_token_target - logp_old).sum()) == pytest.approx(800.0)
