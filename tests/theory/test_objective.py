"""Executable lemmas for the LAD loss (``ladtheory.objective.lad_loss``), in float64.

Oracles are independent of the runtime: loss values and gradients are recomputed in plain numpy from
the sympy specification (``div.expr`` and its symbolic derivative), never from ``f_log``/``f_prime_log``.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ladtheory import divergences as D
from ladtheory.objective import A_OVER_ETA_CLAMP, LEVELS, Z_CLAMP, effective_weight, lad_loss

BUILTINS = list(D.BUILTIN_NAMES)
# Generators with f'(1) = 0: their brake point is exactly rho = e^{A/eta}. KL (f'(1) = 1) and reverse
# KL (f'(1) = -1) are the paper's generators as written; their per-sample brake is shifted (tested below).
BRAKING = [n for n in BUILTINS if n not in ("kl", "rkl")]


def _spec(name):
    div = D.get(name)
    f = sp.lambdify(D.U, div.expr, "numpy")
    fp = sp.lambdify(D.U, sp.diff(div.expr, D.U), "numpy")
    return f, fp


def oracle(name, logp, logp_old, adv, mask, eta, level):
    """Loss and d loss / d logp from the sympy spec, in numpy, written from the docstring's equations."""
    f, fp = _spec(name)
    diff = (logp - logp_old) * mask  # (B, T)
    a = adv / eta  # (B,)
    if level == "token":
        n = mask.sum()
        u = np.exp(diff - a[:, None])
        loss = (np.exp(a)[:, None] * f(u) * mask).sum() / n
        grad = np.exp(diff) * fp(u) * mask / n
        return loss, grad
    lengths = mask.sum(1)
    log_rho = diff.sum(1) if level == "sequence" else diff.sum(1) / lengths
    u = np.exp(log_rho - a)
    B = logp.shape[0]
    loss = (np.exp(a) * f(u)).sum() / B
    per_token = np.exp(log_rho) * fp(u) / B
    if level == "sequence_mean":
        per_token = per_token / lengths
    return loss, per_token[:, None] * mask


@st.composite
def batches(draw, max_B=5, max_T=6, spread=1.5):
    B = draw(st.integers(1, max_B))
    T = draw(st.integers(1, max_T))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    logp_old = -rng.uniform(0.05, 3.0, (B, T))
    logp = logp_old + rng.uniform(-spread, spread, (B, T)) / T  # keep |z| moderate at every level
    adv = rng.normal(0.0, 1.0, B)
    lengths = rng.integers(1, T + 1, B)
    mask = (np.arange(T)[None, :] < lengths[:, None]).astype(float)
    return logp, logp_old, adv, mask


def _run(name, logp, logp_old, adv, mask, eta, level, dtype=torch.float64):
    lp = torch.tensor(logp, dtype=dtype, requires_grad=True)
    loss, terms = lad_loss(lp, torch.tensor(logp_old, dtype=dtype), torch.tensor(adv, dtype=dtype),
                           torch.tensor(mask, dtype=dtype), divergence=name, eta=eta, level=level)
    (grad,) = torch.autograd.grad(loss, lp)
    return loss, grad, terms


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("name", BUILTINS)
@settings(max_examples=25, deadline=None)
@given(batch=batches(), eta=st.sampled_from([0.25, 0.5, 1.0, 4.0]))
def test_gradient_lemma_autograd_equals_closed_form(name, level, batch, eta):
    """d L / d logp_t = rho f'(rho e^{-A/eta}) times the level's normalisation (docs/paper-notes.md
    section 2)."""
    logp, logp_old, adv, mask = batch
    if name == "tv":  # the subgradient at u = 1 is a convention; keep away from the kink
        adv = adv + 1e-3 * np.sign(adv + 1e-12)
    loss, grad, _ = _run(name, logp, logp_old, adv, mask, eta, level)
    ref_loss, ref_grad = oracle(name, logp, logp_old, adv, mask, eta, level)
    np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grad.numpy(), ref_grad, rtol=1e-9, atol=1e-12)


