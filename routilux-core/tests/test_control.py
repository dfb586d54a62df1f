"""Job control: pause, resume, cancel, complete, timeouts, shutdown and breakpoints."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from routilux import (
    Flow,
    JobState,
    JobStatus,
    ManualClock,
    Routine,
    Runtime,
    breakpoint_policy,
)
from routilux.errors import (
    IllegalTransitionError,
    JobNotAcceptingWorkError,
    PauseTimeoutError,
)
from routilux_testing import wait_for as until

WAIT = 10.0




def timer_barrier(rt: Runtime) -> None:
    """Return once the timer thread has run every timer due at the clock's current time."""
    done = threading.Event()
    rt._timers.call_later(0.0, done.set)
    assert done.wait(WAIT)


class Gated:
    """A ``work`` routine that records each payload's ``n`` and blocks on ``gate`` for the
    payloads listed in ``block``; it emits ``n`` on ``output`` to a recording ``sink``."""

    def __init__(self, flow_id: str, *, block: tuple[int, ...] = (0,), concurrency: int = 1,
                 execution_timeout: float | None = None) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.left = threading.Event()
        self.block = block
        self.seen: list[int] = []
        self.lock = threading.Lock()
        self.flow = Flow(flow_id=flow_id, execution_timeout=execution_timeout)
        work = Routine()
        work.add_slot("input")
        work.add_event("output", ["n"])
        work.set_max_concurrency(concurrency)

        def logic(slot_data: Any, message: Any, job_state: Any) -> None:
            for payload in slot_data["input"]:
                n = payload["n"]
                with self.lock:
                    self.seen.append(n)
                if n in self.block:
                    self.entered.set()
                    assert self.gate.wait(WAIT)
                work.emit("output", n=n)
                if n in self.block:
                    self.left.set()

        work.set_logic(logic)
        sink = Routine()
        sink.add_slot("input")
        sink.set_logic(
            lambda sd, m, js: js.shared_data.setdefault("out", []).extend(
                p["n"] for p in sd["input"]
            )
        )
        self.flow.add_routine(work, "work")
        self.flow.add_routine(sink, "sink")
        self.flow.connect("work", "output", "sink", "input")

    def post(self, rt: Runtime, state: JobState, *ns: int) -> None:
        for n in ns:
            rt.post(self.flow, "work", "input", {"n": n}, job_id=state.job_id)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


_GATES: list[threading.Event] = []


@pytest.fixture
def rt(clock: ManualClock) -> Iterator[Runtime]:
    runtime = Runtime(thread_pool_size=4, clock=clock)
    yield runtime
    for gate in _GATES:
        gate.set()
    _GATES.clear()
    runtime.shutdown(wait=False)


def gated(*args: Any, **kwargs: Any) -> Gated:
    g = Gated(*args, **kwargs)
    _GATES.append(g.gate)
    return g


def pending_of(state: JobState) -> list[int]:
    return [p["n"] for p in state.to_dict()["pending"].get("work", {}).get("input", [])]


# -- pause / resume --------------------------------------------------------------------------


