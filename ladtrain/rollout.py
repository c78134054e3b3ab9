"""Rollout: sample ``G`` completions per prompt, and score tokens under a policy.

``Sampler`` is the extension point (a Protocol): anything with ``sample(prompts, group_size) -> Rollout``
can feed the trainer (a vLLM engine, a server). :class:`HFSampler` uses ``model.generate`` with the KV
cache and temperature sampling; by default no top-k / top-p, so samples come from the policy itself at
that temperature (``top_p < 1`` or ``top_k > 0`` sample from a truncated policy, while
:func:`token_logprobs` scores the full tempered one, as TRL does).

Shapes: ``B = n_prompts * G`` sequences, ordered prompt-major (rows ``i*G .. i*G+G-1`` share prompt
``i``); ``P`` prompt tokens (left-padded), ``T`` completion tokens (right-padded). A completion ends at
its first EOS, which is part of the completion (its probability is trained too); a completion without
EOS was cut at ``max_new_tokens``.

**Shared prompts.** The ``G`` rows of a group have the same prompt, and under causal attention the prompt
positions never see the completion, so their activations (and their keys and values) are the same in
every row. Both the sampler and :func:`token_logprobs` therefore run the prompt once per group and copy
its KV cache ``G`` times (``Cache.batch_repeat_interleave``); gradients flow back through the copy.
This removes ``(G-1)/G`` of the prompt's compute (measured: a 6.4M model, 16 prompts x 8, 14 prompt and
16 completion tokens: forward+backward about 2x faster; ``benchmarks/step_profile.py``). The results are
those of the full batch up to floating-point summation order (tested in float64 to 1e-12 and with
identical samples; ``tests/train/test_benchmarks_exactness.py``). It is used only where it is exact: the
rows of each group share their prompt, the model is a Hugging Face causal LM taking a cache, and no
dropout is active; otherwise the full batch runs as before. Under gradient checkpointing the cache is
kept by :func:`ladtrain.checkpointing.kept_cache` (each replayed layer sees the cache its forward saw;
tested against the full batch without checkpointing, ``tests/train/test_checkpointing.py``).

**No full logits, no padding.** :func:`token_logprobs` scores the tokens from the final hidden states in
chunks where the model allows it (:mod:`ladtrain.logprobs`: no (B, T, V) tensor, recomputed in the
backward pass). With shared prompts and no gradient checkpointing it runs the completions in one pass
whose MLPs skip the padding (:mod:`ladtrain.packing`); otherwise, where it skips at least 10% of the
positions, it runs them in buckets of similar lengths, each only up to its own longest completion
(:func:`length_buckets`). All are exact to float32 round-off (``tests/train/test_logprobs.py``,
``tests/train/test_packing.py``). :class:`ladtrain.compact_sampler.CompactSampler`,
the trainer's sampler, drops finished rows from the batch and the KV cache.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from dataclasses import dataclass, replace
from typing import Protocol, Sequence

import torch
from torch import Tensor

from ladtrain import checkpointing, logprobs, packing


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

    def rows(self, s: slice | Tensor) -> Rollout:
        """The rows ``s`` (a slice or a 1-D index tensor), texts included."""
        texts = self.texts[s] if isinstance(s, slice) else [self.texts[i] for i in s.tolist()]
        return replace(self, prompt_ids=self.prompt_ids[s], prompt_mask=self.prompt_mask[s],
                       completion_ids=self.completion_ids[s], completion_mask=self.completion_mask[s],
                       texts=list(texts))


def ends_with_eos(rollout: Rollout, eos_id: int | None) -> Tensor:
    """(B,) bool: the completion ended with EOS (False for a completion cut at ``max_new_tokens``)."""
    lengths = rollout.completion_mask.sum(-1)  # (B,)
    last = rollout.completion_ids.gather(1, (lengths - 1).clamp(min=0).long().unsqueeze(1)).squeeze(1)  # (B,)
    return (last == eos_id) & (lengths > 0)


class Sampler(Protocol):
    def sample(self, prompts: Sequence[str], group_size: int) -> Rollout:
        """``group_size`` completions for every prompt, prompt-major."""
        ...


def completion_mask(completion_ids: Tensor, eos_id: int) -> Tensor:
    """(B, T) mask: 1 up to and including the first EOS of each row (all ones when there is none)."""
    is_eos = completion_ids == eos_id  # (B, T)
    after_eos = (is_eos.cumsum(-1) - is_eos.long()) > 0  # strictly after the first EOS
    return (~after_eos).long()


def positions(attention: Tensor) -> Tensor:
    """(B, L) position ids for left-padded rows: 0 at each row's first real token."""
    return (attention.cumsum(-1) - 1).clamp(min=0)


