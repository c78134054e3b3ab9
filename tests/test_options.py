"""Every option of every command, against its declared domain (:mod:`ladtheory.options`): for each field a
property test draws values outside the domain (exit 2, one ``error: --flag: ...`` line on stderr, nothing
written to ``--out``) and values inside it (parsed and validated to that very value). The commands are
called in process through their own parse-and-validate function (``cli.parse_config``, ``cli.parse_eval``,
``compare.parse``, ``bandit.parse``) and their ``main`` (for the exit code and stderr); a domain kind this
file cannot draw from fails the test, so a new kind must come with its strategies. The same outside
values in a ``--config`` file are refused naming ``FILE:LINE: key``."""

from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import fields

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ladtheory import bandit, flags, options
from ladtheory.options import Choice, Flag, Int, Listed, Real, Repeated, Several, Text
from ladtheory.options import Path as PathDomain
from ladtrain import cli, compare
from ladtrain.config import Device, EvalConfig, TrainConfig
from ladtrain.study import CompareConfig, Seeds

LOSSES = [
    "lad",
    "lad:js",
    "lad:kl",
    "lad:tv",
    "lad:alpha:0.5",
    "grpo",
    "dr_grpo",
    "dapo",
    "gspo",
    "flowrl",
    "ladw:js",
]
TEXT_INSIDE = {  # fields whose domain is a registry lookup: values the registry accepts
    "loss": st.sampled_from(LOSSES),
    "task": st.sampled_from(["countdown", "countdown:3", "humaneval", "jsonl:x.jsonl"]),
    "reward": st.from_regex(r"[a-z]{1,6}(\.[a-z]{1,6})?:[a-z_]{1,8}", fullmatch=True)
    | st.sampled_from(["task", "overlong", "overlong:8"]),
    "reward_weights": st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=3).map(
        lambda xs: ",".join(repr(x) for x in xs)),
    "log_samples": st.sampled_from(["0", "4", "17", "all", "ALL"]),
    "reference": st.sampled_from(["grpo", "lad:js", "grpo/u4"]),
    "divergences": st.sampled_from(["js", "kl", "rkl", "tv", "hellinger", "alpha:0.5"]),
    "baselines": st.sampled_from(["grpo", "flowrl"]),
    "losses": st.sampled_from(LOSSES),
    "eval_task": st.sampled_from(["countdown", "small=countdown:3", "gsm=jsonl:x.jsonl,test_every=0"]),
}
TEXT_OUTSIDE = {
    "loss": st.sampled_from(["ppo", "lad:nope", "grpo:3", "lad:alpha:1"]),
    "task": st.sampled_from(["nope", "gym:x", "countdown,=1"]),
    "reward": st.sampled_from(
        ["nocolon", "mod:", "missing_file.py:f", "mod:not-an-identifier", "overlong:0"]),
    "reward_weights": st.sampled_from(["x", "1,a", "inf", "1,nan"]),
    "log_samples": st.sampled_from(["-1", "some", "1.5"]),
    "divergences": st.sampled_from(["nope", "alpha:1", "js2"]),
    "baselines": st.sampled_from(["ppo", "lad"]),
    "losses": st.sampled_from(["ppo", "lad:nope"]),
    "eval_task": st.sampled_from(["nope", "held_out=countdown", "x=", "x=gym:y", "nope:x=1"]),
}
JUNK = st.sampled_from(["", " ", "x", "1.5.2", "\x07", "[]"])


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("options")
    (root / "hf").mkdir()
    (root / "hf" / "config.json").write_text("{}")
    (root / "no-config").mkdir()
    (root / "a-file").write_text("x")
    (root / "run").mkdir()
    (root / "run" / "config.json").write_text(json.dumps(TrainConfig().to_dict()))
    return root


def _number(x: float) -> str:
    return repr(float(x))


