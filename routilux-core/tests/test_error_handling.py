"""Error strategies (STOP, CONTINUE, RETRY, SKIP) against every kind of failure.

Failure kinds: an exception raised by logic, a routine running over its timeout, an exception
raised by the routine's activation policy, and an exception raised by the job's output handler
(called through ``routine.send_output``). Retry timing is driven by a :class:`ManualClock`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from routilux import (
    ErrorHandler,
    ErrorStrategy,
    Flow,
    JobState,
    JobStatus,
    ManualClock,
    Routine,
    Runtime,
    current_activation,
    custom_policy,
)
from routilux.errors import ConfigurationError, JobNotAcceptingWorkError
from routilux_testing import wait_for as until

WAIT = 10.0
ITEMS = ("a", "bad", "c")
KINDS = ("exception", "timeout", "policy", "output")
ROUTINE_TIMEOUT = 5.0


class SinkDown(RuntimeError):
    """What the test output handler raises."""


_GATES: list[threading.Event] = []
"""Gates of blocked (timed-out) activations, opened when each test ends."""


# -- helpers ---------------------------------------------------------------------------------




def timer_barrier(rt: Runtime) -> None:
    """Return once the timer thread has run every timer due at the clock's current time."""
    done = threading.Event()
    rt._timers.call_later(0.0, done.set)
    assert done.wait(WAIT), "timer thread did not catch up"


def statuses(state: JobState, routine_id: str) -> list[tuple[str, int]]:
    return [(r.status, r.attempt) for r in state.history(routine_id)]


def failures_of(state: JobState) -> list[tuple[str, int]]:
    """``work``'s history without its completed activations (of the other items)."""
    return [s for s in statuses(state, "work") if s[0] != "completed"]


def in_flight(state: JobState) -> list[dict[str, Any]]:
    return state.to_dict()["in_flight"]


def collected(state: JobState) -> list[str]:
    return list(state.shared_data.get("out", []))


class Scenario:
    """``src -> work -> sink``: ``src`` emits each of ``items``; ``work`` upper-cases one item
    per activation and fails on ``"bad"`` in the way ``kind`` says, for its first
    ``fail_attempts`` attempts; ``sink`` collects into ``shared_data["out"]``."""

    def __init__(
        self,
        kind: str,
        *,
        handler: ErrorHandler | None = None,
        flow_handler: ErrorHandler | None = None,
        fail_attempts: int = 1,
        configure: Callable[[Routine], None] | None = None,
    ) -> None:
        self.kind = kind
        self.fail_attempts = fail_attempts
        self.gate = threading.Event()
        _GATES.append(self.gate)
        self.entered = threading.Event()
        self.late_done = threading.Event()
        self.calls: list[tuple[str, int, int]] = []  # (x, attempt, activation seq)
        self.flow = Flow(flow_id=f"matrix-{kind}", error_handler=flow_handler)

        src = Routine()
        src.add_slot("input")
        src.add_event("item", ["x"])

        def src_logic(slot_data: Any, message: Any, job_state: Any) -> None:
            for params in slot_data["input"]:
                for x in params["items"]:
                    src.emit("item", x=x)

        src.set_logic(src_logic)

        work = Routine()
        work.add_slot("input")
        work.add_event("output", ["x"])
        work.set_logic(self._work_logic(work))
        if handler is not None:
            work.set_error_handler(handler)
        if kind == "timeout":
            work.set_config(timeout=ROUTINE_TIMEOUT)
        if kind == "policy":
            work.set_activation_policy(custom_policy(self._predicate, name="flaky_predicate"))
        if configure is not None:
            configure(work)

        sink = Routine()
        sink.add_slot("input")

        def sink_logic(slot_data: Any, message: Any, job_state: Any) -> None:
            for payload in slot_data["input"]:
                job_state.shared_data.setdefault("out", []).append(payload["x"])

        sink.set_logic(sink_logic)

        self.flow.add_routine(src, "src")
        self.flow.add_routine(work, "work")
        self.flow.add_routine(sink, "sink")
        self.flow.connect("src", "item", "work", "input")
        self.flow.connect("work", "output", "sink", "input")

    def _work_logic(self, work: Routine) -> Callable[[Any, Any, Any], None]:
        def logic(slot_data: Any, message: Any, job_state: Any) -> None:
            info = current_activation()
            assert info is not None
            for payload in slot_data["input"]:
                x = payload["x"]
                self.calls.append((x, info.attempt, info.activation_seq))
                failing = x == "bad" and info.attempt < self.fail_attempts
                if failing and self.kind == "exception":
                    raise ValueError(f"boom on {x}")
                if failing and self.kind == "timeout":
                    self.entered.set()
                    self.gate.wait(WAIT)
                    work.emit("output", x="late")  # from an abandoned activation
                    self.late_done.set()
                    return
                if self.kind == "output":
                    work.send_output("progress", x=x)
                work.emit("output", x=x.upper())

        return logic

    def _predicate(self, queued: dict[str, list[dict[str, Any]]], job_state: Any) -> Any:
        head = queued["input"][0]["x"]
        if head == "bad":
            seen = job_state.shared_data.setdefault("policy_failures", 0)
            if seen < self.fail_attempts:
                job_state.shared_data["policy_failures"] = seen + 1
                raise KeyError(f"predicate cannot decide on {head}")
        return {"input": 1}

    def output_handler(self, record: dict[str, Any]) -> None:
        info = current_activation()
        assert info is not None
        if record["data"]["x"] == "bad" and info.attempt < self.fail_attempts:
            raise SinkDown("the output sink is down")

    def start(self, rt: Runtime) -> JobState:
        """Run the items through a kept-open job and ask it to complete when drained."""
        state = rt.exec(self.flow, keep_open=True)
        if self.kind == "output":
            state.output_handler = self.output_handler
        rt.post(self.flow, "src", "input", {"items": list(ITEMS)}, job_id=state.job_id)
        rt.complete_job(state.job_id)
        return state

    def trigger(self, rt: Runtime, clock: ManualClock) -> None:
        """Make the failure happen (a timeout needs the clock moved past it)."""
        if self.kind == "timeout":
            assert self.entered.wait(WAIT)
            clock.advance(ROUTINE_TIMEOUT)
            timer_barrier(rt)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def rt(clock: ManualClock) -> Iterator[Runtime]:
    runtime = Runtime(thread_pool_size=4, clock=clock)
    yield runtime
    for gate in _GATES:
        gate.set()
    _GATES.clear()
    runtime.shutdown(wait=False)


