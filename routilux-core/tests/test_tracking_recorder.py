"""The tracking recorder's hot-path core: compiled (tracking/_crec.c) and pure Python.

Both queue exactly the same packed raw records (tracking/_wire.py, ``REC``), which the rest of
tracking reads; the compiled one is used wherever it was built. These tests compare the two
call by call (the bytes they queue), check the compiled one is really in use where it must be
(CI sets ``ROUTILUX_REQUIRE_ACCEL=1``), run the end-to-end tracking tests once more with the
pure-Python recorder, and check the records that do not fit the packed form (a job token past
``TOK_MAX``, an attempt past 255, a name not in the hub's table) come out the same.
"""

from __future__ import annotations

import gc
import itertools
import os
import subprocess
import sys
import time
import weakref
from collections import deque
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from routilux._activation import Activation
from routilux.tracking import InMemorySink, TrackingHub, _hub, _wire
from routilux.tracking._hub import _DEPTH_EVERY, _PyTrackerCore

try:
    from routilux.tracking import _crec
except ImportError:  # not built here; CI requires it (see test_the_compiled_recorder_is_used)
    _crec = None

compiled = pytest.mark.skipif(_crec is None, reason="the compiled recorder was not built here")
CORES = [_PyTrackerCore] + ([_crec.TrackerCore] if _crec is not None else [])
TAKES = [_hub._py_take] + ([_crec.take] if _crec is not None else [])
SIZE = _wire.REC_SIZE


def test_the_compiled_recorder_is_used_where_it_was_built() -> None:
    if os.environ.get("ROUTILUX_REQUIRE_ACCEL"):
        assert _crec is not None, "ROUTILUX_REQUIRE_ACCEL is set (CI) but _crec was not built"
    if _crec is not None and os.environ.get("ROUTILUX_PURE_PYTHON", "") in ("", "0"):
        assert _hub.ACCELERATED
        assert issubclass(_hub.JobTracker, _crec.TrackerCore)
    else:
        assert not _hub.ACCELERATED
        assert issubclass(_hub.JobTracker, _PyTrackerCore)


@compiled
def test_the_compiled_constants_are_the_wire_format() -> None:
    assert _crec is not None
    assert _wire.REC_SIZE == 56
    assert _crec.K_DEPTH == _wire.K_DEPTH
    assert (_crec.K_STARTED, _crec.K_FINISHED, _crec.K_EMITTED, _crec.K_OBJ, _crec.K_PAIR,
            _crec.REC_SIZE, _crec.NAME_MAX, _crec.TOK_MAX, _crec.ATTEMPT_MAX,
            _crec.DEPTH_EVERY) == (
        _wire.K_STARTED, _wire.K_FINISHED, _wire.K_EMITTED, _wire.K_OBJ, _wire.K_PAIR,
        _wire.REC_SIZE, _wire.NAME_MAX, _wire.TOK_MAX, _wire.ATTEMPT_MAX, _DEPTH_EVERY)
    assert _wire.NAME_MAX == (1 << _wire.PAIR_SHIFT) - 1


NAMES = {"out": 0, "done": 1, "é": 2, "in": _wire.NAME_MAX, "over": _wire.NAME_MAX + 1}


class _SubDeque(deque):  # type: ignore[type-arg]
    """A deque subclass: its ``len`` could run Python code, so it is never sampled packed."""


def _queues() -> list[Any]:
    return [deque([{}]), deque(), _SubDeque()]


# targets of an emit: the packed depth samples take a tuple of (ri, qi) tuples whose qi is an
# int naming an exact deque of the job's queues; anything else goes the slow path
TARGETS = [None, (), ((0, 0),), ((1, 0), (2, 1)), ((3, 2),), ((0, 5),), [(0, 0)],
           ((0, True),), ((0,),), ((0, -1),)]


def _packable(targets: Any) -> bool:
    return type(targets) is tuple and all(
        type(tg) is tuple and len(tg) == 2 and type(tg[1]) is int and 0 <= tg[1] < 2
        for tg in targets)


