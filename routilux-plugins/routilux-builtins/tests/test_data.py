"""Mapper, Filter, DataTransformer, SchemaValidator and Splitter, each in a real flow."""

from __future__ import annotations

from typing import Any

import pytest
from routilux import ErrorHandler, ErrorStrategy, Flow, JobStatus, Routine, Runtime
from routilux_builtins import (
    DataTransformer,
    Filter,
    Mapper,
    PayloadError,
    SchemaValidator,
    Splitter,
    register_condition,
    register_transform,
)

from .conftest import Emitter, recorded, recorder


def run(runtime: Runtime, routine: Routine, payloads: list[dict[str, Any]],
        outputs: dict[str, str]) -> Any:
    """Emitter -> routine -> one recorder per event in ``outputs`` ({event: tag})."""
    flow = Flow("t")
    flow.add_routine(Emitter(), "src")
    flow.add_routine(routine, "subject")
    flow.connect("src", "output", "subject", "input")
    for event, tag in outputs.items():
        flow.add_routine(recorder(tag), tag)
        flow.connect("subject", event, tag, "input")
    state = runtime.exec(flow, entry_params={"payloads": payloads})
    assert runtime.wait_job(state.job_id, timeout=10)
    return state


class TestMapper:
    def test_maps_fields_with_jmespath(self, runtime: Runtime) -> None:
        m = Mapper.configured(fields={"name": "user.name", "first_tag": "tags[0]",
                                      "n": "length(tags)"})
        state = run(runtime, m, [{"user": {"name": "ada"}, "tags": ["x", "y"]}], {"output": "o"})
        assert state.status is JobStatus.COMPLETED
        assert recorded(state, "o") == [{"name": "ada", "first_tag": "x", "n": 2}]

    def test_keep_input_and_drop_missing(self, runtime: Runtime) -> None:
        m = Mapper.configured(fields={"city": "address.city", "id2": "id"}, keep_input=True,
                              drop_missing=True)
        state = run(runtime, m, [{"id": 1}], {"output": "o"})
        assert recorded(state, "o") == [{"id": 1, "id2": 1}]


class TestFilter:
    def test_splits_passed_and_rejected(self, runtime: Runtime) -> None:
        f = Filter.configured(when="amount > `10`")
        payloads = [{"amount": 5}, {"amount": 50}, {"amount": 11}]
        state = run(runtime, f, payloads, {"passed": "p", "rejected": "r"})
        assert recorded(state, "p") == [{"amount": 50}, {"amount": 11}]
        assert recorded(state, "r") == [{"amount": 5}]

    def test_jmespath_truthiness_zero_is_true_empty_list_false(self, runtime: Runtime) -> None:
        f = Filter.configured(when="value")
        payloads = [{"value": 0}, {"value": []}, {"value": ""}, {}, {"value": [1]}]
        state = run(runtime, f, payloads, {"passed": "p"})
        assert recorded(state, "p") == [{"value": 0}, {"value": [1]}]

    def test_registered_condition(self, runtime: Runtime) -> None:
        register_condition("tests.even_id", lambda p: p["id"] % 2 == 0, replace=True)
        f = Filter.configured(condition="tests.even_id")
        state = run(runtime, f, [{"id": 1}, {"id": 2}], {"passed": "p"})
        assert recorded(state, "p") == [{"id": 2}]


