"""Where one RL step of ``ladtrain`` spends its time, and how it compares with GRPO and with TRL.

Run (a few minutes on 2 shared CPU cores)::

    python benchmarks/step_profile.py            # tiny + 6m models, TRL if installed
    python benchmarks/step_profile.py --write    # ... and write results/benchmarks/results.{json,md}
    python benchmarks/step_profile.py --quick    # seconds: tiny model, small batch (the test)

What it measures, per model (``tiny``: the built-in ~0.8M Llama; ``6m``: the same architecture at
hidden 256 x 8 layers, ~6.4M parameters, built from a config; or ``--model PATH``, a local HF folder):

* **Phases of one step**: the very step functions :func:`ladtrain.trainer.train` calls,
  :func:`ladtrain.step.collect` and :func:`ladtrain.step.update`, timed through their ``phase`` hook:
  generation, reward (scoring + advantages), old log-probs (empty at one update per rollout: the update
  uses its own log-probs, detached), forward+backward (log-probs, loss, backward), optimizer (clip, AdamW,
  schedule), bookkeeping (the metrics row of :func:`ladtrain.step.metrics` and its JSON line). Tokens per
  second = completion tokens / step wall time.
* **Ratio 1, LAD / GRPO**: step time with only the loss changed. Each repetition restores the same
  model, optimizer and RNG state and runs one LAD step and one GRPO step on the identical rollout, in
  alternating order (ABBA), so machine drift cancels; the median of the per-pair ratios and its spread
  (min, max) are reported, on wall time and on process CPU time.
* **Ratio 2, TRL / ladtrain**: wall time per step of TRL's ``GRPOTrainer`` (``loss_type="grpo"``,
  ``beta=0``, the same model weights, batch, group size, completion length, temperature, learning rate,
  clip and one update per rollout) over ladtrain's GRPO step. Each implementation runs in its own
  subprocess (so peak memory is per implementation); rounds alternate between them.
* **Ratio 3, overhead**: the share of the step outside the model's own kernels. Kernel time = wall
  time inside the model's forward calls (a pre-/post-forward hook pair on the top module, so every
  ``generate`` step and every log-prob pass counts) + ``loss.backward()`` + the sampling kernels
  (softmax + multinomial on the (B, V) logits, timed on the same shapes and counts). Everything else
  (``generate``'s Python per token, tokenising, decoding, scoring, the loss, the optimizer, logging) is
  overhead. The optimizer's share is printed separately.

Memory: peak resident set size of each worker process (``resource.getrusage(RUSAGE_SELF).ru_maxrss``),
and the same before the model was built (imports only), so the difference is what the step used.
``tracemalloc`` is not used: it does not see torch's tensor allocations.

Threads: one torch thread per worker (the machine is shared; ``--threads`` to change). On a loaded
machine wall time inflates with the other jobs; process CPU time is printed beside it.

**Before / after.** ``--before 6m`` (default) also runs one pair of the step as it was before the
speed-ups of issue 11 (``--no-share-prompts --old-pass``: every prompt run ``G`` times in sampling and
log-probs, and a separate no-grad pass for ``logp_old``), in the same run.

Reward: the built-in models are untrained, so the benchmark adds a small shaping term to the countdown
score (:func:`shaped_reward`; the same function for TRL) to give non-zero advantages.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import math
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results" / "benchmarks"
PHASES = ("generation", "reward", "old_logprobs", "forward_backward", "optimizer", "bookkeeping")


# --------------------------------------------------------------------------------------------------
# What is held fixed between implementations


@dataclass(frozen=True)
class Setup:
    """One benchmark configuration (identical for ladtrain and TRL)."""

    model: str = "6m"  # tiny | 6m | a local HF folder
    prompts: int = 16  # prompts per step
    group: int = 8  # G completions per prompt; B = prompts * G
    max_new_tokens: int = 16  # T
    temperature: float = 1.0
    lr: float = 1e-4
    clip_eps: float = 0.2
    max_grad_norm: float = 1.0
    seed: int = 0
    threads: int = 1
    share_prompts: bool = True  # ablation: False = the full batch runs every prompt G times (as before)
    old_pass: bool = False  # ablation: True = a separate no-grad old-log-prob pass at 1 update (as before)

    @property
    def batch(self) -> int:
        return self.prompts * self.group


def model_specs():
    from ladtrain.models import TinySpec

    return {"tiny": TinySpec(), "6m": TinySpec(hidden=256, layers=8, heads=8, intermediate=688)}


def build_model(setup: Setup):
    """``(model, tokenizer)``: a freshly initialised built-in-architecture model, or a local HF folder.

    The built-in models are not warmed up: completions are mostly ``max_new_tokens`` long (EOS has
    probability ~1/100 per token), which makes the work per step nearly constant."""
    from ladtrain import models

    specs = model_specs()
    if setup.model in specs:
        tok = models.build_tokenizer()
        return models.build_tiny_model(tok, specs[setup.model], seed=setup.seed), tok
    return models.load(setup.model)


def train_config(setup: Setup, loss: str):
    from ladtrain.config import TrainConfig

    return TrainConfig(loss=loss, prompts_per_step=setup.prompts, group_size=setup.group,
                       max_new_tokens=setup.max_new_tokens, temperature=setup.temperature, lr=setup.lr,
                       clip_eps=setup.clip_eps, max_grad_norm=setup.max_grad_norm, seed=setup.seed,
                       lr_warmup_steps=0, progress=False)


SHAPING = 0.1


def shaped_reward(reward: float | None, text: str) -> float | None:
    """The benchmark's reward: the task's (countdown correctness) plus ``SHAPING`` times the share of
    characters that could belong to an answer (digits, ``+ - *``), so that an untrained model gets
    non-zero advantages and both losses do real work. ``None`` (unscorable) stays ``None``."""
    if reward is None:
        return None
    useful = sum(c.isdigit() or c in "+-*" for c in text)
    return reward + SHAPING * useful / max(1, len(text))


def training_problems():
    from ladtrain.tasks import get_task

    task = get_task("countdown")
    return task, list(task.problems("train"))


# --------------------------------------------------------------------------------------------------
# Clocks


class Clock:
    """Wall and CPU seconds per phase, plus the model's kernel time (forward hooks, backward)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.kernel: dict[str, float] = {}
        self.forward_calls: dict[str, int] = {}
        self._phase = "outside"
        self._t_forward = 0.0

    @contextmanager
    def phase(self, name: str):
        previous, self._phase = self._phase, name
        w, c = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - w
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - c
            self._phase = previous

    @contextmanager
    def kernel_time(self, name: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.kernel[name] = self.kernel.get(name, 0.0) + time.perf_counter() - t

    def attach(self, model) -> None:
        """Time every call of ``model.forward`` (``generate`` calls it once per new token)."""

        def before(module, args, kwargs):
            self._t_forward = time.perf_counter()

        def after(module, args, kwargs, output):
            key = f"forward:{self._phase}"
            self.kernel[key] = self.kernel.get(key, 0.0) + time.perf_counter() - self._t_forward
            self.forward_calls[self._phase] = self.forward_calls.get(self._phase, 0) + 1

        model.register_forward_pre_hook(before, with_kwargs=True)
        model.register_forward_hook(after, with_kwargs=True)

    def total(self) -> float:
        return sum(self.wall.values())


@contextmanager
def _timed_backward(clock: Clock):
    """Count the time of every ``Tensor.backward`` call made inside as the kernel time ``backward``."""
    import torch

    original = torch.Tensor.backward

    def backward(self, *args, **kwargs):
        with clock.kernel_time("backward"):
            return original(self, *args, **kwargs)

    torch.Tensor.backward = backward
    try:
        yield
    finally:
        torch.Tensor.backward = original


def sampling_kernel_seconds(
    batch: int, vocab: int, calls: int, temperature: float, repeats: int = 3
) -> float:
    """Seconds of the sampling kernels of ``calls`` generation steps: temperature, softmax, multinomial
    on a (B, V) logits tensor (what ``generate`` does per token besides the forward)."""
    import torch

    logits = torch.randn(batch, vocab)
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1)
        best = min(best, time.perf_counter() - t)
    return best


