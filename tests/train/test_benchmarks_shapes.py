"""The benchmark's building blocks (benchmarks/shapes.py, rss.py, trl_fair.py): the 135M shape is
SmolLM2-135M's architecture, the EOS bias gives the hazard it is solved for, the RSS sampler sees an
allocation, and every TRL option the settings table names is really passed."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import rss  # noqa: E402
import shapes  # noqa: E402
import trl_fair  # noqa: E402


def test_smollm2_shape_is_the_real_architecture():
    """Config numbers of HuggingFaceTB/SmolLM2-135M, and its parameter count (134,515,008, tied
    embeddings) on the meta device (no memory), plus the EOS bias (49,152 numbers, not trained)."""
    from transformers import LlamaForCausalLM

    tok = shapes.tokenizer(49152)
    assert len(tok) == 49152 and tok.decode([49151]) == "<v49151>"
    plain = shapes.tokenizer(103)  # the built-in tokenizer's size: nothing added
    ids = tok("1 2", add_special_tokens=False)["input_ids"]
    assert ids == plain("1 2", add_special_tokens=False)["input_ids"]
    config = shapes.config("smollm2-135m", tok)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
            config.num_key_value_heads, config.intermediate_size, config.vocab_size) == (
        576, 30, 9, 3, 1536, 49152)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    with pytest.raises(ValueError, match="--shape"):
        shapes.config("smollm2-1b", tok)


def test_eos_bias_gives_the_hazard_it_was_solved_for():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=500, hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                                         tie_word_embeddings=True))
    for hazard in (0.01, 0.2):
        b = shapes.eos_bias(model, 1, hazard, positions=128)
        gen = torch.Generator().manual_seed(0)  # the same positions eos_bias used
        ids = torch.randint(3, 500, (8, 16), generator=gen)
        with torch.no_grad():
            logits = model(input_ids=ids).logits.reshape(-1, 500).double()
        logits[:, 1] += b
        assert torch.softmax(logits, -1)[:, 1].mean().item() == pytest.approx(hazard, rel=1e-4)
    shapes.set_eos_bias(model, 1, 3.0)
    assert model.lm_head.bias[1] == 3.0 and model.lm_head.bias.abs().sum() == 3.0
    assert not model.lm_head.bias.requires_grad and model.lm_head.weight is model.model.embed_tokens.weight


def test_rss_sampler_sees_a_large_allocation_in_its_phase():
    peaks = rss.PhasePeaks(interval=0.001)
    try:
        with peaks.phase("small"):
            pass
        with peaks.phase("large"):
            x = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
            peaks.record()
            del x
    finally:
        peaks.stop()
    assert peaks.peaks["large"] - peaks.peaks["small"] > 48 * 2**20


def test_trl_settings_table_names_only_options_that_are_passed():
    setup = SimpleNamespace(batch=8, group=4, max_new_tokens=8, temperature=0.9, gradient_checkpointing=False,
                            clip_eps=0.2, lr=1e-4, max_grad_norm=1.0, seed=0)
    kwargs = trl_fair.config_kwargs(setup, "/tmp/unused", steps=2)
    named = {name.strip().split("/")[0] for row in trl_fair.SETTINGS for name in row[0].split(",")}
    named -= {"model", "prompts", "generation seed", "threads", "adam_beta1"}  # not options; "adam_beta1/2"
    assert named <= kwargs.keys(), named - kwargs.keys()
    assert {"adam_beta1", "adam_beta2"} <= kwargs.keys()
    assert kwargs["gradient_checkpointing"] is False and kwargs["bf16"] is False
    assert kwargs["loss_type"] == "grpo" and kwargs["shuffle_dataset"] is False  # ladtrain's prompt order
    trl = pytest.importorskip("trl")
    config = trl.GRPOConfig(**kwargs)  # every option exists in this TRL version
    assert config.gradient_checkpointing is False and config.optim == "adamw_torch_fused"
    assert config.per_device_train_batch_size == 8 and config.generation_batch_size == 8
