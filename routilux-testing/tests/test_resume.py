"""assert_resume_equivalent: interrupt at every activation boundary, save, load, resume."""

from __future__ import annotations

import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from routilux import Flow, Routine, batch_size_policy
from routilux_testing import assert_resume_equivalent


class InstanceCounter(Routine):
    """Wrong on purpose: keeps its count on the instance, so a resumed job starts again."""

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.seen = 0
        self.set_logic(self._run)

    def _run(self, slot_data: dict[str, list[dict[str, Any]]], message: Any, state: Any) -> None:
        self.seen += len(slot_data["input"])
        state.shared_data["seen"] = self.seen


class TestEquivalentFlows:
    def test_linear_flow(self, lib: types.SimpleNamespace, tmp_path: Path) -> None:
        check = assert_resume_equivalent(lib.linear_flow, {"count": 3}, directory=tmp_path)
        # split (1) + a (3) + b (3) activations: boundaries 0..6, each saved to a file
        assert check.activations == 7 and check.boundaries == tuple(range(7))
        assert len(list(tmp_path.glob("linear-k*.json"))) == 7
        assert sorted(check.reference.shared_log) == [
            ["a", 0], ["a", 1], ["a", 2], ["b", 0], ["b", 2], ["b", 4]]

    def test_fan_out_fan_in_flow(self, lib: types.SimpleNamespace) -> None:
        check = assert_resume_equivalent(lib.fan_flow, {"count": 3})
        assert check.activations == 1 + 3 + 3 + 3
        assert check.reference.shared_data == {"total": 12}
        assert check.reference.routine_states == {"join": {"calls": 3}}

    def test_batches_and_parallel_workers(self, lib: types.SimpleNamespace) -> None:
        def batched() -> Flow:
            flow = lib.linear_flow()
            flow.routines["b"].set_activation_policy(batch_size_policy(2))
            return flow

        check = assert_resume_equivalent(batched, {"count": 5}, boundaries=[0, 3, 6],
                                         thread_pool_size=3)
        assert check.boundaries == (0, 3, 6)
        assert sorted(n for rid, n in check.reference.shared_log if rid == "b") == [
            0, 2, 4, 6, 8]


class TestDetectsProblems:
    def test_state_kept_outside_the_job_is_caught(self, lib: types.SimpleNamespace) -> None:
        def flow_factory() -> Flow:
            flow = lib.linear_flow()
            flow.add_routine(InstanceCounter(), "count")
            flow.connect("a", "output", "count", "input")
            return flow

        with pytest.raises(AssertionError) as info:
            assert_resume_equivalent(flow_factory, {"count": 3})
        text = str(info.value)
        assert "gives a different result than the uninterrupted run" in text
        assert "shared_data" in text and "{'seen': 3}" in text

    def test_ordered_log_comparison_is_available(self, lib: types.SimpleNamespace) -> None:
        # At boundary 3 (split, a(0), b(0)) b ran before a(1): the in-order log differs.
        with pytest.raises(AssertionError, match="resuming after activation 3"):
            assert_resume_equivalent(lib.linear_flow, {"count": 3}, unordered=())

    def test_factory_must_build_new_flows(self, lib: types.SimpleNamespace) -> None:
        flow = lib.linear_flow()
        with pytest.raises(ValueError, match="new Flow"):
            assert_resume_equivalent(lambda: flow, {"count": 1})
        with pytest.raises(TypeError, match="must return a Flow"):
            assert_resume_equivalent(lambda: "linear", {"count": 1})  # type: ignore[arg-type,return-value]

    def test_failing_reference_run_is_reported(self, lib: types.SimpleNamespace) -> None:
        def paused_forever() -> Flow:
            from routilux import breakpoint_policy

            flow = lib.linear_flow()
            flow.routines["b"].set_activation_policy(breakpoint_policy())
            return flow

        with pytest.raises(AssertionError, match="uninterrupted run did not finish"):
            assert_resume_equivalent(paused_forever, {"count": 1}, timeout=0.2)


def test_in_a_users_test_file(run_plugin: Callable[..., pytest.RunResult]) -> None:
    result = run_plugin('''
from routilux import Flow, Routine
from routilux_testing import assert_resume_equivalent

class Add(Routine):
    def __init__(self):
        super().__init__()
        self.add_slot("input")
        self.add_event("output", ["n"])
        self.set_logic(self._run)

    def _run(self, slot_data, message, job_state):
        for p in slot_data["input"]:
            job_state.shared_data["sum"] = job_state.shared_data.get("sum", 0) + p["n"]
            if p["n"] < 3:
                self.emit("output", n=p["n"] + 1)

def build():
    flow = Flow("adder")
    flow.add_routine(Add(), "first")
    flow.add_routine(Add(), "second")
    flow.connect("first", "output", "second", "input")
    flow.connect("second", "output", "first", "input")   # a feedback loop
    flow.set_entry("first", "input")
    return flow

def test_resumes(tmp_path):
    check = assert_resume_equivalent(build, {"n": 0}, directory=tmp_path)
    assert check.activations == 4 and check.reference.shared_data == {"sum": 6}
''')
    result.assert_outcomes(passed=1)
