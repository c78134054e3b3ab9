"""Puzzle 24: the safe parser and exact scorer (fed inputs built to fool it), canonical forms, the
enumeration of all solutions, splits, prompts and the cache."""

from __future__ import annotations

import itertools
import json
import re
from fractions import Fraction

import pytest

from ladtrain.tasks import Task, TaskError, get_task
from ladtrain.tasks import puzzle24 as p24
from ladtrain.tasks.base import Problem
from ladtrain.tasks.puzzle24 import ExpressionError, parse, render, solutions, value


def _problem(numbers):
    return Problem(id="-".join(map(str, sorted(numbers))), prompt="", reference=24,
                   meta={"numbers": list(numbers), "target": 24, "solutions": solutions(numbers)})


def _canon(text):
    return render(parse(text))


def _score(numbers, text, task=None):
    return (task or p24.Puzzle24Task()).score(_problem(numbers), text)


# ---------------------------------------------------------------- the parser and canonical forms


def test_parser_reads_integers_operators_and_parentheses_with_precedence():
    assert value(parse(" 8 / ( 3 - 8 / 3 ) ")) == 24
    assert value(parse("2+3*4")) == 14 and value(parse("(2+3)*4")) == 20
    assert value(parse("8-3-2")) == 3 and value(parse("8/4/2")) == 1  # left-associative
    assert value(parse("((7))")) == 7


@pytest.mark.parametrize("bad", ["", "4+", "*4", "4 4", "(4+3", "4+3)", "()", "-4+28", "4*-1", "+4",
                                 "4**2", "8//3", "2^3", "23.99999", "1e3", "__import__('os')", "abs(4)",
                                 "4 % 3", "x+1", "4,4", "1234567+1"])
def test_parser_rejects_anything_but_the_grammar(bad):
    with pytest.raises(ExpressionError):
        parse(bad)


def test_commuted_and_reassociated_forms_are_one_answer():
    groups = [
        ["8-(3-2)", "8-3+2", "2+8-3", "(8+2)-3", "8+(2-3)"],
        ["8/(4/2)", "8*2/4", "2/4*8", "(8*2)/4", "8/4*2"],
        ["(4*3)*2", "4*(3*2)", "2*3*4", "3*(2*4)"],
        ["(4+2)*(3+1)", "(1+3)*(2+4)", "(3+1)*(2+4)"],
        ["8*3+4-4", "4-4+3*8", "(8*3)-(4-4)", "3*8+(4-4)"],
        ["6*4*(3/3)", "6*4/(3/3)", "6*4*3/3", "3*6/3*4"],
    ]
    canon = [{_canon(s) for s in g} for g in groups]
    assert all(len(c) == 1 for c in canon), canon
    assert len(set().union(*canon)) == len(groups)
    assert _canon("8/(3-8/3)") == "8/(3-8/3)" and _canon("(4+2)*(1+3)") == "(3+1)*(4+2)"


def test_genuinely_different_solutions_stay_different():
    pairs = [("(8+4)*2", "8*2+4*2"),  # distributivity is not an identity here
             ("4*3*2*1", "4*3*2/1"),  # times one and divided by one are two answers
             ("8*3+4-4", "8*3*4/4"),
             ("8-3+2", "8-(3+2)")]
    for a, b in pairs:
        assert _canon(a) != _canon(b), (a, b)


def test_rendering_uses_parentheses_only_around_a_sum_inside_a_product():
    assert _canon("((8)*(3))+((4)-(4))") == "4+8*3-4"
    assert _canon("(13-(11-12))*2") == "2*(13+12-11)"
    assert _canon("12/(13-11)*(3+1)") == "12*(3+1)/(13-11)"


# ---------------------------------------------------------------- the enumeration


