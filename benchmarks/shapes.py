"""Real-architecture model shapes for the step benchmark: random weights built from a config, no download
(the built-in shapes ``tiny`` and ``6m`` are :func:`ladtrain.models.build_tiny_model` specs, see
``benchmarks/step_profile.py``).

* ``smollm2-135m``: SmolLM2-135M's architecture (``HuggingFaceTB/SmolLM2-135M``'s config: Llama, hidden
  576, 30 layers, 9 attention heads, 3 key-value heads, intermediate 1536, vocabulary 49,152, tied
  embeddings, rope theta 100,000, RMSNorm eps 1e-5): ~135M parameters.

Tokenizer: the built-in character-level tokenizer (:func:`ladtrain.models.build_tokenizer`), padded with
filler tokens ``<v123>`` up to the shape's vocabulary, so the output layer has the real width and every
sampled id decodes.

**Stop lengths.** A model with random weights puts about ``1/V`` of its mass on EOS, so completions never
stop. A shape may set ``eos_hazard``, the probability that any given token is EOS: the output layer gets a
bias, zero except at EOS, whose value makes the mean EOS probability over a sample of positions equal to
that hazard (solved by bisection at build time, :func:`eos_bias`). Completion lengths are then about
geometric, ``P(length > t) ~ (1 - h)^t``, cut at ``max_new_tokens``. The bias is a buffer-like parameter
with ``requires_grad=False`` (no optimizer updates it), and both implementations get the same model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# SmolLM2-135M: real completions of 96 tokens stopped at EOS about half the time (issue 24 measured 27 of
# 48 cut at 96), i.e. a per-token hazard h with (1 - h)^96 = 1/2
SMOLLM2_HAZARD = 1 - 0.5 ** (1 / 96)


@dataclass(frozen=True)
class Shape:
    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    rope_theta: float = 10000.0
    max_positions: int = 64
    eos_hazard: float | None = None  # per-token EOS probability (None: the random model's own)
    prompts: int = 16  # the shape's default batch: prompts x group completions of max_new_tokens
    group: int = 8
    max_new_tokens: int = 16


SHAPES = {
    "smollm2-135m": Shape("smollm2-135m", 576, 30, 9, 3, 1536, 49152, rope_theta=100000.0, max_positions=8192,
                          eos_hazard=SMOLLM2_HAZARD, prompts=4, group=4, max_new_tokens=96),
}


def tokenizer(vocab: int):
    """The built-in character tokenizer, padded with filler tokens to ``vocab`` ids."""
    from ladtrain import models

    tok = models.build_tokenizer()
    if vocab > len(tok):
        tok.add_tokens([f"<v{i}>" for i in range(len(tok), vocab)])
    return tok


def eos_bias(model, eos_id: int, hazard: float, positions: int = 256, seed: int = 0) -> float:
    """The EOS logit bias ``b`` with mean over ``positions`` random-token positions of
    ``P(EOS) = sigmoid(z_eos + b - logsumexp(z_other))`` equal to ``hazard`` (bisection; exact up to 1e-6
    in ``b``)."""
    gen = torch.Generator().manual_seed(seed)
    V = model.config.vocab_size
    ids = torch.randint(3, V, (positions // 16, 16), generator=gen)
    with torch.no_grad():
        logits = model(input_ids=ids).logits.reshape(-1, V).double()  # (N, V)
    z_eos = logits[:, eos_id]
    others = torch.cat([logits[:, :eos_id], logits[:, eos_id + 1 :]], dim=1).logsumexp(-1)
    gap = z_eos - others  # (N,)
    lo, hi = -50.0, 50.0
    while hi - lo > 1e-6:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if torch.sigmoid(gap + mid).mean().item() < hazard else (lo, mid)
    return (lo + hi) / 2


def set_eos_bias(model, eos_id: int, bias: float) -> float:
    """Give ``model`` an output layer with a bias ``bias`` at EOS, zero elsewhere, not trained (the weight
    stays the tied embedding)."""
    weight = model.get_output_embeddings().weight
    head = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=True)
    head.weight = weight
    with torch.no_grad():
        head.bias.zero_()
        head.bias[eos_id] = bias
    head.bias.requires_grad_(False)
    model.lm_head = head
    return bias


def config(name: str, tok):
    """The ``LlamaConfig`` of shape ``name`` for tokenizer ``tok`` (its vocabulary is the shape's)."""
    from transformers import LlamaConfig

    if name not in SHAPES:
        raise ValueError(f"--shape: unknown shape {name!r} (one of {', '.join(SHAPES)})")
    s = SHAPES[name]
    return LlamaConfig(
        vocab_size=len(tok), hidden_size=s.hidden, intermediate_size=s.intermediate,
        num_hidden_layers=s.layers,
        num_attention_heads=s.heads, num_key_value_heads=s.kv_heads, max_position_embeddings=s.max_positions,
        rope_theta=s.rope_theta, rms_norm_eps=1e-5, tie_word_embeddings=True, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, bos_token_id=None,
    )


def build(name: str, seed: int = 0):
    """``(model, tokenizer, info)`` for shape ``name`` with random weights (seeded)."""
    from transformers import LlamaForCausalLM

    if name not in SHAPES:
        raise ValueError(f"--shape: unknown shape {name!r} (one of {', '.join(SHAPES)})")
    s = SHAPES[name]
    tok = tokenizer(s.vocab)
    config_ = config(name, tok)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config_)
    info = {"shape": name, "vocab": len(tok), "eos_hazard": s.eos_hazard, "eos_bias": None}
    if s.eos_hazard is not None:
        bias = eos_bias(model, tok.eos_token_id, s.eos_hazard, seed=seed)
        info["eos_bias"] = set_eos_bias(model, tok.eos_token_id, bias)
        info["expected_share_cut"] = (1 - s.eos_hazard) ** s.max_new_tokens
        info["expected_mean_length"] = (1 - (1 - s.eos_hazard) ** s.max_new_tokens) / s.eos_hazard
    info["parameters"] = sum(p.numel() for p in model.parameters())
    return model, tok, info


def describe(name: str) -> str:
    s = SHAPES[name]
    text = (f"{name}: Llama, hidden {s.hidden}, {s.layers} layers, {s.heads} heads ({s.kv_heads} key-value), "
            f"intermediate {s.intermediate}, vocabulary {s.vocab}")
    if s.eos_hazard is not None:
        text += (f"; EOS hazard {s.eos_hazard:.4f} per token (P(cut at {s.max_new_tokens}) = "
                 f"{(1 - s.eos_hazard) ** s.max_new_tokens:.2f})")
    return text


__all__ = ["SHAPES", "SMOLLM2_HAZARD", "Shape", "build", "config", "describe", "eos_bias", "set_eos_bias",
           "tokenizer"]

if __name__ == "__main__":  # pragma: no cover - a quick look at a shape
    import sys

    m, t, i = build(sys.argv[1] if len(sys.argv) > 1 else "smollm2-135m")
    print(describe(i["shape"]), {k: v for k, v in i.items() if k != "shape"})
