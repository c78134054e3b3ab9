"""GPU smoke run: two LAD training steps of a ~100M-parameter Llama built from a config, in bf16.

Prepared for a machine with a GPU (issue 9, item 4); it was *not* run in the session that wrote it (no
GPU was lent). It reports, as one JSON object on stdout (and in ``--out`` when given):

* ``params``: parameter count; ``gen_tokens_per_s``: completion tokens sampled per second
  (``generate`` with KV cache); ``train_tokens_per_s``: completion tokens per second through
  log-probs + LAD loss + backward + AdamW (bf16 autocast, optional gradient checkpointing);
* ``peak_mem_gib``: ``torch.cuda.max_memory_allocated`` over the two steps;
* ``loss`` per step and ``finite``: every loss and gradient norm finite.

It uses the trainer's own pieces (``token_logprobs``, ``losses.get("lad")``, ``ladtrain.step.backward``)
on synthetic prompts (random token ids; rewards = fraction of even token ids in the completion), so it
needs no tokenizer or data download. Runs on one GPU, or under ``torchrun --nproc-per-node N`` with
``--parallel ddp|fsdp2``.

    python benchmarks/gpu_smoke.py                              # ~100M params, bf16, cuda
    python benchmarks/gpu_smoke.py --device cpu --size tiny     # seconds on CPU (checks the script)
    torchrun --nproc-per-node 2 benchmarks/gpu_smoke.py --parallel fsdp2
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ladtrain import distributed, losses, models
from ladtrain.advantages import group_advantages
from ladtrain.rollout import Rollout, completion_mask, token_logprobs
from ladtrain.step import Targets, backward


@dataclass(frozen=True)
class Size:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int


SIZES = {
    "100m": Size(
        hidden=768, layers=12, heads=12, intermediate=2048, vocab=32000
    ),  # ~110M with tied embeddings
    "tiny": Size(hidden=64, layers=2, heads=2, intermediate=128, vocab=512),
}


class HP:
    eta, level = 0.25, "token"


def build(size: Size, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=size.vocab,
        hidden_size=size.hidden,
        intermediate_size=size.intermediate,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.heads,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="100m")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--parallel", choices=sorted(distributed.STRATEGIES), default="ddp")
    ap.add_argument("--prompts", type=int, default=8, help="prompts per step (all processes together)")
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--grad-accumulation", type=int, default=2)
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args(argv)

    world, device = distributed.setup(args.device)
    bf16 = not args.no_bf16 and device.type == "cuda"
    model = build(SIZES[args.size]).to(device)
    params = sum(p.numel() for p in model.parameters())
    if args.gradient_checkpointing:
        models.enable_gradient_checkpointing(model)
    train_model, gen_model = distributed.prepare(model, args.parallel, world, device)
    optimizer = torch.optim.AdamW(train_model.parameters(), lr=1e-5)
    loss_fn = losses.get("lad")
    hp = type("HPrun", (HP,), {"bf16": bf16})
    G, vocab = args.group_size, SIZES[args.size].vocab
    my_prompts = distributed.shard(list(range(args.prompts)), world)
    gen = torch.Generator().manual_seed(1000 + world.rank)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rows, gen_s, train_s, gen_tokens, train_tokens = [], 0.0, 0.0, 0, 0
    for step in range(1, args.steps + 1):
        prompt_ids = torch.randint(2, vocab, (len(my_prompts), args.prompt_len), generator=gen)
        prompt_ids = prompt_ids.to(device).repeat_interleave(G, 0)  # (B, P)
        prompt_mask = torch.ones_like(prompt_ids)
        sync(device)
        t = time.perf_counter()
        with torch.no_grad(), models.autocast(device, bf16):
            gen_model.eval()
            out = gen_model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, do_sample=True,
                                     temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=args.new_tokens,
                                     use_cache=True, pad_token_id=0, eos_token_id=1)  # (B, P + T)
        sync(device)
        gen_s += time.perf_counter() - t
        completion_ids = out[:, prompt_ids.shape[1]:]  # (B, T)
        mask = completion_mask(completion_ids, 1)  # (B, T)
        rollout = Rollout(prompt_ids, prompt_mask, completion_ids * mask, mask, [""] * len(mask), G)
        rewards = ((completion_ids % 2 == 0) * mask).sum(-1) / mask.sum(-1).clamp(min=1)  # (B,)
        advantages = group_advantages(rewards.float(), G)  # (B,)
        gen_tokens += int(mask.sum())
        t = time.perf_counter()
        train_model.train()
        with torch.no_grad(), models.autocast(device, bf16):
            logp_old = token_logprobs(train_model, rollout)  # (B, T)
        optimizer.zero_grad(set_to_none=True)
        value, _ = backward(train_model, rollout, Targets(advantages, mask.float(), logp_old), loss_fn, hp,
                            world=world, accumulation=min(args.grad_accumulation, len(mask)))
        grad_norm = torch.nn.utils.clip_grad_norm_(train_model.parameters(), 1.0)
        optimizer.step()
        sync(device)
        train_s += time.perf_counter() - t
        train_tokens += int(mask.sum())
        rows.append({"step": step, "loss": float(value), "grad_norm": float(grad_norm)})

    world_tokens = (
        float(distributed.all_sum(gen_tokens, world)),
        float(distributed.all_sum(train_tokens, world)),
    )
    result = {
        "size": args.size,
        "params": params,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "processes": world.size,
        "parallel": args.parallel,
        "bf16": bf16,
        "gradient_checkpointing": args.gradient_checkpointing,
        "batch": args.prompts * G,
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        "gen_tokens_per_s": world_tokens[0] / gen_s,
        "train_tokens_per_s": world_tokens[1] / train_s,
        "peak_mem_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "steps": rows,
        "finite": all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in rows),
        "versions": {"torch": torch.__version__},
    }
    if world.is_main:
        text = json.dumps(result, indent=2)
        print(text, flush=True)
        if args.out:
            Path(args.out).write_text(text)
    distributed.teardown()
    return 0 if result["finite"] else 1


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    raise SystemExit(main())
