"""Shared fixtures for the core tests.

Every test gets its own :class:`FlowRegistry` and :class:`Runtime` (shut down afterwards), so
tests never share flows, jobs or worker threads: ``registry`` and ``runtime`` are the
``routilux_flow_registry`` and ``routilux_runtime`` fixtures of routilux-testing, whose
teardown fails a test that leaves a job running or a thread alive. ``make_routine`` builds
small routines whose logic is a plain function, which keeps tests about the engine free of
boilerplate classes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from routilux import FlowRegistry, ManualClock, Routine, Runtime, current_activation

LogicFn = Callable[[Routine, dict[str, list[dict[str, Any]]], Any, Any], Any]


class FnRoutine(Routine):
    """A routine whose slots, events and logic are chosen after construction (tests only)."""


def record_and_forward(
    routine: Routine,
    slot_data: dict[str, list[dict[str, Any]]],
    policy_message: Any,
    job_state: Any,
) -> None:
    """Default test logic: log ``(routine_id, slot, payload)`` per payload and re-emit it on
    every declared event."""
    info = current_activation()
    assert info is not None
    for slot, payloads in slot_data.items():
        for payload in payloads:
            job_state.shared_log.append((info.routine_id, slot, payload))
            for event in routine.events:
                routine.emit(event, **payload)


def build_routine(
    logic: LogicFn | None = record_and_forward,
    *,
    slots: Iterable[str] = ("input",),
    events: Iterable[str] = ("output",),
    policy: Any = None,
) -> FnRoutine:
    routine = FnRoutine()
    for name in slots:
        routine.add_slot(name)
    for name in events:
        routine.add_event(name)
    if logic is not None:
        fn = logic
        routine.set_logic(lambda sd, pm, js: fn(routine, sd, pm, js))
    if policy is not None:
        routine.set_activation_policy(policy)
    return routine


@pytest.fixture(scope="session")
def make_routine() -> Callable[..., FnRoutine]:
    """``make_routine(logic=record_and_forward, slots=("input",), events=("output",),
    policy=None)``; ``logic(routine, slot_data, policy_message, job_state)``."""
    return build_routine


@pytest.fixture
def registry(routilux_flow_registry: FlowRegistry) -> FlowRegistry:
    return routilux_flow_registry


@pytest.fixture
def runtime(routilux_runtime: Runtime) -> Runtime:
    """The routilux-testing runtime (4 workers, on ``registry``): a test fails at teardown if
    it leaves a job running or a thread alive."""
    return routilux_runtime


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def clocked_runtime(registry: FlowRegistry, clock: ManualClock) -> Iterator[Runtime]:
    """A runtime whose timers follow ``clock`` (advance it to fire them)."""
    rt = Runtime(thread_pool_size=4, flow_registry=registry, clock=clock)
    yield rt
    rt.shutdown(timeout=10)


def logged(job_state: Any, routine_id: str) -> list[dict[str, Any]]:
    """Payloads ``record_and_forward`` logged for ``routine_id``, in order."""
    return [p for rid, _, p in job_state.shared_log if rid == routine_id]


@pytest.fixture(scope="session")
def log_of() -> Callable[[Any, str], list[dict[str, Any]]]:
    return logged




@pytest.fixture(scope="session")
def eventually() -> Callable[..., bool]:
    from routilux_testing import wait_for

    return wait_for


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A private PostgreSQL server for the job-store tests (see tests/pg_server.py).

    Skipped when the server binaries are not installed, unless ROUTILUX_REQUIRE_POSTGRES=1
    (set by .ci/run, which installs them): then their absence fails the tests.
    """
    import importlib.util
    import os
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("pg_server", Path(__file__).with_name(
        "pg_server.py"))
    assert spec is not None and spec.loader is not None
    pg = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pg)
    if not pg.available():
        if os.environ.get("ROUTILUX_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    with pg.server() as dsn:
        yield dsn
