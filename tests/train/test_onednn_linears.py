"""oneDNN products for the linear layers (``ladtrain/onednn_linears.py``).

Oracle: the float64 product of the same float32 values. oneDNN's float32 products and gradients stay
within float32 round-off of it (1e-5 of the output's scale; torch's own float32 product is as far), and
each test has a control: a weight (or gradient) off by one part in a thousand falls outside that bound.
At the model level the switched model's log-probs and gradients equal the plain model's to round-off,
and a switched forward that loses the autograd graph is caught. Also: reordered weights are used only
while their weight is unchanged (a stale copy is caught), layers that are not eligible keep their own
forward (float64 and autocast bit for bit), a deep copy computes with its own weights, the decision is
measured with a margin and remembered per machine, and the trainer records and resumes it.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from ladtrain import distributed, start
from ladtrain import onednn_linears as ol
from ladtrain.rollout import token_logprobs
from tests.train.test_logprobs import _llama, _logp_and_grads, _rollout

pytestmark = pytest.mark.skipif(not ol.available(), reason="this torch build has no oneDNN linear product")
TOL = 1e-5  # float32 round-off relative to the output's scale (torch's float32 product: ~1e-7 to 1e-6)


def _case(rows=7, n_in=48, n_out=40, bias=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, n_in, generator=gen)
    w = torch.randn(n_out, n_in, generator=gen) / n_in**0.5
    b = torch.randn(n_out, generator=gen) if bias else None
    return x, w, b


def _f64(x, w, b):
    return F.linear(x.double(), w.double(), None if b is None else b.double())


def _err(out, ref):
    return float((out.double() - ref).abs().max() / ref.abs().max())


@pytest.mark.parametrize("rows", [1, 7, 300])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_equals_the_float64_product_to_float32_round_off(rows, bias):
    x, w, b = _case(rows, bias=bias)
    ref = _f64(x, w, b)
    out = ol.linear(x, w, b)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert _err(out, ref) < TOL
    assert _err(F.linear(x, w, b), ref) < TOL  # torch's float32 product is as far from the oracle
    assert _err(ol.linear(x, w * (1 + 1e-3), b), ref) > TOL  # control: a weight off by 1e-3 is caught


def test_linear_takes_batched_inputs_strided_views_and_reordered_weights():
    x, w, b = _case(rows=12)
    ref = _f64(x, w, b)
    assert _err(ol.linear(x.view(3, 4, -1), w, b).reshape(12, -1), ref) < TOL  # (..., in)
    wt = w.t().contiguous()
    assert _err(ol.linear(x, wt.t(), b), ref) < TOL  # a transposed view as the weight
    assert _err(ol.mm(x, w.t()), _f64(x, w, None)) < TOL
    reordered = torch.ops.mkldnn._reorder_linear_weight(w, 12)
    assert reordered.layout != torch.strided
    assert _err(ol.linear(x, reordered, b), ref) < TOL


def test_linear_falls_back_to_f_linear_where_onednn_does_not_apply():
    x, w, b = (t.double() for t in _case())
    assert torch.equal(ol.linear(x, w, b), F.linear(x, w, b))  # float64: torch's product, bit for bit


def _grads(fn, x, w, b):
    x, w, b = (t.detach().clone().requires_grad_() for t in (x, w, b))
    out = fn(x, w, b)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    (out * weights).sum().backward()
    return out.detach(), (x.grad, w.grad, b.grad)


def test_gradients_equal_the_float64_gradients_and_a_wrong_one_is_caught(monkeypatch):
    x, w, b = _case(rows=33)
    _, ref = _grads(F.linear, x.double(), w.double(), b.double())
    out, got = _grads(ol.Linear.apply, x, w, b)
    assert out.dtype == torch.float32
    for name, g, r in zip("xwb", got, ref):
        assert g.dtype == torch.float32 and _err(g, r) < TOL, name
    real = ol.Linear.backward

    def off(ctx, grad):  # the bug: a weight gradient off by one part in a thousand
        gx, gw, gb = real(ctx, grad)
        return gx, gw * (1 + 1e-3), gb

    monkeypatch.setattr(ol.Linear, "backward", staticmethod(off))
    _, bad = _grads(ol.Linear.apply, x, w, b)
    assert _err(bad[1], ref[1]) > TOL


def test_a_frozen_weight_gets_no_gradient_and_x_still_does():
    x, w, b = _case()
    x.requires_grad_()
    ol.Linear.apply(x, w, None).sum().backward()  # w, like a LoRA layer's frozen base, needs no gradient
    assert w.grad is None and x.grad is not None
    torch.testing.assert_close(x.grad, w.sum(0).expand_as(x), rtol=1e-5, atol=1e-6)


def test_a_switched_model_has_the_plain_models_logprobs_and_gradients(monkeypatch):
    model, rollout = _llama(), _rollout()
    ref, ref_grads = _logp_and_grads(model, rollout)
    assert ol.apply(model) == sum(type(m) is torch.nn.Linear for m in model.modules()) > 0
    assert ol.active(model.lm_head.weight)  # the chunked output layer's products go through oneDNN too
    calls = []
    real_linear = ol.linear
    monkeypatch.setattr(ol, "linear", lambda *a: calls.append(1) or real_linear(*a))
    out, grads = _logp_and_grads(model, rollout)
    assert calls  # oneDNN did the products
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    # the bug: a switched forward without the autograd function (oneDNN's op records no gradient)
    monkeypatch.setattr(ol.Linear, "apply", lambda x, w, b: real_linear(x, w, b).detach())
    model.zero_grad(set_to_none=True)
    logp = token_logprobs(model, rollout, 0.7)
    (logp * torch.linspace(-1.0, 1.0, logp.numel()).view_as(logp)).sum().backward()
    lost = model.model.layers[0].self_attn.q_proj.weight.grad
    assert lost is None  # the layers' gradients are gone: the comparison above would fail
    assert ol.remove(model) > 0 and not ol.switched(model)
    assert all("forward" not in m.__dict__ for m in model.modules() if type(m) is torch.nn.Linear)


def _layer():
    torch.manual_seed(0)
    layer = torch.nn.Linear(48, 40)
    ol.apply(layer)
    return layer


def test_reordered_weights_only_while_the_weight_is_unchanged(monkeypatch):
    layer = _layer()
    x = torch.randn(5, 48)
    with torch.no_grad(), ol.packed(layer, rows=5) as n:
        assert n == 1 and id(layer.weight) in ol._reordered
        assert _err(layer(x), _f64(x, layer.weight, layer.bias)) < TOL
        layer.weight.add_(0.5)  # an optimizer step: the weight's version moves on
        assert _err(layer(x), _f64(x, layer.weight, layer.bias)) < TOL  # the new weight, not the copy
        # control: the same copy used regardless of the version gives the old weight's product
        version, reordered = ol._reordered[id(layer.weight)]
        ol._reordered[id(layer.weight)] = (layer.weight._version, reordered)
        assert _err(layer(x), _f64(x, layer.weight, layer.bias)) > 1e-2
    assert id(layer.weight) not in ol._reordered  # freed on exit


def test_layers_that_are_not_eligible_keep_their_own_forward():
    layer64 = torch.nn.Linear(8, 4).double()
    assert ol.apply(layer64) == 0 and "forward" not in layer64.__dict__
    layer = _layer()
    x = torch.randn(3, 48)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = F.linear(x, layer.weight, layer.bias)
    assert inside.dtype == torch.bfloat16 and torch.equal(inside, plain)  # autocast: its own forward
    assert torch.equal(layer(x), ol.linear(x, layer.weight, layer.bias))  # outside autocast: oneDNN's
    # a tensor subclass (FSDP2 shards weights into DTensors between forwards) is left to torch: packed()
    # reorders no such weight (oneDNN's reorder has no DTensor rule: the FSDP2 run failed before this)

    class Sub(torch.Tensor):
        pass

    assert not ol._usable(layer.weight.detach().as_subclass(Sub)) and ol._usable(layer.weight.detach())


def test_a_deep_copy_computes_with_its_own_weights():
    layer = _layer()
    twin = copy.deepcopy(layer)
    with torch.no_grad():
        twin.weight.mul_(2)
    x = torch.randn(3, 48)
    assert _err(twin(x), _f64(x, twin.weight, twin.bias)) < TOL
    assert _err(layer(x), _f64(x, layer.weight, layer.bias)) < TOL


def _fake_times(monkeypatch, by_rows):
    calls = []

    def fake(layer, rows, calls_=3):
        calls.append(rows)
        return by_rows(rows)

    monkeypatch.setattr(ol, "product_times", fake)
    monkeypatch.setattr(ol.transposed_linears, "decided", {})
    return calls


def test_pays_follows_the_measurement_with_a_margin_and_is_remembered(monkeypatch, tmp_path):
    layer = torch.nn.Linear(8, 4)
    calls = _fake_times(monkeypatch, lambda rows: (1.0, 0.5))
    assert ol.pays(layer, 16, 16) and calls == [16, 256]
    assert ol.pays(layer, 16, 16) and len(calls) == 2  # remembered in the process
    _fake_times(monkeypatch, lambda rows: (1.0, 0.95))  # faster, but by less than the margin
    assert not ol.pays(layer, 16, 16)
    # per token, not per call: 1/16 + 16/256 = 0.125 against 0.5/16 + 17/256 = 0.098 (summed per call the
    # update's 256 rows would decide alone: 17 against 17.5)
    _fake_times(monkeypatch, lambda rows: (1.0, 0.5) if rows == 16 else (16.0, 17.0))
    assert ol.pays(layer, 16, 16)
    store = tmp_path / "linear_kernels.json"
    calls = _fake_times(monkeypatch, lambda rows: (1.0, 0.5))
    assert ol.pays(layer, 16, 16, store) and len(calls) == 2
    saved = json.loads(store.read_text())
    assert list(saved.values()) == [True] and next(iter(saved)).startswith("onednn | ")
    calls = _fake_times(monkeypatch, lambda rows: (1.0, 2.0))  # a new process: the store answers
    assert ol.pays(layer, 16, 16, store) and calls == []
    assert not ol.pays(torch.nn.Linear(8, 4).double(), 16, 16)  # nothing eligible: nothing measured


def test_the_run_decides_once_and_resume_reads_run_json(monkeypatch, tmp_path):
    from ladtrain.config import TrainConfig

    monkeypatch.setattr(ol, "pays", lambda *a, **k: True)
    world, cpu = distributed.World(), torch.device("cpu")
    cfg = TrainConfig(out=str(tmp_path / "run"))
    fresh = SimpleNamespace(previous_run=None)
    assert start.linear_kernels(cfg, _llama(), fresh, world, cpu) == "onednn"  # auto: measured
    monkeypatch.setattr(ol, "pays", lambda *a, **k: False)
    assert start.linear_kernels(cfg, _llama(), fresh, world, cpu) == "torch"
    onednn = replace(cfg, linear_kernels="onednn")
    assert start.linear_kernels(onednn, _llama(), fresh, world, cpu) == "onednn"
    assert start.linear_kernels(cfg, _llama(), fresh, world, torch.device("meta")) == "torch"  # not a CPU
    resumed = SimpleNamespace(previous_run={"linear_kernels": "onednn"})
    assert start.linear_kernels(cfg, _llama(), resumed, world, cpu) == "onednn"  # what the run used
    old = SimpleNamespace(previous_run={})  # a run.json from before the option: torch's products
    assert start.linear_kernels(onednn, _llama(), old, world, cpu) == "torch"


@pytest.mark.parametrize("bias", [True, False])
def test_the_chunked_output_layer_through_onednn_and_a_lost_gradient_slice_is_caught(bias, monkeypatch):
    """The output layer's chunked log-probs (``ladtrain.logprobs``) with its weight switched: values and
    gradients against the float64 plain path; the weight gradient is accumulated in slices of
    ``ACCUMULATE_ROWS`` rows (7 here, so 50 rows take 8 slices, the last one short). Control: an
    accumulation that loses the short last slice is caught."""
    from ladtrain import logprobs
    from tests.train.test_logprobs import _chunked, _grads, _head_case, _plain

    monkeypatch.setattr(logprobs, "ACCUMULATE_ROWS", 7)
    h, w, b, ids = _head_case(torch.float32, N=40, V=50, bias=bias)
    ref, ref_grads = _grads(_plain(0.7), *(None if t is None else t.detach().double().requires_grad_()
                                           for t in (h, w, b)), ids)
    holder = torch.nn.Linear(16, 50)
    holder.weight = torch.nn.Parameter(w.detach().clone())
    ol.apply(holder)
    w2 = holder.weight
    assert ol.active(w2) and not ol.active(w)
    products = []
    real = ol.linear
    monkeypatch.setattr(ol, "linear", lambda *a: products.append(1) or real(*a))
    out, grads = _grads(_chunked(0.7, 9), h, w2, b, ids)
    assert products and out.dtype == torch.float32
    assert _err(out, ref) < TOL
    for g, r in zip(grads, ref_grads):
        assert _err(g, r) < TOL
    real_accumulate = logprobs._accumulate

    def loses_the_last_slice(out_, a, b_, alpha, fast=False):
        if not fast:
            return real_accumulate(out_, a, b_, alpha, fast)
        n = logprobs.ACCUMULATE_ROWS
        for s in range(0, out_.shape[0] - n + 1, n):  # the bug: whole slices only (row 49 is left out)
            out_[s : s + n].add_(ol.mm(a[s : s + n], b_), alpha=alpha)

    monkeypatch.setattr(logprobs, "_accumulate", loses_the_last_slice)
    _, bad = _grads(_chunked(0.7, 9), h, w2, b, ids)
    assert _err(bad[1], ref_grads[1]) > TOL