class TestPause:
    def test_pause_waits_for_in_flight_and_holds_queued_work(self, rt: Runtime) -> None:
        g = gated("pause")
        state = rt.exec(g.flow, keep_open=True)
        g.post(rt, state, 0, 1, 2, 3)
        assert g.entered.wait(WAIT)

        returned = threading.Event()
        errors: list[BaseException] = []

        def pause() -> None:
            try:
                rt.pause_job(state.job_id)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
            returned.set()

        t = threading.Thread(target=pause)
        t.start()
        until(lambda: state.status is JobStatus.PAUSED, "the job to be paused")
        assert not returned.wait(0.2)  # activation 0 is still running
        g.gate.set()
        assert returned.wait(WAIT)
        t.join(WAIT)
        assert not errors
        assert g.left.is_set()  # pause returned after the activation finished

        # consistent at once: nothing running, the rest still queued
        snap = state.to_dict()
        assert snap["status"] == "paused"
        assert snap["in_flight"] == []
        assert pending_of(state) == [1, 2, 3]
        assert g.seen == [0]

        # a post to a paused job is queued, not run
        g.post(rt, state, 4)
        metrics = rt.get_job_metrics(state.job_id)
        assert metrics["running"] == {}
        assert metrics["queue_depths"]["work.input"] == 4
        assert pending_of(state) == [1, 2, 3, 4]
        assert g.seen == [0]

        assert rt.resume_job(state.job_id) is True
        rt.complete_job(state.job_id)
        assert rt.wait_job(state.job_id, WAIT)
        assert state.status is JobStatus.COMPLETED
        assert g.seen == [0, 1, 2, 3, 4]  # exactly where it stopped, each once, in order
        assert state.shared_data["out"] == [0, 1, 2, 3, 4]

    def test_state_saved_right_after_pause_resumes_elsewhere(
        self, rt: Runtime, tmp_path: Any
    ) -> None:
        g = gated("pause-save", block=(2,))
        state = rt.exec(g.flow, keep_open=True)
        g.post(rt, state, 0, 1, 2, 3, 4)
        assert g.entered.wait(WAIT)
        pauser = threading.Thread(target=rt.pause_job, args=(state.job_id,))
        pauser.start()
        until(lambda: state.status is JobStatus.PAUSED, "the job to be paused")
        g.gate.set()  # activation 2 ends while pause_job waits for it
        pauser.join(WAIT)
        path = state.save(tmp_path / "paused.json")
        rt.cancel_job(state.job_id)  # the original stops here

        assert g.seen == [0, 1, 2]
        loaded = JobState.load(path)
        assert loaded.in_flight == []
        assert loaded.pending["work"] == {"input": [{"n": 3}, {"n": 4}]}
        # what activation 2 emitted is either consumed by the sink or still queued for it
        held = [p["n"] for p in loaded.pending.get("sink", {}).get("input", [])]
        assert loaded.shared_data.get("out", []) + held == [0, 1, 2]
        with Runtime(thread_pool_size=2) as rt2:
            resumed = rt2.exec(g.flow, job_state=loaded)
            rt2.complete_job(resumed.job_id)
            assert rt2.wait_job(resumed.job_id, WAIT)
            assert resumed.status is JobStatus.COMPLETED
        assert g.seen == [0, 1, 2, 3, 4]  # nothing ran twice, nothing was lost
        assert resumed.shared_data["out"] == [0, 1, 2, 3, 4]

    def test_pause_timeout_names_the_running_routines(self, rt: Runtime) -> None:
        g = gated("pause-timeout")
        state = rt.exec(g.flow, keep_open=True)
        g.post(rt, state, 0, 1)
        assert g.entered.wait(WAIT)
        with pytest.raises(PauseTimeoutError) as info:
            rt.pause_job(state.job_id, timeout=0.05)
        assert info.value.running == ["work"]
        assert info.value.job_id == state.job_id
        assert "work" in str(info.value)
        assert state.status is JobStatus.PAUSED  # it stays paused
        g.gate.set()
        assert g.left.wait(WAIT)
        until(lambda: rt.get_job_metrics(state.job_id)["running"] == {}, "activation 0 to end")
        assert g.seen == [0]
        rt.resume_job(state.job_id)
        rt.complete_job(state.job_id)
        assert rt.wait_job(state.job_id, WAIT)
        assert g.seen == [0, 1]

    def test_resume_of_a_job_that_is_not_paused_is_false(self, rt: Runtime) -> None:
        g = gated("not-paused", block=())
        state = rt.exec(g.flow, keep_open=True)
        assert rt.wait_job(state.job_id, WAIT)
        assert rt.resume_job(state.job_id) is False

    def test_pause_from_idle_and_complete_needs_resume(self, rt: Runtime) -> None:
        g = gated("pause-idle", block=())
        state = rt.exec(g.flow, keep_open=True)
        assert rt.wait_job(state.job_id, WAIT)
        assert state.status is JobStatus.IDLE
        rt.pause_job(state.job_id)
        assert state.status is JobStatus.PAUSED
        g.post(rt, state, 7)
        assert pending_of(state) == [7]
        with pytest.raises(IllegalTransitionError):
            rt.complete_job(state.job_id)
        rt.resume_job(state.job_id)
        assert rt.complete_job(state.job_id) is True
        assert rt.wait_job(state.job_id, WAIT)
        assert state.status is JobStatus.COMPLETED
        assert state.shared_data["out"] == [7]

    def test_paused_job_ignores_retry_and_timer_firing_until_resumed(
        self, rt: Runtime, clock: ManualClock
    ) -> None:
        from routilux import ErrorHandler, ErrorStrategy

        calls: list[int] = []
        flow = Flow(flow_id="pause-retry")
        r = Routine()
        r.add_slot("input")

        def logic(slot_data: Any, message: Any, job_state: Any) -> None:
            calls.append(1)
            if len(calls) == 1:
                raise ConnectionError("once")

        r.set_logic(logic)
        r.set_error_handler(ErrorHandler(strategy=ErrorStrategy.RETRY, retry_delay=5.0))
        flow.add_routine(r, "work")
        state = rt.exec(flow, {"x": 1})
        until(lambda: any(h.status == "retrying" for h in state.history()), "a retry")
        rt.pause_job(state.job_id)
        clock.advance(5.0)  # the retry comes due while paused: it waits, ready
        timer_barrier(rt)
        assert calls == [1]
        assert [f["retry_in"] for f in state.to_dict()["in_flight"]] == [0.0]
        rt.resume_job(state.job_id)
        assert rt.wait_job(state.job_id, WAIT)
        assert state.status is JobStatus.COMPLETED
        assert calls == [1, 1]


