"""The training job, readable top to bottom: set-up, base evaluation, ``for step: batch = collect(...);
stats = update(...); log; checkpoint``, final evaluation.

:func:`train` runs one whole job:

1. set-up (:mod:`ladtrain.start`): a run folder with the resolved config, seed and package versions; the
   task (``get_task(cfg.task)``, optionally with a user reward) and its train / held-out splits; the
   policy to begin from: the base (a local HF model, or the built-in tiny model warmed up on the task,
   cached) or, with ``--resume RUN``, the newest checkpoint of ``RUN`` (:class:`ladtrain.start.Begin`);
2. held-out evaluation of the base;
3. RL, one step at a time (:mod:`ladtrain.step`): :func:`~ladtrain.step.collect` samples
   ``prompts_per_step`` training prompts and ``G = group_size`` completions each (HF ``generate``, KV
   cache, temperature), scores them and group-normalises the rewards into advantages;
   :func:`~ladtrain.step.update` takes ``updates_per_rollout`` epochs of ``mini_batches`` AdamW steps
   each on the loss (gradient-norm clipping, linear warm-up then constant or cosine learning rate); a
   metrics row per step; every ``--checkpoint-every`` steps an atomic resumable checkpoint
   (:mod:`ladtrain.checkpoint`; ``--resume`` continues from it, exactly on CPU); faults (a reward that
   raises or is NaN, a non-finite loss, ...) are skipped and counted, or stop the run after a checkpoint
   (:mod:`ladtrain.faults` documents each);
4. held-out evaluation of the trained policy, an atomic HF checkpoint of it (``RUN/checkpoint``),
   ``summary.json``, a PNG of the learning curves, and a summary table on the console.

Deviations from textbook GRPO, stated: no KL-to-reference and no entropy term (LAD needs neither; the
GRPO baseline runs without them too so the comparison is like for like); several updates per rollout
reuse the whole batch (no minibatching), as GRPO's ``mu`` iterations do. FlowRL (``--loss flowrl``) also
gets a frozen copy of the base as its reference model and a learned log Z head
(:mod:`ladtrain.partition`) trained by the same optimizer; the head is saved in every resumable
checkpoint (and restored by ``--resume``), not in the final Hugging Face checkpoint, which holds the
policy alone. Each metrics row records the step's prompt ids and its wall time (``step_seconds``, and
``update_seconds`` for the log-prob, loss, backward and optimizer part) so studies can check and cost it.
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any, Sequence

from ladtrain import atomic, checkpoint, distributed, eval_sampling, heldout, losses, models, start, tracking
from ladtrain.config import ConfigError, TrainConfig
from ladtrain.faults import Faults, TrainingFault
from ladtrain.start import Begin, lr_lambda, package_versions, run_folder, seed_everything  # noqa: F401 (API)
from ladtrain.step import collect, draw, metrics, update
from ladtrain.tasks import Problem, Task, TaskError, get_task


def load_task(cfg) -> Task:
    """The task of ``--task``, scored by ``--reward`` when given; ConfigError naming the flag."""
    try:
        task = get_task(cfg.task)
    except TaskError as err:
        raise ConfigError(f"--task: {err}") from None
    if cfg.reward:
        from ladtrain.rewards import with_reward  # the user-reward adapter (imported only when used)

        task = with_reward(task, cfg.reward)
    return task


# --------------------------------------------------------------------------------------------------
# Evaluation on held-out prompts


def evaluate(model, tokenizer, task: Task, problems: Sequence[Problem], *, samples: int, temperature: float,
             max_new_tokens: int, seed: int = 0, progress: bool = True, desc: str = "eval",
             **options) -> dict[str, Any]:
    """Sample ``samples`` completions per problem and summarise them: every metric of
    :mod:`ladtrain.evaluation` with its 95% interval over problems, per problem too
    (:func:`ladtrain.eval_sampling.evaluate`, in bounded memory; ``options``: ``ks``, ``batch``,
    ``on_problem``). The sampling RNG is seeded with ``seed`` without disturbing the training RNG."""
    return eval_sampling.evaluate(model, tokenizer, task, problems, samples=samples, temperature=temperature,
                                  max_new_tokens=max_new_tokens, seed=seed, progress=progress, desc=desc,
                                  **options)


# --------------------------------------------------------------------------------------------------
# The job


def train(cfg: TrainConfig) -> dict[str, Any]:
    """One whole run (the module docstring lists its parts); returns ``summary.json``'s content ({} off
    rank 0)."""
    t0 = time.time()
    loss_fn = losses.get(cfg.loss)
    world, device = start.start_up(cfg, loss_fn)
    out = run_folder(cfg)
    task = load_task(cfg)
    extra_sets = heldout.extra_sets(cfg, cfg.eval_problems)  # --eval-task: built before any training
    problems = start.splits(cfg, task)
    begin = Begin.resumed(cfg, out, world, problems) if cfg.resume else Begin.fresh(cfg, problems, world)
    start.write_run_info(cfg, out, world, device, begin)
    model, train_model = start.prepare_model(cfg, begin.model, world, device)
    faults = Faults()  # skipped and counted faults (ladtrain.faults documents each behaviour)
    train_problems, test_problems = start.fit_context(problems["train"], problems["test"], model,
                                                      begin.tokenizer, cfg, faults)
    eval_problems = test_problems[: cfg.eval_problems or None]
    resumed_at = begin.state.step + 1 if begin.state is not None else None
    trackers = tracking.open_trackers(cfg.report_to if world.is_main else "none", out, cfg.to_dict(),
                                      purge_step=resumed_at)
    evaluator = heldout.evaluator(cfg, task, eval_problems, model, begin.tokenizer, faults, extra=extra_sets,
                                  log=out / "eval.jsonl" if world.is_main else None, trackers=trackers)
    if resumed_at is not None:
        evaluator.resume(resumed_at)  # eval.jsonl keeps the rows up to the checkpoint
    base_evals = heldout.by_set(begin.base_eval) or evaluator.run(model, begin.tokenizer, 0, "base")
    rl = start.rl_step(cfg, loss_fn, task, model, train_model, begin, world, device)
    rng = random.Random(cfg.seed)  # the prompt sampler (its state is the data position)
    first, rows = begin.restore(out, rl, rng, faults, world)  # a resumed run: every state back
    every = start.checkpoint_every(cfg, world)
    t_rl = time.time() - (rows[-1]["seconds"] if rows else 0.0)
    from tqdm.auto import tqdm

    bar = tqdm(range(first, cfg.steps + 1), desc=f"RL {loss_fn.name}",
               disable=not cfg.progress or not world.is_main, dynamic_ncols=True)
    with atomic.MetricsLog(out / "metrics.jsonl" if world.is_main else os.devnull, append=first > 1) as log:
        for step in bar:
            faults.begin_step()
            t_step = time.time()
            batch = collect(rl, draw(rng, train_problems, cfg.prompts_per_step, world), faults)
            t_update = time.time()
            stats = update(rl, batch, faults)
            update_seconds = time.time() - t_update
            row = distributed.mean_over_ranks(metrics_row(step, batch, stats, rl, faults, t_rl, t_step,
                                                          update_seconds), world)
            rows.append(row)
            log.write(row)
            trackers.metrics(row)
            if heldout.due(step, cfg.eval_every, cfg.steps):  # before the checkpoint: a resume redoes it
                evaluator.run(model, begin.tokenizer, step, "step")
            bar.set_postfix(reward=f"{row['reward_mean']:.3f}", loss=f"{row['loss']:.4f}")
            faults.agree(distributed.all_sum, world)  # torchrun: one rank's fatal fault stops them all
            if every and (step % every == 0 or step == cfg.steps) or faults.fatal:  # every rank calls it
                checkpoint.save_training(out, step, model, begin.tokenizer, optimizer=rl.optimizer,
                                         scheduler=rl.schedule, data_rng=rng, faults=faults,
                                         keep=cfg.keep_checkpoints, modules=start.trained_modules(rl),
                                         extra={"base_info": begin.base_info, "base_eval": base_evals},
                                         world=world)
            if faults.fatal:
                raise TrainingFault(f"step {step}: {faults.fatal}; checkpoint saved in {out}")
    rl_seconds = time.time() - t_rl

    # --- final evaluation, checkpoint, summary
    model.eval()
    trained_evals = evaluator.run(model, begin.tokenizer, cfg.steps, "trained")
    plain = distributed.plain_model(model, world)  # None off rank 0; gathers FSDP2 shards, merges LoRA
    if not world.is_main:
        return {}
    base_eval, trained_eval = base_evals[heldout.MAIN], trained_evals[heldout.MAIN]
    versus = heldout.versus_all(base_evals, trained_evals)
    provenance = {"config": cfg.to_dict(), "steps": cfg.steps, "base": begin.base_info}
    models.save(plain, begin.tokenizer, out / "checkpoint", extra={"ladtrain.json": provenance})
    from ladtrain.plots import learning_curves, pass_at_k_curves

    learning_curves(rows, out / "learning_curves.png", title=f"{loss_fn.name} on {cfg.task}",
                    reference={"base": base_eval["accuracy"], "trained": trained_eval["accuracy"]},
                    evals=evaluator.rows)
    pass_at_k_curves(versus, out / "pass_at_k.png", title=f"{loss_fn.name} on {cfg.task}",
                     labels=("base", loss_fn.name))
    seconds = {"warmup": begin.warm_seconds, "base_eval": sum(r["seconds"] for r in base_evals.values()),
               "rl": rl_seconds, "trained_eval": sum(r["seconds"] for r in trained_evals.values()),
               "total": time.time() - t0}
    summary = summary_of(cfg, loss_fn.name, begin.base_info, len(eval_problems), base_eval, trained_eval,
                         faults, seconds, out)
    summary.update(heldout.summary_fields(base_evals, trained_evals, versus))
    atomic.write_atomically(out / "summary.json", json.dumps(summary, indent=2))
    trackers.close()
    print(summary_table(summary), flush=True)
    return summary


def metrics_row(step: int, batch, stats, rl, faults: Faults, t_rl: float, t_step: float,
                update_seconds: float) -> dict[str, Any]:
    """One row of ``metrics.jsonl``: the step's rollout and update numbers (:func:`ladtrain.step.metrics`),
    its timings, prompt ids, fault counts and the loss's diagnostics."""
    return {
        "step": step,
        **metrics(batch, stats, rl.schedule),
        "seconds": time.time() - t_rl,
        "step_seconds": time.time() - t_step,
        "update_seconds": update_seconds,
        "prompt_ids": [p.id for p in batch.problems],
        **faults.row(),
        **{k: float(v) for k, v in stats.terms.items()},
    }


