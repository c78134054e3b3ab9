"""Per-run control groups: memory (tmpfs, memfd and shm pages included), process count and CPU share.

:func:`backend` looks once per process for what this machine allows, in this order:

- **cgroup v2**: a cgroup2 mount where this process's group (or ``LAD_SANDBOX_CGROUP``, a delegated
  directory) enables the ``memory``, ``pids`` and ``cpu`` controllers for its children; each run gets a
  child with ``memory.max`` (and ``memory.swap.max`` 0), ``pids.max``, ``cpu.weight`` 100, and is
  killed through ``cgroup.kill``;
- **cgroup v1**: writable ``memory``, ``pids`` and ``cpu`` hierarchies; each run gets a group in each
  (``memory.limit_in_bytes`` and ``memory.memsw.limit_in_bytes`` where present, ``pids.max``,
  ``cpu.shares`` 1024), its processes killed one by one;
- **none**, with the reason kept in :func:`backend`'s answer. The stated fallback is then rlimits and
  the seccomp filter: address space per process, processes per user namespace, file size, tmpfs sizes,
  SysV shm capped by the IPC namespace's sysctls, ``memfd_create`` denied, ``setsid`` denied so every
  process of a run stays in the run's session (one CPU autogroup per run where
  ``kernel.sched_autogroup_enabled`` is 1; without autogroup there is no CPU fairness between runs).

A run's processes enter its groups before anything else runs: the first program of the run's command
is ``sh`` writing its own pid to each group's ``cgroup.procs`` and then exec-ing the sandbox.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from dataclasses import dataclass

_COUNTER = itertools.count()
_BACKEND: dict[str, tuple] = {}
JOIN = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 96; shift; done; shift; exec "$@"'
JOIN_FAILED = 96


def _own_groups() -> dict[str, str]:
    out = {}
    with open("/proc/self/cgroup") as fh:
        for line in fh:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(",") if ctrls else [""]:
                out[c] = path
    return out


def _mounts() -> list[tuple[str, str, set[str]]]:
    rows = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            parts = line.split()
            sep = parts.index("-")
            point = parts[4].replace("\\040", " ")
            rows.append((point, parts[sep + 1], set(parts[sep + 3].split(","))))
    return rows


def _probe() -> tuple:
    if not os.path.exists("/proc/self/cgroup"):
        return ("none", "no /proc/self/cgroup")
    try:
        own, mounts = _own_groups(), _mounts()
    except (OSError, ValueError) as e:
        return ("none", f"cannot read cgroups: {e}")
    want = {"memory", "pids", "cpu"}
    parent = os.environ.get("LAD_SANDBOX_CGROUP")
    for point, fstype, _ in mounts:
        if fstype != "cgroup2":
            continue
        base = parent or os.path.join(point, own.get("", "/").lstrip("/"))
        try:
            with open(os.path.join(base, "cgroup.subtree_control")) as fh:
                enabled = set(fh.read().split())
        except OSError:
            continue
        if want <= enabled and os.access(base, os.W_OK):
            return ("v2", base)
    v1 = {}
    for c in sorted(want):
        for point, fstype, opts in mounts:
            if fstype == "cgroup" and c in opts:
                base = os.path.join(point, own.get(c, "/").lstrip("/"))
                if os.access(base, os.W_OK):
                    v1[c] = base
                break
    if set(v1) == want:
        return ("v1", v1)
    return ("none", "no cgroup v2 with memory, pids and cpu delegated here, and no writable v1 "
                    "memory, pids and cpu hierarchies")


def backend() -> tuple:
    """("v2", dir) | ("v1", {controller: dir}) | ("none", reason); probed once per process."""
    if "b" not in _BACKEND:
        _BACKEND["b"] = _probe()
    return _BACKEND["b"]


@dataclass
class RunGroup:
    """The groups of one run; ``procs`` are the files its first process writes its pid to."""

    kind: str
    dirs: list[str]

    @property
    def procs(self) -> list[str]:
        return [os.path.join(d, "cgroup.procs") for d in self.dirs]

    @classmethod
    def create(cls, memory_bytes: int, pids: int) -> RunGroup | None:
        kind, where = backend()
        if kind == "none":
            return None
        name = f"lad-sbx-{os.getpid()}-{next(_COUNTER)}"
        if kind == "v2":
            d = os.path.join(where, name)
            os.mkdir(d)
            group = cls("v2", [d])
            todo = [(d, "memory.max", memory_bytes), (d, "memory.swap.max", 0), (d, "pids.max", pids),
                    (d, "cpu.weight", 100)]
        else:
            dirs = {c: os.path.join(base, name) for c, base in where.items()}
            for d in dirs.values():
                os.mkdir(d)
            group = cls("v1", list(dirs.values()))
            todo = [(dirs["memory"], "memory.limit_in_bytes", memory_bytes),
                    (dirs["memory"], "memory.memsw.limit_in_bytes", memory_bytes),
                    (dirs["pids"], "pids.max", pids), (dirs["cpu"], "cpu.shares", 1024)]
        optional = {"memory.swap.max", "memory.memsw.limit_in_bytes"}  # absent without swap accounting
        try:
            for d, key, value in todo:
                path = os.path.join(d, key)
                if key in optional and not os.path.exists(path):
                    continue
                with open(path, "w") as fh:  # a required limit that cannot be set fails the run
                    fh.write(str(value))
        except OSError:
            group.remove()
            raise
        return group

    def oom_killed(self) -> bool:
        """True when the memory limit killed or refused something in this run."""
        try:
            if self.kind == "v2":
                with open(os.path.join(self.dirs[0], "memory.events")) as fh:
                    rows = [line.split() for line in fh]
                return any(r[0] in ("oom_kill", "max") and int(r[1]) > 0 for r in rows)
            mem = next(d for d in self.dirs if "/memory" in d)
            with open(os.path.join(mem, "memory.failcnt")) as fh:
                return int(fh.read()) > 0
        except (OSError, ValueError, StopIteration):
            return False

    def kill(self) -> None:
        if self.kind == "v2" and os.path.exists(os.path.join(self.dirs[0], "cgroup.kill")):
            try:
                with open(os.path.join(self.dirs[0], "cgroup.kill"), "w") as fh:
                    fh.write("1")
                return
            except OSError:
                pass
        for path in self.procs:
            try:
                with open(path) as fh:
                    pids = [int(p) for p in fh.read().split()]
            except OSError:
                continue
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass

    def remove(self) -> None:
        """Kill what is left and remove the groups (a few tries while the processes exit)."""
        for attempt in range(50):
            left = []
            for d in self.dirs:
                try:
                    os.rmdir(d)
                except FileNotFoundError:
                    pass
                except OSError:
                    left.append(d)
            if not left:
                return
            self.dirs = left
            self.kill()
            time.sleep(0.02)
