"""Faults during training (ladtrain.faults): each has one defined behaviour, counted in the metrics.

Unit tests drive :class:`ladtrain.faults.Faults` directly; the run tests drive the real trainer on the
tiny configuration and read the run folder."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, replace

import pytest
import torch

from ladtrain import checkpoint, cli, faults, losses, models, trainer
from ladtrain.config import TrainConfig
from ladtrain.rewards import with_reward
from ladtrain.rollout import Rollout, completion_mask
from ladtrain.tasks.base import Problem, Score

PROBLEMS = [Problem(f"p{i}", f"{i} -> {i}\n", str(i)) for i in range(4)]


@dataclass(frozen=True)
class ScriptedTask:
    """Scores a completion by its text: 'raise' raises, 'nan'/'inf' return them, 'none' returns None."""

    name: str = "scripted"

    def problems(self, split):
        return PROBLEMS

    def score(self, problem, completion):
        if completion == "raise":
            raise ZeroDivisionError("scorer bug")
        table = {"nan": math.nan, "inf": math.inf, "none": None}
        return Score(table.get(completion, float(len(completion))), completion)


def quiet() -> faults.Faults:
    f = faults.Faults()
    f.warned.update(faults.COUNTERS + ("prompts_too_long",))  # unit tests check counts, not warnings
    return f


# --------------------------------------------------------------------------------------------------
# rewards


def test_reward_that_raises_nan_inf_or_none_on_a_sample_leaves_only_that_sample_unscored():
    f = faults.Faults()
    with pytest.warns(faults.FaultWarning) as record:
        scores = f.score(ScriptedTask(), PROBLEMS * 2, ["ab", "raise", "nan", "inf", "none", "abc", "", "x"])
    assert [str(w.message).split(" (")[0] for w in record] == ["reward_errors: ZeroDivisionError: scorer bug",
                                                               "reward_invalid: reward nan"]  # once per kind
    assert [s.reward for s in scores] == [2.0, None, None, None, None, 3.0, 0.0, 1.0]
    assert f.row() == {**dict.fromkeys(faults.COUNTERS, 0), "reward_errors": 1, "reward_invalid": 2}
    assert f.fatal is None


def test_batched_user_reward_that_raises_is_rescored_per_sample_to_find_the_bad_ones():
    calls = []

    def reward(prompts, completions, **kw):
        calls.append(len(completions))
        if "boom" in completions:
            raise KeyError("boom")
        return [math.nan if c == "nan" else 0.5 for c in completions]

    f = quiet()
    scores = f.score(with_reward(ScriptedTask(), reward), PROBLEMS, ["ok", "boom", "nan", "ok"])
    assert [s.reward for s in scores] == [0.5, None, None, 0.5]
    assert calls == [4, 1, 1, 1, 1]  # the batch, then one sample at a time
    assert (f.step["reward_errors"], f.step["reward_invalid"]) == (1, 1) and f.fatal is None


def test_a_batch_failure_that_no_single_sample_reproduces_stops_the_run():
    def wrong_length(prompts, completions, **kw):  # a bug, not bad data: it must not be papered over
        return [1.0]

    f = quiet()
    scores = f.score(with_reward(ScriptedTask(), wrong_length), PROBLEMS, ["a", "b", "c", "d"])
    assert len(scores) == 4
    assert f.fatal and "returned 1 rewards for 4 completions" in f.fatal and "\n" not in f.fatal


def test_no_scorable_sample_on_fault_limit_consecutive_steps_stops_the_run():
    f = quiet()
    for step in range(1, faults.FAULT_LIMIT + 1):
        assert f.fatal is None
        f.begin_step()
        f.score(ScriptedTask(), PROBLEMS, ["raise", "nan", "none", "raise"])
    assert f.fatal.startswith(f"no sample could be scored on {faults.FAULT_LIMIT} consecutive steps")
    g = quiet()  # a step with one scorable sample resets the count
    for completions in (["raise"] * 4, ["raise"] * 4, ["ok"] + ["raise"] * 3, ["raise"] * 4, ["raise"] * 4):
        g.score(ScriptedTask(), PROBLEMS, completions)
    assert g.fatal is None and g.failed_reward_steps == 2


# --------------------------------------------------------------------------------------------------
# rollouts and updates


def test_empty_truncated_and_equal_reward_groups_are_counted():
    eos = 1
    ids = torch.tensor([[1, 0, 0], [5, 6, 1], [5, 6, 7], [1, 1, 0]])  # empty, ends with EOS, truncated, empty
    mask = completion_mask(ids, eos)  # (B, T)
    f = quiet()
    rollout = Rollout(ids[:, :0], ids[:, :0], ids, mask, ["", "ab", "abc", ""], group_size=2)
    f.rollout(rollout, eos, torch.tensor([1.0, 1.0, 0.0, 1.0]))
    assert (f.step["empty_completions"], f.step["truncated"], f.step["zero_adv_groups"]) == (2, 1, 1)


def test_non_finite_update_is_skipped_and_fault_limit_in_a_row_stop_the_run():
    f = quiet()
    mask = torch.ones(2, 3).sum()  # trained tokens
    assert f.update_ok(torch.tensor(0.5), torch.tensor(1.0), mask)
    assert not f.update_ok(torch.tensor(math.nan), torch.tensor(1.0), mask)
    assert not f.update_ok(torch.tensor(0.5), torch.tensor(math.inf), mask)
    assert f.update_ok(torch.tensor(0.5), torch.tensor(1.0), mask) and f.failed_updates == 0  # reset
    assert not f.update_ok(
        torch.tensor(0.5), torch.tensor(1.0), torch.zeros(2, 3).sum()
    )  # nothing to train on
    assert f.step["skipped_updates"] == 3 and f.fatal is None
    for _ in range(faults.FAULT_LIMIT):
        f.update_ok(torch.tensor(math.inf), torch.tensor(math.nan), mask)
    assert f.fatal and "non-finite on 3 consecutive updates" in f.fatal


def test_a_fatal_fault_on_one_process_stops_every_process():
    from ladtrain.distributed import World

    ranks = [quiet(), quiet()]
    ranks[1].fatal = "no sample could be scored on 3 consecutive steps"
    flags = [float(f.fatal is not None) for f in ranks]
    for f in ranks:
        f.agree(lambda value, world: sum(flags), World(rank=0, size=2))
    assert ranks[0].fatal.startswith("another process stopped") and ranks[1].fatal.startswith("no sample")
    alone = quiet()
    alone.agree(lambda value, world: 1 / 0, World())  # one process: no collective at all
    assert alone.fatal is None


def test_prompts_longer_than_the_context_are_dropped_and_counted():
    tok = models.build_tokenizer()
    short, long_ = Problem("s", "1 2 -> 3\n"), Problem("l", "1 " * 30 + "-> 3\n")  # 8 and 35 characters
    kept, dropped = models.fitting_prompts([short, long_, short], tok, context=40, max_new_tokens=8)
    assert kept == [short, short] and dropped == 1
    kept, dropped = models.fitting_prompts([short, long_], tok, context=None, max_new_tokens=8)
    assert dropped == 0


# --------------------------------------------------------------------------------------------------
# whole runs


def run_config(tmp_path, tiny, **kw) -> TrainConfig:
    return replace(TrainConfig(), out=str(tmp_path / "run"), device="cpu", threads=1,
                   **{**tiny, "checkpoint_every": 1, "keep_checkpoints": 10, "keep_resumable": True,
                      **kw}).validate()


def rows_of(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_run_with_a_faulty_reward_function_completes_and_counts_every_fault(
    cache, tmp_path, tiny, monkeypatch
):
    seen = {"calls": 0}

    def flaky(prompts, completions, **kw):
        seen["calls"] += 1
        if seen["calls"] % 3 == 0:
            raise RuntimeError("flaky service")
        return [[math.nan, math.inf, None, 1.0][(i + seen["calls"]) % 4] for i in range(len(completions))]

    monkeypatch.setattr(trainer, "load_task", lambda cfg: with_reward(trainer.get_task(cfg.task), flaky))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = trainer.train(run_config(tmp_path, tiny, steps=4))
    rows = rows_of(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for kind in ("reward_errors", "reward_invalid"):
        assert sum(r[kind] for r in rows) == summary["faults"][kind] > 0
        assert any(isinstance(w.message, faults.FaultWarning) and kind in str(w.message) for w in caught)
    assert all(r["unscored"] >= r["reward_errors"] + r["reward_invalid"] for r in rows)
    assert all(math.isfinite(r["loss"]) for r in rows)


def test_one_non_finite_loss_skips_that_update_only(cache, tmp_path, tiny, monkeypatch):
    real = losses.get("lad")
    calls = {"n": 0}

    def nan_on_second(x, hp):
        calls["n"] += 1
        loss, terms = real(x, hp)
        return (loss * math.nan if calls["n"] == 2 else loss), terms

    monkeypatch.setattr(losses, "get", lambda spec: replace(real, fn=nan_on_second))
    varied = lambda prompts, completions, **kw: [len(set(c)) / 8 for c in completions]  # noqa: E731
    monkeypatch.setattr(trainer, "load_task", lambda cfg: with_reward(trainer.get_task(cfg.task), varied))
    with pytest.warns(faults.FaultWarning, match="skipped_updates: non-finite loss nan"):
        summary = trainer.train(run_config(tmp_path, tiny, steps=3, lr=1e-2))
    rows = rows_of(tmp_path / "run")
    assert [r["skipped_updates"] for r in rows] == [0, 1, 0] and summary["faults"]["skipped_updates"] == 1
    from safetensors.torch import load_file

    w = [load_file(checkpoint.step_folder(tmp_path / "run", s) / "model.safetensors") for s in (1, 2, 3)]
    assert all(torch.equal(w[0][n], w[1][n]) for n in w[0])  # step 2 changed nothing
    assert any(not torch.equal(w[1][n], w[2][n]) for n in w[0])  # step 3 trained again (varied rewards)


def test_a_loss_that_stays_non_finite_stops_with_one_line_exit_1_and_a_checkpoint(cache, tmp_path, tiny,
                                                                                  monkeypatch, capsys):
    real = losses.get("lad")
    monkeypatch.setattr(losses, "get", lambda spec: replace(
        real, fn=lambda x, hp: (real(x, hp)[0] * math.inf, real(x, hp)[1])))
    argv = [
        "train",
        *[f"--{k.replace('_', '-')}={v}" for k, v in tiny.items() if k != "progress"],
        "--no-progress",
        "--out",
        str(tmp_path / "run"),
        "--steps",
        "10",
        "--checkpoint-every",
        "100",
        "--threads",
        "1",
    ]
    with pytest.warns(faults.FaultWarning, match="skipped_updates"):
        assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "error: step 3: the loss or gradient was non-finite on 3 consecutive"
    )
    assert "Traceback" not in err[0]
    run = tmp_path / "run"
    assert [r["skipped_updates"] for r in rows_of(run)] == [1, 1, 1]
    saved = checkpoint.complete_checkpoints(run)
    assert [p.name for p in saved] == ["step-000003"]  # saved on the fault although --checkpoint-every 100
    checkpoint.verify(saved[0])


def test_prompts_longer_than_the_context_never_reach_the_model(cache, tmp_path, tiny, monkeypatch):
    real_task = trainer.get_task("countdown")
    long_prompt = "1 " * 40 + "-> 2\n"  # 85 characters: more than the built-in model's 64 positions

    @dataclass(frozen=True)
    class WithLongPrompts:
        name: str = "countdown+long"

        def problems(self, split):
            base = list(real_task.problems(split))
            return [replace(p, id=f"long{i}", prompt=long_prompt) for i, p in enumerate(base[:3])] + base

        def score(self, problem, completion):
            assert problem.prompt != long_prompt
            return real_task.score(problem, completion)

    monkeypatch.setattr(trainer, "load_task", lambda cfg: WithLongPrompts())
    with pytest.warns(faults.FaultWarning, match="prompts_too_long"):
        summary = trainer.train(run_config(tmp_path, tiny, steps=2))
    assert summary["faults"]["prompts_too_long"] == 6  # 3 in each split


def test_one_token_completions_are_each_empty_or_truncated(cache, tmp_path, tiny):
    summary = trainer.train(run_config(tmp_path, tiny, steps=2, max_new_tokens=1))
    B = tiny["prompts_per_step"] * tiny["group_size"]
    for r in rows_of(tmp_path / "run"):
        assert r["empty_completions"] + r["truncated"] == B and math.isfinite(r["loss"])
        assert 0 <= r["zero_adv_groups"] <= tiny["prompts_per_step"]
    assert summary["faults"]["truncated"] > 0