def _core(cls: type, tok: int, seq: int, half: int) -> Any:
    core = cls()
    core.buf, core.nidx, core.queues = bytearray(), dict(NAMES), _queues()
    core.tok, core.seq, core.half, core.cap = tok, seq, half, 2 * half
    return core


def _unpack(buf: bytes | bytearray) -> list[list[Any]]:
    return [list(r) for r in _wire.REC.iter_unpack(bytes(buf))]


# One call: (method, ri, aseq, name or nseq or attempt, payload index, ...).
names = st.sampled_from(["out", "done", "é", "in", "over", "unknown"])
calls = st.lists(
    st.one_of(
        st.tuples(st.just("emitted"), st.integers(0, 40), st.integers(0, 10**9), names,
                  st.integers(0, 3), st.sampled_from(range(len(TARGETS)))),
        st.tuples(st.just("pair"), st.integers(-3, (1 << 16) + 3), st.integers(0, 10**9),
                  st.integers(0, 10**9), st.integers(0, 3)),
        st.tuples(st.just("started1"), st.integers(0, 40), st.integers(0, 10**9), names,
                  st.integers(0, 3), st.integers(-1, 258)),
        st.tuples(st.just("finished1"), st.integers(0, 40), st.integers(0, 10**9),
                  st.integers(-1, 258), st.floats(0, 1e6)),
        st.tuples(st.just("mark"), st.integers(0, 1 << 62)),
    ),
    max_size=80,
)


@given(calls=calls, tok=st.one_of(st.integers(1, 1 << 30), st.just(_wire.TOK_MAX),
                                  st.just(_wire.TOK_MAX + 1)),
       seq=st.integers(0, 200), half=st.integers(0, 60).map(lambda r: r * SIZE))
@settings(max_examples=200, deadline=None)
def test_both_cores_queue_the_same_records(
    calls: list[tuple[Any, ...]], tok: int, seq: int, half: int
) -> None:
    payloads = [{"i": i} for i in range(4)]
    runs = []
    for cls in CORES:
        core = _core(cls, tok, seq, half)
        results: list[Any] = []
        before = time.perf_counter()
        for call in calls:
            if call[0] == "emitted":
                _, ri, aseq, event, p, tg = call
                if TARGETS[tg] is None:
                    results.append(core.emitted_fast(ri, aseq, event, payloads[p]))
                else:
                    results.append(core.emitted_fast(ri, aseq, event, payloads[p],
                                                     TARGETS[tg]))
            elif call[0] == "pair":
                _, ri, aseq, nseq, p = call
                results.append(core.pair(ri, 1.5, 0.5, aseq, nseq, payloads[p]))
            elif call[0] == "started1":
                _, ri, aseq, slot, p, attempt = call
                results.append(core.started1(ri, aseq, attempt, slot, payloads[p], 2.5))
            elif call[0] == "finished1":
                _, ri, aseq, attempt, duration = call
                results.append(core.finished1(ri, aseq, attempt, 3.5, duration))
            else:
                results.append(core.mark(call[1]))
        after = time.perf_counter()
        recs = _unpack(core.buf)
        assert len(core.buf) == len(recs) * SIZE
        # (marks are not bounded by the core: the caller checks the bound first)
        nmarks = sum(1 for r in recs if r[0] == _wire.K_OBJ)
        # (an emitted record under the bound may be followed by its depth samples)
        assert len(recs) - nmarks <= max(half, 0) // SIZE + 1 + 2
        for r in recs:
            # their time is read from the clock of time.perf_counter
            if r[0] in (_wire.K_EMITTED, _wire.K_DEPTH):
                assert before <= r[5] <= after
                r[5] = None
        runs.append((results, recs, core.seq))
    assert all(run == runs[0] for run in runs)
    results, recs, end = runs[0]
    # what the records say: each record counts one number, a pair two, a refused call none
    # (a None from emitted_fast is a queued record, an int the number it counted for the
    # slow path); only names with an index up to NAME_MAX and tokens up to TOK_MAX are packed
    expect = seq
    queued = iter(recs)
    for call, result in zip(calls, results, strict=True):
        kind = call[0]
        if kind == "emitted":
            expect += 1
            assert result is None or result == expect
            targets = TARGETS[call[5]]
            if result is None:
                r = next(queued)
                assert r[0] == _wire.K_EMITTED and r[4] == expect and r[2] == NAMES[call[3]]
                assert r[2] <= _wire.NAME_MAX and tok <= _wire.TOK_MAX
                if not expect % _DEPTH_EVERY:  # a depth sample was due: one per target
                    assert _packable(targets)
                    for _, qi in targets:
                        expect += 1
                        r = next(queued)
                        assert r[:5] == [_wire.K_DEPTH, 0, 0, tok, expect]
                        assert r[6:] == [0.0, (1, 0)[qi] + 1, qi, 0]
        elif kind == "mark":
            assert result is None
            assert next(queued)[9] == call[1]
        elif result:
            expect += 2 if kind == "pair" else 1
            r = next(queued)
            assert r[4] == expect and r[3] == tok <= _wire.TOK_MAX
            if kind == "started1":
                assert r[2] == NAMES[call[3]] <= _wire.NAME_MAX and 0 <= call[5] <= 255
        else:
            assert result is False
    assert next(queued, None) is None
    assert end == expect


