"""Durable job stores: where a runtime records jobs so they survive a crash.

``Runtime(store=SqliteJobStore("jobs.db"))`` (or ``store=("sqlite", {"path": "jobs.db"})``)
records every job's flow, status, queued payloads and each completed activation (its consumed
input, emitted payloads and routine-state changes in one transaction);
``runtime.resume(job_id)`` rebuilds a job in a new process and ``runtime.recover()`` resumes
every unfinished one. See docs/persistence.md.
"""

from ._base import (
    Commit,
    Committed,
    HeldRow,
    JobSnapshot,
    JobStore,
    JobSummary,
    PayloadRow,
    StoredActivation,
)
from ._sqlite import SCHEMA_VERSION, SqliteJobStore


def __getattr__(name: str) -> object:
    # PostgresJobStore needs the optional psycopg; import it only when asked for.
    if name in ("PostgresJobStore", "PG_SCHEMA_VERSION"):
        from . import _postgres

        return getattr(_postgres, name)
    raise AttributeError(f"module 'routilux.store' has no attribute {name!r}")


__all__ = [
    "SCHEMA_VERSION",
    "Commit",
    "Committed",
    "HeldRow",
    "JobSnapshot",
    "JobStore",
    "JobSummary",
    "PayloadRow",
    "PostgresJobStore",
    "SqliteJobStore",
    "StoredActivation",
]
