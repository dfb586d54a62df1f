"""Flow: structure, wiring errors that name the culprit, validation."""

from __future__ import annotations

import pytest
from routilux import Connection, Flow, Routine, Runtime
from routilux.errors import (
    ConfigurationError,
    DuplicateRoutineError,
    FlowValidationError,
    UnknownEventError,
    UnknownRoutineError,
    UnknownSlotError,
    WiringError,
)


@pytest.fixture
def pair(make_routine) -> Flow:
    flow = Flow("pair")
    flow.add_routine(make_routine(), "a")
    flow.add_routine(make_routine(), "b")
    return flow


class TestFlowId:
    def test_flow_id_is_kept(self) -> None:
        assert Flow(flow_id="mine").flow_id == "mine"

    def test_flow_id_is_generated_when_omitted(self) -> None:
        first, second = Flow(), Flow()
        assert first.flow_id and first.flow_id != second.flow_id

    def test_empty_flow_id_is_refused(self) -> None:
        with pytest.raises(ConfigurationError, match="flow_id"):
            Flow(flow_id="")


class TestAddRoutine:
    def test_returns_the_id(self, make_routine) -> None:
        flow = Flow("f")
        routine = make_routine()
        assert flow.add_routine(routine, "r") == "r"
        assert flow.get_routine("r") is routine

    def test_generates_an_id_when_omitted(self, make_routine) -> None:
        flow = Flow("f")
        rid = flow.add_routine(make_routine())
        assert rid in flow.routines

    def test_duplicate_id_names_flow_and_id(self, make_routine) -> None:
        flow = Flow("f")
        flow.add_routine(make_routine(), "r")
        with pytest.raises(DuplicateRoutineError, match=r"'f'.*'r'") as info:
            flow.add_routine(make_routine(), "r")
        assert (info.value.flow_id, info.value.routine_id) == ("f", "r")

    def test_non_routine_is_refused(self) -> None:
        with pytest.raises(ConfigurationError, match="Routine"):
            Flow("f").add_routine(object(), "r")  # type: ignore[arg-type]

    def test_get_unknown_routine_lists_known_ids(self, pair: Flow) -> None:
        with pytest.raises(UnknownRoutineError, match=r"'zzz'.*a, b") as info:
            pair.get_routine("zzz")
        assert info.value.routine_id == "zzz"


class TestConnect:
    def test_connect_records_the_connection(self, pair: Flow) -> None:
        conn = pair.connect("a", "output", "b", "input")
        assert conn == Connection(source_id="a", event="output", target_id="b", slot="input")
        assert pair.connections == (conn,)

    def test_unknown_source_routine_is_named(self, pair: Flow) -> None:
        with pytest.raises(UnknownRoutineError, match="'ghost'") as info:
            pair.connect("ghost", "output", "b", "input")
        assert info.value.routine_id == "ghost"

    def test_unknown_target_routine_is_named(self, pair: Flow) -> None:
        with pytest.raises(UnknownRoutineError, match="'ghost'") as info:
            pair.connect("a", "output", "ghost", "input")
        assert info.value.routine_id == "ghost"

    def test_unknown_event_names_routine_and_event(self, pair: Flow) -> None:
        with pytest.raises(UnknownEventError, match=r"'a'.*'nope'.*output") as info:
            pair.connect("a", "nope", "b", "input")
        assert (info.value.routine_id, info.value.event) == ("a", "nope")

    def test_unknown_slot_names_routine_and_slot(self, pair: Flow) -> None:
        with pytest.raises(UnknownSlotError, match=r"'b'.*'nope'.*input") as info:
            pair.connect("a", "output", "b", "nope")
        assert (info.value.routine_id, info.value.slot) == ("b", "nope")

    def test_same_connection_twice_is_a_wiring_error(self, pair: Flow) -> None:
        pair.connect("a", "output", "b", "input")
        with pytest.raises(WiringError, match=r"a\.output -> b\.input"):
            pair.connect("a", "output", "b", "input")

    def test_one_to_many_and_many_to_one(self, make_routine) -> None:
        flow = Flow("fan")
        for rid in ("s1", "s2", "t1", "t2"):
            flow.add_routine(make_routine(), rid)
        flow.connect("s1", "output", "t1", "input")
        flow.connect("s1", "output", "t2", "input")
        flow.connect("s2", "output", "t1", "input")
        assert len(flow.connections) == 3

    def test_disconnect_removes_and_unknown_is_an_error(self, pair: Flow) -> None:
        pair.connect("a", "output", "b", "input")
        pair.disconnect("a", "output", "b", "input")
        assert pair.connections == ()
        with pytest.raises(WiringError, match="not connected"):
            pair.disconnect("a", "output", "b", "input")

    def test_set_entry_unknown_slot_is_named(self, pair: Flow) -> None:
        with pytest.raises(UnknownSlotError, match="'nope'"):
            pair.set_entry("a", "nope")

    def test_set_error_handler_needs_a_handler(self, pair: Flow) -> None:
        with pytest.raises(ConfigurationError, match="ErrorHandler"):
            pair.set_error_handler("stop")  # type: ignore[arg-type]

    def test_execution_timeout_must_be_positive(self, pair: Flow) -> None:
        with pytest.raises(ConfigurationError, match="execution_timeout"):
            pair.set_execution_timeout(0)