@pytest.mark.parametrize("cls", CORES)
def test_records_carry_the_wire_layout(cls: type) -> None:
    core = _core(cls, tok=7, seq=0, half=1000)
    payload = {"x": 1}
    assert core.emitted_fast(3, 41, "done", payload) is None
    assert core.pair(2, 9.0, 8.5, 41, 42, payload) is True
    assert core.started1(4, 43, 2, "é", payload, 9.5) is True
    assert core.finished1(4, 43, 2, 9.75, 0.25) is True
    assert core.mark(12345) is None
    assert len(core.buf) == 5 * SIZE
    (k, att, nm, tok, seq, t, t2, aseq, x, pid), *rest = _unpack(core.buf)
    assert (k, att, nm, tok, seq, t2, aseq, x, pid) == (
        _wire.K_EMITTED, 0, 1, 7, 1, 0.0, 41, 3, id(payload))
    assert isinstance(t, float) and t > 0
    assert rest == [
        [_wire.K_PAIR, 0, 2, 7, 3, 9.0, 8.5, 41, 42, id(payload)],
        [_wire.K_STARTED, 2, 2, 7, 4, 9.5, 0.0, 43, 4, id(payload)],
        [_wire.K_FINISHED, 2, 0, 7, 5, 9.75, 0.25, 43, 4, 0],
        [_wire.K_OBJ, 0, 0, 0, 0, 0.0, 0.0, 0, 0, 12345],
    ]
    assert core.seq == 5


@pytest.mark.parametrize("cls", CORES)
def test_the_slow_path_gets_the_counted_number(cls: type) -> None:
    core = _core(cls, tok=1, seq=_DEPTH_EVERY - 1, half=1000)
    # a depth sample is due, of targets the packed form does not take
    assert core.emitted_fast(0, 0, "out", {}) == _DEPTH_EVERY
    assert core.emitted_fast(0, 0, "unknown", {}) == _DEPTH_EVERY + 1  # no name index
    core.seq = _DEPTH_EVERY - 1
    for targets in TARGETS:
        if not _packable(targets):
            assert core.emitted_fast(0, 0, "out", {}, targets) == _DEPTH_EVERY
            core.seq = _DEPTH_EVERY - 1
    assert core.buf == b""
    full = _core(cls, tok=1, seq=0, half=0)  # the queue is past half its bound
    assert full.emitted_fast(0, 0, "out", {}) == 1
    assert full.pair(0, 1.0, 0.0, 1, 2, {}) is False
    assert full.started1(0, 1, 0, "in", {}, 1.0) is False
    assert full.finished1(0, 1, 0, 1.0, 0.5) is False
    assert (full.buf, full.seq) == (b"", 1)


