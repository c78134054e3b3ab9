"""``python -m ladtrain``: flags from the config dataclass, YAML configs, and one-line errors (exit 2)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields

import pytest

from ladtrain import cli
from ladtrain.config import ConfigError, TrainConfig, load_yaml


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--model", "/no/such/model/folder"], "--model"),
        (["--loss", "ppo"], "--loss"),
        (["--loss", "lad:not_a_divergence"], "--loss"),
        (["--eta", "0"], "--eta"),
        (["--eta", "-1"], "--eta"),
        (["--group-size", "1"], "--group-size"),
        (["--level", "word"], "--level"),
        (["--steps", "many"], "--steps"),
        (["--no-such-flag", "1"], "--no-such-flag"),
        (["train", "--task", "nope"], "--task"),
    ],
)
def test_bad_input_is_one_line_naming_the_flag_with_exit_code_2(capsys, cache, argv, flag):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and flag in lines[0], err
    assert "Traceback" not in err


def test_unwritable_output_folder_is_one_line_naming_out(capsys, cache, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, _, err = run_cli(capsys, "--out", str(blocker / "run"), "--steps", "1")
    assert code == 2
    assert err.count("\n") == 1 and "--out" in err and "Traceback" not in err


def test_unknown_command_exits_2(capsys):
    code, _, err = run_cli(capsys, "fly")
    assert code == 2 and "unknown command 'fly'" in err


def test_help_lists_every_config_field_with_its_docstring(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    flat = " ".join(out.split())
    for f in fields(TrainConfig):
        assert "--" + f.name.replace("_", "-") in out
        assert " ".join(f.metadata["help"].split())[:40] in flat
    assert "train" in out  # the command list


def test_yaml_config_then_flags(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("loss: lad:tv\neta: 0.5\nprompts_per_step: 4\nprogress: false\n")
    cfg = cli.parse_config(["--config", str(path), "--eta", "0.75"])
    assert (cfg.loss, cfg.eta, cfg.prompts_per_step, cfg.progress) == ("lad:tv", 0.75, 4, False)


def test_yaml_unknown_key_names_the_key_and_line(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("eta: 0.5\n\nlearning_rate: 1e-4\n")
    with pytest.raises(ConfigError, match=r"run\.yaml:3: unknown key 'learning_rate'"):
        load_yaml(path)
    path.write_text("eta: fast\n")
    with pytest.raises(ConfigError, match=r"run\.yaml:1: eta: expected a number"):
        load_yaml(path)


def test_cli_as_a_subprocess_gives_one_line_and_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ladtrain", "train", "--eta", "-0.5"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --eta: must be > 0 (got -0.5)"


def test_train_accepts_any_local_hf_model_folder(capsys, cache, tmp_path, tiny):
    """``--model PATH``: a folder saved by transformers (here the built-in architecture, untrained)."""
    from ladtrain import models

    tok = models.build_tokenizer()
    models.save(models.build_tiny_model(tok), tok, tmp_path / "hf-model")
    argv = ["train", "--model", str(tmp_path / "hf-model"), "--out", str(tmp_path / "run")]
    for key, value in tiny.items():
        argv += [f"--{key.replace('_', '-')}"] + ([] if value is False else [str(value)])
    argv = [a if a != "--progress" else "--no-progress" for a in argv]
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert (tmp_path / "run" / "summary.json").is_file()
    assert not (cache / "base").exists()  # no warm-up for a user model


def test_max_steps_is_an_alias_of_steps():
    """TRL users type --max-steps; it sets the same field as --steps (one field, one help text)."""
    from ladtrain.cli import parse_config

    assert parse_config(["--max-steps", "1"]).steps == 1
    assert parse_config(["--steps", "3"]).steps == 3
