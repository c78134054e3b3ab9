"""A wall-clock budget for one call that may not return (a sympy ``factor`` or ``limit`` can run for minutes).

:func:`within` runs ``fn()`` and returns its value, or raises :class:`Timeout` once ``seconds`` have
passed. In the main thread of a POSIX process the call is interrupted by ``SIGALRM``, sent by a watchdog
thread at the deadline and every 0.1 s after it until the call returns, so a runaway sympy loop really
stops. Anywhere else (another thread, Windows) the call runs in a daemon worker
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
    return threading.current_thread() is threading.main_thread() and hasattr(signal, "pthread_kill")


def within(fn: Callable[[], T], seconds: float) -> T:
    """``fn()``, or :class:`Timeout` after ``seconds`` of wall-clock time."""
    if seconds <= 0:
        raise Timeout(seconds)
    if _main_thread_alarm_available():
        # A watchdog thread sends SIGALRM to the main thread at the deadline and again every 0.1 s until
        # ``fn`` has returned. (A process-wide itimer is not enough: any library call that resets
        # ITIMER_REAL or alarm() cancels it, and a budget silently became none.) Budgets nest: a signal
        # meant for an outer budget is passed on to the outer handler.
        deadline = time.monotonic() + seconds
        state = {"armed": True}
        done = threading.Event()
        previous = signal.getsignal(signal.SIGALRM)

        def on_alarm(signum, frame):
            if state["armed"] and time.monotonic() >= deadline:
                raise Timeout(seconds)
            if callable(previous):
                previous(signum, frame)

        def watchdog():
            if done.wait(seconds):
                return
            while not done.is_set():
                signal.pthread_kill(threading.main_thread().ident, signal.SIGALRM)
                done.wait(0.1)

        signal.signal(signal.SIGALRM, on_alarm)
        dog = threading.Thread(target=watchdog, daemon=True, name="timebudget")
        dog.start()
        try:
            return fn()
        finally:
            state["armed"] = False
            done.set()
            dog.join()
            signal.signal(signal.SIGALRM, previous)
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