def inside(name: str, domain: options.Domain, paths) -> st.SearchStrategy:
    """``(text on the command line, the typed value the config must then hold)``."""
    if isinstance(domain, Real):
        lo = domain.gt if domain.gt is not None else domain.ge
        hi = domain.lt if domain.lt is not None else domain.le
        xs = st.floats(
            min_value=lo if lo is not None else -1e6,
            max_value=hi if hi is not None else 1e300,
            exclude_min=domain.gt is not None,
            exclude_max=domain.lt is not None,
            allow_nan=False,
            allow_infinity=False,
        )
        return xs.map(lambda x: (_number(x), float(_number(x))))
    if isinstance(domain, Int):
        lo = options._bound(domain.ge) if domain.ge is not None else -(10**6)
        hi = options._bound(domain.le) if domain.le is not None else 10**9
        return st.integers(lo, hi).map(lambda n: (str(n), n))
    if isinstance(domain, Choice):
        return st.sampled_from(domain.values).map(lambda v: (v, v))
    if isinstance(domain, Device):
        import torch

        devices = ["auto", "cpu"] + (["cuda", "cuda:0"] if torch.cuda.is_available() else [])
        return st.sampled_from(devices).map(lambda v: (v, v))
    if isinstance(domain, PathDomain):
        if domain.holding == "config.json" and domain.keywords:
            return st.sampled_from(["builtin", str(paths / "hf")]).map(lambda v: (v, v))
        if domain.holding:
            return st.just((str(paths / "run"), str(paths / "run")))
        if domain.exists and domain.file:  # an existing file (--instruction-file)
            return st.just((str(paths / "a-file"), str(paths / "a-file")))
        folder = [] if domain.file else [str(paths / "hf")]
        return st.sampled_from([str(paths / "new-folder"), "relative/out", *folder]).map(lambda v: (v, v))
    if isinstance(domain, Seeds):
        count = st.integers(1, 6).map(lambda n: (str(n), str(n)))
        listed = st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=4, unique=True)
        return count | listed.map(lambda xs: (",".join(map(str, xs)) + ",",) * 2)
    if isinstance(domain, Listed):
        item = (
            TEXT_INSIDE[name] if name in TEXT_INSIDE else inside(name, domain.item, paths).map(lambda p: p[0])
        )
        return st.lists(item, min_size=1, max_size=3).map(lambda xs: (",".join(xs),) * 2)
    if isinstance(domain, Several):
        lists = st.lists(TEXT_INSIDE[name], max_size=3).map(lambda xs: (",".join(xs) or "none", tuple(xs)))
        return lists
    if isinstance(domain, Repeated):  # one use of the flag: a tuple of one value
        return TEXT_INSIDE[name].map(lambda v: (v, (v,)))
    if isinstance(domain, Text):
        strategy = (
            TEXT_INSIDE[name]
            if name in TEXT_INSIDE
            else st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20)
        )
        # Python 3.11's argparse drops a value that is exactly "--" (`--arms=--` arrives as []; the CLI then
        # says "--arms: expected a string (got [])", one line, exit 2): no flag can carry it
        return strategy.filter(lambda v: v != "--").map(lambda v: (v, v))
    raise AssertionError(f"{name}: no strategy for the domain kind {type(domain).__name__}")


