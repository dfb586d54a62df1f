"""The durable job store (issue 10): the SQLite file, the store conformance suite, resuming
jobs in a new runtime, idempotency keys, and bad input.

The conformance tests take the ``store_factory`` fixture, parametrised over every store
implementation, so another store (PostgreSQL) runs the same suite by adding one parameter.
In-process "crashes" abandon a runtime whose store was closed (nothing it does later is
recorded) and resume the job from the file with a new store and runtime; the real-process
crash battery is test_store_crash.py.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from routilux import (
    ErrorHandler,
    ErrorStrategy,
    Flow,
    FlowRegistry,
    JobStatus,
    ManualClock,
    Runtime,
)
from routilux.errors import (
    ConfigurationError,
    JobNotAcceptingWorkError,
    SerializationError,
    StoreCorruptError,
    StoreError,
    StoreResumeError,
    StoreVersionError,
    UnknownJobError,
    UnknownTypeError,
)
from routilux.registry import default_types
from routilux.store import (
    SCHEMA_VERSION,
    Commit,
    HeldRow,
    JobSnapshot,
    JobStore,
    PayloadRow,
    SqliteJobStore,
)
from routilux.store._sqlite import APPLICATION_ID

StoreFactory = Callable[[], JobStore]


def _load_routines() -> Any:
    """The routine classes of these tests (tests/store_routines.py; the test directory is not
    on sys.path with --import-mode=importlib)."""
    import importlib.util
    import sys

    name = "store_routines"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


sr = _load_routines()


_ALL_GATES: list[threading.Event] = []


def _gate() -> threading.Event:
    """A gate a Gate routine waits on; every gate is opened when the test ends, so the
    threads of abandoned runtimes finish."""
    event = threading.Event()
    _ALL_GATES.append(event)
    return event


@pytest.fixture(autouse=True)
def _clean_routines() -> Iterator[None]:
    sr.CALLS.clear()
    sr.GATES.clear()
    sr.FAIL_FIRST.clear()
    sr.STARTED.clear()
    sr.FAILED.clear()
    yield
    for gate in _ALL_GATES:
        gate.set()
    _ALL_GATES.clear()


@pytest.fixture(params=["sqlite", "postgres"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens a store on one database (each call: a new store object on the same data)."""
    made: list[JobStore] = []
    if request.param == "sqlite":

        def make() -> JobStore:
            store = SqliteJobStore(tmp_path / "jobs.db", synchronous="NORMAL")
            made.append(store)
            return store

    else:
        from routilux.store import PostgresJobStore

        dsn = request.getfixturevalue("postgres_dsn")
        schema = "t_" + uuid.uuid4().hex[:16]

        def make() -> JobStore:
            store = PostgresJobStore(dsn, schema=schema, synchronous="NORMAL")
            made.append(store)
            return store

    yield make
    for store in made:
        store.close()


def chain(flow_id: str = "stored", gate: bool = False) -> Flow:
    """emit -> g1 -> g2 -> sink."""
    flow = Flow(flow_id=flow_id)
    flow.add_routine(sr.Emit(), "emit")
    flow.add_routine(sr.Gate(), "g1")
    flow.add_routine(sr.Gate(), "g2")
    flow.add_routine(sr.Collect(), "sink")
    flow.connect("emit", "out", "g1", "in")
    flow.connect("g1", "out", "g2", "in")
    flow.connect("g2", "out", "sink", "in")
    return flow


def ran(routine_id: str) -> list[tuple[Any, int]]:
    return [(v, a) for rid, v, a in sr.CALLS if rid == routine_id]


def abandon(rt: Runtime, store: JobStore) -> None:
    """Simulate the process dying: close the store (nothing the runtime does later is
    recorded) and leave the runtime's work where it is."""
    store.close()


# -- the SQLite file ---------------------------------------------------------------------------


