"""Folding forgotten jobs into a flow's statistics (``ExecutionTracker``).

The runtime folds every job it forgets into its flow's tracker with ``add_job`` (written out
for speed); a snapshot folds the jobs still held with ``_fold_locked``. These check, on random
jobs, that the two give exactly the same totals, which are those of adding every job: the
same counters, float sums (same order), duration window, job count, times and statuses.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from routilux import Flow, JobStatus, Routine, Runtime
from routilux._activation import RoutineStats
from routilux.monitoring.flow_registry import FlowRegistry
from routilux.tracking import ExecutionTracker

BASE = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class FakePlan:
    routine_ids: tuple[str, ...]


@dataclass
class FakeState:
    status: JobStatus
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass
class FakeJob:
    """What a tracker reads of a job: its plan's routine ids, its stats and its state."""

    plan: FakePlan
    stats: list[RoutineStats]
    state: FakeState
    lock: Any = field(default_factory=threading.Lock)


PLANS = [("a", "b", "c"), ("a", "c"), ("x",), ("b", "a", "c", "d")]


@st.composite
def jobs(draw: st.DrawFn) -> FakeJob:
    rids = draw(st.sampled_from(PLANS))
    stats = []
    for _ in rids:
        s = RoutineStats()
        # Durations in 1/1024 s: exactly representable, so sums are exact in any order (a
        # snapshot adds the folded total and the held jobs' total: a different order).
        for k in draw(st.lists(st.integers(0, 5 * 1024), max_size=12)):
            s.record(k / 1024)
        s.errors = draw(st.integers(0, 3))
        s.retries = draw(st.integers(0, 3))
        s.skipped = draw(st.integers(0, 2))
        s.timeouts = draw(st.integers(0, 2))
        s.payloads_in = draw(st.integers(0, 20))
        s.payloads_out = draw(st.integers(0, 20))
        stats.append(s)
    # Times in 1/64 s (exact as timestamps and as sums, like the durations above).
    created = BASE + timedelta(seconds=draw(st.integers(0, 64_000)) / 64)
    started = draw(st.none() | st.just(created + timedelta(seconds=1 / 64)))
    finished = created + timedelta(seconds=draw(st.integers(-64, 6_400)) / 64)
    status = draw(st.sampled_from([JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED]))
    return FakeJob(FakePlan(rids), stats, FakeState(status, created, started, finished))


def one_by_one(flow: str, js: list[FakeJob], samples: int) -> dict[str, Any]:
    """The reference: the jobs folded as a snapshot folds the jobs still held."""
    t = ExecutionTracker(flow, samples=samples)
    return t.snapshot(js)


class TestFold:
    @settings(max_examples=50, deadline=None)
    @given(st.lists(jobs(), max_size=60), st.sampled_from([4, 50, 1024]))
    def test_folded_totals_equal_folding_each_job(self, js: list[FakeJob], samples: int) -> None:
        folded = ExecutionTracker("f", samples=samples)
        for job in js:
            folded.add_job(job)  # type: ignore[arg-type]
        assert folded.snapshot([]) == one_by_one("f", js, samples)

    @settings(max_examples=25, deadline=None)
    @given(st.lists(jobs(), min_size=1, max_size=50), st.integers(0, 50))
    def test_forgotten_and_held_jobs_add_up(self, js: list[FakeJob], cut: int) -> None:
        """Some jobs forgotten (folded), the rest still held: the snapshot is the same."""
        folded = ExecutionTracker("f")
        for job in js[:cut]:
            folded.add_job(job)  # type: ignore[arg-type]
        assert folded.snapshot(js[cut:]) == one_by_one("f", js, 1024)

    def test_counters_are_the_sums(self) -> None:
        js = []
        for i in range(70):
            s = RoutineStats()
            s.record(0.5 + i)
            s.payloads_in = i
            js.append(FakeJob(FakePlan(("a",)), [s],
                              FakeState(JobStatus.COMPLETED, BASE, BASE, BASE)))
        m = ExecutionTracker("f").snapshot([])
        assert m["jobs"]["total"] == 0
        t = ExecutionTracker("f")
        for job in js:
            t.add_job(job)  # type: ignore[arg-type]
        m = t.snapshot([])
        a = m["routines"]["a"]
        assert m["jobs"] == {"total": 70, "completed": 70}
        assert a["activations"] == 70
        assert a["payloads_in"] == sum(range(70))
        assert a["duration"]["min"] == 0.5
        assert a["duration"]["max"] == 69.5
        assert a["duration"]["total"] == sum(0.5 + i for i in range(70))


class Node(Routine):
    def __init__(self) -> None:
        super().__init__()
        self.add_slot("in")
        self.add_event("out", ["i"])

        def logic(sd: dict[str, Any], m: Any, js: Any) -> None:
            for p in sd["in"]:
                self.emit("out", i=p["i"])

        self.set_logic(logic)


def test_runtime_flow_metrics_count_every_job_once() -> None:
    """Jobs forgotten beyond ``max_finished_jobs`` (folded) and jobs still held add up to
    every job run."""
    flow = Flow(flow_id="fold")
    flow.add_routine(Node(), "a")
    flow.add_routine(Node(), "b")
    flow.connect("a", "out", "b", "in")
    n = 101
    with Runtime(thread_pool_size=2, flow_registry=FlowRegistry(), max_finished_jobs=7) as rt:
        for i in range(n):
            js = rt.exec(flow, entry_params={"i": i})
            assert rt.wait_job(js.job_id, 10)
            if i % 29 == 0:
                assert rt.get_flow_metrics("fold")["jobs"]["total"] == i + 1
        m = rt.get_flow_metrics("fold")
    assert m["jobs"] == {"total": n, "completed": n}
    for rid in ("a", "b"):
        r = m["routines"][rid]
        assert r["activations"] == n
        assert r["payloads_in"] == n
        assert r["payloads_out"] == n
