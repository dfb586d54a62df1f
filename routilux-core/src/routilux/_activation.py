"""Small building blocks of a job: one activation's input, per-routine counters, and the
job lock's contention-friendly entry."""

from __future__ import annotations

import contextlib
import os
import struct
import threading
from array import array
from time import sleep as _yield
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections import deque

    from ._timers import TimerHandle

__all__ = ["Activation", "RoutineStats", "YieldingLock", "new_activation"]

_DURATION_SAMPLES = 1024
"""Most recent activation durations kept per job and routine (for percentiles)."""

_INF = float("inf")
_SAMPLE = struct.Struct("d")
_PAIR = struct.Struct("dd")
_RING_BYTES = _DURATION_SAMPLES * _SAMPLE.size
_S = TypeVar("_S", bound="_PyStatsCore")

_SPINS = 50
"""Times a worker yields the GIL and retries before it blocks on a busy job lock."""


class YieldingLock:
    """Enter the job lock without joining a lock convoy.

    A blocking ``Lock.acquire`` hands the lock to a waiter that still needs the GIL; under
    load, two workers then take turns through the operating system on every acquisition (two
    context switches per message, measured). Trying without blocking and yielding the GIL
    between tries lets the holder finish its short critical section first, so the lock is
    only ever taken by a running thread. After ``_SPINS`` tries it blocks, so a waiter never
    starves.
    """

    __slots__ = ("lock",)

    def __init__(self, lock: threading.Lock) -> None:
        # Only the lock: bound methods kept here would be two more objects per job for the
        # cyclic garbage collector to track (see docs/performance.md, "Garbage collection").
        self.lock = lock

    def __enter__(self) -> None:
        if not self.lock.acquire(False):
            self.contended()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()

    def contended(self) -> None:
        """Take the lock after a first ``acquire(False)`` failed.

        The per-message paths inline the uncontended case (no Python call for it)::

            if not lock.acquire(False):
                hot.contended()
            try:
                ...
            finally:
                lock.release()
        """
        _acquire_contended(self.lock)


def _acquire_contended(lock: threading.Lock) -> None:
    """``YieldingLock.contended`` of ``lock`` (also used by ``Job``, its own yielding lock)."""
    acquire = lock.acquire
    for _ in range(_SPINS):
        _yield(0)
        if acquire(False):
            return
    acquire()


class Activation:
    """The input of one activation (kept for retries, saving and timeouts)."""

    __slots__ = ("abandoned", "attempt", "due", "finished", "message", "ri", "seq", "slot_data",
                 "timer")

    def __init__(
        self, ri: int, slot_data: dict[str, list[dict[str, Any]]], message: Any, attempt: int,
        seq: int,
    ) -> None:
        self.ri = ri
        self.slot_data = slot_data
        self.message = message
        self.attempt = attempt
        self.seq = seq
        self.abandoned = False
        self.finished = False
        self.timer: TimerHandle | None = None
        self.due = 0.0

    def to_dict(self, routine_id: str, retry_in: float = 0.0) -> dict[str, Any]:
        return {
            "routine_id": routine_id,
            "slot_data": self.slot_data,
            "message": dict(self.message) if self.message is not None else None,
            "attempt": self.attempt,
            "seq": self.seq,
            "retry_in": retry_in,
        }


_object_new = object.__new__


def new_activation(
    ri: int, slot_data: dict[str, list[dict[str, Any]]], message: Any, attempt: int, seq: int
) -> Activation:
    """``Activation(ri, slot_data, message, attempt, seq)`` for the per-activation paths: a
    plain function call and ``object.__new__`` instead of a type call running ``__init__`` in
    a frame of its own (about half the instructions, measured). Same fields, same values (a
    test compares the two)."""
    a: Activation = _object_new(Activation)
    a.ri = ri
    a.slot_data = slot_data
    a.message = message
    a.attempt = attempt
    a.seq = seq
    a.abandoned = False
    a.finished = False
    a.timer = None
    a.due = 0.0
    return a


