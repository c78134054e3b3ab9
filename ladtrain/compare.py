"""``python -m ladtrain compare``: the command line of a study (:mod:`ladtrain.study`): every ``train`` flag
applies to all runs, plus the study's own flags (:class:`~ladtrain.study.CompareConfig`); the study's
defaults replace a few of ``train``'s (:data:`STUDY_DEFAULTS`). The modules of a study: running it and
aggregating the runs (:mod:`ladtrain.study`), its statistics (:mod:`ladtrain.study_stats`), ``report.md``
(:mod:`ladtrain.study_report`) and the figures (:mod:`ladtrain.plots`).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any, Sequence

from ladtheory import flags, options
from ladtrain.config import ConfigError, TrainConfig, convert, flag, load_yaml
from ladtrain.study import DIVERGENCE_ABLATION, Arm, CompareConfig, arms_of, run_study, seeds_of
from ladtrain.study_report import mechanism_lines, report
from ladtrain.study_stats import mean_std, paired, verdict

# The default study (3 arms x 3 seeds x 150 steps; measured 14.5 minutes of RL and evaluation, plus about 3
# minutes of warm-up when the base is not cached, on this shared 2-core machine; results/compare/): these
# replace the TrainConfig defaults for compare only; YAML and flags override them.
STUDY_DEFAULTS: dict[str, Any] = {
    "steps": 150,
    "prompts_per_step": 16,
    "group_size": 8,
    "eval_problems": 64,
    "eval_samples": 16,
    "warmup_seed": 0,  # one base model for every run of the study
    "warmup_share": 0.5,  # RL prompts are problems whose solutions the warm-up never showed
}


def build_parser() -> argparse.ArgumentParser:
    """``train``'s parser plus a ``study`` group with :class:`CompareConfig`'s flags (destinations
    ``study_*``)."""
    from ladtrain import cli

    parser = cli.build_parser(prog="python -m ladtrain compare")
    parser.description = (
        "Compare losses under one budget: the same base model, the same prompts in the same order, the same "
        "samples per method; several seeds; writes report.md, results.json and plots. Every train flag "
        "below applies to all runs (except --loss and --seed: use --losses and --seeds). Study defaults: "
        + ", ".join(f"{flag(k)} {v}" for k, v in STUDY_DEFAULTS.items())
        + "."
    )
    parser.epilog = None
    flags.add_arguments(parser.add_argument_group("study"), CompareConfig, prefix="study_")
    return parser


def parse(argv: Sequence[str]) -> tuple[CompareConfig, TrainConfig]:
    """The study and the validated per-run base configuration (ConfigError naming the flag otherwise)."""
    ns = vars(build_parser().parse_args(list(argv)))
    refused = (("loss", "compare takes --losses instead"), ("seed", "compare takes --seeds instead"),
               ("resume", "a study resumes its own runs: run the same compare command again"))
    for name, why in refused:
        if name in ns:
            raise ConfigError(options.message(name, why, ns[name]))
    config_file = ns.pop("config", None)
    try:
        study = CompareConfig(**flags.values(ns, CompareConfig, prefix="study_")).validate()
        train_values = flags.values(
            {k: v for k, v in ns.items() if not k.startswith("study_")}, TrainConfig
        )
    except options.OptionError as err:
        raise ConfigError(str(err)) from None
    values = {
        **{k: convert(k, v) for k, v in STUDY_DEFAULTS.items()},
        **(load_yaml(config_file) if config_file else {}),
        **train_values,
    }
    base = replace(TrainConfig(), **values).validate()
    return study, base


def main(argv: Sequence[str]) -> int:
    import shlex

    from ladtrain import preflight

    study, base = parse(argv)
    preflight.train(base)  # the task, the reward, memory: before the study folder is written
    run_study(study, base, command="python -m ladtrain compare " + " ".join(shlex.quote(a) for a in argv))
    return 0


__all__ = [
    "Arm",
    "CompareConfig",
    "DIVERGENCE_ABLATION",
    "STUDY_DEFAULTS",
    "arms_of",
    "build_parser",
    "main",
    "mean_std",
    "mechanism_lines",
    "paired",
    "parse",
    "report",
    "run_study",
    "seeds_of",
    "verdict",
]
