"""Runtimes created for one test, and the checks made when the test ends."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from routilux import FlowRegistry, Runtime

__all__ = ["SUPERVISOR_OPTIONS", "RuntimeSupervisor"]

SUPERVISOR_OPTIONS = frozenset({"allow_running_jobs", "check_threads", "settle_timeout",
                                "join_timeout"})
"""Keywords of ``@pytest.mark.routilux(...)`` that configure the teardown checks; every other
keyword is passed to ``Runtime(...)``."""

_UNFINISHED = ("pending", "running")


class RuntimeSupervisor:
    """Builds the runtimes of one test and checks them when it ends.

    At :meth:`close`, every job still ``pending`` or ``running`` after ``settle_timeout``
    seconds is a failure (paused jobs and idle kept-open jobs are allowed: they hold no
    thread and do no work), every runtime is shut down, and every thread started since the
    supervisor was created that is still alive ``join_timeout`` seconds later is a failure.
    """

    def __init__(
        self,
        *,
        flow_registry: FlowRegistry,
        clock: Any = None,
        runtime_options: Mapping[str, Any] | None = None,
        allow_running_jobs: bool = False,
        check_threads: bool = True,
        settle_timeout: float = 1.0,
        join_timeout: float = 5.0,
    ) -> None:
        self.flow_registry = flow_registry
        self.clock = clock
        self.runtime_options = dict(runtime_options or {})
        self.allow_running_jobs = allow_running_jobs
        self.check_threads = check_threads
        self.settle_timeout = settle_timeout
        self.join_timeout = join_timeout
        self.runtimes: list[Runtime] = []
        self._threads_before = set(threading.enumerate())

    def create(self, **options: Any) -> Runtime:
        """A new runtime on this test's flow registry and clock; ``options``
        are ``Runtime`` keywords (they win over the marker's and the defaults)."""
        from routilux import Runtime

        kwargs: dict[str, Any] = {"thread_pool_size": 4, "flow_registry": self.flow_registry}
        if self.clock is not None:
            kwargs["clock"] = self.clock
        kwargs.update(self.runtime_options)
        kwargs.update(options)
        runtime = Runtime(**kwargs)
        self.runtimes.append(runtime)
        return runtime

    def close(self) -> list[str]:
        """Shut every runtime down and return the problems found (empty: all good)."""
        problems: list[str] = []
        deadline = time.monotonic() + self.settle_timeout
        for runtime in self.runtimes:
            if not self.allow_running_jobs:
                problems.extend(_unfinished_jobs(runtime, deadline))
            # Jobs still running are cancelled (their threads may then end); otherwise let
            # everything drain and join the workers.
            left = any(s.status.value in _UNFINISHED for s in runtime.list_jobs())
            runtime.shutdown(wait=not left, timeout=self.join_timeout)
        if self.check_threads:
            leaked = _leaked_threads(self._threads_before, self.join_timeout)
            if leaked:
                names = ", ".join(f"{t.name!r}{' (daemon)' if t.daemon else ''}" for t in leaked)
                problems.append(
                    f"{len(leaked)} thread(s) started during the test are still alive "
                    f"{self.join_timeout:g} s after it: {names}. A routine's logic may still "
                    "be running (a timed-out activation is abandoned, not stopped: let it "
                    "return), a Runtime created in the test was not shut down, or the test "
                    "started a thread it did not join"
                )
        return problems


def _unfinished_jobs(runtime: Runtime, deadline: float) -> list[str]:
    problems = []
    for state in runtime.list_jobs():
        if state.status.value not in _UNFINISHED:
            continue
        remaining = max(0.0, deadline - time.monotonic())
        try:
            runtime.wait_job(state.job_id, timeout=remaining)
        except LookupError:
            continue
        if state.status.value not in _UNFINISHED:
            continue
        try:
            metrics = runtime.get_job_metrics(state.job_id)
        except LookupError:  # pragma: no cover - finished and forgotten meanwhile
            continue
        running = ", ".join(metrics["running"]) or "none"
        queued = {k: v for k, v in metrics["queue_depths"].items() if v}
        problems.append(
            f"job {state.job_id} of flow {state.flow_id!r} is still {state.status.value} "
            f"when the test ends (routines running: {running}; queued: {queued or 'none'}). "
            "Wait for it (run_flow, runtime.wait_job), advance routilux_clock past the timers "
            "it waits for, or cancel it; mark the test with "
            "@pytest.mark.routilux(allow_running_jobs=True) if that is intended"
        )
    return problems


def _leaked_threads(before: set[threading.Thread], join_timeout: float) -> list[threading.Thread]:
    deadline = time.monotonic() + join_timeout
    current = threading.current_thread()
    leaked = []
    for thread in threading.enumerate():
        if thread in before or thread is current:
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            leaked.append(thread)
    return leaked
