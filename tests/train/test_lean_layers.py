"""Lean layers (``ladtrain/lean_layers.py``): the training forward keeps fewer activations and gives the
same bits. Values and every parameter's gradient equal those of the plain model exactly (``torch.equal``)
in float32 and float64, for Llama and Qwen2, through the trainer's own log-prob path (shared prompts,
length buckets, chunked output layer); a whole training run gives the same metrics and weights. The MLP's
``act(gate)`` and ``act(gate) * up`` are not alive after the forward, and each norm runs again in
backward (it kept only its input). Controls: a recipe that recomputes a wrong value is caught by the
exactness test, and without lean layers the intermediates stay alive (so those tests can fail)."""

from __future__ import annotations

import copy
import gc
import json
import weakref
from dataclasses import replace

import pytest
import torch

from ladtrain import lean_layers, models
from ladtrain.rollout import HFSampler, token_logprobs
from tests.train.test_checkpointing import PROMPTS, G, _rollout

SPEC = models.TinySpec(hidden=32, layers=3, heads=4, intermediate=64)


def _llama(dtype):
    tok = models.build_tokenizer()
    return models.build_tiny_model(tok, SPEC, seed=0).to(dtype), tok


def _qwen2(dtype):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = models.build_tokenizer()
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=True, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    return Qwen2ForCausalLM(config).to(dtype), tok


def _logp_and_grads(model, rollout):
    model.zero_grad(set_to_none=True)
    model.train()
    logp = token_logprobs(model, rollout, 0.8)  # the trainer's path: shared prompts, buckets, chunked
    weights = torch.linspace(-1.0, 1.0, logp.numel(), dtype=logp.dtype).view_as(logp)
    (logp * weights).sum().backward()
    return logp.detach(), [p.grad.clone() for p in model.parameters()]


def _same(a, b) -> bool:
    return torch.equal(a[0], b[0]) and all(torch.equal(x, y) for x, y in zip(a[1], b[1]))


@pytest.mark.parametrize("build", [_llama, _qwen2], ids=["llama", "qwen2"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_lean_layers_give_the_same_values_and_gradients_bit_for_bit(build, dtype):
    model, tok = build(dtype)
    rollout = _rollout(model, tok)
    plain = _logp_and_grads(model, rollout)
    lean = copy.deepcopy(model)
    layers = len(lean.model.layers)
    assert lean_layers.apply(lean) == 3 * layers + 1  # each layer's MLP and two norms, the final norm
    assert lean_layers.active(lean) and not lean_layers.active(model)
    assert _same(_logp_and_grads(lean, rollout), plain)
    assert lean_layers.remove(lean) == 3 * layers + 1 and not lean_layers.active(lean)
    assert _same(_logp_and_grads(lean, rollout), plain)


def test_a_wrong_recipe_would_be_caught(monkeypatch):
    """Control: the exactness test fails when the recomputed intermediate is off by one part in 10^6."""
    model, tok = _llama(torch.float32)
    rollout = _rollout(model, tok)
    plain = _logp_and_grads(model, rollout)
    real = lean_layers._Recipe.unpack
    monkeypatch.setattr(lean_layers._Recipe, "unpack", lambda self: real(self) * (1 + 1e-6))
    lean_layers.apply(model)
    lean = _logp_and_grads(model, rollout)
    assert torch.equal(lean[0], plain[0])  # the forward is untouched; only the backward reads recipes
    assert not _same(lean, plain)


def _mlp_intermediates(model):
    """Weak references to every MLP's ``act(gate)`` (the activation's output) and ``act(gate) * up``
    (``down_proj``'s input), recorded by hooks as the forward runs."""
    refs = []
    for layer in model.model.layers:
        layer.mlp.act_fn.register_forward_hook(lambda m, args, out: refs.append(weakref.ref(out)))
        layer.mlp.down_proj.register_forward_pre_hook(lambda m, args: refs.append(weakref.ref(args[0])))
    return refs


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "control-plain"])
def test_the_mlp_keeps_neither_its_activation_nor_its_product(lean):
    model, tok = _llama(torch.float32)
    if lean:
        lean_layers.apply(model)
    refs = _mlp_intermediates(model)
    ids = torch.randint(5, 40, (4, 9))
    out = model(input_ids=ids).logits  # the graph (and whatever it saved) is alive through `out`
    gc.collect()
    alive = sum(r() is not None for r in refs)
    assert len(refs) == 2 * len(model.model.layers)
    assert alive == (0 if lean else len(refs))
    out.sum().backward()  # and the backward still runs from what was kept
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_each_norm_recomputes_in_backward_and_not_outside_autograd():
    model, tok = _llama(torch.float32)
    lean_layers.apply(model)
    calls = []
    for m in model.modules():
        if type(m).__name__.endswith("RMSNorm"):  # count runs of the norm's own forward
            own = getattr(m, lean_layers._ORIGINAL)
            setattr(m, lean_layers._ORIGINAL, lambda x, own=own: calls.append(1) or own(x))
    norms = 2 * len(model.model.layers) + 1
    ids = torch.randint(5, 40, (2, 7))
    out = model(input_ids=ids).logits
    assert len(calls) == norms
    out.sum().backward()
    assert len(calls) == 2 * norms  # the checkpoint reran each norm's forward once
    calls.clear()
    with torch.no_grad():  # generation and evaluation: the module's own forward, once
        model(input_ids=ids)
    assert len(calls) == norms


