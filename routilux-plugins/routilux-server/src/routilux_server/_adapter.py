"""The one place the server calls the runtime.

Every runtime method that can block (it takes the runtime or a job lock, waits for workers, or
parses a document) runs on a worker thread through :func:`anyio.to_thread.run_sync`, so the
event loop never blocks. When the runtime grows native async methods (``aexec``,
``await_job``), only this module changes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import anyio
from routilux import Flow, JobState, Runtime
from routilux.errors import UnknownJobError
from routilux.monitoring.flow_registry import FlowRegistry

__all__ = ["RuntimeAdapter"]

T = TypeVar("T")


class RuntimeAdapter:
    """Async facade over a :class:`~routilux.Runtime` and its flow registry.

    Args:
        runtime: the runtime the server drives.
        wait_slots: how many ``wait`` calls may block threads at once (others queue), so
            long waits cannot starve the thread pool the other calls use.
    """

    def __init__(self, runtime: Runtime, *, wait_slots: int = 8) -> None:
        self.runtime = runtime
        self.flows: FlowRegistry = runtime.flow_registry
        self._wait_limiter = anyio.CapacityLimiter(wait_slots)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking callable on a worker thread."""
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    # -- jobs ------------------------------------------------------------------------------

    async def start(
        self, flow: str, entry_params: Mapping[str, Any] | None, *, keep_open: bool,
        timeout: float | None,
    ) -> JobState:
        return await self.call(self.runtime.exec, flow, entry_params, keep_open=keep_open,
                               timeout=timeout)

    async def job(self, job_id: str) -> JobState:
        """The job's state; ``UnknownJobError`` if the runtime does not hold it."""
        return await self.call(self._job, job_id)

    def _job(self, job_id: str) -> JobState:
        state = self.runtime.get_job(job_id)
        if state is None:
            raise UnknownJobError(
                f"no job {job_id!r} in this server's runtime (never started here, or finished "
                "and forgotten)",
                job_id=job_id,
            )
        return state

    async def jobs(self, status: str | None, flow: str | None) -> list[JobState]:
        return await self.call(self.runtime.list_jobs, status, flow)

    async def state_dict(self, job_id: str) -> dict[str, Any]:
        return await self.call(lambda: self._job(job_id).to_dict())

    async def post(self, job_id: str, routine: str, slot: str, data: dict[str, Any]) -> JobState:
        def run() -> JobState:
            state = self._job(job_id)
            # ``Runtime.post`` with a job id only checks the flow id and then uses the plan the
            # job runs, so a job can be fed even after its flow was deleted or replaced.
            return self.runtime.post(Flow(flow_id=state.flow_id), routine, slot, data,
                                     job_id=job_id)
        return await self.call(run)

    async def pause(self, job_id: str) -> None:
        await self.call(self.runtime.pause_job, job_id)

    async def resume(self, job_id: str) -> bool:
        return await self.call(self.runtime.resume_job, job_id)

    async def cancel(self, job_id: str) -> bool:
        return await self.call(self.runtime.cancel_job, job_id)

    async def complete(self, job_id: str) -> bool:
        return await self.call(self.runtime.complete_job, job_id)

    async def metrics(self, job_id: str) -> dict[str, Any]:
        return await self.call(self.runtime.get_job_metrics, job_id)

    async def wait(self, job_id: str, timeout: float) -> bool:
        return await anyio.to_thread.run_sync(
            functools.partial(self.runtime.wait_job, job_id, timeout),
            limiter=self._wait_limiter,
        )

    # -- flows -----------------------------------------------------------------------------

    async def flow(self, name: str) -> Flow:
        return await self.call(self.flows.get, name)

    async def flow_names(self) -> list[str]:
        return await self.call(self.flows.names)
