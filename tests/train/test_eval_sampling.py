"""Chunked held-out sampling: the plan of generate calls, bounded pending samples, and metrics that
match the independent per-problem functions on the very samples drawn."""

from __future__ import annotations

import pytest
import torch

from ladtrain import eval_sampling, evaluation, models
from ladtrain.passk import EvaluationError
from ladtrain.tasks.base import Problem, Score


class FirstCharTask:
    """Correct when the completion starts with a digit below 5; the answer is its first two characters."""

    name = "first-char"

    def problems(self, split):
        return [Problem(f"q{i}", f"{i} {i + 1} -> {2 * i + 1}\n", None) for i in range(5)]

    def score(self, problem, completion):
        head = completion[:1]
        return Score(1.0 if head and head in "01234" else 0.0, completion[:2] or None)


@pytest.fixture(scope="module")
def policy():
    tok = models.build_tokenizer()
    spec = models.TinySpec(hidden=32, layers=1, heads=2, intermediate=64)
    return models.build_tiny_model(tok, spec, seed=0), tok


@pytest.mark.parametrize("n, samples, batch",
                         [(5, 20, 7), (40, 4, 512), (3, 1024, 256), (7, 3, 2), (1, 1, 1)])
def test_plan_bounds_every_call_and_completes_problems_in_order(n, samples, batch):
    calls = list(eval_sampling.plan(n, samples, batch))
    got = [0] * n
    for call in calls:
        assert sum(count for _, count in call) <= batch
        assert len(call) <= eval_sampling.MAX_PROMPTS_PER_CALL and len({c for _, c in call}) == 1
        # bounded memory: a call starts only once every earlier problem is complete
        first = call[0][0]
        assert all(got[j] == samples for j in range(first))
        for j, count in call:
            got[j] += count
    assert got == [samples] * n


    from ladtrain import preflight

    # the memory preflight counts the largest call of this very plan
    largest = max(sum(c for _, c in call) for call in calls)
    assert preflight.eval_sequences_per_call(samples, n, batch) == largest


def test_plan_rejects_nonsense():
    with pytest.raises(EvaluationError):
        list(eval_sampling.plan(3, 0, 8))


def test_metrics_equal_the_per_problem_functions_on_the_samples_drawn(policy):
    model, tok = policy
    task = FirstCharTask()
    seen = {}

    def keep(problem, prompt, texts, scores, truncated):
        assert prompt == models.format_prompt(tok, problem.prompt) and len(texts) == len(truncated) == 20
        seen[problem.id] = [(t, s) for t, s in zip(texts, scores)]

    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    res = eval_sampling.evaluate(model, tok, task, task.problems("test"), samples=20, temperature=1.0,
                                 max_new_tokens=4, seed=5, ks=[1, 3, 20], batch=7, progress=False,
                                 on_problem=keep, truncation="score")  # the 4-token cuts scored too
    assert torch.equal(torch.rand(1), before)  # the caller's RNG stream is untouched
    assert res["problem_ids"] == [f"q{i}" for i in range(5)] and set(seen) == set(res["problem_ids"])
    correct = [[s.reward >= 1 for _, s in seen[p]] for p in res["problem_ids"]]
    answers = [[s.answer for _, s in seen[p]] for p in res["problem_ids"]]
    assert 0 < sum(map(sum, correct)) < 100  # the fake task gives a mix (else the checks below are empty)
    for i, (c, a) in enumerate(zip(correct, answers)):
        expected = evaluation.pass_at_k(20, sum(c), 3)
        assert res["per_problem"]["pass@3"][i] == pytest.approx(expected, rel=1e-14)
        assert res["per_problem"]["distinct_correct"][i] == evaluation.distinct_correct_answers(a, c)
        assert res["correct_answers"][i] == {x: sum(1 for y, z in zip(a, c) if z and y == x) for x in set(a)
                                             if any(z and y == x for y, z in zip(a, c))}
    assert res["pass@1"] == pytest.approx(res["accuracy"]) and res["ks"] == [1, 3, 20]
    assert res["intervals"]["pass@1"]["lo"] <= res["pass@1"] <= res["intervals"]["pass@1"]["hi"]
    again = eval_sampling.evaluate(model, tok, task, task.problems("test"), samples=20, temperature=1.0,
                                   max_new_tokens=4, seed=5, ks=[1, 3, 20], batch=7, progress=False,
                                   truncation="score")
    assert again["per_problem"] == res["per_problem"]  # one seed and one batch: one stream


def test_k_above_the_number_of_samples_is_refused(policy):
    model, tok = policy
    with pytest.raises(EvaluationError, match="k=8"):
        eval_sampling.evaluate(model, tok, FirstCharTask(), FirstCharTask().problems("test"), samples=4,
                               temperature=1.0, max_new_tokens=2, ks=[1, 8], progress=False)
