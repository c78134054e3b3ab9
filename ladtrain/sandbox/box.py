"""The :class:`Sandbox`: ``judge`` (a verdict on a function, from the trusted judge) and ``run`` (how a
whole program ended, no verdict), each also over a bounded worker pool."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from ladtrain.sandbox import forkserver, runner
from ladtrain.sandbox.runner import JUDGE_SOURCE, PROTECTIONS, Limits, Result, SandboxError, clean

_MODE_CACHE: dict[str, str | None] = {}
_TOOLS = ("unshare", "sh") if os.geteuid() else ("unshare", "setpriv", "sh")


def isolation_mode() -> str | None:
    """``"root"`` (root: each run's user namespace maps to an unprivileged host uid), ``"userns"`` (not
    root: unprivileged user namespaces map to the caller's uid) or None (cannot isolate here). Probed
    once per process by starting a real sandbox."""
    if "mode" not in _MODE_CACHE:
        mode = None
        if sys.platform.startswith("linux") and all(shutil.which(t) for t in _TOOLS):
            for cand in (["root"] if os.geteuid() == 0 else ["userns"]):
                try:
                    if Sandbox(Limits(wall_s=10.0), mode=cand).run("pass").passed:
                        mode = cand
                        break
                except (SandboxError, OSError):
                    continue
        _MODE_CACHE["mode"] = mode
    return _MODE_CACHE["mode"]


_WHY = {
    "test": "failed: {exc} in the test{at}",
    "raised": "failed: the program raised {exc}",
    "load": "failed: the program did not load or define the function{exc_part}",
    "not_plain": "failed: the program returned a value that is not a plain value",
    "no_answer": "failed: the program exited or died during a call",
    "bad_answer": "failed: the program's answer was not a plain value (or over the size limit)",
}


def verdict_reason(v: dict) -> tuple[bool, str, bool]:
    """(passed, reason, error) for a verdict of :mod:`ladtrain.sandbox.judge`; every word from here or
    from the judge's own objects, control characters removed."""
    passed, reason, error = _verdict_reason(v)
    return passed, clean(reason), error


def _verdict_reason(v: dict) -> tuple[bool, str, bool]:
    kind = v.get("v")
    if kind == "pass":
        return True, "passed", False
    if kind == "uncheckable":
        kind_of = str(v.get("type"))[:40]
        return False, f"cannot check: the test passes a {kind_of} argument (not a plain value)", True
    if kind == "judge_error":
        return False, f"judge error: the problem's own test code raised {str(v.get('exc'))[:40]}", True
    why = v.get("why")
    if kind != "fail" or why not in _WHY:
        return False, "judge error: no verdict", True
    exc = str(v.get("exc") or "an exception")[:40]
    line = v.get("line")
    return False, _WHY[why].format(exc=exc, at=f" (line {line})" if isinstance(line, int) else "",
                                   exc_part=f" ({exc})" if v.get("exc") else ""), False


class Sandbox:
    """Runs Python code in isolation; see :mod:`ladtrain.sandbox`. ``_off`` (tests only) switches named
    protections off (:data:`ladtrain.sandbox.runner.PROTECTIONS`); ``binds`` adds host trees to the
    minimal root (read-only)."""

    def __init__(self, limits: Limits | None = None, workers: int | None = None, python: str | None = None,
                 mode: str | None = None, binds: Sequence[str] = (), _off: Sequence[str] = ()):
        self.limits = limits or Limits()
        self.mode = mode or isolation_mode()
        if self.mode is None:
            raise SandboxError("cannot isolate code here: need Linux with util-linux unshare (and setpriv as "
                               "root) and user namespaces")
        if self.mode not in ("root", "userns"):
            raise SandboxError(f"unknown sandbox mode {self.mode!r}; known: root, userns")
        if self.mode == "userns" and os.geteuid() == 0:  # it would map the sandbox's uid 0 to the host's root
            raise SandboxError("sandbox mode 'userns' is for unprivileged callers; as root use mode 'root'")
        unknown = set(_off) - PROTECTIONS
        if unknown:
            known = ", ".join(sorted(PROTECTIONS))
            raise SandboxError(f"unknown protection {sorted(unknown)[0]!r}; known: {known}")
        self.off = frozenset(_off)
        self.python = python or runner.default_python(self.mode == "root")
        for b in binds:
            reserved = ("/tmp", "/dev", "/proc")
            if not os.path.isabs(b) or any(b == p or b.startswith(p + "/") for p in reserved):
                raise SandboxError(f"cannot bind {b!r}: give an absolute path outside /tmp, /dev and /proc")
        self.binds = runner.binds_for(self.python, tuple(binds))
        self.sockets = runner.sockets_in([b[0] for b in self.binds])
        self.workers = max(1, workers if workers is not None else min(4, os.cpu_count() or 1))

    # -- whole programs -----------------------------------------------------------------------------------
    def run(self, code: str) -> Result:
        """Run a whole program. ``passed`` means it reached its end (a per-run token printed after it):
        the program itself can forge that, so this is a report on how it ended, never a verdict."""
        lim, token = self.limits, secrets.token_hex(16)
        t0 = time.monotonic()
        try:
            proc, group, uid = runner.start(self.mode, lim, self.python, self.binds, self.sockets, self.off,
                                            {"mode": "program", "code": code, "token": token})
        except (OSError, SandboxError) as e:
            return Result(False, clean(f"cannot start sandbox: {e}")[:200], error=True)
        try:
            why = runner.collect([proc], t0 + lim.wall_s, lim.output_kb << 10)
        finally:
            runner.finish([proc], group, kill=True)
            self._release(uid)
        wall = time.monotonic() - t0
        cap = lim.output_kb << 10
        out, err = proc.text("stdout", cap + 64), proc.text("stderr", cap)
        failed = runner.setup_failure(proc)
        if failed:
            return Result(False, failed, out[:cap], err, wall, error=True)
        if why:
            return Result(False, self._killed(why, group), out[:cap], err, wall)
        marker = "\n" + token + "\n"
        if proc.popen.returncode == 0 and out.endswith(marker):
            return Result(True, "passed", out[: -len(marker)], err, wall)
        return Result(False, self._exit_reason(proc.popen.returncode), out[:cap], err, wall)

    def run_many(self, codes: Sequence[str]) -> list[Result]:
        return self._pool(self.run, [(c,) for c in codes])

    # -- judged functions ---------------------------------------------------------------------------------
    def judge(self, program: str, entry: str, prelude: str, test: str) -> Result:
        """The verdict on ``entry`` as defined by ``program`` (run in the sandbox): ``prelude`` and ``test``
        run in the trusted judge process, which calls ``check(proxy)``; see :mod:`ladtrain.sandbox.judge`."""
        lim = self.limits
        t0 = time.monotonic()
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        verdict_r, verdict_w = os.pipe()
        cand, group, uid, judge = None, None, None, _Judge(verdict_r)
        try:
            try:
                cand, group, uid = runner.start(self.mode, lim, self.python, self.binds, self.sockets,
                                                self.off, {"mode": "serve", "code": program, "entry": entry,
                                                 "req_fd": req_r, "resp_fd": resp_w}, (req_r, resp_w))
                cfg = {"prelude": prelude, "test": test, "entry": entry, "max_answer": lim.answer_kb << 10,
                       "rlimits": {"RLIMIT_CPU": int(lim.wall_s) + 2, "RLIMIT_CORE": 0}}
                judge.pidfd = forkserver.fork_judge(JUDGE_SOURCE, cfg, (req_w, resp_r, verdict_w))
            except (OSError, SandboxError) as e:
                return Result(False, clean(f"cannot start sandbox: {e}")[:200], error=True)
            finally:
                for fd in (req_r, req_w, resp_r, resp_w, verdict_w):
                    os.close(fd)
            why = runner.collect([cand, judge], t0 + lim.wall_s, lim.output_kb << 10,
                                 done=lambda: "verdict" in judge.eof)
        finally:
            judge.close()
            if cand is not None:
                runner.finish([cand], group, kill=True)
            self._release(uid)
        wall = time.monotonic() - t0
        cap = lim.output_kb << 10
        out, err = cand.text("stdout", cap), cand.text("stderr", cap)
        failed = runner.setup_failure(cand)
        if failed:
            return Result(False, failed, out, err, wall, error=True)
        if why in ("timeout", "output"):
            return Result(False, self._killed(why, group), out, err, wall)
        try:
            v = json.loads(bytes(judge.data["verdict"]).decode())
        except ValueError:
            return Result(False, "judge error: no verdict", out, err, wall, error=True)
        passed, reason, error = verdict_reason(v)
        if not passed and not error and group is not None and group.oom_killed():
            reason = "failed: killed at the memory limit"
        elif v.get("why") == "no_answer" and runner.candidate_signal(cand):
            reason = "failed: the program was " + runner.signal_reason(runner.candidate_signal(cand))
        return Result(passed, reason, out, err, wall, error=error)

    def judge_many(self, items: Sequence[tuple[str, str, str, str]]) -> list[Result]:
        """``judge`` over (program, entry, prelude, test) tuples, through the worker pool, in order."""
        return self._pool(self.judge, items)

    # -- helpers ------------------------------------------------------------------------------------------
    def _pool(self, fn, items):
        if len(items) <= 1 or self.workers == 1:
            return [fn(*it) for it in items]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(lambda it: fn(*it), items))

    def _release(self, uid):
        if uid is not None and "uid_range" not in self.off:
            runner.uid_pool().release(uid)

    def _killed(self, why: str, group) -> str:
        if why == "timeout":
            return f"timeout after {self.limits.wall_s:g}s"
        return f"output limit ({self.limits.output_kb} KiB)"

    @staticmethod
    def _exit_reason(rc: int) -> str:
        sig = -rc if rc < 0 else rc - 128 if rc > 128 else 0
        if sig:
            return runner.signal_reason(sig)
        if rc == 0 or rc == 3:
            return "exited before the end of the program"
        return f"exit status {rc}"


class _Judge:
    """The judge's side of a run, as :func:`ladtrain.sandbox.runner.collect` reads it."""

    def __init__(self, verdict_fd: int):
        self.streams = {verdict_fd: "verdict"}
        self.data = {"verdict": bytearray(), "stdout": b"", "stderr": b""}
        self.eof: set[str] = set()
        self.pidfd = -1

    def close(self) -> None:
        if self.pidfd >= 0:
            forkserver.kill(self.pidfd)
            os.close(self.pidfd)
        for fd in self.streams:
            os.close(fd)


__all__ = ["Sandbox", "isolation_mode", "verdict_reason"]