# --------------------------------------------------------------------------------------------------
# ladtrain: one step, phase by phase (ladtrain.step.collect and update, as ladtrain.trainer.train runs them)


@dataclass
class LadState:
    setup: Setup
    step: Any  # ladtrain.step.Step (its loss and config are replaced per step by lad_step)
    problems: list
    rng: random.Random

    @property
    def model(self):
        return self.step.model

    @property
    def optimizer(self):
        return self.step.optimizer

    @property
    def schedule(self):
        return self.step.schedule


@dataclass(frozen=True)
class ShapedTask:
    """The task with :func:`shaped_reward` as its score (the benchmark's reward, fed to the trainer's
    step)."""

    task: Any

    @property
    def name(self) -> str:
        return f"{self.task.name}+shaped"

    def problems(self, split: str):
        return self.task.problems(split)

    def score(self, problem, completion: str):
        s = self.task.score(problem, completion)
        return replace(s, reward=shaped_reward(s.reward, completion))


def lad_state(setup: Setup) -> LadState:
    import torch

    from ladtrain import losses, start
    from ladtrain.rollout import HFSampler
    from ladtrain.step import Step

    start.seed_everything(setup.seed)
    model, tok = build_model(setup)
    task, problems = training_problems()
    cfg = train_config(setup, "grpo")
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, start.lr_lambda(cfg))
    sampler = HFSampler(model, tok, cfg.temperature, cfg.max_new_tokens, share_prompts=setup.share_prompts)
    step = Step(cfg, losses.get(cfg.loss), ShapedTask(task), model, tok, sampler, optimizer, schedule,
                share_prompts=None if setup.share_prompts else False, old_pass=setup.old_pass)
    return LadState(setup, step, problems, random.Random(setup.seed))


