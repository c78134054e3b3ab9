"""The control arm ``grpo_tokenmean``: GRPO's clipped surrogate aggregated as LAD's token level (a global
token mean), so that ``lad`` vs ``grpo_tokenmean`` differs only in the objective. Checked by hand at
ratio 1, against ``dapo`` without clip-higher, and against ``grpo`` (which it must differ from)."""

from __future__ import annotations

from dataclasses import replace

import torch

from ladtheory.objective import effective_weight
from ladtrain import baselines, losses
from ladtrain.config import TrainConfig
from tests.train.test_losses_registry import _inputs


def grad(spec, x, hp):
    return torch.autograd.grad(losses.get(spec)(x, hp)[0], x.logp)[0]


def test_at_ratio_one_every_token_weighs_one_over_the_batch_tokens_as_in_lad():
    x, hp = _inputs(), TrainConfig(eta=0.5)
    n = x.mask.sum()  # 30 - 2 - 4 = 24 tokens, rows of 3, 5 and 1 tokens
    g = grad("grpo_tokenmean", x, hp)
    torch.testing.assert_close(g, -(x.advantages[:, None] * x.mask) / n, rtol=1e-12, atol=1e-15)
    # LAD(js) at token level: the same 1/N per token, with A replaced by LAD's weight w(A, 1)
    w = effective_weight(x.advantages, torch.zeros_like(x.advantages), "js", 0.5)
    torch.testing.assert_close(grad("lad:js", x, hp), -(w[:, None] * x.mask) / n, rtol=1e-10, atol=1e-12)
    # GRPO weighs a token by 1 / (B |y_i|): the 1-token row's token weighs 5x a 5-token row's
    g_grpo = grad("grpo", x, hp)
    lengths = x.mask.sum(1)
    torch.testing.assert_close(
        g_grpo, -(x.advantages / lengths)[:, None] * x.mask / 6, rtol=1e-12, atol=1e-15
    )
    assert (g - g_grpo).abs().max() > 1e-3


def test_off_policy_it_is_dapo_without_clip_higher():
    x = _inputs(spread=0.3)
    hp = TrainConfig(clip_eps=0.2)
    args = (x.logp, x.logp_old, x.advantages, x.mask)
    got, terms = losses.get("grpo_tokenmean")(x, hp)
    want, _ = baselines.grpo_loss(*args, clip_eps=0.2, clip_eps_high=0.2, norm="dapo")
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    dapo, _ = losses.get("dapo")(x, hp)  # clip-higher 0.28 changes it once ratios pass 1.2
    assert float(terms["clip_frac_high"]) > 0 and abs(float((got - dapo).detach())) > 1e-6
    assert losses.get("grpo_tokenmean").unit(hp) == "token" and losses.get("grpo").unit(hp) == "sequence"
    # an explicit --clip-eps-high is honoured
    high, _ = losses.get("grpo_tokenmean")(x, replace(hp, clip_eps_high=0.28))
    torch.testing.assert_close(high, dapo, rtol=0, atol=0)
