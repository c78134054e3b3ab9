"""``python -m ladtrain [COMMAND] [options]``: subcommands, and flags generated from :class:`TrainConfig`.

With no command (or only flags) the command is ``train``; ``python -m ladtrain`` with no arguments is
the complete default run: warm up the built-in model if no cached one exists, train it with LAD (JS,
eta 0.25) on Countdown, and compare it with the base on held-out prompts.

A command is one entry of :data:`COMMANDS`: ``name -> ("module:function", help)``; the function takes
the remaining argv and returns an exit code. User mistakes print one ``error: ...`` line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from ladtheory import flags, options
from ladtrain.config import ConfigError, EvalConfig, TrainConfig, build

COMMANDS: dict[str, tuple[str, str]] = {
    "train": (
        "ladtrain.cli:train_main",
        "warm up (built-in model), train with RL, evaluate against the base",
    ),
    "eval": (
        "ladtrain.cli:eval_main",
        "pass@k, avg@k, maj@k, diversity of a model on a task's held-out problems",
    ),
    "compare": (
        "ladtrain.compare:main",
        "LAD vs GRPO vs FlowRL (and ablations) under one budget, several seeds",
    ),
}

DESCRIPTION = """\
Train a language model on a verifiable reasoning task with LAD (Learning Advantage Distribution).
With no arguments: the built-in ~0.8M-parameter model is warmed up on Countdown (cached after the first
run), trained with LAD (JS divergence, eta 0.25) and evaluated on held-out prompts against the base;
the run folder gets metrics.jsonl, summary.json, a Hugging Face checkpoint and learning_curves.png.
Each option's help ends with its domain and default in brackets."""


def build_parser(
    prog: str = "python -m ladtrain train", cls: type = TrainConfig, description: str = DESCRIPTION
) -> argparse.ArgumentParser:
    """One flag per field of the config dataclass ``cls`` (:func:`ladtheory.flags.add_arguments`)."""
    commands = "\n".join(f"  {name:<8} {help_}" for name, (_, help_) in COMMANDS.items())
    epilog = f"commands (python -m ladtrain COMMAND --help):\n{commands}" if cls is TrainConfig else None
    parser = flags.Parser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if cls is TrainConfig:
        parser.add_argument(
            "--config",
            metavar="FILE.yaml",
            default=None,
            help="YAML mapping of option: value (field names as below, with _), UTF-8; flags override it",
        )
    flags.add_arguments(parser, cls)
    return parser


def parse_config(argv: Sequence[str]) -> TrainConfig:
    """``train``'s flags (and ``--config``) -> a validated :class:`TrainConfig` (ConfigError otherwise)."""
    ns = vars(build_parser().parse_args(list(argv)))
    config_file = ns.pop("config", None)
    return build(_typed(ns, TrainConfig), config_file)


def parse_eval(argv: Sequence[str]) -> EvalConfig:
    """``eval``'s flags -> a validated :class:`EvalConfig`."""
    parser = build_parser("python -m ladtrain eval", EvalConfig, (EvalConfig.__doc__ or "").strip())
    return EvalConfig(**_typed(vars(parser.parse_args(list(argv))), EvalConfig)).validate()


def _typed(ns: dict, cls: type) -> dict:
    try:
        return flags.values(ns, cls)
    except options.OptionError as err:
        raise ConfigError(str(err)) from None


def train_main(argv: Sequence[str]) -> int:
    from ladtrain import losses, preflight, trainer

    cfg = preflight.train(parse_config(argv))  # every check before the run folder is written
    losses.get(cfg.loss)
    trainer.train(cfg)
    return 0