def outside(name: str, domain: options.Domain, paths) -> st.SearchStrategy:
    """Command-line text that is not in the domain."""
    if isinstance(domain, Real):
        bad = [st.just("nan"), st.just("NaN"), JUNK]
        if domain.finite:
            bad += [st.sampled_from(["inf", "-inf", "1e999"])]
        low, high = (
            domain.gt if domain.gt is not None else domain.ge,
            domain.lt if domain.lt is not None else domain.le,
        )
        if low is not None:
            bad.append(
                st.floats(
                    max_value=low, exclude_max=domain.ge is not None, allow_nan=False, allow_infinity=False
                ).map(_number)
            )
        if high is not None:
            bad.append(
                st.floats(
                    min_value=high, exclude_min=domain.le is not None, allow_nan=False, allow_infinity=False
                ).map(_number)
            )
        return st.one_of(bad)
    if isinstance(domain, Int):
        bad = [JUNK, st.sampled_from(["1.5", "1e3", "true", "0x10"])]
        if domain.ge is not None:
            bad.append(st.integers(max_value=options._bound(domain.ge) - 1).map(str))
        if domain.le is not None:
            bad.append(st.integers(min_value=options._bound(domain.le) + 1).map(str))
        return st.one_of(bad)
    if isinstance(domain, Choice):
        return st.text(max_size=12).filter(lambda t: t not in domain.values)
    if isinstance(domain, Flag):
        return st.sampled_from(["maybe", "2", "yes please"])
    if isinstance(domain, Device):
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return st.sampled_from([f"cuda:{n + 7}", "tpu", "cuda:x", "gpu", "", "mps:0"])
    if isinstance(domain, PathDomain):
        bad = [st.just(str(paths / "a-file"))] if domain.folder else []
        bad += [st.just(str(paths / "hf"))] if domain.file else []
        if domain.exists:
            bad += [st.just(str(paths / "no" / "such")), st.just(str(paths / "no-config"))]
        return st.one_of(bad + [st.sampled_from(["", "a\nb"])])
    if isinstance(domain, Seeds):
        return st.sampled_from(["0", "-1", "1,1", "a,b", ",", "2,-3", "4294967296,"])
    if isinstance(domain, Listed):
        if name in TEXT_OUTSIDE:
            return st.lists(TEXT_INSIDE[name], max_size=2).flatmap(
                lambda xs: TEXT_OUTSIDE[name].map(lambda bad: ",".join([*xs, bad]))
            )
        return st.one_of(
            st.just(","), outside(name, domain.item, paths).filter(lambda t: "," not in t and t.strip())
        )
    if isinstance(domain, (Several, Repeated)):
        return TEXT_OUTSIDE[name]
    if isinstance(domain, Text):
        return TEXT_OUTSIDE.get(name, st.sampled_from(["", "  ", "bell\x07", "x" * 20_000]))
    raise AssertionError(f"{name}: no strategy for the domain kind {type(domain).__name__}")


# --------------------------------------------------------------------------------------------------
# The commands: (how to parse argv into the config, how to run main, the config class, fields)


def _train(argv):
    return cli.parse_config(argv)


def _eval(argv):
    return cli.parse_eval(argv)


def _compare(argv):
    study, base = compare.parse(argv)
    return {**{f.name: getattr(study, f.name) for f in fields(study)}, **base.to_dict()}


def _bandit(argv):
    config, command = bandit.parse(argv)
    return {
        **{f.name: getattr(config, f.name) for f in fields(config)},
        "out": command.out,
        "progress": command.progress,
    }


def _iterated_parse(argv):
    """``python -m ladtheory bandit-iterated``'s flags, parsed and validated as its ``main`` does."""
    from ladtheory import bandit_iterated as bi

    parser = flags.Parser(prog="bandit-iterated")
    flags.add_arguments(parser, bi.IteratedCommand)
    flags.add_arguments(parser, bi.IteratedConfig)
    ns = vars(parser.parse_args(argv))
    command = options.validate(bi.IteratedCommand(**flags.values(ns, bi.IteratedCommand)))
    config = bi.IteratedConfig(**flags.values(ns, bi.IteratedConfig))
    return {**{f.name: getattr(config, f.name) for f in fields(config)}, "out": command.out}


def _iterated_main(argv):
    from ladtheory import bandit_iterated as bi

    return bi.main(argv)


def _iterated_classes():
    from ladtheory import bandit_iterated as bi

    return [bi.IteratedCommand, bi.IteratedConfig]


def _value(parsed, name):
    value = parsed[name] if isinstance(parsed, dict) else getattr(parsed, name)
    return tuple(value) if isinstance(value, list) else value  # to_dict writes a tuple as a JSON list


COMMANDS = {
    "train": (_train, lambda argv: cli.main(["train", *argv]), [TrainConfig]),
    "eval": (_eval, lambda argv: cli.main(["eval", *argv]), [EvalConfig]),
    "compare": (_compare, lambda argv: cli.main(["compare", *argv]), [CompareConfig, TrainConfig]),
    "bandit": (_bandit, bandit.main, [bandit.BanditCommand, bandit.BanditConfig]),
    "bandit-iterated": (_iterated_parse, _iterated_main, _iterated_classes()),
}
REFUSED = {("compare", "loss"), ("compare", "seed"), ("compare", "resume")}  # tested below
EXTRA = {("bandit", "reference"): ["--mode=sampled"]}  # rollout needs the sampled mode


