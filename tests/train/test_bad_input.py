"""The bad inputs that once escaped the one-line-error promise, by name: each is now one line
``error: --flag: ...`` (or ``error: FILE...``), exit code 2, and nothing is written to ``--out``. The
property test over every field of every command is ``tests/test_options.py``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from ladtheory.options import shown
from ladtrain import cli, preflight
from ladtrain.config import EvalConfig, TrainConfig


def one_line(capsys) -> str:
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    return err[0]


def test_a_negative_max_grad_norm_is_refused_because_it_would_flip_the_gradient(capsys, tmp_path):
    # the hazard: torch's clip with a negative norm multiplies the gradient by a negative factor
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([2.0, 4.0])
    torch.nn.utils.clip_grad_norm_([p], -1.0)
    assert (p.grad < 0).all()
    assert cli.main(["train", "--max-grad-norm", "-1", "--out", str(tmp_path / "run")]) == 2
    assert one_line(capsys).startswith("error: --max-grad-norm: must be >= 0")
    assert not (tmp_path / "run").exists()
    assert cli.parse_config(["--max-grad-norm", "0"]).max_grad_norm == 0.0  # 0 = off, documented


@pytest.mark.parametrize(
    "argv, start",
    [
        (["--weight-decay", "nan"], "error: --weight-decay: must be a number, not nan (got nan)"),
        (["--seed", "-1"], "error: --seed: must be in [0, 4294967295]"),
        (["--eta", "inf"], "error: --eta: must be finite (got inf)"),
        (["--temperature", "1e308"], "error: --temperature: must be in [0.01, 100]"),
        (["--threads", "100000"], "error: --threads: must be in [0, "),
        (["--steps", "1.5"], "error: --steps: expected an integer (got '1.5')"),
    ],
)
def test_out_of_domain_values_named_in_the_issue(capsys, tmp_path, argv, start):
    assert cli.main(["train", *argv, "--out", str(tmp_path / "run")]) == 2
    assert one_line(capsys).startswith(start)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flag", [["--top-p", "0.9"], ["--top-k", "5"]])
def test_inverse_cdf_draws_with_a_truncated_sampler_are_refused(capsys, tmp_path, flag):
    """--top-p and --top-k sample through generate, which draws generate's way: the flag cannot hold."""
    argv = ["train", "--sampler-draws", "inverse-cdf", *flag, "--out", str(tmp_path / "run")]
    assert cli.main(argv) == 2
    line = one_line(capsys)
    assert line.startswith("error: --sampler-draws: inverse-cdf draws from the full policy;")
    assert flag[0] in line
    assert not (tmp_path / "run").exists()
    assert cli.parse_config(["--sampler-draws", "generate", *flag]).sampler_draws == "generate"  # control


@pytest.mark.skipif(torch.cuda.device_count() > 7, reason="this machine has a cuda:7")
def test_a_cuda_device_this_machine_lacks_is_refused(capsys, tmp_path):
    assert cli.main(["train", "--device", "cuda:7", "--out", str(tmp_path / "run")]) == 2
    line = one_line(capsys)
    assert line.startswith("error: --device: this machine has") and "(got 'cuda:7')" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "content, words",
    [
        (bytes(range(256)) * 8, "is not UTF-8 text"),
        (b"steps: 2\x00\n", "holds a NUL byte"),
        (b"- steps\n- 2\n", "expected a mapping of option: value"),
        (b"steps: [2\n", "not valid YAML"),
        (b"steps: 2\nsteps: 3\n", "steps is given twice"),
        (b"model: " + b"x" * 5_000_000 + b"\n", "model: longer than 10000 characters"),
    ],
)
def test_a_config_file_must_be_utf8_text_holding_a_mapping(capsys, tmp_path, content, words):
    path = tmp_path / "run.yaml"
    path.write_bytes(content)
    assert cli.main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    line = one_line(capsys)
    assert words in line and str(path) in line
    assert len(line) < 400, len(line)  # a 5 MB value is shown in at most ~80 characters
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "body", ["raise SystemExit(0)", "raise KeyboardInterrupt", "import no_such_module_x"]
)
def test_a_reward_module_that_exits_on_import_is_one_line_and_trains_nothing(capsys, tmp_path, body):
    module = tmp_path / "bad_reward.py"
    module.write_text(
        body + "\n\ndef reward(prompts, completions, **kw):\n    return [0.0] * len(completions)\n"
    )
    code = cli.main(
        ["train", "--reward", f"{module}:reward", "--out", str(tmp_path / "run"), "--no-progress"]
    )
    assert code == 2
    line = one_line(capsys)
    assert line.startswith("error: --reward: cannot import") and line.endswith(
        f"(got {shown(f'{module}:reward')})"
    )
    assert any(name in line for name in ("SystemExit", "KeyboardInterrupt", "ModuleNotFoundError")), line
    assert not (tmp_path / "run").exists()


