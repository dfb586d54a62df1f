"""A job's per-routine counters: compiled (routilux/_cstats.c) and pure Python.

``RoutineStats`` (a job's counters of one routine) and the flow totals ``_Totals`` are built on
``_StatsCore``: ``routilux._cstats.StatsCore`` where it was built, else ``_PyStatsCore``. These
tests drive both with the same calls and compare every field, check the compiled one is really
in use where it must be (CI sets ``ROUTILUX_REQUIRE_ACCEL=1``), and run the metrics tests once
more with the pure-Python counters.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from routilux import _activation, _job
from routilux._activation import _DURATION_SAMPLES, _py_fresh, _PyStatsCore
from routilux.tracking import metrics

try:
    from routilux import _cstats
except ImportError:  # not built here; CI requires it (see the first test)
    _cstats = None

compiled = pytest.mark.skipif(_cstats is None, reason="the compiled counters were not built here")
CORES: list[type] = [_PyStatsCore] + ([_cstats.StatsCore] if _cstats is not None else [])
FIELDS = ("activations", "errors", "retries", "skipped", "timeouts", "payloads_in",
          "payloads_out", "total", "min", "max", "_samples", "dpos")


def test_the_compiled_counters_are_used_where_they_were_built() -> None:
    if os.environ.get("ROUTILUX_REQUIRE_ACCEL"):
        assert _cstats is not None, "ROUTILUX_REQUIRE_ACCEL is set (CI) but _cstats was not built"
    if _cstats is not None and os.environ.get("ROUTILUX_PURE_PYTHON", "") in ("", "0"):
        assert _activation.STATS_ACCELERATED
        assert issubclass(_activation.RoutineStats, _cstats.StatsCore)
        assert _job._fresh is _cstats.fresh  # (what Job.__init__ calls)
        assert metrics.fold_all is _cstats.fold_all  # (what ExecutionTracker.add_job calls)
    else:
        assert not _activation.STATS_ACCELERATED
        assert issubclass(_activation.RoutineStats, _PyStatsCore)
        assert _job._fresh is _py_fresh
        assert metrics.fold_all is _activation._py_fold_all


@compiled
def test_the_compiled_ring_has_the_documented_size() -> None:
    assert _cstats is not None
    assert _cstats.SAMPLES == _DURATION_SAMPLES


def fields(s: Any) -> tuple[Any, ...]:
    out = []
    for name in FIELDS:
        v = getattr(s, name)
        out.append(bytes(v) if isinstance(v, bytearray) else v)
    return tuple(out)


durations = st.one_of(
    st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False),
    st.integers(0, 10**6),  # (an int duration counts as its float, in both)
    st.sampled_from([math.inf, math.nan, -0.0]),
)
# One step: ("record", seconds) | ("bump", field, n) (an error path's ``stats.errors += n``)
# | ("fold", job index) (fold job ``i``'s counters into the totals).
steps = st.lists(
    st.one_of(
        st.tuples(st.just("record"), st.integers(0, 2), durations),
        st.tuples(st.just("bump"), st.integers(0, 2),
                  st.sampled_from(["errors", "retries", "skipped", "timeouts", "payloads_in",
                                   "payloads_out"]),
                  st.integers(1, 3)),
        st.tuples(st.just("fold"), st.integers(0, 2)),
        # many records at once, so the ring fills and wraps
        st.tuples(st.just("many"), st.integers(0, 2), st.integers(1, _DURATION_SAMPLES + 50),
                  durations),
    ),
    max_size=40,
)


@given(steps=steps, maxlen=st.integers(1, 2 * _DURATION_SAMPLES))
@settings(max_examples=120, deadline=None)
def test_both_cores_count_the_same(steps: list[tuple[Any, ...]], maxlen: int) -> None:
    runs = []
    for cls in CORES:
        jobs = [cls() for _ in range(3)]
        totals = cls()
        kept: deque[float] = deque(maxlen=maxlen)
        for step in steps:
            kind = step[0]
            if kind == "record":
                jobs[step[1]].record(step[2])
            elif kind == "many":
                for k in range(step[2]):
                    jobs[step[1]].record(step[3] + k)
            elif kind == "bump":
                s = jobs[step[1]]
                setattr(s, step[2], getattr(s, step[2]) + step[3])
            else:
                totals.fold(jobs[step[1]], kept)
        into: list[float] = []
        for s in jobs:
            s.samples_into(into)
        runs.append(([fields(s) for s in jobs], fields(totals), list(kept), into))
    for other in runs[1:]:
        assert repr(other) == repr(runs[0])  # (repr: NaN equals itself there)


@pytest.mark.parametrize("cls", CORES)
def test_a_fresh_core_reads_as_nothing_counted(cls: type) -> None:
    s = cls()
    assert fields(s) == (0, 0, 0, 0, 0, 0, 0, 0.0, math.inf, 0.0, None, 0)
    assert type(s.total) is float and type(s.activations) is int


@pytest.mark.parametrize("cls", CORES)
def test_fold_keeps_min_max_of_routines_that_ran_only(cls: type) -> None:
    totals, ran, idle = cls(), cls(), cls()
    ran.record(0.25)
    ran.record(0.5)
    kept: deque[float] = deque()
    totals.fold(idle, kept)  # never ran: its min (inf) and max (0.0) are not samples
    assert (totals.min, totals.max, list(kept)) == (math.inf, 0.0, [])
    totals.fold(ran, kept)
    assert (totals.min, totals.max, sorted(kept)) == (0.25, 0.5, [0.25, 0.5])
    assert (totals.activations, totals.total) == (2, 0.75)


def test_fresh_makes_independent_counters_of_the_class_asked_for() -> None:
    fresh = _activation._fresh
    made = fresh(_activation.RoutineStats, 4)
    assert len(made) == 4 and len({id(s) for s in made}) == 4
    assert all(type(s) is _activation.RoutineStats for s in made)
    assert all(fields(s) == fields(_activation.RoutineStats()) for s in made)
    made[0].record(1.0)
    made[1].payloads_in += 2
    assert [s.activations for s in made] == [1, 0, 0, 0]
    assert [s.payloads_in for s in made] == [0, 2, 0, 0]
    assert _py_fresh(_activation.RoutineStats, 0) == [] == fresh(_activation.RoutineStats, 0)


@compiled
def test_the_compiled_functions_refuse_what_is_not_theirs() -> None:
    assert _cstats is not None
    s = _cstats.StatsCore()
    with pytest.raises(TypeError, match="other must be a StatsCore"):
        s.fold(object(), [])
    with pytest.raises(TypeError, match="StatsCore subclass without fields"):
        _cstats.fresh(dict, 1)

    class WithField(_cstats.StatsCore):
        __slots__ = ("extra",)

    with pytest.raises(TypeError, match="StatsCore subclass without fields"):
        _cstats.fresh(WithField, 1)
    with pytest.raises(ValueError, match="n must be >= 0"):
        _cstats.fresh(_cstats.StatsCore, -1)


@compiled
def test_the_compiled_counters_refuse_to_overflow_and_change_nothing() -> None:
    assert _cstats is not None
    a, b = _cstats.StatsCore(), _cstats.StatsCore()
    a.errors = b.errors = 2**62
    b.record(1.0)
    before = fields(a)
    with pytest.raises(OverflowError):
        a.fold(b, [])
    assert fields(a) == before
    a.activations = 2**63 - 1
    with pytest.raises(OverflowError):
        a.record(1.0)


@pytest.mark.parametrize("cls", CORES)
def test_both_cores_refuse_a_broken_field_before_changing_anything(cls: type) -> None:
    s = cls()
    s.record(1.0)
    s._samples = "not a ring"
    before = fields(s)
    with pytest.raises(TypeError, match="bytearray or None"):
        s.record(2.0)
    assert fields(s) == before
    with pytest.raises(OverflowError):
        s.record(10**400)  # (not a float)
    assert fields(s) == before
    ring = cls()
    for v in range(_DURATION_SAMPLES + 1):
        ring.record(float(v))
    ring.dpos = 10**9
    before = fields(ring)
    with pytest.raises(ValueError, match="out of range"):
        ring.record(1.0)
    assert fields(ring) == before
    gone = cls()
    del gone._samples
    with pytest.raises(AttributeError):
        gone.record(1.0)
    with pytest.raises(AttributeError):
        gone.samples_into([])
    with pytest.raises(AttributeError):
        cls().fold(gone, [])
    no_count = cls()
    del no_count.payloads_in
    with pytest.raises(AttributeError):
        cls().fold(no_count, [])
    with pytest.raises(AttributeError):
        no_count.fold(cls(), [])


@pytest.mark.parametrize("copier", ["pickle", "copy", "deepcopy"])
def test_counters_and_totals_copy_and_pickle(copier: str) -> None:
    import copy
    import pickle

    from routilux.tracking.metrics import _Totals

    def clone(obj: Any) -> Any:
        if copier == "pickle":
            return pickle.loads(pickle.dumps(obj))
        return copy.copy(obj) if copier == "copy" else copy.deepcopy(obj)

    s = _activation.RoutineStats()
    for v in (0.5, 0.25, 2.0):
        s.record(v)
    s.payloads_in, s.errors = 7, 1
    c = clone(s)
    assert type(c) is _activation.RoutineStats and fields(c) == fields(s)
    assert c._samples is not s._samples
    c.record(9.0)
    assert s.activations == 3  # independent
    t = _Totals(8)
    t.fold(s, t.samples)
    ct = clone(t)
    assert type(ct) is _Totals and fields(ct) == fields(t)
    assert list(ct.samples) == list(t.samples) and ct.samples.maxlen == 8


def test_metrics_tests_pass_with_the_pure_python_counters() -> None:
    """The runtime and metrics tests once more in a process that uses ``_PyStatsCore``."""
    here = Path(__file__).parent
    env = {**os.environ, "ROUTILUX_PURE_PYTHON": "1"}
    env.pop("ROUTILUX_REQUIRE_ACCEL", None)
    used = "test_stats_core.py::test_the_compiled_counters_are_used_where_they_were_built"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:randomly", "-p", "no:cacheprovider",
         str(here / "test_flow_fold.py"), str(here / "test_serial_path.py"),
         str(here / "test_runtime.py"),
         str(here / used),
         "-k", "not pure_python"],
        capture_output=True, text=True, env=env, timeout=110, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout


@pytest.mark.parametrize("fold_all", [_activation._py_fold_all]
                         + ([_cstats.fold_all] if _cstats is not None else []))
def test_fold_all_is_fold_of_each_pair(fold_all: Any) -> None:
    from routilux.tracking.metrics import _Totals

    jobs = [_activation.RoutineStats() for _ in range(3)]
    for k, s in enumerate(jobs):
        s.record(float(k + 1))
        s.payloads_out += k
    totals = [_Totals(4) for _ in range(3)]
    fold_all(totals, jobs)
    expect = [_Totals(4) for _ in range(3)]
    for t, s in zip(expect, jobs, strict=True):
        t.fold(s, t.samples)
    assert [fields(t) for t in totals] == [fields(t) for t in expect]
    assert [list(t.samples) for t in totals] == [[1.0], [2.0], [3.0]]
    with pytest.raises(ValueError, match="differ in length"):
        fold_all(totals[:2], jobs)


def test_a_flow_tracker_folds_each_routine_by_name_whatever_the_plan_order() -> None:
    """Two versions of a flow list their routines in different orders: each job's counters
    land on its routines' totals by name (the tracker keeps one aligned list per order)."""
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from routilux.job_state import JobStatus
    from routilux.tracking.metrics import ExecutionTracker

    def job(rids: tuple[str, ...], acts: dict[str, int]) -> Any:
        stats = []
        for rid in rids:
            s = _activation.RoutineStats()
            for _ in range(acts[rid]):
                s.record(0.5)
            stats.append(s)
        now = datetime.now(UTC)
        state = SimpleNamespace(started_at=now, created_at=now, finished_at=now,
                                status=JobStatus.COMPLETED)
        return SimpleNamespace(plan=SimpleNamespace(routine_ids=rids), stats=stats, state=state)

    tracker = ExecutionTracker("f")
    tracker.add_job(job(("a", "b"), {"a": 1, "b": 2}))
    tracker.add_job(job(("b", "a", "c"), {"a": 10, "b": 20, "c": 30}))
    tracker.add_job(job(("a", "b"), {"a": 100, "b": 200}))
    got = tracker.snapshot()["routines"]
    assert {rid: got[rid]["activations"] for rid in got} == {"a": 111, "b": 222, "c": 30}
    assert tracker.snapshot()["jobs"]["total"] == 3


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler here to build with")
@pytest.mark.parametrize("source", ["_cstats.c", "tracking/_crec.c"])
def test_the_c_sources_compile_without_a_warning(source: str, tmp_path: Path) -> None:
    """A warning today is a build that fails where warnings are errors (distribution builds)
    and silently falls back to pure Python: build with -Wall -Wextra -Werror."""
    import sysconfig

    src = Path(_activation.__file__).parent / source
    proc = subprocess.run(
        ["gcc", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared",
         f"-I{sysconfig.get_paths()['include']}", str(src), "-o", str(tmp_path / "m.so")],
        capture_output=True, text=True, timeout=110, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
