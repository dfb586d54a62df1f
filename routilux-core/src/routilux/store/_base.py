"""The job-store interface and the records the runtime hands to it.

A store is a transactional outbox: every :class:`Commit` is applied atomically (the
activation's consumption of input, the payloads it emitted, its routine-state changes and its
retry record together) and durably before :meth:`Committed.wait` returns. The runtime routes
an activation's emitted payloads only after that, so nothing routed is ever un-recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import attrs

__all__ = [
    "Commit",
    "Committed",
    "HeldRow",
    "JobSnapshot",
    "JobStore",
    "JobSummary",
    "PayloadRow",
    "StoredActivation",
]


@attrs.frozen(kw_only=True)
class PayloadRow:
    """One payload queued for one slot (a fan-out emit gets one row per target).

    ``pid`` is the payload's sequence number in its job (the input sequence numbers of an
    activation's idempotency key); ``body`` is its JSON text, written with the codec registry;
    ``held_by`` is the activation sequence number of a retry holding it as input.
    """

    pid: int
    routine_id: str
    slot: str
    body: str
    held_by: int | None = None


@attrs.frozen(kw_only=True)
class HeldRow:
    """An activation that must run (again) with input it already took: a pending retry, or a
    restored activation. ``due`` is epoch seconds; its input rows have ``held_by == seq``."""

    seq: int
    routine_id: str
    attempt: int
    message: str | None
    due: float


@attrs.frozen(kw_only=True)
class Commit:
    """Everything one activation (or one delivery from outside, ``routine_id is None``)
    changed, applied in one transaction.

    ``outcome`` is ``completed``, ``failed``, ``skipped`` or ``retry`` for an activation
    (``retry``: its input rows stay, held by ``held``), ``deliver`` for a post, ``dropped``
    for payloads a ``drop_oldest`` slot discarded.
    """

    job_id: str
    outcome: str
    seq: int = 0
    routine_id: str | None = None
    attempt: int = 0
    key: str | None = None
    consumed: tuple[int, ...] = ()
    held: HeldRow | None = None
    emitted: tuple[PayloadRow, ...] = ()
    states: tuple[tuple[str, str], ...] = ()
    policy_states: tuple[tuple[str, str], ...] = ()
    next_pid: int = 0
    job_seq: int = 0
    was_held: bool = False
    """The activation ran from a held record (a restored activation): delete that record."""


@attrs.frozen(kw_only=True)
class JobSnapshot:
    """A whole job as the store holds it: written when a job starts (or resumes), read back by
    :meth:`JobStore.load_job`. ``done_routines`` (read only) names routines with at least one
    finished activation (sources that ran)."""

    job_id: str
    flow_name: str
    flow_id: str
    flow_doc: str | None
    status: str
    keep_open: bool
    entry_params: str | None
    next_pid: int
    seq: int
    payloads: tuple[PayloadRow, ...] = ()
    held: tuple[HeldRow, ...] = ()
    states: tuple[tuple[str, str], ...] = ()
    policy_states: tuple[tuple[str, str], ...] = ()
    done_routines: frozenset[str] = frozenset()
    error: str | None = None


@attrs.frozen(kw_only=True)
class JobSummary:
    """One row of :meth:`JobStore.list_jobs`."""

    job_id: str
    flow_name: str
    flow_id: str
    status: str
    created: float
    updated: float
    activations: int
    error: str | None = None


@attrs.frozen(kw_only=True)
class StoredActivation:
    """One committed activation (or failed attempt) of a job, oldest first."""

    seq: int
    routine_id: str
    attempt: int
    outcome: str
    key: str | None
    consumed: tuple[int, ...]
    committed: float


class Committed(Protocol):
    """A submitted commit; :meth:`wait` returns once it is durable (or raises ``StoreError``)."""

    def wait(self) -> None: ...


@runtime_checkable
class JobStore(Protocol):
    """Where a runtime records jobs so they survive the process (docs/persistence.md).

    Implementations must apply each :class:`Commit` atomically and in submission order, and
    make it durable before its handle's ``wait`` returns; they may (and should) group many
    pending commits into one transaction (group commit). All methods are thread-safe.
    """

    location: str
    """Where the store lives (a file path or a server address), for messages."""

    pipelined: bool
    """Whether workers go on while their activation's commit is pending (see
    ``SqliteJobStore``); False makes each worker wait for its commit."""

    def open_job(self, snapshot: JobSnapshot) -> None:
        """Record a starting (or resuming) job, replacing whatever the store held for its
        queued payloads and held activations; durable when it returns."""
        ...

    def submit(
        self, commit: Commit, then: Callable[[BaseException | None], None] | None = None
    ) -> Committed:
        """Queue ``commit``; the returned handle's ``wait`` blocks until it is durable.

        ``then`` (if given) is called once the commit is durable (with ``None``) or has
        failed (with the ``StoreError``), on a thread of the store, in commit order; the
        runtime routes an activation's emitted payloads from it.
        """
        ...

    def set_status(self, job_id: str, status: str, error: str | None = None) -> Committed:
        """Record the job's status (in order with its commits); a terminal status also drops
        the job's queued payloads and held activations."""
        ...

    def load_job(self, job_id: str) -> JobSnapshot:
        """The job as last committed; ``UnknownJobError`` if the store has no such job."""
        ...

    def list_jobs(self, status: str | None = None) -> list[JobSummary]:
        """Jobs in the store, oldest first, optionally only those in ``status``."""
        ...

    def activations(self, job_id: str) -> list[StoredActivation]:
        """The committed activations of a job, in commit order."""
        ...

    def close(self) -> None:
        """Write what is pending and release the store (idempotent)."""
        ...
