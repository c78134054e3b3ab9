"""The sandbox's ordinary behaviour: judged verdicts and their reasons, whole programs, limits, isolation
facts, the worker pool, and the pieces (value codec, mountinfo names, seccomp assembler, uid ranges,
cgroup fallback) on their own."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import pytest

from ladtrain.sandbox import Limits, Sandbox, SandboxError, cgroups, clean, isolation_mode, seccomp, uids
from ladtrain.sandbox.boot import unescape
from ladtrain.sandbox.box import verdict_reason
from ladtrain.sandbox.values import NotPlain, decode, encode

# LAD_REQUIRE_SANDBOX=1 (for CI) turns the skip into a failure where isolation is missing
needs_sandbox = pytest.mark.skipif(isolation_mode() is None and os.environ.get("LAD_REQUIRE_SANDBOX") != "1",
                                   reason="no isolation on this machine (needs root or user namespaces)")
ADD_TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"


@pytest.fixture(scope="module")
def sandbox():
    return Sandbox(Limits(wall_s=3.0), workers=2)


# -- the value codec -------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [None, True, 0, -7, 10**30, 1.5, -0.0, math.inf, "é\n\x00", b"\x00\xff",
                                   1 + 2j, [1, [2]], (1, (2,)), (), {"a": (1,), 2: [3]}, {1, 2},
                                   frozenset({3}), {(1, 2): {4}}, 7**5000, -(7**5000)])
def test_plain_values_round_trip_exactly(value):
    back = decode(encode(value))
    assert back == value and type(back) is type(value)
    if type(value) is not int:  # (repr of an int over 4300 digits is refused by Python itself)
        assert repr(back) == repr(value)


def test_nan_round_trips():
    assert math.isnan(decode(encode(math.nan)))


class FakeInt(int):
    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


@pytest.mark.parametrize("value", [FakeInt(3), [1, FakeInt(2)], {"k": object()}, (x for x in ()), print,
                                   type("S", (str,), {})("x")])
def test_anything_else_is_not_plain(value):
    with pytest.raises(NotPlain):
        encode(value)


@pytest.mark.parametrize("text", ['{"t": 1}', '{"x": [1]}', '{"t": [1], "s": [2]}', "NaN", '{"f": "1e400"}',
                                  '{"d": [[1]]}', '{"c": ["a", 1]}', "[" * 5000 + "]" * 5000])
def test_decoding_rejects_what_encode_never_writes(text):
    with pytest.raises((ValueError, RecursionError)):
        decode(text)


# -- harness-owned text ----------------------------------------------------------------------------------
def test_clean_removes_control_characters_but_keeps_lines():
    assert clean("a\x1b[2Jb\tc\r\nd\x07\x9b") == "a[2Jb\tc\nd"


def test_verdict_reasons_are_the_harness_words_only():
    assert verdict_reason({"v": "pass"}) == (True, "passed", False)
    p, reason, err = verdict_reason({"v": "fail", "why": "raised", "exc": "ValueError"})
    assert (p, err) == (False, False) and reason == "failed: the program raised ValueError"
    forged = verdict_reason({"v": "fail", "why": "sandbox setup failed"})
    assert forged[1:] == ("judge error: no verdict", True)
    assert verdict_reason({"v": "uncheckable", "type": "function"})[2] is True


def test_mountinfo_names_are_decoded():
    assert unescape(r"/tmp/with\040space\011tab\134back") == "/tmp/with space\ttab\\back"
    assert unescape("/plain") == "/plain"


# -- seccomp assembler -----------------------------------------------------------------------------------
@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the filter exists on x86-64 only")
def test_seccomp_filter_is_well_formed_classic_bpf():
    code = seccomp.filter_bytes()
    assert len(code) % 8 == 0 and 40 < len(code) // 8 < 256
    assert {"unshare", "setns", "keyctl", "memfd_create", "setsid", "mount"} <= set(seccomp.DENIED)


# -- uid ranges ------------------------------------------------------------------------------------------
_PROBE = ("import sys, time; sys.path.insert(0, {root!r})\n"
          "from ladtrain.sandbox.uids import UidPool\n"
          "p = UidPool({fixed}); print(p.acquire(), flush=True); time.sleep(1.5)\n")


@pytest.mark.parametrize("fixed, distinct", [("", True), ("990000", False)])
def test_two_trainer_processes_get_disjoint_uid_ranges(fixed, distinct):
    """Two live processes claim different slots; the old fixed pool (``fixed``) would give both the
    same uids: the test shows the difference."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = _PROBE.format(root=root, fixed=fixed)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    first = [int(p.stdout.readline()) for p in procs]
    for p in procs:
        p.wait()
    ranges = [range(u, u + uids.RANGE) if distinct else range(u, u + 8) for u in first]
    overlap = set(ranges[0]) & set(ranges[1])
    assert (not overlap) == distinct, first


# -- cgroups ---------------------------------------------------------------------------------------------
def test_cgroup_backend_is_known_or_states_its_fallback():
    kind, where = cgroups.backend()
    assert kind in ("v2", "v1", "none")
    if kind == "none":
        assert isinstance(where, str) and where  # the reason, shown in the docs' fallback
    elif kind == "v1":
        assert set(where) == {"memory", "pids", "cpu"}


