"""run_flow, RoutineHarness, the assertion helpers and wait_until_quiet."""

from __future__ import annotations

import threading
import types
from typing import Any

import pytest
from routilux import (
    ErrorHandler,
    Flow,
    JobStatus,
    ManualClock,
    Routine,
    Runtime,
    batch_size_policy,
    time_interval_policy,
)
from routilux_builtins import Batcher, Filter
from routilux_testing import (
    RoutineHarness,
    assert_completed,
    assert_emitted,
    assert_routine_state,
    format_job_report,
    run_flow,
    wait_until_quiet,
)


class Counter(Routine):
    """Counts payloads in its routine state and emits the running total."""

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("total", ["total"])
        self.set_logic(self._run)

    def _run(self, slot_data: dict[str, list[dict[str, Any]]], message: Any, state: Any) -> None:
        step = self.get_config("step", 1)
        for _ in slot_data["input"]:
            total = state.get_routine_state("routine", {}).get("total", 0) + step
            state.update_routine_state("routine", {"total": total})
            self.emit("total", total=total)


class Ticker(Routine):
    """A source: emits ``entry_params["times"]`` ticks when the job starts."""

    def __init__(self) -> None:
        super().__init__()
        self.add_event("tick", ["i"])
        self.set_logic(self._run)

    def _run(self, slot_data: dict[str, list[dict[str, Any]]], message: Any, state: Any) -> None:
        for i in range(state.entry_params.get("times", 1)):
            self.emit("tick", i=i)


class TestRunFlow:
    def test_returns_the_completed_state(self, lib: types.SimpleNamespace) -> None:
        state = run_flow(lib.linear_flow(), {"count": 2})
        assert state.status is JobStatus.COMPLETED
        assert sorted(state.shared_log) == [["a", 0], ["a", 1], ["b", 0], ["b", 2]]

    def test_runs_by_name_in_the_given_runtime(
        self, lib: types.SimpleNamespace, routilux_runtime: Runtime, routilux_flow_registry: Any
    ) -> None:
        routilux_flow_registry.register(lib.linear_flow())
        state = run_flow("linear", {"count": 1}, runtime=routilux_runtime)
        assert routilux_runtime.get_job(state.job_id) is state

    def test_a_name_needs_a_runtime(self) -> None:
        with pytest.raises(TypeError, match="needs a Flow object"):
            run_flow("linear")

    def test_failure_raises_a_readable_report(self, lib: types.SimpleNamespace) -> None:
        flow = Flow("pay")
        flow.add_routine(lib.Boom(), "charge")
        with pytest.raises(AssertionError) as info:
            run_flow(flow, {"n": 1})
        text = str(info.value)
        assert "job did not complete" in text
        assert "flow 'pay': failed" in text
        assert "error in routine 'charge': ValueError: payment refused" in text
        assert "charge: activations=1 errors=1 retries=0" in text   # metrics
        assert "charge failed attempt=0" in text                    # history tail
        assert "Traceback (most recent call last)" in text

    def test_timeout_reports_and_cancels_the_job(
        self, lib: types.SimpleNamespace, routilux_runtime: Runtime
    ) -> None:
        release = threading.Event()
        blocker = lib.Double()
        blocker.set_logic(lambda sd, pm, js: release.wait(5))
        flow = Flow("slow")
        flow.add_routine(blocker, "slow")
        try:
            with pytest.raises(AssertionError) as info:
                run_flow(flow, {"n": 1}, timeout=0.05, runtime=routilux_runtime)
        finally:
            release.set()
        assert "did not finish within 0.05 s (cancelled now)" in str(info.value)
        assert "running now: {'slow': 1}" in str(info.value)
        assert routilux_runtime.list_jobs()[0].status is JobStatus.CANCELLED