class TestSqliteFile:
    def test_a_new_file_gets_the_schema_in_wal_mode(self, tmp_path: Path) -> None:
        with SqliteJobStore(tmp_path / "new" / "jobs.db") as store:
            assert store.synchronous == "FULL"
        with closing(sqlite3.connect(tmp_path / "new" / "jobs.db")) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    def test_reopening_keeps_the_data(self, tmp_path: Path) -> None:
        with Runtime(thread_pool_size=2, store=SqliteJobStore(tmp_path / "j.db")) as rt:
            js = rt.exec(chain(), entry_params={"n": 2})
            assert rt.wait_job(js.job_id, 10)
        assert rt.store is not None
        rt.store.close()
        with SqliteJobStore(tmp_path / "j.db") as again:
            assert [j.job_id for j in again.list_jobs()] == [js.job_id]

    def test_synchronous_normal_is_accepted_and_a_bad_value_is_refused(
        self, tmp_path: Path
    ) -> None:
        with SqliteJobStore(tmp_path / "a.db", synchronous="normal") as store:
            assert store.synchronous == "NORMAL"
        with pytest.raises(ConfigurationError, match="synchronous"):
            SqliteJobStore(tmp_path / "b.db", synchronous="OFF")

    def test_a_file_that_is_not_a_database_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "junk.db"
        path.write_bytes(b"this is not an sqlite database at all" * 200)
        with pytest.raises(StoreCorruptError) as info:
            SqliteJobStore(path)
        assert info.value.path == str(path)
        assert "another file" in str(info.value)

    def test_another_programs_database_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "foreign.db"
        with closing(sqlite3.connect(path)) as conn:
            conn.execute("CREATE TABLE customers (id INTEGER)")
            conn.commit()
        with pytest.raises(StoreCorruptError, match="another program"):
            SqliteJobStore(path)
        with closing(sqlite3.connect(path)) as conn:  # left untouched
            assert conn.execute("PRAGMA user_version").fetchone()[0] == 0

    def test_a_store_from_a_newer_version_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "new.db"
        SqliteJobStore(path).close()
        with closing(sqlite3.connect(path)) as conn:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        with pytest.raises(StoreVersionError, match="newer Routilux") as info:
            SqliteJobStore(path)
        assert (info.value.found, info.value.supported) == (SCHEMA_VERSION + 1, SCHEMA_VERSION)

    def test_damaged_pages_are_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "damaged.db"
        with Runtime(thread_pool_size=2, store=("sqlite", {"path": path})) as rt:
            js = rt.exec(chain(), entry_params={"n": 300})
            assert rt.wait_job(js.job_id, 30)
        with closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        data = bytearray(path.read_bytes())
        assert len(data) > 5 * 4096
        data[2 * 4096 : 4 * 4096] = b"\xa5" * (2 * 4096)
        path.write_bytes(bytes(data))
        with pytest.raises(StoreCorruptError):
            SqliteJobStore(path)

    def test_registered_as_sqlite_and_closed_with_the_runtime_that_built_it(
        self, tmp_path: Path
    ) -> None:
        assert "sqlite" in default_types().stores
        rt = Runtime(thread_pool_size=1, store=("sqlite", {"path": tmp_path / "r.db"}))
        store = rt.store
        assert isinstance(store, SqliteJobStore)
        rt.shutdown()
        with pytest.raises(StoreError, match="closed"):
            store.set_status("x", "running")

    def test_a_store_object_passed_in_stays_open(self, tmp_path: Path) -> None:
        with SqliteJobStore(tmp_path / "o.db") as store:
            Runtime(thread_pool_size=1, store=store).shutdown()
            store.flush()  # still usable

    def test_bad_store_arguments_are_typed_errors(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigurationError, match="store must be"):
            Runtime(store=42)
        with pytest.raises(UnknownTypeError):
            Runtime(store=("nosuch", {}))
        with pytest.raises(ConfigurationError, match="bad options"):
            Runtime(store=("sqlite", {"path": tmp_path / "x.db", "colour": "red"}))


# -- conformance: every store ------------------------------------------------------------------


def _snapshot(job: str, **kw: Any) -> JobSnapshot:
    base: dict[str, Any] = dict(
        job_id=job, flow_name="f", flow_id="f", flow_doc=None, status="running",
        keep_open=False, entry_params=None, next_pid=2, seq=0,
        payloads=(PayloadRow(pid=1, routine_id="a", slot="in", body='{"v":1}'),
                  PayloadRow(pid=2, routine_id="a", slot="in", body='{"v":2}')),
    )
    base.update(kw)
    return JobSnapshot(**base)


