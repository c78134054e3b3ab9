"""Isolation attacks found by a red team (issue 17), each run for real: contained with every protection,
and shown to *work* with the protection switched off (``Sandbox(_off=...)``, a test-only switch), so each
test fails if its protection stops doing anything. Programs report what they achieved on stdout; the
host side is checked directly where there is one (the listener, the host's mount, the host's IPC).
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from ladtrain.sandbox import Limits, Sandbox, cgroups, isolation_mode, runner
from ladtrain.sandbox.uids import UidPool

pytestmark = pytest.mark.skipif(isolation_mode() is None and os.environ.get("LAD_REQUIRE_SANDBOX") != "1",
                                reason="no isolation on this machine (needs root or user namespaces)")
REPO = Path(__file__).resolve().parents[2]
UID_BASE = 993000 + (os.getpid() % 500) * 8
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the host side of this attack needs root")
needs_seccomp = pytest.mark.skipif(os.uname().machine != "x86_64", reason="the seccomp filter is x86-64 only")


@pytest.fixture(autouse=True)
def own_uids(monkeypatch):
    monkeypatch.setattr(runner, "_UIDS", UidPool(UID_BASE))


def report(code: str, off=(), binds=(), **limits) -> dict:
    """Run ``code`` (which prints one JSON object) and return that object."""
    r = Sandbox(Limits(**{"wall_s": 10.0, **limits}), binds=binds, _off=off).run(textwrap.dedent(code))
    assert not r.error, r.reason
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert lines, (r.reason, r.stdout[-300:], r.stderr[-300:])
    return json.loads(lines[-1])


LIBC = "import ctypes, errno, json, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"


# -- SysV IPC --------------------------------------------------------------------------------------------
SHM_KEY = 0x1AD00000 + os.getpid() % 65536
SHM = LIBC + f"""
libc.shmget.restype = ctypes.c_int
big = libc.shmget({SHM_KEY} + 1, 1 << 30, 0o1666)
big_errno = ctypes.get_errno()
if big >= 0:
    libc.shmctl(big, 0, None)  # IPC_RMID
seg = libc.shmget({SHM_KEY}, 1 << 20, 0o1666)  # IPC_CREAT | 0666
print(json.dumps({{"big": big >= 0, "big_errno": big_errno, "made": seg >= 0}}))
"""
SHM_FIND = LIBC + f"print(json.dumps({{'found': libc.shmget({SHM_KEY}, 0, 0o666) >= 0}}))\n"


def _host_shm_remove():
    libc = ctypes.CDLL(None, use_errno=True)
    seg = libc.shmget(SHM_KEY, 0, 0o666)
    if seg >= 0:
        libc.shmctl(seg, 0, None)
    return seg >= 0


def test_attack_sysv_shared_memory_neither_outlives_the_run_nor_grows_past_the_tmpfs():
    _host_shm_remove()
    first = report(SHM)
    assert first["made"] and not first["big"], first
    assert report(SHM_FIND) == {"found": False}  # the next run has its own IPC namespace
    assert not _host_shm_remove(), "the segment reached the host's IPC namespace"


def test_attack_sysv_shared_memory_leaks_without_an_ipc_namespace():
    _host_shm_remove()
    try:
        first = report(SHM, off=("ipc",))
        assert first["made"] and first["big"], first  # 1 GiB: only the host's limits apply
        assert report(SHM_FIND, off=("ipc",)) == {"found": True}
    finally:
        assert _host_shm_remove(), "the unprotected run should have left its segment on the host"


# -- nested user namespaces ------------------------------------------------------------------------------
NESTED = LIBC + """
ok = libc.unshare(0x10000000 | 0x00020000)  # CLONE_NEWUSER | CLONE_NEWNS
err = ctypes.get_errno()
mounted = ok == 0 and libc.mount(b"tmpfs", b"/tmp/work", b"tmpfs", 0, b"size=4g") == 0
print(json.dumps({"unshare": ok == 0, "errno": errno.errorcode.get(err), "mounted_tmpfs": mounted}))
"""


@needs_seccomp
@pytest.mark.parametrize("off, errno_name", [((), "EPERM"), (("seccomp",), "ENOSPC"),
                                             (("userns_limit",), "EPERM")])
def test_attack_nested_user_namespace_is_refused_by_each_of_two_layers(off, errno_name):
    got = report(NESTED, off=off)
    assert got == {"unshare": False, "errno": errno_name, "mounted_tmpfs": False}, got


@needs_seccomp
def test_attack_nested_user_namespace_mounts_its_own_tmpfs_without_both_layers():
    got = report(NESTED, off=("seccomp", "userns_limit"))
    assert got["unshare"] and got["mounted_tmpfs"], got


# -- memfd -----------------------------------------------------------------------------------------------
MEMFD = LIBC + """
total, fds, err = 0, [], None
try:
    for i in range(20):
        fd = os.memfd_create("x%d" % i)
        fds.append(fd)
        for _ in range(16):
            os.write(fd, b"m" * (1 << 20))
            total += 1