@pytest.mark.parametrize("cls", CORES)
def test_a_due_depth_sample_is_packed_after_its_emitted_record(cls: type) -> None:
    core = _core(cls, tok=5, seq=_DEPTH_EVERY - 2, half=1000)
    payload = {"x": 1}
    before = time.perf_counter()
    assert core.emitted_fast(3, 40, "out", payload, ((1, 0), (2, 1))) is None  # not due
    assert core.emitted_fast(3, 41, "out", payload, ((1, 0), (2, 1))) is None  # due
    after = time.perf_counter()
    e1, e2, d0, d1 = _unpack(core.buf)
    assert e1[:5] == [_wire.K_EMITTED, 0, 0, 5, _DEPTH_EVERY - 1]
    assert e2[:5] == [_wire.K_EMITTED, 0, 0, 5, _DEPTH_EVERY]
    assert before <= e2[5] <= after
    # queue 0 holds one payload, queue 1 none; the depth counts the payload being delivered
    assert d0 == [_wire.K_DEPTH, 0, 0, 5, _DEPTH_EVERY + 1, e2[5], 0.0, 2, 0, 0]
    assert d1 == [_wire.K_DEPTH, 0, 0, 5, _DEPTH_EVERY + 2, e2[5], 0.0, 1, 1, 0]
    assert core.seq == _DEPTH_EVERY + 2


def test_a_packed_depth_sample_decodes_to_the_slow_paths_entry() -> None:
    from routilux.tracking._materialize import decode

    rec = _wire.REC.pack(_wire.K_DEPTH, 0, 0, 9, 77, 1.25, 0.0, 3, 4, 0)
    assert decode((rec, ()), {}, []) == [(_wire.K_DEPTH, 9, 77, 1.25, 4, 3)]


@compiled
def test_the_compiled_core_checks_its_arguments() -> None:
    assert _crec is not None
    core = _core(_crec.TrackerCore, tok=1, seq=0, half=100)
    with pytest.raises(TypeError, match="4 or 5 arguments"):
        core.emitted_fast(0, 0, "out")
    with pytest.raises(TypeError, match="4 or 5 arguments"):
        core.emitted_fast(0, 0, "out", {}, (), None)
    with pytest.raises(TypeError, match="6 arguments"):
        core.pair(0, 1.0, 0.0, 1, 2)
    with pytest.raises(TypeError, match="6 arguments"):
        core.started1(0, 1, 0, "in", {})
    with pytest.raises(TypeError, match="5 arguments"):
        core.finished1(0, 1, 0, 1.0)
    with pytest.raises(TypeError):
        core.pair("0", 1.0, 0.0, 1, 2, {})
    with pytest.raises(TypeError):
        core.emitted_fast(0, "1", "out", {})
    with pytest.raises(TypeError):
        core.mark("1")
    core.buf = []
    with pytest.raises(TypeError, match="must be a bytearray"):
        core.emitted_fast(0, 0, "out", {})
    assert core.seq == 0  # a refused call counts nothing


@compiled
def test_a_tracker_in_a_reference_cycle_is_collected() -> None:
    assert _crec is not None

    class Tracker(_crec.TrackerCore):  # type: ignore[misc,name-defined]
        __slots__ = ("__weakref__", "other")

    a = Tracker()
    a.nidx = {"self": a}  # a cycle through a compiled field
    a.other = a  # and through a Python slot
    gone = weakref.ref(a)
    del a
    gc.collect()
    assert gone() is None


@pytest.mark.parametrize("take", TAKES)
def test_take_empties_the_queue_into_one_chunk(take: Any) -> None:
    cls = _crec.TrackerCore if take is not _hub._py_take and _crec is not None else (
        _PyTrackerCore)
    core = _core(cls, tok=3, seq=0, half=10**6)
    for i in range(500):
        core.finished1(1, i, 0, 1.0, 0.5)
    expect = bytes(core.buf)
    size = sys.getsizeof(core.buf)
    chunk = take(core.buf)
    assert chunk == expect and type(chunk) is bytes and len(chunk) == 500 * SIZE
    assert core.buf == b"" and take(core.buf) == b""
    if take is not _hub._py_take:
        # the queue keeps its memory: writers refill pages already touched
        assert sys.getsizeof(core.buf) == size
    core.finished1(1, 500, 0, 1.0, 0.5)  # and the queue is still a working queue
    assert [r[7] for r in _unpack(take(core.buf))] == [500]