class TestConformance:
    def test_an_activation_commit_consumes_input_and_queues_its_emits(
        self, store_factory: StoreFactory
    ) -> None:
        store = store_factory()
        store.open_job(_snapshot("j1"))
        store.submit(Commit(
            job_id="j1", outcome="completed", seq=1, routine_id="a", key="k1", consumed=(1,),
            emitted=(PayloadRow(pid=3, routine_id="b", slot="in", body='{"v":10}'),),
            states=(("a", '{"n":1}'),), next_pid=3, job_seq=1,
        )).wait()
        snap = store.load_job("j1")
        assert [(p.pid, p.routine_id) for p in snap.payloads] == [(2, "a"), (3, "b")]
        assert dict(snap.states) == {"a": '{"n":1}'}
        assert (snap.next_pid, snap.seq) == (3, 1)
        assert snap.done_routines == {"a"}
        [act] = store.activations("j1")
        assert (act.seq, act.routine_id, act.outcome, act.key, act.consumed) == (
            1, "a", "completed", "k1", (1,))

    def test_a_retry_holds_its_input_until_the_retry_commits(
        self, store_factory: StoreFactory
    ) -> None:
        store = store_factory()
        store.open_job(_snapshot("j2"))
        held = HeldRow(seq=1, routine_id="a", attempt=1, message=None, due=123.0)
        store.submit(Commit(job_id="j2", outcome="retry", seq=1, routine_id="a",
                            consumed=(1,), held=held, next_pid=2, job_seq=1)).wait()
        snap = store.load_job("j2")
        assert [(p.pid, p.held_by) for p in snap.payloads] == [(1, 1), (2, None)]
        assert snap.held == (held,)
        assert snap.done_routines == frozenset()  # a retry is not a finished activation
        store.submit(Commit(job_id="j2", outcome="completed", seq=1, routine_id="a",
                            attempt=1, consumed=(1,), next_pid=2, job_seq=1)).wait()
        snap = store.load_job("j2")
        assert [p.pid for p in snap.payloads] == [2]
        assert snap.held == ()

    def test_opening_a_job_again_replaces_its_queued_rows(
        self, store_factory: StoreFactory
    ) -> None:
        store = store_factory()
        store.open_job(_snapshot("j3"))
        store.open_job(_snapshot("j3", payloads=(
            PayloadRow(pid=7, routine_id="a", slot="in", body="{}"),), next_pid=7))
        assert [p.pid for p in store.load_job("j3").payloads] == [7]

    def test_a_terminal_status_drops_queued_rows(self, store_factory: StoreFactory) -> None:
        store = store_factory()
        store.open_job(_snapshot("j4"))
        store.set_status("j4", "failed", "Boom: no").wait()
        snap = store.load_job("j4")
        assert (snap.status, snap.error, snap.payloads) == ("failed", "Boom: no", ())
        assert [j.status for j in store.list_jobs(status="failed")] == ["failed"]
        assert store.list_jobs(status="running") == []

    def test_commits_from_many_threads_all_land_in_order(
        self, store_factory: StoreFactory
    ) -> None:
        store = store_factory()
        store.open_job(_snapshot("j5", payloads=()))
        per_thread = 150

        def work(t: int) -> None:
            handles = [
                store.submit(Commit(job_id="j5", outcome="completed", seq=t * 1000 + i,
                                    routine_id=f"r{t}", next_pid=t * 1000 + i,
                                    job_seq=t * 1000 + i))
                for i in range(per_thread)
            ]
            for h in handles:
                h.wait()

        threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert len(store.activations("j5")) == 6 * per_thread
        snap = store.load_job("j5")
        assert snap.next_pid == 5000 + per_thread - 1  # the highest, whatever the order
        assert store.list_jobs()[0].activations == 6 * per_thread

    def test_a_new_store_object_sees_everything_committed(
        self, store_factory: StoreFactory
    ) -> None:
        first = store_factory()
        first.open_job(_snapshot("j6"))
        first.submit(Commit(job_id="j6", outcome="completed", seq=1, routine_id="a",
                            consumed=(1,), next_pid=2, job_seq=1)).wait()
        first.close()
        assert [p.pid for p in store_factory().load_job("j6").payloads] == [2]

    def test_an_unknown_job_is_a_typed_error(self, store_factory: StoreFactory) -> None:
        with pytest.raises(UnknownJobError, match="no job 'nope'"):
            store_factory().load_job("nope")

    def test_a_runtime_records_the_job_its_activations_and_states(
        self, store_factory: StoreFactory
    ) -> None:
        store = store_factory()
        with Runtime(thread_pool_size=3, store=store) as rt:
            js = rt.exec(chain(), entry_params={"n": 5})
            assert rt.wait_job(js.job_id, 10)
            metrics = rt.get_job_metrics(js.job_id)["routines"]
        assert js.status is JobStatus.COMPLETED
        assert sorted(js.get_routine_state("sink")["got"]) == [2, 3, 4, 5, 6]
        [summary] = store.list_jobs()
        assert (summary.job_id, summary.status, summary.flow_id) == (
            js.job_id, "completed", "stored")
        acts = store.activations(js.job_id)
        assert len(acts) == sum(m["activations"] for m in metrics.values()) == 16
        snap = store.load_job(js.job_id)
        assert snap.flow_doc is not None and json.loads(snap.flow_doc)["flow_id"] == "stored"
        assert snap.payloads == ()
        assert sorted(json.loads(dict(snap.states)["sink"])["got"]) == [2, 3, 4, 5, 6]

    def test_emits_are_routed_only_after_their_activation_is_committed(
        self, store_factory: StoreFactory
    ) -> None:
        store = store_factory()
        seen: list[bool] = []
        original = sr.Collect.run

        def check(self: Any, slot_data: Any, msg: Any, js: Any) -> None:
            acts = store.activations(js.job_id)
            seen.append(any(a.routine_id == "g2" and a.outcome == "completed" for a in acts))
            original(self, slot_data, msg, js)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(sr.Collect, "run", check)
            with Runtime(thread_pool_size=3, store=store) as rt:
                js = rt.exec(chain(), entry_params={"n": 3})
                assert rt.wait_job(js.job_id, 10)
        assert seen == [True, True, True]


    def test_async_routines_commit_their_activations_before_routing(
        self, store_factory: StoreFactory
    ) -> None:
        """An ``async def`` routine's emits are buffered, committed and routed like a sync
        routine's; a failed first attempt holds its input for the retry."""
        sr.FAIL_FIRST.add("a1")
        flow = Flow(flow_id="stored_async")
        flow.add_routine(sr.Emit(), "emit")
        flow.add_routine(sr.AsyncGate(), "a1")
        flow.add_routine(sr.Collect(), "sink")
        flow.connect("emit", "out", "a1", "in")
        flow.connect("a1", "out", "sink", "in")
        flow.get_routine("a1").set_error_handler(
            ErrorHandler(strategy=ErrorStrategy.RETRY, max_retries=2, retry_delay=0.0)
        )
        store = store_factory()
        with Runtime(thread_pool_size=2, store=store) as rt:
            js = rt.exec(flow, entry_params={"n": 3})
            assert rt.wait_job(js.job_id, 10)
        assert js.status is JobStatus.COMPLETED
        assert sorted(js.get_routine_state("sink")["got"]) == [1, 2, 3]
        acts = store.activations(js.job_id)
        outcomes = sorted((a.routine_id, a.outcome) for a in acts if a.routine_id == "a1")
        assert ("a1", "retry") in outcomes
        assert outcomes.count(("a1", "completed")) == 3
        assert store.load_job(js.job_id).payloads == ()


