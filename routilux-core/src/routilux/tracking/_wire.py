"""The raw record format shared by the hot path and the drain thread: kinds, the packed
layout of a raw record, and what a record needs to know about its job.

The hub's queue is one ``bytearray`` of fixed-size packed records, ``REC`` (56 bytes, native
byte order, no padding)::

    kind:u8 attempt:u8 name:u16 tok:u32 seq:i64 t:f64 t2:f64 aseq:i64 x:i64 pid:u64

The hot records carry no Python object: the job as its hub token ``tok``, a name (an event or
a slot) as its index in the hub's name table (a list of the plans' own ``str`` objects), a
payload as its ``id()``. By kind (unused fields are zero)::

    K_STARTED   name=slot, attempt, seq, t, aseq, x=ri, pid      (one payload on ``slot``)
    K_FINISHED  attempt, seq, t, t2=duration, aseq, x=ri
    K_EMITTED   name=event, seq, t, aseq, x=ri, pid
    K_DEPTH     seq, t, aseq=depth, x=qi             (a queue-depth sample: queue ``qi``
                                              held ``depth`` payloads; every
                                              ``_hub._DEPTH_EVERY`` records of a job, after an
                                              emitted record, one per target queue)
    K_PAIR      name=ri, seq, t, t2=t0, aseq, x=nseq, pid
                (two records: activation ``aseq`` of routine ``ri`` finished at ``t`` after
                starting at ``t0``, seq ``seq - 1``; then activation ``nseq`` of the same routine
                started at ``t`` on one payload of its only slot, seq ``seq``; both first
                attempts. Written by a fast routine draining its queue, see Job.run_task)
    K_OBJ       pid=key                      (the record is the entry tuple the hub keeps
                                              under ``key``: rare kinds, and any record whose
                                              fields do not fit the packed form)

An entry (the materializer's input) is a tuple ``(kind, tok, seq, t, ...)``; the object path
stores entries as they are, the decoder (``_materialize.decode``) turns packed records into
the same entries.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._job import Job

__all__ = ["NAME_MAX", "PAIR_SHIFT", "REC", "REC_SIZE", "TOK_MAX", "JobInfo", "err_text",
           "err_type", "records"]

REC = struct.Struct("=BBHIqddqqQ")
"""One packed raw record (see above)."""

REC_SIZE = REC.size
"""Bytes per raw record in the hub's queue (56)."""

NAME_MAX = 0xFFFF
"""The largest name index (and a pair's routine index) a packed record holds."""

TOK_MAX = 0xFFFF_FFFF
"""The largest job token a packed record holds (later jobs take the object path)."""

ATTEMPT_MAX = 0xFF
"""The largest attempt a packed record holds."""

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
K_OBJ = 14
K_PAIR = 15
"""One raw record that is two records (see above): the queue's bound and the hub's counters
count raw records, ``records(chunk)`` counts records."""

PAIR_SHIFT = 16
"""A pair's routine index must be below ``1 << PAIR_SHIFT`` (it is packed as a u16)."""


def records(chunk: tuple[bytes, Sequence[Any]]) -> int:
    """The records in a drained chunk ``(packed bytes, objects)`` (a ``K_PAIR`` is two): one
    C-level slice and count."""
    data = chunk[0]
    return len(data) // REC_SIZE + data[0::REC_SIZE].count(K_PAIR)


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