class TestAssertions:
    def test_assert_completed(self, lib: types.SimpleNamespace, routilux_runtime: Runtime) -> None:
        assert_completed(run_flow(lib.linear_flow(), {"count": 1}))
        flow = Flow("pay")
        flow.add_routine(lib.Boom(), "charge")
        state = routilux_runtime.exec(flow, {"n": 1})
        assert routilux_runtime.wait_job(state.job_id, timeout=5)
        with pytest.raises(AssertionError, match=r"(?s)it is failed.*payment refused"):
            assert_completed(state, routilux_runtime)

    def test_assert_routine_state(self, lib: types.SimpleNamespace) -> None:
        state = run_flow(lib.fan_flow(), {"count": 3})
        assert_routine_state(state, "join", {"calls": 3})
        with pytest.raises(AssertionError) as info:
            assert_routine_state(state, "join", {"calls": 2, "other": 1})
        assert "'calls': expected 2, got 3" in str(info.value)
        assert "'other': missing" in str(info.value)
        with pytest.raises(AssertionError, match="has no state"):
            assert_routine_state(state, "a", {})

    def test_assert_emitted_exact_count_partial(self) -> None:
        with RoutineHarness(Counter()) as h:
            h.feed("input", x=1).feed("input", x=2)
            assert assert_emitted(h, "total") == [{"total": 1}, {"total": 2}]
            assert_emitted(h, "total", {"total": 1}, {"total": 2})
            assert_emitted(h, "total", count=2)
            with pytest.raises(AssertionError, match="expected 3 payload"):
                assert_emitted(h, "total", count=3)
            with pytest.raises(AssertionError, match="differ"):
                assert_emitted(h, "total", {"total": 2}, {"total": 1})
            with pytest.raises(AssertionError, match="differ"):
                assert_emitted(h, "total", {"total": 1})

    def test_assert_emitted_partial_compares_the_expected_keys(self) -> None:
        with RoutineHarness(Filter.configured(when="n > `0`")) as h:
            h.feed("input", n=1, noise="x")
            assert_emitted(h, "passed", {"n": 1}, partial=True)
            with pytest.raises(AssertionError, match="compared on the expected keys"):
                assert_emitted(h, "passed", {"n": 2}, partial=True)

    def test_assert_emitted_nothing_and_job_context(self, lib: types.SimpleNamespace) -> None:
        with RoutineHarness(lib.Boom()) as h:
            h.feed("input", n=1)
            assert_emitted(h, "output", count=0)
            with pytest.raises(AssertionError) as info:
                assert_emitted(h, "output")
        text = str(info.value)
        assert "nothing was emitted on 'output'" in text
        assert "emitted per event: {'output': 0}" in text
        assert "ValueError: payment refused" in text   # the failed job's report

    def test_assert_emitted_rejects_a_job_state(self, lib: types.SimpleNamespace) -> None:
        with pytest.raises(TypeError, match="RoutineHarness"):
            assert_emitted(run_flow(lib.linear_flow(), {"count": 1}), "output")


class TestRoutineHarness:
    def test_feeds_slots_and_captures_per_event(self) -> None:
        with RoutineHarness(Filter.configured(when="n > `1`")) as h:
            h.feed("input", {"n": 2}).feed("input", n=0).feed_many("input", [{"n": 5}])
            assert h.events == {"passed": [{"n": 2}, {"n": 5}], "rejected": [{"n": 0}]}
            assert h.emitted("passed") == [{"n": 2}, {"n": 5}]
            assert [r.status for r in h.history] == ["completed"] * 3
            h.clear()
            assert h.events == {"passed": [], "rejected": []}
            with pytest.raises(KeyError, match="no event 'nope'"):
                h.emitted("nope")

    def test_uses_the_routines_config_and_keeps_routine_state(self) -> None:
        counter = Counter()
        counter.set_config(step=10)
        with RoutineHarness(counter) as h:
            h.feed("input", x=1).feed("input", x=2)
            assert h.state == {"total": 20}
            assert h.emitted("total") == [{"total": 10}, {"total": 20}]

    def test_keeps_the_activation_policy_and_flushes_on_finish(self) -> None:
        counter = Counter()
        counter.set_activation_policy(batch_size_policy(2))
        with RoutineHarness(counter) as h:
            h.feed_many("input", [{"x": 1}, {"x": 2}, {"x": 3}])
            assert h.emitted("total") == [{"total": 1}, {"total": 2}]   # one batch of 2
            state = h.finish()
            assert state.status is JobStatus.COMPLETED
            assert h.emitted("total")[-1] == {"total": 3}                 # partial batch
            assert [r.status for r in h.history] == ["completed", "completed"]

    def test_error_handler_applies(self, lib: types.SimpleNamespace) -> None:
        with RoutineHarness(lib.Boom(), error_handler=ErrorHandler(strategy="skip")) as h:
            h.feed("input", n=1).feed("input", n=2)
            assert [r.status for r in h.history] == ["skipped", "skipped"]
            assert h.state["skipped_activations"] == 2
            assert h.job_state.status is JobStatus.IDLE

    def test_time_based_routine_on_a_manual_clock(self) -> None:
        clock = ManualClock()
        with RoutineHarness(Batcher.configured(size=3, max_wait=5), clock=clock) as h:
            h.feed_many("input", [{"i": 1}, {"i": 2}])
            assert_emitted(h, "batch", count=0)
            h.advance(4.9)
            assert_emitted(h, "batch", count=0)
            h.advance(0.1)
            assert_emitted(h, "batch", {"items": [{"i": 1}, {"i": 2}], "size": 2,
                                        "reason": "time"})

    def test_advance_needs_a_clock(self) -> None:
        with RoutineHarness(Counter()) as h, pytest.raises(TypeError, match="manual clock"):
            h.advance(1)

    def test_source_routine_runs_at_start(self) -> None:
        with RoutineHarness(Ticker(), entry_params={"times": 3}) as h:
            assert h.emitted("tick") == [{"i": 0}, {"i": 1}, {"i": 2}]
        with pytest.raises(TypeError, match="sources"):
            RoutineHarness(Counter(), entry_params={"x": 1})

    def test_in_the_test_runtime_with_its_clock(
        self, routilux_runtime: Runtime, routilux_clock: ManualClock
    ) -> None:
        counter = Counter()
        counter.set_activation_policy(time_interval_policy(2))
        h = RoutineHarness(counter, runtime=routilux_runtime, clock=routilux_clock)
        h.feed("input", x=1).feed("input", x=2).feed("input", x=3)
        assert h.emitted("total") == [{"total": 1}]
        h.advance(2)
        assert h.emitted("total") == [{"total": 1}, {"total": 2}, {"total": 3}]
        assert h.finish().status is JobStatus.COMPLETED
        h.close()
        assert routilux_runtime.list_jobs()[0] is h.job_state   # ran in the given runtime

    def test_close_cancels_an_open_job(self) -> None:
        h = RoutineHarness(Counter())
        h.close()
        assert h.job_state.status is JobStatus.CANCELLED
        assert "cancelled" in repr(h)