def test_gradient_oracle_catches_flipped_sign_and_factor_two():
    """The comparison above is strong enough: a flipped sign or a factor 2 in the runtime fails it."""
    rng = np.random.default_rng(0)
    logp_old = -rng.uniform(0.1, 2, (3, 4))
    logp = logp_old + rng.uniform(-0.5, 0.5, (3, 4))
    adv, mask = rng.normal(size=3), np.ones((3, 4))
    for level in LEVELS:
        _, grad, _ = _run("js", logp, logp_old, adv, mask, 0.25, level)
        _, ref = oracle("js", logp, logp_old, adv, mask, 0.25, level)
        assert not np.allclose(-grad.numpy(), ref, rtol=1e-9, atol=1e-12)
        assert not np.allclose(2 * grad.numpy(), ref, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(grad.numpy(), ref, rtol=1e-9, atol=1e-12)


def test_brake_lemma_applies_to_generators_with_zero_slope_at_one():
    assert {n: D.get(n).f_prime_at_1 for n in BUILTINS} == {
        "kl": 1.0, "rkl": -1.0, **{n: 0.0 for n in BRAKING}}


@pytest.mark.parametrize("name", BRAKING)
@settings(max_examples=40, deadline=None)
@given(log_rho=st.floats(-6, 6), a=st.floats(-6, 6), eta=st.sampled_from([0.25, 1.0, 3.0]))
def test_brake_lemma_descent_raises_logp_exactly_below_target(name, log_rho, a, eta):
    """A gradient-descent step raises log pi(y) iff rho < e^{A/eta}, lowers it iff rho > e^{A/eta}."""
    A = a * eta
    z = log_rho - a
    if abs(z) < 1e-9:
        return  # exactly at the target: covered by the vanishing test below
    _, grad, _ = _run(name, np.array([[log_rho]]), np.zeros((1, 1)), np.array([A]), np.ones((1, 1)), eta,
                      "sequence")
    step = -float(grad[0, 0])  # the change of logp under descent
    assert np.sign(step) == np.sign(-z), (name, log_rho, a, step)


@settings(max_examples=40, deadline=None)
@given(log_rho=st.floats(-6, 6), a=st.floats(-6, 6))
def test_brake_of_kl_is_shifted_and_reverse_kl_never_brakes(log_rho, a):
    """KL: w = -rho (z + 1), so the per-sample brake point is rho = e^{A/eta - 1}. Reverse KL:
    w = e^{A/eta} > 0, every sampled response is pushed up (the push is zero-mean only in expectation)."""
    eta = 0.5
    A = a * eta
    w_kl = effective_weight(A, log_rho, "kl", eta)
    z = log_rho - a
    if abs(z + 1) > 1e-9:
        assert np.sign(w_kl) == np.sign(-(z + 1))
    assert effective_weight(A, log_rho, "rkl", eta) == pytest.approx(np.exp(a), rel=1e-12)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("name", BRAKING)
def test_brake_lemma_gradient_vanishes_at_target_ratio(name, level):
    eta = 0.25
    adv = np.array([0.75, -0.5, 0.0])  # A/eta = 3, -2, 0 and their quarters are exact in binary, so z = 0
    T = 4  # exactly (TV's f' jumps at z = 0: a rounding error of 1 ulp would give sign(+-ulp) = +-1)
    mask = np.ones((3, T))
    if level == "token":
        per_token = np.repeat((adv / eta)[:, None], T, 1)
    elif level == "sequence":
        per_token = np.repeat((adv / eta / T)[:, None], T, 1)
    else:
        per_token = np.repeat((adv / eta)[:, None], T, 1)
    logp_old = -np.ones((3, T))
    _, grad, terms = _run(name, logp_old + per_token, logp_old, adv, mask, eta, level)
    np.testing.assert_allclose(grad.numpy(), 0.0, atol=1e-12)
    assert float(terms["past_target_frac"]) <= 1.0


@pytest.mark.parametrize("name", BUILTINS)
@settings(max_examples=30, deadline=None)
@given(A=st.floats(-3, 3), log_rho=st.floats(-3, 3), eta=st.sampled_from([0.25, 1.0]))
def test_effective_weight_is_minus_the_gradient_per_sample(name, A, log_rho, eta):
    """w(A, rho) = -rho f'(rho e^{-A/eta}) equals -dL/dlogp for one sequence at the sequence level."""
    if name == "tv" and abs(log_rho - A / eta) < 1e-9:
        return
    _, grad, _ = _run(name, np.array([[log_rho]]), np.zeros((1, 1)), np.array([A]), np.ones((1, 1)), eta,
                      "sequence")
    w = effective_weight(A, log_rho, name, eta)
    assert w == pytest.approx(-float(grad[0, 0]), rel=1e-10, abs=1e-12)
    _, fp = _spec(name)
    assert w == pytest.approx(-np.exp(log_rho) * fp(np.exp(log_rho - A / eta)), rel=1e-9, abs=1e-12)


def test_effective_weight_closed_forms_at_rho_one():
    A = np.linspace(-2, 2, 9)
    eta = 0.25
    np.testing.assert_allclose(effective_weight(A, 0.0, "js", eta), 0.5 * np.log((1 + np.exp(A / eta)) / 2),
                               rtol=1e-12)
    np.testing.assert_allclose(effective_weight(A, 0.0, "tv", eta), np.sign(A))
    # KL (f'(1) = 1): w = A/eta - 1 (docs/paper-notes.md's "A/eta" holds for the f'(1) = 0 version
    # u log u - u + 1)
    np.testing.assert_allclose(effective_weight(A, 0.0, "kl", eta), A / eta - 1, rtol=1e-12, atol=1e-15)
    kl0 = D.from_expression("u*log(u) - u + 1")
    np.testing.assert_allclose(effective_weight(A, 0.0, kl0, eta), A / eta, rtol=1e-12, atol=1e-15)
    # JS weight is bounded below by -0.5 log 2 (it never pushes a sample down harder than that at rho = 1)
    assert effective_weight(-1e3, 0.0, "js", eta) == pytest.approx(-0.5 * np.log(2), rel=1e-12)
    wt = effective_weight(torch.tensor(A), torch.zeros(9), "js", eta)
    np.testing.assert_allclose(wt.numpy(), effective_weight(A, 0.0, "js", eta), rtol=1e-12)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("name", ["js", "kl", "tv", "neyman"])
@settings(max_examples=15, deadline=None)
@given(
    batch=batches(max_B=4, max_T=5),
    extra=st.integers(1, 7),
    junk=st.sampled_from([0.0, 123.0, np.inf, np.nan]),
)
def test_masking_padded_tokens_change_nothing(name, level, batch, extra, junk):
    """Padding (mask 0), whatever its values, changes neither the loss nor the real tokens' gradients,
    and the loss is invariant to the padding length."""
    logp, logp_old, adv, mask = batch
    loss, grad, terms = _run(name, logp, logp_old, adv, mask, 0.5, level)
    B, T = logp.shape
    pad = np.full((B, extra), junk)
    mask_p = np.concatenate([mask, np.zeros((B, extra))], 1)
    logp_p = np.where(mask_p > 0, np.concatenate([logp, pad], 1), junk)
    old_p = np.where(mask_p > 0, np.concatenate([logp_old, pad], 1), -junk)
    loss_p, grad_p, terms_p = _run(name, logp_p, old_p, adv, mask_p, 0.5, level)
    assert float(loss_p) == pytest.approx(float(loss), rel=1e-12, abs=1e-14)
    np.testing.assert_allclose(grad_p.numpy()[:, :T] * mask, grad.numpy() * mask, rtol=1e-12, atol=1e-14)
    assert np.all(grad_p.numpy()[mask_p == 0] == 0.0)
    for key in terms:
        assert float(terms_p[key]) == pytest.approx(float(terms[key]), rel=1e-9, abs=1e-12), key


def test_levels_agree_on_single_token_responses():
    rng = np.random.default_rng(1)
    logp_old = -rng.uniform(0.1, 2, (6, 1))
    logp = logp_old + rng.normal(0, 0.3, (6, 1))
    adv, mask = rng.normal(size=6), np.ones((6, 1))
    losses = [float(_run("js", logp, logp_old, adv, mask, 0.25, lvl)[0]) for lvl in LEVELS]
    assert losses[0] == pytest.approx(losses[1], rel=1e-12) and losses[1] == pytest.approx(
        losses[2], rel=1e-12
    )


def test_kl_loss_value_is_rho_times_log_ratio_to_target():
    """With f = u log u: e^{a} f(rho e^{-a}) = rho (log rho - a) (FlowRL's KL form per sample)."""
    logp, logp_old = np.array([[-0.3], [-2.0]]), np.array([[-0.5], [-1.0]])
    adv, eta = np.array([0.4, -0.2]), 0.5
    loss, _, _ = _run("kl", logp, logp_old, adv, np.ones((2, 1)), eta, "sequence")
    log_rho = (logp - logp_old)[:, 0]
    expected = np.mean(np.exp(log_rho) * (log_rho - adv / eta))
    assert float(loss) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("name", BUILTINS + ["alpha:-1", "alpha:2"])
@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), a_scale=st.sampled_from([40.0, -40.0, 5.0]))
def test_numerical_safety_no_nan_or_inf(name, level, dtype, seed, a_scale):
    """|logp - logp_old| up to 50 per token and |A/eta| up to 40: loss and gradient stay finite, and the
    step keeps the brake's sign (straight-through clamp of z)."""
    rng = np.random.default_rng(seed)
    B, T, eta = 4, 6, 0.25
    diff = rng.uniform(-50, 50, (B, T))
    diff[0] = 50.0
    diff[1] = -50.0
    logp_old = -rng.uniform(0, 30, (B, T))
    adv = np.array([a_scale, -a_scale, a_scale * rng.uniform(-1, 1), 0.0]) * eta
    mask = np.ones((B, T))
    mask[3, 4:] = 0
    lp = torch.tensor(logp_old + diff, dtype=dtype, requires_grad=True)
    loss, terms = lad_loss(lp, torch.tensor(logp_old, dtype=dtype), torch.tensor(adv, dtype=dtype),
                           torch.tensor(mask, dtype=dtype), divergence=name, eta=eta, level=level)
    (grad,) = torch.autograd.grad(loss, lp)
    assert grad.dtype == dtype
    assert torch.isfinite(loss).item(), (name, level, float(loss))
    assert torch.isfinite(grad).all().item()
    assert all(torch.isfinite(v).item() for v in terms.values())
    if level == "sequence":  # per-sequence sign of the step vs the target (z computed as lad_loss does)
        lp64 = torch.tensor(logp_old + diff, dtype=dtype).double()
        old64 = torch.tensor(logp_old, dtype=dtype).double()
        z = ((lp64 - old64) * torch.tensor(mask)).sum(1) - (
            torch.tensor(adv, dtype=dtype).double() / eta
        ).clamp(-A_OVER_ETA_CLAMP, A_OVER_ETA_CLAMP)
        step = -(grad.double() * torch.tensor(mask)).sum(1)
        for zi, si in zip(z.tolist(), step.tolist()):
            if abs(zi) > 1e-3 and name not in ("kl", "rkl") and si != 0.0:
                assert np.sign(si) == -np.sign(zi)


