"""The decisive study, "does LAD keep what GRPO loses?", as one resumable command:

    python -m ladtrain.protocol                       # every part, then the report
    python -m ladtrain.protocol --part countdown-main # one part (run two parts at once on two cores)
    python -m ladtrain.protocol --report              # the report from the parts on disk only

Each part is a ``python -m ladtrain compare`` study in ``--out``/PART (default
``results/compare/decisive/PART``); a finished run (its ``config.json`` and ``summary.json``) is reused,
a killed one continues from its checkpoint, so the command continues from whatever is on disk, including
the runs committed to the repository. Everything below was fixed before any test number existed; nothing
is chosen after seeing one (settings are chosen on the validation split, :mod:`ladtrain.study_arms`).

Parts (:data:`PARTS`):

* ``countdown-main``: Countdown (4 numbers from 1..6, 20% test = 253 problems, 10% validation),
  arms :data:`MAIN_ARMS` (GRPO and LAD(js) at one minibatch per rollout, both at 4 minibatches where
  pi moves away from pi_old within a rollout so LAD's brake and GRPO's clip act, FlowRL), each arm's
  learning rate chosen from :data:`GRID` on validation (1 tuning seed, 64 samples, ``pass_auc``),
  then 5 seeds x all test problems x 256 samples.
* ``puzzle24-main``: the same on reasoning-gym's puzzle24 (:mod:`ladtrain.tasks.puzzle24`), 64 samples.
* ``countdown-ablation``: LAD(tv), LAD(kl) (strict vs weak divergences), LAD(js) at eta 0.1, 1 and 4;
  3 seeds x 64 samples, at the learning rate ``countdown-main`` chose for LAD(js) on validation.
* ``countdown-controls``: ``grpo_tokenmean`` (GRPO's objective with LAD's global token mean: isolates the
  objective from the aggregation), FlowRL at 4 minibatches (its own regime updates several times per
  rollout), DAPO and GSPO at 4 minibatches (only there do their clips act); 3 seeds x 64 samples, at the
  learning rates ``countdown-main`` chose (FlowRL's for FlowRL, GRPO's for the others).

The last two run after ``countdown-main``'s tuning (they read its choices).

Shared settings (:data:`COMMON`): 150 RL steps x 16 prompts x 8 samples, the built-in model warmed up once
per task on half of the training problems (RL prompts are the other half), every problem of the evaluated
split (validation in tuning, test after), one torch thread per process.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

COUNTDOWN = "countdown,test_fraction=0.2,validation_fraction=0.1"
PUZZLE24 = "puzzle24,validation_fraction=0.12"  # 118 validation, 214 test problems
MAIN_ARMS = "grpo;lad:js;lad:js,mini_batches=4;grpo,mini_batches=4;flowrl"
GRID = "lr=5e-5,1e-4,2e-4"
COMMON = ["--steps", "150", "--prompts-per-step", "16", "--group-size", "8", "--warmup-share", "0.5",
          "--eval-problems", "0", "--threads", "1", "--no-progress"]  # 0: every test / validation problem
TUNE = ["--grid", GRID, "--tune-samples", "64", "--tune-seeds", "1000,", "--select", "pass_auc"]
OUT = Path("results/compare/decisive")

# the arm roles of the verdicts (ladtrain.study_verdicts): label in the main / ablation study
ROLES = {"grpo": "grpo", "lad": "lad:js", "lad_brake": "lad:js/mb4", "grpo_brake": "grpo/mb4",
         "flowrl": "flowrl", "kl": "lad:kl", "tv": "lad:tv"}


def chosen_lr(out: Path, part: str, arm: str) -> float:
    """The learning rate ``part`` chose for ``arm`` on validation, read from its finished tuning runs by
    the part's own grid, tuning seeds and selection metric (:func:`ladtrain.study.tune`'s rule)."""
    from ladtrain import compare
    from ladtrain.study import seeds_of, tuning_folder
    from ladtrain.study_arms import choose, parse_grid, score

    study, _ = compare.parse(part_argv(part, out))
    points, values = parse_grid(study.grid), []
    for point in points:
        per_seed = []
        for seed in seeds_of(study.tune_seeds):
            summary = tuning_folder(out / part, arm, point, seed) / "summary.json"
            if not summary.is_file():
                raise SystemExit(f"{part}: the tuning of {arm} has not finished ({summary.parent}): "
                                 "run that part first")
            per_seed.append(score(json.loads(summary.read_text())["trained"], study.select))
        values.append(per_seed)
    return points[choose(points, values)]["lr"]


def part_argv(name: str, out: Path) -> list[str]:
    """The ``compare`` command line of part ``name``."""
    folder = ["--out", str(out / name)]
    main = {"countdown-main": (COUNTDOWN, "256"), "puzzle24-main": (PUZZLE24, "64")}
    if name in main:
        task, k = main[name]
        return ["--task", task, "--arms", MAIN_ARMS, *TUNE, "--seeds", "5", "--k", k, *COMMON, *folder]
    if name in ("countdown-ablation", "countdown-controls"):
        lr = {arm: chosen_lr(out, "countdown-main", arm) for arm in ("lad:js", "grpo", "flowrl")}
        g = f"{lr['grpo']:g}"
        if name == "countdown-ablation":
            arms, reference = "lad:tv;lad:kl;lad:js,eta=0.1;lad:js,eta=1;lad:js,eta=4", "lad:tv"
        else:
            arms = (f"grpo_tokenmean,lr={g};flowrl,mini_batches=4,lr={lr['flowrl']:g};"
                    f"dapo,mini_batches=4,lr={g};gspo,mini_batches=4,lr={g}")
            reference = "grpo_tokenmean"
        return ["--task", COUNTDOWN, "--arms", arms, "--lr", f"{lr['lad:js']:g}", "--reference", reference,
                "--seeds", "3", "--k", "64", *COMMON, *folder]
    raise KeyError(name)


PARTS = ("countdown-main", "puzzle24-main", "countdown-ablation", "countdown-controls")


def run_part(name: str, out: Path) -> None:
    from ladtrain import compare

    argv = part_argv(name, out)
    print(f"== {name}: python -m ladtrain compare {' '.join(argv)}", flush=True)
    study, base = compare.parse(argv)
    from ladtrain.study import run_study

    run_study(study, base, command="python -m ladtrain compare " + " ".join(argv))


def report(out: Path) -> int:
    """The decisive report from the finished parts (``results.json`` of each) in ``out``."""
    from ladtrain import decisive_report

    argv = []
    for name in PARTS:
        task, kind = name.split("-")
        if (out / name / "results.json").is_file():
            argv += [f"--{kind}", f"{task}={out / name}"]
    if not argv:
        raise SystemExit(f"no finished part in {out}")
    return decisive_report.main([*argv, "--out", str(out)])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ladtrain.protocol", description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", action="append", choices=PARTS, help="run only this part (repeatable)")
    parser.add_argument("--out", default=str(OUT), help=f"the study's folder (default {OUT})")
    parser.add_argument("--report", action="store_true", help="only build the report from the parts on disk")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if not args.report:
        for name in args.part or PARTS:
            run_part(name, out)
    if args.part and not args.report:
        return 0
    return report(out)


if __name__ == "__main__":
    sys.exit(main())
