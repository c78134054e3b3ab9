"""The run configuration: one frozen dataclass; each field's ``help`` metadata is its CLI help text.

Values come from (later wins) the defaults below, a YAML file (``--config run.yaml``, keys are the field
names, unknown keys are an error naming the key and its line), and command-line flags
(``--prompts-per-step 16``). :meth:`TrainConfig.validate` turns user mistakes into :class:`ConfigError`
messages that name the flag.
"""

from __future__ import annotations

import os
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A user mistake in the configuration: shown as one line, exit code 2."""


def _f(default: Any, help: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": help, **meta})


def check_model(model: str) -> None:
    """``--model`` is ``builtin`` or a folder with a Hugging Face ``config.json`` (ConfigError otherwise)."""
    if model != "builtin" and not (Path(model) / "config.json").is_file():
        what = "does not exist" if not Path(model).exists() else "has no config.json"
        raise ConfigError(f"--model: {model} {what} (expected 'builtin' or a Hugging Face model folder)")


@dataclass(frozen=True)
class TrainConfig:
    # --- what to train
    model: str = _f("builtin", "'builtin' (the tiny built-in model, warmed up on the task and cached) or a local "
                               "Hugging Face causal-LM folder (its tokenizer and chat template are used)")
    task: str = _f("countdown", "task spec NAME or NAME:ARG (countdown, reasoning_gym:NAME, jsonl:FILE, humaneval, "
                                "code_jsonl:FILE)")
    reward: tuple | None = _f(None, "training reward component, repeatable: task (the task's verifier), overlong[:N] "
                                    "(DAPO's overlong penalty, buffer N tokens), or a TRL-style function "
                                    "module:function / file.py:function (default: task alone; held-out accuracy is "
                                    "always the verifier's)", multiple=True)
    reward_weights: str | None = _f(None, "weights of the --reward components, e.g. 1,0.1 (default: 1 each)")
    truncation: str = _f("zero", "what a completion cut at --max-new-tokens scores: zero (reason 'truncated', "
                                 "its text is not scored) or score (scored as any other)", choices=("zero", "score"))
    system_prompt: str | None = _f(None, "system message for a chat model: TEXT (\\n = newline), none (an empty "
                                         "system message), or unset (the chat template's default)")
    instruction_file: str | None = _f(None, "a file whose text is the task's answer instruction (the task option "
                                            "instruction_file=; jsonl: and reasoning_gym: tasks)")
    # --- the loss
    loss: str = _f("lad", "loss: lad (= lad:js), lad:<divergence> (kl rkl js hellinger tv jeffreys pearson neyman "
                          "triangular alpha:<a>), grpo, dr_grpo, dapo, gspo, flowrl, ladw:<divergence> (ablation)")
    eta: float = _f(0.25, "LAD temperature eta > 0 (the trust-region multiplier; target ratio exp(A/eta))")
    level: str = _f("token", "LAD ratio level", choices=("token", "sequence", "sequence_mean"))
    clip_eps: float = _f(0.2, "GRPO clip range epsilon")
    clip_eps_high: float | None = _f(None, "GRPO upper clip epsilon (default: = clip-eps; dapo: 0.28)")
    flowrl_beta: float = _f(15.0, "FlowRL reward scale beta in its trajectory balance (the paper's 15)")
    adv_scale: str = _f("group_std", "advantage scale: group std (GRPO), batch std, or none (centring only)",
                        choices=("group_std", "batch_std", "none"))
    # --- RL loop
    steps: int = _f(200, "RL steps (one rollout each); also --max-steps (TRL's name)", aliases=("--max-steps",))
    prompts_per_step: int = _f(16, "prompts per rollout")
    group_size: int = _f(8, "completions sampled per prompt (G >= 2)")
    updates_per_rollout: int = _f(1, "optimizer updates on each rollout (1 = on-policy)")
    lr: float = _f(1e-4, "AdamW learning rate for RL (on the built-in model 5e-4 and 1e-3 collapsed)")
    lr_schedule: str = _f("constant", "learning-rate schedule after the linear warm-up",
                          choices=("constant", "cosine"))
    lr_warmup_steps: int | None = _f(None, "linear learning-rate warm-up, in optimizer updates (default: 5 for "
                                           "the built-in model; with --model PATH 1/40 of the run's updates, at "
                                           "least 1)")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    max_grad_norm: float = _f(1.0, "gradient-norm clip (0 = off)")
    temperature: float = _f(1.0, "sampling temperature for rollouts (log-probs use the same temperature)")
    top_p: float = _f(1.0, "nucleus sampling mass for rollouts and evaluation (1 = off; the loss's log-probs are "
                           "the full tempered policy's, as in TRL)")
    top_k: int = _f(0, "sample among the k most likely tokens, rollouts and evaluation (0 = off; log-probs as "
                       "for --top-p)")
    max_new_tokens: int | None = _f(None, "longest completion, in tokens (default: 16 for the built-in model, 256 "
                                          "with --model PATH)")
    log_samples: str = _f("4", "RL samples per step written to RUN/samples.jsonl (0 = none, all = every one); "
                               "evaluation samples are always written")
    stop_on_no_signal: bool = _f(False, "stop the run (after a checkpoint, exit 1) when the rewards carry no "
                                        "learning signal (ladtrain/dead_run.py), instead of warning once")
    # --- evaluation (held-out split)
    eval_samples: int = _f(16, "samples per held-out prompt (k of pass@k)")
    eval_problems: int = _f(0, "held-out prompts to evaluate (0 = all)")
    eval_temperature: float = _f(1.0, "sampling temperature for evaluation")
    eval_seed: int | None = _f(None, "seed of the evaluation's sampling stream, the same for base and trained "
                                     "(default: --seed + 1; 'eval --seed S' reproduces it)")
    # --- built-in model warm-up (supervised, cached)
    warmup_steps: int = _f(600, "supervised warm-up steps of the built-in model (cached by settings)")
    warmup_batch: int = _f(64, "warm-up batch size")
    warmup_lr: float = _f(3e-3, "warm-up learning rate")
    warmup_share: float = _f(1.0, "share of the training problems whose solutions the warm-up sees; RL prompts "
                                  "come from the rest (1 = warm up and do RL on all of them)")
    warmup_seed: int | None = _f(None, "seed of the warm-up (default: --seed); a study fixes it so that every "
                                       "run starts from one base model")
    # --- scale (ladtrain.distributed): torchrun --nproc-per-node N -m ladtrain train ...
    parallel: str = _f("ddp", "data parallelism when launched by torchrun: ddp (a replica per process) or fsdp2 "
                              "(parameters sharded, fully_shard); one process: ignored",
                       choices=("none", "ddp", "fsdp2"))
    grad_accumulation: int = _f(1, "micro-batches per update (the same update as the whole batch, less memory)")
    gradient_checkpointing: bool = _f(False, "recompute activations in the backward pass (less memory)")
    bf16: bool = _f(False, "bf16 autocast of forward passes on CUDA (ignored on CPU)")
    lora_r: int = _f(0, "LoRA rank through peft (0 = train all weights; needs the lora extra)")
    lora_alpha: float = _f(32.0, "LoRA alpha (adapter scale alpha / r)")
    # --- run
    seed: int = _f(0, "random seed (python, numpy, torch)")
    out: str | None = _f(None, "run folder (default runs/<date>-<time>-<loss>)")
    checkpoint_every: int = _f(10, "save a resumable checkpoint (model, optimizer, scheduler, RNG states, data "
                                   "position) in RUN/checkpoints/ every N RL steps and at the last one (0 = never)")
    keep_checkpoints: int = _f(2, "resumable checkpoints kept while the run goes on (the newest ones)")
    keep_resumable: bool = _f(False, "keep RUN/checkpoints/ once the run has finished (default: removed after "
                                     "checkpoint/ and summary.json are written)")
    optimizer_state: str = _f("full", "optimizer state in resumable checkpoints: full (exact resume), bf16 (half "
                                      "the size; the resumed run is close, not exact) or none (smallest; AdamW "
                                      "restarts from zero moments: not exactly resumable)",
                              choices=("full", "bf16", "none"))
    resume: str | None = _f(None, "continue the run in this folder from its newest complete checkpoint; its "
                                  "config.json fixes every option except --progress, --threads and --device")
    cache_dir: str | None = _f(None, "cache for generated problems and warmed-up base models "
                                     "(default $LADTRAIN_CACHE or ~/.cache/ladtrain)")
    device: str = _f("auto", "torch device: auto, cpu, cuda, cuda:N, mps")
    threads: int = _f(0, "torch CPU threads (0 = half the CPU cores, at least 1: on a busy 2-core machine two "
                         "threads ran 5-30x slower than one)")
    progress: bool = _f(True, "show progress bars")

    def resolved_cache(self) -> Path:
        return Path(self.cache_dir or os.environ.get("LADTRAIN_CACHE") or Path.home() / ".cache" / "ladtrain")

    def resolved(self) -> TrainConfig:
        """This configuration with the defaults that depend on the model filled in: ``max_new_tokens``
        (16 for the built-in model, 256 for a Hugging Face folder) and ``lr_warmup_steps`` (5; with a
        folder 1/40 of the run's optimizer updates, at least 1)."""
        pretrained = self.model != "builtin"
        values: dict[str, Any] = {}
        if self.max_new_tokens is None:
            values["max_new_tokens"] = 256 if pretrained else 16
        if self.lr_warmup_steps is None:
            updates = self.steps * self.updates_per_rollout
            values["lr_warmup_steps"] = max(1, round(updates / 40)) if pretrained else 5
        return replace(self, **values) if values else self

    def validate(self) -> TrainConfig:
        """Check values that need no I/O beyond the model folder; return the configuration with its
        model-dependent defaults filled in (:meth:`resolved`). Raises ConfigError."""
        self = self.resolved()
        ints_at_least = {"steps": 1, "prompts_per_step": 1, "updates_per_rollout": 1, "max_new_tokens": 1,
                         "eval_samples": 1, "eval_problems": 0, "warmup_steps": 0, "warmup_batch": 1,
                         "lr_warmup_steps": 0, "threads": 0, "grad_accumulation": 1, "lora_r": 0,
                         "checkpoint_every": 0, "keep_checkpoints": 1, "top_k": 0}
        for name, low in ints_at_least.items():
            if getattr(self, name) < low:
                raise ConfigError(f"{flag(name)} must be >= {low}, got {getattr(self, name)}")
        if self.group_size < 2:
            raise ConfigError(f"--group-size must be >= 2 (advantages are normalised within a group), "
                              f"got {self.group_size}")
        for name in ("eta", "lr", "temperature", "eval_temperature", "clip_eps", "warmup_lr", "flowrl_beta"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{flag(name)} must be > 0, got {getattr(self, name)}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"--top-p must be in (0, 1], got {self.top_p}")
        from ladtrain.rewards import RewardError, parse_weights
        from ladtrain.samples_log import SamplesLogError, per_step

        try:
            per_step(self.log_samples)
            parse_weights(self.reward_weights, len(self.reward or ()) or 1)
        except (SamplesLogError, RewardError) as err:
            raise ConfigError(str(err)) from None
        if not 0 < self.warmup_share <= 1:
            raise ConfigError(f"--warmup-share must be in (0, 1], got {self.warmup_share}")
        if not self.clip_eps < 1:
            raise ConfigError(f"--clip-eps must be < 1 (the ratio is clipped to [1 - eps, 1 + eps]), got {self.clip_eps}")
        if self.clip_eps_high is not None and not self.clip_eps_high > 0:
            raise ConfigError(f"--clip-eps-high must be > 0, got {self.clip_eps_high}")
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(f"{flag(f.name)} must be one of {', '.join(choices)}, got {getattr(self, f.name)!r}")
        check_model(self.model)
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EvalConfig:
    """``python -m ladtrain eval``: sample k completions per held-out problem and report every metric of
    :mod:`ladtrain.evaluation`."""

    model: str = _f("builtin", "a local Hugging Face causal-LM folder (e.g. a run's checkpoint/), or 'builtin' for "
                               "the cached warmed-up built-in model (warmed up first if not cached)")
    task: str = _f("countdown", "task spec NAME or NAME:ARG (as for train)")
    k: int = _f(16, "samples per problem (pass@k up to k)")
    split: str = _f("test", "which problems", choices=("test", "train"))
    problems: int = _f(0, "number of problems, from the start of the split (0 = all)")
    temperature: float = _f(1.0, "sampling temperature")
    top_p: float = _f(1.0, "nucleus sampling mass (1 = off)")
    top_k: int = _f(0, "sample among the k most likely tokens (0 = off)")
    max_new_tokens: int | None = _f(None, "longest completion, in tokens (default: 16 for the built-in model, 256 "
                                          "for a folder)")
    truncation: str = _f("zero", "what a completion cut at --max-new-tokens scores: zero or score (as for train)",
                         choices=("zero", "score"))
    system_prompt: str | None = _f(None, "system message for a chat model: TEXT, none (empty), or unset (the "
                                         "template's default)")
    instruction_file: str | None = _f(None, "a file whose text is the task's answer instruction (as for train)")
    samples: str | None = _f(None, "also write every sample (prompt as the model saw it, completion, answer, "
                                   "reason) to this JSONL file")
    seed: int = _f(0, "sampling seed (train's base column used --eval-seed, default train's --seed + 1)")
    out: str | None = _f(None, "write the results (config, metrics, per-problem values) to this JSON file")
    cache_dir: str | None = _f(None, "cache of generated problems and base models (default $LADTRAIN_CACHE or "
                                     "~/.cache/ladtrain)")
    device: str = _f("auto", "torch device: auto, cpu, cuda, cuda:N, mps")
    threads: int = _f(0, "torch CPU threads (0 = half the CPU cores, at least 1)")
    progress: bool = _f(True, "show a progress bar")

    def resolved_cache(self) -> Path:
        return Path(self.cache_dir or os.environ.get("LADTRAIN_CACHE") or Path.home() / ".cache" / "ladtrain")

    def validate(self) -> EvalConfig:
        if self.max_new_tokens is None:
            self = replace(self, max_new_tokens=16 if self.model == "builtin" else 256)
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"--top-p must be in (0, 1], got {self.top_p}")
        for name, low in {"k": 1, "problems": 0, "max_new_tokens": 1, "threads": 0, "top_k": 0}.items():
            if getattr(self, name) < low:
                raise ConfigError(f"{flag(name)} must be >= {low}, got {getattr(self, name)}")
        if not self.temperature > 0:
            raise ConfigError(f"--temperature must be > 0, got {self.temperature}")
        if self.split not in ("test", "train"):
            raise ConfigError(f"--split must be test or train, got {self.split!r}")
        check_model(self.model)
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def field_types(cls: type | None = None) -> dict[str, tuple[type, bool]]:
    """``name -> (base type, optional)`` for every field of ``cls`` (default :class:`TrainConfig`;
    ``str | None`` -> ``(str, True)``)."""
    cls = cls or TrainConfig
    hints = typing.get_type_hints(cls)
    out = {}
    for f in fields(cls):
        hint = hints[f.name]
        args = typing.get_args(hint)
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
            out[f.name] = (next(a for a in args if a is not type(None)), True)
        else:
            out[f.name] = (hint, False)
    return out


