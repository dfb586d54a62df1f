"""The serial path's shortcuts (docs/performance.md, "Serial path (session 5)") keep the
behaviour of what they replace: duration samples, the job as its own yielding lock, the views
and history each job gets, and the records a job writes."""

from __future__ import annotations

import threading
from collections import deque

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from routilux import Flow, FlowRegistry, Routine, Runtime
from routilux._activation import _DURATION_SAMPLES, RoutineStats
from routilux.job_state import ExecutionRecord

WAIT = 10.0

durations = st.floats(min_value=0.0, max_value=10.0, allow_nan=False, allow_infinity=False)


class TestDurationSamples:
    @settings(max_examples=60, deadline=None)
    @given(st.lists(durations, max_size=_DURATION_SAMPLES + 40))
    def test_samples_are_the_latest_durations_however_many(self, values: list[float]) -> None:
        stats = RoutineStats()
        for v in values:
            stats.record(v)
        kept = sorted(values[-_DURATION_SAMPLES:])
        got = stats.durations
        if not values:
            assert got is None
        else:
            assert got is not None and sorted(got) == kept
        into: deque[float] = deque()
        stats.samples_into(into)
        assert sorted(into) == kept
        assert stats.activations == len(values)
        assert stats.total == sum(values) or stats.total == pytest.approx(sum(values))
        d = stats.to_dict()["duration"]
        assert d["p50"] == (kept[min(len(kept) - 1, len(kept) // 2)] if kept else 0.0)
        assert d["min"] == (min(values) if values else 0.0)

    def test_one_sample_is_the_duration_itself(self) -> None:
        stats = RoutineStats()
        stats.record(0.123456789)
        assert list(stats.durations or ()) == [0.123456789]
        assert stats._samples is None  # kept as the total until a second one comes
        stats.record(0.5)
        assert sorted(stats.durations or ()) == [0.123456789, 0.5]


def chain(n: int) -> Flow:
    class Step(Routine):
        def __init__(self) -> None:
            super().__init__()
            self.add_slot("in")
            self.add_event("out")

            def logic(slot_data, message, state) -> None:
                self.emit("out", **slot_data["in"][0])

            self.set_logic(logic)

    flow = Flow(flow_id="serial")
    for i in range(n):
        flow.add_routine(Step(), f"r{i}")
        if i:
            flow.connect(f"r{i - 1}", "out", f"r{i}", "in")
    return flow


class TestJobObjects:
    def test_the_job_is_its_own_yielding_lock(self) -> None:
        flow = chain(2)
        with Runtime(thread_pool_size=2, flow_registry=FlowRegistry()) as rt:
            state = rt.exec(flow, entry_params={"x": 1})
            assert rt.wait_job(state.job_id, WAIT)
            job = state._live
            assert job.hot is job
            with job.hot:
                assert job.lock.locked()
                entered = threading.Event()

                def enter() -> None:  # takes the contended path (yields, then blocks)
                    with job.hot:
                        entered.set()

                t = threading.Thread(target=enter)
                t.start()
                assert not entered.wait(0.05)
            t.join(WAIT)
            assert entered.is_set() and not job.lock.locked()

    def test_views_and_history_are_per_job(self) -> None:
        flow = chain(3)
        with Runtime(thread_pool_size=2, flow_registry=FlowRegistry(), history_limit=5) as rt:
            a = rt.exec(flow, entry_params={"x": 1}, keep_open=True)
            b = rt.exec(flow, entry_params={"x": 2})
            assert rt.wait_job(a.job_id, WAIT) and rt.wait_job(b.job_id, WAIT)
            assert a.execution_history is not b.execution_history
            assert a.execution_history.maxlen == b.execution_history.maxlen == 5
            job = a._live
            plan = job.plan
            assert job.views is plan.no_views  # no policy: the plan's shared tuple
            view = job.view(1)  # made on first use, in a list of the job's own
            assert job.views[1] is view and job.views is not plan.no_views
            assert plan.no_views == (None, None, None)
            rt.complete_job(a.job_id)
            assert rt.wait_job(a.job_id, WAIT)

    def test_history_records_are_what_the_class_makes(self) -> None:
        flow = chain(3)
        with Runtime(thread_pool_size=2, flow_registry=FlowRegistry()) as rt:
            state = rt.exec(flow, entry_params={"x": 1})
            assert rt.wait_job(state.job_id, WAIT)
            records = list(state.execution_history)
            assert [r.routine_id for r in records] == ["r0", "r1", "r2"]
            for r in records:
                assert type(r) is ExecutionRecord
                made = ExecutionRecord(routine_id=r.routine_id, status="completed",
                                       started_at=r.started_at, duration=r.duration,
                                       attempt=r.attempt)
                for f in attrs.fields(ExecutionRecord):
                    assert getattr(r, f.name) == getattr(made, f.name), f.name

    def test_a_forgotten_job_is_freed_without_the_cyclic_collector(self) -> None:
        # Forgetting a job breaks its cycles (``Runtime._forget``): its objects go at once,
        # not at the next full collection (a job that referred to itself would stay).
        import gc

        from routilux._job import Job

        flow = chain(3)
        with Runtime(thread_pool_size=2, flow_registry=FlowRegistry(),
                     max_finished_jobs=2) as rt:
            gc.collect()
            gc.disable()
            try:
                for i in range(30):
                    assert rt.wait_job(rt.exec(flow, entry_params={"x": i}).job_id, WAIT)
                alive = sum(1 for o in gc.get_objects() if type(o) is Job and o.runtime is rt)
            finally:
                gc.enable()
            # the two kept, and at most one more per worker (its last task's local reference)
            assert alive <= 2 + 2

    def test_delivered_activations_have_every_slot_of_the_class(self) -> None:
        # ``_deliver_locked`` builds a queue-served routine's activation inline: every slot
        # as ``Activation.__init__`` sets it (an unset slot would raise on reading).
        from routilux._activation import Activation
        from routilux._context import CURRENT

        seen: list[tuple[Activation, dict]] = []

        class Probe(Routine):
            def __init__(self) -> None:
                super().__init__()
                self.add_slot("in")

                def logic(slot_data, message, state) -> None:
                    ctx = CURRENT.get()
                    act = ctx.activation
                    seen.append((act, {n: getattr(act, n) for n in Activation.__slots__}))

                self.set_logic(logic)

        flow = chain(2)
        flow.add_routine(Probe(), "probe")
        flow.connect("r1", "out", "probe", "in")
        with Runtime(thread_pool_size=2, flow_registry=FlowRegistry()) as rt:
            state = rt.exec(flow, entry_params={"x": 7})
            assert rt.wait_job(state.job_id, WAIT)
        ((act, fields),) = seen
        made = Activation(act.ri, act.slot_data, act.message, 0, act.seq)
        assert fields == {n: getattr(made, n) for n in Activation.__slots__}
        assert fields["slot_data"] == {"in": [{"x": 7}]} and fields["attempt"] == 0
