"""Oracle tests for the baseline losses: numbers worked out by hand (shown in comments) and a plain-Python
re-implementation, all in float64 with tolerances that catch a sign or a factor-2 error."""

from __future__ import annotations

import math
import random

import pytest
import torch

from ladtrain.baselines import AGGREGATIONS, BaselineError, flowrl_loss, grpo_loss, gspo_loss

torch.set_num_threads(1)
F64 = torch.float64
TOL = dict(rtol=1e-12, atol=1e-12)


def _close(actual, expected):
    torch.testing.assert_close(
        torch.as_tensor(actual, dtype=F64), torch.as_tensor(expected, dtype=F64), **TOL
    )


def grpo_case():
    """Two sequences, clip eps 0.2 (range [0.8, 1.2]).

    seq 0: A=+2, mask [1,1,0], ratios [1.1, 1.5, pad]
      tok0: min(2.2, 2.2) = 2.2 -> l=-2.2, dl/dlogp = -r A = -2.2
      tok1: min(3.0, 1.2*2 = 2.4) = 2.4 -> l=-2.4, clipped (A>0, r>1.2): gradient 0
    seq 1: A=-1, mask [1,1,1], ratios [0.5, 1.5, 1.0]
      tok0: min(-0.5, -0.8) = -0.8 -> l=0.8, clipped (A<0, r<0.8): gradient 0
      tok1: min(-1.5, -1.2) = -1.5 -> l=1.5, NOT clipped (A<0 and r>1): dl/dlogp = -r A = 1.5
      tok2: r=1 -> l=1.0, dl/dlogp = 1.0
    """
    logp_old = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -1.5, -2.5]], dtype=F64)
    ratios = torch.tensor([[1.1, 1.5, 7.0], [0.5, 1.5, 1.0]], dtype=F64)
    logp = (logp_old + ratios.log()).requires_grad_(True)
    adv = torch.tensor([2.0, -1.0], dtype=F64)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=F64)
    return logp, logp_old, adv, mask


@pytest.mark.parametrize(
    "norm, expected_loss, expected_grad",
    [
        # grpo: seq means (-2.2-2.4)/2 = -2.3 and (0.8+1.5+1.0)/3 = 1.1 -> (-2.3+1.1)/2 = -0.6;
        # grad = dl/dlogp / (B |y_i|): -2.2/4, 0, 0 | 0, 1.5/6, 1.0/6
        ("grpo", -0.6, [[-0.55, 0.0, 0.0], [0.0, 0.25, 1.0 / 6.0]]),
        # dr_grpo: token sum -4.6 + 3.3 = -1.3 over B*T = 6; grad = dl/dlogp / 6
        ("dr_grpo", -1.3 / 6.0, [[-2.2 / 6, 0.0, 0.0], [0.0, 1.5 / 6, 1.0 / 6]]),
        # dapo: token sum -1.3 over 5 tokens; grad = dl/dlogp / 5
        ("dapo", -1.3 / 5.0, [[-0.44, 0.0, 0.0], [0.0, 0.3, 0.2]]),
    ],
)
def test_grpo_clipped_surrogate_matches_hand_computation(norm, expected_loss, expected_grad):
    logp, logp_old, adv, mask = grpo_case()
    loss, terms = grpo_loss(logp, logp_old, adv, mask, clip_eps=0.2, norm=norm)
    loss.backward()
    _close(loss, expected_loss)
    _close(logp.grad, expected_grad)
    # one A>0 token clipped above (seq0 tok1), one A<0 token clipped below (seq1 tok0), of 5 tokens
    _close(terms["clip_frac_high"], 0.2)
    _close(terms["clip_frac_low"], 0.2)
    _close(terms["clip_frac"], 0.4)
    _close(terms["tokens"], 5.0)
    kl = sum(r - 1 - math.log(r) for r in (1.1, 1.5, 0.5, 1.5, 1.0)) / 5
    _close(terms["approx_kl"], kl)
    assert all(not t.requires_grad for t in terms.values())


def test_dr_grpo_divides_by_the_constant_budget_not_the_lengths():
    logp, logp_old, adv, mask = grpo_case()
    loss, _ = grpo_loss(logp, logp_old, adv, mask, norm="dr_grpo", max_len=10)
    _close(loss, -1.3 / 20.0)  # B * L = 2 * 10


