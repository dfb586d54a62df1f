"""Runtime: entry rules, worker threads, isolation, concurrency, job lifecycle, waiting,
backpressure, retention, shutdown, listing and metrics."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from routilux import Flow, FlowRegistry, JobStatus, Routine, Runtime
from routilux.errors import (
    ConfigurationError,
    EntryError,
    IllegalTransitionError,
    JobNotAcceptingWorkError,
    PauseTimeoutError,
    QueueFullError,
    RuntimeClosedError,
    UnknownFlowError,
    UnknownJobError,
    UnknownRoutineError,
    UnknownSlotError,
)

WAIT = 5.0


def finish(runtime: Runtime, state) -> None:
    assert runtime.wait_job(state.job_id, timeout=WAIT)


def chain(make_routine, n: int, name: str = "chain") -> Flow:
    """``r0 -> r1 -> ... -> r{n-1}``, each logging and forwarding what it gets."""
    flow = Flow(name)
    for i in range(n):
        flow.add_routine(make_routine(), f"r{i}")
    for i in range(n - 1):
        flow.connect(f"r{i}", "output", f"r{i + 1}", "input")
    return flow


def gated_flow(make_routine, gate: threading.Event, started: threading.Event | None = None,
               name: str = "gated") -> Flow:
    """One routine ``r`` whose logic waits for ``gate`` (and sets ``started`` first)."""

    def logic(routine, slot_data, policy_message, job_state):
        if started is not None:
            started.set()
        assert gate.wait(WAIT)
        job_state.shared_log.extend(slot_data["input"])

    flow = Flow(name)
    flow.add_routine(make_routine(logic, events=()), "r")
    return flow


class TestRegistryLookup:
    def test_exec_by_registered_name(self, runtime: Runtime, registry: FlowRegistry,
                                     make_routine, log_of) -> None:
        registry.register_by_name("named", chain(make_routine, 1))
        state = runtime.exec("named", entry_params={"x": 1})
        finish(runtime, state)
        assert log_of(state, "r0") == [{"x": 1}]

    def test_unknown_flow_name_is_named(self, runtime: Runtime) -> None:
        with pytest.raises(UnknownFlowError, match="'nope'"):
            runtime.exec("nope")

    def test_isolated_registry_is_not_the_global_one(self, registry: FlowRegistry,
                                                    make_routine) -> None:
        registry.register_by_name("only-here", chain(make_routine, 1))
        assert "only-here" not in FlowRegistry.get_instance()

    def test_empty_private_registry_is_still_the_one_used(self, make_routine) -> None:
        """An empty registry is falsy (it has a length): it must not be swapped for the
        process-wide one, where a same-named flow could be found instead."""
        empty = FlowRegistry()
        FlowRegistry.get_instance().register_by_name("global-only", chain(make_routine, 1))
        try:
            with Runtime(thread_pool_size=1, flow_registry=empty) as rt:
                assert rt.flow_registry is empty
                with pytest.raises(UnknownFlowError):
                    rt.exec("global-only")
        finally:
            FlowRegistry.get_instance().unregister("global-only")


class TestEntry:
    def test_entry_params_go_to_every_root_single_slot(
        self, runtime: Runtime, make_routine, log_of
    ) -> None:
        flow = Flow("two-roots")
        flow.add_routine(make_routine(), "a")
        flow.add_routine(make_routine(), "b")
        flow.add_routine(make_routine(), "c")
        flow.connect("a", "output", "c", "input")
        state = runtime.exec(flow, entry_params={"x": 1})
        finish(runtime, state)
        assert log_of(state, "a") == [{"x": 1}] and log_of(state, "b") == [{"x": 1}]
        assert log_of(state, "c") == [{"x": 1}]  # c is fed by a, not by the entry

    def test_declared_entry_wins(self, runtime: Runtime, make_routine, log_of) -> None:
        flow = Flow("declared")
        flow.add_routine(make_routine(slots=("left", "right")), "join")
        flow.add_routine(make_routine(), "other_root")
        flow.set_entry("join", "right")
        state = runtime.exec(flow, entry_params={"x": 1})
        finish(runtime, state)
        assert [e for e in state.shared_log] == [("join", "right", {"x": 1})]

    def test_source_routine_is_activated_once(self, runtime: Runtime, make_routine) -> None:
        calls: list[Any] = []

        def source(routine, slot_data, policy_message, job_state):
            calls.append((slot_data, dict(policy_message)))
            routine.emit("output", produced=True)

        flow = Flow("source")
        flow.add_routine(make_routine(source, slots=()), "src")
        flow.add_routine(make_routine(), "sink")
        flow.connect("src", "output", "sink", "input")
        state = runtime.exec(flow)
        finish(runtime, state)
        assert calls == [({}, {"policy": "source"})]
        assert state.shared_log == [("sink", "input", {"produced": True})]

    def test_sources_and_roots_both_start(self, runtime: Runtime, make_routine, log_of) -> None:
        flow = Flow("mixed")
        flow.add_routine(make_routine(lambda r, sd, pm, js: js.shared_log.append("src"),
                                      slots=()), "src")
        flow.add_routine(make_routine(), "root")
        state = runtime.exec(flow, entry_params={"x": 1})
        finish(runtime, state)
        assert "src" in state.shared_log and log_of(state, "root") == [{"x": 1}]

    def test_root_with_several_slots_is_an_entry_error_at_exec(
        self, runtime: Runtime, make_routine
    ) -> None:
        flow = Flow("ambiguous")
        flow.add_routine(make_routine(slots=("left", "right")), "join")
        with pytest.raises(EntryError, match=r"'join'.*set_entry") as info:
            runtime.exec(flow, entry_params={"x": 1})
        assert info.value.flow_id == "ambiguous"
        assert runtime.list_jobs() == []

    def test_no_root_and_no_source_is_an_entry_error(self, runtime: Runtime, make_routine) -> None:
        flow = Flow("loop")
        flow.add_routine(make_routine(), "a")
        flow.add_routine(make_routine(), "b")
        flow.connect("a", "output", "b", "input")
        flow.connect("b", "output", "a", "input")
        with pytest.raises(EntryError, match="set_entry"):
            runtime.exec(flow)

    def test_cycle_with_declared_entry_runs_until_it_stops(
        self, runtime: Runtime, make_routine
    ) -> None:
        def countdown(routine, slot_data, policy_message, job_state):
            n = slot_data["input"][0]["n"]
            job_state.shared_log.append(n)
            if n > 0:
                routine.emit("output", n=n - 1)

        flow = Flow("feedback")
        flow.add_routine(make_routine(countdown), "a")
        flow.add_routine(make_routine(countdown), "b")
        flow.connect("a", "output", "b", "input")
        flow.connect("b", "output", "a", "input")
        flow.set_entry("a", "input")
        state = runtime.exec(flow, entry_params={"n": 5})
        finish(runtime, state)
        assert state.status is JobStatus.COMPLETED
        assert state.shared_log == [5, 4, 3, 2, 1, 0]

    def test_ambiguous_flow_still_accepts_posts(self, runtime: Runtime, make_routine) -> None:
        flow = Flow("ambiguous-post")
        flow.add_routine(make_routine(slots=("left", "right")), "join")
        state = runtime.post(flow, "join", "left", {"x": 1})
        finish(runtime, state)
        assert state.shared_log == [("join", "left", {"x": 1})]

    def test_entry_params_must_be_a_mapping(self, runtime: Runtime, make_routine) -> None:
        with pytest.raises(ConfigurationError, match="entry_params"):
            runtime.exec(chain(make_routine, 1), entry_params=[1, 2])  # type: ignore[arg-type]


class TestWorkers:
    def test_exec_returns_before_logic_finishes(self, runtime: Runtime, make_routine) -> None:
        gate = threading.Event()
        state = runtime.exec(gated_flow(make_routine, gate), entry_params={"x": 1})
        assert state.status in (JobStatus.PENDING, JobStatus.RUNNING)
        gate.set()
        finish(runtime, state)
        assert state.status is JobStatus.COMPLETED

    def test_all_logic_runs_on_worker_threads(self, runtime: Runtime, make_routine) -> None:
        threads: list[threading.Thread] = []

        def logic(routine, slot_data, policy_message, job_state):
            threads.append(threading.current_thread())
            for p in slot_data["input"]:
                routine.emit("output", **p)

        flow = Flow("threads")
        for i in range(4):
            flow.add_routine(make_routine(logic), f"r{i}")
        for i in range(3):
            flow.connect(f"r{i}", "output", f"r{i + 1}", "input")
        state = runtime.exec(flow, entry_params={"x": 1})
        finish(runtime, state)
        assert len(threads) == 4
        assert threading.main_thread() not in threads
        assert all(t.name.startswith("routilux-worker") for t in threads)

    def test_pool_size_bounds_parallelism(self, registry: FlowRegistry, make_routine) -> None:
        active = 0
        peak = 0
        lock = threading.Lock()

        def logic(routine, slot_data, policy_message, job_state):
            nonlocal active, peak
            with lock:
                active += 1
                peak = max(peak, active)
            time.sleep(0.01)  # simulated work
            with lock:
                active -= 1

        flow = Flow("pool")
        for i in range(6):
            flow.add_routine(make_routine(logic, events=()), f"r{i}")
        with Runtime(thread_pool_size=2, flow_registry=registry) as rt:
            state = rt.exec(flow, entry_params={})
            assert rt.wait_job(state.job_id, timeout=WAIT)
        assert peak <= 2

    def test_the_pool_grows_with_its_first_tasks_up_to_its_size(
        self, registry: FlowRegistry, make_routine
    ) -> None:
        gate = threading.Event()

        def logic(routine, slot_data, policy_message, job_state):
            assert gate.wait(WAIT)

        flow = Flow("grow")
        flow.add_routine(make_routine(logic, events=()), "r")
        rt = Runtime(thread_pool_size=3, flow_registry=registry)
        try:
            def workers() -> list[threading.Thread]:
                return [t for t in threading.enumerate() if t in rt._workers]

            assert workers() == []  # nothing started before there is work
            jobs = [rt.exec(flow, entry_params={}) for _ in range(2)]
            assert len(workers()) == 2  # one worker per task while the pool is not full
            jobs += [rt.exec(flow, entry_params={}) for _ in range(5)]
            assert len(workers()) == 3  # never more than thread_pool_size
            gate.set()
            assert all(rt.wait_job(j.job_id, WAIT) for j in jobs)
            assert all(j.status is JobStatus.COMPLETED for j in jobs)
            started = list(rt._workers)
        finally:
            assert rt.shutdown(timeout=WAIT)
        assert len(started) == 3 and not any(t.is_alive() for t in started)
        with pytest.raises(RuntimeClosedError):
            rt.exec(flow, entry_params={})

    def test_a_shutdown_between_start_and_growth_still_ends_the_job(
        self, registry: FlowRegistry, make_routine, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``exec`` grows the pool for a starting job's tasks after ``Job.start`` released the
        job's lock; a ``shutdown(wait=False)`` in that window (forced here) must not leave the
        cancelled job's task without a worker, or the job would never settle."""
        from routilux._job import Job

        ran: list[int] = []
        flow = Flow("late")
        flow.add_routine(make_routine(lambda *a: ran.append(1), events=()), "r")
        rt = Runtime(thread_pool_size=2, flow_registry=registry)
        start = Job.start

        def start_then_shutdown(job: Job, deliver: bool, entry: dict[str, Any]) -> None:
            start(job, deliver, entry)
            t = threading.Thread(target=rt.shutdown, kwargs={"wait": False})
            t.start()
            t.join(WAIT)

        monkeypatch.setattr(Job, "start", start_then_shutdown)
        state = rt.exec(flow, entry_params={})
        assert rt.wait_job(state.job_id, WAIT)
        assert state.status is JobStatus.CANCELLED and ran == []
        assert rt.wait_until_all_jobs_finished(WAIT)

    @pytest.mark.parametrize("size", [0, -1, 1.5])
    def test_bad_pool_size_is_a_configuration_error(self, size: Any) -> None:
        with pytest.raises(ConfigurationError, match="thread_pool_size"):
            Runtime(thread_pool_size=size)


