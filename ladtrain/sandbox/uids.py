"""Host uids for sandboxed runs: a range per trainer process, unique among live processes on the host.

As root, every run's user namespace maps its uid 0 to one host uid with no passwd entry. Each trainer
process takes a range of :data:`RANGE` uids at slot ``i`` (``BASE + i * RANGE``), holding an exclusive
``flock`` on ``LOCK_DIR/slot-i`` for as long as it lives (the kernel drops the lock when it dies), so
two trainer processes on one host (e.g. torchrun ranks) never share a uid, and a forked child takes a
range of its own. The lock directory is the first writable one of ``/run/lock``, ``/var/lock``,
``/tmp``: processes that do not share it (separate mount namespaces, containers) are not kept apart by
it. Within a process, concurrently running sandboxes get distinct uids of the range.
"""

from __future__ import annotations

import fcntl
import os
import threading

BASE = 1_100_000_000
RANGE = 4096
SLOTS = 65536
_LOCK_DIRS = ("/run/lock", "/var/lock", "/tmp")


class UidError(RuntimeError):
    pass


def _lock_dir() -> str:
    for d in _LOCK_DIRS:
        path = os.path.join(d, "ladtrain-sandbox-uids")
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
            return path
        except OSError:
            continue
    raise UidError("no writable directory for the sandbox uid locks (tried /run/lock, /var/lock, /tmp)")


def claim_slot(lock_dir: str | None = None) -> tuple[int, int]:
    """(slot, fd): the first free slot, locked through ``fd`` (keep it open)."""
    lock_dir = lock_dir or _lock_dir()
    for slot in range(SLOTS):
        fd = os.open(os.path.join(lock_dir, f"slot-{slot}"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        return slot, fd
    raise UidError(f"all {SLOTS} sandbox uid slots in {lock_dir} are taken")


class UidPool:
    """The uids of this process's range, handed to concurrently running sandboxes. ``base`` fixed:
    no slot is claimed (tests)."""

    def __init__(self, base: int | None = None, size: int = RANGE) -> None:
        self._lock = threading.Lock()
        self._fixed = base
        self._size = size
        self._pid = None
        self._base = base
        self._fd = None
        self._free: list[int] = []
        self._next = 0

    @property
    def base(self) -> int:
        with self._lock:
            self._claim()
            return self._base

    def _claim(self) -> None:
        if self._fixed is not None or self._pid == os.getpid():
            return
        slot, self._fd = claim_slot()  # first use, or a forked child: a range of its own
        self._pid, self._base = os.getpid(), BASE + slot * RANGE
        self._free, self._next = [], 0

    def acquire(self) -> int:
        with self._lock:
            self._claim()
            if self._free:
                return self._free.pop()
            if self._next >= self._size:
                raise UidError(f"more than {self._size} sandboxes at once in one process")
            uid, self._next = self._base + self._next, self._next + 1
            return uid

    def release(self, uid: int) -> None:
        with self._lock:
            if self._base is not None and self._base <= uid < self._base + self._size:
                self._free.append(uid)