def lad_step(st: LadState, loss_spec: str, clock: Clock) -> dict[str, Any]:
    """One RL step of the trainer (:func:`ladtrain.step.collect` and :func:`ladtrain.step.update`, the
    functions :func:`ladtrain.trainer.train` calls), timed phase by phase. Returns the metrics row."""
    from ladtrain import losses
    from ladtrain.faults import Faults
    from ladtrain.step import collect, draw, metrics, update

    cfg = train_config(st.setup, loss_spec)
    step = replace(st.step, cfg=cfg, loss=losses.get(cfg.loss))
    faults = Faults()
    with clock.phase("generation"):
        problems = draw(st.rng, st.problems, cfg.prompts_per_step)
    batch = collect(step, problems, faults, phase=clock.phase)
    with _timed_backward(clock):
        stats = update(step, batch, faults, phase=clock.phase)
    with clock.phase("bookkeeping"):
        row = {**metrics(batch, stats, step.schedule), **{k: float(v) for k, v in stats.terms.items()}}
        io.StringIO().write(json.dumps(row) + "\n")
    row["completion_tokens"] = int(batch.rollout.lengths.sum())
    row["vocab"] = int(step.model.get_output_embeddings().weight.shape[0])
    return row


def snapshot(st: LadState) -> dict[str, Any]:
    import torch

    return {
        "model": copy.deepcopy(st.model.state_dict()),
        "optimizer": copy.deepcopy(st.optimizer.state_dict()),
        "schedule": copy.deepcopy(st.schedule.state_dict()),
        "torch_rng": torch.get_rng_state(),
        "rng": st.rng.getstate(),
    }


def restore(st: LadState, snap: dict[str, Any]) -> None:
    import torch

    st.model.load_state_dict(snap["model"])
    st.optimizer.load_state_dict(snap["optimizer"])
    st.schedule.load_state_dict(snap["schedule"])
    torch.set_rng_state(snap["torch_rng"])
    st.rng.setstate(snap["rng"])


def step_record(clock: Clock, row: dict[str, Any], setup: Setup) -> dict[str, Any]:
    """Phase times, kernel time and overhead of one timed step."""
    calls = clock.forward_calls.get("generation", 0)
    sampling = sampling_kernel_seconds(setup.batch, row["vocab"], calls, setup.temperature)
    kernel = sum(clock.kernel.values()) + sampling
    wall = clock.total()
    return {
        "wall": wall,
        "cpu": sum(clock.cpu.values()),
        "phases": dict(clock.wall),
        "phases_cpu": dict(clock.cpu),
        "kernel": {**clock.kernel, "sampling": sampling},
        "overhead_fraction": 1.0 - kernel / wall,
        "optimizer_fraction": clock.wall.get("optimizer", 0.0) / wall,
        "completion_tokens": row["completion_tokens"],
        "generate_calls": calls,
    }


