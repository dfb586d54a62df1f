"""The raw record format shared by the hot path and the drain thread: kinds, the packed
struct, and what a record needs to know about its job."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._job import Job

__all__ = ["REC", "JobInfo", "W", "err_text", "err_type"]

REC = struct.Struct("=qqqdqqqdqqqq")
"""One raw record: kind, job token, seq, time, four ints, a float, four ints (96 bytes)."""

W = REC.size

# raw record kinds
K_JOB_STARTED = 0
K_JOB_FINISHED = 1
K_PAUSED = 2
K_RESUMED = 3
K_CANCELLED = 4
K_STARTED = 5
K_FINISHED = 6
K_FAILED = 7
K_RETRIED = 8
K_SKIPPED = 9
K_EMITTED = 10
K_ENQUEUED = 11
K_DROPPED = 12
K_DEPTH = 13
K_OBJ = 14  # the record is the next object of the chunk's side list

class JobInfo:
    """What records need to know about a job (kept by the hub and by lazy sinks)."""

    __slots__ = ("caps", "entry_targets", "epoch", "events", "flow", "job_id", "queue_names",
                 "routes", "routine_ids", "slots")

    def __init__(self, job: Job) -> None:
        plan = job.plan
        self.job_id = job.job_id
        self.flow = plan.flow_id
        self.routine_ids = plan.routine_ids
        self.queue_names = tuple(
            (plan.routine_ids[ri], plan.slot_names[ri][si]) for ri, si in plan.queue_owner
        )
        self.caps = plan.caps
        self.routes = plan.routes
        self.entry_targets = plan.entry_targets
        self.epoch = job.epoch
        # names travel as hash(name) in raw records: resolved per routine here
        self.events = tuple({hash(name): name for name in routes} for routes in plan.routes)
        self.slots = tuple({hash(name): name for name in names} for names in plan.slot_names)


def err_type(err: BaseException | None) -> str | None:
    return None if err is None else type(err).__name__


def err_text(err: BaseException) -> str:
    try:
        text = f"{type(err).__name__}: {err}"
    except Exception:  # a broken __str__ must not break tracking
        text = type(err).__name__
    return text if len(text) <= 500 else text[:497] + "..."
