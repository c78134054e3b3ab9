"""A tiny chat model built in code (no download): for tests and for trying a chat-model run end to end.

:func:`build_chat_tokenizer` is the built-in character-level tokenizer
(:func:`ladtrain.models.build_tokenizer`) plus the ChatML markers ``<|im_start|>`` and ``<|im_end|>``
as special tokens and a ChatML chat template that, like SmolLM2-Instruct's, adds a default system prompt
(:data:`DEFAULT_SYSTEM`) when the conversation has no system message; ``<|im_end|>`` is its end-of-sequence
token, as in SmolLM2.
:func:`save_chat_model` writes a freshly initialised Llama-architecture model with that tokenizer as a
Hugging Face folder, which ``--model PATH`` then loads like any downloaded chat model::

    python -m ladtrain.chat_model /tmp/tiny-chat        # writes the folder (0.4 MB, 90k parameters)
    python -m ladtrain train --model /tmp/tiny-chat --task jsonl:tests/data/gsm8k_style.jsonl ...

The model is untrained: what it writes is noise, which is what a run folder must make visible.
"""

from __future__ import annotations

import sys
from pathlib import Path

DEFAULT_SYSTEM = "You are a helpful assistant."
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\n" + DEFAULT_SYSTEM + "<|im_end|>\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_chat_tokenizer():
    """The character-level tokenizer with ChatML special tokens, chat template and ``<|im_end|>`` as EOS."""
    from ladtrain.models import build_tokenizer

    tok = build_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.eos_token = "<|im_end|>"
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_chat_model(tokenizer=None, seed: int = 0, max_positions: int = 1024):
    """``(model, tokenizer)``: a freshly initialised tiny Llama for the chat tokenizer."""
    from ladtrain.models import TinySpec, build_tiny_model

    tokenizer = tokenizer or build_chat_tokenizer()
    spec = TinySpec(hidden=64, layers=2, heads=2, intermediate=128, max_positions=max_positions)
    model = build_tiny_model(tokenizer, spec, seed=seed)
    model.config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def save_chat_model(folder: str | Path, seed: int = 0, max_positions: int = 1024) -> Path:
    """Write the tiny chat model and its tokenizer to ``folder`` (a Hugging Face folder)."""
    from ladtrain import models

    model, tokenizer = build_chat_model(seed=seed, max_positions=max_positions)
    return models.save(model, tokenizer, folder)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m ladtrain.chat_model FOLDER", file=sys.stderr)
        return 2
    print(save_chat_model(argv[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["CHAT_TEMPLATE", "DEFAULT_SYSTEM", "build_chat_model", "build_chat_tokenizer", "save_chat_model"]