# -- resuming ----------------------------------------------------------------------------------


class TestResume:
    def test_an_interrupted_job_resumes_without_rerunning_completed_work(
        self, store_factory: StoreFactory
    ) -> None:
        sr.GATES["g2"] = _gate()
        store1 = store_factory()
        rt1 = Runtime(thread_pool_size=2, store=store1)
        js = rt1.exec(chain(), entry_params={"n": 1})
        assert sr.STARTED.wait(10)  # g2 is running (in flight): the process "dies" now
        store1.flush()
        abandon(rt1, store1)
        del sr.GATES["g2"]
        before = list(sr.CALLS)
        store2 = store_factory()
        with Runtime(thread_pool_size=2, store=store2) as rt2:
            resumed = rt2.resume(js.job_id)
            assert rt2.wait_job(js.job_id, 10)
        after = sr.CALLS[len(before):]
        assert resumed.status is JobStatus.COMPLETED
        assert resumed.get_routine_state("sink")["got"] == [2]
        assert [rid for rid, _, _ in after] == ["g2", "sink"]  # emit and g1 did not re-run
        assert store2.load_job(js.job_id).status == "completed"
        sr.GATES.clear()
        rt1.shutdown(wait=False)

    def test_queued_payloads_keep_their_values_and_order(
        self, store_factory: StoreFactory
    ) -> None:
        sr.GATES["g1"] = _gate()
        store1 = store_factory()
        rt1 = Runtime(thread_pool_size=2, store=store1)
        js = rt1.exec(chain(), entry_params={"n": 6})
        assert sr.STARTED.wait(10)
        store1.flush()
        snap = store1.load_job(js.job_id)
        queued = [json.loads(p.body)["v"] for p in snap.payloads if p.routine_id == "g1"]
        assert queued == [0, 1, 2, 3, 4, 5]  # v=0 is in flight: its input is still stored
        assert json.loads(snap.payloads[0].body)["at"]["__routilux_type__"] == "datetime"
        abandon(rt1, store1)
        del sr.GATES["g1"]
        with Runtime(thread_pool_size=1, store=store_factory()) as rt2:
            resumed = rt2.resume(js.job_id)
            assert rt2.wait_job(js.job_id, 10)
        assert resumed.get_routine_state("sink")["got"] == [2, 3, 4, 5, 6, 7]
        assert [v for v, _ in ran("emit")] == [6]  # once, in the first runtime
        sr.GATES.clear()
        rt1.shutdown(wait=False)

    def test_a_pending_retry_survives_with_its_attempt_count(
        self, store_factory: StoreFactory
    ) -> None:
        sr.FAIL_FIRST.add("g1")
        flow = chain()
        flow.set_error_handler(
            ErrorHandler(strategy=ErrorStrategy.RETRY, max_retries=3, retry_delay=0.05)
        )
        store1 = store_factory()
        rt1 = Runtime(thread_pool_size=2, store=store1, clock=ManualClock())  # never fires
        js = rt1.exec(flow, entry_params={"n": 1})
        assert sr.FAILED.wait(10)
        store1.flush()
        deadline = threading.Event()
        for _ in range(200):  # the retry's commit follows the failure closely
            if store1.load_job(js.job_id).held:
                break
            deadline.wait(0.01)
        [held] = store1.load_job(js.job_id).held
        assert (held.routine_id, held.attempt) == ("g1", 1)
        abandon(rt1, store1)
        with Runtime(thread_pool_size=2, store=store_factory()) as rt2:
            resumed = rt2.resume(js.job_id)
            assert rt2.wait_job(js.job_id, 10)
        assert resumed.status is JobStatus.COMPLETED
        assert ran("g1") == [([0], 0), ([0], 1)]
        assert resumed.get_routine_state("sink")["got"] == [2]
        rt1.shutdown(wait=False)

    def test_a_kept_open_job_resumes_and_takes_posts(
        self, store_factory: StoreFactory
    ) -> None:
        store1 = store_factory()
        with Runtime(thread_pool_size=2, store=store1) as rt1:
            js = rt1.post(chain(), "g1", "in", {"v": 10})
            assert rt1.wait_job(js.job_id, 10)  # IDLE: left as it is by shutdown
        store2 = store_factory()
        with Runtime(thread_pool_size=2, store=store2) as rt2:
            rt2.resume(js.job_id)
            rt2.post(chain(), "g1", "in", {"v": 20}, job_id=js.job_id)
            assert rt2.wait_job(js.job_id, 10)
            assert rt2.complete_job(js.job_id)
            assert rt2.wait_job(js.job_id, 10)
            state = rt2.get_job(js.job_id)
        assert state is not None and state.status is JobStatus.COMPLETED
        assert state.get_routine_state("sink")["got"] == [12, 22]

    def test_recover_resumes_only_unfinished_jobs(self, store_factory: StoreFactory) -> None:
        store1 = store_factory()
        sr.GATES["g2"] = _gate()
        rt1 = Runtime(thread_pool_size=2, store=store1)
        done = rt1.exec(chain("other"), entry_params={"n": 0})
        assert rt1.wait_job(done.job_id, 10)
        js = rt1.exec(chain(), entry_params={"n": 1})
        assert sr.STARTED.wait(10)
        store1.flush()
        abandon(rt1, store1)
        del sr.GATES["g2"]
        with Runtime(thread_pool_size=2, store=store_factory()) as rt2:
            recovered = rt2.recover()
            assert [s.job_id for s in recovered] == [js.job_id]
            assert rt2.wait_job(js.job_id, 10)
            assert rt2.recover() == []  # nothing left
        sr.GATES.clear()
        rt1.shutdown(wait=False)

    def test_a_finished_job_cannot_be_resumed(self, store_factory: StoreFactory) -> None:
        store = store_factory()
        with Runtime(thread_pool_size=1, store=store) as rt:
            js = rt.exec(chain(), entry_params={"n": 1})
            assert rt.wait_job(js.job_id, 10)
            with pytest.raises(JobNotAcceptingWorkError, match="completed"):
                rt.resume(js.job_id)

    def test_resume_needs_a_store(self) -> None:
        with Runtime(thread_pool_size=1) as rt, pytest.raises(ConfigurationError,
                                                              match="job store"):
            rt.resume("x")


