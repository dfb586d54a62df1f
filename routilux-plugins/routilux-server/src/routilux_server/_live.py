"""Live tracking for WebSocket subscribers: a tracking sink that keeps recent records per job
and fans every record out to every subscriber.

The runtime's tracking hub calls :meth:`LiveSink.write` on its drain thread. Each record is
encoded to JSON once there; then, under the sink's lock, it is appended to its job's trace and
handed to the subscribers of its job and flow with ``loop.call_soon_threadsafe`` (one call per
subscriber per batch). The runtime never waits for a subscriber: each one has a bounded
:class:`asyncio.Queue`, and one that falls behind is closed and counted.

A subscriber registers under the same lock, taking a snapshot of the records kept so far: any
record is either in the snapshot or delivered live after it, never both and never neither
(the per-job ``seq`` is checked as well, so a duplicate could not get through anyway).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import Any

from routilux.tracking import TrackingRecord

__all__ = ["LiveSink", "Subscriber"]

Item = tuple[str, int, str]
"""``(job_id, seq, record as JSON text)``."""

_MAX_SEEN_JOBS = 10_000

FLOW_SNAPSHOT_JOBS = 50
"""Jobs whose kept records a flow subscriber's snapshot holds (the most recently active)."""


class Subscriber:
    """One WebSocket's queue of records (touched only on its event loop).

    Args:
        loop: the event loop of the WebSocket.
        maxsize: records queued before the subscriber counts as too slow.
        on_overflow: called (on the loop) once when the queue overflows.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        maxsize: int,
        on_overflow: Callable[[Subscriber], None],
    ) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize)
        self.overflowed = False
        self.closed = False
        self.delivered = 0
        self._on_overflow = on_overflow
        self._last: OrderedDict[str, int] = OrderedDict()

    def seen(self, job_id: str, seq: int) -> bool:
        """Record ``seq`` of ``job_id`` as seen; True if it (or a later one) already was."""
        last = self._last.get(job_id, 0)
        if seq <= last:
            return True
        self._last[job_id] = seq
        self._last.move_to_end(job_id)
        if len(self._last) > _MAX_SEEN_JOBS:
            self._last.popitem(last=False)
        return False

    def fail(self) -> None:
        """Give up on this subscriber as too slow (counted by the sink)."""
        if not self.overflowed:
            self.overflowed = True
            self.closed = True
            self._on_overflow(self)

    def deliver(self, items: Sequence[Item]) -> None:
        """Queue live records (called on the loop through ``call_soon_threadsafe``)."""
        if self.closed:
            return
        put = self.queue.put_nowait
        for job_id, seq, text in items:
            if self.seen(job_id, seq):
                continue
            try:
                put(text)
            except asyncio.QueueFull:
                self.fail()
                return
            self.delivered += 1


class _Trace:
    __slots__ = ("flow", "records")

    def __init__(self, flow: str, size: int) -> None:
        self.flow = flow
        self.records: deque[tuple[int, str]] = deque(maxlen=size)


class LiveSink:
    """The server's tracking sink (attached to the runtime when the app starts).

    Args:
        trace_size: records kept per job (the oldest go first).
        trace_jobs: jobs whose records are kept (least recently active go first).
        queue_size: records queued per subscriber before it is closed as too slow.
    """

    name = "routilux-server"

    def __init__(self, *, trace_size: int, trace_jobs: int, queue_size: int) -> None:
        self.trace_size = trace_size
        self.trace_jobs = trace_jobs
        self.queue_size = queue_size
        self._lock = threading.Lock()
        self._traces: OrderedDict[str, _Trace] = OrderedDict()
        self._by_job: dict[str, list[Subscriber]] = {}
        self._by_flow: dict[str, list[Subscriber]] = {}
        self._where: dict[Subscriber, tuple[dict[str, list[Subscriber]], str]] = {}
        self.received = 0
        """Records received from the hub."""
        self.slow_closed = 0
        """Subscribers closed because they fell ``queue_size`` records behind."""

    # -- from the hub's drain thread -------------------------------------------------------

    def write(self, records: Sequence[TrackingRecord]) -> None:
        encoded = [
            (r.job_id, r.flow, r.seq, json.dumps(r.to_dict(), default=str)) for r in records
        ]
        with self._lock:
            self.received += len(encoded)
            out: dict[Subscriber, list[Item]] = {}
            traces = self._traces
            by_job = self._by_job
            by_flow = self._by_flow
            for job_id, flow, seq, text in encoded:
                trace = traces.get(job_id)
                if trace is None:
                    trace = traces[job_id] = _Trace(flow, self.trace_size)
                else:
                    traces.move_to_end(job_id)
                trace.records.append((seq, text))
                if by_job or by_flow:
                    item = (job_id, seq, text)
                    for sub in by_job.get(job_id, ()):
                        out.setdefault(sub, []).append(item)
                    for sub in by_flow.get(flow, ()):
                        out.setdefault(sub, []).append(item)
            while len(traces) > self.trace_jobs:
                traces.popitem(last=False)
            for sub, items in out.items():
                try:
                    sub.loop.call_soon_threadsafe(sub.deliver, items)
                except RuntimeError:  # its loop is closed: the server is going away
                    self._remove_locked(sub)

    # -- from the event loop ---------------------------------------------------------------

    def subscribe(
        self, *, job_id: str | None = None, flow: str | None = None
    ) -> tuple[Subscriber, list[str]]:
        """A new subscriber to one job's or one flow's records, and the records kept so far
        (JSON texts, per job in ``seq`` order; for a flow, of its ``FLOW_SNAPSHOT_JOBS`` most
        recently active jobs). Call on the subscriber's event loop."""
        if (job_id is None) == (flow is None):
            raise ValueError("subscribe to exactly one of job_id or flow")
        sub = Subscriber(asyncio.get_running_loop(), self.queue_size, self._overflowed)
        snapshot: list[str] = []
        with self._lock:
            if job_id is not None:
                trace = self._traces.get(job_id)
                jobs = [(job_id, trace)] if trace is not None else []
                table, key = self._by_job, job_id
            else:
                assert flow is not None
                jobs = []
                for j in reversed(self._traces):  # the most recently active jobs of the flow
                    t = self._traces[j]
                    if t.flow == flow:
                        jobs.append((j, t))
                        if len(jobs) == FLOW_SNAPSHOT_JOBS:
                            break
                jobs.reverse()
                table, key = self._by_flow, flow
            for jid, trace in jobs:
                for seq, text in trace.records:
                    sub.seen(jid, seq)
                    snapshot.append(text)
            table.setdefault(key, []).append(sub)
            self._where[sub] = (table, key)
        return sub, snapshot

    def unsubscribe(self, sub: Subscriber) -> None:
        sub.closed = True
        with self._lock:
            self._remove_locked(sub)

    def _remove_locked(self, sub: Subscriber) -> None:
        where = self._where.pop(sub, None)
        if where is None:
            return
        table, key = where
        subs = table.get(key)
        if subs is not None:
            subs[:] = [s for s in subs if s is not sub]
            if not subs:
                del table[key]

    def _overflowed(self, sub: Subscriber) -> None:
        with self._lock:
            self.slow_closed += 1
            self._remove_locked(sub)

    # -- reading ---------------------------------------------------------------------------

    def trace(self, job_id: str) -> list[dict[str, Any]] | None:
        """The records kept for ``job_id`` (oldest first), None if none are."""
        with self._lock:
            trace = self._traces.get(job_id)
            texts = [t for _, t in trace.records] if trace is not None else None
        return None if texts is None else [json.loads(t) for t in texts]

    def knows_job(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._traces

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "subscribers": len(self._where),
                "slow_closed": self.slow_closed,
                "records_received": self.received,
                "jobs_traced": len(self._traces),
            }
