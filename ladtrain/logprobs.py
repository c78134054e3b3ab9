"""Log-probabilities of chosen tokens without a (B, T, V) logits tensor.

The plain way to score the completion tokens runs the output layer on every position, ``(B, T, V)``
logits, then ``log_softmax`` and a gather. At a real vocabulary (49,152 for SmolLM2, 151,936 for
Qwen2.5) that tensor and the copies that ``log_softmax`` and its backward make are most of a step's
activation memory (16 completions x 96 tokens x 49,152 x 4 bytes = 302 MB per copy).

:class:`ChunkedTokenLogprob` instead takes the final hidden states of the scored positions, ``(N, H)``
(only the positions whose mask is 1: padding after EOS is not scored), and computes
``log_softmax(h W^T + b) / temperature)[id]`` in chunks of rows, so that at most one ``(rows, V)``
float32 block of logits is alive at a time; the backward pass recomputes each chunk's logits instead of
keeping them (``d logp / d z = onehot(id) - softmax(z)``, divided by the temperature), and turns them into
probabilities in place with the logsumexp kept from the forward pass. Both passes work in place on the
chunk (no second (rows, V) tensor, no (V, H) temporary per chunk for the weight gradient: it is
accumulated inside the product; at the 135M benchmark shape this made the log-probs' forward and
backward 1.17-1.20x faster, one whole update 1.08x: ``results/benchmarks/before-after.md``, fourth
pass). The arithmetic is the plain path's, row by row, so the values agree to float32 round-off; the
weight gradient is summed chunk by chunk, a different summation order (tested against the plain path
in float64 to 1e-12 and in float32 to round-off, gradients included: ``tests/train/test_logprobs.py``).

Under ``torch.autocast`` the projection runs in the autocast dtype (as the model's own ``lm_head`` would)
and everything after it in float32, in the forward and in the backward pass alike.

:func:`output_head` says whether a model can be scored this way, and it is used only where the result is
the model's own: a Hugging Face causal LM (a PEFT wrapper is unwrapped) whose logits are exactly
``lm_head(backbone(...).last_hidden_state)`` with a linear ``lm_head`` (no logit soft-capping or scaling
in its config), not wrapped by DDP or sharded by FSDP (their hooks live on the outer module's forward).
Everything else takes the plain path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ladtrain import onednn_linears

CHUNK_LOGITS = 1 << 23  # logits per chunk (rows x vocabulary): 32 MiB in float32
ACCUMULATE_ROWS = 4096  # rows of the weight gradient per oneDNN product in backward (9 MiB at H = 576)

# config fields that make the logits something other than lm_head(hidden): soft-capping (Gemma 2),
# scaling (Cohere's logit_scale, Granite's logits_scaling, Falcon-H1's lm_head_multiplier, ...)
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "lm_head_multiplier",
                     "output_multiplier")


@dataclass(frozen=True)
class OutputHead:
    """A causal LM split into its backbone (ids -> final hidden states) and its linear output layer."""

    backbone: torch.nn.Module
    weight: Tensor  # (V, H)
    bias: Tensor | None  # (V,)


def output_head(model: torch.nn.Module) -> OutputHead | None:
    """The backbone and output layer of ``model`` when its logits are exactly ``lm_head(backbone(...))``
    and calling the backbone directly bypasses nothing (see the module docstring); else None."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - older torch
        FSDPModule = ()
    from transformers import PreTrainedModel

    if hasattr(model, "get_base_model") and not isinstance(model, PreTrainedModel):  # PEFT: LoRA is in place
        model = model.get_base_model()
    if not isinstance(model, PreTrainedModel) or (FSDPModule and isinstance(model, FSDPModule)):
        return None
    head = model.get_output_embeddings()
    backbone = model.base_model
    if type(head) is not torch.nn.Linear or backbone is model:
        return None
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    if any(getattr(config, name, None) is not None for name in _LOGIT_TRANSFORMS):
        return None
    return OutputHead(backbone, head.weight, head.bias)