def cache_keyword(model: torch.nn.Module) -> str | None:
    """The keyword under which ``model.forward`` takes a KV cache (``cache`` in recent ``transformers``,
    ``past_key_values`` before), or None for a model (or a wrapper: DDP, PEFT) that does not name one."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return None
    return next((name for name in ("cache", "past_key_values") if name in params), None)


def keep_last_logits(model: torch.nn.Module, n: int) -> dict[str, int]:
    """``{"logits_to_keep": n}`` when ``model.forward`` can compute the output layer on the last ``n``
    positions only (the prompt's other logits are never used; at a 150k vocabulary they are most of the
    activation memory), else ``{}`` (the caller slices)."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return {}
    return {"logits_to_keep": n} if "logits_to_keep" in params else {}


def dropout_active(model: torch.nn.Module) -> bool:
    """Whether a forward pass of ``model`` draws dropout masks (sharing a prompt would share them)."""
    if not model.training:
        return False
    config = getattr(model, "config", None)
    if any(getattr(config, name, 0) or 0 for name in ("attention_dropout", "hidden_dropout", "dropout")):
        return True
    return any(isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules())


def groups_share_prompts(prompt_ids: Tensor, prompt_mask: Tensor, group_size: int) -> bool:
    """True when the ``G`` rows of every group carry the same (padded) prompt."""
    B, P = prompt_ids.shape
    if group_size < 2 or B % group_size or P == 0:
        return False
    ids = prompt_ids.view(-1, group_size, P)  # (n, G, P)
    mask = prompt_mask.view(-1, group_size, P)  # (n, G, P)
    return bool((ids == ids[:, :1]).all()) and bool((mask == mask[:, :1]).all())


def can_share_prompts(model: torch.nn.Module, prompt_ids: Tensor, prompt_mask: Tensor,
                      group_size: int) -> bool:
    """Whether :func:`token_logprobs` may run each group's prompt once: a cache-taking HF model, no
    dropout, gradient checkpointing off or able to keep the cache exactly
    (:func:`ladtrain.checkpointing.keeps_cache`), and the groups share their prompts."""
    return (
        cache_keyword(model) is not None
        and not dropout_active(model)
        and checkpointing.keeps_cache(model)
        and groups_share_prompts(prompt_ids, prompt_mask, group_size)
    )


