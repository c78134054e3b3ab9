"""reasoning-gym generators as tasks: real generators, their own scorers, disjoint splits."""

from __future__ import annotations

import pytest

from ladtrain.tasks import TaskError, get_task, score_all

GENERATORS = ["leg_counting", "basic_arithmetic", "spell_backward"]


def _wrong(answer: str) -> str:
    try:
        return str(int(answer) + 1)
    except ValueError:
        return answer[::-1] + "q"


@pytest.mark.parametrize("name", GENERATORS)
def test_generator_answers_score_one_and_wrong_answers_below_one(name):
    task = get_task(f"reasoning_gym:{name},size=30,test_size=10,seed=7")
    train, test = task.problems("train"), task.problems("test")
    assert len(train) == 30 and 1 <= len(test) <= 10
    assert {p.reference["question"] for p in train}.isdisjoint({p.reference["question"] for p in test})
    right = [f"thinking...\n<answer>{p.reference['answer']}</answer>" for p in test]
    assert [s.reward for s in score_all(task, test, right)] == [1.0] * len(test)
    wrong = [_wrong(p.reference["answer"]) for p in test]
    scores = score_all(task, test, [f"<answer>{w}</answer>" for w in wrong])
    # the reward is the generator's own scorer, partial credit included (spell_backward gives some)
    assert [s.reward for s in scores] == [task.dataset.score_answer(answer=w, entry=p.reference)
                                          for w, p in zip(wrong, test)]
    assert all(s.reward < 1.0 for s in scores)
    if name != "spell_backward":
        assert all(s.reward == 0.0 for s in scores)
    missing = task.score(test[0], test[0].reference["answer"])
    assert missing.reward == 0.0 and missing.info == "no <answer> tag"


def test_prompt_carries_the_answer_format_unless_turned_off():
    with_instr = get_task("reasoning_gym:leg_counting,size=2,test_size=2")
    raw = get_task("reasoning_gym:leg_counting,size=2,test_size=2,instruction=none")
    p, q = with_instr.problems("train")[0], raw.problems("train")[0]
    assert p.prompt.startswith(q.prompt) and "<answer>" in p.prompt and "<answer>" not in q.prompt


def test_generator_config_options_reach_the_generator():
    task = get_task("reasoning_gym:basic_arithmetic,size=20,test_size=5,min_terms=2,max_terms=2,"
                    "max_digits=1,allow_parentheses=false,allow_negation=false")
    assert task.dataset.config.max_terms == 2
    for p in task.problems("train"):
        question = p.reference["question"]
        expr = question.split("Calculate", 1)[1].strip().rstrip(".")
        assert sum(ch in "+-*/" for ch in expr) == 1, expr


@pytest.mark.parametrize("spec, message", [
    ("reasoning_gym", "give a generator name"),
    ("reasoning_gym:no_such_generator", "unknown generator"),
    ("reasoning_gym:leg_counting,bogus=1", "unexpected keyword argument 'bogus'"),
    ("reasoning_gym:leg_counting,min_animals=0", "min_animals must be positive"),
    ("reasoning_gym:leg_counting,size=-3", "size=-3 must be a positive integer"),
])
def test_bad_generator_specs_give_one_line_errors(spec, message):
    with pytest.raises(TaskError, match=message) as err:
        get_task(spec)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------ scorers that would evaluate model text

GUARDED = ["simple_integration", "intermediate_integration", "polynomial_multiplication", "puzzle24",
           "countdown", "n_queens", "spiral_matrix", "binary_matrix", "string_insertion", "number_sorting"]