class TestBadStoredJobs:
    def _interrupted(self, store_factory: StoreFactory) -> tuple[str, Runtime, JobStore]:
        sr.GATES["g2"] = _gate()
        store1 = store_factory()
        rt1 = Runtime(thread_pool_size=2, store=store1)
        js = rt1.exec(chain(), entry_params={"n": 2})
        assert sr.STARTED.wait(10)
        store1.flush()
        abandon(rt1, store1)
        return js.job_id, rt1, store1

    def _edit(self, store: JobStore, sql: str, *args: Any) -> None:
        """Change the stored data behind the store's back (``{t}`` = table prefix)."""
        if isinstance(store, SqliteJobStore):
            with closing(sqlite3.connect(store.path)) as conn:
                conn.execute(sql.replace("{t}", ""), args)
                conn.commit()
            return
        import psycopg

        with psycopg.connect(store.dsn, autocommit=True) as pconn:  # type: ignore[attr-defined]
            pconn.execute(sql.replace("{t}", store.schema + ".")  # type: ignore[attr-defined]
                          .replace("?", "%s"), args)

    def test_a_flow_type_no_longer_registered_refuses_the_whole_job(
        self, store_factory: StoreFactory
    ) -> None:
        job, rt1, store1 = self._interrupted(store_factory)
        doc = json.loads(store1.load_job(job).flow_doc or "{}")
        for r in doc["routines"].values():
            if r["type"] == "storetest.Collect":
                r["type"] = "gone.Collect"
        self._edit(store1, "UPDATE {t}jobs SET flow_doc = ? WHERE job_id = ?", json.dumps(doc),
                   job)
        store2 = store_factory()
        before = store2.load_job(job)
        with Runtime(thread_pool_size=1, store=store2) as rt2:
            with pytest.raises(StoreResumeError, match=r"gone\.Collect") as info:
                rt2.resume(job)
            assert info.value.job_id == job
            assert "Nothing was started" in str(info.value)
            assert rt2.list_jobs() == []
            assert rt2.recover() == []  # logged and skipped, still stored
        assert store2.load_job(job) == before
        sr.GATES.clear()
        rt1.shutdown(wait=False)

    def test_a_payload_with_an_unknown_codec_refuses_the_job(
        self, store_factory: StoreFactory
    ) -> None:
        job, rt1, store1 = self._interrupted(store_factory)
        self._edit(store1, "UPDATE {t}payloads SET body = ? WHERE job_id = ?",
                   '{"v": {"__routilux_type__": "martian", "value": 1}}', job)
        with Runtime(thread_pool_size=1, store=store_factory()) as rt2, pytest.raises(
            StoreResumeError, match="martian"
        ):
            rt2.resume(job)
        sr.GATES.clear()
        rt1.shutdown(wait=False)

    def test_a_flow_that_cannot_be_stored_resumes_from_the_registry(
        self, store_factory: StoreFactory, make_routine: Any
    ) -> None:
        flow = Flow(flow_id="plain")
        gate = threading.Event()
        started = threading.Event()

        def slow(routine: Any, slot_data: Any, msg: Any, js: Any) -> None:
            started.set()
            gate.wait(30)
            js.update_routine_state("only", {"done": True})

        flow.add_routine(make_routine(slow, events=()), "only")
        store1 = store_factory()
        rt1 = Runtime(thread_pool_size=1, store=store1)
        js = rt1.exec(flow, entry_params={"x": 1})
        assert started.wait(10)
        store1.flush()
        assert store1.load_job(js.job_id).flow_doc is None
        abandon(rt1, store1)
        registry = FlowRegistry()
        with Runtime(thread_pool_size=1, store=store_factory(),
                     flow_registry=registry) as rt2, pytest.raises(
            StoreResumeError, match="register the same flow"
        ):
            rt2.resume(js.job_id)
        gate.set()
        registry.register_by_name("plain", flow)
        with Runtime(thread_pool_size=1, store=store_factory(),
                     flow_registry=registry) as rt3:
            resumed = rt3.resume(js.job_id)
            assert rt3.wait_job(js.job_id, 10)
        assert resumed.get_routine_state("only") == {"done": True}
        rt1.shutdown(wait=False)

    def test_an_emit_the_store_cannot_write_fails_in_the_logic(
        self, store_factory: StoreFactory, make_routine: Any
    ) -> None:
        def bad(routine: Any, slot_data: Any, msg: Any, js: Any) -> None:
            routine.emit("output", thing=object())

        flow = Flow(flow_id="bad")
        flow.add_routine(make_routine(bad), "a")
        flow.add_routine(make_routine(), "b")
        flow.connect("a", "output", "b", "input")
        with Runtime(thread_pool_size=1, store=store_factory()) as rt:
            js = rt.exec(flow, entry_params={})
            assert rt.wait_job(js.job_id, 10)
        assert js.status is JobStatus.FAILED
        assert js.error_type == SerializationError.__name__
        assert "job store cannot write" in (js.error or "")