def run_scenario(rt: Runtime, clock: ManualClock, scenario: Scenario) -> JobState:
    state = scenario.start(rt)
    scenario.trigger(rt, clock)
    assert rt.wait_job(state.job_id, WAIT), f"job did not settle: {state.status}"
    return state


def finish_abandoned(scenario: Scenario, state: JobState) -> None:
    """Let a timed-out activation return; its late emit must be dropped and counted."""
    if scenario.kind != "timeout":
        return
    assert not scenario.late_done.is_set()  # the job settled while the thread still ran
    scenario.gate.set()
    assert scenario.late_done.wait(WAIT)
    assert state.discarded_emits == 1
    assert "late" not in collected(state)


EXPECTED_ERROR = {
    "exception": ("ValueError", "boom on bad"),
    "timeout": ("RoutineTimeoutError", "ran longer than its timeout of 5 s"),
    "policy": ("ActivationPolicyError", "predicate cannot decide on bad"),
    "output": ("SinkDown", "the output sink is down"),
}
FAILED_STATUS = {"exception": "failed", "timeout": "timed_out", "policy": "failed",
                 "output": "failed"}


# -- the strategy x failure-kind matrix ------------------------------------------------------


class TestStop:
    @pytest.mark.parametrize("kind", KINDS)
    def test_job_fails_with_error_and_traceback(
        self, rt: Runtime, clock: ManualClock, kind: str
    ) -> None:
        scenario = Scenario(kind, handler=ErrorHandler(strategy=ErrorStrategy.STOP))
        state = run_scenario(rt, clock, scenario)
        error_type, text = EXPECTED_ERROR[kind]
        assert state.status is JobStatus.FAILED
        assert state.error_type == error_type
        assert text in (state.error or "")
        assert state.error_routine == "work"
        assert state.error_traceback and error_type in state.error_traceback
        if kind == "exception":
            assert "raise ValueError" in state.error_traceback  # the real frames
        if kind == "policy":
            assert "KeyError" in state.error_traceback  # the policy's own exception
        # the job stopped at the failure: "c" was never processed
        assert "C" not in collected(state)
        assert ("c", 0) not in [(x, a) for x, a, _ in scenario.calls]
        with pytest.raises(JobNotAcceptingWorkError):
            rt.post(scenario.flow, "src", "input", {"items": ["z"]}, job_id=state.job_id)
        finish_abandoned(scenario, state)

    def test_default_is_stop(self, rt: Runtime, clock: ManualClock) -> None:
        state = run_scenario(rt, clock, Scenario("exception"))
        assert state.status is JobStatus.FAILED
        assert state.error_type == "ValueError"

    def test_in_flight_activations_finish_but_their_emits_are_not_routed(
        self, rt: Runtime
    ) -> None:
        """Two branches: ``fail`` stops the job while ``slow`` is still running; ``slow``
        finishes, but what it emits afterwards goes nowhere and is counted."""
        slow_running = threading.Event()
        failed = threading.Event()
        slow_done = threading.Event()
        flow = Flow(flow_id="stop-inflight")

        slow = Routine()
        slow.add_slot("input")
        slow.add_event("output", ["v"])

        def slow_logic(slot_data: Any, message: Any, job_state: Any) -> None:
            slow_running.set()
            assert failed.wait(WAIT)
            until(lambda: job_state.status is JobStatus.FAILED, "the job to fail")
            slow.emit("output", v=1)
            slow.emit("output", v=2)
            job_state.shared_data["slow_finished"] = True
            slow_done.set()

        slow.set_logic(slow_logic)

        fail = Routine()
        fail.add_slot("input")

        def fail_logic(slot_data: Any, message: Any, job_state: Any) -> None:
            assert slow_running.wait(WAIT)
            failed.set()
            raise RuntimeError("fatal")

        fail.set_logic(fail_logic)
        sink = Routine()
        sink.add_slot("input")
        sink.set_logic(lambda sd, m, js: js.shared_log.append(sd))
        flow.add_routine(slow, "slow")
        flow.add_routine(fail, "fail")
        flow.add_routine(sink, "sink")
        flow.connect("slow", "output", "sink", "input")

        state = rt.exec(flow, {"go": True})
        assert slow_done.wait(WAIT)
        assert rt.wait_job(state.job_id, WAIT)
        assert state.status is JobStatus.FAILED
        assert state.error_routine == "fail"
        assert state.shared_data["slow_finished"] is True
        assert state.discarded_emits == 2
        assert state.shared_log == []
        assert rt.get_job_metrics(state.job_id)["discarded_emits"] == 2


