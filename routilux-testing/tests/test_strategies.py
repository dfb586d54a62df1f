"""The hypothesis strategies: payloads, flows, job states."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from routilux import Flow, JobState, JobStatus, Routine, batch_size_policy
from routilux.activation_policies import AllSlotsReadyPolicy, BatchSizePolicy, ImmediatePolicy
from routilux_testing import run_flow
from routilux_testing.strategies import (
    FlowSpec,
    flow_specs,
    flows,
    job_states,
    json_values,
    payloads,
)

FAST = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


class Unregistered(Routine, register=False):
    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")


class NoSlots(Routine):
    def __init__(self) -> None:
        super().__init__()
        self.add_event("output")


class TestPayloads:
    @FAST
    @given(payloads())
    def test_payloads_are_json_dicts_that_survive_json(self, payload: dict[str, Any]) -> None:
        assert isinstance(payload, dict) and all(isinstance(k, str) for k in payload)
        assert json.loads(json.dumps(payload)) == payload

    @FAST
    @given(json_values())
    def test_values_survive_json(self, value: Any) -> None:
        assert json.loads(json.dumps(value)) == value

    @FAST
    @given(payloads(min_size=2, max_size=2, keys=st.sampled_from("abc"), values=st.integers()))
    def test_keys_values_and_sizes_are_honoured(self, payload: dict[str, Any]) -> None:
        assert len(payload) == 2 and set(payload) <= set("abc")
        assert all(isinstance(v, int) for v in payload.values())


class TestFlowSpecs:
    @FAST
    @given(data=st.data())
    def test_drawn_flows_are_valid_dags_of_the_given_classes(
        self, data: st.DataObject, lib: types.SimpleNamespace
    ) -> None:
        spec = data.draw(flow_specs([lib.Double, lib.Join], max_routines=5))
        flow = spec.build()
        assert flow.validate().ok
        assert list(flow.routines) == list(spec.routine_ids)
        assert flow.connections == spec.connections
        assert (flow.entry.routine_id, flow.entry.slot) == spec.entry == (
            "r0", spec.entry[1]
        )
        order = {rid: i for i, rid in enumerate(spec.routine_ids)}
        for c in spec.connections:
            assert order[c.source_id] < order[c.target_id]          # a DAG
        for rs in spec.routines:
            routine = flow.routines[rs.routine_id]
            assert type(routine) is rs.routine_type
            assert isinstance(routine.activation_policy,
                              (ImmediatePolicy, BatchSizePolicy, AllSlotsReadyPolicy))
            assert routine.activation_policy.name == rs.policy

    @FAST
    @given(data=st.data())
    def test_drawn_flows_run_and_round_trip_through_flow_files(
        self, data: st.DataObject, lib: types.SimpleNamespace
    ) -> None:
        spec = data.draw(flow_specs([lib.Double], max_routines=4,
                                    policies=("immediate", "batch_size")))
        flow = spec.build()
        assert Flow.from_dict(flow.to_dict()).to_dict() == flow.to_dict()
        state = run_flow(flow, {"n": 1})
        assert state.unconsumed == {}

    @FAST
    @given(data=st.data())
    def test_custom_policy_factories_and_concurrency(
        self, data: st.DataObject, lib: types.SimpleNamespace
    ) -> None:
        spec = data.draw(flow_specs([lib.Double], min_routines=3, max_routines=3,
                                    policies={"pairs": lambda: batch_size_policy(2)},
                                    max_concurrency=(2,), flow_id="fixed"))
        flow = spec.build(configure=lambda rid, r: r.set_config(tag=rid))
        assert flow.flow_id == "fixed"
        for rid, routine in flow.routines.items():
            assert routine.activation_policy == batch_size_policy(2)
            assert routine.max_concurrency == 2
            assert routine.get_config("tag") == rid

    def test_shrinks_towards_a_single_routine(self, lib: types.SimpleNamespace) -> None:
        from hypothesis import find

        spec = find(flow_specs([lib.Double, lib.Join]), lambda s: True)
        assert isinstance(spec, FlowSpec)
        assert len(spec.routines) == 1 and spec.connections == ()

    def test_targets_and_sources(self, lib: types.SimpleNamespace) -> None:
        from hypothesis import find

        spec = find(flow_specs([lib.Double], min_routines=3, max_routines=3),
                    lambda s: len(s.connections) == 3)
        assert spec.targets("r0") == [("output", "r1", "input"), ("output", "r2", "input")]
        assert spec.sources("r2") == [("r0", "output", "input"), ("r1", "output", "input")]

    @FAST
    @given(data=st.data())
    def test_flows_builds_flow_objects(self, data: st.DataObject,
                                       lib: types.SimpleNamespace) -> None:
        assert isinstance(data.draw(flows([lib.Double], max_routines=2)), Flow)

    @pytest.mark.parametrize(
        ("args", "kwargs", "match"),
        [
            ((), {}, "at least one routine class"),
            (("not a class",), {}, "Routine subclasses"),
            ((Unregistered,), {}, "not registered"),
            ((NoSlots,), {}, "declares no slot"),
            ((None,), {"policies": ("sometimes",)}, "unknown policy"),
            ((None,), {"policies": {}}, "at least one policy"),
            ((None,), {"min_routines": 3, "max_routines": 2}, "min_routines"),
            ((None,), {"max_concurrency": (0,)}, "max_concurrency"),
        ],
    )
    def test_bad_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any], match: str,
                           lib: types.SimpleNamespace) -> None:
        types_ = [lib.Double if a is None else a for a in args]
        with pytest.raises(InvalidArgument, match=match):
            flow_specs(types_, **kwargs)


class TestJobStates:
    @settings(max_examples=60, deadline=None)
    @given(job_states())
    def test_round_trip_through_dicts_and_json(self, state: JobState) -> None:
        data = state.to_dict()
        again = JobState.from_json(state.to_json())
        assert again.to_dict() == data
        assert JobState.from_dict(data).to_dict() == data

    @FAST
    @given(state=job_states(flow_id="f", statuses=["paused"], routine_ids=["a", "b"]))
    def test_round_trip_through_files(self, state: JobState, tmp_path: Path) -> None:
        assert state.flow_id == "f" and state.status is JobStatus.PAUSED
        assert set(state.routine_states) <= {"a", "b"}
        path = state.save(tmp_path / "job.json")
        assert JobState.load(path).to_dict() == state.to_dict()

    def test_saved_states_hold_work_in_progress(self) -> None:
        seen: list[JobState] = []

        @settings(max_examples=30, deadline=None, derandomize=True, database=None)
        @given(job_states(statuses=["running", "idle"]))
        def collect(state: JobState) -> None:
            seen.append(state)

        collect()
        assert any(s.pending for s in seen) and any(s.policy_states for s in seen)
        assert any(s.in_flight and s.in_flight[0]["retry_in"] > 0 for s in seen)

    def test_empty_statuses_are_refused(self) -> None:
        with pytest.raises(InvalidArgument, match="statuses"):
            job_states(statuses=[])
