"""Execution tracking: records, sinks and metrics (docs/tracking.md).

A runtime reports what its jobs do as typed :mod:`records <routilux.tracking.records>`
through its :class:`TrackingHub` (``runtime.tracking``) to the sinks attached to it. Sinks
are fed off the hot path, by one background thread, through a bounded queue. With no sink
attached, jobs are not tracked at all; ``Runtime.get_job_metrics`` and
``Runtime.get_flow_metrics`` work either way (they read the jobs' own counters).

``OpenTelemetrySink`` (``routilux.tracking.otel``) and ``PrometheusSink``
(``routilux.tracking.prometheus``) need the ``otel`` / ``prometheus`` extras; they are
imported only when asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._hub import ACCELERATED, DEFAULT_QUEUE_SIZE, JobTracker, TrackingHub, TrackingSink
from .lineage import PayloadTrace, follow_payload, summarize
from .metrics import ExecutionTracker, job_metrics
from .records import (
    RECORD_KINDS,
    ActivationFailed,
    ActivationFinished,
    ActivationRetried,
    ActivationSkipped,
    ActivationStarted,
    JobCancelled,
    JobFinished,
    JobPaused,
    JobResumed,
    JobStarted,
    PayloadDropped,
    PayloadEmitted,
    PayloadEnqueued,
    QueueDepth,
    TrackingRecord,
    record_from_dict,
)
from .sinks import InMemorySink, JsonLinesSink, build_sink, read_jsonl

if TYPE_CHECKING:
    from .otel import OpenTelemetrySink
    from .prometheus import PrometheusSink

__all__ = [
    "ACCELERATED",
    "DEFAULT_QUEUE_SIZE",
    "RECORD_KINDS",
    "ActivationFailed",
    "ActivationFinished",
    "ActivationRetried",
    "ActivationSkipped",
    "ActivationStarted",
    "ExecutionTracker",
    "InMemorySink",
    "JobCancelled",
    "JobFinished",
    "JobPaused",
    "JobResumed",
    "JobStarted",
    "JobTracker",
    "JsonLinesSink",
    "OpenTelemetrySink",
    "PayloadDropped",
    "PayloadEmitted",
    "PayloadEnqueued",
    "PayloadTrace",
    "PrometheusSink",
    "QueueDepth",
    "TrackingHub",
    "TrackingRecord",
    "TrackingSink",
    "build_sink",
    "follow_payload",
    "job_metrics",
    "read_jsonl",
    "record_from_dict",
    "summarize",
]


def __getattr__(name: str) -> Any:
    if name == "OpenTelemetrySink":
        from .otel import OpenTelemetrySink

        return OpenTelemetrySink
    if name == "PrometheusSink":
        from .prometheus import PrometheusSink

        return PrometheusSink
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