@compiled
def test_take_needs_a_bytearray() -> None:
    assert _crec is not None
    with pytest.raises(TypeError, match="needs a bytearray"):
        _crec.take([1, 2])
    buf = bytearray(SIZE)
    view = memoryview(buf)
    with pytest.raises(BufferError):
        _crec.take(buf)  # exported: it cannot be emptied in place
    view.release()
    assert _crec.take(buf) == bytes(SIZE)


@compiled
def test_the_compiled_queue_grows_to_the_bound_and_no_further() -> None:
    assert _crec is not None
    core = _core(_crec.TrackerCore, tok=1, seq=0, half=1000 * SIZE)
    for i in range(2000):  # past half: the core refuses, nothing past the bound is written
        core.finished1(0, i, 0, 1.0, 0.5)
    assert len(core.buf) == 1000 * SIZE
    # doubling, capped at the bound (``cap``) plus a record
    assert sys.getsizeof(core.buf) <= core.cap + 2 * SIZE + 200


def _job(routines: int = 2) -> Any:
    plan = SimpleNamespace(
        flow_id="f", routine_ids=tuple(f"r{i}" for i in range(routines)),
        slot_names=tuple(("in",) for _ in range(routines)),
        queue_owner=tuple((i, 0) for i in range(routines)), caps=(10,) * routines,
        routes=({"out": ((1, 1),)}, *({} for _ in range(1, routines))),
        entry_targets=((0, 0),),
    )
    return SimpleNamespace(job_id="job-1", plan=plan, queues=[deque() for _ in range(routines)],
                           epoch=0.0)


def _script(hub: TrackingHub) -> tuple[InMemorySink, list[Any]]:
    """One job's records through every recorder method that packs, with a payload emitted on
    an event that no route names (so not in the name table the first time)."""
    sink = hub.add_sink(InMemorySink())
    jt = hub.job_tracker(_job())
    assert jt is not None
    payloads = [{"k": k} for k in range(4)]
    jt.job_started()
    a0 = Activation(0, {"in": [payloads[0]]}, None, 0, 1)
    jt.started(a0)
    jt.emitted(a0, "out", payloads[1], ((1, 1),))
    jt.emitted(a0, "side", payloads[2], ())
    jt.emitted(a0, "side", payloads[3], ())
    jt.finished(a0, 5.0, 0.5)
    a1 = Activation(1, {"in": [payloads[1]]}, None, 300, 2)  # an attempt past 255
    jt.started(a1)
    jt.finished_started(a1, 6.0, 0.25, Activation(1, {"in": [payloads[1]]}, None, 0, 3))
    if not jt.pair(1, 7.0, 6.5, 3, 4, payloads[1]):  # (as Job.run_task does)
        assert jt.tok > _wire.TOK_MAX
        jt.finished_started(Activation(1, {}, None, 0, 3), 7.0, 0.5,
                            Activation(1, {"in": [payloads[1]]}, None, 0, 4))
    jt.job_finished("completed", None, None)
    hub.flush(10)
    return sink, payloads


def test_records_that_do_not_fit_the_packed_form_are_the_same_records() -> None:
    """Job tokens past ``TOK_MAX`` take the object path for every record: the records (and
    their lineage) are exactly those of a job whose records were packed."""
    packed, big = TrackingHub(), TrackingHub()
    big._tokens = itertools.count(_wire.TOK_MAX + 1)
    try:
        a, _ = _script(packed)
        b, _ = _script(big)
        assert a.dicts() == b.dicts() and len(a.dicts()) == 12
        kinds = [d["kind"] for d in a.dicts()]
        assert kinds == ["job.started", "activation.started", "payload.emitted",
                         "payload.emitted", "payload.emitted", "activation.finished",
                         "activation.started", "activation.finished", "activation.started",
                         "activation.finished", "activation.started", "job.finished"]
        assert [d["seq"] for d in a.dicts()] == list(range(1, 13))
        side = [d for d in a.dicts() if d["kind"] == "payload.emitted"]
        assert [d["event"] for d in side] == ["out", "side", "side"]
        started = [d for d in a.dicts() if d["kind"] == "activation.started"]
        assert [d["attempt"] for d in started] == [0, 300, 0, 0]
        # every started record names the payload the emit at seq 3 produced
        # the emit at seq 3 reached one target: the first attempt-0 activation of r1 took it
        # (a retry's started record resolves nothing), the later one on the same object
        # finds it consumed
        assert [d["payloads"] for d in started] == [
            {"in": [None]}, {}, {"in": [3]}, {"in": [None]}]
    finally:
        packed.close()
        big.close()