def test_dapo_clip_higher_lets_positive_tokens_grow_further():
    # eps_high = 0.6: seq0 tok1 (r=1.5, A=+2) is now inside [0.8, 1.6] -> l = -3.0, grad -3.0/5.
    # seq1 tok1 (r=1.5, A=-1) was never clipped; seq1 tok0 (r=0.5 < 0.8) stays clipped below.
    logp, logp_old, adv, mask = grpo_case()
    loss, terms = grpo_loss(logp, logp_old, adv, mask, clip_eps=0.2, clip_eps_high=0.6, norm="dapo")
    loss.backward()
    _close(loss, (-2.2 - 3.0 + 0.8 + 1.5 + 1.0) / 5.0)
    _close(logp.grad, [[-0.44, -0.6, 0.0], [0.0, 0.3, 0.2]])
    _close(terms["clip_frac_high"], 0.0)
    _close(terms["clip_frac_low"], 0.2)


def test_grpo_clip_gates_the_gradient_on_the_correct_side_only():
    # A single token swept across r: gradient is -r A except where the trust region is left in the
    # direction the advantage pushes (A>0: r>1+eps; A<0: r<1-eps).
    eps = 0.2
    for a in (1.0, -1.0):
        for r in (0.5, 0.9, 1.0, 1.1, 1.5):
            logp = torch.tensor([[math.log(r)]], dtype=F64, requires_grad=True)
            loss, _ = grpo_loss(logp, torch.zeros(1, 1, dtype=F64), torch.tensor([a], dtype=F64),
                                torch.ones(1, 1, dtype=F64), clip_eps=eps)
            loss.backward()
            gated = (a > 0 and r > 1 + eps) or (a < 0 and r < 1 - eps)
            _close(logp.grad[0, 0], 0.0 if gated else -r * a)


def test_grpo_ignores_padding_values():
    logp, logp_old, adv, mask = grpo_case()
    ref, _ = grpo_loss(logp, logp_old, adv, mask)
    logp2 = logp.detach().clone()
    logp2[0, 2] = 123.0
    logp_old2 = logp_old.clone()
    logp_old2[0, 2] = -77.0
    other, _ = grpo_loss(logp2, logp_old2, adv, mask)
    _close(other, ref)


def _plain_grpo(logp, logp_old, adv, mask, eps_lo, eps_hi, norm, L):
    """Independent plain-Python version (lists, math module) of the three aggregations."""
    per_seq, total, ntok = [], 0.0, 0
    for lp, lo, a, m in zip(logp, logp_old, adv, mask):
        s, n = 0.0, 0
        for x, y, k in zip(lp, lo, m):
            if k:
                r = math.exp(x - y)
                s += -min(r * a, min(max(r, 1 - eps_lo), 1 + eps_hi) * a)
                n += 1
        per_seq.append(s / max(n, 1))
        total += s
        ntok += n
    if norm == "grpo":
        return sum(per_seq) / len(per_seq)
    if norm == "dr_grpo":
        return total / (len(logp) * L)
    return total / ntok


@pytest.mark.parametrize("norm", sorted(AGGREGATIONS))
def test_grpo_agrees_with_plain_python_on_random_batches(norm):
    rng = random.Random(7)
    for _ in range(5):
        B, T = 4, 6
        logp = [[rng.uniform(-3, 0) for _ in range(T)] for _ in range(B)]
        logp_old = [[x + rng.uniform(-0.4, 0.4) for x in row] for row in logp]
        adv = [rng.uniform(-2, 2) for _ in range(B)]
        mask = [[1] * rng.randint(1, T) for _ in range(B)]
        mask = [row + [0] * (T - len(row)) for row in mask]
        expected = _plain_grpo(logp, logp_old, adv, mask, 0.2, 0.28, norm, T)
        loss, _ = grpo_loss(torch.tensor(logp, dtype=F64), torch.tensor(logp_old, dtype=F64),
                            torch.tensor(adv, dtype=F64), torch.tensor(mask, dtype=F64),
                            clip_eps=0.2, clip_eps_high=0.28, norm=norm)
        _close(loss, expected)


def test_grpo_rejects_bad_arguments():
    logp, logp_old, adv, mask = grpo_case()
    with pytest.raises(BaselineError, match="unknown norm"):
        grpo_loss(logp, logp_old, adv, mask, norm="bnpo2")
    with pytest.raises(BaselineError, match="advantages"):
        grpo_loss(logp, logp_old, adv[:1], mask)
    with pytest.raises(BaselineError, match="mask"):
        grpo_loss(logp, logp_old, adv, mask[:, :2])


