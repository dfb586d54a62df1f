"""Test-only crash points (``ROUTILUX_CRASH_AT``), read once when a store is built.

``ROUTILUX_CRASH_AT=point:n`` makes the process kill itself with ``SIGKILL`` the ``n``-th time
(1-based, counted over the whole process) it reaches ``point``:

* ``before_logic``: an activation took its input, its logic has not run;
* ``after_logic``: the logic returned, nothing of it is committed;
* ``in_commit``: inside the store's transaction, before ``COMMIT``;
* ``after_commit``: the activation is committed, its emitted payloads are not yet routed.

Without the variable no plan exists and the runtime never looks at one; the crash tests in
``routilux-core/tests/test_store_crash.py`` use it to hit every point deterministically.
"""

from __future__ import annotations

import os
import signal
import threading

__all__ = ["POINTS", "CrashPlan"]

POINTS = ("before_logic", "after_logic", "in_commit", "after_commit")
_ENV = "ROUTILUX_CRASH_AT"


class CrashPlan:
    """Kill the process at the ``n``-th arrival at one crash point."""

    def __init__(self, point: str, n: int) -> None:
        if point not in POINTS:
            raise ValueError(f"{_ENV}: unknown crash point {point!r} (points: {POINTS})")
        self.point = point
        self.n = n
        self._count = 0
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> CrashPlan | None:
        spec = os.environ.get(_ENV)
        if not spec:
            return None
        point, _, n = spec.partition(":")
        return cls(point, int(n or "1"))

    def reach(self, point: str) -> None:
        if point != self.point:
            return
        with self._lock:
            self._count += 1
            hit = self._count == self.n
        if hit:
            os.kill(os.getpid(), signal.SIGKILL)
