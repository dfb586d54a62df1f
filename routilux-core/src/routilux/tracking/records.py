"""Tracking records: what the runtime reports about a job, as small frozen values.

Every record has ``job_id``, ``flow``, ``seq`` (its place among the records of its job: 1, 2,
3, ... in the order the job produced them, so a gap means records were dropped) and ``ts``
(epoch seconds). ``to_dict()`` is the stable JSON form: ``{"kind": ..., field: value, ...}``
with tuples written as lists; :func:`record_from_dict` reads it back.

Payload lineage: a payload is identified by the ``seq`` of the record that brought it into the
job (:class:`PayloadEmitted` or :class:`PayloadEnqueued`), whose ``payload`` field repeats that
number. :class:`ActivationStarted` lists, per slot, the payload ids it consumed (``payloads``)
and the activations that produced them (``sources``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

__all__ = [
    "RECORD_KINDS",
    "TIMING_FIELDS",
    "ActivationFailed",
    "ActivationFinished",
    "ActivationRetried",
    "ActivationSkipped",
    "ActivationStarted",
    "JobCancelled",
    "JobFinished",
    "JobPaused",
    "JobResumed",
    "JobStarted",
    "PayloadDropped",
    "PayloadEmitted",
    "PayloadEnqueued",
    "QueueDepth",
    "TrackingRecord",
    "record_from_dict",
]

TIMING_FIELDS = frozenset({"ts", "duration", "delay"})
"""Fields whose values depend on the clock; ``to_dict(timing=False)`` leaves them out."""


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


@attrs.frozen(kw_only=True)
class TrackingRecord:
    """Fields every record has.

    Attributes:
        job_id: the job the record is about.
        flow: the flow id of the job.
        seq: position among the job's records, from 1; gaps mean records were dropped.
        ts: when it happened, epoch seconds.
    """

    kind: ClassVar[str] = "record"

    job_id: str
    flow: str
    seq: int
    ts: float

    def to_dict(self, *, timing: bool = True) -> dict[str, Any]:
        """The stable JSON form; ``timing=False`` drops clock-dependent fields (for tests)."""
        out: dict[str, Any] = {"kind": self.kind}
        for field in attrs.fields(type(self)):
            if not timing and field.name in TIMING_FIELDS:
                continue
            out[field.name] = _plain(getattr(self, field.name))
        return out


# -- jobs --------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class JobStarted(TrackingRecord):
    """The job started running (also when a saved job resumes)."""

    kind: ClassVar[str] = "job.started"


@attrs.frozen(kw_only=True)
class JobFinished(TrackingRecord):
    """The job ended: ``status`` is ``completed``, ``failed`` or ``cancelled``."""

    kind: ClassVar[str] = "job.finished"

    status: str
    duration: float
    error_type: str | None = None
    error: str | None = None
    error_routine: str | None = None


@attrs.frozen(kw_only=True)
class JobPaused(TrackingRecord):
    """The job paused; ``reason`` is ``user`` (``pause_job``) or ``breakpoint``."""

    kind: ClassVar[str] = "job.paused"

    reason: str


@attrs.frozen(kw_only=True)
class JobResumed(TrackingRecord):
    """A paused job runs again."""

    kind: ClassVar[str] = "job.resumed"


@attrs.frozen(kw_only=True)
class JobCancelled(TrackingRecord):
    """``cancel_job`` was called (a :class:`JobFinished` with ``cancelled`` follows)."""

    kind: ClassVar[str] = "job.cancelled"


# -- activations -------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class _ActivationRecord(TrackingRecord):
    routine: str
    activation: int
    attempt: int
    inputs: Mapping[str, int] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class ActivationStarted(_ActivationRecord):
    """An activation of ``routine`` begins.

    Attributes:
        routine: the routine id.
        activation: the activation's number in the job (a retry keeps the number).
        attempt: 0 for the first run, *n* for the *n*-th retry.
        inputs: payload count per slot.
        payloads: per slot, the ids of the payloads consumed (None where unknown: records
            dropped, or a resumed job). Empty for a retry (same input as attempt 0).
        sources: the activations that produced the inputs, as ``(routine, activation)``.
    """

    kind: ClassVar[str] = "activation.started"

    payloads: Mapping[str, tuple[int | None, ...]] = attrs.field(factory=dict)
    sources: tuple[tuple[str, int], ...] = ()


@attrs.frozen(kw_only=True)
class ActivationFinished(_ActivationRecord):
    """The activation's logic returned; ``duration`` is its run time in seconds."""

    kind: ClassVar[str] = "activation.finished"

    duration: float


