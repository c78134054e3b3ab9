"""Answer instructions and system prompts for chat models, on a chat tokenizer built in code."""

from __future__ import annotations

from pathlib import Path

import pytest

from ladtrain import prompts
from ladtrain.chat_model import DEFAULT_SYSTEM, build_chat_tokenizer
from ladtrain.models import build_tokenizer
from ladtrain.tasks import TaskError, get_task, parse_spec
from ladtrain.tasks.gym import INSTRUCTION
from ladtrain.tasks.math_jsonl import INSTRUCTIONS

DATA = Path(__file__).resolve().parents[1] / "data"
GSM = DATA / "gsm8k_style.jsonl"
QUESTION = "Ali has 3 boxes with 12 pens each. He gives away 7 pens. How many pens are left?"


def test_escaped_spec_values_hold_commas_and_newlines():
    name, arg, opts = parse_spec(r"jsonl:a.jsonl,instruction=First\, think.\nThen answer,test_every=3")
    assert (name, arg) == ("jsonl", "a.jsonl")
    assert opts == {"instruction": "First, think.\nThen answer", "test_every": 3}
    assert parse_spec(r"x,a=\boxed{}")[2] == {"a": r"\boxed{}"}  # other backslashes stay
    assert parse_spec(r"x,a=1\\,b=2")[2] == {"a": "1\\", "b": 2}


def test_jsonl_without_chat_template_has_no_instruction_and_the_chat_form_adds_the_matching_one():
    task = get_task(f"jsonl:{GSM},test_every=0")
    assert task.problems("train")[0].prompt == QUESTION
    for extract in ("auto", "boxed", "hash", "last_number"):
        task_e = get_task(f"jsonl:{GSM},test_every=0,extract={extract}")
        chat = prompts.for_model(task_e, build_chat_tokenizer())
        assert chat.problems("train")[0].prompt == QUESTION + "\n\n" + INSTRUCTIONS[extract]
    assert "\\boxed{}" in INSTRUCTIONS["boxed"] and "####" in INSTRUCTIONS["hash"]
    # the built-in tokenizer has no template: the task is left alone
    assert prompts.for_model(task, build_tokenizer()) is task


def test_explicit_instructions_are_separated_from_the_question_and_kept_for_chat_models(tmp_path):
    task = get_task(rf"jsonl:{GSM},test_every=0,instruction=Answer\, then stop.\nUse ####.")
    want = QUESTION + "\n\nAnswer, then stop.\nUse ####."
    assert task.problems("train")[0].prompt == want
    assert prompts.for_model(task, build_chat_tokenizer()).problems("train")[0].prompt == want
    text = tmp_path / "instr.txt"
    text.write_text("Line one, with a comma.\nLine two = \\boxed{}.\n")
    from_file = get_task(f"jsonl:{GSM},test_every=0,instruction_file={text}")
    want = QUESTION + "\n\nLine one, with a comma.\nLine two = \\boxed{}."
    assert from_file.problems("train")[0].prompt == want
    off = get_task(f"jsonl:{GSM},test_every=0,instruction=none")
    assert prompts.for_model(off, build_chat_tokenizer()).problems("train")[0].prompt == QUESTION
    with pytest.raises(TaskError, match="instruction_file=.*cannot read"):
        get_task(f"jsonl:{GSM},instruction_file={tmp_path / 'missing.txt'}")


def test_gym_instruction_follows_a_blank_line_and_can_come_from_a_file(tmp_path):
    task = get_task("reasoning_gym:leg_counting,size=2,test_size=2")
    p = task.problems("train")[0]
    assert p.prompt == p.reference["question"].rstrip() + "\n\n" + INSTRUCTION
    text = tmp_path / "i.txt"
    text.write_text("Answer as <answer>N</answer>, nothing else.")
    spec = f"reasoning_gym:leg_counting,size=2,test_size=2,instruction_file={text}"
    q = get_task(spec).problems("train")[0]
    assert q.prompt == q.reference["question"].rstrip() + "\n\nAnswer as <answer>N</answer>, nothing else."


def test_countdown_chat_form_is_worded_with_the_same_problems():
    compact = get_task("countdown")
    worded = prompts.for_model(compact, build_chat_tokenizer())
    a, b = compact.problems("test"), worded.problems("test")
    assert [p.id for p in a] == [p.id for p in b] and [p.reference for p in a] == [p.reference for p in b]
    assert a[0].prompt.endswith("\n") and " -> " in a[0].prompt
    nums = ", ".join(map(str, b[0].meta["numbers"]))
    assert f"Use the numbers {nums}, each exactly once" in b[0].prompt and "<answer></answer>" in b[0].prompt
    assert f"equals {b[0].meta['target']}." in b[0].prompt
    explicit = get_task("countdown,prompt=compact")
    assert prompts.for_model(explicit, build_chat_tokenizer()) is explicit
    with pytest.raises(TaskError, match="prompt="):
        get_task("countdown,prompt=fancy")


def test_system_prompt_default_none_and_text():
    tok = build_chat_tokenizer()
    default = prompts.render(tok, "Q?")
    assert default == (f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n<|im_start|>user\nQ?<|im_end|>\n"
                       "<|im_start|>assistant\n")
    empty = prompts.render(tok, "Q?", prompts.system_prompt("none"))
    assert DEFAULT_SYSTEM not in empty and empty.startswith("<|im_start|>system\n<|im_end|>\n")
    own = prompts.render(tok, "Q?", prompts.system_prompt("Be brief.\\nOnly numbers."))
    assert own.startswith("<|im_start|>system\nBe brief.\nOnly numbers.<|im_end|>\n<|im_start|>user\nQ?")
    assert prompts.render(build_tokenizer(), "1 2 -> 3\n") == "1 2 -> 3\n"
    with pytest.raises(prompts.PromptError, match="--system-prompt"):
        prompts.render(build_tokenizer(), "x", "Be brief.")
