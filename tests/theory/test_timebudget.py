"""The wall-clock budget of every sympy call (ladtheory.timebudget.within) holds even when the call resets the
process's interval timer, and budgets nest. (In CI a sympy ``factor`` ran for 25 minutes under a 'budget'
because the old itimer-based budget had been cancelled; a manual SIGALRM ended it at once.)"""

from __future__ import annotations

import signal
import time

import pytest

from ladtheory.timebudget import Timeout, within


def _busy(seconds: float) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(1000))
    return "finished"


def test_a_budget_survives_a_call_that_resets_the_interval_timer():
    def resets_then_runs():
        signal.setitimer(signal.ITIMER_REAL, 0)  # what a library's own alarm() cleanup does
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # an itimer budget would never fire now
        return _busy(6.0)

    start = time.monotonic()
    with pytest.raises(Timeout):
        within(resets_then_runs, 0.3)
    assert time.monotonic() - start < 4.0


def test_budgets_nest_and_the_outer_one_wins_when_shorter():
    start = time.monotonic()
    with pytest.raises(Timeout) as info:
        within(lambda: within(lambda: _busy(6.0), 30.0), 0.3)
    assert info.value.seconds == 0.3 and time.monotonic() - start < 4.0
    assert within(lambda: within(lambda: "inner", 5.0), 5.0) == "inner"


def test_a_call_within_its_budget_returns_and_leaves_no_handler_behind():
    before = signal.getsignal(signal.SIGALRM)
    assert within(lambda: _busy(0.05), 5.0) == "finished"
    assert signal.getsignal(signal.SIGALRM) == before
    with pytest.raises(ZeroDivisionError):
        within(lambda: 1 / 0, 5.0)
    assert signal.getsignal(signal.SIGALRM) == before