def _cases():
    for command, (_, _, classes) in COMMANDS.items():
        seen = set()
        for cls in classes:
            for f in options.declared(cls):
                if f.metadata["cli"] and f.name not in seen and (command, f.name) not in REFUSED:
                    seen.add(f.name)
                    yield pytest.param(command, f, id=f"{command}-{f.name}")


CASES = list(_cases())
FAST = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _base_argv(command, name, out):
    argv = list(EXTRA.get((command, name), []))
    if command in ("bandit", "bandit-iterated") and name != "out":
        argv.append(f"--out={out}")
    elif command in ("train", "compare") and name not in ("out", "resume"):
        argv.append(f"--out={out}")
    elif command == "eval" and name != "out":
        argv.append(f"--out={out}.json")
    return argv


def _arg(f, text: str) -> list[str]:
    if isinstance(f.metadata["domain"], Flag):
        return [options.flag(f.name) if text in ("true", True) else "--no-" + f.name.replace("_", "-")]
    return [f"{options.flag(f.name)}={text}"]


@pytest.mark.parametrize("command, f", CASES)
@FAST
@given(data=st.data())
def test_a_value_outside_the_domain_is_exit_2_one_line_and_writes_nothing(command, f, paths, data):
    parse, main, _ = COMMANDS[command]
    strategy = outside(f.name, f.metadata["domain"], paths)
    if f.metadata["nullable"]:  # "", "none" and "null" are None there, inside the domain
        strategy = strategy.filter(lambda t: t.strip().lower() not in ("", "none", "null"))
    text = data.draw(strategy, label="value")
    out = paths / "never-written"
    argv = [*_base_argv(command, f.name, out), f"{options.flag(f.name)}={text}"]
    before = {p.name: p.read_bytes() for p in paths.iterdir() if p.is_file()}
    with pytest.raises(options.OptionError) as err:
        parse(argv)
    line = str(err.value)
    assert "\n" not in line and line.startswith(options.flag(f.name) + ":"), line
    assert len(line) < 400, len(line)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main(argv)
    lines = stderr.getvalue().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, lines)
    assert not out.exists() and not (paths / "never-written.json").exists()
    assert before == {p.name: p.read_bytes() for p in paths.iterdir() if p.is_file()}


@pytest.mark.parametrize("command, f", CASES)
@FAST
@given(data=st.data())
def test_a_value_inside_the_domain_is_accepted_as_that_value(command, f, paths, data):
    parse, _, _ = COMMANDS[command]
    domain = f.metadata["domain"]
    if isinstance(domain, Flag):
        value = data.draw(st.booleans(), label="value")
        argv = [*_base_argv(command, f.name, paths / "o"), *_arg(f, "true" if value else "false")]
    else:
        text, value = data.draw(inside(f.name, domain, paths), label="value")
        argv = [*_base_argv(command, f.name, paths / "o"), f"{options.flag(f.name)}={text}"]
    parsed = parse(argv)
    got = _value(parsed, f.name)
    if f.name == "resume":  # resuming sets --out to the run folder too
        assert _value(parsed, "out") == value
    if isinstance(value, float):
        assert got == value or (math.isnan(got) and math.isnan(value))
    else:
        assert got == value, (got, value)


def test_every_field_of_every_config_declares_a_domain_and_a_help_that_shows_it():
    for cls in (
        TrainConfig,
        EvalConfig,
        CompareConfig,
        bandit.BanditConfig,
        bandit.BanditCommand,
        *_iterated_classes(),
    ):
        for f in options.declared(cls):  # raises for a field without a domain
            assert f.metadata["help"], f.name
            text = flags.help_text(f)
            described = f.metadata["domain"].describe()
            assert described.replace("%", "%%") in text, (f.name, text)


def test_a_field_without_a_domain_is_refused_at_declaration():
    with pytest.raises(TypeError, match="a Domain is required"):
        options.option(1, "a number")


