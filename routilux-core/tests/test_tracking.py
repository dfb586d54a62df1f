"""Tracking end to end: a runtime with sinks attached records what its jobs do.

Records and sequence numbers for jobs with retries, skips, failures, drops, pause and cancel;
payload lineage through fan-out and fan-in; sink isolation (a raising sink, a blocked sink);
job and flow metrics; the ``routilux_tracking_sinks`` hook; structlog events; OpenTelemetry
and Prometheus against their real libraries; job graphs coloured by routine status.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from routilux import (
    ErrorHandler,
    ErrorStrategy,
    Flow,
    FlowRegistry,
    JobStatus,
    Routine,
    Runtime,
    all_slots_ready_policy,
    hookimpl,
)
from routilux.errors import PauseTimeoutError
from routilux.graph import job_to_dot, job_to_mermaid, routine_statuses
from routilux.tracking import (
    InMemorySink,
    JsonLinesSink,
    TrackingRecord,
    _hub,
    follow_payload,
    read_jsonl,
    summarize,
)
from structlog.testing import capture_logs

WAIT = 10.0


class FnRoutine(Routine, register=False):
    """A routine whose slots, events and logic are chosen after construction."""


def forward(routine: Routine, slot_data: Any, pm: Any, js: Any) -> None:
    for payloads in slot_data.values():
        for p in payloads:
            for event in routine.events:
                routine.emit(event, **p)


def build_routine(
    logic: Callable[..., Any] = forward,
    *,
    slots: Sequence[str] = ("input",),
    events: Sequence[str] = ("output",),
    policy: Any = None,
) -> Routine:
    routine = FnRoutine()
    for name in slots:
        routine.add_slot(name)
    for name in events:
        routine.add_event(name)
    routine.set_logic(lambda sd, pm, js: logic(routine, sd, pm, js))
    if policy is not None:
        routine.set_activation_policy(policy)
    return routine


def chain(*ids: str, logic: dict[str, Callable[..., Any]] | None = None) -> Flow:
    """``ids[0] -> ids[1] -> ...``; each routine forwards its payloads unless ``logic`` says
    otherwise; the first one is the entry."""
    flow = Flow(flow_id="chain")
    for rid in ids:
        routine = build_routine((logic or {}).get(rid, forward))
        flow.add_routine(routine, rid)
    for a, b in itertools.pairwise(ids):
        flow.connect(a, "output", b, "input")
    flow.set_entry(ids[0], "input")
    return flow


def kinds(records: Sequence[TrackingRecord]) -> list[str]:
    return [r.kind for r in records]


def by_routine(records: Sequence[TrackingRecord], rid: str) -> list[str]:
    return [r.kind for r in records if getattr(r, "routine", None) == rid]


@pytest.fixture
def memory() -> InMemorySink:
    return InMemorySink()


@pytest.fixture
def rt(registry: FlowRegistry, memory: InMemorySink) -> Iterator[Runtime]:
    runtime = Runtime(thread_pool_size=4, flow_registry=registry, tracking_sinks=[memory])
    yield runtime
    runtime.shutdown(timeout=10)


def run(rt: Runtime, flow: Flow, params: dict[str, Any] | None = None) -> Any:
    state = rt.exec(flow, params if params is not None else {"v": 1})
    assert rt.wait_job(state.job_id, WAIT)
    return state


class Flaky:
    """Logic failing the first ``fails`` times it runs, then forwarding its input."""

    def __init__(self, fails: int) -> None:
        self.fails = fails
        self.calls = 0

    def __call__(self, routine: Routine, slot_data: Any, pm: Any, js: Any) -> None:
        self.calls += 1
        if self.calls <= self.fails:
            raise ValueError(f"failure {self.calls}")
        for p in slot_data["input"]:
            routine.emit("output", **p)


# -- no sink: no tracking ----------------------------------------------------------------------


class TestWithoutSinks:
    def test_a_job_has_no_tracker_and_no_thread_starts(self, runtime: Runtime) -> None:
        state = run(runtime, chain("a", "b"))
        assert state.status is JobStatus.COMPLETED
        assert state._live.tracker is None
        assert runtime.tracking._thread is None
        assert runtime.get_job_metrics(state.job_id)["tracking"] is None

    def test_a_sink_attached_later_tracks_only_later_jobs(self, runtime: Runtime) -> None:
        before = run(runtime, chain("a", "b"))
        sink = runtime.tracking.add_sink(InMemorySink())
        after = run(runtime, chain("a", "b"))
        assert {r.job_id for r in sink.records()} == {after.job_id}
        assert before._live.tracker is None


# -- the record stream under concurrency (property) ---------------------------------------------


class _Keep:
    """A plain (eager) sink: the hub decodes and builds every record for it."""

    def __init__(self) -> None:
        self.records: list[TrackingRecord] = []

    def write(self, records: Sequence[TrackingRecord]) -> None:
        self.records.extend(records)


class TestStreamProperty:
    @settings(max_examples=25, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        hops=st.integers(min_value=1, max_value=4),
        payloads=st.integers(min_value=1, max_value=40),
        jobs=st.integers(min_value=1, max_value=3),
        flush=st.sampled_from([0.0005, 0.002, 0.05]),
    )
    def test_every_job_gets_a_gapless_complete_stream_with_exact_lineage(
        self, registry: FlowRegistry, hops: int, payloads: int, jobs: int, flush: float
    ) -> None:
        """Jobs streaming payloads through a chain (routines draining their queues write the
        finished record and the next started record as one pair, with the started half's
        ``seq`` implied) while the drain thread cuts the queue at arbitrary points: for each
        job, in both the eager sink (records built on the tracking thread) and the in-memory
        sink (built on read), ``seq`` runs 1..n without a gap, every activation is started
        then finished with a non-negative duration, and every payload is consumed exactly once,
        by the next routine, from the emit that produced it."""

        def source(routine: Routine, slot_data: Any, pm: Any, js: Any) -> None:
            for i in range(payloads):
                routine.emit("output", i=i)

        ids = [f"r{k}" for k in range(hops + 1)]
        flow = chain(*ids, logic={"r0": source})
        memory, eager = InMemorySink(), _Keep()
        rt = Runtime(thread_pool_size=4, flow_registry=registry,
                     tracking_sinks=[memory, eager])
        rt.tracking.flush_interval = flush  # the drain thread reads it every round
        try:
            states = [rt.exec(flow, {"v": j}) for j in range(jobs)]
            assert all(rt.wait_job(s.job_id, WAIT) for s in states)
            assert rt.tracking.flush(WAIT)
            assert rt.tracking.dropped == 0
            for state in states:
                lazy = memory.records(state.job_id)
                built = [r for r in eager.records if r.job_id == state.job_id]
                assert [r.to_dict(timing=True) for r in lazy] == [
                    r.to_dict(timing=True) for r in built
                ]
                assert [r.seq for r in lazy] == list(range(1, len(lazy) + 1))
                started = {(r.routine, r.activation): r for r in lazy
                           if r.kind == "activation.started"}
                finished = {(r.routine, r.activation): r for r in lazy
                            if r.kind == "activation.finished"}
                assert started.keys() == finished.keys()
                assert all(finished[k].seq > started[k].seq for k in started)
                assert all(r.duration >= 0 for r in finished.values())
                assert len(finished) == 1 + payloads * hops
                emitted = {r.payload: r for r in lazy if r.kind == "payload.emitted"}
                consumed = [pid for r in started.values() if r.routine != "r0"
                            for pid in r.payloads["input"]]
                assert len(consumed) == len(set(consumed)) == payloads * hops
                for r in started.values():
                    if r.routine == "r0":
                        continue
                    [pid] = r.payloads["input"]
                    producer = emitted[pid]
                    assert producer.seq < r.seq
                    assert ids.index(producer.routine) == ids.index(r.routine) - 1
                    assert r.sources == ((producer.routine, producer.activation),)
        finally:
            rt.shutdown(timeout=10)


# -- records of one job ------------------------------------------------------------------------


class TestRecords:
    def test_a_chain_gives_a_complete_gapless_record(self, rt: Runtime,
                                                     memory: InMemorySink) -> None:
        state = run(rt, chain("a", "b", "c"))
        recs = memory.records(state.job_id)
        assert [r.seq for r in recs] == list(range(1, len(recs) + 1))
        assert recs[0].kind == "job.started" and recs[-1].kind == "job.finished"
        assert recs[-1].status == "completed" and recs[-1].error_type is None
        assert by_routine(recs, "a") == [
            "activation.started", "payload.emitted", "activation.finished",
        ]
        assert by_routine(recs, "c") == [
            "activation.started", "payload.emitted", "activation.finished",
        ]
        [last] = [r for r in recs if r.kind == "payload.emitted" and r.routine == "c"]
        assert last.targets == ()  # c's event is not connected: the payload went nowhere
        assert Counter(kinds(recs))["payload.enqueued"] == 1
        assert all(r.flow == "chain" and r.job_id == state.job_id for r in recs)
        finished = [r for r in recs if r.kind == "activation.finished"]
        assert all(r.duration >= 0 and r.inputs == {"input": 1} for r in finished)
        assert recs[0].ts <= recs[-1].ts
        assert rt.get_job_metrics(state.job_id)["tracking"] == {
            "records": len(recs), "dropped": 0,
        }

    def test_a_routine_draining_its_queue_records_each_activation_in_order(
        self, rt: Runtime, memory: InMemorySink
    ) -> None:
        # b's first activation waits until a has emitted all five payloads, so b's task then
        # drains the other four in one go (finished and next started written together).
        emitted = threading.Event()

        def fan(routine: Routine, slot_data: Any, pm: Any, js: Any) -> None:
            for i in range(5):
                routine.emit("output", i=i)
            emitted.set()

        def slow_first(routine: Routine, slot_data: Any, pm: Any, js: Any) -> None:
            assert emitted.wait(WAIT)
            forward(routine, slot_data, pm, js)

        state = run(rt, chain("a", "b", logic={"a": fan, "b": slow_first}))
        recs = memory.records(state.job_id)
        assert [r.seq for r in recs] == list(range(1, len(recs) + 1))
        b = [r for r in recs if getattr(r, "routine", None) == "b"]
        assert [r.kind for r in b] == [
            "activation.started", "payload.emitted", "activation.finished",
        ] * 5
        started = [r for r in b if r.kind == "activation.started"]
        finished = [r for r in b if r.kind == "activation.finished"]
        assert [r.activation for r in started] == [r.activation for r in finished]
        # b's pairs travelled as one raw record each; every counter still counts records
        assert memory.received == len(memory.records()) == len(recs)
        assert rt.tracking.stats()["delivered"] == len(recs)
        assert rt.get_job_metrics(state.job_id)["tracking"]["records"] == len(recs)
        assert len({r.activation for r in started}) == 5
        assert all(r.inputs == {"input": 1} for r in started + finished)
        assert all(r.sources == (("a", started[0].sources[0][1]),) for r in started)
        assert all(s.ts <= f.ts for s, f in zip(started, finished, strict=True))

    def test_dicts_are_deterministic_for_a_deterministic_job(
        self, rt: Runtime, memory: InMemorySink
    ) -> None:
        flow = chain("a")
        first = memory.dicts(run(rt, flow).job_id)
        second = memory.dicts(run(rt, flow).job_id)
        strip = [{k: v for k, v in d.items() if k != "job_id"} for d in first]
        assert strip == [{k: v for k, v in d.items() if k != "job_id"} for d in second]
        assert json.loads(json.dumps(first)) == first

    def test_retries_then_success(self, rt: Runtime, memory: InMemorySink) -> None:
        flaky = Flaky(fails=2)
        flow = chain("a", "b", logic={"b": flaky})
        flow.get_routine("b").set_error_handler(
            ErrorHandler(strategy=ErrorStrategy.RETRY, max_retries=3, retry_delay=0.0)
        )
        state = run(rt, flow)
        recs = memory.records(state.job_id)
        b = [r for r in recs if getattr(r, "routine", None) == "b"]
        assert [(r.kind, r.attempt) for r in b if r.kind.startswith("activation.")] == [
            ("activation.started", 0), ("activation.retried", 0),
            ("activation.started", 1), ("activation.retried", 1),
            ("activation.started", 2), ("activation.finished", 2),
        ]
        assert len({r.activation for r in b}) == 1  # a retry keeps the activation number
        retried = [r for r in b if r.kind == "activation.retried"]
        assert [(r.error_type, r.delay) for r in retried] == [("ValueError", 0.0)] * 2
        starts = [r for r in b if r.kind == "activation.started"]
        assert starts[1].sources == starts[0].sources == (("a", starts[0].sources[0][1]),)
        assert rt.get_job_metrics(state.job_id)["routines"]["b"]["retries"] == 2

    def test_a_retry_inside_a_drained_queue_keeps_every_record(
        self, rt: Runtime, memory: InMemorySink
    ) -> None:
        # b drains a queue of five payloads while its first activation is retried: the pairs
        # around the retry (a retry is not a first attempt) are written as two records each.
        def fan(routine: Routine, slot_data: Any, pm: Any, js: Any) -> None:
            for i in range(5):
                routine.emit("output", i=i)

        flaky = Flaky(fails=1)

        def b_logic(routine: Routine, slot_data: Any, pm: Any, js: Any) -> None:
            if flaky.calls == 1:  # the second call: give the retry's 0 s timer time to fire,
                threading.Event().wait(0.05)  # so the task takes the retry from its loop
            flaky(routine, slot_data, pm, js)

        flow = chain("a", "b", logic={"a": fan, "b": b_logic})
        flow.get_routine("b").set_error_handler(
            ErrorHandler(strategy=ErrorStrategy.RETRY, max_retries=3, retry_delay=0.0)
        )
        state = run(rt, flow)
        recs = memory.records(state.job_id)
        assert [r.seq for r in recs] == list(range(1, len(recs) + 1))
        b = [r for r in recs if getattr(r, "routine", None) == "b"]
        ends = {(r.activation, r.attempt): r.kind for r in b
                if r.kind in ("activation.finished", "activation.retried")}
        starts = [(r.activation, r.attempt) for r in b if r.kind == "activation.started"]
        assert sorted(starts) == sorted(ends)
        assert sorted(ends.values()).count("activation.retried") == 1
        assert sorted(ends.values()).count("activation.finished") == 5
        emitted = {r.payload for r in recs if r.kind == "payload.emitted" and r.routine == "a"}
        consumed = [p for r in b if r.kind == "activation.started" and r.attempt == 0
                    for p in r.payloads["input"]]
        assert sorted(consumed) == sorted(emitted)
        assert memory.received == len(recs) == rt.tracking.stats()["delivered"]

    def test_skip(self, rt: Runtime, memory: InMemorySink) -> None:
        flow = chain("a", "b", "c", logic={"b": Flaky(fails=1)})
        flow.get_routine("b").set_error_handler(ErrorHandler(strategy=ErrorStrategy.SKIP))
        state = run(rt, flow, {"v": 1})
        recs = memory.records(state.job_id)
        [skipped] = [r for r in recs if r.kind == "activation.skipped"]
        assert (skipped.routine, skipped.error_type, skipped.error) == (
            "b", "ValueError", "ValueError: failure 1",
        )
        assert recs[-1].status == "completed"

    def test_a_stopping_failure_fails_the_job(self, rt: Runtime, memory: InMemorySink) -> None:
        flow = chain("a", "b", logic={"b": Flaky(fails=5)})
        state = run(rt, flow)
        recs = memory.records(state.job_id)
        [failed] = [r for r in recs if r.kind == "activation.failed"]
        assert (failed.routine, failed.stopped, failed.error_type) == ("b", True, "ValueError")
        [end] = [r for r in recs if r.kind == "job.finished"]
        assert (end.status, end.error_type, end.error_routine) == ("failed", "ValueError", "b")
        # "a" may still be finishing on another worker when "b" stops the job: its end is then
        # recorded after job.finished (docs/tracking.md), and nothing else is.
        after = recs[recs.index(end) + 1 :]
        assert all(r.kind == "activation.finished" and r.routine == "a" for r in after)
        assert by_routine(recs, "a") == ["activation.started", "payload.emitted",
                                         "activation.finished"]

    def test_an_activation_running_when_the_job_stops_records_its_end_after_it(
        self, rt: Runtime, memory: InMemorySink
    ) -> None:
        release = threading.Event()

        def slow(routine: Routine, sd: Any, pm: Any, js: Any) -> None:
            assert release.wait(10)
            routine.emit("output", v=1)  # discarded: the job has stopped

        def failing(routine: Routine, sd: Any, pm: Any, js: Any) -> None:
            raise ValueError("stop")

        flow = Flow(flow_id="late")
        flow.add_routine(build_routine(slow, slots=()), "slow")
        flow.add_routine(build_routine(failing, slots=()), "bad")
        state = rt.exec(flow)
        deadline = time.monotonic() + 10
        while state.status is not JobStatus.FAILED and time.monotonic() < deadline:
            time.sleep(0.001)
        assert state.status is JobStatus.FAILED
        release.set()
        assert rt.wait_job(state.job_id, 10)
        assert rt.tracking.flush(10)
        recs = memory.records(state.job_id)
        end = next(i for i, r in enumerate(recs) if r.kind == "job.finished")
        assert recs[end].status == "failed" and recs[end].error_routine == "bad"
        assert [(r.kind, getattr(r, "routine", None)) for r in recs[end + 1 :]] == [
            ("payload.dropped", "slow"), ("activation.finished", "slow"),
        ]
        assert [r.seq for r in recs] == list(range(1, len(recs) + 1))

    def test_continue_records_a_failure_that_does_not_stop(
        self, rt: Runtime, memory: InMemorySink
    ) -> None:
        flow = chain("a", "b", logic={"b": Flaky(fails=5)})
        flow.get_routine("b").set_error_handler(ErrorHandler(strategy=ErrorStrategy.CONTINUE))
        state = run(rt, flow)
        [failed] = memory.records(state.job_id, "activation.failed")
        assert failed.stopped is False
        assert memory.records(state.job_id)[-1].status == "completed"

    def test_an_emits_queue_depth_samples(self, rt: Runtime, memory: InMemorySink) -> None:
        """Every 64th record of a job, the emitted record is followed by one depth sample of
        each target queue (packed by the recorder): the queue's length, the payload counted
        in. The job is paused while the source emits, so the queues only grow."""
        running, go = threading.Event(), threading.Event()
        n = 150

        def emit_many(routine: Routine, sd: Any, pm: Any, js: Any) -> None:
            running.set()
            assert go.wait(WAIT)
            for i in range(n):
                routine.emit("output", i=i)

        flow = Flow(flow_id="depths")
        flow.add_routine(build_routine(emit_many, slots=()), "src")
        for rid, cap in (("left", 500), ("right", 400)):
            r = build_routine(lambda *a: None, slots=(), events=())
            r.add_slot("input", max_queue_length=cap)
            flow.add_routine(r, rid)
            flow.connect("src", "output", rid, "input")
        state = rt.exec(flow)
        assert running.wait(WAIT)
        with pytest.raises(PauseTimeoutError):  # (src is running: the job stays paused)
            rt.pause_job(state.job_id, timeout=0.01)
        go.set()
        deadline = time.monotonic() + WAIT
        while rt.get_job_metrics(state.job_id)["queue_depths"] != {
                "left.input": n, "right.input": n} and time.monotonic() < deadline:
            time.sleep(0.005)
        assert rt.resume_job(state.job_id)
        assert rt.wait_job(state.job_id, WAIT)
        assert rt.tracking.flush(WAIT)
        recs = memory.records(state.job_id)
        assert [r.seq for r in recs] == list(range(1, len(recs) + 1))
        emitted = [r for r in recs if r.kind == "payload.emitted"]
        assert len(emitted) == n
        at = {r.seq: r for r in recs}
        due = [(k, e) for k, e in enumerate(emitted, 1) if e.seq % 64 == 0]
        assert len(due) >= 2
        samples = [r for r in recs if r.kind == "queue.depth"]
        assert len(samples) == 2 * len(due)
        for k, e in due:
            # queue k-1 payloads long before this one is delivered: k with it
            got = [at[e.seq + 1], at[e.seq + 2]]
            assert [(d.kind, d.routine, d.slot, d.depth, d.capacity, d.ts) for d in got] == [
                ("queue.depth", "left", "input", k, 500, e.ts),
                ("queue.depth", "right", "input", k, 400, e.ts),
            ]

    def test_pause_drops_resume_cancel(self, rt: Runtime, memory: InMemorySink) -> None:
        flow = Flow(flow_id="drops")
        r = build_routine(slots=())
        r.add_slot("input", max_queue_length=1, overflow="drop_oldest")
        flow.add_routine(r, "r")
        state = rt.exec(flow, keep_open=True)
        job_id = state.job_id
        rt.pause_job(job_id)
        for v in range(3):
            rt.post(flow, "r", "input", {"v": v}, job_id=job_id)
        assert rt.resume_job(job_id)
        assert rt.wait_job(job_id, WAIT)
        assert rt.cancel_job(job_id)
        recs = memory.records(job_id)
        enq = [r.payload for r in recs if r.kind == "payload.enqueued"]
        assert len(enq) == 3
        drops = [r for r in recs if r.kind == "payload.dropped"]
        assert [(d.payload, d.reason, d.slot) for d in drops] == [
            (enq[0], "drop_oldest", "input"), (enq[1], "drop_oldest", "input"),
        ]
        depths = [(d.depth, d.capacity) for d in recs if d.kind == "queue.depth"]
        assert depths and all(cap == 1 for _, cap in depths)
        [started] = memory.records(job_id, "activation.started")
        assert started.payloads == {"input": (enq[2],)}
        lifecycle = [r.kind for r in recs if r.kind.startswith("job.")]
        assert lifecycle == ["job.started", "job.paused", "job.resumed", "job.cancelled",
                             "job.finished"]
        assert [r.reason for r in recs if r.kind == "job.paused"] == ["user"]
        assert recs[-1].status == "cancelled"
        trace = memory.trace(job_id, enq[0])
        assert trace["consumers"] == [] and [d["reason"] for d in trace["dropped"]] == [
            "drop_oldest"
        ]


# -- lineage -----------------------------------------------------------------------------------


def diamond() -> Flow:
    """``split -> left, right -> join`` (join: two slots, all_slots_ready)."""
    flow = Flow(flow_id="diamond")
    flow.add_routine(build_routine(), "split")
    flow.add_routine(build_routine(), "left")
    flow.add_routine(build_routine(), "right")
    join = build_routine(slots=("l", "r"), events=(), policy=all_slots_ready_policy())
    flow.add_routine(join, "join")
    flow.connect("split", "output", "left", "input")
    flow.connect("split", "output", "right", "input")
    flow.connect("left", "output", "join", "l")
    flow.connect("right", "output", "join", "r")
    flow.set_entry("split", "input")
    return flow


class TestLineage:
    def test_fan_in_names_all_its_producers(self, rt: Runtime, memory: InMemorySink) -> None:
        state = run(rt, diamond())
        recs = memory.records(state.job_id)
        act = {r.routine: r.activation for r in recs if r.kind == "activation.started"}
        [join] = [r for r in recs if r.kind == "activation.started" and r.routine == "join"]
        assert sorted(join.sources) == sorted([("left", act["left"]), ("right", act["right"])])
        emitted = {r.routine: r.payload for r in recs if r.kind == "payload.emitted"}
        assert join.payloads == {"l": (emitted["left"],), "r": (emitted["right"],)}

    def test_where_did_the_entry_payload_go(self, rt: Runtime, memory: InMemorySink) -> None:
        state = run(rt, diamond())
        [entry] = memory.records(state.job_id, "payload.enqueued")
        trace = memory.trace(state.job_id, entry.payload)
        assert trace["origin"] is not None and trace["origin"]["source"] == "entry"
        [split] = trace["consumers"]
        assert split["routine"] == "split" and split["outcome"] == "finished"
        [out] = split["emitted"]
        onward = memory.trace(state.job_id, out)
        assert sorted(c["routine"] for c in onward["consumers"]) == ["left", "right"]
        assert sorted(onward["origin"]["targets"]) == ["left.input", "right.input"]
        assert onward["waiting"] == []


# -- isolation ---------------------------------------------------------------------------------


class Raises:
    name = "raises"

    def write(self, records: Sequence[TrackingRecord]) -> None:
        raise RuntimeError("broken sink")


class Blocking:
    name = "blocking"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def write(self, records: Sequence[TrackingRecord]) -> None:
        self.entered.set()
        self.release.wait(WAIT)


class TestIsolation:
    def test_a_raising_sink_does_not_stop_the_others(self, registry: FlowRegistry) -> None:
        memory = InMemorySink()
        with capture_logs() as logs, Runtime(
            thread_pool_size=2, flow_registry=registry, tracking_sinks=[Raises(), memory]
        ) as rt:
            states = [run(rt, chain("a", "b")) for _ in range(3)]
            assert rt.tracking.flush(WAIT)
            assert {r.job_id for r in memory.records()} == {s.job_id for s in states}
            assert rt.tracking.stats()["sink_errors"]["raises"] >= 1
        assert all(s.status is JobStatus.COMPLETED for s in states)
        assert [e["sink"] for e in logs if e["event"] == "tracking.sink_failed"] == ["raises"]

    def test_a_chunk_that_fails_to_decode_does_not_stop_the_drain(
        self, registry: FlowRegistry, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # A bug reading one chunk (not a sink's failure) loses that chunk, counted and logged
        # once; the drain thread goes on: flush returns and later records are delivered.
        memory = _Keep()
        real = _hub.decode
        broken = [True]  # every chunk fails to decode until the first job is flushed

        def decode_broken(*args: Any, **kwargs: Any) -> Any:
            if broken[0]:
                raise RuntimeError("a decoding bug")
            return real(*args, **kwargs)

        monkeypatch.setattr(_hub, "decode", decode_broken)
        with capture_logs() as logs, Runtime(
            thread_pool_size=2, flow_registry=registry, tracking_sinks=[memory]
        ) as rt:
            lost = run(rt, chain("a"))
            assert rt.tracking.flush(WAIT)
            assert rt.tracking.stats()["sink_errors"]["<drain>"] >= 1
            broken[0] = False
            kept = run(rt, chain("a", "b"))
            assert rt.tracking.flush(WAIT)
            assert rt.tracking._thread is not None and rt.tracking._thread.is_alive()
        assert {r.job_id for r in memory.records} == {kept.job_id}
        assert lost.job_id != kept.job_id
        assert [e["event"] for e in logs if e["event"].startswith("tracking.")] == [
            "tracking.drain_failed"]

    def test_a_blocked_sink_does_not_slow_routines(self, registry: FlowRegistry) -> None:
        slow = Blocking()
        rt = Runtime(thread_pool_size=2, flow_registry=registry, tracking_sinks=[slow],
                     tracking_queue_size=64)
        try:
            first = run(rt, chain("a"))
            rt.tracking._wake.set()
            assert slow.entered.wait(WAIT)  # the tracking thread is stuck in the sink now
            state = rt.exec(chain("a", "b", "c"), {"v": 0})
            assert rt.wait_job(state.job_id, WAIT)
            assert state.status is JobStatus.COMPLETED
            assert first.status is JobStatus.COMPLETED
            assert not slow.release.is_set()  # completed while the sink was still blocked
        finally:
            slow.release.set()
            rt.shutdown(timeout=10)

    def test_flush_waits_for_a_chunk_still_being_delivered(self, registry: FlowRegistry) -> None:
        # The drain thread has taken the queued records (the queue is empty) and is inside the
        # sink with them: they are not delivered yet, so flush must not say they are.
        slow = Blocking()
        rt = Runtime(thread_pool_size=2, flow_registry=registry, tracking_sinks=[slow])
        try:
            run(rt, chain("a"))
            rt.tracking._wake.set()
            assert slow.entered.wait(WAIT)
            assert rt.tracking.stats()["queued"] == 0
            assert rt.tracking.flush(0.2) is False
            slow.release.set()
            assert rt.tracking.flush(WAIT) is True
        finally:
            slow.release.set()
            rt.shutdown(timeout=10)

    def test_records_beyond_the_queue_are_dropped_and_counted(
        self, registry: FlowRegistry
    ) -> None:
        slow = Blocking()
        rt = Runtime(thread_pool_size=2, flow_registry=registry, tracking_sinks=[slow],
                     tracking_queue_size=16)
        try:
            run(rt, chain("a"))
            rt.tracking._wake.set()
            assert slow.entered.wait(WAIT)
            flow = chain("a", "b", "c")
            states = [run(rt, flow) for _ in range(4)]
            assert all(s.status is JobStatus.COMPLETED for s in states)
            per_job = [rt.get_job_metrics(s.job_id)["tracking"] for s in states]
            assert sum(m["dropped"] for m in per_job) == rt.tracking.dropped > 0
            assert all(m["records"] >= m["dropped"] for m in per_job)
            assert rt.tracking.stats()["dropped"] == rt.tracking.dropped
        finally:
            slow.release.set()
            rt.shutdown(timeout=10)


# -- metrics -----------------------------------------------------------------------------------


def slow_logic(routine: Routine, slot_data: Any, pm: Any, js: Any) -> None:
    threading.Event().wait(0.02)  # work that takes 20 ms (not synchronisation)
    for p in slot_data["input"]:
        routine.emit("output", **p)


class TestMetrics:
    def test_job_metrics_keep_the_spec_keys_and_answer_the_questions(
        self, runtime: Runtime
    ) -> None:
        flow = chain("fast", "slow", "bad", logic={"slow": slow_logic, "bad": Flaky(fails=9)})
        flow.get_routine("bad").set_error_handler(
            ErrorHandler(strategy=ErrorStrategy.RETRY, max_retries=2, retry_delay=0.0)
        )
        state = run(runtime, flow)
        m = runtime.get_job_metrics(state.job_id)
        assert {"job_id", "status", "routines"} <= set(m)
        for r in m["routines"].values():
            assert {"activations", "errors", "retries", "skipped", "payloads_in",
                    "payloads_out", "duration"} <= set(r)
            assert {"min", "avg", "p50", "p95", "max"} <= set(r["duration"])
        assert m["summary"]["slowest_routine"] == "slow"
        assert m["summary"]["failed_routines"] == ["bad"]
        assert m["summary"]["retries"] == 2
        bad = m["routines"]["bad"]
        assert (bad["executions"], bad["successes"], bad["success_rate"]) == (3, 0, 0.0)
        assert m["routines"]["fast"]["success_rate"] == 1.0
        assert m["routines"]["slow"]["duration"]["min"] >= 0.019
        assert m["error_type"] == "ValueError" and m["error_routine"] == "bad"
        assert m["elapsed"] > 0 and m["throughput"] > 0
        json.dumps(m)

    def test_flow_metrics_aggregate_held_and_forgotten_jobs(
        self, registry: FlowRegistry
    ) -> None:
        with Runtime(thread_pool_size=2, flow_registry=registry, max_finished_jobs=2) as rt:
            flow = chain("a", "b")
            for _ in range(5):
                run(rt, flow)
            assert len(rt.list_jobs()) == 2
            m = rt.get_flow_metrics("chain")
        assert m["jobs"] == {"total": 5, "completed": 5}
        assert m["routines"]["a"]["activations"] == 5
        assert m["routines"]["b"]["payloads_in"] == 5
        assert m["routines"]["b"]["success_rate"] == 1.0
        assert m["summary"]["activations"] == 10
        json.dumps(m)

    def test_unknown_flow_has_no_jobs(self, runtime: Runtime) -> None:
        m = runtime.get_flow_metrics("nope")
        assert m["jobs"] == {"total": 0} and m["routines"] == {}

    def test_flow_memory_is_bounded(self, registry: FlowRegistry) -> None:
        with Runtime(thread_pool_size=2, flow_registry=registry, max_finished_jobs=0) as rt:
            flow = chain("a")
            for _ in range(30):
                run(rt, flow)
            tracker = rt._flow_trackers["chain"]
            assert tracker._routines["a"].samples.maxlen == tracker.samples
            assert rt.get_flow_metrics("chain")["jobs"]["total"] == 30


# -- the hook ----------------------------------------------------------------------------------


class SinkPlugin:
    def __init__(self) -> None:
        self.sinks: list[InMemorySink] = []

    @hookimpl
    def routilux_tracking_sinks(self, runtime: Runtime) -> list[InMemorySink]:
        sink = InMemorySink()
        self.sinks.append(sink)
        return [sink]


class BrokenSinkPlugin:
    @hookimpl
    def routilux_tracking_sinks(self, runtime: Runtime) -> list[Any]:
        raise RuntimeError("cannot make sinks")


class NoSinkPlugin:
    @hookimpl
    def routilux_tracking_sinks(self, runtime: Runtime) -> None:
        return None


class TestHook:
    def test_sinks_from_every_plugin_are_attached(self, registry: FlowRegistry) -> None:
        one, two = SinkPlugin(), SinkPlugin()
        with capture_logs() as logs, Runtime(
            thread_pool_size=2, flow_registry=registry,
            plugins=[one, BrokenSinkPlugin(), NoSinkPlugin(), two],
        ) as rt:
            assert rt.tracking.sinks == (*one.sinks, *two.sinks)
            state = run(rt, chain("a"))
            for sink in (*one.sinks, *two.sinks):
                assert "job.finished" in kinds(sink.records(state.job_id))
        assert any(e["event"] == "plugin.hook_failed"
                   and e["hook"] == "routilux_tracking_sinks" for e in logs)

    def test_named_sinks(self, registry: FlowRegistry, tmp_path: Path) -> None:
        path = tmp_path / "t.jsonl"
        with Runtime(thread_pool_size=2, flow_registry=registry,
                     tracking_sinks=["memory", ("jsonl", {"path": path})]) as rt:
            memory, jsonl = rt.tracking.sinks
            state = run(rt, chain("a"))
        assert isinstance(memory, InMemorySink) and isinstance(jsonl, JsonLinesSink)
        assert [d["seq"] for d in read_jsonl(path)] == [
            r.seq for r in memory.records(state.job_id)
        ]


# -- a JSON lines file answers the questions ---------------------------------------------------


class TestFromAFile:
    def test_slow_failed_retries_and_lineage_from_jsonl(
        self, registry: FlowRegistry, tmp_path: Path
    ) -> None:
        path = tmp_path / "runs" / "t.jsonl"
        flow = chain("fast", "slow", "bad", logic={"slow": slow_logic, "bad": Flaky(fails=9)})
        flow.get_routine("bad").set_error_handler(
            ErrorHandler(strategy=ErrorStrategy.RETRY, max_retries=1, retry_delay=0.0)
        )
        with Runtime(thread_pool_size=2, flow_registry=registry,
                     tracking_sinks=[JsonLinesSink(path)]) as rt:
            state = run(rt, flow)
        records = list(read_jsonl(path))
        job = summarize(records)[state.job_id]
        routines = job["routines"]
        assert max(routines, key=lambda r: routines[r]["duration"]["avg"]) == "slow"
        assert (routines["bad"]["retried"], routines["bad"]["failed"]) == (1, 1)
        assert (job["status"], job["error_type"]) == ("failed", "ValueError")
        [entry] = [r for r in records if r["kind"] == "payload.enqueued"]
        trace = follow_payload(records, state.job_id, entry["payload"])
        assert [c["routine"] for c in trace["consumers"]] == ["fast"]
        hop = follow_payload(records, state.job_id, trace["consumers"][0]["emitted"][0])
        assert [c["routine"] for c in hop["consumers"]] == ["slow"]


# -- logs --------------------------------------------------------------------------------------


class TestLogs:
    def test_a_failed_job_is_logged_with_its_context(self, runtime: Runtime) -> None:
        with capture_logs() as logs:
            state = run(runtime, chain("a", "b", logic={"b": Flaky(fails=1)}))
        [event] = [e for e in logs if e["event"] == "job.failed"]
        assert event["job_id"] == state.job_id and event["flow"] == "chain"
        assert event["routine"] == "b" and event["error_type"] == "ValueError"
        assert event["log_level"] == "info"  # reported through the job state too

    def test_nothing_is_logged_per_message(self, rt: Runtime) -> None:
        with capture_logs() as logs:
            run(rt, chain("a", "b", "c"), {"v": 1})
            flow = chain("a", "b")
            state = rt.exec(flow, keep_open=True)
            for v in range(50):
                rt.post(flow, "a", "input", {"v": v}, job_id=state.job_id)
            rt.complete_job(state.job_id)
            assert rt.wait_job(state.job_id, WAIT)
        assert logs == []

    def test_control_actions_are_logged(self, runtime: Runtime) -> None:
        flow = chain("a")
        state = runtime.exec(flow, keep_open=True)
        with capture_logs() as logs:
            runtime.pause_job(state.job_id)
            runtime.resume_job(state.job_id)
            runtime.cancel_job(state.job_id)
        assert [e["event"] for e in logs] == ["job.paused", "job.resumed", "job.cancelled"]
        assert all(e["job_id"] == state.job_id and e["flow"] == "chain" for e in logs)


# -- OpenTelemetry and Prometheus, end to end --------------------------------------------------


class TestOpenTelemetryEndToEnd:
    def test_join_span_links_to_both_branches(self, registry: FlowRegistry) -> None:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        with Runtime(thread_pool_size=4, flow_registry=registry,
                     tracking_sinks=[("otel", {"tracer_provider": provider})]) as rt:
            state = run(rt, diamond())
        spans = exporter.get_finished_spans()
        by_name = {s.name: s for s in spans}
        assert len(spans) == 5
        job = by_name["routilux.job diamond"]
        assert job.attributes["routilux.job_id"] == state.job_id
        join = by_name["routilux.activation join"]
        linked = {link.context.span_id for link in join.links}
        assert linked == {by_name["routilux.activation left"].context.span_id,
                          by_name["routilux.activation right"].context.span_id}
        for s in spans:
            if s is not job:
                assert s.parent is not None and s.parent.span_id == job.context.span_id
                assert s.start_time <= s.end_time
        assert job.start_time <= min(s.start_time for s in spans)


class TestPrometheusEndToEnd:
    def test_scrape_after_a_job(self, registry: FlowRegistry) -> None:
        from prometheus_client import CollectorRegistry, generate_latest

        prom = CollectorRegistry()
        flow = chain("a", "b", logic={"b": Flaky(fails=1)})
        flow.get_routine("b").set_error_handler(
            ErrorHandler(strategy=ErrorStrategy.RETRY, max_retries=1, retry_delay=0.0)
        )
        with Runtime(thread_pool_size=2, flow_registry=registry,
                     tracking_sinks=[("prometheus", {"registry": prom})]) as rt:
            run(rt, flow)
        text = generate_latest(prom).decode()
        assert 'routilux_jobs_finished_total{flow="chain",status="completed"} 1.0' in text
        assert 'routilux_activations_total{flow="chain",outcome="retried",routine="b"} 1.0' in text
        assert 'routilux_activations_total{flow="chain",outcome="finished",routine="b"} 1.0' in text
        assert 'routilux_activation_duration_seconds_count{flow="chain",routine="b"} 2.0' in text


# -- graphs of a job ---------------------------------------------------------------------------


class TestJobGraphs:
    def test_routines_coloured_by_status(self, runtime: Runtime) -> None:
        flow = chain("a", "b", "c", logic={"b": Flaky(fails=1)})
        state = run(runtime, flow)
        metrics = runtime.get_job_metrics(state.job_id)
        assert routine_statuses(flow, metrics) == {"a": "completed", "b": "failed", "c": "idle"}
        assert routine_statuses(flow, state) == {"a": "completed", "b": "failed", "c": "idle"}
        mermaid = job_to_mermaid(flow, state).splitlines()
        assert "  class r0 completed;" in mermaid
        assert "  class r1 failed;" in mermaid
        assert "  class r2 idle;" in mermaid
        assert any(line.startswith("  classDef failed fill:") for line in mermaid)
        dot = job_to_dot(flow, metrics)
        assert '"b" [style=filled, fillcolor="#f8d7da"' in dot
        assert dot.rstrip().endswith("}") and dot.count("{") == dot.count("}")

    def test_a_running_routine(self) -> None:
        flow = chain("a", "b")
        metrics = {"routines": {"a": {"activations": 1}}, "running": {"b": 1}}
        assert routine_statuses(flow, metrics) == {"a": "completed", "b": "running"}