class TestContinue:
    @pytest.mark.parametrize("kind", KINDS)
    def test_error_recorded_and_job_goes_on(
        self, rt: Runtime, clock: ManualClock, kind: str
    ) -> None:
        scenario = Scenario(kind, handler=ErrorHandler(strategy=ErrorStrategy.CONTINUE))
        state = run_scenario(rt, clock, scenario)
        error_type, text = EXPECTED_ERROR[kind]
        assert state.status is JobStatus.COMPLETED
        assert state.error is None
        failures = [r for r in state.history("work") if r.status == FAILED_STATUS[kind]]
        assert len(failures) == 1
        assert failures[0].error is not None and error_type in failures[0].error
        assert text in failures[0].error
        metrics = rt.get_job_metrics(state.job_id)["routines"]["work"]
        assert metrics["errors"] == 1
        assert metrics["skipped"] == 0
        if kind == "policy":
            # the policy decided again later: nothing was lost
            assert collected(state) == ["A", "BAD", "C"]
        else:
            assert collected(state) == ["A", "C"]
        if kind == "output":
            assert [r["data"]["x"] for r in state.output_log] == ["a", "bad", "c"]
        finish_abandoned(scenario, state)


class TestSkip:
    @pytest.mark.parametrize("kind", KINDS)
    def test_activation_marked_skipped_and_job_goes_on(
        self, rt: Runtime, clock: ManualClock, kind: str
    ) -> None:
        scenario = Scenario(kind, handler=ErrorHandler(strategy=ErrorStrategy.SKIP))
        state = run_scenario(rt, clock, scenario)
        error_type, _ = EXPECTED_ERROR[kind]
        assert state.status is JobStatus.COMPLETED
        assert state.error is None
        skipped = [r for r in state.history("work") if r.status == "skipped"]
        assert len(skipped) == 1
        assert skipped[0].error is not None and error_type in skipped[0].error
        assert not [r for r in state.history("work") if r.status in ("failed", "timed_out")]
        routine_state = state.get_routine_state("work")
        assert routine_state["skipped_activations"] == 1
        assert error_type in routine_state["last_skipped_error"]
        metrics = rt.get_job_metrics(state.job_id)["routines"]["work"]
        assert metrics["skipped"] == 1
        assert metrics["errors"] == 0
        expected = ["A", "BAD", "C"] if kind == "policy" else ["A", "C"]
        assert collected(state) == expected
        finish_abandoned(scenario, state)