# -- cancel ----------------------------------------------------------------------------------


class TestCancel:
    def test_no_queued_activation_starts_after_cancel(self, rt: Runtime) -> None:
        """Four activations run (blocked) and 196 are queued; after cancel only the four
        running ones finish."""
        g = gated("cancel", block=tuple(range(200)), concurrency=4)
        state = rt.exec(g.flow, keep_open=True)
        g.post(rt, state, *range(200))
        until(lambda: len(g.seen) == 4, "four activations to be running")
        assert rt.cancel_job(state.job_id) is True
        assert state.status is JobStatus.CANCELLED
        g.gate.set()
        assert rt.wait_job(state.job_id, WAIT)
        until(lambda: rt.get_job_metrics(state.job_id)["running"] == {}, "workers to finish")
        assert sorted(g.seen) == [0, 1, 2, 3]
        assert state.discarded_emits == 4  # their emits went nowhere
        assert "out" not in state.shared_data
        assert rt.cancel_job(state.job_id) is False
        with pytest.raises(JobNotAcceptingWorkError):
            g.post(rt, state, 999)

    def test_cancel_under_load_starts_nothing_afterwards(self) -> None:
        """Many jobs of a recording logic; each is cancelled at some point while it runs.
        Whatever starts after ``cancel_job`` returns can only be an activation that was already
        handed to a worker (at most one per running task)."""
        flow = Flow(flow_id="cancel-load")
        r = Routine()
        r.add_slot("input")
        r.set_max_concurrency(2)
        started: dict[str, list[int]] = {}
        lock = threading.Lock()

        def logic(slot_data: Any, message: Any, job_state: Any) -> None:
            with lock:
                started[job_state.job_id].append(slot_data["input"][0]["n"])
            time.sleep(0.0005)  # simulated work

        r.set_logic(logic)
        flow.add_routine(r, "work")
        with Runtime(thread_pool_size=8) as rt:
            states = []
            for _ in range(12):
                s = rt.exec(flow, keep_open=True)
                started[s.job_id] = []
                for n in range(150):
                    rt.post(flow, "work", "input", {"n": n}, job_id=s.job_id)
                states.append(s)
            counts_at_cancel = {}
            for i, s in enumerate(states):
                until(lambda s=s, i=i: len(started[s.job_id]) >= 3 * i, "some progress")
                assert rt.cancel_job(s.job_id)
                with lock:
                    counts_at_cancel[s.job_id] = len(started[s.job_id])
            assert rt.wait_until_all_jobs_finished(WAIT)
            for s in states:
                assert s.status is JobStatus.CANCELLED
                until(lambda s=s: rt.get_job_metrics(s.job_id)["running"] == {}, "drain")
                assert len(started[s.job_id]) <= counts_at_cancel[s.job_id] + 2
                assert len(started[s.job_id]) < 150

    def test_cancel_clears_pending_retries_and_timers(
        self, rt: Runtime, clock: ManualClock
    ) -> None:
        from routilux import ErrorHandler, ErrorStrategy

        calls: list[int] = []
        flow = Flow(flow_id="cancel-retry")
        r = Routine()
        r.add_slot("input")

        def logic(slot_data: Any, message: Any, job_state: Any) -> None:
            calls.append(1)
            raise ConnectionError("always")

        r.set_logic(logic)
        r.set_error_handler(ErrorHandler(strategy=ErrorStrategy.RETRY, retry_delay=5.0))
        flow.add_routine(r, "work")
        state = rt.exec(flow, {"x": 1})
        until(lambda: any(h.status == "retrying" for h in state.history()), "a retry")
        assert rt.cancel_job(state.job_id)
        assert rt.wait_job(state.job_id, WAIT)
        clock.advance(60.0)
        timer_barrier(rt)
        assert calls == [1]
        assert state.status is JobStatus.CANCELLED


