"""JobState: everything about one execution of a flow.

Status, per-routine state, execution history, business data (``shared_data``,
``shared_log``), outputs, and (when saved) the payloads still queued, so a saved job resumes
where it stopped.
"""

from __future__ import annotations

import enum
import json
import os
import random
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import attrs

from .errors import IllegalTransitionError, SerializationError

__all__ = [
    "DEFAULT_HISTORY_LIMIT",
    "FORMAT_VERSION",
    "ExecutionRecord",
    "JobState",
    "JobStatus",
]

FORMAT_VERSION = 1
"""Version of the saved job-state format (``"format_version"`` in the JSON)."""

DEFAULT_HISTORY_LIMIT = 1000
"""Execution records kept per job unless the runtime is told otherwise (oldest dropped)."""


class JobStatus(enum.StrEnum):
    """Where a job is in its life."""

    PENDING = "pending"
    RUNNING = "running"
    IDLE = "idle"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})

_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset(
        {JobStatus.RUNNING, JobStatus.PAUSED, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    JobStatus.RUNNING: frozenset(
        {
            JobStatus.IDLE,
            JobStatus.PAUSED,
            JobStatus.COMPLETED,
            JobStatus.FAILED,
            JobStatus.CANCELLED,
        }
    ),
    JobStatus.IDLE: frozenset(
        {
            JobStatus.RUNNING,
            JobStatus.PAUSED,
            JobStatus.COMPLETED,
            JobStatus.FAILED,
            JobStatus.CANCELLED,
        }
    ),
    JobStatus.PAUSED: frozenset(
        {JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.COMPLETED}
    ),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


def can_transition(current: JobStatus, target: JobStatus) -> bool:
    return target in _TRANSITIONS[current]


@attrs.define(kw_only=True, eq=False)
class ExecutionRecord:
    """One activation of one routine, as the history keeps it.

    ``status`` is ``completed``, ``failed`` (error recorded, see ``error``), ``retrying``
    (failed; a retry is scheduled), ``skipped`` or ``timed_out``. ``started_at`` is epoch
    seconds; ``duration`` is seconds.
    """

    routine_id: str
    status: str
    started_at: float
    duration: float
    attempt: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "routine_id": self.routine_id,
            "status": self.status,
            "started_at": datetime.fromtimestamp(self.started_at, UTC).isoformat(),
            "duration": self.duration,
            "attempt": self.attempt,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExecutionRecord:
        started = data["started_at"]
        ts = datetime.fromisoformat(started).timestamp() if isinstance(started, str) else started
        return cls(
            routine_id=str(data["routine_id"]),
            status=str(data["status"]),
            started_at=float(ts),
            duration=float(data["duration"]),
            attempt=int(data.get("attempt", 0)),
            error=data.get("error"),
        )


def _completed_record(
    routine_id: str, started_at: float, duration: float, attempt: int
) -> ExecutionRecord:
    """``ExecutionRecord(routine_id=..., status="completed", ...)`` for ``Job.run_task`` (one
    per successful activation), without the generated ``__init__``'s keyword binding; a test
    compares the two field by field."""
    r: ExecutionRecord = _object_new(ExecutionRecord)
    r.routine_id = routine_id
    r.status = "completed"
    r.started_at = started_at
    r.duration = duration
    r.attempt = attempt
    r.error = None
    return r


_object_new = object.__new__


def _to_status(value: JobStatus | str) -> JobStatus:
    """``JobStatus(value)``, without the enum lookup when it already is one (every ``exec``
    creates a state with the default)."""
    return value if type(value) is JobStatus else JobStatus(value)


def _now() -> datetime:
    return datetime.now(UTC)


# Factories called by every ``exec`` (each a C call, not a Python frame).
_new_timestamp = partial(datetime.now, UTC)
_new_history: partial[deque[ExecutionRecord]] = partial(deque, maxlen=DEFAULT_HISTORY_LIMIT)
_MAKE_LOCK = threading.Lock()


def _new_job_id() -> str:
    """A random (version 4) UUID as 32 hex digits.

    Drawn from :mod:`random` (seeded from the OS at start and re-seeded in forked children),
    not ``os.urandom``: job ids are identifiers, not secrets, and a system call on the ``exec``
    path releases the GIL and stalls behind busy workers.
    """
    return f"{random.getrandbits(128) & _UUID_KEEP | _UUID_SET:032x}"


# Version 4 (bits 76-79 = 0100) and the RFC 4122 variant (bits 62-63 = 10), as two masks.
_UUID_KEEP = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET = (4 << 76) | (0x8000 << 48)


# Setting attributes runs no attrs hooks (statuses change on the runtime's hot path; values
# are converted in __init__ and checked on load).
@attrs.define(kw_only=True, eq=False, on_setattr=attrs.setters.NO_OP)
class JobState:
    """The state of one execution of a flow.

    The runtime creates one per ``exec``/``post``; you may also create or load one and pass it
    to ``runtime.exec(name, job_state=...)`` to resume. Reads are safe at any time; the
    runtime's own writes happen under the job's lock, and ``update_routine_state`` merges
    under that lock too.

    Attributes:
        routine_states: per-routine dicts that only logic writes (the runtime never
            overwrites them).
        execution_history: the most recent activations (bounded; see ``history_limit``).
        shared_data: business data shared by the job's routines (read/write).
        shared_log: business log of the job (append-only).
        output_handler: called with every record a routine sends with ``send_output``
            (not saved).
        output_log: every record sent with ``send_output``.
        dropped: payloads dropped by ``drop_oldest`` slots, per ``"routine.slot"``.
        unconsumed: payloads still queued when the job completed, per ``"routine.slot"``
            (a policy that never fired): recorded, never silently lost.
    """

    flow_id: str
    job_id: str = attrs.field(factory=_new_job_id)
    status: JobStatus = attrs.field(default=JobStatus.PENDING, converter=_to_status)
    created_at: datetime = attrs.field(factory=_new_timestamp)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    error_type: str | None = None
    error_traceback: str | None = None
    error_routine: str | None = None
    entry_params: dict[str, Any] | None = None
    routine_states: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    execution_history: deque[ExecutionRecord] = attrs.field(factory=_new_history)
    shared_data: dict[str, Any] = attrs.field(factory=dict)
    shared_log: list[Any] = attrs.field(factory=list)
    output_log: list[dict[str, Any]] = attrs.field(factory=list)
    output_handler: Callable[[dict[str, Any]], Any] | None = attrs.field(
        default=None, repr=False
    )
    dropped: dict[str, int] = attrs.field(factory=dict)
    discarded_emits: int = 0
    unconsumed: dict[str, list[dict[str, Any]]] = attrs.field(factory=dict)
    keep_open: bool = False
    # Saved-only fields: what was in flight when the state was saved (empty on live jobs;
    # the runtime snapshots them from its queues in to_dict()).
    pending: dict[str, dict[str, list[dict[str, Any]]]] = attrs.field(factory=dict, repr=False)
    in_flight: list[dict[str, Any]] = attrs.field(factory=list, repr=False)
    policy_states: dict[str, dict[str, Any]] = attrs.field(factory=dict, repr=False)
    entry_delivered: bool = False
    activation_seq: int = 0
    # Private runtime links, never serialized. Typed loosely so cattrs can resolve the class.
    # The state's own lock, made on first use (most jobs never take it; one lock object
    # fewer per job for the collector to walk while the job is kept): see ``_lock``.
    _rlock: Any = attrs.field(init=False, default=None, repr=False)
    _live: Any = attrs.field(init=False, default=None, repr=False)  # routilux._job.Job

    @property
    def _lock(self) -> Any:
        """The state's reentrant lock (``get``/``update_routine_state``, ``history``,
        saving), created on first use."""
        lock = self._rlock
        if lock is None:
            with _MAKE_LOCK:  # two threads asking at once get the same lock
                lock = self._rlock
                if lock is None:
                    lock = self._rlock = threading.RLock()
        return lock

    # -- routine state ---------------------------------------------------------------------

    def get_routine_state(self, routine_id: str, default: Any = None) -> Any:
        """A copy of ``routine_id``'s state dict, or ``default`` if it has none."""
        with self._lock:
            state = self.routine_states.get(routine_id)
            return dict(state) if state is not None else default

    def update_routine_state(self, routine_id: str, updates: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``updates`` into ``routine_id``'s state (never replaces it); returns a copy."""
        with self._lock:
            state = self.routine_states.setdefault(routine_id, {})
            state.update(updates)
            return dict(state)

    # -- status ----------------------------------------------------------------------------

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    def _transition(self, target: JobStatus) -> None:
        """Move to ``target``; only legal transitions (see ``JobStatus``)."""
        if target is self.status:
            return
        if not can_transition(self.status, target):
            raise IllegalTransitionError(
                f"job {self.job_id} cannot go from {self.status.value} to {target.value}",
                job_id=self.job_id,
                status=self.status.value,
                target=target.value,
            )
        self.status = target
        if target is JobStatus.RUNNING and self.started_at is None:
            self.started_at = datetime.now(UTC)
        if target in _TERMINAL:
            self.finished_at = datetime.now(UTC)

    # -- history ---------------------------------------------------------------------------

    def history(self, routine_id: str | None = None) -> list[ExecutionRecord]:
        """Execution records, oldest first, optionally of one routine."""
        with self._lock:
            records = list(self.execution_history)
        if routine_id is None:
            return records
        return [r for r in records if r.routine_id == routine_id]

    # -- serialization ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of everything needed to inspect or resume this job.

        For a job the runtime is running, queued payloads, activations in flight (or waiting
        for a retry) and policy state are snapshotted under the job's lock.
        """
        from .serialization import job_state_to_dict

        return job_state_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobState:
        """Rebuild a job state from :meth:`to_dict` output (typed errors for bad data)."""
        from .serialization import job_state_from_dict

        return job_state_from_dict(data)

    def to_json(self, **kwargs: Any) -> str:
        from .serialization import dumps_checked

        return dumps_checked(self.to_dict(), what=f"job {self.job_id}", **kwargs)

    @classmethod
    def from_json(cls, text: str) -> JobState:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SerializationError(f"job state is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise SerializationError("job state JSON must be an object")
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the state as JSON to ``path`` atomically (temp file, fsync, rename)."""
        target = Path(path)
        text = self.to_json(indent=2)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> JobState:
        """Read a state written by :meth:`save`."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise SerializationError(f"cannot read job state file {str(p)!r}: {exc}") from None
        try:
            return cls.from_json(text)
        except SerializationError as exc:
            raise SerializationError(f"{p}: {exc}", path=exc.path) from None

    def __repr__(self) -> str:
        return f"<JobState {self.job_id} flow={self.flow_id!r} status={self.status.value}>"


def _new_state(
    flow_id: str, entry_params: dict[str, Any] | None, keep_open: bool,
    history: deque[ExecutionRecord],
) -> JobState:
    """``JobState(flow_id=..., entry_params=..., keep_open=..., execution_history=...)``, as
    every ``Runtime.exec`` makes one, without the generated ``__init__``'s keyword binding and
    per-field default tests: every field is set as that ``__init__`` sets it (a test compares
    the two field by field, so a field added to the class and not here fails it)."""
    s: JobState = _object_new(JobState)
    s.flow_id = flow_id
    s.job_id = _new_job_id()
    s.status = _PENDING
    s.created_at = _new_timestamp()
    s.started_at = s.finished_at = None
    s.error = s.error_type = s.error_traceback = s.error_routine = None
    s.entry_params = entry_params
    s.routine_states = {}
    s.execution_history = history
    s.shared_data = {}
    s.shared_log = []
    s.output_log = []
    s.output_handler = None
    s.dropped = {}
    s.discarded_emits = 0
    s.unconsumed = {}
    s.keep_open = keep_open
    s.pending = {}
    s.in_flight = []
    s.policy_states = {}
    s.entry_delivered = False
    s.activation_seq = 0
    s._rlock = None
    s._live = None
    return s


_PENDING = JobStatus.PENDING
