"""Crash-resume equivalence: interrupt a flow at every activation boundary, save, load in a
fresh runtime, resume, and compare with an uninterrupted run.

How the interruption works (public API only, the user's routine classes untouched): each run
builds a fresh flow with ``flow_factory`` and wraps every routine's activation policy in a
:class:`_Gate` sharing one counter. The gate asks the wrapped policy as usual and counts the
activations it grants; once ``k`` have been granted it grants no more, so the job drains
everything already started and stops at exactly the k-th boundary. The interrupted run is
started kept open (``keep_open=True``), so when it has drained it goes IDLE instead of
flushing and completing; ``runtime.pause_job`` then pauses it (nothing is running), and it is
saved with ``JobState.save``. The saved file is loaded in a new runtime, with a new
(unwrapped) flow from ``flow_factory``, as an ordinary (not kept-open) job and resumed with
``runtime.exec(name, job_state=...)``.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ._report import format_job_report, short

if TYPE_CHECKING:
    from routilux import Flow, JobState

__all__ = ["DEFAULT_COMPARE", "ResumeCheck", "assert_resume_equivalent"]

DEFAULT_COMPARE = ("status", "shared_data", "shared_log", "routine_states", "unconsumed")
"""Job-state fields compared between the uninterrupted and every resumed run."""


@attrs.frozen(kw_only=True)
class ResumeCheck:
    """What :func:`assert_resume_equivalent` checked.

    Attributes:
        activations: activations granted by activation policies in the uninterrupted run
            (the number of boundaries).
        boundaries: the boundaries ``k`` interrupted at (after k granted activations).
        reference: the final state of the uninterrupted run.
    """

    activations: int
    boundaries: tuple[int, ...]
    reference: JobState


class _Counter:
    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.granted = 0
        self.lock = threading.Lock()


def _gate_class() -> type[Any]:
    from routilux import ActivationPolicy

    class _Gate(ActivationPolicy):
        """Delegates to ``inner``; grants at most ``counter.limit`` activations in all."""

        def __init__(self, inner: ActivationPolicy, counter: _Counter) -> None:
            self.inner = inner
            self.counter = counter
            self.name = inner.name

        def params(self) -> dict[str, Any]:
            return self.inner.params()

        def take(self, view: Any, final: bool) -> Any:
            counter = self.counter
            with counter.lock:  # jobs run routines in parallel: one count for all
                if counter.limit is not None and counter.granted >= counter.limit:
                    return None
                res = self.inner.take(view, final)
                if res is not None:
                    counter.granted += 1
                return res

        def holds(self, view: Any) -> bool:
            return self.inner.holds(view)

    return _Gate


def _gated(flow_factory: Callable[[], Flow], limit: int | None, seen: list[Flow]) -> tuple[
    Flow, _Counter
]:
    from routilux import Flow, immediate_policy

    flow = flow_factory()
    if not isinstance(flow, Flow):
        raise TypeError(f"flow_factory must return a Flow, got {flow!r}")
    for earlier in seen:
        if earlier is flow or set(map(id, earlier.routines.values())) & set(
            map(id, flow.routines.values())
        ):
            raise ValueError(
                "flow_factory must build a new Flow with new routine objects on every call "
                "(each run gets its own)"
            )
    seen.append(flow)
    counter = _Counter(limit)
    gate = _gate_class()
    for routine in flow.routines.values():
        routine.set_activation_policy(gate(routine.activation_policy or immediate_policy(),
                                           counter))
    return flow, counter


def _runtime(pool: int) -> Any:
    from routilux import FlowRegistry, Runtime

    return Runtime(thread_pool_size=pool, flow_registry=FlowRegistry())


def _fields(state: JobState, compare: Sequence[str]) -> dict[str, Any]:
    out = {}
    for name in compare:
        value = getattr(state, name)
        out[name] = value.value if name == "status" else value
    return out


def assert_resume_equivalent(
    flow_factory: Callable[[], Flow],
    entry_params: Mapping[str, Any] | None = None,
    *,
    boundaries: Iterable[int] | None = None,
    compare: Sequence[str] = DEFAULT_COMPARE,
    unordered: Iterable[str] = ("shared_log",),
    thread_pool_size: int = 1,
    timeout: float = 10.0,
    directory: str | Path | None = None,
) -> ResumeCheck:
    """Check that interrupting a flow anywhere, saving and resuming it changes nothing.

    Runs the flow once uninterrupted, then for every activation boundary ``k`` (after k
    activations granted by activation policies: 0, 1, ..., n-1) runs it again, pauses the job
    at that boundary, saves it (:meth:`JobState.save`), loads it in a fresh runtime with a
    fresh flow and resumes it (``runtime.exec(name, job_state=...)``). Each resumed job must
    end with the same ``compare`` fields as the uninterrupted one; the first difference
    raises ``AssertionError`` naming the boundary, the field and both values.

    Args:
        flow_factory: builds a new flow (new routine objects) on every call; the flow's
            routine classes are not modified.
        entry_params: the entry payload of every run.
        boundaries: which ``k`` to interrupt at (default: all).
        compare: job-state fields compared (default: status, shared_data, shared_log,
            routine_states, unconsumed).
        unordered: fields among ``compare`` holding lists compared as multisets (same
            items, any order). Default ``("shared_log",)``: pausing a job ends the tasks of
            its routines, and resuming starts them again in flow order, so entries that
            *different* routines append interleave differently (as they do between two runs
            with several workers); nothing may be lost or duplicated. Pass ``()`` to compare
            the log in order.
        thread_pool_size: workers per runtime. The default, 1, runs activations one at a time,
            so a deterministic flow takes the same path in every run.
        timeout: seconds to wait for each run.
        directory: where the saved states are written (default: a temporary directory).

    Limits: sources (routines without slots, run once at start) and retries are not counted
    as boundaries (no policy grants them); flows whose result depends on real time
    (time-interval policies, retry delays) or on thread timing are not deterministic enough
    to compare; a breakpoint in the flow makes the reference run pause, which fails.

    Returns:
        a :class:`ResumeCheck` with the number of boundaries and the reference state.
    """
    from routilux import FlowRegistry, JobState, Runtime

    compare = tuple(compare)
    unordered = frozenset(unordered)
    entry = dict(entry_params or {})
    flows: list[Flow] = []

    # The reference: uninterrupted, counting the activations policies grant.
    flow, counter = _gated(flow_factory, None, flows)
    with _runtime(thread_pool_size) as rt:
        reference = rt.exec(flow, entry)
        if not rt.wait_job(reference.job_id, timeout=timeout) or not reference.is_terminal:
            report = format_job_report(reference, rt)
            if not reference.is_terminal:
                rt.cancel_job(reference.job_id)
            raise AssertionError(f"the uninterrupted run did not finish\n{report}")
    total = counter.granted
    expected = _fields(reference, compare)
    ks = tuple(range(total)) if boundaries is None else tuple(boundaries)

    tmp = None
    if directory is None:
        tmp = tempfile.TemporaryDirectory(prefix="routilux-resume-")
        directory = tmp.name
    try:
        for k in ks:
            path = Path(directory) / f"{reference.flow_id}-k{k}.json".replace("/", "_")
            # The interrupted run: k activations, drained, paused, saved.
            flow, counter = _gated(flow_factory, k, flows)
            with _runtime(thread_pool_size) as rt:
                state = rt.exec(flow, entry, keep_open=True)
                if not rt.wait_job(state.job_id, timeout=timeout):
                    report = format_job_report(state, rt)
                    rt.cancel_job(state.job_id)
                    raise AssertionError(
                        f"boundary {k}: the interrupted run did not reach the boundary\n{report}"
                    )
                if state.status.is_terminal:
                    raise AssertionError(
                        f"boundary {k}: the job ended ({state.status.value}) before the boundary"
                        f"\n{format_job_report(state, rt)}"
                    )
                if counter.granted != k:
                    raise AssertionError(
                        f"boundary {k}: the interrupted run made {counter.granted} activations "
                        f"where the uninterrupted run made at least {k + 1}; the flow is not "
                        "deterministic (pass thread_pool_size=1, avoid real-time policies)"
                    )
                rt.pause_job(state.job_id, timeout=timeout)
                state.save(path)
            # The resumed run: a fresh runtime, a fresh unwrapped flow, the saved state.
            loaded = JobState.load(path)
            loaded.keep_open = False  # resumed as the ordinary job the reference was
            fresh = flow_factory()
            registry = FlowRegistry()
            registry.register(fresh)
            with Runtime(thread_pool_size=thread_pool_size, flow_registry=registry) as rt2:
                resumed = rt2.exec(fresh.flow_id, job_state=loaded)
                if not rt2.wait_job(resumed.job_id, timeout=timeout):
                    report = format_job_report(resumed, rt2)
                    rt2.cancel_job(resumed.job_id)
                    raise AssertionError(
                        f"boundary {k}: the resumed job did not finish\n{report}"
                    )
                _check(k, expected, _fields(resumed, compare), unordered,
                       lambda rt=rt2, s=resumed: format_job_report(s, rt))
    finally:
        if tmp is not None:
            tmp.cleanup()
    return ResumeCheck(activations=total, boundaries=ks, reference=reference)


def _multiset(values: Any) -> list[str]:
    return sorted(repr(v) for v in values)


def _check(
    k: int, expected: dict[str, Any], got: dict[str, Any], unordered: frozenset[str],
    report: Callable[[], str],
) -> None:
    diffs = []
    for name, want in expected.items():
        have = got[name]
        same = _multiset(want) == _multiset(have) if name in unordered else want == have
        if not same:
            diffs.append(
                f"  {name}:\n    uninterrupted: {short(want)}\n    resumed:       {short(have)}"
            )
    if diffs:
        raise AssertionError(
            f"resuming after activation {k} (saved, loaded in a new runtime) gives a different "
            f"result than the uninterrupted run:\n" + "\n".join(diffs) + "\n" + report()
        )
