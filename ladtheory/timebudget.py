"""A wall-clock budget for one call that may not return (a sympy ``factor`` or ``limit`` can run for minutes).

:func:`within` runs ``fn()`` and returns its value, or raises :class:`Timeout` once ``seconds`` have
passed. In the main thread of a POSIX process the call is interrupted by ``SIGALRM`` (``setitimer``), so a
runaway sympy loop really stops. Anywhere else (another thread, Windows) the call runs in a daemon worker
thread and :class:`Timeout` is raised when the wait expires; the worker cannot be killed and finishes in the
background, but the caller gets its answer ("undecided") on time.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Callable, TypeVar

T = TypeVar("T")


class Timeout(Exception):
    """The call did not finish within its budget."""

    def __init__(self, seconds: float):
        super().__init__(f"timed out after {seconds:g} s")
        self.seconds = seconds


def _main_thread_alarm_available() -> bool:
    return threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")


def within(fn: Callable[[], T], seconds: float) -> T:
    """``fn()``, or :class:`Timeout` after ``seconds`` of wall-clock time."""
    if seconds <= 0:
        raise Timeout(seconds)
    if _main_thread_alarm_available():
        def on_alarm(signum, frame):
            raise Timeout(seconds)

        start = time.monotonic()
        previous = signal.signal(signal.SIGALRM, on_alarm)
        remaining, interval = signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            return fn()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            if remaining:  # an outer budget was running: give it back what is left of it (at least 1 ms)
                signal.setitimer(
                    signal.ITIMER_REAL, max(remaining - (time.monotonic() - start), 1e-3), interval
                )
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise Timeout(seconds)
    if "error" in box:
        raise box["error"]
    return box["value"]


__all__ = ["Timeout", "within"]
