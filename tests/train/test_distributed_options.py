"""Memory options: gradient checkpointing and LoRA (peft) change memory, not the maths; bf16 autocast on GPU.

Oracles: checkpointing recomputes the same forward, so the gradient must equal the plain one; LoRA starts
with ``B = 0`` so the adapted model computes the base model's log-probs, trains only the adapters, and
its merged checkpoint reloads as a plain Hugging Face model with the adapted model's log-probs."""

from __future__ import annotations

import copy

import pytest
import torch
from test_accumulation import HP, fixed_batch, loss_of  # sibling test module

from ladtrain import distributed, losses, models
from ladtrain.rollout import token_logprobs
from ladtrain.step import Targets, backward


def _grad(model, batch):
    _, rollout, logp_old, advantages, mask = batch
    backward(
        model, rollout, Targets(advantages, mask, logp_old), loss_of("lad:js"), HP, world=distributed.World()
    )
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_gradient_checkpointing_gives_the_plain_gradient():
    batch = fixed_batch()
    plain = _grad(copy.deepcopy(batch[0]), batch)
    ckpt_model = copy.deepcopy(batch[0])
    models.enable_gradient_checkpointing(ckpt_model)
    ckpt_model.train()
    assert ckpt_model.is_gradient_checkpointing
    torch.testing.assert_close(_grad(ckpt_model, batch), plain, rtol=1e-5, atol=1e-7)


def test_lora_trains_adapters_only_and_merges_into_a_plain_checkpoint(tmp_path):
    pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    model, rollout, logp_old, advantages, mask = batch = fixed_batch()
    with torch.no_grad():
        base_logp = token_logprobs(model, rollout)
    lora = models.apply_lora(copy.deepcopy(model), models.Lora(r=4, alpha=8))
    trainable = {n for n, p in lora.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    with torch.no_grad():
        torch.testing.assert_close(token_logprobs(lora, rollout), base_logp, rtol=0, atol=1e-6)
    opt = torch.optim.SGD(models.trainable_parameters(lora), lr=1.0)
    _grad(lora, batch)
    opt.step()
    with torch.no_grad():
        adapted = token_logprobs(lora, rollout)
    assert (adapted - base_logp).abs().max() > 1e-4  # the adapters moved the policy
    plain = models.merged(lora)
    plain.save_pretrained(tmp_path / "merged")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert not any("lora" in n for n, _ in reloaded.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(token_logprobs(reloaded, rollout), adapted, rtol=0, atol=1e-5)


def test_lora_on_a_model_without_the_target_modules_is_a_one_line_error():
    pytest.importorskip("peft")
    model = fixed_batch()[0]
    with pytest.raises(models.ModelError, match="none of"):
        models.apply_lora(model, models.Lora(target_modules=("c_attn",)))


def test_unknown_strategy_is_a_one_line_error():
    with pytest.raises(distributed.DistributedError, match="--parallel"):
        distributed.prepare(torch.nn.Linear(1, 1), "zero3", distributed.World(), torch.device("cpu"))


def test_every_loss_declares_what_it_averages_over():
    """The one answer (``Loss.unit``; the old second table is gone): a loss cannot be built without it."""
    for spec in ("lad", "lad:kl", "grpo", "dr_grpo", "dapo", "gspo", "flowrl", "ladw"):
        assert losses.get(spec).unit(HP) in ("token", "sequence")
    assert losses.get("lad").unit(type("H", (), {"level": "sequence"})) == "sequence"
    with pytest.raises(TypeError, match="unit"):
        losses.Loss("x", lambda x, hp: None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 autocast is a GPU path (no GPU here)")
def test_bf16_autocast_gradient_is_close_to_float32_on_gpu():
    model, rollout, logp_old, advantages, mask = fixed_batch()
    dev = torch.device("cuda")
    to = lambda t: t.to(dev)  # noqa: E731
    ro = rollout.rows(slice(None))
    ro = type(ro)(
        to(ro.prompt_ids),
        to(ro.prompt_mask),
        to(ro.completion_ids),
        to(ro.completion_mask),
        ro.texts,
        ro.group_size,
    )
    grads = []
    for bf16 in (False, True):
        m = copy.deepcopy(model).to(dev)
        hp = type("HPbf16", (HP,), {"bf16": bf16})
        backward(m, ro, Targets(to(advantages), to(mask), to(logp_old)), loss_of("lad:js"), hp,
                 world=distributed.World())
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]).float())
    cos = torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0)
    assert cos > 0.99