@dataclass
class HFSampler:
    """Group sampling with ``transformers`` ``generate`` (KV cache on; each prompt's cache is computed
    once and copied to its ``G`` rows, see the module docstring)."""

    model: torch.nn.Module
    tokenizer: object
    temperature: float = 1.0
    max_new_tokens: int = 16
    top_p: float = 1.0  # nucleus sampling (1: off)
    top_k: int = 0  # the k most likely tokens (0: off)
    share_prompts: bool = True  # False: prefill every row's prompt (an ablation; the same samples, slower)

    @torch.no_grad()
    def sample(self, prompts: Sequence[str], group_size: int) -> Rollout:
        tok = self.tokenizer
        enc = tok(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
        device = next(self.model.parameters()).device
        unique_ids = enc["input_ids"].to(device)  # (n, P)
        unique_mask = enc["attention_mask"].to(device)  # (n, P)
        prompt_ids = unique_ids.repeat_interleave(group_size, 0)  # (B, P)
        prompt_mask = unique_mask.repeat_interleave(group_size, 0)  # (B, P)
        was_training = self.model.training
        self.model.eval()
        shared = {}
        keyword = cache_keyword(self.model)
        if (
            self.share_prompts
            and keyword is not None
            and group_size >= 2
            and unique_ids.shape[1] >= 2
            and len(prompts) > 0
        ):
            # the prompt once per group (all but its last token: generate runs that one and samples)
            prefill = self.model(
                input_ids=unique_ids[:, :-1],
                attention_mask=unique_mask[:, :-1],
                position_ids=positions(unique_mask[:, :-1]),
                use_cache=True,
                **keep_last_logits(self.model, 1),
            )
            cache = prefill[keyword]
            cache.batch_repeat_interleave(group_size)  # (n, ...) -> (B, ...), prompt-major
            shared = {keyword: cache}
        out = self.model.generate(
            input_ids=prompt_ids,
            attention_mask=prompt_mask,
            do_sample=True,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            max_new_tokens=self.max_new_tokens,
            use_cache=True,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            **shared,
        )  # (B, P + T)
        self.model.train(was_training)
        completion_ids = out[:, prompt_ids.shape[1] :]  # (B, T)
        mask = completion_mask(completion_ids, tok.eos_token_id)  # (B, T)
        completion_ids = torch.where(
            mask.bool(), completion_ids, torch.full_like(completion_ids, tok.pad_token_id)
        )
        texts = tok.batch_decode(completion_ids, skip_special_tokens=True)
        return Rollout(prompt_ids, prompt_mask, completion_ids, mask, texts, group_size)


def _logprobs_of(logits: Tensor, ids: Tensor, temperature: float) -> Tensor:
    """(B, T) log-softmax of ``logits / temperature`` (B, T, V) at ``ids`` (B, T), in at least float32."""
    return logprobs.plain_logprobs(logits, ids, temperature)


def token_logprobs(
    model: torch.nn.Module,
    rollout: Rollout,
    temperature: float = 1.0,
    share_prompts: bool | None = None,
    chunked: bool | None = None,
    buckets: list[Tensor] | None = None,
    pack: bool | None = None,
) -> Tensor:
    """(B, T) log-probabilities of the completion tokens under ``model`` (with grad if enabled).

    Logits are divided by the sampling temperature (as TRL and verl do), so at ``temperature != 1`` the
    policy being trained is the tempered one that actually produced the samples. ``share_prompts``
    (default: when exact, see the module docstring) runs each group's prompt once. ``chunked`` (default:
    where :func:`ladtrain.logprobs.output_head` allows it) scores the tokens from the final hidden states in
    chunks, never holding the (B, T, V) logits (:mod:`ladtrain.logprobs`). ``buckets`` (default
    :func:`length_buckets`, ``[]`` for one pass; always one pass with several processes, whose forward
    counts must agree) runs the completions in buckets of similar lengths, each
    only up to its longest completion. ``pack`` (default: where :func:`ladtrain.packing.applicable`, with
    shared prompts and no explicit ``buckets``) runs the completions in one pass whose MLPs skip the
    padding (:mod:`ladtrain.packing`); it replaces the buckets."""
    if share_prompts is None:
        share_prompts = can_share_prompts(model, rollout.prompt_ids, rollout.prompt_mask, rollout.group_size)
    if buckets is None and _several_ranks():
        # DDP / FSDP2 need the same number of forward passes on every rank, and each rank's buckets follow
        # its own completion lengths: one pass (a per-rank bucket count hung DDP in a collective)
        buckets = []
    head = logprobs.output_head(model) if chunked is not False else None
    if chunked and head is None:
        raise ValueError("token_logprobs(chunked=True): the model's logits are not lm_head(backbone(...))")
    if share_prompts:
        return _shared_prompt_logprobs(model, rollout, temperature, head, buckets, pack)
    T = rollout.completion_ids.shape[1]
    buckets = length_buckets(rollout.lengths) if buckets is None else buckets
    if buckets:  # bucket by bucket, each only up to its longest completion (see length_buckets)
        parts = []
        for rows in buckets:
            length = int(rollout.lengths[rows].max())
            part = _full_batch_outputs(model, head, rollout, rows, length)  # (k, length, H or V)
            parts.append(torch.nn.functional.pad(part, (0, 0, 0, T - length)))  # zeros where nothing is read
        outputs = torch.cat(parts)[torch.argsort(torch.cat(buckets))]  # (B, T, H or V), batch order
    else:
        outputs = _full_batch_outputs(model, head, rollout, slice(None), T)  # (B, T, H or V)
    if head is not None:
        return logprobs.selected_logprobs(
            outputs, head, rollout.completion_ids, rollout.completion_mask, temperature
        )  # (B, T), 0 on padding
    logp = _logprobs_of(outputs, rollout.completion_ids, temperature)  # (B, T)
    return logp * rollout.completion_mask  # (B, T), 0 on padding


def _several_ranks() -> bool:
    return (torch.distributed.is_available() and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1)


def _full_batch_outputs(
    model: torch.nn.Module,
    head: logprobs.OutputHead | None,
    rollout: Rollout,
    rows: Tensor | slice,
    length: int,
) -> Tensor:
    """(k, length, H or V): the final hidden states (with ``head``) or logits predicting completion tokens
    ``0 .. length - 1`` of the rows ``rows``, prompt and completion run together."""
    input_ids = torch.cat([rollout.prompt_ids[rows], rollout.completion_ids[rows, :length]], dim=1)  # k, P+L
    attention = torch.cat([rollout.prompt_mask[rows], rollout.completion_mask[rows, :length]], dim=1)
    if head is not None:
        hidden = head.backbone(
            input_ids=input_ids, attention_mask=attention, position_ids=positions(attention)
        ).last_hidden_state  # (k, P + L, H)
        return hidden[:, -(length + 1) : -1]
    logits = model(
        input_ids=input_ids,
        attention_mask=attention,
        position_ids=positions(attention),
        **keep_last_logits(model, length + 1),
    ).logits  # (k, L + 1 or P + L, V)
    return logits[:, -(length + 1) : -1]  # the logits predicting each token


def length_buckets(lengths: Tensor, parts: int = 4, min_saving: float = 0.1) -> list[Tensor]:
    """Rows sorted by completion length (longest first) in ``parts`` buckets, when running each bucket
    only up to its own longest completion skips at least ``min_saving`` of the (B, T) completion
    positions; else ``[]`` (one pass over the whole batch). Positions after a row's EOS are never read,
    and under causal attention they do not change the positions before them, so the skip is exact."""
    B = lengths.numel()
    if parts < 2 or B < parts or B == 0:
        return []
    buckets = list(torch.argsort(lengths, descending=True, stable=True).chunk(parts))
    work = sum(len(rows) * int(lengths[rows].max()) for rows in buckets)
    return buckets if work <= (1 - min_saving) * B * int(lengths.max()) else []


def _read_positions(lengths: Tensor, n: int) -> Tensor:
    """(B, n) whether input position t of the completions pass is read: it predicts token t + 1, read
    while t + 1 < the row's length (EOS included)."""
    return torch.arange(n, device=lengths.device) < (lengths[:, None] - 1)


def _shared_prompt_logprobs(
    model: torch.nn.Module,
    rollout: Rollout,
    temperature: float,
    head: logprobs.OutputHead | None = None,
    buckets: list[Tensor] | None = None,
    pack: bool | None = None,
) -> Tensor:
    """:func:`token_logprobs` running each group's prompt once: the prompt's cache (with its autograd
    graph) is copied to the ``G`` rows, then the completions run on top of it, bucket by bucket of similar
    lengths where that saves work (``buckets``: default :func:`length_buckets`; ``[]``: one pass). With
    ``head``, the final hidden states are scored in chunks (:func:`ladtrain.logprobs.selected_logprobs`)."""
    G = rollout.group_size
    P = rollout.prompt_ids.shape[1]
    attention = torch.cat([rollout.prompt_mask, rollout.completion_mask], dim=1)  # (B, P + T)
    position = positions(attention)  # (B, P + T)
    net = head.backbone if head is not None else model
    keyword = cache_keyword(net)
    extra = {} if head is not None else keep_last_logits(model, 1)
    with checkpointing.kept_cache(net):  # under gradient checkpointing too (exact replays)
        prompt = net(
            input_ids=rollout.prompt_ids[::G],
            attention_mask=rollout.prompt_mask[::G],
            position_ids=position[::G, :P],
            use_cache=True,
            **extra,
        )  # (n,) rows
    last = prompt.last_hidden_state if head is not None else prompt.logits
    outputs = [last[:, -1:].repeat_interleave(G, 0)]  # (B, 1, H or V): predicts completion token 0
    T = rollout.completion_ids.shape[1]
    if pack is None:
        pack = buckets is None and packing.applicable(net)
    if pack:
        buckets = []  # one pass: packing skips all the padding the buckets would skip some of
    buckets = length_buckets(rollout.lengths) if buckets is None else buckets
    if T > 1 and not (buckets and hasattr(prompt[keyword], "layers")):
        cache = prompt[keyword]
        cache.batch_repeat_interleave(G)  # (n, ...) -> (B, ...)
        packed = (packing.only_rows(net, _read_positions(rollout.lengths, T - 1)) if pack
                  else contextlib.nullcontext())
        with checkpointing.kept_cache(net, discard_writes=True), packed:
            rest = net(
                input_ids=rollout.completion_ids[:, :-1],
                attention_mask=attention[:, :-1],
                position_ids=position[:, P:-1],
                use_cache=True,
                **{keyword: cache},
            )
        # (B, T - 1, H or V): predict completion tokens 1..T-1
        outputs.append(rest.last_hidden_state if head is not None else rest.logits)
    elif T > 1:  # bucket by bucket, each only up to its longest completion (see length_buckets)
        parts = []
        for rows in buckets:
            longest = int(rollout.lengths[rows].max())
            part = last.new_zeros(len(rows), T - 1, last.shape[-1])  # (k, T - 1, H or V)
            if longest > 1:
                cache = copy.copy(prompt[keyword])  # its own layer objects, the same tensors
                cache.layers = [copy.copy(layer) for layer in cache.layers]
                cache.batch_select_indices(rows // G)  # the prompt rows of this bucket's completions
                span = slice(P, P + longest - 1)
                with checkpointing.kept_cache(net, discard_writes=True):
                    out = net(
                        input_ids=rollout.completion_ids[rows, : longest - 1],
                        attention_mask=attention[rows, : P + longest - 1],
                        position_ids=position[rows, span],
                        use_cache=True,
                        **{keyword: cache},
                    )
                hidden = out.last_hidden_state if head is not None else out.logits  # (k, longest - 1, H or V)
                part = torch.nn.functional.pad(hidden, (0, 0, 0, T - longest))  # zeros where nothing is read
            parts.append(part)
        order = torch.cat(buckets)  # bucket rows -> batch rows
        outputs.append(torch.cat(parts)[torch.argsort(order)])  # (B, T - 1, H or V), batch order
    if head is not None:
        return logprobs.selected_logprobs(
            torch.cat(outputs, dim=1), head, rollout.completion_ids, rollout.completion_mask, temperature
        )  # (B, T), 0 on padding
    logp = _logprobs_of(torch.cat(outputs, dim=1), rollout.completion_ids, temperature)  # (B, T)
    return logp * rollout.completion_mask  # (B, T), 0 on padding


__all__ = [
    "HFSampler",
    "Rollout",
    "Sampler",
    "can_share_prompts",
    "cache_keyword",
    "completion_mask",
    "dropout_active",
    "ends_with_eos",
    "groups_share_prompts",
    "keep_last_logits",
    "length_buckets",
    "positions",
    "token_logprobs",
]
