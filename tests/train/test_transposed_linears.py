"""Transposed weight copies for the sampler's linear layers (``ladtrain/transposed_linears.py``).

Oracle: the same model with every layer's own forward. Inside the context the logits agree to 1e-12 in
float64 and to round-off in float32 (Llama without biases, Qwen2 with the q/k/v biases); a control shows
that a copy off by one part in a million fails that comparison. Also: the forwards are restored and the
copies freed on exit, a forward that records a graph runs the layer's own, layers that are not eligible
are left alone, and two layers sharing a weight share one copy. The sampler's tokens with the copies:
``tests/train/test_compact_sampler.py``."""

from __future__ import annotations

import weakref

import pytest
import torch

from ladtrain import transposed_linears as tl
from tests.train.test_compact_sampler import PROMPTS, _model
from tests.train.test_lean_layers import _qwen2


def _build(name: str, dtype: torch.dtype):
    model, tok = _model() if name == "llama" else _qwen2(dtype)
    return model.to(dtype).eval(), tok


def _logits(model, tok):
    enc = tok(PROMPTS, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        return model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits


def _linears(model):
    return [m for m in model.modules() if type(m) is torch.nn.Linear]


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)], ids=["f64", "f32"])
@pytest.mark.parametrize("name", ["llama", "qwen2"])
def test_the_logits_of_the_layers_own_forwards_to_round_off(name, dtype, tol):
    model, tok = _build(name, dtype)
    plain = _logits(model, tok)
    with tl.transposed_linears(model, enabled=True) as switched:
        assert switched == len(_linears(model)) > 0
        assert all("forward" in m.__dict__ for m in _linears(model))
        inside = _logits(model, tok)
    assert inside.dtype == plain.dtype
    torch.testing.assert_close(inside, plain, rtol=0, atol=tol * max(1.0, float(plain.abs().max())))


def test_a_copy_off_by_one_part_in_a_million_is_caught(monkeypatch):
    model, tok = _build("qwen2", torch.float64)
    plain = _logits(model, tok)
    monkeypatch.setattr(tl, "_copy", lambda w: w.detach().t().contiguous() * (1 + 1e-6))
    with tl.transposed_linears(model, enabled=True):
        off = _logits(model, tok)
    assert float((off - plain).abs().max()) > 1e-9  # far outside the 1e-12 the test above allows


def test_forwards_restored_and_copies_freed(monkeypatch):
    model, tok = _build("llama", torch.float32)
    made = []
    real = tl._copy
    monkeypatch.setattr(tl, "_copy", lambda w: made.append(real(w)) or made[-1])
    with tl.transposed_linears(model, enabled=True):
        refs = [weakref.ref(c) for c in made]
        made.clear()
    assert refs and all(r() is None for r in refs)  # nothing keeps a copy alive after the context
    assert all("forward" not in m.__dict__ for m in _linears(model))


def test_a_forward_that_records_a_graph_runs_the_layers_own():
    layer = torch.nn.Linear(8, 5, dtype=torch.float64)
    x = torch.randn(3, 8, dtype=torch.float64)
    plain = layer(x)
    with tl.transposed_linears(layer, enabled=True) as switched:
        assert switched == 1
        inside = layer(x)
        inside.sum().backward()
    assert torch.equal(inside, plain) and inside.grad_fn is not None
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_layers_that_are_not_eligible_are_left_alone():
    class Sub(torch.nn.Linear):
        pass

    net = torch.nn.Sequential(torch.nn.Linear(4, 4).to(torch.bfloat16), Sub(4, 4), torch.nn.Linear(4, 4))
    own = net[2].forward  # an instance forward set by someone else: kept and restored
    net[2].forward = own
    assert not tl.eligible(net[0]) and not tl.eligible(net[1]) and tl.eligible(net[2])
    with tl.transposed_linears(net, enabled=True) as switched:
        assert switched == 1
        assert "forward" not in net[0].__dict__ and "forward" not in net[1].__dict__
        assert net[2].__dict__["forward"] is not own
    assert net[2].__dict__["forward"] is own
    with tl.transposed_linears(net, enabled=False) as switched:
        assert switched == 0 and net[2].__dict__["forward"] is own


def test_layers_sharing_a_weight_share_one_copy(monkeypatch):
    a, b = torch.nn.Linear(6, 6), torch.nn.Linear(6, 6)
    b.weight = a.weight
    made = []
    real = tl._copy
    monkeypatch.setattr(tl, "_copy", lambda w: made.append(w) or real(w))
    with tl.transposed_linears(torch.nn.ModuleList([a, b]), enabled=True) as switched:
        assert switched == 2
    assert len(made) == 1


