"""The plugin's fixtures, marker and teardown checks, run through pytester."""

from __future__ import annotations

from collections.abc import Callable

import pytest

Run = Callable[..., pytest.RunResult]

ROUTINES = '''
import threading
import pytest
from routilux import (ErrorHandler, Flow, FlowRegistry, JobStatus, Routine,
                      time_interval_policy)
from routilux_testing import wait_until_quiet


class Echo(Routine):
    def __init__(self):
        super().__init__()
        self.add_slot("input")
        self.add_event("output", ["n"])
        self.set_logic(self._run)

    def _run(self, slot_data, message, job_state):
        for p in slot_data["input"]:
            job_state.shared_log.append((p["n"], dict(message)))
            self.emit("output", n=p["n"])


def one(routine=None, flow_id="one"):
    flow = Flow(flow_id)
    flow.add_routine(routine or Echo(), "echo")
    return flow
'''


class TestLoading:
    def test_entry_point_loads_the_plugin_and_registers_the_marker(self, run_plugin: Run) -> None:
        result = run_plugin("def test_nothing():\n    pass\n", "--markers")
        result.stdout.fnmatch_lines(["@pytest.mark.routilux(**options):*"])

    def test_fixtures_are_listed(self, run_plugin: Run) -> None:
        result = run_plugin("def test_nothing():\n    pass\n", "--fixtures")
        for name in ("routilux_clock", "routilux_flow_registry", "routilux_plugins",
                     "routilux_runtime", "routilux_tracker"):
            result.stdout.fnmatch_lines([f"{name} -- *"])

    def test_tests_without_the_fixtures_do_not_import_routilux(
        self, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
        pytester.makepyfile(
            """
            import sys

            def test_plain():
                loaded = [m for m in ("routilux", "hypothesis", "routilux_testing._runtimes")
                          if m in sys.modules]
                assert loaded == []
                assert "routilux_testing.plugin" in sys.modules
            """
        )
        result = pytester.runpytest_subprocess("-p", "routilux", "-p", "no:cacheprovider")
        result.assert_outcomes(passed=1)


class TestRuntimeFixture:
    def test_runs_flows_by_name_from_the_test_registry(self, run_plugin: Run) -> None:
        result = run_plugin(ROUTINES + '''
def test_registered(routilux_runtime, routilux_flow_registry):
    routilux_flow_registry.register(one())
    state = routilux_runtime.exec("one", {"n": 1})
    assert routilux_runtime.wait_job(state.job_id, timeout=5)
    assert state.status is JobStatus.COMPLETED
    assert "one" not in FlowRegistry.get_instance()

def test_registry_is_fresh_per_test(routilux_flow_registry):
    assert "one" not in routilux_flow_registry
''')
        result.assert_outcomes(passed=2)

    def test_marker_passes_runtime_options(self, run_plugin: Run) -> None:
        result = run_plugin(ROUTINES + '''
@pytest.mark.routilux(thread_pool_size=1, history_limit=3)
def test_options(routilux_runtime):
    assert routilux_runtime.thread_pool_size == 1
    state = routilux_runtime.exec(one(), {"n": 1})
    assert state.execution_history.maxlen == 3
    assert routilux_runtime.wait_job(state.job_id, timeout=5)

def test_default_pool(routilux_runtime):
    assert routilux_runtime.thread_pool_size == 4
''')
        result.assert_outcomes(passed=2)

    def test_runtime_is_shut_down_after_the_test(self, run_plugin: Run) -> None:
        result = run_plugin(ROUTINES + '''
from routilux.errors import RuntimeClosedError
KEPT = []

def test_first(routilux_runtime):
    KEPT.append(routilux_runtime)

def test_second():
    with pytest.raises(RuntimeClosedError):
        KEPT[0].exec(one(), {"n": 1})
''')
        result.assert_outcomes(passed=2)


class TestTeardownChecks:
    LEFT_RUNNING = ROUTINES + '''
def start_waiting_job(runtime):
    # Kept open, so the second payload surely arrives after the first one ran (an entry
    # payload's job could complete before a post reached it).
    echo = Echo()
    echo.set_activation_policy(time_interval_policy(5))
    flow = one(echo)
    state = runtime.exec(flow, keep_open=True)
    runtime.post(flow, "echo", "input", {"n": 1}, job_id=state.job_id)
    wait_until_quiet(runtime, state)
    runtime.post(flow, "echo", "input", {"n": 2}, job_id=state.job_id)
    return state
'''

    def test_a_job_left_running_fails_the_test(self, run_plugin: Run) -> None:
        result = run_plugin(self.LEFT_RUNNING + '''
@pytest.mark.routilux(settle_timeout=0.05)
def test_leaves_job(routilux_runtime, routilux_clock):
    start_waiting_job(routilux_runtime)  # the second payload waits for the clock
''')
        result.assert_outcomes(passed=1, errors=1)
        result.stdout.fnmatch_lines([
            "*routilux teardown checks failed:*",
            "*job * of flow 'one' is still running when the test ends*",
        ])

    def test_a_job_finished_by_the_test_passes(self, run_plugin: Run) -> None:
        result = run_plugin(self.LEFT_RUNNING + '''
def test_finishes_job(routilux_runtime, routilux_clock):
    state = start_waiting_job(routilux_runtime)
    routilux_clock.advance(5)
    assert routilux_runtime.complete_job(state.job_id)
    assert routilux_runtime.wait_job(state.job_id, timeout=5)
    assert [n for n, _ in state.shared_log] == [1, 2]
    assert state.status is JobStatus.COMPLETED
''')
        result.assert_outcomes(passed=1)

    def test_allow_running_jobs_marker(self, run_plugin: Run) -> None:
        result = run_plugin(self.LEFT_RUNNING + '''
@pytest.mark.routilux(allow_running_jobs=True)
def test_leaves_job(routilux_runtime, routilux_clock):
    start_waiting_job(routilux_runtime)
''')
        result.assert_outcomes(passed=1)

    def test_paused_and_idle_jobs_are_allowed(self, run_plugin: Run) -> None:
        result = run_plugin(ROUTINES + '''
def test_paused_and_idle(routilux_runtime):
    flow = one()
    paused = routilux_runtime.exec(flow, keep_open=True)
    routilux_runtime.pause_job(paused.job_id)
    idle = routilux_runtime.post(flow, "echo", "input", {"n": 1})
    assert routilux_runtime.wait_job(idle.job_id, timeout=5)
    assert (paused.status, idle.status) == (JobStatus.PAUSED, JobStatus.IDLE)
''')
        result.assert_outcomes(passed=1)

    def test_a_leaked_worker_thread_fails_the_test(self, run_plugin: Run) -> None:
        # The activation times out and is abandoned; its worker stays busy after the test.
        result = run_plugin(ROUTINES + '''
class Stuck(Echo):
    def _run(self, slot_data, message, job_state):
        threading.Event().wait(1.0)

@pytest.mark.routilux(join_timeout=0.1)
def test_stuck_routine(routilux_runtime):
    stuck = Stuck()
    stuck.set_config(timeout=0.01)
    stuck.set_error_handler(ErrorHandler(strategy="continue"))
    state = routilux_runtime.exec(one(stuck), {"n": 1})
    assert routilux_runtime.wait_job(state.job_id, timeout=5)
    assert state.status is JobStatus.COMPLETED
''')
        result.assert_outcomes(passed=1, errors=1)
        result.stdout.fnmatch_lines(
            ["*thread(s) started during the test are still alive*'routilux-worker-*"]
        )

    def test_a_thread_started_by_the_test_and_not_joined_fails_it(self, run_plugin: Run) -> None:
        result = run_plugin(ROUTINES + '''
@pytest.mark.routilux(join_timeout=0.1)
def test_own_thread(routilux_runtime):
    threading.Thread(target=threading.Event().wait, args=(1.0,), name="mine").start()
''')
        result.assert_outcomes(passed=1, errors=1)
        result.stdout.fnmatch_lines(["*still alive*'mine'*"])

    def test_check_threads_can_be_turned_off(self, run_plugin: Run) -> None:
        result = run_plugin(ROUTINES + '''
@pytest.mark.routilux(check_threads=False, join_timeout=0.1)
def test_own_thread(routilux_runtime):
    threading.Thread(target=threading.Event().wait, args=(0.5,), name="mine").start()
''')
        result.assert_outcomes(passed=1)

    def test_marker_rejects_positional_arguments(self, run_plugin: Run) -> None:
        result = run_plugin('''
import pytest

@pytest.mark.routilux(4)
def test_bad(routilux_runtime):
    pass
''')
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(["*takes keyword arguments only*"])


class TestClockFixture:
    def test_time_interval_policy_runs_on_the_manual_clock(self, run_plugin: Run) -> None:
        result = run_plugin(ROUTINES + '''
def test_interval(routilux_runtime, routilux_clock):
    echo = Echo()
    echo.set_activation_policy(time_interval_policy(5))
    flow = one(echo)
    state = routilux_runtime.exec(flow, keep_open=True)  # (see start_waiting_job)
    routilux_runtime.post(flow, "echo", "input", {"n": 1}, job_id=state.job_id)
    wait_until_quiet(routilux_runtime, state)
    routilux_runtime.post(flow, "echo", "input", {"n": 2}, job_id=state.job_id)
    wait_until_quiet(routilux_runtime, state)
    routilux_clock.advance(4.9)
    wait_until_quiet(routilux_runtime, state)
    assert [n for n, _ in state.shared_log] == [1]
    routilux_clock.advance(0.1)
    wait_until_quiet(routilux_runtime, state)
    assert routilux_runtime.complete_job(state.job_id)
    assert routilux_runtime.wait_job(state.job_id, timeout=5)
    assert [m["fired_at"] for _, m in state.shared_log] == [0.0, 5.0]
''')
        result.assert_outcomes(passed=1)

    def test_retries_with_backoff_without_sleeping(self, run_plugin: Run) -> None:
        result = run_plugin(ROUTINES + '''
from routilux import current_activation

class Flaky(Echo):
    def _run(self, slot_data, message, job_state):
        attempt = current_activation().attempt
        job_state.shared_log.append(attempt)
        if attempt < 2:
            raise ConnectionError("down")

def test_backoff(routilux_runtime, routilux_clock):
    flaky = Flaky()
    flaky.set_error_handler(ErrorHandler(strategy="retry", max_retries=3, retry_delay=10,
                                         retry_backoff=3))
    state = routilux_runtime.exec(one(flaky), {"n": 1})
    wait_until_quiet(routilux_runtime, state)
    routilux_clock.advance(10)       # first retry (after 10 s)
    wait_until_quiet(routilux_runtime, state)
    routilux_clock.advance(29.9)     # the second is due 30 s later
    wait_until_quiet(routilux_runtime, state)
    assert state.shared_log == [0, 1]
    routilux_clock.advance(0.1)
    assert routilux_runtime.wait_job(state.job_id, timeout=5)
    assert state.shared_log == [0, 1, 2]
    assert state.status is JobStatus.COMPLETED
''')
        result.assert_outcomes(passed=1)

    def test_runtime_uses_real_time_without_the_clock(self, run_plugin: Run) -> None:
        result = run_plugin('''
from routilux import SystemClock

def test_real(routilux_runtime):
    assert isinstance(routilux_runtime._clock, SystemClock)
''')
        result.assert_outcomes(passed=1)


class TestPluginsFixture:
    def test_plugin_is_registered_for_one_test_only(self, run_plugin: Run) -> None:
        result = run_plugin(ROUTINES + '''
from routilux import ErrorStrategy, hookimpl
from routilux.errors import UnknownTypeError

EVENTS = []

class Boom(Echo):
    def _run(self, slot_data, message, job_state):
        raise ValueError("boom")

class SkipAll:
    def handle(self, failure):
        return ErrorStrategy.SKIP

class Plugin:
    @hookimpl
    def routilux_error_strategy(self, name):
        return SkipAll() if name == "skip_all" else None

    @hookimpl
    def routilux_runtime_started(self, runtime):
        EVENTS.append("started")

    @hookimpl
    def routilux_runtime_stopped(self, runtime):
        EVENTS.append("stopped")

def boom_flow():
    boom = Boom()
    boom.set_error_handler(ErrorHandler(strategy="skip_all"))
    return one(boom)

def test_with_plugin(routilux_plugins, routilux_runtime):
    rt = routilux_plugins(Plugin())
    state = rt.exec(boom_flow(), {"n": 1})
    assert rt.wait_job(state.job_id, timeout=5)
    assert state.status is JobStatus.COMPLETED
    assert state.history()[0].status == "skipped"
    with pytest.raises(UnknownTypeError):   # not in the test's other runtime
        routilux_runtime.exec(boom_flow(), {"n": 1})
    assert EVENTS == ["started"]

def test_gone_afterwards(routilux_runtime):
    assert EVENTS == ["started", "stopped"]   # its runtime was shut down
    with pytest.raises(UnknownTypeError):
        routilux_runtime.exec(boom_flow(), {"n": 1})
''')
        result.assert_outcomes(passed=2)

    def test_marker_builds_routilux_runtime_with_plugins(self, run_plugin: Run) -> None:
        result = run_plugin('''
import pytest
from routilux import hookimpl

SEEN = []

class Plugin:
    @hookimpl
    def routilux_runtime_started(self, runtime):
        SEEN.append(runtime)

@pytest.mark.routilux(plugins=[Plugin()])
def test_marked(routilux_runtime):
    assert SEEN == [routilux_runtime]
''')
        result.assert_outcomes(passed=1)

    def test_needs_a_plugin(self, run_plugin: Run) -> None:
        result = run_plugin('''
import pytest

def test_empty(routilux_plugins):
    with pytest.raises(TypeError, match="at least one plugin"):
        routilux_plugins()
''')
        result.assert_outcomes(passed=1)


class TestTrackerFixture:
    def test_records_are_deterministic_across_runs(self, run_plugin: Run) -> None:
        result = run_plugin(ROUTINES + """
import json
import routilux

RUNS = []


@pytest.mark.parametrize("run", [1, 2])
def test_tracked(routilux_runtime, routilux_tracker, run):
    first = routilux_runtime.exec(one(), entry_params={"n": 1})
    second = routilux_runtime.exec(one(), entry_params={"n": 2})
    assert routilux_runtime.wait_until_all_jobs_finished(10)
    assert routilux_tracker.alias(first.job_id) == "job-1"
    assert routilux_tracker.alias(second.job_id) == "job-2"
    kinds = routilux_tracker.kinds(first.job_id)
    assert kinds[0] == "job.started" and kinds[-1] == "job.finished"
    assert "activation.finished" in kinds
    records = routilux_tracker.dicts(first.job_id)
    assert all(r["job_id"] == "job-1" for r in records)
    assert not any("ts" in r or "duration" in r for r in records)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    RUNS.append(json.dumps(records, sort_keys=True))


def test_both_runs_gave_the_same_records():
    assert len(RUNS) == 2 and RUNS[0] == RUNS[1]
""")
        result.assert_outcomes(passed=3)

    def test_runtimes_without_the_fixture_track_nothing(self, run_plugin: Run) -> None:
        result = run_plugin(ROUTINES + """
def test_untracked(routilux_runtime):
    assert not routilux_runtime.tracking.sinks
""")
        result.assert_outcomes(passed=1)
