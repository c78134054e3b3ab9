"""The growing KV cache (``ladtrain/kv_buffer.py``): generation with :class:`BufferLayer` layers gives
the logits of transformers' concatenating cache bit for bit at every step (rows dropped on the way, the
buffer outgrown), and the sampler the same tokens and random state. Controls: a buffer that writes a
position one slot off is caught; caches it does not know are left alone."""

from __future__ import annotations

import pytest
import torch

from ladtrain import kv_buffer
from ladtrain.compact_sampler import CompactSampler
from ladtrain.rollout import cache_keyword
from tests.train.test_compact_sampler import PROMPTS, _model, _sample
from tests.train.test_lean_layers import _qwen2


def _decode(model, tok, buffer: bool, capacity: int = 64, steps: int = 12):
    """Logits of a prefill and ``steps`` single-token steps (a row dropped after step 3)."""
    torch.manual_seed(0)
    enc = tok(PROMPTS, return_tensors="pt", padding=True, add_special_tokens=False)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    model.eval()
    keyword = cache_keyword(model)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, use_cache=True)
        cache = out[keyword]
        if buffer:
            assert kv_buffer.buffered(cache, capacity)
        seen = [out.logits[:, -1]]
        token = out.logits[:, -1].argmax(-1)
        for step in range(steps):
            if step == 3:  # drop the middle row, as the sampler drops a finished one
                keep = torch.tensor([0, 2])
                cache.batch_select_indices(keep)
                mask, token = mask[keep], token[keep]
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            out = model(input_ids=token[:, None], attention_mask=mask, use_cache=True,
                        position_ids=mask.sum(-1, keepdim=True) - 1, **{keyword: cache})
            seen.append(out.logits[:, -1])
            token = out.logits[:, -1].argmax(-1)
    return seen, cache


@pytest.mark.parametrize("capacity", [64, 8], ids=["fits", "outgrown"])
@pytest.mark.parametrize("build", ["llama", "qwen2"])
def test_the_same_logits_bit_for_bit_as_the_concatenating_cache(build, capacity):
    model, tok = _model() if build == "llama" else _qwen2(torch.float32)
    plain, _ = _decode(model, tok, buffer=False)
    grown, cache = _decode(model, tok, buffer=True, capacity=capacity)
    assert all(isinstance(layer, kv_buffer.BufferLayer) for layer in cache.layers)
    prompt = tok(PROMPTS, return_tensors="pt", padding=True, add_special_tokens=False)["input_ids"].shape[1]
    assert cache.get_seq_length() == prompt + 12 and cache.layers[0].keys.shape[-2] == prompt + 12
    assert cache.layers[0].capacity == (64 if capacity == 64 else 2 * prompt)  # outgrown: doubled once
    assert len(plain) == len(grown) and all(torch.equal(a, b) for a, b in zip(plain, grown))


def test_a_position_written_one_slot_off_is_caught(monkeypatch):
    model, tok = _model()
    plain, _ = _decode(model, tok, buffer=False)
    real = kv_buffer.BufferLayer.update

    def off(self, k, v, *a, **kw):
        keys, values = real(self, k, v, *a, **kw)
        if self.length > 20:  # the last position read from the slot before it
            self._keys[..., self.length - 1, :] = self._keys[..., self.length - 2, :]
        return self.keys, self.values

    monkeypatch.setattr(kv_buffer.BufferLayer, "update", off)
    grown, _ = _decode(model, tok, buffer=True)
    assert not all(torch.equal(a, b) for a, b in zip(plain, grown))


def test_the_sampler_draws_the_same_tokens_with_and_without_it():
    model, tok = _model()
    with_buffer, state = _sample(CompactSampler(model, tok, 1.0, 16), 5)
    without, state_plain = _sample(CompactSampler(model, tok, 1.0, 16, buffer_cache=False), 5)
    assert torch.equal(with_buffer.completion_ids, without.completion_ids)
    assert torch.equal(state, state_plain)
    assert len(set(with_buffer.lengths.tolist())) > 2  # rows ended at several lengths: the batch shrank