@attrs.frozen(kw_only=True)
class _ActivationError(_ActivationRecord):
    duration: float
    error_type: str
    error: str


@attrs.frozen(kw_only=True)
class ActivationFailed(_ActivationError):
    """The activation failed for good. ``stopped``: the failure failed the job (STOP);
    otherwise the job continues (CONTINUE)."""

    kind: ClassVar[str] = "activation.failed"

    stopped: bool


@attrs.frozen(kw_only=True)
class ActivationRetried(_ActivationError):
    """The activation failed; attempt ``attempt + 1`` runs after ``delay`` seconds."""

    kind: ClassVar[str] = "activation.retried"

    delay: float


@attrs.frozen(kw_only=True)
class ActivationSkipped(_ActivationError):
    """The activation failed and its input was skipped (SKIP)."""

    kind: ClassVar[str] = "activation.skipped"


# -- payloads and queues -----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class PayloadEmitted(TrackingRecord):
    """``routine`` (activation ``activation``) emitted ``event``; the payload went to
    ``targets`` (``routine.slot``). ``payload`` is the payload's id (this record's ``seq``)."""

    kind: ClassVar[str] = "payload.emitted"

    payload: int
    routine: str
    activation: int
    event: str
    targets: tuple[str, ...]


@attrs.frozen(kw_only=True)
class PayloadEnqueued(TrackingRecord):
    """A payload from outside the flow (``source``: ``entry`` or ``post``) was queued at
    ``targets``. ``payload`` is its id (this record's ``seq``)."""

    kind: ClassVar[str] = "payload.enqueued"

    payload: int
    source: str
    targets: tuple[str, ...]


@attrs.frozen(kw_only=True)
class PayloadDropped(TrackingRecord):
    """A payload was lost.

    ``reason`` is ``drop_oldest`` (a full ``drop_oldest`` queue of ``routine.slot`` dropped
    payload ``payload``) or ``discarded`` (``routine`` emitted ``event`` after its job stopped
    or its activation timed out; the payload never got an id).
    """

    kind: ClassVar[str] = "payload.dropped"

    reason: str
    routine: str
    payload: int | None = None
    slot: str | None = None
    event: str | None = None


@attrs.frozen(kw_only=True)
class QueueDepth(TrackingRecord):
    """A sample of the depth of ``routine.slot``'s queue (taken every few emits and whenever
    a queue is full)."""

    kind: ClassVar[str] = "queue.depth"

    routine: str
    slot: str
    depth: int
    capacity: int


RECORD_KINDS: dict[str, type[TrackingRecord]] = {
    cls.kind: cls
    for cls in (
        JobStarted, JobFinished, JobPaused, JobResumed, JobCancelled,
        ActivationStarted, ActivationFinished, ActivationFailed, ActivationRetried,
        ActivationSkipped, PayloadEmitted, PayloadEnqueued, PayloadDropped, QueueDepth,
    )
}  # fmt: skip
"""Record classes by ``kind``."""


def record_from_dict(data: Mapping[str, Any]) -> TrackingRecord:
    """Rebuild a record from its :meth:`~TrackingRecord.to_dict` form (with timing fields).

    Raises:
        ValueError: unknown ``kind`` or missing fields.
    """
    kind = data.get("kind")
    cls = RECORD_KINDS.get(str(kind))
    if cls is None:
        raise ValueError(f"unknown tracking record kind {kind!r}; known: {sorted(RECORD_KINDS)}")
    values = {k: v for k, v in data.items() if k != "kind"}
    if "targets" in values:
        values["targets"] = tuple(values["targets"])
    if "sources" in values:
        values["sources"] = tuple((str(r), int(a)) for r, a in values["sources"])
    if "payloads" in values:
        values["payloads"] = {k: tuple(v) for k, v in values["payloads"].items()}
    try:
        return cls(**values)
    except TypeError as exc:
        raise ValueError(f"bad {kind} record: {exc}") from None
