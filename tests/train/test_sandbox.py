"""The sandbox's ordinary behaviour: pass/fail, reasons, limits, isolation facts, the worker pool."""

from __future__ import annotations

import os
import time

import pytest

from ladtrain.sandbox import Limits, Sandbox, isolation_mode

# LAD_REQUIRE_SANDBOX=1 (for CI) turns the skip into a failure where isolation is missing
pytestmark = pytest.mark.skipif(isolation_mode() is None and os.environ.get("LAD_REQUIRE_SANDBOX") != "1",
                                reason="no isolation on this machine (needs root or user namespaces)")


@pytest.fixture(scope="module")
def sandbox():
    return Sandbox(Limits(wall_s=3.0), workers=2)


def test_a_correct_program_passes_and_its_output_comes_back(sandbox):
    r = sandbox.run("print(6 * 7)")
    assert r.passed and r.reason == "passed" and r.stdout == "42\n"


def test_a_failing_assertion_fails_with_its_message(sandbox):
    r = sandbox.run("assert 1 + 1 == 3, 'arithmetic'")
    assert not r.passed and r.reason == "AssertionError: arithmetic"


def test_a_syntax_error_fails(sandbox):
    r = sandbox.run("def f(:\n    pass")
    assert not r.passed and r.reason.startswith("SyntaxError")


def test_the_program_runs_unprivileged_in_a_fresh_tmpfs_with_a_scrubbed_environment(sandbox):
    code = (
        "import os, json\n"
        "st = os.statvfs('.')\n"
        "print(json.dumps({'uid': os.getuid(), 'cwd': os.getcwd(), 'files': os.listdir('.'),\n"
        "                  'env': sorted(os.environ), 'size': st.f_blocks * st.f_frsize,\n"
        "                  'procs': [p for p in os.listdir('/proc') if p.isdigit()]}))\n"
    )
    import json

    info = json.loads(sandbox.run(code).stdout)
    assert info["cwd"] == "/tmp/work" and info["files"] == []
    assert info["env"] == ["HOME", "LANG", "PATH", "PYTHONIOENCODING"]
    assert len(info["procs"]) == 2 and "1" in info["procs"]  # own pid namespace: launcher + program
    assert info["size"] == sandbox.limits.tmpfs_mb << 20
    if sandbox.mode == "root":
        assert info["uid"] != 0


def test_two_runs_do_not_share_files(sandbox):
    assert sandbox.run("open('left_behind', 'w').write('x')").passed
    r = sandbox.run("import os; assert not os.path.exists('left_behind'), 'file survived'")
    assert r.passed, r.reason


def test_a_slow_program_is_stopped_at_the_wall_limit():
    box = Sandbox(Limits(wall_s=1.0))
    t0 = time.monotonic()
    r = box.run("import time; time.sleep(30)")
    elapsed = time.monotonic() - t0
    assert not r.passed and r.reason == "timeout after 1s"
    assert 0.9 < elapsed < 3.0


def test_cpu_limit_kills_a_busy_program_before_a_long_wall_limit():
    box = Sandbox(Limits(wall_s=20.0, cpu_s=1))
    t0 = time.monotonic()
    r = box.run("while True:\n    pass")
    assert not r.passed and r.reason == "killed by SIGXCPU (CPU limit)"
    assert time.monotonic() - t0 < 6.0


def test_file_size_limit(sandbox):
    r = sandbox.run("open('big', 'wb').write(b'x' * (32 << 20))")
    assert not r.passed and ("SIGXFSZ" in r.reason or "File too large" in r.reason), r.reason


def test_worker_pool_keeps_order_and_runs_in_parallel():
    box = Sandbox(Limits(wall_s=5.0), workers=4)
    codes = [f"import time; time.sleep(0.5); print({i})" for i in range(8)]
    t0 = time.monotonic()
    results = box.run_many(codes)
    elapsed = time.monotonic() - t0
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(8)]
    assert all(r.passed for r in results)
    assert elapsed < 8 * 0.5  # serial would take at least 4 s


def test_a_sandbox_that_cannot_start_its_interpreter_is_an_error_not_a_verdict():
    r = Sandbox(Limits(wall_s=3.0), python="/nonexistent/python3").run("print(1)")
    assert not r.passed and r.error


def test_a_program_cannot_fake_a_sandbox_failure(sandbox):
    for code in ("import os\nos._exit(97)", "import sys\nsys.stderr.write('x')\nimport os\nos._exit(97)"):
        r = sandbox.run(code)
        assert not r.passed and not r.error, r


def _modes() -> list[str]:
    """Every isolation mode that works here (as root both do: user namespaces are checked too)."""
    modes = []
    for mode in ("root", "userns"):
        try:
            if Sandbox(Limits(wall_s=5.0), mode=mode).run("print(1)").passed:
                modes.append(mode)
        except Exception:  # a mode that cannot even start is simply not available
            continue
    return modes


MODES = _modes() if isolation_mode() is not None else []


@pytest.mark.parametrize("mode", MODES)
def test_no_capability_survives_so_mounts_cannot_be_made_writable_again(mode):
    code = (
        "import subprocess\n"
        "caps = open('/proc/self/status').read().split('CapEff:')[1].split()[0]\n"
        "assert int(caps, 16) == 0, 'capabilities ' + caps\n"
        "r = subprocess.run(['mount', '-o', 'remount,bind,rw', '/'], capture_output=True)\n"
        "assert r.returncode != 0, 'remounted / read-write'\n"
        "open('/etc/lad_probe', 'w')\n"
    )
    r = Sandbox(Limits(wall_s=5.0), mode=mode).run(code)
    assert not r.passed and r.reason.startswith("OSError: [Errno 30] Read-only file system"), r.reason


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_has_no_network_and_no_inherited_environment(mode, monkeypatch):
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
    r = Sandbox(Limits(wall_s=5.0), mode=mode).run(code)
    assert r.passed, r.reason
    errno, _, names = r.stdout.strip().partition(" ")
    assert int(errno) == 101 and names == "[(1, 'lo')]"  # ENETUNREACH: only a downed loopback exists