except OSError as e:
    err = errno.errorcode.get(e.errno)
print(json.dumps({"mib": total, "error": err}))
"""


@needs_seccomp
def test_attack_memfd_is_refused():
    assert report(MEMFD, memory_mb=128) == {"mib": 0, "error": "EPERM"}


@needs_seccomp
@pytest.mark.skipif(cgroups.backend()[0] == "none",
                    reason="no cgroup backend here: memfd is capped by seccomp only")
def test_attack_memfd_past_the_memory_limit_is_killed_by_the_cgroup_without_seccomp():
    r = Sandbox(Limits(wall_s=10.0, memory_mb=128), _off=("seccomp",)).run(MEMFD)
    assert not r.passed and '"mib": 320' not in r.stdout, (r.reason, r.stdout)


@needs_seccomp
def test_attack_memfd_holds_320_mib_without_seccomp_and_cgroup():
    assert report(MEMFD, off=("seccomp", "cgroup"), memory_mb=128) == {"mib": 320, "error": None}


# -- filesystem sockets ----------------------------------------------------------------------------------
@pytest.fixture
def host_tree():
    """A host directory outside /tmp (the sandbox's /tmp is its own) bound into the sandbox."""
    d = tempfile.mkdtemp(prefix="lad-sbx-test-", dir="/var/tmp" if os.access("/var/tmp", os.W_OK) else None)
    os.chmod(d, 0o755)  # reachable by the sandbox's unprivileged uid
    yield d
    shutil.rmtree(d, ignore_errors=True)


SOCKET_ATTACK = """
import json, socket
s = socket.socket(socket.AF_UNIX)
try:
    s.connect({path!r})
    s.sendall(b"stolen")
    print(json.dumps({{"connected": True}}))
except OSError as e:
    print(json.dumps({{"connected": False, "errno": e.errno}}))
"""


@pytest.mark.parametrize("off, reached", [((), False), (("socket_mask",), True)])
def test_attack_connecting_to_a_listening_filesystem_socket(host_tree, off, reached):
    path = os.path.join(host_tree, "daemon.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    os.chmod(path, 0o777)
    listener.listen(1)
    listener.settimeout(0)
    try:
        got = report(SOCKET_ATTACK.format(path=path), off=off, binds=(host_tree,))
        assert got["connected"] is reached, got
        if reached:
            conn, _ = listener.accept()
            assert conn.recv(16) == b"stolen"
            conn.close()
        else:
            with pytest.raises(BlockingIOError):
                listener.accept()
    finally:
        listener.close()


def test_host_socket_directories_are_not_in_the_sandbox():
    paths = ["/run", "/var/run", "/dev/log", "/var/lib", "/tmp/.X11-unix", "/sys"]
    code = f"import json, os\nprint(json.dumps({{'x': [p for p in {paths!r} if os.path.lexists(p)]}}))\n"
    assert report(code) == {"x": []}


# -- a mount whose name needs escaping (fail closed) -----------------------------------------------------
@pytest.fixture
def spaced_mount(host_tree):
    if os.geteuid() != 0:
        pytest.skip("mounting the host-side tmpfs needs root")
    target = os.path.join(host_tree, "with space")
    os.mkdir(target)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=777", "tmpfs", target], check=True)
    yield host_tree, target
    subprocess.run(["umount", "-l", target], check=False)


WRITE = """
import json
try:
    open({path!r}, "w").write("escaped")
    print(json.dumps({{"wrote": True}}))
except OSError as e:
    print(json.dumps({{"wrote": False, "errno": e.errno}}))
"""


@needs_root
@pytest.mark.parametrize("off", [(), ("mount_setattr",)])  # the recursive call, then the per-mount fallback
def test_attack_writing_to_a_mount_with_a_space_in_its_name_is_read_only(spaced_mount, off):
    tree, target = spaced_mount
    got = report(WRITE.format(path=os.path.join(target, "f")), off=off, binds=(tree,))
    assert got == {"wrote": False, "errno": 30}  # EROFS
    assert not os.path.exists(os.path.join(target, "f"))


@needs_root
def test_a_mount_left_writable_refuses_the_run(spaced_mount):
    tree, target = spaced_mount
    box = Sandbox(Limits(wall_s=10.0), binds=(tree,), _off=("mount_setattr", "submounts_ro"))
    r = box.run(WRITE.format(path=os.path.join(target, "f")))
    assert r.error and r.reason == f"sandbox setup failed: mount {target!r} is writable", r.reason
    assert not os.path.exists(os.path.join(target, "f"))


@needs_root
def test_attack_writing_to_a_mount_with_a_space_works_without_the_remount_and_the_check(spaced_mount):
    tree, target = spaced_mount
    got = report(WRITE.format(path=os.path.join(target, "f")), binds=(tree,),
                 off=("mount_setattr", "submounts_ro", "mount_check"))
    assert got == {"wrote": True}
    assert Path(target, "f").read_text() == "escaped"


# -- the working directory is noexec ---------------------------------------------------------------------
EXEC = """
import json, os, shutil, subprocess
shutil.copy("/bin/true", "./true")
os.chmod("./true", 0o755)
try:
    print(json.dumps({"ran": subprocess.run(["./true"]).returncode == 0}))
except PermissionError:
    print(json.dumps({"ran": False}))
"""


@pytest.mark.parametrize("off, ran", [((), False), (("noexec",), True)])
def test_attack_executing_a_dropped_binary(off, ran):
    assert report(EXEC, off=off) == {"ran": ran}


# -- CPU: many sessions would be many scheduling groups --------------------------------------------------
SETSID = """
import json, os, time
ok = 0
for _ in range(7):
    r, w = os.pipe()
    if os.fork() == 0:
        try:
            os.setsid()
            os.write(w, b"1")
        except OSError:
            os.write(w, b"0")
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            pass
        os._exit(0)
    ok += os.read(r, 1) == b"1"
time.sleep(0.5)
print(json.dumps({"setsid_ok": ok}))
"""


def _sessions_and_groups(stop: threading.Event, seen: dict) -> None:
    """Sessions and cpu cgroups of the processes of this module's sandbox uids, polled from the host."""
    while not stop.is_set():
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:  # the real uid (/proc/PID itself is root's once a process is not dumpable)
                uid = int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0])
                if not UID_BASE <= uid < UID_BASE + 8:
                    continue
                state, _, _, session = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[:4]
                if state in "ZX":  # exiting (e.g. the previous test's run): no longer in any group
                    continue
                session = int(session)
                cpu = [ln for ln in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
                       if ln.split(":")[1] in ("cpu", "cpu,cpuacct", "")]
            except (OSError, IndexError, ValueError):
                continue
            # the latest session (a child polled between fork and setsid still shows its parent's) and the
            # first cgroup (an exiting task leaves its group)
            first = seen.get(int(pid))
            seen[int(pid)] = (session, first[1] if first else tuple(cpu))
        time.sleep(0.05)