def test_gspo_uses_the_length_normalised_sequence_ratio():
    """seq0: mask [1,1], log-ratios [0.1, 0.3] -> s = e^0.2 = 1.2214 > 1.2, A=+1: clipped, l = -1.2, grad 0.
    seq1: mask [1,0], log-ratio -0.1 -> s = e^-0.1, A=-2: unclipped, l = 2 e^-0.1,
    dL/dlogp = -(1/B) s A / |y| = e^-0.1."""
    logp_old = torch.zeros(2, 2, dtype=F64)
    logp = torch.tensor([[0.1, 0.3], [-0.1, 5.0]], dtype=F64, requires_grad=True)
    adv = torch.tensor([1.0, -2.0], dtype=F64)
    mask = torch.tensor([[1, 1], [1, 0]], dtype=F64)
    loss, terms = gspo_loss(logp, logp_old, adv, mask, clip_eps=0.2, clip_eps_high=0.2)
    loss.backward()
    _close(loss, (-1.2 + 2 * math.exp(-0.1)) / 2)
    _close(logp.grad, [[0.0, 0.0], [math.exp(-0.1), 0.0]])
    _close(terms["clip_frac"], 0.5)
    # with a wider clip seq0 is unclipped: grad per token -(1/2) e^0.2 * 1 / 2
    logp.grad = None
    loss, _ = gspo_loss(logp, logp_old, adv, mask, clip_eps=0.3, clip_eps_high=0.3)
    loss.backward()
    _close(loss, (-math.exp(0.2) + 2 * math.exp(-0.1)) / 2)
    _close(logp.grad[0], [-math.exp(0.2) / 4, -math.exp(0.2) / 4])


def flowrl_case():
    """beta = 2 (so a missing or doubled beta shows).
    seq0: mask [1,1], logp [-1,-3] (avg -2), logp_ref [-2,-2] (avg -2), logp_old = logp (w = 1), A = 0.5,
          log Z = 1.5: delta = 1.5 - 2 - 2*0.5 + 2 = 0.5
    seq1: mask [1,0], logp [-0.5], logp_ref [-1], logp_old = logp - ln 3 (w = 3), A = -1, log Z = -0.5:
          delta = -0.5 - 0.5 + 2 + 1 = 2.0
    L = (1*0.25 + 3*4)/2 = 6.125
    dL/dlogp_t = 2 w delta / (B |y|): seq0 2*1*0.5/4 = 0.25 per token, seq1 2*3*2/2 = 6
    dL/dlogZ = 2 w delta / B: 0.5, 6
    """
    logp = torch.tensor([[-1.0, -3.0], [-0.5, 9.0]], dtype=F64, requires_grad=True)
    logp_ref = torch.tensor([[-2.0, -2.0], [-1.0, -4.0]], dtype=F64, requires_grad=True)
    logp_old = logp.detach() - torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]], dtype=F64)
    adv = torch.tensor([0.5, -1.0], dtype=F64)
    mask = torch.tensor([[1, 1], [1, 0]], dtype=F64)
    log_z = torch.tensor([1.5, -0.5], dtype=F64, requires_grad=True)
    return logp, logp_ref, logp_old, adv, mask, log_z


def test_flowrl_trajectory_balance_matches_hand_computation():
    logp, logp_ref, logp_old, adv, mask, log_z = flowrl_case()
    loss, terms = flowrl_loss(logp, logp_ref, logp_old, adv, mask, log_z, beta=2.0)
    loss.backward()
    _close(loss, 6.125)
    # the importance weight is detached: a live w would add delta^2 * w / B = 6 to seq1's token
    _close(logp.grad, [[0.25, 0.25], [6.0, 0.0]])
    _close(log_z.grad, [0.5, 6.0])
    assert logp_ref.grad is None  # the reference is frozen
    _close(terms["tb_loss"], (0.25 + 4.0) / 2)
    _close(terms["weight_mean"], 2.0)
    _close(terms["delta_mean"], 1.25)
    _close(terms["weight_clip_frac"], 0.0)


def test_flowrl_default_beta_is_15():
    logp, logp_ref, logp_old, adv, mask, log_z = flowrl_case()
    loss, _ = flowrl_loss(logp, logp_ref, logp_old, adv, mask, log_z)
    # delta0 = 1.5 - 2 - 7.5 + 2 = -6, delta1 = -0.5 - 0.5 + 15 + 1 = 15
    _close(loss, (36.0 + 3 * 225.0) / 2)


