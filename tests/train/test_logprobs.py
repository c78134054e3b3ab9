"""Chunked log-probs (ladtrain/logprobs.py) equal the plain (B, T, V) path, values and gradients, and
never hold a (B, T, V) tensor.

Oracle: ``log_softmax(logits / temperature).gather(ids)`` on the full logits (the plain path). In float64
(the model made float64 throughout: ``llama_in_float64`` in conftest.py) values and every parameter's
gradient agree to 1e-12; in float32 to float32 round-off. Each check is shown to fail on a plausible bug
(the temperature left out of the backward pass, the output layer's gradient dropped), and the memory
check is shown to fail on the plain path.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ladtrain import logprobs
from ladtrain.logprobs import ChunkedTokenLogprob, OutputHead, output_head, plain_logprobs, selected_logprobs
from ladtrain.rollout import Rollout, length_buckets, token_logprobs


def _llama(vocab=300, dtype=torch.float32, tie=True, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=tie, pad_token_id=0, eos_token_id=1, bos_token_id=None)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).to(dtype)


def _rollout(vocab=300, n=3, G=4, P=5, T=8, seed=1):
    """A rollout with left-padded prompts shared within groups and right-padded completions ending at
    EOS (id 1) at different lengths."""
    gen = torch.Generator().manual_seed(seed)
    prompt = torch.randint(3, vocab, (n, P), generator=gen)
    prompt_mask = torch.ones(n, P, dtype=torch.long)
    prompt_mask[1, :2] = 0  # left padding
    prompt = torch.where(prompt_mask.bool(), prompt, 0)
    ids = torch.randint(3, vocab, (n * G, T), generator=gen)
    lengths = torch.randint(1, T + 1, (n * G,), generator=gen)
    lengths[0] = T  # one completion without EOS
    mask = (torch.arange(T)[None] < lengths[:, None]).long()  # (B, T)
    ids[torch.arange(n * G), lengths - 1] = 1  # EOS at the last position of each completion ...
    ids[0, T - 1] = 7  # ... except the truncated one
    ids = torch.where(mask.bool(), ids, 0)
    return Rollout(prompt.repeat_interleave(G, 0), prompt_mask.repeat_interleave(G, 0), ids, mask,
                   [""] * (n * G), G)


def _logp_and_grads(model, rollout, temperature=0.7, **kw):
    model.zero_grad(set_to_none=True)
    model.train()
    logp = token_logprobs(model, rollout, temperature, **kw)  # (B, T)
    weights = torch.linspace(-1.0, 1.0, logp.numel(), dtype=logp.dtype).view_as(logp)
    (logp * weights).sum().backward()
    return logp.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def _head_case(dtype, N=23, H=16, V=50, seed=0, bias=True):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(N, H, generator=gen, dtype=dtype, requires_grad=True)
    w = (torch.randn(V, H, generator=gen, dtype=dtype) / H**0.5).requires_grad_()
    b = torch.randn(V, generator=gen, dtype=dtype).requires_grad_() if bias else None
    ids = torch.randint(0, V, (N,), generator=gen)
    return h, w, b, ids


def _grads(fn, h, w, b, ids):
    for t in (h, w, b):
        if t is not None:
            t.grad = None
    out = fn(h, w, b, ids)
    (out * torch.linspace(-1, 2, out.numel(), dtype=out.dtype)).sum().backward()
    return out.detach(), [t.grad.clone() for t in (h, w, b) if t is not None]


def _plain(temperature):
    def plain(h, w, b, ids):
        return plain_logprobs(torch.nn.functional.linear(h, w, b)[None], ids[None], temperature)[0]

    return plain


def _chunked(temperature, rows):
    return lambda h, w, b, ids: ChunkedTokenLogprob.apply(h, w, b, ids, temperature, rows)


@pytest.mark.parametrize("temperature", [0.7, 1.0])  # 1: no division at all (logprobs._chunk_logits)
@pytest.mark.parametrize("bias", [True, False])  # with a bias the product is one addmm
@pytest.mark.parametrize("rows", [1, 4, 23, 100])  # one row per chunk, several, exactly one chunk, larger
def test_chunked_function_equals_plain_float64(rows, bias, temperature):
    h, w, b, ids = _head_case(torch.float64, bias=bias)
    ref, ref_grads = _grads(_plain(temperature), h, w, b, ids)
    out, grads = _grads(_chunked(temperature, rows), h, w, b, ids)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-13)


def test_chunked_function_float32_within_round_off_and_without_bias():
    h, w, _, ids = _head_case(torch.float32, N=40, V=97, bias=False)
    ref, ref_grads = _grads(_plain(1.3), h, w, None, ids)
    out, grads = _grads(_chunked(1.3, 7), h, w, None, ids)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6)


def test_the_oracle_catches_a_backward_without_the_temperature(monkeypatch):
    """The plausible bug: the backward pass forgets to divide by the temperature. The values are still
    right, so only the gradient comparison can catch it, and it does (by a factor of 1/0.7)."""
    h, w, b, ids = _head_case(torch.float64)
    _, ref_grads = _grads(_plain(0.7), h, w, b, ids)
    _, grads = _grads(_chunked(0.7, 4), h, w, b, ids)
    torch.testing.assert_close(grads[0], ref_grads[0], rtol=1e-10, atol=1e-12)  # the comparison passes...
    monkeypatch.setattr(logprobs, "_untempered", lambda grad, temperature: grad)  # ...until it is forgotten
    _, grads = _grads(_chunked(0.7, 4), h, w, b, ids)
    assert not torch.allclose(grads[0], ref_grads[0], rtol=1e-3)


@pytest.mark.parametrize("share", [False, True])
def test_token_logprobs_chunked_equals_plain_float64(llama_in_float64, share, monkeypatch):
    """The whole path through the model (full batch, and shared prompts with the copied cache): values and
    every parameter's gradient; several chunks (small chunk size), untied output layer with a bias."""
    model = _llama(dtype=torch.float64, tie=False)
    model.lm_head.bias = torch.nn.Parameter(torch.randn(300, dtype=torch.float64))
    rollout = _rollout()
    monkeypatch.setattr(logprobs, "CHUNK_LOGITS", 7 * 300)  # 7 rows per chunk
    assert length_buckets(rollout.lengths)  # the shared path runs its completions in length buckets
    ref, ref_grads = _logp_and_grads(model, rollout, share_prompts=share, chunked=False, buckets=[])
    out, grads = _logp_and_grads(model, rollout, share_prompts=share, chunked=True)
    assert out.dtype == torch.float64 and torch.equal(out == 0, rollout.completion_mask == 0)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    assert ref_grads.keys() == grads.keys()
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-12, atol=1e-13, msg=name)