def _fake_times(monkeypatch, by_shape):
    """``product_times`` replaced by fixed (F.linear, copy) seconds per weight shape; returns the calls."""
    calls = []

    def fake(layer, rows, calls_=3):
        calls.append((tuple(layer.weight.shape), rows))
        return by_shape[tuple(layer.weight.shape)]

    monkeypatch.setattr(tl, "product_times", fake)
    monkeypatch.setattr(tl, "decided", {})
    return calls


def test_pays_follows_the_measurement_with_a_margin(monkeypatch):
    layer = torch.nn.Linear(8, 4)
    calls = _fake_times(monkeypatch, {(4, 8): (1.0, 0.5)})
    assert tl.pays(layer, 16) and calls == [((4, 8), 8), ((4, 8), 16)]  # the batch and half of it
    assert tl.pays(layer, 16) and len(calls) == 2  # remembered: not measured again
    assert tl.pays(layer, 5) and len(calls) == 4  # other rows: measured
    _fake_times(monkeypatch, {(4, 8): (1.0, 0.95)})  # faster, but by less than the margin
    assert not tl.pays(layer, 16)
    _fake_times(monkeypatch, {(4, 8): (1.0, 1.5)})  # slower (as on the AMD machine)
    assert not tl.pays(layer, 16)
    assert not tl.pays(torch.nn.Linear(8, 4).to(torch.bfloat16), 16)  # nothing eligible: nothing measured
    assert not tl.pays(layer, 0)


def test_pays_weighs_each_shape_by_its_layers(monkeypatch):
    """Shape (4, 8) is 2x slower through the copy, (40, 8) 10x faster. With one layer each the copies pay
    (own 1 + 10 = 11 against 2 + 1 = 3 per row count); with ten (4, 8) layers they do not (20 vs 21)."""
    by_shape = {(4, 8): (1.0, 2.0), (40, 8): (10.0, 1.0)}
    _fake_times(monkeypatch, by_shape)
    assert tl.pays(torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.Linear(8, 40)), 1)
    ten = torch.nn.Sequential(*[torch.nn.Linear(8, 4) for _ in range(10)], torch.nn.Linear(8, 40))
    assert not tl.pays(ten, 1)


def test_product_times_measures_both_products():
    own, copy = tl.product_times(torch.nn.Linear(64, 32), 4, calls=3)
    assert own > 0 and copy > 0
    assert isinstance(tl.pays(torch.nn.Linear(64, 32), 4), bool)


def test_measuring_leaves_the_global_generator_alone():
    """The sampler measures right before it draws: the measurement must not consume torch's generator
    (it did, through ``torch.randn``, and the sampler's tokens then differed from generate's)."""
    layer = torch.nn.Linear(16, 8)
    torch.manual_seed(3)
    state = torch.get_rng_state()
    tl.product_times(layer, 4)
    assert torch.equal(torch.get_rng_state(), state)


def test_a_stored_answer_is_used_and_a_new_one_stored(monkeypatch, tmp_path):
    """With a store (the trainer's cache folder), the first answer is written and later processes use it
    without measuring, even where a new measurement would say otherwise; without the store they measure
    (the control: the other answer)."""
    import json

    layer = torch.nn.Linear(8, 4)
    store = tmp_path / "cache" / "transposed_linears.json"
    store.parent.mkdir()
    calls = _fake_times(monkeypatch, {(4, 8): (1.0, 0.5)})
    assert tl.pays(layer, 16, store) is True and len(calls) == 2
    (name, value), = json.loads(store.read_text()).items()
    assert value is True and tl.cpu_name() in name and "16 rows" in name and torch.__version__ in name
    calls = _fake_times(monkeypatch, {(4, 8): (1.0, 1.5)})  # a new process, which would measure False
    assert tl.pays(layer, 16, store) is True and calls == []  # the stored answer, nothing measured
    assert tl.pays(layer, 8, store) is False and len(calls) == 2  # other rows: measured and added
    assert len(json.loads(store.read_text())) == 2
    _fake_times(monkeypatch, {(4, 8): (1.0, 1.5)})
    assert tl.pays(layer, 16) is False  # no store: measured


def test_an_unreadable_or_unwritable_store_means_measuring(monkeypatch, tmp_path):
    layer = torch.nn.Linear(8, 4)
    bad = tmp_path / "transposed_linears.json"
    bad.write_text("{not json")
    calls = _fake_times(monkeypatch, {(4, 8): (1.0, 0.5)})
    assert tl.pays(layer, 16, bad) is True and len(calls) == 2
    calls = _fake_times(monkeypatch, {(4, 8): (1.0, 0.5)})
    assert tl.pays(layer, 16, tmp_path / "missing" / "folder" / "t.json") is True and len(calls) == 2
