"""A per-test time limit that student code cannot swallow with ``except Exception``."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


class GradingTimeout(pytest.fail.Exception):  # type: ignore[misc,name-defined]
    """Raised inside student code when its time is up. A pytest outcome (a BaseException), so a bare
    ``except Exception`` does not catch it, yet pytest's fixture machinery handles it like a failure."""


@contextmanager
def time_limit(seconds: float, what: str) -> Iterator[None]:
    """Raise GradingTimeout in this thread after `seconds` (no limit when 0 or where SIGALRM is
    unavailable, e.g. on Windows or off the main thread)."""
    usable = seconds > 0 and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    fired = False

    def on_alarm(signum: int, frame: object) -> None:
        nonlocal fired
        fired = True
        raise GradingTimeout(f"{what} timed out after {seconds:g} s")

    # Nested limits (the import inside a check's setup): the inner one reports, the outer resumes after.
    outer_left, _ = signal.getitimer(signal.ITIMER_REAL)
    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, min(seconds, outer_left) if outer_left else seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_left and not fired:
            signal.setitimer(signal.ITIMER_REAL, max(outer_left - (time.monotonic() - started), 1e-3))