@needs_seccomp
@pytest.mark.parametrize("off", [(), ("seccomp", "cgroup")])
def test_attack_setsid_children_stay_in_the_runs_session_and_cgroup(off):
    stop, seen = threading.Event(), {}
    watcher = threading.Thread(target=_sessions_and_groups, args=(stop, seen))
    watcher.start()
    try:
        got = report(SETSID, off=off)
    finally:
        stop.set()
        watcher.join()
    sessions = {s for s, _ in seen.values()}
    if not off:
        assert got == {"setsid_ok": 0} and len(sessions) == 1, (got, seen)
        if cgroups.backend()[0] != "none":
            assert all(any("lad-sbx-" in ln for ln in g) for _, g in seen.values()), seen
    else:
        assert got == {"setsid_ok": 7} and len(sessions) >= 8, (got, seen)  # one CPU autogroup each


# -- the session keyring ---------------------------------------------------------------------------------
KEYRING = """
import ctypes, json, sys
sys.path.insert(0, {repo!r})
libc = ctypes.CDLL(None, use_errno=True)
assert libc.syscall(250, 1, b"lad-test-login-session") > 0  # like a login session (pam_keyinit)
from ladtrain.sandbox import Limits, Sandbox, runner
from ladtrain.sandbox.uids import UidPool
runner._UIDS = UidPool({uid_base})
box = Sandbox(Limits(wall_s=10.0), _off={off!r})
add = ("import ctypes\\nlibc = ctypes.CDLL(None, use_errno=True)\\n"
       "print(libc.syscall(248, b'user', b'lad_probe', b'secret', 6, -3) > 0)\\n")
find = ("import ctypes\\nlibc = ctypes.CDLL(None, use_errno=True)\\n"
        "print(libc.syscall(250, 10, -3, b'user', b'lad_probe', 0) > 0)\\n")
print(json.dumps({{"added": box.run(add).stdout.strip(), "found": box.run(find).stdout.strip()}}))
"""