def test_flowrl_importance_weight_clip_variants():
    logp, logp_ref, logp_old, adv, mask, log_z = flowrl_case()
    loss, terms = flowrl_loss(logp, logp_ref, logp_old, adv, mask, log_z, beta=2.0, weight_max=2.0)
    _close(loss, (0.25 + 2 * 4.0) / 2)  # w1 = 3 clipped to 2
    _close(terms["weight_clip_frac"], 0.5)
    loss, _ = flowrl_loss(logp, logp_ref, logp_old, adv, mask, log_z, beta=2.0, weight_max=None)
    _close(loss, 6.125)  # paper code: unclipped
    loss, _ = flowrl_loss(logp, logp_ref, logp_old, adv, mask, log_z, beta=2.0, weight_min=1.5)
    _close(loss, (1.5 * 0.25 + 3 * 4.0) / 2)  # w0 = 1 raised to 1.5


def test_flowrl_weight_clip_has_no_overflow_for_huge_sequence_ratios():
    logp = torch.full((1, 4), 0.0, dtype=F64)
    logp_old = torch.full((1, 4), -300.0, dtype=F64)  # sum log-ratio 1200: exp overflows
    loss, terms = flowrl_loss(
        logp,
        logp_old,
        logp_old,
        torch.zeros(1, dtype=F64),
        torch.ones(1, 4, dtype=F64),
        torch.zeros(1, dtype=F64),
        beta=1.0,
    )
    _close(terms["weight_mean"], 10.0)
    _close(loss, 10.0 * 300.0**2)


def test_flowrl_rejects_bad_arguments():
    logp, logp_ref, logp_old, adv, mask, log_z = flowrl_case()
    with pytest.raises(BaselineError, match="log_z"):
        flowrl_loss(logp, logp_ref, logp_old, adv, mask, log_z[:1])
    with pytest.raises(BaselineError, match="beta"):
        flowrl_loss(logp, logp_ref, logp_old, adv, mask, log_z, beta=0.0)
    with pytest.raises(BaselineError, match="weight_min"):
        flowrl_loss(logp, logp_ref, logp_old, adv, mask, log_z, weight_min=2.0, weight_max=1.0)


def test_gspo_and_flowrl_agree_with_plain_python_on_random_batches():
    rng = random.Random(11)
    for _ in range(5):
        B, T = 4, 5
        logp = [[rng.uniform(-3, 0) for _ in range(T)] for _ in range(B)]
        logp_old = [[x + rng.uniform(-0.3, 0.3) for x in row] for row in logp]
        logp_ref = [[x + rng.uniform(-1, 1) for x in row] for row in logp]
        adv = [rng.uniform(-2, 2) for _ in range(B)]
        lz = [rng.uniform(-1, 1) for _ in range(B)]
        lengths = [rng.randint(1, T) for _ in range(B)]
        mask = [[1] * n + [0] * (T - n) for n in lengths]
        gspo_ref, flow_ref = 0.0, 0.0
        for i in range(B):
            n = lengths[i]
            lr = sum(logp[i][t] - logp_old[i][t] for t in range(n))
            s = math.exp(lr / n)
            gspo_ref += -min(s * adv[i], min(max(s, 1 - 0.01), 1 + 0.02) * adv[i]) / B
            delta = lz[i] + sum(logp[i][:n]) / n - 3.0 * adv[i] - sum(logp_ref[i][:n]) / n
            flow_ref += min(math.exp(lr), 1.05) * delta**2 / B
        t = dict(dtype=F64)
        args = (
            torch.tensor(logp, **t),
            torch.tensor(logp_old, **t),
            torch.tensor(adv, **t),
            torch.tensor(mask, **t),
        )
        loss, _ = gspo_loss(*args, clip_eps=0.01, clip_eps_high=0.02)
        _close(loss, gspo_ref)
        loss, _ = flowrl_loss(
            torch.tensor(logp, **t),
            torch.tensor(logp_ref, **t),
            torch.tensor(logp_old, **t),
            torch.tensor(adv, **t),
            torch.tensor(mask, **t),
            torch.tensor(lz, **t),
            beta=3.0,
            weight_max=1.05,
        )
        _close(loss, flow_ref)


# ---------------------------------------------------------------------------------------------------
# Expectation weights and the unclipped surrogate (the bandit's uses of these losses, ladtheory/bandit.py)