class TestEmitAnywhere:
    def test_emit_works_from_any_depth(self, runtime: Runtime, make_routine, log_of) -> None:
        state = runtime.exec(chain(make_routine, 8), entry_params={"x": 1})
        finish(runtime, state)
        assert [log_of(state, f"r{i}") for i in range(8)] == [[{"x": 1}]] * 8

    def test_emit_with_fan_out_and_fan_in(self, runtime: Runtime, make_routine, log_of) -> None:
        flow = Flow("diamond")
        for rid in ("top", "left", "right", "bottom"):
            flow.add_routine(make_routine(), rid)
        flow.connect("top", "output", "left", "input")
        flow.connect("top", "output", "right", "input")
        flow.connect("left", "output", "bottom", "input")
        flow.connect("right", "output", "bottom", "input")
        state = runtime.exec(flow, entry_params={"x": 1})
        finish(runtime, state)
        assert log_of(state, "bottom") == [{"x": 1}, {"x": 1}]

    def test_emit_from_a_helper_thread_inside_logic(self, runtime: Runtime, make_routine,
                                                   log_of) -> None:
        import contextvars

        def logic(routine, slot_data, policy_message, job_state):
            ctx = contextvars.copy_context()
            t = threading.Thread(target=ctx.run, args=(routine.emit, "output"),
                                 kwargs={"from_thread": True})
            t.start()
            t.join(WAIT)

        flow = Flow("helper-thread")
        flow.add_routine(make_routine(logic), "a")
        flow.add_routine(make_routine(), "b")
        flow.connect("a", "output", "b", "input")
        state = runtime.exec(flow, entry_params={})
        finish(runtime, state)
        assert log_of(state, "b") == [{"from_thread": True}]


