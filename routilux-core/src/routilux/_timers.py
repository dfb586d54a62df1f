"""One timer thread per runtime, driven by a heap of deadlines.

A timer firing only calls a short callback (which schedules work); it never runs routine logic.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable

import structlog

from .clock import Clock

__all__ = ["TimerHandle", "TimerWheel"]

_ADVANCE_WAIT = 10.0
"""Longest ``ManualClock.advance`` waits for the timers it made due (a callback stuck on a
lock the advancing thread holds must not hang it forever)."""


class TimerHandle:
    """A cancellable armed timer."""

    __slots__ = ("callback", "cancelled", "deadline")

    def __init__(self, deadline: float, callback: Callable[[], None]) -> None:
        self.deadline = deadline
        self.callback: Callable[[], None] | None = callback
        self.cancelled = False

    def cancel(self) -> bool:
        """Prevent the callback from running; True if it had not run yet."""
        if self.cancelled or self.callback is None:
            return False
        self.cancelled = True
        self.callback = None
        return True


class TimerWheel:
    """A heap of deadlines served by one lazily started daemon thread."""

    def __init__(self, clock: Clock, name: str = "routilux-timer") -> None:
        self._clock = clock
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._firing = False  # a callback is running outside the lock
        clock.subscribe(self._wake)

    def _wake(self) -> None:
        """Called by a manual clock after it moved: fire what came due, and (unless called
        from the timer thread itself) return only once every timer due at the new time has
        fired, so ``ManualClock.advance`` is synchronous with the timers it triggers."""
        with self._cond:
            self._cond.notify_all()
            if self._thread is None or threading.current_thread() is self._thread:
                return
            now = self._clock.now()
            self._cond.wait_for(
                lambda: self._closed
                or (not self._firing and not (self._heap and self._heap[0][0] <= now)),
                timeout=_ADVANCE_WAIT,
            )

    def call_at(self, deadline: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` on the timer thread once the clock reaches ``deadline``."""
        handle = TimerHandle(deadline, callback)
        with self._cond:
            if self._closed:
                raise RuntimeError("timer thread is stopped")
            heapq.heappush(self._heap, (deadline, next(self._seq), handle))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            elif self._heap[0][2] is handle:
                self._cond.notify_all()
        return handle

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        return self.call_at(self._clock.now() + max(0.0, delay), callback)

    def now(self) -> float:
        return self._clock.now()

    def _run(self) -> None:
        clock = self._clock
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    if not self._heap:
                        self._cond.notify_all()  # nothing due: wake a waiting clock.advance()
                        self._cond.wait()
                        continue
                    deadline, _, handle = self._heap[0]
                    if handle.cancelled:
                        heapq.heappop(self._heap)
                        continue
                    delay = deadline - clock.now()
                    if delay <= 0:
                        heapq.heappop(self._heap)
                        callback = handle.callback
                        handle.callback = None
                        self._firing = True
                        break
                    self._cond.notify_all()  # nothing due: wake a waiting clock.advance()
                    clock.wait(self._cond, delay)
            if callback is not None:
                try:
                    callback()
                except Exception:  # a timer callback must never kill the timer thread
                    structlog.get_logger("routilux.timers").exception("timer.callback_failed")
            with self._cond:
                self._firing = False

    def close(self) -> None:
        """Stop the thread; pending timers are dropped (their owners are shut down too)."""
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread
