"""Execution statistics per job and per flow, from the runtime's own counters.

These need no sink: every job counts activations, errors, retries, skips, payloads and keeps
its most recent activation durations (``routilux._job.RoutineStats``). An
:class:`ExecutionTracker` folds those of many jobs into per-routine totals with bounded memory
(counters plus a window of the most recent durations), which is what
``Runtime.get_flow_metrics`` reports.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .._activation import _StatsCore, fold_all, set_stats_fields, stats_fields

if TYPE_CHECKING:
    from .._job import Job

__all__ = ["DEFAULT_DURATION_SAMPLES", "ExecutionTracker", "job_metrics"]

_SUMMED = ("activations", "errors", "retries", "skipped", "timeouts", "payloads_in",
           "payloads_out", "total")
"""The counters two totals add up to (``_Totals.merged``)."""

_MAX_ALIGNED = 16
"""Routine orders (flow versions) an ExecutionTracker keeps aligned totals for."""

DEFAULT_DURATION_SAMPLES = 1024
"""Durations kept per routine of a flow for its percentiles (the most recent ones)."""


def _pct(samples: list[float], p: float) -> float:
    n = len(samples)
    return samples[min(n - 1, int(p * n))] if n else 0.0


def _rates(d: dict[str, Any], elapsed: float) -> dict[str, Any]:
    """Add ``executions``, ``successes``, ``success_rate`` and ``throughput`` to a routine's
    counters (``d`` as ``RoutineStats.to_dict`` or an :class:`ExecutionTracker` gives them)."""
    executions = d["activations"] + d.get("timeouts", 0)
    unsuccessful = d["errors"] + d["retries"] + d["skipped"]
    executions = max(executions, unsuccessful)
    successes = executions - unsuccessful
    d["executions"] = executions
    d["successes"] = successes
    d["success_rate"] = successes / executions if executions else None
    d["throughput"] = d["activations"] / elapsed if elapsed > 0 else None
    return d


def _summary(routines: dict[str, dict[str, Any]]) -> dict[str, Any]:
    busy = {rid: m for rid, m in routines.items() if m["activations"]}
    slowest = max(busy, key=lambda rid: busy[rid]["duration"]["avg"], default=None)
    busiest = max(busy, key=lambda rid: busy[rid]["duration"]["total"], default=None)
    return {
        "slowest_routine": slowest,
        "most_time_routine": busiest,
        "failed_routines": sorted(rid for rid, m in routines.items() if m["errors"]),
        "retries": sum(m["retries"] for m in routines.values()),
        "errors": sum(m["errors"] for m in routines.values()),
        "skipped": sum(m["skipped"] for m in routines.values()),
        "activations": sum(m["activations"] for m in routines.values()),
    }


def _elapsed(job: Job) -> float:
    state = job.state
    start = state.started_at or state.created_at
    end = state.finished_at
    if start is None:
        return 0.0
    stop = end.timestamp() if end is not None else time.time()
    return max(0.0, stop - start.timestamp())


def job_metrics(job: Job) -> dict[str, Any]:
    """``Job.metrics()`` (the SPEC §7 keys) plus rates, a summary and tracking counters.

    Added keys: ``flow`` (the name it was started with), ``started_at`` / ``finished_at``
    (ISO-8601 or None), ``elapsed`` (seconds), ``throughput`` (activations per second), per
    routine ``executions``, ``successes``, ``success_rate``, ``throughput``; ``summary``
    (``slowest_routine``, ``most_time_routine``, ``failed_routines``, ``retries``, ...);
    ``tracking`` (``records``, ``dropped``) when the job is tracked.
    """
    from .._job_control import metrics

    m: dict[str, Any] = metrics(job)
    elapsed = _elapsed(job)
    for d in m["routines"].values():
        _rates(d, elapsed)
    state = job.state
    activations = sum(d["activations"] for d in m["routines"].values())
    m["flow"] = job.flow_name
    m["started_at"] = state.started_at.isoformat() if state.started_at else None
    m["finished_at"] = state.finished_at.isoformat() if state.finished_at else None
    m["elapsed"] = elapsed
    m["throughput"] = activations / elapsed if elapsed > 0 else None
    m["error_type"] = state.error_type
    m["error_routine"] = state.error_routine
    m["summary"] = _summary(m["routines"])
    tracker = getattr(job, "tracker", None)
    m["tracking"] = (
        {"records": tracker.seq, "dropped": tracker.dropped} if tracker is not None else None
    )
    return m


def _restore_totals(maxlen: int, values: tuple[Any, ...], samples: list[float]) -> _Totals:
    totals = _Totals(maxlen)
    set_stats_fields(totals, values)
    totals.samples.extend(samples)
    return totals


class _Totals(_StatsCore):
    """A flow's totals of one routine: the counters of :class:`RoutineStats` (``fold`` adds
    a job's, compiled where ``routilux._cstats`` is built) and the most recent durations."""

    __slots__ = ("samples",)

    def __init__(self, samples: int) -> None:
        super().__init__()
        self.samples: deque[float] = deque(maxlen=samples)

    def copy(self) -> _Totals:
        out = _Totals(1)
        set_stats_fields(out, stats_fields(self))
        out.samples = self.samples.copy()  # (one C call, its maxlen kept)
        return out

    def __reduce__(self) -> tuple[Any, ...]:
        return _restore_totals, (self.samples.maxlen, stats_fields(self), list(self.samples))

    def merged(self, other: _Totals | None) -> _Totals:
        if other is None:
            return self
        out = self.copy()
        for name in _SUMMED:
            setattr(out, name, getattr(out, name) + getattr(other, name))
        out.min = min(out.min, other.min)
        out.max = max(out.max, other.max)
        out.samples.extend(other.samples)
        return out

    def to_dict(self) -> dict[str, Any]:
        samples = sorted(self.samples)
        n = self.activations
        return {
            "activations": n,
            "errors": self.errors,
            "retries": self.retries,
            "skipped": self.skipped,
            "timeouts": self.timeouts,
            "payloads_in": self.payloads_in,
            "payloads_out": self.payloads_out,
            "duration": {
                "min": self.min if n else 0.0,
                "avg": self.total / n if n else 0.0,
                "p50": _pct(samples, 0.50),
                "p95": _pct(samples, 0.95),
                "max": self.max,
                "total": self.total,
            },
        }


