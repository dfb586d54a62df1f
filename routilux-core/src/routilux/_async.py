"""Async routines: the runtime's event-loop thread, its concurrency limits, and the runner that
gives coroutine logic the same semantics as :meth:`Job.run_task <routilux._job.Job.run_task>`.

Design (docs/async.md):

* One event loop per runtime, on one daemon thread started by the first async activation and
  stopped by ``Runtime.shutdown``. Jobs hand activations over with :meth:`AsyncEngine.submit`
  (under the job lock, from any thread); hand-overs are batched into one loop wake-up.
* An activation of an async routine is one asyncio task. The job counts it as a running task
  (``tasks``/``ntasks``/``outstanding``) from the moment it is claimed until its bookkeeping is
  done, exactly like a task on the thread pool, so the job never looks idle while a coroutine
  is pending or waiting for a slot.
* Limits: at most ``async_concurrency`` activations per runtime and ``async_concurrency``
  (routine config) per routine run at once; the others wait in FIFO queues, one per routine
  and one for the runtime (a routine at its own limit never holds up another routine). Slots
  are handed on when an activation ends: no polling.
* A routine timeout cancels the coroutine (``Task.cancel``); cancelling or failing the job
  cancels the job's coroutines, and drops its activations still waiting for a slot.
* Everything but :meth:`AsyncEngine.submit`, :meth:`AsyncEngine.job_stopped` and
  :meth:`AsyncEngine.close` runs on the loop thread, so the queues and counters need no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog

from ._context import CURRENT, ActivationContext
from .error_handling import ErrorStrategy
from .errors import RoutineTimeoutError
from .job_state import ExecutionRecord, JobStatus

_Task = asyncio.Task
_TASK_NAME = "routilux-activation"

if TYPE_CHECKING:
    from ._activation import Activation
    from ._job import Job
    from .routine import Routine

__all__ = ["DEFAULT_ASYNC_CONCURRENCY", "AsyncEngine", "NotifyingCondition"]

_log = structlog.get_logger("routilux.async")

DEFAULT_ASYNC_CONCURRENCY = 1000
"""Async activations one runtime runs at once unless told otherwise."""

# where a _Run is
_GATE_WAIT, _GLOBAL_WAIT, _RUNNING, _DONE = range(4)


class NotifyingCondition(threading.Condition):
    """A condition that also wakes asyncio waiters (``await runtime.await_job``).

    Every ``notify_all`` (always called with the lock held) tests ``predicate``; when it holds,
    each registered future is resolved on its own loop with ``call_soon_threadsafe``, so an
    awaiting caller parks no thread and its loop is never blocked.
    """

    # ``threading.Condition``'s parked threads: with none and no future, ``notify_all`` has
    # nothing to do (the runtime tests ``cond._waiters or cond.futures`` before calling it).
    _waiters: deque[Any]

    def __init__(self, lock: threading.Lock, predicate: Callable[[], bool]) -> None:
        super().__init__(lock)
        self.predicate = predicate
        self.futures: list[asyncio.Future[bool]] = []

    def notify_all(self) -> None:
        super().notify_all()
        if self.futures and self.predicate():
            futures, self.futures = self.futures, []
            for fut in futures:
                _resolve_soon(fut)

    def add_future(self, fut: asyncio.Future[bool]) -> None:
        """Resolve ``fut`` at the next notification that finds the predicate true (call with
        the lock held, after testing the predicate yourself)."""
        self.futures.append(fut)

    def discard_future(self, fut: asyncio.Future[bool]) -> None:
        """Forget ``fut`` (call with the lock held)."""
        with contextlib.suppress(ValueError):
            self.futures.remove(fut)


def _resolve_soon(fut: asyncio.Future[bool]) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
        fut.get_loop().call_soon_threadsafe(_set_true, fut)


def _set_true(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(True)


async def await_condition(
    lock: threading.Lock, cond: NotifyingCondition, timeout: float | None
) -> bool:
    """Await ``cond.predicate`` without blocking the running loop; False after ``timeout``."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[bool] = loop.create_future()
    with lock:
        if cond.predicate():
            return True
        cond.add_future(fut)
    try:
        async with asyncio.timeout(timeout):
            return await fut
    except TimeoutError:
        return False
    finally:
        if not fut.done():
            with lock:
                cond.discard_future(fut)


class _Gate:
    """The per-routine limit (``async_concurrency`` config), shared by every job."""

    __slots__ = ("limit", "routine", "running", "waiting")

    def __init__(self, routine: Routine, limit: int) -> None:
        self.routine = routine
        self.limit = limit
        self.running = 0  # runs holding a slot of this gate (running or waiting globally)
        self.waiting: deque[_Run] = deque()