class TestDataTransformer:
    def test_applies_named_transforms_in_order(self, runtime: Runtime) -> None:
        t = DataTransformer.configured(transforms={
            "name": ["strip", "title"],
            "age": "int",
            "price": [{"name": "float"}, {"name": "round", "ndigits": 1}],
            "tags": {"name": "split", "sep": ","},
        })
        payload = {"name": "  ada lovelace ", "age": " 36 ", "price": "3.14159", "tags": "a,b",
                   "other": 1}
        state = run(runtime, t, [payload], {"output": "o"})
        assert recorded(state, "o") == [
            {"name": "Ada Lovelace", "age": 36, "price": 3.1, "tags": ["a", "b"], "other": 1}
        ]

    def test_user_registered_transform(self, runtime: Runtime) -> None:
        register_transform("tests.cents", lambda v, factor=100: int(v * factor), replace=True)
        t = DataTransformer.configured(transforms={"amount": "tests.cents"})
        state = run(runtime, t, [{"amount": 1.25}], {"output": "o"})
        assert recorded(state, "o") == [{"amount": 125}]

    def test_missing_field_is_skipped_by_default(self, runtime: Runtime) -> None:
        t = DataTransformer.configured(transforms={"x": "upper"})
        state = run(runtime, t, [{"y": "a"}], {"output": "o"})
        assert recorded(state, "o") == [{"y": "a"}]

    def test_failure_emits_with_on_error_emit(self, runtime: Runtime) -> None:
        t = DataTransformer.configured(transforms={"age": "int"}, on_error="emit")
        state = run(runtime, t, [{"age": "x"}, {"age": "3"}], {"output": "o", "failed": "f"})
        assert recorded(state, "o") == [{"age": 3}]
        [failed] = recorded(state, "f")
        assert failed["field"] == "age" and failed["payload"] == {"age": "x"}
        assert "int" in failed["error"]

    def test_failure_raises_payload_error_by_default(self, runtime: Runtime) -> None:
        t = DataTransformer.configured(transforms={"age": "int"})
        state = run(runtime, t, [{"age": "x"}], {"output": "o"})
        assert state.status is JobStatus.FAILED
        assert state.error_type == "PayloadError" and "'age'" in (state.error or "")

    def test_failure_with_continue_handler_keeps_going(self, runtime: Runtime) -> None:
        t = DataTransformer.configured(transforms={"age": "int"})
        t.set_error_handler(ErrorHandler(strategy=ErrorStrategy.CONTINUE))
        state = run(runtime, t, [{"age": "x"}, {"age": "4"}], {"output": "o"})
        assert state.status is JobStatus.COMPLETED
        assert recorded(state, "o") == [{"age": 4}]


SCHEMA = {
    "type": "object",
    "required": ["id", "items"],
    "properties": {
        "id": {"type": "integer"},
        "items": {"type": "array", "items": {"type": "object", "required": ["name"]}},
    },
}


class TestSchemaValidator:
    def test_valid_and_invalid_with_paths(self, runtime: Runtime) -> None:
        v = SchemaValidator.configured(schema=SCHEMA)
        good = {"id": 1, "items": [{"name": "a"}]}
        bad = {"id": "x", "items": [{"name": "a"}, {}]}
        state = run(runtime, v, [good, bad], {"valid": "ok", "invalid": "bad"})
        assert recorded(state, "ok") == [good]
        [invalid] = recorded(state, "bad")
        assert invalid["payload"] == bad
        paths = sorted(e["path"] for e in invalid["errors"])
        assert paths == ["$.id", "$.items[1]"]
        by_path = {e["path"]: e for e in invalid["errors"]}
        assert by_path["$.items[1]"]["location"] == ["items", 1]
        assert by_path["$.id"]["validator"] == "type"
        assert "not of type 'integer'" in by_path["$.id"]["message"]

    def test_max_errors_bounds_the_report(self, runtime: Runtime) -> None:
        schema = {"type": "object", "properties": {k: {"type": "string"} for k in "abcde"}}
        v = SchemaValidator.configured(schema=schema, max_errors=2)
        state = run(runtime, v, [dict.fromkeys("abcde", 1)], {"invalid": "bad"})
        assert len(recorded(state, "bad")[0]["errors"]) == 2


class TestSplitter:
    def test_one_payload_per_item_with_index_then_done(self, runtime: Runtime) -> None:
        s = Splitter.configured(field="rows", include=["order"])
        state = run(runtime, s, [{"order": 7, "rows": ["a", "b"]}],
                    {"item": "i", "done": "d"})
        assert recorded(state, "i") == [
            {"order": 7, "item": "a", "index": 0, "total": 2},
            {"order": 7, "item": "b", "index": 1, "total": 2},
        ]
        assert recorded(state, "d") == [{"order": 7, "count": 2}]

    def test_custom_keys_and_no_total(self, runtime: Runtime) -> None:
        s = Splitter.configured(item_key="value", index_key="i", total_key=None)
        state = run(runtime, s, [{"items": [5]}], {"item": "i"})
        assert recorded(state, "i") == [{"value": 5, "i": 0}]

    @pytest.mark.parametrize(
        ("payload", "needle"),
        [({"items": "abc"}, "must be a list"), ({"items": [1, 2, 3]}, "max_items=2")],
    )
    def test_bad_payloads_fail_with_payload_error(
        self, runtime: Runtime, payload: dict[str, Any], needle: str
    ) -> None:
        s = Splitter.configured(max_items=2)
        state = run(runtime, s, [payload], {"item": "i"})
        assert state.status is JobStatus.FAILED
        assert state.error_type == PayloadError.__name__
        assert needle in (state.error or "")
        assert recorded(state, "i") == []
