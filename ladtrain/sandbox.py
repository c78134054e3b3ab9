"""Isolated execution of model-written code.

Every run is a fresh process tree built like this (Linux, util-linux ``unshare``/``prlimit``/``setpriv``)::

    unshare --mount --net --pid --fork --kill-child --mount-proc      (new process group: start_new_session)
      sh launcher:  remount every inherited mount read-only (bind, ro)
                    tmpfs (size-limited, fresh) on /tmp, /dev/shm, /var/tmp; cwd = /tmp/work
        prlimit  --cpu --as --nproc --fsize --nofile --core=0
          setpriv --no-new-privs, every capability set emptied; root mode also --reuid/--regid UID
                  --clear-groups
            env -i PATH=/usr/bin:/bin HOME=/tmp/work LANG=C.UTF-8
              python -I -c HARNESS        (program text arrives on stdin, never on disk outside the tmpfs)

The launcher stays as pid 1 of the namespace (root-owned in root mode, so the code cannot signal it)
and turns a signal death of the program into the exit status 128 + signal.

What this guarantees (each one is run as an attack in ``tests/train/test_sandbox_attacks.py``):

- **no network**: an empty network namespace (only a downed loopback): ``connect`` to 127.0.0.1 fails;
- **nothing outside the tmpfs is writable**: every mount is remounted read-only in the private mount
  namespace, the program keeps no capability (so it cannot remount anything read-write), and in root
  mode it also runs as an unprivileged uid (one per worker slot, no passwd entry) so root-owned files
  are out of reach twice over;
- **fresh working directory**: a new tmpfs per run, gone when the namespace dies;
- **scrubbed environment**: ``env -i`` plus ``python -I``; the trainer's environment never reaches it,
  and ``/proc`` is the sandbox's own (pid namespace + fresh proc mount), so other processes'
  ``/proc/PID/environ`` are not even visible;
- **process, CPU, memory and file-size caps**: ``RLIMIT_NPROC`` (per uid; effective because the uid is
  not root), ``RLIMIT_CPU``, ``RLIMIT_AS``, ``RLIMIT_FSIZE``; a fork bomb ends at the cap;
- **wall-time limit, whole tree killed**: on timeout or too much output the process group gets
  SIGKILL; ``--kill-child`` plus the pid namespace take down anything that called ``setsid``;
- **no signalling the trainer**: pid namespace (the trainer has no pid there) and a different uid;
- **pass means the tests ran to the end**: the harness prints a per-run random token only after the
  program returns normally; ``sys.exit(0)``, ``os._exit(0)`` or printing "passed" never pass.

Limits (said plainly): this is namespaces and rlimits, not a VM: there is no seccomp filter, so a kernel
exploit is out of scope; world-readable files (the repository, /etc) can be *read*, though nothing can
leave except the program's own output; a completion that deliberately introspects the harness's own
frames could read the token and forge a pass (a reward-hacking risk, not an escape); ``RLIMIT_AS``
bounds each process, so the worst case is ``nproc x memory_mb`` per worker; without root and without
unprivileged user namespaces the sandbox refuses to run (:class:`SandboxError`) rather than run code
unisolated.

Modes: ``"root"`` (running as root: namespaces + unprivileged uid) and ``"userns"`` (not root: an
unprivileged user namespace maps the caller to root inside; the same mounts, no uid change, no
capabilities after exec, and the process cap is the caller's current task count plus ``nproc``, since
RLIMIT_NPROC counts all the caller's tasks). RLIMIT_NPROC never binds a real root uid, which is why
root mode switches uid.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

__all__ = ["Limits", "Result", "Sandbox", "SandboxError", "isolation_mode"]


class SandboxError(RuntimeError):
    """The sandbox cannot isolate code on this machine (shown as one line)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run."""

    wall_s: float = 5.0
    """Wall-clock limit; the whole process tree is killed when it passes."""
    cpu_s: int | None = None
    """CPU seconds (RLIMIT_CPU); default: the wall limit rounded up."""
    memory_mb: int = 512
    """Address space per process (RLIMIT_AS), MiB."""
    nproc: int = 8
    """Processes and threads of the sandbox uid (RLIMIT_NPROC)."""
    file_mb: int = 16
    """Largest file the code may write (RLIMIT_FSIZE), MiB."""
    tmpfs_mb: int = 64
    """Size of the fresh working tmpfs, MiB."""
    output_kb: int = 256
    """stdout + stderr kept; more than this kills the run ("output limit")."""


@dataclass(frozen=True)
class Result:
    """``passed``: the program ran to its end and exited 0; ``reason``: one short line."""

    passed: bool
    reason: str
    stdout: str = ""
    stderr: str = ""
    wall_s: float = 0.0
    error: bool = False
    """True when the sandbox itself failed (could not start or set up): no verdict on the code."""


# The harness: reads {"token", "code"} from stdin, runs the code as __main__, prints the token only if
# the code returned normally. The token is held in a closure, never in module globals.
_HARNESS = r"""
import json, os, sys
def _lad_main():
    d = json.loads(sys.stdin.read())
    token = d.pop("token")
    os.write(2, ("started " + token + "\n").encode())  # the parent knows the launcher got this far
    code = compile(d.pop("code"), "solution.py", "exec")
    g = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(code, g)
    except SystemExit as e:
        sys.stderr.write("SystemExit(%r) before the tests finished\n" % (e.code,))
        sys.stderr.flush()
        os._exit(3)
    except BaseException as e:
        msg = str(e).splitlines()[0][:200] if str(e) else ""
        sys.stderr.write("%s: %s\n" % (type(e).__name__, msg))
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    os.write(1, ("\n" + token + "\n").encode())
    os._exit(0)