class TestIdempotencyKeys:
    def test_keys_name_the_input_and_stay_the_same_across_retries(
        self, store_factory: StoreFactory
    ) -> None:
        sr.FAIL_FIRST.add("g1")
        flow = chain()
        flow.set_error_handler(
            ErrorHandler(strategy=ErrorStrategy.RETRY, max_retries=2, retry_delay=0.0)
        )
        store = store_factory()
        with Runtime(thread_pool_size=2, store=store) as rt:
            js = rt.exec(flow, entry_params={"n": 2})
            assert rt.wait_job(js.job_id, 10)
        g1 = [a for a in store.activations(js.job_id) if a.routine_id == "g1"]
        by_attempt = {(a.consumed, a.attempt): a.key for a in g1}
        for (consumed, attempt), key in by_attempt.items():
            assert key == f"{js.job_id}:g1:in-{'.'.join(map(str, consumed))}"
            if attempt:
                assert by_attempt[(consumed, 0)] == key
        keys = js.get_routine_state("sink")["keys"]
        assert len(set(keys)) == 2 and all(":sink:in-" in k for k in keys)

    def test_without_a_store_the_key_names_the_activation(self, make_routine: Any) -> None:
        from routilux import current_activation

        infos: list[Any] = []
        flow = Flow(flow_id="nostore")
        flow.add_routine(
            make_routine(lambda r, sd, pm, js: infos.append(current_activation()), events=()),
            "a",
        )
        with Runtime(thread_pool_size=1) as rt:
            js = rt.exec(flow, entry_params={})
            assert rt.wait_job(js.job_id, 10)
        [info] = infos
        assert info.input_seqs == ()
        assert info.idempotency_key == f"{js.job_id}:a:{info.activation_seq}"
        assert info.attempt_key == f"{info.idempotency_key}:0"


class TestJobsCommand:
    def _interrupted(self, store_factory: StoreFactory) -> tuple[str, list[str], Runtime]:
        sr.GATES["g2"] = _gate()
        store1 = store_factory()
        rt1 = Runtime(thread_pool_size=2, store=store1)
        js = rt1.exec(chain(), entry_params={"n": 2})
        assert sr.STARTED.wait(10)
        store1.flush()  # type: ignore[attr-defined]
        abandon(rt1, store1)
        del sr.GATES["g2"]
        if isinstance(store1, SqliteJobStore):
            where = ["--store", str(store1.path)]
        else:
            where = ["--store", store1.dsn, "--schema", store1.schema]  # type: ignore[attr-defined]
        return js.job_id, where, rt1

    def test_list_show_and_resume(self, store_factory: StoreFactory) -> None:
        from click.testing import CliRunner
        from routilux.cli._app import cli

        job, where, rt1 = self._interrupted(store_factory)
        runner = CliRunner()
        listed = runner.invoke(cli, ["jobs", "list", *where, "--json"])
        assert listed.exit_code == 0, listed.output
        assert [(j["job_id"], j["status"]) for j in json.loads(listed.output)] == [
            (job, "running")]
        shown = runner.invoke(cli, ["jobs", "show", job, *where, "--json"])
        assert shown.exit_code == 0, shown.output
        data = json.loads(shown.output)
        assert data["queued"] == {"g2.in": 2}  # one in flight, one waiting
        resumed = runner.invoke(
            cli, ["jobs", "resume", job, *where, "--import", "store_routines",
                  "--timeout", "30"])
        assert resumed.exit_code == 0, resumed.output
        assert f"job {job}: completed" in resumed.output
        assert [rid for rid, _, _ in sr.CALLS].count("emit") == 1
        store = store_factory()
        snap = store.load_job(job)
        assert snap.status == "completed"
        assert sorted(json.loads(dict(snap.states)["sink"])["got"]) == [2, 3]
        rt1.shutdown(wait=False)

    def test_resume_that_times_out_leaves_the_job_resumable(
        self, store_factory: StoreFactory
    ) -> None:
        """``jobs resume --store --timeout`` gives up waiting; the job must stay resumable
        (as its help says), not be recorded as cancelled by the runtime's shutdown."""
        from click.testing import CliRunner
        from routilux.cli._app import cli

        job, where, rt1 = self._interrupted(store_factory)
        sr.GATES["g2"] = gate = _gate()  # the resumed activation blocks again
        runner = CliRunner()
        slow = runner.invoke(
            cli, ["jobs", "resume", job, *where, "--import", "store_routines",
                  "--timeout", "0.5"])
        assert slow.exit_code == 1, slow.output
        assert "did not finish" in slow.output
        store = store_factory()
        try:
            assert store.load_job(job).status == "running"
        finally:
            store.close()
        gate.set()
        del sr.GATES["g2"]
        again = runner.invoke(
            cli, ["jobs", "resume", job, *where, "--import", "store_routines",
                  "--timeout", "30"])
        assert again.exit_code == 0, again.output
        assert f"job {job}: completed" in again.output
        rt1.shutdown(wait=False)

    def test_errors_are_one_line_with_exit_2(self, tmp_path: Path) -> None:
        from click.testing import CliRunner
        from routilux.cli._app import cli

        runner = CliRunner()
        missing = runner.invoke(cli, ["jobs", "list", "--store", str(tmp_path / "no.db")])
        assert missing.exit_code == 2
        assert "no job store" in missing.output
        SqliteJobStore(tmp_path / "empty.db").close()
        unknown = runner.invoke(
            cli, ["jobs", "resume", "nope", "--store", str(tmp_path / "empty.db")])
        assert unknown.exit_code == 2
        assert "no job 'nope'" in unknown.output


