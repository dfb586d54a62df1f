"""The embedded job store: one SQLite file in WAL mode, written by one thread (group commit)."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from ..errors import (
    ConfigurationError,
    StoreCorruptError,
    StoreError,
    StoreVersionError,
    UnknownJobError,
)
from ._base import (
    HeldRow,
    JobSnapshot,
    JobSummary,
    PayloadRow,
    StoredActivation,
)
from ._writer import (
    TERMINAL,
    GroupCommitStore,
    Rows,
    activations_from_rows,
    summaries_from_rows,
)

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "SqliteJobStore"]

_log = structlog.get_logger("routilux.store")

APPLICATION_ID = 0x52544C58
"""``PRAGMA application_id`` of a Routilux store ("RTLX"): tells our files from others'."""

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # version 1
    (
        """CREATE TABLE jobs (
            job_id TEXT PRIMARY KEY, flow_name TEXT NOT NULL, flow_id TEXT NOT NULL,
            flow_doc TEXT, status TEXT NOT NULL, keep_open INTEGER NOT NULL,
            entry_params TEXT, next_pid INTEGER NOT NULL, seq INTEGER NOT NULL,
            created REAL NOT NULL, updated REAL NOT NULL, error TEXT)""",
        """CREATE TABLE payloads (
            job_id TEXT NOT NULL, pid INTEGER NOT NULL, routine_id TEXT NOT NULL,
            slot TEXT NOT NULL, body TEXT NOT NULL, held_by INTEGER,
            PRIMARY KEY (job_id, pid)) WITHOUT ROWID""",
        """CREATE TABLE held (
            job_id TEXT NOT NULL, seq INTEGER NOT NULL, routine_id TEXT NOT NULL,
            attempt INTEGER NOT NULL, message TEXT, due REAL NOT NULL,
            PRIMARY KEY (job_id, seq)) WITHOUT ROWID""",
        """CREATE TABLE activations (
            job_id TEXT NOT NULL, seq INTEGER NOT NULL, attempt INTEGER NOT NULL,
            routine_id TEXT NOT NULL, outcome TEXT NOT NULL, key TEXT, consumed TEXT NOT NULL,
            committed REAL NOT NULL, PRIMARY KEY (job_id, seq, attempt)) WITHOUT ROWID""",
        """CREATE TABLE routine_states (
            job_id TEXT NOT NULL, routine_id TEXT NOT NULL, state TEXT NOT NULL,
            PRIMARY KEY (job_id, routine_id)) WITHOUT ROWID""",
        """CREATE TABLE policy_states (
            job_id TEXT NOT NULL, routine_id TEXT NOT NULL, state TEXT NOT NULL,
            PRIMARY KEY (job_id, routine_id)) WITHOUT ROWID""",
        "CREATE INDEX jobs_by_status ON jobs (status)",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)
"""The schema version this Routilux writes (``PRAGMA user_version``)."""