def test_crop_then_decode_equals_the_concatenating_cache():
    """``Cache.crop`` calls every layer's crop: the buffer's shortens its views, and decoding on from the
    cropped cache gives the concatenating cache's logits bit for bit."""
    model, tok = _model()
    keyword = cache_keyword(model)
    enc = tok(PROMPTS, return_tensors="pt", padding=True, add_special_tokens=False)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    model.eval()
    P = ids.shape[1]
    seen = []
    for buffer in (False, True):
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask, use_cache=True)  # positions 0..P-1
            cache = out[keyword]
            if buffer:
                assert kv_buffer.buffered(cache, 64)
            cache.crop(-3)  # forget the prompt's last three positions
            assert cache.get_seq_length() == P - 3
            with pytest.raises(ValueError, match="positive value"):
                cache.crop(2)
            again = model(input_ids=ids[:, -3:], attention_mask=mask, use_cache=True,
                          position_ids=torch.arange(P - 3, P).expand(len(PROMPTS), 3), **{keyword: cache})
            seen.append(again.logits)
    torch.testing.assert_close(seen[0], out.logits[:, -3:], rtol=1e-5, atol=1e-5)  # re-ran what was cropped
    assert torch.equal(seen[0], seen[1])


def test_caches_it_does_not_know_are_left_alone():
    from transformers.cache_utils import DynamicCache, DynamicSlidingWindowLayer

    class Other:  # no layers
        pass

    assert kv_buffer.buffered(Other(), 8) is False
    cache = DynamicCache()
    cache.layers = [DynamicSlidingWindowLayer(sliding_window=4)]
    cache.layers[0].update(torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 2, 4))
    assert kv_buffer.buffered(cache, 8) is False and type(cache.layers[0]) is DynamicSlidingWindowLayer


def _layer(rows: int = 6, length: int = 5, capacity: int = 9):
    from transformers.cache_utils import DynamicLayer

    torch.manual_seed(0)
    plain = DynamicLayer()
    plain.update(torch.randn(rows, 2, length, 3), torch.randn(rows, 2, length, 3))
    buffer = kv_buffer.BufferLayer(plain.keys.clone(), plain.values.clone(), capacity)
    return plain, buffer


def test_fill_order_keeps_the_kept_rows_and_fills_the_holes_from_the_end():
    keep = torch.tensor([True, False, True, True, False, True, True])  # b' = 5: holes 1 and 4
    order = kv_buffer.fill_order(keep)
    assert order.tolist() == [0, 5, 2, 3, 6]
    assert sorted(order.tolist()) == keep.nonzero().squeeze(1).tolist()  # the kept rows, each once
    assert kv_buffer.fill_order(torch.ones(4, dtype=torch.bool)).tolist() == [0, 1, 2, 3]
    assert kv_buffer.fill_order(torch.tensor([False, False, True])).tolist() == [2]


@pytest.mark.parametrize("indices", [[0, 5, 2, 3], [5, 4], [0, 1, 2], [3, 1, 0], [1, 1, 4]],
                         ids=["in place", "in place, all moved", "prefix", "copied", "copied, repeated"])
def test_selecting_rows_equals_the_concatenating_cache(indices):
    """In place (every changed row taken from the dropped tail) or copied (any other order): the same
    keys and values as ``DynamicLayer.batch_select_indices``, and decoding on writes where it should."""
    plain, buffer = _layer()
    storage = buffer._keys.untyped_storage().data_ptr()
    index = torch.tensor(indices)
    plain.batch_select_indices(index)
    buffer.batch_select_indices(index)
    assert torch.equal(plain.keys, buffer.keys) and torch.equal(plain.values, buffer.values)
    in_place = all(i == j or i >= len(indices) for j, i in enumerate(indices))
    assert (buffer._keys.untyped_storage().data_ptr() == storage) == in_place
    k, v = torch.randn(len(indices), 2, 1, 3), torch.randn(len(indices), 2, 1, 3)
    a, b = plain.update(k, v), buffer.update(k, v)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_an_in_place_move_that_reads_an_overwritten_row_is_caught(monkeypatch):
    """Control: taken in place, the order [1, 0] (row 0 overwritten by row 1 before row 1 reads row 0)
    would give two copies of row 1. The condition sends it to the copying path."""
    plain, buffer = _layer()
    original = buffer.keys[:2].clone()
    buffer.batch_select_indices(torch.tensor([1, 0]))
    assert torch.equal(buffer.keys[0], original[1]) and torch.equal(buffer.keys[1], original[0])
    _, naive = _layer()
    for j, i in enumerate([1, 0]):  # the move without the condition, row by row
        naive._keys[j, :, : naive.length] = naive._keys[i, :, : naive.length]
    assert torch.equal(naive._keys[0, :, :5], naive._keys[1, :, :5])  # row 0's keys lost
