"""A job store in PostgreSQL (``routilux[postgres]``, psycopg 3), for several hosts.

Same tables and the same group commit as :class:`~routilux.store.SqliteJobStore`, in one
schema of a PostgreSQL database (``routilux`` by default), versioned in its ``meta`` table.
"""

from __future__ import annotations

import contextlib
import re
import time
from typing import TYPE_CHECKING, Any

import structlog

from ..errors import (
    ConfigurationError,
    StoreCorruptError,
    StoreError,
    StoreVersionError,
    UnknownJobError,
)
from ._base import HeldRow, JobSnapshot, JobSummary, PayloadRow, StoredActivation
from ._writer import (
    TERMINAL,
    GroupCommitStore,
    Rows,
    activations_from_rows,
    summaries_from_rows,
)

if TYPE_CHECKING:
    import psycopg

__all__ = ["PG_SCHEMA_VERSION", "PostgresJobStore"]

_log = structlog.get_logger("routilux.store")

_APP = "routilux-job-store"
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE {s}.jobs (
            job_id TEXT PRIMARY KEY, flow_name TEXT NOT NULL, flow_id TEXT NOT NULL,
            flow_doc TEXT, status TEXT NOT NULL, keep_open INTEGER NOT NULL,
            entry_params TEXT, next_pid BIGINT NOT NULL, seq BIGINT NOT NULL,
            created DOUBLE PRECISION NOT NULL, updated DOUBLE PRECISION NOT NULL, error TEXT)""",
        """CREATE TABLE {s}.payloads (
            job_id TEXT NOT NULL, pid BIGINT NOT NULL, routine_id TEXT NOT NULL,
            slot TEXT NOT NULL, body TEXT NOT NULL, held_by BIGINT,
            PRIMARY KEY (job_id, pid))""",
        """CREATE TABLE {s}.held (
            job_id TEXT NOT NULL, seq BIGINT NOT NULL, routine_id TEXT NOT NULL,
            attempt INTEGER NOT NULL, message TEXT, due DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (job_id, seq))""",
        """CREATE TABLE {s}.activations (
            job_id TEXT NOT NULL, seq BIGINT NOT NULL, attempt INTEGER NOT NULL,
            routine_id TEXT NOT NULL, outcome TEXT NOT NULL, key TEXT, consumed TEXT NOT NULL,
            committed DOUBLE PRECISION NOT NULL, PRIMARY KEY (job_id, seq, attempt))""",
        """CREATE TABLE {s}.routine_states (
            job_id TEXT NOT NULL, routine_id TEXT NOT NULL, state TEXT NOT NULL,
            PRIMARY KEY (job_id, routine_id))""",
        """CREATE TABLE {s}.policy_states (
            job_id TEXT NOT NULL, routine_id TEXT NOT NULL, state TEXT NOT NULL,
            PRIMARY KEY (job_id, routine_id))""",
        "CREATE INDEX jobs_by_status ON {s}.jobs (status)",
    ),
)
PG_SCHEMA_VERSION = len(_MIGRATIONS)
"""The schema version this Routilux writes (``meta.schema_version``)."""


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise ConfigurationError(
            "the PostgreSQL job store needs psycopg 3: pip install 'routilux[postgres]'"
        ) from None
    return psycopg


class PostgresJobStore(GroupCommitStore):
    """A durable job store in PostgreSQL, shared by every host that can reach the server.

    Args:
        dsn: a libpq connection string or URI (``postgresql://user@host/db``).
        schema: the schema holding the store's tables (created if missing).
        synchronous: ``"FULL"`` (default; ``synchronous_commit=on``): a commit survives a
            crash of the server's host. ``"NORMAL"`` (``synchronous_commit=off``): a crash of
            the *server* may lose the last commits (a crash of this process loses nothing
            committed).
        pipelined: as for :class:`~routilux.store.SqliteJobStore`.
        connect_timeout: seconds to wait for the server.

    Raises:
        StoreError: the server cannot be reached.
        StoreCorruptError: the schema holds tables that are not a Routilux job store.
        StoreVersionError: the schema was written by a newer Routilux.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "routilux",
        synchronous: str = "FULL",
        pipelined: bool = True,
        connect_timeout: float = 10.0,
    ) -> None:
        sync = str(synchronous).upper()
        if sync not in ("FULL", "NORMAL"):
            raise ConfigurationError(
                f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}"
            )
        if not isinstance(schema, str) or not _IDENT.match(schema):
            raise ConfigurationError(
                f"schema must be a lower-case SQL identifier (letters, digits, _), got "
                f"{schema!r}"
            )
        self._psycopg = _psycopg()
        self.dsn = dsn
        self.schema = schema
        self.synchronous = sync
        self._timeout = connect_timeout
        self.location = f"{self._redacted()} (schema {schema})"
        conn = self._connect()
        try:
            self._prepare(conn)
        finally:
            conn.close()
        self._start(schema, pipelined)

    def _redacted(self) -> str:
        return re.sub(r"(password=)\S+|(://[^:/@]+:)[^@]+@", r"\1\2***@", self.dsn)

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = self._psycopg.connect(self.dsn, autocommit=True,
                                         connect_timeout=max(1, int(self._timeout)))
        except self._psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to the PostgreSQL job store {self._redacted()}: {exc}"
                .strip(), path=self.location if hasattr(self, "location") else None,
            ) from None
        conn.execute(
            "SET synchronous_commit = " + ("on" if self.synchronous == "FULL" else "off")
        )
        return conn  # type: ignore[no-any-return]

    def _sql(self, text: str) -> str:
        return text.replace("{s}", self.schema)

    def _prepare(self, conn: Any) -> None:
        s = self.schema
        with conn.transaction():
            # one process at a time creates or migrates a schema
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"routilux:{s}",))
            tables = {r[0] for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (s,))}
            version = 0
            if tables:
                if "meta" not in tables:
                    raise StoreCorruptError(
                        f"schema {s!r} of {self._redacted()} holds tables of another program "
                        f"({', '.join(sorted(tables)[:5])}), not a Routilux job store; choose "
                        "another schema",
                        path=self.location,
                    )
                meta = dict(conn.execute(self._sql("SELECT key, value FROM {s}.meta")))
                if meta.get("application") != _APP:
                    raise StoreCorruptError(
                        f"schema {s!r} of {self._redacted()} is not a Routilux job store; "
                        "choose another schema", path=self.location,
                    )
                version = int(meta.get("schema_version", "0"))
            if version > PG_SCHEMA_VERSION:
                raise StoreVersionError(
                    f"schema {s!r} of {self._redacted()} has job-store schema version "
                    f"{version}, written by a newer Routilux; this one reads versions up to "
                    f"{PG_SCHEMA_VERSION}. Upgrade Routilux, or use another schema",
                    path=self.location, found=version, supported=PG_SCHEMA_VERSION,
                )
            if version < PG_SCHEMA_VERSION:
                conn.execute(self._sql("CREATE SCHEMA IF NOT EXISTS {s}"))
                if version == 0:
                    conn.execute(self._sql(
                        "CREATE TABLE {s}.meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"))
                for v in range(version, PG_SCHEMA_VERSION):
                    for sql in _MIGRATIONS[v]:
                        conn.execute(self._sql(sql))
                conn.execute(self._sql(
                    "INSERT INTO {s}.meta VALUES ('application', %s), ('schema_version', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"),
                    (_APP, str(PG_SCHEMA_VERSION)))
                _log.info("store.migrated", store=self.location, old=version,
                          new=PG_SCHEMA_VERSION)

    # -- the writer's SQL --------------------------------------------------------------------

    def _writer_connect(self) -> Any:
        return self._connect()

    def _begin(self, conn: Any) -> None:
        conn.execute("BEGIN")

    def _commit(self, conn: Any) -> None:
        conn.execute("COMMIT")

    def _rollback(self, conn: Any) -> None:
        with contextlib.suppress(self._psycopg.Error):
            conn.execute("ROLLBACK")

    def _close_writer(self, conn: Any) -> None:
        conn.close()

    def _many(self, conn: Any, sql: str, rows: Any) -> None:
        with conn.cursor() as cur:
            cur.executemany(self._sql(sql), rows)

    def _write_snapshot(self, conn: Any, s: JobSnapshot) -> None:
        now = time.time()
        job = s.job_id
        conn.execute(self._sql(
            "INSERT INTO {s}.jobs (job_id, flow_name, flow_id, flow_doc, status, keep_open, "
            "entry_params, next_pid, seq, created, updated) "
            "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
            "ON CONFLICT (job_id) DO UPDATE SET flow_name = EXCLUDED.flow_name, "
            "flow_id = EXCLUDED.flow_id, flow_doc = EXCLUDED.flow_doc, "
            "status = EXCLUDED.status, keep_open = EXCLUDED.keep_open, "
            "entry_params = EXCLUDED.entry_params, next_pid = EXCLUDED.next_pid, "
            "seq = EXCLUDED.seq, updated = EXCLUDED.updated, error = NULL"),
            (job, s.flow_name, s.flow_id, s.flow_doc, s.status, int(s.keep_open),
             s.entry_params, s.next_pid, s.seq, now, now))
        conn.execute(self._sql("DELETE FROM {s}.payloads WHERE job_id = %s"), (job,))
        conn.execute(self._sql("DELETE FROM {s}.held WHERE job_id = %s"), (job,))
        if s.payloads:
            self._many(conn, "INSERT INTO {s}.payloads VALUES (%s,%s,%s,%s,%s,%s)",
                       [(job, p.pid, p.routine_id, p.slot, p.body, p.held_by)
                        for p in s.payloads])
        if s.held:
            self._many(conn, "INSERT INTO {s}.held VALUES (%s,%s,%s,%s,%s,%s)",
                       [(job, h.seq, h.routine_id, h.attempt, h.message, h.due)
                        for h in s.held])
        self._states(conn, "routine_states", [(job, r, t) for r, t in s.states])
        self._states(conn, "policy_states", [(job, r, t) for r, t in s.policy_states])

    def _states(self, conn: Any, table: str, rows: list[tuple[str, str, str]]) -> None:
        if rows:
            self._many(conn, f"INSERT INTO {{s}}.{table} VALUES (%s,%s,%s) "
                       "ON CONFLICT (job_id, routine_id) DO UPDATE SET state = EXCLUDED.state",
                       rows)

    def _write_rows(self, conn: Any, rows: Rows) -> None:
        m = self._many
        if rows.del_pay:
            m(conn, "DELETE FROM {s}.payloads WHERE job_id = %s AND pid = %s", rows.del_pay)
        if rows.hold:
            m(conn, "UPDATE {s}.payloads SET held_by = %s WHERE job_id = %s AND pid = %s",
              rows.hold)
        if rows.del_held:
            m(conn, "DELETE FROM {s}.held WHERE job_id = %s AND seq = %s", rows.del_held)
        if rows.held:
            m(conn, "INSERT INTO {s}.held VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (job_id, seq) "
              "DO UPDATE SET routine_id = EXCLUDED.routine_id, attempt = EXCLUDED.attempt, "
              "message = EXCLUDED.message, due = EXCLUDED.due", rows.held)
        if rows.act:
            m(conn, "INSERT INTO {s}.activations VALUES (%s,%s,%s,%s,%s,%s,%s,%s) "
              "ON CONFLICT (job_id, seq, attempt) DO UPDATE SET outcome = EXCLUDED.outcome, "
              "key = EXCLUDED.key, consumed = EXCLUDED.consumed, "
              "committed = EXCLUDED.committed", rows.act)
        if rows.pay:
            m(conn, "INSERT INTO {s}.payloads VALUES (%s,%s,%s,%s,%s,%s)", rows.pay)
        self._states(conn, "routine_states", rows.st)
        self._states(conn, "policy_states", rows.pol)
        if rows.jobs:
            m(conn, "UPDATE {s}.jobs SET next_pid = GREATEST(next_pid, %s), "
              "seq = GREATEST(seq, %s) WHERE job_id = %s",
              [(pid, seq, job) for job, (pid, seq) in rows.jobs.items()])

    def _write_status(self, conn: Any, job_id: str, status: str, error: str | None) -> None:
        conn.execute(self._sql(
            "UPDATE {s}.jobs SET status = %s, error = %s, updated = %s WHERE job_id = %s"),
            (status, error, time.time(), job_id))
        if status in TERMINAL:
            conn.execute(self._sql("DELETE FROM {s}.payloads WHERE job_id = %s"), (job_id,))
            conn.execute(self._sql("DELETE FROM {s}.held WHERE job_id = %s"), (job_id,))

    # -- reading -----------------------------------------------------------------------------

    def load_job(self, job_id: str) -> JobSnapshot:
        conn = self._connect()
        try:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                row = conn.execute(self._sql(
                    "SELECT flow_name, flow_id, flow_doc, status, keep_open, entry_params, "
                    "next_pid, seq, error FROM {s}.jobs WHERE job_id = %s"), (job_id,)
                ).fetchone()
                if row is None:
                    raise UnknownJobError(
                        f"job store {self.location} has no job {job_id!r}", job_id=job_id)
                payloads = tuple(
                    PayloadRow(pid=p, routine_id=r, slot=sl, body=b, held_by=h)
                    for p, r, sl, b, h in conn.execute(self._sql(
                        "SELECT pid, routine_id, slot, body, held_by FROM {s}.payloads "
                        "WHERE job_id = %s ORDER BY pid"), (job_id,)))
                held = tuple(
                    HeldRow(seq=sq, routine_id=r, attempt=a, message=m, due=d)
                    for sq, r, a, m, d in conn.execute(self._sql(
                        "SELECT seq, routine_id, attempt, message, due FROM {s}.held "
                        "WHERE job_id = %s ORDER BY seq"), (job_id,)))
                states = tuple(tuple(r) for r in conn.execute(self._sql(
                    "SELECT routine_id, state FROM {s}.routine_states WHERE job_id = %s"),
                    (job_id,)))
                policy = tuple(tuple(r) for r in conn.execute(self._sql(
                    "SELECT routine_id, state FROM {s}.policy_states WHERE job_id = %s"),
                    (job_id,)))
                done = frozenset(r for (r,) in conn.execute(self._sql(
                    "SELECT DISTINCT routine_id FROM {s}.activations WHERE job_id = %s "
                    "AND outcome != 'retry'"), (job_id,)))
        finally:
            conn.close()
        name, flow_id, doc, status, keep_open, entry, next_pid, seq, error = row
        return JobSnapshot(
            job_id=job_id, flow_name=name, flow_id=flow_id, flow_doc=doc, status=status,
            keep_open=bool(keep_open), entry_params=entry, next_pid=next_pid, seq=seq,
            payloads=payloads, held=held, states=states,
            policy_states=policy, done_routines=done, error=error,
        )

    def list_jobs(self, status: str | None = None) -> list[JobSummary]:
        sql = (
            "SELECT j.job_id, j.flow_name, j.flow_id, j.status, j.created, j.updated, "
            "j.error, (SELECT count(*) FROM {s}.activations a WHERE a.job_id = j.job_id "
            "AND a.outcome != 'retry') FROM {s}.jobs j"
        )
        args: tuple[Any, ...] = ()
        if status is not None:
            sql += " WHERE j.status = %s"
            args = (status,)
        conn = self._connect()
        try:
            rows = conn.execute(self._sql(sql + " ORDER BY j.created, j.job_id"),
                                args).fetchall()
        finally:
            conn.close()
        return summaries_from_rows(rows)

    def activations(self, job_id: str) -> list[StoredActivation]:
        conn = self._connect()
        try:
            rows = conn.execute(self._sql(
                "SELECT seq, routine_id, attempt, outcome, key, consumed, committed "
                "FROM {s}.activations WHERE job_id = %s ORDER BY committed, seq, attempt"),
                (job_id,)).fetchall()
        finally:
            conn.close()
        return activations_from_rows(rows)

    def __repr__(self) -> str:
        return f"<PostgresJobStore {self.location} synchronous={self.synchronous}>"
