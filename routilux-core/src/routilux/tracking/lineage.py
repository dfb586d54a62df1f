"""Following payloads and summarising a job from its records (objects or JSON dicts).

The same functions serve the Python API (records of an :class:`InMemorySink`) and files
(dicts from :func:`~routilux.tracking.read_jsonl`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

from .records import TrackingRecord

__all__ = ["PayloadTrace", "follow_payload", "summarize"]


class PayloadTrace(TypedDict):
    """Where one payload came from and where it went.

    ``origin``: the ``payload.emitted`` / ``payload.enqueued`` record that brought it in (None
    if not among the records). ``consumers``: one entry per activation that took it as input,
    with that activation's ``outcome`` (``finished``, ``failed``, ``skipped``, ``retried``
    or ``running``) and the ids of the payloads it emitted in turn (follow those the same
    way). ``dropped``: ``payload.dropped`` records about it. ``waiting``: targets that had not
    consumed it by the last record (queued, unconsumed, or the job ended first).
    """

    job_id: str
    payload: int
    origin: dict[str, Any] | None
    consumers: list[dict[str, Any]]
    dropped: list[dict[str, Any]]
    waiting: list[str]


_OUTCOMES = {
    "activation.finished": "finished",
    "activation.failed": "failed",
    "activation.skipped": "skipped",
    "activation.retried": "retried",
}


def _dicts(records: Iterable[TrackingRecord | Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [r.to_dict() if isinstance(r, TrackingRecord) else dict(r) for r in records]


def follow_payload(
    records: Iterable[TrackingRecord | Mapping[str, Any]], job_id: str, payload: int
) -> PayloadTrace:
    """Trace payload ``payload`` (the ``seq`` of the record that emitted or enqueued it)."""
    recs = [r for r in _dicts(records) if r.get("job_id") == job_id]
    origin = next(
        (r for r in recs if r["kind"] in ("payload.emitted", "payload.enqueued")
         and r.get("payload") == payload),
        None,
    )
    outcomes: dict[tuple[str, int], str] = {}
    emitted_by: dict[tuple[str, int], list[int]] = {}
    for o in recs:
        kind = o["kind"]
        if kind == "payload.emitted":
            emitted_by.setdefault((o["routine"], o["activation"]), []).append(o["payload"])
        elif kind in _OUTCOMES:
            key = (o["routine"], o["activation"])
            if kind != "activation.retried" or key not in outcomes:
                outcomes[key] = _OUTCOMES[kind]
    consumers: list[dict[str, Any]] = []
    taken: list[str] = []
    for r in recs:
        if r["kind"] != "activation.started" or r.get("attempt", 0) != 0:
            continue
        for slot, ids in (r.get("payloads") or {}).items():
            if payload in ids:
                key = (r["routine"], r["activation"])
                consumers.append({
                    "routine": r["routine"], "activation": r["activation"], "slot": slot,
                    "outcome": outcomes.get(key, "running"), "emitted": emitted_by.get(key, []),
                })
                taken.append(f"{r['routine']}.{slot}")
    dropped = [r for r in recs if r["kind"] == "payload.dropped" and r.get("payload") == payload]
    taken += [f"{r['routine']}.{r['slot']}" for r in dropped]
    waiting = list(origin["targets"]) if origin is not None else []
    for t in taken:
        if t in waiting:
            waiting.remove(t)
    return {
        "job_id": job_id, "payload": payload, "origin": origin, "consumers": consumers,
        "dropped": dropped, "waiting": waiting,
    }


def summarize(records: Iterable[TrackingRecord | Mapping[str, Any]]) -> dict[str, Any]:
    """Per job and routine counts and durations rebuilt from records (e.g. a JSONL file).

    Returns ``{job_id: {"flow", "status", "error_type", "routines": {routine: {"activations",
    "finished", "failed", "retried", "skipped", "payloads_out", "duration": {"total", "max",
    "avg"}}}}}``: enough to see which routine was slow, which failed and how often retries
    happened, from a file alone.
    """
    jobs: dict[str, dict[str, Any]] = {}
    for r in _dicts(records):
        job = jobs.setdefault(
            r["job_id"],
            {"flow": r.get("flow"), "status": None, "error_type": None, "routines": {}},
        )
        kind = r["kind"]
        if kind == "job.finished":
            job["status"] = r.get("status")
            job["error_type"] = r.get("error_type")
            continue
        rid = r.get("routine")
        if rid is None or kind in ("queue.depth", "payload.dropped", "payload.enqueued"):
            continue
        stats = job["routines"].setdefault(rid, {
            "activations": 0, "finished": 0, "failed": 0, "retried": 0, "skipped": 0,
            "payloads_out": 0, "duration": {"total": 0.0, "max": 0.0, "avg": 0.0},
        })
        if kind == "payload.emitted":
            stats["payloads_out"] += 1
            continue
        if kind == "activation.started":
            continue
        outcome = kind.split(".", 1)[1]
        if outcome in stats:
            stats[outcome] += 1
        stats["activations"] += 1
        d = float(r.get("duration") or 0.0)
        dur = stats["duration"]
        dur["total"] += d
        dur["max"] = max(dur["max"], d)
        dur["avg"] = dur["total"] / stats["activations"]
    return jobs
