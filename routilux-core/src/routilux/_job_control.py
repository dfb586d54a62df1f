"""Controlling and reading a running job: posts, pause/resume/cancel/complete, breakpoints,
snapshots for saving, and metrics. Functions of a :class:`~routilux._job.Job`, kept apart from
its scheduler so each module stays readable."""

from __future__ import annotations

import time
from typing import Any

from ._job import Job
from .errors import (
    IllegalTransitionError,
    JobNotAcceptingWorkError,
    PauseTimeoutError,
    QueueFullError,
)
from .job_state import JobStatus

__all__ = [
    "cancel",
    "complete",
    "metrics",
    "pause",
    "post",
    "queue_depths",
    "release_breakpoint",
    "resume",
    "snapshot",
]


def post(job: Job, ri: int, qi: int, payload: dict[str, Any]) -> None:
    with job:  # (``job.hot``: the job lock)
        if job.stopped:
            raise JobNotAcceptingWorkError(
                f"job {job.job_id} is {job.state.status.value} and accepts no new work; "
                "start a new job instead",
                job_id=job.job_id,
                status=job.state.status.value,
            )
        job.outstanding += 1  # guard
        try:
            if job.state.status is JobStatus.IDLE:
                job.state._transition(JobStatus.RUNNING)
                job._unsettle_locked()
            if job.tracker is not None:
                job.tracker.enqueued("post", payload, ((ri, qi),))
            if job.durable is None:
                job._deliver_locked(((ri, qi),), payload)
            else:
                job.durable.deliver(((ri, qi),), payload)  # durable before it is routed
                try:
                    job._deliver_locked(((ri, qi),), payload)
                except QueueFullError:
                    job.durable.dropped(qi, payload)  # refused: the store lets it go too
                    raise
        finally:
            job._done_locked()

def pause(job: Job, timeout: float | None) -> None:
    with job.lock:
        status = job.state.status
        if job.stopped:
            raise IllegalTransitionError(
                f"job {job.job_id} is {status.value}; only running or idle jobs can pause",
                job_id=job.job_id, status=status.value, target="paused",
            )
        if not job.paused:
            job.state._transition(JobStatus.PAUSED)
            job.paused = True
            job.pause_reason = "user"
            job._unsettle_locked()
            if job.tracker is not None:
                job.tracker.paused("user")
            if job.aio is not None:
                job.runtime._aio.job_paused(job)  # hand back what waits for an async slot
        deadline = None if timeout is None else time.monotonic() + timeout
        durable = job.durable  # (under a store, emits are routed once their commit is durable)
        while (job.ntasks > 0 or (durable is not None and durable.unrouted)) and not job.stopped:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                running = [
                    rid for rid, n in zip(job.plan.routine_ids, job.tasks, strict=True) if n
                ]
                raise PauseTimeoutError(
                    f"job {job.job_id} is paused but activations of {', '.join(running)} "
                    f"were still running after {timeout:g} s",
                    job_id=job.job_id,
                    running=running,
                )
            job.condition().wait(remaining)
    job.runtime._notify()

def resume(job: Job) -> bool:
    with job.lock:
        if job.stopped:
            raise IllegalTransitionError(
                f"job {job.job_id} is {job.state.status.value} and cannot resume",
                job_id=job.job_id, status=job.state.status.value, target="running",
            )
        if not job.paused:
            return False
        if job.pause_reason == "breakpoint":
            for ri, view in enumerate(job.views):
                if view is not None and job.policies[ri].holds(view):
                    view.state["released"] = True
        job.paused = False
        job.pause_reason = ""
        job.state._transition(JobStatus.RUNNING)
        if job.tracker is not None:
            job.tracker.resumed()
        _kick_locked(job)
        return True

def release_breakpoint(job: Job, ri: int) -> None:
    with job.lock:
        job.view(ri).state["released"] = True
        if job.paused and job.pause_reason == "breakpoint":
            job.paused = False
            job.pause_reason = ""
            job.state._transition(JobStatus.RUNNING)
            if job.tracker is not None:
                job.tracker.resumed()
        if not job.stopped and not job.paused:
            _kick_locked(job)

def _kick_locked(job: Job) -> None:
    job.outstanding += 1  # guard
    for ri in range(len(job.tasks)):
        while (
            not job.stopped and job.tasks[ri] < job.maxc[ri] and job._try_start_locked(ri)
        ):
            pass
    job._done_locked()

def complete(job: Job) -> bool:
    with job.lock:
        if job.stopped:
            return False
        if job.paused:
            raise IllegalTransitionError(
                f"job {job.job_id} is paused; resume it before completing it",
                job_id=job.job_id, status="paused", target="completed",
            )
        job.completing = True
        job.outstanding += 1
        job._done_locked()
        return True

def cancel(job: Job) -> bool:
    with job.lock:
        if job.stopped:
            return False
        if job.tracker is not None:
            job.tracker.cancelled()
        job._finish_locked(JobStatus.CANCELLED, None, None)
        return True

# -- reading ---------------------------------------------------------------------------------------

def snapshot(job: Job) -> dict[str, Any]:
    """Queued payloads, in-flight activations and policy state (caller holds the lock)."""
    plan = job.plan
    pending: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for qi, q in enumerate(job.queues):
        if q:
            ri, si = plan.queue_owner[qi]
            pending.setdefault(plan.routine_ids[ri], {})[plan.slot_names[ri][si]] = list(q)
    in_flight: list[dict[str, Any]] = []
    ids = plan.routine_ids
    for act in sorted(job.executing, key=lambda a: a.seq):
        in_flight.append(act.to_dict(ids[act.ri]))
    for rq in job.retry_ready or ():
        if rq:
            in_flight.extend(act.to_dict(ids[act.ri]) for act in rq)
    now = job.timers.now()
    for act in sorted(job.retry_waiting, key=lambda a: a.seq):
        in_flight.append(act.to_dict(ids[act.ri], max(0.0, act.due - now)))
    policy_states = {
        ids[ri]: dict(v.state) for ri, v in enumerate(job.views) if v is not None and v.state
    }
    return {
        "pending": pending,
        "in_flight": in_flight,
        "policy_states": policy_states,
        "activation_seq": job.seq,
    }

def queue_depths(job: Job) -> dict[str, int]:
    plan = job.plan
    depths: dict[str, int] = {}
    for qi, q in enumerate(job.queues):
        ri, si = plan.queue_owner[qi]
        depths[f"{plan.routine_ids[ri]}.{plan.slot_names[ri][si]}"] = len(q)
    return depths

def metrics(job: Job) -> dict[str, Any]:
    with job.lock:
        state = job.state
        return {
            "job_id": job.job_id,
            "flow_id": job.plan.flow_id,
            "status": state.status.value,
            "routines": {
                rid: job.stats[ri].to_dict() for ri, rid in enumerate(job.plan.routine_ids)
            },
            "queue_depths": queue_depths(job),
            "dropped": dict(state.dropped),
            "discarded_emits": state.discarded_emits,
            "running": {
                rid: n for rid, n in zip(job.plan.routine_ids, job.tasks, strict=True) if n
            },
        }