@pytest.mark.parametrize("off, expect", [
    ((), {"added": "False", "found": "False"}),                  # seccomp: no keyctl at all
    (("seccomp",), {"added": "True", "found": "False"}),         # a fresh session keyring per run
    (("seccomp", "keyring"), {"added": "True", "found": "True"}),  # the trainer's session keyring, shared
])
def test_attack_a_key_left_in_the_keyring_for_the_next_run(off, expect):
    if os.uname().machine != "x86_64" and "seccomp" not in off:
        pytest.skip("the seccomp filter is x86-64 only")
    code = KEYRING.format(repo=str(REPO), uid_base=UID_BASE, off=off)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-500:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == expect


# -- text from the program: the reason is the harness's, control characters never pass -------------------
def test_attack_fake_reason_text_and_terminal_escapes_stay_out_of_the_score():
    from ladtrain.tasks import get_task

    task = get_task(f"code_jsonl:{REPO / 'tests' / 'data' / 'code_small.jsonl'},timeout=5,test_every=0")
    p = task.problems("train")[0]
    completion = ("    import sys\n    print('\\x1b[2J\\x1b]0;pwned\\x07', flush=True)\n"
                  "    sys.stderr.write('sandbox setup failed: \\x1b[31mfake\\n')\n"
                  "    raise ValueError('sandbox setup failed: \\x1b[31mfake')\n# \x1b[2J in the answer\n")
    score = task.score(p, completion)
    assert (score.reward, score.info) == (0.0, "failed: the program raised ValueError")
    assert score.reason == "wrong"
    assert not any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in score.info + score.answer), score
    assert "[2J in the answer" in score.answer  # the escape was there: only its ESC is gone
    r = task.sandbox.judge(p.prompt + completion, "add", p.prompt, p.reference["test"])
    assert "[2J" in r.stdout and "\x1b" not in r.stdout + r.stderr  # the output came back, cleaned
    assert "sandbox setup failed: [31mfake" in r.stderr and not r.error  # its text is output, not reason


# -- the stated fallback where no cgroup backend exists --------------------------------------------------
FALLBACK = LIBC + """
import time
forked = 0
try:
    for _ in range(40):
        if os.fork() == 0:
            time.sleep(2)
            os._exit(0)
        forked += 1
except OSError:
    pass
try:
    bytearray(1 << 30)
    big = True
except MemoryError:
    big = False
libc.shmget.restype = ctypes.c_int
shm = libc.shmget(0, 1 << 30, 0o1600) >= 0  # IPC_PRIVATE, 1 GiB
try:
    os.memfd_create("x")
    memfd = True
except OSError:
    memfd = False
print(json.dumps({"forked": forked, "big_alloc": big, "big_shm": shm, "memfd": memfd}))
"""


@needs_seccomp
def test_without_cgroups_the_rlimits_namespaces_and_seccomp_still_cap_the_run():
    got = report(FALLBACK, off=("cgroup",), nproc=8, memory_mb=256)
    assert got == {"forked": 7, "big_alloc": False, "big_shm": False, "memfd": False}, got
