"""The training loop, readable top to bottom: rollout -> reward -> advantage -> loss -> step -> log.

:func:`train` runs one whole job:

1. a run folder with the resolved config, seed and package versions;
2. the task (``get_task(cfg.task)``, optionally with a user reward) and its train / held-out splits;
3. the base policy: a local HF model, or the built-in tiny model warmed up on the task (cached);
4. held-out evaluation of the base;
5. RL: for each step, sample ``prompts_per_step`` training prompts and ``G = group_size`` completions each
   (HF ``generate``, KV cache, temperature), score them, group-normalise the rewards into advantages,
   record the rollout policy's log-probs (``logp_old``), then take ``updates_per_rollout`` AdamW steps on
   the loss (gradient-norm clipping, linear warm-up then constant or cosine learning rate);
   every ``--checkpoint-every`` steps, an atomic resumable checkpoint (``RUN/checkpoints/``; ``--resume RUN``
   continues from the newest one, exactly on CPU: :mod:`ladtrain.checkpoint`); faults (a reward that
   raises or is NaN, a non-finite loss, ...) are skipped and counted, or stop the run after a checkpoint
   (:mod:`ladtrain.faults` documents each);
6. held-out evaluation of the trained policy, an atomic HF checkpoint, ``summary.json``, a PNG of the
   learning curves, and a summary table on the console.

Deviations from textbook GRPO, stated: no KL-to-reference and no entropy term (LAD needs neither; the
GRPO baseline runs without them too so the comparison is like for like); several updates per rollout
reuse the whole batch (no minibatching), as GRPO's ``mu`` iterations do. FlowRL (``--loss flowrl``) also
gets a frozen copy of the base as its reference model and a learned log Z head
(:mod:`ladtrain.partition`) trained by the same optimizer; the head is not saved in the checkpoint.
Each metrics row records the step's prompt ids and its wall time (``step_seconds``, and
``update_seconds`` for the log-prob, loss, backward and optimizer part) so studies can check and cost it.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import random
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ladtrain import checkpoint, distributed, evaluation, losses, models, partition
from ladtrain.advantages import group_advantages
from ladtrain.config import ConfigError, TrainConfig
from ladtrain.faults import Faults, TrainingFault
from ladtrain.losses import LossInputs
from ladtrain.rollout import HFSampler, token_logprobs
from ladtrain.tasks import Problem, Task, TaskError, get_task

PACKAGES = ("lad", "torch", "transformers", "tokenizers", "safetensors", "numpy", "reasoning_gym", "sympy")


# --------------------------------------------------------------------------------------------------
# Set-up helpers


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def run_folder(cfg: TrainConfig) -> Path:
    """Create the run folder (checking that it is writable); ConfigError naming --out otherwise."""
    if cfg.out:
        out = Path(cfg.out)
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{stamp}-{cfg.loss.replace(':', '-')}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"--out: cannot write to {out}: {err.strerror or err}") from None
    if not cfg.resume and checkpoint.complete_checkpoints(out) and not (out / "summary.json").is_file():
        raise ConfigError(f"--out: {out} holds an unfinished run; continue it with --resume {out} or choose another "
                          "--out (nothing was overwritten)")
    return out


def checkpoint_every(cfg: TrainConfig, world: distributed.World) -> int:
    """``--checkpoint-every``, or 0 (with a warning) where resumable checkpoints are not supported yet:
    LoRA (the trained state is an adapter) and FSDP2 across processes (the parameters are sharded)."""
    if cfg.checkpoint_every and (cfg.lora_r or (world.is_distributed and cfg.parallel == "fsdp2")):
        warnings.warn("resumable checkpoints are off with --lora-r or --parallel fsdp2 (not supported yet)")
        return 0
    return cfg.checkpoint_every


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_task(cfg: TrainConfig) -> Task:
    try:
        task = get_task(cfg.task)
    except TaskError as err:
        raise ConfigError(f"--task: {err}") from None
    if cfg.reward:
        from ladtrain.rewards import with_reward  # the user-reward adapter (imported only when used)

        task = with_reward(task, cfg.reward)
    return task


def lr_lambda(cfg: TrainConfig):
    total = cfg.steps * cfg.updates_per_rollout

    def factor(update: int) -> float:
        ramp = min(1.0, (update + 1) / cfg.lr_warmup_steps) if cfg.lr_warmup_steps else 1.0
        if cfg.lr_schedule == "cosine":
            return ramp * 0.5 * (1.0 + math.cos(math.pi * min(1.0, update / max(1, total))))
        return ramp

    return factor


def step_stats(rewards, rewards_filled, scored, G: int, rollout, loss, grad_norm, schedule) -> dict[str, Any]:
    """The per-step numbers of ``metrics.jsonl`` that describe the rollout and the update (also used by
    ``benchmarks/step_profile.py``, so the benchmark's bookkeeping is the trainer's own)."""
    return {
        "reward_mean": float(torch.nanmean(rewards)) if bool(scored.any()) else math.nan,
        "loss": loss.item(),
        "reward_std": float(rewards_filled.std()),
        "solved_groups": float((rewards_filled.view(-1, G).max(dim=1).values >= 1.0).float().mean()),
        "completion_len": float(rollout.lengths.float().mean()),
        "unscored": int((~scored).sum()),
        "grad_norm": float(grad_norm),
        "lr": schedule.get_last_lr()[0],
    }


# --------------------------------------------------------------------------------------------------
# Evaluation on held-out prompts


def evaluate(model, tokenizer, task: Task, problems: Sequence[Problem], *, samples: int, temperature: float,
             max_new_tokens: int, seed: int = 0, chunk: int = 32, progress: bool = True,
             desc: str = "eval") -> dict[str, Any]:
    """Sample ``samples`` completions per problem and summarise (accuracy = mean reward over samples,
    pass@k, distinct correct answers per prompt, ...; see :mod:`ladtrain.evaluation`; dist-n counts n-grams
    of the model's tokens), plus ``per_problem`` (every metric per problem) and ``problem_ids``. The sampling RNG
    is seeded with ``seed`` without disturbing the training RNG, so base and trained policies are
    evaluated on the same random stream."""
    from tqdm.auto import tqdm

    sampler = HFSampler(model, tokenizer, temperature, max_new_tokens)
    correct, answers, tokens = [], [], []
    start = time.time()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i in tqdm(range(0, len(problems), chunk), desc=desc, disable=not progress, dynamic_ncols=True,
                      leave=False):
            batch = problems[i : i + chunk]
            rollout = sampler.sample([models.format_prompt(tokenizer, p.prompt) for p in batch], samples)
            scores = Faults().score(task, [p for p in batch for _ in range(samples)], rollout.texts)  # faults: unsolved
            ids = [row[m.bool()].tolist() for row, m in zip(rollout.completion_ids, rollout.completion_mask)]
            for j in range(len(batch)):
                group = scores[j * samples : (j + 1) * samples]
                correct.append([s.reward is not None and s.reward >= 1.0 for s in group])
                answers.append([s.answer for s in group])
                tokens.append(ids[j * samples : (j + 1) * samples])  # dist-n over the model's own tokens
    ks = [k for k in (1, 2, 4, 8, 16, 32, 64) if k <= samples]
    samples_ = evaluation.Samples(correct, answers, tokens)
    result = evaluation.summarize(samples_, ks=ks)
    result["accuracy"] = result["avg@k"]
    result["seconds"] = time.time() - start
    result["problem_ids"] = [p.id for p in problems]
    result["per_problem"] = evaluation.per_problem(samples_, ks=ks)  # for paired comparisons across runs
    return result


# --------------------------------------------------------------------------------------------------
# The job


def train(cfg: TrainConfig) -> dict[str, Any]:
    t0 = time.time()
    out = run_folder(cfg)
    loss_fn = losses.get(cfg.loss)
    torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 2) // 2))
    seed_everything(cfg.seed)
    world, device = distributed.setup(cfg.device)  # torchrun: join the group; rank 0 alone writes files
    distributed.check_batch(cfg.prompts_per_step, world)
    resumed = checkpoint.latest_training(out, clean=world.is_main) if cfg.resume else None  # the newest checkpoint
    run_info = {"seed": cfg.seed, "argv": sys.argv, "started": datetime.now(timezone.utc).isoformat(),
                "device": str(device), "processes": world.size, "versions": package_versions()}
    if resumed:  # config.json stays as it was; run.json gains a record of this resume
        first_run = json.loads((out / "run.json").read_text())
        run_info = {**first_run, "resumed": [*first_run.get("resumed", []), {**run_info, "from_step": resumed.step}]}
    if world.is_main:
        if not resumed:
            checkpoint.write_atomically(out / "config.json", json.dumps(cfg.to_dict(), indent=2))
        checkpoint.write_atomically(out / "run.json", json.dumps(run_info, indent=2))

    # --- task and base policy
    task = load_task(cfg)
    train_problems, test_problems = list(task.problems("train")), list(task.problems("test"))
    if not train_problems or not test_problems:
        raise ConfigError(f"--task {cfg.task}: needs non-empty train and test splits")
    # the built-in model is warmed up on a share of the training problems and RL draws its prompts from
    # the others, so RL starts on prompts whose solutions the base has not memorised (as on held-out ones)
    n_warm = max(1, round(cfg.warmup_share * len(train_problems)))
    warm_problems = train_problems[:n_warm]
    if cfg.model == models.BUILTIN and n_warm < len(train_problems):
        train_problems = train_problems[n_warm:]
    t_warm = time.time()
    warmup = models.WarmUp(steps=cfg.warmup_steps, batch=cfg.warmup_batch, lr=cfg.warmup_lr,
                           seed=cfg.seed if cfg.warmup_seed is None else cfg.warmup_seed, share=cfg.warmup_share)
    if resumed:
        model, tokenizer, base_info = resumed.model, resumed.tokenizer, resumed.info["base_info"]
    else:
        with distributed.main_first(world):  # rank 0 fills the cache, the others read it
            model, tokenizer, base_info = models.base_policy(cfg.model, cfg.task, warm_problems, warmup,
                                                             cfg.resolved_cache(), progress=cfg.progress)
    warm_seconds = time.time() - t_warm
    model.to(device)
    if cfg.gradient_checkpointing:
        distributed.enable_gradient_checkpointing(model)
    if cfg.lora_r:
        model = distributed.apply_lora(model, distributed.Lora(r=cfg.lora_r, alpha=cfg.lora_alpha))
    train_model = distributed.prepare(model, cfg.parallel, world, device)[0]  # DDP/FSDP2 wrapper for updates
    faults = Faults()  # skipped and counted faults (ladtrain.faults documents each behaviour)
    train_problems, test_problems = faults.fit_context(train_problems, test_problems, model, tokenizer, cfg)
    eval_problems = test_problems[: cfg.eval_problems or None]
    eval_kw = dict(samples=cfg.eval_samples, temperature=cfg.eval_temperature, max_new_tokens=cfg.max_new_tokens,
                   seed=cfg.seed + 1, progress=cfg.progress)
    if resumed:
        base_eval = resumed.info["base_eval"]
    else:
        base_eval = evaluate(model, tokenizer, task, eval_problems, desc="eval base", **eval_kw)

    # --- RL (FlowRL also needs a frozen copy of the base as reference and a learned log Z head)
    sampler = HFSampler(model, tokenizer, cfg.temperature, cfg.max_new_tokens)
    ref_model = None
    if loss_fn.needs_ref:  # on --resume the base policy is loaded again (the checkpoint holds the trained one)
        with distributed.main_first(world):
            base = models.base_policy(cfg.model, cfg.task, warm_problems, warmup, cfg.resolved_cache(),
                                      progress=False)[0].to(device) if resumed else model
        ref_model = copy.deepcopy(base).eval().requires_grad_(False)
    z_head = partition.LogZHead(model.config.hidden_size).to(device) if loss_fn.needs_log_z else None
    trained_modules = {"log_z_head": z_head} if z_head is not None else {}  # saved and restored with the model
    head_params = list(z_head.parameters()) if z_head is not None else []
    optimizer = torch.optim.AdamW(list(distributed.trainable_parameters(train_model)) + head_params, lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    rng = random.Random(cfg.seed)
    G = cfg.group_size
    rows: list[dict[str, Any]] = []
    first, every = 1, checkpoint_every(cfg, world)
    if resumed:  # optimizer, scheduler, RNG states, data position, fault counters; metrics up to the checkpoint
        first, rows = checkpoint.restore_training(out, resumed, optimizer=optimizer, scheduler=schedule, data_rng=rng,
                                                  faults=faults, write=world.is_main, modules=trained_modules)
    t_rl = time.time() - (rows[-1]["seconds"] if rows else 0.0)
    from tqdm.auto import tqdm

    # what the loss averages over (tokens or sequences): the loss's own entry, else distributed's table
    unit = loss_fn.unit(cfg) if loss_fn.unit is not None else distributed.loss_unit(loss_fn.name, cfg)
    bar = tqdm(range(first, cfg.steps + 1), desc=f"RL {loss_fn.name}", disable=not cfg.progress or not world.is_main,
               dynamic_ncols=True)
    with checkpoint.MetricsLog(out / "metrics.jsonl" if world.is_main else os.devnull, append=bool(resumed)) as log:
        for step in bar:
            faults.begin_step()
            # 1. rollout: G completions for each of the step's prompts (prompt-major, B = n_prompts * G)
            t_step = time.time()
            batch = rng.sample(train_problems, min(cfg.prompts_per_step, len(train_problems)))
            batch = distributed.shard(batch, world)  # this rank's prompts: disjoint, together the whole batch
            model.eval()
            rollout = sampler.sample([models.format_prompt(tokenizer, p.prompt) for p in batch], G)
            # 2. rewards; an unscorable sample (reward None) is dropped from the loss and gets A = 0
            scores = faults.score(task, [p for p in batch for _ in range(G)], rollout.texts)  # raising, NaN: None
            scored = torch.tensor([s.reward is not None for s in scores], device=device)  # (B,)
            rewards = torch.tensor([s.reward if s.reward is not None else math.nan for s in scores],
                                   dtype=torch.float32, device=device)  # (B,)
            group_mean = torch.nanmean(rewards.view(-1, G), dim=1).nan_to_num(0.0).repeat_interleave(G)  # (B,)
            rewards_filled = torch.where(scored, rewards, group_mean)  # (B,)
            # 3. group-normalised advantages
            advantages = group_advantages(rewards_filled, G, scale=cfg.adv_scale)  # (B,)
            faults.rollout(rollout, tokenizer.eos_token_id, rewards_filled)  # empty, truncated, equal-reward groups
            mask = rollout.completion_mask * scored[:, None]  # (B, T)
            # 4. log-probs of the rollout policy. With one update per rollout the policy has not moved when
            #    the loss is formed, so logp_old is the update's own logp, detached: the same numbers
            #    bit for bit (tested), and one forward pass fewer (as TRL does). Otherwise a no-grad pass.
            t_update = time.time()
            model.train()
            on_policy = cfg.updates_per_rollout == 1
            if on_policy:
                logp_old = torch.zeros(mask.shape, device=device)  # (B, T) placeholder, never read
            else:
                with torch.no_grad(), distributed.autocast(device, cfg.bf16):
                    logp_old = token_logprobs(model, rollout, cfg.temperature)  # (B, T)
            with torch.no_grad(), distributed.autocast(device, cfg.bf16):  # FlowRL's frozen reference
                logp_ref = token_logprobs(ref_model, rollout, cfg.temperature) if ref_model else None  # (B, T)

            def step_loss(logp, old, adv, m):
                """The loss of one micro-batch; FlowRL's extra inputs exist for the whole batch only."""
                ref = log_z = None
                if loss_fn.needs_ref or loss_fn.needs_log_z:
                    if logp.shape[0] != mask.shape[0]:
                        raise ConfigError(f"--loss {loss_fn.name}: needs one process and --grad-accumulation 1")
                    ref = logp_ref
                    log_z = (partition.log_z(model, z_head, rollout.prompt_ids, rollout.prompt_mask, G)
                             if z_head is not None else None)  # (B,)
                return loss_fn(LossInputs(logp, logp.detach() if on_policy else old, adv, m, ref, log_z), cfg)

            # 5. updates on this rollout: the gradient of the loss of all ranks' rows together, accumulated
            #    over --grad-accumulation micro-batches (ladtrain.distributed.backward)
            for _ in range(cfg.updates_per_rollout):
                optimizer.zero_grad(set_to_none=True)
                loss, terms = distributed.backward(
                    train_model, rollout, logp_old, advantages, mask, step_loss, unit=unit, world=world,
                    accumulation=cfg.grad_accumulation, temperature=cfg.temperature, bf16=cfg.bf16)
                grad_norm = torch.nn.utils.clip_grad_norm_(list(train_model.parameters()) + head_params,
                                                           cfg.max_grad_norm or math.inf)
                if faults.update_ok(loss, grad_norm, distributed.all_sum(mask.sum(), world)):  # else skipped, counted
                    optimizer.step()
                    schedule.step()
            update_seconds = time.time() - t_update
            # 6. log
            row = {
                "step": step,
                **step_stats(rewards, rewards_filled, scored, G, rollout, loss, grad_norm, schedule),
                "seconds": time.time() - t_rl,
                "step_seconds": time.time() - t_step,
                "update_seconds": update_seconds,
                "prompt_ids": [p.id for p in batch],
                **faults.row(),
                **{k: float(v) for k, v in terms.items()},
            }
            row = distributed.mean_over_ranks(row, world)
            rows.append(row)
            log.write(row)
            bar.set_postfix(reward=f"{row['reward_mean']:.3f}", loss=f"{row['loss']:.4f}")
            # 7. resumable checkpoint (atomic); a fault that cannot be skipped stops the run after saving one
            faults.agree(distributed.all_sum, world)  # torchrun: one rank's fatal fault stops them all
            if world.is_main and (every and (step % every == 0 or step == cfg.steps) or faults.fatal):
                checkpoint.save_training(out, step, model, tokenizer, optimizer=optimizer, scheduler=schedule,
                                         data_rng=rng, faults=faults, keep=cfg.keep_checkpoints,
                                         modules=trained_modules, extra={"base_info": base_info, "base_eval": base_eval})
            if faults.fatal:
                raise TrainingFault(f"step {step}: {faults.fatal}; checkpoint saved in {out}")
    rl_seconds = time.time() - t_rl

    # --- final evaluation, checkpoint, summary
    model.eval()
    trained_eval = evaluate(model, tokenizer, task, eval_problems, desc="eval trained", **eval_kw)
    plain = distributed.plain_model(model, world)  # None off rank 0; gathers FSDP2 shards, merges LoRA
    if not world.is_main:
        return {}
    checkpoint.save(plain, tokenizer, out / "checkpoint",
                    extra={"ladtrain.json": {"config": cfg.to_dict(), "steps": cfg.steps, "base": base_info}})
    from ladtrain.plots import learning_curves

    learning_curves(rows, out / "learning_curves.png", title=f"{loss_fn.name} on {cfg.task}",
                    reference={"base": base_eval["accuracy"], "trained": trained_eval["accuracy"]})
    summary = {
        "loss": loss_fn.name,
        "task": cfg.task,
        "model": base_info,
        "steps": cfg.steps,
        "eval_problems": len(eval_problems),
        "eval_samples": cfg.eval_samples,
        "base": base_eval,
        "trained": trained_eval,
        "improvement": trained_eval["accuracy"] - base_eval["accuracy"],
        "faults": dict(faults.totals),
        "seconds": {"warmup": warm_seconds, "base_eval": base_eval["seconds"], "rl": rl_seconds,
                    "trained_eval": trained_eval["seconds"], "total": time.time() - t0},
        "run_folder": str(out),
    }
    checkpoint.write_atomically(out / "summary.json", json.dumps(summary, indent=2))
    print(summary_table(summary), flush=True)
    return summary


def summary_table(summary: dict[str, Any]) -> str:
    """The console table: held-out metrics of the base and the trained policy."""
    base, trained = summary["base"], summary["trained"]
    k = summary["eval_samples"]
    rows = [("accuracy (mean over samples)", "accuracy")]
    rows += [(f"pass@{j}", f"pass@{j}") for j in sorted({2, k}) if f"pass@{j}" in base]
    rows += [("distinct correct answers / prompt", "distinct_correct"), ("answer entropy (nats)", "answer_entropy")]
    name = summary["loss"]
    width = max(len(r[0]) for r in rows) + 2
    lines = [f"held-out {summary['eval_problems']} prompts x {k} samples, task {summary['task']}",
             f"{'':<{width}}{'base':>10}{name:>12}{'change':>10}"]
    for label, key in rows:
        b, t = base[key], trained[key]
        lines.append(f"{label:<{width}}{b:>10.3f}{t:>12.3f}{t - b:>+10.3f}")
    s = summary["seconds"]
    lines.append(f"time: warm-up {s['warmup']:.0f}s, RL {s['rl']:.0f}s ({summary['steps']} steps), "
                 f"evaluation {s['base_eval'] + s['trained_eval']:.0f}s, total {s['total']:.0f}s")
    lines.append(f"run folder: {summary['run_folder']}")
    return "\n".join(lines)


__all__ = ["evaluate", "lr_lambda", "package_versions", "run_folder", "seed_everything", "summary_table", "train"]
