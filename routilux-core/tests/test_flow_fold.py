"""Folding forgotten jobs into a flow's statistics (``ExecutionTracker``).

The runtime folds every job it forgets into its flow's tracker with ``add_job`` (written out
for speed); a snapshot folds the jobs still held with ``_fold_locked``. These check, on random
jobs, that the two give exactly the same totals, which are those of adding every job: the
same counters, float sums (same order), duration window, job count, times and statuses.
"""

from __future__ import annotations

import threading
import time
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


class Boom(Routine):
    """Fails on odd ``i`` (a failed job is folded when forgotten, not when it finishes)."""

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("in")

        def logic(sd: dict[str, Any], m: Any, js: Any) -> None:
            for p in sd["in"]:
                if p["i"] % 2:
                    raise ValueError("odd")

        self.set_logic(logic)


def test_flow_metrics_read_during_a_burst_never_count_a_job_twice() -> None:
    """Snapshots taken while jobs finish, are folded (completed ones as they finish, failed
    ones when forgotten) and forgotten: every snapshot counts at most the jobs started so far,
    and the last one counts each exactly once."""
    flow = Flow(flow_id="race")
    flow.add_routine(Node(), "a")
    flow.add_routine(Boom(), "b")
    flow.connect("a", "out", "b", "in")
    n = 400
    started = 0
    seen: list[tuple[int, int, int]] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader(rt: Runtime) -> None:
        last = (0, 0)
        try:
            while not stop.is_set():
                bound = started
                m = rt.get_flow_metrics("race")
                got = m["jobs"]["total"], m["routines"].get("a", {}).get("activations", 0)
                seen.append((bound, *got))
                upper = started
                # never twice (at most the jobs started), never lost (a job once counted is
                # counted in every later snapshot: held, then folded)
                assert got[0] <= upper and got[1] <= upper, (bound, upper, got)
                assert got[0] >= last[0] and got[1] >= last[1], (last, got)
                last = got
        except BaseException as exc:  # (reported by the test thread)
            errors.append(exc)

    with Runtime(thread_pool_size=3, flow_registry=FlowRegistry(), max_finished_jobs=5) as rt:
        readers = [threading.Thread(target=reader, args=(rt,)) for _ in range(2)]
        for t in readers:
            t.start()
        try:
            for i in range(n):
                started += 1
                rt.exec(flow, entry_params={"i": i})
                if i % 50 == 49:
                    assert rt.wait_until_all_jobs_finished(30)
            assert rt.wait_until_all_jobs_finished(30)
        finally:
            stop.set()
            for t in readers:
                t.join(30)
        m = rt.get_flow_metrics("race")
    assert not errors, errors[0]
    assert len(seen) > 10  # the readers really ran alongside
    assert m["jobs"] == {"total": n, "completed": n // 2, "failed": n // 2}
    assert m["routines"]["a"]["activations"] == n
    assert m["routines"]["b"]["errors"] == n // 2


def test_a_flow_tracker_made_again_counts_the_held_jobs_of_its_predecessor(
    monkeypatch: Any,
) -> None:
    """The runtime keeps a bounded number of flow trackers: one forgotten and made again
    must still count the held jobs folded into its predecessor (they are in neither)."""
    from routilux import runtime as runtime_module

    monkeypatch.setattr(runtime_module, "_MAX_FLOW_TRACKERS", 1)

    def flow(name: str) -> Flow:
        f = Flow(flow_id=name)
        f.add_routine(Node(), "a")
        return f

    a, b = flow("A"), flow("B")
    with Runtime(thread_pool_size=2, flow_registry=FlowRegistry(), max_finished_jobs=50) as rt:
        for f in (a, b, a):  # A's tracker, then B's (A's forgotten), then A's again
            assert rt.wait_job(rt.exec(f, entry_params={"i": 1}).job_id, 10)
        m = rt.get_flow_metrics("A")
        assert m["jobs"]["total"] == 2
        assert m["routines"]["a"]["activations"] == 2
        assert rt.get_flow_metrics("B")["jobs"]["total"] == 1


def _slow_and_failing(
    flow_id: str, running: threading.Event, release: threading.Event,
    gate: threading.Event | None = None,
) -> Flow:
    """``slow`` (sets ``running``, then runs until ``release``) beside ``fail`` (raises once
    ``slow`` runs and ``gate``, if given, is set): a job that fails with an activation still
    running."""

    class Slow(Routine):
        def __init__(self) -> None:
            super().__init__()

            def logic(sd: dict[str, Any], m: Any, js: Any) -> None:
                running.set()
                assert release.wait(30)

            self.set_logic(logic)

    class Fail(Routine):
        def __init__(self) -> None:
            super().__init__()

            def logic(sd: dict[str, Any], m: Any, js: Any) -> None:
                assert running.wait(30) and (gate is None or gate.wait(30))
                raise ValueError("boom")

            self.set_logic(logic)

    flow = Flow(flow_id=flow_id)
    flow.add_routine(Slow(), "slow")
    flow.add_routine(Fail(), "fail")
    return flow


def test_a_failed_job_forgotten_while_an_activation_runs_still_counts_it() -> None:
    """A failed job is folded when forgotten; one forgotten while another of its activations
    still runs is folded when that activation ends (it writes its counters after the job
    failed), and snapshots count it all along: nothing of it is lost or counted twice."""
    running, release = threading.Event(), threading.Event()

    class Quick(Routine):
        def __init__(self) -> None:
            super().__init__()
            self.set_logic(lambda sd, m, js: None)

    flow = _slow_and_failing("late", running, release)
    other = Flow(flow_id="other")
    other.add_routine(Quick(), "q")
    with Runtime(thread_pool_size=3, flow_registry=FlowRegistry(), max_finished_jobs=1) as rt:
        job = rt.exec(flow)
        # (``wait_job`` would wait for ``slow`` too: a failed job settles when it ends)
        deadline = time.monotonic() + 30
        while job.status is not JobStatus.FAILED and time.monotonic() < deadline:
            time.sleep(0.005)
        assert job.status is JobStatus.FAILED
        # Finish more jobs until the failed one is forgotten (retention 1). (Its status reads
        # FAILED a moment before the failing worker hands it to the retention order, so the
        # first of them may finish before it and be evicted by it instead.)
        deadline = time.monotonic() + 30
        while job.job_id in {j.job_id for j in rt.list_jobs()}:
            assert time.monotonic() < deadline, "the failed job was never forgotten"
            assert rt.wait_job(rt.exec(other).job_id, 30)
        assert not release.is_set() and rt._late  # forgotten while ``slow`` still runs
        m = rt.get_flow_metrics("late")
        assert m["jobs"] == {"total": 1, "failed": 1}
        assert m["routines"]["fail"]["errors"] == 1
        assert m["routines"].get("slow", {}).get("activations", 0) == 0  # still running
        release.set()
        assert rt.wait_until_all_jobs_finished(30)
        m = rt.get_flow_metrics("late")
        assert m["jobs"] == {"total": 1, "failed": 1}
        assert m["routines"]["fail"]["errors"] == 1
        assert m["routines"]["slow"]["activations"] == 1  # (was lost: folded before it ended)
        assert not rt._late


def test_failed_jobs_forgotten_in_a_burst_while_their_siblings_run_lose_nothing() -> None:
    """Many failing jobs, each with a sibling activation that ends a little after the job
    failed, forgotten at once (retention 2) while readers take snapshots: every snapshot is
    monotonic and bounded, and the last counts every sibling activation exactly once."""
    n = 120

    class Sibling(Routine):
        def __init__(self) -> None:
            super().__init__()

            def logic(sd: dict[str, Any], m: Any, js: Any) -> None:
                js.shared_data["sib"] = True
                time.sleep(0.002)

            self.set_logic(logic)

    class Fail(Routine):
        def __init__(self) -> None:
            super().__init__()

            def logic(sd: dict[str, Any], m: Any, js: Any) -> None:
                deadline = time.monotonic() + 30
                while "sib" not in js.shared_data and time.monotonic() < deadline:
                    time.sleep(0.0002)  # (fails once its sibling runs, so it always runs)
                raise ValueError("boom")

            self.set_logic(logic)

    flow = Flow(flow_id="burst-late")
    flow.add_routine(Sibling(), "sib")
    flow.add_routine(Fail(), "fail")
    started = 0
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader(rt: Runtime) -> None:
        last = 0
        try:
            while not stop.is_set():
                got = rt.get_flow_metrics("burst-late")["routines"].get("sib", {}).get(
                    "activations", 0)
                assert last <= got <= started, (last, got, started)
                last = got
        except BaseException as exc:  # (reported by the test thread)
            errors.append(exc)

    with Runtime(thread_pool_size=4, flow_registry=FlowRegistry(), max_finished_jobs=2) as rt:
        t = threading.Thread(target=reader, args=(rt,))
        t.start()
        try:
            for _ in range(n):
                started += 1
                rt.exec(flow)
            assert rt.wait_until_all_jobs_finished(60)
        finally:
            stop.set()
            t.join(30)
        m = rt.get_flow_metrics("burst-late")
        assert not rt._late
    assert not errors, errors[0]
    assert m["jobs"] == {"total": n, "failed": n}
    assert m["routines"]["sib"]["activations"] == n
    assert m["routines"]["fail"]["errors"] == n


def test_a_failed_job_continued_while_an_activation_runs_still_counts_it() -> None:
    """The same for a failed job whose id ``exec`` continues (from a copy saved while it
    ran) before its other activation ends: the old job is folded when that activation
    ends, the continuation counts on its own."""
    from routilux.job_state import JobState

    running, release, saved = threading.Event(), threading.Event(), threading.Event()
    flow = _slow_and_failing("late-continued", running, release, saved)
    with Runtime(thread_pool_size=4, flow_registry=FlowRegistry(), max_finished_jobs=10) as rt:
        job = rt.exec(flow)
        assert running.wait(30)
        copy = JobState.from_dict(job.to_dict())  # saved while both activations run
        saved.set()
        deadline = time.monotonic() + 30
        while job.status is not JobStatus.FAILED and time.monotonic() < deadline:
            time.sleep(0.005)
        assert job.status is JobStatus.FAILED
        again = rt.exec(flow, job_state=copy)  # continues the id; ``slow`` still runs
        assert again.job_id == job.job_id
        release.set()
        assert rt.wait_until_all_jobs_finished(30)
        m = rt.get_flow_metrics("late-continued")
        assert not rt._late
    assert m["jobs"] == {"total": 2, "failed": 2}
    # both jobs ran both routines (was 1 for ``slow``: the first job's folded too early)
    assert m["routines"]["slow"]["activations"] == 2
    assert m["routines"]["fail"]["errors"] == 2
