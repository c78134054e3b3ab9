"""Where one RL step of ``ladtrain`` spends its time, and how it compares with GRPO and with TRL.

Run (minutes on 2 shared CPU cores; the 135M shape tens of minutes)::

    python benchmarks/step_profile.py                      # tiny + 6m models, TRL if installed
    python benchmarks/step_profile.py --write              # ... and results/benchmarks/results.{json,md}
    python benchmarks/step_profile.py --shape smollm2-135m --write   # ... results-smollm2-135m.{json,md}
    python benchmarks/step_profile.py --quick              # seconds: tiny model, small batch (the test)

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
* **Ratio 2, TRL / ladtrain**: time per step of TRL's ``GRPOTrainer`` over ladtrain's GRPO step, with
  every TRL option that changes the work per step set explicitly to ladtrain's (``benchmarks/trl_fair.py``
  lists them, and the results file prints the table; what TRL ran with is read back from the trainer),
  both without and with gradient checkpointing (``--gradient-checkpointing both``, the default), on the
  same weights and the same problems (only prompts of one length, so neither pads them). Each
  implementation runs in its own subprocess; rounds alternate between them. Memory ratios beside it.
  **The same completions**: every step of both uses the same prompts in the same order
  (:func:`step_problems`; TRL's ``shuffle_dataset`` off), torch's generator is seeded right before each
  generation (:func:`seed_generation`), and the learning rate is 0 by default (``--lr``), so the policy
  stays the built one and both sample the same tokens (ladtrain's sampler draws as ``generate`` does;
  only a float32 near tie could differ): equal completion lengths, both printed. At lr 0 AdamW still runs
  every kernel of its step, so the work per step is that of training.
* **Ratio 3, overhead**: the share of the step outside the model's own kernels. Kernel time = wall
  time inside the model's forward calls (a pre-/post-forward hook pair on the top module, so every
  ``generate`` step and every log-prob pass counts) + ``loss.backward()`` + the sampling kernels
  (softmax + multinomial on the (B, V) logits, timed on the same shapes and counts). Everything else
  (``generate``'s Python per token, tokenising, decoding, scoring, the loss, the optimizer, logging) is
  overhead. The optimizer's share is printed separately. The **limit** is the kernel time alone (the
  model's forward calls of generation, one forward and one backward of the update); the step and TRL's
  step are reported as multiples of it.

Memory (``benchmarks/rss.py``): peak resident set size per phase of each timed step (generation,
update), sampled by a thread, with the RSS at the step's start (model, optimizer state); the process
high-water mark (``ru_maxrss``) beside it. ``tracemalloc`` is not used: it does not see torch's tensors.

Shapes: ``--shape smollm2-135m`` (``benchmarks/shapes.py``): SmolLM2-135M's architecture with random
weights, a 49,152-token vocabulary and a controlled EOS hazard (about half the completions reach
``max_new_tokens``), 4 prompts x 4 completions x 96 tokens, GRPO steps only (no LAD pairs).

Threads: one torch thread per worker (the machine is shared; ``--threads`` to change). On a loaded
machine wall time inflates with the other jobs; process CPU time is printed beside it.

**Before / after.** ``--before`` (default ``6m,smollm2-135m``) also runs ladtrain's step as it was before
issue 24 (``transformers``' ``generate`` as the sampler, log-probs from the (B, T, V) logits in one pass
over the batch), in the same run, without gradient checkpointing. The ablations of issue 11's speed-ups
stay available: ``--no-share-prompts --old-pass``.

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
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent) not in sys.path:  # the sibling modules, also when loaded by path
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import rss  # noqa: E402
import shapes  # noqa: E402
import trl_fair  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results" / "benchmarks"
PHASES = ("generation", "reward", "old_logprobs", "forward_backward", "optimizer", "bookkeeping")


# --------------------------------------------------------------------------------------------------
# What is held fixed between implementations


@dataclass(frozen=True)
class Setup:
    """One benchmark configuration (identical for ladtrain and TRL)."""

    model: str = "6m"  # tiny | 6m | a shape of benchmarks/shapes.py (smollm2-135m) | a local HF folder
    prompts: int = 16  # prompts per step
    group: int = 8  # G completions per prompt; B = prompts * G
    max_new_tokens: int = 16  # T
    temperature: float = 1.0
    lr: float = 0.0  # 0: the policy stays the built one, so both implementations sample the same lengths
    clip_eps: float = 0.2
    max_grad_norm: float = 1.0
    seed: int = 0
    threads: int = 1
    share_prompts: bool = True  # ablation: False = the full batch runs every prompt G times (as before)
    old_pass: bool = False  # ablation: True = a separate no-grad old-log-prob pass at 1 update (as before)
    gradient_checkpointing: bool = False  # both implementations: recompute activations in backward
    sampler: str = "compact"  # compact: ladtrain.compact_sampler (finished rows dropped) | hf: generate
    chunked: bool = True  # log-probs from the hidden states in chunks (False: the (B, T, V) logits)
    buckets: bool = True  # the update's passes in length buckets where they save work (False: one pass)
    lean: bool = True  # ladtrain.lean_layers where they pay, without checkpointing (False: never)
    pack: bool = True  # ladtrain.packing: the update's MLPs skip the padding (False: buckets or one pass)
    transposed: bool = True  # ladtrain.transposed_linears while sampling where measured faster (False: never)
    draws: str = "generate"  # ladtrain's sampler draws: generate's exponentials | inverse-cdf (other tokens)
    kernels: str = "auto"  # ladtrain's linear products (--linear-kernels): auto (measured) | torch | onednn
    pairs: bool = True  # LAD / GRPO interleaved pairs; False: GRPO steps only (the large shapes)

    @property
    def batch(self) -> int:
        return self.prompts * self.group


def model_specs():
    from ladtrain.models import TinySpec

    return {"tiny": TinySpec(), "6m": TinySpec(hidden=256, layers=8, heads=8, intermediate=688)}


def build_model(setup: Setup):
    """``(model, tokenizer)``: a freshly initialised built-in-architecture model, a real architecture's
    shape with random weights (``benchmarks/shapes.py``), or a local HF folder.

    The built-in models are not warmed up: completions are mostly ``max_new_tokens`` long (EOS has
    probability ~1/100 per token), which makes the work per step nearly constant."""
    from ladtrain import models

    specs = model_specs()
    if setup.model in specs:
        tok = models.build_tokenizer()
        return models.build_tiny_model(tok, specs[setup.model], seed=setup.seed), tok
    if setup.model in shapes.SHAPES:
        return shapes.build(setup.model, seed=setup.seed)[:2]
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


def step_problems(setup: Setup, problems: list) -> list:
    """The prompts of every timed and untimed step, in this order, for ladtrain and TRL alike: the trainer's
    draw of ``prompts`` problems from a generator seeded afresh each step."""
    from ladtrain.step import draw

    return draw(random.Random(setup.seed), problems, setup.prompts)


def seed_generation(setup: Setup) -> None:
    """Seed torch's generator right before each step's sampling, in both implementations: with the same
    weights (lr 0), prompts and seed, ladtrain's sampler and ``generate`` draw the same completions (up to
    float32 near ties: ``ladtrain/compact_sampler.py``), so both do the same work."""
    import torch

    torch.manual_seed(setup.seed + 1)


@dataclass
class SeededSampler:
    """A sampler that seeds torch's generator (:func:`seed_generation`) before each ``sample`` call."""

    inner: Any
    setup: Setup

    def sample(self, prompts, group_size):
        seed_generation(self.setup)
        return self.inner.sample(prompts, group_size)