def test_length_buckets_exact_and_the_oracle_catches_a_bucket_cut_short(llama_in_float64, monkeypatch):
    """Buckets of similar lengths, each run only up to its longest completion: the same log-probs and
    gradients as one pass (shared prompts or the full batch, chunked or plain logits). A bucket cut one
    position short changes them."""
    model = _llama(dtype=torch.float64)
    rollout = _rollout(n=4, G=3, T=8, seed=4)
    buckets = length_buckets(rollout.lengths, parts=3, min_saving=0.0)
    assert len(buckets) == 3 and sorted(torch.cat(buckets).tolist()) == list(range(12))
    for chunked, share in ((False, True), (True, True), (False, False), (True, False)):
        ref, ref_grads = _logp_and_grads(model, rollout, share_prompts=share, chunked=chunked, buckets=[])
        out, grads = _logp_and_grads(model, rollout, share_prompts=share, chunked=chunked, buckets=buckets)
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
        for name in ref_grads:
            torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-12, atol=1e-13, msg=name)
    short = rollout.lengths.clone()
    short[buckets[0]] -= 1  # the longest bucket run one position short
    monkeypatch.setattr(Rollout, "lengths", property(lambda self: short))
    bug, _ = _logp_and_grads(model, rollout, share_prompts=True, chunked=True, buckets=buckets)
    assert (bug - ref).abs().max() > 1e-3


def test_length_buckets_only_where_they_save_work():
    assert length_buckets(torch.full((16,), 8)) == []  # equal lengths: one pass
    assert length_buckets(torch.tensor([8, 8, 8, 7])) == []  # saves 3%: one pass
    buckets = length_buckets(torch.tensor([8, 1, 1, 8, 2, 1, 1, 1]), parts=2)
    assert [b.tolist() for b in buckets] == [[0, 3, 4, 1], [2, 5, 6, 7]]
    assert length_buckets(torch.tensor([3, 1]), parts=4) == []  # fewer rows than buckets


