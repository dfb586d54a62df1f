"""The Runtime: one shared worker pool that runs every job of every flow."""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from queue import SimpleQueue
from types import TracebackType
from typing import Any

import structlog

from . import _job_control as control
from . import _plan  # noqa: F401  (loaded with the runtime: see below)
from ._activation import Activation, YieldingLock
from ._async import DEFAULT_ASYNC_CONCURRENCY, AsyncEngine, NotifyingCondition, await_condition
from ._durable import DurableJob, flow_document
from ._job import Job
from ._remote import RemoteDispatch, resolve_executor
from ._timers import TimerWheel
from .clock import Clock, SystemClock
from .error_handling import CustomErrorStrategy
from .errors import (
    ConfigurationError,
    EntryError,
    JobNotAcceptingWorkError,
    RoutiluxError,
    RuntimeClosedError,
    UnknownJobError,
    UnknownTypeError,
)
from .flow import Flow
from .job_state import DEFAULT_HISTORY_LIMIT, ExecutionRecord, JobState, JobStatus, _new_state
from .monitoring.flow_registry import FlowRegistry
from .plugins import create_plugin_manager, get_plugin_manager
from .registry import TypeRegistry, routine_types
from .store._base import JobStore
from .store._resume import resume_job
from .tracking import DEFAULT_QUEUE_SIZE, ExecutionTracker, TrackingHub, build_sink, job_metrics
from .tracking._hub import plugin_sinks

__all__ = ["Runtime"]

# ``Flow.plan`` imports the plan compiler lazily (an import cycle); it is imported above so that
# loading it is not on the first job's critical path (a fresh process's first ``exec``).

_log = structlog.get_logger("routilux.runtime")


_MAX_FLOW_TRACKERS = 256
"""Flows whose forgotten jobs' statistics are kept (least recently used beyond)."""


def _build_store(spec: Any, registry: TypeRegistry) -> tuple[JobStore, bool]:
    """A store from ``Runtime(store=...)``: an object, a name, or ``(name, {options})``;
    and whether the runtime owns it (built it, so closes it)."""
    store, built = registry.stores.build(spec)
    if not isinstance(store, JobStore):
        if built:
            raise ConfigurationError(
                f"the job store factory named by {spec!r} returned {store!r}, not a JobStore"
            )
        raise ConfigurationError(
            f"store must be a JobStore, a registered store name or (name, {{options}}), got "
            f"{spec!r}"
        )
    return store, built


def _default_pool_size() -> int:
    return min(32, (os.cpu_count() or 1) + 4)


