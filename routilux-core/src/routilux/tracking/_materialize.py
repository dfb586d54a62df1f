"""Turning raw records back into typed records, resolving payload lineage."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

import structlog

from ._wire import (
    K_CANCELLED,
    K_DEPTH,
    K_DROPPED,
    K_EMITTED,
    K_ENQUEUED,
    K_FAILED,
    K_FINISHED,
    K_JOB_FINISHED,
    K_JOB_STARTED,
    K_OBJ,
    K_PAIR,
    K_PAUSED,
    K_RESUMED,
    K_RETRIED,
    K_SKIPPED,
    K_STARTED,
    REC,
    JobInfo,
)
from .records import (
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
)

__all__ = ["Materializer", "decode"]

_log = structlog.get_logger("routilux.tracking")

_LINEAGE_LIMIT = 65_536
"""Payloads per job whose producer is remembered until consumed (oldest forgotten beyond)."""


def decode(
    chunk: tuple[bytes, Sequence[Any]], infos: dict[int, JobInfo], names: Sequence[str]
) -> list[tuple[Any, ...]]:
    """The raw records of one drained chunk (``(packed bytes, the K_OBJ entries in order)``,
    see ``_wire``) as entry tuples (the materializer's input); ``names`` is the hub's name
    table."""
    data, objs = chunk
    out: list[tuple[Any, ...]] = []
    append = out.append
    nobj = 0
    for k, att, nm, tok, seq, t, t2, aseq, x, pid in REC.iter_unpack(data):
        if k == K_PAIR:  # finished (t0 = t2, ri = nm) then started (nseq = x, payload pid)
            info = infos.get(tok)
            if info is not None:
                append((K_FINISHED, tok, seq - 1, t, nm, aseq, 0, t - t2))
                append((K_STARTED, tok, seq, t, nm, x, 0, (info.slot_names[nm][0], 1, pid)))
        elif k == K_EMITTED:
            append((K_EMITTED, tok, seq, t, x, aseq, names[nm], pid))
        elif k == K_STARTED:  # one payload on slot ``nm``
            append((K_STARTED, tok, seq, t, x, aseq, att, (names[nm], 1, pid)))
        elif k == K_FINISHED:
            append((K_FINISHED, tok, seq, t, x, aseq, att, t2))
        elif k == K_DEPTH:  # queue ``x`` held ``aseq`` payloads
            append((K_DEPTH, tok, seq, t, x, aseq))
        elif k == K_OBJ:
            append(objs[nobj])
            nobj += 1
    return out


class _JobLineage:
    __slots__ = ("inputs", "pending")

    def __init__(self) -> None:
        # id(payload) -> [payload id, (routine, activation) | None, deliveries left]
        self.pending: OrderedDict[int, list[Any]] = OrderedDict()
        # (routine index, activation seq) -> (counts, payload ids per slot, sources)
        self.inputs: dict[tuple[int, int], tuple[dict[str, int],
                                                 dict[str, tuple[int | None, ...]],
                                                 tuple[tuple[str, int], ...]]] = {}


def _split(flat: tuple[Any, ...]) -> list[tuple[str, list[int]]]:
    out: list[tuple[str, list[int]]] = []
    i, n = 0, len(flat)
    while i < n:
        count = flat[i + 1]
        out.append((flat[i], list(flat[i + 2 : i + 2 + count])))
        i += 2 + count
    return out


class Materializer:
    """Builds records from raw entries, in order, keeping lineage state per job.

    ``infos`` maps job tokens to :class:`JobInfo`; entries of unknown jobs are skipped.
    """

    def __init__(self, infos: dict[int, JobInfo], max_jobs: int = 1024) -> None:
        self.infos = infos
        self._jobs: OrderedDict[int, _JobLineage] = OrderedDict()
        self._max_jobs = max_jobs

    def _lineage(self, tok: int) -> _JobLineage:
        lin = self._jobs.get(tok)
        if lin is None:
            lin = self._jobs[tok] = _JobLineage()
            while len(self._jobs) > self._max_jobs:
                self._jobs.popitem(last=False)
        return lin

    def build(self, entries: Iterable[tuple[Any, ...]]) -> list[TrackingRecord]:
        out: list[TrackingRecord] = []
        append = out.append
        infos = self.infos
        for e in entries:
            info = infos.get(e[1])
            if info is None:
                continue
            try:
                rec = self._one(e, info)
            except Exception:  # a malformed entry must not stop the channel
                _log.exception("tracking.record_failed", kind=e[0])
                continue
            if rec is not None:
                append(rec)
        return out

    def _remember(self, tok: int, key: int, pid: int, producer: tuple[str, int] | None,
                  targets: int) -> None:
        pending = self._lineage(tok).pending
        pending[key] = [pid, producer, targets]
        pending.move_to_end(key)
        if len(pending) > _LINEAGE_LIMIT:
            pending.popitem(last=False)

    @staticmethod
    def _consume(lin: _JobLineage, key: int) -> tuple[int | None, tuple[str, int] | None]:
        entry = lin.pending.get(key)
        if entry is None:
            return None, None
        entry[2] -= 1
        if entry[2] <= 0:
            del lin.pending[key]
        return entry[0], entry[1]

    def _one(self, e: tuple[Any, ...], info: JobInfo) -> TrackingRecord | None:
        kind = e[0]
        tok = e[1]
        base = {"job_id": info.job_id, "flow": info.flow, "seq": e[2], "ts": e[3] + info.epoch}
        rids = info.routine_ids
        if kind == K_STARTED:
            ri, aseq, attempt = e[4], e[5], e[6]
            lin = self._lineage(tok)
            key = (ri, aseq)
            slots = _split(e[7])
            counts = {slot: len(ids) for slot, ids in slots}
            if attempt == 0:
                payloads: dict[str, tuple[int | None, ...]] = {}
                sources: list[tuple[str, int]] = []
                for slot, ids in slots:
                    pids: list[int | None] = []
                    for k in ids:
                        pid, src = self._consume(lin, k)
                        pids.append(pid)
                        if src is not None and src not in sources:
                            sources.append(src)
                    payloads[slot] = tuple(pids)
                lin.inputs[key] = (counts, payloads, tuple(sources))
                if len(lin.inputs) > _LINEAGE_LIMIT:
                    lin.inputs.pop(next(iter(lin.inputs)))
                return ActivationStarted(
                    **base, routine=rids[ri], activation=aseq, attempt=0, inputs=counts,
                    payloads=payloads, sources=tuple(sources),
                )
            known = lin.inputs.get(key)
            return ActivationStarted(
                **base, routine=rids[ri], activation=aseq, attempt=attempt, inputs=counts,
                payloads={}, sources=known[2] if known is not None else (),
            )
        if kind == K_FINISHED:
            ri, aseq = e[4], e[5]
            known = self._done(tok, ri, aseq)
            return ActivationFinished(
                **base, routine=rids[ri], activation=aseq, attempt=e[6],
                inputs=known[0] if known is not None else {}, duration=e[7],
            )
        if kind == K_EMITTED:
            ri, aseq = e[4], e[5]
            targets = info.routes[ri].get(e[6]) or ()
            self._remember(tok, e[7], e[2], (rids[ri], aseq), len(targets))
            names = info.queue_names
            return PayloadEmitted(
                **base, payload=e[2], routine=rids[ri], activation=aseq, event=e[6],
                targets=tuple(f"{names[qi][0]}.{names[qi][1]}" for _, qi in targets),
            )
        if kind == K_ENQUEUED:
            targets = info.entry_targets if e[6] < 0 else ((e[6], e[7]),)
            self._remember(tok, e[5], e[2], None, len(targets))
            names = info.queue_names
            return PayloadEnqueued(
                **base, payload=e[2], source=e[4],
                targets=tuple(f"{names[qi][0]}.{names[qi][1]}" for _, qi in targets),
            )
        if kind == K_DEPTH:
            qi = e[4]
            rid, slot = info.queue_names[qi]
            return QueueDepth(**base, routine=rid, slot=slot, depth=e[5], capacity=info.caps[qi])
        if kind in (K_FAILED, K_RETRIED, K_SKIPPED):
            ri, aseq = e[4], e[5]
            known = (self._lineage(tok).inputs.get((ri, aseq)) if kind == K_RETRIED
                     else self._done(tok, ri, aseq))
            counts = known[0] if known is not None else {
                slot: len(ids) for slot, ids in _split(e[11])
            }
            common = {
                "routine": rids[ri], "activation": aseq, "attempt": e[6], "inputs": counts,
                "duration": e[7], "error_type": e[8], "error": e[9],
            }
            if kind == K_RETRIED:
                return ActivationRetried(**base, **common, delay=e[10])
            if kind == K_SKIPPED:
                return ActivationSkipped(**base, **common)
            return ActivationFailed(**base, **common, stopped=e[10])
        if kind == K_DROPPED:
            key, di, qi, reason, event = e[4], e[5], e[6], e[7], e[8]
            pid = None
            if key is not None:
                pid, _ = self._consume(self._lineage(tok), key)
            return PayloadDropped(
                **base, reason=reason, routine=rids[di], payload=pid,
                slot=None if qi is None else info.queue_names[qi][1], event=event,
            )
        if kind == K_JOB_STARTED:
            return JobStarted(**base)
        if kind == K_JOB_FINISHED:
            self._jobs.pop(tok, None)
            t_start = e[8]
            return JobFinished(
                **base, status=e[4], duration=max(0.0, e[3] - t_start) if t_start else 0.0,
                error_type=e[5], error=e[6], error_routine=e[7],
            )
        if kind == K_PAUSED:
            return JobPaused(**base, reason=e[4])
        if kind == K_RESUMED:
            return JobResumed(**base)
        if kind == K_CANCELLED:
            return JobCancelled(**base)
        return None

    def _done(self, tok: int, ri: int, aseq: int) -> Any:
        lin = self._jobs.get(tok)
        return None if lin is None else lin.inputs.pop((ri, aseq), None)
