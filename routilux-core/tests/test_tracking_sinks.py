"""Tracking channel and sinks, driven directly (no runtime): the hub's queue and thread, sink
isolation, bounded drops, lineage resolution, and each sink against its real library.

End-to-end behaviour of a runtime with sinks attached is in ``test_tracking.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from routilux._activation import Activation
from routilux.errors import ConfigurationError, UnknownTypeError
from routilux.registry import TypeRegistry
from routilux.tracking import (
    RECORD_KINDS,
    ActivationFailed,
    ActivationFinished,
    ActivationRetried,
    ActivationStarted,
    InMemorySink,
    JobFinished,
    JobStarted,
    JsonLinesSink,
    PayloadEmitted,
    TrackingHub,
    TrackingRecord,
    TrackingSink,
    build_sink,
    follow_payload,
    read_jsonl,
    record_from_dict,
    summarize,
)
from structlog.testing import capture_logs

WAIT = 10.0


# -- a job-shaped object the hub's tracker reads ---------------------------------------------------


def fake_job(job_id: str = "job-1", routines: Sequence[str] = ("a", "b", "c")) -> Any:
    """Routines ``routines``, one slot ``in`` each (queue i belongs to routine i); the first
    routine's event ``out`` goes to every other routine, ``last`` to the last one only."""
    n = len(routines)
    plan = SimpleNamespace(
        flow_id="f",
        routine_ids=tuple(routines),
        slot_names=tuple(("in",) for _ in routines),
        queue_owner=tuple((i, 0) for i in range(n)),
        caps=tuple(10 for _ in routines),
        routes=(
            {"out": tuple((i, i) for i in range(1, n)), "last": ((n - 1, n - 1),)},
            *({} for _ in range(1, n)),
        ),
        entry_targets=((0, 0),),
    )
    return SimpleNamespace(
        job_id=job_id, plan=plan, queues=[deque() for _ in routines], epoch=1000.0
    )


def act(ri: int, seq: int, payloads: list[dict[str, Any]] | None = None, attempt: int = 0) -> Any:
    return Activation(ri, {"in": payloads} if payloads is not None else {}, None, attempt, seq)


class Blocking:
    """A sink whose write blocks until ``release`` is set (a stuck exporter)."""

    name = "blocking"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.records: list[TrackingRecord] = []

    def write(self, records: Sequence[TrackingRecord]) -> None:
        self.entered.set()
        assert self.release.wait(WAIT)
        self.records.extend(records)


class Collect:
    name = "collect"

    def __init__(self) -> None:
        self.records: list[TrackingRecord] = []

    def write(self, records: Sequence[TrackingRecord]) -> None:
        self.records.extend(records)


class Raises:
    name = "raises"

    def __init__(self) -> None:
        self.calls = 0

    def write(self, records: Sequence[TrackingRecord]) -> None:
        self.calls += 1
        raise RuntimeError("sink is broken")


@pytest.fixture
def hub() -> Iterator[TrackingHub]:
    h = TrackingHub()
    yield h
    h.close()


# -- records -----------------------------------------------------------------------------------


def sample_records() -> list[TrackingRecord]:
    base = {"job_id": "j", "flow": "f", "ts": 1.5}
    return [
        JobStarted(**base, seq=1),
        ActivationStarted(**base, seq=2, routine="a", activation=1, attempt=0,
                          inputs={"in": 2}, payloads={"in": (5, None)}, sources=(("s", 3),)),
        PayloadEmitted(**base, seq=3, payload=3, routine="a", activation=1, event="out",
                       targets=("b.in", "c.in")),
        ActivationFinished(**base, seq=4, routine="a", activation=1, attempt=0,
                           inputs={"in": 2}, duration=0.25),
        ActivationRetried(**base, seq=5, routine="b", activation=2, attempt=0, duration=0.1,
                          error_type="ValueError", error="ValueError: x", delay=0.5),
        ActivationFailed(**base, seq=6, routine="b", activation=2, attempt=1, duration=0.1,
                         error_type="ValueError", error="ValueError: x", stopped=True),
        JobFinished(**base, seq=7, status="failed", duration=2.0, error_type="ValueError",
                    error="ValueError: x", error_routine="b"),
    ]


