"""A per-test time limit that student code cannot swallow with ``except Exception``."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class GradingTimeout(BaseException):
    """Raised inside student code when its time is up. A BaseException, so that a bare
    ``except Exception`` in a submission does not catch it."""


@contextmanager
def time_limit(seconds: float, what: str) -> Iterator[None]:
    """Raise GradingTimeout in this thread after `seconds` (no limit when 0 or where SIGALRM is
    unavailable, e.g. on Windows or off the main thread)."""
    usable = seconds > 0 and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def on_alarm(signum: int, frame: object) -> None:
        raise GradingTimeout(f"{what} timed out after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