def test_clamped_fraction_reported():
    lp = torch.tensor([[60.0], [0.1]], dtype=torch.float64, requires_grad=True)
    _, terms = lad_loss(lp, torch.zeros(2, 1, dtype=torch.float64), torch.zeros(2, dtype=torch.float64),
                        torch.ones(2, 1), level="sequence")
    assert float(terms["clamped_frac"]) == pytest.approx(0.5)
    assert Z_CLAMP < 60


def test_bad_arguments_raise():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="eta must be > 0"):
        lad_loss(x, x, torch.zeros(2), x, eta=0.0)
    with pytest.raises(ValueError, match="level"):
        lad_loss(x, x, torch.zeros(2), x, level="tokens")
    with pytest.raises(ValueError, match="advantages"):
        lad_loss(x, x, torch.zeros(3), x)
    with pytest.raises(ValueError, match="shape"):
        lad_loss(x, torch.zeros(2, 4), torch.zeros(2), x)
    with pytest.raises(D.DivergenceError, match="unknown divergence"):
        lad_loss(x, x, torch.zeros(2), x, divergence="nope")


def test_user_divergence_trains_through_lad_loss():
    div = D.from_expression("(u - 1)^4")
    lp = torch.tensor([[-0.2, -0.4]], dtype=torch.float64, requires_grad=True)
    loss, _ = lad_loss(
        lp,
        torch.tensor([[-0.5, -0.5]], dtype=torch.float64),
        torch.tensor([0.1], dtype=torch.float64),
        torch.ones(1, 2),
        divergence=div,
        eta=1.0,
        level="sequence",
    )
    (g,) = torch.autograd.grad(loss, lp)
    log_rho, a = 0.4, 0.1
    u = np.exp(log_rho - a)
    assert float(g[0, 0]) == pytest.approx(np.exp(log_rho) * 4 * (u - 1) ** 3, rel=1e-10)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("name", STRICT := [n for n in BUILTINS if n != "tv"])
