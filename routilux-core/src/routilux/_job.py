"""One execution of a flow: queues, scheduling, completion, failure handling.

Design (see docs/design.md):

* One lock per job. Routing an emit appends to the target queues and, when the target routine
  has no task running, evaluates its policy and submits one *task* to the pool. A task keeps
  taking activations for its routine while the policy yields them, so a busy routine drains
  its queue without one pool hand-off per payload, and a routine runs at most
  ``max_concurrency`` activations at once per job.
* Completion by counting: ``outstanding`` counts live tasks, armed timers and in-progress
  calls into the job. Emits schedule their targets before the emitting task ends, so the
  count reaches zero only when the job has really drained.
"""

from __future__ import annotations

import threading
import time
import traceback
from _thread import allocate_lock as _new_lock
from collections import deque
from datetime import UTC as _UTC
from datetime import datetime
from functools import partial
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ._activation import (
    Activation,
    RoutineStats,
    _acquire_contended,
    _fresh,
    new_activation,
)
from ._async import NotifyingCondition
from ._context import CURRENT, ActivationContext
from .activation_policies import _IMMEDIATE_MESSAGE, PolicyView
from .error_handling import ErrorStrategy, Failure
from .errors import (
    ActivationPolicyError,
    ConfigurationError,
    EmitOutsideActivationError,
    JobTimeoutError,
    QueueFullError,
    RoutineTimeoutError,
    UnknownEventError,
)
from .job_state import ExecutionRecord, JobState, JobStatus, _completed_record
from .slot import Overflow

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._durable import DurableJob
    from ._plan import FlowPlan, Target
    from ._timers import TimerHandle
    from .routine import Routine
    from .runtime import Runtime
    from .tracking import JobTracker

__all__ = ["Job"]

_FAIRNESS = 64
"""Activations one task runs before yielding its worker to other queued tasks."""

_SOURCE_MESSAGE = MappingProxyType({"policy": "source"})

_pc = time.perf_counter
_now = datetime.now
_object_new = object.__new__