def _independent_solutions(numbers):
    """Brute force by another route: repeatedly merge an ordered pair of the remaining operands."""
    def merges(items):
        if len(items) == 1:
            yield items[0]
            return
        for i, j in itertools.permutations(range(len(items)), 2):
            (va, ta), (vb, tb) = items[i], items[j]
            rest = [x for k, x in enumerate(items) if k not in (i, j)]
            for op in "+-*/":
                if op == "/" and vb == 0:
                    continue
                v = va + vb if op == "+" else va - vb if op == "-" else va * vb if op == "*" else va / vb
                yield from merges(rest + [(v, f"({ta}{op}{tb})")])

    return {_canon(text) for v, text in merges([(Fraction(n), str(n)) for n in numbers]) if v == 24}


@pytest.mark.parametrize("numbers", [(3, 3, 8, 8), (1, 2, 3, 4), (4, 7, 8, 8), (1, 5, 5, 5), (6, 6, 6, 6),
                                     (2, 3, 10, 12), (1, 1, 1, 1)])
def test_enumeration_equals_an_independent_brute_force(numbers):
    assert set(solutions(numbers)) == _independent_solutions(numbers)


def test_known_counts_of_classic_problems():
    assert solutions((3, 3, 8, 8)) == ["8/(3-8/3)"]  # the famous one-solution problem
    assert solutions((1, 5, 5, 5)) == ["5*(5-1/5)"]
    assert solutions((1, 1, 1, 1)) == []


def test_every_enumerated_solution_of_many_problems_scores_one_and_round_trips():
    task = p24.Puzzle24Task()
    checked = 0
    for numbers in itertools.combinations_with_replacement(range(1, 14, 2), 4):
        problem = _problem(numbers)
        for s in problem.meta["solutions"]:
            score = task.score(problem, s)
            assert score.reward == 1.0 and score.answer == s, (numbers, s, score)
            checked += 1
    assert checked > 250


# ---------------------------------------------------------------- the scorer, fed inputs built to fool it


def test_wrong_number_multisets_that_reach_24_score_zero():
    nums = (1, 2, 3, 4)
    cases = {"4*3*(1+1)": "a number used twice", "4*3*2": "a number missing", "4*3*2*1*1": "an extra number",
             "24": "24 alone", "24*1": "24 times one", "24*1*1*1": "four numbers, not these",
             "(4*3*2*1)+(5-5)": "extra numbers that cancel"}
    for text, why in cases.items():
        assert value(parse(text)) == 24, why  # without the multiset check each would pass
        score = _score(nums, text)
        assert (score.reward, score.reason, score.info) == (0.0, "wrong", "numbers do not match"), why


def test_reasoning_gyms_count_and_range_check_would_accept_other_numbers():
    text, nums = "4*3*2*1", (1, 1, 5, 5)
    used = [int(n) for n in re.findall(r"\b\d+\b", text)]
    assert len(used) == 4 and all(1 <= n <= 10 for n in used) and value(parse(text)) == 24
    assert _score(nums, text).reward == 0.0


def test_unary_minus_is_not_part_of_the_grammar():
    nums = (1, 1, 5, 6)
    assert -(1 - 5) * 6 * 1 == 24 and sorted([1, 5, 6, 1]) == list(nums)  # a unary-minus parser would accept
    for text in ["-(1-5)*6*1", "6*1*-(1-5)", "--6*(5-1)*1"]:
        assert _score(nums, text).reason == "unparsable"
    assert _score(nums, "(5-1)*6*1").reward == 1.0


def test_division_by_zero_is_wrong_not_a_crash():
    with pytest.raises(ZeroDivisionError):  # what a plain Fraction evaluator would do with these
        Fraction(24) / (4 - 4)
    cases = [((3, 4, 4, 8), "8*3/(4-4)"), ((3, 3, 8, 8), "(8-8)/(3-3)"), ((1, 4, 4, 8), "8/(4/4-1)")]
    for nums, text in cases:
        assert value(parse(text)) is None
        score = _score(nums, text)
        assert (score.reward, score.reason, score.info) == (0.0, "wrong", "division by zero"), text