# -- judged verdicts -------------------------------------------------------------------------------------
@needs_sandbox
def test_judge_passes_a_right_function_and_fails_a_wrong_one(sandbox):
    assert sandbox.judge("def add(a, b):\n    return a + b\n", "add", "", ADD_TEST).reason == "passed"
    r = sandbox.judge("def add(a, b):\n    return a - b\n", "add", "", ADD_TEST)
    assert not r.passed and not r.error and r.reason == "failed: AssertionError in the test (line 2)"


@needs_sandbox
@pytest.mark.parametrize("body, reason", [
    ("def add(a, b):\n    raise ValueError('sandbox setup failed')\n",
     "failed: the program raised ValueError"),
    ("def add(a, b):\n    return (x for x in ())\n",
     "failed: the program returned a value that is not a plain value"),
    ("def add(a, b):\n    import os; os._exit(0)\n", "failed: the program exited or died during a call"),
    ("def add(a, b):\n    raise SystemExit(0)\n", "failed: the program exited or died during a call"),
    ("import sys\nsys.exit(0)\n", "failed: the program did not load or define the function"),
    ("def other():\n    pass\n", "failed: the program did not load or define the function (KeyError)"),
    ("def add(a, b):\n    return a + b\n1 / 0\n", "failed: the program did not load or define the function "
                                                  "(ZeroDivisionError)"),
])
def test_judge_reasons_name_what_happened_in_the_harness_words(sandbox, body, reason):
    r = sandbox.judge(body, "add", "", ADD_TEST)
    assert (r.passed, r.error, r.reason) == (False, False, reason)


@needs_sandbox
def test_judge_names_the_cpu_limit_when_it_kills_the_program():
    busy = "def add(a, b):\n    while True:\n        pass\n"
    r = Sandbox(Limits(wall_s=20.0, cpu_s=1)).judge(busy, "add", "", ADD_TEST)
    reason = "failed: the program was killed by SIGXCPU (CPU limit)"
    assert (r.passed, r.error, r.reason) == (False, False, reason)


@needs_sandbox
def test_judge_keeps_tuples_sets_and_exceptions_the_tests_expect(sandbox):
    test = ("def check(c):\n    assert c([3, 1]) == (1, 3)\n    assert c([]) == ()\n"
            "    try:\n        c(None)\n    except TypeError:\n        pass\n"
            "    else:\n        assert False\n")
    assert sandbox.judge("def f(xs):\n    return tuple(sorted(xs))\n", "f", "", test).passed
    assert not sandbox.judge("def f(xs):\n    return sorted(xs or [])\n", "f", "", test).passed


@needs_sandbox
def test_judge_writes_in_place_changes_back_and_uses_the_prompts_helpers(sandbox):
    prelude = "def helper(x):\n    return 2 * x\n\ndef f(xs):\n    '''doc'''\n"
    test = ("def check(c):\n    xs = [3, 1, 2]\n    c(xs)\n    assert xs == [1, 2, 3]\n"
            "    assert helper(2) == 4\n")
    assert sandbox.judge(prelude + "    xs.sort()\n", "f", prelude, test).passed
    assert not sandbox.judge(prelude + "    return sorted(xs)\n", "f", prelude, test).passed


@needs_sandbox
def test_a_test_passing_a_function_cannot_be_checked_and_says_so(sandbox):
    r = sandbox.judge("def f(g):\n    return g(1)\n", "f", "", "def check(c):\n    assert c(abs) == 1\n")
    assert r.error and not r.passed and r.reason.startswith("cannot check: the test passes a")


# -- whole programs --------------------------------------------------------------------------------------
@needs_sandbox
def test_a_correct_program_runs_to_its_end_and_its_output_comes_back(sandbox):
    r = sandbox.run("print(6 * 7)")
    assert r.passed and r.reason == "passed" and r.stdout == "42\n"


@needs_sandbox
def test_a_failing_program_reports_its_exit_and_keeps_its_text_out_of_the_reason(sandbox):
    r = sandbox.run("assert 1 + 1 == 3, 'arithmetic'")
    assert not r.passed and r.reason == "exit status 1" and "AssertionError: arithmetic" in r.stderr


@needs_sandbox
def test_the_program_runs_without_privilege_in_a_minimal_root(sandbox):
    code = (
        "import os, json\n"
        "st = os.statvfs('.')\n"
        "caps = open('/proc/self/status').read().split('CapEff:')[1].split()[0]\n"
        "print(json.dumps({'cwd': os.getcwd(), 'files': os.listdir('.'), 'root': sorted(os.listdir('/')),\n"
        "                  'env': sorted(os.environ), 'size': st.f_blocks * st.f_frsize, 'caps': caps,\n"
        "                  'dev': sorted(os.listdir('/dev')),\n"
        "                  'procs': [p for p in os.listdir('/proc') if p.isdigit()]}))\n"
    )
    info = json.loads(sandbox.run(code).stdout)
    assert info["cwd"] == "/tmp/work" and info["files"] == [] and int(info["caps"], 16) == 0
    assert info["env"] == ["HOME", "LANG", "PATH"]
    assert info["procs"] == ["1", "2"]  # its own pid namespace: the boot process (init) and the program
    assert info["size"] == sandbox.limits.tmpfs_mb << 20
    assert not {"work", "root", "home", "run", "var", "sys", "mnt", "opt"} & set(info["root"]), info["root"]
    assert info["dev"] == ["fd", "full", "null", "random", "shm", "stderr", "stdin", "stdout", "urandom",
                           "zero"]


