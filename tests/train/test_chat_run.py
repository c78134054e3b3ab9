"""Whole runs on a chat model built in code (no download): the run folder says what the model saw, wrote
and was rewarded for, and why.

Each run is a few seconds: the chat model is tiny and untrained, so what it writes is noise, which is the
case a researcher needs to see through (no answer format found, cut at max_new_tokens, ...).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import pytest

from ladtrain import prompts, samples_log, trainer
from ladtrain.chat_model import DEFAULT_SYSTEM, save_chat_model
from ladtrain.config import TrainConfig
from ladtrain.dead_run import NoSignalWarning
from ladtrain.faults import TrainingFault
from ladtrain.models import load
from ladtrain.tasks import REASONS

DATA = Path(__file__).resolve().parents[1] / "data"
GSM = DATA / "gsm8k_style.jsonl"


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    return str(save_chat_model(tmp_path_factory.mktemp("chat") / "tiny-chat"))


def _cfg(tmp_path, chat_model, **kw):
    base = dict(model=chat_model, task=f"jsonl:{GSM},test_every=2", steps=2, prompts_per_step=2, group_size=2,
                eval_samples=2, max_new_tokens=12, progress=False, out=str(tmp_path / "run"), threads=1,
                checkpoint_every=0)
    return replace(TrainConfig(), **{**base, **kw}).validate()


def test_samples_hold_the_templated_prompt_instruction_and_system_prompt(tmp_path, chat_model):
    cfg = _cfg(tmp_path, chat_model, system_prompt="Answer briefly.", log_samples="all")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = trainer.train(cfg)
    run = Path(cfg.out)
    recs = samples_log.read(run / "samples.jsonl")
    _, tok = load(chat_model)
    train_recs = [r for r in recs if r["kind"] == "train"]
    evals = {r["eval"] for r in recs if r["kind"] == "eval"}
    assert evals == {"base", "trained"} and len(train_recs) == 2 * 2 * 2  # all: steps x prompts x G
    n_eval = summary["eval_problems"] * 2
    assert sum(r["eval"] == "base" for r in recs) == n_eval == sum(r["eval"] == "trained" for r in recs)
    problems = {p.id: p for p in trainer.load_task(cfg).for_chat().problems("train")}
    problems.update({p.id: p for p in trainer.load_task(cfg).for_chat().problems("test")})
    for r in recs:
        p = problems[r["problem_id"]]
        assert r["prompt"] == prompts.render(tok, p.prompt, "Answer briefly.")  # the template's output
        assert "\n\nReason step by step, then give the final answer in \\boxed{}." in r["prompt"]
        assert "<|im_start|>system\nAnswer briefly.<|im_end|>" in r["prompt"]
        assert DEFAULT_SYSTEM not in r["prompt"]
        assert r["reason"] in REASONS
        if r["truncated"]:
            assert r["reason"] == "truncated" and r["reward"] == 0.0 and r["answer"] is None
    assert any(r["truncated"] for r in recs)  # 12 tokens of noise: some are cut
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for row in metrics:
        counts = {k.split("/", 1)[1]: v for k, v in row.items() if k.startswith("reasons/")}
        assert sum(counts.values()) == 2 * 2 and set(counts) <= set(REASONS)
    totals = summary["reasons"]["train"]
    assert sum(totals.values()) == 2 * 2 * 2
    assert sum(summary["reasons"]["trained_eval"].values()) == n_eval
    assert summary["rewards"] == [{"name": "task", "spec": "task", "weight": 1.0}]


def test_a_task_whose_answers_never_parse_warns_and_can_stop_the_run(tmp_path, chat_model):
    """extract=hash on noise: no completion has ``####`` (cut ones are scored too here, the old policy)."""
    task = f"jsonl:{GSM},test_every=2,extract=hash"
    cfg = _cfg(tmp_path, chat_model, steps=3, task=task, truncation="score")
    with pytest.warns(NoSignalWarning, match="no learning signal.*Reasons: no_tag 12.*Likely cause: no comp"):
        summary = trainer.train(cfg)
    assert summary["no_signal"].startswith("no learning signal")
    stop = _cfg(tmp_path, chat_model, steps=3, task=task, truncation="score", stop_on_no_signal=True,
                out=str(tmp_path / "stop"), checkpoint_every=1)
    with pytest.raises(TrainingFault, match="no learning signal"):
        trainer.train(stop)


def test_the_held_out_metric_ignores_a_shaped_training_reward(tmp_path, chat_model):
    """A reward that pays 2 for every completion: accuracy from it would be 1; the verifier's is ~0."""
    reward = tmp_path / "shaped.py"
    reward.write_text("def always(prompts, completions, **kw):\n    return [2.0] * len(completions)\n")
    cfg = _cfg(tmp_path, chat_model, reward=[f"{reward}:always", "task"], reward_weights="1,0.5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = trainer.train(cfg)
    assert summary["trained"]["accuracy"] < 0.5 and summary["base"]["accuracy"] < 0.5
    metrics = [json.loads(line) for line in (Path(cfg.out) / "metrics.jsonl").read_text().splitlines()]
    assert all(row["rewards/always/mean"] == 2.0 for row in metrics)
    assert all(row["reward_mean"] == pytest.approx(2.0 + 0.5 * row["rewards/task/mean"]) for row in metrics)
    assert [r["name"] for r in summary["rewards"]] == ["always", "task"]
