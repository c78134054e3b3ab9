"""The speed-ups found with benchmarks/step_profile.py keep the trainer's results.

* Shared prompts (``ladtrain.rollout``): each group's prompt runs once and its KV cache is copied to
  the ``G`` rows. Oracle: the full-batch computation. With the model made float64 throughout (HF's Llama
  computes RMSNorm and the rotary tables in float32 even for a float64 model; the test patches both to
  the input dtype) log-probs and parameter gradients agree to 1e-12; on the float32 model to float32
  rounding. A missing gradient through the copied cache would change the gradient by O(1).
* Sampling with the shared prompt cache draws the same tokens as the full prefill from the same seed.
* The sampler prefills each prompt once (n = B / G rows) and generate starts from the copied cache.
* Skipping the old-log-prob pass at one update per rollout: the no-grad pass and the with-grad pass give
  bit-identical log-probs, so ``logp_old = logp.detach()`` changes nothing.
* ``logits_to_keep`` (the output layer only on positions whose logits are read): bit-identical.
"""

from __future__ import annotations

import pytest
import torch

from ladtrain import models
from ladtrain.rollout import HFSampler, can_share_prompts, groups_share_prompts, token_logprobs

PROMPTS = ["1 2 3 4 -> 10\n", "5 5 -> 25\n", "3 1 2 -> 7\n"]  # different lengths: left padding is exercised


def _model(dtype=torch.float32):
    tok = models.build_tokenizer()
    spec = models.TinySpec(hidden=32, layers=2, heads=4, intermediate=64)
    return models.build_tiny_model(tok, spec, seed=0).to(dtype), tok


def _rollout(model, tok, G=4, max_new_tokens=7, seed=0):
    torch.manual_seed(seed)
    return HFSampler(model, tok, 1.0, max_new_tokens).sample(PROMPTS, G)


def _logp_and_grad(model, rollout, share, temperature=0.8):
    model.zero_grad(set_to_none=True)
    model.train()
    logp = token_logprobs(model, rollout, temperature, share_prompts=share)  # (B, T)
    weights = torch.linspace(-1.0, 1.0, logp.numel(), dtype=logp.dtype).view_as(logp)
    (logp * weights).sum().backward()
    return logp.detach(), torch.cat([p.grad.flatten() for p in model.parameters()])


@pytest.fixture
def float64_llama(llama_in_float64):
    """The test model in float64 throughout (``llama_in_float64``: tests/train/conftest.py)."""
    return _model(torch.float64)


def test_shared_prompt_logprobs_and_gradients_equal_full_batch_float64(float64_llama):
    model, tok = float64_llama
    rollout = _rollout(model, tok)
    assert rollout.prompt_mask.min() == 0  # some prompt is left-padded
    assert can_share_prompts(model, rollout.prompt_ids, rollout.prompt_mask, rollout.group_size)
    logp_full, grad_full = _logp_and_grad(model, rollout, share=False)
    logp_shared, grad_shared = _logp_and_grad(model, rollout, share=True)
    assert logp_shared.dtype == torch.float64
    torch.testing.assert_close(logp_shared, logp_full, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad_shared, grad_full, rtol=1e-12, atol=1e-13)


def test_shared_prompt_logprobs_float32_within_rounding():
    model, tok = _model()
    rollout = _rollout(model, tok, G=3)
    logp_full, grad_full = _logp_and_grad(model, rollout, share=False)
    logp_shared, grad_shared = _logp_and_grad(model, rollout, share=True)
    torch.testing.assert_close(logp_shared, logp_full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_shared, grad_full, rtol=1e-4, atol=1e-6)


def test_shared_prompt_oracle_catches_a_detached_cache(monkeypatch):
    """The plausible bug, the copied cache cut from the graph (the prompt's gradient lost), moves the
    gradient far outside the tolerance of the tests above."""
    from transformers import cache_utils

    model, tok = _model()
    rollout = _rollout(model, tok, G=2, max_new_tokens=4)
    _, grad_full = _logp_and_grad(model, rollout, share=False)

    def detached_repeat(self, repeats):
        self.keys = self.keys.detach().repeat_interleave(repeats, dim=0)
        self.values = self.values.detach().repeat_interleave(repeats, dim=0)

    monkeypatch.setattr(cache_utils.DynamicLayer, "batch_repeat_interleave", detached_repeat)
    _, grad_bug = _logp_and_grad(model, rollout, share=True)
    assert (grad_bug - grad_full).norm() > 1e-2 * grad_full.norm()


def test_sampler_with_shared_prompt_cache_draws_the_same_tokens(monkeypatch):
    model, tok = _model()
    shared = _rollout(model, tok, G=4, max_new_tokens=10, seed=3)
    from ladtrain import rollout as rollout_module

    monkeypatch.setattr(rollout_module, "cache_keyword", lambda m: None)  # the plain full-batch prefill
    full = _rollout(model, tok, G=4, max_new_tokens=10, seed=3)
    assert torch.equal(shared.completion_ids, full.completion_ids)
    assert shared.texts == full.texts


def test_groups_share_prompts_detects_mixed_groups():
    ids = torch.tensor([[1, 2], [1, 2], [3, 4], [3, 5]])
    mask = torch.ones_like(ids)
    assert not groups_share_prompts(ids, mask, 2)
    assert groups_share_prompts(ids[:2], mask[:2], 2)
    assert not groups_share_prompts(ids[:3], mask[:3], 2)  # not whole groups
    model, _ = _model()
    model.train()
    model.config.attention_dropout = 0.1  # dropout would be shared across the group: not allowed
    assert not can_share_prompts(model, ids[:2], mask[:2], 2)


def test_old_logprobs_equal_the_first_updates_logprobs_bitwise():
    """Why the trainer may use ``logp.detach()`` as ``logp_old`` at one update per rollout."""
    model, tok = _model()
    rollout = _rollout(model, tok)
    model.train()
    with torch.no_grad():
        old = token_logprobs(model, rollout, 0.9)
    new = token_logprobs(model, rollout, 0.9)
    assert new.requires_grad
    assert torch.equal(old, new.detach())


def test_sampler_runs_each_prompt_once_then_one_token_per_row():
    """The saving itself: the prompt is prefilled on n = B / G rows, and generate's first forward call
    only runs each row's last prompt token on top of the copied cache."""
    model, tok = _model()
    shapes = []
    model.register_forward_pre_hook(lambda m, args, kw: shapes.append(tuple(kw["input_ids"].shape)),
                                    with_kwargs=True)
    rollout = HFSampler(model, tok, 1.0, 4).sample(PROMPTS, 3)
    P = rollout.prompt_ids.shape[1]
    assert shapes[0] == (len(PROMPTS), P - 1)
    assert shapes[1] == (3 * len(PROMPTS), 1)


def test_output_layer_on_used_positions_only_is_bit_identical(monkeypatch):
    """``logits_to_keep`` (the output layer only where logits are read) changes no log-prob."""
    from ladtrain import rollout as rollout_module

    model, tok = _model()
    rollout = _rollout(model, tok)
    model.train()
    kept = token_logprobs(model, rollout, 0.9, share_prompts=False, chunked=False)
    monkeypatch.setattr(rollout_module, "keep_last_logits", lambda m, n: {})  # every position, then slice
    every = token_logprobs(model, rollout, 0.9, share_prompts=False, chunked=False)
    assert torch.equal(kept, every)
