"""A sampler whose finished sequences cost nothing: the batch and its KV cache shrink as rows hit EOS.

``transformers``' ``generate`` keeps every row of the batch in every forward call until the longest
completion ends (finished rows are fed padding). :class:`CompactSampler` runs its own loop over the KV
cache instead: after each token, the rows that produced EOS are removed from the batch, the attention
mask and the cache (``Cache.batch_select_indices``), so each forward call runs only the live rows. A
finished row's place is taken by a live row from the end of the batch (:func:`ladtrain.kv_buffer.fill_order`),
so dropping rows copies only the rows moved; the batch's row order then differs from ``generate``'s. Like
:class:`ladtrain.rollout.HFSampler` it runs each group's prompt once and copies its cache to the ``G``
rows, and it returns the same :class:`~ladtrain.rollout.Rollout` (it satisfies the ``Sampler``
protocol).

**What is identical to** ``HFSampler`` **for the same seed, and what is not.**

* The random stream. ``generate`` samples with ``torch.multinomial(probs, 1)`` on the (B, V)
  probabilities of all rows, finished ones included, which on CPU and GPU draws ``q ~ Exp(1)`` of shape
  (B, V) and takes ``argmax(probs / q)``. This sampler draws the same (B, V) exponentials every step
  (``draws="generate"``, the default) and uses the rows of the live sequences, so it consumes the
  generator exactly as ``generate`` does (the RNG state afterwards is the same) and each live row sees
  the same ``q`` as under ``generate``.
* The tokens: identical whenever the live rows' logits are bitwise those ``generate`` computes. They
  agree to round-off, not always bit for bit: they come from a smaller batch (its rows in another order;
  a matrix product's last bits may depend on the batch size), and where it measures faster the linear
  layers run through transposed weight copies (:mod:`ladtrain.transposed_linears`; ``transposed=False``
  is the ablation) or, in a model switched to oneDNN (:mod:`ladtrain.onednn_linears`), through weights
  reordered for oneDNN. So a token can differ where two candidates are within float32 rounding of each
  other (a near tie); the tests (``tests/train/test_compact_sampler.py``) find identical samples on the
  built-in model, and every sampled token's probability is the policy's own either way.
* Not applied here, unlike ``generate``: extra logits processors from a model folder's
  ``generation_config.json`` (``repetition_penalty``, ``min_p``, ``suppress_tokens``, ...); the tokens
  come from ``softmax(logits / temperature)`` only, the distribution the trainer scores.
* Other draws, the same distribution but not the same tokens (:func:`draw`): ``draws="live"`` draws the
  exponentials for the live rows only; ``draws="inverse-cdf"`` (``--sampler-draws inverse-cdf``) inverts
  each row's cumulative distribution with one uniform (:func:`inverse_cdf`), which at a real vocabulary
  costs a twentieth of the exponentials (``benchmarks/draws.py``, 16 x 49,152 probabilities: 1.16 ms
  against 20.8 ms per token).

The prompt's last token runs with the rest of the prompt once per group (``generate`` runs it on every
row); the first completion token is drawn from those logits, copied to the ``G`` rows.

The cache grows in place (:mod:`ladtrain.kv_buffer`: new positions are written into buffers allocated
once, not concatenated to a copy of the whole cache per token; ``buffer_cache=False`` is the ablation),
with the same logits bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from ladtrain import kv_buffer, onednn_linears, transposed_linears
from ladtrain.rollout import HFSampler, Rollout, cache_keyword, completion_mask, keep_last_logits, positions

DRAWS = ("generate", "live", "inverse-cdf")


def check_draws(draws: str) -> None:
    """ValueError unless ``draws`` names one of :data:`DRAWS`."""
    if draws not in DRAWS:
        raise ValueError(f"draws: {draws!r} is not one of {', '.join(DRAWS)}")


def draw(probs: Tensor, live: Tensor, batch: int, draws: str = "generate") -> Tensor:
    """One token per live row from ``probs`` (b, V), the probabilities of the live rows ``live`` (b,)
    out of ``batch`` rows, each drawn from its row's categorical distribution.

    * ``"generate"``: ``argmax(probs / q)`` with ``q ~ Exp(1)`` drawn for all ``batch`` rows, the live
      rows' used: the way ``torch.multinomial(probs, 1)`` samples inside ``generate``.
    * ``"live"``: the same with ``q`` drawn for the live rows only.
    * ``"inverse-cdf"``: :func:`inverse_cdf`, one uniform per row instead of ``V`` exponentials."""
    check_draws(draws)
    if draws == "inverse-cdf":
        return inverse_cdf(probs, live, batch)
    if draws == "generate":
        q = torch.empty((batch, probs.shape[1]), dtype=probs.dtype, device=probs.device).exponential_(1)
        q = q[live]  # (b, V)
    else:  # "live"
        q = torch.empty_like(probs).exponential_(1)  # (b, V)
    return (probs / q).argmax(dim=-1)  # (b,)


def inverse_cdf(probs: Tensor, live: Tensor, batch: int) -> Tensor:
    """One token per live row by inversion of its cumulative distribution: with ``c`` the running sums of
    the row's probabilities (in float64) and ``u ~ U[0, 1)`` (float64, drawn for all ``batch`` rows, the
    live rows' used, so a sequence's draw does not depend on where compaction put it), the token is the
    first ``i`` with ``c[i] > u c[V-1]``. Token ``i`` is drawn with probability ``p_i / sum(p)`` up to
    float64 rounding (its interval ``[c[i-1], c[i])`` has width ``p_i``), and a token of probability 0 has
    an empty interval, so it is never drawn. The index exists: ``u <= 1 - 2^-53``, so ``u c[V-1]`` is
    below ``c[V-1]`` after rounding (``c[V-1] 2^-53`` is at least half the spacing of doubles at
    ``c[V-1]``, and a tie rounds down to an exactly representable value), and the search ends at the last
    token of non-zero probability at most. One (b, V) running sum instead of (B, V) exponentials: at the
    135M shape's 16 x 49,152 probabilities, 1.16 ms against 20.8 ms per token (``benchmarks/draws.py``)."""
    c = torch.cumsum(probs, dim=-1, dtype=torch.float64)  # (b, V)
    total = c[:, -1:].contiguous()  # (b, 1)
    if not bool(torch.isfinite(total).all() and (total > 0).all()):
        raise ValueError("inverse_cdf: a row's probabilities are not finite or sum to 0")
    u = torch.rand((batch, 1), dtype=torch.float64, device=probs.device)[live]  # (b, 1)
    return torch.searchsorted(c, u * total, right=True).squeeze(1)  # (b,) first i with c[i] > u * total


