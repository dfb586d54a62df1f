"""A job's link to its durable store: payload numbering, the per-activation outbox, commits.

Only jobs of a runtime built with ``store=`` have one (``Job.durable``); every hook in
``_job.py`` is behind ``if durable is not None``. Ordering per activation:

1. ``before_logic``: the activation's input payloads are resolved to their sequence numbers
   (``pid``); nothing is written. (Crash point ``before_logic``.)
2. logic runs; each ``emit`` is encoded at once (codec registry; a value that cannot be
   written raises in the logic) and buffered, not routed. (``after_logic``.)
3. ``finish``: the outcome is decided (error strategy), then ONE commit records the consumed
   input (deleted, or held by a retry), the emitted payloads (one row per target slot, with
   new pids), the routine's state and policy state, and the activation row. The worker does
   not wait: the store's writer batches every pending commit into one transaction (group
   commit) while the worker goes on. (``in_commit``.)
4. once the commit is durable, the store's completion thread routes the buffered payloads to
   their target queues (``after_commit``), and releases the unit of outstanding work the
   activation held, so the job cannot complete before its last emits are routed.

A crash before 3 is durable leaves the input unconsumed in the store: on resume it is queued
again and the activation runs again (at-least-once for activations whose commit was not yet
durable). A crash after 3 leaves the emitted payloads queued in the store: on resume they are
routed; the activation does not run again.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog

from ._codecs import TAG_KEY
from ._flow_document import flow_to_dict
from .error_handling import ErrorStrategy
from .errors import QueueFullError, RoutiluxError, SerializationError, StoreError
from .job_state import JobStatus
from .store._base import Commit, HeldRow, JobSnapshot, PayloadRow

if TYPE_CHECKING:
    from ._activation import Activation
    from ._codecs import CodecRegistry
    from ._job import Job
    from ._plan import FlowPlan, Target
    from .activation_policies import PolicyView
    from .flow import Flow
    from .store._base import JobStore

__all__ = ["DurableJob", "activation_key", "flow_document"]

_log = structlog.get_logger("routilux.store")
_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_finite = math.isfinite

_Buffered = tuple[int, str, "tuple[Target, ...]", dict[str, Any], str]


def flow_document(flow: Flow, cache: dict[int, tuple[FlowPlan, str | None]],
                  plan: FlowPlan) -> str | None:
    """The flow's JSON document (cached per compiled plan), or None if it cannot be written
    (a plain ``Routine`` configured with ``set_logic``): such a job resumes from the flow
    registered under its name."""
    hit = cache.get(id(plan))
    if hit is not None and hit[0] is plan:
        return hit[1]
    try:
        doc: str | None = json.dumps(flow_to_dict(flow), separators=(",", ":"))
    except RoutiluxError:
        doc = None
    if len(cache) >= 64:
        cache.clear()
    cache[id(plan)] = (plan, doc)
    return doc


class DurableJob:
    """The store side of one running job."""

    __slots__ = ("_known", "codecs", "crash", "flow_doc", "flow_name", "held_seqs", "inputs",
                 "job", "job_id", "next_pid", "outbox", "pidmap", "pipelined", "plan",
                 "seen", "store", "unrouted")

    def __init__(
        self, job: Job, store: JobStore, codecs: CodecRegistry, flow_doc: str | None,
        known: dict[int, int] | None, next_pid: int,
    ) -> None:
        self.job = job
        self.job_id = job.job_id
        self.plan = job.plan
        self.store = store
        self.codecs = codecs
        self.crash = getattr(store, "crash", None)
        self.pipelined = bool(getattr(store, "pipelined", True))
        self.flow_doc = flow_doc
        self.flow_name = job.flow_name
        # (queue index, id(payload)) -> pids of that payload object in that queue, in order
        self.pidmap: dict[tuple[int, int], deque[int]] = {}
        self.inputs: dict[int, tuple[int, ...]] = {}  # activation seq -> consumed pids
        self.outbox: dict[Activation, list[_Buffered]] = {}
        self.held_seqs: set[int] = set()  # activations restored from a held record
        self.seen: dict[tuple[str, str], str] = {}  # last state text written per routine
        self.next_pid = next_pid
        # commits submitted whose emits are not routed yet (``pause`` waits for them, so a
        # paused job's queues, and so a save, hold everything its activations emitted)
        self.unrouted = 0
        # pids of restored payload objects (resume from the store), by id(payload)
        self._known: dict[int, int] | None = known

    # -- helpers -----------------------------------------------------------------------------

    def _encode(self, value: Any, path: str) -> str:
        return json.dumps(self.codecs.encode(value, path), separators=(",", ":"))

    def _encode_payload(self, payload: dict[str, Any], path: str) -> str:
        """A payload as JSON: written directly when every value is a plain scalar (the
        common case), else through the codec registry."""
        for k, v in payload.items():
            t = type(v)
            if not (t is int or t is str or t is bool or v is None or (
                    t is float and _finite(v))) or type(k) is not str or k == TAG_KEY:
                return self._encode(payload, path)
        return _dumps(payload)

    def _pid(self, payload: dict[str, Any]) -> int:
        known = self._known
        if known is not None:
            pid = known.pop(id(payload), None)
            if pid is not None:
                return pid
        self.next_pid += 1
        return self.next_pid

    def _register(self, qi: int, payload: dict[str, Any], pid: int) -> None:
        key = (qi, id(payload))
        dq = self.pidmap.get(key)
        if dq is None:
            dq = self.pidmap[key] = deque()
        dq.append(pid)

    def _slot_qi(self, ri: int, slot: str) -> int:
        return self.plan.queue_base[ri] + self.plan.slot_names[ri].index(slot)

    def _state_rows(self, kind: str, rid: str, state: Any) -> tuple[tuple[str, str], ...]:
        if not state:
            return ()
        text = self._encode(state, f"{kind}.{rid}")
        if self.seen.get((kind, rid)) == text:
            return ()
        self.seen[(kind, rid)] = text
        return ((rid, text),)

    def _policy_rows(self, rid: str, view: PolicyView | None) -> tuple[tuple[str, str], ...]:
        """A routine's policy state rows; a fast routine may have no view (so no state)."""
        return () if view is None else self._state_rows("policy", rid, view.state)

    # -- opening (under the job lock, from Job.start) ----------------------------------------

    def open(self, deliver_entry: bool, entry: dict[str, Any]) -> None:
        """Write the whole job (queued payloads, held activations, states, entry) at once."""
        job = self.job
        plan = self.plan
        ids = plan.routine_ids
        payloads: list[PayloadRow] = []
        held: list[HeldRow] = []
        now = time.time()
        # under the job lock (Job.start)
        for qi, q in enumerate(job.queues):
            ri, si = plan.queue_owner[qi]
            for p in q:
                pid = self._pid(p)
                self._register(qi, p, pid)
                payloads.append(PayloadRow(
                    pid=pid, routine_id=ids[ri], slot=plan.slot_names[ri][si],
                    body=self._encode(p, f"pending.{ids[ri]}"),
                ))
        acts: list[tuple[Activation, float]] = []
        for rq in job.retry_ready or ():  # (both lists are created on first use)
            if rq:
                acts.extend((a, 0.0) for a in rq)
        acts.extend(job.restored_retries or ())
        for act, retry_in in acts:
            pids = []
            for slot, items in act.slot_data.items():
                for p in items:
                    pid = self._pid(p)
                    pids.append(pid)
                    payloads.append(PayloadRow(
                        pid=pid, routine_id=ids[act.ri], slot=slot,
                        body=self._encode(p, f"in_flight.{ids[act.ri]}"), held_by=act.seq,
                    ))
            self.inputs[act.seq] = tuple(pids)
            self.held_seqs.add(act.seq)
            held.append(HeldRow(
                seq=act.seq, routine_id=ids[act.ri], attempt=act.attempt,
                message=(self._encode(dict(act.message), "message")
                         if act.message is not None else None),
                due=now + retry_in,
            ))
        if deliver_entry and plan.entry_targets:
            body = self._encode(entry, "entry_params")
            for di, qi in plan.entry_targets:
                self.next_pid += 1
                self._register(qi, entry, self.next_pid)
                _, si = plan.queue_owner[qi]
                payloads.append(PayloadRow(pid=self.next_pid, routine_id=ids[di],
                                           slot=plan.slot_names[di][si], body=body))
        self._known = None
        state = job.state
        states = tuple(
            row for rid, st in state.routine_states.items()
            for row in self._state_rows("state", rid, st)
        )
        policy_states = tuple(
            row for ri, view in enumerate(job.views)
            if view is not None  # a fast routine's view is made on first use: no state
            for row in self._state_rows("policy", ids[ri], view.state)
        )
        snapshot = JobSnapshot(
            job_id=self.job_id, flow_name=self.flow_name, flow_id=plan.flow_id,
            flow_doc=self.flow_doc, status="running", keep_open=job.keep_open,
            entry_params=(self._encode(state.entry_params, "entry_params")
                          if state.entry_params is not None else None),
            next_pid=self.next_pid, seq=job.seq, payloads=tuple(payloads),
            held=tuple(held), states=states, policy_states=policy_states,
        )
        self.store.open_job(snapshot)

    # -- deliveries from outside an activation (posts), under the job lock -------------------

    def deliver(self, targets: tuple[Target, ...], payload: dict[str, Any]) -> None:
        plan = self.plan
        body = self._encode(payload, "post")
        rows = []
        # under the job lock (post)
        for di, qi in targets:
            self.next_pid += 1
            self._register(qi, payload, self.next_pid)
            _, si = plan.queue_owner[qi]
            rows.append(PayloadRow(pid=self.next_pid, routine_id=plan.routine_ids[di],
                                   slot=plan.slot_names[di][si], body=body))
        handle = self.store.submit(Commit(
            job_id=self.job_id, outcome="deliver", emitted=tuple(rows),
            next_pid=self.next_pid, job_seq=self.job.seq,
        ))
        handle.wait()

    def dropped(self, qi: int, payload: dict[str, Any]) -> None:
        """A ``drop_oldest`` slot discarded ``payload`` (job lock held)."""
        dq = self.pidmap.get((qi, id(payload)))
        if not dq:
            return
        pid = dq.popleft()
        if not dq:
            del self.pidmap[(qi, id(payload))]
        self.store.submit(Commit(job_id=self.job_id, outcome="dropped", consumed=(pid,)))

    # -- one activation ----------------------------------------------------------------------

    def claim(self, act: Activation) -> None:
        """A policy took ``act``'s input from the queues (job lock held): note the input
        payloads' pids (the payload objects the queues held, in the order they were taken)."""
        out = []
        pidmap = self.pidmap
        base = self.plan.queue_base[act.ri]
        names = self.plan.slot_names[act.ri]
        for slot, items in act.slot_data.items():
            qi = base + names.index(slot)
            for p in items:
                key = (qi, id(p))
                dq = pidmap.get(key)
                if dq:
                    out.append(dq.popleft())
                    if not dq:
                        del pidmap[key]
        self.inputs[act.seq] = tuple(out)

    def unclaim(self, act: Activation) -> None:
        """``act``'s input goes back to the front of its queues (job lock held)."""
        pids = iter(self.inputs.pop(act.seq, ()))
        base = self.plan.queue_base[act.ri]
        names = self.plan.slot_names[act.ri]
        for slot, items in act.slot_data.items():
            qi = base + names.index(slot)
            for p in items:
                pid = next(pids, None)
                if pid is not None:
                    key = (qi, id(p))
                    dq = self.pidmap.get(key)
                    if dq is None:
                        dq = self.pidmap[key] = deque()
                    dq.appendleft(pid)

    def inputs_of(self, act: Activation) -> tuple[int, ...]:
        """The pids of the payloads ``act`` consumed (its idempotency key names them)."""
        return self.inputs.get(act.seq, ())

    def before_logic(self, act: Activation) -> None:
        if self.crash is not None:
            self.crash.reach("before_logic")

    def buffer(self, ri: int, event: str, targets: tuple[Target, ...],
               payload: dict[str, Any], act: Activation) -> None:
        """Hold an emitted payload until the activation commits (encoded now, so a value that
        cannot be stored fails the emit, in the logic)."""
        rid = self.plan.routine_ids[ri]
        try:
            body = self._encode_payload(payload, f"{rid}.{event}")
        except SerializationError as exc:
            raise SerializationError(
                f"routine {rid!r} emitted {event!r} with a value the job store cannot write: "
                f"{exc}", path=exc.path, routine_id=rid,
            ) from None
        box = self.outbox.get(act)
        if box is None:
            box = self.outbox[act] = []
        box.append((ri, event, targets, payload, body))

    def finish(
        self, ri: int, act: Activation, err: BaseException | None
    ) -> tuple[ErrorStrategy | None, BaseException | None]:
        """Submit the finished activation's commit; its emits are routed once it is durable.

        The worker does not wait for the commit (group commit: it goes on with the next
        activation while the store's writer batches every pending commit into one
        transaction); the job holds one unit of outstanding work until the commit's callback
        has routed the emits, so it cannot complete before. Returns the error decision (taken
        here, before the commit, so the commit knows whether the input is consumed or held for
        a retry) and the error to record.
        """
        crash = self.crash
        if crash is not None:
            crash.reach("after_logic")
        job = self.job
        box = self.outbox.pop(act, None) or []
        if act.abandoned:
            return None, err  # timed out: its emits are discarded, its input stays queued
        decision: ErrorStrategy | None = None
        if err is not None:
            with job.lock:
                decision, err = job._decide_locked(ri, err, act.attempt, act.slot_data)
        plan = self.plan
        ids = plan.routine_ids
        rid = ids[ri]
        held: HeldRow | None = None
        if err is None:
            outcome = "completed"
        elif decision is ErrorStrategy.RETRY and not job.stopped:
            outcome = "retry"
            delay = plan.handlers[ri].delay_for(act.attempt + 1)
            held = HeldRow(
                seq=act.seq, routine_id=rid, attempt=act.attempt + 1,
                message=(self._encode(dict(act.message), "message")
                         if act.message is not None else None),
                due=time.time() + delay,
            )
        elif decision is ErrorStrategy.SKIP:
            outcome = "skipped"
        else:
            outcome = "failed"
        routed: list[tuple[_Buffered, list[int]]] = []
        with job:  # (``job.hot``) pids are numbered, and commits queued, in one order
            if act.abandoned:  # its routine timeout came first and committed the outcome
                return None, err
            act.finished = True  # from here a routine timeout no longer abandons it
            job.outstanding += 1  # released by _committed, after routing
            self.unrouted += 1
            consumed = (self.inputs.get(act.seq, ()) if held is not None
                        else self.inputs.pop(act.seq, ()))
            key = activation_key(self.job_id, rid, consumed, act)
            rows = []
            for item in box:
                pids = []
                for di, qi in item[2]:
                    self.next_pid += 1
                    pids.append(self.next_pid)
                    _, si = plan.queue_owner[qi]
                    rows.append(PayloadRow(pid=self.next_pid, routine_id=ids[di],
                                           slot=plan.slot_names[di][si], body=item[4]))
                routed.append((item, pids))
            commit = Commit(
                job_id=self.job_id, outcome=outcome, seq=act.seq, routine_id=rid,
                attempt=act.attempt, key=key, consumed=consumed, held=held,
                emitted=tuple(rows),
                states=self._state_rows("state", rid, job.state.routine_states.get(rid)),
                policy_states=self._policy_rows(rid, job.views[ri]),
                next_pid=self.next_pid, job_seq=job.seq,
                was_held=act.seq in self.held_seqs if self.held_seqs else False,
            )
            refused: StoreError | None = None
            try:
                handle = self.store.submit(
                    commit, partial(self._committed, act, routed, rid) if self.pipelined else None
                )
            except StoreError as exc:  # the store is closed or broken: the job fails
                refused = exc
        if refused is not None:
            self._committed(act, routed, rid, refused)
            return decision, err
        if not self.pipelined:  # wait until durable, and route on this worker
            error: BaseException | None = None
            try:
                handle.wait()
            except StoreError as exc:
                error = exc
            self._committed(act, routed, rid, error)
        return decision, err

    def timed_out(
        self, ri: int, act: Activation, err: BaseException, decision: ErrorStrategy
    ) -> None:
        """A sync (or remote) activation was abandoned at its routine timeout (job lock held):
        commit its outcome as :meth:`finish` would, without its emits (they are discarded), so
        the store no longer holds as queued an input the job skipped, failed past or holds
        for a retry. Its thread, when it returns, commits nothing (``finish`` sees it
        abandoned)."""
        self.outbox.pop(act, None)
        job = self.job
        plan = self.plan
        rid = plan.routine_ids[ri]
        held: HeldRow | None = None
        if decision is ErrorStrategy.RETRY and not job.stopped:
            outcome = "retry"
            held = HeldRow(
                seq=act.seq, routine_id=rid, attempt=act.attempt + 1,
                message=(self._encode(dict(act.message), "message")
                         if act.message is not None else None),
                due=time.time() + plan.handlers[ri].delay_for(act.attempt + 1),
            )
        elif decision is ErrorStrategy.SKIP:
            outcome = "skipped"
        else:
            outcome = "failed"
        consumed = (self.inputs.get(act.seq, ()) if held is not None
                    else self.inputs.pop(act.seq, ()))
        commit = Commit(
            job_id=self.job_id, outcome=outcome, seq=act.seq, routine_id=rid,
            attempt=act.attempt, key=activation_key(self.job_id, rid, consumed, act),
            consumed=consumed, held=held,
            states=self._state_rows("state", rid, job.state.routine_states.get(rid)),
            policy_states=self._policy_rows(rid, job.views[ri]),
            next_pid=self.next_pid, job_seq=job.seq,
            was_held=act.seq in self.held_seqs if self.held_seqs else False,
        )
        job.outstanding += 1  # released by _committed (on the store's completion thread)
        self.unrouted += 1
        try:
            self.store.submit(commit, partial(self._committed, act, [], rid))
        except StoreError as exc:  # the store is closed or broken: the job fails
            job.outstanding -= 1
            self.unrouted -= 1
            job._finish_locked(JobStatus.FAILED, exc, rid)

    def _committed(
        self, act: Activation, routed: list[tuple[_Buffered, list[int]]], rid: str,
        error: BaseException | None,
    ) -> None:
        """The activation's commit is durable (or failed): route its emits, release its unit."""
        job = self.job
        if error is None and self.crash is not None:
            self.crash.reach("after_commit")
        with job:  # (``job.hot``: the job lock)
            try:
                if error is not None:
                    # Not recorded: the job fails (and can be resumed from the store).
                    job._finish_locked(JobStatus.FAILED, error, rid)
                elif routed:
                    self._route_locked(act, routed)
            finally:
                self.unrouted -= 1
                if not self.unrouted and job.paused:
                    job._notify_locked()  # wakes a pause waiting for the routing
                job._done_locked()

    def _route_locked(self, act: Activation, routed: list[tuple[_Buffered, list[int]]]) -> None:
        job = self.job
        tracker = job.tracker
        for (ri, event, targets, payload, _), pids in routed:
            if job.stopped:
                job.state.discarded_emits += 1
                if tracker is not None:
                    tracker.discarded(ri, event)
                continue
            job.stats[ri].payloads_out += 1
            if tracker is not None:
                tracker.emitted(act, event, payload, targets)
            if not targets:
                continue
            for (_, qi), pid in zip(targets, pids, strict=True):
                self._register(qi, payload, pid)
            try:
                job._deliver_locked(targets, payload)
            except QueueFullError as exc:
                # The payload is committed; a full queue cannot refuse it to the logic any
                # more, so the job fails (it can be resumed from the store).
                job._finish_locked(JobStatus.FAILED, exc, self.plan.routine_ids[ri])

    # -- status ------------------------------------------------------------------------------

    def finished(self, status: JobStatus, err: BaseException | None) -> None:
        """The job ended (job lock held): record it, durably."""
        error = f"{type(err).__name__}: {err}" if err is not None else None
        try:
            self.store.set_status(self.job_id, status.value, error).wait()
        except StoreError as exc:
            _log.error("store.status_failed", job_id=self.job_id, status=status.value,
                       error=str(exc))


def activation_key(job_id: str, routine_id: str, inputs: tuple[int, ...],
                   act: Activation) -> str:
    """The idempotency key of an activation under a store: stable across retries and across
    a crash and resume (it names the input payloads' sequence numbers, not the attempt).

    An activation without input (a source's single run) is ``...:start``.
    """
    if inputs:
        return f"{job_id}:{routine_id}:in-{'.'.join(map(str, inputs))}"
    if not act.slot_data:
        return f"{job_id}:{routine_id}:start"
    return f"{job_id}:{routine_id}:seq-{act.seq}"