class TestValidate:
    def test_valid_linear_flow_is_ok(self, pair: Flow) -> None:
        pair.connect("a", "output", "b", "input")
        report = pair.validate()
        assert report.ok and report.errors == []

    def test_cycle_is_information_not_an_error(self, pair: Flow) -> None:
        pair.connect("a", "output", "b", "input")
        pair.connect("b", "output", "a", "input")
        pair.set_entry("a", "input")
        report = pair.validate()
        assert report.ok
        cycles = [i for i in report.infos if i.code == "flow.cycle"]
        assert len(cycles) == 1
        assert "a" in cycles[0].message and "b" in cycles[0].message
        report.raise_for_errors()  # no error: nothing raised

    def test_routine_without_logic_is_an_error_naming_it(self, make_routine) -> None:
        flow = Flow("f")
        flow.add_routine(make_routine(logic=None), "lazy")
        report = flow.validate()
        assert not report.ok
        (error,) = report.errors
        assert error.code == "routine.no_logic" and "'lazy'" in error.message
        assert error.path == "routines.lazy"

    def test_raise_for_errors_lists_every_error(self, make_routine) -> None:
        flow = Flow("f")
        flow.add_routine(make_routine(logic=None), "one")
        flow.add_routine(make_routine(logic=None), "two")
        with pytest.raises(FlowValidationError, match=r"2 problem") as info:
            flow.validate().raise_for_errors()
        assert {i.path for i in info.value.issues} == {"routines.one", "routines.two"}

    def test_empty_flow_is_an_error(self) -> None:
        report = Flow("empty").validate()
        assert [i.code for i in report.errors] == ["flow.empty"]

    def test_ambiguous_entry_is_a_warning(self, make_routine) -> None:
        flow = Flow("f")
        flow.add_routine(make_routine(slots=("left", "right")), "join")
        report = flow.validate()
        assert report.ok
        (warning,) = [i for i in report.issues if i.code == "flow.entry"]
        assert warning.severity == "warning"
        assert "'join'" in warning.message and "set_entry" in warning.message

    def test_explicit_entry_removes_the_warning(self, make_routine) -> None:
        flow = Flow("f")
        flow.add_routine(make_routine(slots=("left", "right")), "join")
        flow.set_entry("join", "left")
        assert not [i for i in flow.validate().issues if i.code == "flow.entry"]

    def test_unconnected_event_is_information(self, pair: Flow) -> None:
        codes = {(i.severity, i.code, i.path) for i in pair.validate().issues}
        assert ("info", "event.unconnected", "routines.a.events.output") in codes

    def test_bad_timeout_config_is_an_error(self, make_routine) -> None:
        routine = make_routine()
        routine.set_config(timeout=-1)
        flow = Flow("f")
        flow.add_routine(routine, "r")
        (error,) = flow.validate().errors
        assert error.code == "routine.bad_timeout"

    def test_exec_of_an_invalid_flow_raises_validation_error(
        self, runtime: Runtime, make_routine
    ) -> None:
        flow = Flow("f")
        flow.add_routine(make_routine(logic=None), "lazy")
        with pytest.raises(FlowValidationError, match="lazy"):
            runtime.exec(flow)


class TestTemplate:
    def test_flow_stores_no_execution_state(self, runtime: Runtime, pair: Flow) -> None:
        pair.connect("a", "output", "b", "input")
        before = pair.describe()
        state = runtime.exec(pair, entry_params={"x": 1})
        assert runtime.wait_job(state.job_id, timeout=5)
        assert pair.describe() == before

    def test_edit_after_start_does_not_change_running_job(
        self, runtime: Runtime, make_routine
    ) -> None:
        import threading

        gate = threading.Event()

        def wait_then_forward(routine, slot_data, policy_message, job_state):
            assert gate.wait(5)
            routine.emit("output", **slot_data["input"][0])

        flow = Flow("edit")
        flow.add_routine(make_routine(wait_then_forward), "a")
        first = runtime.exec(flow, entry_params={"x": 1})
        flow.add_routine(make_routine(), "late")
        flow.connect("a", "output", "late", "input")
        gate.set()
        assert runtime.wait_job(first.job_id, timeout=5)
        assert not [e for e in first.shared_log if e[0] == "late"]
        second = runtime.exec(flow, entry_params={"x": 2})
        assert runtime.wait_job(second.job_id, timeout=5)
        assert [e[2] for e in second.shared_log if e[0] == "late"] == [{"x": 2}]

    def test_one_routine_class_describes_the_flow(self, pair: Flow) -> None:
        described = pair.describe()
        assert set(described["routines"]) == {"a", "b"}
        assert described["routines"]["a"]["policy"] == "immediate"
        assert isinstance(pair.get_routine("a"), Routine)
