r"""Baseline policy losses that LAD is compared against: GRPO (three normalisations), GSPO, FlowRL.

Every loss here is tensor in, tensor out, and returns ``(loss, terms)``: a scalar tensor to call
``backward`` on and a dict of *detached* 0-dim diagnostics. Shapes: ``B`` sequences (a batch of groups,
``B = n_prompts * G``), ``T`` completion tokens; ``logp``, ``logp_old``, ``logp_ref`` and ``mask`` are
``(B, T)`` per-token log-probabilities of the sampled tokens under the current, behaviour (rollout) and
reference policies; ``advantages`` is ``(B,)`` (one number per sequence, broadcast to its tokens);
``mask`` is 1 on completion tokens and 0 on padding. No model, trainer or config object enters a loss.
This module imports only torch: the trainer (through the re-export ``ladtrain/baselines.py``) and the
controlled bandit (``ladtheory/bandit.py``, one-token responses of shape ``(N, 1)``) run the same code.

``weights`` (optional, ``(B,)``, non-negative, summing to 1) of :func:`grpo_loss` (``norm="grpo"``) and
:func:`flowrl_loss` replace the uniform mean ``1/B sum_i`` over sequences by the expectation
``sum_i w_i``: the bandit's exact mode takes the expectation over all arms under ``pi_old``. The default
``None`` is the uniform mean, computed exactly as without the argument (``.mean()``).

Ratios are formed in log space, ``log r = logp - logp_old``, and exponentiated once.

The definitions follow the papers (GRPO: arXiv 2402.03300; Dr. GRPO: arXiv 2503.20783; DAPO: arXiv
2503.14476; GSPO: arXiv 2507.18071; FlowRL: arXiv 2509.15207) and the reference trainers (TRL
``GRPOTrainer._compute_loss``, verl ``core_algos``, the FlowRL paper code). Where those disagree, the
choice made here is stated in the docstring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor


class BaselineError(ValueError):
    """A bad argument to a baseline loss (a user mistake: shown as one line)."""


# ---------------------------------------------------------------------------------------------------
# Aggregation of a (B, T) per-token loss into a scalar: the GRPO family's "normalisations".


@dataclass(frozen=True)
class Aggregation:
    """How a (B, T) per-token loss ``l`` with mask ``m`` becomes a scalar.

    ``reduce(l, m, max_len)`` where ``max_len`` is the constant of Dr. GRPO (the generation budget)."""

    name: str
    formula: str
    reduce: Callable[[Tensor, Tensor, int], Tensor]


def _seq_token_mean(loss: Tensor, mask: Tensor) -> Tensor:
    # (B, T) -> (B,) per-sequence token mean; empty rows count as 0.
    return (loss * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def _seq_mean_token_mean(loss: Tensor, mask: Tensor, max_len: int) -> Tensor:
    # (B, T) -> (B,) per-sequence token mean -> scalar mean over sequences.
    return _seq_token_mean(loss, mask).mean()


def _token_sum_over_constant(loss: Tensor, mask: Tensor, max_len: int) -> Tensor:
    # (B, T) -> scalar: sum of token losses over B * max_len (no length bias, Dr. GRPO).
    return (loss * mask).sum() / (loss.shape[0] * max_len)


def _global_token_mean(loss: Tensor, mask: Tensor, max_len: int) -> Tensor:
    # (B, T) -> scalar: every token in the batch weighs the same (DAPO).
    return (loss * mask).sum() / mask.sum().clamp(min=1.0)


AGGREGATIONS: dict[str, Aggregation] = {
    a.name: a
    for a in (
        Aggregation("grpo", "1/B sum_i 1/|y_i| sum_t l_it", _seq_mean_token_mean),
        Aggregation("dr_grpo", "1/(B L_max) sum_i sum_t l_it", _token_sum_over_constant),
        Aggregation("dapo", "1/(sum_i |y_i|) sum_i sum_t l_it", _global_token_mean),
    )
}


def _check(logp: Tensor, mask: Tensor, advantages: Tensor, **others: Tensor) -> None:
    if logp.dim() != 2:
        raise BaselineError(f"logp must have shape (B, T), got {tuple(logp.shape)}")
    for name, t in {"mask": mask, **others}.items():
        if t.shape != logp.shape:
            raise BaselineError(
                f"{name} must have the shape of logp {tuple(logp.shape)}, got {tuple(t.shape)}"
            )
    if advantages.shape != (logp.shape[0],):
        raise BaselineError(
            f"advantages must have shape (B,) = ({logp.shape[0]},), got {tuple(advantages.shape)}"
        )


def _check_weights(weights: Tensor | None, batch: int) -> None:
    if weights is None:
        return
    if weights.shape != (batch,):
        raise BaselineError(f"weights must have shape (B,) = ({batch},), got {tuple(weights.shape)}")
    w = weights.detach().to(torch.float64)
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or abs(float(w.sum()) - 1.0) > 1e-6:
        raise BaselineError(f"weights must be finite, >= 0 and sum to 1, got sum {float(w.sum())}")


def _detached(**values: Tensor | float) -> dict[str, Tensor]:
    return {k: torch.as_tensor(v).detach().clone() for k, v in values.items()}


# ---------------------------------------------------------------------------------------------------
# GRPO (PPO clipped surrogate, token level)


def grpo_loss(
    logp: Tensor,
    logp_old: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_eps: float | None = 0.2,
    clip_eps_high: float | None = None,
    norm: str = "grpo",
    max_len: int | None = None,
    weights: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""GRPO's clipped token-level surrogate with a choice of normalisation.

    .. math::

        r_{it} = \exp(\log\pi_\theta(y_{it}) - \log\pi_{old}(y_{it})), \qquad
        \ell_{it} = -\min\big(r_{it} A_i,\ \mathrm{clip}(r_{it}, 1-\epsilon_{lo}, 1+\epsilon_{hi}) A_i\big)

    then ``norm`` aggregates the masked ``l_it`` (``m_it`` the mask, ``|y_i| = sum_t m_it``):

    - ``grpo``    (Shao et al. 2024): ``1/B sum_i (1/|y_i|) sum_t m_it l_it`` -- per-sequence token mean,
      then the mean over sequences (TRL ``grpo``, verl ``seq-mean-token-mean``);
    - ``dr_grpo`` (Liu et al. 2025, "Dr. GRPO"): ``1/(B L) sum_it m_it l_it`` with the constant ``L =
      max_len`` (the generation budget; default ``T``, the padded width), which removes GRPO's length bias
      (equal to TRL 1.16 ``dr_grpo``, ``sum / (B * max_completion_length)``). It is *not* verl's
      ``seq-mean-token-sum-norm``: at verl commit b178a3cd ``agg_loss`` returns ``sum_it m_it l_it / L``
      (``L = loss_scale_factor``, default the padded width) with no division by ``B``, so verl's value and
      gradient are exactly ``B`` times this one's at the same ``L`` (AdamW is nearly invariant to that
      constant factor; gradient-norm clipping and weight decay are not);
    - ``dapo``    (Yu et al. 2025, DAPO): ``1/(sum_i |y_i|) sum_it m_it l_it`` -- the global token mean (TRL
      ``dapo``/``bnpo`` on one process, verl ``token-mean``). DAPO's "clip-higher" is ``clip_eps_high``
      (DAPO uses 0.28 with ``clip_eps`` 0.2); the registry entry ``dapo`` in ``ladtrain.losses`` sets it.

    ``clip_eps_high=None`` means the symmetric clip ``epsilon_hi = epsilon_lo = clip_eps``.
    ``clip_eps=None`` (with ``clip_eps_high=None``) means no clip at all: ``l_it = -r_it A_i``, the plain
    importance-weighted policy-gradient surrogate (the book's "no clip" curve, ``book/gradient.md``).

    ``weights`` (B,), summing to 1, only with ``norm="grpo"``: ``sum_i w_i (1/|y_i|) sum_t m_it l_it``
    instead of the mean over sequences (``None``: the mean, as computed without the argument).

    Gradient: ``d l_it / d log pi_t = -r_it A_i`` unless the clip is active, and 0 where it is: for
    ``A_i > 0`` once ``r_it > 1 + eps_hi``, for ``A_i < 0`` once ``r_it < 1 - eps_lo`` (the min picks the
    constant clipped branch). On the other side of 1 the unclipped branch is the minimum and the gradient
    flows. No KL-to-reference and no entropy terms (the comparison runs all methods without them).

    ``terms``: ``clip_frac`` (masked share of tokens whose gradient the clip cuts), ``clip_frac_low`` /
    ``clip_frac_high`` (the A<0 / A>0 parts), ``ratio_mean``, ``log_ratio_mean``, ``approx_kl`` (masked mean
    of the k3
    estimator ``r - 1 - log r`` of KL(pi_old || pi_theta)), ``weight_mean`` (mean |A|, the sample weight
    at ratio 1), ``tokens``.
    """
    _check(logp, mask, advantages, logp_old=logp_old)
    _check_weights(weights, logp.shape[0])
    if norm not in AGGREGATIONS:
        raise BaselineError(f"unknown norm {norm!r}; known: {', '.join(AGGREGATIONS)}")
    if weights is not None and norm != "grpo":
        raise BaselineError(f"weights need norm 'grpo' (a per-sequence mean), got {norm!r}")
    if clip_eps is None:
        if clip_eps_high is not None:
            raise BaselineError("clip_eps=None (no clip) takes no clip_eps_high")
        eps_lo = eps_hi = math.inf
    else:
        eps_lo = float(clip_eps)
        eps_hi = float(clip_eps if clip_eps_high is None else clip_eps_high)
        if not (0.0 < eps_lo < 1.0) or eps_hi <= 0.0:
            raise BaselineError(f"need 0 < clip_eps < 1 and clip_eps_high > 0, got {eps_lo}, {eps_hi}")
    L = int(logp.shape[1] if max_len is None else max_len)
    if L < 1:
        raise BaselineError(f"max_len must be >= 1, got {L}")

    mask = mask.to(logp.dtype)
    log_ratio = logp - logp_old.detach()  # (B, T)
    ratio = torch.exp(log_ratio)  # (B, T)
    adv = advantages.detach().to(logp.dtype)[:, None]  # (B, 1), broadcast over T
    unclipped = ratio * adv
    if clip_eps is None:
        per_token = -unclipped  # (B, T)
    else:
        clipped = torch.clamp(ratio, 1.0 - eps_lo, 1.0 + eps_hi) * adv
        per_token = -torch.minimum(unclipped, clipped)  # (B, T)
    if weights is None:
        loss = AGGREGATIONS[norm].reduce(per_token, mask, L)
    else:
        loss = (weights.detach().to(logp.dtype) * _seq_token_mean(per_token, mask)).sum()

    with torch.no_grad():
        n_tok = mask.sum().clamp(min=1.0)
        high = ((ratio > 1.0 + eps_hi) & (adv > 0)).to(logp.dtype) * mask
        low = ((ratio < 1.0 - eps_lo) & (adv < 0)).to(logp.dtype) * mask
        terms = _detached(
            clip_frac=(high + low).sum() / n_tok,
            clip_frac_high=high.sum() / n_tok,
            clip_frac_low=low.sum() / n_tok,
            ratio_mean=(ratio * mask).sum() / n_tok,
            log_ratio_mean=(log_ratio * mask).sum() / n_tok,
            approx_kl=((ratio - 1.0 - log_ratio) * mask).sum() / n_tok,
            weight_mean=advantages.detach().abs().mean(),
            tokens=mask.sum(),
        )
    return loss, terms