class TestPayloadBookkeeping:
    """Every payload row is consumed exactly once, whatever path it takes."""

    def _no_rows_left_and_each_pid_consumed_once(self, store: JobStore, job: str) -> None:
        snap = store.load_job(job)
        assert snap.status == "completed" and snap.payloads == ()
        consumed = [pid for a in store.activations(job) for pid in a.consumed]
        assert len(consumed) == len(set(consumed))
        assert set(consumed) <= set(range(1, snap.next_pid + 1))

    def test_batches_consume_several_payloads_and_name_them_in_the_key(
        self, store_factory: StoreFactory, make_routine: Any
    ) -> None:
        from routilux import batch_size_policy

        flow = Flow(flow_id="batches")
        flow.add_routine(sr.Emit(), "emit")
        sink = sr.Collect()
        sink.set_activation_policy(batch_size_policy(3))
        flow.add_routine(sink, "sink")
        flow.connect("emit", "out", "sink", "in")
        store = store_factory()
        with Runtime(thread_pool_size=1, store=store) as rt:
            js = rt.exec(flow, entry_params={"n": 7})
            assert rt.wait_job(js.job_id, 10)
        assert sorted(js.get_routine_state("sink")["got"]) == list(range(7))
        sink_acts = [a for a in store.activations(js.job_id) if a.routine_id == "sink"]
        assert sorted(len(a.consumed) for a in sink_acts) == [1, 3, 3]
        for a in sink_acts:
            assert a.key == f"{js.job_id}:sink:in-{'.'.join(map(str, a.consumed))}"
        self._no_rows_left_and_each_pid_consumed_once(store, js.job_id)

    def test_fan_out_gives_each_target_its_own_row(self, store_factory: StoreFactory) -> None:
        flow = Flow(flow_id="fan")
        flow.add_routine(sr.Emit(), "emit")
        for rid in ("x", "y"):
            flow.add_routine(sr.Collect(), rid)
            flow.connect("emit", "out", rid, "in")
        store = store_factory()
        with Runtime(thread_pool_size=2, store=store) as rt:
            js = rt.exec(flow, entry_params={"n": 3})
            assert rt.wait_job(js.job_id, 10)
        consumed = {a.routine_id: a.consumed for a in store.activations(js.job_id)
                    if a.routine_id in ("x", "y")}
        assert len(consumed) == 2
        self._no_rows_left_and_each_pid_consumed_once(store, js.job_id)
        assert js.get_routine_state("x")["got"] == js.get_routine_state("y")["got"]

    def test_dropped_payloads_leave_the_store(
        self, store_factory: StoreFactory, make_routine: Any
    ) -> None:
        gate = _gate()
        started = threading.Event()

        def slow(routine: Any, slot_data: Any, msg: Any, js: Any) -> None:
            started.set()
            gate.wait(30)

        flow = Flow(flow_id="drops")
        flow.add_routine(sr.Emit(), "emit")
        sink = make_routine(slow, slots=(), events=())
        sink.add_slot("in", max_queue_length=2, overflow="drop_oldest")
        flow.add_routine(sink, "sink")
        flow.connect("emit", "out", "sink", "in")
        store = store_factory()
        with Runtime(thread_pool_size=2, store=store) as rt:
            js = rt.exec(flow, entry_params={"n": 6})
            assert started.wait(10)
            store.flush()  # type: ignore[attr-defined]
            gate.set()
            assert rt.wait_job(js.job_id, 10)
        assert sum(js.dropped.values()) == 3  # 1 running, 2 kept, 3 dropped
        self._no_rows_left_and_each_pid_consumed_once(store, js.job_id)
        sink_acts = [a for a in store.activations(js.job_id) if a.routine_id == "sink"]
        assert len(sink_acts) == 3

    def test_input_given_back_by_a_pause_keeps_its_numbers(
        self, store_factory: StoreFactory
    ) -> None:
        """A task claimed before a pause and started after it gives its input back; after
        resume_job the same payload rows are consumed, under the same key."""
        flow = Flow(flow_id="two_roots")
        flow.add_routine(sr.Gate(), "g1")
        flow.add_routine(sr.Collect(), "sink")
        sr.GATES["g1"] = gate = _gate()
        store = store_factory()
        with Runtime(thread_pool_size=1, store=store) as rt:
            js = rt.exec(flow, entry_params={"v": 5})
            assert sr.STARTED.wait(10)  # g1 holds the only worker; sink's task is queued
            pauser = threading.Thread(target=rt.pause_job, args=(js.job_id, 10))
            pauser.start()
            waited = threading.Event()
            for _ in range(500):
                if js.status is JobStatus.PAUSED:
                    break
                waited.wait(0.01)
            assert js.status is JobStatus.PAUSED
            gate.set()
            pauser.join(10)
            assert rt.get_job_metrics(js.job_id)["routines"]["sink"]["activations"] == 0
            assert rt.resume_job(js.job_id)
            assert rt.wait_job(js.job_id, 10)
        assert js.get_routine_state("sink")["got"] == [5]
        [entry_pid] = [a.consumed for a in store.activations(js.job_id)
                       if a.routine_id == "sink"]
        assert js.get_routine_state("sink")["keys"] == [
            f"{js.job_id}:sink:in-{entry_pid[0]}"]
        self._no_rows_left_and_each_pid_consumed_once(store, js.job_id)

    def test_a_job_without_a_store_has_no_durable_link(self, make_routine: Any) -> None:
        flow = Flow(flow_id="plain_job")
        flow.add_routine(make_routine(events=()), "a")
        with Runtime(thread_pool_size=1) as rt:
            js = rt.exec(flow, entry_params={})
            assert js._live.durable is None
            assert rt.wait_job(js.job_id, 10)


