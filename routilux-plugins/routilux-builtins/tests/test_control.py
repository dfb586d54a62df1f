"""Aggregator, Batcher, Debouncer and ConditionalRouter in real flows; timers are driven by a
ManualClock (time moves only when the test advances it)."""

from __future__ import annotations

from typing import Any

from routilux import Flow, JobStatus, ManualClock, Routine, Runtime
from routilux.slot import Overflow
from routilux_builtins import (
    Aggregator,
    Batcher,
    ConditionalRouter,
    Debouncer,
    register_condition,
)

from .conftest import Emitter, recorded, recorder


def posted_flow(routine: Routine, event: str, tag: str = "out") -> Flow:
    """``routine`` (fed by posts) -> recorder ``tag``."""
    flow = Flow("timed")
    flow.add_routine(routine, "subject")
    flow.add_routine(recorder(tag), tag)
    flow.connect("subject", event, tag, "input")
    return flow


class TestAggregator:
    def test_all_mode_joins_one_payload_per_input(self, clocked: Runtime) -> None:
        flow = posted_flow(Aggregator.configured(inputs=["a", "b"]), "output")
        state = clocked.post(flow, "subject", "a", {"x": 1})
        clocked.post(flow, "subject", "a", {"x": 2}, job_id=state.job_id)
        clocked.post(flow, "subject", "b", {"y": 1}, job_id=state.job_id)
        assert clocked.wait_job(state.job_id, timeout=10)
        assert recorded(state, "out") == [{
            "values": {"a": {"x": 1}, "b": {"y": 1}}, "arrived": ["a", "b"], "timed_out": [],
            "reason": "complete",
        }]
        # The second "a" waits for the next round; completing the job drains it.
        clocked.complete_job(state.job_id)
        assert clocked.wait_job(state.job_id, timeout=10)
        last = recorded(state, "out")[-1]
        assert last["values"] == {"a": {"x": 2}} and last["reason"] == "drained"
        assert last["timed_out"] == ["b"]

    def test_round_timeout_emits_what_arrived(
        self, clocked: Runtime, clock: ManualClock
    ) -> None:
        agg = Aggregator.configured(inputs=["a", "b", "c"], round_timeout=5)
        flow = posted_flow(agg, "output")
        state = clocked.post(flow, "subject", "b", {"v": "b"})
        clock.advance(4)
        clocked.post(flow, "subject", "c", {"v": "c"}, job_id=state.job_id)
        assert recorded(state, "out") == []
        clock.advance(1)  # five seconds after the round's first payload
        assert clocked.wait_job(state.job_id, timeout=10)
        [out] = recorded(state, "out")
        assert out["reason"] == "timeout"
        assert out["values"] == {"b": {"v": "b"}, "c": {"v": "c"}}
        assert out["timed_out"] == ["a"]

    def test_n_of_m_fires_at_n_inputs(self, clocked: Runtime, clock: ManualClock) -> None:
        agg = Aggregator.configured(inputs=["a", "b", "c"], mode="n_of_m", n=2,
                                    round_timeout=60)
        flow = posted_flow(agg, "output")
        state = clocked.post(flow, "subject", "a", {"v": 1})
        clocked.post(flow, "subject", "c", {"v": 3}, job_id=state.job_id)
        # The round completed at once, but the runtime cannot disarm its 60 s timer (no
        # view.cancel_timer yet): the job stays busy until that deadline passes.
        clock.advance(60)
        assert clocked.wait_job(state.job_id, timeout=10)
        [out] = recorded(state, "out")
        assert out["arrived"] == ["a", "c"] and out["reason"] == "complete"

    def test_any_mode_fires_on_first_input(self, runtime: Runtime) -> None:
        flow = posted_flow(Aggregator.configured(inputs=["a", "b"], mode="any"), "output")
        state = runtime.post(flow, "subject", "b", {"v": 2})
        assert runtime.wait_job(state.job_id, timeout=10)
        assert [o["arrived"] for o in recorded(state, "out")] == [["b"]]

    def test_jobs_do_not_share_rounds(self, clocked: Runtime) -> None:
        flow = posted_flow(Aggregator.configured(inputs=["a", "b"]), "output")
        one = clocked.post(flow, "subject", "a", {"job": 1})
        two = clocked.post(flow, "subject", "b", {"job": 2})
        assert clocked.wait_job(one.job_id, timeout=10)
        assert clocked.wait_job(two.job_id, timeout=10)
        assert recorded(one, "out") == [] and recorded(two, "out") == []

    def test_input_queues_are_bounded(self) -> None:
        agg = Aggregator.configured(inputs=["a", "b"], max_pending=3, overflow="drop_oldest")
        assert [(s.max_queue_length, s.overflow) for s in agg.slots.values()] == [
            (3, Overflow.DROP_OLDEST), (3, Overflow.DROP_OLDEST)
        ]


