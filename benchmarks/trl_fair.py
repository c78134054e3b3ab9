"""TRL ``GRPOTrainer`` set up to do the same work per step as ladtrain's step: every option that changes
the work is set explicitly, and :data:`SETTINGS` lists each with ladtrain's counterpart (the step
benchmark prints it into its results file).

TRL 1.16's defaults differ from ladtrain's in ways that change the cost of a step: gradient checkpointing
on, bf16 autocast on, the DAPO loss, 512 completion tokens, logging every 10 steps. A
comparison that leaves them at their defaults measures settings, not implementations. Two things cannot
be set in TRL 1.16 and are stated as they are: its fused output layer computes the per-token entropy
(for its ``entropy`` metric) on every step, and off CUDA/XPU (no Triton) it runs the output layer on
every position, prompt tokens included, masking afterwards.
"""

from __future__ import annotations

from typing import Any

# (TRL GRPOConfig option, value or how it is set, ladtrain's counterpart)
SETTINGS: tuple[tuple[str, str, str], ...] = (
    ("per_device_train_batch_size", "B = prompts x group", "prompts_per_step x group_size rows per step"),
    ("gradient_accumulation_steps, steps_per_generation", "1, 1", "--grad-accumulation 1: one generation, "
     "one optimizer step"),
    ("num_generations", "G", "--group-size G"),
    ("num_iterations", "1", "--updates-per-rollout 1 (neither runs a separate old-log-prob pass)"),
    ("max_completion_length", "T", "--max-new-tokens T"),
    ("temperature, top_k, top_p, min_p, repetition_penalty", "t, 0, 1.0, None, 1.0",
     "softmax(logits / t), nothing else"),
    ("generation_kwargs, use_vllm, use_transformers_continuous_batching, cache_implementation",
     "{}, False, False, None", "HF generate with a DynamicCache (or ladtrain's own sampler)"),
    ("gradient_checkpointing", "False / True (both are run)", "--gradient-checkpointing off / on"),
    ("bf16, fp16, cast_lm_head_to_fp32", "False, False, False", "float32 throughout"),
    ("beta", "0.0 (no reference model)", "GRPO without KL"),
    ("loss_type, scale_rewards", "'grpo', 'group'", "--loss grpo, group-normalised advantages"),
    ("epsilon, epsilon_high, delta, importance_sampling_level", "clip, None, None, 'token'",
     "--clip-eps clip, symmetric, token ratios"),
    ("mask_truncated_completions, top_entropy_quantile, entropy_coef, use_adaptive_entropy",
     "False, 1.0, 0.0, False", "no truncation mask, no entropy term"),
    ("optim, weight_decay, adam_beta1/2, adam_epsilon", "'adamw_torch_fused', 0.0, 0.9/0.999, 1e-8",
     "torch.optim.AdamW(fused=True, weight_decay=0.0), default betas and eps (ladtrain.start.adamw)"),
    ("lr_scheduler_type, warmup_steps, learning_rate, max_grad_norm", "'constant', 0, lr, clip",
     "--lr-warmup-steps 0, constant schedule, --lr, --max-grad-norm"),
    ("logging_steps, log_completions, report_to, save_strategy", "1, False, 'none', 'no'",
     "a metrics row every step, no checkpoint"),
    ("torch_compile, use_liger_kernel, pad_to_multiple_of, dataloader_num_workers", "False, False, None, 0",
     "eager PyTorch, no padding to a multiple, no loader workers"),
    ("model", "the same weights (built in the worker from the same seed); learning_rate 0 by default",
     "the same: the policy stays the built one, so both sample from it every step (lr 0 still runs every "
     "kernel of AdamW)"),
    ("prompts, shuffle_dataset", "the benchmark's prompts (one length: no padding), in order, every step; "
     "False", "the same prompts in the same order every step"),
    ("generation seed", "torch.manual_seed(seed + 1) right before each generate call",
     "the same before each sampler call: the same completions up to float32 near ties"),
    ("threads", "torch.set_num_threads(1)", "the same"),
)

NOT_SETTABLE = (
    "TRL's fused output layer also computes the per-token entropy every step (its `entropy` metric)",
    "off CUDA/XPU TRL's fused output layer runs on every position, prompt tokens included",
)


def config_kwargs(setup: Any, output_dir: str, steps: int) -> dict[str, Any]:
    """``GRPOConfig(**kwargs)`` for ``setup`` (the step benchmark's ``Setup``), as :data:`SETTINGS` says."""
    return dict(
        output_dir=output_dir, per_device_train_batch_size=setup.batch, gradient_accumulation_steps=1,
        steps_per_generation=1, num_generations=setup.group, num_iterations=1,
        max_completion_length=setup.max_new_tokens, temperature=setup.temperature, top_k=0, top_p=1.0,
        min_p=None, repetition_penalty=1.0, generation_kwargs={}, use_vllm=False,
        use_transformers_continuous_batching=False, cache_implementation=None,
        gradient_checkpointing=setup.gradient_checkpointing, bf16=False, fp16=False,
        cast_lm_head_to_fp32=False, beta=0.0, loss_type="grpo", scale_rewards="group", epsilon=setup.clip_eps,
        epsilon_high=None, delta=None,
        importance_sampling_level="token", mask_truncated_completions=False, top_entropy_quantile=1.0,
        entropy_coef=0.0, use_adaptive_entropy=False, optim="adamw_torch_fused", weight_decay=0.0,
        adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, lr_scheduler_type="constant", warmup_steps=0,
        learning_rate=setup.lr, max_grad_norm=setup.max_grad_norm, logging_steps=1, log_completions=False,
        report_to="none", save_strategy="no", torch_compile=False, use_liger_kernel=False,
        pad_to_multiple_of=None,
        dataloader_num_workers=0, shuffle_dataset=False, disable_tqdm=True, max_steps=steps, seed=setup.seed,
        use_cpu=True,
    )


def applied(trainer: Any) -> dict[str, Any]:
    """What the trainer really runs with (read back after construction, so a renamed or ignored option
    shows up in the results)."""
    model = trainer.model
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # accelerate wraps it
    checkpointing = getattr(model, "is_activation_checkpointing", None)  # transformers >= 5
    if checkpointing is None:
        checkpointing = getattr(model, "is_gradient_checkpointing", False)
    return {"gradient_checkpointing": bool(checkpointing), "model_dtype": str(next(model.parameters()).dtype),
            "optimizer": type(optimizer).__name__ if optimizer is not None else str(trainer.args.optim),
            "optimizer_groups": [{k: v for k, v in g.items() if k in ("lr", "betas", "eps", "weight_decay",
                                                                       "foreach", "fused")}
                                 for g in getattr(optimizer, "param_groups", [])],
            "bf16": bool(trainer.args.bf16),
            "loss_type": trainer.loss_type, "beta": trainer.beta, "num_iterations": trainer.num_iterations}


def markdown_table() -> str:
    lines = ["| TRL option | set to | ladtrain |", "|---|---|---|"]
    lines += [f"| `{a}` | {b} | {c} |" for a, b, c in SETTINGS]
    lines += ["", "Not settable in TRL 1.16 (extra work on TRL's side):"] + [f"- {x}" for x in NOT_SETTABLE]
    return "\n".join(lines)


__all__ = ["NOT_SETTABLE", "SETTINGS", "applied", "config_kwargs", "markdown_table"]
