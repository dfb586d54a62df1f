"""The tracking channel: per-job trackers (hot path), the hub's queue and drain thread.

Cost model (docs/tracking.md, "Overhead"): with no sink attached a job has no tracker and its
hot path pays one ``is not None`` test per call site. With sinks, each hot record (an emit,
an activation's start and finish) is written as one fixed-size packed record (56 bytes,
tracking/_wire.py) at the end of the hub's ``bytearray`` queue, under the job lock it already
holds, by the compiled recorder (tracking/_crec.c) or its pure-Python twin: no Python object
is made per record, nothing is formatted or hashed, no thread is woken per message. Rare
records (job lifecycle, failures, drops, queue depths other than an emit's samples) are
kept as one tuple in a side dictionary under a key that a packed ``K_OBJ`` marker in the
queue names, so the queue's order stays the records' order. One daemon thread drains the
queue in chunks (a copy of its bytes; the queue keeps its memory), turns them into records
(resolving payload lineage by object identity) and hands them to the sinks. A sink that
only keeps records (:class:`~routilux.tracking.InMemorySink`) keeps the packed chunks and
builds records when read.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import structlog

from ._materialize import Materializer, decode
from ._wire import (
    ATTEMPT_MAX,
    K_CANCELLED,
    K_DEPTH,
    K_DROPPED,
    K_EMITTED,
    K_ENQUEUED,
    K_FAILED,
    K_FINISHED,
    K_JOB_FINISHED,
    K_JOB_STARTED,
    K_OBJ,
    K_PAIR,
    K_PAUSED,
    K_RESUMED,
    K_RETRIED,
    K_SKIPPED,
    K_STARTED,
    NAME_MAX,
    PAIR_SHIFT,
    REC,
    REC_SIZE,
    TOK_MAX,
    JobInfo,
)
from ._wire import err_text as _err_text
from ._wire import err_type as _err_type
from ._wire import records as count_records
from .records import TrackingRecord

if TYPE_CHECKING:
    from .._activation import Activation
    from .._job import Job

__all__ = ["DEFAULT_QUEUE_SIZE", "JobTracker", "TrackingHub", "TrackingSink", "plugin_sinks"]

_log = structlog.get_logger("routilux.tracking")

DEFAULT_QUEUE_SIZE = 65_536
"""Raw records the hub queues before it drops (and counts) new ones (56 bytes each: the
queue's memory is at most about 3.7 MB)."""


_DEPTH_EVERY = 64
"""A queue-depth sample is taken about every 64 records of a job (on an emit, for its targets)
and whenever a queue is full."""

_KEEP_FINISHED_INFOS = 1024
"""Finished jobs whose details the hub still keeps, for records that arrive late."""

_pc = time.perf_counter


@runtime_checkable
class TrackingSink(Protocol):
    """Receives tracking records, in batches, on the hub's background thread.

    ``write`` is called with the records in the order jobs produced them (per job, ``seq``
    increases). It must not call back into the runtime for the job being recorded, and should
    be quick: while it runs, new records queue up and, past the hub's queue size, are dropped.
    An optional ``close()`` is called when the runtime shuts down (or the sink is removed).
    """

    def write(self, records: Sequence[TrackingRecord]) -> None: ...


def _inputs(slot_data: dict[str, list[Any]]) -> tuple[Any, ...]:
    """``(slot, count, id, id, ..., slot, count, ...)``: the input, flat, as atoms."""
    out: list[Any] = []
    for slot, payloads in slot_data.items():
        out.append(slot)
        out.append(len(payloads))
        out.extend(map(id, payloads))
    return tuple(out)


_pack = REC.pack
_RI_LIMIT = 1 << PAIR_SHIFT


class _PyTrackerCore:
    """The hot-path fields and methods of a job's tracker, in Python: the compiled
    ``_crec.TrackerCore`` (tracking/_crec.c) does exactly this (the same bytes), faster; this
    class is used where that module was not built, or with ``ROUTILUX_PURE_PYTHON=1``.

    ``buf`` is the hub's queue (a ``bytearray``), ``nidx`` the hub's name index (``str`` ->
    index, only the hub adds to it), ``queues`` the job's queues (a list of deques, read for
    queue-depth samples); ``half`` and ``cap`` are in bytes."""

    __slots__ = ("buf", "cap", "half", "nidx", "queues", "seq", "tok")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.nidx: dict[str, int] = {}
        self.queues: Any = None
        self.tok = self.seq = self.half = self.cap = 0

    def _depth_targets(self, targets: Any) -> bool:
        queues = self.queues
        if type(targets) is not tuple or type(queues) is not list:
            return False
        n = len(queues)
        for tg in targets:
            if type(tg) is not tuple or len(tg) != 2:
                return False
            qi = tg[1]
            if type(qi) is not int or not 0 <= qi < n or type(queues[qi]) is not deque:
                return False
        return True

    def emitted_fast(self, ri: int, aseq: int, event: str, payload: Any,
                     targets: Any = None) -> int | None:
        """Count the job's next record and queue it as ``payload.emitted`` (to be delivered
        to ``targets``), packed, followed when a queue-depth sample is due by one packed
        ``K_DEPTH`` record per target queue (its length, the payload counted in). None when
        queued, else its ``seq`` for the slow path (``JobTracker.emitted_at``): the queue is
        past half its bound, a field does not fit, or a sample is due and ``targets`` is not
        a tuple of ``(ri, qi)`` tuples naming deques of ``queues``."""
        self.seq = seq = self.seq + 1
        buf = self.buf
        tok = self.tok
        if len(buf) < self.half and 0 <= tok <= TOK_MAX:
            nm = self.nidx.get(event) if type(event) is str else None
            if nm is not None and 0 <= nm <= NAME_MAX:
                t = _pc()
                if seq % _DEPTH_EVERY:
                    buf += _pack(K_EMITTED, 0, nm, tok, seq, t, 0.0, aseq, ri, id(payload))
                    return None
                # a sample is due: all of it within the queue's bound, or the slow path
                if (self._depth_targets(targets)
                        and len(buf) + (1 + len(targets)) * REC_SIZE <= self.cap):
                    queues = self.queues
                    rec = [_pack(K_EMITTED, 0, nm, tok, seq, t, 0.0, aseq, ri, id(payload))]
                    for _, qi in targets:
                        seq += 1
                        rec.append(_pack(K_DEPTH, 0, 0, tok, seq, t, 0.0, len(queues[qi]) + 1,
                                         qi, 0))
                    buf += b"".join(rec)
                    self.seq = seq
                    return None
        return seq

    def pair(self, ri: int, t1: float, t0: float, aseq: int, nseq: int, payload: Any) -> bool:
        """Queue activation ``aseq`` of routine ``ri`` finished at ``t1`` (started at ``t0``)
        and activation ``nseq`` started on ``payload``, the one input of its routine's one
        slot, both first attempts, as one packed ``K_PAIR`` record (tracking/_wire.py). False,
        with nothing counted or queued, when the queue is past half its bound or a field does
        not fit: the caller then writes the two records the general way."""
        buf = self.buf
        tok = self.tok
        if not 0 <= ri < _RI_LIMIT or not 0 <= tok <= TOK_MAX or len(buf) >= self.half:
            return False
        self.seq = seq = self.seq + 2
        buf += _pack(K_PAIR, 0, ri, tok, seq, t1, t0, aseq, nseq, id(payload))
        return True

    def started1(self, ri: int, aseq: int, attempt: int, slot: str, payload: Any,
                 t: float) -> bool:
        """Count the job's next record and queue it as ``activation.started`` on the one
        payload ``payload`` of ``slot``, packed; False (nothing counted or queued) when the
        queue is past half its bound or a field does not fit."""
        buf = self.buf
        tok = self.tok
        if (not 0 <= attempt <= ATTEMPT_MAX or not 0 <= tok <= TOK_MAX
                or len(buf) >= self.half):
            return False
        nm = self.nidx.get(slot) if type(slot) is str else None
        if nm is None or not 0 <= nm <= NAME_MAX:
            return False
        self.seq = seq = self.seq + 1
        buf += _pack(K_STARTED, attempt, nm, tok, seq, t, 0.0, aseq, ri, id(payload))
        return True

    def finished1(self, ri: int, aseq: int, attempt: int, t1: float, duration: float) -> bool:
        """Count the job's next record and queue it as ``activation.finished``, packed; False
        (nothing counted or queued) when the queue is past half its bound or a field does not
        fit."""
        buf = self.buf
        tok = self.tok
        if (not 0 <= attempt <= ATTEMPT_MAX or not 0 <= tok <= TOK_MAX
                or len(buf) >= self.half):
            return False
        self.seq = seq = self.seq + 1
        buf += _pack(K_FINISHED, attempt, 0, tok, seq, t1, duration, aseq, ri, 0)
        return True

    def mark(self, key: int) -> None:
        """Queue a ``K_OBJ`` marker for the entry the hub keeps under ``key``."""
        self.buf += _pack(K_OBJ, 0, 0, 0, 0, 0.0, 0.0, 0, 0, key)


_TrackerCore = _PyTrackerCore
if not TYPE_CHECKING and os.environ.get("ROUTILUX_PURE_PYTHON", "") in ("", "0"):
    # (an ImportError: not built, e.g. no C compiler where Routilux was installed)
    with contextlib.suppress(ImportError):
        from ._crec import TrackerCore as _TrackerCore


def _py_take(buf: bytearray) -> bytes:
    """Remove every byte of ``buf`` and return them (the drain's chunk). Writers only append
    whole records at the end, so deleting exactly the bytes copied leaves later ones intact;
    the compiled ``_crec.take`` also keeps the queue's allocation."""
    chunk = bytes(buf)
    del buf[: len(chunk)]
    return chunk


_take = _py_take
if not TYPE_CHECKING and _TrackerCore is not _PyTrackerCore:
    from ._crec import take as _take

ACCELERATED = _TrackerCore is not _PyTrackerCore
"""True when the compiled recorder (tracking/_crec.c) is in use."""

_K_OBJ_BYTE = bytes((K_OBJ,))
_key_at = struct.Struct("=Q").unpack_from
_KEY_OFFSET = REC_SIZE - 8


def _objects(data: bytes, objs: dict[int, Any]) -> tuple[Any, ...]:
    """Pop from ``objs`` the entries that the ``K_OBJ`` markers of ``data`` name, in order
    (each was stored before its marker was queued)."""
    kinds = data[0::REC_SIZE]
    found: list[Any] = []
    i = kinds.find(_K_OBJ_BYTE)
    while i >= 0:
        found.append(objs.pop(_key_at(data, i * REC_SIZE + _KEY_OFFSET)[0]))
        i = kinds.find(_K_OBJ_BYTE, i + 1)
    return tuple(found)


class JobTracker(_TrackerCore):
    """Hot-path side of tracking for one job: appends raw records to the hub's queue.

    Every method is called with the job's lock held, which orders the job's records and makes
    ``seq`` safe without a lock of its own: the job's records enter the queue in ``seq``
    order. Records of different jobs interleave, but a record stays whole: a packed record
    is written by one C call under the GIL (the compiled core, or ``bytearray +=`` in the
    pure one), and a rare record's entry is stored in the hub's side dictionary before the
    marker naming it is queued. Payloads are named by ``id()``: an emitted payload stays
    alive (queued) until every target has taken it, and its consumers' records are appended
    before that, so the drain thread resolves each id to the right payload in order.
    """

    __slots__ = ("dropped", "hub", "objs", "t_start")

    def __init__(self, hub: TrackingHub, job: Job) -> None:
        self.hub = hub
        self.tok = hub._register(JobInfo(job))
        self.buf = hub._buf
        self.nidx = hub._nidx
        self.objs = hub._objs
        self.cap = hub.queue_size * REC_SIZE
        self.half = self.cap // 2
        self.queues = job.queues
        self.seq = 0
        self.dropped = 0
        self.t_start = 0.0
        plan = job.plan
        for slots in plan.slot_names:
            hub._names_of(slots)
        for routes in plan.routes:
            hub._names_of(routes)

    def _put(self, entry: tuple[Any, ...]) -> None:
        """Queue a record the object way (``entry`` as the materializer reads it)."""
        n = len(self.buf)
        if n < self.cap:
            key = next(self.hub._keys)
            self.objs[key] = entry  # before the marker: the drain finds it
            self.mark(key)
            if n >= self.half:
                self.hub._wake_half()
        else:
            self.dropped += 1
            self.hub._dropped_one()

    _obj = _put

    def _next(self) -> int:
        self.seq = seq = self.seq + 1
        return seq

    # -- per message (hot) -----------------------------------------------------------------

    def started(self, act: Activation) -> None:
        """An activation is about to run."""
        self._started_at(act, _pc())

    def _started_at(self, act: Activation, t: float) -> None:
        sd = act.slot_data
        if len(sd) == 1:
            for slot, payloads in sd.items():
                if len(payloads) == 1 and self.started1(act.ri, act.seq, act.attempt, slot,
                                                        payloads[0], t):
                    return
        self._put((K_STARTED, self.tok, self._next(), t, act.ri, act.seq, act.attempt,
                   _inputs(sd)))
        if len(sd) == 1:
            self.hub._names_of(sd)  # (a slot first seen here is packed next time)

    def finished(self, act: Activation, t1: float, duration: float) -> None:
        """An activation's logic returned."""
        if not self.finished1(act.ri, act.seq, act.attempt, t1, duration):
            self._put((K_FINISHED, self.tok, self._next(), t1, act.ri, act.seq, act.attempt,
                       duration))

    def finished_started(
        self, act: Activation, t1: float, duration: float, nxt: Activation
    ) -> None:
        """``finished(act, t1, duration)`` then ``started(nxt)``, the started record at the
        same time ``t1`` (``nxt`` was taken under the same hold of the job lock, microseconds
        later). ``Job.run_task`` writes the commonest case itself, as one ``K_PAIR`` record (a
        fast routine, first attempts), and calls this method for the others."""
        self.finished(act, t1, duration)
        self._started_at(nxt, t1)

    def emitted(self, act: Activation, event: str, payload: Any, targets: Any) -> None:
        """``act`` emitted ``payload`` on ``event`` (to ``targets``, before delivery).

        ``Job.emit`` makes the same two calls itself (one call less per message)."""
        seq = self.emitted_fast(act.ri, act.seq, event, payload, targets)
        if seq is not None:
            self.emitted_at(seq, act, event, payload, targets)

    def emitted_at(self, seq: int, act: Activation, event: str, payload: Any,
                   targets: Any) -> None:
        """The emitted record ``seq`` (already counted) the slow way: near or past the
        queue's bound, an event name not in the hub's table yet, or a queue-depth sample of
        targets the packed form does not take."""
        self._put((K_EMITTED, self.tok, seq, _pc(), act.ri, act.seq, event, id(payload)))
        if event not in self.nidx:
            self.hub._names_of((event,))
        if not seq % _DEPTH_EVERY:
            queues = self.queues
            for _, qi in targets:
                self._put((K_DEPTH, self.tok, self._next(), _pc(), qi, len(queues[qi]) + 1))

    def enqueued(self, source: str, payload: Any, targets: Any) -> None:
        """A payload from outside (``entry``/``post``) is about to be delivered to
        ``targets`` (the flow's entry targets, or one ``(routine, queue)`` for a post)."""
        ri, qi = (-1, -1) if source == "entry" else targets[0]
        self._put((K_ENQUEUED, self.tok, self._next(), _pc(), source, id(payload), ri, qi))

    def dropped_payload(self, di: int, qi: int, payload: Any) -> None:
        """A ``drop_oldest`` queue dropped ``payload`` (queue ``qi`` of routine ``di``)."""
        t = _pc()
        self._put((K_DROPPED, self.tok, self._next(), t, id(payload), di, qi, "drop_oldest",
                   None))
        self._put((K_DEPTH, self.tok, self._next(), t, qi, len(self.queues[qi])))

    def discarded(self, ri: int, event: str | None) -> None:
        """Routine ``ri`` emitted after its job stopped (or its activation was abandoned)."""
        self._put((K_DROPPED, self.tok, self._next(), _pc(), None, ri, None, "discarded",
                   event))

    def queue_full(self, qi: int) -> None:
        self._put((K_DEPTH, self.tok, self._next(), _pc(), qi, len(self.queues[qi])))

    # -- rare: one tuple as one item ---------------------------------------------------------

    def job_started(self) -> None:
        self.t_start = t = _pc()
        self._obj((K_JOB_STARTED, self.tok, self._next(), t))

    def job_finished(self, status: str, err: BaseException | None, routine: str | None) -> None:
        self._obj((K_JOB_FINISHED, self.tok, self._next(), _pc(), status, _err_type(err),
                   None if err is None else _err_text(err), routine, self.t_start))
        self.hub._ended.append(self.tok)  # after the record: the drain thread relies on it

    def paused(self, reason: str) -> None:
        self._obj((K_PAUSED, self.tok, self._next(), _pc(), reason))

    def resumed(self) -> None:
        self._obj((K_RESUMED, self.tok, self._next(), _pc()))

    def cancelled(self) -> None:
        self._obj((K_CANCELLED, self.tok, self._next(), _pc()))

    def _failure(self, kind: int, act: Activation, err: BaseException, duration: float,
                 extra: Any) -> None:
        self._obj((kind, self.tok, self._next(), _pc(), act.ri, act.seq, act.attempt,
                   duration, type(err).__name__, _err_text(err), extra, _inputs(act.slot_data)))

    def failed(
        self, act: Activation, err: BaseException, duration: float, stopped: bool
    ) -> None:
        self._failure(K_FAILED, act, err, duration, stopped)

    def retried(
        self, act: Activation, err: BaseException, duration: float, delay: float
    ) -> None:
        self._failure(K_RETRIED, act, err, duration, delay)

    def skipped(self, act: Activation, err: BaseException, duration: float) -> None:
        self._failure(K_SKIPPED, act, err, duration, None)


# -- the hub -----------------------------------------------------------------------------------


def _sink_name(sink: object) -> str:
    name = getattr(sink, "name", None)
    return name if isinstance(name, str) and name else type(sink).__name__


class TrackingHub:
    """One runtime's tracking channel: its sinks, its bounded queue and its drain thread.

    The thread starts when the first sink is attached and stops at ``close()`` (called by
    ``Runtime.shutdown``). Jobs started while no sink is attached are not tracked at all.

    Args:
        queue_size: raw records queued before new ones are dropped (and counted).
        flush_interval: the longest a record waits in the queue before the thread wakes up
            (it also wakes when the queue is half full, and on ``flush()``).
    """

    def __init__(self, *, queue_size: int = DEFAULT_QUEUE_SIZE, flush_interval: float = 0.05):
        if queue_size < 2:
            raise ValueError(f"queue_size must be at least 2, got {queue_size}")
        self.queue_size = queue_size
        self.flush_interval = flush_interval
        self._buf = bytearray()
        # rare records' entries, under the keys their K_OBJ markers in the queue name
        self._objs: dict[int, tuple[Any, ...]] = {}
        self._keys = itertools.count()
        # the name table: names (events, slots) of the tracked plans, packed as indices
        self._names: list[str] = []
        self._nidx: dict[str, int] = {}
        self._names_lock = threading.Lock()
        self._half_woken = False
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._sinks: tuple[Any, ...] = ()
        self._raw_sinks: tuple[Any, ...] = ()
        self._record_sinks: tuple[Any, ...] = ()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._dropped = 0
        self._drop_logged = 0
        self._taken = 0  # queued bytes delivered to the sinks (or given up on)
        self._pulled = 0  # queued bytes taken by the drain thread
        self._delivered = 0
        self._done = threading.Condition(threading.Lock())
        self._errors: dict[str, int] = {}
        self._infos: dict[int, JobInfo] = {}
        self._new_infos: list[tuple[int, JobInfo]] = []
        self._finished_jobs: deque[int] = deque()
        # tokens of jobs whose job.finished record is queued (appended after the record)
        self._ended: deque[int] = deque()
        self._tokens = itertools.count(1)
        self._materializer = Materializer(self._infos)

    # -- sinks -----------------------------------------------------------------------------

    @property
    def sinks(self) -> tuple[Any, ...]:
        """The attached sinks, in the order they were attached."""
        return self._sinks

    @property
    def active(self) -> bool:
        """True while at least one sink is attached (new jobs are then tracked)."""
        return bool(self._sinks)

    def add_sink(self, sink: Any) -> Any:
        """Attach ``sink`` (an object with ``write(records)``); returns it.

        Jobs started from now on are tracked. Starts the drain thread on first use.
        """
        raw = getattr(sink, "_accept_raw", None)
        if raw is None and not callable(getattr(sink, "write", None)):
            raise TypeError(
                f"a tracking sink needs a write(records) method; {sink!r} has none"
            )
        with self._lock:
            if self._closed:
                raise RuntimeError("the tracking hub is closed (its runtime was shut down)")
            if any(s is sink for s in self._sinks):
                return sink
            self._sinks = (*self._sinks, sink)
            self._split()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="routilux-tracking", daemon=True
                )
                self._thread.start()
        bind = getattr(sink, "_bind_hub", None)
        if bind is not None:
            bind(self)
        return sink

    def remove_sink(self, sink: Any, *, close: bool = True) -> bool:
        """Detach ``sink`` after delivering what is queued; False if it was not attached."""
        if not any(s is sink for s in self._sinks):
            return False
        self.flush()
        with self._lock:
            self._sinks = tuple(s for s in self._sinks if s is not sink)
            self._split()
        if close:
            self._close_sink(sink)
        return True

    def _split(self) -> None:
        self._raw_sinks = tuple(s for s in self._sinks if hasattr(s, "_accept_raw"))
        self._record_sinks = tuple(s for s in self._sinks if not hasattr(s, "_accept_raw"))

    def _register(self, info: JobInfo) -> int:
        tok = next(self._tokens)
        self._infos[tok] = info
        self._new_infos.append((tok, info))
        return tok

    def _names_of(self, names: Any) -> None:
        """Give every ``str`` of ``names`` an index in the name table (up to ``NAME_MAX``;
        later names take the object path). Only this method writes the table, under a lock;
        the recorders only read it, and a name is in the list before its index is visible."""
        nidx = self._nidx
        missing = [name for name in names if type(name) is str and name not in nidx]
        if not missing:  # (the common case: the plan's names are in the table already)
            return
        with self._names_lock:
            table = self._names
            for name in missing:
                if type(name) is str and name not in nidx and len(table) <= NAME_MAX:
                    table.append(name)
                    nidx[name] = len(table) - 1

    def job_tracker(self, job: Job) -> JobTracker | None:
        """A tracker for ``job`` if a sink is attached, else None (the job is not tracked)."""
        return JobTracker(self, job) if self._sinks and not self._closed else None

    # -- accounting ------------------------------------------------------------------------

    def _wake_half(self) -> None:
        if not self._half_woken:
            self._half_woken = True
            self._wake.set()

    def _dropped_one(self) -> None:
        with self._lock:
            self._dropped += 1
        self._wake.set()

    @property
    def dropped(self) -> int:
        """Records dropped because the queue was full (a sink too slow, or none keeping up)."""
        return self._dropped

    def stats(self) -> dict[str, Any]:
        """Counters of the channel: queued, delivered, dropped, and errors per sink."""
        return {
            "sinks": [_sink_name(s) for s in self._sinks],
            "queued": count_records((bytes(self._buf), ())),
            "queue_size": self.queue_size,
            "delivered": self._delivered,
            "dropped": self._dropped,
            "sink_errors": dict(self._errors),
        }

    # -- the drain thread ------------------------------------------------------------------

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Deliver every record queued before this call; False if ``timeout`` passed first
        (a sink is slow) or no drain thread runs. (A chunk the drain thread failed to read
        counts as handled: it is counted in ``stats()["sink_errors"]["<drain>"]``.)"""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return self._thread is None and not self._buf
        if thread is threading.current_thread():
            return False  # a sink flushing from write(): it would wait for itself
        with self._done:
            # Bytes taken from the queue so far (the drain thread counts them under this lock
            # as it takes them, before it hands them to the sinks) plus those still queued:
            # every record queued before this call, including a chunk being delivered now.
            target = self._pulled + len(self._buf)
            if self._taken >= target:
                return True
            self._wake.set()
            return self._done.wait_for(lambda: self._taken >= target, timeout)

    def _run(self) -> None:
        buf = self._buf
        wake = self._wake
        done = self._done
        while True:
            wake.wait(self.flush_interval)
            wake.clear()
            self._half_woken = False
            # Everything queued now, in one chunk; records appended meanwhile wait for the
            # next round (chasing them would hand the GIL back and forth with the workers).
            ended = len(self._ended)  # read first: their job.finished records are in the chunk
            if buf:
                # Writers only ever append whole records at the end and this thread is the
                # only remover, so the chunk is whole records. It is ``bytes`` (nothing the
                # cyclic collector tracks) plus the entries its K_OBJ markers name.
                with done:  # (``flush`` counts what is taken but not yet delivered)
                    data = _take(buf)
                    n = len(data)
                    self._pulled += n
                try:
                    self._dispatch((data, _objects(data, self._objs)), ended)
                except Exception:
                    # A bug in reading the chunk (each sink's own failure is caught in
                    # ``_call``): its records are lost, counted, and the thread goes on, so
                    # later records are still delivered and ``flush`` callers still return.
                    self._drain_failed(data)
                finally:
                    with done:
                        self._taken += n
                        done.notify_all()
            self._report_drops()
            if self._closed and not buf:
                return

    def _dispatch(self, chunk: tuple[bytes, tuple[Any, ...]], ended: int) -> None:
        new, self._new_infos = self._new_infos, []
        count = count_records(chunk)
        self._delivered += count
        names = self._names
        for sink in self._raw_sinks:
            self._call(sink, functools.partial(sink._accept_raw, infos=new, records=count,
                                               names=names), chunk)
        entries: list[tuple[Any, ...]] | None = None
        sinks = self._record_sinks
        if sinks:
            entries = decode(chunk, self._infos, names)
            records = self._materializer.build(entries)
            for sink in sinks:
                self._call(sink, sink.write, records)
        # Forget finished jobs, but late: activations still running when a job was cancelled
        # or failed report after its job.finished.
        finished = self._finished_jobs
        pop = self._ended.popleft
        for _ in range(ended):
            finished.append(pop())
        while len(finished) > _KEEP_FINISHED_INFOS:
            self._infos.pop(finished.popleft(), None)

    def _drain_failed(self, data: bytes) -> None:
        n = self._errors.get("<drain>", 0)
        self._errors["<drain>"] = n + 1
        if n == 0:  # (once: a broken reader must not flood the logs)
            _log.exception("tracking.drain_failed", bytes=len(data))

    def _call(self, sink: Any, fn: Callable[[Any], Any], arg: Any) -> None:
        try:
            fn(arg)
        except Exception:
            name = _sink_name(sink)
            n = self._errors.get(name, 0)
            self._errors[name] = n + 1
            if n == 0:  # once per sink: a broken sink must not flood the logs
                _log.exception("tracking.sink_failed", sink=name)

    def _report_drops(self) -> None:
        dropped = self._dropped
        if dropped != self._drop_logged:
            _log.warning(
                "tracking.records_dropped", dropped=dropped - self._drop_logged, total=dropped,
                queue_size=self.queue_size,
            )
            self._drop_logged = dropped

    # -- lifecycle -------------------------------------------------------------------------

    def close(self, timeout: float | None = 10.0) -> bool:
        """Deliver what is queued, stop the thread and close every sink (idempotent)."""
        with self._lock:
            if self._closed:
                return True
            self._closed = True
            thread = self._thread
        ok = True
        if thread is not None:
            self._wake.set()
            thread.join(timeout)
            ok = not thread.is_alive()
        for sink in self._sinks:
            self._close_sink(sink)
        return ok

    def _close_sink(self, sink: Any) -> None:
        close = getattr(sink, "close", None)
        if close is None:
            return
        try:
            close()
        except Exception:
            _log.exception("tracking.sink_close_failed", sink=_sink_name(sink))

    def __repr__(self) -> str:
        return f"<TrackingHub sinks={len(self._sinks)} dropped={self._dropped}>"


def plugin_sinks(runtime: Any) -> list[Any]:
    """Every sink returned by the ``routilux_tracking_sinks`` hook of ``runtime``'s plugins.

    All implementations are called; their lists are concatenated. An implementation that
    raises is logged (``plugin.hook_failed``) and the others still count.
    """
    found: list[Any] = []
    hook = runtime.plugin_manager.hook.routilux_tracking_sinks
    for impl in hook.get_hookimpls():
        try:
            result = impl.function(**{a: runtime for a in impl.argnames if a == "runtime"})
        except Exception:
            _log.exception("plugin.hook_failed", hook="routilux_tracking_sinks",
                           plugin=impl.plugin_name)
            continue
        if result:
            found.extend(result)
    return found