def loss_only_seconds(setup: Setup, spec: str, repeats: int = 25) -> float:
    """Median seconds of the loss alone (forward and backward to a (B, T) log-prob leaf) at the step's
    shapes: the part of the step that the choice LAD / GRPO changes, free of the model's noise."""
    import torch

    from ladtrain import losses
    from ladtrain.losses import LossInputs

    gen = torch.Generator().manual_seed(0)
    B, T = setup.batch, setup.max_new_tokens
    logp_old = -torch.rand(B, T, generator=gen) * 5  # (B, T)
    advantages = torch.randn(B, generator=gen)  # (B,)
    mask = torch.ones(B, T)  # (B, T)
    cfg, loss_fn = train_config(setup, spec), losses.get(spec)
    times = []
    for _ in range(repeats):
        logp = (logp_old + 0.1 * torch.randn(B, T, generator=gen)).requires_grad_()  # (B, T)
        t = time.process_time()
        loss, _ = loss_fn(LossInputs(logp, logp_old, advantages, mask), cfg)
        loss.backward()
        times.append(time.process_time() - t)
    return statistics.median(times)


def ladtrain_worker(setup: Setup, reps: int) -> dict[str, Any]:
    """Interleaved LAD / GRPO steps from one restored state (ABBA order); the per-step records."""
    import torch

    torch.set_num_threads(setup.threads)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    st = lad_state(setup)
    clock = Clock()
    clock.attach(st.model)
    snap = snapshot(st)
    for spec in ("lad", "grpo"):  # warm-up: allocates AdamW state, first-call costs of each loss
        lad_step(st, spec, Clock())
    snap = snapshot(st)
    records: dict[str, list] = {"lad": [], "grpo": []}
    for i in range(reps):
        order = ("lad", "grpo") if i % 2 == 0 else ("grpo", "lad")
        for spec in order:
            restore(st, snap)
            clock.__init__()
            row = lad_step(st, spec, clock)
            records[spec].append(step_record(clock, row, setup))
    from ladtrain.models import count_parameters

    loss_only = {spec: loss_only_seconds(setup, spec) for spec in ("lad", "grpo")}
    return {"implementation": "ladtrain", "parameters": count_parameters(st.model), "records": records,
            "loss_only": loss_only,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "import_rss_mb": rss_before / 1024}


# --------------------------------------------------------------------------------------------------
# TRL's GRPOTrainer on the same model, batch, group size and lengths


def trl_worker(setup: Setup, steps: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(setup.threads)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    import trl
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from ladtrain import models, start

    start.seed_everything(setup.seed)
    model, tok = build_model(setup)
    task, problems = training_problems()
    rows = [{"prompt": models.format_prompt(tok, p.prompt), "index": i} for i, p in enumerate(problems)]

    def countdown_reward(prompts, completions, index, **_):
        return [shaped_reward(task.score(problems[i], c).reward, c) for i, c in zip(index, completions)]

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.wall, self.cpu = [], []

        def on_step_begin(self, args, state, control, **kw):
            self._w, self._c = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kw):
            self.wall.append(time.perf_counter() - self._w)
            self.cpu.append(time.process_time() - self._c)

    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(
            output_dir=out, per_device_train_batch_size=setup.batch, num_generations=setup.group,
            max_completion_length=setup.max_new_tokens, temperature=setup.temperature, top_k=0, top_p=1.0,
            learning_rate=setup.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
            max_grad_norm=setup.max_grad_norm, beta=0.0, epsilon=setup.clip_eps, loss_type="grpo",
            scale_rewards="group", num_iterations=1, max_steps=steps + 1, seed=setup.seed, use_cpu=True,
            report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True, bf16=False, fp16=False,
            dataloader_num_workers=0, log_completions=False,
        )
        timer = StepTimes()
        grpo = GRPOTrainer(model=model, reward_funcs=countdown_reward, args=args,
                           train_dataset=Dataset.from_list(rows), processing_class=tok, callbacks=[timer])
        torch.set_num_threads(setup.threads)
        with contextlib.redirect_stdout(io.StringIO()):  # the worker's stdout carries its JSON
            grpo.train()
        lengths = [
            h.get("completions/mean_length") for h in grpo.state.log_history if "completions/mean_length" in h
        ]
    return {
        "implementation": "trl",
        "trl_version": trl.__version__,
        "records": [{"wall": w, "cpu": c} for w, c in zip(timer.wall[1:], timer.cpu[1:])],
        "completion_len": lengths[1:],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "import_rss_mb": rss_before / 1024,
    }


# --------------------------------------------------------------------------------------------------
# Orchestration