class TestWaitUntilQuiet:
    def test_returns_while_a_timer_is_armed(
        self, routilux_runtime: Runtime, routilux_clock: ManualClock, lib: types.SimpleNamespace
    ) -> None:
        double = lib.Double()
        double.set_activation_policy(time_interval_policy(3))
        flow = Flow("t")
        flow.add_routine(double, "d")
        # Kept open, so the second payload surely arrives after the first one ran (an entry
        # payload's job could complete before a post reached it).
        state = routilux_runtime.exec(flow, keep_open=True)
        routilux_runtime.post(flow, "d", "input", {"n": 1}, job_id=state.job_id)
        assert wait_until_quiet(routilux_runtime, state) is state
        assert (state.status, state.shared_log) == (JobStatus.IDLE, [["d", 1]])
        routilux_runtime.post(flow, "d", "input", {"n": 2}, job_id=state.job_id)
        assert wait_until_quiet(routilux_runtime, state) is state
        assert state.status is JobStatus.RUNNING          # the timer keeps it running
        assert state.shared_log == [["d", 1]]
        routilux_clock.advance(3)
        wait_until_quiet(routilux_runtime, state.job_id)
        assert state.shared_log == [["d", 1], ["d", 2]]
        assert routilux_runtime.complete_job(state.job_id)
        assert routilux_runtime.wait_job(state.job_id, 10)
        assert state.status is JobStatus.COMPLETED

    def test_times_out_with_a_report(
        self, routilux_runtime: Runtime, lib: types.SimpleNamespace
    ) -> None:
        release = threading.Event()
        blocker = lib.Double()
        blocker.set_logic(lambda sd, pm, js: release.wait(5))
        flow = Flow("slow")
        flow.add_routine(blocker, "slow")
        state = routilux_runtime.exec(flow, {"n": 1})
        try:
            with pytest.raises(AssertionError, match=r"(?s)still running after 0.02 s.*slow"):
                wait_until_quiet(routilux_runtime, state, timeout=0.02)
        finally:
            release.set()
        assert routilux_runtime.wait_job(state.job_id, timeout=5)

    def test_report_without_runtime_uses_the_history(self, lib: types.SimpleNamespace) -> None:
        state = run_flow(lib.linear_flow(), {"count": 1})
        text = format_job_report(state)
        assert "a: completed=1" in text and "split: completed=1" in text
