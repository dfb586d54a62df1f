"""Test Routilux routines, flows and routine packs with pytest.

The pytest plugin (fixtures ``routilux_runtime``, ``routilux_flow_registry``,
``routilux_clock``, ``routilux_plugins``) is loaded through the
``pytest11`` entry point. This package adds helpers to use in tests:

* :func:`run_flow` runs a flow to completion or fails the test with a readable report;
* :func:`wait_until_quiet` waits until nothing of a job runs (timers may be armed), for
  tests that move a :class:`~routilux.ManualClock`;
* :class:`RoutineHarness` feeds one routine's slots and captures what it emits, no flow needed;
* :func:`assert_emitted`, :func:`assert_completed`, :func:`assert_routine_state`;
* :func:`assert_resume_equivalent` interrupts a flow at every activation boundary, saves,
  loads and resumes it, and checks the result equals an uninterrupted run;
* :mod:`routilux_testing.strategies`: hypothesis strategies (payloads, flows, job states).

Names are imported on first use, so importing this package (as the plugin does in every test
session) costs nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._assertions import (
        assert_completed,
        assert_emitted,
        assert_routine_state,
        run_flow,
        wait_for,
        wait_until_quiet,
    )
    from ._harness import RoutineHarness
    from ._report import format_job_report
    from ._resume import ResumeCheck, assert_resume_equivalent
    from ._tracker import Tracker

__all__ = [
    "ResumeCheck",
    "RoutineHarness",
    "Tracker",
    "assert_completed",
    "assert_emitted",
    "assert_resume_equivalent",
    "assert_routine_state",
    "format_job_report",
    "run_flow",
    "wait_for",
    "wait_until_quiet",
]

_WHERE = {
    "ResumeCheck": "._resume",
    "RoutineHarness": "._harness",
    "Tracker": "._tracker",
    "assert_completed": "._assertions",
    "assert_emitted": "._assertions",
    "assert_resume_equivalent": "._resume",
    "assert_routine_state": "._assertions",
    "format_job_report": "._report",
    "run_flow": "._assertions",
    "wait_for": "._assertions",
    "wait_until_quiet": "._assertions",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