class TestPostgresSchema:
    """What the PostgreSQL store refuses (the SQLite file's equivalents: TestSqliteFile)."""

    def _conn(self, dsn: str) -> Any:
        import psycopg

        return psycopg.connect(dsn, autocommit=True)

    def test_a_new_schema_is_created_and_versioned(self, postgres_dsn: str) -> None:
        from routilux.store import PG_SCHEMA_VERSION, PostgresJobStore

        schema = "v_" + uuid.uuid4().hex[:12]
        PostgresJobStore(postgres_dsn, schema=schema).close()
        with self._conn(postgres_dsn) as conn:
            meta = dict(conn.execute(f"SELECT key, value FROM {schema}.meta"))
        assert meta == {"application": "routilux-job-store",
                        "schema_version": str(PG_SCHEMA_VERSION)}

    def test_another_programs_schema_is_refused(self, postgres_dsn: str) -> None:
        from routilux.store import PostgresJobStore

        schema = "f_" + uuid.uuid4().hex[:12]
        with self._conn(postgres_dsn) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
            conn.execute(f"CREATE TABLE {schema}.customers (id INTEGER)")
        with pytest.raises(StoreCorruptError, match="another program"):
            PostgresJobStore(postgres_dsn, schema=schema)

    def test_a_newer_schema_version_is_refused(self, postgres_dsn: str) -> None:
        from routilux.store import PG_SCHEMA_VERSION, PostgresJobStore

        schema = "n_" + uuid.uuid4().hex[:12]
        PostgresJobStore(postgres_dsn, schema=schema).close()
        with self._conn(postgres_dsn) as conn:
            conn.execute(f"UPDATE {schema}.meta SET value = %s WHERE key = 'schema_version'",
                         (str(PG_SCHEMA_VERSION + 1),))
        with pytest.raises(StoreVersionError, match="newer Routilux") as info:
            PostgresJobStore(postgres_dsn, schema=schema)
        assert info.value.found == PG_SCHEMA_VERSION + 1

    def test_an_unreachable_server_and_bad_options_are_typed_errors(
        self, postgres_dsn: str, tmp_path: Path
    ) -> None:
        from routilux.store import PostgresJobStore

        with pytest.raises(StoreError, match="cannot connect"):
            PostgresJobStore(f"host={tmp_path} user=postgres dbname=postgres",
                             connect_timeout=2)
        with pytest.raises(ConfigurationError, match="schema"):
            PostgresJobStore(postgres_dsn, schema="Robert'); DROP TABLE x;--")
        with pytest.raises(ConfigurationError, match="synchronous"):
            PostgresJobStore(postgres_dsn, synchronous="OFF")

    def test_registered_as_postgres(self, postgres_dsn: str) -> None:
        from routilux.store import PostgresJobStore

        rt = Runtime(thread_pool_size=1, store=("postgres", {
            "dsn": postgres_dsn, "schema": "r_" + uuid.uuid4().hex[:12]}))
        assert isinstance(rt.store, PostgresJobStore)
        rt.shutdown()
