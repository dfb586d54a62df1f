"""Running a flow in a test, and assertions with readable failure messages."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ._report import format_job_report, short

if TYPE_CHECKING:
    from routilux import Flow, JobState, Runtime

__all__ = [
    "assert_completed",
    "assert_emitted",
    "assert_routine_state",
    "run_flow",
    "wait_until_quiet",
]

DEFAULT_TIMEOUT = 10.0
_POLL = 0.002


class EmitSource(Protocol):
    """Anything that can tell what was emitted on an event (a :class:`RoutineHarness`)."""

    def emitted(self, event: str) -> list[dict[str, Any]]: ...


def run_flow(
    flow: Flow | str,
    entry_params: Mapping[str, Any] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    runtime: Runtime | None = None,
) -> JobState:
    """Run ``flow`` to completion and return its job state.

    Raises ``AssertionError`` with a report (status, error and traceback, per-routine metrics,
    queues, history tail) when the job does not complete: it failed, was cancelled, paused
    (a breakpoint) or was still running after ``timeout`` seconds. A job that timed out is
    cancelled, so it does not outlive the test.

    Args:
        flow: a :class:`~routilux.Flow`, or a name registered in ``runtime``'s flow registry.
        entry_params: the entry payload (``exec``'s ``entry_params``).
        timeout: seconds to wait for the job.
        runtime: where to run it (``routilux_runtime`` in a test); without one a private
            runtime is created and shut down.
    """
    if runtime is None:
        if not _is_flow(flow):
            raise TypeError(
                f"run_flow({flow!r}) without runtime= needs a Flow object; pass the runtime "
                "whose flow registry holds that name"
            )
        from routilux import FlowRegistry, Runtime

        own = Runtime(thread_pool_size=4, flow_registry=FlowRegistry())
        try:
            return _run(own, flow, entry_params, timeout)
        finally:
            own.shutdown(wait=False, timeout=timeout)
    return _run(runtime, flow, entry_params, timeout)


def wait_for(
    predicate: Callable[[], bool], what: str = "the condition", timeout: float = DEFAULT_TIMEOUT
) -> bool:
    """Wait until ``predicate()`` is true; ``AssertionError`` naming ``what`` after ``timeout``.

    For states no public API blocks on (a retry armed, a routine holding data before the test
    advances a manual clock). It re-checks every couple of milliseconds on an ``Event`` wait,
    never sleeps a fixed time, and returns True so ``assert wait_for(...)`` reads naturally.
    """
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        tick.wait(0.002)
    return True


def wait_until_quiet(
    runtime: Runtime, job: JobState | str, timeout: float = DEFAULT_TIMEOUT
) -> JobState:
    """Wait until no activation of ``job`` is running or ready to run; return its state.

    Unlike ``runtime.wait_job`` this also returns while timers are armed (a time-interval
    policy waiting, a retry backing off): it is what a test waits for between two
    ``ManualClock.advance`` calls, since ``advance`` returns once due timers have fired but
    the activations they started may still be running. It also returns for a job that is
    idle, paused or finished. Raises ``AssertionError`` with the job's report after
    ``timeout`` seconds.
    """
    job_id = job if isinstance(job, str) else job.job_id
    deadline = time.monotonic() + timeout
    while True:
        # Blocks on the job's condition: returns at once when it is idle or has ended.
        if runtime.wait_job(job_id, timeout=_POLL):
            break
        if not runtime.get_job_metrics(job_id)["running"]:
            break  # nothing runs: what is left waits for a timer, or the job is paused
        if time.monotonic() >= deadline:
            state = runtime.get_job(job_id)
            report = format_job_report(state, runtime) if state is not None else ""
            raise AssertionError(f"job {job_id} was still running after {timeout:g} s\n{report}")
    state = runtime.get_job(job_id)
    if state is None:  # pragma: no cover - forgotten beyond max_finished_jobs meanwhile
        raise LookupError(f"job {job_id} is no longer held by the runtime")
    return state


def _is_flow(obj: Any) -> bool:
    from routilux import Flow

    return isinstance(obj, Flow)


def _run(
    runtime: Runtime, flow: Flow | str, entry_params: Mapping[str, Any] | None, timeout: float
) -> JobState:
    from routilux import JobStatus

    state = runtime.exec(flow, entry_params)
    finished = runtime.wait_job(state.job_id, timeout=timeout)
    if finished and state.status is JobStatus.COMPLETED:
        return state
    report = format_job_report(state, runtime)
    if not finished:
        runtime.cancel_job(state.job_id)
        raise AssertionError(
            f"job did not finish within {timeout:g} s (cancelled now)\n{report}"
        )
    raise AssertionError(f"job did not complete\n{report}")


def assert_completed(job_state: JobState, runtime: Runtime | None = None) -> None:
    """Fail with a report (error, traceback, history tail) unless the job COMPLETED.

    Pass the runtime to include its per-routine metrics in the report.
    """
    from routilux import JobStatus

    if job_state.status is not JobStatus.COMPLETED:
        raise AssertionError(
            f"expected the job to be completed, it is {job_state.status.value}\n"
            f"{format_job_report(job_state, runtime)}"
        )


def assert_routine_state(
    job_state: JobState, routine_id: str, expected_subset: Mapping[str, Any]
) -> None:
    """Fail unless ``routine_id``'s state holds every key of ``expected_subset`` with an equal
    value (other keys of the state are ignored). The message lists every mismatch."""
    state = job_state.get_routine_state(routine_id)
    if state is None:
        known = ", ".join(sorted(job_state.routine_states)) or "none"
        raise AssertionError(
            f"routine {routine_id!r} has no state in job {job_state.job_id} (routines with "
            f"state: {known})"
        )
    problems = []
    for key, want in expected_subset.items():
        if key not in state:
            problems.append(f"  {key!r}: missing (expected {short(want, 200)})")
        elif state[key] != want:
            problems.append(
                f"  {key!r}: expected {short(want, 200)}, got {short(state[key], 200)}"
            )
    if problems:
        raise AssertionError(
            f"state of routine {routine_id!r} differs:\n" + "\n".join(problems)
            + f"\nfull state: {short(state)}"
        )


def assert_emitted(
    source: EmitSource,
    event: str,
    *payloads: Mapping[str, Any],
    count: int | None = None,
    partial: bool = False,
) -> list[dict[str, Any]]:
    """Check what was emitted on ``event`` and return those payloads, oldest first.

    * no ``payloads`` and no ``count``: at least one payload was emitted;
    * ``payloads``: exactly these were emitted, in this order (with ``partial=True`` each
      emitted payload is compared only on the keys of its expected payload);
    * ``count``: exactly that many were emitted (``count=0``: nothing was).

    Args:
        source: a :class:`~routilux_testing.RoutineHarness` (or any object with an
            ``emitted(event)`` method).
        event: the event name.
    """
    emitted_fn = getattr(source, "emitted", None)
    if emitted_fn is None:
        raise TypeError(
            f"assert_emitted needs a RoutineHarness (or an object with emitted(event)), got "
            f"{type(source).__name__}; a JobState does not record emits: test the routine "
            "with RoutineHarness"
        )
    got = list(emitted_fn(event))
    problem = None
    if count is not None and len(got) != count:
        problem = f"expected {count} payload(s) on {event!r}, got {len(got)}"
    elif payloads:
        want = [dict(p) for p in payloads]
        seen = [{k: g.get(k, _MISSING) for k in w} for g, w in zip(got, want, strict=False)]
        compared = seen if partial else got
        if len(got) != len(want) or compared[: len(want)] != want:
            how = " (compared on the expected keys)" if partial else ""
            problem = (
                f"payloads on {event!r} differ{how}:\n  expected: {short(want)}\n"
                f"  got:      {short(got)}"
            )
    elif count is None and not got:
        problem = f"nothing was emitted on {event!r}"
    if problem is not None:
        raise AssertionError(problem + _context(source))
    return got


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


def _context(source: Any) -> str:
    """Other events seen, and the job's report when it did not run cleanly."""
    from routilux import JobStatus

    parts = []
    events = getattr(source, "events", None)
    if isinstance(events, Mapping):
        counts = {name: len(v) for name, v in events.items()}
        parts.append(f"\nemitted per event: {counts}")
    state = getattr(source, "job_state", None)
    if state is not None and state.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        parts.append("\n" + format_job_report(state, getattr(source, "runtime", None)))
    return "".join(parts)