class TestRetryMatrix:
    @pytest.mark.parametrize("kind", ["exception", "timeout", "output"])
    def test_activation_reruns_with_same_input(
        self, rt: Runtime, clock: ManualClock, kind: str
    ) -> None:
        scenario = Scenario(
            kind,
            handler=ErrorHandler(strategy=ErrorStrategy.RETRY, max_retries=2, retry_delay=0.0),
        )
        state = run_scenario(rt, clock, scenario)
        assert state.status is JobStatus.COMPLETED, state.error
        assert sorted(collected(state)) == ["A", "BAD", "C"]  # the retry may come after C
        bad = [(attempt, seq) for x, attempt, seq in scenario.calls if x == "bad"]
        assert [a for a, _ in bad] == [0, 1]
        assert bad[0][1] == bad[1][1]  # one activation (same input), two attempts
        history = statuses(state, "work")
        assert ("retrying", 0) in history
        assert ("completed", 1) in history
        assert rt.get_job_metrics(state.job_id)["routines"]["work"]["retries"] == 1
        finish_abandoned(scenario, state)

    def test_policy_failure_has_no_input_to_rerun_so_the_fallback_applies(
        self, rt: Runtime, clock: ManualClock
    ) -> None:
        scenario = Scenario(
            "policy",
            handler=ErrorHandler(strategy=ErrorStrategy.RETRY, max_retries=3, retry_delay=0.0),
        )
        state = run_scenario(rt, clock, scenario)
        assert state.status is JobStatus.FAILED
        assert state.error_type == "ActivationPolicyError"
        assert not [r for r in state.history("work") if r.status == "retrying"]

    def test_policy_failure_of_an_optional_routine_continues(
        self, rt: Runtime, clock: ManualClock
    ) -> None:
        scenario = Scenario(
            "policy", configure=lambda r: r.set_as_optional(max_retries=3, retry_delay=0.0)
        )
        state = run_scenario(rt, clock, scenario)
        assert state.status is JobStatus.COMPLETED
        assert statuses(state, "work").count(("failed", 0)) == 1
        assert sorted(collected(state)) == ["A", "BAD", "C"]


# -- handler precedence ----------------------------------------------------------------------


class TestPrecedence:
    def test_routine_handler_beats_flow_handler(self, rt: Runtime, clock: ManualClock) -> None:
        scenario = Scenario(
            "exception",
            handler=ErrorHandler(strategy=ErrorStrategy.STOP),
            flow_handler=ErrorHandler(strategy=ErrorStrategy.CONTINUE),
        )
        assert run_scenario(rt, clock, scenario).status is JobStatus.FAILED

        scenario = Scenario(
            "exception",
            handler=ErrorHandler(strategy=ErrorStrategy.SKIP),
            flow_handler=ErrorHandler(strategy=ErrorStrategy.STOP),
        )
        state = run_scenario(rt, clock, scenario)
        assert state.status is JobStatus.COMPLETED
        assert ("skipped", 0) in statuses(state, "work")

    def test_flow_handler_beats_default(self, rt: Runtime, clock: ManualClock) -> None:
        scenario = Scenario("exception", flow_handler=ErrorHandler(strategy=ErrorStrategy.CONTINUE))
        state = run_scenario(rt, clock, scenario)
        assert state.status is JobStatus.COMPLETED
        assert collected(state) == ["A", "C"]

    def test_set_as_critical_fails_the_job_after_its_retries_whatever_the_flow_says(
        self, rt: Runtime, clock: ManualClock
    ) -> None:
        scenario = Scenario(
            "exception",
            fail_attempts=99,
            flow_handler=ErrorHandler(strategy=ErrorStrategy.CONTINUE),
            configure=lambda r: r.set_as_critical(max_retries=2, retry_delay=0.0),
        )
        state = run_scenario(rt, clock, scenario)
        assert state.status is JobStatus.FAILED
        assert [a for x, a, _ in scenario.calls if x == "bad"] == [0, 1, 2]
        assert failures_of(state) == [("retrying", 0), ("retrying", 1), ("failed", 2)]

    def test_set_as_optional_continues_after_failures(
        self, rt: Runtime, clock: ManualClock
    ) -> None:
        scenario = Scenario("exception", fail_attempts=99, configure=lambda r: r.set_as_optional())
        state = run_scenario(rt, clock, scenario)
        assert state.status is JobStatus.COMPLETED
        assert collected(state) == ["A", "C"]


