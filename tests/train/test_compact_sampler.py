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
    """Drawing the exponentials for the live rows only (``draws="live"``) keeps the distribution
    but not the values: the comparison above would fail on it. The first token (all rows live) agrees."""
    model, tok = _model()
    differ = 0
    for seed in range(4):
        ref, _ = _sample(HFSampler(model, tok, 1.0, 12), seed)
        out, _ = _sample(CompactSampler(model, tok, 1.0, 12, draws="live"), seed)
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


# --- the inverse-CDF draws (--sampler-draws inverse-cdf)

WEIGHTS = [0.9, 0.0, 0.45, 0.3, 0.15, 0.0, 0.2]  # unnormalised (sum 2.0), zeros inside and at the end


def _chi_square(tokens: torch.Tensor, weights) -> float:
    """Pearson's statistic of the drawn ``tokens`` against ``weights`` over the tokens of non-zero weight
    (a token of weight zero drawn at all is infinity)."""
    w = torch.tensor(weights, dtype=torch.float64)
    counts = torch.bincount(tokens, minlength=len(weights)).double()
    if (counts[w == 0] > 0).any():
        return float("inf")
    expected = w[w > 0] / w.sum() * tokens.numel()
    return float(((counts[w > 0] - expected) ** 2 / expected).sum())


CRITICAL = 32.0  # chi-square with 4 degrees of freedom: P(statistic > 32) ~ 2e-6


def _many(weights, n=200_000):
    probs = torch.tensor(weights, dtype=torch.float32).expand(n, -1).contiguous()  # (n, V) one row per draw
    return probs, torch.arange(n)


def test_inverse_cdf_draws_each_token_with_its_weights_share():
    """200,000 draws from unnormalised weights: Pearson's chi-square against ``w / sum(w)`` stays below
    the 2e-6 critical value, and no token of weight zero is drawn. Controls: the same statistic rejects
    the draws shifted by one token, and the draws of an inversion that forgets to scale ``u`` by the total
    (it would only ever reach the first half of this distribution)."""
    from ladtrain.compact_sampler import inverse_cdf

    probs, live = _many(WEIGHTS)
    torch.manual_seed(0)
    tokens = inverse_cdf(probs, live, len(live))
    assert _chi_square(tokens, WEIGHTS) < CRITICAL
    assert _chi_square((tokens + 1) % len(WEIGHTS), WEIGHTS) > 100 * CRITICAL  # control: shifted
    torch.manual_seed(0)
    c = torch.cumsum(probs, -1, dtype=torch.float64)
    unscaled = torch.searchsorted(c, torch.rand(len(live), 1, dtype=torch.float64), right=True).squeeze(1)
    assert _chi_square(unscaled, WEIGHTS) > 100 * CRITICAL  # control: u not scaled by the total


def test_inverse_cdf_agrees_with_multinomial_in_distribution():
    """The same 200,000 draws through ``torch.multinomial`` (generate's sampler) pass the same test: the
    two draws differ in values, not in distribution."""
    probs, _ = _many(WEIGHTS)
    torch.manual_seed(1)
    tokens = torch.multinomial(probs, 1).squeeze(1)
    assert _chi_square(tokens, WEIGHTS) < CRITICAL


def test_inverse_cdf_at_the_extreme_uniforms_draws_the_first_and_last_tokens_of_non_zero_probability(
        monkeypatch):
    """``torch.rand`` returns doubles in [0, 1 - 2^-53]. At the largest, ``u c[V-1]`` stays below the total
    (it does not round up to it), so the draw is the last token of non-zero probability, never one of the
    trailing zeros or the index V past the vocabulary; at 0 it is the first token of non-zero probability.
    Over 2,000 random rows with zeros at both ends (totals of every size around 1). Control: a search for
    the first ``c[i] >= u`` would draw a leading token of probability zero at ``u = 0``."""
    from ladtrain.compact_sampler import inverse_cdf

    g = torch.Generator().manual_seed(0)
    V, N = 9, 2000
    weights = torch.rand(N, V, generator=g) * torch.rand(N, 1, generator=g) * 4  # (N, V)
    lo = torch.randint(0, 3, (N,), generator=g)
    hi = torch.randint(5, V, (N,), generator=g)
    cols = torch.arange(V)
    weights[(cols < lo[:, None]) | (cols > hi[:, None])] = 0.0  # zeros before lo and after hi
    for u, expect in ((1.0 - 2.0 ** -53, hi), (0.0, lo)):
        monkeypatch.setattr(torch, "rand", lambda *a, u=u, **k: torch.full((N, 1), u, dtype=torch.float64))
        assert torch.equal(inverse_cdf(weights, torch.arange(N), N), expect)
    c = torch.cumsum(weights, -1, dtype=torch.float64)  # control: a search for c[i] >= u draws at u = 0
    wrong = torch.searchsorted(c, torch.zeros(N, 1, dtype=torch.float64), right=False).squeeze(1)
    assert (wrong != lo).sum() == (lo > 0).sum() > 0  # the leading token of probability zero