def test_python_only_syntax_is_unparsable_even_where_python_gives_24():
    assert 4**2 + 8 * 1 == 24 and (8 // 3) * 12 * 1 == 24  # what Python's eval would say
    assert _score((1, 2, 4, 8), "4**2+8*1").reason == "unparsable"
    assert _score((1, 3, 8, 12), "(8//3)*12*1").reason == "unparsable"
    for text in ["__import__('os').system('true')", "24 if True else 0", "int('24')"]:
        assert _score((1, 2, 3, 4), text).reason == "unparsable"


def test_non_ascii_digits_are_unparsable():
    text = "\u0664*\u0663*\u0662*\u0661"  # Arabic-Indic 4*3*2*1
    assert [int(c) for c in text.split("*")] == [4, 3, 2, 1]  # what int() would read
    assert re.fullmatch(r"\d(\*\d)*", text)  # and a tokenizer matching \d would accept
    assert _score((1, 2, 3, 4), text).reason == "unparsable"
    assert _score((1, 2, 3, 4), "\uff14*3*2*1").reason == "unparsable"  # fullwidth 4


def test_exact_arithmetic_accepts_what_float64_gets_wrong_and_rejects_near_misses():
    assert 8 / (3 - 8 / 3) != 24  # float64: 23.99999999999999...
    assert _score((3, 3, 8, 8), "8/(3-8/3)").reward == 1.0
    assert _score((3, 3, 8, 8), "23.99999").reason == "unparsable"
    near = value(parse("13*13/7*1"))  # 24.142...: a 1% tolerance would accept it
    assert abs(float(near) - 24) < 0.24 and near != 24
    assert _score((1, 7, 13, 13), "13*13/7*1").info == "wrong value"


def test_long_and_deeply_nested_input_is_bounded(monkeypatch):
    deep = "(" * 5000 + "24" + ")" * 5000
    assert _score((1, 2, 3, 4), deep).reason == "unparsable"
    nested = "(" * (p24.MAX_DEPTH + 1) + "4" + ")" * (p24.MAX_DEPTH + 1) + "*3*2*1"
    assert len(nested) < p24.MAX_CHARS
    assert _score((1, 2, 3, 4), nested).info == f"more than {p24.MAX_DEPTH} nested parentheses"
    assert _score((1, 2, 3, 4), "(" * p24.MAX_DEPTH + "4" + ")" * p24.MAX_DEPTH + "*3*2*1").reward == 1.0
    assert _score((1, 2, 3, 4), "4*3*2*1" + "+0" * 200).info.startswith("longer than")
    monkeypatch.setattr(p24, "MAX_CHARS", 10**6)  # without the bounds the same input blows the stack
    monkeypatch.setattr(p24, "MAX_DEPTH", 10**6)
    with pytest.raises(RecursionError):
        parse(deep)


def test_reasons_and_answer_tags():
    task = p24.Puzzle24Task()
    assert _score((1, 2, 3, 4), "").reason == "no_answer"
    assert _score((1, 2, 3, 4), "(1+3)*(2+4)\nmore").answer == "(3+1)*(4+2)"
    assert _score((1, 2, 3, 4), "4*3*2+1").info == "wrong value"
    worded = task.for_chat()
    assert worded.prompt == "worded" and p24.Puzzle24Task(prompt="compact").for_chat().prompt == "compact"
    assert _score((1, 2, 3, 4), "4*3*2*1", worded).reason == "no_tag"
    assert _score((1, 2, 3, 4), "Think. <answer>4*3*2*1</answer>", worded).reward == 1.0
    assert _score((1, 2, 3, 4), "<answer></answer>", worded).reason == "no_answer"


# ---------------------------------------------------------------- problems, splits, prompts, cache


def _fake_rows(monkeypatch, limit=14):
    rows = [{"numbers": list(m), "solutions": solutions(m)}
            for m in itertools.combinations_with_replacement(range(1, limit), 4) if solutions(m)]
    monkeypatch.setattr(p24.Puzzle24Task, "_rows", lambda self: rows)
    return rows


def test_splits_are_disjoint_stable_and_validation_leaves_test_alone(monkeypatch):
    rows = _fake_rows(monkeypatch, limit=10)
    plain = get_task("puzzle24")
    with_val = get_task("puzzle24,validation_fraction=0.1")
    assert isinstance(plain, Task)
    tr, va, te = (with_val.problems(s) for s in ("train", "validation", "test"))
    ids = [{p.id for p in s} for s in (tr, va, te)]
    assert not ids[0] & ids[1] and not ids[0] & ids[2] and not ids[1] & ids[2]
    assert sum(map(len, ids)) == len(rows) and va and plain.problems("validation") == []
    assert {p.id for p in plain.problems("test")} == ids[2]  # test does not depend on validation
    assert {p.id for p in plain.problems("train")} == ids[0] | ids[1]
    assert 0.1 < len(te) / len(rows) < 0.3
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        plain.problems("dev")


def test_prompts_use_only_builtin_tokens_and_fit_the_context(monkeypatch):
    from ladtrain.models import TinySpec, build_tokenizer

    _fake_rows(monkeypatch)
    tok = build_tokenizer()
    task = p24.Puzzle24Task()
    problems = task.problems("train") + task.problems("test")
    widest = max(problems, key=lambda p: len(p.prompt))
    assert widest.prompt.count(" ") == 5 and len(widest.prompt) <= 18
    for p in problems:
        ids = tok(p.prompt, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids and len(ids) + 16 <= TinySpec().max_positions
        assert p.prompt == " ".join(map(str, p.meta["numbers"])) + " -> 24\n"
        assert p.meta["solutions"] and all(len(s) <= p24.MAX_ANSWER_CHARS for s in p.meta["solutions"])
        sol_ids = tok(max(p.meta["solutions"], key=len), add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in sol_ids and len(sol_ids) + 1 <= 16
    worded = task.for_chat().problems("test")[0]
    assert "<answer></answer>" in worded.prompt
    assert ", ".join(map(str, worded.meta["numbers"])) in worded.prompt


def test_generated_problems_are_distinct_solvable_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("LADTRAIN_CACHE", str(tmp_path))
    task = get_task("puzzle24,draws=40")
    problems = task.problems("train") + task.problems("test")
    assert 20 < len(problems) <= 40
    keys = [tuple(sorted(p.meta["numbers"])) for p in problems]
    assert len(set(keys)) == len(keys) and all(1 <= n <= 13 for k in keys for n in k)
    for p in problems:
        assert p.meta["solutions"] == solutions(p.meta["numbers"]) and p.meta["n_answers"] >= 1
    (cache_file,) = (tmp_path / "puzzle24").glob("*.json")
    rows = json.loads(cache_file.read_text())
    cache_file.write_text(json.dumps(rows[:5]))  # the cache is what the next task reads
    assert len(get_task("puzzle24,draws=40").problems("train")) + len(
        get_task("puzzle24,draws=40").problems("test")) == 5


def test_bad_options_are_task_errors():
    for spec, match in [("puzzle24,max_value=14", "max_value=14"), ("puzzle24,prompt=long", "prompt"),
                        ("puzzle24,test_fraction=0.6,validation_fraction=0.5", "test_fraction"),
                        ("puzzle24:3", "takes no argument"), ("puzzle24,foo=1", "unknown option 'foo'")]:
        with pytest.raises(TaskError, match=match):
            get_task(spec)


@pytest.mark.slow
def test_default_task_has_enough_test_and_validation_problems_with_many_answers():
    """Generates the default task (minutes, once per cache); the numbers of the module docstring."""
    task = get_task("puzzle24,validation_fraction=0.11")
    assert len(task.problems("test")) >= 200 and len(task.problems("validation")) >= 100
    stats = p24.answer_stats(task)
    assert stats["share_ge2"] > 0.7 and stats["mean"] > 3 and stats["longest_solution_chars"] <= 15