# -- retries: exhaustion, retryable exceptions -----------------------------------------------


class TestRetryFallback:
    def test_exhausted_retries_fall_through_to_stop(self, rt: Runtime, clock: ManualClock) -> None:
        scenario = Scenario(
            "exception",
            fail_attempts=99,
            handler=ErrorHandler(strategy=ErrorStrategy.RETRY, max_retries=2, retry_delay=0.0),
        )
        state = run_scenario(rt, clock, scenario)
        assert state.status is JobStatus.FAILED
        assert state.error_type == "ValueError"
        assert [a for x, a, _ in scenario.calls if x == "bad"] == [0, 1, 2]
        assert failures_of(state) == [("retrying", 0), ("retrying", 1), ("failed", 2)]

    def test_exhausted_retries_of_an_optional_routine_continue(
        self, rt: Runtime, clock: ManualClock
    ) -> None:
        scenario = Scenario(
            "exception",
            fail_attempts=99,
            configure=lambda r: r.set_as_optional(max_retries=2, retry_delay=0.0),
        )
        state = run_scenario(rt, clock, scenario)
        assert state.status is JobStatus.COMPLETED
        assert [a for x, a, _ in scenario.calls if x == "bad"] == [0, 1, 2]
        assert ("failed", 2) in statuses(state, "work")
        assert collected(state) == ["A", "C"]

    def test_non_retryable_exception_is_not_retried(self, rt: Runtime, clock: ManualClock) -> None:
        scenario = Scenario(
            "exception",
            handler=ErrorHandler(
                strategy=ErrorStrategy.RETRY, retry_delay=0.0,
                retryable_exceptions=(ConnectionError,),
            ),
        )
        state = run_scenario(rt, clock, scenario)
        assert state.status is JobStatus.FAILED
        assert [a for x, a, _ in scenario.calls if x == "bad"] == [0]
        assert not [r for r in state.history("work") if r.status == "retrying"]

    def test_non_retryable_exception_of_an_optional_routine_continues(
        self, rt: Runtime, clock: ManualClock
    ) -> None:
        scenario = Scenario(
            "exception",
            configure=lambda r: r.set_as_optional(
                max_retries=3, retry_delay=0.0, retryable_exceptions=(ConnectionError,)
            ),
        )
        state = run_scenario(rt, clock, scenario)
        assert state.status is JobStatus.COMPLETED
        assert [a for x, a, _ in scenario.calls if x == "bad"] == [0]
        assert collected(state) == ["A", "C"]

    def test_retryable_exception_is_retried(self, rt: Runtime, clock: ManualClock) -> None:
        scenario = Scenario(
            "exception",
            handler=ErrorHandler(
                strategy=ErrorStrategy.RETRY, retry_delay=0.0, retryable_exceptions=ValueError
            ),
        )
        state = run_scenario(rt, clock, scenario)
        assert state.status is JobStatus.COMPLETED
        assert [a for x, a, _ in scenario.calls if x == "bad"] == [0, 1]


# -- retries: timing on a timer, never on a worker --------------------------------------------


