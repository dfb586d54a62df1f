"""The raw record format shared by the hot path and the drain thread: kinds, the layout of
a raw record, and what a record needs to know about its job.

A raw record is ``W`` (8) consecutive items of the hub's queue, a plain ``list`` that the hot
path extends with one tuple per record (the tuple is freed at once: nothing the garbage
collector tracks is kept per record; ints, floats and strings are not tracked). Items, by
kind (the first item)::

    K_STARTED   tok seq t ri aseq attempt None        (no input)
    <slot: str> tok seq t ri aseq attempt id(payload) (started, one payload on ``slot``)
    K_FINISHED  tok seq t ri aseq attempt duration
    K_PAIR      tok<<16|ri seq+1 t t0 aseq nseq id(payload)
                (two records: activation ``aseq`` of routine ``ri`` finished at ``t`` after
                starting at ``t0``, seq ``seq``; then activation ``nseq`` of the same routine
                started at ``t`` on one payload of its only slot, seq ``seq+1``; both first
                attempts. Written by a fast routine draining its queue, see Job.run_task)
    K_EMITTED   tok seq t ri aseq event   id(payload)
    K_ENQUEUED  tok seq t source id(payload) ri qi      (ri, qi: -1 for the entry)
    K_DROPPED   tok seq t id(payload)|None ri qi|None event|None
    K_DEPTH     tok seq t qi depth None None
    K_OBJ       <tuple> None ...                     (a rare record as one object)

Names (slots, events) are the very ``str`` objects of the flow's plan, so they cost one
reference each, and a started record with one payload (the per-message case) carries its
slot name in place of the kind, which saves a ninth item.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._job import Job

__all__ = ["PAIR_SHIFT", "JobInfo", "W", "err_text", "err_type", "records"]

W = 8
"""Items per raw record in the hub's queue."""

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
K_OBJ = 14  # the record is the tuple in the next item
K_PAIR = 15
"""One raw record that is two records (see above): the queue's bound and the hub's counters
count raw records, ``records(chunk)`` counts records."""

PAIR_SHIFT = 16
"""``K_PAIR`` records name job and routine in one item: ``tok << PAIR_SHIFT | ri``."""


def records(items: Sequence[Any]) -> int:
    """The records in whole raw records ``items`` (a ``K_PAIR`` is two): one C-level slice
    and count, about 35 instructions per raw record."""
    return len(items) // W + items[0::W].count(K_PAIR)


class JobInfo:
    """What records need to know about a job (kept by the hub and by lazy sinks)."""

    __slots__ = ("caps", "entry_targets", "epoch", "flow", "job_id", "queue_names", "routes",
                 "routine_ids", "slot_names")

    def __init__(self, job: Job) -> None:
        plan = job.plan
        self.job_id = job.job_id
        self.flow = plan.flow_id
        self.routine_ids = plan.routine_ids
        self.slot_names = plan.slot_names
        self.queue_names = tuple(
            (plan.routine_ids[ri], plan.slot_names[ri][si]) for ri, si in plan.queue_owner
        )
        self.caps = plan.caps
        self.routes = plan.routes
        self.entry_targets = plan.entry_targets
        self.epoch = job.epoch


def err_type(err: BaseException | None) -> str | None:
    return None if err is None else type(err).__name__


def err_text(err: BaseException) -> str:
    try:
        text = f"{type(err).__name__}: {err}"
    except Exception:  # a broken __str__ must not break tracking
        text = type(err).__name__
    return text if len(text) <= 500 else text[:497] + "..."