class TestBatcher:
    def test_size_batches_then_partial_on_drain(self, runtime: Runtime) -> None:
        flow = Flow("batch")
        flow.add_routine(Emitter(), "src")
        flow.add_routine(Batcher.configured(size=3), "subject")
        flow.add_routine(recorder("out"), "out")
        flow.connect("src", "output", "subject", "input")
        flow.connect("subject", "batch", "out", "input")
        state = runtime.exec(flow, entry_params={"payloads": [{"i": i} for i in range(7)]})
        assert runtime.wait_job(state.job_id, timeout=10)
        batches = recorded(state, "out")
        assert [[p["i"] for p in b["items"]] for b in batches] == [[0, 1, 2], [3, 4, 5], [6]]
        assert [b["reason"] for b in batches] == ["size", "size", "drained"]
        assert [b["size"] for b in batches] == [3, 3, 1]

    def test_time_batch_fires_on_timer_without_new_arrival(
        self, clocked: Runtime, clock: ManualClock
    ) -> None:
        flow = posted_flow(Batcher.configured(size=10, max_wait=2), "batch")
        state = clocked.post(flow, "subject", "input", {"i": 0})
        clock.advance(1)
        clocked.post(flow, "subject", "input", {"i": 1}, job_id=state.job_id)
        clock.advance(1)  # two seconds after the first item
        assert clocked.wait_job(state.job_id, timeout=10)
        [batch] = recorded(state, "out")
        assert batch["reason"] == "time" and [p["i"] for p in batch["items"]] == [0, 1]
        # A new batch starts its own clock.
        clocked.post(flow, "subject", "input", {"i": 2}, job_id=state.job_id)
        clock.advance(2)
        assert clocked.wait_job(state.job_id, timeout=10)
        assert [[p["i"] for p in b["items"]] for b in recorded(state, "out")] == [[0, 1], [2]]

    def test_size_wins_before_time(self, clocked: Runtime, clock: ManualClock) -> None:
        flow = posted_flow(Batcher.configured(size=2, max_wait=100), "batch")
        state = clocked.post(flow, "subject", "input", {"i": 0})
        clocked.post(flow, "subject", "input", {"i": 1}, job_id=state.job_id)
        clock.advance(100)  # the batch went out at once; let the stale timer expire
        assert clocked.wait_job(state.job_id, timeout=10)
        assert [b["reason"] for b in recorded(state, "out")] == ["size"]

    def test_queue_bound_applies_to_the_slot(self) -> None:
        b = Batcher.configured(size=5, max_pending=5, overflow="fail")
        slot = b.slots["input"]
        assert (slot.max_queue_length, slot.overflow) == (5, Overflow.FAIL)


