"""Sampling and scoring n completions per held-out problem, in chunks, in bounded memory.

:func:`evaluate` draws ``samples`` completions for each problem with the policy (HF ``generate``, the
same sampler as the rollouts) and returns every metric of :mod:`ladtrain.evaluation`:

* **Chunks.** One ``generate`` call holds at most ``batch`` sequences (default 512) and at most 32
  prompts: with ``samples <= batch``, ``min(32, batch // samples)`` problems per call; with more, one
  problem per call in pieces of ``batch`` (the last piece the remainder). The sampling stream therefore
  depends on ``batch`` (and on ``seed``), not on anything else: two policies evaluated with one seed and
  one batch see the same random stream.
* **Bounded memory.** A problem's completions (texts, token ids) are kept only until its last piece is
  scored: its per-problem metrics are computed then and the completions dropped (after ``on_problem``
  has seen them). What stays per problem is its metric values and the counts of its distinct correct
  answers (:mod:`ladtrain.coverage`), so memory is one batch of sequences plus one problem's samples,
  whatever the number of problems.
* **Progress.** One bar over all ``problems x samples`` completions (tqdm; off with ``progress=False``).

The result (a JSON-ready dict): the mean of every metric; ``accuracy`` (= ``avg@k``, the mean reward >= 1
over samples); ``intervals`` (95% over problems, :mod:`ladtrain.intervals`); ``ks``; ``seconds``;
``problem_ids``; ``per_problem`` (every metric per problem, for paired comparisons) and
``correct_answers`` (per problem ``{answer: count}`` of the correct samples).
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable, Iterator, Sequence

import torch

from ladtrain import coverage, evaluation, models, scoring
from ladtrain.passk import EvaluationError, powers_of_two
from ladtrain.rollout import HFSampler
from ladtrain.tasks import Problem, Task

MAX_PROMPTS_PER_CALL = 32


def prompts_per_call(samples: int, batch: int) -> int:
    """Problems per ``generate`` call when ``samples <= batch``: ``min(32, batch // samples)``, at least 1."""
    return max(1, min(MAX_PROMPTS_PER_CALL, batch // samples))


def plan(n_problems: int, samples: int, batch: int) -> Iterator[list[tuple[int, int]]]:
    """The generate calls, in order (a generator: nothing is built ahead): each a list of ``(problem
    index, completions of it)``, all with one count (the sampler draws a fixed number per prompt); at
    most ``batch`` sequences and 32 prompts a call."""
    if samples < 1 or batch < 1:
        raise EvaluationError(f"need samples >= 1 and batch >= 1, got {samples} and {batch}")
    if samples <= batch:
        per = prompts_per_call(samples, batch)
        for i in range(0, n_problems, per):
            yield [(j, samples) for j in range(i, min(n_problems, i + per))]
        return
    for j in range(n_problems):
        done = 0
        while done < samples:
            piece = min(batch, samples - done)
            yield [(j, piece)]
            done += piece


def evaluate(model, tokenizer, task: Task, problems: Sequence[Problem], *, samples: int, temperature: float,
             max_new_tokens: int, seed: int = 0, ks: Sequence[int] | None = None, batch: int = 512,
             progress: bool = True, desc: str = "eval",
             on_problem: Callable[[Problem, str, list[str], list, list[bool]], None] | None = None,
             system: str | None = None, top_p: float = 1.0, top_k: int = 0, truncation: str = "zero",
             ) -> dict[str, Any]:
    """``samples`` completions of each problem, scored by ``task``, summarised (module docstring).

    ``ks``: the k values of pass@k and distinct_correct@k (default: powers of two up to ``samples``
    and ``samples``; each must be <= ``samples``). The torch RNG is seeded with ``seed`` inside a
    forked RNG state, so training's random stream is untouched. ``on_problem(problem, prompt,
    completions, scores, truncated)`` is called once per problem with all its samples (prompt as the
    model saw it; ``truncated[j]`` = no EOS within ``max_new_tokens``). dist-n counts the model's tokens.
    Correctness is the task's verifier's (:func:`ladtrain.tasks.base.score_completions`: a cut completion
    scores 0 with reason ``truncated`` unless ``truncation="score"``); ``result["reasons"]`` counts the
    samples per reason. ``system``: the chat system prompt (:func:`ladtrain.prompts.render`); ``top_p``,
    ``top_k``: truncated sampling."""
    from tqdm.auto import tqdm

    from ladtrain.tasks.base import reason_counts, score_completions

    if not problems:
        raise EvaluationError("no problems to evaluate")
    ks = list(ks) if ks is not None else powers_of_two(samples)
    if max(ks) > samples or min(ks) < 1:
        raise EvaluationError(f"pass@k for k={max(ks)} needs at least that many samples per problem, "
                              f"got {samples}")
    sampler = HFSampler(model, tokenizer, temperature, max_new_tokens, top_p=top_p, top_k=top_k)
    prompts = [models.format_prompt(tokenizer, p.prompt, system) for p in problems]
    reasons: list[str] = []
    pending: dict[int, dict[str, list]] = {}  # problem index -> its completions so far
    rows: list[dict[str, float] | None] = [None] * len(problems)
    counts: list[dict | None] = [None] * len(problems)
    start, failed = time.time(), 0
    bar = tqdm(total=len(problems) * samples, desc=desc, disable=not progress, dynamic_ncols=True,
               leave=False, unit="sample")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for call in plan(len(problems), samples, batch):
            group = call[0][1]
            rollout = sampler.sample([prompts[j] for j, _ in call], group)
            ended = (rollout.completion_ids == tokenizer.eos_token_id).any(dim=1).tolist()
            found: list[scoring.Scored] = []

            def score(ps, cs, found=found):
                found.append(scoring.score(task, ps, cs))
                return found[-1].scores

            rows_ = [problems[j] for j, _ in call for _ in range(group)]
            scores = score_completions(task, rows_, rollout.texts, [not e for e in ended], truncation,
                                       scorer=score)  # a sample that could not be scored: not solved
            failed += sum(len(s.failures) for s in found)
            reasons += [s.reason for s in scores]
            ids = [row[m.bool()].tolist() for row, m in zip(rollout.completion_ids, rollout.completion_mask)]
            for slot, (j, _) in enumerate(call):
                part = slice(slot * group, (slot + 1) * group)
                got = pending.setdefault(j, {"texts": [], "scores": [], "ids": [], "truncated": []})
                got["texts"] += rollout.texts[part]
                got["scores"] += scores[part]
                got["ids"] += ids[part]
                got["truncated"] += [not e for e in ended[part]]
                if len(got["scores"]) == samples:  # the problem is complete: summarise, then drop its samples
                    done = pending.pop(j)
                    correct = [s.reward is not None and s.reward >= 1.0 for s in done["scores"]]
                    answers = [s.answer for s in done["scores"]]
                    rows[j] = evaluation.problem_metrics(correct, answers, done["ids"], ks=ks)
                    counts[j] = coverage.correct_answer_counts(answers, correct)
                    if on_problem is not None:
                        on_problem(problems[j], prompts[j], done["texts"], done["scores"], done["truncated"])
            bar.update(group * len(call))
    bar.close()
    if failed:
        warnings.warn(f"{desc}: the reward failed on {failed} samples (raised or not a finite number); they "
                      "count as not solved")
    result = evaluation.result(rows, counts, [p.id for p in problems], samples, ks)
    result["unscorable"] = failed
    result["reasons"] = reason_counts(reasons)
    result["seconds"] = time.time() - start
    return result


__all__ = ["MAX_PROMPTS_PER_CALL", "evaluate", "plan", "prompts_per_call"]