# -- timeouts --------------------------------------------------------------------------------


class TestJobTimeout:
    def test_flow_execution_timeout_fails_the_job(self, rt: Runtime, clock: ManualClock) -> None:
        g = gated("job-timeout", execution_timeout=30.0)
        state = rt.exec(g.flow, keep_open=True)
        g.post(rt, state, 0, 1)
        assert g.entered.wait(WAIT)
        clock.advance(29.0)
        timer_barrier(rt)
        assert state.status is JobStatus.RUNNING
        clock.advance(1.0)
        assert rt.wait_job(state.job_id, WAIT)  # settles though activation 0 still runs
        assert state.status is JobStatus.FAILED
        assert state.error_type == "JobTimeoutError"
        assert "30 s" in (state.error or "")
        assert state.error_routine is None
        assert not g.left.is_set()
        g.gate.set()
        assert g.left.wait(WAIT)
        until(lambda: state.discarded_emits == 1, "the late emit to be counted")
        assert g.seen == [0]  # payload 1 never ran
        assert "out" not in state.shared_data
        with pytest.raises(JobNotAcceptingWorkError):
            g.post(rt, state, 2)

    def test_exec_timeout_argument(self, rt: Runtime, clock: ManualClock) -> None:
        g = gated("exec-timeout")
        state = rt.exec(g.flow, keep_open=True, timeout=3.0)
        g.post(rt, state, 0)
        assert g.entered.wait(WAIT)
        clock.advance(3.0)
        assert rt.wait_job(state.job_id, WAIT)
        assert state.status is JobStatus.FAILED
        assert state.error_type == "JobTimeoutError"

    def test_job_that_finishes_in_time_is_not_failed_later(
        self, rt: Runtime, clock: ManualClock
    ) -> None:
        g = gated("in-time", block=(), execution_timeout=5.0)
        state = rt.exec(g.flow, keep_open=True)
        g.post(rt, state, 0)
        rt.complete_job(state.job_id)
        assert rt.wait_job(state.job_id, WAIT)
        clock.advance(10.0)
        timer_barrier(rt)
        assert state.status is JobStatus.COMPLETED


class TestRoutineTimeout:
    def test_timed_out_activation_does_not_hold_the_routine(
        self, rt: Runtime, clock: ManualClock
    ) -> None:
        """After a timeout (CONTINUE) the routine's queued input runs at once, while other
        routines of the job are still busy (the job has not drained)."""
        from routilux import ErrorHandler, ErrorStrategy

        g = gated("routine-timeout")
        work = g.flow.get_routine("work")
        work.set_config(timeout=2.0)
        work.set_error_handler(ErrorHandler(strategy=ErrorStrategy.CONTINUE))
        other_gate = threading.Event()
        _GATES.append(other_gate)
        busy = Routine()
        busy.add_slot("input")
        busy.set_logic(lambda sd, m, js: other_gate.wait(WAIT))
        g.flow.add_routine(busy, "busy")

        state = rt.exec(g.flow, keep_open=True)
        rt.post(g.flow, "busy", "input", {}, job_id=state.job_id)  # keeps the job busy
        g.post(rt, state, 0, 1, 2)
        assert g.entered.wait(WAIT)
        clock.advance(2.0)
        until(lambda: state.shared_data.get("out") == [1, 2], "the queued input to run")
        assert state.history("work")[0].status == "timed_out"
        other_gate.set()
        rt.complete_job(state.job_id)
        assert rt.wait_job(state.job_id, WAIT)
        assert state.status is JobStatus.COMPLETED
        g.gate.set()
        assert g.left.wait(WAIT)
        assert state.discarded_emits == 1
        assert state.shared_data["out"] == [1, 2]


# -- shutdown --------------------------------------------------------------------------------


