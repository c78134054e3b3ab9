r"""LAD as the loss of TRL's ``GRPOTrainer`` (extra ``lad[trl]``; written against ``trl==1.16.0``).

The smallest hook TRL offers is the private method ``GRPOTrainer._compute_loss(model, inputs)`` (its
``compute_loss`` calls nothing else; TRL's own ``GMPOTrainer`` changes only this method, the precedent
followed here). :class:`LADGRPOTrainer` overrides it and nothing else: TRL still samples the ``G =
num_generations`` completions per prompt, scores them and group-normalises the rewards into the
advantages ``A`` (B,); this class turns TRL's tensors into the arguments of
:func:`ladtheory.objective.lad_loss` and returns its value:

.. math::  \mathcal L = \mathbb E_{y\sim\pi_{\mathrm{old}}}\big[e^{A/\eta} f(\rho\, e^{-A/\eta})\big]
           \quad\text{over the optimiser window (all micro-batches of all processes)},

with ``logp`` = TRL's per-token log-probs of the completion tokens under the current model (temperature
scaled, as TRL samples), ``logp_old`` = ``inputs["old_per_token_logps"]`` when TRL computed them
(``num_iterations > 1`` or generation reused across accumulation steps) and otherwise
``logp.detach()`` (then ``rho = 1`` at the step, as in TRL's own losses), ``mask`` = the completion mask
(times TRL's tool mask when present). Normalisation, so that gradient accumulation and several
processes give the loss of the whole optimiser window: at ``level="token"`` the micro-batch's token mean
is rescaled by ``n_local / (num_items_in_batch / processes * accumulation / steps_per_generation)`` (the
normaliser of TRL's ``dapo`` loss), giving the window's global token mean; at the sequence levels
(micro-batches of equal size) it is divided by the accumulation steps.

Configuration: :class:`LADGRPOConfig` is ``GRPOConfig`` plus ``lad_divergence``, ``lad_eta`` and
``lad_level`` (the keyword arguments of ``lad_loss``). ``loss_type``, ``epsilon`` and ``delta`` are not
read. TRL features that would change the loss beyond LAD are refused at construction with one line
(``beta != 0``, the entropy bonus, ``top_entropy_quantile < 1``, the off-policy mask, vLLM importance
correction, Liger): LAD needs no reference model and its brake replaces clipping.

vLLM importance-sampling correction (decision: refused). With ``use_vllm`` TRL samples from vLLM's copy
``q`` of the policy, whose log-probs differ from the trainer's ``pi_old`` by kernel and precision
differences, and by default multiplies each token's loss by a truncated ratio ``pi_old / q``. That weight
makes a *token-level* estimator approximately unbiased for an expectation under ``pi_old``; LAD's exact
objective is a *sequence-level* expectation ``E_{y ~ pi_old}[...]``, whose importance weight is the product
of the token ratios, not a per-token factor; multiplying LAD's per-token terms by truncated per-token
ratios is a heuristic whose effect on LAD's target is not derived here. Rather than ship an unproved
correction, the
trainer refuses ``vllm_importance_sampling_correction=True`` with one line saying to set it to ``False``.
The consequence, stated: the LAD expectation is then over vLLM's samples (``y ~ q``), i.e. LAD with
``pi_old`` replaced by ``q`` in the sampling distribution while ``rho`` still uses the trainer's
``pi_old``; TRL logs ``sampling/sampling_logp_difference/*`` so the size of the mismatch stays visible.

Logged metrics: the loss under TRL's usual key ``policy_loss``, whose logged value (TRL averages what its
micro-batches append) is the loss of the optimiser window, mean over processes (TRL's own ``dapo`` logs
the mean of its partial sums, 1/accumulation of that); and every diagnostic of ``lad_loss`` as
``lad/<name>`` (mean over processes).

The classes are built on first access, so this module imports without TRL (the error then names the
extra). Usage::

    from ladtrain.integrations.trl import LADGRPOConfig, LADGRPOTrainer
    args = LADGRPOConfig(output_dir="out", lad_divergence="js", lad_eta=0.25, num_generations=8)
    LADGRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=dataset).train()
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import torch

from ladtheory import divergences
from ladtheory.objective import LEVELS, lad_loss

TESTED_TRL = "1.16.0"
_EXTRA_MODEL_INPUTS = ("pixel_values", "image_grid_thw", "num_images", "pixel_attention_mask",
                       "spatial_shapes", "num_tiles", "image_sizes", "token_type_ids", "mm_token_type_ids",
                       "image_position_ids")


def _refusals(args: Any) -> list[str]:
    """TRL options that would add terms to the loss that LAD does not have (names as in GRPOConfig)."""
    out = []
    if args.beta != 0.0:
        out.append(f"beta={args.beta} (set beta=0: LAD needs no reference KL)")
    if args.entropy_coef != 0.0 or args.use_adaptive_entropy:
        out.append("the entropy bonus (entropy_coef / use_adaptive_entropy)")
    if args.top_entropy_quantile < 1.0:
        out.append(f"top_entropy_quantile={args.top_entropy_quantile}")
    if args.off_policy_mask_threshold is not None:
        out.append("off_policy_mask_threshold")
    if args.use_vllm and args.vllm_importance_sampling_correction:
        out.append("vllm_importance_sampling_correction=True (TRL's default with use_vllm; set it to False: "
                   "lad_loss takes no per-token weight, and LAD's expectation is then over vLLM's samples; "
                   "see ladtrain/integrations/trl.py)")
    if args.use_liger_kernel:
        out.append("use_liger_kernel")
    return out


@functools.cache
def _classes() -> dict[str, type]:
    """Build the two classes on first use, so that importing this module does not need TRL."""
    try:
        from trl import GRPOConfig, GRPOTrainer
    except ImportError:
        raise ImportError("ladtrain.integrations.trl needs TRL: pip install 'lad[trl]'") from None

    @dataclass
    class LADGRPOConfig(GRPOConfig):
        """``GRPOConfig`` plus the LAD hyper-parameters (the keyword arguments of ``lad_loss``)."""

        lad_divergence: str = field(default="js", metadata={"help": "f-divergence: a name of "
                                    "ladtheory.divergences.names() or alpha:<a>."})
        lad_eta: float = field(default=0.25,
                               metadata={"help": "LAD temperature eta > 0 (target ratio e^{A/eta})."})
        lad_level: str = field(default="token",
                               metadata={"help": "Ratio level: token, sequence or sequence_mean."})

    class LADGRPOTrainer(GRPOTrainer):
        """``GRPOTrainer`` whose loss is :func:`ladtheory.objective.lad_loss` (see the module docstring)."""

        def __init__(self, *a: Any, args: Any = None, **kw: Any) -> None:
            if args is not None and not isinstance(args, LADGRPOConfig):
                raise TypeError(f"args must be a LADGRPOConfig, got {type(args).__name__}")
            if args is not None:
                divergences.get(args.lad_divergence)  # DivergenceError (one line) for an unknown name
                if not args.lad_eta > 0:
                    raise ValueError(f"lad_eta must be > 0, got {args.lad_eta}")
                if args.lad_level not in LEVELS:
                    raise ValueError(f"lad_level must be one of {LEVELS}, got {args.lad_level!r}")
                refused = _refusals(args)
                if refused:
                    raise ValueError("LADGRPOTrainer does not support: " + "; ".join(refused))
            super().__init__(*a, args=args, **kw)
            if not isinstance(self.args, LADGRPOConfig):  # args=None: TRL built a plain GRPOConfig
                raise TypeError("LADGRPOTrainer needs args=LADGRPOConfig(...)")

        def _compute_loss(self, model, inputs):
            return _lad_compute_loss(self, model, inputs)

    for cls in (LADGRPOConfig, LADGRPOTrainer):  # picklable by name (TRL saves its args with torch.save)
        cls.__module__, cls.__qualname__ = __name__, cls.__name__
    return {"LADGRPOConfig": LADGRPOConfig, "LADGRPOTrainer": LADGRPOTrainer}


def _lad_compute_loss(trainer: Any, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
    """``GRPOTrainer._compute_loss`` with the LAD loss (module docstring)."""
    prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
    completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)  # (B, P + T)
    attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)  # (B, P + T)
    mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]  # (B, T)
    extra = {k: inputs[k] for k in _EXTRA_MODEL_INPUTS if inputs.get(k) is not None}
    logp, _, _ = trainer._get_per_token_logps_and_entropies(model, input_ids, attention_mask,
                                                            completion_ids.size(1), **extra)  # (B, T)
    logp_old = inputs.get("old_per_token_logps")
    logp_old = logp.detach() if logp_old is None else logp_old  # (B, T)
    advantages = inputs["advantages"]
    if advantages.dim() != 1:
        raise ValueError(f"LAD takes one advantage per completion, shape (B,); got {tuple(advantages.shape)}")
    args = trainer.args
    loss, terms = lad_loss(logp, logp_old, advantages, mask, divergence=args.lad_divergence, eta=args.lad_eta,
                           level=args.lad_level)
    mode = "train" if trainer.model.training else "eval"
    if args.lad_level == "token" and inputs.get("num_items_in_batch") is not None:
        # token mean over the optimiser window of all processes (TRL's dapo normaliser): lad_loss is the
        # mean over the n local tokens; DDP averages processes, accumulation sums micro-batches
        window = inputs["num_items_in_batch"].clamp(min=1.0) / trainer.accelerator.num_processes
        if mode == "train":
            window = window * trainer.current_gradient_accumulation_steps / args.steps_per_generation
        loss = loss * (mask.to(torch.bool).sum() / window)
        # TRL averages the logged values of a window's micro-batches: log each partial sum times their number
        policy_loss = loss.detach() * (trainer.current_gradient_accumulation_steps if mode == "train" else 1)
    else:  # sequence levels: equal-size micro-batches, so the mean of their means
        policy_loss = loss.detach()
        if mode == "train":
            loss = loss / trainer.current_gradient_accumulation_steps
    trainer._metrics[mode]["policy_loss"].append(trainer.accelerator.gather(policy_loss).nanmean().item())
    for name, value in terms.items():
        gathered = trainer.accelerator.gather(value.detach().float().reshape(1))
        trainer._metrics[mode][f"lad/{name}"].append(gathered.nanmean().item())
    return loss


def __getattr__(name: str) -> type:
    if name in ("LADGRPOConfig", "LADGRPOTrainer"):
        return _classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["LADGRPOConfig", "LADGRPOTrainer", "TESTED_TRL"]  # noqa: F822 (built by __getattr__)
