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

from ladtrain import atomic, checkpoint, distributed, evaluation, losses, models, prompts, scoring, start
from ladtrain.config import ConfigError, TrainConfig
from ladtrain.faults import Faults, TrainingFault
from ladtrain.rollout import HFSampler
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
             max_new_tokens: int, seed: int = 0, chunk: int = 32, progress: bool = True,
             desc: str = "eval", system: str | None = None, top_p: float = 1.0, top_k: int = 0,
             truncation: str = "zero", records: list | None = None, step: int = 0,
             name: str | None = None) -> dict[str, Any]:
    """Sample ``samples`` completions per problem and summarise (accuracy = the share of samples the
    task's verifier accepts, pass@k, distinct correct answers per prompt, ...; see
    :mod:`ladtrain.evaluation`; dist-n counts n-grams of the model's tokens), plus ``reasons`` (how many
    samples scored for each reason), ``per_problem`` (every metric per problem) and ``problem_ids``.
    Correctness is the verifier's alone (a training reward never enters), a completion cut at
    ``max_new_tokens`` counting under ``truncation`` (:func:`ladtrain.tasks.base.score_completions`).
    ``system`` is the chat system prompt (:func:`ladtrain.prompts.render`). ``records``: a list that gets
    one :mod:`ladtrain.samples_log` record per sample (``step``, ``name``). The sampling RNG is seeded
    with ``seed`` without disturbing the training RNG, so base and trained policies are evaluated on the
    same random stream."""
    from tqdm.auto import tqdm

    from ladtrain import samples_log
    from ladtrain.rollout import ends_with_eos
    from ladtrain.tasks.base import reason_counts, score_completions

    sampler = HFSampler(model, tokenizer, temperature, max_new_tokens, top_p=top_p, top_k=top_k)
    correct, answers, tokens, reasons = [], [], [], []
    failed, t0 = 0, time.time()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i in tqdm(range(0, len(problems), chunk), desc=desc, disable=not progress, dynamic_ncols=True,
                      leave=False):
            batch = problems[i : i + chunk]
            texts = [models.format_prompt(tokenizer, p.prompt, system) for p in batch]
            rollout = sampler.sample(texts, samples)
            rows = [p for p in batch for _ in range(samples)]
            cut = (~ends_with_eos(rollout, tokenizer.eos_token_id) & (rollout.lengths > 0)).tolist()
            found = []

            def score(ps, cs):
                found.append(scoring.score(task, ps, cs))
                return found[-1].scores

            scores = score_completions(task, rows, rollout.texts, cut, truncation, scorer=score)
            failed += sum(len(s.failures) for s in found)  # a sample that could not be scored: not solved
            reasons += [s.reason for s in scores]
            if records is not None:
                records += samples_log.records(
                    kind="eval", step=step, eval_name=name, problem_ids=[p.id for p in rows],
                    prompts=[t for t in texts for _ in range(samples)], completions=rollout.texts,
                    answers=[s.answer for s in scores], rewards=[s.reward for s in scores],
                    correct=[s.reward for s in scores], reasons=[s.reason for s in scores], truncated=cut,
                    lengths=rollout.lengths.tolist(), group_size=samples)
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
    result["reasons"] = reason_counts(reasons)
    result["seconds"] = time.time() - t0
    result["problem_ids"] = [p.id for p in problems]
    result["per_problem"] = evaluation.per_problem(samples_, ks=ks)  # for paired comparisons across runs
    return result


# --------------------------------------------------------------------------------------------------
# The job