class TestShutdown:
    def test_waits_for_in_flight_but_not_for_paused_or_kept_open_jobs(
        self, clock: ManualClock
    ) -> None:
        rt = Runtime(thread_pool_size=4, clock=clock)
        running = gated("sd-running")
        paused = gated("sd-paused", block=())
        idle = gated("sd-idle", block=())

        idle_state = rt.exec(idle.flow, keep_open=True)
        assert rt.wait_job(idle_state.job_id, WAIT)
        paused_state = rt.exec(paused.flow, keep_open=True)
        rt.pause_job(paused_state.job_id)
        paused.post(rt, paused_state, 5, 6)
        running_state = rt.exec(running.flow, keep_open=True)
        running.post(rt, running_state, 0)
        assert running.entered.wait(WAIT)

        result: list[bool] = []
        done = threading.Event()

        def shutdown() -> None:
            result.append(rt.shutdown(wait=True, timeout=WAIT))
            done.set()

        threading.Thread(target=shutdown).start()
        assert not done.wait(0.2)  # activation 0 is in flight
        running.gate.set()
        assert done.wait(WAIT)
        assert result == [True]
        assert running.left.is_set()
        assert running_state.shared_data["out"] == [0]
        assert paused_state.status is JobStatus.PAUSED
        assert pending_of(paused_state) == [5, 6]  # kept, ready to save
        assert idle_state.status is JobStatus.IDLE

    def test_shutdown_without_wait_cancels_running_jobs(self, clock: ManualClock) -> None:
        rt = Runtime(thread_pool_size=2, clock=clock)
        g = gated("sd-nowait")
        state = rt.exec(g.flow, keep_open=True)
        g.post(rt, state, 0, 1)
        assert g.entered.wait(WAIT)
        rt.shutdown(wait=False)
        assert state.status is JobStatus.CANCELLED
        g.gate.set()
        assert g.left.wait(WAIT)
        assert g.seen == [0]


# -- breakpoints -----------------------------------------------------------------------------


def breakpoint_flow(flow_id: str) -> Flow:
    flow = Flow(flow_id=flow_id)
    src = Routine()
    src.add_slot("input")
    src.add_event("item", ["n"])
    src.set_logic(
        lambda sd, m, js: [src.emit("item", n=n) for p in sd["input"] for n in p["ns"]]
    )
    bp = Routine()
    bp.add_slot("input")
    bp.add_event("output", ["n"])
    bp.set_logic(lambda sd, m, js: [bp.emit("output", n=p["n"]) for p in sd["input"]])
    bp.set_activation_policy(breakpoint_policy())
    sink = Routine()
    sink.add_slot("input")
    sink.set_logic(
        lambda sd, m, js: js.shared_data.setdefault("out", []).extend(p["n"] for p in sd["input"])
    )
    flow.add_routine(src, "src")
    flow.add_routine(bp, "bp")
    flow.add_routine(sink, "sink")
    flow.connect("src", "item", "bp", "input")
    flow.connect("bp", "output", "sink", "input")
    return flow


class TestBreakpoint:
    def test_held_data_is_kept_and_delivered_on_release(self, rt: Runtime) -> None:
        flow = breakpoint_flow("bp-release")
        state = rt.exec(flow, {"ns": [1, 2, 3]})
        until(lambda: state.status is JobStatus.PAUSED, "the breakpoint to hold")
        assert state.to_dict()["pending"] == {"bp": {"input": [{"n": 1}, {"n": 2}, {"n": 3}]}}
        assert "out" not in state.shared_data
        rt.release_breakpoint(state.job_id, "bp")
        assert rt.wait_job(state.job_id, WAIT)
        assert state.status is JobStatus.COMPLETED
        assert state.shared_data["out"] == [1, 2, 3]
        assert state.unconsumed == {}

    def test_resume_releases_the_breakpoint(self, rt: Runtime) -> None:
        flow = breakpoint_flow("bp-resume")
        state = rt.exec(flow, {"ns": [4, 5]})
        until(lambda: state.status is JobStatus.PAUSED, "the breakpoint to hold")
        assert rt.resume_job(state.job_id) is True
        assert rt.wait_job(state.job_id, WAIT)
        assert state.shared_data["out"] == [4, 5]

    def test_held_data_survives_save_and_load(self, rt: Runtime, tmp_path: Any) -> None:
        flow = breakpoint_flow("bp-save")
        state = rt.exec(flow, {"ns": [7, 8]})
        until(lambda: state.status is JobStatus.PAUSED, "the breakpoint to hold")
        path = state.save(tmp_path / "bp.json")
        with Runtime(thread_pool_size=2) as rt2:
            resumed = rt2.exec(flow, job_state=JobState.load(path))
            until(lambda: resumed.status is JobStatus.PAUSED, "the breakpoint to hold again")
            rt2.release_breakpoint(resumed.job_id, "bp")
            assert rt2.wait_job(resumed.job_id, WAIT)
            assert resumed.status is JobStatus.COMPLETED
            assert resumed.shared_data["out"] == [7, 8]
