"""Group commit, shared by the stores: one writer thread, one completion thread.

Callers queue operations (a job snapshot, an activation's :class:`Commit`, a status); the
writer takes everything queued, applies it in one transaction (the rows of consecutive commits
merged into one batch per statement), commits, then releases each operation's handle and hands
the callbacks to the completion thread, which runs them in commit order.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import Any

import structlog

from ..errors import StoreError
from ._base import Commit, JobSnapshot, JobSummary, StoredActivation
from ._crash import CrashPlan

__all__ = ["GroupCommitStore", "Handle", "Rows"]

_log = structlog.get_logger("routilux.store")

_BATCH = 1024
"""Most operations one transaction takes from the queue."""

TERMINAL = ("completed", "failed", "cancelled")


class Handle:
    """Completion of one queued operation: a lock held until the writer releases it, and an
    optional callback run (in commit order, on the completion thread) once durable."""

    __slots__ = ("_done", "error", "then")

    def __init__(self, then: Callable[[BaseException | None], None] | None = None) -> None:
        self._done = threading.Lock()
        self._done.acquire()
        self.error: BaseException | None = None
        self.then = then

    def release(self, error: BaseException | None = None) -> None:
        self.error = error
        self._done.release()

    def wait(self) -> None:
        self._done.acquire()
        self._done.release()
        if self.error is not None:
            raise self.error


class Rows:
    """The rows of many commits, written with one batch per statement.

    Within one round no commit depends on another's rows: an activation only consumes
    payloads whose commit was durable before it was routed, so deletes and inserts of a round
    never touch the same row, and merging them keeps every commit's effect. The exception is
    a retry, which runs from memory and may commit in the round that holds its input: such a
    commit starts a new batch (``depends_on_round``).
    """

    __slots__ = ("act", "del_held", "del_pay", "held", "held_keys", "hold", "jobs", "pay",
                 "pol", "st")

    def __init__(self) -> None:
        self.del_pay: list[tuple[str, int]] = []
        self.hold: list[tuple[int, str, int]] = []
        self.del_held: list[tuple[str, int]] = []
        self.held: list[tuple[Any, ...]] = []
        self.act: list[tuple[Any, ...]] = []
        self.pay: list[tuple[Any, ...]] = []
        self.st: list[tuple[str, str, str]] = []
        self.pol: list[tuple[str, str, str]] = []
        self.jobs: dict[str, tuple[int, int]] = {}
        self.held_keys: set[tuple[str, int]] = set()  # (job, seq) of the held rows added

    def depends_on_round(self, c: Commit) -> bool:
        """True if ``c`` is the retry of an activation whose held row is in this round (a
        retry with a short delay can commit in the round that holds it): merged, its delete
        would run before the insert and leave the held row behind."""
        return bool(self.held_keys) and (c.job_id, c.seq) in self.held_keys

    def add(self, c: Commit, now: float) -> None:
        job = c.job_id
        if c.consumed:
            if c.held is not None:
                self.hold.extend((c.held.seq, job, pid) for pid in c.consumed)
            else:
                self.del_pay.extend((job, pid) for pid in c.consumed)
        if c.routine_id is not None:
            if c.attempt or c.was_held:
                self.del_held.append((job, c.seq))
            h = c.held
            if h is not None:
                self.held.append((job, h.seq, h.routine_id, h.attempt, h.message, h.due))
                self.held_keys.add((job, h.seq))
            self.act.append((job, c.seq, c.attempt, c.routine_id, c.outcome, c.key,
                             ",".join(map(str, c.consumed)), now))
        if c.emitted:
            self.pay.extend(
                (job, p.pid, p.routine_id, p.slot, p.body, p.held_by) for p in c.emitted
            )
        if c.states:
            self.st.extend((job, r, text) for r, text in c.states)
        if c.policy_states:
            self.pol.extend((job, r, text) for r, text in c.policy_states)
        if c.next_pid:
            # The highest wins, whatever the order commits were batched in (the UPDATE takes
            # the max with the stored values too).
            old = self.jobs.get(job)
            if old is None:
                self.jobs[job] = (c.next_pid, c.job_seq)
            else:
                self.jobs[job] = (max(old[0], c.next_pid), max(old[1], c.job_seq))


_Op = tuple[str, Any, Handle]


class GroupCommitStore(ABC):
    """The writer and completion threads of a store; subclasses provide the SQL.

    Subclasses implement ``_writer_connect``, ``_begin``, ``_commit``, ``_rollback``,
    ``_close_writer``, ``_write_snapshot``, ``_write_rows`` and ``_write_status``, and call
    ``_start(name)`` at the end of their constructor.
    """

    location: str
    pipelined: bool

    def _start(self, name: str, pipelined: bool) -> None:
        self.pipelined = bool(pipelined)
        self.crash = CrashPlan.from_env()
        """The test-only crash plan (``ROUTILUX_CRASH_AT``), or None (always, in production)."""
        self._queue: SimpleQueue[_Op | None] = SimpleQueue()
        self._done: SimpleQueue[list[Handle] | None] = SimpleQueue()
        self._closed = False
        self._close_lock = threading.Lock()
        self._writer = threading.Thread(target=self._run, name=f"routilux-store-{name}",
                                        daemon=True)
        self._completer = threading.Thread(target=self._complete,
                                           name=f"routilux-store-done-{name}", daemon=True)
        self._writer.start()
        self._completer.start()

    # -- the SQL, per store ------------------------------------------------------------------

    @abstractmethod
    def _writer_connect(self) -> Any:
        """Implemented by each store."""

    @abstractmethod
    def _begin(self, conn: Any) -> None:
        """Implemented by each store."""

    @abstractmethod
    def _commit(self, conn: Any) -> None:
        """Implemented by each store."""

    @abstractmethod
    def _rollback(self, conn: Any) -> None:
        """Implemented by each store."""

    @abstractmethod
    def _close_writer(self, conn: Any) -> None:
        """Implemented by each store."""

    @abstractmethod
    def _write_snapshot(self, conn: Any, snapshot: JobSnapshot) -> None:
        """Implemented by each store."""

    @abstractmethod
    def _write_rows(self, conn: Any, rows: Rows) -> None:
        """Implemented by each store."""

    @abstractmethod
    def _write_status(self, conn: Any, job_id: str, status: str, error: str | None) -> None:
        """Implemented by each store."""

    # -- queueing ----------------------------------------------------------------------------

    def _enqueue(
        self, kind: str, arg: Any, then: Callable[[BaseException | None], None] | None = None
    ) -> Handle:
        if self._closed:
            raise StoreError(f"job store {self.location} is closed", path=self.location)
        handle = Handle(then)
        self._queue.put((kind, arg, handle))
        return handle

    def open_job(self, snapshot: JobSnapshot) -> None:
        self._enqueue("snapshot", snapshot).wait()

    def submit(
        self, commit: Commit, then: Callable[[BaseException | None], None] | None = None
    ) -> Handle:
        return self._enqueue("commit", commit, then)

    def set_status(self, job_id: str, status: str, error: str | None = None) -> Handle:
        return self._enqueue("status", (job_id, status, error))

    def flush(self) -> None:
        """Return once everything queued so far is durable."""
        self._enqueue("noop", None).wait()

    def close(self) -> None:
        """Write what is queued, stop the threads (idempotent)."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(None)
        me = threading.current_thread()
        if self._writer is not me:
            self._writer.join()
        if self._completer is not me:
            self._completer.join()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the threads -------------------------------------------------------------------------

    def _run(self) -> None:
        import time

        try:
            conn = self._writer_connect()
        except BaseException:
            _log.exception("store.writer_connect_failed", store=self.location)
            self._done.put(None)
            raise
        get = self._queue.get
        get_nowait = self._queue.get_nowait
        crash = self.crash
        stop = False
        try:
            while not stop:
                first = get()
                if first is None:
                    break
                batch = [first]
                while len(batch) < _BATCH:
                    try:
                        op = get_nowait()
                    except Empty:
                        break
                    if op is None:
                        stop = True
                        break
                    batch.append(op)
                try:
                    self._begin(conn)
                    self._apply(conn, batch, time.time())
                    if crash is not None:
                        crash.reach("in_commit")
                    self._commit(conn)
                except Exception:
                    self._rollback(conn)
                    self._one_by_one(conn, batch)
                    continue
                done = []
                for _, _, handle in batch:
                    handle.release()
                    if handle.then is not None:
                        done.append(handle)
                if done:
                    self._done.put(done)
        finally:
            self._close_writer(conn)
            self._done.put(None)

    def _apply(self, conn: Any, batch: list[_Op], now: float) -> None:
        """Apply a round's operations in order, merging consecutive commits' rows."""
        rows: Rows | None = None
        for kind, arg, _ in batch:
            if kind == "commit":
                if rows is not None and rows.depends_on_round(arg):
                    self._write_rows(conn, rows)  # write what it depends on first
                    rows = None
                if rows is None:
                    rows = Rows()
                rows.add(arg, now)
                continue
            if rows is not None:
                self._write_rows(conn, rows)
                rows = None
            if kind == "snapshot":
                self._write_snapshot(conn, arg)
            elif kind == "status":
                self._write_status(conn, *arg)
        if rows is not None:
            self._write_rows(conn, rows)

    def _one_by_one(self, conn: Any, batch: list[_Op]) -> None:
        """After a failed round, apply each operation alone so only the bad one fails."""
        import time

        for op in batch:
            handle = op[2]
            try:
                self._begin(conn)
                self._apply(conn, [op], time.time())
                self._commit(conn)
            except Exception as exc:
                self._rollback(conn)
                _log.exception("store.commit_failed", store=self.location)
                err = StoreError(
                    f"job store {self.location}: commit failed: {type(exc).__name__}: {exc}",
                    path=self.location,
                )
                err.__cause__ = exc
                handle.release(err)
            else:
                handle.release()
            if handle.then is not None:
                self._done.put([handle])

    def _complete(self) -> None:
        """Run the callbacks of durable commits, in commit order (the routing of emits)."""
        get = self._done.get
        while True:
            handles = get()
            if handles is None:
                return
            for handle in handles:
                assert handle.then is not None
                try:
                    handle.then(handle.error)
                except Exception:
                    _log.exception("store.callback_failed", store=self.location)


# -- reading rows back, shared by the stores (their SELECTs return the same columns) ---------


def summaries_from_rows(rows: list[Any]) -> list[JobSummary]:
    """``(job_id, flow_name, flow_id, status, created, updated, error, activations)`` rows."""
    return [
        JobSummary(job_id=j, flow_name=n, flow_id=f, status=st, created=c, updated=u,
                   error=e, activations=a)
        for j, n, f, st, c, u, e, a in rows
    ]


def activations_from_rows(rows: list[Any]) -> list[StoredActivation]:
    """``(seq, routine_id, attempt, outcome, key, consumed, committed)`` rows; ``consumed`` is
    the comma-separated payload numbers."""
    return [
        StoredActivation(seq=sq, routine_id=r, attempt=a, outcome=o, key=k,
                         consumed=tuple(int(x) for x in c.split(",") if x), committed=t)
        for sq, r, a, o, k, c, t in rows
    ]