@dataclass
class CompactSampler:
    """Group sampling over the KV cache, dropping finished rows (see the module docstring)."""

    model: torch.nn.Module
    tokenizer: object
    temperature: float = 1.0
    max_new_tokens: int = 16
    draws: str = "generate"  # generate's exponentials | "live" | "inverse-cdf" (see draw)
    share_prompts: bool = True  # False: prefill every row's prompt (an ablation; the same samples, slower)
    buffer_cache: bool = True  # False: transformers' concatenating cache (an ablation; the same samples)
    transposed: bool | None = None  # None: where transposed_linears.pays (measured); False: never

    def __post_init__(self) -> None:
        check_draws(self.draws)

    def sample(self, prompts: Sequence[str], group_size: int) -> Rollout:
        rows = len(prompts) * group_size  # the decode's rows at its start
        if onednn_linears.switched(self.model):
            with onednn_linears.packed(self.model, rows):  # oneDNN's reordered weights (switched layers)
                return self._sample(prompts, group_size)
        with transposed_linears.transposed_linears(self.model, enabled=self.transposed, rows=rows):
            return self._sample(prompts, group_size)

    @torch.no_grad()
    def _sample(self, prompts: Sequence[str], group_size: int) -> Rollout:
        keyword = cache_keyword(self.model)
        if keyword is None or len(prompts) == 0:  # a model that takes no cache: generate's loop
            fallback = HFSampler(self.model, self.tokenizer, self.temperature, self.max_new_tokens)
            return fallback.sample(prompts, group_size)
        tok, G, T = self.tokenizer, group_size, self.max_new_tokens
        enc = tok(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
        device = next(self.model.parameters()).device
        unique_ids = enc["input_ids"].to(device)  # (n, P)
        unique_mask = enc["attention_mask"].to(device)  # (n, P)
        prompt_ids = unique_ids.repeat_interleave(G, 0)  # (B, P)
        prompt_mask = unique_mask.repeat_interleave(G, 0)  # (B, P)
        B = prompt_ids.shape[0]
        was_training = self.model.training
        self.model.eval()
        copies = G if self.share_prompts else 1  # rows per prefilled prompt
        first_ids, first_mask = (unique_ids, unique_mask) if self.share_prompts else (prompt_ids, prompt_mask)
        out = self.model(input_ids=first_ids, attention_mask=first_mask, position_ids=positions(first_mask),
                         use_cache=True, **keep_last_logits(self.model, 1))  # each prompt once
        cache = out[keyword]
        if copies > 1:
            cache.batch_repeat_interleave(copies)  # (n, ...) -> (B, ...), prompt-major
        if self.buffer_cache:  # new positions written in place, not concatenated (ladtrain.kv_buffer)
            kv_buffer.buffered(cache, capacity=first_ids.shape[1] + T)
        logits = out.logits[:, -1].repeat_interleave(copies, 0)  # (B, V)
        completion = torch.full((B, T), tok.pad_token_id, dtype=prompt_ids.dtype, device=device)  # (B, T)
        live = torch.arange(B, device=device)  # (b,) the batch row of each live sequence
        attention = prompt_mask  # (b, P + t)
        steps = 0
        for t in range(T):
            steps = t + 1
            scaled = logits.float() if self.temperature == 1.0 else logits.float() / self.temperature
            probs = torch.softmax(scaled, dim=-1)  # (b, V); dividing by 1 would change nothing
            token = draw(probs, live, B, self.draws)  # (b,)
            completion[live, t] = token
            going = token != tok.eos_token_id  # (b,)
            if t == T - 1 or not bool(going.any()):
                break
            if not bool(going.all()):  # drop the rows that just ended from the batch and the cache
                keep = kv_buffer.fill_order(going)  # (b',): ended rows filled from the end, in place
                cache.batch_select_indices(keep)
                live, attention, token = live[keep], attention[keep], token[keep]
            attention = torch.cat([attention, attention.new_ones(attention.shape[0], 1)], dim=1)  # (b, P+t+1)
            out = self.model(input_ids=token[:, None], attention_mask=attention, use_cache=True,
                             position_ids=attention.sum(-1, keepdim=True) - 1, **{keyword: cache})
            logits = out.logits[:, -1]  # (b, V)
        self.model.train(was_training)
        completion = completion[:, :steps]  # (B, T') as generate: no column after the longest completion
        mask = completion_mask(completion, tok.eos_token_id)  # (B, T)
        completion = torch.where(mask.bool(), completion, torch.full_like(completion, tok.pad_token_id))
        texts = tok.batch_decode(completion, skip_special_tokens=True)
        return Rollout(prompt_ids, prompt_mask, completion, mask, texts, G)


__all__ = ["DRAWS", "CompactSampler", "check_draws", "draw", "inverse_cdf"]
