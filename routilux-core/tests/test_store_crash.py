"""Crash battery of the durable job store (issue 10): real processes killed with SIGKILL.

A child process (``data/store_crash_child.py``, forked from a forkserver that imported
Routilux once) runs a 10-step chain flow or a fan-out/fan-in flow with the SQLite store; every
activation appends ``(job, routine, attempt, key, ident)`` to an fsynced ledger file. The
parent kills the child at random moments, or the child kills itself at a labelled crash point
(``ROUTILUX_CRASH_AT``); the parent checks the database after every crash, resumes the job in
a new process (``runtime.recover()``) until it completes, and checks:

* 0 completed activations lost: the committed activations are exactly those of an
  uninterrupted run (by logical identity), each committed once;
* 0 completed activations re-run: no activation committed before a crash runs again after it;
* each activation that was in flight (ran, not yet durable) re-runs at most once per crash,
  with the same idempotency key;
* ``PRAGMA integrity_check`` is ok after every crash; the final result equals an
  uninterrupted run's.

A child may die at its crash point before it has said which job it started (the job's worker
runs while ``exec`` returns): the parent then finds the job in the store and resumes it.

The figures are printed (``pytest -s``) and recorded in docs/persistence.md. Set
``ROUTILUX_SLOW=1`` for ten times more random kills.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import random
import signal
import sqlite3
import sys
import time
import uuid
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data"
SLOW = os.environ.get("ROUTILUX_SLOW") == "1"

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and forkserver are POSIX only"),
    pytest.mark.timeout(3600 if SLOW else 120),  # the slow battery runs ten times longer
]
RANDOM_KILLS = 500 if SLOW else 50  # per flow: 100 in the normal suite, 1000 when slow
POINTS = ("before_logic", "after_logic", "in_commit", "after_commit")
POINT_HITS = (2, 7, 15) if SLOW else (2, 9)


@pytest.fixture(scope="module")
def forkserver() -> Any:
    """A multiprocessing context whose forkserver imported Routilux and the child module
    once, so each killed child is a fresh process that starts in a fraction of a second."""
    if str(DATA) not in sys.path:
        sys.path.insert(0, str(DATA))
    from multiprocessing import forkserver as fs

    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["store_crash_child"])
    # The forkserver (Python 3.11) does not apply the parent's sys.path before preloading:
    # give it the data directory through its environment.
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(DATA), old) if p)
    try:
        fs.ensure_running()
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old
    return ctx


def _start(proc: Any) -> None:
    """Start ``proc`` without making the child re-run the parent's main script (pytest's):
    the child needs only the preloaded modules."""
    main = sys.modules["__main__"]
    path = getattr(main, "__file__", None)
    if path is not None:
        del main.__file__
    try:
        proc.start()
    finally:
        if path is not None:
            main.__file__ = path


class Crashes:
    """Runs jobs through crashes and checks the store and the ledger after each one."""

    def __init__(
        self, ctx: Any, tmp: Path, kind: str, sync: str = "FULL", pipelined: bool = True,
        pg_dsn: str | None = None,
    ) -> None:
        self.ctx = ctx
        self.pipelined = pipelined
        self.kind = kind
        self.sync = sync
        self.pg: tuple[str, str] | None = None
        if pg_dsn is None:
            self.db = str(tmp / f"{kind}.db")
        else:
            schema = "crash_" + uuid.uuid4().hex[:12]
            self.pg = (schema, pg_dsn)
            self.db = f"pg:{schema}:{pg_dsn}"
        self.ledger = str(tmp / f"{kind}.ledger")
        self.kills = 0
        self.point_crashes = 0
        self.inflight_reruns = 0
        self.max_reruns_per_crash = 0
        self.worst: Any = None
        self.completed_reruns = 0
        self.lost = 0
        self.jobs = 0
        self.ref: tuple[Counter[str], list[int]] | None = None
        self.report_late = False  # the start child says "job" only once the job completed
        self.unreported = 0  # start children that died before saying which job they ran

    # -- processes ---------------------------------------------------------------------------

    def launch(self, mode: str, crash_at: str | None = None) -> tuple[Any, Any]:
        from store_crash_child import child_main

        recv, send = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(
            target=child_main,
            args=(mode, self.db, self.ledger, self.kind, self.sync, crash_at, send,
                  self.pipelined, self.report_late),
        )
        _start(proc)
        send.close()
        return proc, recv

    def first_message(self, recv: Any) -> Any:
        try:
            if recv.poll(60):
                return recv.recv()
        except EOFError:
            return None
        return None

    def finish(self, proc: Any, recv: Any) -> None:
        proc.join(90)
        assert proc.exitcode == 0, f"child ended with {proc.exitcode}"
        recv.close()

    # -- reading ------------------------------------------------------------------------------

    def ledger_lines(self) -> list[dict[str, Any]]:
        if not os.path.exists(self.ledger):
            return []
        with open(self.ledger, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    def _pg_rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        import psycopg

        assert self.pg is not None
        schema, dsn = self.pg
        with psycopg.connect(dsn, autocommit=True) as conn:
            return conn.execute(sql.replace("{s}", schema), args).fetchall()

    def committed(self, job: str) -> list[str]:
        if self.pg is not None:  # (PostgreSQL checks its own pages; no integrity pragma)
            return [k for (k,) in self._pg_rows(
                "SELECT key FROM {s}.activations WHERE job_id = %s AND outcome = 'completed'",
                job)]
        with closing(sqlite3.connect(self.db)) as conn:
            check = [r[0] for r in conn.execute("PRAGMA integrity_check")]
            assert check == ["ok"], check
            return [k for (k,) in conn.execute(
                "SELECT key FROM activations WHERE job_id = ? AND outcome = 'completed'",
                (job,))]

    def stored_jobs(self) -> set[str]:
        if self.pg is not None:
            return {j for (j,) in self._pg_rows("SELECT job_id FROM {s}.jobs")}
        with closing(sqlite3.connect(self.db)) as conn:
            return {j for (j,) in conn.execute("SELECT job_id FROM jobs")}

    def result(self, job: str) -> list[int]:
        if self.pg is not None:
            [(text,)] = self._pg_rows(
                "SELECT state FROM {s}.routine_states WHERE job_id = %s "
                "AND routine_id = 'sink'", job)
            [(status,)] = self._pg_rows("SELECT status FROM {s}.jobs WHERE job_id = %s", job)
            assert status == "completed"
            return sorted(json.loads(text)["got"])
        with closing(sqlite3.connect(self.db)) as conn:
            (text,) = conn.execute(
                "SELECT state FROM routine_states WHERE job_id = ? AND routine_id = 'sink'",
                (job,)).fetchone()
            (status,) = conn.execute(
                "SELECT status FROM jobs WHERE job_id = ?", (job,)).fetchone()
        assert status == "completed"
        return sorted(json.loads(text)["got"])

    # -- one job ------------------------------------------------------------------------------

    def reference(self) -> tuple[Counter[str], list[int]]:
        """An uninterrupted run: the committed identities and the result to compare with."""
        if self.ref is None:
            proc, recv = self.launch("start")
            msg = self.first_message(recv)
            assert msg is not None and msg[0] == "job"
            self.finish(proc, recv)
            job = msg[1]
            lines = [e for e in self.ledger_lines() if e["job"] == job]
            self.ref = (Counter(e["ident"] for e in lines), self.result(job))
            assert len(self.committed(job)) == len(lines)
        return self.ref

    def run_job(self, plan: list[Any]) -> None:
        """Run one job; ``plan`` says, per process, how it dies: ``("kill", delay)``,
        ``("point", "in_commit:2")`` or None (let it finish)."""
        ref_idents, ref_result = self.reference()
        runs: list[list[dict[str, Any]]] = []
        committed_at_crash: list[set[str]] = []
        job: str | None = None
        mode = "start"
        seen = len(self.ledger_lines())
        for step in [*plan, None]:
            crash_at = step[1] if step is not None and step[0] == "point" else None
            known = self.stored_jobs() if mode == "start" else set()
            proc, recv = self.launch(mode, crash_at)
            msg = self.first_message(recv)
            if mode == "start" and msg is None:
                # It died at its crash point before it said which job it started: the job's
                # worker runs the first activations while ``exec`` returns, and a busy machine
                # can hold the main thread back past the crash point. The store knows the job
                # once it is opened (before anything runs); if it is not there, nothing ran.
                proc.join(30)
                assert proc.exitcode == -signal.SIGKILL
                assert step is not None and step[0] == "point", (step, "died unasked")
                self.unreported += 1
                new = self.stored_jobs() - known
                if not new:  # died before the job was opened: nothing to resume
                    assert not self.ledger_lines()[seen:]
                    continue
                [job] = new
            elif mode == "start":
                assert msg[0] == "job", msg
                job = msg[1]
            if step is None:
                self.finish(proc, recv)
            elif step[0] == "kill":
                time.sleep(step[1])
                # (it may exit between the check and the kill: then it finished, see below)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.join(90)
                recv.close()
                if proc.exitcode == 0:
                    step = None  # finished before the kill landed
                else:
                    assert proc.exitcode == -signal.SIGKILL
                    self.kills += 1
            else:
                proc.join(90)
                recv.close()
                assert proc.exitcode == -signal.SIGKILL, (step, proc.exitcode)
                self.point_crashes += 1
            assert job is not None
            lines = [e for e in self.ledger_lines()[seen:] if e["job"] == job]
            seen += len(self.ledger_lines()[seen:])
            runs.append(lines)
            if step is None:
                break
            committed_at_crash.append(set(self.committed(job)))
            mode = "resume"
        assert job is not None
        self.jobs += 1
        self.check(job, runs, committed_at_crash, ref_idents, ref_result)

    def check(
        self, job: str, runs: list[list[dict[str, Any]]], committed_at_crash: list[set[str]],
        ref_idents: Counter[str], ref_result: list[int],
    ) -> None:
        everything = [e for run in runs for e in run]
        # the idempotency key names the same logical activation in every process
        ident_of: dict[str, str] = {}
        for e in everything:
            assert ident_of.setdefault(e["key"], e["ident"]) == e["ident"], e
        assert len(set(ident_of.values())) == len(ident_of)
        final = self.committed(job)
        counts = Counter(final)
        self.completed_reruns += sum(n - 1 for n in counts.values() if n > 1)
        committed_idents = Counter(ident_of[k] for k in final)
        self.lost += sum((ref_idents - committed_idents).values())
        assert committed_idents == ref_idents, "committed activations differ from a clean run"
        for i, done in enumerate(committed_at_crash):
            before = {e["key"] for run in runs[: i + 1] for e in run}
            after = runs[i + 1]
            bad = [e for run in runs[i + 1 :] for e in run if e["key"] in done]
            self.completed_reruns += len(bad)
            reran = Counter(e["key"] for e in after if e["key"] in before)
            assert all(n == 1 for n in reran.values()), reran
            self.inflight_reruns += len(reran)
            # What this crash left to run again: activations of the run that died that had
            # not committed. (Counting the next run's repeats instead would also charge this
            # crash with an activation left over from an earlier crash that the dead run had
            # not reached yet: the fan flow's resumed join can run before a fan worker.)
            inflight = {e["key"] for e in runs[i]} - done
            self.max_reruns_per_crash = max(self.max_reruns_per_crash, len(inflight))
            if len(inflight) > 1:
                self.worst = (i, sorted(inflight), runs[i])
        assert self.result(job) == ref_result
        assert self.completed_reruns == 0
        assert self.lost == 0

    def summary(self, what: str) -> str:
        return (
            f"\n[store crash battery] {what} ({self.kind}, "
            f"{'postgres' if self.pg else 'sqlite'}, synchronous={self.sync}, "
            f"{'pipelined' if self.pipelined else 'waiting'} commits): "
            f"jobs={self.jobs} random_kills={self.kills} crash_point_kills={self.point_crashes} "
            f"(before_the_job_was_reported={self.unreported}) "
            f"completed_lost={self.lost} completed_rerun={self.completed_reruns} "
            f"inflight_reruns={self.inflight_reruns} "
            f"max_inflight_reruns_per_crash={self.max_reruns_per_crash} "
            f"integrity={'n/a' if self.pg else 'ok'} "
            f"result=equal"
        )


# Pipelined commits (the default) let a worker run on while its commit is pending, so one
# crash may re-run a few activations (each at most once); waiting commits (pipelined=False)
# re-run at most one per worker (the children run one worker).
@pytest.mark.parametrize(("kind", "pipelined"), [("chain", True), ("fan", False)])
class TestRandomKills:
    def test_random_sigkills_lose_and_repeat_nothing(
        self, forkserver: Any, tmp_path: Path, kind: str, pipelined: bool
    ) -> None:
        rng = random.Random(f"{kind}-{RANDOM_KILLS}")
        crashes = Crashes(forkserver, tmp_path, kind, pipelined=pipelined)
        while crashes.kills < RANDOM_KILLS:
            per_job = rng.randint(1, 4)
            crashes.run_job([("kill", rng.uniform(0.0, 0.08)) for _ in range(per_job)])
        print(crashes.summary("random SIGKILLs"))
        assert crashes.kills >= RANDOM_KILLS
        if not pipelined:
            assert crashes.max_reruns_per_crash <= 1, crashes.worst


@pytest.mark.parametrize("kind", ["chain", "fan"])
class TestCrashPoints:
    @pytest.mark.parametrize("point", POINTS)
    def test_each_labelled_crash_point(
        self, forkserver: Any, tmp_path: Path, kind: str, point: str
    ) -> None:
        crashes = Crashes(forkserver, tmp_path, kind, pipelined=False)
        for n in POINT_HITS:
            crashes.run_job([("point", f"{point}:{n}")])
        # two crashes in a row, then a clean resume
        crashes.run_job([("point", f"{point}:{POINT_HITS[0]}"), ("point", f"{point}:1")])
        print(crashes.summary(f"crash point {point}"))
        assert crashes.point_crashes == len(POINT_HITS) + 2
        assert crashes.max_reruns_per_crash <= 1
        if point in ("after_logic", "in_commit"):
            assert crashes.inflight_reruns >= 1  # the interrupted activation did run again
        if point == "before_logic":  # its logic never ran: nothing to re-run, nothing lost
            assert crashes.inflight_reruns == 0


@pytest.mark.parametrize("kind", ["chain", "fan"])
def test_crash_points_with_pipelined_commits(forkserver: Any, tmp_path: Path, kind: str) -> None:
    crashes = Crashes(forkserver, tmp_path, kind, pipelined=True)
    for point in POINTS:
        crashes.run_job([("point", f"{point}:{POINT_HITS[-1]}")])
    print(crashes.summary("every crash point"))
    assert crashes.point_crashes == len(POINTS)


@pytest.mark.parametrize("point", POINTS)
def test_crash_before_the_job_is_reported(forkserver: Any, tmp_path: Path, point: str) -> None:
    """The job's worker can run its first activations into a crash point before the child's
    main thread says which job it started (a busy machine holds that thread back after
    ``exec`` returned): the job is in the store and is resumed like any other. The child here
    reports only at the end, so every crash lands before the report."""
    crashes = Crashes(forkserver, tmp_path, "chain", pipelined=False)
    crashes.reference()
    crashes.report_late = True
    crashes.run_job([("point", f"{point}:2")])
    assert crashes.unreported == 1  # the parent learnt of the job from the store
    assert crashes.point_crashes == 1
    assert crashes.max_reruns_per_crash <= 1
    # before_logic: the activation's logic had not run; the others had logged it
    assert crashes.inflight_reruns == (0 if point in ("before_logic", "after_commit") else 1)


PG_KILLS = 200 if SLOW else 12


class TestPostgresStore:
    """The same battery, smaller, against the PostgreSQL store (a private server)."""

    def test_random_sigkills(self, forkserver: Any, tmp_path: Path, postgres_dsn: str) -> None:
        rng = random.Random(f"pg-{PG_KILLS}")
        crashes = Crashes(forkserver, tmp_path, "fan", pg_dsn=postgres_dsn)
        while crashes.kills < PG_KILLS:
            crashes.run_job([("kill", rng.uniform(0.0, 0.08))
                             for _ in range(rng.randint(1, 4))])
        print(crashes.summary("random SIGKILLs"))

    def test_each_labelled_crash_point(
        self, forkserver: Any, tmp_path: Path, postgres_dsn: str
    ) -> None:
        crashes = Crashes(forkserver, tmp_path, "chain", pipelined=False, pg_dsn=postgres_dsn)
        for point in POINTS:
            crashes.run_job([("point", f"{point}:{POINT_HITS[-1]}")])
        print(crashes.summary("every crash point"))
        assert crashes.point_crashes == len(POINTS)
        assert crashes.max_reruns_per_crash <= 1
