"""JSONL math task: answer extraction, math-verify equivalence, per-line validation of the data."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ladtrain.tasks import TaskError, get_task, parse_spec, score_all
from ladtrain.tasks.math_jsonl import equivalent, extract_boxed, extract_hash, extract_last_number

DATA = Path(__file__).resolve().parents[1] / "data"


# ------------------------------------------------------------------ extraction


def test_extract_boxed_takes_the_last_box_with_nested_braces():
    text = r"first \boxed{1} then $\boxed{\frac{\sqrt{2}}{2}}$ done"
    assert extract_boxed(text) == r"\frac{\sqrt{2}}{2}"
    assert extract_boxed(r"\boxed 7.") == "7."
    assert extract_boxed(r"\fbox{x^{2}}") == "x^{2}"
    assert extract_boxed(r"unbalanced \boxed{1 + {2}") is None
    assert extract_boxed("no box 5") is None


def test_extract_hash_takes_the_line_after_the_last_marker():
    assert extract_hash("work\n#### 1,000\nextra") == "1,000"
    assert extract_hash("#### 3 #### 4") == "4"
    assert extract_hash("no marker 12") is None


def test_extract_last_number_handles_signs_decimals_and_separators():
    assert extract_last_number("costs 3 apples, total -1,250.5.") == "-1250.5"
    assert extract_last_number("x = .5") == ".5"
    assert extract_last_number("none here") is None


# ------------------------------------------------------------------ equivalence


@pytest.mark.parametrize("gold, pred", [
    (r"\frac{1}{2}", "0.5"),
    (r"2\sqrt{2}", r"\sqrt{8}"),
    (r"x^2+2x+1", r"(x+1)^2"),
    ("2,500", "2500"),
    (r"\dfrac{3}{4}", "0.75"),
])
def test_math_verify_accepts_equivalent_forms(gold, pred):
    assert equivalent(gold, pred) is True


@pytest.mark.parametrize("gold, pred", [
    (r"\frac{1}{2}", "0.6"),
    (r"2\sqrt{2}", r"\sqrt{6}"),
    (r"x^2+2x+1", r"(x-1)^2"),
    ("29", "-29"),
])
def test_math_verify_rejects_wrong_answers(gold, pred):
    assert equivalent(gold, pred) is False


def test_equivalence_from_a_worker_thread_uses_the_timeout_safe_helper():
    # math-verify's own timeout uses SIGALRM, which raises in a non-main thread; ours must still answer.
    out = []
    threads = [threading.Thread(target=lambda g=g, p=p: out.append((g, p, equivalent(g, p))))
               for g, p in ((r"\frac{1}{2}", "0.5"), ("3", "4"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(out) == sorted([(r"\frac{1}{2}", "0.5", True), ("3", "4", False)])


# ------------------------------------------------------------------ the task on real-format files


def test_gsm8k_format_scores_hash_and_last_number_answers():
    task = get_task(f"jsonl:{DATA / 'gsm8k_style.jsonl'},test_every=0")
    probs = task.problems("train")
    assert [p.reference for p in probs] == ["29", "150", "2,500", "0.5"]
    good = ["36 - 7 = 29\n#### 29", "It goes 150 km.", r"\boxed{2500}", r"$\frac{1}{2}$ is \boxed{\frac12}"]
    bad = ["#### 28", "150.5 km", "2,499", "the answer is 5"]
    assert [s.reward for s in score_all(task, probs, good)] == [1.0, 1.0, 1.0, 1.0]
    assert [s.reward for s in score_all(task, probs, bad)] == [0.0, 0.0, 0.0, 0.0]


def test_math_format_uses_boxed_references_with_nested_braces():
    task = get_task(f"jsonl:{DATA / 'math_style.jsonl'},prompt_field=problem,answer_field=solution,"
                    "extract=boxed,test_every=0")
    probs = task.problems("train")
    assert probs[3].reference == r"\frac{\sqrt{\frac{1}{4}}}{1}"
    assert probs[0].meta == {"level": "Level 1"}
    good = [r"\boxed{\sqrt{8}}", r"\boxed{0.5}", r"\boxed{(x+1)^2}", r"\boxed{\frac{1}{2}}"]
    assert [s.reward for s in score_all(task, probs, good)] == [1.0, 1.0, 1.0, 1.0]
    # extract=boxed: an unboxed right number is not accepted
    score = task.score(probs[1], "the answer is 0.5")
    assert score.reward == 0.0 and score.reason == "no_tag" and "no \\boxed{}" in score.info


def test_splits_are_disjoint_and_cover_the_file():
    task = get_task(f"jsonl:{DATA / 'gsm8k_style.jsonl'},test_every=2")
    train, test = task.problems("train"), task.problems("test")
    assert {p.id for p in train}.isdisjoint({p.id for p in test})
    assert len(train) + len(test) == 4 and len(test) == 2


def test_a_broken_json_line_is_rejected_with_its_line_number():
    path = DATA / "math_broken_line.jsonl"
    with pytest.raises(TaskError) as err:
        get_task(f"jsonl:{path}")
    assert str(err.value).startswith(f"{path}:3: invalid JSON")
    assert "\n" not in str(err.value)


def test_a_missing_field_is_rejected_with_its_line_number():
    path = DATA / "math_missing_field.jsonl"
    with pytest.raises(TaskError, match=rf"^{path}:3: missing field 'answer'$"):
        get_task(f"jsonl:{path}")


def test_every_line_is_validated_and_the_count_of_bad_lines_reported(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "a", "answer": "1"}\n[1, 2]\n{"question": "", "answer": "2"}\n'
                    '{"question": "c", "answer": "no number"}\n')
    with pytest.raises(TaskError) as err:
        get_task(f"jsonl:{path},extract=boxed,reference_extract=last_number")
    assert str(err.value) == f"{path}:2: expected a JSON object, got list (and 2 more bad lines)"


@pytest.mark.parametrize("spec, message", [
    ("jsonl", "give a file"),
    ("jsonl:/nonexistent/x.jsonl", "/nonexistent/x.jsonl: no such file"),
    ("jsonl:{data}/gsm8k_style.jsonl,extract=regex", "unknown extract='regex'"),
    ("jsonl:{data}/gsm8k_style.jsonl,answer_fields=x", "unknown option 'answer_fields'"),
    ("jsonl:{data}/gsm8k_style.jsonl,test_every=many", "test_every='many' must be a number"),
    ("jsonl:{data}/gsm8k_style.jsonl,answer_field", "expected KEY=VALUE"),
])
def test_bad_specs_give_one_line_errors(spec, message):
    with pytest.raises(TaskError, match=message.replace("(", r"\(")):
        get_task(spec.format(data=DATA))


def test_spec_options_are_typed():
    assert parse_spec("jsonl:a/b:c.jsonl,test_every=3,timeout=2.5,x=true,y=none,z=word") == (
        "jsonl", "a/b:c.jsonl", {"test_every": 3, "timeout": 2.5, "x": True, "y": None, "z": "word"})
    assert parse_spec("humaneval,workers=2") == ("humaneval", None, {"workers": 2})


def test_a_pathological_comparison_ends_within_its_timeout_in_main_and_worker_threads():
    import time

    gold, pred = r"2^{2^{2^{30}}}", "3"  # without a timeout sympy would grind on this for hours
    t0 = time.monotonic()
    assert equivalent(gold, pred, timeout=1) in (False, None)
    assert time.monotonic() - t0 < 10
    out = []
    t0 = time.monotonic()
    worker = threading.Thread(target=lambda: out.append(equivalent(gold, pred, timeout=1)))
    worker.start()
    worker.join(timeout=60)
    assert out and out[0] in (False, None)
    assert time.monotonic() - t0 < 30  # includes starting the helper process (imports sympy)