def train(cfg: TrainConfig) -> dict[str, Any]:
    """One whole run (the module docstring lists its parts); returns ``summary.json``'s content ({} off
    rank 0)."""
    from collections import Counter

    from ladtrain.dead_run import NoSignalWarning, SignalWatch
    from ladtrain.samples_log import FILE as SAMPLES
    from ladtrain.samples_log import SamplesLog, per_step

    t0 = time.time()
    cfg = cfg.resolved()  # the model-dependent defaults (max_new_tokens, lr_warmup_steps)
    loss_fn = losses.get(cfg.loss)
    world, device = start.start_up(cfg, loss_fn)
    out = run_folder(cfg)
    task = load_task(cfg)
    problems = start.splits(cfg, task)
    begin = Begin.resumed(cfg, out, world, problems) if cfg.resume else Begin.fresh(cfg, problems, world)
    chat_task = for_model(cfg, task, begin.tokenizer)  # a chat model gets the task's chat form
    if chat_task is not task:
        task, problems = chat_task, start.splits(cfg, chat_task)
    start.write_run_info(cfg, out, world, device, begin)
    adapters = begin.state.tensors.get("adapters") if begin.state is not None else None
    model, train_model = start.prepare_model(cfg, begin.model, world, device, adapters)
    faults = Faults()  # skipped and counted faults (ladtrain.faults documents each behaviour)
    train_problems, test_problems = start.fit_context(problems["train"], problems["test"], model,
                                                      begin.tokenizer, cfg, faults)
    eval_problems = test_problems[: cfg.eval_problems or None]
    eval_kw = dict(samples=cfg.eval_samples, temperature=cfg.eval_temperature,
                   max_new_tokens=cfg.max_new_tokens,
                   seed=cfg.seed + 1 if cfg.eval_seed is None else cfg.eval_seed, progress=cfg.progress,
                   system=prompts.system_of(cfg), top_p=cfg.top_p, top_k=cfg.top_k, truncation=cfg.truncation)
    samples = SamplesLog(out / SAMPLES if world.is_main else None, per_step(cfg.log_samples))
    resumed = begin.state.info if begin.state is not None else {}
    if begin.state is None and world.is_main:
        (out / SAMPLES).unlink(missing_ok=True)  # a fresh run starts a fresh file
    records: list = []
    base_eval = begin.base_eval or evaluate(model, begin.tokenizer, task, eval_problems, desc="eval base",
                                            records=records, name="base", **eval_kw)
    samples.write(records)
    rl = start.rl_step(cfg, loss_fn, task, model, train_model, begin, world, device)
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
            row = {
                "step": step,
                **metrics(batch, stats, rl.schedule),
                **batch.rewarded.component_means(),
                **{f"reasons/{r}": n for r, n in reasons.items()},
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
            samples.write(step_records(batch, step, samples.train_rows(len(batch.completions))))
            bar.set_postfix(reward=f"{row['reward_mean']:.3f}", loss=f"{row['loss']:.4f}")
            message = watch.step(batch.rewards_filled.tolist(), batch.group_size, batch.rewarded.reasons)
            if message:
                if cfg.stop_on_no_signal:
                    faults.fatal = faults.fatal or message
                elif world.is_main:
                    warnings.warn(NoSignalWarning(message), stacklevel=2)
            faults.agree(distributed.all_sum, world)  # torchrun: one rank's fatal fault stops them all
            if every and (step % every == 0 or step == cfg.steps) or faults.fatal:  # every rank calls it
                elapsed = {"warmup": warm_seconds, "total": earlier.get("total", 0.0) + time.time() - t0}
                checkpoint.save_training(out, step, model, begin.tokenizer, optimizer=rl.optimizer,
                                         scheduler=rl.schedule, data_rng=rng, faults=faults,
                                         keep=cfg.keep_checkpoints, modules=start.trained_modules(rl),
                                         extra={"base_info": begin.base_info, "base_eval": base_eval,
                                                "signal": watch.state_dict(), "elapsed": elapsed},
                                         world=world, optimizer_state=cfg.optimizer_state)
            if faults.fatal:
                raise TrainingFault(f"step {step}: {faults.fatal}; checkpoint saved in {out}")
    rl_seconds = time.time() - t_rl

    # --- final evaluation, checkpoint, summary
    model.eval()
    records = []
    trained_eval = evaluate(model, begin.tokenizer, task, eval_problems, desc="eval trained", records=records,
                            step=cfg.steps, name="trained", **eval_kw)
    samples.write(records)
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
    seconds = {"warmup": warm_seconds, "base_eval": base_eval["seconds"], "rl": rl_seconds,
               "trained_eval": trained_eval["seconds"], "total": earlier.get("total", 0.0) + time.time() - t0}
    summary = summary_of(cfg, loss_fn.name, begin.base_info, len(eval_problems), base_eval, trained_eval,
                         faults, seconds, out, rewards=[c.describe() for c in rl.rewards],
                         train_reasons=train_reasons, no_signal=watch.fired)
    atomic.write_atomically(out / "summary.json", json.dumps(summary, indent=2))
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