def test_generation_is_unchanged():
    model, tok = _llama(torch.float32)
    torch.manual_seed(3)
    plain = HFSampler(model, tok, 1.0, 8).sample(PROMPTS, G).completion_ids
    lean_layers.apply(model)
    torch.manual_seed(3)
    assert torch.equal(HFSampler(model, tok, 1.0, 8).sample(PROMPTS, G).completion_ids, plain)


@pytest.mark.parametrize("width", [64, lean_layers.MIN_WIDTH], ids=["narrow", "wide"])
@pytest.mark.parametrize("checkpointing", [False, True], ids=["off", "on"])
def test_the_trainer_uses_them_where_they_pay_and_checkpointing_is_off(checkpointing, width):
    from ladtrain import distributed, start
    from ladtrain.config import TrainConfig

    tok = models.build_tokenizer()
    model = models.build_tiny_model(tok, replace(SPEC, intermediate=width), seed=0)
    assert lean_layers.pays(model) is (width >= lean_layers.MIN_WIDTH)
    cfg = replace(TrainConfig(), gradient_checkpointing=checkpointing)
    model, _ = start.prepare_model(cfg, model, distributed.World(), torch.device("cpu"))
    assert lean_layers.active(model) is (not checkpointing and width >= lean_layers.MIN_WIDTH)
    models.enable_gradient_checkpointing(model)  # switching checkpointing on later removes them
    assert not lean_layers.active(model)


def test_a_training_run_is_the_same_with_and_without_them(cache, tmp_path, tiny, monkeypatch):
    """Two whole runs (warm-up, RL steps, evaluation): the same metrics rows (timings aside) and the same
    final weights, with lean layers and with ``apply`` switched off."""
    from ladtrain import trainer
    from ladtrain.config import TrainConfig

    def run(name):
        cfg = replace(TrainConfig(), out=str(tmp_path / name), **{**tiny, "lr": 1e-2})
        trainer.train(cfg.validate())
        rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        weights = (tmp_path / name / "checkpoint" / "model.safetensors").read_bytes()
        return [{k: v for k, v in r.items() if "time" not in k and "sec" not in k} for r in rows], weights

    applied = []
    real = lean_layers.apply
    monkeypatch.setattr(lean_layers, "pays", lambda m: True)  # the built-in model is narrower than MIN_WIDTH
    monkeypatch.setattr(lean_layers, "apply", lambda m: applied.append(real(m)) or applied[-1])
    lean = run("lean")
    assert applied and applied[0] > 0
    monkeypatch.setattr(lean_layers, "apply", lambda m: 0)  # start.prepare_model looks it up per call
    plain = run("plain")
    assert lean[0] == plain[0] and lean[1] == plain[1]