def run_worker(kind: str, setup: Setup, count: int, in_process: bool = False) -> dict[str, Any]:
    """Run a worker in a fresh subprocess (its own peak RSS, no shared caches) or, for ``--quick``,
    in this process (no second start-up of torch and transformers; memory then is this process's)."""
    if in_process:
        return (ladtrain_worker if kind == "ladtrain" else trl_worker)(setup, count)
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        kind,
        "--setup",
        json.dumps(asdict(setup)),
        "--count",
        str(count),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(setup.threads), "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def trl_available() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("trl")
    except metadata.PackageNotFoundError:
        return None


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarise(
    setup: Setup, lad_runs: list[dict], trl_runs: list[dict], before: dict | None = None
) -> dict[str, Any]:
    lad = [r for run in lad_runs for r in run["records"]["lad"]]
    grpo = [r for run in lad_runs for r in run["records"]["grpo"]]
    pairs_wall = [a["wall"] / b["wall"] for a, b in zip(lad, grpo)]
    pairs_cpu = [a["cpu"] / b["cpu"] for a, b in zip(lad, grpo)]
    out: dict[str, Any] = {
        "setup": asdict(setup),
        "batch": setup.batch,
        "parameters": lad_runs[0]["parameters"],
        "ladtrain": {
            "lad_step_wall": spread([r["wall"] for r in lad]),
            "grpo_step_wall": spread([r["wall"] for r in grpo]),
            "lad_step_cpu": spread([r["cpu"] for r in lad]),
            "grpo_step_cpu": statistics.median(r["cpu"] for r in grpo),
            "phases_wall": {p: statistics.median(r["phases"].get(p, 0.0) for r in lad) for p in PHASES},
            "kernel": {k: statistics.median(r["kernel"].get(k, 0.0) for r in lad) for k in lad[0]["kernel"]},
            "completion_tokens": statistics.median(r["completion_tokens"] for r in lad),
            "generate_calls": statistics.median(r["generate_calls"] for r in lad),
            "peak_rss_mb": max(run["peak_rss_mb"] for run in lad_runs),
            "import_rss_mb": max(run["import_rss_mb"] for run in lad_runs),
        },
        "ratio_lad_over_grpo": {"wall": spread(pairs_wall), "cpu": spread(pairs_cpu)},
        "loss_only_cpu": {
            spec: statistics.median(run["loss_only"][spec] for run in lad_runs) for spec in ("lad", "grpo")
        },
        "overhead_fraction": spread([r["overhead_fraction"] for r in lad + grpo]),
        "optimizer_fraction": spread([r["optimizer_fraction"] for r in lad + grpo]),
    }
    if before is not None:  # the same step before this changes (ablation worker)
        b = before["records"]["lad"]
        out["before_changes"] = {
            "lad_step_wall": spread([r["wall"] for r in b]),
            "lad_step_cpu": spread([r["cpu"] for r in b]),
            "phases_wall": {p: statistics.median(r["phases"].get(p, 0.0) for r in b) for p in PHASES},
            "peak_rss_mb": before["peak_rss_mb"],
        }
    lt = out["ladtrain"]
    lt["completion_tokens_per_s"] = lt["completion_tokens"] / lt["lad_step_wall"]["median"]
    if trl_runs:
        trl_wall = [r["wall"] for run in trl_runs for r in run["records"]]
        trl_cpu = [r["cpu"] for run in trl_runs for r in run["records"]]
        grpo_wall = [r["wall"] for r in grpo]
        grpo_cpu = [r["cpu"] for r in grpo]
        lens = [x for run in trl_runs for x in run["completion_len"]]
        out["trl"] = {
            "version": trl_runs[0]["trl_version"], "step_wall": spread(trl_wall), "step_cpu": spread(trl_cpu),
            "completion_len": statistics.median(lens) if lens else None,
            "peak_rss_mb": max(run["peak_rss_mb"] for run in trl_runs),
            "import_rss_mb": max(run["import_rss_mb"] for run in trl_runs),
        }
        # ratio of medians; the spread uses the extreme pairings (slowest TRL / fastest ladtrain, ...)
        out["ratio_trl_over_ladtrain_grpo"] = {
            "wall": statistics.median(trl_wall) / statistics.median(grpo_wall),
            "wall_low": min(trl_wall) / max(grpo_wall), "wall_high": max(trl_wall) / min(grpo_wall),
            "cpu": statistics.median(trl_cpu) / statistics.median(grpo_cpu),
        }
    return out


