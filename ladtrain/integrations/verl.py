r"""LAD as a verl policy loss: ``actor_rollout_ref.actor.policy_loss.loss_mode=lad``.

verl (written against ``verl==0.9.1``; the ``(loss, metrics)`` registry exists since verl PR #4062) calls
every registered policy loss as::

    loss, metrics = fn(old_log_prob=, log_prob=, advantages=, response_mask=, loss_agg_mode=, config=,
                       rollout_is_weights=)

with ``old_log_prob``, ``log_prob``, ``advantages``, ``response_mask`` of shape (B, T) for one
micro-batch. :func:`policy_loss` builds such a function around :func:`ladtheory.objective.lad_loss`:

.. math::  \ell = c \cdot \mathrm{lad\_loss}(\log\pi_\theta, \log\pi_{\mathrm{old}}, A, m),
           \qquad A_b = \frac{\sum_t m_{bt} A_{bt}}{\sum_t m_{bt}}

* ``A`` (B,): verl broadcasts an outcome advantage (``grpo``, ``rloo``, ...) over the response tokens;
  the adapter takes it back per response and refuses (one line) an advantage that varies along a response
  by more than 1e-4 (``gae``): LAD's target ``e^{A/eta}`` is per response.
* ``c`` makes verl's micro-batching and data parallelism exact, as verl's own ``agg_loss`` does: with
  ``level="token"`` (requires ``loss_agg_mode="token-mean"``) lad_loss is a mean over the ``n`` local
  tokens, and ``c = n * dp_size / batch_num_tokens`` turns it into the global-batch token mean; with
  ``level="sequence"`` / ``"sequence_mean"`` (requires a ``seq-mean-*`` mode) ``c = B * dp_size /
  global_batch_size``. ``dp_size``, ``batch_num_tokens`` and ``global_batch_size`` come from
  ``config.global_batch_info`` (absent: ``c = 1``, the local mean).
* ``rollout_is_weights`` (rollout correction) is refused: lad_loss has no per-token weight argument.

Hyper-parameters: verl's ``PolicyLossConfig`` is a fixed dataclass with no slot for them. The name ``"lad"``
reads ``LAD_DIVERGENCE`` (default ``js``), ``LAD_ETA`` (``0.25``) and ``LAD_LEVEL`` (``token``) from the
environment of the worker at each call (set them in ``ray_kwargs.ray_init.runtime_env.env_vars``); a
fixed variant is one line in the user's own plug-in module: ``register("lad_kl", divergence="kl",
eta=0.5)``.

Loading: importing this module registers ``"lad"`` when verl is importable. verl imports it by itself
through the entry point ``[project.entry-points."verl.plugins"] lad = "ladtrain.integrations.verl"``
(``VERL_USE_EXTERNAL_PLUGINS``), or name it in ``VERL_USE_EXTERNAL_MODULES=ladtrain.integrations.verl``.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import torch

from ladtheory import divergences
from ladtheory.objective import LEVELS, lad_loss

TESTED_VERL = "0.9.1"
ADVANTAGE_SPREAD_TOL = 1e-4
_AGG_MODES = {"token": ("token-mean",),
              "sequence": ("seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"),
              "sequence_mean": ("seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")}

PolicyLossFn = Callable[..., tuple[torch.Tensor, dict[str, Any]]]


def _global_batch_info(config: Any) -> dict[str, Any]:
    info = getattr(config, "global_batch_info", None) if config is not None else None
    if info is None and isinstance(config, dict):
        info = config.get("global_batch_info")
    return dict(info or {})


def response_advantages(advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T) token-broadcast advantages -> (B,) one per response (masked mean); ValueError if one varies."""
    keep = mask.to(torch.bool)  # (B, T)
    count = keep.sum(-1).clamp(min=1)  # (B,)
    a = torch.where(keep, advantages, torch.zeros((), dtype=advantages.dtype, device=advantages.device))
    per_response = a.sum(-1) / count  # (B,)
    spread = torch.where(keep, (advantages - per_response[:, None]).abs(), torch.zeros_like(a))  # (B, T)
    if bool((spread > ADVANTAGE_SPREAD_TOL * (1.0 + per_response.abs()[:, None])).any()):
        raise ValueError("loss_mode=lad needs one advantage per response (an outcome estimator such as grpo "
                         "or "
                         "rloo); got advantages that vary along a response")
    return per_response


