"""Checks before a command writes anything, beyond the declared domains of :mod:`ladtrain.config`: they
read files and the machine. ``python -m ladtrain train``/``eval``/``compare`` call :func:`train` or
:func:`evaluation` after parsing and before the run folder (``--out``) is created; every failure is a
one-line :class:`~ladtrain.config.ConfigError` (exit 2).

* The task is built (``--task``: a data file that does not exist or does not parse fails here), and a
  ``--reward`` module is imported; its import is guarded against every exception, ``SystemExit`` and
  ``KeyboardInterrupt`` included (:func:`ladtrain.rewards.load_reward`). A reward file given as
  ``path.py:function`` is therefore executed twice, here and when the run loads it.
* Memory (:func:`estimate`): a **lower bound** of the bytes the run must hold at once, from the model's
  size (parameters, layers, hidden size, key/value heads, vocabulary, dtype: the built-in model's
  :class:`~ladtrain.models.TinySpec`, or a folder's ``config.json``), the batch and the lengths. It counts
  only tensors the code certainly allocates: the weights (and, when every weight trains, their gradients
  and AdamW's two moments; with ``--lora-r``, adapters of ``r x 2 x hidden`` values on at least one
  linear per layer, with theirs), the built-in model's warm-up batch (``--warmup-batch`` sequences of at
  least 2 tokens through the update's forward pass), the key/value cache of one sampling call over ``B``
  sequences of at least ``max_new_tokens + 1`` positions (``2 x layers x B x L x kv_heads x head_dim``
  values), that call's
  last-position logits (``B x V``), the update's logits over a micro-batch (``B / grad_accumulation x L
  x V``) with one hidden state per layer kept for the backward pass, and the token ids of one held-out
  problem's samples. A run whose bound exceeds the memory of the device it runs on (CPU: physical memory,
  or the cgroup limit when lower; CUDA: the GPU's total memory) is refused, naming the flags that lower
  it. Activations beyond one per layer, the prompt's length and allocator overheads are not counted, so
  a run that passes may still not fit; one that fails cannot.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from ladtheory import options
from ladtrain.config import ConfigError, EvalConfig, RunOptions, TrainConfig

GIB = 2**30


@dataclass(frozen=True)
class ModelSize:
    """What the memory bound needs from a model (from its config, without loading weights)."""

    parameters: int
    layers: int
    hidden: int
    kv_width: int  # kv_heads x head_dim
    vocab: int
    bytes_per_value: int  # 4 (float32) or 2 (bf16 / fp16)


def model_size(model: str) -> ModelSize | None:
    """The built-in model's size, or a Hugging Face folder's from its ``config.json``; None when the file
    lacks a field (then memory is not estimated: the check says nothing rather than guess)."""
    from ladtrain import models

    if model == models.BUILTIN:
        s, vocab = models.TinySpec(), len(models.build_tokenizer())
        per_layer = 4 * s.hidden * s.hidden + 3 * s.hidden * s.intermediate + 2 * s.hidden
        parameters = vocab * s.hidden + s.layers * per_layer + s.hidden  # tied embeddings
        return ModelSize(parameters, s.layers, s.hidden, s.hidden, vocab, 4)
    try:
        c = json.loads((Path(model) / "config.json").read_text(encoding="utf-8"))
        h, layers, vocab = int(c["hidden_size"]), int(c["num_hidden_layers"]), int(c["vocab_size"])
        heads = int(c["num_attention_heads"])
        kv = int(c.get("num_key_value_heads") or heads) * int(c.get("head_dim") or h // heads)
        inter = int(c.get("intermediate_size") or 4 * h)
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return None
    dtype = str(c.get("torch_dtype") or c.get("dtype") or "float32")
    embed = vocab * h * (1 if c.get("tie_word_embeddings", True) else 2)
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * inter
    return ModelSize(embed + layers * per_layer, layers, h, kv, vocab, 2 if "16" in dtype else 4)


def sampling_bytes(m: ModelSize, sequences: int, length: int) -> int:
    """One ``generate`` call: the key/value cache and the last position's logits."""
    return 2 * m.layers * sequences * length * m.kv_width * m.bytes_per_value + sequences * m.vocab * 4


def update_bytes(m: ModelSize, sequences: int, length: int) -> int:
    """One micro-batch's forward pass kept for backward: the logits and one hidden state per layer."""
    return sequences * length * (m.vocab + m.layers * m.hidden) * m.bytes_per_value


def eval_sequences_per_call(samples: int, problems: int, batch: int) -> int:
    """Sequences in the largest evaluation ``generate`` call of the code that runs
    (:func:`ladtrain.eval_sampling.plan`: at most ``batch`` sequences and 32 prompts a call)."""
    from ladtrain.eval_sampling import MAX_PROMPTS_PER_CALL, prompts_per_call

    if samples > batch:
        return batch  # one problem per call, in pieces of batch
    return min(prompts_per_call(samples, batch), problems or MAX_PROMPTS_PER_CALL) * samples


def memory_limit(device: str) -> tuple[int, str] | None:
    """``(bytes, what)``: the memory of the device the run uses, or None if unknown."""
    import torch

    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        index = int(device.partition(":")[2] or 0)
        return torch.cuda.get_device_properties(index).total_memory, f"GPU cuda:{index}"
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        total = min(total, int(limit)) if limit.isdigit() else total
    except OSError:
        pass
    return total, "this machine"


