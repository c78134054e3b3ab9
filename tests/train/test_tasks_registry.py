"""The task registry and the spec grammar."""

from __future__ import annotations

import importlib

import pytest

from ladtrain.tasks import TASKS, TaskError, get_task, parse_spec, parse_value


def test_every_registry_entry_names_an_importable_factory():
    for name, target in TASKS.items():
        module_name, factory = target.split(":")
        assert callable(getattr(importlib.import_module(module_name), factory)), name


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(
        TaskError,
        match=r"unknown task 'nope:x'; known: code_jsonl, countdown, gsm8k, hf, humaneval, jsonl, "
        r"math, parquet, puzzle24",
    ):
        get_task("nope:x")


@pytest.mark.parametrize("text, value", [
    ("3", 3), ("-2", -2), ("0.25", 0.25), ("1e-3", 1e-3), ("true", True), ("False", False),
    ("none", None), ("boxed", "boxed"), ("data/x.jsonl", "data/x.jsonl"),
])
def test_spec_values_are_typed(text, value):
    assert parse_value(text) == value and type(parse_value(text)) is type(value)


def test_spec_grammar_name_arg_and_options():
    assert parse_spec("countdown") == ("countdown", None, {})
    assert parse_spec("countdown:3") == ("countdown", "3", {})
    assert parse_spec("reasoning_gym:leg_counting,size=5,seed=2") == (
        "reasoning_gym", "leg_counting", {"size": 5, "seed": 2})
    with pytest.raises(TaskError, match="expected KEY=VALUE"):
        parse_spec("humaneval,=3")


def test_keyword_options_override_the_spec_string():
    task = get_task("reasoning_gym:leg_counting,size=9,test_size=2", size=4)
    assert len(task.problems("train")) == 4


def test_an_unknown_keyword_option_of_any_factory_is_a_task_error():
    with pytest.raises(TaskError, match=r"^task spec 'countdown,foo=1': unknown option 'foo'$"):
        get_task("countdown,foo=1")