class _PyStatsCore:
    """Counters of one routine: the fields and the per-activation / per-job methods of
    :class:`RoutineStats` and of the flow totals (``tracking.metrics._Totals``).

    ``routilux._cstats.StatsCore`` (routilux/_cstats.c) does exactly this, faster and with
    its counts and durations as C numbers rather than an int or float object each; this class
    is used where that module was not built, or with ``ROUTILUX_PURE_PYTHON=1``. Tests run
    both and compare them (the same values and types; the same refusals).
    """

    __slots__ = ("_samples", "activations", "dpos", "errors", "max", "min", "payloads_in",
                 "payloads_out", "retries", "skipped", "timeouts", "total")

    def __init__(self) -> None:
        self.activations = 0
        self.errors = 0
        self.retries = 0
        self.skipped = 0
        self.timeouts = 0
        self.payloads_in = 0
        self.payloads_out = 0
        self.total = 0.0
        self.min = _INF
        self.max = 0.0
        # The most recent samples (a ring of _DURATION_SAMPLES packed doubles, made on first
        # use): a ``bytearray`` is not tracked by the cyclic garbage collector; an ``array``
        # or a ``deque`` would be, one more object per routine of every kept job for each
        # collection to walk (docs/performance.md).
        self._samples: bytearray | None = None
        self.dpos = 0  # next byte offset to overwrite once the ring is full

    def record(self, seconds: float) -> None:
        # The first sample is not stored: while there is one, it is ``total`` (0.0 plus one
        # duration is that duration, exactly), and most routines run once per job. The ring
        # is made on the second, with both. Order of the writes (for a reader on another
        # thread, ``_sample_data`` and ``to_dict``): ``min``/``max`` first (a sample a reader
        # can see is within them), then the ring, ``total``, and ``activations`` last. One
        # writer at a time per routine (the job lock, or the only activation running).
        # What can be refused is refused before anything changes (as the compiled twin does).
        seconds = float(seconds)
        samples = self._samples
        if samples is not None:
            if type(samples) is not bytearray:
                raise TypeError("RoutineStats._samples must be a bytearray or None")
            if len(samples) >= _RING_BYTES and not 0 <= self.dpos <= len(samples) - 8:
                raise ValueError("RoutineStats: sample offset out of range")
        if seconds < self.min:
            self.min = seconds
        if seconds > self.max:
            self.max = seconds
        if samples is None:
            if self.activations:
                self._samples = bytearray(_PAIR.pack(self.total, seconds))
        elif len(samples) < _RING_BYTES:
            samples += _SAMPLE.pack(seconds)
        else:
            pos = self.dpos
            _SAMPLE.pack_into(samples, pos, seconds)
            self.dpos = (pos + _SAMPLE.size) % _RING_BYTES
        self.total += seconds
        self.activations += 1

    def samples_into(self, target: deque[float]) -> None:
        """Append the kept durations to ``target`` (copied in one C call, so a concurrent
        ``record`` on a live job cannot interleave)."""
        n = self.activations  # (the reads in ``_sample_data``'s order, without packing)
        total = self.total
        samples = self._samples
        if samples is not None:
            target.extend(array("d", samples))
        elif n:
            target.append(total)

    def fold(self, other: _PyStatsCore, samples: deque[float]) -> None:
        """Add ``other``'s counters to these, widen min/max to its (if it ran), and append
        its kept durations to ``samples`` (a forgotten job into its flow's totals)."""
        self.activations += other.activations
        self.errors += other.errors
        self.retries += other.retries
        self.skipped += other.skipped
        self.timeouts += other.timeouts
        self.payloads_in += other.payloads_in
        self.payloads_out += other.payloads_out
        self.total += other.total
        if other.activations:
            if other.min < self.min:
                self.min = other.min
            if other.max > self.max:
                self.max = other.max
        other.samples_into(samples)