class Job:
    """The runtime's side of one job (the user's side is its :class:`JobState`)."""

    __slots__ = (
        "_cond", "aio", "blocked_producers", "caps", "completing", "durable", "epoch",
        "executing", "fastq", "flow_name", "folded", "job_id", "job_timer", "keep_open", "lock",
        "maxc", "ntasks", "outstanding", "owed", "pause_reason", "paused", "plan", "policies",
        "policy_timers", "queues",
        "restored_retries", "retry_ready", "retry_waiting", "routes", "runtime", "seq",
        "settled", "state", "stats", "stopped", "tasks", "timeout", "timers", "tracker", "views",
        "waiters",
    )

    def __init__(
        self, runtime: Runtime, plan: FlowPlan, state: JobState, *, keep_open: bool,
        flow_name: str, timeout: float | None,
    ) -> None:
        self.runtime = runtime
        self.plan = plan
        self.state = state
        self.job_id = state.job_id
        self.flow_name = flow_name
        self.timeout = timeout
        self.lock = threading.Lock()
        self._cond: NotifyingCondition | None = None  # created on first use (rare)
        # ``wait_settled`` callers: one locked lock each, released when the job settles.
        self.waiters: list[threading.Lock] | None = None
        n = len(plan.routine_ids)
        self.queues: list[deque[dict[str, Any]]] = list(map(deque, plan.empty_queues))
        self.caps = plan.caps
        self.routes = plan.routes
        self.tasks = [0] * n
        self.maxc = plan.max_concurrency
        self.policies = plan.policies
        self.aio = plan.is_async  # None unless some routine is async (see routilux._async)
        # Every object made here lives as long as the job is kept (finished jobs too), and the
        # cyclic garbage collector walks each one on every collection it survives: what is
        # rarely needed is created on first use (docs/performance.md, "Garbage collection").
        self.retry_ready: list[deque[Activation] | None] | None = None
        # (made on the first retry armed; most jobs never arm one)
        self.retry_waiting: set[Activation] = _NOTHING  # type: ignore[assignment]
        self.executing: set[Activation] = set()
        self.policy_timers: list[TimerHandle | None] | None = None
        self.stats: list[RoutineStats] = _fresh(RoutineStats, n)  # (one C call, compiled)
        self.timers = runtime._timers
        # A single-slot routine with the immediate policy takes straight from its queue
        # (fastq[ri] is that queue's index, else -1) and gets a PolicyView only if asked.
        self.fastq = plan.fast_queues
        # Views of the routines with a policy; without one, the plan's shared all-None tuple
        # (``view`` makes a list of it on the first view asked for).
        if plan.policy_routines:
            self.views: list[PolicyView | None] = list(plan.no_views)
            for ri in plan.policy_routines:
                self.views[ri] = self._make_view(ri)
        else:
            self.views = plan.no_views  # type: ignore[assignment]
        self.outstanding = 0
        self.ntasks = 0
        # Workers owed to the pool for tasks queued while ``Runtime.exec`` starts this job
        # and the pool is still growing (``Runtime._submit``); -1: a task grows it at once.
        self.owed = -1
        self.seq = state.activation_seq
        self.paused = False
        self.pause_reason = ""
        self.stopped = False
        self.keep_open = keep_open
        self.completing = False
        self.blocked_producers = 0
        self.settled = False
        self.job_timer: TimerHandle | None = None
        self.restored_retries: list[tuple[Activation, float]] | None = None
        self.epoch = runtime._epoch_offset
        # The runtime's tracking channel for this job, or None (no sink attached): every
        # call site below tests ``is not None`` and does nothing else when it is None.
        self.tracker: JobTracker | None = runtime.tracking.job_tracker(self)
        # The job's durable-store link (set by the runtime when it has a store), or None.
        self.durable: DurableJob | None = None
        # Its number among the jobs folded into their flow's trackers (Runtime._fold), 0
        # until then.
        self.folded = 0
        state._live = self

    # -- the job lock as a ``YieldingLock`` (``self.hot is self``) ----------------------------

    @property
    def hot(self) -> Job:
        """The job lock, for the per-message paths: the job is its own ``YieldingLock``
        (``__enter__``/``__exit__``/``contended``), one object per job fewer. A property, not
        an attribute: ``self.hot = self`` would make every job a reference cycle, left to the
        cyclic collector when forgotten instead of freed at once (docs/performance.md)."""
        return self

    def __enter__(self) -> None:
        if not self.lock.acquire(False):
            _acquire_contended(self.lock)

    def __exit__(self, *exc: object) -> None:
        self.lock.release()

    def contended(self) -> None:
        """Take the job lock after a first ``acquire(False)`` failed (``YieldingLock``)."""
        _acquire_contended(self.lock)

    def condition(self) -> NotifyingCondition:
        """The job's condition (on its lock), created on first use; call with the lock held."""
        cond = self._cond
        if cond is None:  # (it also wakes ``await runtime.await_job`` callers)
            cond = self._cond = NotifyingCondition(self.lock, self._drained)
        return cond

    def _drained(self) -> bool:
        """What ``wait_settled`` waits for (call with the lock held)."""
        return self.settled or (self.stopped and self.ntasks == 0)

    def _notify_locked(self) -> None:
        if self._cond is not None:
            self._cond.notify_all()

    def wait_settled(self, timeout: float | None) -> bool:
        """Block until the job is drained (COMPLETED, IDLE if kept open) or ended.

        The caller parks on a lock of its own, which the thread settling the job releases
        as its last step under the job lock (``_release_waiters_locked``): no ``Condition``
        is made for the job, and the woken caller returns without taking the job lock again
        (the serial ``exec``/``wait_job`` path, docs/performance.md).
        """
        lock = self.lock
        with lock:
            if self.settled:
                return True
            if timeout is not None and timeout <= 0:
                return False
            waiter = _new_lock()
            waiter.acquire()
            waiters = self.waiters
            if waiters is None:
                waiters = self.waiters = []
            waiters.append(waiter)
        if waiter.acquire(True, -1 if timeout is None else timeout):
            return True
        with lock:  # timed out: leave, unless released meanwhile
            waiters = self.waiters
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                return self.settled
            return True

    def _release_waiters_locked(self) -> None:
        """Wake every ``wait_settled`` caller (the job is settled; job lock held)."""
        waiters = self.waiters
        if waiters is not None:
            self.waiters = None
            for waiter in waiters:
                waiter.release()

    def _make_view(self, ri: int) -> PolicyView:
        plan = self.plan
        base = plan.queue_base[ri]
        names = plan.slot_names[ri]
        return PolicyView(
            routine_id=plan.routine_ids[ri],
            slot_names=names,
            queues=tuple(self.queues[base : base + len(names)]),
            state={},
            job_state=self.state,
            now=self.timers.now,
            owner=self,
            index=ri,
        )

    def view(self, ri: int) -> PolicyView:
        """Routine ``ri``'s policy view, created on first use."""
        views = self.views
        view = views[ri]
        if view is None:
            if isinstance(views, tuple):  # a completed job's shared stand-in (``_compact_locked``)
                views = self.views = list(views)
            view = views[ri] = self._make_view(ri)
        return view

    def _ready_list(self, ri: int) -> deque[Activation]:
        rr = self.retry_ready
        if rr is None:
            rr = self.retry_ready = [None] * len(self.tasks)
        rq = rr[ri]
        if rq is None:
            rq = rr[ri] = deque()
        return rq

    # -- starting ----------------------------------------------------------------------------

    def restore(self) -> None:
        """Load queued payloads, in-flight activations and policy state saved in the state."""
        state = self.state
        plan = self.plan
        placed: list[tuple[int, list[dict[str, Any]]]] = []
        for rid, slots in state.pending.items():
            for slot, payloads in slots.items():
                _, qi = plan.queue_index(rid, slot)
                placed.append((qi, list(payloads)))
        acts: list[tuple[Activation, float]] = []
        for item in state.in_flight:
            ri = self._routine_index(item["routine_id"])
            act = Activation(ri, dict(item["slot_data"]), item.get("message"),
                             int(item.get("attempt", 0)), int(item.get("seq", 0)))
            acts.append((act, float(item.get("retry_in", 0.0))))
        for rid, ps in state.policy_states.items():
            self.view(self._routine_index(rid)).state.update(ps)
        for qi, payloads in placed:
            self.queues[qi].extend(payloads)
        for act, retry_in in acts:
            if retry_in > 0:
                if self.restored_retries is None:
                    self.restored_retries = []
                self.restored_retries.append((act, retry_in))  # armed by start()
            else:
                self._ready_list(act.ri).append(act)
        state.pending = {}
        state.in_flight = []
        state.policy_states = {}

    def _routine_index(self, routine_id: str) -> int:
        ri = self.plan.index_of.get(routine_id)
        if ri is None:
            from .errors import UnknownRoutineError

            raise UnknownRoutineError(
                f"saved job {self.job_id} refers to routine {routine_id!r}, which flow "
                f"{self.plan.flow_id!r} does not have",
                flow_id=self.plan.flow_id,
                routine_id=routine_id,
            )
        return ri

    def start(self, deliver_entry: bool, entry: dict[str, Any]) -> None:
        with self.lock:
            state = self.state
            if state.status is _PENDING and state.started_at is None:  # a new job
                state.status = JobStatus.RUNNING  # (``_transition``, without the checks)
                state.started_at = _now(_UTC)
            else:
                state._transition(JobStatus.RUNNING)
            tracker = self.tracker
            if tracker is not None:
                tracker.job_started()
            self.outstanding += 1  # guard: no quiescence while starting
            if self.durable is not None:
                self.durable.open(deliver_entry, entry)  # durable before anything is routed
            if self.restored_retries is not None:
                for act, retry_in in self.restored_retries:
                    self._arm_retry_locked(act, retry_in)
                self.restored_retries = None
            if deliver_entry:
                self.state.entry_delivered = True
                if self.plan.entry_targets:
                    if tracker is not None:
                        tracker.enqueued("entry", entry, self.plan.entry_targets)
                    self._deliver_locked(self.plan.entry_targets, entry)
                for ri in self.plan.sources:
                    self.seq += 1
                    act = new_activation(ri, {}, _SOURCE_MESSAGE, 0, self.seq)
                    self.executing.add(act)
                    self._spawn_locked(ri, act)
            fastq = self.fastq
            queues = self.queues
            # With no payload left queued (delivering the entry started its routines) and no
            # retry ready, only the routines with a policy can start anything: skip the rest.
            if self.retry_ready is None and not any(queues):
                candidates: Iterable[int] = self.plan.policy_routines
            else:
                candidates = range(len(self.tasks))
            for ri in candidates:
                qi = fastq[ri]
                if qi >= 0 and not queues[qi] and self.retry_ready is None:
                    continue  # nothing to take: the immediate policy on an empty slot
                while (
                    not self.stopped
                    and self.tasks[ri] < self.maxc[ri]
                    and self._try_start_locked(ri)
                ):
                    pass
            if self.timeout is not None:
                self.job_timer = self.timers.call_later(self.timeout, self._on_job_timeout)
            self._done_locked()

    # -- the hot path ------------------------------------------------------------------------

    def emit(self, ri: int, event: str, payload: dict[str, Any], ctx: ActivationContext) -> None:
        targets = self.routes[ri].get(event)
        if targets is None:
            rid = self.plan.routine_ids[ri]
            raise UnknownEventError(
                f"routine {rid!r} has no event {event!r} "
                f"(events: {', '.join(self.routes[ri]) or 'none'})",
                routine_id=rid,
                event=event,
            )
        durable = self.durable
        if durable is not None and ctx.activation is not None:
            durable.buffer(ri, event, targets, payload, ctx.activation)  # routed on commit
            return
        lock = self.lock
        if not lock.acquire(False):  # the job lock, entered as YieldingLock does
            self.contended()
        try:
            act = ctx.activation
            if self.stopped or act is None or act.abandoned:
                self.state.discarded_emits += 1
                if self.tracker is not None:
                    self.tracker.discarded(ri, event)
                return
            self.stats[ri].payloads_out += 1
            tracker = self.tracker
            if tracker is not None:
                # (``JobTracker.emitted``, one call less: the compiled recorder's fast path,
                # with its depth samples; the slow one if the queue is past half or a field
                # does not fit the packed form)
                tseq = tracker.emitted_fast(act.ri, act.seq, event, payload, targets)
                if tseq is not None:
                    tracker.emitted_at(tseq, act, event, payload, targets)
            if targets:
                self._deliver_locked(targets, payload)
        finally:
            lock.release()

    def emit_from(
        self, routine: Routine, event: str, payload: dict[str, Any], ctx: ActivationContext
    ) -> None:
        matches = [i for i, r in enumerate(self.plan.routines) if r is routine]
        if len(matches) != 1:
            where = "is not part of" if not matches else "appears several times in"
            raise EmitOutsideActivationError(
                f"{type(routine).__qualname__}.emit({event!r}) was called from the logic of "
                f"routine {self.plan.routine_ids[ctx.routine_index]!r}, but that routine "
                f"{where} flow {self.plan.flow_id!r}; emit from the routine whose logic runs"
            )
        self.emit(matches[0], event, payload, ctx)

    def _deliver_locked(self, targets: tuple[Target, ...], payload: dict[str, Any]) -> None:
        queues = self.queues
        caps = self.caps
        for _, qi in targets:
            if len(queues[qi]) >= caps[qi]:
                self._make_room_locked(targets)
                if self.stopped:
                    self.state.discarded_emits += 1
                    return
                break
        tasks = self.tasks
        maxc = self.maxc
        stats = self.stats
        paused = self.paused
        runtime = self.runtime
        for di, qi in targets:
            q = queues[qi]
            stats[di].payloads_in += 1
            if tasks[di] < maxc[di] and not paused and not self.stopped:
                if self.fastq[di] >= 0 and self.retry_ready is None:
                    # ``_take_locked(di)`` of a queue-served routine (its one queue is qi),
                    # inlined: the payload is queued and the first queued one taken (the
                    # payload itself when the queue is empty, without passing through it)
                    if q:
                        q.append(payload)
                        first = q.popleft()
                    else:
                        first = payload
                    self.seq = seq = self.seq + 1
                    act = _object_new(Activation)  # ``new_activation(...)``, inlined
                    act.ri = di
                    act.slot_data = {self.plan.fast_slots[di]: [first]}
                    act.message = _IMMEDIATE_MESSAGE
                    act.attempt = 0
                    act.seq = seq
                    act.abandoned = False
                    act.finished = False
                    act.timer = None
                    act.due = 0.0
                    if self.durable is not None:
                        self.durable.claim(act)
                    if self.blocked_producers:
                        self._notify_locked()
                    self.executing.add(act)
                    # ``_spawn_locked(di, act)`` and ``Runtime._submit``, inlined
                    tasks[di] += 1
                    self.ntasks += 1
                    self.outstanding += 1
                    aio = self.aio
                    if aio is not None and aio[di]:
                        runtime._aio.submit(self, di, act)
                    else:
                        runtime._submit_put((self, di, act))
                        if runtime._growing:
                            runtime._grow_for(self)
                    continue
                q.append(payload)
                # ``_try_start_locked(di)``, one call less per payload (a failing policy may
                # stop the job mid-loop)
                act = self._take_locked(di)  # type: ignore[assignment]
                if act is not None:
                    self._spawn_locked(di, act)
            else:
                q.append(payload)

    def _make_room_locked(self, targets: tuple[Target, ...]) -> None:
        plan = self.plan
        queues = self.queues
        caps = self.caps
        deadline: float | None = None
        while True:
            full = [(di, qi) for di, qi in targets if len(queues[qi]) >= caps[qi]]
            if not full:
                return
            for di, qi in full:
                if plan.overflows[qi] is Overflow.FAIL:
                    raise self._queue_full(di, qi, "is full")
            blocking = []
            for di, qi in full:
                if plan.overflows[qi] is Overflow.DROP_OLDEST:
                    dropped = queues[qi].popleft()
                    if self.durable is not None:
                        self.durable.dropped(qi, dropped)
                    if self.tracker is not None:
                        self.tracker.dropped_payload(di, qi, dropped)
                    _, si = plan.queue_owner[qi]
                    key = f"{plan.routine_ids[di]}.{plan.slot_names[di][si]}"
                    self.state.dropped[key] = self.state.dropped.get(key, 0) + 1
                else:
                    blocking.append((di, qi))
            if not blocking:
                return
            if self.tracker is not None:
                for _, qi in blocking:
                    self.tracker.queue_full(qi)
            now = time.monotonic()
            if deadline is None:
                deadline = now + min(plan.block_timeouts[qi] for _, qi in blocking)
            remaining = deadline - now
            if remaining <= 0:
                di, qi = blocking[0]
                raise self._queue_full(
                    di, qi, f"stayed full for {plan.block_timeouts[qi]:g} s"
                )
            self.blocked_producers += 1
            try:
                self.condition().wait(remaining)
            finally:
                self.blocked_producers -= 1
            if self.stopped:
                return

    def _queue_full(self, di: int, qi: int, how: str) -> QueueFullError:
        plan = self.plan
        _, si = plan.queue_owner[qi]
        rid = plan.routine_ids[di]
        slot = plan.slot_names[di][si]
        return QueueFullError(
            f"job {self.job_id}: queue of slot {rid}.{slot} {how} "
            f"(max_queue_length={plan.caps[qi]}); the payload was not accepted. Raise "
            "max_queue_length, slow the producer, or choose overflow='drop_oldest'",
            job_id=self.job_id,
            routine_id=rid,
            slot=slot,
        )

    def _take_locked(self, ri: int) -> Activation | None:
        rr = self.retry_ready
        rq = None if rr is None else rr[ri]
        if rq:
            act = rq.popleft()
        else:
            qi = self.fastq[ri]
            if qi >= 0:  # ImmediatePolicy.take on one slot, without the call
                q = self.queues[qi]
                if not q:
                    return None
                self.seq += 1
                act = new_activation(ri, {self.plan.slot_names[ri][0]: [q.popleft()]},
                                     _IMMEDIATE_MESSAGE, 0, self.seq)
            else:
                try:
                    res = self.policies[ri].take(self.views[ri], False)  # type: ignore[arg-type]
                except Exception as exc:
                    self._policy_failed_locked(ri, exc)
                    return None
                if res is None:
                    return None
                self.seq += 1
                act = new_activation(ri, res[0], res[1], 0, self.seq)
            if self.durable is not None:
                self.durable.claim(act)  # the input payloads' sequence numbers
            if self.blocked_producers:
                self._notify_locked()
        self.executing.add(act)
        return act

    def _try_start_locked(self, ri: int) -> bool:
        act = self._take_locked(ri)
        if act is None:
            return False
        self._spawn_locked(ri, act)
        return True

    def _spawn_locked(self, ri: int, act: Activation) -> None:
        self.tasks[ri] += 1
        self.ntasks += 1
        self.outstanding += 1
        aio = self.aio
        if aio is not None and aio[ri]:
            self.runtime._aio.submit(self, ri, act)
        else:
            self.runtime._submit(self, ri, act)

    def run_task(self, ri: int, act: Activation) -> None:
        """Run activations of routine ``ri`` on this worker until the policy yields none."""
        lock = self  # (``self.hot``)
        raw = self.lock
        tracker = self.tracker
        # Untracked and running, there is nothing to do under the lock before the logic runs
        # (a stop or pause from now on is handled as one arriving just after it started).
        if tracker is not None or self.stopped or self.paused or act.abandoned:
            with lock:
                if act.abandoned:
                    return  # the job timed out before this task started; nothing to account
                if self.stopped or self.paused:
                    self.executing.discard(act)
                    if not self.stopped:
                        self._unclaim_locked(act)
                    self._task_end_locked(ri)
                    return
                if tracker is not None:
                    tracker.started(act)
        # With one activation at a time and no timeout nothing else writes this routine's
        # stats or could abandon the activation, so success is recorded outside the lock
        # (``unlocked_record``). Taking the next activation of a fast routine runs no policy
        # (so writes no record): its finished record is then written together with the next
        # one's started record (``fast``). (FlowPlan.task_info: one unpacking, not six reads.)
        logic, rid, timeout, unlocked_record, fast, routine, qi, fslot = self.plan.task_info[ri]
        state = self.state
        history = state.execution_history
        stats = self.stats[ri]
        epoch = self.epoch
        durable = self.durable
        ctx = _object_new(ActivationContext)  # ``new_context(self, ri, routine)``, inlined
        ctx.job = self
        ctx.routine_index = ri
        ctx.routine = routine
        ctx.activation = None
        remote = self.runtime._remote  # None: logic runs here (the thread pool's fast path)
        token = CURRENT.set(ctx)
        ran = 0
        try:
            while True:
                ctx.activation = act
                if timeout is not None:
                    act.timer = self.timers.call_later(timeout, partial(self._on_timeout, ri, act))
                if durable is not None:
                    durable.before_logic(act)
                err: BaseException | None = None
                t0 = time.perf_counter()
                try:
                    if remote is None:
                        logic(act.slot_data, act.message, state)
                    else:
                        remote.run(self, ri, act, ctx)
                except BaseException as exc:
                    err = exc
                t1 = time.perf_counter()
                decision: ErrorStrategy | None = None
                if durable is not None:  # commit, then route the buffered emits
                    decision, err = durable.finish(ri, act, err)
                recorded = False
                if unlocked_record and err is None and not act.abandoned:
                    took = t1 - t0
                    stats.record(took)
                    rec = _object_new(ExecutionRecord)  # ``_completed_record(...)``, inlined
                    rec.routine_id = rid
                    rec.status = "completed"
                    rec.started_at = t0 + epoch
                    rec.duration = took
                    rec.attempt = act.attempt
                    rec.error = None
                    history.append(rec)
                    recorded = True
                if not raw.acquire(False):  # ``with lock``, the uncontended case inlined
                    lock.contended()
                try:
                    if act.abandoned:
                        return  # timed out: the timeout handler already settled this task
                    act.finished = True
                    if act.timer is not None:
                        act.timer.cancel()
                    self.executing.discard(act)
                    fin = tracker is not None and err is None
                    if fin and not fast:
                        tracker.finished(act, t1, t1 - t0)  # type: ignore[union-attr]
                        fin = False
                    if not recorded:
                        stats.record(t1 - t0)
                        if err is None:
                            history.append(
                                _completed_record(rid, t0 + epoch, t1 - t0, act.attempt)
                            )
                        else:
                            self._failed_locked(ri, act, err, t0 + epoch, t1 - t0, decision)
                    if self.stopped or self.paused:
                        nxt = None
                    elif fast and self.retry_ready is None:
                        # ``_take_locked(ri)`` of a queue-served routine, inlined (a call
                        # less per activation, and per task end)
                        q = self.queues[qi]
                        if q:
                            self.seq = seq = self.seq + 1
                            tp = q.popleft()  # (kept for the tracking pair below)
                            nxt = new_activation(ri, {fslot: [tp]}, _IMMEDIATE_MESSAGE, 0, seq)
                            if durable is not None:
                                durable.claim(nxt)
                            if self.blocked_producers:
                                self._notify_locked()
                            self.executing.add(nxt)
                        else:
                            nxt = None
                    else:
                        nxt = self._take_locked(ri)
                        tp = None
                    if nxt is None:
                        if fin:
                            tracker.finished(act, t1, t1 - t0)  # type: ignore[union-attr]
                        # ``_task_end_locked(ri)``, inlined for a job still running
                        if self.stopped or self.paused:
                            self._task_end_locked(ri)
                            return
                        self.tasks[ri] -= 1
                        self.ntasks -= 1
                        self.outstanding -= 1
                        if self.outstanding == 0:
                            self._quiescent_locked()
                        return
                    ran += 1
                    if ran >= _FAIRNESS:
                        if fin:
                            tracker.finished(act, t1, t1 - t0)  # type: ignore[union-attr]
                        self.runtime._submit(self, ri, nxt)
                        return
                    if tracker is not None:
                        if not fin:
                            tracker.started(nxt)
                        # The finished record and nxt's started record as one raw record
                        # (tracking/_wire.py, K_PAIR) when nxt came from the inline take above
                        # (a first attempt on the one payload ``tp``), else the general way.
                        elif (tp is None or act.attempt
                              or not tracker.pair(ri, t1, t0, act.seq, nxt.seq, tp)):
                            tracker.finished_started(act, t1, t1 - t0, nxt)
                    act = nxt
                finally:
                    raw.release()
        finally:
            CURRENT.reset(token)

    def _unclaim_locked(self, act: Activation) -> None:
        """Give back an activation that was claimed but never started (the job paused).

        A first attempt's payloads go back to the front of their queues, as if never taken;
        a retry (or a source's start) waits in the routine's ready list.
        """
        ri = act.ri
        if act.attempt or not act.slot_data:
            self._ready_list(ri).appendleft(act)
            return
        if self.durable is not None:
            self.durable.unclaim(act)
        names = self.plan.slot_names[ri]
        base = self.plan.queue_base[ri]
        for slot, payloads in act.slot_data.items():
            self.queues[base + names.index(slot)].extendleft(reversed(payloads))

    def _task_end_locked(self, ri: int) -> None:
        self.tasks[ri] -= 1
        self.ntasks -= 1
        if self.ntasks == 0 and (self.paused or self.stopped):
            self._notify_locked()
            if self.stopped:
                self._settle_locked()
        # ``_done_locked()``, inlined: every task ends here
        self.outstanding -= 1
        if self.outstanding == 0 and not self.stopped:
            self._quiescent_locked()

    def _done_locked(self) -> None:
        self.outstanding -= 1
        if self.outstanding == 0 and not self.stopped:
            self._quiescent_locked()

    # -- failures ----------------------------------------------------------------------------

    def _failed_locked(
        self, ri: int, act: Activation, err: BaseException, started: float, duration: float,
        decision: ErrorStrategy | None = None,
    ) -> None:
        plan = self.plan
        handler = plan.handlers[ri]
        rid = plan.routine_ids[ri]
        stats = self.stats[ri]
        if decision is None:
            decision, err = self._decide_locked(ri, err, act.attempt, act.slot_data)
        text = f"{type(err).__name__}: {err}"
        history = self.state.execution_history
        if decision is ErrorStrategy.RETRY and not self.stopped:
            stats.retries += 1
            history.append(
                ExecutionRecord(routine_id=rid, status="retrying", started_at=started,
                                duration=duration, attempt=act.attempt, error=text)
            )
            nxt = Activation(ri, act.slot_data, act.message, act.attempt + 1, act.seq)
            delay = handler.delay_for(nxt.attempt)
            if self.tracker is not None:
                self.tracker.retried(act, err, duration, delay)
            self._arm_retry_locked(nxt, delay)
            return
        if decision is ErrorStrategy.SKIP:
            stats.skipped += 1
            history.append(
                ExecutionRecord(routine_id=rid, status="skipped", started_at=started,
                                duration=duration, attempt=act.attempt, error=text)
            )
            self.state.update_routine_state(
                rid, {"skipped_activations": stats.skipped, "last_skipped_error": text}
            )
            if self.tracker is not None:
                self.tracker.skipped(act, err, duration)
            return
        stats.errors += 1
        status = "timed_out" if isinstance(err, RoutineTimeoutError) else "failed"
        history.append(
            ExecutionRecord(routine_id=rid, status=status, started_at=started,
                            duration=duration, attempt=act.attempt, error=text)
        )
        if self.tracker is not None:
            self.tracker.failed(act, err, duration, decision is ErrorStrategy.STOP)
        if decision is ErrorStrategy.STOP:
            self._finish_locked(JobStatus.FAILED, err, rid)

    def _policy_failed_locked(self, ri: int, exc: Exception) -> None:
        rid = self.plan.routine_ids[ri]
        policy = self.policies[ri]
        err = ActivationPolicyError(
            f"activation policy {policy.name!r} of routine {rid!r} raised "
            f"{type(exc).__name__}: {exc}",
            routine_id=rid,
            policy=policy.name,
        )
        err.__cause__ = exc
        self.seq += 1
        act = Activation(ri, {}, None, 0, self.seq)
        # A policy failure has no input to re-run: RETRY degrades to its fallback. SKIP and
        # CONTINUE leave the payloads queued (unconsumed when the job completes).
        handler = self.plan.handlers[ri]
        decision, err2 = self._decide_locked(ri, err, handler.max_retries, {})
        self._failed_locked(ri, act, err2, time.time(), 0.0, decision)

    def _decide_locked(
        self, ri: int, err: BaseException, attempt: int,
        slot_data: dict[str, list[dict[str, Any]]],
    ) -> tuple[ErrorStrategy, BaseException]:
        """What a failure of routine ``ri`` does, asking a custom strategy if one is set."""
        handler = self.plan.handlers[ri]
        if not handler.is_custom:
            return handler.decide(err, attempt), err
        name = str(handler.strategy)
        rid = self.plan.routine_ids[ri]
        try:
            impl = self.runtime._custom_strategy(name)
            wanted = impl.handle(
                Failure(job_state=self.state, routine_id=rid, error=err, attempt=attempt,
                        slot_data=slot_data, handler=handler)
            )
            if not isinstance(wanted, ErrorStrategy):
                raise TypeError(f"handle() returned {wanted!r}, not an ErrorStrategy")
            return handler.settle(wanted, err, attempt), err
        except Exception as exc:
            failed = ConfigurationError(
                f"error strategy {name!r} failed while handling {type(err).__name__} of "
                f"routine {rid!r}: {type(exc).__name__}: {exc}"
            )
            failed.__cause__ = exc
            failed.__context__ = err
            return ErrorStrategy.STOP, failed

    def _arm_retry_locked(self, act: Activation, delay: float) -> None:
        self.outstanding += 1
        if self.retry_waiting is _NOTHING:
            self.retry_waiting = set()
        self.retry_waiting.add(act)
        act.due = self.timers.now() + delay
        act.timer = self.timers.call_at(act.due, partial(self._retry_fire, act))

    def _retry_fire(self, act: Activation) -> None:
        with self.lock:
            act.timer = None
            self.retry_waiting.discard(act)
            if not self.stopped:
                ri = act.ri
                self._ready_list(ri).append(act)
                if not self.paused and self.tasks[ri] < self.maxc[ri]:
                    self._try_start_locked(ri)
            self._done_locked()

    def _on_timeout(self, ri: int, act: Activation) -> None:
        with self.lock:
            if act.finished or act.abandoned or self.stopped:
                return
            act.abandoned = True
            self.executing.discard(act)
            timeout = self.plan.timeouts[ri] or 0.0
            rid = self.plan.routine_ids[ri]
            self.stats[ri].timeouts += 1
            err: BaseException = RoutineTimeoutError(
                f"routine {rid!r} ran longer than its timeout of {timeout:g} s; the activation "
                "was abandoned (its thread cannot be killed; its late emits are dropped)",
                routine_id=rid,
                timeout=timeout,
            )
            decision: ErrorStrategy | None = None
            if self.durable is not None:  # the store records the outcome (no commit follows)
                decision, err = self._decide_locked(ri, err, act.attempt, act.slot_data)
                self.durable.timed_out(ri, act, err, decision)
            self._failed_locked(ri, act, err, time.time() - timeout, timeout, decision)
            self.outstanding += 1  # guard: the abandoned task ends, queued input goes on
            self._task_end_locked(ri)
            if not self.stopped and not self.paused:
                while self.tasks[ri] < self.maxc[ri] and self._try_start_locked(ri):
                    pass
            self._done_locked()

    def _on_job_timeout(self) -> None:
        with self.lock:
            if self.stopped:
                return
            for act in self.executing:
                act.abandoned = True
            self.executing.clear()
            self.tasks = [0] * len(self.tasks)
            self.ntasks = 0
            timeout = self.timeout or 0.0
            self._finish_locked(
                JobStatus.FAILED,
                JobTimeoutError(
                    f"job {self.job_id} ran longer than its execution timeout of {timeout:g} s",
                    job_id=self.job_id,
                    timeout=timeout,
                ),
                None,
            )

    # -- timers of policies ------------------------------------------------------------------

    def _arm_policy_timer(self, ri: int, deadline: float) -> None:
        """Evaluate routine ``ri``'s policy again at ``deadline`` (earliest deadline wins)."""
        if self.stopped:
            return
        timers = self.policy_timers
        if timers is None:
            timers = self.policy_timers = [None] * len(self.tasks)
        old = timers[ri]
        if old is not None:
            if old.deadline <= deadline or not old.cancel():
                return  # an earlier (or already firing) timer re-evaluates the policy anyway
            self.outstanding -= 1  # the caller holds a unit of work: this cannot reach zero
        self.outstanding += 1
        holder: list[TimerHandle] = []
        handle = self.timers.call_at(deadline, partial(self._policy_fire, ri, holder))
        holder.append(handle)
        timers[ri] = handle

    def _cancel_policy_timer(self, ri: int) -> None:
        timers = self.policy_timers
        old = None if timers is None else timers[ri]
        if old is not None and old.cancel():
            timers[ri] = None  # type: ignore[index]
            self.outstanding -= 1  # the caller holds a unit of work: this cannot reach zero

    def _policy_fire(self, ri: int, holder: list[TimerHandle]) -> None:
        with self.lock:
            timers = self.policy_timers
            if holder and timers is not None and timers[ri] is holder[0]:
                timers[ri] = None
            if not self.stopped and not self.paused and self.tasks[ri] < self.maxc[ri]:
                self._try_start_locked(ri)
            self._done_locked()

    # -- quiescence, completion, settling ----------------------------------------------------

    def _quiescent_locked(self) -> None:
        """Nothing runs and no timer is armed: go IDLE, flush, pause at a breakpoint, or
        complete."""
        if self.paused:
            return
        state = self.state
        if self.keep_open and not self.completing:
            if self._pause_at_breakpoint_locked():
                return  # held data pauses a kept-open job too, rather than idling on it
            if state.status is not JobStatus.IDLE:
                state._transition(JobStatus.IDLE)
            self._settle_locked()
            return
        plan = self.plan
        if plan.policy_routines or self.retry_ready is not None or any(self.queues):
            self._flush_policies_locked()
            if self.stopped:
                return
            if self.outstanding:
                if state.status is JobStatus.IDLE:
                    state._transition(JobStatus.RUNNING)
                    self._unsettle_locked()
                return
            views = self.views  # (no view, no policy that could hold data: skip the call)
            if views.count(None) < len(views) and self._pause_at_breakpoint_locked():
                return
            for qi, q in enumerate(self.queues):
                if q:
                    ri, si = plan.queue_owner[qi]
                    key = f"{plan.routine_ids[ri]}.{plan.slot_names[ri][si]}"
                    state.unconsumed.setdefault(key, []).extend(q)
                    q.clear()
        # (else: every routine is served straight from its queue, all of them empty, and no
        # retry waits: nothing to flush, hold or record)
        self._finish_locked(JobStatus.COMPLETED, None, None)

    def _flush_policies_locked(self) -> None:
        """Give every policy its final say (the job is quiescent)."""
        self.outstanding += 1  # guard while flushing
        for ri, view in enumerate(self.views):
            if self.stopped:
                break
            if self.tasks[ri] >= self.maxc[ri]:  # every policy gets its final say
                continue
            if view is None:  # the immediate policy on one slot: final or not, the same
                if self.queues[self.fastq[ri]] or self.retry_ready is not None:
                    self._try_start_locked(ri)
                continue
            try:
                res = self.policies[ri].take(view, True)
            except Exception as exc:
                self._policy_failed_locked(ri, exc)
                continue
            if res is not None:
                self.seq += 1
                act = Activation(ri, res[0], res[1], 0, self.seq)
                if self.durable is not None:
                    self.durable.claim(act)
                self.executing.add(act)
                self._spawn_locked(ri, act)
        self.outstanding -= 1

    def _pause_at_breakpoint_locked(self) -> bool:
        """Pause the drained job if a policy holds data (a breakpoint); True if it did."""
        policies = self.policies
        for ri, view in enumerate(self.views):
            if view is not None and policies[ri].holds(view):
                break
        else:
            return False
        self.paused = True
        self.pause_reason = "breakpoint"
        self.state._transition(JobStatus.PAUSED)
        if self.tracker is not None:
            self.tracker.paused("breakpoint")
        self._unsettle_locked()
        self.runtime._notify()
        return True

    def _finish_locked(
        self, status: JobStatus, err: BaseException | None, routine_id: str | None
    ) -> None:
        if self.stopped:
            return
        state = self.state
        if err is not None:
            state.error = f"{type(err).__name__}: {err}"
            state.error_type = type(err).__name__
            state.error_routine = routine_id
            state.error_traceback = "".join(traceback.format_exception(err))
        self.stopped = True
        self.paused = False
        if state.status is _RUNNING:  # (``_transition``, without the checks: always legal)
            state.status = status
            state.finished_at = _now(_UTC)
        else:
            state._transition(status)
        if self.durable is not None:
            self.durable.finished(status, err)
        if self.tracker is not None:
            self.tracker.job_finished(status.value, err, routine_id)
        timers = self.policy_timers
        if timers is not None:
            for i, handle in enumerate(timers):
                if handle is not None:
                    handle.cancel()
                    timers[i] = None
        if self.retry_waiting:  # (no iterator made over the shared empty set)
            for act in self.retry_waiting:
                if act.timer is not None:
                    act.timer.cancel()
        if self.job_timer is not None:
            self.job_timer.cancel()
            self.job_timer = None
        if self.aio is not None:
            self.runtime._aio.job_stopped(self)  # cancel its running coroutines
        if self._cond is not None:  # (``_notify_locked``)
            self._cond.notify_all()
        settle = self.ntasks == 0 and not self.settled
        if settle:
            self.settled = True
        if status is JobStatus.COMPLETED and self.ntasks == 0:
            self._compact_locked()
        try:
            self.runtime._job_finished(self, settled=settle)  # one runtime-lock trip for both
        finally:
            # Last, so a woken ``wait_job`` caller finds the retention already updated, as it
            # did when it had to take the job lock back to return (and even if that raised).
            if settle and self.waiters is not None:
                self._release_waiters_locked()

    def _compact_locked(self) -> None:
        """Let go of the scheduling structures of a completed job, which is kept (for
        ``get_job``, metrics, saving) until the retention bound evicts it: its queues are
        empty and nothing runs, so shared empty stand-ins read the same, and the collector
        no longer walks a job's worth of deques and sets on every full collection. A stray
        write to them would raise, never leak into another job."""
        plan = self.plan
        self.queues = plan.empty_queues  # type: ignore[assignment]
        self.executing = self.retry_waiting = _NOTHING  # type: ignore[assignment]
        self.tasks = plan.no_tasks  # type: ignore[assignment]  # (all zero: nothing runs)
        # Views hold the old queues; keep only those with policy state (it is saved).
        views = self.views
        if views.count(None) == len(views):  # (no view at all: the common case, one C call)
            self.views = plan.no_views  # type: ignore[assignment]
            self._cond = None
            return
        for v in views:
            if v is not None and v.state:
                self.views = [v if v is not None and v.state else None for v in views]
                break
        else:
            self.views = plan.no_views  # type: ignore[assignment]
        # Settled and notified: its waiters hold their own reference, later ones return at
        # once (``settled``), so the condition can go too.
        self._cond = None

    def _settle_locked(self) -> None:
        if not self.settled:
            self.settled = True
            self._notify_locked()
            self.runtime._settle(+1, self)
            if self.waiters is not None:
                self._release_waiters_locked()

    def _unsettle_locked(self) -> None:
        if self.settled:
            self.settled = False
            self.runtime._settle(-1)


_NOTHING: frozenset[Activation] = frozenset()
_PENDING = JobStatus.PENDING
_RUNNING = JobStatus.RUNNING