class Runtime:
    """Runs flows on a shared pool of worker threads.

    ``exec`` returns at once with the job's :class:`JobState`; the job runs on the pool. Every
    job has its own queues and state, so any number of jobs of one flow can run at once.

    Args:
        thread_pool_size: worker threads shared by all jobs (all routine logic runs on them).
        flow_registry: where flow names are looked up (default: the process-wide
            ``FlowRegistry.get_instance()``).
        clock: the time source for timers (tests pass a ``ManualClock``).
        max_finished_jobs: finished jobs kept in memory for ``get_job``/``list_jobs``; the
            oldest are forgotten beyond it.
        finished_job_ttl: seconds a finished job is kept (None: no age limit).
        history_limit: execution records kept per job.
        plugins: extra plugin objects (modules or instances with ``@routilux.hookimpl``
            functions) for this runtime, on top of the installed ones.
        disabled_plugins: entry-point (or distribution) names of installed plugins this
            runtime must not load. With either option the runtime gets its own plugin manager
            and registry; otherwise it shares the process-wide one.
        tracking_sinks: tracking sinks to attach (objects with ``write(records)``, registered
            names such as ``"memory"``, or ``(name, {options})``); plugins add theirs through
            the ``routilux_tracking_sinks`` hook. Jobs are tracked only while a sink is
            attached (docs/tracking.md).
        tracking_queue_size: records the tracking channel queues before it drops new ones.
        executor: where routine logic runs: None or ``"threads"`` (the default: on this
            runtime's worker threads), an :class:`~routilux.executors.Executor` instance, a
            registered executor name or ``(name, {options})`` (``("dask", {...})`` with
            ``routilux-dask``). With a remote executor the worker threads only dispatch:
            routing, policies, error handling and the job state stay here (docs/dask.md).
        async_concurrency: activations of async routines (``async def`` logic) this runtime
            runs at once on its event loop, whatever ``thread_pool_size`` is; the others wait
            their turn in order (docs/async.md).
        store: a durable job store (a :class:`~routilux.store.JobStore` such as
            ``SqliteJobStore(path)``, a registered name, or ``(name, {options})`` such as
            ``("sqlite", {"path": "jobs.db"})``): every job is recorded so that
            :meth:`resume` / :meth:`recover` can continue it in a new process after a crash
            (docs/persistence.md). A store built here from a name is closed by
            :meth:`shutdown`; a store object passed in is left open.
    """

    def __init__(
        self,
        thread_pool_size: int | None = None,
        *,
        flow_registry: FlowRegistry | None = None,
        clock: Clock | None = None,
        max_finished_jobs: int = 1000,
        finished_job_ttl: float | None = None,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        plugins: Iterable[Any] | None = None,
        disabled_plugins: Iterable[str] | None = None,
        tracking_sinks: Iterable[Any] | None = None,
        tracking_queue_size: int = DEFAULT_QUEUE_SIZE,
        executor: Any = None,
        async_concurrency: int = DEFAULT_ASYNC_CONCURRENCY,
        store: Any = None,
    ) -> None:
        size = _default_pool_size() if thread_pool_size is None else thread_pool_size
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ConfigurationError(f"thread_pool_size must be an integer >= 1, got {size!r}")
        if not isinstance(max_finished_jobs, int) or max_finished_jobs < 0:
            raise ConfigurationError(
                f"max_finished_jobs must be an integer >= 0, got {max_finished_jobs!r}"
            )
        if not isinstance(history_limit, int) or history_limit < 0:
            raise ConfigurationError(
                f"history_limit must be an integer >= 0, got {history_limit!r}"
            )
        if (
            not isinstance(async_concurrency, int)
            or isinstance(async_concurrency, bool)
            or async_concurrency < 1
        ):
            raise ConfigurationError(
                f"async_concurrency must be an integer >= 1, got {async_concurrency!r}"
            )
        self.thread_pool_size = size
        self.async_concurrency = async_concurrency
        self._aio = AsyncEngine(async_concurrency)  # its loop thread starts on first use
        self._flow_registry = flow_registry
        self._clock = clock or SystemClock()
        self._timers = TimerWheel(self._clock)
        self._max_finished = max_finished_jobs
        self._finished_ttl = finished_job_ttl
        self._history_limit = history_limit
        # ``deque(maxlen=history_limit)`` per job, as a copy of an empty one (a C method call,
        # without the keyword parsing of ``deque(maxlen=...)``)
        self._new_history: Callable[[], deque[ExecutionRecord]] = deque(
            maxlen=history_limit
        ).copy
        self._queue: SimpleQueue[tuple[Job, int, Activation] | None] = SimpleQueue()
        self._submit_put = self._queue.put
        self._workers: list[threading.Thread] = []
        self._growing = True  # until thread_pool_size workers are started (``_grow``)
        self._lock = threading.Lock()
        self._cond: NotifyingCondition = NotifyingCondition(
            self._lock, lambda: self._unsettled == 0
        )
        self._hot = YieldingLock(self._lock)  # the runtime lock, on the per-job paths
        self._jobs: dict[str, Job] = {}
        self._finished: OrderedDict[str, float] = OrderedDict()
        self._unsettled = 0
        self._closed = False
        self._epoch_offset = time.time() - time.perf_counter()
        if plugins is None and disabled_plugins is None:
            self.plugin_manager = get_plugin_manager()
        else:
            self.plugin_manager = create_plugin_manager(
                registry=TypeRegistry(routine_types),
                plugins=list(plugins or ()),
                disabled=list(disabled_plugins or ()),
            )
        self._strategies: dict[str, CustomErrorStrategy] = {}
        self._flow_trackers: OrderedDict[str, ExecutionTracker] = OrderedDict()
        # Numbers the jobs folded into their flow's trackers (runtime lock), so a snapshot
        # knows which held jobs its trackers already count (``ExecutionTracker.snapshot``).
        self._fold_seq = 0
        # Failed or cancelled jobs forgotten while one of their activations still ran: folded
        # when that activation ends and the job settles (``_settle``), counted as held until
        # then (runtime lock). At most one per running activation.
        self._late: set[Job] = set()
        if not isinstance(tracking_queue_size, int) or tracking_queue_size < 2:
            raise ConfigurationError(
                f"tracking_queue_size must be an integer >= 2, got {tracking_queue_size!r}"
            )
        self._remote: RemoteDispatch | None = None
        remote = resolve_executor(executor, self.plugin_manager.registry)
        if remote is not None:
            self._remote = RemoteDispatch(remote, self.plugin_manager.registry)
            if thread_pool_size is None and remote.dispatch_threads:
                self.thread_pool_size = remote.dispatch_threads
        self.tracking = TrackingHub(queue_size=tracking_queue_size)
        """This runtime's tracking channel: attach sinks here (see docs/tracking.md)."""
        for spec in tracking_sinks or ():
            self.tracking.add_sink(build_sink(spec, self.plugin_manager.registry))
        for sink in plugin_sinks(self):
            self.tracking.add_sink(sink)
        self._store: JobStore | None = None
        self._own_store = False
        self._flow_docs: dict[int, Any] = {}
        self._resume_pids: dict[str, tuple[dict[int, int], int]] = {}
        if store is not None:
            self._store, self._own_store = _build_store(store, self.plugin_manager.registry)
        if self._remote is not None:
            self._remote.executor.start(self)
        self._call_hook("routilux_runtime_started")

    @property
    def store(self) -> JobStore | None:
        """The durable job store jobs are recorded in, or None."""
        return self._store

    @property
    def flow_registry(self) -> FlowRegistry:
        """Where this runtime looks flow names up (``exec``/``post``): the registry given to
        the constructor, else the process-wide ``FlowRegistry.get_instance()``."""
        # ``is None``, not ``or``: an empty registry is falsy (it has a length) and must still
        # be the one used, not silently swapped for the process-wide registry
        if self._flow_registry is not None:
            return self._flow_registry
        return FlowRegistry.get_instance()

    def _call_hook(self, name: str) -> None:
        """Call every implementation of a lifecycle hook; one raising never stops the others
        (nor the runtime): it is logged."""
        for impl in getattr(self.plugin_manager.hook, name).get_hookimpls():
            try:
                impl.function(**{arg: self for arg in impl.argnames if arg == "runtime"})
            except Exception:
                _log.exception("plugin.hook_failed", hook=name, plugin=impl.plugin_name)

    def _custom_strategy(self, name: str) -> CustomErrorStrategy:
        """The implementation of the custom error strategy ``name`` (cached)."""
        impl = self._strategies.get(name)
        if impl is not None:
            return impl
        registry = self.plugin_manager.registry
        if name in registry.error_strategies:
            impl = registry.error_strategies.get(name)
        else:
            impl = self.plugin_manager.hook.routilux_error_strategy(name=name)
        if impl is None:
            known = ", ".join(registry.error_strategies.names()) or "none"
            raise UnknownTypeError(
                f"no plugin provides the error strategy {name!r} (custom strategies "
                f"registered: {known}); install the pack that provides it or fix the name",
                type_name=name,
            )
        self._strategies[name] = impl
        return impl

    # -- plumbing used by jobs ---------------------------------------------------------------

    def _submit(self, job: Job, ri: int, act: Activation) -> None:
        """Queue a task (the job's lock held) and, while the pool is growing, grow it."""
        self._submit_put((job, ri, act))
        if self._growing:
            self._grow_for(job)

    def _grow_for(self, job: Job) -> None:
        """The pool is growing and ``job`` just queued a task: grow it (see ``_grow``)."""
        if job.owed >= 0:
            job.owed += 1  # the job is starting: ``exec`` grows the pool for it
        else:
            self._grow()

    def _settle(self, delta: int, job: Job | None = None) -> None:
        with self._hot:
            if job is not None and self._late and job in self._late:
                # its last activation has ended: its counters are final now
                self._late.discard(job)
                self._fold(job)
            self._unsettled -= delta
            # Waiters: ``wait_until_all_jobs_finished``/``await_all`` (all settled) and, once
            # closed, ``shutdown`` (every job settled or paused): a waiting caller is not woken
            # by each of thousands of jobs settling in a burst (it competes for the GIL).
            if self._unsettled == 0 or (delta > 0 and self._closed):
                self._cond.notify_all()

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _job_finished(self, job: Job, *, settled: bool) -> None:
        state = job.state
        if state.status is JobStatus.FAILED:
            _log.info(
                "job.failed", job_id=job.job_id, flow=job.flow_name,
                routine=state.error_routine, error_type=state.error_type, error=state.error,
            )
        lock = self._lock
        if not lock.acquire(False):  # ``with self._hot``, the uncontended case inlined
            self._hot.contended()
        try:
            if settled:
                self._unsettled -= 1
                if self._unsettled == 0 or self._closed:  # (see ``_settle``)
                    cond = self._cond
                    if cond._waiters or cond.futures:  # (nobody waits: nothing to notify)
                        cond.notify_all()
                if state.status is JobStatus.COMPLETED:
                    # Nothing of a completed, settled job can run again: its counters are
                    # final, so they are folded into its flow's now, while the worker that
                    # just wrote them has them in cache (when it is forgotten, a thousand
                    # jobs later, they would be read cold: docs/performance.md).
                    self._fold(job)
            if self._jobs.get(job.job_id) is not job:
                # ``exec`` continued this job (a saved copy) before it got here: the new job
                # holds the id and the retention slot; this one is only folded, once
                self._fold_settled(job)
                return
            # (the time is read only for the age limit)
            now = 0.0 if self._finished_ttl is None else time.monotonic()
            finished = self._finished
            finished[job.job_id] = now
            while len(finished) > self._max_finished:  # (retention full: the steady state)
                old, _ = finished.popitem(last=False)
                self._forget(old)
            if self._finished_ttl is not None:
                while self._finished:
                    old, at = next(iter(self._finished.items()))
                    if now - at < self._finished_ttl:
                        break
                    self._finished.popitem(last=False)
                    self._forget(old)
        finally:
            lock.release()

    def _forget(self, job_id: str) -> None:
        """Drop a finished job (runtime lock held) and break its reference cycles, so its
        memory is freed at once rather than by the cyclic garbage collector."""
        job = self._jobs.get(job_id)
        if job is not None and job.stopped:  # (not a live job that continued this id)
            del self._jobs[job_id]
            self._fold_settled(job)
            job.state._live = None
            # (a failed or cancelled job may still have an activation running, whose durable
            # commit reads ``views[ri]``: keep one entry per routine, without the views)
            job.views = job.plan.no_views  # type: ignore[assignment]

    def _fold_settled(self, job: Job) -> None:
        """Fold an ended job this runtime lets go of (runtime lock held): now if it is
        settled, else when it settles. A failed or cancelled job may still have an activation
        running, which has yet to write its counters: it is kept in ``_late`` (counted as held
        by ``get_flow_metrics``) and folded by ``_settle``, which a settling job calls under
        this lock after setting ``settled``."""
        if job.settled:
            self._fold(job)
        else:
            self._late.add(job)

    def _fold(self, job: Job) -> None:
        """Keep a job's statistics in its flow's tracker (runtime lock held): the tracker of
        its flow id and, if it was started by another name, that name's too. Once per job: a
        completed job when it finishes, any other when it is forgotten."""
        if job.folded:
            return
        born = self._fold_seq  # (a tracker made now counts no job folded before this one)
        self._fold_seq = seq = born + 1
        job.folded = seq
        flow_id = job.plan.flow_id
        trackers = self._flow_trackers
        for name in (flow_id,) if job.flow_name == flow_id else (flow_id, job.flow_name):
            tracker = trackers.get(name)
            if tracker is None:
                tracker = trackers[name] = ExecutionTracker(name, born=born)
                while len(trackers) > _MAX_FLOW_TRACKERS:
                    trackers.popitem(last=False)
            else:
                trackers.move_to_end(name)
            tracker.add_job(job, seq)

    def _worker(self) -> None:
        get = self._queue.get
        while True:
            item = get()
            if item is None:
                return
            job, ri, act = item
            try:
                job.run_task(ri, act)
            except BaseException:  # never let a worker die; run_task handles logic errors
                _log.exception("runtime.worker_error", job_id=job.job_id)

    def _grow(self, late: bool = False) -> None:
        """Start one more worker for the task just queued, until the pool is full
        (``late``: for a task ``exec`` queued while starting a job, see below).

        The pool grows with its first ``thread_pool_size`` tasks, as ``ThreadPoolExecutor``
        does, rather than all at once on the first job: a runtime starts no more threads than
        it has had tasks. The new thread takes the queued task during ``Thread.start``'s
        hand-off. For the tasks a job queues as it starts, ``exec`` grows the pool only once
        ``Job.start`` has released the job's lock, so the new worker runs the task straight
        away rather than waiting for that lock while ``exec`` goes on; any other task (an emit
        from a running activation, a retry, a post) grows it as it is queued.
        """
        with self._hot:
            if not self._growing:
                if late and self._closed:
                    # ``shutdown(wait=False)`` stopped the pool's growth between ``Job.start``
                    # queuing this task and ``exec`` growing for it: the (cancelled) job's task
                    # still needs a worker to end it, or the job never settles. One that stops
                    # after it: its sentinel follows every task already queued.
                    t = threading.Thread(target=self._worker, name="routilux-worker-late",
                                         daemon=True)
                    t.start()
                    self._queue.put(None)
                return
            i = len(self._workers)
            t = threading.Thread(target=self._worker, name=f"routilux-worker-{i}", daemon=True)
            t.start()
            self._workers.append(t)
            if i + 1 >= self.thread_pool_size:
                self._growing = False

    # -- starting jobs -----------------------------------------------------------------------

    def _resolve(self, flow: str | Flow) -> tuple[Flow, str]:
        if isinstance(flow, Flow):
            return flow, flow.flow_id
        if not isinstance(flow, str):
            raise ConfigurationError(f"expected a flow name or a Flow, got {flow!r}")
        return self.flow_registry.get(flow), flow

    def exec(
        self,
        flow_name: str | Flow,
        entry_params: Mapping[str, Any] | None = None,
        job_state: JobState | None = None,
        keep_open: bool = False,
        *,
        timeout: float | None = None,
        _as: str | None = None,
    ) -> JobState:
        """Start a job of ``flow_name`` (or resume ``job_state``) and return at once.

        Args:
            flow_name: a name registered in the flow registry, or a :class:`Flow`.
            entry_params: delivered as one payload to the flow's entry (its declared entry, or
                each root routine's single slot); routines without slots run once at start.
            job_state: a saved state to resume: queued payloads and interrupted activations
                continue; nothing completed runs again.
            keep_open: keep the job open for ``post`` after it drains (status IDLE) until
                ``complete_job``.
            timeout: seconds before the job fails with ``JobTimeoutError`` (default: the
                flow's ``execution_timeout``).
        """
        if self._closed:  # checked again, under the lock, when the job is registered
            raise RuntimeClosedError("the runtime is shut down; create a new Runtime")
        if type(flow_name) is Flow:  # (``_resolve``, the common case inlined)
            flow, name = flow_name, flow_name.flow_id
        else:
            flow, name = self._resolve(flow_name)
        if _as is not None:  # (``resume``: the name the job was started with)
            name = _as
        plan = flow.plan()
        if self._remote is not None:
            self._remote.specs(plan)  # a routine that cannot be rebuilt remotely fails here
        if (
            entry_params is not None
            and type(entry_params) is not dict  # (the common case, without the ABC check)
            and not isinstance(entry_params, Mapping)
        ):
            raise ConfigurationError(
                f"entry_params must be a dict of parameters, got {type(entry_params).__name__}"
            )
        for strategy in plan.custom_strategies:
            self._custom_strategy(strategy)  # unknown names fail here, before the job starts
        if timeout is None:
            timeout = plan.execution_timeout
        if job_state is None:
            state = _new_state(  # (``JobState(flow_id=..., ...)``, without keyword binding)
                flow.flow_id, dict(entry_params) if entry_params is not None else None,
                keep_open, self._new_history(),
            )
            deliver = not (keep_open and entry_params is None)
        else:
            state = job_state
            self._check_resumable(state, flow)
            keep_open = keep_open or state.keep_open
            state.keep_open = keep_open
            deliver = not state.entry_delivered and not (keep_open and state.entry_params is None)
        if deliver and plan.entry_error:
            raise EntryError(
                f"flow {flow.flow_id!r}: cannot deliver entry parameters: {plan.entry_error}",
                flow_id=flow.flow_id,
            )
        # A refused resume must leave the saved state exactly as it was (nothing lost); a new
        # state is dropped with the job.
        saved = None if job_state is None else (
            state.pending, state.in_flight, state.policy_states, state.status, state._live
        )
        try:
            job = Job(self, plan, state, keep_open=keep_open, flow_name=name, timeout=timeout)
            if job_state is not None:
                job.restore()
                state.status = JobStatus.PENDING  # a resumed job runs again from here
            if self._store is not None:
                known, next_pid = self._resume_pids.pop(state.job_id, (None, 0))
                job.durable = DurableJob(
                    job, self._store, self.plugin_manager.registry.codecs,
                    flow_document(flow, self._flow_docs, plan), known, next_pid,
                )
            lock = self._lock
            if not lock.acquire(False):  # ``with self._hot``, the uncontended case inlined
                self._hot.contended()
            try:
                if self._closed:
                    raise RuntimeClosedError("the runtime is shut down; create a new Runtime")
                old = self._jobs.get(state.job_id)
                if old is not None:
                    if not old.stopped:
                        raise ConfigurationError(
                            f"job {state.job_id} is already running in this runtime"
                        )
                    # The ended job this one continues (a saved copy, or the store's record)
                    # leaves the retention order, or evicting it would forget this live job.
                    if self._finished.pop(state.job_id, None) is not None:
                        self._fold_settled(old)
                self._jobs[state.job_id] = job
                self._unsettled += 1
            finally:
                lock.release()
        except BaseException:
            if saved is not None:
                (state.pending, state.in_flight, state.policy_states, state.status,
                 state._live) = saved
            raise
        entry = dict(entry_params) if entry_params is not None else dict(state.entry_params or {})
        if not self._growing:
            job.start(deliver, entry)
            return state
        # The pool is still growing: it grows for the tasks the job queues as it starts only
        # once ``start`` has released the job's lock, so each new worker runs its task at once
        # rather than first waiting for that lock while this ``exec`` goes on (W3).
        job.owed = 0
        try:
            job.start(deliver, entry)
        finally:
            with job.lock:
                owed, job.owed = job.owed, -1
            for _ in range(owed):
                self._grow(late=True)
        return state

    def _check_resumable(self, state: JobState, flow: Flow) -> None:
        if not isinstance(state, JobState):
            raise ConfigurationError(f"job_state must be a JobState, got {state!r}")
        if state.status.is_terminal:
            raise JobNotAcceptingWorkError(
                f"job {state.job_id} is {state.status.value}; only a pending, running, idle or "
                "paused job can be resumed",
                job_id=state.job_id,
                status=state.status.value,
            )
        if state.flow_id != flow.flow_id:
            raise ConfigurationError(
                f"job {state.job_id} belongs to flow {state.flow_id!r}, not {flow.flow_id!r}; "
                "resume it with the flow it was saved from"
            )
        if state._live is not None and not state._live.stopped:
            raise ConfigurationError(
                f"job {state.job_id} is still running; save it and load the saved copy, or "
                "pause it, to resume it elsewhere"
            )

    def post(
        self,
        flow_name: str | Flow,
        routine_id: str,
        slot_name: str,
        data: Mapping[str, Any],
        job_id: str | None = None,
    ) -> JobState:
        """Deliver ``data`` (one payload) to ``routine_id``'s ``slot_name``.

        Without ``job_id`` a new job is started and kept open for further posts (it goes IDLE
        when drained and COMPLETED on ``complete_job``). A full queue blocks, fails or drops
        as that slot is configured.
        """
        if not isinstance(data, Mapping):
            raise ConfigurationError(
                f"post data must be a dict (one payload), got {type(data).__name__}"
            )
        flow, _ = self._resolve(flow_name)
        if job_id is None:
            plan = flow.plan()
            ri, qi = plan.queue_index(routine_id, slot_name)  # check before starting a job
            state = self.exec(flow, keep_open=True)
            job = self._live(state.job_id)
        else:
            job = self._live(job_id)
            if job.plan.flow_id != flow.flow_id:
                raise ConfigurationError(
                    f"job {job_id} runs flow {job.plan.flow_id!r}, not {flow.flow_id!r}"
                )
        ri, qi = job.plan.queue_index(routine_id, slot_name)
        control.post(job, ri, qi, dict(data))
        return job.state

    # -- durable jobs ------------------------------------------------------------------------

    def _require_store(self, what: str) -> JobStore:
        if self._store is None:
            raise ConfigurationError(
                f"{what} needs a job store; create the runtime with "
                "Runtime(store=SqliteJobStore(path)) or store=('sqlite', {'path': ...})"
            )
        return self._store

    def resume(self, job_id: str, *, timeout: float | None = None) -> JobState:
        """Continue a job recorded in the store (typically after the process that ran it
        died): queued payloads, routine and policy state, pending retries and the input of the
        activation that was running are restored, and the job runs on from there. Completed
        activations never run again; the one that was running when the process died runs
        again once (at-least-once).

        Raises:
            UnknownJobError: the store has no such job.
            JobNotAcceptingWorkError: the job already finished.
            StoreResumeError: the job cannot be rebuilt (e.g. its flow names a routine type
                that is no longer registered); nothing was started.
        """
        store = self._require_store("resume()")
        with self._hot:
            live = self._jobs.get(job_id)
        if live is not None and not live.stopped:
            raise ConfigurationError(f"job {job_id} is already running in this runtime")
        flow, state, known, next_pid, flow_name = resume_job(self, store, job_id)
        self._resume_pids[job_id] = (known, next_pid)
        try:
            # (under the name it was started with from the start: a job that completes at
            # once is folded into that name's flow metrics as it finishes)
            self.exec(flow, job_state=state, timeout=timeout, _as=flow_name)
        finally:
            self._resume_pids.pop(job_id, None)
        _log.info("job.resumed_from_store", job_id=job_id, flow=flow_name)
        return state

    def recover(self) -> list[JobState]:
        """Resume every job the store holds as unfinished (running, idle or paused when its
        process stopped). Call it once at start, only when no other live process runs jobs of
        this store. A job that cannot be rebuilt is logged and skipped (it stays stored);
        the others are resumed."""
        store = self._require_store("recover()")
        resumed = []
        for summary in store.list_jobs():
            if summary.status in ("completed", "failed", "cancelled"):
                continue
            with self._hot:
                if summary.job_id in self._jobs:
                    continue
            try:
                resumed.append(self.resume(summary.job_id))
            except RoutiluxError as exc:
                _log.error("job.recover_failed", job_id=summary.job_id, error=str(exc))
        return resumed

    # -- waiting -----------------------------------------------------------------------------

    def wait_job(self, job_id: str, timeout: float | None = None) -> bool:
        """Block until the job has drained (COMPLETED, or IDLE if kept open) or ended.

        Returns False if ``timeout`` seconds passed first.
        """
        return self._live(job_id).wait_settled(timeout)

    def wait_until_all_jobs_finished(self, timeout: float | None = None) -> bool:
        """Block until every job has drained or ended; False if ``timeout`` passed first.

        Paused jobs are not finished: they hold work.
        """
        with self._cond:
            return self._cond.wait_for(lambda: self._unsettled == 0, timeout)

    # -- awaiting (for callers inside an event loop) ----------------------------------------

    async def aexec(
        self,
        flow_name: str | Flow,
        entry_params: Mapping[str, Any] | None = None,
        job_state: JobState | None = None,
        keep_open: bool = False,
        *,
        timeout: float | None = None,
        wait: bool = True,
    ) -> JobState:
        """Start a job like :meth:`exec` and, with ``wait`` (the default), await its end.

        For code running inside an event loop (a web handler, an agent): the caller's loop is
        never blocked and no thread is parked while the job runs. Returns the job's state,
        drained (COMPLETED, FAILED, ..., or IDLE if kept open) unless ``wait`` is False.
        ``timeout`` is the job's execution timeout, as for :meth:`exec`.
        """
        state = self.exec(flow_name, entry_params, job_state, keep_open, timeout=timeout)
        if wait:
            await self.await_job(state.job_id)
        return state

    async def await_job(self, job_id: str, timeout: float | None = None) -> bool:
        """Await the job's draining (COMPLETED, IDLE if kept open) or end, like :meth:`wait_job`
        but without blocking the caller's event loop. False if ``timeout`` passed first.
        """
        job = self._live(job_id)
        with job.lock:
            cond = job.condition()
        return await await_condition(job.lock, cond, timeout)

    async def await_all(self, timeout: float | None = None) -> bool:
        """Await every job's draining or end, like :meth:`wait_until_all_jobs_finished` but
        without blocking the caller's event loop. False if ``timeout`` passed first.
        """
        return await await_condition(self._lock, self._cond, timeout)

    # -- inspecting --------------------------------------------------------------------------

    def _live(self, job_id: str) -> Job:
        lock = self._lock
        if not lock.acquire(False):  # ``with self._hot``, the uncontended case inlined
            self._hot.contended()
        try:
            job = self._jobs.get(job_id)
        finally:
            lock.release()
        if job is None:
            raise UnknownJobError(
                f"no job {job_id!r} in this runtime (never started here, or finished and "
                "forgotten beyond max_finished_jobs)",
                job_id=job_id,
            )
        return job

    def get_job(self, job_id: str) -> JobState | None:
        """The job's state, or None if this runtime does not hold it."""
        with self._lock:
            job = self._jobs.get(job_id)
        return job.state if job is not None else None

    def list_jobs(
        self, status: JobStatus | str | None = None, flow_name: str | None = None
    ) -> list[JobState]:
        """Jobs held by this runtime, oldest first, optionally filtered."""
        try:
            wanted = JobStatus(status) if status is not None else None
        except ValueError:
            known = ", ".join(s.value for s in JobStatus)
            raise ConfigurationError(
                f"unknown job status {status!r}; use one of: {known}"
            ) from None
        with self._lock:
            jobs = list(self._jobs.values())
        return [
            j.state
            for j in jobs
            if (wanted is None or j.state.status is wanted)
            and (flow_name is None or flow_name in (j.flow_name, j.plan.flow_id))
        ]

    def get_job_metrics(self, job_id: str) -> dict[str, Any]:
        """Per-routine counters, durations and rates of a job, as a plain dict.

        Keys: ``job_id``, ``flow_id``, ``flow``, ``status``, ``routines`` (per routine:
        ``activations``, ``errors``, ``retries``, ``skipped``, ``timeouts``, ``payloads_in``,
        ``payloads_out``, ``duration`` {``min``, ``avg``, ``p50``, ``p95``, ``max``,
        ``total``}, ``executions``, ``successes``, ``success_rate``, ``throughput``),
        ``summary`` (``slowest_routine``, ``failed_routines``, ``retries``, ...), times,
        queue depths, drops and ``tracking`` counters. See docs/tracking.md.
        """
        return job_metrics(self._live(job_id))

    def get_flow_metrics(self, flow_name: str) -> dict[str, Any]:
        """Per-routine statistics of every job of a flow this runtime ran, as a plain dict.

        Jobs still held and jobs already forgotten (their counters were kept when they were
        forgotten) are both counted, with bounded memory. ``flow_name`` is the name the jobs
        were started with or the flow id. See docs/tracking.md.
        """
        with self._lock:
            jobs = [j for j in self._jobs.values() if flow_name in (j.flow_name, j.plan.flow_id)]
            if self._late:
                jobs += [j for j in self._late if flow_name in (j.flow_name, j.plan.flow_id)]
            tracker = self._flow_trackers.get(flow_name)
        if tracker is None:
            tracker = ExecutionTracker(flow_name)
        return tracker.snapshot(jobs)

    # -- control -----------------------------------------------------------------------------

    def pause_job(self, job_id: str, timeout: float | None = 30.0) -> None:
        """Hold new activations of a running or idle job; returns when in-flight ones end.

        Queued and newly posted payloads stay queued. Raises ``PauseTimeoutError`` (the job
        stays paused) if activations are still running after ``timeout`` seconds.
        """
        job = self._live(job_id)
        control.pause(job, timeout)
        _log.info("job.paused", job_id=job_id, flow=job.flow_name)

    def resume_job(self, job_id: str) -> bool:
        """Continue a paused job exactly where it stopped; False if it was not paused."""
        job = self._live(job_id)
        resumed = control.resume(job)
        if resumed:
            _log.info("job.resumed", job_id=job_id, flow=job.flow_name)
        return resumed

    def cancel_job(self, job_id: str) -> bool:
        """Cancel a job: no activation starts after this returns. False if already ended."""
        job = self._live(job_id)
        cancelled = control.cancel(job)
        if cancelled:
            _log.info("job.cancelled", job_id=job_id, flow=job.flow_name)
        return cancelled

    def complete_job(self, job_id: str) -> bool:
        """Finish a job kept open for posts once its remaining work drains."""
        return control.complete(self._live(job_id))

    def release_breakpoint(self, job_id: str, routine_id: str) -> None:
        """Let data held by ``routine_id``'s breakpoint policy flow on."""
        job = self._live(job_id)
        ri = job.plan.index_of.get(routine_id)
        if ri is None:
            job.plan.queue_index(routine_id, "")  # raises UnknownRoutineError
            return
        control.release_breakpoint(job, ri)

    # -- lifecycle ---------------------------------------------------------------------------

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> bool:
        """Stop the runtime.

        With ``wait`` (the default) running jobs are first allowed to drain; paused and idle
        (kept-open) jobs are left as they are, so they can be saved and resumed elsewhere.
        Without ``wait``, jobs still running are cancelled. Returns False if ``timeout``
        passed before everything stopped.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if self._closed and not self._workers:
                return True
            self._closed = True
        ok = True
        if wait:
            with self._cond:
                ok = self._cond.wait_for(
                    lambda: all(j.settled or j.paused for j in self._jobs.values()),
                    None if deadline is None else max(0.0, deadline - time.monotonic()),
                )
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            if not job.settled and not job.paused:
                control.cancel(job)
        if self._remote is not None:  # wakes dispatchers still waiting on remote work
            self._remote.executor.shutdown(wait)
        with self._lock:
            self._growing = False  # (a late task would start a worker no sentinel stops)
            workers = self._workers
        for _ in workers:
            self._queue.put(None)
        if wait:
            for t in workers:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                t.join(remaining)
                ok = ok and not t.is_alive()
        self._workers = []
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if wait:
            ok = self._aio.close(remaining) and ok
        else:
            self._aio.close(0.0, wait=False)
        self._timers.close()
        if self._store is not None and self._own_store:
            self._store.close()
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        ok = self.tracking.close(remaining) and ok
        self._call_hook("routilux_runtime_stopped")
        return ok

    def __enter__(self) -> Runtime:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown(wait=exc is None)

    def __repr__(self) -> str:
        return f"<Runtime pool={self.thread_pool_size} jobs={len(self._jobs)}>"

