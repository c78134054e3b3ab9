"""Held-out evaluation of a run: which sets, which k, when, and where the rows go.

* **Sets.** The task's own held-out split (named :data:`MAIN`, ``held_out``) and one set per
  ``--eval-task NAME=SPEC`` (or ``SPEC``: the name is then derived from it,
  :func:`ladtrain.tasks.named_spec`), each
  the ``test`` split of its task, scored by that task's own verifier, cut to ``--eval-problems`` problems.
* **k.** ``--k LIST`` / ``--k-max K`` / ``--eval-samples N`` (:func:`ladtrain.passk.ks_of`): the k
  values reported, and ``max(N, largest k)`` samples per problem.
* **When.** At step 0 (the base), every ``--eval-every`` RL steps, and after the last step (the trained
  policy); the same sampling seed each time (``--seed`` + 1), so every evaluation of a set sees the same
  random stream and differences between steps are the policy's.
* **Where.** One row per set and evaluation in ``RUN/eval.jsonl`` (:func:`eval_row`: ``step``, ``label``
  base/step/trained, ``eval`` = the set, every metric's mean, ``intervals``); the trackers
  (:mod:`ladtrain.tracking`) get the same rows and a table of sample completions.

:func:`versus_all` compares the base with the trained policy on every set (:func:`ladtrain.evaluation.versus`)
and :func:`summary_lines` writes the console summary: every metric with its 95% interval over problems for
base, trained and the difference, the crossover k and the retained base answers.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ladtrain import passk
from ladtrain.config import HELD_OUT, ConfigError
from ladtrain.tasks import named_spec

MAIN = HELD_OUT  # "held_out": the task's own held-out split
SAMPLE_COLUMNS = ("problem", "prompt", "completion", "answer", "reward")


@dataclass(frozen=True)
class EvalSet:
    """One evaluation set: its name, task spec, task and problems."""

    name: str
    spec: str
    task: Any
    problems: tuple


def extra_sets(cfg, limit: int = 0) -> list[EvalSet]:
    """One set per ``--eval-task`` (its task's test split, cut to ``limit`` problems; 0: all). A task that
    cannot be built, or an empty split, is a ConfigError naming the set (built before any training)."""
    from ladtrain.tasks import TaskError, get_task

    out = []
    for text in cfg.eval_task:
        name, spec = named_spec(text, reserved=(MAIN,))
        try:
            extra = get_task(spec)
            held = tuple(extra.problems("test"))[: limit or None]
        except TaskError as err:
            raise ConfigError(f"--eval-task {name}: {err}") from None
        if not held:
            raise ConfigError(f"--eval-task {name}: {spec} has no test problems")
        out.append(EvalSet(name, spec, extra, held))
    return out


def eval_sets(cfg, task, problems: Sequence, limit: int = 0, extra: Sequence[EvalSet] | None = None
              ) -> list[EvalSet]:
    """:data:`MAIN` (``task`` on ``problems``, cut to ``limit``) and the ``--eval-task`` sets
    (:func:`extra_sets`, or ``extra`` when already built)."""
    main = EvalSet(MAIN, cfg.task, task, tuple(problems[: limit or None]))
    return [main, *(extra_sets(cfg, limit) if extra is None else extra)]


def eval_row(step: int, label: str, name: str, result: dict[str, Any]) -> dict[str, Any]:
    """The ``eval.jsonl`` row of one evaluation: the means and intervals, not the per-problem values."""
    keep = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {"step": int(step), "label": label, "eval": name, **keep, "ks": list(result["ks"]),
            "intervals": result["intervals"]}


class Evaluator:
    """Evaluates every set with one policy and writes the rows (``log``: the ``eval.jsonl`` path, or
    None off rank 0; ``trackers``: :class:`ladtrain.tracking.Trackers` or None)."""

    def __init__(self, sets: Sequence[EvalSet], *, ks: Sequence[int], samples: int, temperature: float,
                 max_new_tokens: int, seed: int, batch: int, progress: bool = True, log: Path | None = None,
                 trackers=None, sample_rows: int = 8, samples_log=None, **sampling):
        self.sets, self.ks, self.samples = list(sets), list(ks), samples
        self.kw = dict(temperature=temperature, max_new_tokens=max_new_tokens, seed=seed, batch=batch,
                       progress=progress, **sampling)  # sampling: system, top_p, top_k, truncation
        self.samples_log = samples_log  # ladtrain.samples_log.SamplesLog: every sample of the main set
        self.log, self.trackers, self.sample_rows = log, trackers, sample_rows
        self.rows: list[dict[str, Any]] = []

    def resume(self, before_step: int) -> None:
        """Keep the rows of ``eval.jsonl`` with ``step < before_step`` (the rest is evaluated again)."""
        if self.log is None or not self.log.is_file():
            return
        kept = [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
        self.rows = [r for r in kept if r["step"] < before_step]
        tmp = self.log.with_name(self.log.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in self.rows))
        os.replace(tmp, self.log)  # atomic: a kill leaves the old file or the new one

    def record(self, step: int, label: str, results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Write the rows of evaluations done elsewhere (``results`` by set, every set of this evaluator)
        without sampling; returns ``results``."""
        missing = [s.name for s in self.sets if s.name not in results]
        if missing:
            raise ValueError(f"no result for the evaluation set(s) {', '.join(missing)}")
        for s in self.sets:
            self._write(eval_row(step, label, s.name, results[s.name]))
        return results

    def _write(self, row: dict[str, Any]) -> None:
        """Keep one evaluation row, append it to ``eval.jsonl`` and give it to the trackers."""
        self.rows.append(row)
        if self.log is not None:
            with open(self.log, "a") as fh:
                fh.write(json.dumps(row) + "\n")
        if self.trackers is not None:
            self.trackers.evaluation(row)

    def run(self, model, tokenizer, step: int, label: str) -> dict[str, dict[str, Any]]:
        """Every set's result (:func:`ladtrain.eval_sampling.evaluate`), its row written and tracked."""
        from ladtrain import eval_sampling

        results = {}
        for s in self.sets:
            shown: list[list] = []

            records: list = []

            def keep(problem, prompt, texts, scores, truncated, shown=shown, records=records,
                     main=s.name == MAIN):
                if len(shown) < self.sample_rows:
                    shown.append([problem.id, prompt, texts[0], scores[0].answer, scores[0].reward])
                if main and self.samples_log is not None:
                    from ladtrain import samples_log

                    records.extend(samples_log.records(
                        kind="eval", step=step, eval_name=label, problem_ids=[problem.id] * len(texts),
                        prompts=[prompt] * len(texts), completions=texts, answers=[x.answer for x in scores],
                        rewards=[x.reward for x in scores], correct=[x.reward for x in scores],
                        reasons=[x.reason for x in scores], truncated=truncated, lengths=[None] * len(texts),
                        group_size=len(texts)))

            res = eval_sampling.evaluate(model, tokenizer, s.task, s.problems, samples=self.samples,
                                         ks=self.ks, desc=f"eval {label} {s.name}", on_problem=keep,
                                         **self.kw)
            results[s.name] = res
            if records:
                self.samples_log.write(records)
            self._write(eval_row(step, label, s.name, res))
            if self.trackers is not None:
                self.trackers.samples(s.name, step, SAMPLE_COLUMNS, shown)
        return results


def evaluator(cfg, task, problems: Sequence, model, tokenizer, faults=None, *,
              extra: Sequence[EvalSet] | None = None, log: Path | None = None, trackers=None,
              samples_log=None) -> Evaluator:
    """The :class:`Evaluator` of a training run: :func:`eval_sets` (``problems`` are the task's held-out
    problems that fit the context, already cut to ``--eval-problems``; ``extra``: the sets of
    :func:`extra_sets`, built early), the extra sets' prompts that do
    not fit the model's context with ``--max-new-tokens`` dropped and counted as ``prompts_too_long``
    (ConfigError if none is left), k and samples from :func:`ks_of`, seed ``--seed`` + 1."""
    from ladtrain import models

    sets = eval_sets(cfg, task, problems, limit=cfg.eval_problems, extra=extra)
    context = models.context_length(model)
    fitted = [sets[0]]
    for s in sets[1:]:
        fit, dropped = models.fitting_prompts(list(s.problems), tokenizer, context, cfg.max_new_tokens,
                                              models.format_prompt)
        if not fit:
            raise ConfigError(f"--eval-task {s.name}: no prompt fits the model's context of {context} tokens "
                              f"with --max-new-tokens {cfg.max_new_tokens}")
        if dropped and faults is not None:
            faults.count("prompts_too_long", dropped, f"{dropped} prompts of --eval-task {s.name} + "
                         f"--max-new-tokens exceed the model's context ({context})")
        fitted.append(EvalSet(s.name, s.spec, s.task, tuple(fit)))
    ks, samples = passk.ks_of(cfg)
    from ladtrain.prompts import system_of

    seed = cfg.seed + 1 if getattr(cfg, "eval_seed", None) is None else cfg.eval_seed
    return Evaluator(fitted, ks=ks, samples=samples, temperature=cfg.eval_temperature,
                     max_new_tokens=cfg.max_new_tokens, seed=seed, batch=cfg.eval_batch,
                     progress=cfg.progress, log=log, trackers=trackers, samples_log=samples_log,
                     system=system_of(cfg), top_p=cfg.top_p, top_k=cfg.top_k, truncation=cfg.truncation)


def by_set(saved: dict[str, Any] | None) -> dict[str, dict] | None:
    """The base evaluations saved in a resumable checkpoint, by set (a checkpoint written before there
    were several sets holds the held-out split's result alone)."""
    if not saved:
        return None
    return {MAIN: saved} if "problem_ids" in saved else saved


def summary_fields(base: dict[str, dict], trained: dict[str, dict],
                   versus: dict[str, dict]) -> dict[str, Any]:
    """What ``summary.json`` gains from the evaluation sets: the samples per problem and the k values, the
    held-out split's crossover k (also ``crossover_significant_k``) and retained base answers (with
    intervals), every set's :func:`ladtrain.evaluation.versus` (``versus``), and the extra sets' base and
    trained results (``eval_sets``; the held-out split's are ``base`` and ``trained``)."""
    main = versus[MAIN]
    return {
        "eval_samples": main["samples_per_problem"],
        "ks": main["ks"],
        "crossover_k": main["crossover_k"],
        "crossover_significant_k": main["crossover_significant_k"],
        "retained": main["retained"],
        "new_answers": main["new_answers"],
        "versus": versus,
        "eval_sets": {name: {"base": base[name], "trained": trained[name]} for name in base if name != MAIN},
    }


def due(step: int, every: int, last: int) -> bool:
    """A periodic evaluation after RL step ``step`` (not the last: the final evaluation covers it)."""
    return bool(every) and step % every == 0 and step != last


def versus_all(base: dict[str, dict], trained: dict[str, dict]) -> dict[str, dict]:
    """:func:`ladtrain.evaluation.versus` for every set evaluated both times."""
    from ladtrain.evaluation import versus

    return {name: versus(base[name], trained[name]) for name in base if name in trained}


def _cell(ci: dict[str, float], sign: bool = False) -> str:
    from ladtrain.intervals import fmt

    return fmt(ci, sign=sign)


def summary_lines(versus: dict[str, dict], trained_label: str = "trained",
                  metrics: Sequence[str] | None = None) -> list[str]:
    """Per set: each metric's base, trained and difference with their 95% intervals over problems (pass@k
    at k = 1, 2, 4, 8, 16 and the largest k, distinct correct answers, answer entropy); the
    crossover line (:func:`ladtrain.evaluation.crossover_text`); retained and new answers."""
    from ladtrain.evaluation import crossover_text

    lines = []
    for name, v in versus.items():
        k_max, n = v["k_max"], v["samples_per_problem"]
        shown_ks = sorted({k for k in (2, 4, 8, 16) if k <= k_max} | {k_max})  # up to 16, and the largest
        wanted = metrics or ["pass@1", *(f"pass@{k}" for k in shown_ks if k != 1),
                             "distinct_correct", "answer_entropy"]
        rows = [(m, v["metrics"][m]) for m in wanted if m in v["metrics"]]
        labels = {"pass@1": "pass@1 (accuracy)", "distinct_correct": "distinct correct answers",
                  "answer_entropy": "answer entropy (nats)"}
        width = max(len(labels.get(m, m)) for m, _ in rows) + 2
        lines.append(f"{name}: {v['problems']} problems x {n} samples (95% intervals over problems)")
        lines.append(f"  {'':<{width}}{'base':<26}{trained_label:<26}change")
        for m, stat in rows:
            label = labels.get(m, m)
            lines.append(f"  {label:<{width}}{_cell(stat['base']):<26}{_cell(stat['trained']):<26}"
                         f"{_cell(stat['difference'], sign=True)}")
        lines.append("  " + crossover_text(v))
        r, new = v["retained"], v["new_answers"]
        if r["n"]:
            lines.append(f"  retained base answers: {_cell(r)} over the {r['n']} problems the base solved "
                         f"({n} samples each); new correct answers / problem: {_cell(new)}")
        else:
            lines.append("  retained base answers: n/a (the base solved no problem)")
    return lines


def strip_per_problem(v: dict[str, Any]) -> dict[str, Any]:
    """A :func:`ladtrain.evaluation.versus` result without its per-problem lists (for small files)."""
    return {k: val for k, val in v.items() if k != "per_problem"}


__all__ = ["MAIN", "SAMPLE_COLUMNS", "EvalSet", "Evaluator", "by_set", "due", "eval_row", "eval_sets",
           "evaluator", "extra_sets", "strip_per_problem", "summary_fields", "summary_lines", "versus_all"]