def training_problems(tokenizer=None):
    """The countdown task and its training problems; with ``tokenizer``, only the problems whose prompt
    has the most common length in tokens (so that no implementation pads prompts: equal prompt lengths)."""
    from collections import Counter

    from ladtrain import models
    from ladtrain.tasks import get_task

    task = get_task("countdown")
    problems = list(task.problems("train"))
    if tokenizer is None:
        return task, problems
    length = [len(tokenizer(models.format_prompt(tokenizer, p.prompt), add_special_tokens=False)["input_ids"])
              for p in problems]
    modal = Counter(length).most_common(1)[0][0]
    return task, [p for p, n in zip(problems, length) if n == modal]


# --------------------------------------------------------------------------------------------------
# Clocks


class Clock:
    """Wall and CPU seconds per phase, plus the model's kernel time (forward hooks, backward)."""

    def __init__(self, peaks: rss.PhasePeaks | None = None) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.kernel: dict[str, float] = {}
        self.forward_calls: dict[str, int] = {}
        self._phase = "outside"
        self._t_forward = 0.0
        self.peaks = peaks  # peak RSS per phase, when given

    @contextmanager
    def phase(self, name: str):
        previous, self._phase = self._phase, name
        w, c = time.perf_counter(), time.process_time()
        memory = self.peaks.phase(name) if self.peaks is not None else contextlib.nullcontext()
        try:
            with memory:
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
        """Time every call of ``model.forward`` (``generate`` calls it once per new token) and of its
        backbone (``model.base_model``, which the chunked log-probs call directly); a backbone call
        inside a model call is counted once."""
        depth = [0]

        def before(module, args, kwargs):
            if depth[0] == 0:
                self._t_forward = time.perf_counter()
            depth[0] += 1

        def after(module, args, kwargs, output):
            depth[0] -= 1
            if depth[0] == 0:
                key = f"forward:{self._phase}"
                self.kernel[key] = self.kernel.get(key, 0.0) + time.perf_counter() - self._t_forward
                self.forward_calls[self._phase] = self.forward_calls.get(self._phase, 0) + 1

        modules = [model]
        backbone = getattr(model, "base_model", model)
        if backbone is not model:
            modules.append(backbone)
        for m in modules:
            m.register_forward_pre_hook(before, with_kwargs=True)
            m.register_forward_hook(after, with_kwargs=True)

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


def sampling_kernel_seconds(batch: int, vocab: int, calls: int, temperature: float,
                            repeats: int = 3, draws: str = "generate") -> float:
    """Seconds of the sampling kernels of ``calls`` generation steps: temperature, softmax, multinomial
    on a (B, V) logits tensor (what ``generate`` does per token besides the forward); with ``draws``
    ``"inverse-cdf"`` the draw is ``ladtrain.compact_sampler.inverse_cdf`` instead of the multinomial."""
    import torch

    from ladtrain.compact_sampler import inverse_cdf

    logits = torch.randn(batch, vocab)
    rows = torch.arange(batch)
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            probs = torch.softmax(logits / temperature, dim=-1)
            torch.multinomial(probs, 1) if draws == "generate" else inverse_cdf(probs, rows, batch)
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