class TestIsolation:
    def test_concurrent_jobs_of_one_flow_keep_their_own_data(
        self, runtime: Runtime, make_routine, log_of
    ) -> None:
        barrier = threading.Barrier(2, timeout=WAIT)

        def meet(routine, slot_data, policy_message, job_state):
            barrier.wait()  # both jobs are inside the flow at the same time
            for p in slot_data["input"]:
                routine.emit("output", **p)

        flow = Flow("iso")
        flow.add_routine(make_routine(meet), "a")
        flow.add_routine(make_routine(), "b")
        flow.connect("a", "output", "b", "input")
        one = runtime.exec(flow, entry_params={"job": 1})
        two = runtime.exec(flow, entry_params={"job": 2})
        assert runtime.wait_until_all_jobs_finished(timeout=WAIT)
        assert log_of(one, "b") == [{"job": 1}] and log_of(two, "b") == [{"job": 2}]
        assert one.job_id != two.job_id

    def test_routine_state_is_per_job(self, runtime: Runtime, make_routine) -> None:
        def count(routine, slot_data, policy_message, job_state):
            n = job_state.get_routine_state("r", {}).get("n", 0)
            job_state.update_routine_state("r", {"n": n + len(slot_data["input"])})

        flow = Flow("counts")
        flow.add_routine(make_routine(count, events=()), "r")
        states = [runtime.exec(flow, entry_params={}) for _ in range(3)]
        assert runtime.wait_until_all_jobs_finished(timeout=WAIT)
        assert [s.get_routine_state("r") for s in states] == [{"n": 1}] * 3


