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
import warnings
from typing import Any, Sequence

import torch

from ladtrain import atomic, checkpoint, distributed, evaluation, losses, models, scoring, start
from ladtrain.config import ConfigError, TrainConfig
from ladtrain.faults import Faults, TrainingFault
from ladtrain.rollout import HFSampler
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
             max_new_tokens: int, seed: int = 0, chunk: int = 32, progress: bool = True,
             desc: str = "eval") -> dict[str, Any]:
    """Sample ``samples`` completions per problem and summarise (accuracy = mean reward over samples,
    pass@k, distinct correct answers per prompt, ...; see :mod:`ladtrain.evaluation`; dist-n counts n-grams
    of the model's tokens), plus ``per_problem`` (every metric per problem) and ``problem_ids``. The sampling
    RNG
    is seeded with ``seed`` without disturbing the training RNG, so base and trained policies are
    evaluated on the same random stream."""
    from tqdm.auto import tqdm

    sampler = HFSampler(model, tokenizer, temperature, max_new_tokens)
    correct, answers, tokens = [], [], []
    failed, t0 = 0, time.time()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i in tqdm(range(0, len(problems), chunk), desc=desc, disable=not progress, dynamic_ncols=True,
                      leave=False):
            batch = problems[i : i + chunk]
            rollout = sampler.sample([models.format_prompt(tokenizer, p.prompt) for p in batch], samples)
            scored = scoring.score(task, [p for p in batch for _ in range(samples)], rollout.texts)
            failed += len(scored.failures)
            scores = scored.scores  # a sample that could not be scored counts as not solved
            ids = [row[m.bool()].tolist() for row, m in zip(rollout.completion_ids, rollout.completion_mask)]
            for j in range(len(batch)):
                group = scores[j * samples : (j + 1) * samples]
                correct.append([s.reward is not None and s.reward >= 1.0 for s in group])
                answers.append([s.answer for s in group])
                tokens.append(ids[j * samples : (j + 1) * samples])  # dist-n over the model's own tokens
    if failed:
        warnings.warn(f"{desc}: the reward failed on {failed} samples (raised or not a finite number); they "
                      "count as not solved")
    ks = [k for k in (1, 2, 4, 8, 16, 32, 64) if k <= samples]
    samples_ = evaluation.Samples(correct, answers, tokens)
    result = evaluation.summarize(samples_, ks=ks)
    result["accuracy"] = result["avg@k"]
    result["seconds"] = time.time() - t0
    result["problem_ids"] = [p.id for p in problems]
    result["per_problem"] = evaluation.per_problem(samples_, ks=ks)  # for paired comparisons across runs
    return result


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
    problems = start.splits(cfg, task)
    begin = Begin.resumed(cfg, out, world, problems) if cfg.resume else Begin.fresh(cfg, problems, world)
    start.write_run_info(cfg, out, world, device, begin)
    model, train_model = start.prepare_model(cfg, begin.model, world, device)
    faults = Faults()  # skipped and counted faults (ladtrain.faults documents each behaviour)
    train_problems, test_problems = start.fit_context(problems["train"], problems["test"], model,
                                                      begin.tokenizer, cfg, faults)
    eval_problems = test_problems[: cfg.eval_problems or None]
    eval_kw = dict(
        samples=cfg.eval_samples,
        temperature=cfg.eval_temperature,
        max_new_tokens=cfg.max_new_tokens,
        seed=cfg.seed + 1,
        progress=cfg.progress,
    )
    base_eval = begin.base_eval or evaluate(model, begin.tokenizer, task, eval_problems, desc="eval base",
                                            **eval_kw)
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
            row = {
                "step": step,
                **metrics(batch, stats, rl.schedule),
                "seconds": time.time() - t_rl,
                "step_seconds": time.time() - t_step,
                "update_seconds": update_seconds,
                "prompt_ids": [p.id for p in batch.problems],
                **faults.row(),
                **{k: float(v) for k, v in stats.terms.items()},
            }
            row = distributed.mean_over_ranks(row, world)
            rows.append(row)
            log.write(row)
            bar.set_postfix(reward=f"{row['reward_mean']:.3f}", loss=f"{row['loss']:.4f}")
            faults.agree(distributed.all_sum, world)  # torchrun: one rank's fatal fault stops them all
            if every and (step % every == 0 or step == cfg.steps) or faults.fatal:  # every rank calls it
                checkpoint.save_training(out, step, model, begin.tokenizer, optimizer=rl.optimizer,
                                         scheduler=rl.schedule, data_rng=rng, faults=faults,
                                         keep=cfg.keep_checkpoints, modules=start.trained_modules(rl),
                                         extra={"base_info": begin.base_info, "base_eval": base_eval},
                                         world=world)
            if faults.fatal:
                raise TrainingFault(f"step {step}: {faults.fatal}; checkpoint saved in {out}")
    rl_seconds = time.time() - t_rl

    # --- final evaluation, checkpoint, summary
    model.eval()
    trained_eval = evaluate(model, begin.tokenizer, task, eval_problems, desc="eval trained", **eval_kw)
    plain = distributed.plain_model(model, world)  # None off rank 0; gathers FSDP2 shards, merges LoRA
    if not world.is_main:
        return {}
    models.save(
        plain,
        begin.tokenizer,
        out / "checkpoint",
        extra={"ladtrain.json": {"config": cfg.to_dict(), "steps": cfg.steps, "base": begin.base_info}},
    )
    from ladtrain.plots import learning_curves

    learning_curves(rows, out / "learning_curves.png", title=f"{loss_fn.name} on {cfg.task}",
                    reference={"base": base_eval["accuracy"], "trained": trained_eval["accuracy"]})
    seconds = {"warmup": begin.warm_seconds, "base_eval": base_eval["seconds"], "rl": rl_seconds,
               "trained_eval": trained_eval["seconds"], "total": time.time() - t0}
    summary = summary_of(cfg, loss_fn.name, begin.base_info, len(eval_problems), base_eval, trained_eval,
                         faults, seconds, out)
    atomic.write_atomically(out / "summary.json", json.dumps(summary, indent=2))
    print(summary_table(summary), flush=True)
    return summary


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
    """The console table: held-out metrics of the base and the trained policy."""
    base, trained = summary["base"], summary["trained"]
    k = summary["eval_samples"]
    rows = [("accuracy (mean over samples)", "accuracy")]
    rows += [(f"pass@{j}", f"pass@{j}") for j in sorted({2, k}) if f"pass@{j}" in base]
    rows += [
        ("distinct correct answers / prompt", "distinct_correct"),
        ("answer entropy (nats)", "answer_entropy"),
    ]
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


__all__ = ["evaluate", "load_task", "lr_lambda", "package_versions", "run_folder", "seed_everything",
           "summary_table", "train"]
