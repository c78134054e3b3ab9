"""Packing (``ladtrain/packing.py``): in the update's one pass over the completions, the MLPs run only on
the positions that are read, and the log-probs and every gradient are those of the padded pass (float64
to 1e-12, float32 to round-off), for Llama and Qwen2, with and without lean layers. Controls: a pack that
drops one position that is read is caught; under gradient checkpointing nothing is packed."""

from __future__ import annotations

import pytest
import torch

from ladtrain import lean_layers, models, packing
from ladtrain.rollout import token_logprobs
from tests.train.test_checkpointing import _rollout
from tests.train.test_lean_layers import _llama, _qwen2


def _logp_and_grads(model, rollout, pack):
    model.zero_grad(set_to_none=True)
    model.train()
    logp = token_logprobs(model, rollout, 0.8, buckets=None if pack else [], pack=pack)
    weights = torch.linspace(-1.0, 1.0, logp.numel(), dtype=logp.dtype).view_as(logp)
    (logp * weights).sum().backward()
    return logp.detach(), torch.cat([p.grad.flatten() for p in model.parameters()])


def _mlp_rows(model):
    """The leading shape of every MLP input, recorded as the forward runs."""
    seen = []
    for layer in model.model.layers:
        layer.mlp.down_proj.register_forward_pre_hook(lambda m, a: seen.append(tuple(a[0].shape[:-1])))
    return seen


@pytest.mark.parametrize("lean", [False, True], ids=["plain", "lean"])
@pytest.mark.parametrize("build", [_llama, _qwen2], ids=["llama", "qwen2"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_packed_mlps_give_the_padded_pass_log_probs_and_gradients(build, dtype, lean, llama_in_float64):
    model, tok = build(dtype)
    rollout = _rollout(model, tok)  # lengths 1..T: a third of the positions are padding
    if lean:
        lean_layers.apply(model)
    reference = _logp_and_grads(model, rollout, pack=False)
    seen = _mlp_rows(model)
    logp, grad = _logp_and_grads(model, rollout, pack=True)
    B, T = rollout.completion_ids.shape
    read = int((rollout.lengths - 1).clamp(min=0).sum())  # positions t < length - 1 of the completions pass
    layers = len(model.model.layers)
    assert seen[layers:2 * layers] == [(read,)] * layers and read < B * (T - 1)  # completions: live rows only
    tol = dict(rtol=1e-12, atol=1e-13) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logp, reference[0], **tol)
    torch.testing.assert_close(grad, reference[1], **tol)
    assert lean_layers.active(model) is lean  # the context put every forward back
    assert not any("forward" in vars(m) for m in model.modules() if not lean_layers.active(model))


def test_a_pack_that_drops_a_read_position_is_caught(monkeypatch):
    model, tok = _llama(torch.float64)
    rollout = _rollout(model, tok)
    reference = _logp_and_grads(model, rollout, pack=False)
    real = packing._Pack.__init__

    def short(self, keep):
        real(self, keep)
        self.index = self.index[:-1]  # the last read position is left out

    monkeypatch.setattr(packing._Pack, "__init__", short)
    logp, grad = _logp_and_grads(model, rollout, pack=True)
    assert not torch.allclose(logp, reference[0], rtol=1e-6, atol=1e-8)


def test_nothing_is_packed_under_gradient_checkpointing():
    model, tok = _llama(torch.float32)
    rollout = _rollout(model, tok)
    assert packing.applicable(model.model)
    models.enable_gradient_checkpointing(model)
    model.train()
    assert not packing.applicable(model.model)
    seen = _mlp_rows(model)
    _logp_and_grads(model, rollout, pack=None)
    assert all(len(shape) == 2 for shape in seen)  # (rows, positions): never a packed (N,) block


def test_inputs_of_another_layout_run_as_usual():
    model, _ = _llama(torch.float32)
    keep = torch.tensor([[True, False, True]])
    mlp = model.model.layers[0].mlp
    x = torch.randn(2, 5, model.config.hidden_size)
    with packing.only_rows(model, keep):
        inside = mlp(x)  # (2, 5) is not the pack's (1, 3) layout
        packed = mlp(x[:1, :3])
    assert torch.equal(inside, mlp(x))
    assert torch.equal(packed[0, 1], torch.zeros_like(packed[0, 1]))
    torch.testing.assert_close(packed[0, [0, 2]], mlp(x[:1, :3])[0, [0, 2]])