class TestRecords:
    def test_the_json_form_starts_with_its_kind_and_is_plain_json(self) -> None:
        for rec in sample_records():
            d = rec.to_dict()
            assert next(iter(d)) == "kind"
            assert d["kind"] == rec.kind
            assert json.loads(json.dumps(d)) == d

    def test_tuples_are_written_as_lists(self) -> None:
        started = sample_records()[1].to_dict()
        assert started["payloads"] == {"in": [5, None]}
        assert started["sources"] == [["s", 3]]

    @pytest.mark.parametrize("index", range(7))
    def test_round_trips_through_its_dict(self, index: int) -> None:
        rec = sample_records()[index]
        assert record_from_dict(json.loads(json.dumps(rec.to_dict()))) == rec

    def test_timing_false_drops_clock_fields(self) -> None:
        d = sample_records()[4].to_dict(timing=False)
        assert not {"ts", "duration", "delay"} & set(d)
        assert d["seq"] == 5

    def test_records_are_frozen(self) -> None:
        rec = sample_records()[0]
        with pytest.raises(AttributeError):
            rec.seq = 9  # type: ignore[misc]

    def test_unknown_kind_is_refused(self) -> None:
        with pytest.raises(ValueError, match="unknown tracking record kind"):
            record_from_dict({"kind": "nope"})

    def test_every_kind_is_dotted_lowercase(self) -> None:
        for kind in RECORD_KINDS:
            assert kind == kind.lower() and "." in kind


