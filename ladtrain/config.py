"""The run configurations: frozen dataclasses whose fields each declare, once, their help text (the CLI
help) and their domain (:mod:`ladtheory.options`: type, bounds, choices, paths that must exist, ...).

Adding a field: ``name: type = _f(default, "help text", Domain(...))``, e.g.
``top_p: float = _f(1.0, "nucleus sampling mass", Real(gt=0, le=1))``; :meth:`RunOptions.validate`, the
flags, ``--help`` and ``tests/test_options.py`` (values drawn inside and outside every domain) pick it
up with no other change. Fields shared by ``train`` and ``eval`` live once, in :class:`RunOptions`.

Values come from (later wins) the defaults below, a YAML file (``--config run.yaml``, keys are the field
names, unknown keys are an error naming the key and its line), and command-line flags
(``--prompts-per-step 16``). Every mistake is a :class:`ConfigError`: one line naming the flag (or
``file:line``), ``--flag: what is wrong (got VALUE)``.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from ladtheory import options
from ladtheory.options import (
    CPU_CORES,
    Choice,
    Domain,
    Flag,
    Int,
    Invalid,
    Listed,
    OptionError,
    Real,
    Repeated,
    Several,
    Text,
)
from ladtheory.options import Path as PathDomain


class ConfigError(OptionError):
    """A user mistake in the configuration: shown as one line, exit code 2."""


def _f(default: Any, help: str, domain: Domain, **meta: Any) -> Any:
    return options.option(default, help, domain, **meta)


SEED = Int(ge=0, le=2**32 - 1, why="numpy's seed range")
TEMPERATURE = Real(ge=1e-2, le=1e2, why="below, logits / T overflow; above, sampling is nearly uniform")


def check_task(spec: str) -> None:
    """A task spec's grammar and name (cheap: building the task, which may read files, is the preflight's)."""
    from ladtrain.tasks import TASKS, TaskError, parse_spec

    name = parse_spec(spec)[0]
    if name not in TASKS:
        raise TaskError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}")


def check_reward(spec: str) -> None:
    """``task``, ``overlong[:N]``, ``module:function`` or ``path/to/file.py:function`` (the import itself is
    in the preflight)."""
    if spec == "task" or spec == "overlong" or spec.startswith("overlong:"):
        if spec.startswith("overlong:") and not (spec[9:].isdigit() and int(spec[9:]) >= 1):
            raise ValueError("overlong:N needs a buffer of N >= 1 tokens")
        return
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name.isidentifier():
        raise ValueError("expected module:function or path/to/file.py:function")
    if target.endswith(".py") and not Path(target).is_file():
        raise ValueError(f"no such file {target}")


def check_eval_task(text: str) -> None:
    """``NAME=SPEC`` or ``SPEC`` (:func:`ladtrain.tasks.named_spec`); the spec is checked as ``--task``'s
    is."""
    from ladtrain.tasks import named_spec

    check_task(named_spec(text, reserved=(HELD_OUT,))[1])


HELD_OUT = "held_out"  # the name of the task's own held-out split among the evaluation sets


def check_evaluation(cfg) -> None:
    """The evaluation options together: ``--k`` with ``--k-max`` (:func:`ladtrain.passk.ks_of`), and two
    evaluation sets of one name, are ConfigErrors naming the flag."""
    from ladtrain.passk import EvaluationError, ks_of
    from ladtrain.tasks import named_spec

    try:
        ks_of(cfg)
    except EvaluationError as err:
        raise ConfigError(str(err)) from None
    names = [HELD_OUT]
    for text in cfg.eval_task:
        try:
            name = named_spec(text, reserved=(HELD_OUT,))[0]
        except ValueError as err:
            raise ConfigError(f"--eval-task: {err} (got {options.shown(text)})") from None
        if name in names:
            raise ConfigError(
                f"--eval-task: two evaluation sets are named {name!r}; name them with NAME=SPEC"
            )
        names.append(name)


def check_loss(spec: str) -> None:
    from ladtrain import losses

    losses.get(spec)


@dataclass(frozen=True)
class Device(Domain):
    """A torch device this machine has: ``auto`` (CUDA if present, else CPU), ``cpu``, ``cuda``,
    ``cuda:N`` (N below the CUDA device count), ``mps`` (where available)."""

    metavar = "DEVICE"

    def coerce(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise Invalid("expected auto, cpu, cuda, cuda:N or mps")
        return value

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, str):
            return "expected auto, cpu, cuda, cuda:N or mps"
        kind, _, index = value.partition(":")
        if value in ("auto", "cpu"):
            return None
        if kind == "mps" and not index:
            import torch

            return None if torch.backends.mps.is_available() else "this machine has no MPS device"
        if kind != "cuda" or (index and not index.isdigit()):
            return "expected auto, cpu, cuda, cuda:N or mps"
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            return "this machine has no CUDA device (use cpu or auto)"
        if index and int(index) >= count:
            return f"this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
        return None

    def describe(self) -> str:
        return "auto, cpu, cuda, cuda:N or mps, one this machine has"


@dataclass(frozen=True)
class RunOptions:
    """Fields that ``train`` and ``eval`` share (one definition), and what they do with them."""

    model: str = _f(
        "builtin",
        "'builtin' (the tiny built-in model, warmed up on the task and cached) or a local "
        "Hugging Face causal-LM folder, e.g. a run's checkpoint/ (its tokenizer and chat "
        "template are used)",
        PathDomain(
            exists=True,
            folder=True,
            holding="config.json",
            what="a Hugging Face model folder",
            keywords=("builtin",),
        ),
    )
    task: str = _f(
        "countdown",
        "task spec NAME or NAME:ARG (countdown, reasoning_gym:NAME, jsonl:FILE, humaneval, code_jsonl:FILE)",
        Text(lookup="ladtrain.config:check_task", hint="a task spec"),
    )
    max_new_tokens: int | None = _f(
        None,
        "longest completion, in tokens (default: 16 for the built-in model, 256 with --model PATH)",
        Int(ge=1),
    )
    top_p: float = _f(
        1.0,
        "nucleus sampling mass for rollouts and evaluation (1 = off; the loss's log-probs are the full "
        "tempered policy's, as in TRL)",
        Real(gt=0, le=1),
    )
    top_k: int = _f(0, "sample among the k most likely tokens (0 = off; log-probs as for --top-p)", Int(ge=0))
    truncation: str = _f(
        "zero",
        "what a completion cut at --max-new-tokens scores: zero (reason 'truncated', its text is not "
        "scored) or score (scored as any other)",
        Choice("zero", "score"),
    )
    system_prompt: str = _f(
        "default",
        "system message for a chat model: TEXT (\\n = newline), none (an empty system message), or "
        "default (the chat template's own)",
        Text(hint="a system prompt, none or default"),
    )
    instruction_file: str | None = _f(
        None,
        "a file whose text is the task's answer instruction (the instruction_file= option of jsonl: and "
        "reasoning_gym: tasks)",
        PathDomain(exists=True, file=True, what="a file"),
    )
    seed: int = _f(0, "random seed (train: python, numpy, torch; eval: the sampling stream)", SEED)
    cache_dir: str | None = _f(
        None,
        "cache for generated problems and warmed-up base models "
        "(default $LADTRAIN_CACHE or ~/.cache/ladtrain)",
        PathDomain(folder=True),
    )
    device: str = _f("auto", "torch device: auto, cpu, cuda, cuda:N, mps", Device())
    threads: int = _f(
        0,
        "torch CPU threads (0 = half the CPU cores, at least 1: on a busy 2-core machine two "
        "threads ran 5-30x slower than one)",
        Int(ge=0, le=CPU_CORES),
    )
    progress: bool = _f(True, "show progress bars", Flag())

    def resolved_cache(self) -> Path:
        return Path(self.cache_dir or os.environ.get("LADTRAIN_CACHE") or Path.home() / ".cache" / "ladtrain")

    def resolved(self):
        """This configuration with the defaults that depend on the model filled in: ``max_new_tokens``
        (16 for the built-in model, 256 for a Hugging Face folder; :meth:`TrainConfig.resolved` adds the
        learning-rate warm-up)."""
        if self.max_new_tokens is None:
            return replace(self, max_new_tokens=256 if self.model != "builtin" else 16)
        return self

    def validate(self):
        """Check every field against its declared domain (no I/O beyond the model folder), then the
        evaluation options together (:func:`check_evaluation`); return the configuration with its
        model-dependent defaults filled in (:meth:`resolved`). Raises ConfigError."""
        cfg = self.resolved()
        options.validate(cfg, error=ConfigError)
        check_evaluation(cfg)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """Every field, as ``config.json`` holds it (a repeatable option's tuple as a list)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class TrainConfig(RunOptions):
    """``python -m ladtrain train``: one RL run (warm-up of the built-in model, RL, held-out evaluation)."""

    # --- the reward (the task's verifier always defines held-out correctness)
    reward: tuple = _f(
        (),
        "training reward component, repeatable (--reward a.py:f --reward task): task (the task's verifier), "
        "overlong[:N] (DAPO's overlong penalty, a buffer of N tokens), or a TRL-style function "
        "module:function / file.py:function; none given: task alone",
        Several(Text(lookup="ladtrain.config:check_reward", hint="task, overlong[:N] or module:function")),
        repeat=True,
    )
    reward_weights: str | None = _f(
        None,
        "weights of the --reward components in order, e.g. 1,0.1 (default: 1 each)",
        Text(lookup="ladtrain.config:check_weights", hint="comma-separated numbers"),
    )
    # --- the loss
    loss: str = _f(
        "lad",
        "loss: lad (= lad:js), lad:<divergence> (kl rkl js hellinger tv jeffreys pearson neyman "
        "triangular alpha:<a>), grpo, grpo_tokenmean (control), dr_grpo, dapo, gspo, flowrl, "
        "ladw:<divergence> (ablation)",
        Text(lookup="ladtrain.config:check_loss", hint="a loss spec"),
    )
    eta: float = _f(
        0.25, "LAD temperature eta > 0 (the trust-region multiplier; target ratio exp(A/eta))", Real(gt=0)
    )
    level: str = _f("token", "LAD ratio level", Choice("token", "sequence", "sequence_mean"))
    clip_eps: float = _f(
        0.2, "GRPO clip range epsilon", Real(gt=0, lt=1, why="the ratio is clipped to [1 - eps, 1 + eps]")
    )
    clip_eps_high: float | None = _f(
        None, "GRPO upper clip epsilon (default: = clip-eps; dapo: 0.28)", Real(gt=0)
    )
    flowrl_beta: float = _f(
        15.0, "FlowRL reward scale beta in its trajectory balance (the paper's 15)", Real(gt=0)
    )
    adv_scale: str = _f(
        "group_std",
        "advantage scale: group std (GRPO), batch std, or none (centring only)",
        Choice("group_std", "batch_std", "none"),
    )
    # --- RL loop
    steps: int = _f(
        200, "RL steps (one rollout each); also --max-steps (TRL's name)", Int(ge=1), aliases=("--max-steps",)
    )
    prompts_per_step: int = _f(16, "prompts per rollout", Int(ge=1))
    group_size: int = _f(
        8,
        "completions sampled per prompt (G >= 2)",
        Int(ge=2, why="advantages are normalised within a group"),
    )
    updates_per_rollout: int = _f(1, "optimizer updates on each rollout (1 = on-policy)", Int(ge=1))
    mini_batches: int = _f(
        1,
        "minibatches per rollout, split by groups: one optimizer step each, repeated for "
        "--updates-per-rollout epochs (1 = the whole rollout per step)",
        Int(ge=1),
    )
    lr: float = _f(
        1e-4, "AdamW learning rate for RL (on the built-in model 5e-4 and 1e-3 collapsed)", Real(gt=0)
    )
    lr_schedule: str = _f(
        "constant", "learning-rate schedule after the linear warm-up", Choice("constant", "cosine")
    )
    lr_warmup_steps: int | None = _f(
        None,
        "linear learning-rate warm-up, in optimizer updates (default: 5 for the built-in model; with --model "
        "PATH 1/40 of the run's updates, at least 1)",
        Int(ge=0),
    )
    weight_decay: float = _f(0.0, "AdamW weight decay", Real(ge=0))
    max_grad_norm: float = _f(
        1.0, "gradient-norm clip (0 = off)", Real(ge=0, why="a negative norm would flip the gradient's sign")
    )
    temperature: float = _f(
        1.0, "sampling temperature for rollouts (log-probs use the same temperature)", TEMPERATURE
    )
    sampler_draws: str = _f(
        "generate",
        "how the rollout sampler draws each token from the policy: generate (the exponentials "
        "torch.multinomial draws, so the same tokens as transformers' generate for the same seed) or "
        "inverse-cdf (one uniform per sequence and token: the same distribution, other tokens, cheaper at a "
        "large vocabulary); not with --top-p or --top-k",
        Choice("generate", "inverse-cdf"),
    )
    linear_kernels: str = _f(
        "auto",
        "the library of the float32 CPU linear layers' products: torch (its default BLAS), onednn "
        "(oneDNN, the same products in another summation order: ladtrain.onednn_linears) or auto (oneDNN "
        "where this machine measures it faster at the model's shapes; decided once per run, kept in "
        "run.json)",
        Choice("auto", "torch", "onednn"),
    )
    # --- evaluation (held-out split)
    eval_samples: int = _f(16, "samples per held-out prompt (k of pass@k)", Int(ge=1))
    eval_problems: int = _f(0, "held-out prompts to evaluate (0 = all)", Int(ge=0))
    eval_split: str = _f(
        "test",
        "the task's split the held-out evaluation uses: test, or validation (for choosing settings without "
        "seeing test; the task needs one, e.g. countdown,validation_fraction=0.1)",
        Choice("test", "validation"),
    )
    eval_temperature: float = _f(1.0, "sampling temperature for evaluation", TEMPERATURE)
    eval_seed: int | None = _f(
        None,
        "seed of the held-out evaluation's sampling stream, the same for base and trained (default: --seed "
        "+ 1; 'python -m ladtrain eval --seed S' samples that stream)",
        SEED,
    )
    log_samples: str = _f(
        "4",
        "RL samples per step written to RUN/samples.jsonl (0 = none, all = every one); evaluation samples "
        "are always written",
        Text(lookup="ladtrain.config:check_log_samples", hint="a count or all"),
    )
    stop_on_no_signal: bool = _f(
        False,
        "stop the run (after a checkpoint, exit 1) when the rewards carry no learning signal "
        "(ladtrain/dead_run.py) instead of warning once",
        Flag(),
    )
    eval_every: int = _f(
        0,
        "evaluate every held-out set every N RL steps, besides step 0 (the base) and the end (0 = only "
        "those); rows go to RUN/eval.jsonl",
        Int(ge=0),
    )
    eval_task: tuple = _f(
        (),
        "an extra evaluation set, NAME=SPEC or SPEC (a task spec; its test split), evaluated with the "
        "task's own held-out split at the base, every --eval-every steps and at the end; repeat the flag "
        "for several (default: none)",
        Repeated(Text(lookup="ladtrain.config:check_eval_task", hint="NAME=SPEC or SPEC")),
    )
    eval_k: str | None = _f(
        None,
        "k values of pass@k: a comma list (1,2,4,...,1024) or one K (every power of two up to K, and K); "
        "samples per problem = max(--eval-samples, largest k) (default: powers of two up to --eval-samples)",
        Listed(Int(ge=1)),
        aliases=("--k",),
    )
    eval_k_max: int = _f(
        0, "the same as --k K: every power of two up to K (0 = use --k or --eval-samples)", Int(ge=0),
        aliases=("--k-max",),
    )
    eval_batch: int = _f(
        512, "most sequences per generate call in evaluation (bounds its memory; also fixes the sampling "
             "stream)", Int(ge=1),
    )
    report_to: str = _f(
        "none",
        "experiment tracking, as TRL's report_to: none, tensorboard (RUN/tensorboard/), wandb (offline "
        "only, RUN/wandb/), or both",
        Choice("none", "tensorboard", "wandb", "tensorboard,wandb"),
    )
    # --- built-in model warm-up (supervised, cached)
    warmup_steps: int = _f(
        600, "supervised warm-up steps of the built-in model (cached by settings)", Int(ge=0)
    )
    warmup_batch: int = _f(64, "warm-up batch size", Int(ge=1))
    warmup_lr: float = _f(3e-3, "warm-up learning rate", Real(gt=0))
    warmup_share: float = _f(
        1.0,
        "share of the training problems whose solutions the warm-up sees; RL prompts "
        "come from the rest (1 = warm up and do RL on all of them)",
        Real(gt=0, le=1),
    )
    warmup_seed: int | None = _f(
        None,
        "seed of the warm-up (default: --seed); a study fixes it so that every "
        "run starts from one base model",
        SEED,
    )
    # --- scale (ladtrain.distributed): torchrun --nproc-per-node N -m ladtrain train ...
    parallel: str = _f(
        "ddp",
        "data parallelism when launched by torchrun: ddp (a replica per process) or fsdp2 "
        "(parameters sharded, fully_shard); one process: ignored",
        Choice("none", "ddp", "fsdp2"),
    )
    grad_accumulation: int = _f(
        1, "micro-batches per update (the same update as the whole batch, less memory)", Int(ge=1)
    )
    gradient_checkpointing: bool = _f(
        False, "recompute activations in the backward pass (less memory)", Flag()
    )
    bf16: bool = _f(False, "bf16 autocast of forward passes on CUDA (ignored on CPU)", Flag())
    lora_r: int = _f(0, "LoRA rank through peft (0 = train all weights; needs the lora extra)", Int(ge=0))
    lora_alpha: float = _f(32.0, "LoRA alpha (adapter scale alpha / r)", Real(gt=0))
    # --- run
    out: str | None = _f(None, "run folder (default runs/<date>-<time>-<loss>)", PathDomain(folder=True))
    checkpoint_every: int = _f(
        10,
        "save a resumable checkpoint (model, optimizer, scheduler, RNG states, data "
        "position) in RUN/checkpoints/ every N RL steps and at the last one (0 = never)",
        Int(ge=0),
    )
    keep_checkpoints: int = _f(
        2, "resumable checkpoints kept while the run goes on (the newest ones)", Int(ge=1)
    )
    keep_resumable: bool = _f(
        False,
        "keep RUN/checkpoints/ once the run has finished (default: removed after checkpoint/ and "
        "summary.json are written)",
        Flag(),
    )
    optimizer_state: str = _f(
        "full",
        "optimizer state in resumable checkpoints: full (exact resume), bf16 (about half the size; the "
        "resumed run is close, not exact) or none (smallest; AdamW restarts from zero moments: not "
        "exactly resumable)",
        Choice("full", "bf16", "none"),
    )
    resume: str | None = _f(
        None,
        "continue the run in this folder from its newest complete checkpoint; its "
        "config.json fixes every option except --progress, --threads and --device",
        PathDomain(exists=True, folder=True, holding="config.json", what="a run folder"),
    )

    def validate(self):
        """:meth:`RunOptions.validate`, and ``--sampler-draws inverse-cdf`` only with the full policy (the
        truncated samplers of ``--top-p`` and ``--top-k`` are generate's)."""
        cfg = super().validate()
        if cfg.linear_kernels == "onednn" and not _onednn_available():
            raise ConfigError("--linear-kernels: onednn needs oneDNN's linear product, which this torch "
                              "build lacks (torch.ops.mkldnn._linear_pointwise); use auto or torch")
        if cfg.sampler_draws != "generate" and (cfg.top_p < 1 or cfg.top_k):
            flag = "--top-p" if cfg.top_p < 1 else "--top-k"
            raise ConfigError(f"--sampler-draws: {cfg.sampler_draws} draws from the full policy; {flag} "
                              "samples through generate, whose draws are 'generate' "
                              f"(got {cfg.sampler_draws!r})")
        return cfg

    def resolved(self) -> TrainConfig:
        """:meth:`RunOptions.resolved`, and ``lr_warmup_steps``: 5 for the built-in model, 1/40 of the run's
        optimizer updates (at least 1) for a Hugging Face folder."""
        cfg = super().resolved()
        if cfg.lr_warmup_steps is None:
            updates = cfg.steps * cfg.updates_per_rollout
            cfg = replace(cfg, lr_warmup_steps=max(1, round(updates / 40)) if cfg.model != "builtin" else 5)
        return cfg


def check_weights(text: str) -> None:
    from ladtrain.rewards import RewardError, parse_weights

    try:
        parse_weights(text, len(text.split(",")))
    except RewardError as err:
        raise ValueError(str(err).split(": ", 1)[-1]) from None


def check_log_samples(text: str) -> None:
    from ladtrain.samples_log import SamplesLogError, per_step

    try:
        per_step(text)
    except SamplesLogError:
        raise ValueError("expected a count >= 0 or all") from None


@dataclass(frozen=True)
class EvalConfig(RunOptions):
    """``python -m ladtrain eval``: sample k completions per held-out problem and report every metric of
    :mod:`ladtrain.evaluation`."""

    k: str | None = _f(
        None,
        "k values of pass@k: one K (every power of two up to K, and K) or a comma list "
        "(1,2,4,...,1024); samples per problem = max(--samples, largest k) (default 16)",
        Listed(Int(ge=1)),
    )
    k_max: int = _f(0, "the same as --k K (0 = use --k)", Int(ge=0))
    samples: int = _f(0, "samples per problem (0 = the largest k)", Int(ge=0))
    eval_task: tuple = _f(
        (),
        "another evaluation set, NAME=SPEC or SPEC (its test split), evaluated after --task's split; "
        "repeat the flag for several (default: none)",
        Repeated(Text(lookup="ladtrain.config:check_eval_task", hint="NAME=SPEC or SPEC")),
    )
    batch: int = _f(
        512, "most sequences per generate call (bounds memory; fixes the sampling stream)", Int(ge=1)
    )
    split: str = _f("test", "which problems", Choice("test", "validation", "train"))
    problems: int = _f(0, "number of problems, from the start of the split (0 = all)", Int(ge=0))
    temperature: float = _f(1.0, "sampling temperature", TEMPERATURE)
    out: str | None = _f(
        None,
        "write the results (config, metrics, per-problem values) to this JSON file",
        PathDomain(file=True),
    )
    samples_file: str | None = _f(
        None,
        "also write every sample (the prompt as the model saw it, completion, answer, reason) to this "
        "JSONL file",
        PathDomain(),
    )


flag = options.flag


def field_types(cls: type | None = None) -> dict[str, tuple[type, bool]]:
    """``name -> (Python type, None allowed)`` for every field of ``cls`` (default :class:`TrainConfig`),
    from the declared domains."""
    kinds = {options.Real: float, options.Int: int, options.Flag: bool}
    return {
        f.name: (
            next((t for k, t in kinds.items() if isinstance(f.metadata["domain"], k)), str),
            f.metadata["nullable"],
        )
        for f in options.declared(cls or TrainConfig)
    }


def convert(name: str, value: Any, cls: type | None = None, *, flags: bool = True) -> Any:
    """Coerce a YAML or CLI value to field ``name`` of ``cls`` (default :class:`TrainConfig`) and check it
    against its domain; ConfigError naming the field (``--name: ...``, or ``name: ...`` with
    ``flags=False``)."""
    return options.convert(cls or TrainConfig, name, value, error=ConfigError, flags=flags)


def read_text(path: str | Path, what: str = "--config") -> str:
    """A config file's text: ConfigError unless it is readable UTF-8 text."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{what}: cannot read {path}: {err.strerror or err}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{what}: {path} is not UTF-8 text (byte {data[err.start]:#04x} at offset {err.start})"
        ) from None
    if "\x00" in text:
        raise ConfigError(f"{what}: {path} is not text (it holds a NUL byte at offset {text.index(chr(0))})")
    return text


def load_yaml(path: str | Path, cls: type | None = None) -> dict[str, Any]:
    """Field values of ``cls`` (default :class:`TrainConfig`) from a YAML mapping in a UTF-8 file;
    ``file:line:`` errors for unknown or repeated keys and bad values."""
    import yaml

    cls = cls or TrainConfig
    path = Path(path)
    text = read_text(path)
    try:
        node = yaml.compose(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        why = getattr(err, "problem", None) or getattr(err, "reason", None) or type(err).__name__
        raise ConfigError(f"{where}: not valid YAML: {options.shown(str(why))[1:-1]}") from None
    if node is None:
        return {}
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{path}:{node.start_mark.line + 1}: expected a mapping of option: value")
    known = {f.name for f in fields(cls)}
    values: dict[str, Any] = {}
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        key = str(key_node.value).replace("-", "_")
        if key not in known:
            raise ConfigError(f"{path}:{line}: unknown key {options.shown(str(key_node.value))}")
        if key in values:
            raise ConfigError(f"{path}:{line}: {key} is given twice")
        try:
            value = yaml.safe_load(yaml.serialize(value_node))
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}:{line}: {key}: not a plain value ({type(err).__name__})") from None
        try:
            values[key] = convert(key, value, cls, flags=False)
        except ConfigError as err:
            raise ConfigError(f"{path}:{line}: {err}") from None
    return values


def _onednn_available() -> bool:
    from ladtrain import onednn_linears

    return onednn_linears.available()


RESUME_MAY_CHANGE = ("resume", "progress", "threads", "device")


def build(overrides: dict[str, Any], config_file: str | None = None) -> TrainConfig:
    """Defaults, then the YAML file, then ``overrides`` (already converted), validated. With ``resume``:
    the run folder's ``config.json``, then the few overrides that may change (:data:`RESUME_MAY_CHANGE`)."""
    if overrides.get("resume"):
        return resumed(overrides, config_file)
    values = load_yaml(config_file) if config_file else {}
    values.update(overrides)
    return replace(TrainConfig(), **values).validate()


def resumed(overrides: dict[str, Any], config_file: str | None = None) -> TrainConfig:
    """The configuration of the run in ``overrides["resume"]`` (its ``config.json``; an unknown key is a
    ``config.json:LINE:`` error), with ``out`` set to that folder."""
    run = Path(overrides["resume"])
    if config_file:
        raise ConfigError("--resume: cannot be combined with --config (the run's config.json is used)")
    changed = sorted(set(overrides) - set(RESUME_MAY_CHANGE))
    if changed:
        raise ConfigError(
            f"--resume: {flag(changed[0])} cannot change when resuming (the run's config.json fixes "
            f"it; only {', '.join(flag(n) for n in RESUME_MAY_CHANGE[1:])} may)"
        )
    if not (run / "config.json").is_file():
        raise ConfigError(f"--resume: {options.shown(str(run))} is not a run folder (no config.json)")
    values = load_yaml(run / "config.json")
    values.update(overrides)
    values["out"] = str(run)
    return replace(TrainConfig(), **values).validate()


def defaults(cls: type | None = None) -> dict[str, Any]:
    return {f.name: f.default for f in fields(cls or TrainConfig) if f.default is not MISSING}


__all__ = [
    "RESUME_MAY_CHANGE",
    "ConfigError",
    "Device",
    "EvalConfig",
    "RunOptions",
    "TrainConfig",
    "build",
    "convert",
    "defaults",
    "field_types",
    "flag",
    "load_yaml",
    "read_text",
    "resumed",
]
