"""Gradient accumulation gives the gradient of the whole batch (a batch of 8 in one piece equals 4 pieces of
2).

A fixed rollout on the tiny model (unequal completion lengths, off-policy ``logp_old``) is pushed through
:func:`ladtrain.step.backward` with 1 and with k micro-batches; the accumulated ``.grad`` must
match. The control shows the test can fail: averaging the micro-batch means without the unit weights
``c_p`` (the naive accumulation) gives a visibly different gradient when token counts differ."""

from __future__ import annotations

import copy

import pytest
import torch

from ladtrain import distributed, losses, models
from ladtrain.config import ConfigError
from ladtrain.rollout import Rollout, token_logprobs
from ladtrain.step import Targets, backward, micro_batches

G, PROMPTS, P, T = 3, 4, 5, 7


class HP:
    eta, level, clip_eps, clip_eps_high = 0.25, "token", 0.2, None


def fixed_batch(seed: int = 0):
    """A tiny model and a rollout of PROMPTS x G rows with lengths 1..T, logp_old off-policy."""
    tok = models.build_tokenizer()
    model = models.build_tiny_model(
        tok, models.TinySpec(hidden=32, layers=2, heads=2, intermediate=64), seed=seed
    )
    g = torch.Generator().manual_seed(seed)
    B = PROMPTS * G
    prompt_ids = torch.randint(3, len(tok), (PROMPTS, P), generator=g).repeat_interleave(G, 0)  # (B, P)
    completion_ids = torch.randint(3, len(tok), (B, T), generator=g)  # (B, T)
    # (B,): unequal token counts both between halves (24 vs 18) and between prompts 0,2 and 1,3 (32 vs 10)
    lengths = torch.tensor([7, 6, 7, 1, 2, 1, 4, 5, 3, 2, 1, 3])
    mask = (torch.arange(T)[None] < lengths[:, None]).long()  # (B, T)
    rollout = Rollout(prompt_ids, torch.ones_like(prompt_ids), completion_ids * mask, mask, [""] * B, G)
    with torch.no_grad():
        logp_old = token_logprobs(model, rollout) + 0.2 * torch.randn(B, T, generator=g) * mask  # (B, T)
    advantages = torch.randn(B, generator=g)  # (B,)
    return model, rollout, logp_old, advantages, mask.float()


def loss_of(spec: str):
    return losses.get(spec)


def grads(model, rollout, logp_old, advantages, mask, spec, accumulation):
    model = copy.deepcopy(model)
    value, _ = backward(model, rollout, Targets(advantages, mask, logp_old), loss_of(spec), HP,
                        world=distributed.World(), accumulation=accumulation)
    return torch.cat([p.grad.flatten() for p in model.parameters()]), value


@pytest.mark.parametrize("spec,level", [("lad:js", "token"), ("lad:kl", "sequence"), ("grpo", "token")])
def test_accumulation_over_micro_batches_equals_the_whole_batch_gradient(spec, level, monkeypatch):
    monkeypatch.setattr(HP, "level", level)
    batch = fixed_batch()
    whole, whole_value = grads(*batch, spec, 1)
    assert whole.abs().max() > 1e-4
    for k in (2, 5):
        acc, acc_value = grads(*batch, spec, k)
        torch.testing.assert_close(acc, whole, rtol=1e-4, atol=1e-6 * whole.abs().max().item())
        torch.testing.assert_close(acc_value, whole_value, rtol=1e-5, atol=1e-8)


def test_accumulation_without_unit_weights_would_differ():
    """Control: the plain mean of micro-batch token means is not the batch token mean (unequal lengths)."""
    model, rollout, logp_old, advantages, mask = fixed_batch()
    whole, _ = grads(model, rollout, logp_old, advantages, mask, "lad:js", 1)
    naive_model = copy.deepcopy(model)
    loss = loss_of("lad:js")
    pieces = micro_batches(mask.shape[0], 2)
    for s in pieces:
        logp = token_logprobs(naive_model, rollout.rows(s))
        (loss(losses.LossInputs(logp, logp_old[s], advantages[s], mask[s]), HP)[0] / len(pieces)).backward()
    naive = torch.cat([p.grad.flatten() for p in naive_model.parameters()])
    assert (naive - whole).abs().max() > 100 * 1e-6 * whole.abs().max()


def test_micro_batches_cover_every_row_once_and_refuse_impossible_splits():
    assert micro_batches(10, 3) == [slice(0, 3), slice(3, 7), slice(7, 10)]
    assert micro_batches(4, 4) == [slice(i, i + 1) for i in range(4)]
    with pytest.raises(ConfigError, match="--grad-accumulation"):
        micro_batches(3, 4)