def test_audit_every_scorer_that_evaluates_text_is_guarded():
    """Re-run the audit on the installed reasoning-gym: every ``score_answer`` that calls ``eval``,
    ``exec``, ``parse_expr``, ``sympify`` or ``S(`` lives in a module of GUARDED_SCORERS."""
    import inspect
    import re

    from reasoning_gym.factory import DATASETS

    from ladtrain.tasks.gym import GUARDED_SCORERS

    pattern = re.compile(r"(?<![\w.])eval\(|parse_expr\(|sympify\(|\bS\(|exec\(")
    evaluating = set()
    for cls, _config in DATASETS.values():
        try:
            source = inspect.getsource(cls.score_answer)
        except (OSError, TypeError):
            continue
        if pattern.search(source):
            evaluating.add(cls.score_answer.__module__)
    assert evaluating, "the audit found nothing: the pattern no longer matches reasoning-gym's code"
    assert evaluating <= set(GUARDED_SCORERS), sorted(evaluating - set(GUARDED_SCORERS))


def test_unguarded_reasoning_gym_scorers_do_run_code_from_the_answer(tmp_path):
    """The hazard is real: in a fresh process without our guard, the scorer runs the answer."""
    import subprocess
    import sys

    marker = tmp_path / "ran"
    script = (
        "import reasoning_gym as rg\n"
        "ds = rg.create_dataset('n_queens', size=1, seed=0)\n"
        f"ds.score_answer(\"__import__('pathlib').Path({str(marker)!r}).touch()\", ds[0])\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=120)
    assert marker.exists()


@pytest.mark.parametrize("name", GUARDED)
def test_guarded_scorers_never_run_code_from_the_answer(name, tmp_path):
    task = get_task(f"reasoning_gym:{name},size=3,test_size=2,seed=4")
    marker = tmp_path / "ran"
    payloads = [
        f"__import__('pathlib').Path({str(marker)!r}).touch()",
        f"open({str(marker)!r}, 'w')",
        "().__class__.__base__.__subclasses__()",
        "9**9**9**9**9",  # would never finish if computed
    ]
    for payload in payloads:
        score = task.score(task.problems("train")[0], f"<answer>{payload}</answer>")
        assert score.reward is not None and score.reward < 0.5
    assert not marker.exists()


@pytest.mark.parametrize("name", GUARDED)
def test_guarded_scorers_still_accept_reference_answers(name):
    from ladtrain.tasks.gym import GUARDED_SCORERS, safe_expression

    task = get_task(f"reasoning_gym:{name},size=8,test_size=2,seed=5")
    kind = GUARDED_SCORERS[type(task.dataset).__module__]
    for p in task.problems("train"):
        answer = p.reference["answer"]
        reward = task.score(p, f"<answer>{answer}</answer>").reward
        if kind == "eval" or safe_expression(answer):
            assert reward == 1.0, (answer, reward)
        else:  # only sympy's unevaluated Integral(...) is refused: an answer that restates the question
            assert "Integral(" in answer and reward == 0.0, answer


@pytest.mark.parametrize("text, safe", [
    ("94*4 - 61 - 6", True), ("-4*(-2*x - 8)**(3/2)/3 + C", True), ("exp(x)*sin(x) + sqrt(2)", True),
    ("x**1000", True), ("2^10", True), ("abs(-3)", True),
    ("9**9**9**9", False), ("(10**100)**1000", False), ("__import__('os')", False), ("().__class__", False),
    ("open('f')", False), ("lambda: 1", False), ("'a'*10", False), ("x[0]", False), ("Integral(x, x)", False),
    ("1" * 1001, False),
])
def test_safe_expression_allows_arithmetic_only(text, safe):
    from ladtrain.tasks.gym import safe_expression

    assert safe_expression(text) is safe


def test_list_answers_still_get_partial_credit_through_the_literal_evaluator():
    task = get_task("reasoning_gym:string_insertion,size=3,test_size=2,seed=1")
    p = task.problems("train")[0]
    as_list = repr(list(p.reference["answer"]))
    assert task.score(p, f"<answer>{as_list}</answer>").reward == task.dataset.score_answer(
        answer=as_list, entry=p.reference) == 0.1
