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


def test_pays_only_for_weights_larger_than_the_caches():
    model, _ = _model()
    assert not tl.pays(model)
    with torch.device("meta"):
        big = torch.nn.Linear(4096, 4096)  # 64 MiB of float32 weights, but not on the CPU
    assert not tl.pays(big)
    big = torch.nn.Linear(4096, 4096, bias=False)
    assert tl.pays(big) and not tl.pays(torch.nn.Linear(4096, 4095, bias=False))