class TestConcurrencyPerRoutine:
    def _peak(self, runtime: Runtime, make_routine, max_concurrency: int | None,
              barrier: threading.Barrier | None = None) -> int:
        active = 0
        peak = 0
        lock = threading.Lock()

        def logic(routine, slot_data, policy_message, job_state):
            nonlocal active, peak
            with lock:
                active += 1
                peak = max(peak, active)
            if barrier is not None:
                barrier.wait()
            else:
                time.sleep(0.005)  # simulated work
            with lock:
                active -= 1

        def fan(routine, slot_data, policy_message, job_state):
            for i in range(3):
                routine.emit("output", i=i)

        flow = Flow("concurrency")
        flow.add_routine(make_routine(fan), "src")
        worker = make_routine(logic, events=())
        if max_concurrency is not None:
            worker.set_max_concurrency(max_concurrency)
        flow.add_routine(worker, "w")
        flow.connect("src", "output", "w", "input")
        state = runtime.exec(flow, entry_params={})
        finish(runtime, state)
        assert state.status is JobStatus.COMPLETED, state.error
        return peak

    def test_one_activation_at_a_time_by_default(self, runtime: Runtime, make_routine) -> None:
        assert self._peak(runtime, make_routine, None) == 1

    def test_opt_in_runs_activations_concurrently(self, runtime: Runtime, make_routine) -> None:
        # A barrier of 3 only opens if three activations of the routine run at once.
        barrier = threading.Barrier(3, timeout=WAIT)
        assert self._peak(runtime, make_routine, 3, barrier) == 3


class TestKeptOpenJobs:
    def test_post_without_job_id_starts_a_kept_open_job(
        self, runtime: Runtime, make_routine
    ) -> None:
        flow = chain(make_routine, 1)
        state = runtime.post(flow, "r0", "input", {"x": 1})
        finish(runtime, state)
        assert state.status is JobStatus.IDLE
        assert state.shared_log == [("r0", "input", {"x": 1})]

    def test_idle_running_idle_completed(self, runtime: Runtime, make_routine) -> None:
        gate, started = threading.Event(), threading.Event()
        flow = gated_flow(make_routine, gate, started)
        state = runtime.exec(flow, keep_open=True)
        finish(runtime, state)
        assert state.status is JobStatus.IDLE
        runtime.post(flow, "r", "input", {"x": 1}, job_id=state.job_id)
        assert started.wait(WAIT)
        assert state.status is JobStatus.RUNNING
        assert not runtime.wait_job(state.job_id, timeout=0.05)
        gate.set()
        finish(runtime, state)
        assert state.status is JobStatus.IDLE
        assert runtime.complete_job(state.job_id) is True
        finish(runtime, state)
        assert state.status is JobStatus.COMPLETED
        assert state.shared_log == [{"x": 1}]

    def test_exec_keep_open_delivers_entry_then_idles(
        self, runtime: Runtime, make_routine, log_of
    ) -> None:
        state = runtime.exec(chain(make_routine, 2), entry_params={"x": 1}, keep_open=True)
        finish(runtime, state)
        assert state.status is JobStatus.IDLE
        assert log_of(state, "r1") == [{"x": 1}]

    def test_complete_job_waits_for_queued_work(self, runtime: Runtime, make_routine) -> None:
        gate, started = threading.Event(), threading.Event()
        flow = gated_flow(make_routine, gate, started)
        state = runtime.post(flow, "r", "input", {"x": 1})
        runtime.post(flow, "r", "input", {"x": 2}, job_id=state.job_id)
        assert started.wait(WAIT)
        runtime.complete_job(state.job_id)
        assert state.status is JobStatus.RUNNING
        gate.set()
        finish(runtime, state)
        assert state.status is JobStatus.COMPLETED
        assert state.shared_log == [{"x": 1}, {"x": 2}]

    def test_post_to_a_finished_job_is_refused(self, runtime: Runtime, make_routine) -> None:
        flow = chain(make_routine, 1)
        state = runtime.exec(flow, entry_params={"x": 1})
        finish(runtime, state)
        with pytest.raises(JobNotAcceptingWorkError, match=state.job_id) as info:
            runtime.post(flow, "r0", "input", {"x": 2}, job_id=state.job_id)
        assert info.value.status == "completed"

    def test_post_to_unknown_slot_or_routine_is_named(self, runtime: Runtime,
                                                      make_routine) -> None:
        flow = chain(make_routine, 1)
        with pytest.raises(UnknownRoutineError, match="'ghost'"):
            runtime.post(flow, "ghost", "input", {})
        with pytest.raises(UnknownSlotError, match="'nope'"):
            runtime.post(flow, "r0", "nope", {})
        assert runtime.list_jobs() == []

    def test_post_to_unknown_job_is_named(self, runtime: Runtime, make_routine) -> None:
        with pytest.raises(UnknownJobError, match="'no-such-job'"):
            runtime.post(chain(make_routine, 1), "r0", "input", {}, job_id="no-such-job")

    def test_post_data_must_be_a_mapping(self, runtime: Runtime, make_routine) -> None:
        with pytest.raises(ConfigurationError, match="dict"):
            runtime.post(chain(make_routine, 1), "r0", "input", [1])  # type: ignore[arg-type]