def test_a_name_first_seen_on_the_slow_path_is_packed_next_time() -> None:
    hub = TrackingHub()
    try:
        _script(hub)
        assert "side" in hub._nidx and hub._names[hub._nidx["side"]] == "side"
        assert not hub._objs  # every rare record's entry was handed on
    finally:
        hub.close()


def test_tracking_end_to_end_with_the_pure_python_recorder() -> None:
    """The record-level tracking tests, once more in a process using the pure recorder."""
    here = Path(__file__).parent
    env = {**os.environ, "ROUTILUX_PURE_PYTHON": "1"}
    env.pop("ROUTILUX_REQUIRE_ACCEL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
         "-k", "TestStreamProperty or TestRecords or TestLineage or TestIsolation "
         "or test_the_compiled_recorder_is_used or test_both_cores",
         str(here / "test_tracking.py"), str(here / "test_tracking_recorder.py")],
        capture_output=True, text=True, env=env, cwd=here.parent.parent, timeout=110,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout



@pytest.mark.parametrize("cls", CORES)
def test_a_new_name_index_is_read_afresh(cls: type) -> None:
    """The compiled core remembers the last name it looked up; a tracker given another
    name index (not something the hub does, but a field anyone can set) must not reuse it."""
    core = _core(cls, tok=1, seq=0, half=1000)
    assert core.emitted_fast(0, 0, "out", {}) is None
    assert core.emitted_fast(0, 0, "out", {}) is None
    core.nidx = {"out": 7}
    assert core.emitted_fast(0, 0, "out", {}) is None
    core.nidx = {}
    assert core.emitted_fast(0, 0, "out", {}) == 4  # no index now: the slow path
    assert [r[2] for r in _unpack(core.buf)] == [0, 0, 7]


@pytest.mark.parametrize("cls", CORES)
def test_depth_samples_that_would_pass_the_bound_take_the_slow_path(cls: type) -> None:
    """All of an emit's samples fit the queue's bound or none is packed (the slow path then
    keeps or drops each record on its own)."""
    core = _core(cls, tok=1, seq=_DEPTH_EVERY - 1, half=SIZE)
    core.cap = 3 * SIZE  # room for the emitted record and two samples, not three
    three = ((0, 0), (1, 1), (2, 0))
    assert core.emitted_fast(0, 0, "out", {}, three) == _DEPTH_EVERY
    assert (core.buf, core.seq) == (b"", _DEPTH_EVERY)
    core.seq = _DEPTH_EVERY - 1
    assert core.emitted_fast(0, 0, "out", {}, three[:2]) is None
    assert [r[0] for r in _unpack(core.buf)] == [_wire.K_EMITTED, _wire.K_DEPTH, _wire.K_DEPTH]
    assert core.seq == _DEPTH_EVERY + 2


@pytest.mark.parametrize("cls", CORES)
def test_names_alternating_between_calls_are_each_looked_up(cls: type) -> None:
    core = _core(cls, tok=1, seq=0, half=1000)
    for _ in range(2):
        assert core.emitted_fast(0, 0, "out", {}) is None
        assert core.started1(0, 1, 0, "in", {}, 1.0) is True
        assert core.emitted_fast(0, 0, "done", {}) is None
        assert core.emitted_fast(0, 0, "unknown", {}) is not None
    assert [r[2] for r in _unpack(core.buf)] == [0, _wire.NAME_MAX, 1] * 2

