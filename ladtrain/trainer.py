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

from ladtrain import (
    atomic,
    checkpoint,
    distributed,
    eval_sampling,
    heldout,
    losses,
    models,
    prompts,
    start,
    tracking,
)
from ladtrain.config import ConfigError, TrainConfig
from ladtrain.faults import Faults, TrainingFault
from ladtrain.start import Begin, lr_lambda, package_versions, run_folder, seed_everything  # noqa: F401 (API)
from ladtrain.step import collect, draw, metrics, update
from ladtrain.tasks import REASONS, Problem, Task, TaskError, get_task


def load_task(cfg) -> Task:
    """The task of ``--task`` (with ``--instruction-file`` as its ``instruction_file`` option); its
    verifier defines correctness, whatever the training reward (:func:`ladtrain.start.reward_components`).
    ConfigError naming the flag."""
    options = {"instruction_file": cfg.instruction_file} if getattr(cfg, "instruction_file", None) else {}
    try:
        return get_task(cfg.task, **options)
    except TaskError as err:
        flag = "--instruction-file" if options and "instruction_file" in str(err) else "--task"
        raise ConfigError(f"{flag}: {err}") from None


def for_model(cfg, task: Task, tokenizer) -> Task:
    """The task in the form that fits the model (:func:`ladtrain.prompts.for_model`: a chat template gets
    the chat form); a system prompt for a model without a template is a ConfigError."""
    if prompts.system_of(cfg) is not None and not prompts.has_chat_template(tokenizer):
        raise ConfigError("--system-prompt: the model's tokenizer has no chat template (nowhere to put a "
                          "system prompt)")
    return prompts.for_model(task, tokenizer)


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