class TestPauseResumeCancel:
    def test_posts_to_a_paused_job_queue_until_resume(self, runtime: Runtime,
                                                      make_routine) -> None:
        flow = chain(make_routine, 1)
        state = runtime.exec(flow, keep_open=True)
        runtime.pause_job(state.job_id)
        assert state.status is JobStatus.PAUSED
        runtime.post(flow, "r0", "input", {"x": 1}, job_id=state.job_id)
        assert not runtime.wait_job(state.job_id, timeout=0.05)
        assert state.shared_log == []
        assert runtime.resume_job(state.job_id) is True
        finish(runtime, state)
        assert state.shared_log == [("r0", "input", {"x": 1})]

    def test_pause_returns_after_in_flight_activation_ends(
        self, runtime: Runtime, make_routine
    ) -> None:
        gate, started = threading.Event(), threading.Event()
        state = runtime.post(gated_flow(make_routine, gate, started), "r", "input", {"x": 1})
        assert started.wait(WAIT)
        threading.Timer(0.05, gate.set).start()
        runtime.pause_job(state.job_id, timeout=WAIT)
        assert state.shared_log == [{"x": 1}]  # the in-flight activation finished first
        assert state.status is JobStatus.PAUSED

    def test_resume_of_a_job_that_is_not_paused_is_false(self, runtime: Runtime,
                                                        make_routine) -> None:
        state = runtime.exec(chain(make_routine, 1), keep_open=True)
        finish(runtime, state)
        assert runtime.resume_job(state.job_id) is False

    def test_cancel_stops_new_activations(self, runtime: Runtime, make_routine) -> None:
        gate, started = threading.Event(), threading.Event()
        flow = gated_flow(make_routine, gate, started)
        state = runtime.post(flow, "r", "input", {"x": 1})
        runtime.post(flow, "r", "input", {"x": 2}, job_id=state.job_id)
        assert started.wait(WAIT)
        assert runtime.cancel_job(state.job_id) is True
        assert state.status is JobStatus.CANCELLED
        gate.set()
        finish(runtime, state)
        assert state.shared_log == [{"x": 1}]  # the queued second payload never ran
        assert runtime.cancel_job(state.job_id) is False

    def test_pause_of_a_finished_job_is_an_illegal_transition(
        self, runtime: Runtime, make_routine
    ) -> None:
        state = runtime.exec(chain(make_routine, 1), entry_params={})
        finish(runtime, state)
        with pytest.raises(IllegalTransitionError, match="completed"):
            runtime.pause_job(state.job_id)


class TestWaiting:
    def test_wait_job_times_out_with_false(self, runtime: Runtime, make_routine) -> None:
        gate = threading.Event()
        state = runtime.exec(gated_flow(make_routine, gate), entry_params={"x": 1})
        assert runtime.wait_job(state.job_id, timeout=0.05) is False
        gate.set()
        assert runtime.wait_job(state.job_id, timeout=WAIT) is True

    def test_wait_all_times_out_with_false(self, runtime: Runtime, make_routine) -> None:
        gate = threading.Event()
        runtime.exec(gated_flow(make_routine, gate), entry_params={"x": 1})
        assert runtime.wait_until_all_jobs_finished(timeout=0.05) is False
        gate.set()
        assert runtime.wait_until_all_jobs_finished(timeout=WAIT) is True

    def test_wait_all_with_no_jobs_is_true(self, runtime: Runtime) -> None:
        assert runtime.wait_until_all_jobs_finished(timeout=0) is True

    def test_wait_all_returns_only_after_every_job_drained(
        self, runtime: Runtime, make_routine
    ) -> None:
        states = [runtime.exec(chain(make_routine, 3), entry_params={"i": i}) for i in range(5)]
        assert runtime.wait_until_all_jobs_finished(timeout=WAIT)
        assert all(s.status is JobStatus.COMPLETED for s in states)
        assert all(len(s.shared_log) == 3 for s in states)

    def test_wait_job_counts_a_drained_kept_open_job(self, runtime: Runtime,
                                                    make_routine) -> None:
        state = runtime.post(chain(make_routine, 1), "r0", "input", {})
        assert runtime.wait_job(state.job_id, timeout=WAIT)
        assert runtime.wait_until_all_jobs_finished(timeout=WAIT)
        assert state.status is JobStatus.IDLE

    def test_wait_job_on_unknown_job_is_named(self, runtime: Runtime) -> None:
        with pytest.raises(UnknownJobError, match="'nope'"):
            runtime.wait_job("nope", timeout=0)


