"""Rebuilding a stored job (flow, queued payloads, held activations, states) before it runs.

Everything is decoded and checked here, before the runtime starts anything, so a job that
cannot be rebuilt is refused whole (``StoreResumeError``) and stays in the store untouched.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from .._flow_document import flow_from_dict
from ..errors import (
    JobNotAcceptingWorkError,
    RoutiluxError,
    StoreResumeError,
    UnknownFlowError,
)
from ..job_state import JobState
from ..monitoring.flow_registry import FlowRegistry

if TYPE_CHECKING:
    from ..flow import Flow
    from ..runtime import Runtime
    from ._base import JobStore

__all__ = ["resume_job"]

_SOURCE_MESSAGE = {"policy": "source"}


def resume_job(
    runtime: Runtime, store: JobStore, job_id: str
) -> tuple[Flow, JobState, dict[int, int], int, str]:
    """``(flow, state, pids by id(payload), next pid, flow name)`` of a stored job."""
    snap = store.load_job(job_id)
    where = store.location
    if snap.status in ("completed", "failed", "cancelled"):
        raise JobNotAcceptingWorkError(
            f"job {job_id} in {where} is {snap.status}; only an unfinished job can be resumed",
            job_id=job_id,
            status=snap.status,
        )

    def refuse(what: str, exc: BaseException | None = None) -> StoreResumeError:
        err = StoreResumeError(
            f"cannot resume job {job_id} from {where}: {what}. Nothing was started; the job "
            "stays in the store as it was",
            job_id=job_id,
            path=where,
        )
        err.__cause__ = exc
        return err

    types = runtime.plugin_manager.registry
    if snap.flow_doc is not None:
        try:
            flow = flow_from_dict(json.loads(snap.flow_doc), types)
        except RoutiluxError as exc:
            raise refuse(
                f"its flow {snap.flow_id!r} cannot be rebuilt ({exc}); import the module or "
                "install the pack that registers the missing types, then resume again",
                exc,
            ) from None
        except ValueError as exc:
            raise refuse(f"its stored flow document is not valid JSON ({exc})", exc) from None
    else:
        registry = runtime._flow_registry or FlowRegistry.get_instance()
        try:
            flow = registry.get(snap.flow_name)
        except UnknownFlowError as exc:
            raise refuse(
                f"its flow {snap.flow_name!r} could not be stored as a document (a routine "
                "configured with set_logic) and no flow is registered under that name now; "
                "register the same flow under that name first",
                exc,
            ) from None
        if flow.flow_id != snap.flow_id:
            raise refuse(
                f"the flow registered as {snap.flow_name!r} has id {flow.flow_id!r}, but the "
                f"job ran flow {snap.flow_id!r}"
            )
    plan = flow.plan()
    codecs = types.codecs

    def decode(text: str | None, path: str) -> Any:
        if text is None:
            return None
        try:
            return codecs.decode(json.loads(text), path)
        except RoutiluxError as exc:
            raise refuse(f"{path}: {exc}", exc) from None
        except ValueError as exc:
            raise refuse(f"{path} is not valid JSON ({exc})", exc) from None

    def check(rid: str, slot: str | None, what: str) -> None:
        ri = plan.index_of.get(rid)
        if ri is None or (slot is not None and slot not in plan.slot_names[ri]):
            name = rid if slot is None else f"{rid}.{slot}"
            raise refuse(f"{what} refers to {name!r}, which flow {flow.flow_id!r} does not have")

    known: dict[int, int] = {}
    pending: dict[str, dict[str, list[dict[str, Any]]]] = {}
    held_input: dict[int, dict[str, list[dict[str, Any]]]] = {}
    for row in snap.payloads:
        check(row.routine_id, row.slot, f"queued payload {row.pid}")
        payload = decode(row.body, f"payload {row.pid} ({row.routine_id}.{row.slot})")
        if not isinstance(payload, dict):
            raise refuse(f"payload {row.pid} is not a dict")
        known[id(payload)] = row.pid
        if row.held_by is None:
            pending.setdefault(row.routine_id, {}).setdefault(row.slot, []).append(payload)
        else:
            held_input.setdefault(row.held_by, {}).setdefault(row.slot, []).append(payload)
    now = time.time()
    in_flight: list[dict[str, Any]] = []
    held_routines = set()
    for h in snap.held:
        check(h.routine_id, None, f"held activation {h.seq}")
        held_routines.add(h.routine_id)
        in_flight.append({
            "routine_id": h.routine_id, "slot_data": held_input.pop(h.seq, {}),
            "message": decode(h.message, f"activation {h.seq} message"),
            "attempt": h.attempt, "seq": h.seq, "retry_in": max(0.0, h.due - now),
        })
    seq = snap.seq
    for ri in plan.sources:
        rid = plan.routine_ids[ri]
        if rid not in snap.done_routines and rid not in held_routines:
            seq += 1  # the source's run was interrupted before it committed: run it again
            in_flight.append({"routine_id": rid, "slot_data": {},
                              "message": dict(_SOURCE_MESSAGE), "attempt": 0, "seq": seq,
                              "retry_in": 0.0})
    for seq_held, slots in held_input.items():  # input of a held activation that is gone
        for slot, payloads in slots.items():
            for p in payloads:
                rid = next(r.routine_id for r in snap.payloads if r.held_by == seq_held)
                pending.setdefault(rid, {}).setdefault(slot, []).append(p)
    states = {rid: decode(text, f"routine state {rid}") for rid, text in snap.states}
    policy_states = {rid: decode(t, f"policy state {rid}") for rid, t in snap.policy_states}
    for rid in list(states) + list(policy_states):
        check(rid, None, "stored state")
    entry = decode(snap.entry_params, "entry_params")
    state = JobState(
        flow_id=flow.flow_id, job_id=job_id, entry_params=entry, keep_open=snap.keep_open,
        routine_states=states, pending=pending, in_flight=in_flight,
        policy_states=policy_states, entry_delivered=True, activation_seq=seq,
    )
    return flow, state, known, snap.next_pid, snap.flow_name
