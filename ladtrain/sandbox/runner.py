"""Starting sandboxed runs and collecting what they leave: command, pipes, deadline, kill, cleanup.

The command of one run (see the package docstring for what each part guarantees)::

    [sh: join the run's cgroups]                                   (when a cgroup backend is available)
      [setpriv --reuid U --regid U --clear-groups]                 (as root: the run's host uid)
        unshare --user --map-root-user --mount --net --pid --ipc --uts --cgroup --fork --kill-child
          python -I -c VALUES+BOOT        (configuration and code as JSON on stdin)
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ladtrain.sandbox import cgroups, seccomp
from ladtrain.sandbox.uids import UidError, UidPool

_HERE = Path(__file__).resolve().parent
VALUES_SOURCE = (_HERE / "values.py").read_text()
BOOT_SOURCE = VALUES_SOURCE + "\n" + (_HERE / "boot.py").read_text()
JUDGE_SOURCE = VALUES_SOURCE + "\n" + (_HERE / "judge.py").read_text()
SETUP_FAILED = 97
TREES = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
PROTECTIONS = frozenset({"ipc", "userns_limit", "seccomp", "socket_mask", "mount_setattr", "submounts_ro",
                         "mount_check", "keyring", "noexec", "cgroup", "uid_range"})
"""Names accepted by ``Sandbox(_off=...)`` (tests only: each switches one protection off)."""


class SandboxError(RuntimeError):
    """The sandbox cannot isolate code on this machine (shown as one line)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run."""

    wall_s: float = 5.0
    """Wall-clock limit; the whole process tree is killed when it passes."""
    cpu_s: int | None = None
    """CPU seconds per process (RLIMIT_CPU); default: the wall limit rounded up."""
    memory_mb: int = 512
    """Address space per process (RLIMIT_AS), MiB; with a cgroup also the run's total memory (plus the
    tmpfs)."""
    nproc: int = 8
    """Processes and threads of the run (RLIMIT_NPROC in its user namespace; pids.max with a cgroup)."""
    file_mb: int = 16
    """Largest file the code may write (RLIMIT_FSIZE), MiB."""
    tmpfs_mb: int = 64
    """Size of the fresh working tmpfs, MiB."""
    output_kb: int = 256
    """stdout + stderr kept; more than this kills the run ("output limit")."""
    answer_kb: int = 1024
    """Largest answer of one call (judged runs)."""


@dataclass(frozen=True)
class Result:
    """``passed``: the verdict (judged runs) or "the program ran to its end" (``run``); ``reason``: one
    short line written by the harness, never text of the program."""

    passed: bool
    reason: str
    stdout: str = ""
    stderr: str = ""
    wall_s: float = 0.0
    error: bool = False
    """True when there is no verdict on the code: the sandbox failed, or the problem cannot be checked."""


_CONTROL = {c: None for c in [*range(0, 9), *range(11, 32), 127, *range(128, 160)]}


def clean(text: str) -> str:
    """``text`` without control characters (newline and tab kept): nothing that a terminal or a log
    viewer would interpret (escape sequences lose their ESC)."""
    return text.translate(_CONTROL)


def _world_executable(path: str) -> bool:
    path = os.path.realpath(path)
    try:
        while True:
            if not os.stat(path).st_mode & 0o001:
                return False
            if path == "/":
                return True
            path = os.path.dirname(path)
    except OSError:
        return False


def default_python(root: bool) -> str:
    exe = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    if not root or _world_executable(exe):
        return exe
    for cand in ("/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"):
        if _world_executable(cand):
            return os.path.realpath(cand)
    raise SandboxError(f"no Python interpreter usable by an unprivileged uid ({exe} is not "
                       "world-executable); pass Sandbox(python=PATH)")


def binds_for(python: str, extra: tuple[str, ...] = ()) -> list[list[str]]:
    """[host path, path in the sandbox] of every tree the minimal root holds (read-only)."""
    trees = [t for t in TREES if os.path.lexists(t)]
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(python)))
    inside = lambda p: any(p == t or p.startswith(t.rstrip("/") + "/") for t in trees)  # noqa: E731
    if not inside(prefix):
        trees.append(prefix)
    trees += [p for p in extra if not inside(p)]
    return [[t, t] for t in trees]


_SOCKETS: dict[tuple, list[str]] = {}


def sockets_in(trees: list[str]) -> list[str]:
    """Filesystem sockets under ``trees`` (found once per process per set of trees; masked in every run)."""
    key = tuple(sorted(t for t in trees if not os.path.islink(t)))
    if key not in _SOCKETS:
        found: list[str] = []
        if key and shutil.which("find"):
            r = subprocess.run(["find", *key, "-type", "s"], capture_output=True, text=True, timeout=120)
            found = [ln for ln in r.stdout.splitlines() if ln]
        else:
            for t in key:
                for d, _, files in os.walk(t):
                    found += [os.path.join(d, f) for f in files if _is_socket(os.path.join(d, f))]
        _SOCKETS[key] = found
    return _SOCKETS[key]


def _is_socket(path: str) -> bool:
    import stat

    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except OSError:
        return False


_UIDS = UidPool()


def uid_pool() -> UidPool:
    return _UIDS


class _Proc:
    """One child process and the streams collected from it."""

    def __init__(self, cmd, payload: bytes, env, pass_fds, extra_streams: dict[str, int]):
        pipe = subprocess.PIPE
        self.popen = subprocess.Popen(cmd, stdin=pipe, stdout=pipe, stderr=pipe, env=env, cwd="/",
                                      start_new_session=True, close_fds=True, pass_fds=pass_fds)
        self.data = {"stdout": bytearray(), "stderr": bytearray(), **{k: bytearray() for k in extra_streams}}
        self.extra = dict(extra_streams)
        self.eof: set[str] = set()
        self.streams = {self.popen.stdout.fileno(): "stdout", self.popen.stderr.fileno(): "stderr",
                        **{fd: k for k, fd in extra_streams.items()}}
        self.writer = threading.Thread(target=self._feed, args=(payload,), daemon=True)
        self.writer.start()

    def _feed(self, payload: bytes) -> None:
        try:
            self.popen.stdin.write(payload)
        except OSError:
            pass
        finally:
            try:
                self.popen.stdin.close()
            except OSError:
                pass

    def kill(self) -> None:
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def text(self, name: str, cap: int) -> str:
        return clean(bytes(self.data[name][:cap]).decode("utf-8", "replace"))


def collect(procs: list[_Proc], deadline: float, cap: int, done=None) -> str:
    """Read every stream until all are closed, the deadline passes ("timeout"), the output passes
    ``cap`` ("output") or ``done()`` says the verdict is in ("done"); "" when all streams closed."""
    sel = selectors.DefaultSelector()
    for p in procs:
        for fd, name in p.streams.items():
            sel.register(fd, selectors.EVENT_READ, (p, name))
    why = ""
    try:
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                why = "timeout"
                break
            for key, _ in sel.select(timeout=min(left, 0.5)):
                p, name = key.data
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fd)
                    p.eof.add(name)
                    continue
                p.data[name].extend(chunk)
            if sum(len(p.data["stdout"]) + len(p.data["stderr"]) for p in procs) > cap:
                why = "output"
                break
            if done is not None and done():
                why = "done"
                break
    finally:
        sel.close()
    return why


def finish(procs: list[_Proc], group, kill: bool) -> None:
    """Kill (if asked) and reap every process, close its pipes, remove the run's cgroups."""
    if kill:
        for p in procs:
            p.kill()
        if group is not None:
            group.kill()
    for p in procs:
        try:
            p.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.popen.wait()
        p.popen.stdout.close()
        p.popen.stderr.close()
        for fd in p.extra.values():
            os.close(fd)
        p.writer.join(timeout=1)
    if group is not None:
        group.remove()


