"""Models: the tiny built-in causal LM (and its warm-up), or any local Hugging Face causal LM folder;
saving and loading them as Hugging Face folders; which prompts fit their context; and the model options
the trainer switches on with one line each (LoRA, gradient checkpointing, bf16 autocast).

The built-in model is a Llama-architecture ``transformers`` model of about 0.8M parameters with a
character-level tokenizer that is a real ``transformers`` tokenizer object built in code
(:func:`build_tokenizer`): a ``tokenizers`` WordLevel model over single characters, wrapped in
``PreTrainedTokenizerFast``. Saved with ``save_pretrained`` it reloads through ``AutoTokenizer`` and
``AutoModelForCausalLM`` with the same ids and logits (tested). Why Llama and not Qwen2: transformers 5
loads any ``model_type: qwen2`` folder with its own Qwen2 tokenizer, whatever ``tokenizer_config.json``
says, and that byte-level BPE silently changes the ids of spaces and newlines.

Warm-up (:func:`warm_up`): supervised training on the task's enumerated solutions, each example drawn
uniformly among the valid solutions of a uniformly drawn training problem, so the base policy is diverse
rather than collapsed on one canonical answer. :func:`base_policy` caches the warmed-up model under the
cache directory, keyed by a hash of the model spec, the task and the warm-up settings.

Saving (:func:`save`): an ordinary Hugging Face folder (``save_pretrained``, safetensors) written
atomically (:func:`ladtrain.atomic.replace_folder`: a reader, or a run killed at any instant, sees the
previous complete folder or the new one). Reload it with :func:`load`, or with
``AutoModelForCausalLM.from_pretrained(path)`` and ``AutoTokenizer.from_pretrained(path)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import string
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from ladtrain import atomic
from ladtrain.tasks.base import Problem

BUILTIN = "builtin"
SPECIALS = ("<pad>", "<eos>", "<unk>")
CHARS = tuple(c for c in string.printable if c not in "\x0b\x0c\r")  # digits, letters, punctuation, " \t\n"


class ModelError(ValueError):
    """A model folder that cannot be used (a user mistake: one line, no traceback)."""


@dataclass(frozen=True)
class TinySpec:
    """Shape of the built-in model (Llama architecture, tied embeddings)."""

    hidden: int = 128
    layers: int = 4
    heads: int = 4
    intermediate: int = 352
    max_positions: int = 64


def build_tokenizer():
    """A character-level ``PreTrainedTokenizerFast``: one id per printable ASCII character (spaces and
    newlines included), plus ``<pad>`` (0), ``<eos>`` (1), ``<unk>`` (2)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIALS + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character
    tok.decoder = decoders.Fuse()  # concatenate, no separator
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )
    hf.padding_side = "left"
    return hf


def build_tiny_model(tokenizer, spec: TinySpec = TinySpec(), seed: int = 0):
    """A freshly initialised built-in model for ``tokenizer``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=spec.hidden, intermediate_size=spec.intermediate,
        num_hidden_layers=spec.layers, num_attention_heads=spec.heads, num_key_value_heads=spec.heads,
        max_position_embeddings=spec.max_positions, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def load(path: str | Path):
    """``(model, tokenizer)`` from a local Hugging Face causal-LM folder (its own tokenizer and chat
    template). Padding is on the left for generation; a tokenizer without a pad token pads with EOS."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # transformers' "Loading weights" bar would interleave with ours
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ModelError(f"--model: {path} is not a Hugging Face model folder (no config.json)")
    try:
        model = AutoModelForCausalLM.from_pretrained(path)
    except (OSError, ValueError, KeyError) as err:
        raise ModelError(f"--model: cannot load {path}: {str(err).splitlines()[0]}") from None
    return model, load_tokenizer(path)


def load_tokenizer(path: str | Path):
    """The tokenizer of a folder, padding on the left for generation (EOS as pad token when it has none)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, KeyError) as err:
        raise ModelError(f"--model: cannot load {path}: {str(err).splitlines()[0]}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def save(model, tokenizer, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Save ``model`` and ``tokenizer`` to ``path`` atomically; ``extra`` maps file names to JSON values
    written next to them (e.g. provenance). An ``OSError`` (disk full, not writable) becomes a one-line
    :class:`ladtrain.atomic.WriteError` and leaves ``path`` as it was."""
    path = Path(path)

    def write(tmp: Path) -> None:
        save_folder(model, tokenizer, tmp)
        for name, value in (extra or {}).items():
            (tmp / name).write_text(json.dumps(value, indent=2, default=str))

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.replace_folder(path, write)
    except atomic.write_errors() as err:
        raise atomic.WriteError(f"cannot write checkpoint {path}: {atomic.reason(err)}") from None
    return path


