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
from dataclasses import fields
from typing import Sequence

from ladtrain.config import ConfigError, TrainConfig, build, convert, field_types, flag

COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("ladtrain.cli:train_main", "warm up (built-in model), train with RL, evaluate against the base"),
}

DESCRIPTION = """\
Train a language model on a verifiable reasoning task with LAD (Learning Advantage Distribution).
With no arguments: the built-in ~0.8M-parameter model is warmed up on Countdown (cached after the first
run), trained with LAD (JS divergence, eta 0.25) and evaluated on held-out prompts against the base;
the run folder gets metrics.jsonl, summary.json, a Hugging Face checkpoint and learning_curves.png."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting: errors stay one line."""

    def error(self, message: str):  # type: ignore[override]
        raise ConfigError(message)


def _converter(name: str):
    def conv(text: str):
        try:
            return convert(name, text)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err).split(": ", 1)[-1]) from None

    conv.__name__ = name
    return conv


def build_parser(prog: str = "python -m ladtrain train") -> argparse.ArgumentParser:
    """One flag per :class:`TrainConfig` field; its help is the field's ``help`` metadata."""
    commands = "\n".join(f"  {name:<8} {help_}" for name, (_, help_) in COMMANDS.items())
    parser = _Parser(prog=prog, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
                     epilog=f"commands (python -m ladtrain COMMAND --help):\n{commands}")
    parser.add_argument("--config", metavar="FILE.yaml", default=None,
                        help="YAML mapping of option: value (field names as below, with _); flags override it")
    types = field_types()
    for f in fields(TrainConfig):
        base, _ = types[f.name]
        help_ = f"{f.metadata['help']} (default: {f.default})"
        kw: dict = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_}
        if base is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = _converter(f.name)
            kw["metavar"] = "|".join(f.metadata["choices"]) if "choices" in f.metadata else base.__name__.upper()
        parser.add_argument(flag(f.name), **kw)
    return parser


def parse_config(argv: Sequence[str]) -> TrainConfig:
    ns = vars(build_parser().parse_args(list(argv)))
    config_file = ns.pop("config", None)
    return build(ns, config_file)


def train_main(argv: Sequence[str]) -> int:
    from ladtrain import losses, trainer

    cfg = parse_config(argv)
    losses.get(cfg.loss)  # an unknown loss or divergence fails before any work
    trainer.train(cfg)
    return 0


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean a user mistake (one line, exit 2)."""
    from ladtheory.divergences import DivergenceError
    from ladtrain.checkpoint import CheckpointError
    from ladtrain.losses import LossError
    from ladtrain.models import ModelError
    from ladtrain.tasks import TaskError

    return (ConfigError, CheckpointError, DivergenceError, LossError, ModelError, TaskError)


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


__all__ = ["COMMANDS", "build_parser", "main", "parse_config", "train_main"]
