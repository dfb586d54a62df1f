"""OpenTelemetry spans for jobs and activations (``pip install routilux[otel]``).

One span per job (``routilux.job <flow>``) and one per activation attempt
(``routilux.activation <routine>``, a child of its job's span). An activation's span carries a
**link** to the span of every activation that produced one of its inputs, so a fan-in
activation links to all of its producers and a trace shows the data flow, not just the
nesting. Spans are created from tracking records on the hub's thread, with the records'
timestamps.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanContext, Status, StatusCode

from .records import (
    ActivationFailed,
    ActivationFinished,
    ActivationRetried,
    ActivationSkipped,
    ActivationStarted,
    JobFinished,
    JobPaused,
    JobResumed,
    JobStarted,
    TrackingRecord,
)

__all__ = ["OpenTelemetrySink"]

_NS = 1_000_000_000
_MAX_CONTEXTS = 65_536


def _ns(ts: float) -> int:
    return int(ts * _NS)


class _JobSpans:
    __slots__ = ("contexts", "open", "span")

    def __init__(self, span: Span | None) -> None:
        self.span = span
        self.open: dict[tuple[str, int], Span] = {}
        # (routine, activation) -> context of its latest span, for links from consumers
        self.contexts: OrderedDict[tuple[str, int], SpanContext] = OrderedDict()


class OpenTelemetrySink:
    """Turns tracking records into OpenTelemetry spans.

    Args:
        tracer_provider: where spans go (default: the global provider).
        tracer: a tracer to use instead (``tracer_provider`` is then ignored).
        max_jobs: jobs with open spans remembered at once (oldest ended beyond it).
    """

    name = "otel"

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        *,
        tracer: trace.Tracer | None = None,
        max_jobs: int = 10_000,
    ) -> None:
        self.tracer = tracer or trace.get_tracer("routilux", tracer_provider=tracer_provider)
        self.max_jobs = max_jobs
        self._jobs: OrderedDict[str, _JobSpans] = OrderedDict()

    def _job(self, rec: TrackingRecord) -> _JobSpans:
        spans = self._jobs.get(rec.job_id)
        if spans is None:
            spans = self._jobs[rec.job_id] = _JobSpans(None)
            self._trim()
        return spans

    def _trim(self) -> None:
        while len(self._jobs) > self.max_jobs:
            _, old = self._jobs.popitem(last=False)
            self._end_all(old, None)

    def write(self, records: Sequence[TrackingRecord]) -> None:
        for rec in records:
            if isinstance(rec, ActivationStarted):
                self._started(rec)
            elif isinstance(rec, ActivationFinished | ActivationFailed | ActivationRetried |
                            ActivationSkipped):
                self._ended(rec)
            elif isinstance(rec, JobStarted):
                self._job_started(rec)
            elif isinstance(rec, JobFinished):
                self._job_finished(rec)
            elif isinstance(rec, JobPaused | JobResumed):
                spans = self._jobs.get(rec.job_id)
                if spans is not None and spans.span is not None:
                    attrs = {"reason": rec.reason} if isinstance(rec, JobPaused) else {}
                    spans.span.add_event(rec.kind, attributes=attrs, timestamp=_ns(rec.ts))

    def _job_started(self, rec: JobStarted) -> None:
        span = self.tracer.start_span(
            f"routilux.job {rec.flow}",
            start_time=_ns(rec.ts),
            attributes={"routilux.job_id": rec.job_id, "routilux.flow": rec.flow},
        )
        old = self._jobs.pop(rec.job_id, None)
        if old is not None:
            self._end_all(old, None)
        self._jobs[rec.job_id] = _JobSpans(span)
        self._trim()

    def _started(self, rec: ActivationStarted) -> None:
        spans = self._job(rec)
        links = [
            Link(ctx, {"routilux.routine": src[0], "routilux.activation": src[1]})
            for src in rec.sources
            if (ctx := spans.contexts.get(src)) is not None
        ]
        parent = trace.set_span_in_context(spans.span) if spans.span is not None else None
        attributes: dict[str, Any] = {
            "routilux.job_id": rec.job_id,
            "routilux.flow": rec.flow,
            "routilux.routine": rec.routine,
            "routilux.activation": rec.activation,
            "routilux.attempt": rec.attempt,
            "routilux.inputs": sum(rec.inputs.values()),
        }
        span = self.tracer.start_span(
            f"routilux.activation {rec.routine}",
            context=parent,
            links=links,
            start_time=_ns(rec.ts),
            attributes=attributes,
        )
        key = (rec.routine, rec.activation)
        spans.open[key] = span
        spans.contexts[key] = span.get_span_context()
        spans.contexts.move_to_end(key)
        if len(spans.contexts) > _MAX_CONTEXTS:
            spans.contexts.popitem(last=False)

    def _ended(
        self,
        rec: ActivationFinished | ActivationFailed | ActivationRetried | ActivationSkipped,
    ) -> None:
        spans = self._jobs.get(rec.job_id)
        span = spans.open.pop((rec.routine, rec.activation), None) if spans else None
        if span is None:
            return
        span.set_attribute("routilux.outcome", rec.kind.split(".", 1)[1])
        if not isinstance(rec, ActivationFinished):
            span.set_attribute("error.type", rec.error_type)
            if isinstance(rec, ActivationFailed):
                span.set_status(Status(StatusCode.ERROR, rec.error))
        span.end(end_time=_ns(rec.ts))

    def _job_finished(self, rec: JobFinished) -> None:
        spans = self._jobs.pop(rec.job_id, None)
        if spans is None:
            return
        self._end_all(spans, rec)

    def _end_all(self, spans: _JobSpans, rec: JobFinished | None) -> None:
        end = _ns(rec.ts) if rec is not None else None
        for span in spans.open.values():  # abandoned (timed out, or the job stopped)
            span.set_attribute("routilux.outcome", "abandoned")
            span.end(end_time=end)
        spans.open.clear()
        if spans.span is None:
            return
        if rec is not None:
            spans.span.set_attribute("routilux.status", rec.status)
            if rec.error_type:
                spans.span.set_attribute("error.type", rec.error_type)
            if rec.status == "failed":
                spans.span.set_status(Status(StatusCode.ERROR, rec.error or rec.error_type))
        spans.span.end(end_time=end)

    def close(self) -> None:
        """End the spans of jobs still open (the runtime shut down while they were held)."""
        while self._jobs:
            _, spans = self._jobs.popitem(last=False)
            self._end_all(spans, None)
