"""Activation policies: when a routine runs and what each activation consumes."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from routilux import Flow, JobStatus, ManualClock, Runtime
from routilux.activation_policies import (
    ActivationPolicy,
    all_slots_ready_policy,
    batch_size_policy,
    breakpoint_policy,
    custom_policy,
    immediate_policy,
    time_interval_policy,
)
from routilux.errors import ConfigurationError, UnknownRoutineError


def emit_n(routine, slot_data, policy_message, job_state) -> None:
    """Source logic: emit ``n`` payloads ``{"i": 0..n-1}`` per entry payload."""
    for params in slot_data["input"]:
        for i in range(params.get("n", 1)):
            routine.emit("output", i=i)


def record_activation(routine, slot_data, policy_message, job_state) -> None:
    """Sink logic: one shared_log entry per activation: (slot_data copy, policy message)."""
    job_state.shared_log.append(
        ({k: [p["i"] for p in v] for k, v in slot_data.items()}, dict(policy_message))
    )


def source_to_sink(make_routine, policy: ActivationPolicy | None, name: str = "f") -> Flow:
    flow = Flow(name)
    flow.add_routine(make_routine(emit_n), "src")
    flow.add_routine(make_routine(record_activation, events=(), policy=policy), "sink")
    flow.connect("src", "output", "sink", "input")
    return flow


def run(runtime: Runtime, flow: Flow, **entry: Any):
    state = runtime.exec(flow, entry_params=entry)
    assert runtime.wait_job(state.job_id, timeout=5)
    assert state.status is JobStatus.COMPLETED, state.error
    return state


class TestPolicyObjects:
    @pytest.mark.parametrize(
        ("policy", "name", "params"),
        [
            (immediate_policy(), "immediate", {}),
            (batch_size_policy(3), "batch_size", {"size": 3, "flush_partial": True}),
            (all_slots_ready_policy(), "all_slots_ready", {}),
            (time_interval_policy(2), "time_interval", {"seconds": 2.0}),
            (breakpoint_policy(), "breakpoint", {}),
        ],
    )
    def test_named_and_parameterised(self, policy, name, params) -> None:
        assert isinstance(policy, ActivationPolicy)
        assert (policy.name, policy.params()) == (name, params)

    def test_custom_policy_names_its_predicate(self) -> None:
        def enough(queued, job_state):
            return True

        policy = custom_policy(enough)
        assert policy.name == "custom" and "enough" in policy.params()["predicate"]
        assert custom_policy(enough, name="mine").params() == {"predicate": "mine"}

    def test_equal_parameters_compare_equal(self) -> None:
        assert batch_size_policy(2) == batch_size_policy(2)
        assert batch_size_policy(2) != batch_size_policy(3)

    @pytest.mark.parametrize(
        "factory",
        [
            lambda: batch_size_policy(0),
            lambda: time_interval_policy(0),
            lambda: custom_policy("not callable"),
        ],
    )
    def test_bad_parameters_are_configuration_errors(self, factory) -> None:
        with pytest.raises(ConfigurationError):
            factory()


class TestImmediate:
    def test_one_payload_per_activation(self, runtime: Runtime, make_routine) -> None:
        state = run(runtime, source_to_sink(make_routine, immediate_policy()), n=5)
        assert [entry[0] for entry in state.shared_log] == [{"input": [i]} for i in range(5)]
        assert all(msg == {"policy": "immediate"} for _, msg in state.shared_log)

    def test_no_policy_means_immediate(self, runtime: Runtime, make_routine) -> None:
        state = run(runtime, source_to_sink(make_routine, None), n=3)
        assert [entry[0] for entry in state.shared_log] == [{"input": [i]} for i in range(3)]

    def test_round_robin_across_slots(self, runtime: Runtime, make_routine) -> None:
        flow = Flow("rr")
        flow.add_routine(
            make_routine(record_activation, slots=("a", "b"), events=(), policy=immediate_policy()),
            "r",
        )
        state = runtime.exec(flow, keep_open=True)
        runtime.pause_job(state.job_id)  # queue everything first, then let it run
        for i in range(3):
            runtime.post(flow, "r", "a", {"i": i}, job_id=state.job_id)
        for i in range(3):
            runtime.post(flow, "r", "b", {"i": 10 + i}, job_id=state.job_id)
        assert state.shared_log == []
        runtime.resume_job(state.job_id)
        assert runtime.wait_job(state.job_id, timeout=5)
        assert [entry[0] for entry in state.shared_log] == [
            {"a": [0]}, {"b": [10]}, {"a": [1]}, {"b": [11]}, {"a": [2]}, {"b": [12]},
        ]


class TestBatchSize:
    def test_consumes_exactly_size(self, runtime: Runtime, make_routine) -> None:
        state = run(runtime, source_to_sink(make_routine, batch_size_policy(3)), n=6)
        assert [entry[0]["input"] for entry in state.shared_log] == [[0, 1, 2], [3, 4, 5]]
        assert [entry[1]["partial"] for entry in state.shared_log] == [False, False]

    def test_partial_batch_is_flushed_at_drain(self, runtime: Runtime, make_routine) -> None:
        state = run(runtime, source_to_sink(make_routine, batch_size_policy(3)), n=7)
        assert [entry[0]["input"] for entry in state.shared_log] == [[0, 1, 2], [3, 4, 5], [6]]
        assert [entry[1]["partial"] for entry in state.shared_log] == [False, False, True]
        assert state.unconsumed == {}

    def test_without_flush_partial_leftovers_are_recorded_unconsumed(
        self, runtime: Runtime, make_routine
    ) -> None:
        policy = batch_size_policy(3, flush_partial=False)
        state = run(runtime, source_to_sink(make_routine, policy), n=7)
        assert [entry[0]["input"] for entry in state.shared_log] == [[0, 1, 2], [3, 4, 5]]
        assert state.unconsumed == {"sink.input": [{"i": 6}]}


class TestAllSlotsReady:
    @pytest.fixture
    def join_flow(self, make_routine) -> Flow:
        flow = Flow("join")
        flow.add_routine(
            make_routine(
                record_activation, slots=("left", "right"), events=(),
                policy=all_slots_ready_policy(),
            ),
            "join",
        )
        return flow

    def test_waits_for_every_slot_then_takes_one_of_each(
        self, runtime: Runtime, join_flow: Flow
    ) -> None:
        state = runtime.exec(join_flow, keep_open=True)
        runtime.post(join_flow, "join", "left", {"i": 1}, job_id=state.job_id)
        runtime.post(join_flow, "join", "left", {"i": 2}, job_id=state.job_id)
        assert runtime.wait_job(state.job_id, timeout=5)
        assert state.shared_log == []
        runtime.post(join_flow, "join", "right", {"i": 9}, job_id=state.job_id)
        assert runtime.wait_job(state.job_id, timeout=5)
        assert state.shared_log == [({"left": [1], "right": [9]}, {"policy": "all_slots_ready"})]

    def test_unmatched_payloads_are_recorded_unconsumed(
        self, runtime: Runtime, join_flow: Flow
    ) -> None:
        state = runtime.exec(join_flow, keep_open=True)
        runtime.post(join_flow, "join", "left", {"i": 1}, job_id=state.job_id)
        runtime.complete_job(state.job_id)
        assert runtime.wait_job(state.job_id, timeout=5)
        assert state.status is JobStatus.COMPLETED
        assert state.unconsumed == {"join.left": [{"i": 1}]}


class TestTimeInterval:
    def test_first_runs_at_once_and_held_data_is_delivered_when_interval_ends(
        self, clocked_runtime: Runtime, clock: ManualClock, make_routine
    ) -> None:
        flow = source_to_sink(make_routine, time_interval_policy(5))
        state = clocked_runtime.exec(flow, entry_params={"n": 3})
        # Time does not move: the first payload ran, the other two are held, the job waits.
        assert not clocked_runtime.wait_job(state.job_id, timeout=0.2)
        assert [entry[0]["input"] for entry in state.shared_log] == [[0]]
        # No further arrival: the timer alone delivers what was held.
        clock.advance(5)
        assert clocked_runtime.wait_job(state.job_id, timeout=5)
        assert state.status is JobStatus.COMPLETED
        assert [entry[0]["input"] for entry in state.shared_log] == [[0], [1, 2]]
        assert [entry[1]["fired_at"] for entry in state.shared_log] == [0.0, 5.0]

    def test_state_is_per_routine(
        self, clocked_runtime: Runtime, make_routine
    ) -> None:
        flow = Flow("two-throttles")
        flow.add_routine(make_routine(emit_n), "src")
        for rid in ("a", "b"):
            flow.add_routine(
                make_routine(record_activation, events=(), policy=time_interval_policy(5)), rid
            )
            flow.connect("src", "output", rid, "input")
        state = clocked_runtime.exec(flow, entry_params={"n": 1})
        # Each routine's first payload runs at once: one routine's interval never holds another.
        assert clocked_runtime.wait_job(state.job_id, timeout=5)
        assert len(state.shared_log) == 2

    def test_state_is_per_job(self, clocked_runtime: Runtime, make_routine) -> None:
        flow = source_to_sink(make_routine, time_interval_policy(5))
        first = clocked_runtime.exec(flow, entry_params={"n": 1})
        assert clocked_runtime.wait_job(first.job_id, timeout=5)
        second = clocked_runtime.exec(flow, entry_params={"n": 1})
        assert clocked_runtime.wait_job(second.job_id, timeout=5)
        assert len(second.shared_log) == 1


class TestCustom:
    def test_true_consumes_everything_queued(self, runtime: Runtime, make_routine) -> None:
        policy = custom_policy(lambda queued, js: len(queued["input"]) >= 3, name="three")
        state = run(runtime, source_to_sink(make_routine, policy), n=3)
        assert state.shared_log == [
            ({"input": [0, 1, 2]}, {"policy": "custom", "predicate": "three"})
        ]

    def test_mapping_consumes_the_given_counts(self, runtime: Runtime, make_routine) -> None:
        def pairs(queued, job_state):
            return {"input": 2} if len(queued["input"]) >= 2 else None

        policy = custom_policy(pairs)
        state = run(runtime, source_to_sink(make_routine, policy), n=4)
        assert [entry[0]["input"] for entry in state.shared_log] == [[0, 1], [2, 3]]

    def test_predicate_sees_queued_copies_and_job_state(
        self, runtime: Runtime, make_routine
    ) -> None:
        seen: list[tuple[int, str]] = []

        def predicate(queued, job_state):
            seen.append((len(queued["input"]), job_state.flow_id))
            queued["input"].clear()  # a copy: clearing it consumes nothing
            return False

        state = run(runtime, source_to_sink(make_routine, custom_policy(predicate)), n=2)
        assert seen[:2] == [(1, "f"), (2, "f")]
        assert state.shared_log == []
        assert state.unconsumed == {"sink.input": [{"i": 0}, {"i": 1}]}


class TestBreakpoint:
    @pytest.fixture
    def held(self, runtime: Runtime, make_routine, eventually):
        flow = source_to_sink(make_routine, breakpoint_policy(), name="bp")
        state = runtime.exec(flow, entry_params={"n": 3})
        assert eventually(lambda: state.status is JobStatus.PAUSED)
        return flow, state

    def test_holding_data_pauses_the_job(self, runtime: Runtime, held) -> None:
        _, state = held
        assert state.shared_log == []
        assert not runtime.wait_until_all_jobs_finished(timeout=0.05)  # paused holds work

    def test_held_data_is_kept_in_the_saved_state(self, held) -> None:
        _, state = held
        assert state.to_dict()["pending"] == {"sink": {"input": [{"i": 0}, {"i": 1}, {"i": 2}]}}

    def test_release_breakpoint_replays_everything_held(self, runtime: Runtime, held) -> None:
        _, state = held
        runtime.release_breakpoint(state.job_id, "sink")
        assert runtime.wait_job(state.job_id, timeout=5)
        assert state.status is JobStatus.COMPLETED
        assert [entry[0]["input"] for entry in state.shared_log] == [[0], [1], [2]]
        assert state.unconsumed == {}

    def test_resume_job_replays_everything_held(self, runtime: Runtime, held) -> None:
        _, state = held
        assert runtime.resume_job(state.job_id) is True
        assert runtime.wait_job(state.job_id, timeout=5)
        assert state.status is JobStatus.COMPLETED
        assert [entry[0]["input"] for entry in state.shared_log] == [[0], [1], [2]]

    def test_release_unknown_routine_is_named(self, runtime: Runtime, held) -> None:
        _, state = held
        with pytest.raises(UnknownRoutineError, match="'ghost'"):
            runtime.release_breakpoint(state.job_id, "ghost")

    def test_released_breakpoint_lets_later_data_through(
        self, runtime: Runtime, make_routine, eventually
    ) -> None:
        flow = Flow("bp-open")
        flow.add_routine(
            make_routine(record_activation, events=(), policy=breakpoint_policy()), "r"
        )
        state = runtime.exec(flow, keep_open=True)
        runtime.post(flow, "r", "input", {"i": 1}, job_id=state.job_id)
        assert eventually(lambda: state.status is JobStatus.PAUSED)
        runtime.release_breakpoint(state.job_id, "r")
        assert runtime.wait_job(state.job_id, timeout=5)
        runtime.post(flow, "r", "input", {"i": 2}, job_id=state.job_id)
        assert runtime.wait_job(state.job_id, timeout=5)
        assert [entry[0]["input"] for entry in state.shared_log] == [[1], [2]]
        assert state.status is JobStatus.IDLE


class TestPolicyStateIsPerJob:
    def test_batches_of_two_jobs_never_mix(self, runtime: Runtime, make_routine) -> None:
        gate = threading.Event()

        def gated_emit(routine, slot_data, policy_message, job_state):
            assert gate.wait(5)
            emit_n(routine, slot_data, policy_message, job_state)

        flow = Flow("per-job-batches")
        flow.add_routine(make_routine(gated_emit), "src")
        flow.add_routine(make_routine(record_activation, events=(), policy=batch_size_policy(2)),
                         "sink")
        flow.connect("src", "output", "sink", "input")
        first = runtime.exec(flow, entry_params={"n": 3})
        second = runtime.exec(flow, entry_params={"n": 1})
        gate.set()
        assert runtime.wait_until_all_jobs_finished(timeout=5)
        assert [e[0]["input"] for e in first.shared_log] == [[0, 1], [2]]
        assert [e[0]["input"] for e in second.shared_log] == [[0]]
