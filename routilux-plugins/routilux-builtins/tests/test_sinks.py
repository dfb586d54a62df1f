"""DeadLetter and ResultCollector: bounded writes to shared_data, drops counted."""

from __future__ import annotations

from typing import Any

from routilux import Flow, JobState, JobStatus, Runtime
from routilux_builtins import DeadLetter, Filter, ResultCollector, record_dead_letter

from .conftest import Emitter, recorded, recorder


def collect(runtime: Runtime, sink: Any, payloads: list[dict[str, Any]],
            collected_tag: str | None = None) -> JobState:
    flow = Flow("sink")
    flow.add_routine(Emitter(), "src")
    flow.add_routine(sink, "sink")
    flow.connect("src", "output", "sink", "input")
    if collected_tag:
        flow.add_routine(recorder(collected_tag), collected_tag)
        flow.connect("sink", "collected", collected_tag, "input")
    state = runtime.exec(flow, entry_params={"payloads": payloads})
    assert runtime.wait_job(state.job_id, timeout=10)
    assert state.status is JobStatus.COMPLETED
    return state


class TestResultCollector:
    def test_collects_into_shared_data(self, runtime: Runtime) -> None:
        state = collect(runtime, ResultCollector.configured(key="out"), [{"i": 0}, {"i": 1}])
        assert state.shared_data["out"] == [{"i": 0}, {"i": 1}]
        assert state.shared_data["out_dropped"] == 0

    def test_bounded_drop_oldest_counts_drops(self, runtime: Runtime) -> None:
        sink = ResultCollector.configured(max_items=3, field="i")
        state = collect(runtime, sink, [{"i": i} for i in range(5)])
        assert state.shared_data["results"] == [2, 3, 4]
        assert state.shared_data["results_dropped"] == 2

    def test_bounded_drop_newest_keeps_first(self, runtime: Runtime) -> None:
        sink = ResultCollector.configured(max_items=2, field="i", overflow="drop_newest")
        state = collect(runtime, sink, [{"i": i} for i in range(5)])
        assert state.shared_data["results"] == [0, 1]
        assert state.shared_data["results_dropped"] == 3

    def test_emit_on_drain_emits_the_collection_once(self, runtime: Runtime) -> None:
        sink = ResultCollector.configured(field="i", emit_on_drain=True, max_items=2)
        state = collect(runtime, sink, [{"i": i} for i in range(3)], collected_tag="c")
        assert recorded(state, "c") == [{"items": [1, 2], "count": 2, "dropped": 1}]
        assert state.unconsumed == {}

    def test_emit_on_drain_waits_for_complete_job_when_kept_open(
        self, runtime: Runtime
    ) -> None:
        flow = Flow("open")
        flow.add_routine(ResultCollector.configured(emit_on_drain=True, field="v"), "sink")
        flow.add_routine(recorder("c"), "c")
        flow.connect("sink", "collected", "c", "input")
        state = runtime.post(flow, "sink", "input", {"v": 1})
        runtime.post(flow, "sink", "input", {"v": 2}, job_id=state.job_id)
        assert runtime.wait_job(state.job_id, timeout=10)
        assert state.status is JobStatus.IDLE
        assert recorded(state, "c") == []
        runtime.complete_job(state.job_id)
        assert runtime.wait_job(state.job_id, timeout=10)
        assert state.status is JobStatus.COMPLETED
        assert recorded(state, "c") == [{"items": [1, 2], "count": 2, "dropped": 0}]


class TestDeadLetter:
    def test_records_rejected_payloads_with_reason(self, runtime: Runtime) -> None:
        flow = Flow("dlq")
        flow.add_routine(Emitter(), "src")
        flow.add_routine(Filter.configured(when="ok"), "filter")
        flow.add_routine(DeadLetter(), "dlq")
        flow.connect("src", "output", "filter", "input")
        flow.connect("filter", "rejected", "dlq", "input")
        payloads = [{"ok": True}, {"ok": False, "reason": "not ok", "source": "filter"},
                    {"ok": False}]
        state = runtime.exec(flow, entry_params={"payloads": payloads})
        assert runtime.wait_job(state.job_id, timeout=10)
        letters = state.shared_data["dead_letters"]
        assert [(d["reason"], d["source"]) for d in letters] == [
            ("not ok", "filter"), ("unspecified", None)
        ]
        assert letters[0]["payload"] == payloads[1]
        assert isinstance(letters[0]["recorded_at"], float)

    def test_bounded_and_counted(self, runtime: Runtime) -> None:
        sink = DeadLetter.configured(max_items=2, key="dlq")
        state = collect(runtime, sink, [{"reason": str(i)} for i in range(5)])
        assert [d["reason"] for d in state.shared_data["dlq"]] == ["3", "4"]
        assert state.shared_data["dlq_dropped"] == 3

    def test_reason_from_validator_errors(self, runtime: Runtime) -> None:
        errors = [{"path": "$.id", "message": "bad id"}]
        state = collect(runtime, DeadLetter(), [{"payload": {}, "errors": errors}])
        assert state.shared_data["dead_letters"][0]["reason"] == "$.id: bad id"

    def test_record_dead_letter_helper_is_bounded(self) -> None:
        state = JobState(flow_id="f")
        for i in range(3):
            record_dead_letter(state, {"i": i}, "boom", max_items=2, source="x")
        assert [d["payload"]["i"] for d in state.shared_data["dead_letters"]] == [1, 2]
        assert state.shared_data["dead_letters_dropped"] == 1