class TestBackpressure:
    def _blocked_consumer(self, runtime: Runtime, make_routine, **slot_kwargs):
        gate, started = threading.Event(), threading.Event()

        def logic(routine, slot_data, policy_message, job_state):
            started.set()
            assert gate.wait(WAIT)
            job_state.shared_log.extend(p["i"] for p in slot_data["input"])

        routine = make_routine(logic, slots=(), events=())
        routine.add_slot("input", max_queue_length=1, **slot_kwargs)
        flow = Flow("bounded")
        flow.add_routine(routine, "r")
        state = runtime.post(flow, "r", "input", {"i": 0})  # taken by the running activation
        assert started.wait(WAIT)
        runtime.post(flow, "r", "input", {"i": 1}, job_id=state.job_id)  # fills the queue
        return flow, state, gate

    def test_block_waits_then_raises_queue_full(self, runtime: Runtime, make_routine) -> None:
        flow, state, gate = self._blocked_consumer(runtime, make_routine, overflow="block",
                                                   block_timeout=0.1)
        t0 = time.monotonic()
        with pytest.raises(QueueFullError, match=r"r\.input") as info:
            runtime.post(flow, "r", "input", {"i": 2}, job_id=state.job_id)
        assert time.monotonic() - t0 >= 0.1
        assert (info.value.routine_id, info.value.slot) == ("r", "input")
        gate.set()
        finish(runtime, state)
        assert state.shared_log == [0, 1]
        assert state.dropped == {}

    def test_blocked_producer_proceeds_when_room_frees(self, runtime: Runtime,
                                                       make_routine) -> None:
        flow, state, gate = self._blocked_consumer(runtime, make_routine, overflow="block",
                                                   block_timeout=WAIT)
        done = threading.Event()
        errors: list[BaseException] = []

        def produce() -> None:
            try:
                runtime.post(flow, "r", "input", {"i": 2}, job_id=state.job_id)
            except BaseException as exc:
                errors.append(exc)
            done.set()

        threading.Thread(target=produce).start()
        assert not done.wait(0.1)  # the producer is blocked on the full queue
        gate.set()
        assert done.wait(WAIT) and errors == []
        finish(runtime, state)
        assert state.shared_log == [0, 1, 2]

    def test_fail_raises_at_once(self, runtime: Runtime, make_routine) -> None:
        flow, state, gate = self._blocked_consumer(runtime, make_routine, overflow="fail")
        with pytest.raises(QueueFullError, match="max_queue_length=1"):
            runtime.post(flow, "r", "input", {"i": 2}, job_id=state.job_id)
        gate.set()
        finish(runtime, state)
        assert state.shared_log == [0, 1]

    def test_drop_oldest_counts_every_drop(self, runtime: Runtime, make_routine) -> None:
        flow, state, gate = self._blocked_consumer(runtime, make_routine,
                                                   overflow="drop_oldest")
        runtime.post(flow, "r", "input", {"i": 2}, job_id=state.job_id)
        runtime.post(flow, "r", "input", {"i": 3}, job_id=state.job_id)
        gate.set()
        finish(runtime, state)
        assert state.shared_log == [0, 3]
        assert state.dropped == {"r.input": 2}
        assert runtime.get_job_metrics(state.job_id)["dropped"] == {"r.input": 2}

    def test_full_queue_inside_a_flow_fails_the_job(self, runtime: Runtime, make_routine,
                                                   eventually) -> None:
        gate = threading.Event()

        def slow(routine, slot_data, policy_message, job_state):
            assert gate.wait(WAIT)

        def burst(routine, slot_data, policy_message, job_state):
            for i in range(5):
                routine.emit("output", i=i)

        consumer = make_routine(slow, slots=(), events=())
        consumer.add_slot("input", max_queue_length=2, overflow="fail")
        flow = Flow("burst")
        flow.add_routine(make_routine(burst), "src")
        flow.add_routine(consumer, "dst")
        flow.connect("src", "output", "dst", "input")
        state = runtime.exec(flow, entry_params={})
        try:
            # Whether or not dst took the first payload before the burst overflowed its
            # queue, the job fails; it settles only once dst's activation (held by the gate)
            # has ended, so the gate opens before waiting for that.
            eventually(lambda: state.status is JobStatus.FAILED, "the job to fail")
        finally:
            gate.set()
        assert runtime.wait_job(state.job_id, timeout=WAIT)
        assert state.status is JobStatus.FAILED
        assert state.error_type == "QueueFullError" and "dst.input" in state.error


class TestRetention:
    def test_oldest_finished_jobs_are_forgotten(self, registry: FlowRegistry,
                                                make_routine) -> None:
        flow = chain(make_routine, 1)
        with Runtime(thread_pool_size=2, flow_registry=registry, max_finished_jobs=2) as rt:
            states = []
            for i in range(4):
                states.append(rt.exec(flow, entry_params={"i": i}))
                assert rt.wait_job(states[-1].job_id, timeout=WAIT)
            kept = [s.job_id for s in rt.list_jobs()]
            assert kept == [states[2].job_id, states[3].job_id]
            assert rt.get_job(states[0].job_id) is None
            with pytest.raises(UnknownJobError):
                rt.get_job_metrics(states[0].job_id)

    def test_running_jobs_are_never_evicted(self, registry: FlowRegistry, make_routine) -> None:
        gate = threading.Event()
        with Runtime(thread_pool_size=2, flow_registry=registry, max_finished_jobs=0) as rt:
            running = rt.exec(gated_flow(make_routine, gate), entry_params={})
            done = rt.exec(chain(make_routine, 1), entry_params={})
            assert rt.wait_job(running.job_id, timeout=0.01) is False
            assert rt.get_job(running.job_id) is running
            gate.set()
            assert rt.wait_until_all_jobs_finished(timeout=WAIT)
            assert rt.get_job(done.job_id) is None

    def test_default_bound_is_one_thousand(self, registry: FlowRegistry, make_routine) -> None:
        flow = chain(make_routine, 1)
        # One worker: jobs finish in the order they started, and retention evicts the
        # longest-finished job (with two workers, job 1 may finish before job 0).
        with Runtime(thread_pool_size=1, flow_registry=registry) as rt:
            states = [rt.exec(flow, entry_params={}) for _ in range(1001)]
            assert rt.wait_until_all_jobs_finished(timeout=30)
            assert len(rt.list_jobs()) == 1000
            assert rt.get_job(states[0].job_id) is None
            assert rt.get_job(states[-1].job_id) is states[-1]