def convert(name: str, value: Any, cls: type | None = None) -> Any:
    """Coerce a YAML or CLI value to the type of field ``name`` of ``cls`` (default :class:`TrainConfig`);
    ConfigError (naming the field) if impossible."""
    base, optional = field_types(cls)[name]
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null", "")):
        if optional:
            return None
        raise ConfigError(f"{name}: a value is required")
    if base is bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("true", "yes", "1", "on"):
            return True
        if text in ("false", "no", "0", "off"):
            return False
        raise ConfigError(f"{name}: expected true or false, got {value!r}")
    if base is tuple:  # a repeatable option: a list (YAML, config.json, repeated flags) or one string
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if not items or any(isinstance(v, (dict, list, tuple)) or v is None for v in items):
            raise ConfigError(f"{name}: expected a string or a list of strings, got {value!r}")
        return tuple(str(v) for v in items)
    if base is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return str(value)
    try:
        if base is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        if isinstance(value, bool):
            raise ValueError
        return base(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected {'an int' if base is int else 'a number'}, got {value!r}") from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Field values from a YAML mapping; ``file:line:`` errors for unknown keys and bad values."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"--config: cannot read {path}: {err.strerror or err}") from None
    try:
        node = yaml.compose(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {getattr(err, 'problem', err)}") from None
    if node is None:
        return {}
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{path}:{node.start_mark.line + 1}: expected a mapping of option: value")
    known = {f.name for f in fields(TrainConfig)}
    values: dict[str, Any] = {}
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        key = str(key_node.value).replace("-", "_")
        if key not in known:
            raise ConfigError(f"{path}:{line}: unknown key {key_node.value!r}")
        value = yaml.safe_load(yaml.serialize(value_node))
        try:
            values[key] = convert(key, value)
        except ConfigError as err:
            raise ConfigError(f"{path}:{line}: {err}") from None
    return values


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
        raise ConfigError(f"--resume: {flag(changed[0])} cannot change when resuming (the run's config.json fixes "
                          f"it; only {', '.join(flag(n) for n in RESUME_MAY_CHANGE[1:])} may)")
    if not (run / "config.json").is_file():
        raise ConfigError(f"--resume: {run} is not a run folder (no config.json)")
    values = load_yaml(run / "config.json")
    values.update(overrides)
    values["out"] = str(run)
    return replace(TrainConfig(), **values).validate()


def defaults() -> dict[str, Any]:
    return {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}


__all__ = ["RESUME_MAY_CHANGE", "ConfigError", "EvalConfig", "TrainConfig", "build", "convert", "defaults", "field_types", "flag",
           "load_yaml", "resumed"]