def test_a_reward_module_exiting_on_import_gives_exit_2_in_a_subprocess(tmp_path):
    (tmp_path / "exits.py").write_text("raise SystemExit(0)\n")
    proc = subprocess.run(
        [sys.executable, "-m", "ladtrain", "train", "--reward", "exits:f", "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])},
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "cannot import exits: SystemExit" in proc.stderr and not (tmp_path / "run").exists()


def test_a_rollout_that_cannot_fit_in_memory_is_refused_naming_the_flags(capsys, tmp_path):
    assert cli.main(["train", "--prompts-per-step", "1000000000000", "--out", str(tmp_path / "run")]) == 2
    line = one_line(capsys)
    assert line.startswith("error: --prompts-per-step: the rollout's tensors need at least")
    assert "--group-size" in line and "--max-new-tokens" in line and "(got 1000000000000)" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "flag, value",
    [("--lora-r", 10**9), ("--warmup-batch", 10**9), ("--max-new-tokens", 10**9), ("--group-size", 10**8)],
)
def test_other_batches_that_cannot_fit_are_refused_naming_their_flag(capsys, tmp_path, flag, value):
    assert cli.main(["train", flag, str(value), "--out", str(tmp_path / "run")]) == 2
    line = one_line(capsys)
    assert line.startswith(f"error: {flag}: ") or f"{flag}" in line, line
    assert "need at least" in line and not (tmp_path / "run").exists()


def test_an_evaluation_that_cannot_fit_in_memory_is_refused(capsys, tmp_path):
    assert cli.main(["train", "--eval-samples", str(10**10), "--out", str(tmp_path / "run")]) == 2
    assert one_line(capsys).startswith("error: --eval-samples: the evaluation's tensors need at least")
    assert cli.main(["eval", "--k", str(10**10), "--out", str(tmp_path / "e.json")]) == 2
    assert one_line(capsys).startswith("error: --k: the evaluation's tensors need at least")
    assert not (tmp_path / "run").exists() and not (tmp_path / "e.json").exists()


def test_ten_million_eval_samples_are_sampled_in_calls_of_at_most_eval_batch_sequences():
    """The issue's case (a 286 GB allocation after 57 s) came from sampling ``chunk`` prompts x
    ``samples`` sequences in one call. The chunked evaluator (``ladtrain.eval_sampling``) caps a call at
    ``--eval-batch`` sequences, and the bound counts that call (not 10M sequences at once)."""
    phases = {p: what for p, _, what, _ in preflight.estimate(TrainConfig(eval_samples=10_000_000))}
    assert phases["evaluation's tensors"].startswith("512 sequences per sampling call")
    phases = {p: what for p, _, what, _ in preflight.estimate(TrainConfig(eval_samples=10_000_000,
                                                                          eval_batch=64))}
    assert phases["evaluation's tensors"].startswith("64 sequences per sampling call")


def test_the_memory_bound_is_a_lower_bound_of_the_real_model_and_passes_the_defaults(tmp_path):
    from ladtrain import models

    tok = models.build_tokenizer()
    model = models.build_tiny_model(tok)
    real = sum(p.numel() for p in model.parameters())
    assert preflight.model_size("builtin").parameters == real
    models.save(model, tok, tmp_path / "hf")
    size = preflight.model_size(str(tmp_path / "hf"))
    assert 0.97 * real <= size.parameters <= real  # norms are not counted: a lower bound
    for cfg in (TrainConfig(), EvalConfig()):
        phases = preflight.estimate(cfg)
        assert phases and all(need < 2**30 for _, need, _, _ in phases)  # the default run: far below 1 GiB
        preflight.check_memory(cfg)
    one = dict((p, n) for p, n, _, _ in preflight.estimate(TrainConfig(group_size=64)))
    four = dict((p, n) for p, n, _, _ in preflight.estimate(TrainConfig(group_size=64, grad_accumulation=4)))
    assert four["update's tensors"] < one["update's tensors"]
    assert four["rollout's tensors"] == one["rollout's tensors"]


def test_a_model_folder_without_the_fields_is_not_estimated(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text('{"model_type": "custom"}')
    assert preflight.model_size(str(tmp_path / "m")) is None
    assert preflight.estimate(TrainConfig(model=str(tmp_path / "m"))) == []


def test_bad_input_in_a_subprocess_is_exit_2_and_one_line(tmp_path):
    for argv in (
        ["-m", "ladtrain", "train", "--max-grad-norm", "-1"],
        ["-m", "ladtheory", "bandit", "--out", str(tmp_path / "b"), "--eta", "nan"],
    ):
        proc = subprocess.run(
            [sys.executable, *argv], capture_output=True, text=True, cwd=tmp_path, timeout=300
        )
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith("error: --") and not (tmp_path / "b").exists()


def test_onednn_products_without_onednn_are_refused(capsys, tmp_path, monkeypatch):
    """--linear-kernels onednn on a torch build without oneDNN's linear product: one line, exit 2, nothing
    written; an unknown library is refused by the flag's choices. Control: with oneDNN the flag holds."""
    from ladtrain import onednn_linears

    monkeypatch.setattr(onednn_linears, "available", lambda: False)
    argv = ["train", "--linear-kernels", "onednn", "--out", str(tmp_path / "run")]
    assert cli.main(argv) == 2
    line = one_line(capsys)
    assert line.startswith("error: --linear-kernels: onednn needs oneDNN's linear product")
    assert not (tmp_path / "run").exists()
    assert cli.main(["train", "--linear-kernels", "fast", "--out", str(tmp_path / "run")]) == 2
    assert "--linear-kernels" in one_line(capsys) and not (tmp_path / "run").exists()
    monkeypatch.setattr(onednn_linears, "available", lambda: True)
    assert cli.parse_config(["--linear-kernels", "onednn"]).linear_kernels == "onednn"  # control
    assert cli.parse_config([]).linear_kernels == "auto"