class TestCompletedJobs:
    def test_a_completed_job_answers_as_before_after_letting_go_of_its_queues(
        self, registry: FlowRegistry, make_routine
    ) -> None:
        # A completed job drops its scheduling structures (less for the garbage collector to
        # walk while it is retained); everything it still answers must read the same.
        flow = chain(make_routine, 3)
        with Runtime(thread_pool_size=2, flow_registry=registry) as rt:
            state = rt.exec(flow, entry_params={"x": 1})
            assert rt.wait_job(state.job_id, timeout=WAIT)
            assert state.status is JobStatus.COMPLETED
            job = state._live
            assert all(type(q) is tuple for q in job.queues) and not job.executing
            metrics = rt.get_job_metrics(state.job_id)
            assert metrics["queue_depths"] == {"r0.input": 0, "r1.input": 0, "r2.input": 0}
            assert metrics["running"] == {}
            assert [metrics["routines"][f"r{i}"]["activations"] for i in range(3)] == [1, 1, 1]
            saved = state.to_dict()
            assert saved["pending"] == {} and saved["in_flight"] == []
            assert saved["status"] == "completed"
            assert rt.wait_job(state.job_id, timeout=WAIT)  # waiting again returns at once
            with pytest.raises(JobNotAcceptingWorkError):
                rt.post(flow, "r0", "input", {"x": 2}, job_id=state.job_id)
            # No view held policy state: the views are the plan's shared stand-in, and a
            # late release_breakpoint still answers as before (it makes the view it needs).
            assert list(job.views) == [None, None, None]
            rt.release_breakpoint(state.job_id, "r1")
            assert job.views[1] is not None and job.views[1].state == {"released": True}
            assert job.plan.no_views == (None, None, None)  # the shared tuple is untouched

    def test_duration_samples_are_a_bounded_ring_of_the_latest(self) -> None:
        from routilux._activation import _DURATION_SAMPLES, RoutineStats

        stats = RoutineStats()
        assert stats.durations is None
        values = [(i % 97) / 1000 + i * 1e-9 for i in range(_DURATION_SAMPLES + 300)]
        for v in values:
            stats.record(v)
        assert stats.activations == len(values)
        assert stats.min == min(values) and stats.max == max(values)
        assert stats.total == pytest.approx(sum(values))
        kept = stats.durations
        assert kept is not None and len(kept) == _DURATION_SAMPLES
        assert sorted(kept) == sorted(values[-_DURATION_SAMPLES:])  # the oldest 300 went
        d = stats.to_dict()["duration"]
        latest = sorted(values[-_DURATION_SAMPLES:])
        assert d["p50"] == latest[_DURATION_SAMPLES // 2]
        assert d["p95"] == latest[int(0.95 * _DURATION_SAMPLES)]

    def test_kept_jobs_keep_their_duration_samples_out_of_the_collector(
        self, registry: FlowRegistry, make_routine
    ) -> None:
        import gc

        flow = chain(make_routine, 2)
        with Runtime(thread_pool_size=1, flow_registry=registry) as rt:
            state = rt.exec(flow, entry_params={})
            assert rt.wait_job(state.job_id, timeout=WAIT)
            for s in state._live.stats:
                assert s.durations is not None and len(s.durations) == 1
                assert not gc.is_tracked(s._samples)


class TestShutdown:
    def test_context_manager_shuts_down(self, registry: FlowRegistry, make_routine) -> None:
        flow = chain(make_routine, 1)
        with Runtime(thread_pool_size=2, flow_registry=registry) as rt:
            state = rt.exec(flow, entry_params={})
        assert state.status is JobStatus.COMPLETED  # exit waited for the job
        with pytest.raises(RuntimeClosedError):
            rt.exec(flow, entry_params={})

    def test_shutdown_waits_for_running_jobs(self, registry: FlowRegistry, make_routine) -> None:
        gate = threading.Event()
        rt = Runtime(thread_pool_size=2, flow_registry=registry)
        state = rt.exec(gated_flow(make_routine, gate), entry_params={"x": 1})
        threading.Timer(0.05, gate.set).start()
        assert rt.shutdown(wait=True, timeout=WAIT) is True
        assert state.status is JobStatus.COMPLETED and state.shared_log == [{"x": 1}]

    def test_shutdown_without_wait_cancels_running_jobs(
        self, registry: FlowRegistry, make_routine
    ) -> None:
        gate, started = threading.Event(), threading.Event()
        rt = Runtime(thread_pool_size=2, flow_registry=registry)
        state = rt.exec(gated_flow(make_routine, gate, started), entry_params={"x": 1})
        assert started.wait(WAIT)
        try:
            rt.shutdown(wait=False)
            assert state.status is JobStatus.CANCELLED
        finally:
            gate.set()

    def test_shutdown_is_woken_by_a_job_settling_while_another_stays_paused(
        self, registry: FlowRegistry, make_routine, eventually
    ) -> None:
        # The runtime's condition is notified only when all jobs have settled, except once
        # shutdown has begun: a paused job never settles, so shutdown relies on the others.
        held, held_started = threading.Event(), threading.Event()
        gate, started = threading.Event(), threading.Event()
        rt = Runtime(thread_pool_size=2, flow_registry=registry)
        paused = rt.exec(
            gated_flow(make_routine, held, held_started, name="held"), entry_params={"x": 0}
        )
        assert held_started.wait(WAIT)
        with pytest.raises(PauseTimeoutError):
            rt.pause_job(paused.job_id, timeout=0.01)  # the job stays paused
        held.set()
        assert eventually(lambda: paused.status is JobStatus.PAUSED)
        state = rt.exec(gated_flow(make_routine, gate, started), entry_params={"x": 1})
        assert started.wait(WAIT)
        threading.Timer(0.05, gate.set).start()
        assert rt.shutdown(wait=True, timeout=WAIT) is True
        assert state.status is JobStatus.COMPLETED and paused.status is JobStatus.PAUSED

    def test_shutdown_twice_is_harmless(self, registry: FlowRegistry) -> None:
        rt = Runtime(thread_pool_size=1, flow_registry=registry)
        assert rt.shutdown() is True
        assert rt.shutdown() is True


class TestListing:
    def test_list_jobs_filters_by_status_and_flow(self, runtime: Runtime, registry: FlowRegistry,
                                                  make_routine) -> None:
        registry.register_by_name("alpha", chain(make_routine, 1, name="alpha-flow"))
        registry.register_by_name("beta", chain(make_routine, 1, name="beta-flow"))
        done = runtime.exec("alpha", entry_params={})
        finish(runtime, done)
        idle = runtime.exec("beta", keep_open=True)
        finish(runtime, idle)
        assert [s.job_id for s in runtime.list_jobs()] == [done.job_id, idle.job_id]
        assert runtime.list_jobs(status="completed") == [done]
        assert runtime.list_jobs(status=JobStatus.IDLE) == [idle]
        assert runtime.list_jobs(flow_name="beta") == [idle]
        assert runtime.list_jobs(flow_name="alpha-flow") == [done]
        assert runtime.list_jobs(status="completed", flow_name="beta") == []

    def test_unknown_status_filter_is_a_configuration_error(self, runtime: Runtime) -> None:
        with pytest.raises(ConfigurationError, match=r"'bogus'.*completed"):
            runtime.list_jobs(status="bogus")

    def test_get_job_returns_the_state_or_none(self, runtime: Runtime, make_routine) -> None:
        state = runtime.exec(chain(make_routine, 1), entry_params={})
        assert runtime.get_job(state.job_id) is state
        assert runtime.get_job("nope") is None


class TestMetrics:
    def test_shape_per_spec(self, runtime: Runtime, make_routine) -> None:
        state = runtime.exec(chain(make_routine, 2), entry_params={"x": 1})
        finish(runtime, state)
        metrics = runtime.get_job_metrics(state.job_id)
        assert metrics["job_id"] == state.job_id and metrics["status"] == "completed"
        assert set(metrics["routines"]) == {"r0", "r1"}
        for stats in metrics["routines"].values():
            assert {"activations", "errors", "retries", "skipped", "payloads_in",
                    "payloads_out", "duration"} <= set(stats)
            assert {"min", "avg", "p50", "p95", "max"} <= set(stats["duration"])
            assert stats["duration"]["min"] <= stats["duration"]["p50"] <= stats["duration"]["max"]

    def test_counts(self, runtime: Runtime, make_routine) -> None:
        def fan(routine, slot_data, policy_message, job_state):
            for i in range(3):
                routine.emit("output", i=i)

        flow = Flow("counts")
        flow.add_routine(make_routine(fan), "src")
        flow.add_routine(make_routine(events=()), "dst")
        flow.connect("src", "output", "dst", "input")
        state = runtime.exec(flow, entry_params={})
        finish(runtime, state)
        routines = runtime.get_job_metrics(state.job_id)["routines"]
        assert (routines["src"]["activations"], routines["src"]["payloads_out"]) == (1, 3)
        assert (routines["dst"]["activations"], routines["dst"]["payloads_in"]) == (3, 3)
        assert routines["dst"]["errors"] == 0

    def test_metrics_are_a_plain_dict(self, runtime: Runtime, make_routine) -> None:
        import json

        state = runtime.exec(chain(make_routine, 1), entry_params={})
        finish(runtime, state)
        json.dumps(runtime.get_job_metrics(state.job_id))


class TestHistory:
    def test_every_activation_is_recorded_with_a_timestamp(self, runtime: Runtime,
                                                          make_routine) -> None:
        before = time.time()
        state = runtime.exec(chain(make_routine, 3), entry_params={})
        finish(runtime, state)
        history = state.history()
        assert [r.routine_id for r in history] == ["r0", "r1", "r2"]
        assert all(r.status == "completed" and r.started_at >= before - 1 for r in history)
        assert state.history("r1") == [history[1]]

    def test_history_is_bounded(self, registry: FlowRegistry, make_routine) -> None:
        def fan(routine, slot_data, policy_message, job_state):
            for i in range(10):
                routine.emit("output", i=i)

        flow = Flow("bounded-history")
        flow.add_routine(make_routine(fan), "src")
        flow.add_routine(make_routine(events=()), "dst")
        flow.connect("src", "output", "dst", "input")
        with Runtime(thread_pool_size=2, flow_registry=registry, history_limit=4) as rt:
            state = rt.exec(flow, entry_params={})
            assert rt.wait_job(state.job_id, timeout=WAIT)
        assert len(state.history()) == 4


class TestSharedRoutineObject:
    def test_one_routine_in_two_flows(self, runtime: Runtime, make_routine, log_of) -> None:
        routine: Routine = make_routine()
        first, second = Flow("first"), Flow("second")
        first.add_routine(routine, "x")
        second.add_routine(routine, "y")
        s1 = runtime.exec(first, entry_params={"f": 1})
        s2 = runtime.exec(second, entry_params={"f": 2})
        assert runtime.wait_until_all_jobs_finished(timeout=WAIT)
        assert log_of(s1, "x") == [{"f": 1}] and log_of(s2, "y") == [{"f": 2}]
