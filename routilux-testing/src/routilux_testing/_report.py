"""Readable reports of a job, for assertion messages."""

from __future__ import annotations

import pprint
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from routilux import JobState, Runtime

__all__ = ["format_job_report"]

_WIDTH = 96
_MAX_VALUE = 600


def short(value: Any, limit: int = _MAX_VALUE) -> str:
    """``pprint`` of ``value``, cut to ``limit`` characters."""
    text = pprint.pformat(value, width=_WIDTH, sort_dicts=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _metrics(job_state: JobState, runtime: Runtime | None) -> dict[str, Any] | None:
    if runtime is None:
        return None
    try:
        return runtime.get_job_metrics(job_state.job_id)
    except LookupError:  # forgotten by the runtime (max_finished_jobs): use the history
        return None


def format_job_report(
    job_state: JobState, runtime: Runtime | None = None, *, history: int = 10
) -> str:
    """Describe a job for a failing test: status, error and traceback, per-routine counters,
    queues, unconsumed payloads and the tail of the execution history.

    Args:
        job_state: the job to describe.
        runtime: the runtime running it; with it the report includes the runtime's metrics
            (activations, errors, retries, skipped, timeouts, payloads in/out, queue depths,
            routines still running), without it per-routine counts come from the history.
        history: how many of the most recent history records to show.
    """
    lines = [
        f"job {job_state.job_id} of flow {job_state.flow_id!r}: {job_state.status.value}",
    ]
    if job_state.error:
        where = f" in routine {job_state.error_routine!r}" if job_state.error_routine else ""
        lines.append(f"error{where}: {job_state.error}")
    metrics = _metrics(job_state, runtime)
    if metrics is not None:
        lines.append("routines:")
        for rid, m in metrics["routines"].items():
            lines.append(
                f"  {rid}: activations={m['activations']} errors={m['errors']} "
                f"retries={m['retries']} skipped={m['skipped']} timeouts={m['timeouts']} "
                f"in={m['payloads_in']} out={m['payloads_out']}"
            )
        if metrics.get("running"):
            lines.append(f"running now: {short(metrics['running'])}")
        queued = {k: v for k, v in metrics.get("queue_depths", {}).items() if v}
        if queued:
            lines.append(f"queued: {short(queued)}")
    else:
        counts: Counter[tuple[str, str]] = Counter(
            (r.routine_id, r.status) for r in job_state.history()
        )
        if counts:
            lines.append("activations by routine and status (from the history):")
            for (rid, status), n in sorted(counts.items()):
                lines.append(f"  {rid}: {status}={n}")
    if job_state.unconsumed:
        lines.append(f"unconsumed: {short({k: len(v) for k, v in job_state.unconsumed.items()})}")
    if job_state.dropped:
        lines.append(f"dropped: {short(job_state.dropped)}")
    if job_state.discarded_emits:
        lines.append(f"discarded emits: {job_state.discarded_emits}")
    records = job_state.history()[-history:] if history > 0 else []
    if records:
        lines.append(f"history (last {len(records)}):")
        for r in records:
            err = f" {r.error}" if r.error else ""
            lines.append(
                f"  {r.routine_id} {r.status} attempt={r.attempt} {r.duration * 1000:.2f} ms{err}"
            )
    if job_state.error_traceback:
        lines.append("traceback:")
        lines.append(job_state.error_traceback.rstrip())
    return "\n".join(lines)
