"""Gradient checkpointing that keeps the KV cache (``ladtrain/checkpointing.py``): under checkpointing
:func:`ladtrain.rollout.token_logprobs` still runs each group's prompt once, and its log-probs and
gradients are those of the full batch without checkpointing (float64: 1e-12), on every path (one pass,
length buckets, chunked or full logits). Controls: a replay that does not restore the cache, and
reentrant checkpointing (whose replay loses the gradient through the cache), are caught."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ladtrain import checkpointing, models
from ladtrain.rollout import HFSampler, can_share_prompts, completion_mask, token_logprobs

PROMPTS = ["1 2 3 4 -> 10\n", "5 5 -> 25\n", "3 1 2 -> 7\n"]  # different lengths: left padding too
G, T = 4, 8


def _model(dtype=torch.float64):
    tok = models.build_tokenizer()
    spec = models.TinySpec(hidden=32, layers=3, heads=4, intermediate=64)
    return models.build_tiny_model(tok, spec, seed=0).to(dtype), tok


def _rollout(model, tok):
    """Sampled completions cut to lengths 1..T (EOS placed), so that length buckets save work."""
    torch.manual_seed(0)
    r = HFSampler(model, tok, 1.0, T).sample(PROMPTS, G)
    ids = r.completion_ids.clone()
    ids[ids == tok.eos_token_id] = 5
    lengths = torch.tensor([1 + (7 * i) % T for i in range(ids.shape[0])])  # (B,) 1..T
    ids[torch.arange(ids.shape[0]), lengths - 1] = tok.eos_token_id
    mask = completion_mask(ids, tok.eos_token_id)
    ids = torch.where(mask.bool(), ids, torch.full_like(ids, tok.pad_token_id))
    return replace(r, completion_ids=ids, completion_mask=mask)


def _logp_and_grad(model, rollout, **options):
    model.zero_grad(set_to_none=True)
    model.train()
    logp = token_logprobs(model, rollout, 0.8, **options)  # (B, T)
    weights = torch.linspace(-1.0, 1.0, logp.numel(), dtype=logp.dtype).view_as(logp)
    (logp * weights).sum().backward()
    return logp.detach(), torch.cat([p.grad.flatten() for p in model.parameters()])


def _embedded_rows(model):
    """A list that records the (rows, positions) of every embedding call (prompt pass, completions)."""
    seen = []
    model.get_input_embeddings().register_forward_hook(lambda m, args, out: seen.append(tuple(out.shape[:2])))
    return seen


@pytest.fixture
def setting(llama_in_float64):
    model, tok = _model()
    rollout = _rollout(model, tok)
    reference = _logp_and_grad(model, rollout, share_prompts=False, buckets=[])  # no checkpointing
    models.enable_gradient_checkpointing(model)
    return model, rollout, reference


@pytest.mark.parametrize("buckets", [None, []], ids=["length-buckets", "one-pass"])
@pytest.mark.parametrize("chunked", [None, False], ids=["chunked", "full-logits"])
def test_shared_prompts_under_checkpointing_equal_the_full_batch(setting, buckets, chunked):
    model, rollout, (logp_ref, grad_ref) = setting
    assert checkpointing.checkpointing_on(model) and checkpointing.keeps_cache(model)
    assert can_share_prompts(model, rollout.prompt_ids, rollout.prompt_mask, G)
    seen = _embedded_rows(model)
    logp, grad = _logp_and_grad(model, rollout, buckets=buckets, chunked=chunked)
    assert seen[0] == (len(PROMPTS), rollout.prompt_ids.shape[1])  # each prompt once, then completions
    assert all(rows <= len(PROMPTS) * G and n < T for rows, n in seen[1:])
    torch.testing.assert_close(logp, logp_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-12, atol=1e-13)
    # the model's own checkpointing settings are back after the pass
    layer = model.model.layers[0]
    assert "_can_checkpoint_with_cache" not in vars(layer) and model.model.gradient_checkpointing is True


def test_checkpointing_really_replays_inside_the_pass(setting, monkeypatch):
    """The test above runs checkpointed layers (each layer's forward runs again in the backward pass)."""
    model, rollout, _ = setting
    layer = model.model.layers[1]
    calls = []
    # a pre-hook: a replay stops once it has recomputed what the backward pass needs
    layer.mlp.register_forward_pre_hook(lambda m, a: calls.append(torch.is_grad_enabled()))
    _logp_and_grad(model, rollout, buckets=[])
    assert len(calls) == 4  # prompt pass and completions, each once forward and once replayed


def test_a_replay_that_does_not_restore_the_cache_is_caught(setting, monkeypatch):
    model, rollout, (logp_ref, grad_ref) = setting
    monkeypatch.setattr(checkpointing, "_restore", lambda cache, state: None)
    try:
        logp, grad = _logp_and_grad(model, rollout, buckets=[])
    except (RuntimeError, torch.utils.checkpoint.CheckpointError):
        return  # the replay saw a cache of another length
    assert not torch.allclose(grad, grad_ref, rtol=1e-6, atol=1e-8)


def test_reentrant_checkpointing_is_not_trusted_with_the_cache(llama_in_float64, monkeypatch):
    """Reentrant checkpointing drops the graph edges to the cached keys and values (the prompt pass's
    gradient is lost): keeps_cache says no, token_logprobs falls back to the full batch (exact), and
    forcing the cache through it would give a wrong gradient."""
    model, tok = _model()
    rollout = _rollout(model, tok)
    _, grad_ref = _logp_and_grad(model, rollout, share_prompts=False, buckets=[])
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    model.train()
    assert not checkpointing.keeps_cache(model)
    assert not can_share_prompts(model, rollout.prompt_ids, rollout.prompt_mask, G)
    with pytest.raises(ValueError, match="cannot keep a KV cache"):
        with checkpointing.kept_cache(model):
            pass
    _, grad = _logp_and_grad(model, rollout, buckets=[])
    torch.testing.assert_close(grad, grad_ref, rtol=1e-12, atol=1e-13)
    monkeypatch.setattr(checkpointing, "keeps_cache", lambda m: True)
    try:
        _, grad_bug = _logp_and_grad(model, rollout, share_prompts=True, buckets=[])
    except RuntimeError:
        return
    assert not torch.allclose(grad_bug, grad_ref, rtol=1e-6, atol=1e-8)


def test_nothing_changes_without_checkpointing():
    model, _ = _model(torch.float32)
    model.train()
    assert not checkpointing.checkpointing_on(model) and checkpointing.keeps_cache(model)
    before = {n: dict(vars(m)) for n, m in model.named_modules()}
    with checkpointing.kept_cache(model):
        assert {n: dict(vars(m)) for n, m in model.named_modules()} == before


@pytest.mark.parametrize("filtered", [True, False], ids=["kept-cache", "control-unfiltered"])
def test_no_message_that_the_cache_is_dropped_while_it_is_kept(setting, monkeypatch, filtered):
    """transformers says "Caching is incompatible with gradient checkpointing ... Setting use_cache=False"
    when a checkpointed layer gets ``use_cache``; inside ``kept_cache`` the cache is kept (the test above),
    so the message is dropped there. Control: without the filter the same pass logs it."""
    import logging

    model, rollout, _ = setting
    if not filtered:
        monkeypatch.setattr(checkpointing._NotDropped, "filter", lambda self, record: True)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    log = logging.getLogger("transformers.modeling_layers")
    log.addHandler(handler)
    logging.Logger.warning_once.cache_clear()  # transformers prints each message once per process
    try:
        _logp_and_grad(model, rollout)
    finally:
        log.removeHandler(handler)
        logging.Logger.warning_once.cache_clear()
    dropped = [r for r in records if r.getMessage().startswith("Caching is incompatible")]
    assert (not dropped) if filtered else dropped