def make_sampler(setup: Setup, model, tok):
    """ladtrain's sampler for ``setup``: the compacting one (finished rows dropped) or generate's."""
    from ladtrain.compact_sampler import CompactSampler
    from ladtrain.rollout import HFSampler

    if setup.sampler == "compact":
        return CompactSampler(
            model, tok, setup.temperature, setup.max_new_tokens, share_prompts=setup.share_prompts,
            transposed=None if setup.transposed else False, draws=setup.draws,
        )
    return HFSampler(model, tok, setup.temperature, setup.max_new_tokens)


def use_onednn(setup: Setup, model) -> bool:
    """Whether ladtrain's linear products go through oneDNN (``Setup.kernels``; auto: where
    :func:`ladtrain.onednn_linears.pays` measures it faster, as the trainer decides)."""
    from ladtrain import onednn_linears

    if setup.kernels == "auto":
        return onednn_linears.pays(model, setup.batch, setup.max_new_tokens)
    return setup.kernels == "onednn"


def lad_state(setup: Setup) -> LadState:
    import torch

    from ladtrain import lean_layers, losses, models, onednn_linears, start
    from ladtrain.step import Step

    start.seed_everything(setup.seed)
    model, tok = build_model(setup)
    task, problems = training_problems(tok)
    cfg = train_config(setup, "grpo")
    if setup.gradient_checkpointing:
        models.enable_gradient_checkpointing(model)
    elif setup.lean and lean_layers.pays(model):  # as ladtrain.start.prepare_model does
        lean_layers.apply(model)
    if use_onednn(setup, model):  # as ladtrain.start.linear_kernels decides --linear-kernels
        onednn_linears.apply(model)
    optimizer = start.adamw(list(model.parameters()), cfg.lr, cfg.weight_decay)  # the trainer's AdamW
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, start.lr_lambda(cfg))
    sampler = SeededSampler(make_sampler(setup, model, tok), setup)
    step = Step(
        cfg,
        losses.get(cfg.loss),
        ShapedTask(task),
        model,
        tok,
        sampler,
        optimizer,
        schedule,
        share_prompts=None if setup.share_prompts else False,
        old_pass=setup.old_pass,
        chunked=None if setup.chunked else False,
        buckets=setup.buckets,
        pack=None if setup.pack else False,
    )
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
    with clock.phase("generation"):  # the same prompts every step (step_problems), in TRL's worker too
        problems = draw(random.Random(st.setup.seed), st.problems, cfg.prompts_per_step)
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
    sampling = sampling_kernel_seconds(setup.batch, row["vocab"], calls, setup.temperature,
                                       draws=setup.draws if setup.sampler == "compact" else "generate")
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


def memory_record(peaks: rss.PhasePeaks, start: int) -> dict[str, float]:
    """Peak RSS (MB) of one step per phase, and at its start (model and optimizer state allocated)."""
    mb = rss.megabytes
    generation = peaks.peaks.get("generation", 0)
    update = max([v for k, v in peaks.peaks.items() if k not in ("generation", "reward", "outside")] or [0])
    return {
        "start_mb": mb(start),
        "generation_mb": mb(generation),
        "update_mb": mb(update),
        "peak_mb": mb(max([*peaks.peaks.values(), start])),
    }