class TestDebouncer:
    def test_emits_only_the_last_after_quiet(
        self, clocked: Runtime, clock: ManualClock
    ) -> None:
        flow = posted_flow(Debouncer.configured(wait=5, superseded_key="skipped"), "output")
        state = clocked.post(flow, "subject", "input", {"v": 1})
        clocked.post(flow, "subject", "input", {"v": 2}, job_id=state.job_id)
        clock.advance(3)
        clocked.post(flow, "subject", "input", {"v": 3}, job_id=state.job_id)
        clock.advance(3)  # 6 s after v=1 but only 3 s after v=3: still holding
        assert recorded(state, "out") == []
        clock.advance(2)
        assert clocked.wait_job(state.job_id, timeout=10)
        assert recorded(state, "out") == [{"v": 3, "skipped": 2}]
        assert state.get_routine_state("subject")["superseded"] == 2

    def test_holds_at_most_one_payload(self, clocked: Runtime, clock: ManualClock) -> None:
        flow = posted_flow(Debouncer.configured(wait=1), "output")
        state = clocked.post(flow, "subject", "input", {"v": 0})
        for v in range(1, 50):
            clocked.post(flow, "subject", "input", {"v": v}, job_id=state.job_id)
            depth = clocked.get_job_metrics(state.job_id)["queue_depths"]["subject.input"]
            assert depth == 1
        clock.advance(1)
        assert clocked.wait_job(state.job_id, timeout=10)
        assert recorded(state, "out") == [{"v": 49}]

    def test_max_wait_caps_the_delay(self, clocked: Runtime, clock: ManualClock) -> None:
        flow = posted_flow(Debouncer.configured(wait=2, max_wait=3), "output")
        state = clocked.post(flow, "subject", "input", {"v": 0})
        for v in (1, 2):
            clock.advance(1)
            clocked.post(flow, "subject", "input", {"v": v}, job_id=state.job_id)
        clock.advance(1)  # quiet for only 1 s, but 3 s since the first payload
        assert clocked.wait_job(state.job_id, timeout=10)
        assert recorded(state, "out") == [{"v": 2}]

    def test_held_state_saves_as_json(self, clocked: Runtime) -> None:
        flow = posted_flow(Debouncer.configured(wait=5), "output")
        state = clocked.post(flow, "subject", "input", {"v": 1})
        clocked.post(flow, "subject", "input", {"v": 2}, job_id=state.job_id)
        data: dict[str, Any] = state.to_dict()
        assert data["pending"] == {"subject": {"input": [{"v": 2}]}}
        assert data["policy_states"]["subject"]["superseded"] == 1
        state.to_json()
        clocked.cancel_job(state.job_id)


class TestConditionalRouter:
    def test_first_matching_route_then_default(self, runtime: Runtime) -> None:
        register_condition("tests.is_vip", lambda p: p.get("vip") is True, replace=True)
        router = ConditionalRouter.configured(routes=[
            {"name": "vip", "condition": "tests.is_vip"},
            {"name": "big", "when": "amount >= `100`"},
        ])
        flow = Flow("route")
        flow.add_routine(Emitter(), "src")
        flow.add_routine(router, "router")
        flow.connect("src", "output", "router", "input")
        for name in ("vip", "big", "default"):
            flow.add_routine(recorder(name), name)
            flow.connect("router", name, name, "input")
        payloads = [{"amount": 500, "vip": True}, {"amount": 500}, {"amount": 5}]
        state = runtime.exec(flow, entry_params={"payloads": payloads})
        assert runtime.wait_job(state.job_id, timeout=10)
        assert state.status is JobStatus.COMPLETED
        assert recorded(state, "vip") == [{"amount": 500, "vip": True}]
        assert recorded(state, "big") == [{"amount": 500}]
        assert recorded(state, "default") == [{"amount": 5}]

    def test_match_all_sends_to_every_matching_route(self, runtime: Runtime) -> None:
        router = ConditionalRouter.configured(match="all", routes=[
            {"name": "pos", "when": "n > `0`"}, {"name": "even", "when": "even"},
        ])
        flow = Flow("route-all")
        flow.add_routine(router, "router")
        for name in ("pos", "even"):
            flow.add_routine(recorder(name), name)
            flow.connect("router", name, name, "input")
        state = runtime.exec(flow, entry_params={"n": 2, "even": True})
        assert runtime.wait_job(state.job_id, timeout=10)
        assert recorded(state, "pos") == recorded(state, "even") == [{"n": 2, "even": True}]

    def test_routes_are_events(self) -> None:
        router = ConditionalRouter.configured(routes=[{"name": "a", "when": "x"}])
        assert list(router.events) == ["default", "a"]
