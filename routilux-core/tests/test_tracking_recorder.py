"""The tracking recorder's hot-path core: compiled (tracking/_crec.c) and pure Python.

Both queue exactly the same raw records (tracking/_wire.py), which the rest of tracking reads;
the compiled one is used wherever it was built. These tests compare the two call by call, check
the compiled one is really in use where it must be (CI sets ``ROUTILUX_REQUIRE_ACCEL=1``), and
run the end-to-end tracking tests once more with the pure-Python recorder.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
import weakref
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from routilux.tracking import _hub, _wire
from routilux.tracking._hub import _DEPTH_EVERY, _PyTrackerCore

try:
    from routilux.tracking import _crec
except ImportError:  # not built here; CI requires it (see test_the_compiled_recorder_is_used)
    _crec = None

compiled = pytest.mark.skipif(_crec is None, reason="the compiled recorder was not built here")
CORES = [_PyTrackerCore] + ([_crec.TrackerCore] if _crec is not None else [])


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
    assert (_crec.K_EMITTED, _crec.K_PAIR, _crec.PAIR_SHIFT, _crec.W, _crec.DEPTH_EVERY) == (
        _wire.K_EMITTED, _wire.K_PAIR, _wire.PAIR_SHIFT, _wire.W, _DEPTH_EVERY)


def _core(cls: type, tok: int, seq: int, half: int) -> Any:
    core = cls()
    core.buf, core.tok, core.seq, core.half, core.cap = [], tok, seq, half, 2 * half
    return core


# One call: ("emitted", ri, aseq, event, payload index) or ("pair", ri, aseq, nseq, payload index).
calls = st.lists(
    st.one_of(
        st.tuples(st.just("emitted"), st.integers(0, 40), st.integers(0, 10**9),
                  st.sampled_from(["out", "done", "é"]), st.integers(0, 3)),
        st.tuples(st.just("pair"), st.integers(-3, (1 << 16) + 3), st.integers(0, 10**9),
                  st.integers(0, 10**9), st.integers(0, 3)),
    ),
    max_size=80,
)


@given(calls=calls, tok=st.integers(1, 1 << 30), seq=st.integers(0, 200),
       half=st.integers(0, 60).map(lambda r: r * _wire.W))
@settings(max_examples=150, deadline=None)
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
                _, ri, aseq, event, p = call
                results.append(core.emitted_fast(ri, aseq, event, payloads[p]))
            else:
                _, ri, aseq, nseq, p = call
                results.append(core.pair(ri, 1.5, 0.5, aseq, nseq, payloads[p]))
        after = time.perf_counter()
        buf = core.buf
        assert len(buf) % _wire.W == 0 and len(buf) <= max(half, 0) + _wire.W
        for i in range(0, len(buf), _wire.W):
            if buf[i] == _wire.K_EMITTED:  # its time is read from time.perf_counter
                assert before <= buf[i + 3] <= after
                buf[i + 3] = None
        runs.append((results, buf, core.seq))
    assert all(run == runs[0] for run in runs)
    results, buf, end = runs[0]
    # what the records say: emitted ones count one number each, pairs two, and a refused pair
    # counts none; a None from emitted_fast is a queued record, an int the number it counted
    # for the slow path
    expect = seq
    for call, result in zip(calls, results, strict=True):
        if call[0] == "emitted":
            expect += 1
            assert result is None or result == expect
        elif result:
            expect += 2
    assert end == expect


@pytest.mark.parametrize("cls", CORES)
def test_records_carry_the_wire_layout(cls: type) -> None:
    core = _core(cls, tok=7, seq=0, half=1000)
    payload = {"x": 1}
    assert core.emitted_fast(3, 41, "out", payload) is None
    assert core.pair(2, 9.0, 8.5, 41, 42, payload) is True
    kind, tok, seq, t, ri, aseq, event, pid = core.buf[:8]
    assert (kind, tok, seq, ri, aseq, event, pid) == (
        _wire.K_EMITTED, 7, 1, 3, 41, "out", id(payload))
    assert isinstance(t, float)
    assert core.buf[8:] == [_wire.K_PAIR, 7 << _wire.PAIR_SHIFT | 2, 3, 9.0, 8.5, 41, 42,
                            id(payload)]
    assert core.seq == 3


@pytest.mark.parametrize("cls", CORES)
def test_the_slow_path_gets_the_counted_number(cls: type) -> None:
    core = _core(cls, tok=1, seq=_DEPTH_EVERY - 1, half=1000)
    assert core.emitted_fast(0, 0, "out", {}) == _DEPTH_EVERY  # a depth sample is due
    assert core.buf == []
    full = _core(cls, tok=1, seq=0, half=0)  # the queue is past half its bound
    assert full.emitted_fast(0, 0, "out", {}) == 1
    assert full.pair(0, 1.0, 0.0, 1, 2, {}) is False
    assert (full.buf, full.seq) == ([], 1)


@compiled
def test_the_compiled_core_checks_its_arguments() -> None:
    assert _crec is not None
    core = _core(_crec.TrackerCore, tok=1, seq=0, half=100)
    with pytest.raises(TypeError, match="4 arguments"):
        core.emitted_fast(0, 0, "out")
    with pytest.raises(TypeError, match="6 arguments"):
        core.pair(0, 1.0, 0.0, 1, 2)
    with pytest.raises(TypeError):
        core.pair("0", 1.0, 0.0, 1, 2, {})
    core.buf = ()
    with pytest.raises(TypeError, match="must be a list"):
        core.emitted_fast(0, 0, "out", {})
    assert core.seq == 0


@compiled
def test_a_tracker_in_a_reference_cycle_is_collected() -> None:
    assert _crec is not None

    class Tracker(_crec.TrackerCore):  # type: ignore[misc,name-defined]
        __slots__ = ("__weakref__", "other")

    a = Tracker()
    a.buf = [a]  # a cycle through the compiled field
    a.other = a  # and through a Python slot
    gone = weakref.ref(a)
    del a
    gc.collect()
    assert gone() is None


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


@pytest.mark.parametrize("take", [_hub._py_take] + ([_crec.take] if _crec is not None else []))
def test_take_empties_the_queue_into_one_chunk(take: Any) -> None:
    inner = ("in", 1, 123)
    buf: list[Any] = [5, 1, 2, 0.5, 3, 4, 0, None, 14, inner, None, None, None, None, None, None]
    expect = tuple(buf)
    chunk = take(buf)
    assert chunk == expect and type(chunk) is tuple
    assert buf == []
    assert take(buf) == ()
    if take is not _hub._py_take:
        # atoms and tuples of atoms cannot be in a cycle: handed over untracked, so the
        # collector never walks the chunk's items
        assert not gc.is_tracked(chunk)
        gc.collect()
        assert chunk[9] is inner and chunk[9] == ("in", 1, 123)


@compiled
def test_take_needs_a_list() -> None:
    assert _crec is not None
    with pytest.raises(TypeError, match="needs a list"):
        _crec.take((1, 2))


_TAKE_DURING_A_COLLECTION = """
import gc, sys
from routilux.tracking import _hub
take = _hub._py_take if sys.argv[1] == "py" else __import__("routilux.tracking._crec",
                                                             fromlist=["take"]).take
for pre in range(4):
    buf = list(range(800))
    class Bomb:
        def __del__(self):  # runs inside the collection that making the chunk starts
            buf.extend(range(1000, 81000))  # moves the list's array
    gc.collect()
    b = Bomb(); b.self = b; del b
    junk = [[] for _ in range(pre)]
    gc.set_threshold(1)
    try:
        chunk = take(buf)
    finally:
        gc.set_threshold(700)
    assert chunk == tuple(range(800)), (pre, chunk[:10])
    assert buf in ([], list(range(1000, 81000))), (pre, buf[:3])
print("ok")
"""


@pytest.mark.parametrize("which", ["py"] + (["c"] if _crec is not None else []))
def test_take_survives_a_collection_that_moves_the_queue(which: str) -> None:
    """Making the chunk can start a collection whose finalizers append to the queue (another
    thread could do the same meanwhile): the chunk is still exactly the items queued before,
    and nothing is read from the list's old array (in a subprocess: that would crash it)."""
    proc = subprocess.run([sys.executable, "-c", _TAKE_DURING_A_COLLECTION, which],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", (proc.returncode,
                                                                   proc.stderr[-2000:])
