"""Rollout: sample ``G`` completions per prompt, and score tokens under a policy.

``Sampler`` is the extension point (a Protocol): anything with ``sample(prompts, group_size) -> Rollout``
can feed the trainer (a vLLM engine, a server). :class:`HFSampler` uses ``model.generate`` with the KV
cache and temperature sampling (no top-k / top-p, so samples come from the policy itself at that
temperature).

Shapes: ``B = n_prompts * G`` sequences, ordered prompt-major (rows ``i*G .. i*G+G-1`` share prompt
``i``); ``P`` prompt tokens (left-padded), ``T`` completion tokens (right-padded). A completion ends at
its first EOS, which is part of the completion (its probability is trained too); a completion without
EOS was cut at ``max_new_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch
from torch import Tensor


@dataclass(frozen=True)
class Rollout:
    prompt_ids: Tensor  # (B, P) left-padded
    prompt_mask: Tensor  # (B, P) 1 on prompt tokens
    completion_ids: Tensor  # (B, T) right-padded
    completion_mask: Tensor  # (B, T) 1 on completion tokens up to and including the first EOS
    texts: list[str]  # (B,) decoded completions, special tokens removed
    group_size: int

    @property
    def lengths(self) -> Tensor:
        return self.completion_mask.sum(-1)  # (B,)


class Sampler(Protocol):
    def sample(self, prompts: Sequence[str], group_size: int) -> Rollout:
        """``group_size`` completions for every prompt, prompt-major."""
        ...


def completion_mask(completion_ids: Tensor, eos_id: int) -> Tensor:
    """(B, T) mask: 1 up to and including the first EOS of each row (all ones when there is none)."""
    is_eos = completion_ids == eos_id  # (B, T)
    after_eos = (is_eos.cumsum(-1) - is_eos.long()) > 0  # strictly after the first EOS
    return (~after_eos).long()


@dataclass
class HFSampler:
    """Group sampling with ``transformers`` ``generate`` (KV cache on)."""

    model: torch.nn.Module
    tokenizer: object
    temperature: float = 1.0
    max_new_tokens: int = 16

    @torch.no_grad()
    def sample(self, prompts: Sequence[str], group_size: int) -> Rollout:
        tok = self.tokenizer
        enc = tok(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
        device = next(self.model.parameters()).device
        prompt_ids = enc["input_ids"].to(device).repeat_interleave(group_size, 0)  # (B, P)
        prompt_mask = enc["attention_mask"].to(device).repeat_interleave(group_size, 0)  # (B, P)
        was_training = self.model.training
        self.model.eval()
        out = self.model.generate(
            input_ids=prompt_ids, attention_mask=prompt_mask, do_sample=True, temperature=self.temperature,
            top_k=0, top_p=1.0, max_new_tokens=self.max_new_tokens, use_cache=True,
            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        )  # (B, P + T)
        self.model.train(was_training)
        completion_ids = out[:, prompt_ids.shape[1]:]  # (B, T)
        mask = completion_mask(completion_ids, tok.eos_token_id)  # (B, T)
        completion_ids = torch.where(mask.bool(), completion_ids, torch.full_like(completion_ids, tok.pad_token_id))
        texts = tok.batch_decode(completion_ids, skip_special_tokens=True)
        return Rollout(prompt_ids, prompt_mask, completion_ids, mask, texts, group_size)


def token_logprobs(model: torch.nn.Module, rollout: Rollout, temperature: float = 1.0) -> Tensor:
    """(B, T) log-probabilities of the completion tokens under ``model`` (with grad if enabled).

    Logits are divided by the sampling temperature (as TRL and verl do), so at ``temperature != 1`` the
    policy being trained is the tempered one that actually produced the samples."""
    input_ids = torch.cat([rollout.prompt_ids, rollout.completion_ids], dim=1)  # (B, P + T)
    attention = torch.cat([rollout.prompt_mask, rollout.completion_mask], dim=1)  # (B, P + T)
    position_ids = (attention.cumsum(-1) - 1).clamp(min=0)  # left padding: positions start at 0
    logits = model(input_ids=input_ids, attention_mask=attention, position_ids=position_ids).logits
    P = rollout.prompt_ids.shape[1]
    logits = logits[:, P - 1 : -1].float() / temperature  # (B, T, V): logits that predict each completion token
    logp = torch.log_softmax(logits, dim=-1).gather(-1, rollout.completion_ids.unsqueeze(-1)).squeeze(-1)
    return logp * rollout.completion_mask  # (B, T), 0 on padding


__all__ = ["HFSampler", "Rollout", "Sampler", "completion_mask", "token_logprobs"]
