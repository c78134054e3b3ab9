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