class SqliteJobStore(GroupCommitStore):
    """A durable job store in one SQLite file (the embedded default).

    The file is opened in WAL mode with a busy timeout; one writer thread owns the writing
    connection and applies every queued commit of every job in one transaction per round
    (group commit), so durability costs one ``fsync`` per round, not per activation. Readers
    (``load_job``, ``list_jobs``) use their own short-lived connections.

    Args:
        path: the database file (created, with its directory, if missing).
        synchronous: ``"FULL"`` (default) makes every commit survive a power loss;
            ``"NORMAL"`` survives a crash of the process (``kill -9``) but a power loss may
            lose the last commits (never corrupt the file). See docs/persistence.md.
        busy_timeout: seconds a connection waits for another process's lock.
        check: run ``PRAGMA quick_check`` when opening (refuses a damaged file at once).
        pipelined: True (default): a worker goes on with its next activation while its
            commit is pending (the writer groups many into one transaction; emits are routed
            when durable). False: each worker waits until its activation is durable before
            it runs another, so a crash re-runs at most one activation per worker, at a
            throughput cost (docs/persistence.md).

    Raises:
        StoreCorruptError: the file is damaged or is not a Routilux job store.
        StoreVersionError: the file was written by a newer Routilux.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        busy_timeout: float = 5.0,
        check: bool = True,
        pipelined: bool = True,
    ) -> None:
        sync = str(synchronous).upper()
        if sync not in ("FULL", "NORMAL", "EXTRA"):
            raise ConfigurationError(
                f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}"
            )
        self.path = Path(path)
        self.location = str(self.path)
        self.synchronous = sync
        self._busy_ms = int(busy_timeout * 1000)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        try:
            self._prepare(conn, check)
        finally:
            conn.close()
        self._start(self.path.name, pipelined)

    # -- opening -----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0
            )
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(exc) from None
        return conn

    def _corrupt(self, exc: BaseException) -> StoreCorruptError:
        return StoreCorruptError(
            f"{self.path} is not a usable Routilux job store ({exc}); it is damaged or "
            "belongs to another program. Point the store at another file, or restore this "
            "one from a backup",
            path=str(self.path),
        )

    def _prepare(self, conn: sqlite3.Connection, check: bool) -> None:
        try:
            app = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
            ).fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(exc) from None
        if app != APPLICATION_ID and (app != 0 or tables or version):
            raise StoreCorruptError(
                f"{self.path} is an SQLite database of another program (application_id "
                f"{app:#x}, {tables} tables), not a Routilux job store; choose another file",
                path=str(self.path),
            )
        if version > SCHEMA_VERSION:
            raise StoreVersionError(
                f"{self.path} has job-store schema version {version}, written by a newer "
                f"Routilux; this one reads versions up to {SCHEMA_VERSION}. Upgrade "
                "Routilux, or use another store file",
                path=str(self.path),
                found=version,
                supported=SCHEMA_VERSION,
            )
        try:
            if check:
                problems = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
                if problems != ["ok"]:
                    raise StoreCorruptError(
                        f"{self.path} failed its integrity check: {'; '.join(problems[:5])}. "
                        "Restore it from a backup or start a new store file",
                        path=str(self.path),
                    )
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(
                    f"{self.path}: SQLite refused WAL mode (got {mode!r}); put the store on "
                    "a local file system",
                    path=str(self.path),
                )
            if version < SCHEMA_VERSION:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for v in range(version, SCHEMA_VERSION):
                        for sql in _MIGRATIONS[v]:
                            conn.execute(sql)
                    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                _log.info("store.migrated", path=str(self.path), old=version,
                          new=SCHEMA_VERSION)
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(exc) from None

    # -- the writer's SQL --------------------------------------------------------------------

    def _writer_connect(self) -> sqlite3.Connection:
        return self._connect()

    def _begin(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def _commit(self, conn: sqlite3.Connection) -> None:
        conn.execute("COMMIT")

    def _rollback(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    def _close_writer(self, conn: sqlite3.Connection) -> None:
        conn.close()

    def _write_snapshot(self, conn: sqlite3.Connection, s: JobSnapshot) -> None:
        _write_snapshot(conn, s)

    def _write_rows(self, conn: sqlite3.Connection, rows: Rows) -> None:
        ex = conn.executemany
        if rows.del_pay:
            ex("DELETE FROM payloads WHERE job_id = ? AND pid = ?", rows.del_pay)
        if rows.hold:
            ex("UPDATE payloads SET held_by = ? WHERE job_id = ? AND pid = ?", rows.hold)
        if rows.del_held:
            ex("DELETE FROM held WHERE job_id = ? AND seq = ?", rows.del_held)
        if rows.held:
            ex("INSERT OR REPLACE INTO held VALUES (?,?,?,?,?,?)", rows.held)
        if rows.act:
            ex("INSERT OR REPLACE INTO activations VALUES (?,?,?,?,?,?,?,?)", rows.act)
        if rows.pay:
            ex("INSERT INTO payloads VALUES (?,?,?,?,?,?)", rows.pay)
        if rows.st:
            ex("INSERT OR REPLACE INTO routine_states VALUES (?,?,?)", rows.st)
        if rows.pol:
            ex("INSERT OR REPLACE INTO policy_states VALUES (?,?,?)", rows.pol)
        if rows.jobs:
            ex(
                "UPDATE jobs SET next_pid = max(next_pid, ?), seq = max(seq, ?) "
                "WHERE job_id = ?",
                [(pid, seq, job) for job, (pid, seq) in rows.jobs.items()],
            )

    def _write_status(
        self, conn: sqlite3.Connection, job_id: str, status: str, error: str | None
    ) -> None:
        conn.execute(
            "UPDATE jobs SET status = ?, error = ?, updated = ? WHERE job_id = ?",
            (status, error, time.time(), job_id),
        )
        if status in TERMINAL:
            conn.execute("DELETE FROM payloads WHERE job_id = ?", (job_id,))
            conn.execute("DELETE FROM held WHERE job_id = ?", (job_id,))

    # -- reading -----------------------------------------------------------------------------

    def _read(self) -> sqlite3.Connection:
        return self._connect()

    def load_job(self, job_id: str) -> JobSnapshot:
        conn = self._read()
        try:
            conn.execute("BEGIN")  # one consistent snapshot of the WAL
            row = conn.execute(
                "SELECT flow_name, flow_id, flow_doc, status, keep_open, entry_params, "
                "next_pid, seq, error FROM jobs WHERE job_id = ?",
                (job_id,),
            ).fetchone()
            if row is None:
                raise UnknownJobError(
                    f"job store {self.path} has no job {job_id!r}; list its jobs with "
                    f"'routilux jobs list --store {self.path}'",
                    job_id=job_id,
                )
            payloads = tuple(
                PayloadRow(pid=p, routine_id=r, slot=s, body=b, held_by=h)
                for p, r, s, b, h in conn.execute(
                    "SELECT pid, routine_id, slot, body, held_by FROM payloads "
                    "WHERE job_id = ? ORDER BY pid",
                    (job_id,),
                )
            )
            held = tuple(
                HeldRow(seq=s, routine_id=r, attempt=a, message=m, due=d)
                for s, r, a, m, d in conn.execute(
                    "SELECT seq, routine_id, attempt, message, due FROM held "
                    "WHERE job_id = ? ORDER BY seq",
                    (job_id,),
                )
            )
            states = tuple(
                conn.execute(
                    "SELECT routine_id, state FROM routine_states WHERE job_id = ?", (job_id,)
                ).fetchall()
            )
            policy_states = tuple(
                conn.execute(
                    "SELECT routine_id, state FROM policy_states WHERE job_id = ?", (job_id,)
                ).fetchall()
            )
            done = frozenset(
                r for (r,) in conn.execute(
                    "SELECT DISTINCT routine_id FROM activations WHERE job_id = ? "
                    "AND outcome != 'retry'",
                    (job_id,),
                )
            )
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(exc) from None
        finally:
            conn.close()
        name, flow_id, doc, status, keep_open, entry, next_pid, seq, error = row
        return JobSnapshot(
            job_id=job_id, flow_name=name, flow_id=flow_id, flow_doc=doc, status=status,
            keep_open=bool(keep_open), entry_params=entry, next_pid=next_pid, seq=seq,
            payloads=payloads, held=held, states=states, policy_states=policy_states,
            done_routines=done, error=error,
        )

    def list_jobs(self, status: str | None = None) -> list[JobSummary]:
        conn = self._read()
        try:
            sql = (
                "SELECT j.job_id, j.flow_name, j.flow_id, j.status, j.created, j.updated, "
                "j.error, (SELECT count(*) FROM activations a WHERE a.job_id = j.job_id "
                "AND a.outcome != 'retry') FROM jobs j"
            )
            args: Sequence[Any] = ()
            if status is not None:
                sql += " WHERE j.status = ?"
                args = (status,)
            rows = conn.execute(sql + " ORDER BY j.created, j.job_id", args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(exc) from None
        finally:
            conn.close()
        return summaries_from_rows(rows)

    def activations(self, job_id: str) -> list[StoredActivation]:
        conn = self._read()
        try:
            rows = conn.execute(
                "SELECT seq, routine_id, attempt, outcome, key, consumed, committed "
                "FROM activations WHERE job_id = ? ORDER BY committed, seq, attempt",
                (job_id,),
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(exc) from None
        finally:
            conn.close()
        return activations_from_rows(rows)

    def integrity_check(self) -> list[str]:
        """``PRAGMA integrity_check`` of the file: ``["ok"]`` when it is sound."""
        conn = self._read()
        try:
            return [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
        finally:
            conn.close()

    def __repr__(self) -> str:
        return f"<SqliteJobStore {self.path} synchronous={self.synchronous}>"


# -- statements (run on the writer thread, inside its transaction) ------------------------------


def _write_snapshot(conn: sqlite3.Connection, s: JobSnapshot) -> None:
    now = time.time()
    job = s.job_id
    conn.execute(
        "INSERT INTO jobs (job_id, flow_name, flow_id, flow_doc, status, keep_open, "
        "entry_params, next_pid, seq, created, updated) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
        "ON CONFLICT (job_id) DO UPDATE SET flow_name = excluded.flow_name, "
        "flow_id = excluded.flow_id, flow_doc = excluded.flow_doc, status = excluded.status, "
        "keep_open = excluded.keep_open, entry_params = excluded.entry_params, "
        "next_pid = excluded.next_pid, seq = excluded.seq, updated = excluded.updated, "
        "error = NULL",
        (job, s.flow_name, s.flow_id, s.flow_doc, s.status, int(s.keep_open), s.entry_params,
         s.next_pid, s.seq, now, now),
    )
    conn.execute("DELETE FROM payloads WHERE job_id = ?", (job,))
    conn.execute("DELETE FROM held WHERE job_id = ?", (job,))
    conn.executemany(
        "INSERT INTO payloads VALUES (?,?,?,?,?,?)",
        [(job, p.pid, p.routine_id, p.slot, p.body, p.held_by) for p in s.payloads],
    )
    conn.executemany(
        "INSERT INTO held VALUES (?,?,?,?,?,?)",
        [(job, h.seq, h.routine_id, h.attempt, h.message, h.due) for h in s.held],
    )
    conn.executemany(
        "INSERT OR REPLACE INTO routine_states VALUES (?,?,?)",
        [(job, r, st) for r, st in s.states],
    )
    conn.executemany(
        "INSERT OR REPLACE INTO policy_states VALUES (?,?,?)",
        [(job, r, st) for r, st in s.policy_states],
    )
