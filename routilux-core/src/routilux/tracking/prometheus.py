"""Prometheus metrics from tracking records (``pip install routilux[prometheus]``).

Counters and histograms on a ``prometheus_client`` ``CollectorRegistry`` (yours, or the
default one), labelled by flow and routine; expose them with ``prometheus_client``'s HTTP
server or ``generate_latest(registry)``. Metric names (with the default namespace
``routilux``):

* ``routilux_jobs_started_total{flow}``, ``routilux_jobs_finished_total{flow,status}``
* ``routilux_activations_total{flow,routine,outcome}`` (outcome: finished, failed, retried,
  skipped)
* ``routilux_activation_duration_seconds{flow,routine}`` (histogram)
* ``routilux_payloads_emitted_total{flow,routine,event}``,
  ``routilux_payloads_dropped_total{flow,routine,reason}``
* ``routilux_queue_depth{flow,routine,slot}`` (gauge, sampled)
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from .records import (
    ActivationFailed,
    ActivationFinished,
    ActivationRetried,
    ActivationSkipped,
    JobFinished,
    JobStarted,
    PayloadDropped,
    PayloadEmitted,
    QueueDepth,
    TrackingRecord,
)

__all__ = ["DEFAULT_BUCKETS", "PrometheusSink"]

DEFAULT_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
"""Histogram buckets (seconds) of activation durations: 100 µs to a minute."""


class PrometheusSink:
    """Updates Prometheus counters and histograms from tracking records.

    Args:
        registry: where the metrics are registered (default: ``prometheus_client.REGISTRY``).
            Use one registry per runtime: two sinks cannot register the same names on one.
        namespace: prefix of every metric name.
        buckets: histogram buckets of activation durations, in seconds.
    """

    name = "prometheus"

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "routilux",
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        reg = registry if registry is not None else REGISTRY
        self.registry = reg
        self.jobs_started = Counter(
            "jobs_started", "Jobs started.", ["flow"], namespace=namespace, registry=reg
        )
        self.jobs_finished = Counter(
            "jobs_finished", "Jobs ended, by final status.", ["flow", "status"],
            namespace=namespace, registry=reg,
        )
        self.activations = Counter(
            "activations", "Activations ended, by outcome.", ["flow", "routine", "outcome"],
            namespace=namespace, registry=reg,
        )
        self.duration = Histogram(
            "activation_duration_seconds", "Run time of activations.", ["flow", "routine"],
            namespace=namespace, registry=reg, buckets=tuple(buckets),
        )
        self.emitted = Counter(
            "payloads_emitted", "Payloads emitted.", ["flow", "routine", "event"],
            namespace=namespace, registry=reg,
        )
        self.dropped = Counter(
            "payloads_dropped", "Payloads lost (drop_oldest queues, emits after a stop).",
            ["flow", "routine", "reason"], namespace=namespace, registry=reg,
        )
        self.queue_depth = Gauge(
            "queue_depth", "Sampled depth of slot queues.", ["flow", "routine", "slot"],
            namespace=namespace, registry=reg,
        )

    def write(self, records: Sequence[TrackingRecord]) -> None:
        for rec in records:
            if isinstance(rec, ActivationFinished | ActivationFailed | ActivationRetried |
                          ActivationSkipped):
                outcome = rec.kind.split(".", 1)[1]
                self.activations.labels(rec.flow, rec.routine, outcome).inc()
                self.duration.labels(rec.flow, rec.routine).observe(rec.duration)
            elif isinstance(rec, PayloadEmitted):
                self.emitted.labels(rec.flow, rec.routine, rec.event).inc()
            elif isinstance(rec, QueueDepth):
                self.queue_depth.labels(rec.flow, rec.routine, rec.slot).set(rec.depth)
            elif isinstance(rec, PayloadDropped):
                self.dropped.labels(rec.flow, rec.routine, rec.reason).inc()
            elif isinstance(rec, JobStarted):
                self.jobs_started.labels(rec.flow).inc()
            elif isinstance(rec, JobFinished):
                self.jobs_finished.labels(rec.flow, rec.status).inc()
