"""Fixtures for the builtins tests: a private flow registry and runtimes (one with a manual
clock), plus two tiny helper routines: ``Emitter`` turns one entry payload into many, and
``Recorder`` logs what reaches it in ``job_state.shared_log`` as ``(tag, payload)``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from routilux import FlowRegistry, ManualClock, Routine, Runtime


class Emitter(Routine):
    """Emits every dict of the entry payload's ``payloads`` list on ``output``."""

    type_name = "builtins_tests.Emitter"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("output")

        def logic(slot_data: Any, policy_message: Any, job_state: Any) -> None:
            for payload in slot_data["input"]:
                for item in payload["payloads"]:
                    self.emit("output", **item)

        self.set_logic(logic)


class Recorder(Routine):
    """Appends ``(tag, payload)`` to ``job_state.shared_log`` for every payload received."""

    type_name = "builtins_tests.Recorder"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")

        def logic(slot_data: Any, policy_message: Any, job_state: Any) -> None:
            for payload in slot_data["input"]:
                job_state.shared_log.append((self.get_config("tag"), payload))

        self.set_logic(logic)


def recorder(tag: str) -> Recorder:
    r = Recorder()
    r.set_config(tag=tag)
    return r


def recorded(job_state: Any, tag: str) -> list[dict[str, Any]]:
    """Payloads the recorder tagged ``tag`` received, in order."""
    return [p for t, p in job_state.shared_log if t == tag]


@pytest.fixture
def runtime() -> Iterator[Runtime]:
    rt = Runtime(thread_pool_size=4, flow_registry=FlowRegistry())
    yield rt
    rt.shutdown(timeout=10)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def clocked(clock: ManualClock) -> Iterator[Runtime]:
    """A runtime whose timers follow ``clock``: advance it to fire them, never sleep."""
    rt = Runtime(thread_pool_size=4, flow_registry=FlowRegistry(), clock=clock)
    yield rt
    rt.shutdown(timeout=10)