def test_the_help_of_each_command_shows_each_domain(capsys):
    assert cli.main(["--help"]) == 0
    flat = " ".join(capsys.readouterr().out.split())
    for needle in (
        "[real > 0; default 0.25]",
        "[integer >= 2",
        "[real >= 0 (a negative norm would flip the gradient's sign); default 1.0]",
        "one of token, sequence",
        "auto, cpu, cuda, cuda:N or mps, one this machine has",
        "this machine's CPU cores",
    ):
        assert needle in flat, needle
    with pytest.raises(SystemExit):
        bandit.parser().parse_args(["--help"])
    flat = " ".join(capsys.readouterr().out.split())
    assert "[real in (0, 1); default 0.2]" in flat and "comma-separated divergences" in flat


def test_compare_refuses_the_per_run_loss_seed_and_resume_flags():
    for argv, instead in (
        (["--loss=grpo"], "--losses"),
        (["--seed=3"], "--seeds"),
        (["--resume=x"], "again"),
    ):
        with pytest.raises(options.OptionError, match=instead):
            compare.parse(argv)


def test_check_takes_its_bandit_options_and_defaults_from_the_bandit_config():
    from ladtheory import check

    parser = check.parser()
    by_dest = {a.dest: a for a in parser._actions}
    for name in ("eta", "steps", "mode", "seed"):
        f = options.field_of(bandit.BanditConfig, name)
        assert by_dest[name].help == flags.help_text(f).replace("%%", "%") or by_dest[
            name
        ].help == flags.help_text(f)
        assert getattr(bandit.BanditConfig(), name) == f.default
    assert set(bandit.OPTIMIZERS) == set(
        options.field_of(bandit.BanditConfig, "optimizer").metadata["domain"].values
    )


@pytest.mark.parametrize(
    "value, shown",
    [
        ("short", "'short'"),
        (0.25, "0.25"),
        ("x" * 5_000_000, None),
        ("two\nlines", "'two\\nlines'"),
    ],
)
def test_a_shown_value_is_one_line_of_at_most_80_characters(value, shown):
    text = options.shown(value)
    assert len(text) <= 80 and "\n" not in text
    if shown is not None:
        assert text == shown
    else:
        assert text.endswith("[5000002 chars]")


TRAIN_FIELDS = [pytest.param(f, id=f.name) for f in options.declared(TrainConfig) if f.name != "resume"]


@pytest.mark.parametrize("f", TRAIN_FIELDS)
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_value_outside_the_domain_in_a_config_file_names_the_file_line_and_key(f, paths, data, tmp_path):
    from ladtrain.config import ConfigError, load_yaml

    domain = f.metadata["domain"]
    strategy = (
        st.sampled_from(["maybe", "2", "[1, 2]"])
        if isinstance(domain, Flag)
        else outside(f.name, domain, paths)
    )
    if f.metadata["nullable"]:
        strategy = strategy.filter(lambda t: t.strip().lower() not in ("", "none", "null"))
    text = data.draw(strategy, label="value")
    path = tmp_path / "run.yaml"
    value = text if isinstance(domain, Flag) and text.startswith("[") else json.dumps(text)
    first = "steps: 3" if f.name != "steps" else "seed: 1"
    path.write_text(f"{first}\n{f.name}: {value}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_yaml(path)
    line = str(err.value)
    assert (
        line.startswith(f"{path}:2: {f.name}: ") and "\n" not in line and len(line) < 400 + len(str(path))
    ), line


def test_python_api_only_fields_are_validated_too():
    with pytest.raises(options.OptionError, match=r"^arms: must be in \[2, 1000000\] \(got 1\)$"):
        bandit.BanditConfig(arms=1)
    with pytest.raises(options.OptionError, match="^bumps: expected a non-empty tuple of Bump"):
        bandit.BanditConfig(bumps=())
    with pytest.raises(options.OptionError, match="^bumps: every bump needs"):
        bandit.BanditConfig(bumps=(bandit.Bump(10.0, 0.0, 1.0),))
    with pytest.raises(options.OptionError, match=r"^eta: must be finite \(got inf\)$"):
        bandit.BanditConfig(eta=math.inf)
    with pytest.raises(options.OptionError, match=r"^--eta: must be > 0 \(got -1\)$"):
        TrainConfig(eta=-1).validate()  # the Python API of the trainer's config: the same check
    assert bandit.BanditConfig(arms=2).arms == 2
