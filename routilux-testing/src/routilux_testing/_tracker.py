"""The ``routilux_tracker`` fixture's object: tracking records read deterministically."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from routilux.tracking import InMemorySink, TrackingRecord

__all__ = ["Tracker"]


class Tracker:
    """An in-memory tracking sink attached to every runtime of the test, read so that two runs
    of the same deterministic job give equal results.

    * **Deterministic ids:** job ids (random per run) are replaced by ``"job-1"``, ``"job-2"``,
      ... in the order the jobs' first records arrived (``alias(job_id)`` gives the mapping).
    * **Deterministic clock:** clock-dependent fields (``ts``, ``duration``, ``delay``) are left
      out of :meth:`dicts`; the per-job ``seq`` orders the records instead.

    ``sink`` is the underlying :class:`~routilux.tracking.InMemorySink` for anything else
    (``sink.trace(job_id, payload)`` follows one payload).
    """

    def __init__(self, sink: InMemorySink) -> None:
        self.sink = sink
        self._aliases: dict[str, str] = {}

    def _refresh(self) -> list[TrackingRecord]:
        records = self.sink.records()
        for record in records:
            if record.job_id not in self._aliases:
                self._aliases[record.job_id] = f"job-{len(self._aliases) + 1}"
        return records

    def alias(self, job_id: str) -> str:
        """The deterministic name of ``job_id`` (``KeyError`` if it produced no record)."""
        self._refresh()
        return self._aliases[job_id]

    def records(self, job_id: str | None = None, kind: str | None = None) -> list[TrackingRecord]:
        """The raw records (real ids and timestamps), optionally of one job and/or kind."""
        self._refresh()
        return self.sink.records(job_id, kind, flush=False)

    def dicts(self, job_id: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        """Records as JSON dicts with deterministic job ids and no clock-dependent fields."""
        self._refresh()
        out = []
        for record in self.sink.records(job_id, kind, flush=False):
            data = record.to_dict(timing=False)
            data["job_id"] = self._aliases[record.job_id]
            out.append(data)
        return out

    def kinds(self, job_id: str | None = None) -> list[str]:
        """The record kinds of a job (or of all jobs), in order."""
        return [record.kind for record in self.records(job_id)]
