"""Attacks on the pass verdict itself, each run for real twice: through the code task (the trusted judge:
must score 0) and through the unprotected path, a verdict produced inside the process that runs the
candidate (``Sandbox.run`` of ``prompt + completion + test + check(...)``, the design before the judge:
must pass), so each test shows the attack works where the protection is missing.

The problem is ``add`` of tests/data/code_small.jsonl; every completion is *wrong* (it returns None)
and then tries to forge a pass.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from ladtrain.sandbox import Limits, Sandbox, isolation_mode
from ladtrain.tasks import get_task
from ladtrain.tasks.code import program

pytestmark = pytest.mark.skipif(isolation_mode() is None and os.environ.get("LAD_REQUIRE_SANDBOX") != "1",
                                reason="no isolation on this machine (needs root or user namespaces)")
DATA = Path(__file__).resolve().parents[1] / "data"
WRONG = "    return None\n\n\n"


@pytest.fixture(scope="module")
def task():
    return get_task(f"code_jsonl:{DATA / 'code_small.jsonl'},timeout=5,workers=2,test_every=0")


def in_process_verdict(task, completion: str) -> bool:
    """The unprotected verdict: tests and candidate in one process, pass = it printed the run's token
    after its end."""
    p = task.problems("train")[0]
    text = f"{program(p, completion)}\n\n{p.reference['test']}\n\ncheck({p.reference['entry_point']})\n"
    return Sandbox(Limits(wall_s=5.0)).run(text).passed


def judged(task, completion: str):
    return task.score(task.problems("train")[0], completion)


# each attack, after a wrong function, at module level of the candidate's program
ATTACKS = {
    "patch os._exit": """
        import os
        os._exit = lambda status: None
    """,
    "token from the callers' frames": """
        import os, re, sys
        f = sys._getframe()
        while f is not None:
            for v in list(f.f_locals.values()):
                if isinstance(v, dict) and isinstance(v.get("token"), str):
                    os.write(1, ("\\n" + v["token"] + "\\n").encode())
                    os._exit(0)
            f = f.f_back
    """,
    "token by walking a traceback": """
        import os
        try:
            raise RuntimeError
        except RuntimeError as e:
            frame = e.__traceback__.tb_frame
        while frame is not None:
            for v in list(frame.f_locals.values()):
                if isinstance(v, dict) and isinstance(v.get("token"), str):
                    os.write(1, ("\\n" + v["token"] + "\\n").encode())
                    os._exit(0)
            frame = frame.f_back
    """,
    "token from inspect.stack()": """
        import inspect, os
        for info in inspect.stack():
            for v in list(info.frame.f_locals.values()):
                if isinstance(v, dict) and isinstance(v.get("token"), str):
                    os.write(1, ("\\n" + v["token"] + "\\n").encode())
                    os._exit(0)
    """,
    "token by scanning /proc/self/mem": """
        import os, re
        pattern = re.compile(rb"(?<![0-9a-f])([0-9a-f]{32})(?![0-9a-f])")  # a token's shape
        with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
            for line in maps:
                span, perms = line.split()[:2]
                if not perms.startswith("rw"):
                    continue
                lo, hi = (int(x, 16) for x in span.split("-"))
                try:
                    mem.seek(lo)
                    found = pattern.search(mem.read(hi - lo))
                except (OSError, ValueError, OverflowError):
                    continue
                if found:
                    os.write(1, b"\\n" + found.group(1) + b"\\n")
                    os._exit(0)
    """,
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_forging_the_pass_works_in_process_and_fails_against_the_judge(task, name):
    completion = WRONG + textwrap.dedent(ATTACKS[name])
    assert in_process_verdict(task, completion), f"{name}: the attack no longer works unprotected"
    score = judged(task, completion)
    assert score.reward == 0.0, (name, score)


def test_attack_an_int_whose_equality_is_always_true(task):
    completion = ("    class Yes(int):\n        def __eq__(self, other):\n            return True\n"
                  "        __hash__ = int.__hash__\n    return Yes(0)\n")
    assert in_process_verdict(task, completion)
    score = judged(task, completion)
    assert score.reward == 0.0
    assert score.info == "failed: the program returned a value that is not a plain value"


def test_attack_patching_builtins_and_the_harness_module_changes_nothing(task):
    completion = WRONG + textwrap.dedent("""
        import builtins, sys
        builtins.AssertionError = type("Never", (BaseException,), {})
        sys.modules["json"] = None
    """)
    score = judged(task, completion)
    assert score.reward == 0.0


def test_attack_exiting_with_status_zero_before_or_during_the_calls(task):
    for completion in (WRONG + "import sys\nsys.exit(0)\n", "    import os\n    os._exit(0)\n",
                       "    raise SystemExit(0)\n"):
        score = judged(task, completion)
        assert score.reward == 0.0, (completion, score)


def test_the_expected_values_never_enter_the_sandbox(task):
    """The old harness ran the test text in the candidate's process, so a completion could read the
    expected answers from its own source; now the test text stays in the judge."""
    completion = textwrap.dedent("""
        import sys
        f, seen = sys._getframe(), []
        while f is not None:
            seen += [repr(v) for v in f.f_globals.values()] + [repr(v) for v in f.f_locals.values()]
            f = f.f_back
        needle = "candidate(2, " + "3)"  # a line of the test, spelled so that this text does not hold it
        assert not any(needle in s for s in seen), "found the test"
        return a + b
    """).replace("\n", "\n    ")
    completion = "    " + completion.strip() + "\n"
    assert judged(task, completion).reward == 1.0
    assert not in_process_verdict(task, completion)  # in-process, the test text is there to read