class ExecutionTracker:
    """Per-routine statistics of many jobs of one flow, with bounded memory.

    The runtime folds every job into the tracker of its flow once: a completed job as it
    finishes, any other when it forgets it (beyond ``max_finished_jobs`` or its TTL), each
    with a number that grows from fold to fold; :meth:`snapshot` adds the jobs still held
    that it does not count yet, so nothing is counted twice and nothing is lost. Memory per
    routine: a few counters and the ``samples`` most recent durations (the p50/p95 are over those).

    Args:
        flow: the flow id.
        samples: durations kept per routine.
        born: the runtime's last fold number when it made this tracker (0 otherwise).
    """

    def __init__(
        self, flow: str, *, samples: int = DEFAULT_DURATION_SAMPLES, born: int = 0
    ) -> None:
        self.flow = flow
        self.samples = samples
        self._lock = threading.Lock()
        self._routines: dict[str, _Totals] = {}
        # the totals of a flow version's routines in its plan's order (``add_job`` folds a
        # job's counters into them in one call); a few entries: one per version of the flow
        self._aligned: dict[tuple[str, ...], list[_Totals]] = {}
        self._statuses: dict[str, int] = {}
        self._jobs = 0
        self._elapsed = 0.0
        self._first: float | None = None
        self._last: float | None = None
        # Fold numbers (``add_job``): the last one when this tracker was made (the runtime's
        # trackers are bounded: one made again counts no job folded into its predecessor),
        # and the highest one added since.
        self._born = born
        self._seq = born

    def _fold_locked(self, job: Job, into: dict[str, _Totals], statuses: dict[str, int]) -> float:
        for rid, stats in zip(job.plan.routine_ids, job.stats, strict=True):
            t = into.get(rid)
            if t is None:
                t = into[rid] = _Totals(self.samples)
            t.fold(stats, t.samples)
        status = job.state.status.value
        statuses[status] = statuses.get(status, 0) + 1
        return _elapsed(job)

    def add_job(self, job: Job, seq: int = 0) -> None:
        """Fold a finished job's counters in (the runtime does this once per job, with its
        fold number ``seq``: see the class).

        The same as ``_fold_locked`` plus the job's times, written out: every job the runtime
        forgets comes here (one frame, each timestamp computed once), and a snapshot of the
        held jobs gives exactly the same totals (tests/test_flow_fold.py).
        """
        state = job.state
        start = (state.started_at or state.created_at).timestamp()
        end = state.finished_at
        stop = end.timestamp() if end is not None else time.time()
        status = state.status._value_  # (``.value`` is a Python-level enum property)
        rids = job.plan.routine_ids
        with self._lock:
            aligned = self._aligned.get(rids)
            if aligned is None:
                aligned = self._align_locked(rids)
            fold_all(aligned, job.stats)
            statuses = self._statuses
            statuses[status] = statuses.get(status, 0) + 1
            self._jobs += 1
            self._elapsed += max(0.0, stop - start)
            if self._first is None or start < self._first:
                self._first = start
            if self._last is None or stop > self._last:
                self._last = stop
            if seq > self._seq:
                self._seq = seq

    def _align_locked(self, rids: tuple[str, ...]) -> list[_Totals]:
        routines = self._routines
        aligned = []
        for rid in rids:
            t = routines.get(rid)
            if t is None:
                t = routines[rid] = _Totals(self.samples)
            aligned.append(t)
        if len(self._aligned) >= _MAX_ALIGNED:  # (a flow changed over and over: start again)
            self._aligned.clear()
        self._aligned[rids] = aligned
        return aligned

    def snapshot(self, jobs: Iterable[Job] = ()) -> dict[str, Any]:
        """Totals of the folded jobs plus ``jobs`` (those still held by the runtime).

        Returns ``{"flow", "jobs": {"total", <status>: n}, "elapsed", "throughput",
        "routines": {routine_id: {... same keys as in get_job_metrics ...}}, "summary"}``.
        """
        # The folded totals first, then the held jobs: a job folded by then (its number at
        # most the last one added) is in the copy; one folded after it is counted as held.
        with self._lock:
            born, seen = self._born, self._seq
            base = {rid: t.copy() for rid, t in self._routines.items()}
            statuses = dict(self._statuses)
            count = self._jobs
            elapsed = self._elapsed
            first, last = self._first, self._last
        live: dict[str, _Totals] = {}
        for job in jobs:
            with job.lock:
                folded = getattr(job, "folded", 0)
                if born < folded <= seen:
                    continue
                elapsed += self._fold_locked(job, live, statuses)
            count += 1
            state = job.state
            start = (state.started_at or state.created_at).timestamp()
            end = state.finished_at.timestamp() if state.finished_at else time.time()
            first = start if first is None else min(first, start)
            last = end if last is None else max(last, end)
        routines = {}
        for rid in dict.fromkeys([*base, *live]):
            merged = (base.get(rid) or _Totals(self.samples)).merged(live.get(rid))
            routines[rid] = merged.to_dict()
        window = (last - first) if first is not None and last is not None else 0.0
        for d in routines.values():
            _rates(d, window)
        total = sum(d["activations"] for d in routines.values())
        return {
            "flow": self.flow,
            "jobs": {"total": count, **dict(sorted(statuses.items()))},
            "job_time": elapsed,
            "window": window,
            "throughput": total / window if window > 0 else None,
            "routines": routines,
            "summary": _summary(routines),
        }