class _Run:
    """One async activation on its way through the gates and the loop."""

    __slots__ = ("act", "ctx", "gate", "job", "ri", "stage", "stopping", "task", "timed_out")

    def __init__(self, job: Job, ri: int, act: Activation) -> None:
        self.job = job
        self.ri = ri
        self.act = act
        self.gate: _Gate | None = None
        self.stage = _GATE_WAIT
        self.task: asyncio.Task[None] | None = None
        self.ctx: ActivationContext | None = None  # set while the logic runs
        self.timed_out = False
        self.stopping = False


class AsyncEngine:
    """The event loop of one runtime, and the limits of its async activations."""

    def __init__(self, limit: int, name: str = "routilux-async") -> None:
        self.limit = limit
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tid: int | None = None
        self._inbox: list[tuple[Job, int, Activation]] = []
        self._scheduled = False
        self._closed = False
        # loop thread only
        self._running = 0
        self._waiting: deque[_Run] = deque()
        self._gates: dict[int, _Gate] = {}  # by id(routine); a gate keeps its routine alive
        self._jobs: dict[Job, set[_Run]] = {}
        self.peak = 0
        """Most async activations that ran at once (a statistic for benchmarks and tests)."""

    # -- any thread ------------------------------------------------------------------------

    @property
    def thread(self) -> threading.Thread | None:
        """The loop thread, once started."""
        return self._thread

    def submit(self, job: Job, ri: int, act: Activation) -> None:
        """Run ``act`` of async routine ``ri`` (the caller holds the job lock and has counted
        the activation as a running task of the job)."""
        with self._lock:
            if self._closed:
                _log.warning("async.submit_after_shutdown", job_id=job.job_id)
                return
            self._inbox.append((job, ri, act))
            if self._scheduled:
                return
            self._scheduled = True
            loop = self._loop
            if loop is None:
                loop = self._start_locked()
        if threading.get_ident() == self._tid:
            loop.call_soon(self._drain)
        else:
            loop.call_soon_threadsafe(self._drain)

    def job_stopped(self, job: Job) -> None:
        """The job ended (caller holds its lock): cancel its coroutines, drop its waiters."""
        loop = self._loop
        if loop is None or job.state.status is JobStatus.COMPLETED or job not in self._jobs:
            return  # (a completed job has nothing running; anything not yet seen by the loop
            # is dropped when it gets there, as the job is stopped)
        if threading.get_ident() == self._tid:
            loop.call_soon(self._stop_job, job)
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed (runtime shut down)
                loop.call_soon_threadsafe(self._stop_job, job)

    def job_paused(self, job: Job) -> None:
        """The job paused (caller holds its lock): its activations still waiting for a slot
        go back to their queues at once, so ``pause_job`` need not wait for other jobs'
        coroutines to free slots (running coroutines of the job finish as usual)."""
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._tid:
            loop.call_soon(self._hold_job, job)
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed (runtime shut down)
                loop.call_soon_threadsafe(self._hold_job, job)

    def close(self, timeout: float | None, wait: bool = True) -> bool:
        """Cancel what still runs and stop the loop; with ``wait``, join its thread.

        False if the thread was still alive after ``timeout`` seconds (or not waited for).
        """
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return True
        if threading.get_ident() == self._tid:  # shut down from inside an async routine
            loop.call_soon(self._begin_shutdown)
            return False
        try:
            loop.call_soon_threadsafe(self._begin_shutdown)
        except RuntimeError:  # already closed
            return True
        if not wait:
            return not thread.is_alive()
        thread.join(timeout)
        return not thread.is_alive()

    def _start_locked(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_forever()
            finally:
                try:
                    loop.run_until_complete(loop.shutdown_asyncgens())
                finally:
                    loop.close()

        thread = threading.Thread(target=run, name=self._name, daemon=True)
        thread.start()
        self._loop, self._thread, self._tid = loop, thread, thread.ident
        return loop

    # -- loop thread -----------------------------------------------------------------------

    def _begin_shutdown(self) -> None:
        loop = self._loop
        assert loop is not None
        loop.create_task(self._shutdown())

    async def _shutdown(self) -> None:
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        asyncio.get_running_loop().stop()

    def _drain(self) -> None:
        with self._lock:
            items, self._inbox = self._inbox, []
            self._scheduled = False
        for job, ri, act in items:
            try:
                self._admit(job, ri, act)
            except Exception:  # a bug here must not lose the rest of the batch
                _log.exception("async.admit_failed", job_id=job.job_id)

    def _admit(self, job: Job, ri: int, act: Activation) -> None:
        """Queue or start a claimed activation (no lock held)."""
        if act.abandoned:
            return  # the job timed out and wrote its tasks off
        run = _Run(job, ri, act)
        if job.stopped and self._drop(run):
            return  # (a paused job's runs are queued: _hold_job, scheduled after this batch
            # by the pause, hands them back in order)
        runs = self._jobs.get(job)
        if runs is None:
            runs = self._jobs[job] = set()
        runs.add(run)
        limit = job.plan.async_limits[ri]
        if limit is not None:
            routine = job.plan.routines[ri]
            gate = self._gates.get(id(routine))
            if gate is None:
                gate = self._gates[id(routine)] = _Gate(routine, limit)
            else:
                gate.limit = limit  # the newest plan's value wins
            run.gate = gate
            if gate.running >= gate.limit:
                gate.waiting.append(run)
                return
            gate.running += 1
        self._admit_global(run)

    def _admit_global(self, run: _Run) -> None:
        if self._running >= self.limit:
            run.stage = _GLOBAL_WAIT
            self._waiting.append(run)
            return
        self._start(run)

    def _start(self, run: _Run) -> None:
        run.stage = _RUNNING
        self._running += 1
        if self._running > self.peak:
            self.peak = self._running
        # A Task made directly, not by ``loop.create_task`` (our own loop has no task factory):
        # one Python frame less per activation; one shared name, not a formatted "Task-<n>".
        run.task = _Task(self._run(run), loop=self._loop, name=_TASK_NAME)

    def _gate_release(self, gate: _Gate) -> None:
        gate.running -= 1
        while gate.waiting and gate.running < gate.limit:
            nxt = gate.waiting.popleft()
            if nxt.stage == _DONE:
                continue
            gate.running += 1
            self._admit_global(nxt)
        if gate.running == 0 and not gate.waiting:
            self._gates.pop(id(gate.routine), None)

    def _release(self, run: _Run) -> None:
        """``run`` ended: hand its slots on, in arrival order."""
        self._forget(run)
        self._running -= 1
        if run.gate is not None:
            self._gate_release(run.gate)
        waiting = self._waiting
        while waiting and self._running < self.limit:
            nxt = waiting.popleft()
            if nxt.stage == _DONE:
                continue
            self._start(nxt)

    def _forget(self, run: _Run) -> None:
        run.stage = _DONE
        runs = self._jobs.get(run.job)
        if runs is not None:
            runs.discard(run)
            if not runs:
                del self._jobs[run.job]

    def _drop(self, run: _Run) -> bool:
        """Give up a run still waiting for a slot because its job stopped or paused: a stopped
        job writes the activation off, a paused one gets it back (as if never taken)."""
        job, act = run.job, run.act
        with job.lock:
            if not (job.stopped or job.paused):
                return False  # resumed meanwhile: it keeps its place
            if not act.abandoned:
                job.executing.discard(act)
                if not job.stopped:
                    job._unclaim_locked(act)
                job._task_end_locked(run.ri)
        stage = run.stage
        self._forget(run)
        if stage == _GLOBAL_WAIT and run.gate is not None:
            self._gate_release(run.gate)
        return True

    def _stop_job(self, job: Job) -> None:
        dropped = False
        for run in list(self._jobs.get(job, ())):
            if run.stage == _RUNNING:
                if run.ctx is not None and not run.stopping and run.task is not None:
                    run.stopping = True
                    run.task.cancel()
            elif run.stage != _DONE:
                dropped = self._drop(run) or dropped
        if dropped:
            self._prune()

    def _hold_job(self, job: Job) -> None:
        waiting = [r for r in self._jobs.get(job, ()) if r.stage in (_GATE_WAIT, _GLOBAL_WAIT)]
        waiting.sort(key=lambda r: r.act.seq, reverse=True)  # the latest goes back first, so
        dropped = False
        for run in waiting:  # the queues end up in their original order
            dropped = self._drop(run) or dropped
        if dropped:
            self._prune()

    def _prune(self) -> None:
        """Remove dropped runs from the waiting queues (they hold their jobs alive)."""
        self._waiting = deque(r for r in self._waiting if r.stage != _DONE)
        for gate in list(self._gates.values()):
            gate.waiting = deque(r for r in gate.waiting if r.stage != _DONE)
            if gate.running == 0 and not gate.waiting:
                self._gates.pop(id(gate.routine), None)

    def _timeout_due(self, run: _Run) -> None:
        """(timer thread) The routine's timeout passed."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed (runtime shut down)
            loop.call_soon_threadsafe(self._time_out, run)

    def _time_out(self, run: _Run) -> None:
        ctx = run.ctx
        if ctx is None or run.timed_out or run.stopping or run.task is None:
            return  # the logic already returned
        run.timed_out = True
        ctx.activation = None  # whatever the cancelled coroutine still emits is discarded
        run.task.cancel()

    async def _run(self, run: _Run) -> None:
        """One activation: the async counterpart of ``Job.run_task``'s loop body, then its
        slots handed on."""
        try:
            job, ri, act = run.job, run.ri, run.act
            lock = job.lock
            plan = job.plan
            with lock:
                if act.abandoned:
                    return  # the job timed out before this activation started
                if job.stopped or job.paused:
                    job.executing.discard(act)
                    if not job.stopped:
                        job._unclaim_locked(act)
                    job._task_end_locked(ri)
                    return
                tracker = job.tracker
                if tracker is not None:
                    tracker.started(act)
                timeout = plan.timeouts[ri]
                if timeout is not None:
                    act.timer = job.timers.call_later(timeout, partial(self._timeout_due, run))
            durable = job.durable
            if durable is not None:
                durable.before_logic(act)
            ctx = ActivationContext(job, ri, plan.routines[ri])
            ctx.activation = act
            CURRENT.set(ctx)  # this task's own context: emit works across awaits and in children
            run.ctx = ctx
            err: BaseException | None = None
            cancelled = False
            t0 = time.perf_counter()
            try:
                await plan.logics[ri](act.slot_data, act.message, job.state)
            except asyncio.CancelledError:
                if not (run.timed_out or run.stopping):
                    raise  # not ours: the loop is shutting down
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                cancelled = run.stopping and not run.timed_out
            except BaseException as exc:
                err = exc
            finally:
                run.ctx = None
                ctx.activation = None  # emits from tasks that outlive the activation are discarded
            t1 = time.perf_counter()
            if run.timed_out:
                err = RoutineTimeoutError(
                    f"routine {plan.routine_ids[ri]!r} ran longer than its timeout of "
                    f"{plan.timeouts[ri] or 0.0:g} s; its coroutine was cancelled",
                    routine_id=plan.routine_ids[ri],
                    timeout=plan.timeouts[ri] or 0.0,
                )
            decision: ErrorStrategy | None = None
            if durable is not None:
                if cancelled:  # the job stopped: its buffered emits go nowhere
                    durable.outbox.pop(act, None)
                else:  # commit, then route the buffered emits (as ``Job.run_task`` does)
                    decision, err = durable.finish(ri, act, err)
            nxt = self._finish(run, err, cancelled, t0, t1, decision)
            if nxt is not None:
                self._admit(job, ri, nxt)
        finally:
            self._release(run)  # its slots go on, in arrival order (one coroutine per run)

    def _finish(
        self,
        run: _Run,
        err: BaseException | None,
        cancelled: bool,
        t0: float,
        t1: float,
        decision: ErrorStrategy | None = None,
    ) -> Activation | None:
        """Account for an ended activation; the next one the routine's policy yields, if any
        (it stays counted as this task of the job)."""
        job, ri, act = run.job, run.ri, run.act
        with job.lock:
            if act.abandoned:
                return None  # the job timed out and wrote this task off
            act.finished = True
            if act.timer is not None:
                act.timer.cancel()
                act.timer = None
            job.executing.discard(act)
            if cancelled:  # the job was cancelled or failed: not recorded, like a lost race
                job._task_end_locked(ri)
                return None
            stats = job.stats[ri]
            if not run.timed_out:  # counted as a timeout, not an activation (as for sync)
                stats.record(t1 - t0)
            started = t0 + job.epoch
            if err is None:
                tracker = job.tracker
                if tracker is not None:
                    tracker.finished(act, t1, t1 - t0)
                job.state.execution_history.append(
                    ExecutionRecord(
                        routine_id=job.plan.routine_ids[ri], status="completed",
                        started_at=started, duration=t1 - t0, attempt=act.attempt,
                    )
                )
            else:
                if run.timed_out:
                    stats.timeouts += 1
                job._failed_locked(ri, act, err, started, t1 - t0, decision)
            nxt = None if job.stopped or job.paused else job._take_locked(ri)
            if nxt is None:
                job._task_end_locked(ri)
            return nxt