def chunk_rows(vocab: int, chunk_logits: int | None = None) -> int:
    """Rows per chunk so that one chunk holds about ``chunk_logits`` (default :data:`CHUNK_LOGITS`) logits
    (at least one row)."""
    return max(1, (CHUNK_LOGITS if chunk_logits is None else chunk_logits) // max(1, vocab))


def _compute_dtype(device: torch.device, dtype: torch.dtype) -> torch.dtype:
    """The projection's dtype: the autocast dtype when autocast is on for this device, else ``dtype``."""
    kind = device.type
    if torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return dtype


def _chunk_logits(h: Tensor, weight: Tensor, bias: Tensor | None, temperature: float,
                  fast: bool = False) -> Tensor:
    """(n, V) logits / temperature in at least float32 (``h``, ``weight`` already in the compute dtype). The
    bias is added inside the product (``addmm``, as ``nn.Linear`` does); at temperature 1 there is no
    division (dividing by 1 is exact, and a pass over (n, V) costs as much as the softmax)."""
    if fast:  # ladtrain.onednn_linears: the same product through oneDNN
        z = onednn_linears.linear(h, weight, bias)
    else:
        z = h @ weight.t() if bias is None else torch.addmm(bias, h, weight.t())
    z = z.to(torch.promote_types(z.dtype, torch.float32))
    return z if temperature == 1.0 else z / temperature


def _logsumexp_(z: Tensor) -> Tensor:
    """(n,) ``logsumexp(z, dim=1)`` of ``z`` (n, V), computed in place (``z`` is overwritten): the passes of
    ``torch.logsumexp`` (max, subtract, exp, sum, log) without its (n, V) temporary."""
    top = z.amax(dim=1, keepdim=True)  # (n, 1)
    top = torch.where(torch.isinf(top), torch.zeros_like(top), top)  # a row of -inf stays -inf, as torch's
    return z.sub_(top).exp_().sum(dim=1).log_().add_(top.squeeze(1))


def _untempered(grad: Tensor, temperature: float) -> Tensor:
    """The gradient per tempered logit carried to the un-tempered logits (``z = raw / temperature``)."""
    return grad / temperature


def _accumulate(out: Tensor, a: Tensor, b: Tensor, alpha: float, fast: bool = False) -> None:
    """``out += alpha * a @ b``, in place in the product when the dtypes agree (no (V, H) temporary);
    ``fast``: the product through oneDNN, added slice by slice of ``out``'s rows (a temporary of
    :data:`ACCUMULATE_ROWS` rows, not (V, H))."""
    if fast and a.dtype == out.dtype:
        for s in range(0, out.shape[0], ACCUMULATE_ROWS):
            out[s : s + ACCUMULATE_ROWS].add_(onednn_linears.mm(a[s : s + ACCUMULATE_ROWS], b), alpha=alpha)
    elif a.dtype == out.dtype:
        out.addmm_(a, b, alpha=alpha)
    else:  # autocast: the product in its dtype, accumulated in ``out``'s
        out.add_((a @ b).to(out.dtype), alpha=alpha)


class ChunkedTokenLogprob(torch.autograd.Function):
    """``log_softmax((hidden @ weight.T + bias) / temperature)[ids]`` for ``hidden`` (N, H), ``ids`` (N,),
    chunked over rows and recomputed in backward (see the module docstring). Returns (N,)."""

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor | None, ids: Tensor, temperature: float,
                rows: int) -> Tensor:
        dtype = _compute_dtype(hidden.device, hidden.dtype)
        out_dtype = torch.promote_types(dtype, torch.float32)
        out = torch.empty(hidden.shape[0], dtype=out_dtype, device=hidden.device)  # (N,)
        lse = torch.empty_like(out)  # (N,) each row's logsumexp, kept for the backward pass
        fast = dtype == torch.float32 and onednn_linears.active(weight)  # the products through oneDNN
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype)
            b = bias.to(dtype) if bias is not None else None
            for s in range(0, hidden.shape[0], rows):
                z = _chunk_logits(hidden[s : s + rows].to(dtype), w, b, temperature, fast)  # (n, V)
                picked = z.gather(1, ids[s : s + rows, None]).squeeze(1)  # (n,)
                lse[s : s + rows] = _logsumexp_(z)  # z is spent
                out[s : s + rows] = picked - lse[s : s + rows]
        ctx.save_for_backward(hidden, weight, bias, ids, lse)
        ctx.temperature, ctx.rows, ctx.dtype, ctx.fast = temperature, rows, dtype, fast
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        # d logp / d z = onehot(id) - softmax(z), z the tempered logits. With g = grad / temperature per row:
        #   grad_h = g * (w[id] - p @ w),  grad_w = onehot^T (g h) - p^T (g h),  grad_b = onehot^T g - p^T g,
        # so the (n, V) probabilities p are used as they are and g is applied on the (n, H) side.
        hidden, weight, bias, ids, lse = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        dtype, rows, temperature, fast = ctx.dtype, ctx.rows, ctx.temperature, ctx.fast
        grad_h = torch.empty_like(hidden) if need_h else None  # (N, H)
        acc = torch.promote_types(weight.dtype, torch.float32)
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_w else None  # (V, H)
        grad_b = torch.zeros(bias.shape, dtype=acc, device=bias.device) if need_b else None  # (V,)
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype)
            b = bias.to(dtype) if bias is not None else None
            for s in range(0, hidden.shape[0], rows):
                h, picked = hidden[s : s + rows].to(dtype), ids[s : s + rows]  # (n, H), (n,)
                z = _chunk_logits(h, w, b, temperature, fast)  # (n, V), recomputed
                p = z.sub_(lse[s : s + rows, None]).exp_()  # (n, V) softmax(z), in place
                g = _untempered(grad[s : s + rows].to(p.dtype), temperature)  # (n,)
                if need_h:
                    pw = (onednn_linears.mm(p, w) if fast else p.to(dtype) @ w).to(p.dtype)  # (n, H)
                    grad_h[s : s + rows] = (g[:, None] * (w[picked].to(p.dtype) - pw)).to(hidden.dtype)
                if need_w:
                    gh = g[:, None].to(dtype) * h  # (n, H)
                    grad_w.index_add_(0, picked, gh.to(acc))
                    _accumulate(grad_w, p.to(dtype).t(), gh, alpha=-1.0, fast=fast)
                if need_b:
                    grad_b.index_add_(0, picked, g.to(acc))
                    grad_b.sub_((p.t() @ g).to(acc))
        return (grad_h, grad_w.to(weight.dtype) if need_w else None,
                grad_b.to(bias.dtype) if need_b else None, None, None, None)