def estimate(cfg: RunOptions) -> list[tuple[str, int, str, tuple[str, ...]]]:
    """``[(phase, bytes, what, flags that lower it)]``: the lower bound of each phase, weights included
    (the model-dependent defaults, such as ``max_new_tokens``, resolved first)."""
    from ladtrain import models
    from ladtrain.passk import ks_of

    cfg = cfg.resolved()
    m = model_size(cfg.model)
    if m is None:
        return []
    world = max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))
    length = cfg.max_new_tokens + 1
    tokens = f"of >= {length} tokens"
    out = []
    if isinstance(cfg, EvalConfig):
        weights = m.parameters * m.bytes_per_value
        k, problems, eval_flags = ks_of(cfg)[1], cfg.problems, ("k", "samples", "batch", "max_new_tokens")
        batch = cfg.batch
    else:
        weights = m.parameters * m.bytes_per_value + (0 if cfg.lora_r else m.parameters * 12)
        if cfg.lora_r:  # at least one adapted linear per layer: r x (in + out) values, with grad and AdamW
            adapters = m.layers * cfg.lora_r * 2 * m.hidden * 4 * 4
            weights += adapters
            out.append(("LoRA adapters", weights, f"rank {cfg.lora_r} on {m.layers} layers", ("lora_r",)))
        if cfg.model == models.BUILTIN and cfg.warmup_steps:
            full = m.parameters * m.bytes_per_value * 4
            out.append(("warm-up's tensors", full + update_bytes(m, cfg.warmup_batch, 2),
                        f"{cfg.warmup_batch} sequences of >= 2 tokens", ("warmup_batch",)))
        k, problems, eval_flags = (ks_of(cfg)[1], cfg.eval_problems,
                                   ("eval_samples", "eval_k_max", "eval_batch", "max_new_tokens"))
        batch = cfg.eval_batch
    per_call = eval_sequences_per_call(k, problems, batch)
    out.append(("evaluation's tensors", weights + sampling_bytes(m, per_call, length) + k * length * 8,
                f"{per_call} sequences per sampling call {tokens}", eval_flags))
    if isinstance(cfg, TrainConfig):
        rollout = math.ceil(cfg.prompts_per_step * cfg.group_size / world)
        out.append(
            (
                "rollout's tensors",
                weights + sampling_bytes(m, rollout, length),
                f"{rollout} sequences {tokens}",
                ("prompts_per_step", "group_size", "max_new_tokens"),
            )
        )
        micro = math.ceil(rollout / cfg.grad_accumulation)
        out.append(("update's tensors", weights + update_bytes(m, micro, length),
                    f"{micro} sequences per micro-batch {tokens}",
                    ("prompts_per_step", "group_size", "max_new_tokens", "grad_accumulation")))
    return out


def check_memory(cfg: RunOptions) -> None:
    """ConfigError naming the flags to lower when a phase's lower bound exceeds the device's memory."""
    phases = estimate(cfg)
    limit = memory_limit(cfg.device) if phases else None
    if limit is None:
        return
    total, where = limit
    for phase, need, what, flags in phases:
        if need > total:
            lower = ", ".join(options.flag(f) for f in flags[1:] if f != "grad_accumulation")
            raise_ = " (or raise --grad-accumulation)" if "grad_accumulation" in flags else ""
            alternatives = f" or {lower}" if lower else ""
            problem = (f"the {phase} need at least {need / GIB:.3g} GiB ({what}) but {where} has "
                       f"{total / GIB:.3g} GiB; lower it{alternatives}{raise_}")
            raise ConfigError(options.message(flags[0], problem, getattr(cfg, flags[0])))


def check_task(cfg: RunOptions) -> None:
    """Build the task (with ``--instruction-file``) and import every ``--reward`` module, checking the
    weights against them (ConfigError / TaskError, one line)."""
    from ladtrain.tasks import TaskError, get_task

    instruction = getattr(cfg, "instruction_file", None)
    try:
        get_task(cfg.task, **({"instruction_file": instruction} if instruction else {}))
    except TaskError as err:
        if instruction and "instruction_file" in str(err):
            why = _reason(err, instruction)
            raise ConfigError(options.message("instruction_file", why, instruction)) from None
        raise ConfigError(options.message("task", _reason(err, cfg.task), cfg.task)) from None
    if isinstance(cfg, TrainConfig):
        from ladtrain.rewards import load_reward
        from ladtrain.start import reward_components

        for spec in cfg.reward:
            if spec == "task" or spec.split(":")[0] == "overlong":
                continue
            try:
                load_reward(spec)
            except TaskError as err:  # a RewardError: the module does not import or has no such function
                raise ConfigError(options.message("reward", _reason(err, spec), spec)) from None
        reward_components(cfg)  # the weights against the components


def _reason(err: Exception, value: str) -> str:
    """The error's text on one line, without a leading ``--flag VALUE:`` or ``VALUE:`` (shown once, at the
    end, by :func:`ladtheory.options.message`)."""
    text = " ".join(str(err).split())
    for lead in (f"--reward {value}: ", f"--reward {value!r}: ", f"task spec {value!r}: ", f"{value}: "):
        if text.startswith(lead):
            return text[len(lead):]
    return text


def check_eval_tasks(cfg: RunOptions) -> None:
    """Every ``--eval-task`` set is built (its data file read; an empty test split fails)."""
    from ladtrain.heldout import extra_sets

    extra_sets(cfg)


def train(cfg: TrainConfig) -> TrainConfig:
    """Every check before ``train`` writes its run folder; returns ``cfg``."""
    check_task(cfg)
    check_eval_tasks(cfg)
    check_memory(cfg)
    return cfg


def evaluation(cfg: EvalConfig) -> EvalConfig:
    """Every check before ``eval`` samples (or writes ``--out``); returns ``cfg``."""
    check_task(cfg)
    check_eval_tasks(cfg)
    check_memory(cfg)
    return cfg


__all__ = ["ModelSize", "check_eval_tasks", "check_memory", "check_task", "estimate", "evaluation",
           "memory_limit", "model_size", "train"]