def test_token_logprobs_chunked_float32_and_the_oracle_catches_a_dropped_head_gradient(monkeypatch):
    model = _llama()
    rollout = _rollout()
    ref, ref_grads = _logp_and_grads(model, rollout, chunked=False)
    out, grads = _logp_and_grads(model, rollout, chunked=True)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    # the bug: the output layer treated as a constant (its gradient, here the tied embedding's, lost)
    real = logprobs.selected_logprobs
    monkeypatch.setattr(logprobs, "selected_logprobs", lambda hidden, head, *a, **k: real(
        hidden, OutputHead(head.backbone, head.weight.detach(), head.bias), *a, **k))
    _, bug = _logp_and_grads(model, rollout, chunked=True)
    key = "model.embed_tokens.weight"
    assert (bug[key] - ref_grads[key]).norm() > 1e-2 * ref_grads[key].norm()


def test_bf16_autocast_projection_in_bf16_like_the_model():
    model = _llama()
    rollout = _rollout()
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = token_logprobs(model, rollout, 1.0, chunked=False)
        out = token_logprobs(model, rollout, 1.0, chunked=True)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=2e-2, atol=2e-2)
    out.sum().backward()  # the backward runs (in bf16 for the projection) and reaches the weights
    assert model.model.embed_tokens.weight.grad.abs().sum() > 0


class _LargestFloat(TorchDispatchMode):
    """The numel of the largest floating-point tensor any operation produces (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("share", [False, True])
def test_no_tensor_of_batch_times_length_times_vocabulary_in_training(share, monkeypatch):
    """With a vocabulary much larger than everything else, the largest tensor of the chunked forward and
    backward is one chunk (or the (V, H) weight gradient), far below B * T * V; the plain path makes one
    of B * T * V (the check can fail)."""
    V = 4096
    model = _llama(vocab=V)
    rollout = _rollout(vocab=V)
    B, T = rollout.completion_ids.shape
    monkeypatch.setattr(logprobs, "CHUNK_LOGITS", 4 * V)
    sizes = {}
    for chunked in (False, True):
        with _LargestFloat() as probe:
            logp = token_logprobs(model, rollout, 0.9, share_prompts=share, chunked=chunked)
            logp.sum().backward()
        sizes[chunked] = probe.largest
    assert sizes[False] >= B * T * V
    largest_allowed = max(4 * V, V * model.config.hidden_size)  # one chunk, or the (V, H) weight gradient
    assert sizes[True] <= largest_allowed < B * T * V / 2


def test_output_head_only_where_the_logits_are_lm_head_of_the_backbone():
    model = _llama()
    head = output_head(model)
    assert head is not None and head.backbone is model.model and head.weight is model.lm_head.weight
    model.config.final_logit_softcapping = 30.0  # logits = cap * tanh(z / cap): not a plain linear head
    assert output_head(model) is None
    model.config.final_logit_softcapping = None
    wrapped = torch.nn.Sequential(model)  # a wrapper whose forward the backbone call would bypass (DDP-like)
    assert output_head(wrapped) is None
    with pytest.raises(ValueError, match="chunked=True"):
        token_logprobs(wrapped, _rollout(), chunked=True)


def test_peft_model_is_unwrapped_and_its_adapters_trained():
    peft = pytest.importorskip("peft")
    model = peft.get_peft_model(_llama(), peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    assert output_head(model) is not None
    rollout = _rollout()
    torch.manual_seed(0)
    for p in model.parameters():  # non-zero LoRA B so that the adapters change the logits
        if p.requires_grad:
            p.data.normal_(0, 0.1)
    ref, ref_grads = _logp_and_grads(model, rollout, chunked=False)
    out, grads = _logp_and_grads(model, rollout, chunked=True)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    lora = [n for n in grads if "lora_" in n]
    assert lora
    for name in lora:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_selected_logprobs_with_nothing_scored_is_zero_and_differentiable():
    model = _llama()
    head = output_head(model)
    hidden = torch.randn(2, 3, 32, requires_grad=True)
    out = selected_logprobs(hidden, head, torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3))
    assert torch.equal(out, torch.zeros(2, 3))
    out.sum().backward()
    assert torch.equal(hidden.grad, torch.zeros_like(hidden))


def test_in_place_logsumexp_equals_torchs():
    z = torch.randn(5, 40, dtype=torch.float64) * 30
    z[1, 3] = float("-inf")  # a masked logit
    z[2] = float("-inf")  # a row with nothing possible: -inf, as torch.logsumexp
    z[3, 0] = 1e4  # a large logit: no overflow
    ref = torch.logsumexp(z, dim=1)
    out = logprobs._logsumexp_(z.clone())
    torch.testing.assert_close(out, ref, rtol=1e-13, atol=0)
    assert out[2] == float("-inf")