def ladtrain_worker(setup: Setup, reps: int) -> dict[str, Any]:
    """Interleaved LAD / GRPO steps from one restored state (ABBA order), or (``pairs=False``) ``reps``
    consecutive GRPO steps without snapshots (a snapshot would hold a second copy of the model and the
    optimizer state in memory); the per-step records, with peak RSS per phase."""
    import torch

    torch.set_num_threads(setup.threads)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    st = lad_state(setup)
    peaks = rss.PhasePeaks()
    clock = Clock(peaks)
    clock.attach(st.model)
    specs = ("lad", "grpo") if setup.pairs else ("grpo",)
    for spec in specs:  # warm-up: allocates AdamW state, first-call costs of each loss
        lad_step(st, spec, Clock())
    snap = snapshot(st) if setup.pairs else None
    records: dict[str, list] = {spec: [] for spec in specs}
    for i in range(reps):
        for spec in specs if i % 2 == 0 else specs[::-1]:
            if snap is not None:
                restore(st, snap)
            clock.__init__(peaks)
            peaks.reset()
            start = rss.rss_bytes()
            row = lad_step(st, spec, clock)
            records[spec].append({**step_record(clock, row, setup), "memory": memory_record(peaks, start)})
    peaks.stop()
    from ladtrain import onednn_linears, transposed_linears
    from ladtrain.models import count_parameters

    loss_only = {spec: loss_only_seconds(setup, spec) for spec in specs}
    return {
        "implementation": "ladtrain",
        "setup": asdict(setup),
        "parameters": count_parameters(st.model),
        "records": records,
        "loss_only": loss_only,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "import_rss_mb": rss_before / 1024,
        "transposed_copies": any(v for k, v in transposed_linears.decided.items() if k[0] == "transposed"),
        "linear_kernels": "onednn" if onednn_linears.switched(st.model) else "torch",
    }


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
    task, problems = training_problems(tok)
    chosen = step_problems(setup, problems)  # ladtrain's prompts, in its order, every step (no shuffling)
    rows = [{"prompt": models.format_prompt(tok, chosen[i].prompt), "index": i}
            for _ in range(steps + 1) for i in range(len(chosen))]
    problems = chosen

    def countdown_reward(prompts, completions, index, **_):
        return [shaped_reward(task.score(problems[i], c).reward, c) for i, c in zip(index, completions)]

    peaks = rss.PhasePeaks()

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.wall, self.cpu, self.memory = [], [], []

        def on_step_begin(self, args, state, control, **kw):
            peaks.reset()
            peaks.label = "update"
            self._start = rss.rss_bytes()
            self._w, self._c = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kw):
            self.wall.append(time.perf_counter() - self._w)
            self.cpu.append(time.process_time() - self._c)
            peaks.record()
            self.memory.append(memory_record(peaks, self._start))
            peaks.label = "outside"

    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(**trl_fair.config_kwargs(setup, out, steps=steps + 1))
        timer = StepTimes()
        grpo = GRPOTrainer(
            model=model,
            reward_funcs=countdown_reward,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tok,
            callbacks=[timer],
        )
        generate = grpo._generate

        def timed_generate(*a, **k):  # the generation phase, for the memory per phase
            with peaks.phase("generation"):
                return generate(*a, **k)

        grpo._generate = timed_generate
        model_generate = model.generate

        def seeded_generate(*a, **k):  # TRL calls the model's generate inside _generate
            seed_generation(setup)
            return model_generate(*a, **k)

        model.generate = seeded_generate
        torch.set_num_threads(setup.threads)
        with contextlib.redirect_stdout(io.StringIO()):  # the worker's stdout carries its JSON
            grpo.train()
        applied = trl_fair.applied(grpo)
        lengths = [
            h.get("completions/mean_length") for h in grpo.state.log_history if "completions/mean_length" in h
        ]
    peaks.stop()
    return {
        "implementation": "trl",
        "trl_version": trl.__version__,
        "applied": applied,
        "records": [
            {"wall": w, "cpu": c, "memory": m}
            for w, c, m in zip(timer.wall[1:], timer.cpu[1:], timer.memory[1:])
        ],
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
    env = {
        **os.environ,
        **rss.MALLOC_ENV,
        "OMP_NUM_THREADS": str(setup.threads),
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
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


def _median(values) -> float:
    values = list(values)
    return statistics.median(values) if values else math.nan


def _memory(records: list[dict]) -> dict[str, float]:
    """Medians over steps of each phase's peak RSS (MB) and of the step's rise above its start."""
    keys = ("start_mb", "generation_mb", "update_mb", "peak_mb")
    out = {k: _median(r["memory"][k] for r in records) for k in keys}
    out["rise_mb"] = _median(r["memory"]["peak_mb"] - r["memory"]["start_mb"] for r in records)
    return out


def kernels_line(s: dict, lt: dict) -> str:
    """The report's words for ladtrain's linear products (``Setup.kernels`` and what the workers ran)."""
    ran = lt.get("linear_kernels", ["torch"])
    onednn = sum(k == "onednn" for k in ran)
    if s.get("kernels", "torch") == "auto":
        return f"auto (oneDNN where measured faster: oneDNN in {onednn} of {len(ran)} workers)"
    return f"{s.get('kernels', 'torch')} ({onednn} of {len(ran)} workers through oneDNN)"


def _ladtrain_summary(runs: list[dict]) -> dict[str, Any]:
    """The GRPO step of ladtrain workers (and its LAD pair where run): times, phases, kernels, memory."""
    grpo = [r for run in runs for r in run["records"]["grpo"]]
    lad = [r for run in runs for r in run["records"].get("lad", [])]
    main = lad or grpo  # the step the phase table shows: LAD where it ran, else GRPO
    out = {
        "grpo_step_wall": spread([r["wall"] for r in grpo]),
        "grpo_step_cpu": spread([r["cpu"] for r in grpo]),
        "phases_wall": {p: _median(r["phases"].get(p, 0.0) for r in main) for p in PHASES},
        "kernel": {k: _median(r["kernel"].get(k, 0.0) for r in main) for k in main[0]["kernel"]},
        "completion_tokens": _median(r["completion_tokens"] for r in grpo),
        "generate_calls": _median(r["generate_calls"] for r in main),
        "memory": _memory(grpo),
        "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
        "import_rss_mb": max(run["import_rss_mb"] for run in runs),
        "overhead_fraction": spread([r["overhead_fraction"] for r in lad + grpo]),
        "optimizer_fraction": spread([r["optimizer_fraction"] for r in lad + grpo]),
        "transposed_copies": [run.get("transposed_copies", False) for run in runs],  # per worker
        "linear_kernels": [run.get("linear_kernels", "torch") for run in runs],  # per worker
    }
    if lad:
        out["lad_step_wall"] = spread([r["wall"] for r in lad])
        out["lad_step_cpu"] = spread([r["cpu"] for r in lad])
        out["ratio_lad_over_grpo"] = {
            "wall": spread([a["wall"] / b["wall"] for a, b in zip(lad, grpo)]),
            "cpu": spread([a["cpu"] / b["cpu"] for a, b in zip(lad, grpo)]),
        }
        out["loss_only_cpu"] = {
            spec: _median(run["loss_only"][spec] for run in runs) for spec in ("lad", "grpo")
        }
    k = out["kernel"]
    # the limit of this step's work: the model's forward calls in generation, one forward and one backward
    out["kernel_limit"] = sum(v for name, v in k.items() if name.startswith("forward:") or name == "backward")
    out["completion_tokens_per_s"] = out["completion_tokens"] / out["grpo_step_wall"]["median"]
    return out


def _trl_summary(runs: list[dict]) -> dict[str, Any]:
    records = [r for run in runs for r in run["records"]]
    lens = [x for run in runs for x in run["completion_len"]]
    return {
        "version": runs[0]["trl_version"],
        "applied": runs[0]["applied"],
        "step_wall": spread([r["wall"] for r in records]),
        "step_cpu": spread([r["cpu"] for r in records]),
        "completion_len": _median(lens),
        "memory": _memory(records),
        "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
        "import_rss_mb": max(run["import_rss_mb"] for run in runs),
    }


def _versus(
    slow: dict[str, Any], fast: dict[str, Any], slow_key: str = "step", fast_key: str = "grpo_step"
) -> dict[str, float]:
    """``slow / fast`` step-time ratios (medians; low/high from the extreme pairings) and the memory ratios
    ``fast / slow`` (peak RSS of the step, and its rise above the step's start)."""
    sw, fw = slow[f"{slow_key}_wall"], fast[f"{fast_key}_wall"]
    sc, fc = slow[f"{slow_key}_cpu"], fast[f"{fast_key}_cpu"]
    sm, fm = slow["memory"], fast["memory"]

    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else math.nan  # a tiny model's step can rise 0 MB

    return {
        "wall": ratio(sw["median"], fw["median"]),
        "wall_low": ratio(sw["min"], fw["max"]),
        "wall_high": ratio(sw["max"], fw["min"]),
        "cpu": ratio(sc["median"], fc["median"]),
        "memory_peak": ratio(fm["peak_mb"], sm["peak_mb"]),
        "memory_update": ratio(fm["update_mb"], sm["update_mb"]),
        "memory_rise": ratio(fm["rise_mb"], sm["rise_mb"]),
    }


def summarise(
    setup: Setup, lad_runs: list[dict], trl_runs: list[dict], before: list[dict] | None = None,
    no_lean: list[dict] | None = None,
) -> dict[str, Any]:
    """One configuration (model, batch, gradient checkpointing): ladtrain now, TRL, ladtrain before
    issue 24 (generate's sampler and the (B, T, V) log-probs) and ladtrain without its lean layers
    (``--lean-ablation``), with the ratios between them."""
    lt = _ladtrain_summary(lad_runs)
    out: dict[str, Any] = {
        "setup": asdict(setup),
        "batch": setup.batch,
        "parameters": lad_runs[0]["parameters"],
        "ladtrain": lt,
    }
    for key in ("ratio_lad_over_grpo", "loss_only_cpu"):
        if key in lt:
            out[key] = lt.pop(key)
    out["overhead_fraction"], out["optimizer_fraction"] = lt["overhead_fraction"], lt["optimizer_fraction"]
    if trl_runs:
        out["trl"] = _trl_summary(trl_runs)
        out["ratio_trl_over_ladtrain_grpo"] = _versus(out["trl"], lt)
        out["trl"]["over_ladtrain_kernel_limit"] = out["trl"]["step_wall"]["median"] / lt["kernel_limit"]
    lt["over_kernel_limit"] = lt["grpo_step_wall"]["median"] / lt["kernel_limit"]
    if before:
        b = _ladtrain_summary(before)
        out["before"] = {"setup": before[0].get("setup", {}), **b}
        out["ratio_before_over_now"] = _versus(b, lt, "grpo_step")
        if trl_runs:
            out["ratio_trl_over_before"] = _versus(out["trl"], b)
    if no_lean:
        n = _ladtrain_summary(no_lean)
        out["no_lean"] = {"setup": no_lean[0].get("setup", {}), **n}
        out["ratio_no_lean_over_now"] = _versus(n, lt, "grpo_step")
    return out


def _variant_lines(v: dict, r: dict, title: str, name: str) -> list[str]:
    """Report lines of a ladtrain variant measured in the same run (``--before``, ``--lean-ablation``)."""
    return [
        f"{title}: GRPO step {v['grpo_step_wall']['median']:.3f}s wall, {v['grpo_step_cpu']['median']:.3f}s "
        f"CPU; now {r['wall']:.2f}x faster in wall time, {r['cpu']:.2f}x in CPU time; memory now / {name}: "
        f"step peak {r['memory_peak']:.2f}, update peak {r['memory_update']:.2f}, "
        f"rise {r['memory_rise']:.2f}",
        "    " + _memory_line(name, v["memory"]),
    ]


def _memory_line(name: str, m: dict[str, float]) -> str:
    return (
        f"{name} peak RSS per step: generation {m['generation_mb']:.0f} MB, "
        f"update {m['update_mb']:.0f} MB "
        f"(step start {m['start_mb']:.0f} MB, rise {m['rise_mb']:.0f} MB)"
    )


def token_mismatch_line(result: dict[str, Any]) -> str | None:
    """A line saying that ladtrain and TRL sampled different completions (their mean lengths differ by more
    than 0.5%, as with ``--draws inverse-cdf``), with the step ratio per completion token; None if not."""
    own = result["ladtrain"]["completion_tokens"] / result["batch"]
    trl = result["trl"]["completion_len"]
    if abs(own - trl) <= 0.005 * trl:
        return None
    per_token = result["ratio_trl_over_ladtrain_grpo"]["wall"] * own / trl
    return (f"    NOT like for like in tokens: the two sides sampled different completions (ladtrain's "
            f"draws {result['setup'].get('draws', 'generate')}); per completion token ladtrain is "
            f"{per_token:.2f}x faster (wall)")


def report(result: dict[str, Any]) -> str:
    s, lt = result["setup"], result["ladtrain"]
    lines = [
        f"== model {s['model']} ({result['parameters'] / 1e6:.2f}M parameters): B = {s['prompts']} prompts x "
        f"G = {s['group']} = {result['batch']} sequences, T = {s['max_new_tokens']} new tokens, "
        "temperature "
        f"{s['temperature']}, lr {s['lr']}, clip {s['clip_eps']}, grad clip {s['max_grad_norm']}, 1 "
        "update "
        f"per rollout, {s['threads']} torch thread(s), gradient checkpointing "
        f"{'on' if s['gradient_checkpointing'] else 'off'}, sampler {s['sampler']}, log-probs "
        f"{'chunked' if s['chunked'] else 'full logits'}, transposed weight copies in the sampler "
        + ("off (--no-transposed)" if not s.get("transposed", False) else
           f"where measured faster: on in {sum(lt.get('transposed_copies', []))} of "
           f"{len(lt.get('transposed_copies', []))} workers")
        + f", draws {s.get('draws', 'generate')}, linear products "
        + kernels_line(s, lt)
    ]
    step = lt["grpo_step_wall"]["median"]
    shown_step = lt["lad_step_wall"]["median"] if "lad_step_wall" in lt else step
    lines.append(
        f"ladtrain GRPO step {step:.3f}s wall, {lt['grpo_step_cpu']['median']:.3f}s CPU (median of "
        f"{lt['grpo_step_wall']['n']}), {lt['completion_tokens_per_s']:.0f} "
        f"completion tokens/s ({lt['completion_tokens']:.0f} tokens), process peak RSS "
        f"{lt['peak_rss_mb']:.0f} MB "
        f"({lt['import_rss_mb']:.0f} MB after imports)"
    )
    shown = "LAD" if "lad_step_wall" in lt else "GRPO"
    lines.append(f"  phases of the {shown} step:")
    for p in PHASES:
        v = lt["phases_wall"][p]
        lines.append(f"  {p:<17}{v:8.3f}s {100 * v / shown_step:5.1f}%")
    k = lt["kernel"]
    lines.append(
        "  kernels: "
        + ", ".join(f"{name} {v:.3f}s" for name, v in k.items())
        + f"; {lt['generate_calls']:.0f} generate forward calls"
    )
    lines.append(
        f"  limit (model forward calls of generation + one forward and backward of the update): "
        f"{lt['kernel_limit']:.3f}s; the step takes {lt['over_kernel_limit']:.2f}x that"
    )
    lines.append("  " + _memory_line("ladtrain", lt["memory"]))
    if "ratio_lad_over_grpo" in result:
        r1 = result["ratio_lad_over_grpo"]
        lines.append(
            f"(1) LAD / GRPO step time, median of {r1['cpu']['n']} interleaved pairs on identical "
            f"rollouts: "
            f"{r1['cpu']['median']:.4f} in process CPU time (min {r1['cpu']['min']:.4f}, max "
            f"{r1['cpu']['max']:.4f}); {r1['wall']['median']:.4f} in wall time (min "
            f"{r1['wall']['min']:.4f}, "
            f"max {r1['wall']['max']:.4f}; wall time carries the other jobs' load)"
        )
        lo = result["loss_only_cpu"]
        cpu_step = lt["grpo_step_cpu"]["median"]
        lines.append(
            f"    the loss alone (forward + backward at (B, T)): LAD {1e3 * lo['lad']:.2f} ms, GRPO "
            f"{1e3 * lo['grpo']:.2f} ms CPU; the difference is "
            f"{100 * (lo['lad'] - lo['grpo']) / cpu_step:+.3f}% of a step"
        )
    else:
        lines.append("(1) LAD / GRPO pairs not run at this shape (GRPO steps only)")
    if "trl" in result:
        t, r2 = result["trl"], result["ratio_trl_over_ladtrain_grpo"]
        lines.append(
            f"(2) TRL {t['version']} GRPOTrainer step {t['step_wall']['median']:.3f}s wall, "
            f"{t['step_cpu']['median']:.3f}s CPU (n {t['step_wall']['n']}, min "
            f"{t['step_wall']['min']:.3f}, "
            f"max {t['step_wall']['max']:.3f}; completion length {t['completion_len']:.2f}, ladtrain's "
            f"{lt['completion_tokens'] / result['batch']:.2f}; applied "
            f"{t['applied']}) vs ladtrain GRPO step {step:.3f}s: ladtrain is {r2['wall']:.2f}x "
            "faster "
            f"(range {r2['wall_low']:.2f}-{r2['wall_high']:.2f}; CPU time {r2['cpu']:.2f}x); TRL's "
            "step is "
            f"{t['over_ladtrain_kernel_limit']:.2f}x ladtrain's limit"
        )
        lines.append("    " + _memory_line("TRL", t["memory"]))
        mismatch = token_mismatch_line(result)
        if mismatch is not None:
            lines.append(mismatch)
        lines.append(
            f"    memory ladtrain / TRL: step peak {r2['memory_peak']:.2f}, update peak "
            f"{r2['memory_update']:.2f}, rise above the step's start {r2['memory_rise']:.2f}"
        )
    else:
        lines.append("(2) TRL comparison not run (trl not installed, or --no-trl)")
    for key, ratio, title, name in (
        ("before", "ratio_before_over_now",
         "before issue 24 (generate's sampler, (B, T, V) log-probs, one pass)", "before"),
        ("no_lean", "ratio_no_lean_over_now", "without lean layers (every activation kept)",
         "without lean layers"),
    ):
        if key in result:
            lines.extend(_variant_lines(result[key], result[ratio], title, name))
    if "ratio_trl_over_before" in result:
        rt = result["ratio_trl_over_before"]
        lines.append(
            f"    before vs TRL: ladtrain was {rt['wall']:.2f}x faster (CPU {rt['cpu']:.2f}x), "
            f"memory "
            f"step peak {rt['memory_peak']:.2f}, update peak {rt['memory_update']:.2f} of TRL's"
        )
    o, opt = result["overhead_fraction"], result["optimizer_fraction"]
    lines.append(
        f"(3) share of the step outside model forward/backward and sampling kernels: "
        f"{100 * o['median']:.1f}% (min {100 * o['min']:.1f}%, max {100 * o['max']:.1f}%), of which "
        f"the optimizer {100 * opt['median']:.1f}%"
    )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    import torch
    import transformers

    from ladtrain.transposed_linears import cpu_name

    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl_available(),
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--models", default="tiny,6m", help="comma-separated: tiny, 6m, a --shape, or local HF folders"
    )
    ap.add_argument(
        "--shape",
        choices=sorted(shapes.SHAPES),
        help="one real architecture's shape (random weights) with its own batch: "
        + "; ".join(shapes.describe(n) for n in shapes.SHAPES),
    )
    ap.add_argument(
        "--reps", type=int, help="interleaved LAD/GRPO pairs per round (3), or GRPO steps at a --shape (1)"
    )
    ap.add_argument(
        "--rounds", type=int, help="alternating ladtrain/TRL rounds per configuration (2; 1 at a --shape)"
    )
    ap.add_argument(
        "--trl-steps", type=int, help="timed TRL steps per round after one untimed (2; 1 at a --shape)"
    )
    ap.add_argument("--prompts", type=int)
    ap.add_argument("--group", type=int)
    ap.add_argument("--max-new-tokens", type=int)
    ap.add_argument("--threads", type=int, default=Setup.threads)
    ap.add_argument("--lr", type=float, default=Setup.lr,
                    help="learning rate of both (default 0: the policy, hence the lengths, do not drift)")
    ap.add_argument(
        "--gradient-checkpointing",
        choices=("off", "on", "both"),
        default="both",
        help="run both implementations without, with, or both (default)",
    )
    ap.add_argument(
        "--sampler",
        choices=("compact", "hf"),
        default=Setup.sampler,
        help="ladtrain's sampler: compact (finished rows dropped; default) or hf (generate)",
    )
    ap.add_argument(
        "--no-chunked", action="store_true", help="ladtrain's log-probs from the (B, T, V) logits"
    )
    ap.add_argument("--no-trl", action="store_true", help="skip the TRL comparison")
    ap.add_argument(
        "--no-lean", action="store_true", help="ladtrain without its lean layers (ladtrain.lean_layers)"
    )
    ap.add_argument(
        "--no-pack", action="store_true", help="ladtrain's update without packing (ladtrain.packing)"
    )
    ap.add_argument(
        "--no-transposed",
        action="store_true",
        help="ladtrain's sampler without transposed weight copies (ladtrain.transposed_linears)",
    )
    ap.add_argument(
        "--linear-kernels",
        choices=["auto", "torch", "onednn"],
        default="auto",
        help="ladtrain's linear products (--linear-kernels): auto (oneDNN where measured faster), torch's "
        "default BLAS, or oneDNN (ladtrain.onednn_linears); TRL always runs torch's",
    )
    ap.add_argument(
        "--draws",
        choices=["generate", "inverse-cdf"],
        default="generate",
        help="ladtrain's sampler draws (--sampler-draws): generate's exponentials (the same completions as "
        "TRL) or inverse-cdf (the same distribution, other completions: the step ratio is then not like "
        "for like in tokens)",
    )
    ap.add_argument(
        "--lean-ablation",
        action="store_true",
        help="also run ladtrain without its lean layers, interleaved, without gradient checkpointing",
    )
    ap.add_argument(
        "--no-share-prompts",
        action="store_true",
        help="ablation: run every prompt G times (ladtrain before the shared-prompt change)",
    )
    ap.add_argument(
        "--old-pass",
        action="store_true",
        help="ablation: a separate old-log-prob pass at one update per rollout (before the change)",
    )
    ap.add_argument(
        "--before",
        default="6m,smollm2-135m",
        help="models also measured as before issue 24 (generate's sampler, (B, T, V) log-probs), "
        "without gradient checkpointing; '' for none",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="seconds: tiny model, 4 prompts x 4, 8 tokens, 1 round, workers in this process",
    )
    ap.add_argument(
        "--write",
        action="store_true",
        help=f"write {RESULTS.relative_to(ROOT)}/results.{{json,md}} "
        "(results-SHAPE.* with --shape, "
        "-gc-off / -gc-on appended unless --gradient-checkpointing both)",
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

    big = shapes.SHAPES.get(args.shape) if args.shape else None
    defaults = {
        "reps": 1 if big else 3,
        "rounds": 1 if big else 2,
        "trl_steps": 1 if big else 2,
        "prompts": big.prompts if big else Setup.prompts,
        "group": big.group if big else Setup.group,
        "max_new_tokens": big.max_new_tokens if big else Setup.max_new_tokens,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.shape:
        args.models = args.shape
    if args.quick:
        args.models, args.reps, args.rounds, args.trl_steps = "tiny", 1, 1, 1
        args.prompts, args.group, args.max_new_tokens, args.gradient_checkpointing = 4, 4, 8, "off"
    with_trl = not args.no_trl and trl_available() is not None
    checkpointing = {"off": (False,), "on": (True,), "both": (False, True)}[args.gradient_checkpointing]
    started = time.time()
    info = machine()
    print(
        f"machine: {info['cpu']}, {info['cores']} cores "
        f"(shared; load average {info['load_average_at_start']}), "
        f"python {info['python']}, torch {info['torch']}, transformers {info['transformers']}, trl "
        f"{info['trl']}",
        flush=True,
    )
    results = []
    for name in args.models.split(","):
        base = replace(
            Setup(),
            model=name,
            prompts=args.prompts,
            group=args.group,
            max_new_tokens=args.max_new_tokens,
            threads=args.threads,
            lr=args.lr,
            share_prompts=not args.no_share_prompts,
            old_pass=args.old_pass,
            sampler=args.sampler,
            chunked=not args.no_chunked,
            lean=not args.no_lean,
            pack=not args.no_pack,
            transposed=not args.no_transposed,
            draws=args.draws,
            kernels=args.linear_kernels,
            pairs=name not in shapes.SHAPES,
        )
        setups = [replace(base, gradient_checkpointing=gc) for gc in checkpointing]
        runs: dict[Setup, tuple[list, list]] = {setup: ([], []) for setup in setups}
        before_setup = replace(
            base, sampler="hf", chunked=False, buckets=False, lean=False, pack=False, transposed=False,
            kernels="torch",
        )
        before: list[dict] = []
        no_lean: list[dict] = []
        for r in range(args.rounds):  # interleaved: ladtrain, TRL, (before), per setting, every round
            for setup in setups:
                runs[setup][0].append(run_worker("ladtrain", setup, args.reps, in_process=args.quick))
                if with_trl:
                    runs[setup][1].append(run_worker("trl", setup, args.trl_steps, in_process=args.quick))
                if (
                    r == 0
                    and not setup.gradient_checkpointing
                    and name in args.before.split(",")
                    and before_setup != base
                ):
                    before.append(run_worker("ladtrain", before_setup, args.reps, in_process=args.quick))
                if args.lean_ablation and not setup.gradient_checkpointing and setup.lean:
                    no_lean.append(run_worker("ladtrain", replace(setup, lean=False), args.reps,
                                              in_process=args.quick))
        for setup in setups:
            off = not setup.gradient_checkpointing
            result = summarise(setup, *runs[setup], before if off else None, no_lean if off else None)
            results.append(result)
            print(report(result), flush=True)
    command = "python benchmarks/step_profile.py " + " ".join(  # quoted: `--before ''` stays a value
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]) if a not in ("--write",)
    )
    doc = {
        "machine": info,
        "seconds": time.time() - started,
        "command": command.strip(),
        "revision": revision(),
        "results": results,
        "trl_settings": [list(row) for row in trl_fair.SETTINGS],
        "trl_not_settable": list(trl_fair.NOT_SETTABLE),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2))
    if args.write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stem = (f"results-{args.shape}" if args.shape else "results") + (
            ""
            if args.gradient_checkpointing == "both" or args.quick
            else f"-gc-{args.gradient_checkpointing}"
        )
        (RESULTS / f"{stem}.json").write_text(json.dumps(doc, indent=2))
        (RESULTS / f"{stem}.md").write_text(markdown(doc))
    print(f"total {time.time() - started:.0f}s", flush=True)
    return 0


def revision() -> str:
    """The code's git commit, with ``+changes`` when the working tree differs from it ('unknown' outside
    git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=ROOT, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" +changes" if dirty else "")


def markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = [
        "# ladtrain step benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} CPU cores, shared with other jobs (load average at start "
        f"{', '.join(f'{x:.1f}' for x in m['load_average_at_start'])}); python {m['python']}, torch "
        f"{m['torch']}, transformers {m['transformers']}, trl {m['trl']}.",
        "",
        f"Reproduce: `{doc['command']} --write` ({doc['seconds']:.0f} s here), code revision "
        f"{doc.get('revision', 'unknown')}.",
        "",
        "Memory: peak resident set size per phase of a step, sampled every 2 ms by a thread "
        "(`benchmarks/rss.py`; glibc's mmap threshold fixed at 128 KiB in every worker so that freed "
        'tensors leave the RSS); the process high-water mark is printed beside it. "Rise" is the '
        "step's "
        "peak minus the RSS at its start (model, gradients freed, optimizer state allocated).",
        "",
        "## TRL settings (every option that changes the work per step)",
        "",
        trl_fair.markdown_table(),
        "",
    ]
    for result in doc["results"]:
        lines += ["```", report(result), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
