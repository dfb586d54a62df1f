"""JobState: routine state, statuses, business data, save/load and resume."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from routilux import (
    ErrorHandler,
    ErrorStrategy,
    Flow,
    FlowRegistry,
    JobState,
    JobStatus,
    Runtime,
)
from routilux.errors import (
    ConfigurationError,
    JobNotAcceptingWorkError,
    PauseTimeoutError,
    SerializationError,
)

WAIT = 5.0


class TestRoutineState:
    def test_update_merges(self) -> None:
        state = JobState(flow_id="f")
        state.update_routine_state("r", {"a": 1, "b": 1})
        assert state.update_routine_state("r", {"b": 2, "c": 3}) == {"a": 1, "b": 2, "c": 3}
        assert state.get_routine_state("r") == {"a": 1, "b": 2, "c": 3}

    def test_get_returns_a_copy_and_a_default(self) -> None:
        state = JobState(flow_id="f")
        state.update_routine_state("r", {"a": 1})
        state.get_routine_state("r")["a"] = 99
        assert state.get_routine_state("r") == {"a": 1}
        assert state.get_routine_state("missing") is None
        assert state.get_routine_state("missing", {}) == {}

    def test_runtime_merges_into_user_state_and_never_replaces_it(
        self, runtime: Runtime, make_routine
    ) -> None:
        def logic(routine, slot_data, policy_message, job_state):
            job_state.update_routine_state("r", {"mine": slot_data["input"][0]["i"]})
            raise ValueError("skip me")

        routine = make_routine(logic, events=())
        routine.set_error_handler(ErrorHandler(strategy=ErrorStrategy.SKIP))
        flow = Flow("skip-state")
        flow.add_routine(routine, "r")
        state = runtime.post(flow, "r", "input", {"i": 1})
        runtime.post(flow, "r", "input", {"i": 2}, job_id=state.job_id)
        assert runtime.wait_job(state.job_id, timeout=WAIT)
        rs = state.get_routine_state("r")
        assert rs["mine"] == 2  # the user's key survives the runtime's own writes
        assert rs["skipped_activations"] == 2

    def test_state_persists_across_activations(self, runtime: Runtime, make_routine) -> None:
        def count(routine, slot_data, policy_message, job_state):
            n = job_state.get_routine_state("r", {}).get("n", 0)
            job_state.update_routine_state("r", {"n": n + 1})

        flow = Flow("count")
        flow.add_routine(make_routine(count, events=()), "r")
        state = runtime.post(flow, "r", "input", {})
        for _ in range(4):
            runtime.post(flow, "r", "input", {}, job_id=state.job_id)
        assert runtime.wait_job(state.job_id, timeout=WAIT)
        assert state.get_routine_state("r") == {"n": 5}

    def test_concurrent_updates_are_not_lost(self) -> None:
        state = JobState(flow_id="f")
        barrier = threading.Barrier(4, timeout=WAIT)

        def writer(k: int) -> None:
            barrier.wait()
            for i in range(200):
                state.update_routine_state("r", {f"{k}-{i}": i})

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
        assert len(state.get_routine_state("r")) == 800


class TestStatus:
    def test_values_are_the_lowercase_names(self) -> None:
        assert [s.value for s in JobStatus] == [
            "pending", "running", "idle", "paused", "completed", "failed", "cancelled",
        ]
        assert all(s == s.value and isinstance(s, str) for s in JobStatus)

    def test_terminal_statuses(self) -> None:
        assert {s for s in JobStatus if s.is_terminal} == {
            JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED,
        }

    def test_new_state_is_pending_with_an_id(self) -> None:
        state = JobState(flow_id="f")
        assert state.status is JobStatus.PENDING and state.job_id
        assert JobState(flow_id="f").job_id != state.job_id

    def test_job_ids_are_random_uuid4_hex(self) -> None:
        ids = [JobState(flow_id="f").job_id for _ in range(500)]
        assert len(set(ids)) == 500
        for job_id in ids:
            parsed = uuid.UUID(hex=job_id)
            assert parsed.hex == job_id
            assert parsed.version == 4 and parsed.variant == uuid.RFC_4122

    def test_the_state_lock_is_made_once_even_when_threads_race_for_it(self) -> None:
        # The lock is created on first use; threads asking at once must share one lock,
        # or update_routine_state would stop being atomic.
        for _ in range(20):
            state = JobState(flow_id="f")
            barrier = threading.Barrier(8)
            seen: list[object] = []

            def grab(state: JobState = state, barrier: threading.Barrier = barrier,
                     seen: list[object] = seen) -> None:
                barrier.wait()
                seen.append(state._lock)

            threads = [threading.Thread(target=grab) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert len({id(lock) for lock in seen}) == 1
            assert seen[0] is state._lock

    def test_routine_state_updates_from_many_threads_are_not_lost(self) -> None:
        state = JobState(flow_id="f")

        def bump() -> None:
            for _ in range(200):
                with state._lock:
                    n = state.get_routine_state("r", {}).get("n", 0)
                    state.update_routine_state("r", {"n": n + 1})

        threads = [threading.Thread(target=bump) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert state.get_routine_state("r") == {"n": 800}

    def test_timestamps_are_set_as_the_job_runs(self, runtime: Runtime, make_routine) -> None:
        flow = Flow("times")
        flow.add_routine(make_routine(events=()), "r")
        state = runtime.exec(flow, entry_params={})
        assert runtime.wait_job(state.job_id, timeout=WAIT)
        assert isinstance(state.created_at, datetime)
        assert state.created_at <= state.started_at <= state.finished_at

    def test_failure_records_error_and_traceback(self, runtime: Runtime, make_routine) -> None:
        def boom(routine, slot_data, policy_message, job_state):
            raise KeyError("missing-thing")

        flow = Flow("fails")
        flow.add_routine(make_routine(boom), "r")
        state = runtime.exec(flow, entry_params={})
        assert runtime.wait_job(state.job_id, timeout=WAIT)
        assert state.status is JobStatus.FAILED
        assert (state.error_type, state.error_routine) == ("KeyError", "r")
        assert "missing-thing" in state.error
        assert "Traceback" in state.error_traceback and "boom" in state.error_traceback


class TestBusinessData:
    def test_shared_data_and_log_are_per_job(self, runtime: Runtime, make_routine) -> None:
        def write(routine, slot_data, policy_message, job_state):
            job_state.shared_data["seen"] = slot_data["input"][0]["v"]
            job_state.shared_log.append(slot_data["input"][0]["v"])
            routine.emit("output", **slot_data["input"][0])

        def read(routine, slot_data, policy_message, job_state):
            job_state.shared_log.append(("read", job_state.shared_data["seen"]))

        flow = Flow("shared")
        flow.add_routine(make_routine(write), "w")
        flow.add_routine(make_routine(read, events=()), "r")
        flow.connect("w", "output", "r", "input")
        one = runtime.exec(flow, entry_params={"v": 1})
        two = runtime.exec(flow, entry_params={"v": 2})
        assert runtime.wait_until_all_jobs_finished(timeout=WAIT)
        assert one.shared_log == [1, ("read", 1)] and two.shared_log == [2, ("read", 2)]


class TestSaveLoad:
    def _finished(self, runtime: Runtime, make_routine) -> JobState:
        def logic(routine, slot_data, policy_message, job_state):
            job_state.update_routine_state("r", {"seen": slot_data["input"][0]})
            job_state.shared_data["k"] = [1, 2.5, None, True, {"nested": "x"}]
            job_state.shared_log.append({"event": "done"})

        flow = Flow("saved")
        flow.add_routine(make_routine(logic, events=()), "r")
        state = runtime.exec(flow, entry_params={"x": 1})
        assert runtime.wait_job(state.job_id, timeout=WAIT)
        return state

    def test_round_trip_through_a_file_keeps_everything(
        self, runtime: Runtime, make_routine, tmp_path: Path
    ) -> None:
        state = self._finished(runtime, make_routine)
        path = state.save(tmp_path / "sub" / "state.json")
        loaded = JobState.load(path)
        for name in ("job_id", "flow_id", "status", "created_at", "started_at", "finished_at",
                     "entry_params", "routine_states", "shared_data", "shared_log"):
            assert getattr(loaded, name) == getattr(state, name), name
        assert isinstance(loaded.finished_at, datetime)
        assert [(r.routine_id, r.status) for r in loaded.history()] == [("r", "completed")]
        assert loaded.history()[0].started_at == pytest.approx(state.history()[0].started_at)

    def test_saved_file_is_json_with_a_format_version(
        self, runtime: Runtime, make_routine, tmp_path: Path
    ) -> None:
        state = self._finished(runtime, make_routine)
        data = json.loads(state.save(tmp_path / "s.json").read_text())
        assert data["format_version"] == 1 and data["status"] == "completed"
        assert "output_handler" not in data

    def test_dict_round_trip(self, runtime: Runtime, make_routine) -> None:
        state = self._finished(runtime, make_routine)
        again = JobState.from_dict(state.to_dict())
        assert again.to_dict() == state.to_dict()

    def test_datetimes_in_business_data_are_saved(self, tmp_path: Path) -> None:
        state = JobState(flow_id="f")
        when = datetime(2024, 5, 17, 12, 30)
        state.shared_data["when"] = when
        loaded = JobState.load(state.save(tmp_path / "s.json"))
        assert loaded.shared_data["when"] == when

    def test_non_json_value_names_its_key_path(self, tmp_path: Path) -> None:
        state = JobState(flow_id="f")
        state.shared_data["outer"] = {"items": [1, object()]}
        with pytest.raises(SerializationError, match=r"shared_data\.outer\.items\[1\]") as info:
            state.save(tmp_path / "bad.json")
        assert info.value.path == "shared_data.outer.items[1]"
        assert not (tmp_path / "bad.json").exists()

    def test_non_json_queued_payload_names_its_key_path(
        self, runtime: Runtime, make_routine
    ) -> None:
        flow = Flow("queued-bad")
        flow.add_routine(make_routine(events=()), "r")
        state = runtime.exec(flow, keep_open=True)
        runtime.pause_job(state.job_id)
        runtime.post(flow, "r", "input", {"blob": object()}, job_id=state.job_id)
        with pytest.raises(SerializationError, match=r"pending\.r\.input\[0\]\.blob"):
            state.to_json()

    @pytest.mark.parametrize(
        ("content", "match"),
        [
            ("{not json", "not valid JSON"),
            ("[1, 2]", "must be an object"),
            ('{"flow_id": "f", "status": "exploded"}', "invalid job state"),
            ('{"format_version": 99, "flow_id": "f"}', "newer"),
        ],
    )
    def test_bad_files_are_serialization_errors(self, tmp_path: Path, content: str,
                                                match: str) -> None:
        path = tmp_path / "bad.json"
        path.write_text(content)
        with pytest.raises(SerializationError, match=match):
            JobState.load(path)

    def test_missing_file_is_a_serialization_error(self, tmp_path: Path) -> None:
        with pytest.raises(SerializationError, match="cannot read"):
            JobState.load(tmp_path / "nope.json")


class TestPausedSnapshot:
    def test_to_dict_of_a_paused_job_includes_queued_payloads(
        self, runtime: Runtime, make_routine
    ) -> None:
        flow = Flow("paused")
        flow.add_routine(make_routine(events=()), "r")
        state = runtime.exec(flow, keep_open=True)
        runtime.pause_job(state.job_id)
        runtime.post(flow, "r", "input", {"i": 1}, job_id=state.job_id)
        runtime.post(flow, "r", "input", {"i": 2}, job_id=state.job_id)
        data = state.to_dict()
        assert data["status"] == "paused"
        assert data["pending"] == {"r": {"input": [{"i": 1}, {"i": 2}]}}
        assert JobState.from_dict(data).pending == {"r": {"input": [{"i": 1}, {"i": 2}]}}


def build_pipeline(make_routine, gate: threading.Event, entered: threading.Event) -> Flow:
    """split(n) -> work (x10; waits for ``gate``) -> sink (sums into routine state)."""

    def split(routine, slot_data, policy_message, job_state):
        for i in range(1, slot_data["input"][0]["n"] + 1):
            routine.emit("output", i=i)

    def work(routine, slot_data, policy_message, job_state):
        entered.set()
        assert gate.wait(WAIT)
        routine.emit("output", v=slot_data["input"][0]["i"] * 10)

    def sink(routine, slot_data, policy_message, job_state):
        rs = job_state.get_routine_state("sink", {"total": 0, "count": 0})
        v = slot_data["input"][0]["v"]
        job_state.update_routine_state("sink", {"total": rs["total"] + v,
                                                "count": rs["count"] + 1})
        job_state.shared_log.append(v)

    flow = Flow("pipeline")
    flow.add_routine(make_routine(split), "split")
    flow.add_routine(make_routine(work), "work")
    flow.add_routine(make_routine(sink, events=()), "sink")
    flow.connect("split", "output", "work", "input")
    flow.connect("work", "output", "sink", "input")
    return flow


class TestResume:
    def _paused_and_saved(self, make_routine, tmp_path: Path) -> tuple[Flow, Path, dict]:
        gate, entered = threading.Event(), threading.Event()
        flow = build_pipeline(make_routine, gate, entered)
        registry = FlowRegistry()
        registry.register_by_name("pipe", flow)
        with Runtime(thread_pool_size=2, flow_registry=registry) as first:
            state = first.exec("pipe", entry_params={"n": 5})
            assert entered.wait(WAIT)
            # The first "work" activation is blocked: pausing times out but the job is paused.
            with pytest.raises(PauseTimeoutError, match="work"):
                first.pause_job(state.job_id, timeout=0.05)
            gate.set()
            first.pause_job(state.job_id, timeout=WAIT)  # returns once "work" has finished
            assert state.status is JobStatus.PAUSED
            snapshot = state.to_dict()
            path = state.save(tmp_path / "job.json")
        return flow, path, snapshot

    def test_saved_paused_job_holds_its_queued_work(self, make_routine, tmp_path: Path) -> None:
        _, _, snapshot = self._paused_and_saved(make_routine, tmp_path)
        assert snapshot["pending"] == {
            "work": {"input": [{"i": 2}, {"i": 3}, {"i": 4}, {"i": 5}]},
            "sink": {"input": [{"v": 10}]},
        }

    def test_resume_in_a_fresh_runtime_matches_an_uninterrupted_run(
        self, make_routine, tmp_path: Path
    ) -> None:
        flow, path, _ = self._paused_and_saved(make_routine, tmp_path)
        registry = FlowRegistry()
        registry.register_by_name("pipe", flow)
        with Runtime(thread_pool_size=2, flow_registry=registry) as second:
            loaded = JobState.load(path)
            resumed = second.exec("pipe", job_state=loaded)
            assert resumed is loaded
            assert second.wait_job(resumed.job_id, timeout=WAIT)
            straight = second.exec("pipe", entry_params={"n": 5})
            assert second.wait_job(straight.job_id, timeout=WAIT)
        assert resumed.status is JobStatus.COMPLETED and straight.status is JobStatus.COMPLETED
        assert resumed.get_routine_state("sink") == straight.get_routine_state("sink")
        assert resumed.get_routine_state("sink") == {"total": 150, "count": 5}
        assert sorted(resumed.shared_log) == sorted(straight.shared_log)
        # Nothing completed before the pause ran again.
        assert [r.routine_id for r in resumed.history()].count("split") == 1
        assert [r.routine_id for r in resumed.history()].count("work") == 5

    def test_terminal_state_cannot_be_resumed(self, runtime: Runtime, make_routine) -> None:
        flow = Flow("done")
        flow.add_routine(make_routine(events=()), "r")
        state = runtime.exec(flow, entry_params={})
        assert runtime.wait_job(state.job_id, timeout=WAIT)
        copy = JobState.from_dict(state.to_dict())
        with pytest.raises(JobNotAcceptingWorkError, match="completed"):
            runtime.exec(flow, job_state=copy)

    def test_state_of_another_flow_is_refused(self, runtime: Runtime, make_routine) -> None:
        flow = Flow("mine")
        flow.add_routine(make_routine(events=()), "r")
        with pytest.raises(ConfigurationError, match="'other'"):
            runtime.exec(flow, job_state=JobState(flow_id="other"))

    def test_fresh_pending_state_runs_its_entry_params(self, runtime: Runtime,
                                                      make_routine) -> None:
        flow = Flow("fresh")
        flow.add_routine(make_routine(events=()), "r")
        state = JobState(flow_id="fresh", entry_params={"x": 1})
        assert runtime.exec(flow, job_state=state) is state
        assert runtime.wait_job(state.job_id, timeout=WAIT)
        assert state.shared_log == [("r", "input", {"x": 1})]


class TestRefusedResumeLosesNothing:
    def test_a_saved_state_survives_a_resume_that_is_refused(self, tmp_path: Path) -> None:
        from routilux import Flow, JobState, Routine, Runtime
        from routilux.errors import RuntimeClosedError, UnknownRoutineError

        class Keep(Routine):
            def __init__(self) -> None:
                super().__init__()
                self.add_slot("input")
                self.set_logic(lambda slot_data, policy_message, job_state: None)

        flow = Flow("refused-resume")
        flow.add_routine(Keep(), "keep")
        state = JobState(flow_id="refused-resume", keep_open=True, entry_delivered=True)
        state.pending = {"keep": {"input": [{"n": 1}, {"n": 2}]}}
        state.status = state.status.PAUSED
        closed = Runtime(thread_pool_size=1)
        closed.shutdown()
        with pytest.raises(RuntimeClosedError):
            closed.exec(flow, job_state=state)
        assert state.pending == {"keep": {"input": [{"n": 1}, {"n": 2}]}}
        assert state.status.value == "paused"

        other = Flow("refused-resume")
        other.add_routine(Keep(), "other")
        with Runtime(thread_pool_size=1) as rt:
            with pytest.raises(UnknownRoutineError, match="keep"):
                rt.exec(other, job_state=state)
            assert state.pending == {"keep": {"input": [{"n": 1}, {"n": 2}]}}
            rt.exec(flow, job_state=state)  # and it still resumes where it was
            rt.complete_job(state.job_id)
            assert rt.wait_job(state.job_id, 10)
        assert state.status.value == "completed"
        assert state.pending == {}


class TestExecConstructor:
    """The hot paths build states, records, activations and stats with factories that set the
    slots themselves (``_new_state``, ``_completed_record``, ``new_activation``,
    ``new_context``): each must give exactly what the class's own ``__init__`` gives."""

    @pytest.mark.parametrize("entry", [None, {"x": 1}])
    @pytest.mark.parametrize("keep_open", [False, True])
    def test_same_fields_as_the_attrs_init(self, entry: dict | None, keep_open: bool) -> None:
        from collections import deque

        import attrs
        from routilux.job_state import _new_state

        h1: deque = deque(maxlen=7)
        h2: deque = deque(maxlen=7)
        fast = _new_state("f", entry, keep_open, h1)
        slow = JobState(flow_id="f", entry_params=entry, keep_open=keep_open,
                        execution_history=h2)
        for f in attrs.fields(JobState):
            a, b = getattr(fast, f.name), getattr(slow, f.name)  # unset slot: AttributeError
            if f.name == "job_id":
                assert len(a) == 32 and a != b
                u = uuid.UUID(hex=a)
                assert u.version == 4 and u.variant == uuid.RFC_4122
            elif f.name == "created_at":
                assert type(a) is type(b) and a.tzinfo == b.tzinfo
            elif f.name == "execution_history":
                assert a is h1 and b is h2
            else:
                assert a == b and type(a) is type(b), f.name
        # containers are the state's own, never shared between states
        other = _new_state("f", entry, keep_open, deque())
        for name in ("routine_states", "shared_data", "shared_log", "output_log", "dropped",
                     "unconsumed", "pending", "in_flight", "policy_states"):
            assert getattr(fast, name) is not getattr(other, name)
        assert fast.to_dict()["status"] == "pending"

    def test_completed_record_same_fields_as_the_attrs_init(self) -> None:
        import attrs
        from routilux.job_state import ExecutionRecord, _completed_record

        fast = _completed_record("r", 12.5, 0.25, 2)
        slow = ExecutionRecord(routine_id="r", status="completed", started_at=12.5,
                               duration=0.25, attempt=2)
        for f in attrs.fields(ExecutionRecord):
            assert getattr(fast, f.name) == getattr(slow, f.name), f.name
        assert fast.to_dict() == slow.to_dict()

    def test_activation_factory_sets_every_slot_as_init(self) -> None:
        from routilux._activation import Activation, new_activation

        data = {"in": [{"i": 1}]}
        fast_a = new_activation(3, data, {"m": 1}, 2, 9)
        slow_a = Activation(3, data, {"m": 1}, 2, 9)
        for name in Activation.__slots__:  # an unset slot raises AttributeError
            assert getattr(fast_a, name) == getattr(slow_a, name), name

    def test_context_factory_sets_every_slot_as_init(self) -> None:
        from routilux._context import ActivationContext, new_context

        job, routine = object(), object()
        fast = new_context(job, 4, routine)  # type: ignore[arg-type]
        slow = ActivationContext(job, 4, routine)  # type: ignore[arg-type]
        for name in ActivationContext.__slots__:
            assert getattr(fast, name) is getattr(slow, name), name