def eval_main(argv: Sequence[str]) -> int:
    """``python -m ladtrain eval``: n samples per problem of a split and of every ``--eval-task`` set,
    every metric with its 95% interval over problems, optional JSON."""
    import json
    import os

    import torch

    from ladtrain import (
        distributed,
        heldout,
        intervals,
        models,
        passk,
        preflight,
        prompts,
        samples_log,
        trainer,
    )

    cfg = preflight.evaluation(parse_eval(argv))
    torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 2) // 2))
    task = trainer.load_task(cfg)
    problems = list(task.problems(cfg.split))[: cfg.problems or None]
    if not problems:
        raise ConfigError(f"--task {cfg.task}: the {cfg.split} split is empty")
    sets = heldout.eval_sets(cfg, task, problems, limit=cfg.problems)
    if cfg.model == models.BUILTIN:
        d = TrainConfig()
        warm = models.WarmUp(steps=d.warmup_steps, batch=d.warmup_batch, lr=d.warmup_lr, seed=d.seed)
        model, tokenizer, _ = models.base_policy(
            cfg.model,
            cfg.task,
            list(task.problems("train")),
            warm,
            cfg.resolved_cache(),
            progress=cfg.progress,
        )
    else:
        model, tokenizer = models.load(cfg.model)
    model.to(distributed.pick_device(cfg.device)).eval()
    chat = trainer.for_model(cfg, task, tokenizer)  # a chat model gets the task's chat form
    if chat is not task:
        task, problems = chat, list(chat.problems(cfg.split))[: cfg.problems or None]
        sets = heldout.eval_sets(cfg, task, problems, limit=cfg.problems)
    log = None
    if cfg.samples_file:
        try:
            open(cfg.samples_file, "w").close()
        except OSError as err:
            why = err.strerror or err
            raise ConfigError(f"--samples-file: cannot write {cfg.samples_file}: {why}") from None
        log = samples_log.SamplesLog(cfg.samples_file, 0)
    ks, samples = passk.ks_of(cfg)
    evaluator = heldout.Evaluator(sets, ks=ks, samples=samples, temperature=cfg.temperature,
                                  max_new_tokens=cfg.max_new_tokens, seed=cfg.seed, batch=cfg.batch,
                                  progress=cfg.progress, samples_log=log, system=prompts.system_of(cfg),
                                  top_p=cfg.top_p, top_k=cfg.top_k, truncation=cfg.truncation)
    results = evaluator.run(model, tokenizer, 0, "eval")
    for s in sets:
        result = results[s.name]
        split = cfg.split if s.name == heldout.MAIN else "test"
        print(f"{cfg.model} on {s.spec} ({split}, set {s.name}): {len(s.problems)} problems x {samples} "
              f"samples, temperature {cfg.temperature} (95% intervals over problems)")
        for key, ci in result["intervals"].items():
            print(f"  {key:<22} {intervals.fmt(ci, digits=4)}")
        print("  reasons                " + ", ".join(f"{r} {k}" for r, k in result["reasons"].items()))
    if cfg.out:
        main = results[heldout.MAIN]
        extra = {name: r for name, r in results.items() if name != heldout.MAIN}
        try:
            with open(cfg.out, "w") as fh:
                json.dump({"config": cfg.to_dict(), **main, "eval_sets": extra}, fh, indent=2)
        except OSError as err:
            raise ConfigError(f"--out: cannot write {cfg.out}: {err.strerror or err}") from None
    return 0


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean a user mistake (one line, exit 2)."""
    from ladtheory.divergences import DivergenceError
    from ladtrain.atomic import WriteError
    from ladtrain.checkpoint import CheckpointError
    from ladtrain.losses import LossError
    from ladtrain.models import ModelError
    from ladtrain.tasks import TaskError

    return (
        options.OptionError,
        CheckpointError,
        DivergenceError,
        LossError,
        ModelError,
        TaskError,
        WriteError,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        build_parser(prog="python -m ladtrain [train]").print_help()
        return 0
    name, rest = ("train", argv) if not argv or argv[0].startswith("-") else (argv[0], argv[1:])
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module_name, function = COMMANDS[name][0].split(":")
    from ladtrain.faults import TrainingFault

    try:
        return int(getattr(importlib.import_module(module_name), function)(rest) or 0)
    except user_errors() as err:
        print(f"error: {str(err).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    except TrainingFault as err:  # a fault the run could not skip; a checkpoint was saved first
        print(f"error: {str(err).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


__all__ = ["COMMANDS", "build_parser", "eval_main", "main", "parse_config", "parse_eval", "train_main"]
