"""TRL plug-in: a tiny local model trains two steps through ``GRPOTrainer`` with the LAD loss, and the loss
TRL computes equals ``lad_loss`` on tensors this test recomputes itself (an independent forward pass for
``logp``, the previous step's forward pass for ``logp_old``, and the advantages from the rewards)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("trl")
pytest.importorskip("datasets")

from ladtheory.divergences import DivergenceError  # noqa: E402
from ladtheory.objective import lad_loss  # noqa: E402
from ladtrain import models  # noqa: E402
from ladtrain.integrations.trl import LADGRPOConfig, LADGRPOTrainer  # noqa: E402

G = 4  # completions per prompt
TEMPERATURE = 0.9


def _reward(completions, **_):
    """Fraction of digits in the completion (varied across a group of random completions)."""
    return [sum(c.isdigit() for c in text) / max(1, len(text)) for text in completions]


def _config(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path), per_device_train_batch_size=G, num_generations=G,
                max_completion_length=6,
                max_steps=2, learning_rate=0.05, report_to="none", bf16=False, use_cpu=True,
                gradient_checkpointing=False, logging_steps=1, save_strategy="no", temperature=TEMPERATURE,
                num_iterations=2, seed=0, lad_divergence="js", lad_eta=0.5)
    base.update(kw)
    return LADGRPOConfig(**base)


def _tiny():
    tokenizer = models.build_tokenizer()
    spec = models.TinySpec(hidden=32, layers=1, heads=2, intermediate=64)
    model = models.build_tiny_model(tokenizer, spec, seed=0)
    return model, tokenizer


def _independent_logp(model, inputs) -> torch.Tensor:
    """log pi(completion token) from a plain forward pass: logits at the previous position / temperature."""
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)  # (B, P + T)
    attn = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)  # (B, P + T)
    T = inputs["completion_ids"].shape[1]
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attn).logits[:, -T - 1 : -1].float()  # (B, T, V)
        logits = logits / TEMPERATURE
    return torch.log_softmax(logits, -1).gather(-1, inputs["completion_ids"][..., None]).squeeze(-1)  # (B, T)


def test_trl_grpo_trainer_trains_two_steps_with_the_lad_loss(tmp_path):
    from datasets import Dataset

    model, tokenizer = _tiny()
    dataset = Dataset.from_dict({"prompt": ["12+3=", "7*8=", "5-2=", "9+9="]})
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    calls: list[dict] = []
    rewards: list[list[float]] = []

    def reward(completions, **kw):
        out = _reward(completions, **kw)
        rewards.append(out)
        return out

    class Recording(LADGRPOTrainer):
        def _compute_loss(self, model, inputs):
            logp = _independent_logp(model, inputs)
            loss = super()._compute_loss(model, inputs)
            calls.append({"inputs": {k: v.detach().clone() for k, v in inputs.items() if torch.is_tensor(v)},
                          "logp": logp, "loss": loss.detach().clone()})
            return loss

    trainer = Recording(model=model, reward_funcs=reward, args=_config(tmp_path), train_dataset=dataset,
                        processing_class=tokenizer)
    trainer.train()

    assert trainer.state.global_step == 2 and len(calls) == 2
    # num_iterations=2: one generation, two optimiser steps on it; the second step's old policy is the
    # model as it was at the first step, which this test evaluated itself.
    first, second = calls
    assert torch.equal(first["inputs"]["completion_ids"], second["inputs"]["completion_ids"])
    # TRL may reorder the generation batch; the batch here is one group, so recompute each row's reward
    # from its own decoded completion.
    texts = [tokenizer.decode(ids[m.bool()], skip_special_tokens=True)
             for ids, m in zip(second["inputs"]["completion_ids"], second["inputs"]["completion_mask"])]
    assert sorted(_reward(texts)) == pytest.approx(sorted(rewards[0]))
    r = torch.tensor(_reward(texts), dtype=torch.float32)
    assert r.std() > 0, "the rewards of the group must differ for a non-trivial test"
    expected_adv = (r - r.mean()) / (r.std() + 1e-4)  # TRL's group normalisation (scale_rewards="group")
    torch.testing.assert_close(second["inputs"]["advantages"], expected_adv, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(second["inputs"]["old_per_token_logps"], first["logp"], rtol=1e-4, atol=1e-5)
    mask = second["inputs"]["completion_mask"]
    for call, logp_old in ((first, first["logp"]), (second, first["logp"])):
        want, _ = lad_loss(call["logp"].double(), logp_old.double(), expected_adv.double(), mask,
                           divergence="js", eta=0.5)
        torch.testing.assert_close(call["loss"].double(), want, rtol=1e-4, atol=1e-6)
    # The second step is off-policy (rho != 1), so its loss differs from the first's: a real update happened.
    assert (second["logp"] - first["logp"]).abs()[mask.bool()].max() > 1e-4
    assert not torch.allclose(first["loss"], second["loss"], rtol=1e-4)
    # TRL's own log reports the same loss it back-propagated.
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert logged == pytest.approx([c["loss"].item() for c in calls], rel=1e-3, abs=1e-4)
    assert any("lad/weight_mean" in h for h in trainer.state.log_history)
    # TRL's usual per-step key for the policy loss (its own losses log it; a _compute_loss override does not
    # unless it says so): one value per step, equal to the loss back-propagated at that step.
    policy = [h["policy_loss"] for h in trainer.state.log_history if "policy_loss" in h]
    assert policy == pytest.approx([c["loss"].item() for c in calls], rel=1e-4, abs=1e-6)
    assert any(not torch.equal(before[n], p.detach()) for n, p in model.named_parameters())


def test_trl_trainer_refuses_options_that_add_terms_lad_does_not_have(tmp_path):
    model, tokenizer = _tiny()
    with pytest.raises(ValueError, match="beta"):
        LADGRPOTrainer(model=model, reward_funcs=_reward, args=_config(tmp_path, beta=0.1), train_dataset=[],
                       processing_class=tokenizer)
    with pytest.raises(DivergenceError):
        LADGRPOTrainer(model=model, reward_funcs=_reward, args=_config(tmp_path, lad_divergence="nope"),
                       train_dataset=[], processing_class=tokenizer)
    with pytest.raises(ValueError, match="lad_level"):
        LADGRPOTrainer(model=model, reward_funcs=_reward, args=_config(tmp_path, lad_level="tokens"),
                       train_dataset=[], processing_class=tokenizer)


def test_trl_plugin_uses_the_theory_lad_loss_itself():
    import ladtheory.objective
    from ladtrain.integrations import trl as lad_trl

    assert lad_trl.lad_loss is ladtheory.objective.lad_loss


def test_trl_gradient_accumulation_window_loss_is_the_window_token_mean(tmp_path):
    """gradient_accumulation_steps=2: TRL back-propagates two micro-batch losses; their sum must be
    lad_loss over the whole window's tokens (a global token mean), whatever the micro-batches' lengths."""
    from datasets import Dataset

    model, tokenizer = _tiny()
    with torch.no_grad():  # a large EOS embedding (tied head): EOS likely at some positions, so lengths vary
        model.get_input_embeddings().weight[tokenizer.eos_token_id] *= 40
    dataset = Dataset.from_dict({"prompt": ["12+3=", "7*8=", "5-2=", "9+9="]})
    calls: list[dict] = []

    class Recording(LADGRPOTrainer):
        def _compute_loss(self, model, inputs):
            loss = super()._compute_loss(model, inputs)
            calls.append({"inputs": {k: v.detach().clone() for k, v in inputs.items() if torch.is_tensor(v)},
                          "logp": _independent_logp(model, inputs), "loss": loss.detach().clone()})
            return loss

    args = _config(tmp_path, max_steps=1, num_iterations=1, gradient_accumulation_steps=2,
                   max_completion_length=8)
    trainer = Recording(model=model, reward_funcs=_reward, args=args, train_dataset=dataset,
                        processing_class=tokenizer)
    trainer.train()
    assert len(calls) == 2
    T = max(c["inputs"]["completion_mask"].shape[1] for c in calls)

    def pad(x):  # (b, t) -> (b, T) with zeros
        return torch.nn.functional.pad(x, (0, T - x.shape[1]))

    logp = torch.cat([pad(c["logp"]) for c in calls]).double()  # (2b, T)
    mask = torch.cat([pad(c["inputs"]["completion_mask"]) for c in calls])  # (2b, T)
    adv = torch.cat([c["inputs"]["advantages"] for c in calls]).double()  # (2b,)
    counts = [int(c["inputs"]["completion_mask"].sum()) for c in calls]
    want, _ = lad_loss(logp, logp.detach(), adv, mask, divergence="js", eta=0.5)  # on-policy: rho = 1
    got = calls[0]["loss"].double() + calls[1]["loss"].double()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    assert counts[0] != counts[1], counts  # so that the naive mean of micro-batch means differs
    naive = sum(lad_loss(pad(c["logp"]).double(), pad(c["logp"]).double(), c["inputs"]["advantages"].double(),
                         pad(c["inputs"]["completion_mask"]), divergence="js", eta=0.5)[0] for c in calls) / 2
    assert not torch.allclose(naive, want, rtol=1e-3)
    # policy_loss is logged per optimiser window (TRL's convention): the window's loss, not a micro-batch's
    policy = [h["policy_loss"] for h in trainer.state.log_history if "policy_loss" in h]
    assert policy == pytest.approx([float(want)], rel=1e-4, abs=1e-6)


def test_trl_refuses_vllm_importance_correction_saying_what_to_set_and_why(tmp_path):
    """TRL's default with use_vllm multiplies token losses by pi_old / pi_vllm; LAD refuses it (module
    docstring: the decision and its consequence) with one line naming the setting."""
    from ladtrain.integrations import trl as lad_trl

    args = _config(tmp_path)
    # set after __post_init__ (which would look for vLLM, absent here)
    args.use_vllm, args.vllm_importance_sampling_correction = True, True
    (message,) = lad_trl._refusals(args)
    assert "vllm_importance_sampling_correction" in message and "set it to False" in message
    assert "\n" not in message
    args.vllm_importance_sampling_correction = False
    assert lad_trl._refusals(args) == []
