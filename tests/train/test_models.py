"""The built-in model and tokenizer are ordinary Hugging Face objects: they survive save/reload exactly."""

from __future__ import annotations

import json

import pytest
import torch

from ladtrain import models
from ladtrain.rollout import HFSampler, completion_mask, token_logprobs

TEXT = "5 2 4 3 -> 15\n5+4*3-2  end\twith tabs, CAPS & punctuation!?"


def test_tokenizer_is_one_token_per_character_and_keeps_spaces_and_newlines():
    tok = models.build_tokenizer()
    ids = tok(TEXT, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(TEXT)
    assert tok.decode(ids) == TEXT
    assert tok.eos_token_id == 1 and tok.pad_token_id == 0


def test_checkpoint_reloads_through_auto_classes_with_identical_ids_and_logits(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = models.build_tokenizer()
    model = models.build_tiny_model(tok, seed=3).eval()
    models.save(model, tok, tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()
    tok2 = AutoTokenizer.from_pretrained(tmp_path / "ckpt")
    model2 = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt").eval()
    ids = tok(TEXT, add_special_tokens=False)["input_ids"]
    assert tok2(TEXT, add_special_tokens=False)["input_ids"] == ids
    assert tok2.decode(ids) == TEXT
    x = torch.tensor([ids])
    with torch.no_grad():
        assert torch.equal(model(x).logits, model2(x).logits)


def test_built_in_model_is_about_one_million_parameters():
    n = models.count_parameters(models.build_tiny_model(models.build_tokenizer()))
    assert 5e5 < n < 1.5e6


def test_atomic_save_replaces_an_existing_checkpoint_and_leaves_no_temporary_folders(tmp_path):
    tok = models.build_tokenizer()
    first = models.build_tiny_model(tok, seed=1)
    second = models.build_tiny_model(tok, seed=2)
    models.save(first, tok, tmp_path / "ckpt", extra={"note.json": {"which": 1}})
    models.save(second, tok, tmp_path / "ckpt", extra={"note.json": {"which": 2}})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert json.loads((tmp_path / "ckpt" / "note.json").read_text()) == {"which": 2}
    reloaded, _ = models.load(tmp_path / "ckpt")
    assert torch.equal(reloaded.model.embed_tokens.weight, second.model.embed_tokens.weight)


def test_load_rejects_a_folder_without_config_naming_the_flag(tmp_path):
    with pytest.raises(models.ModelError, match="--model"):
        models.load(tmp_path)


def test_chat_template_wraps_the_prompt_when_the_tokenizer_has_one():
    tok = models.build_tokenizer()
    assert models.format_prompt(tok, "1 2 -> 3\n") == "1 2 -> 3\n"
    tok.chat_template = "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}[assistant]"
    assert models.format_prompt(tok, "1 2 -> 3\n") == "[user]1 2 -> 3\n[assistant]"


def test_completion_mask_keeps_tokens_up_to_and_including_the_first_eos():
    ids = torch.tensor([[5, 6, 1, 7, 1], [5, 6, 7, 8, 9], [1, 0, 0, 0, 0]])
    assert completion_mask(ids, eos_id=1).tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]


def test_token_logprobs_equal_the_sampling_distribution_under_left_padding():
    """The log-probs the loss uses are those of the distribution ``generate`` sampled from, including
    for left-padded prompts (positions must restart at 0 after the padding)."""
    tok = models.build_tokenizer()
    model = models.build_tiny_model(tok, seed=0).eval()
    prompts = ["1 2 3 4 -> 10\n", "5 5 -> 25\n"]  # different lengths: the second is left-padded
    torch.manual_seed(0)
    rollout = HFSampler(model, tok, temperature=0.7, max_new_tokens=6).sample(prompts, group_size=2)
    with torch.no_grad():
        logp = token_logprobs(model, rollout, temperature=0.7)
        for i in range(rollout.completion_ids.shape[0]):  # one unpadded sequence at a time
            n_prompt = int(rollout.prompt_mask[i].sum())
            prompt = rollout.prompt_ids[i, -n_prompt:]
            n = int(rollout.completion_mask[i].sum())
            seq = torch.cat([prompt, rollout.completion_ids[i, :n]])[None]
            ref = torch.log_softmax(model(seq).logits[0, n_prompt - 1 : -1] / 0.7, -1)
            expected = ref.gather(-1, rollout.completion_ids[i, :n, None]).squeeze(-1)
            torch.testing.assert_close(logp[i, :n], expected, rtol=1e-4, atol=1e-5)
            assert torch.all(logp[i, n:] == 0)
