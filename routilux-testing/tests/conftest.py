"""Tests of the routilux pytest plugin.

Plugin behaviour (fixtures, markers, teardown checks) is tested by running small test files
with ``pytester`` and ``-p routilux`` (the entry point's name) with plugin autoloading off, so
the entry point itself is what loads the plugin. The helpers and strategies are also tested
directly, using the plugin's fixtures in this session.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import pytest

# Imported here, before any pytester run, so that the in-process runs (which restore
# sys.modules afterwards) never import routilux for the first time and drop it again.
import routilux
import routilux.serialization  # noqa: F401
import routilux_builtins  # noqa: F401
import routilux_testing._assertions
import routilux_testing._harness
import routilux_testing._resume
import routilux_testing._runtimes
import routilux_testing.strategies  # noqa: F401
from routilux import Flow, Routine, all_slots_ready_policy, current_activation

pytest_plugins = ["pytester"]


@pytest.fixture
def run_plugin(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., pytest.RunResult]:
    """``run_plugin(source, *args)``: write ``source`` as a test module and run it in-process
    with only the ``routilux`` plugin loaded (``-p routilux``)."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")

    def run(source: str, *args: str) -> pytest.RunResult:
        pytester.makepyfile(source)
        # ``-p routilux`` also asks pytest to assertion-rewrite a module named "routilux" (the
        # core package, already imported here): pytest warns about that; it is harmless.
        return pytester.runpytest(
            "-p", "routilux", "--strict-markers", "-p", "no:cacheprovider",
            "-W", "ignore::pytest.PytestAssertRewriteWarning", *args,
        )

    return run


# -- small routines and flows for the direct tests ----------------------------------------


class Double(Routine):
    """Logs and doubles ``n``."""

    type_name = "routilux_testing.tests:Double"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("output", ["n"])
        self.set_logic(self._run)

    def _run(self, slot_data: dict[str, list[dict[str, Any]]], message: Any, state: Any) -> None:
        rid = current_activation().routine_id
        for p in slot_data["input"]:
            state.shared_log.append([rid, p["n"]])
            self.emit("output", n=p["n"] * 2)


class Split(Routine):
    """Emits ``n = 0 .. count-1``."""

    type_name = "routilux_testing.tests:Split"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("output", ["n"])
        self.set_logic(self._run)

    def _run(self, slot_data: dict[str, list[dict[str, Any]]], message: Any, state: Any) -> None:
        for p in slot_data["input"]:
            for i in range(p["count"]):
                self.emit("output", n=i)


class Join(Routine):
    """Adds up pairs (one payload per slot) into ``shared_data["total"]`` and counts calls in
    its routine state."""

    type_name = "routilux_testing.tests:Join"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("left")
        self.add_slot("right")
        self.set_activation_policy(all_slots_ready_policy())
        self.set_logic(self._run)

    def _run(self, slot_data: dict[str, list[dict[str, Any]]], message: Any, state: Any) -> None:
        pair = sum(p["n"] for ps in slot_data.values() for p in ps)
        state.shared_data["total"] = state.shared_data.get("total", 0) + pair
        calls = state.get_routine_state("join", {}).get("calls", 0)
        state.update_routine_state("join", {"calls": calls + 1})
        state.shared_log.append(["join", pair])


class Boom(Routine):
    """Always raises."""

    type_name = "routilux_testing.tests:Boom"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("output", ["n"])
        self.set_logic(self._run)

    def _run(self, slot_data: dict[str, list[dict[str, Any]]], message: Any, state: Any) -> None:
        raise ValueError("payment refused")


def linear_flow() -> Flow:
    """split -> a -> b (Doubles)."""
    flow = Flow("linear")
    flow.add_routine(Split(), "split")
    flow.add_routine(Double(), "a")
    flow.add_routine(Double(), "b")
    flow.connect("split", "output", "a", "input")
    flow.connect("a", "output", "b", "input")
    return flow


def fan_flow() -> Flow:
    """split fans out to a and b, joined pairwise by join."""
    flow = Flow("fan")
    flow.add_routine(Split(), "split")
    flow.add_routine(Double(), "a")
    flow.add_routine(Double(), "b")
    flow.add_routine(Join(), "join")
    flow.connect("split", "output", "a", "input")
    flow.connect("split", "output", "b", "input")
    flow.connect("a", "output", "join", "left")
    flow.connect("b", "output", "join", "right")
    return flow


@pytest.fixture(scope="session")
def lib() -> types.SimpleNamespace:
    """The routines and flow factories above."""
    return types.SimpleNamespace(
        Double=Double, Split=Split, Join=Join, Boom=Boom, linear_flow=linear_flow,
        fan_flow=fan_flow,
    )