def failing_flow(
    fail_attempts: int, handler: ErrorHandler, flow_id: str = "retry"
) -> tuple[Flow, list[tuple[dict[str, Any], int]]]:
    """One routine that raises for its first ``fail_attempts`` attempts of every activation
    and records ``(slot_data, attempt)`` per call."""
    calls: list[tuple[dict[str, Any], int]] = []
    flow = Flow(flow_id=flow_id)
    r = Routine()
    r.add_slot("input")

    def logic(slot_data: Any, message: Any, job_state: Any) -> None:
        info = current_activation()
        assert info is not None
        calls.append((slot_data, info.attempt))
        job_state.shared_data.setdefault("attempts", []).append(info.attempt)
        if info.attempt < fail_attempts:
            raise ConnectionError(f"flaky, attempt {info.attempt}")
        job_state.shared_data["done"] = slot_data["input"][0]

    r.set_logic(logic)
    r.set_error_handler(handler)
    flow.add_routine(r, "work")
    return flow, calls


def retrying_records(state: JobState) -> int:
    return sum(1 for r in state.history() if r.status == "retrying")


class TestRetryTiming:
    def test_backoff_delays_on_the_clock(self, rt: Runtime, clock: ManualClock) -> None:
        handler = ErrorHandler(
            strategy=ErrorStrategy.RETRY, max_retries=3, retry_delay=1.0, retry_backoff=2.0
        )
        flow, calls = failing_flow(3, handler)
        state = rt.exec(flow, {"n": 7})
        # retry n waits 1 * 2 ** (n - 1): 1 s, 2 s, 4 s
        for n, delay in enumerate([1.0, 2.0, 4.0], start=1):
            until(lambda n=n: retrying_records(state) == n, f"retry {n} to be armed")
            assert [f["retry_in"] for f in in_flight(state)] == [delay]
            clock.advance(delay - 0.25)
            timer_barrier(rt)
            assert len(calls) == n  # not yet
            assert [f["retry_in"] for f in in_flight(state)] == [0.25]
            clock.advance(0.25)
            until(lambda n=n: len(calls) == n + 1, f"retry {n} to run")
        assert rt.wait_job(state.job_id, WAIT)
        assert state.status is JobStatus.COMPLETED
        assert [a for _, a in calls] == [0, 1, 2, 3]
        assert all(sd == {"input": [{"n": 7}]} for sd, _ in calls)  # the same input each time
        assert state.shared_data["done"] == {"n": 7}
        assert statuses(state, "work") == [
            ("retrying", 0), ("retrying", 1), ("retrying", 2), ("completed", 3),
        ]
        assert rt.get_job_metrics(state.job_id)["routines"]["work"]["retries"] == 3

    def test_max_delay_caps_the_backoff(self, rt: Runtime, clock: ManualClock) -> None:
        handler = ErrorHandler(
            strategy=ErrorStrategy.RETRY, max_retries=3, retry_delay=2.0, retry_backoff=10.0,
            max_delay=5.0,
        )
        flow, _ = failing_flow(3, handler)
        state = rt.exec(flow, {"n": 1})
        for n, delay in enumerate([2.0, 5.0, 5.0], start=1):
            until(lambda n=n: retrying_records(state) == n, f"retry {n} to be armed")
            assert [f["retry_in"] for f in in_flight(state)] == [delay]
            clock.advance(delay)
        assert rt.wait_job(state.job_id, WAIT)
        assert state.status is JobStatus.COMPLETED

    def test_a_waiting_retry_blocks_no_worker(self, clock: ManualClock) -> None:
        """One worker: while job A waits for its retry, job B runs to completion on it."""
        with Runtime(thread_pool_size=1, clock=clock) as rt:
            handler = ErrorHandler(strategy=ErrorStrategy.RETRY, max_retries=1, retry_delay=60.0)
            flow_a, calls_a = failing_flow(1, handler, "a")
            flow_b, _ = failing_flow(0, handler, "b")
            a = rt.exec(flow_a, {"job": "a"})
            until(lambda: retrying_records(a) == 1, "job a's retry to be armed")
            b = rt.exec(flow_b, {"job": "b"})
            assert rt.wait_job(b.job_id, WAIT)
            assert b.status is JobStatus.COMPLETED
            assert a.status is JobStatus.RUNNING  # still waiting for its retry
            assert len(calls_a) == 1
            clock.advance(60.0)
            assert rt.wait_job(a.job_id, WAIT)
            assert a.status is JobStatus.COMPLETED
            assert [at for _, at in calls_a] == [0, 1]

    def test_attempts_are_counted_per_activation(self, rt: Runtime) -> None:
        """Each payload fails once and max_retries is 1: a counter shared by the routine's
        activations would exhaust on the second payload."""
        flow = Flow(flow_id="per-activation")
        r = Routine()
        r.add_slot("input")

        def logic(slot_data: Any, message: Any, job_state: Any) -> None:
            info = current_activation()
            assert info is not None
            k = slot_data["input"][0]["k"]
            job_state.shared_log.append((k, info.attempt))
            if info.attempt == 0:
                raise ConnectionError(k)

        r.set_logic(logic)
        r.set_error_handler(
            ErrorHandler(strategy=ErrorStrategy.RETRY, max_retries=1, retry_delay=0.0)
        )
        flow.add_routine(r, "work")
        state = rt.exec(flow, keep_open=True)
        for k in ("p", "q", "r"):
            rt.post(flow, "work", "input", {"k": k}, job_id=state.job_id)
        rt.complete_job(state.job_id)
        assert rt.wait_job(state.job_id, WAIT)
        assert state.status is JobStatus.COMPLETED
        for k in ("p", "q", "r"):
            assert [a for kk, a in state.shared_log if kk == k] == [0, 1]


