"""Routine: the template API (slots, events, config, logic, policy, handlers, emit)."""

from __future__ import annotations

import pytest
from routilux import (
    ErrorHandler,
    Flow,
    JobStatus,
    Overflow,
    Routine,
    Runtime,
    Slot,
    immediate_policy,
)
from routilux.errors import (
    ConfigurationError,
    EmitOutsideActivationError,
    UnknownEventError,
    UnknownSlotError,
)
from routilux.registry import routine_types


class TestConstruction:
    def test_constructor_takes_no_arguments(self) -> None:
        routine = Routine()
        assert dict(routine.slots) == {} and dict(routine.events) == {}

    def test_subclass_declares_interface_in_init(self) -> None:
        class Upper(Routine):
            def __init__(self) -> None:
                super().__init__()
                self.add_slot("input")
                self.add_event("output", ["text"])

        routine = Upper()
        assert list(routine.slots) == ["input"]
        assert routine.events["output"].output_params == ("text",)


class TestSlots:
    def test_add_slot_returns_the_slot(self) -> None:
        routine = Routine()
        slot = routine.add_slot("input", max_queue_length=5, overflow="fail", block_timeout=2)
        assert isinstance(slot, Slot)
        assert (slot.name, slot.routine, slot.max_queue_length) == ("input", routine, 5)
        assert slot.overflow is Overflow.FAIL and slot.block_timeout == 2

    def test_duplicate_slot_name_is_refused(self) -> None:
        routine = Routine()
        routine.add_slot("input")
        with pytest.raises(ConfigurationError, match="'input'"):
            routine.add_slot("input")

    @pytest.mark.parametrize("name", ["", None, 3])
    def test_slot_name_must_be_a_non_empty_string(self, name: object) -> None:
        with pytest.raises(ConfigurationError, match="slot name"):
            Routine().add_slot(name)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        "kwargs",
        [{"max_queue_length": 0}, {"overflow": "explode"}, {"block_timeout": -1}],
    )
    def test_bad_slot_settings_are_configuration_errors(self, kwargs: dict) -> None:
        with pytest.raises(ConfigurationError, match="slot 'input'"):
            Routine().add_slot("input", **kwargs)

    def test_slots_view_is_read_only(self) -> None:
        routine = Routine()
        routine.add_slot("input")
        with pytest.raises(TypeError):
            routine.slots["other"] = None  # type: ignore[index]

    def test_get_unknown_slot_names_it_and_lists_known(self) -> None:
        routine = Routine()
        routine.add_slot("input")
        with pytest.raises(UnknownSlotError, match=r"'nope'.*input") as info:
            routine.get_slot("nope")
        assert info.value.slot == "nope"


class TestEvents:
    def test_add_event_keeps_output_params(self) -> None:
        event = Routine().add_event("output", ["a", "b"])
        assert event.name == "output" and event.output_params == ("a", "b")

    def test_single_string_output_param_is_one_param(self) -> None:
        assert Routine().add_event("output", "result").output_params == ("result",)

    def test_duplicate_event_name_is_refused(self) -> None:
        routine = Routine()
        routine.add_event("output")
        with pytest.raises(ConfigurationError, match="'output'"):
            routine.add_event("output")

    def test_get_unknown_event_names_it(self) -> None:
        routine = Routine()
        routine.add_event("output")
        with pytest.raises(UnknownEventError, match=r"'nope'.*output") as info:
            routine.get_event("nope")
        assert info.value.event == "nope"


class TestConfig:
    def test_set_config_merges(self) -> None:
        routine = Routine()
        routine.set_config(a=1, b=2)
        routine.set_config(b=3, c=4)
        assert dict(routine.config) == {"a": 1, "b": 3, "c": 4}

    def test_get_config_default(self) -> None:
        routine = Routine()
        routine.set_config(a=1)
        assert routine.get_config("a") == 1
        assert routine.get_config("missing", "dflt") == "dflt"
        assert routine.get_config("missing") is None

    def test_config_view_is_read_only(self) -> None:
        with pytest.raises(TypeError):
            Routine().config["a"] = 1  # type: ignore[index]