def test_inverse_cdf_refuses_probabilities_that_sum_to_zero_or_are_not_finite():
    from ladtrain.compact_sampler import inverse_cdf

    for bad in ([0.0, 0.0, 0.0], [0.5, float("nan"), 0.5], [float("inf"), 0.0, 1.0]):
        with pytest.raises(ValueError, match="not finite or sum to 0"):
            inverse_cdf(torch.tensor([bad]), torch.arange(1), 1)


def test_inverse_cdf_draw_of_a_sequence_does_not_depend_on_its_place_in_the_batch():
    """The uniforms are drawn for all ``batch`` rows and indexed by each live row's batch row, so a
    permutation of the live rows (as compaction makes) permutes the tokens and nothing else; and the
    generator advances by ``batch`` doubles whatever the number of live rows."""
    from ladtrain.compact_sampler import inverse_cdf

    g = torch.Generator().manual_seed(3)
    probs = torch.softmax(torch.randn(6, 40, generator=g), -1)
    live = torch.tensor([5, 0, 3, 2, 4, 1])
    perm = torch.tensor([2, 0, 5, 1, 4, 3])
    torch.manual_seed(7)
    a = inverse_cdf(probs, live, 8)
    state = torch.get_rng_state()
    torch.manual_seed(7)
    b = inverse_cdf(probs[perm], live[perm], 8)
    assert torch.equal(b, a[perm])
    torch.manual_seed(7)
    torch.rand((8, 1), dtype=torch.float64)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("temperature", [1.0, 0.8])
def test_with_inverse_cdf_draws_the_tokens_of_generate_with_the_same_draws(temperature, monkeypatch):
    """Oracle: ``generate`` with its ``torch.multinomial`` replaced by the same inverse-CDF draw over its
    whole batch (finished rows included, as it samples them). The compacting sampler gives the same tokens
    and leaves the generator in the same state. Control: its default draws give other tokens."""
    from ladtrain.compact_sampler import inverse_cdf

    model, tok = _model()
    real_multinomial = torch.multinomial

    def by_inversion(probs, num_samples, *args, **kwargs):
        assert num_samples == 1
        return inverse_cdf(probs, torch.arange(probs.shape[0]), probs.shape[0])[:, None]

    differ = 0
    for seed in range(4):
        monkeypatch.setattr(torch, "multinomial", by_inversion)
        ref, ref_state = _sample(HFSampler(model, tok, temperature, 12), seed)
        monkeypatch.setattr(torch, "multinomial", real_multinomial)
        out, state = _sample(CompactSampler(model, tok, temperature, 12, draws="inverse-cdf"), seed)
        assert torch.equal(out.completion_ids, ref.completion_ids)
        assert torch.equal(state, ref_state)
        default, _ = _sample(CompactSampler(model, tok, temperature, 12), seed)
        differ += default.completion_ids.shape != ref.completion_ids.shape or not torch.equal(
            default.completion_ids, ref.completion_ids)
    assert differ >= 1


def test_an_unknown_draw_is_refused_when_the_sampler_is_made():
    model, tok = _model()
    with pytest.raises(ValueError, match="draws: 'gumbel' is not one of generate, live, inverse-cdf"):
        CompactSampler(model, tok, draws="gumbel")