class TestRetryIsolation:
    @settings(max_examples=15, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(failures=st.lists(st.integers(min_value=0, max_value=4), min_size=2, max_size=12))
    def test_concurrent_jobs_never_share_attempt_counters(self, failures: list[int]) -> None:
        """Job i fails ``failures[i]`` times; with max_retries=3 it completes iff that is <= 3,
        whatever the other jobs running on the same flow at the same time do."""
        handler = ErrorHandler(strategy=ErrorStrategy.RETRY, max_retries=3, retry_delay=0.0)
        flow = Flow(flow_id="isolation")
        r = Routine()
        r.add_slot("input")

        def logic(slot_data: Any, message: Any, job_state: Any) -> None:
            info = current_activation()
            assert info is not None
            job_state.shared_data.setdefault("attempts", []).append(info.attempt)
            if info.attempt < slot_data["input"][0]["fail"]:
                raise ConnectionError("flaky")

        r.set_logic(logic)
        r.set_error_handler(handler)
        flow.add_routine(r, "work")
        with Runtime(thread_pool_size=6) as rt:
            states = [rt.exec(flow, {"fail": f}) for f in failures]
            assert rt.wait_until_all_jobs_finished(WAIT)
            for f, state in zip(failures, states, strict=True):
                runs = min(f, 3) + 1
                assert state.shared_data["attempts"] == list(range(runs))
                expected = JobStatus.COMPLETED if f <= 3 else JobStatus.FAILED
                assert state.status is expected
                assert [r.attempt for r in state.history("work")] == list(range(runs))
                metrics = rt.get_job_metrics(state.job_id)["routines"]["work"]
                assert metrics["retries"] == min(f, 3)


class TestRetrySaveLoad:
    def test_pending_retry_survives_save_and_load(
        self, clock: ManualClock, tmp_path: Any
    ) -> None:
        handler = ErrorHandler(strategy=ErrorStrategy.RETRY, max_retries=2, retry_delay=10.0)
        flow, calls = failing_flow(1, handler, "saved-retry")
        path = tmp_path / "job.json"
        with Runtime(thread_pool_size=2, clock=clock) as rt1:
            state = rt1.exec(flow, {"order": 42})
            until(lambda: retrying_records(state) == 1, "the retry to be armed")
            clock.advance(4.0)
            timer_barrier(rt1)
            rt1.pause_job(state.job_id)
            state.save(path)
        assert len(calls) == 1

        loaded = JobState.load(path)
        assert loaded.status is JobStatus.PAUSED
        (item,) = loaded.in_flight
        assert item["attempt"] == 1
        assert item["retry_in"] == 6.0

        clock2 = ManualClock()
        with Runtime(thread_pool_size=2, clock=clock2) as rt2:
            resumed = rt2.exec(flow, job_state=loaded)
            clock2.advance(5.5)
            timer_barrier(rt2)
            assert len(calls) == 1  # 6 s were left: not yet
            clock2.advance(0.5)
            assert rt2.wait_job(resumed.job_id, WAIT)
            assert resumed.status is JobStatus.COMPLETED
        assert [a for _, a in calls] == [0, 1]
        assert calls[1][0] == {"input": [{"order": 42}]}
        assert resumed.shared_data["attempts"] == [0, 1]  # counted across both runtimes
        assert statuses(resumed, "work") == [("retrying", 0), ("completed", 1)]


# -- the handler object ----------------------------------------------------------------------


class TestErrorHandler:
    def test_delay_formula(self) -> None:
        h = ErrorHandler(strategy="retry", retry_delay=0.5, retry_backoff=3.0)
        assert [h.delay_for(n) for n in (1, 2, 3)] == [0.5, 1.5, 4.5]

    def test_max_delay_caps(self) -> None:
        h = ErrorHandler(strategy="retry", retry_delay=1.0, retry_backoff=3.0, max_delay=5.0)
        assert [h.delay_for(n) for n in (1, 2, 3, 4)] == [1.0, 3.0, 5.0, 5.0]

    def test_jitter_scales_the_capped_delay_by_half_to_one(self) -> None:
        h = ErrorHandler(strategy="retry", retry_delay=4.0, retry_backoff=2.0, max_delay=6.0,
                         jitter=True)
        for n in (1, 2, 3):
            base = min(4.0 * 2.0 ** (n - 1), 6.0)
            for _ in range(50):
                assert 0.5 * base <= h.delay_for(n) <= base

    def test_decide(self) -> None:
        h = ErrorHandler(strategy=ErrorStrategy.RETRY, max_retries=2,
                         retryable_exceptions=(ConnectionError,))
        assert h.decide(ConnectionError(), 0) is ErrorStrategy.RETRY
        assert h.decide(ConnectionError(), 1) is ErrorStrategy.RETRY
        assert h.decide(ConnectionError(), 2) is ErrorStrategy.STOP
        assert h.decide(ValueError(), 0) is ErrorStrategy.STOP
        optional = ErrorHandler(strategy="retry", max_retries=1, fallback="continue")
        assert optional.decide(ValueError(), 1) is ErrorStrategy.CONTINUE
        critical = ErrorHandler(strategy="retry", max_retries=0, fallback="continue",
                                is_critical=True)
        assert critical.decide(ValueError(), 0) is ErrorStrategy.STOP
        assert ErrorHandler(strategy="skip").decide(ValueError(), 9) is ErrorStrategy.SKIP

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"strategy": "no spaces allowed"},
            {"strategy": 3},
            {"retry_delay": -1},
            {"max_retries": -1},
            {"max_delay": -0.5},
            {"timeout": 0},
            {"timeout": "soon"},
            {"retryable_exceptions": ("ValueError",)},
            {"strategy": "retry", "fallback": "retry"},
        ],
    )
    def test_bad_configuration_is_a_typed_error(self, kwargs: dict[str, Any]) -> None:
        with pytest.raises(ConfigurationError):
            ErrorHandler(**kwargs)


