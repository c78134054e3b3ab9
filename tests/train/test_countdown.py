"""The built-in Countdown task: safe parsing, exact scoring, enumerated solutions, held-out split, cache."""

from __future__ import annotations

import itertools
import json

import pytest

from ladtrain.tasks import Task, TaskError, get_task
from ladtrain.tasks.base import Problem
from ladtrain.tasks.countdown import (
    ExpressionError,
    extract_answer,
    parse,
    render,
    solutions_by_target,
    terms_of,
    value_of,
)


def _problem(numbers, target):
    sols = list(solutions_by_target(tuple(sorted(numbers)))[target])
    return Problem(
        id="p", prompt="", reference=target, meta={"numbers": numbers, "target": target, "solutions": sols}
    )


def _brute_value(numbers, ops):
    """An independent evaluator: precedence by two explicit passes over the token list."""
    vals, pending = [numbers[0]], []
    for op, n in zip(ops, numbers[1:]):
        if op == "*":
            vals[-1] *= n
        else:
            pending.append(op)
            vals.append(n)
    total = vals[0]
    for op, v in zip(pending, vals[1:]):
        total = total + v if op == "+" else total - v
    return total


def test_parse_accepts_spaces_and_rejects_anything_but_integers_and_plus_minus_times():
    assert parse(" 4 * 3+5 -2 ") == ([4, 3, 5, 2], ["*", "+", "-"])
    for bad in ["", "4*", "*4", "4 4", "(4+3)", "4/2", "__import__('os')", "4+-3", "4**2", "1e3"]:
        with pytest.raises(ExpressionError):
            parse(bad)


def test_parse_reads_ascii_digits_only():
    import re

    arabic = "\u0665+\u0664*\u0663-\u0662"  # 5+4*3-2 in Arabic-Indic digits
    with pytest.raises(ExpressionError):
        parse(arabic)
    # without the protection (\d, which matches any Unicode digit, and int() reads them) it would parse
    assert re.fullmatch(r"\d+", "\u0665") and int("\u0665") == 5


def test_value_matches_an_independent_evaluator_on_every_operator_sequence():
    for numbers in [(4, 3, 5, 2), (1, 5, 5, 2), (2, 2, 3, 1)]:
        for ops in itertools.product("+-*", repeat=3):
            assert value_of(terms_of(numbers, ops)) == _brute_value(numbers, ops), (numbers, ops)


def test_canonical_form_identifies_commuted_expressions_and_separates_different_ones():
    same = ["4*3+5-2", "5+3*4-2", "3*4-2+5", "5-2+4*3"]
    assert len({render(terms_of(*parse(s))) for s in same}) == 1
    assert render(terms_of(*parse("4*3+5-2"))) == "5+4*3-2"
    assert render(terms_of(*parse("4*3+5-2"))) != render(terms_of(*parse("4*5-3-2")))


def test_every_enumerated_solution_reaches_its_target_uses_the_numbers_and_is_distinct():
    numbers = (1, 2, 3, 5)
    table = solutions_by_target(numbers)
    assert sum(len(v) for v in table.values()) > 20
    for target, sols in table.items():
        assert len(set(sols)) == len(sols)
        for s in sols:
            nums, ops = parse(s)
            assert sorted(nums) == list(numbers)
            assert value_of(terms_of(nums, ops)) == target
            assert render(terms_of(nums, ops)) == s


def test_enumeration_finds_every_parenthesis_free_solution():
    numbers = (2, 3, 4, 5)
    brute: dict[int, set[str]] = {}
    for perm in itertools.permutations(numbers):
        for ops in itertools.product("+-*", repeat=3):
            brute.setdefault(_brute_value(perm, ops), set()).add(render(terms_of(perm, ops)))
    table = solutions_by_target(numbers)
    for target, sols in brute.items():
        assert set(table[target]) == sols


def test_score_is_one_only_for_a_correct_expression_over_exactly_the_given_numbers():
    task = get_task("countdown")
    p = _problem([4, 3, 5, 2], 15)
    assert task.score(p, "4*3+5-2").reward == 1.0
    assert task.score(p, "5-2+3*4\nextra text").answer == "5+4*3-2"
    assert task.score(p, "Some thought.<answer>4*3+5-2</answer>").reward == 1.0
    assert task.score(p, "4*3+5").reward == 0.0  # misses a number
    assert task.score(p, "4*3+5-2-2+2").reward == 0.0  # extra numbers
    assert task.score(p, "4*5-3+2").reward == 0.0  # wrong value
    score = task.score(p, "import os")
    assert score.reward == 0.0 and score.answer is None


def test_extract_answer_prefers_the_last_answer_tag_then_the_first_line():
    assert extract_answer("\n  1+2 \n3") == "1+2"
    assert extract_answer("<answer>1</answer> <answer> 2+3 </answer>") == "2+3"


def test_problems_have_a_disjoint_held_out_split_and_list_all_solutions(cache):
    task = get_task("countdown")
    assert isinstance(task, Task)
    train, test = task.problems("train"), task.problems("test")
    assert len(train) > 400 and 50 < len(test) < len(train)
    assert not {p.id for p in train} & {p.id for p in test}
    for p in train[:50] + test[:50]:
        assert p.meta["solutions"] == list(
            solutions_by_target(tuple(sorted(p.meta["numbers"])))[p.meta["target"]]
        )
        assert p.prompt == f"{' '.join(map(str, p.meta['numbers']))} -> {p.meta['target']}\n"
    several = sum(len(p.meta["solutions"]) >= 2 for p in train) / len(train)
    assert several > 0.3  # diversity is measurable


def test_problems_are_cached_and_read_back(cache):
    files = list((cache / "countdown").glob("*.json"))
    assert len(files) == 1
    rows = json.loads(files[0].read_text())
    rows = rows[:10]
    files[0].write_text(json.dumps(rows))  # a changed cache file is what the next task reads
    task = get_task("countdown")
    assert len(task.problems("train")) + len(task.problems("test")) == 10


def test_bad_countdown_argument_is_a_task_error():
    with pytest.raises(TaskError, match="countdown:x"):
        get_task("countdown:x")
