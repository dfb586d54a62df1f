"""Clocks the runtime reads time from.

The runtime never calls ``time.monotonic`` directly for scheduling: it asks its clock. A
:class:`ManualClock` lets tests drive time-interval policies, retry backoff and timeouts without
sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """What the runtime needs from a clock."""

    def now(self) -> float:
        """Monotonic seconds."""
        ...

    def wait(self, cond: threading.Condition, timeout: float | None) -> None:
        """Block on ``cond`` (held by the caller) for at most ``timeout`` clock-seconds."""
        ...

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever time jumps (manual clocks); a no-op for real clocks."""
        ...


class SystemClock:
    """Real monotonic time."""

    def now(self) -> float:
        return time.monotonic()

    def wait(self, cond: threading.Condition, timeout: float | None) -> None:
        cond.wait(timeout)

    def subscribe(self, callback: Callable[[], None]) -> None:
        return None


class ManualClock:
    """A clock that only moves when :meth:`advance` is called.

    Timers armed against it fire (on the runtime's timer thread) as soon as ``advance`` moves
    time past their deadline, so tests of retries and time-interval policies run instantly.
    ``advance`` returns once every timer that came due has fired (the work a timer schedules,
    such as a retried activation, may still be running on the workers).
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[], None]] = []

    def now(self) -> float:
        return self._now

    def wait(self, cond: threading.Condition, timeout: float | None) -> None:
        # Real time never advances a manual clock: wait until ``advance`` notifies.
        cond.wait()

    def subscribe(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._subscribers.append(callback)

    def advance(self, seconds: float) -> None:
        """Move time forward and fire, on their timer threads, the timers that came due;
        returns once they have fired."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards; pass seconds >= 0")
        with self._lock:
            self._now += seconds
            subscribers = list(self._subscribers)
        for callback in subscribers:
            callback()