def save_folder(model, tokenizer, folder: Path) -> None:
    """``save_pretrained`` of model (safetensors) and tokenizer into an existing folder (not atomic by
    itself: :func:`save` and :mod:`ladtrain.checkpoint` call it on a temporary folder)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Writing model shards" bars would interleave with ours
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def format_prompt(tokenizer, prompt: str, system: str | None = None) -> str:
    """The text the model sees: the task prompt inside the tokenizer's chat template when it has one, with
    the system prompt ``system`` (None: the template's default; :func:`ladtrain.prompts.render`)."""
    from ladtrain.prompts import render

    return render(tokenizer, prompt, system)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class WarmUp:
    """Supervised warm-up of the built-in model on enumerated solutions."""

    steps: int = 600
    batch: int = 64
    lr: float = 3e-3
    seed: int = 0
    share: float = 1.0  # share of the training problems used (recorded so that it is part of the cache key)


def _demonstrations(problems: Sequence[Problem], rng: random.Random, n: int) -> list[tuple[str, str]]:
    """``n`` (prompt, solution) pairs: a uniform problem, then a uniform solution among its valid ones."""
    out = []
    for _ in range(n):
        problem = rng.choice(problems)
        out.append((problem.prompt, rng.choice(problem.meta["solutions"])))
    return out


def sft_batch(tokenizer, pairs: Sequence[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """Token ids (B, L) right-padded, with labels -100 on prompt and padding (loss on answer + EOS)."""
    rows = []
    for prompt, answer in pairs:
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        a = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append((p + a, [-100] * len(p) + a))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id)  # (B, L)
    labels = torch.full((len(rows), width), -100)  # (B, L)
    attention = torch.zeros((len(rows), width), dtype=torch.long)  # (B, L)
    for i, (ids, lab) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(lab)] = torch.tensor(lab)
        attention[i, : len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}


def warm_up(
    model, tokenizer, problems: Sequence[Problem], spec: WarmUp, progress: bool = True
) -> dict[str, Any]:
    """Supervised training (AdamW, cosine schedule after 5% linear warm-up) on uniformly drawn solutions."""
    from tqdm.auto import tqdm

    if not problems or "solutions" not in problems[0].meta:
        raise ModelError("--model builtin needs a task whose problems list their solutions "
                         "(problem.meta['solutions']), e.g. countdown; pass --model PATH otherwise")
    rng = random.Random(spec.seed)
    torch.manual_seed(spec.seed)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.01, betas=(0.9, 0.98))
    ramp = max(1, spec.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / ramp) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / max(1, spec.steps)))))
    start, losses = time.time(), []
    bar = tqdm(range(spec.steps), desc="warm-up (SFT)", disable=not progress, dynamic_ncols=True)
    for _ in bar:
        batch = sft_batch(tokenizer, _demonstrations(problems, rng, spec.batch))
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
    model.eval()
    return {"steps": spec.steps, "final_loss": sum(losses[-20:]) / max(1, len(losses[-20:])),
            "seconds": time.time() - start}