def summary_of(cfg: TrainConfig, loss: str, model: dict[str, Any], eval_problems: int, base: dict[str, Any],
               trained: dict[str, Any], faults: Faults, seconds: dict[str, float], out) -> dict[str, Any]:
    """The content of ``summary.json``: held-out metrics of base and trained policy, faults, timings."""
    return {
        "loss": loss,
        "task": cfg.task,
        "model": model,
        "steps": cfg.steps,
        "eval_problems": eval_problems,
        "eval_samples": cfg.eval_samples,
        "base": base,
        "trained": trained,
        "improvement": trained["accuracy"] - base["accuracy"],
        "faults": dict(faults.totals),
        "seconds": seconds,
        "run_folder": str(out),
    }


def summary_table(summary: dict[str, Any]) -> str:
    """The console table: per evaluation set, the held-out metrics of the base and the trained policy with
    95% intervals over problems and of their difference, the crossover k and the retained base answers
    (:func:`ladtrain.heldout.summary_lines`)."""
    lines = [f"task {summary['task']}, {summary['loss']} after {summary['steps']} steps"]
    lines += heldout.summary_lines(summary["versus"], summary["loss"])
    s = summary["seconds"]
    lines.append(f"time: warm-up {s['warmup']:.0f}s, RL {s['rl']:.0f}s ({summary['steps']} steps), "
                 f"evaluation {s['base_eval'] + s['trained_eval']:.0f}s, total {s['total']:.0f}s")
    lines.append(f"run folder: {summary['run_folder']}")
    return "\n".join(lines)


__all__ = ["evaluate", "load_task", "lr_lambda", "package_versions", "run_folder", "seed_everything",
           "summary_table", "train"]