class TestSetters:
    def test_set_logic_needs_a_callable(self) -> None:
        with pytest.raises(ConfigurationError, match="callable"):
            Routine().set_logic("not callable")  # type: ignore[arg-type]

    def test_async_logic_is_detected_once_at_set_logic(self) -> None:
        async def logic(slot_data, policy_message, job_state):
            return None

        def sync_logic(slot_data, policy_message, job_state):
            return None

        class AsyncCallable:
            async def __call__(self, slot_data, policy_message, job_state):
                return None

        routine = Routine()
        assert not routine.is_async
        routine.set_logic(logic)
        assert routine.is_async and routine.logic is logic
        routine.set_logic(AsyncCallable())
        assert routine.is_async
        routine.set_logic(sync_logic)
        assert not routine.is_async

    def test_set_logic_stores_it(self) -> None:
        def logic(slot_data, policy_message, job_state):
            return None

        routine = Routine()
        routine.set_logic(logic)
        assert routine.logic is logic

    def test_activation_policy_must_be_a_policy(self) -> None:
        with pytest.raises(ConfigurationError, match="ActivationPolicy"):
            Routine().set_activation_policy(lambda *a: True)  # type: ignore[arg-type]

    def test_activation_policy_is_stored(self) -> None:
        routine = Routine()
        routine.set_activation_policy(immediate_policy())
        assert routine.activation_policy == immediate_policy()

    def test_error_handler_must_be_a_handler(self) -> None:
        with pytest.raises(ConfigurationError, match="ErrorHandler"):
            Routine().set_error_handler("retry")  # type: ignore[arg-type]

    def test_error_handler_is_stored(self) -> None:
        handler = ErrorHandler(strategy="continue")
        routine = Routine()
        routine.set_error_handler(handler)
        assert routine.error_handler is handler

    @pytest.mark.parametrize("n", [0, -1, 1.5, True])
    def test_max_concurrency_must_be_a_positive_int(self, n: object) -> None:
        with pytest.raises(ConfigurationError, match="max concurrency"):
            Routine().set_max_concurrency(n)  # type: ignore[arg-type]

    def test_max_concurrency_defaults_to_one(self) -> None:
        assert Routine().max_concurrency == 1


class TestTypeRegistration:
    def test_subclass_is_registered_as_module_qualname(self) -> None:
        class Registered(Routine):
            pass

        assert Registered.type_name == f"{__name__}:{Registered.__qualname__}"
        assert routine_types.get(Registered.type_name) is Registered

    def test_type_name_can_be_overridden(self) -> None:
        class Named(Routine):
            type_name = "tests.core:named-routine"

        assert routine_types.get("tests.core:named-routine") is Named


class TestEmit:
    def test_emit_outside_an_activation_is_a_typed_error(self) -> None:
        routine = Routine()
        routine.add_event("output")
        with pytest.raises(EmitOutsideActivationError, match="'output'"):
            routine.emit("output", x=1)

    def test_emit_of_unknown_event_inside_logic_fails_the_job_naming_it(
        self, runtime: Runtime, make_routine
    ) -> None:
        def logic(routine, slot_data, policy_message, job_state):
            routine.emit("nope", x=1)

        flow = Flow("emit-unknown")
        flow.add_routine(make_routine(logic), "r")
        state = runtime.exec(flow, entry_params={})
        assert runtime.wait_job(state.job_id, timeout=5)
        assert state.status is JobStatus.FAILED
        assert state.error_type == "UnknownEventError"
        assert "'nope'" in state.error and "'r'" in state.error

    def test_send_output_goes_to_output_log_and_handler(
        self, runtime: Runtime, make_routine
    ) -> None:
        def logic(routine, slot_data, policy_message, job_state):
            routine.send_output("progress", value=slot_data["input"][0]["v"])

        flow = Flow("outputs")
        flow.add_routine(make_routine(logic), "r")
        state = runtime.exec(flow, keep_open=True)
        seen: list[dict] = []
        state.output_handler = seen.append
        runtime.post(flow, "r", "input", {"v": 7}, job_id=state.job_id)
        assert runtime.wait_job(state.job_id, timeout=5)
        assert [(o["routine_id"], o["output_type"], o["data"]) for o in state.output_log] == [
            ("r", "progress", {"value": 7})
        ]
        assert seen == state.output_log

    def test_send_output_outside_an_activation_is_a_typed_error(self) -> None:
        with pytest.raises(EmitOutsideActivationError):
            Routine().send_output("x")