class TestImports:
    def test_routilux_never_imports_the_optional_libraries(self) -> None:
        code = (
            "import sys, threading, routilux, routilux.tracking, routilux.runtime\n"
            "rt = routilux.Runtime(thread_pool_size=1)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('opentelemetry', 'prometheus_client')))\n"
            "print(sorted(t.name for t in threading.enumerate() if 'tracking' in t.name))\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, timeout=60).stdout.split("\n")
        assert out[:2] == ["[]", "[]"]


# -- the hub -----------------------------------------------------------------------------------



def stuck_hub() -> tuple[TrackingHub, Any, Any]:
    """A hub of 4 records whose drain thread is stuck in a blocking sink, and a started
    job's tracker on it."""
    h = TrackingHub(queue_size=4)
    slow = h.add_sink(Blocking())
    jt = h.job_tracker(fake_job())
    assert jt is not None
    jt.job_started()
    h._wake.set()
    assert slow.entered.wait(WAIT)  # the thread is stuck in the sink
    return h, slow, jt

class TestHub:
    def test_no_sink_no_tracker_no_thread(self, hub: TrackingHub) -> None:
        assert hub.job_tracker(fake_job()) is None
        assert hub._thread is None

    def test_thread_starts_with_the_first_sink_and_stops_at_close(self) -> None:
        h = TrackingHub()
        h.add_sink(Collect())
        thread = h._thread
        assert thread is not None and thread.is_alive()
        assert h.close()
        assert not thread.is_alive()

    def test_records_arrive_in_job_order_with_sequence_numbers(self, hub: TrackingHub) -> None:
        sink = hub.add_sink(Collect())
        jt = hub.job_tracker(fake_job())
        assert jt is not None
        jt.job_started()
        a = act(0, 1)
        jt.started(a)
        jt.emitted(a, "out", {"x": 1}, ((1, 1),))
        jt.finished(a, 5.0, 0.5)
        jt.job_finished("completed", None, None)
        assert hub.flush(WAIT)
        assert [r.kind for r in sink.records] == [
            "job.started", "activation.started", "payload.emitted", "activation.finished",
            "job.finished",
        ]
        assert [r.seq for r in sink.records] == [1, 2, 3, 4, 5]
        assert sink.records[3].ts == 1005.0  # perf_counter time + the job's epoch offset
        assert sink.records[3].duration == 0.5
        assert hub.stats()["delivered"] == 5 and hub.stats()["queued"] == 0

    def test_a_raising_sink_is_isolated_counted_and_logged_once(self, hub: TrackingHub) -> None:
        bad, good = Raises(), Collect()
        hub.add_sink(bad)
        hub.add_sink(good)
        jt = hub.job_tracker(fake_job())
        assert jt is not None
        with capture_logs() as logs:
            for _ in range(3):
                jt.job_started()
                assert hub.flush(WAIT)
        assert bad.calls == 3
        assert len(good.records) == 3
        assert hub.stats()["sink_errors"] == {"raises": 3}
        failed = [e for e in logs if e["event"] == "tracking.sink_failed"]
        assert len(failed) == 1 and failed[0]["sink"] == "raises"

    def test_a_full_queue_drops_and_counts(self) -> None:
        h, slow, jt = stuck_hub()
        a = act(0, 1)
        with capture_logs() as logs:
            for _ in range(10):
                jt.started(a)
            assert jt.dropped == 6 and h.dropped == 6 and h.stats()["dropped"] == 6
            slow.release.set()
            assert h.flush(WAIT)
        assert [r.seq for r in slow.records] == [1, 2, 3, 4, 5]  # seq 6..11 dropped: a gap
        assert any(e["event"] == "tracking.records_dropped" and e["total"] == 6 for e in logs)
        h.close()

    def test_sinks_are_closed_at_close(self) -> None:
        h = TrackingHub()

        class Closing(Collect):
            closed = 0

            def close(self) -> None:
                self.closed += 1

        sink = h.add_sink(Closing())
        h.close()
        h.close()
        assert sink.closed == 1

    def test_a_sink_needs_write(self, hub: TrackingHub) -> None:
        with pytest.raises(TypeError, match="write"):
            hub.add_sink(object())

    def test_remove_sink_delivers_what_is_queued_first(self, hub: TrackingHub) -> None:
        sink = hub.add_sink(Collect())
        jt = hub.job_tracker(fake_job())
        assert jt is not None
        jt.job_started()
        assert hub.remove_sink(sink)
        assert len(sink.records) == 1
        assert not hub.active
        assert hub.job_tracker(fake_job()) is None

    def test_concurrent_jobs_keep_whole_records_in_seq_order_across_chunks(self) -> None:
        """Jobs on several threads append to the one queue while the drain thread cuts it
        into chunks every millisecond: each job's records still arrive whole (fields of one
        record never mixed with another's), in ``seq`` order without gaps, and the payload
        each activation took resolves to the emit that produced it."""
        h = TrackingHub(flush_interval=0.001)
        sink = h.add_sink(Collect())
        jobs, steps = 4, 400
        trackers = [h.job_tracker(fake_job(f"job-{i}")) for i in range(jobs)]
        gate = threading.Barrier(jobs)

        def work(jt: Any) -> None:
            gate.wait(WAIT)
            lock = threading.Lock()  # the job lock every tracker call runs under
            with lock:
                jt.job_started()
            prev = act(1, 0, [{"seed": 0}])
            with lock:
                jt.started(prev)
            for k in range(1, steps + 1):
                payload = {"k": k}
                with lock:
                    jt.emitted(prev, "out", payload, ((1, 1), (2, 2)))
                nxt = act(1, k, [payload])
                with lock:
                    jt.finished_started(prev, float(k), 0.25, nxt)
                prev = nxt
            with lock:
                jt.finished(prev, float(steps + 1), 0.25)
                jt.job_finished("completed", None, None)

        threads = [threading.Thread(target=work, args=(jt,)) for jt in trackers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
        assert h.flush(WAIT)
        h.close()
        assert h.dropped == 0
        for i in range(jobs):
            recs = [r for r in sink.records if r.job_id == f"job-{i}"]
            assert [r.seq for r in recs] == list(range(1, len(recs) + 1))
            kinds = [r.kind for r in recs if r.kind != "queue.depth"]  # (sampled)
            assert kinds[0] == "job.started" and kinds[-1] == "job.finished"
            assert kinds[1:-1] == [
                "activation.started",
                *["payload.emitted", "activation.finished", "activation.started"] * steps,
                "activation.finished",
            ]
            emits = {r.seq: r for r in recs if r.kind == "payload.emitted"}
            started = [r for r in recs if r.kind == "activation.started"]
            finished = [r for r in recs if r.kind == "activation.finished"]
            assert [r.activation for r in started] == list(range(steps + 1))
            assert [r.activation for r in finished] == list(range(steps + 1))
            assert all(r.duration == 0.25 and r.routine == "b" for r in finished)
            for s in started[1:]:  # activation k took the payload activation k-1 emitted
                [pid] = s.payloads["in"]
                assert pid in emits and emits[pid].activation == s.activation - 1
                assert s.sources == (("b", s.activation - 1),)

    def test_the_bound_holds_for_a_finished_and_started_pair(self) -> None:
        """The pair written in one append near the bound falls back to two records, each
        kept or dropped (and counted) on its own."""
        h, slow, jt = stuck_hub()
        a, b = act(1, 1, [{"x": 1}]), act(1, 2, [{"x": 2}])
        for _ in range(3):
            jt.finished_started(a, 1.0, 0.5, b)
        assert jt.dropped == 2 and h.dropped == 2
        slow.release.set()
        assert h.flush(WAIT)
        assert [r.kind for r in slow.records] == [
            "job.started", "activation.finished", "activation.started",
            "activation.finished", "activation.started",
        ]
        assert [r.seq for r in slow.records] == [1, 2, 3, 4, 5]
        h.close()

    def test_collect_is_a_tracking_sink(self) -> None:
        assert isinstance(Collect(), TrackingSink)


class TestLineage:
    def run(self, hub: TrackingHub) -> InMemorySink:
        sink = hub.add_sink(InMemorySink())
        jt = hub.job_tracker(fake_job())
        assert jt is not None
        jt.job_started()
        src = act(0, 1)
        jt.started(src)
        p1, p2 = {"v": 1}, {"v": 2}
        jt.emitted(src, "out", p1, ((1, 1), (2, 2)))   # seq 3: to b.in and c.in
        jt.emitted(src, "last", p2, ((2, 2),))          # seq 4: to c.in
        jt.finished(src, 1.0, 0.1)
        b = act(1, 2, [p1])
        jt.started(b)
        jt.finished(b, 1.0, 0.1)
        c = act(2, 3, [p1, p2])                         # fan-in of two payloads
        jt.started(c)
        jt.failed(c, ValueError("bad"), 0.2, True)
        jt.job_finished("failed", ValueError("bad"), "c")
        return sink

    def test_started_names_the_payloads_and_their_producers(self, hub: TrackingHub) -> None:
        sink = self.run(hub)
        started = sink.records("job-1", "activation.started")
        assert [(r.routine, dict(r.payloads), r.sources) for r in started] == [
            ("a", {}, ()),
            ("b", {"in": (3,)}, (("a", 1),)),
            ("c", {"in": (3, 4)}, (("a", 1),)),
        ]

    def test_follow_a_payload(self, hub: TrackingHub) -> None:
        sink = self.run(hub)
        trace = sink.trace("job-1", 3)
        assert trace["origin"] is not None
        assert trace["origin"]["routine"] == "a"
        assert trace["origin"]["targets"] == ["b.in", "c.in"]
        assert [(c["routine"], c["outcome"]) for c in trace["consumers"]] == [
            ("b", "finished"), ("c", "failed"),
        ]
        assert trace["waiting"] == []

    def test_follow_from_dicts_gives_the_same_answer(self, hub: TrackingHub) -> None:
        sink = self.run(hub)
        dicts = [r.to_dict() for r in sink.records()]
        assert follow_payload(dicts, "job-1", 4) == sink.trace("job-1", 4)

    def test_a_dropped_payload_is_named_by_id(self, hub: TrackingHub) -> None:
        sink = hub.add_sink(InMemorySink())
        jt = hub.job_tracker(fake_job())
        assert jt is not None
        src = act(0, 1)
        p = {"v": 1}
        jt.emitted(src, "out", p, ((1, 1), (2, 2)))
        jt.dropped_payload(1, 1, p)
        [dropped] = sink.records(kind="payload.dropped")
        assert (dropped.payload, dropped.routine, dropped.slot, dropped.reason) == (
            1, "b", "in", "drop_oldest",
        )
        assert sink.trace("job-1", 1)["waiting"] == ["c.in"]

    def test_summarize(self, hub: TrackingHub) -> None:
        sink = self.run(hub)
        summary = summarize(sink.records())["job-1"]
        assert summary["status"] == "failed" and summary["error_type"] == "ValueError"
        assert summary["routines"]["a"]["payloads_out"] == 2
        assert summary["routines"]["c"]["failed"] == 1


# -- the in-memory sink ------------------------------------------------------------------------


class TestInMemorySink:
    def test_keeps_the_newest_records_and_counts_evictions(self, hub: TrackingHub) -> None:
        sink = hub.add_sink(InMemorySink(capacity=3))
        jt = hub.job_tracker(fake_job())
        assert jt is not None
        for _ in range(5):
            jt.job_started()
        assert [r.seq for r in sink.records()] == [3, 4, 5]
        assert sink.evicted == 2 and sink.received == 5

    def test_filters_by_kind_prefix_and_job(self, hub: TrackingHub) -> None:
        sink = hub.add_sink(InMemorySink())
        for job_id in ("x", "y"):
            jt = hub.job_tracker(fake_job(job_id))
            assert jt is not None
            jt.job_started()
            jt.started(act(0, 1))
        assert {r.kind for r in sink.records(kind="activation.")} == {"activation.started"}
        assert [r.job_id for r in sink.records("y")] == ["y", "y"]

    def test_dicts_leave_out_timing(self, hub: TrackingHub) -> None:
        sink = hub.add_sink(InMemorySink())
        jt = hub.job_tracker(fake_job())
        assert jt is not None
        jt.job_started()
        assert sink.dicts() == [{"kind": "job.started", "job_id": "job-1", "flow": "f",
                                 "seq": 1}]

    def test_bad_capacity(self) -> None:
        with pytest.raises(ConfigurationError):
            InMemorySink(capacity=0)


# -- JSON lines --------------------------------------------------------------------------------


class TestJsonLines:
    def test_rotates_by_size_keeping_n_backups(self, tmp_path: Path) -> None:
        path = tmp_path / "logs" / "track.jsonl"
        sink = JsonLinesSink(path, max_bytes=400, backups=2)
        base = {"job_id": "j", "flow": "f", "ts": 1.0}
        for seq in range(1, 41):
            sink.write([JobStarted(**base, seq=seq)])
        sink.close()
        files = sorted(p.name for p in path.parent.iterdir())
        assert files == ["track.jsonl", "track.jsonl.1", "track.jsonl.2"]
        for p in path.parent.iterdir():
            assert 0 < p.stat().st_size <= 400
        seqs = [d["seq"] for d in read_jsonl(path)]
        assert seqs == list(range(seqs[0], 41))  # oldest files deleted, order kept
        assert seqs[0] > 1
        assert [d["seq"] for d in read_jsonl(path, backups=False)][-1] == 40

    def test_no_backups_truncates(self, tmp_path: Path) -> None:
        path = tmp_path / "t.jsonl"
        sink = JsonLinesSink(path, max_bytes=200, backups=0)
        for seq in range(1, 20):
            sink.write([JobStarted(job_id="j", flow="f", ts=1.0, seq=seq)])
        sink.close()
        assert [p.name for p in tmp_path.iterdir()] == ["t.jsonl"]
        assert [d["seq"] for d in read_jsonl(path)][-1] == 19

    def test_appends_to_an_existing_file(self, tmp_path: Path) -> None:
        path = tmp_path / "t.jsonl"
        for seq in (1, 2):
            sink = JsonLinesSink(path)
            sink.write([JobStarted(job_id="j", flow="f", ts=1.0, seq=seq)])
            sink.close()
        assert [record_from_dict(d).seq for d in read_jsonl(path)] == [1, 2]

    def test_fed_by_a_hub(self, hub: TrackingHub, tmp_path: Path) -> None:
        sink = hub.add_sink(JsonLinesSink(tmp_path / "t.jsonl", timing=False))
        jt = hub.job_tracker(fake_job())
        assert jt is not None
        jt.job_started()
        jt.job_finished("completed", None, None)
        assert hub.flush(WAIT)
        assert [d["kind"] for d in read_jsonl(sink.path)] == ["job.started", "job.finished"]
        assert "ts" not in next(read_jsonl(sink.path))


# -- choosing sinks by name --------------------------------------------------------------------


class TestByName:
    def test_builtin_names(self, tmp_path: Path) -> None:
        reg = TypeRegistry()
        assert set(reg.tracking_sinks.names()) >= {"memory", "jsonl", "otel", "prometheus"}
        assert isinstance(build_sink("memory", reg), InMemorySink)
        sink = build_sink(("jsonl", {"path": tmp_path / "x.jsonl", "backups": 1}), reg)
        assert isinstance(sink, JsonLinesSink) and sink.backups == 1
        sink = build_sink({"name": "memory", "capacity": 7}, reg)
        assert sink.capacity == 7

    def test_objects_pass_through(self) -> None:
        sink = Collect()
        assert build_sink(sink) is sink

    def test_unknown_name(self) -> None:
        with pytest.raises(UnknownTypeError, match="tracking sink"):
            build_sink("nope", TypeRegistry())

    def test_bad_options(self) -> None:
        with pytest.raises(ConfigurationError, match="memory"):
            build_sink(("memory", {"size": 3}), TypeRegistry())


# -- OpenTelemetry -----------------------------------------------------------------------------


class TestOpenTelemetry:
    @pytest.fixture
    def exporter(self) -> Any:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        exporter.provider = provider
        return exporter

    def test_spans_per_job_and_activation_with_fan_in_links(
        self, hub: TrackingHub, exporter: Any
    ) -> None:
        from routilux.tracking.otel import OpenTelemetrySink

        hub.add_sink(OpenTelemetrySink(exporter.provider))
        TestLineage().run(hub)
        assert hub.flush(WAIT)
        spans = {s.name: s for s in exporter.get_finished_spans()}
        assert set(spans) == {
            "routilux.job f", "routilux.activation a", "routilux.activation b",
            "routilux.activation c",
        }
        job = spans["routilux.job f"]
        a, c = spans["routilux.activation a"], spans["routilux.activation c"]
        for name in ("a", "b", "c"):
            span = spans[f"routilux.activation {name}"]
            assert span.parent is not None and span.parent.span_id == job.context.span_id
            assert span.context.trace_id == job.context.trace_id
        assert [link.context.span_id for link in c.links] == [a.context.span_id]
        assert c.status.status_code.name == "ERROR"
        assert c.attributes["error.type"] == "ValueError"
        assert job.status.status_code.name == "ERROR"
        assert job.attributes["routilux.status"] == "failed"
        assert c.end_time - c.start_time == pytest.approx(0, abs=1e9)

    def test_open_spans_are_ended_at_close(self, exporter: Any) -> None:
        from routilux.tracking.otel import OpenTelemetrySink

        h = TrackingHub()
        h.add_sink(OpenTelemetrySink(exporter.provider))
        jt = h.job_tracker(fake_job())
        assert jt is not None
        jt.job_started()
        jt.started(act(0, 1))
        h.close()
        assert sorted(s.name for s in exporter.get_finished_spans()) == [
            "routilux.activation a", "routilux.job f",
        ]


# -- Prometheus --------------------------------------------------------------------------------


class TestPrometheus:
    def test_counters_and_histograms_scrape(self, hub: TrackingHub) -> None:
        from prometheus_client import CollectorRegistry, generate_latest
        from routilux.tracking.prometheus import PrometheusSink

        registry = CollectorRegistry()
        hub.add_sink(PrometheusSink(registry))
        TestLineage().run(hub)
        assert hub.flush(WAIT)
        text = generate_latest(registry).decode()
        assert 'routilux_jobs_started_total{flow="f"} 1.0' in text
        assert 'routilux_jobs_finished_total{flow="f",status="failed"} 1.0' in text
        assert 'routilux_activations_total{flow="f",outcome="finished",routine="a"} 1.0' in text
        assert 'routilux_activations_total{flow="f",outcome="failed",routine="c"} 1.0' in text
        assert 'routilux_payloads_emitted_total{event="out",flow="f",routine="a"} 1.0' in text
        assert 'routilux_payloads_emitted_total{event="last",flow="f",routine="a"} 1.0' in text
        assert 'routilux_activation_duration_seconds_count{flow="f",routine="c"} 1.0' in text
        assert 'routilux_activation_duration_seconds_sum{flow="f",routine="c"} 0.2' in text