_lad_main()
"""

_LAUNCHER = r"""
while read -r _dev _mnt _rest; do
  case "$_mnt" in /proc|/proc/*) ;; *) mount -o remount,bind,ro "$_mnt" 2>/dev/null ;; esac
done < /proc/self/mounts
mount -t tmpfs -o "size=${LAD_TMPFS}m,mode=1777,nosuid,nodev" tmpfs /tmp || exit 97
[ -d /dev/shm ] && { mount -t tmpfs -o size=1m,mode=1777,nosuid,nodev tmpfs /dev/shm || exit 97; }
[ -d /var/tmp ] && { mount -t tmpfs -o size=1m,mode=1777,nosuid,nodev tmpfs /var/tmp || exit 97; }
mkdir /tmp/work || exit 97
[ -n "$LAD_UID" ] && { chown "$LAD_UID:$LAD_UID" /tmp/work || exit 97; }
cd /tmp/work || exit 97
"$@"
exit $?
"""

_SETUP_FAILED = 97
_UID_BASE = 990000  # uids with no passwd entry; one per concurrently running sandbox


def _has_tools() -> bool:
    return all(shutil.which(t) for t in ("unshare", "prlimit", "setpriv", "mount"))


_MODE_CACHE: dict[str, str | None] = {}


def isolation_mode() -> str | None:
    """``"root"``, ``"userns"`` or None (cannot isolate here). Probed once per process."""
    if "mode" not in _MODE_CACHE:
        mode = None
        if sys.platform.startswith("linux") and _has_tools():
            candidates = ["root", "userns"] if os.geteuid() == 0 else ["userns"]
            for cand in candidates:
                cmd = _unshare_prefix(cand) + ["sh", "-c", "mount -t tmpfs -o size=1m tmpfs /tmp"]
                try:
                    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
                except (OSError, subprocess.TimeoutExpired):
                    continue
                if r.returncode == 0:
                    mode = cand
                    break
        _MODE_CACHE["mode"] = mode
    return _MODE_CACHE["mode"]


def _unshare_prefix(mode: str) -> list[str]:
    user = ["--user", "--map-root-user"] if mode == "userns" else []
    return ["unshare", *user, "--mount", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]


def _world_executable(path: str) -> bool:
    """True if an unprivileged uid can reach and execute ``path`` (every parent dir o+x)."""
    path = os.path.realpath(path)
    try:
        if not os.stat(path).st_mode & 0o001:
            return False
        d = os.path.dirname(path)
        while True:
            if not os.stat(d).st_mode & 0o001:
                return False
            if d == "/":
                return True
            d = os.path.dirname(d)
    except OSError:
        return False


def _default_python(mode: str) -> str:
    if mode != "root" or _world_executable(sys.executable):
        return sys.executable
    for cand in ("/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"):
        if _world_executable(cand):
            return cand
    raise SandboxError(
        f"no Python interpreter usable by an unprivileged uid ({sys.executable} is not world-executable); "
        "pass Sandbox(python=PATH)"
    )


def _user_task_count() -> int:
    """Tasks (processes + threads) of this real uid: what RLIMIT_NPROC counts in userns mode."""
    uid, n = os.getuid(), 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                n += int(fields["Threads"])
        except (OSError, KeyError, ValueError):
            continue
    return n


class _UidPool:
    """Hands out distinct unprivileged uids to concurrently running sandboxes (root mode)."""

    def __init__(self, base: int = _UID_BASE) -> None:
        self._lock = threading.Lock()
        self._free: list[int] = []
        self._next = base

    def acquire(self) -> int:
        with self._lock:
            if self._free:
                return self._free.pop()
            uid, self._next = self._next, self._next + 1
            return uid

    def release(self, uid: int) -> None:
        with self._lock:
            self._free.append(uid)


_UIDS = _UidPool()


class Sandbox:
    """Runs Python programs in isolation; ``run(code)`` for one, ``run_many(codes)`` through a bounded
    pool of ``workers`` threads (each waits on one sandboxed process)."""

    def __init__(self, limits: Limits | None = None, workers: int | None = None, python: str | None = None,
                 mode: str | None = None):
        self.limits = limits or Limits()
        self.mode = mode or isolation_mode()
        if self.mode is None:
            raise SandboxError(
                "cannot isolate code here: need Linux with util-linux unshare/prlimit/setpriv and either "
                "root or unprivileged user namespaces"
            )
        if self.mode not in ("root", "userns"):
            raise SandboxError(f"unknown sandbox mode {self.mode!r}; known: root, userns")
        self.python = python or _default_python(self.mode)
        self.workers = max(1, workers if workers is not None else min(4, os.cpu_count() or 1))

    def _command(self, uid: int | None) -> list[str]:
        lim = self.limits
        cpu = lim.cpu_s if lim.cpu_s is not None else max(1, math.ceil(lim.wall_s))
        nproc = lim.nproc if self.mode == "root" else _user_task_count() + lim.nproc
        prlimit = [
            "prlimit", f"--cpu={cpu}:{cpu + 1}", f"--as={lim.memory_mb << 20}", f"--nproc={nproc}",
            f"--fsize={lim.file_mb << 20}", "--nofile=64", "--core=0", "--",
        ]
        # no capabilities at all after exec (in userns mode the program is uid 0 of its namespace: with
        # any capability left it could remount / read-write again)
        drop = ["setpriv", "--no-new-privs", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all"]
        if uid is not None:
            drop += [f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        env = ["env", "-i", "PATH=/usr/bin:/bin", "HOME=/tmp/work", "LANG=C.UTF-8", "PYTHONIOENCODING=utf-8"]
        program = [self.python, "-I", "-c", _HARNESS]
        launcher = ["sh", "-c", _LAUNCHER, "sh"]
        return _unshare_prefix(self.mode) + launcher + [*prlimit, *drop, "--", *env, *program]

    def run(self, code: str) -> Result:
        uid = _UIDS.acquire() if self.mode == "root" else None
        try:
            return self._run(code, uid)
        finally:
            if uid is not None:
                _UIDS.release(uid)

    def run_many(self, codes: Sequence[str]) -> list[Result]:
        if len(codes) <= 1 or self.workers == 1:
            return [self.run(c) for c in codes]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(self.run, codes))

    def _run(self, code: str, uid: int | None) -> Result:
        lim = self.limits
        token = secrets.token_hex(16)
        env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LAD_TMPFS": str(lim.tmpfs_mb),
               "LAD_UID": "" if uid is None else str(uid)}
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                self._command(uid), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=env, cwd="/", start_new_session=True, close_fds=True,
            )
        except OSError as e:
            return Result(False, f"cannot start sandbox: {e}", error=True)
        payload = json.dumps({"token": token, "code": code}).encode()

        def feed() -> None:
            try:
                proc.stdin.write(payload)
            except OSError:
                pass
            finally:
                try:
                    proc.stdin.close()
                except OSError:
                    pass

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        out, err, killed = bytearray(), bytearray(), ""
        cap = lim.output_kb << 10
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        deadline = start + lim.wall_s
        open_streams = 2
        while open_streams:
            left = deadline - time.monotonic()
            if left <= 0:
                killed = f"timeout after {lim.wall_s:g}s"
                break
            for key, _ in sel.select(timeout=min(left, 0.5)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    open_streams -= 1
                    continue
                key.data.extend(chunk)
            if len(out) + len(err) > cap + 128:  # 128: room for the harness's two markers
                killed = f"output limit ({lim.output_kb} KiB)"
                break
        if killed:
            self._kill(proc)
        try:
            rc = proc.wait(timeout=max(0.1, deadline - time.monotonic()) if not killed else 5)
        except subprocess.TimeoutExpired:
            killed = killed or f"timeout after {lim.wall_s:g}s"
            self._kill(proc)
            rc = proc.wait()
        sel.close()
        proc.stdout.close()
        proc.stderr.close()
        writer.join(timeout=1)
        wall = time.monotonic() - start
        stdout = out.decode("utf-8", "replace")
        stderr = err.decode("utf-8", "replace")
        started = "started " + token + "\n"
        setup_failed = started not in stderr  # the harness never ran: no verdict on the code
        stderr = stderr.replace(started, "", 1)[:cap]
        marker = "\n" + token + "\n"
        finished = stdout.endswith(marker)
        if finished:
            stdout = stdout[: -len(marker)]
        stdout = stdout[:cap]
        if killed:
            return Result(False, killed, stdout, stderr, wall, error=setup_failed and not out)
        if rc == 0 and finished:
            return Result(True, "passed", stdout, stderr, wall)
        return Result(False, self._reason(rc, stderr), stdout, stderr, wall, error=setup_failed)

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _reason(self, rc: int, stderr: str) -> str:
        last = next((ln.strip() for ln in reversed(stderr.splitlines()) if ln.strip()), "")
        if rc == _SETUP_FAILED:
            return f"sandbox setup failed: {last}"[:200]
        sig = -rc if rc < 0 else rc - 128 if rc > 128 else 0
        if sig:
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
            hint = {"SIGXCPU": " (CPU limit)", "SIGXFSZ": " (file size limit)",
                    "SIGKILL": " (killed: CPU or memory limit)"}.get(name, "")
            return f"killed by {name}{hint}"
        if rc == 0:
            return "exited before the tests finished"
        return (last or f"exit code {rc}")[:200]