def train(cfg: TrainConfig, base_eval: dict[str, Any] | None = None) -> dict[str, Any]:
    """One whole run (the module docstring lists its parts); returns ``summary.json``'s content ({} off
    rank 0). ``base_eval``: the base's held-out evaluation by set, from another run with the same base
    model, evaluation settings and seed (a study passes it, :mod:`ladtrain.study`; the same model sampled
    with the same stream gives the same result), so the base is not sampled again; its row is written to
    ``eval.jsonl`` (its samples are in that other run's ``samples.jsonl``) and ``summary.json`` says
    ``base_eval_reused``."""
    from collections import Counter

    from ladtrain.dead_run import NoSignalWarning, SignalWatch
    from ladtrain.samples_log import FILE as SAMPLES
    from ladtrain.samples_log import SamplesLog, per_step

    t0, cpu0 = time.time(), time.process_time()
    cfg = cfg.resolved()  # the model-dependent defaults (max_new_tokens, lr_warmup_steps)
    loss_fn = losses.get(cfg.loss)
    world, device = start.start_up(cfg, loss_fn)
    out = run_folder(cfg)
    task = load_task(cfg)
    extra_sets = heldout.extra_sets(cfg, cfg.eval_problems)  # --eval-task: built before any training
    problems = start.splits(cfg, task)
    begin = Begin.resumed(cfg, out, world, problems) if cfg.resume else Begin.fresh(cfg, problems, world)
    chat_task = for_model(cfg, task, begin.tokenizer)  # a chat model gets the task's chat form
    if chat_task is not task:
        task, problems = chat_task, start.splits(cfg, chat_task)
    start.write_run_info(cfg, out, world, device, begin)
    adapters = begin.state.tensors.get("adapters") if begin.state is not None else None
    kernels = start.linear_kernels(cfg, begin.model, begin, world, device)  # torch's products or oneDNN's
    start.record(out, world, linear_kernels=kernels)
    model, train_model = start.prepare_model(cfg, begin.model, world, device, adapters, kernels)
    faults = Faults()  # skipped and counted faults (ladtrain.faults documents each behaviour)
    train_problems, test_problems = start.fit_context(problems["train"], problems["test"], model,
                                                      begin.tokenizer, cfg, faults)
    eval_problems = test_problems[: cfg.eval_problems or None]
    samples = SamplesLog(out / SAMPLES if world.is_main else None, per_step(cfg.log_samples))
    resumed = begin.state.info if begin.state is not None else {}
    if begin.state is None and world.is_main:
        (out / SAMPLES).unlink(missing_ok=True)  # a fresh run starts a fresh file
    resumed_at = begin.state.step + 1 if begin.state is not None else None
    trackers = tracking.open_trackers(cfg.report_to if world.is_main else "none", out, cfg.to_dict(),
                                      purge_step=resumed_at)
    evaluator = heldout.evaluator(cfg, task, eval_problems, model, begin.tokenizer, faults, extra=extra_sets,
                                  log=out / "eval.jsonl" if world.is_main else None, trackers=trackers,
                                  samples_log=samples)
    if resumed_at is not None:
        evaluator.resume(resumed_at)  # eval.jsonl keeps the rows up to the checkpoint
    reused = not begin.base_eval and base_eval is not None
    if reused:
        base_evals = evaluator.record(0, "base", base_eval)
    else:
        base_evals = heldout.by_set(begin.base_eval) or evaluator.run(model, begin.tokenizer, 0, "base")
    rl = start.rl_step(cfg, loss_fn, task, model, train_model, begin, world, device)
    start.record_sampler(out, rl, world)  # run.json: whether the sampler runs transposed weight copies
    rng = random.Random(cfg.seed)  # the prompt sampler (its state is the data position)
    first, rows = begin.restore(out, rl, rng, faults, world)  # a resumed run: every state back
    if begin.state is not None and world.is_main:
        samples.drop_after(first - 1)  # records of steps after the checkpoint go, as metrics rows do
    watch = SignalWatch()  # no silent dead runs (ladtrain.dead_run)
    if "signal" in resumed:
        watch.load_state_dict(resumed["signal"])
    train_reasons = Counter({k.split("/", 1)[1]: v for r in rows for k, v in r.items()
                             if k.startswith("reasons/")})
    earlier = resumed.get("elapsed", {})  # what the sessions before this one took (a resumed run)
    warm_seconds = earlier.get("warmup", begin.warm_seconds)
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
            reasons = Counter(batch.rewarded.reasons)
            train_reasons.update(reasons)
            row = metrics_row(step, batch, stats, rl, faults, t_rl, t_step, update_seconds)
            row.update(batch.rewarded.component_means())
            # every reason, zeros too: the rows of all ranks have the same keys (mean_over_ranks reduces them)
            row.update({f"reasons/{r}": reasons.get(r, 0) for r in REASONS})
            row = distributed.mean_over_ranks(row, world)
            rows.append(row)
            log.write(row)
            trackers.metrics(row)
            samples.write(step_records(batch, step, samples.train_rows(len(batch.completions))))
            if heldout.due(step, cfg.eval_every, cfg.steps):  # before the checkpoint: a resume redoes it
                evaluator.run(model, begin.tokenizer, step, "step")
            bar.set_postfix(reward=f"{row['reward_mean']:.3f}", loss=f"{row['loss']:.4f}")
            message = watch.step(batch.rewards_filled.tolist(), batch.group_size, batch.rewarded.reasons)
            if message:
                if cfg.stop_on_no_signal:
                    faults.fatal = faults.fatal or message
                elif world.is_main:
                    warnings.warn(NoSignalWarning(message), stacklevel=2)
            faults.agree(distributed.all_sum, world)  # torchrun: one rank's fatal fault stops them all
            if every and (step % every == 0 or step == cfg.steps) or faults.fatal:  # every rank calls it
                elapsed = {"warmup": warm_seconds, "total": earlier.get("total", 0.0) + time.time() - t0,
                           "cpu": earlier.get("cpu", 0.0) + time.process_time() - cpu0}
                checkpoint.save_training(out, step, model, begin.tokenizer, optimizer=rl.optimizer,
                                         scheduler=rl.schedule, data_rng=rng, faults=faults,
                                         keep=cfg.keep_checkpoints, modules=start.trained_modules(rl),
                                         extra={"base_info": begin.base_info, "base_eval": base_evals,
                                                "signal": watch.state_dict(), "elapsed": elapsed},
                                         world=world, optimizer_state=cfg.optimizer_state)
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
    seconds = {"warmup": warm_seconds,
               "base_eval": 0.0 if reused else sum(r["seconds"] for r in base_evals.values()),
               "rl": rl_seconds, "trained_eval": sum(r["seconds"] for r in trained_evals.values()),
               "total": earlier.get("total", 0.0) + time.time() - t0,
               "cpu": earlier.get("cpu", 0.0) + time.process_time() - cpu0}  # this process's CPU time
    summary = summary_of(cfg, loss_fn.name, begin.base_info, len(eval_problems), base_eval, trained_eval,
                         faults, seconds, out, rewards=[c.describe() for c in rl.rewards],
                         train_reasons=train_reasons, no_signal=watch.fired)
    summary.update(heldout.summary_fields(base_evals, trained_evals, versus))
    summary["base_eval_reused"] = reused
    atomic.write_atomically(out / "summary.json", json.dumps(summary, indent=2))
    trackers.close()
    if not cfg.keep_resumable:  # the final model is in checkpoint/; the resumable states are not needed
        checkpoint.remove_all(out)
    print(summary_table(summary), flush=True)
    return summary