def test_grpo_expectation_weights_match_hand_computation():
    logp, logp_old, adv, mask = grpo_case()
    w = torch.tensor([0.25, 0.75], dtype=F64)
    loss, _ = grpo_loss(logp, logp_old, adv, mask, clip_eps=0.2, norm="grpo", weights=w)
    loss.backward()
    # seq means -2.3 and 1.1 (see grpo_case): 0.25 * -2.3 + 0.75 * 1.1 = 0.25 (the mean would be -0.6)
    _close(loss, 0.25)
    # grad = w_i dl/dlogp / |y_i|: -2.2 * 0.25 / 2 | 1.5 * 0.75 / 3, 1.0 * 0.75 / 3
    _close(logp.grad, [[-0.275, 0.0, 0.0], [0.0, 0.375, 0.25]])


def test_grpo_uniform_weights_equal_the_default_mean():
    logp, logp_old, adv, mask = grpo_case()
    plain, _ = grpo_loss(logp, logp_old, adv, mask, norm="grpo")
    weighted, _ = grpo_loss(logp, logp_old, adv, mask, norm="grpo", weights=torch.full((2,), 0.5, dtype=F64))
    _close(weighted, plain)


def test_grpo_without_clip_is_the_plain_surrogate():
    logp, logp_old, adv, mask = grpo_case()
    loss, terms = grpo_loss(logp, logp_old, adv, mask, clip_eps=None, norm="grpo")
    loss.backward()
    # l = -r A: seq0 -2.2, -3.0 (mean -2.6); seq1 0.5, 1.5, 1.0 (mean 1.0) -> (-2.6 + 1.0) / 2 = -0.8
    _close(loss, -0.8)
    _close(logp.grad, [[-0.55, -0.75, 0.0], [0.5 / 6, 1.5 / 6, 1.0 / 6]])  # nothing gated
    _close(terms["clip_frac"], 0.0)


def test_weights_and_no_clip_reject_bad_arguments():
    logp, logp_old, adv, mask = grpo_case()
    for bad in (torch.tensor([0.5, 0.6], dtype=F64), torch.tensor([1.5, -0.5], dtype=F64),
                torch.tensor([1.0], dtype=F64)):
        with pytest.raises(BaselineError, match="weights"):
            grpo_loss(logp, logp_old, adv, mask, weights=bad)
    with pytest.raises(BaselineError, match="norm 'grpo'"):
        grpo_loss(logp, logp_old, adv, mask, norm="dapo", weights=torch.full((2,), 0.5, dtype=F64))
    with pytest.raises(BaselineError, match="no clip"):
        grpo_loss(logp, logp_old, adv, mask, clip_eps=None, clip_eps_high=0.3)
    fl = flowrl_case()
    with pytest.raises(BaselineError, match="weights"):
        flowrl_loss(*fl, weights=torch.tensor([0.9, 0.9], dtype=F64))


def test_flowrl_expectation_weights_match_hand_computation():
    logp, logp_ref, logp_old, adv, mask, log_z = flowrl_case()
    w = torch.tensor([0.25, 0.75], dtype=F64)
    loss, _ = flowrl_loss(logp, logp_ref, logp_old, adv, mask, log_z, beta=2.0, weights=w)
    loss.backward()
    # importance 1 and 3, deltas 0.5 and 2: 0.25 * 0.25 + 0.75 * 3 * 4 = 9.0625 (the mean: 6.125)
    _close(loss, 9.0625)
    _close(log_z.grad, [2 * 0.25 * 0.5, 2 * 0.75 * 3 * 2.0])


def test_bandit_wrappers_are_these_losses():
    from ladtheory import bandit

    gen = torch.Generator().manual_seed(3)
    theta = torch.randn(6, generator=gen, dtype=F64, requires_grad=True)
    logp = torch.log_softmax(theta, 0)
    w = logp.detach().exp()
    adv = torch.randn(6, generator=gen, dtype=F64)
    old = logp.detach() + 0.3 * torch.randn(6, generator=gen, dtype=F64)  # ratios off 1: the clip acts
    loss, _ = bandit.grpo_surrogate(logp, old, adv, w, clip_eps=0.2)
    r = torch.exp(logp - old)
    _close(loss, -(w * torch.minimum(r * adv, r.clamp(0.8, 1.2) * adv)).sum())
    log_z = torch.tensor(0.4, dtype=F64, requires_grad=True)
    ref = torch.full((6,), -math.log(6), dtype=F64)
    tb, _ = bandit.trajectory_balance(logp, ref, log_z, adv, w, beta=2.0, clip_eps=0.2)
    _close(tb, (w * (log_z + logp - 2.0 * adv - ref) ** 2).sum())