def test_gradient_agrees_with_finite_differences_of_the_loss_value(name, level):
    """The returned value and its gradient are one function: torch.autograd.gradcheck (central finite
    differences in float64) confirms d value / d logp everywhere away from TV's kink."""
    rng = np.random.default_rng(3)
    logp_old = torch.tensor(-rng.uniform(0.1, 2, (3, 4)), dtype=torch.float64)
    logp = (logp_old + torch.tensor(rng.uniform(-0.6, 0.6, (3, 4)))).requires_grad_()
    adv = torch.tensor(rng.normal(size=3), dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.float64)

    def fn(lp):
        return lad_loss(lp, logp_old, adv, mask, divergence=name, eta=0.5, level=level)[0]

    assert torch.autograd.gradcheck(fn, (logp,), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_gradient_keeps_relative_precision_far_below_the_target():
    """u = e^{-19} (inside the clamp): the gradient rho f'(u) is computed from the stable f'(e^z) (relative
    error ~1e-15),
    not by differentiating f(e^z) through expm1 (which loses ~1e-8 relative there)."""
    A, eta, log_rho = 5.0, 0.25, 1.0  # z = 1 - 20 = -19
    lp = torch.tensor([[log_rho]], dtype=torch.float64, requires_grad=True)
    for name in ["pearson", "tv", "hellinger", "jeffreys"]:
        loss, _ = lad_loss(lp, torch.zeros(1, 1, dtype=torch.float64), torch.tensor([A], dtype=torch.float64),
                           torch.ones(1, 1), divergence=name, eta=eta, level="sequence")
        (g,) = torch.autograd.grad(loss, lp)
        _, fp = _spec(name)
        import mpmath

        exact = float(mpmath.e ** log_rho * sp.lambdify(D.U, sp.diff(D.get(name).expr, D.U), "mpmath")(
            mpmath.e ** mpmath.mpf(-19)))
        assert float(g) == pytest.approx(exact, rel=1e-12), name