# ---------------------------------------------------------------------------------------------------
# GSPO (sequence-level, length-normalised ratio)


def gspo_loss(
    logp: Tensor,
    logp_old: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_eps: float = 3e-4,
    clip_eps_high: float | None = 4e-4,
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""GSPO (Zheng et al. 2025): PPO clipping on the length-normalised *sequence* ratio.

    .. math::

        s_i = \exp\Big(\frac{1}{|y_i|}\sum_t m_{it}\,(\log\pi_\theta(y_{it}) - \log\pi_{old}(y_{it}))\Big),
        \qquad
        L = -\frac{1}{B}\sum_i \min\big(s_i A_i,\ \mathrm{clip}(s_i, 1-\epsilon_{lo}, 1+\epsilon_{hi})
        A_i\big)

    The defaults ``epsilon_lo = 3e-4``, ``epsilon_hi = 4e-4`` are the GSPO paper's (the sequence ratio
    is a geometric mean, so it moves far less than a token ratio). Gradient:
    ``dL/d log pi_t = -(1/B) s_i A_i / |y_i|`` for the unclipped sequences, 0 for the clipped ones (same
    sides as in :func:`grpo_loss`). This is verl's ``gspo`` with ``seq-mean-token-mean`` aggregation and
    TRL's ``importance_sampling_level="sequence"``.

    ``terms``: ``clip_frac`` (share of sequences clipped), ``ratio_mean`` (mean s_i), ``log_ratio_mean``,
    ``weight_mean`` (mean |A|).
    """
    _check(logp, mask, advantages, logp_old=logp_old)
    eps_lo = float(clip_eps)
    eps_hi = float(clip_eps if clip_eps_high is None else clip_eps_high)
    if not (0.0 < eps_lo < 1.0) or eps_hi <= 0.0:
        raise BaselineError(f"need 0 < clip_eps < 1 and clip_eps_high > 0, got {eps_lo}, {eps_hi}")
    mask = mask.to(logp.dtype)
    lengths = mask.sum(dim=1).clamp(min=1.0)  # (B,)
    seq_log_ratio = ((logp - logp_old.detach()) * mask).sum(dim=1) / lengths  # (B,)
    s = torch.exp(seq_log_ratio)  # (B,)
    adv = advantages.detach().to(logp.dtype)  # (B,)
    per_seq = -torch.minimum(s * adv, torch.clamp(s, 1.0 - eps_lo, 1.0 + eps_hi) * adv)  # (B,)
    loss = per_seq.mean()
    with torch.no_grad():
        clipped = ((s > 1.0 + eps_hi) & (adv > 0)) | ((s < 1.0 - eps_lo) & (adv < 0))
        terms = _detached(
            clip_frac=clipped.to(logp.dtype).mean(),
            ratio_mean=s.mean(),
            log_ratio_mean=seq_log_ratio.mean(),
            weight_mean=adv.abs().mean(),
        )
    return loss, terms


# ---------------------------------------------------------------------------------------------------
# FlowRL (trajectory balance against a reward-tilted reference)


def flowrl_loss(
    logp: Tensor,
    logp_ref: Tensor,
    logp_old: Tensor,
    advantages: Tensor,
    mask: Tensor,
    log_z: Tensor,
    *,
    beta: float = 15.0,
    weight_max: float | None = 10.0,
    weight_min: float | None = None,
    weights: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""FlowRL's length-normalised trajectory-balance loss (Zhu et al. 2025, arXiv 2509.15207).

    .. math::

        \delta_i = \log Z_\phi(x_i) + \frac{1}{|y_i|}\log\pi_\theta(y_i|x_i) - \beta\,\hat r_i
                   - \frac{1}{|y_i|}\log\pi_{ref}(y_i|x_i), \qquad
        L = \frac{1}{B}\sum_i \mathrm{sg}[w_i]\,\delta_i^2,

    with ``log pi(y|x) = sum_t m_it log pi(y_it)``, ``|y_i| = sum_t m_it``, ``r_hat_i`` the group-normalised
    reward (``advantages``; FlowRL's code uses the GRPO advantage), ``beta = 15`` (the paper's value),
    ``log_z`` of shape (B,) the output of the learned head ``log Z_phi`` for each sequence's prompt (it
    receives gradient: ``dL/d log Z_i = 2 w_i delta_i / B``), and the detached importance weight

    .. math::  w_i = \mathrm{clip}\Big(\exp\sum_t m_{it}(\log\pi_\theta(y_{it}) - \log\pi_{old}(y_{it})),
               w_{min}, w_{max}\Big).

    ``weights`` (B,), summing to 1, replace ``1/B sum_i`` by ``sum_i weights_i`` in ``L`` (``None``: the
    mean, computed as without the argument); the diagnostics stay uniform means.

    Gradient: ``dL/d log pi_theta(y_it) = 2 w_i delta_i / (B |y_i|)``. No 1/2 in front of the square
    (as in FlowRL's code); this doubles the step at a given learning rate, it does not move the minimum.

    **Which clipping of w, and why.** FlowRL's public code has used several versions of it: the
    paper code computes a clipped weight but uses the *unclipped* one; in verl's ``recipe/flowrl/
    flowrl_actor.py`` the recipe as first merged (verl PR #3924, commit 4bf4bd32d, 2025-11-06) clamps it
    to ``[1 - clip_ratio_low, 1 + clip_ratio_high] = [0.8, 1.28]`` (its run script's values) and masks
    tokens CISPO-style, with the max-10 clamp present only as a commented-out line; the FlowRL author's
    follow-up "fix: FlowRL actor to pure implementation" (verl PR #4397, commit f11af2d53, 2025-12-04)
    removed the CISPO mask and clamps ``min(w, 10)``, the version still in verl at commit b178a3cd
    (2026-01-29). The default here is that later upstream version, ``w = min(exp(sum log-ratio), 10)``:
    the *sequence* ratio (a sum over tokens) overflows easily after a few updates so an upper bound is
    needed, and a small weight only down-weights a sample so no lower bound is needed. With one update
    per rollout ``w = 1`` exactly and the choice does not matter. ``weight_max=None`` gives the paper
    code's unclipped weight; ``weight_min=0.8, weight_max=1.28`` gives the first merged recipe's clamp
    (without its token mask). The clamp is applied in log space (no overflow before clipping).

    **Reference model.** ``logp_ref`` comes from a frozen copy of the base model (FlowRL's ``pi_ref``); it
    is detached here. Relation to LAD: with ``pi_ref = pi_old``, ``beta = 1/eta``, ``r_hat = A`` FlowRL's
    KL target is LAD's with ``f(u) = u log u`` (proved in ``proofs/flowrl_special_case.py``, computed in
    ``ladtheory/reductions.py``).

    ``terms``: ``tb_loss`` (unweighted mean delta^2), ``delta_mean``, ``log_z_mean``, ``logp_avg`` /
    ``logp_ref_avg`` (mean length-normalised log-likelihoods), ``ref_kl`` (mean of their difference),
    ``weight_mean``, ``weight_clip_frac``, ``log_ratio_mean`` (mean sequence log-ratio).
    """
    _check(logp, mask, advantages, logp_ref=logp_ref, logp_old=logp_old)
    _check_weights(weights, logp.shape[0])
    if log_z.shape != advantages.shape:
        raise BaselineError(f"log_z must have shape (B,) = ({logp.shape[0]},), got {tuple(log_z.shape)}")
    if not beta > 0:
        raise BaselineError(f"beta must be > 0, got {beta}")
    if weight_max is not None and weight_min is not None and not weight_min <= weight_max:
        raise BaselineError(f"need weight_min <= weight_max, got {weight_min}, {weight_max}")
    if (weight_max is not None and weight_max <= 0) or (weight_min is not None and weight_min <= 0):
        raise BaselineError("importance-weight bounds must be > 0")

    mask = mask.to(logp.dtype)
    lengths = mask.sum(dim=1).clamp(min=1.0)  # (B,)
    avg_logp = (logp * mask).sum(dim=1) / lengths  # (B,)
    avg_logp_ref = (logp_ref.detach() * mask).sum(dim=1) / lengths  # (B,)
    r_hat = advantages.detach().to(logp.dtype)  # (B,)
    delta = log_z + avg_logp - beta * r_hat - avg_logp_ref  # (B,)

    with torch.no_grad():
        seq_log_ratio = ((logp - logp_old) * mask).sum(dim=1)  # (B,)
        lo = -math.inf if weight_min is None else math.log(weight_min)
        hi = math.inf if weight_max is None else math.log(weight_max)
        w = torch.exp(seq_log_ratio.clamp(min=lo, max=hi))  # (B,), detached
    if weights is None:
        loss = (w * delta.pow(2)).mean()
    else:
        loss = (weights.detach().to(logp.dtype) * w * delta.pow(2)).sum()

    with torch.no_grad():
        terms = _detached(
            tb_loss=delta.pow(2).mean(),
            delta_mean=delta.mean(),
            log_z_mean=log_z.mean(),
            logp_avg=avg_logp.mean(),
            logp_ref_avg=avg_logp_ref.mean(),
            ref_kl=(avg_logp - avg_logp_ref).mean(),
            weight_mean=w.mean(),
            weight_clip_frac=((seq_log_ratio < lo) | (seq_log_ratio > hi)).to(logp.dtype).mean(),
            log_ratio_mean=seq_log_ratio.mean(),
        )
    return loss, terms


__all__ = ["AGGREGATIONS", "Aggregation", "BaselineError", "flowrl_loss", "grpo_loss", "gspo_loss"]
