"""RoutineHarness: run one routine, feed its slots, capture what it emits."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._report import format_job_report

if TYPE_CHECKING:
    from routilux import ErrorHandler, Flow, JobState, ManualClock, Routine, Runtime

__all__ = ["RoutineHarness"]


def _capture_class() -> type[Routine]:
    """The capturing routine class, defined on first use (routilux is imported lazily)."""
    global _Capture
    if _Capture is None:
        from routilux import Routine

        class Capture(Routine, register=False):
            """Appends every payload it receives to a list owned by the harness."""

            def __init__(self) -> None:
                super().__init__()
                self.add_slot("input")

        _Capture = Capture
    return _Capture


_Capture: type[Routine] | None = None


class RoutineHarness:
    """Run one routine without building a flow: feed its slots, read what it emitted.

    The harness builds a flow of its own: the routine under test (id ``routine_id``) plus one
    capturing routine per declared event, connected to it. It starts one job kept open for
    posts, so the routine keeps its activation policy, error handler, configuration, timers
    and routine state across feeds exactly as in a real flow. Nothing of the routine is
    patched: emits go through the runtime's routing.

    ``feed`` and ``advance`` return once the routine (and everything it triggered) has
    finished, apart from timers still waiting for the clock, so a test can assert right after
    them::

        harness = RoutineHarness(Filter.configured(when="n > `1`"))
        harness.feed("input", n=2).feed("input", n=0)
        assert harness.emitted("passed") == [{"n": 2}]
        harness.close()   # or use it as a context manager

    Args:
        routine: the routine under test (its policy, error handler and config are used).
        routine_id: its id in the harness flow.
        clock: a :class:`~routilux.ManualClock` (``routilux_clock``): needed by
            :meth:`advance`; the harness's own runtime runs on it.
        runtime: run in this runtime (``routilux_runtime``) instead of a private one; it is
            not shut down by :meth:`close`. Its clock must be ``clock``, if you pass one.
        error_handler: a flow-level error handler (the routine's own wins).
        entry_params: for a routine without slots (a source, which runs once at start): the
            job's entry parameters.
        thread_pool_size: workers of the private runtime.
        timeout: seconds ``feed``/``advance``/``finish`` wait before failing the test.
    """

    def __init__(
        self,
        routine: Routine,
        *,
        routine_id: str = "routine",
        clock: ManualClock | None = None,
        runtime: Runtime | None = None,
        error_handler: ErrorHandler | None = None,
        entry_params: Mapping[str, Any] | None = None,
        thread_pool_size: int = 2,
        timeout: float = 10.0,
    ) -> None:
        from routilux import Flow, FlowRegistry, Runtime

        self.routine = routine
        self.routine_id = routine_id
        self.clock = clock
        self.timeout = timeout
        self._lock = threading.Lock()
        self._events: dict[str, list[dict[str, Any]]] = {}
        flow = Flow(flow_id=f"harness:{type(routine).__qualname__}")
        flow.add_routine(routine, routine_id)
        capture_cls = _capture_class()
        for event in routine.events:
            sink: list[dict[str, Any]] = []
            self._events[event] = sink
            capture = capture_cls()
            capture.set_logic(self._capturer(sink))
            cid = f"_capture.{event}"
            flow.add_routine(capture, cid)
            flow.connect(routine_id, event, cid, "input")
        if error_handler is not None:
            flow.set_error_handler(error_handler)
        self.flow: Flow = flow
        self._owns_runtime = runtime is None
        if runtime is None:
            runtime = Runtime(
                thread_pool_size=thread_pool_size, flow_registry=FlowRegistry(), clock=clock
            )
        self.runtime: Runtime = runtime
        if routine.slots and entry_params is not None:
            raise TypeError(
                "entry_params is for routines without slots (sources); feed a slotted "
                "routine with harness.feed(slot, payload)"
            )
        try:
            if routine.slots:
                # Kept open with no entry parameters: nothing is delivered until a feed.
                self.job_state: JobState = runtime.exec(flow, keep_open=True)
            else:
                self.job_state = runtime.exec(flow, dict(entry_params or {}), keep_open=True)
            self.settle()
        except BaseException:
            self._shutdown()
            raise

    def _capturer(self, sink: list[dict[str, Any]]) -> Any:
        lock = self._lock

        def capture(slot_data: dict[str, list[dict[str, Any]]], message: Any, state: Any) -> None:
            with lock:
                sink.extend(slot_data.get("input", ()))

        return capture

    # -- driving -------------------------------------------------------------------------------

    @property
    def job_id(self) -> str:
        return self.job_state.job_id

    def feed(
        self, slot: str, payload: Mapping[str, Any] | None = None, /, **fields: Any
    ) -> RoutineHarness:
        """Deliver one payload (``payload``, or the keyword ``fields``) to ``slot`` and wait
        until everything it triggered has run. Returns the harness, so feeds chain."""
        if payload is not None and fields:
            raise TypeError("pass the payload as a dict or as keywords, not both")
        data = dict(payload) if payload is not None else fields
        self.runtime.post(self.flow, self.routine_id, slot, data, job_id=self.job_id)
        self.settle()
        return self

    def feed_many(self, slot: str, payloads: Iterable[Mapping[str, Any]]) -> RoutineHarness:
        """Deliver several payloads to ``slot`` one after another, then wait."""
        for payload in payloads:
            self.runtime.post(self.flow, self.routine_id, slot, dict(payload), job_id=self.job_id)
        self.settle()
        return self

    def advance(self, seconds: float) -> RoutineHarness:
        """Move the manual clock forward (timers that come due fire) and wait until what they
        triggered has run."""
        if self.clock is None:
            raise TypeError(
                "advance() needs a manual clock: RoutineHarness(routine, clock=ManualClock()) "
                "or clock=routilux_clock"
            )
        self.clock.advance(seconds)
        self.settle()
        return self

    def settle(self, timeout: float | None = None) -> None:
        """Wait until no activation of the job is queued or running (timers may be armed).

        Raises ``AssertionError`` with the job's report after ``timeout`` seconds.
        """
        from ._assertions import wait_until_quiet

        wait_until_quiet(self.runtime, self.job_id, self.timeout if timeout is None else timeout)

    def finish(self, timeout: float | None = None) -> JobState:
        """Complete the job: policies flush what they hold (a partial batch), then the job
        completes. Returns the final job state; raises ``AssertionError`` with a report if it
        does not finish in time."""
        from routilux import JobStatus

        limit = self.timeout if timeout is None else timeout
        if not self.job_state.status.is_terminal:
            if self.job_state.status is JobStatus.PAUSED:
                self.runtime.resume_job(self.job_id)
            self.runtime.complete_job(self.job_id)
        if not self.runtime.wait_job(self.job_id, timeout=limit):
            raise AssertionError(
                f"the job did not finish within {limit:g} s (timers still armed? advance the "
                f"clock first)\n{format_job_report(self.job_state, self.runtime)}"
            )
        return self.job_state

    # -- reading -------------------------------------------------------------------------------

    def emitted(self, event: str) -> list[dict[str, Any]]:
        """Payloads emitted on ``event`` so far, oldest first (a copy of the list)."""
        try:
            sink = self._events[event]
        except KeyError:
            known = ", ".join(self._events) or "none"
            raise KeyError(
                f"{type(self.routine).__qualname__} declares no event {event!r} (events: {known})"
            ) from None
        with self._lock:
            return list(sink)

    @property
    def events(self) -> dict[str, list[dict[str, Any]]]:
        """Every declared event and the payloads emitted on it so far."""
        with self._lock:
            return {name: list(sink) for name, sink in self._events.items()}

    def clear(self) -> None:
        """Forget what was captured so far."""
        with self._lock:
            for sink in self._events.values():
                sink.clear()

    @property
    def state(self) -> dict[str, Any]:
        """The routine's state in the job (``job_state.get_routine_state``), ``{}`` if none."""
        return self.job_state.get_routine_state(self.routine_id, {})

    @property
    def history(self) -> list[Any]:
        """The routine's execution records (activations, failures, retries, skips)."""
        return self.job_state.history(self.routine_id)

    def report(self) -> str:
        """The job's report (status, error, metrics, history)."""
        return format_job_report(self.job_state, self.runtime)

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Cancel the job if it is still open, and shut the private runtime down."""
        if not self.job_state.status.is_terminal:
            self.runtime.cancel_job(self.job_id)
        self._shutdown()

    def _shutdown(self) -> None:
        if self._owns_runtime:
            self.runtime.shutdown(wait=True, timeout=self.timeout)

    def __enter__(self) -> RoutineHarness:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        counts = {name: len(v) for name, v in self.events.items()}
        return f"<RoutineHarness {self.routine_id} {self.job_state.status.value} {counts}>"
