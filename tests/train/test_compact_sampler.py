"""CompactSampler (ladtrain/compact_sampler.py): the same samples as HFSampler for the same seed, with
finished rows removed from every later forward call.

Oracle: ``HFSampler`` (transformers ``generate``) on the same model and seed. The model's EOS logit is
raised by a bias so that completions end at many different lengths and the batch really shrinks.
"""

from __future__ import annotations

import pytest
import torch

from ladtrain import models
from ladtrain.compact_sampler import CompactSampler
from ladtrain.rollout import HFSampler, Sampler

PROMPTS = ["1 2 3 4 -> 10\n", "5 5 -> 25\n", "3 1 2 -> 7\n"]  # different lengths: left padding


def _model(eos_bias=3.5):
    tok = models.build_tokenizer()
    spec = models.TinySpec(hidden=32, layers=2, heads=4, intermediate=64)
    model = models.build_tiny_model(tok, spec, seed=0)
    head = torch.nn.Linear(32, len(tok), bias=True)
    head.weight = model.model.embed_tokens.weight  # still tied
    with torch.no_grad():
        head.bias.zero_()
        head.bias[tok.eos_token_id] = eos_bias
    model.lm_head = head
    return model, tok


def _sample(sampler, seed):
    torch.manual_seed(seed)
    rollout = sampler.sample(PROMPTS, 4)
    return rollout, torch.get_rng_state()


@pytest.mark.parametrize("transposed", [None, True], ids=["default", "transposed-copies"])
@pytest.mark.parametrize("temperature", [1.0, 0.8])
def test_same_tokens_and_random_state_as_generate(temperature, transposed):
    """``transposed=True``: the linear layers through transposed weight copies (ladtrain.transposed_linears;
    the default, None, switches them on where they measure faster on this machine)."""
    model, tok = _model()
    lengths = set()
    for seed in range(6):
        ref, ref_state = _sample(HFSampler(model, tok, temperature, 12), seed)
        out, state = _sample(CompactSampler(model, tok, temperature, 12, transposed=transposed), seed)
        assert torch.equal(out.completion_ids, ref.completion_ids)
        assert torch.equal(out.completion_mask, ref.completion_mask)
        assert torch.equal(out.prompt_ids, ref.prompt_ids) and torch.equal(out.prompt_mask, ref.prompt_mask)
        assert out.texts == ref.texts and out.group_size == ref.group_size
        assert torch.equal(state, ref_state)  # the generator consumed exactly as generate does
        lengths |= set(ref.lengths.tolist())
    assert len(lengths) >= 5  # many stop lengths
    assert 12 in lengths or temperature != 1.0  # and (at temperature 1) some rows cut at max_new_tokens


def test_without_shared_prompts_the_same_samples():
    model, tok = _model()
    ref, _ = _sample(CompactSampler(model, tok, 1.0, 12), 5)
    out, _ = _sample(CompactSampler(model, tok, 1.0, 12, share_prompts=False), 5)
    assert torch.equal(out.completion_ids, ref.completion_ids)


def test_the_comparison_catches_other_draws():
    """Drawing the exponentials for the live rows only (``same_draws=False``) keeps the distribution
    but not the values: the comparison above would fail on it. The first token (all rows live) agrees."""
    model, tok = _model()
    differ = 0
    for seed in range(4):
        ref, _ = _sample(HFSampler(model, tok, 1.0, 12), seed)
        out, _ = _sample(CompactSampler(model, tok, 1.0, 12, same_draws=False), seed)
        assert torch.equal(out.completion_ids[:, 0], ref.completion_ids[:, 0])
        differ += out.completion_ids.shape != ref.completion_ids.shape or not torch.equal(
            out.completion_ids, ref.completion_ids)
    assert differ >= 1


def test_finished_rows_cost_nothing():
    """After the prefill (each prompt once), the call that draws token t runs exactly the rows whose
    completion is longer than t: sum(length - 1) rows in all, where generate runs B rows every call."""
    model, tok = _model()
    rows = []
    model.register_forward_pre_hook(lambda m, args, kw: rows.append(kw["input_ids"].shape), with_kwargs=True)
    out, _ = _sample(CompactSampler(model, tok, 1.0, 12), 0)
    B, T = out.completion_ids.shape
    assert rows[0][0] == len(PROMPTS)  # the prefill: one row per prompt, the whole prompt
    decode = rows[1:]
    assert all(shape[1] == 1 for shape in decode) and len(decode) == T - 1
    lengths = out.lengths
    for t, shape in enumerate(decode, start=1):
        assert shape[0] == int((lengths > t).sum())
    assert sum(s[0] for s in decode) == int((lengths - 1).sum()) < B * (T - 1)
    rows.clear()
    _sample(HFSampler(model, tok, 1.0, 12), 0)
    assert sum(s[0] for s in rows[1:] if s[1] == 1) >= B * (T - 1)  # generate: every row, every call


def test_is_a_sampler_and_falls_back_without_a_cache():
    model, tok = _model()
    sampler: Sampler = CompactSampler(model, tok, 1.0, 6)
    assert isinstance(sampler.sample(PROMPTS[:1], 2).texts, list)

    class NoCache(torch.nn.Module):  # a wrapper whose forward names no cache keyword
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, **kw):
            return self.inner(**kw)

        def generate(self, **kw):
            return self.inner.generate(**kw)

    ref, _ = _sample(HFSampler(model, tok, 1.0, 6), 2)
    out, _ = _sample(CompactSampler(NoCache(model), tok, 1.0, 6), 2)
    assert torch.equal(out.completion_ids, ref.completion_ids)