def selected_logprobs(hidden: Tensor, head: OutputHead, ids: Tensor, mask: Tensor, temperature: float = 1.0,
                      chunk_logits: int | None = None) -> Tensor:
    """(B, T) log-probabilities of ``ids`` (B, T) from the final hidden states ``hidden`` (B, T, H) that
    predict them, through ``head``; only the positions where ``mask`` (B, T) is nonzero are scored, the
    others are 0 (as the plain path's ``logp * mask``)."""
    keep = mask.bool()  # (B, T)
    rows = chunk_rows(head.weight.shape[0], chunk_logits)
    scored = ChunkedTokenLogprob.apply(hidden[keep], head.weight, head.bias, ids[keep], temperature,
                                       rows)  # (N,)
    # masked_scatter keeps the result attached to the graph even when nothing is scored
    return scored.new_zeros(ids.shape).masked_scatter(keep, scored)  # (B, T)


def plain_logprobs(logits: Tensor, ids: Tensor, temperature: float = 1.0) -> Tensor:
    """(B, T) ``log_softmax(logits / temperature)`` (B, T, V) at ``ids`` (B, T), in at least float32: the
    reference path (it holds the whole logits tensor)."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature  # (B, T, V)
    return torch.log_softmax(logits, dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)


__all__ = ["CHUNK_LOGITS", "ChunkedTokenLogprob", "OutputHead", "chunk_rows", "output_head", "plain_logprobs",
           "selected_logprobs"]