class TestHandlerTimeout:
    def test_flow_handler_timeout_applies_to_routines_without_one(
        self, rt: Runtime, clock: ManualClock
    ) -> None:
        scenario = Scenario(
            "timeout",
            flow_handler=ErrorHandler(strategy=ErrorStrategy.CONTINUE, timeout=30.0),
            configure=lambda r: r.set_config(timeout=None),
        )
        state = scenario.start(rt)
        assert scenario.entered.wait(WAIT)
        clock.advance(29.0)
        timer_barrier(rt)
        assert not [r for r in state.history("work") if r.status == "timed_out"]
        clock.advance(1.0)
        assert rt.wait_job(state.job_id, WAIT)
        assert state.status is JobStatus.COMPLETED
        (record,) = [r for r in state.history("work") if r.status == "timed_out"]
        assert record.error is not None and "timeout of 30 s" in record.error
        finish_abandoned(scenario, state)

    def test_routine_config_timeout_wins_over_handler_timeout(
        self, rt: Runtime, clock: ManualClock
    ) -> None:
        scenario = Scenario(
            "timeout", handler=ErrorHandler(strategy=ErrorStrategy.CONTINUE, timeout=100.0)
        )
        state = run_scenario(rt, clock, scenario)  # advances ROUTINE_TIMEOUT only
        assert state.status is JobStatus.COMPLETED
        assert rt.get_job_metrics(state.job_id)["routines"]["work"]["timeouts"] == 1
        finish_abandoned(scenario, state)
