"""Where the durable store, async routines, remote executors and the hot-path work meet:
regressions found when the four were merged (each test failed before its fix)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from routilux import Flow, JobStatus, Routine, Runtime
from routilux.serialization import job_state_from_dict, job_state_to_dict
from routilux.store import SqliteJobStore

WAIT = 10.0


def rout(fn: Any, slots: tuple[str, ...] = ("input",), events: tuple[str, ...] = ("output",),
         **config: Any) -> Routine:
    r = Routine()
    for s in slots:
        r.add_slot(s)
    for e in events:
        r.add_event(e)
    r.set_logic(lambda sd, m, js: fn(r, sd, m, js))
    if config:
        r.set_config(**config)
    return r


def noop(r: Routine, sd: Any, m: Any, js: Any) -> None:
    return None


def wait_status(state: Any, status: JobStatus) -> None:
    deadline = time.monotonic() + WAIT
    while state.status is not status and time.monotonic() < deadline:
        time.sleep(0.005)
    assert state.status is status, (state.status, state.error)


class TestRetention:
    def test_forgotten_failed_job_with_a_running_activation_still_settles_under_a_store(
        self, tmp_path: Path
    ) -> None:
        """A failed job is forgotten (retention bound) while another of its activations runs;
        that activation's durable commit must not crash the worker (it read ``views[ri]`` of
        the emptied list), or the job never settles and ``wait_until_all`` hangs."""
        gate, started = threading.Event(), threading.Event()

        def slow(r: Routine, sd: Any, m: Any, js: Any) -> None:
            started.set()
            gate.wait(WAIT)

        def boom(r: Routine, sd: Any, m: Any, js: Any) -> None:
            started.wait(WAIT)
            raise ValueError("boom")

        flow = Flow("fails")
        flow.add_routine(rout(slow, events=()), "slow")
        flow.add_routine(rout(boom, events=()), "boom")
        other = Flow("other")
        other.add_routine(rout(noop, events=()), "n")
        rt = Runtime(store=SqliteJobStore(tmp_path / "s.db"), max_finished_jobs=1,
                     thread_pool_size=4)
        try:
            state = rt.exec(flow, {"a": 1})
            wait_status(state, JobStatus.FAILED)
            done = rt.exec(other, {"b": 1})
            assert rt.wait_job(done.job_id, timeout=WAIT)  # (returns after the lock is free)
            assert rt.get_job(state.job_id) is None  # forgotten, still running "slow"
            gate.set()
            assert rt.wait_until_all_jobs_finished(timeout=WAIT)
        finally:
            gate.set()
            rt.shutdown(timeout=WAIT)

    def test_continuing_an_ended_job_id_is_not_forgotten_while_it_runs(self) -> None:
        """A saved copy of a job that then ended is run again under the same id; finishing
        another job must not evict the new, running job through the old one's retention
        entry."""
        gate = threading.Event()

        def slow(r: Routine, sd: Any, m: Any, js: Any) -> None:
            gate.wait(WAIT)

        flow = Flow("held")
        flow.add_routine(rout(slow, events=()), "slow")
        other = Flow("other")
        other.add_routine(rout(noop, events=()), "n")
        rt = Runtime(max_finished_jobs=1, thread_pool_size=4)
        try:
            state = rt.exec(flow, {"a": 1})
            saved = job_state_to_dict(state)  # its payload is in flight
            rt.cancel_job(state.job_id)
            gate.set()
            assert rt.wait_job(state.job_id, timeout=WAIT)
            gate.clear()
            again = rt.exec(flow, job_state=job_state_from_dict(saved))
            done = rt.exec(other, {"b": 1})
            assert rt.wait_job(done.job_id, timeout=WAIT)
            assert rt.get_job(state.job_id) is again
            gate.set()
            assert rt.wait_job(state.job_id, timeout=WAIT)
            assert again.status is JobStatus.COMPLETED, again.error
            assert rt.wait_until_all_jobs_finished(timeout=WAIT)
        finally:
            gate.set()
            rt.shutdown(timeout=WAIT)


# -- sync and async routines under a store -----------------------------------------------------


def _stage(kind: str, fail_first: bool, batch: bool, seen: list[Any]) -> Routine:
    """A forwarding stage: ``kind`` 'sync' or 'async'; with ``fail_first`` the first attempt
    of each activation raises (RETRY, no delay); with ``batch`` a batch policy (no fast path)."""
    from routilux import ErrorHandler, ErrorStrategy
    from routilux.activation_policies import batch_size_policy

    r = Routine()
    r.add_slot("input")
    r.add_event("output")

    def body(sd: Any, attempt: int) -> None:
        if fail_first and attempt == 0:
            raise ConnectionError("first attempt fails")
        for p in sd["input"]:
            seen.append(p["v"])
            r.emit("output", v=p["v"])

    if kind == "async":
        import asyncio

        async def alogic(sd: Any, m: Any, js: Any) -> None:
            from routilux import current_activation

            await asyncio.sleep(0)
            info = current_activation()
            assert info is not None
            body(sd, info.attempt)

        r.set_logic(alogic)
    else:

        def logic(sd: Any, m: Any, js: Any) -> None:
            from routilux import current_activation

            info = current_activation()
            assert info is not None
            body(sd, info.attempt)

        r.set_logic(logic)
    if fail_first:
        r.set_error_handler(ErrorHandler(strategy=ErrorStrategy.RETRY, max_retries=2,
                                         retry_delay=0.0))
    if batch:
        r.set_activation_policy(batch_size_policy(2))
    return r


class TestMixedRoutinesWithAStore:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=12, deadline=None)
    @given(
        stages=st.lists(
            st.tuples(st.sampled_from(["sync", "async"]), st.booleans(), st.booleans()),
            min_size=1, max_size=4,
        ),
        n=st.integers(min_value=1, max_value=12),
    )
    def test_each_payload_is_consumed_once_and_the_store_is_left_empty(
        self, tmp_path_factory: Any, stages: list[tuple[str, bool, bool]], n: int
    ) -> None:
        path = tmp_path_factory.mktemp("mixed") / "s.db"
        got: list[Any] = []
        seen: list[list[Any]] = [[] for _ in stages]
        flow = Flow("mixed")
        src = rout(lambda r, sd, m, js: [r.emit("output", v=i) for i in range(n)])
        flow.add_routine(src, "src")
        prev = "src"
        for k, (kind, fail_first, batch) in enumerate(stages):
            flow.add_routine(_stage(kind, fail_first, batch, seen[k]), f"s{k}")
            flow.connect(prev, "output", f"s{k}", "input")
            prev = f"s{k}"
        sink = rout(lambda r, sd, m, js: got.extend(p["v"] for p in sd["input"]), events=())
        flow.add_routine(sink, "sink")
        flow.connect(prev, "output", "sink", "input")
        store = SqliteJobStore(path)
        rt = Runtime(store=store, thread_pool_size=3)
        try:
            # Kept open, the job goes IDLE when drained: the store then still holds the job
            # (a terminal status deletes its rows), and must hold exactly what is still
            # queued in memory (payloads a batch policy waits on) and no retry.
            state = rt.exec(flow, {"go": 1}, keep_open=True)
            assert rt.wait_job(state.job_id, timeout=WAIT)
            assert state.status is JobStatus.IDLE, state.error
            depths = rt.get_job_metrics(state.job_id)["queue_depths"]
            store.flush()
            snap = store.load_job(state.job_id)
            stored: dict[str, int] = {}
            for p in snap.payloads:
                assert p.held_by is None
                key = f"{p.routine_id}.{p.slot}"
                stored[key] = stored.get(key, 0) + 1
            assert stored == {k: v for k, v in depths.items() if v}
            assert snap.held == ()
            assert rt.complete_job(state.job_id)  # (the batch policies flush what they hold)
            assert rt.wait_job(state.job_id, timeout=WAIT)
            assert state.status is JobStatus.COMPLETED, state.error
            assert sorted(got) == list(range(n))
            for k in range(len(stages)):
                # a failed first attempt emits nothing, so each payload passes once per stage
                assert sorted(seen[k]) == list(range(n)), (k, seen[k])
            assert state.unconsumed == {}
        finally:
            rt.shutdown(timeout=WAIT)
            store.close()


class TestRoutineTimeoutUnderAStore:
    import pytest

    @pytest.mark.parametrize("kind", ["sync", "async"])
    @pytest.mark.parametrize("strategy", ["skip", "continue"])
    def test_a_timed_out_input_the_job_went_past_is_not_left_queued_in_the_store(
        self, tmp_path: Path, kind: str, strategy: str
    ) -> None:
        """A kept-open job goes IDLE after an activation timed out and was skipped: the store
        must not still hold its input as queued (a resume would run it again). Async
        timeouts committed the outcome; sync ones (the abandoned thread) committed nothing."""
        import asyncio

        from routilux import ErrorHandler

        gate = threading.Event()
        r = Routine()
        r.add_slot("input")
        if kind == "sync":
            r.set_logic(lambda sd, m, js: gate.wait(WAIT))
        else:

            async def hang(sd: Any, m: Any, js: Any) -> None:
                await asyncio.sleep(WAIT)

            r.set_logic(hang)
        r.set_config(timeout=0.05)
        r.set_error_handler(ErrorHandler(strategy=strategy))
        flow = Flow("timeouts")
        flow.add_routine(r, "r")
        with SqliteJobStore(tmp_path / "s.db") as store, Runtime(store=store) as rt:
            try:
                state = rt.post(flow, "r", "input", {"v": 1})
                assert rt.wait_job(state.job_id, timeout=WAIT)
                assert state.status is JobStatus.IDLE, state.error
                store.flush()
                snap = store.load_job(state.job_id)
                assert snap.payloads == () and snap.held == ()
                assert [a.outcome for a in store.activations(state.job_id)] == [
                    "skipped" if strategy == "skip" else "failed"]
            finally:
                gate.set()
            rt.complete_job(state.job_id)
            assert rt.wait_job(state.job_id, timeout=WAIT)

    def test_a_timed_out_activation_retried_is_held_in_the_store_and_runs_once_more(
        self, tmp_path: Path
    ) -> None:
        from routilux import ErrorHandler, current_activation

        gate = threading.Event()
        runs: list[int] = []

        def logic(sd: Any, m: Any, js: Any) -> None:
            info = current_activation()
            assert info is not None
            runs.append(info.attempt)
            if info.attempt == 0:
                gate.wait(WAIT)

        r = Routine()
        r.add_slot("input")
        r.set_logic(logic)
        r.set_config(timeout=0.05)
        r.set_error_handler(ErrorHandler(strategy="retry", max_retries=1, retry_delay=0.0))
        flow = Flow("timeouts_retry")
        flow.add_routine(r, "r")
        with SqliteJobStore(tmp_path / "s.db") as store, Runtime(store=store) as rt:
            try:
                state = rt.post(flow, "r", "input", {"v": 1})
                assert rt.wait_job(state.job_id, timeout=WAIT)
                assert state.status is JobStatus.IDLE, state.error
                assert runs == [0, 1]
                store.flush()
                snap = store.load_job(state.job_id)
                assert snap.payloads == () and snap.held == ()
                assert [a.outcome for a in store.activations(state.job_id)] == [
                    "retry", "completed"]
            finally:
                gate.set()
            rt.complete_job(state.job_id)
            assert rt.wait_job(state.job_id, timeout=WAIT)


class TestGroupCommitOfARetry:
    def test_a_retry_committed_in_the_round_that_holds_it_leaves_no_held_row(
        self, tmp_path: Path
    ) -> None:
        """An attempt that schedules a retry (its input held) and the retry's own commit land
        in one group-commit round: merged, the retry's delete of the held row ran before the
        first commit's insert, leaving an orphan held row (a resume ran the input again)."""
        import sqlite3

        from routilux.store import Commit, HeldRow, JobSnapshot, PayloadRow

        path = tmp_path / "s.db"
        store = SqliteJobStore(path, busy_timeout=WAIT)
        try:
            store.open_job(JobSnapshot(
                job_id="j", flow_name="f", flow_id="f", flow_doc=None, status="running",
                keep_open=True, entry_params=None, next_pid=1, seq=1,
                payloads=(PayloadRow(pid=1, routine_id="r", slot="input", body="{}"),),
            ))
            blocker = sqlite3.connect(path, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")  # the writer's next round waits for this lock
            first = store.set_status("j", "running")
            time.sleep(0.1)  # (lets the writer start that round; if not, all three merge)
            held = HeldRow(seq=1, routine_id="r", attempt=1, message=None, due=time.time())
            retry = store.submit(Commit(job_id="j", outcome="retry", seq=1, routine_id="r",
                                        attempt=0, key="j:r:in-1", consumed=(1,), held=held))
            done = store.submit(Commit(job_id="j", outcome="completed", seq=1, routine_id="r",
                                       attempt=1, key="j:r:in-1", consumed=(1,)))
            blocker.rollback()
            blocker.close()
            for handle in (first, retry, done):
                handle.wait()
            snap = store.load_job("j")
            assert snap.payloads == ()
            assert snap.held == ()
        finally:
            store.close()


class TestRefusedPostUnderAStore:
    import pytest

    @pytest.mark.parametrize("overflow", ["fail", "block"])
    def test_a_post_refused_by_a_full_queue_is_not_left_in_the_store(
        self, tmp_path: Path, overflow: str
    ) -> None:
        """``post`` wrote the payload to the store, then the full queue refused it
        (``QueueFullError``: "the payload was not accepted"); the store kept it as queued, so
        a resume would have run a payload the caller was told was refused."""
        from routilux.errors import QueueFullError

        gate, started = threading.Event(), threading.Event()
        runs: list[Any] = []

        def slow(r: Routine, sd: Any, m: Any, js: Any) -> None:
            runs.extend(p["v"] for p in sd["input"])
            started.set()
            gate.wait(WAIT)

        r = Routine()
        r.add_slot("input", max_queue_length=1, overflow=overflow, block_timeout=0.05)
        r.set_logic(lambda sd, m, js: slow(r, sd, m, js))
        flow = Flow("full")
        flow.add_routine(r, "r")
        with SqliteJobStore(tmp_path / "s.db") as store, Runtime(store=store) as rt:
            try:
                state = rt.post(flow, "r", "input", {"v": 1})
                assert started.wait(WAIT)
                rt.post(flow, "r", "input", {"v": 2}, job_id=state.job_id)  # queued
                try:
                    rt.post(flow, "r", "input", {"v": 3}, job_id=state.job_id)
                except QueueFullError:
                    pass
                else:
                    raise AssertionError("the third post should not fit")
            finally:
                gate.set()
            assert rt.wait_job(state.job_id, timeout=WAIT)
            assert state.status is JobStatus.IDLE, state.error
            assert runs == [1, 2]
            store.flush()
            assert store.load_job(state.job_id).payloads == ()
            rt.complete_job(state.job_id)
            assert rt.wait_job(state.job_id, timeout=WAIT)


class TestPauseUnderAStore:
    def test_a_save_right_after_pause_holds_what_the_last_activation_emitted(
        self, tmp_path: Path
    ) -> None:
        """Under a store, emits are routed once their commit is durable: ``pause_job``
        returned when the activation ended, before its emits were routed, so a save right
        after the pause lost them (every time)."""
        for i in range(5):
            gate, started = threading.Event(), threading.Event()
            a = Routine()
            a.add_slot("input")
            a.add_event("out")

            def emit_one(sd: Any, m: Any, js: Any, a: Routine = a,
                         gate: threading.Event = gate, started: threading.Event = started
                         ) -> None:
                started.set()
                gate.wait(WAIT)
                a.emit("out", v=1)

            a.set_logic(emit_one)
            flow = Flow("paused")
            flow.add_routine(a, "a")
            flow.add_routine(rout(noop, events=()), "b")
            flow.connect("a", "out", "b", "input")
            with SqliteJobStore(tmp_path / f"s{i}.db") as store, Runtime(store=store) as rt:
                state = rt.exec(flow, {"v": 0})
                assert started.wait(WAIT)
                opener = threading.Timer(0.05, gate.set)
                opener.start()
                try:
                    rt.pause_job(state.job_id, timeout=WAIT)  # returns once "a" has ended
                    saved = job_state_to_dict(state)
                    assert saved["pending"] == {"b": {"input": [{"v": 1}]}}
                finally:
                    gate.set()
                    opener.join()
                assert rt.resume_job(state.job_id)
                assert rt.wait_job(state.job_id, timeout=WAIT)
                assert state.status is JobStatus.COMPLETED, state.error