def sandbox_command(mode: str, uid: int | None, python: str, off: frozenset, group) -> list[str]:
    ns = ["--user", "--map-root-user", "--mount", "--net", "--pid", "--uts", "--cgroup", "--fork",
          "--kill-child"]
    if "ipc" not in off:
        ns.insert(3, "--ipc")
    cmd = ["unshare", *ns, python, "-I", "-c", BOOT_SOURCE]
    if uid is not None:
        cmd = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *cmd]
    if group is not None:
        cmd = ["sh", "-c", cgroups.JOIN, "sh", *group.procs, "--", *cmd]
    return cmd


def rlimits(limits: Limits) -> dict:
    cpu = limits.cpu_s if limits.cpu_s is not None else max(1, int(-(-limits.wall_s // 1)))
    return {"RLIMIT_CPU": [cpu, cpu + 1], "RLIMIT_AS": limits.memory_mb << 20,
            "RLIMIT_NPROC": limits.nproc + 2,  # + the run's init and the unshare parent, same user namespace
            "RLIMIT_FSIZE": limits.file_mb << 20, "RLIMIT_NOFILE": 64, "RLIMIT_CORE": 0,
            "RLIMIT_MEMLOCK": 0, "RLIMIT_MSGQUEUE": 0}


def start(mode, limits: Limits, python, binds, sockets, off, cfg: dict, pass_fds=()):
    """Start one sandboxed run; returns (proc, group, uid, status_fd) -- or raises SandboxError/OSError."""
    uid = None
    if mode == "root":
        try:
            uid = (UidPool(990000) if "uid_range" in off else _UIDS).acquire()
        except UidError as e:
            raise SandboxError(str(e)) from None
    group = None
    if "cgroup" not in off:
        group = cgroups.RunGroup.create((limits.memory_mb + limits.tmpfs_mb) << 20, limits.nproc + 2)
    status_r, status_w = os.pipe()
    filt = seccomp.filter_bytes()
    full = {"mode": "program", "off": sorted(off), "binds": binds, "sockets": sockets,
            "tmpfs_mb": limits.tmpfs_mb, "rlimits": rlimits(limits), "seccomp": filt.hex() if filt else None,
            "status_fd": status_w, **cfg}
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"}
    try:
        proc = _Proc(sandbox_command(mode, uid, python, off, group), json.dumps(full).encode(), env,
                     (status_w, *pass_fds), {"status": status_r})
    except BaseException:
        os.close(status_r)
        if group is not None:
            group.remove()
        if uid is not None:
            _UIDS.release(uid)
        raise
    finally:
        os.close(status_w)
    return proc, group, uid


def candidate_signal(proc: _Proc) -> int | None:
    """The signal that ended the candidate, as its init reported it (None: it exited, or no report)."""
    parts = bytes(proc.data["status"]).split()
    if len(parts) == 3 and parts[0] == b"ok" and parts[1] == b"signal" and parts[2].isdigit():
        return int(parts[2])
    return None


def signal_reason(sig: int) -> str:
    """``killed by SIGXCPU (CPU limit)`` and the like."""
    name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
    hint = {"SIGXCPU": " (CPU limit)", "SIGXFSZ": " (file size limit)",
            "SIGKILL": " (killed: CPU or memory limit)"}.get(name, "")
    return f"killed by {name}{hint}"


def setup_failure(proc: _Proc) -> str | None:
    """None when the sandbox said ``ok``; else the harness's line saying which step failed."""
    status = bytes(proc.data["status"])
    if status.startswith(b"ok"):
        return None
    detail = clean(status[5:205].decode("ascii", "replace")) if status.startswith(b"fail ") else ""
    rc = proc.popen.returncode
    if rc == cgroups.JOIN_FAILED:
        detail = "cannot join the run's cgroup"
    return "sandbox setup failed" + (f": {detail}" if detail else f" (exit status {rc})")