def policy_loss(divergence: str | None = None, eta: float | None = None,
                level: str | None = None) -> PolicyLossFn:
    """A verl policy-loss function for LAD. ``None`` arguments are read from ``LAD_DIVERGENCE``,
    ``LAD_ETA``, ``LAD_LEVEL`` at each call (defaults js, 0.25, token)."""

    def settings() -> tuple[str, float, str]:
        d = divergence if divergence is not None else os.environ.get("LAD_DIVERGENCE", "js")
        e = eta if eta is not None else float(os.environ.get("LAD_ETA", "0.25"))
        lv = level if level is not None else os.environ.get("LAD_LEVEL", "token")
        divergences.get(d)  # DivergenceError for an unknown name
        if lv not in LEVELS:
            raise ValueError(f"LAD level must be one of {LEVELS}, got {lv!r}")
        if not e > 0:
            raise ValueError(f"LAD eta must be > 0, got {e}")
        return d, e, lv

    if divergence is not None or eta is not None or level is not None:
        settings()  # fail at registration, not in the middle of a run

    def compute_policy_loss_lad(old_log_prob: torch.Tensor, log_prob: torch.Tensor, advantages: torch.Tensor,
                                response_mask: torch.Tensor, loss_agg_mode: str = "token-mean",
                                config: Any = None, rollout_is_weights: torch.Tensor | None = None,
                                ) -> tuple[torch.Tensor, dict[str, Any]]:
        d, e, lv = settings()
        if loss_agg_mode not in _AGG_MODES[lv]:
            raise ValueError(f"loss_mode=lad with LAD level {lv!r} needs loss_agg_mode in {_AGG_MODES[lv]}, "
                             f"got {loss_agg_mode!r}")
        if rollout_is_weights is not None:
            raise ValueError("loss_mode=lad does not take rollout_is_weights; disable "
                             "algorithm.rollout_correction")
        a = response_advantages(advantages, response_mask)  # (B,)
        loss, terms = lad_loss(log_prob, old_log_prob, a, response_mask, divergence=d, eta=e, level=lv)
        info = _global_batch_info(config)
        dp_size = info.get("dp_size", 1)
        if lv == "token" and info.get("batch_num_tokens") is not None:
            n_local = response_mask.to(torch.bool).sum().to(loss.dtype)
            loss = loss * (n_local * dp_size / info["batch_num_tokens"])
        elif lv != "token" and info.get("global_batch_size") is not None:
            loss = loss * (log_prob.shape[0] * dp_size / info["global_batch_size"])
        return loss, {f"actor/lad_{k}": v.item() for k, v in terms.items()}

    return compute_policy_loss_lad


def register(name: str = "lad", *, registry_decorator: Callable[[str], Callable] | None = None,
             divergence: str | None = None, eta: float | None = None,
             level: str | None = None) -> PolicyLossFn:
    """Register :func:`policy_loss` under ``name`` with verl's ``register_policy_loss`` (or the given
    decorator with the same signature) and return the registered function."""
    if registry_decorator is None:
        from verl.trainer.ppo.core_algos import register_policy_loss as registry_decorator
    return registry_decorator(name)(policy_loss(divergence, eta, level))


def _verl_available() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("verl") is not None
    except (ImportError, ValueError):
        return False


compute_policy_loss_lad = register("lad") if _verl_available() else policy_loss()

__all__ = ["TESTED_VERL", "compute_policy_loss_lad", "policy_loss", "register", "response_advantages"]