def base_key(tiny: TinySpec, task: str, warmup: WarmUp, problems: Sequence[Problem] = ()) -> str:
    """Cache key of a warmed-up base: model spec, task spec, warm-up settings and the problems themselves
    (so a changed task definition never reuses a stale base)."""
    data = hashlib.sha256("\n".join(f"{p.id}\t{p.prompt}" for p in problems).encode()).hexdigest()
    blob = json.dumps(
        {"tiny": asdict(tiny), "task": task, "warmup": asdict(warmup), "problems": data, "v": 1},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def base_policy(model: str, task_spec: str, problems: Sequence[Problem], warmup: WarmUp, cache: Path,
                tiny: TinySpec = TinySpec(), progress: bool = True):
    """``(model, tokenizer, info)`` for RL. ``model == "builtin"``: the warmed-up built-in model from the
    cache, warming it up (and caching it atomically) first if needed. Otherwise a local HF folder."""
    if model != BUILTIN:
        m, tok = load(model)
        return m, tok, {"model": str(model), "parameters": count_parameters(m)}
    folder = Path(cache) / "base" / base_key(tiny, task_spec, warmup, problems)
    info: dict[str, Any] = {"model": BUILTIN, "base_folder": str(folder)}
    if (folder / "config.json").is_file():
        m, tok = load(folder)
        info["warmup"] = json.loads((folder / "warmup.json").read_text())
        info["warmup_cached"] = True
    else:
        tok = build_tokenizer()
        m = build_tiny_model(tok, tiny, seed=warmup.seed)
        stats = warm_up(m, tok, problems, warmup, progress=progress)
        save(m, tok, folder, extra={"warmup.json": {**stats, **asdict(warmup), "task": task_spec}})
        info["warmup"] = stats
        info["warmup_cached"] = False
    info["parameters"] = count_parameters(m)
    return m, tok, info


# --------------------------------------------------------------------------------------------------
# Which prompts fit the model's context


def context_length(model) -> int | None:
    """The model's context in tokens (``max_position_embeddings`` or ``n_positions``), None if unknown."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def fitting_prompts(problems: Sequence[Problem], tokenizer, context: int | None, max_new_tokens: int,
                    render=lambda tok, prompt: prompt) -> tuple[list[Problem], int]:
    """``(kept, dropped)``: the problems whose rendered prompt plus ``max_new_tokens`` fits ``context``."""
    if context is None:
        return list(problems), 0
    kept = [p for p in problems
            if len(tokenizer(render(tokenizer, p.prompt), add_special_tokens=False)["input_ids"])
            + max_new_tokens <= context]
    return kept, len(problems) - len(kept)


# --------------------------------------------------------------------------------------------------
# Model options: gradient checkpointing, LoRA, bf16 autocast


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """Recompute activations in the backward pass (Hugging Face models); ``use_cache`` is turned off for
    training forwards (generation still passes ``use_cache=True`` explicitly)."""
    if not hasattr(model, "gradient_checkpointing_enable"):
        raise ModelError("--gradient-checkpointing: this model has no gradient_checkpointing_enable()")
    from ladtrain import lean_layers

    lean_layers.remove(model)  # the layers' checkpoint recomputes them already (hooks do not nest)
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # newer transformers: the old name warns
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if getattr(model, "config", None) is not None:
        model.config.use_cache = False


@dataclass(frozen=True)
class Lora:
    """LoRA adapters through ``peft`` (extra ``lad[lora]``): rank ``r``, scale ``alpha / r``."""

    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                       "down_proj")


def apply_lora(model: torch.nn.Module, lora: Lora) -> torch.nn.Module:
    """Freeze ``model`` and add trainable LoRA adapters on ``lora.target_modules`` that exist in it."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ModelError("--lora-r: needs peft (pip install 'lad[lora]')") from None
    present = sorted(
        {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()} & set(lora.target_modules)
    )
    if not present:
        raise ModelError(f"--lora-r: none of {', '.join(lora.target_modules)} is a module of this model")
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=present,
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def is_adapter_model(model: torch.nn.Module) -> bool:
    """Whether ``model`` is a peft model (LoRA adapters on a frozen base)."""
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def adapter_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapters' weights of a peft model (what a resumable LoRA checkpoint stores)."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}


def load_adapters(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Put saved adapter weights (:func:`adapter_state`) back on a peft model of the same configuration;
    ModelError when a weight does not fit."""
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(model, state)
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if unexpected:
        raise ModelError(f"--resume: the checkpoint's LoRA adapters do not fit this model ({unexpected[0]})")


def merged(model: torch.nn.Module) -> torch.nn.Module:
    """A plain Hugging Face model to save: LoRA adapters merged into the base weights (in place)."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def trainable_parameters(model: torch.nn.Module) -> Iterator[torch.nn.Parameter]:
    return (p for p in model.parameters() if p.requires_grad)


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on CUDA when asked; a no-op context otherwise (CPU bf16 matmuls are slow, not tested)."""
    if bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


__all__ = ["BUILTIN", "Lora", "ModelError", "TinySpec", "WarmUp", "adapter_state", "apply_lora", "autocast",
           "base_policy", "is_adapter_model", "load_adapters", "load_tokenizer",
           "build_tiny_model", "build_tokenizer", "context_length", "count_parameters",
           "enable_gradient_checkpointing", "fitting_prompts", "format_prompt", "load", "merged", "save",
           "save_folder", "sft_batch", "trainable_parameters", "warm_up"]