@needs_sandbox
def test_two_runs_do_not_share_files(sandbox):
    assert sandbox.run("open('left_behind', 'w').write('x')").passed
    r = sandbox.run("import os; assert not os.path.exists('left_behind'), 'file survived'")
    assert r.passed, r.stderr


@needs_sandbox
def test_a_slow_program_is_stopped_at_the_wall_limit():
    r = Sandbox(Limits(wall_s=1.0)).run("import time; time.sleep(30)")
    assert not r.passed and r.reason == "timeout after 1s"


@needs_sandbox
def test_cpu_limit_kills_a_busy_program_before_a_long_wall_limit():
    r = Sandbox(Limits(wall_s=20.0, cpu_s=1)).run("while True:\n    pass")
    assert not r.passed and r.reason == "killed by SIGXCPU (CPU limit)"


@needs_sandbox
def test_file_size_limit(sandbox):
    r = sandbox.run("open('big', 'wb').write(b'x' * (32 << 20))")
    assert not r.passed and "File too large" in r.stderr, r


@needs_sandbox
def test_worker_pool_keeps_order_and_runs_in_parallel():
    box = Sandbox(Limits(wall_s=5.0), workers=4)
    codes = [f"import time; time.sleep(0.5); print({i})" for i in range(8)]
    t0 = time.monotonic()
    results = box.run_many(codes)
    elapsed = time.monotonic() - t0
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(8)]
    assert all(r.passed for r in results)
    assert elapsed < 8 * 0.5  # serial would take at least 4 s


@needs_sandbox
def test_a_sandbox_that_cannot_start_its_interpreter_is_an_error_not_a_verdict():
    box = Sandbox(Limits(wall_s=3.0), python="/nonexistent/python3")
    assert box.run("print(1)").error
    r = box.judge("def add(a, b):\n    return a + b\n", "add", "", ADD_TEST)
    assert not r.passed and r.error


@needs_sandbox
def test_a_program_cannot_fake_a_sandbox_failure(sandbox):
    for code in ("import os\nos._exit(97)", "import os\nos.write(2, b'fail x')\nos._exit(97)"):
        r = sandbox.run(code)
        assert not r.passed and not r.error, r
    r = sandbox.judge("import os\nos.write(2, b'sandbox setup failed')\nos._exit(97)\n", "add", "", ADD_TEST)
    assert not r.passed and not r.error and r.reason == "failed: the program exited or died during a call"


def test_userns_mode_is_refused_as_root_where_it_would_map_to_the_hosts_root():
    if os.geteuid() != 0:
        pytest.skip("only root is refused")
    with pytest.raises(SandboxError, match="for unprivileged callers"):
        Sandbox(mode="userns")


@needs_sandbox
def test_no_network_and_no_inherited_environment(monkeypatch):
    monkeypatch.setenv("LAD_MODE_SECRET", "x")
    code = (
        "import os, socket\n"
        "assert 'LAD_MODE_SECRET' not in os.environ\n"
        "names = socket.if_nameindex()\n"
        "try:\n"
        "    socket.create_connection(('127.0.0.1', 9), timeout=1)\n"
        "except OSError as e:\n"
        "    print(e.errno, names)\n"
    )
    r = Sandbox(Limits(wall_s=5.0)).run(code)
    assert r.passed, r.stderr
    errno, _, names = r.stdout.strip().partition(" ")
    assert int(errno) == 101 and names == "[(1, 'lo')]"  # ENETUNREACH: only a downed loopback exists


def test_cgroup_v2_run_group_writes_its_limits_and_is_removed(tmp_path, monkeypatch):
    """The v2 code path against a directory standing in for a delegated cgroup2 parent (this machine's
    cgroup2 has no memory/pids/cpu controllers, so the kernel side is not exercised here)."""
    monkeypatch.setitem(cgroups._BACKEND, "b", ("v2", str(tmp_path)))
    group = cgroups.RunGroup.create(100 << 20, 10)
    (d,) = group.dirs
    written = {f: (tmp_path / d / f).read_text() for f in ("memory.max", "pids.max", "cpu.weight")}
    assert written == {"memory.max": str(100 << 20), "pids.max": "10", "cpu.weight": "100"}
    assert group.procs == [os.path.join(d, "cgroup.procs")]
    for f in os.listdir(d):  # a real cgroup directory empties itself; the stand-in must be emptied
        os.remove(os.path.join(d, f))
    group.remove()
    assert not os.path.exists(d)