def _py_fold_all(totals: list[Any], stats: list[Any]) -> None:
    """``totals[i].fold(stats[i], totals[i].samples)`` for every ``i`` (a forgotten job's
    counters into its flow's totals, ``tracking.metrics``)."""
    if len(totals) != len(stats):
        raise ValueError("fold_all(totals, stats): the lists differ in length")
    for t, s in zip(totals, stats, strict=True):
        t.fold(s, t.samples)


def _py_fresh(cls: type[_S], n: int) -> list[_S]:
    """``n`` new ``cls`` objects (a job's counters, one per routine)."""
    return [cls() for _ in range(n)]


_StatsCore = _PyStatsCore
_fresh = _py_fresh
fold_all = _py_fold_all
if not TYPE_CHECKING and os.environ.get("ROUTILUX_PURE_PYTHON", "") in ("", "0"):
    # (an ImportError: not built, e.g. no C compiler where Routilux was installed)
    with contextlib.suppress(ImportError):
        from ._cstats import StatsCore as _StatsCore
        from ._cstats import fold_all  # noqa: F401 (used by tracking.metrics)
        from ._cstats import fresh as _fresh  # noqa: F401 (used by _job: the twin of _py_fresh)

STATS_ACCELERATED = _StatsCore is not _PyStatsCore
"""True when the compiled counters (routilux/_cstats.c) are in use."""


_STATS_FIELDS = ("activations", "errors", "retries", "skipped", "timeouts", "payloads_in",
                 "payloads_out", "total", "min", "max", "_samples", "dpos")


def stats_fields(stats: _PyStatsCore) -> tuple[Any, ...]:
    """The counters' fields, in ``_STATS_FIELDS`` order (for pickling and copying)."""
    return tuple(getattr(stats, name) for name in _STATS_FIELDS)


def set_stats_fields(stats: _PyStatsCore, values: tuple[Any, ...]) -> None:
    for name, value in zip(_STATS_FIELDS, values, strict=True):
        if name == "_samples" and value is not None:
            value = bytearray(value)  # (its own ring, not the original's)
        setattr(stats, name, value)


def _restore_stats(cls: type[RoutineStats], values: tuple[Any, ...]) -> RoutineStats:
    stats = cls()
    set_stats_fields(stats, values)
    return stats


class RoutineStats(_StatsCore):
    """Per-job counters of one routine (written under the job lock)."""

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, ...]:
        # (the compiled base has no pickling of its own: its fields are C numbers)
        return _restore_stats, (type(self), stats_fields(self))

    def _sample_data(self) -> bytearray | bytes | None:
        """The kept samples as packed doubles (the ring itself, or the one sample packed), or
        None before the first. Reads ``activations`` and ``total`` before the ring: if the
        ring is still absent then, no second sample had been added to ``total`` either."""
        n = self.activations
        total = self.total
        samples = self._samples
        if samples is not None:
            return samples
        return _SAMPLE.pack(total) if n else None

    @property
    def durations(self) -> array[float] | None:
        """The most recent activation durations in seconds (up to ``_DURATION_SAMPLES``, in
        no particular order; a copy), or None before the first."""
        samples = self._sample_data()
        return None if samples is None else array("d", samples)

    def to_dict(self) -> dict[str, Any]:
        samples = sorted(self.durations or ())
        n = len(samples)

        def pct(p: float) -> float:
            return samples[min(n - 1, int(p * n))] if n else 0.0

        return {
            "activations": self.activations,
            "errors": self.errors,
            "retries": self.retries,
            "skipped": self.skipped,
            "timeouts": self.timeouts,
            "payloads_in": self.payloads_in,
            "payloads_out": self.payloads_out,
            "duration": {
                "min": self.min if n else 0.0,
                "avg": self.total / self.activations if self.activations else 0.0,
                "p50": pct(0.50),
                "p95": pct(0.95),
                "max": self.max,
                "total": self.total,
            },
        }