def step_records(batch, step: int, rows: Sequence[int]) -> list[dict[str, Any]]:
    """The :mod:`ladtrain.samples_log` records of ``rows`` of one RL step's batch."""
    from ladtrain import samples_log

    if not rows:
        return []
    G, got, B = batch.group_size, batch.rewarded, len(batch.completions)
    return samples_log.records(
        kind="train", step=step, problem_ids=[batch.problems[i // G].id for i in range(B)],
        prompts=[batch.prompts[i // G] for i in range(B)], completions=batch.completions,
        answers=[v.answer for v in got.verdicts], rewards=got.rewards,
        correct=[v.reward for v in got.verdicts],
        reasons=got.reasons, truncated=batch.truncated.tolist(), lengths=batch.rollout.lengths.tolist(),
        group_size=G, advantages=batch.advantages.tolist(), components=got.components, rows=rows)


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
               trained: dict[str, Any], faults: Faults, seconds: dict[str, float], out, *,
               rewards: Sequence[dict[str, Any]] = (), train_reasons: dict[str, int] | None = None,
               no_signal: str | None = None) -> dict[str, Any]:
    """The content of ``summary.json``: held-out metrics of base and trained policy, the training reward's
    components and the truncation policy, the reason totals (RL samples, both evaluations), the no-signal
    warning (None if it never fired), faults, timings (``total`` and ``warmup`` include the sessions
    before a ``--resume``)."""
    train_reasons = train_reasons or {}
    return {
        "loss": loss,
        "task": cfg.task,
        "model": model,
        "steps": cfg.steps,
        "eval_problems": eval_problems,
        "eval_samples": cfg.eval_samples,
        "rewards": list(rewards),
        "truncation": cfg.truncation,
        "base": base,
        "trained": trained,
        "improvement": trained["accuracy"] - base["accuracy"],
        "reasons": {"train": {r: train_reasons[r] for r in REASONS if train_reasons.get(r)},
                    "base_eval": base.get("reasons", {}), "trained_eval": trained.get("reasons", {})},
        "no_signal": no_signal,
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
    for label, key in (("RL samples", "train"), ("held-out, trained", "trained_eval")):
        counts = summary.get("reasons", {}).get(key) or {}
        total = sum(counts.values())
        if total:
            top = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
            lines.append(f"why ({label}): " + ", ".join(f"{r} {n / total:.0%}" for r, n in top)
                         + (", ..." if len(counts) > 3 else ""))
    if summary.get("no_signal"):
        lines.append(f"warning: {summary['no_signal']}")
    s = summary["seconds"]
    first = "warm-up" if summary["model"].get("model") == models.BUILTIN else "model load"  # a folder: loaded
    lines.append(f"time: {first} {s['warmup']:.0f}s, RL {s['rl']:.0f}s ({summary['steps']} steps), "
                 f"evaluation {s['base_eval'] + s['trained_eval']:.0f}s, total {s['total']:.0f}s")
    lines.append(f"run folder: {summary['run_folder']} (what the model saw and wrote: samples.jsonl)")
    return "\n".join(lines)


__all__ = ["evaluate", "load_task", "lr_lambda", "package_versions", "run_folder", "seed_everything",
           "summary_table", "train"]
