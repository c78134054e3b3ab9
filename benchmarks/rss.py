"""Peak resident memory of a benchmark worker, per phase of a step (generation, update).

torch keeps no statistics of CPU allocations, so memory is read from the operating system: a daemon
thread samples the process's resident set size (``/proc/self/statm``) every ``interval`` seconds and
keeps the maximum under the current phase label; torch releases the GIL inside its kernels, so the
thread samples during them. A tensor alive for less than ``interval`` can be missed; the process-wide
high-water mark (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is reported beside it and cannot be.

The allocator must give memory back for RSS to follow the live tensors: glibc keeps freed blocks below
its (self-raising) mmap threshold in its heap. :data:`MALLOC_ENV` fixes that threshold at 128 KiB, so
every tensor larger than that is its own mapping, returned on free; the step benchmark sets it in every
worker's environment (ladtrain's and TRL's alike), so the numbers of both are measured the same way.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from contextlib import contextmanager
from typing import Iterator

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024), "MALLOC_TRIM_THRESHOLD_": str(128 * 1024)}
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """The resident set size of this process now (0 where ``/proc`` is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except OSError:
        return 0


def max_rss_bytes() -> int:
    """This process's high-water mark of resident memory since it started (Linux: kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PhasePeaks:
    """Peak RSS per phase label, sampled by a daemon thread (see the module docstring)."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.peaks: dict[str, int] = {}
        self.label = "outside"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.record()
            time.sleep(self.interval)

    def record(self) -> None:
        label, now = self.label, rss_bytes()
        if now > self.peaks.get(label, 0):
            self.peaks[label] = now

    @contextmanager
    def phase(self, label: str) -> Iterator[None]:
        previous, self.label = self.label, label
        self.record()
        try:
            yield
        finally:
            self.record()
            self.label = previous

    def reset(self) -> None:
        self.peaks = {}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def megabytes(n: int) -> float:
    return n / 2**20


__all__ = ["MALLOC_ENV", "PhasePeaks", "max_rss_bytes", "megabytes", "rss_bytes"]