def report(result: dict[str, Any]) -> str:
    s, lt = result["setup"], result["ladtrain"]
    lines = [
        f"== model {s['model']} ({result['parameters'] / 1e6:.2f}M parameters): B = {s['prompts']} prompts x "
        f"G = {s['group']} = {result['batch']} sequences, T = {s['max_new_tokens']} new tokens, temperature "
        f"{s['temperature']}, lr {s['lr']}, clip {s['clip_eps']}, grad clip {s['max_grad_norm']}, 1 update "
        f"per rollout, {s['threads']} torch thread(s)"
    ]
    step = lt["lad_step_wall"]["median"]
    lines.append(f"ladtrain LAD step {step:.3f}s (median of {lt['lad_step_wall']['n']}), "
                 f"{lt['completion_tokens_per_s']:.0f} completion tokens/s, "
                 f"peak RSS {lt['peak_rss_mb']:.0f} MB ({lt['import_rss_mb']:.0f} MB after imports)")
    for p in PHASES:
        v = lt["phases_wall"][p]
        lines.append(f"  {p:<17}{v:8.3f}s {100 * v / step:5.1f}%")
    k = lt["kernel"]
    lines.append("  kernels: " + ", ".join(f"{name} {v:.3f}s" for name, v in k.items())
                 + f"; {lt['generate_calls']:.0f} generate forward calls")
    r1 = result["ratio_lad_over_grpo"]
    lines.append(
        f"(1) LAD / GRPO step time, median of {r1['cpu']['n']} interleaved pairs on identical rollouts: "
        f"{r1['cpu']['median']:.4f} in process CPU time (min {r1['cpu']['min']:.4f}, max "
        f"{r1['cpu']['max']:.4f}); {r1['wall']['median']:.4f} in wall time (min {r1['wall']['min']:.4f}, "
        f"max {r1['wall']['max']:.4f}; wall time carries the other jobs' load)"
    )
    lo = result["loss_only_cpu"]
    cpu_step = lt["grpo_step_cpu"]
    lines.append(
        f"    the loss alone (forward + backward at (B, T)): LAD {1e3 * lo['lad']:.2f} ms, GRPO "
        f"{1e3 * lo['grpo']:.2f} ms CPU; the difference is {100 * (lo['lad'] - lo['grpo']) / cpu_step:+.3f}% "
        f"of a step"
    )
    if "trl" in result:
        t, r2 = result["trl"], result["ratio_trl_over_ladtrain_grpo"]
        lines.append(
            f"(2) TRL {t['version']} GRPOTrainer step {t['step_wall']['median']:.3f}s "
            f"(n {t['step_wall']['n']}, "
            f"min {t['step_wall']['min']:.3f}, max {t['step_wall']['max']:.3f}; completion length "
            f"{t['completion_len']}, peak RSS {t['peak_rss_mb']:.0f} MB) vs ladtrain GRPO step "
            f"{lt['grpo_step_wall']['median']:.3f}s: ladtrain is {r2['wall']:.2f}x faster "
            f"(range {r2['wall_low']:.2f}-{r2['wall_high']:.2f}; CPU time {r2['cpu']:.2f}x)"
        )
    else:
        lines.append("(2) TRL comparison not run (trl not installed, or --no-trl)")
    if "before_changes" in result:
        b = result["before_changes"]
        lines.append(
            f"before this issue's changes (every prompt run G times, a separate old-log-prob pass): LAD step "
            f"{b['lad_step_cpu']['median']:.3f}s CPU ({b['lad_step_wall']['median']:.3f}s wall, peak RSS "
            f"{b['peak_rss_mb']:.0f} MB); now {lt['lad_step_cpu']['median']:.3f}s CPU: "
            f"{b['lad_step_cpu']['median'] / lt['lad_step_cpu']['median']:.2f}x faster"
        )
    o, opt = result["overhead_fraction"], result["optimizer_fraction"]
    lines.append(f"(3) share of the step outside model forward/backward and sampling kernels: "
                 f"{100 * o['median']:.1f}% (min {100 * o['min']:.1f}%, max {100 * o['max']:.1f}%), of which "
                 f"the optimizer {100 * opt['median']:.1f}%")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average_at_start": os.getloadavg(),
            "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "trl": trl_available(), "platform": platform.platform()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="tiny,6m", help="comma-separated: tiny, 6m, or local HF folders")
    ap.add_argument("--reps", type=int, default=3, help="interleaved LAD/GRPO pairs per round")
    ap.add_argument("--rounds", type=int, default=2, help="alternating ladtrain/TRL rounds per model")
    ap.add_argument("--trl-steps", type=int, default=2, help="timed TRL steps per round (after one untimed)")
    ap.add_argument("--prompts", type=int, default=Setup.prompts)
    ap.add_argument("--group", type=int, default=Setup.group)
    ap.add_argument("--max-new-tokens", type=int, default=Setup.max_new_tokens)
    ap.add_argument("--threads", type=int, default=Setup.threads)
    ap.add_argument("--no-trl", action="store_true", help="skip the TRL comparison")
    ap.add_argument("--no-share-prompts", action="store_true",
                    help="ablation: run every prompt G times (ladtrain before the shared-prompt change)")
    ap.add_argument(
        "--old-pass",
        action="store_true",
        help="ablation: a separate old-log-prob pass at one update per rollout (before the change)",
    )
    ap.add_argument("--before", default="6m",
                    help="models also measured as before this issue's changes (one pair; '' for none)")
    ap.add_argument("--quick", action="store_true",
                    help="seconds: tiny model, 4 prompts x 4, 8 tokens, 1 round, workers in this process")
    ap.add_argument(
        "--write", action="store_true", help=f"write {RESULTS.relative_to(ROOT)}/results.json and .md"
    )
    ap.add_argument("--json", help="write the results as JSON to this file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--setup", help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        setup = Setup(**json.loads(args.setup))
        fn = ladtrain_worker if args.worker == "ladtrain" else trl_worker
        print(json.dumps(fn(setup, args.count)))
        return 0

    if args.quick:
        args.models, args.reps, args.rounds, args.trl_steps = "tiny", 1, 1, 1
        args.prompts, args.group, args.max_new_tokens = 4, 4, 8
    with_trl = not args.no_trl and trl_available() is not None
    started = time.time()
    info = machine()
    print(
        f"machine: {info['cpu']}, {info['cores']} cores "
        f"(shared; load average {info['load_average_at_start']}), "
        f"python {info['python']}, torch {info['torch']}, "
        f"transformers {info['transformers']}, trl {info['trl']}",
        flush=True,
    )
    results = []
    for name in args.models.split(","):
        setup = replace(Setup(), model=name, prompts=args.prompts, group=args.group,
                        max_new_tokens=args.max_new_tokens, threads=args.threads,
                        share_prompts=not args.no_share_prompts, old_pass=args.old_pass)
        lad_runs, trl_runs = [], []
        for _ in range(args.rounds):
            lad_runs.append(run_worker("ladtrain", setup, args.reps, in_process=args.quick))
            if with_trl:
                trl_runs.append(run_worker("trl", setup, args.trl_steps, in_process=args.quick))
        before = None
        if name in args.before.split(",") and setup.share_prompts and not setup.old_pass:
            before = run_worker(
                "ladtrain", replace(setup, share_prompts=False, old_pass=True), 1, in_process=args.quick
            )
        result = summarise(setup, lad_runs, trl_runs, before)
        results.append(result)
        print(report(result), flush=True)
    command = "python benchmarks/step_profile.py " + " ".join(
        a for a in (argv if argv is not None else sys.argv[1:]) if a not in ("--write",)
    )
    doc = {"machine": info, "seconds": time.time() - started, "command": command.strip(), "results": results}
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2))
    if args.write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "results.json").write_text(json.dumps(doc, indent=2))
        (RESULTS / "results.md").write_text(markdown(doc))
    print(f"total {time.time() - started:.0f}s", flush=True)
    return 0


def markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = [
        "# ladtrain step benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} CPU cores, shared with other jobs (load average at start "
        f"{', '.join(f'{x:.1f}' for x in m['load_average_at_start'])}); python {m['python']}, torch "
        f"{m['torch']}, transformers {m['transformers']}, trl {m['trl']}.",
        "",
        f"Reproduce: `{doc['command']} --write` ({doc['seconds']:.0f} s here).",
        "",
        "Peak memory is the worker process's peak RSS (`resource.getrusage(RUSAGE_SELF).ru_maxrss`).",
        "",
    ]
    for result in doc["results"]:
        lines += ["```", report(result), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
