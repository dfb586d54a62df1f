"""Sinks: routines that keep payloads in the job state, bounded.

Both write to ``job_state.shared_data[key]`` (a list, at most ``max_items`` long) and count
what did not fit in ``job_state.shared_data[key + "_dropped"]``: never a silent drop.
:func:`record_dead_letter` is the same bounded write for code outside a routine (an error
strategy, for instance).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ._base import BuiltinRoutine
from .policies import CollectPolicy

__all__ = ["DeadLetter", "ResultCollector", "append_bounded", "record_dead_letter"]

Payload = dict[str, Any]
SlotData = dict[str, list[Payload]]

_LOCK = threading.Lock()
"""Guards the read-modify-write of shared_data lists (several routines may share a key)."""

OVERFLOWS = ("drop_oldest", "drop_newest")


def append_bounded(
    shared_data: dict[str, Any], key: str, items: list[Any], *, max_items: int,
    overflow: str = "drop_oldest",
) -> int:
    """Append ``items`` to the list ``shared_data[key]``, keeping at most ``max_items``.

    ``overflow="drop_oldest"`` discards the oldest entries to make room, ``"drop_newest"``
    refuses the new ones. Either way the number discarded is added to
    ``shared_data[key + "_dropped"]`` (created as 0 on the first write). Returns that number.
    """
    with _LOCK:
        store = shared_data.get(key)
        if not isinstance(store, list):
            store = shared_data[key] = []
        counter = f"{key}_dropped"
        dropped = 0
        if overflow == "drop_newest":
            room = max(0, max_items - len(store))
            store.extend(items[:room])
            dropped = len(items) - min(room, len(items))
        else:
            store.extend(items)
            excess = len(store) - max_items
            if excess > 0:
                del store[:excess]
                dropped = excess
        shared_data[counter] = shared_data.get(counter, 0) + dropped
        return dropped


def record_dead_letter(
    job_state: Any, payload: Mapping[str, Any], reason: str, *, key: str = "dead_letters",
    max_items: int = 1000, source: str | None = None, overflow: str = "drop_oldest",
) -> dict[str, Any]:
    """Record ``payload`` as failed in ``job_state.shared_data[key]`` (bounded, drops counted).

    The record is ``{"payload", "reason", "source", "recorded_at"}`` (``recorded_at`` in Unix
    seconds). Returns it.
    """
    record = {
        "payload": dict(payload),
        "reason": reason,
        "source": source,
        "recorded_at": time.time(),
    }
    append_bounded(job_state.shared_data, key, [record], max_items=max_items, overflow=overflow)
    return record


class DeadLetter(BuiltinRoutine):
    """Record payloads that could not be processed, with the reason, in the job state.

    Connect the ``rejected``/``invalid``/``failed`` events of other routines here. The reason is
    read from the payload field ``reason_field`` (or, for ``SchemaValidator.invalid`` and
    ``DataTransformer.failed`` payloads, from their ``errors``/``error``), else ``"unspecified"``.
    Records are ``{"payload", "reason", "source", "recorded_at"}`` in
    ``shared_data[key]``; ``source`` is the ``source_field`` value when the payload has one.

    Slots: ``input``. Events: none (a sink).

    Config:
        key ("dead_letters"): the ``shared_data`` key.
        max_items (1000): records kept; beyond it ``overflow`` applies and drops are counted
            in ``shared_data[key + "_dropped"]``.
        overflow ("drop_oldest"): or ``"drop_newest"`` (keep the first failures).
        reason_field ("reason"), source_field ("source").
    """

    type_name = "builtins.DeadLetter"
    CONFIG_DEFAULTS = MappingProxyType({
        "key": "dead_letters", "max_items": 1000, "overflow": "drop_oldest",
        "reason_field": "reason", "source_field": "source",
    })

    def _declare(self) -> None:
        self.add_slot("input")
        self.set_logic(self._run)

    def _check_config(self, config: Mapping[str, Any]) -> None:
        for key in ("key", "reason_field", "source_field"):
            self._check_str(config, key)
        self._check_int(config, "max_items")
        self._check_choice(config, "overflow", OVERFLOWS)

    def _reason(self, payload: Payload) -> str:
        reason = payload.get(self.get_config("reason_field"))
        if reason is None and isinstance(payload.get("errors"), list):
            reason = "; ".join(
                f"{e.get('path', '$')}: {e.get('message')}" if isinstance(e, Mapping) else str(e)
                for e in payload["errors"]
            )
        if reason is None and payload.get("error") is not None:
            reason = payload["error"]
        return "unspecified" if reason is None else str(reason)

    def _run(self, slot_data: SlotData, policy_message: Any, job_state: Any) -> None:
        now = time.time()
        source_field = self.get_config("source_field")
        records = [
            {
                "payload": payload,
                "reason": self._reason(payload),
                "source": payload.get(source_field),
                "recorded_at": now,
            }
            for payload in slot_data["input"]
        ]
        append_bounded(job_state.shared_data, self.get_config("key"), records,
                       max_items=self.get_config("max_items"),
                       overflow=self.get_config("overflow"))


class ResultCollector(BuiltinRoutine):
    """Collect payloads into ``job_state.shared_data[key]``, bounded.

    Payloads queued together are collected in one activation. With ``emit_on_drain``, the
    routine runs once more when the job drains and emits the whole collection, so a flow can
    hand its results on (to a report, a file, another flow) without knowing how many came.

    Slots: ``input``. Events: ``collected`` (``items``: a copy of the collection, ``count``,
    ``dropped``), only with ``emit_on_drain``.

    Config:
        key ("results"): the ``shared_data`` key.
        max_items (10000): items kept; beyond it ``overflow`` applies and drops are counted
            in ``shared_data[key + "_dropped"]``.
        overflow ("drop_oldest"): or ``"drop_newest"`` (keep the first results).
        field (None): collect only this field of each payload instead of the whole payload.
        emit_on_drain (False): emit ``collected`` when the job drains (for jobs kept open:
            when ``complete_job`` is called).
    """

    type_name = "builtins.ResultCollector"
    CONFIG_DEFAULTS = MappingProxyType({
        "key": "results", "max_items": 10_000, "overflow": "drop_oldest", "field": None,
        "emit_on_drain": False,
    })

    def _declare(self) -> None:
        self.add_slot("input")
        self.add_event("collected", ["items", "count", "dropped"])
        self.set_logic(self._run)

    def _check_config(self, config: Mapping[str, Any]) -> None:
        self._check_str(config, "key")
        self._check_str(config, "field", optional=True)
        self._check_int(config, "max_items")
        self._check_choice(config, "overflow", OVERFLOWS)
        if not isinstance(config["emit_on_drain"], bool):
            self._bad("emit_on_drain", f"must be true or false, got {config['emit_on_drain']!r}")

    def _apply_config(self, config: Mapping[str, Any]) -> None:
        self.set_activation_policy(CollectPolicy(config["emit_on_drain"]))

    def _run(self, slot_data: SlotData, policy_message: Any, job_state: Any) -> None:
        key = self.get_config("key")
        payloads = slot_data.get("input", [])
        if payloads:
            field = self.get_config("field")
            items = [p.get(field) for p in payloads] if field else payloads
            append_bounded(job_state.shared_data, key, items,
                           max_items=self.get_config("max_items"),
                           overflow=self.get_config("overflow"))
        if policy_message.get("final"):
            with _LOCK:
                items = list(job_state.shared_data.get(key, []))
                dropped = job_state.shared_data.get(f"{key}_dropped", 0)
            self.emit("collected", items=items, count=len(items), dropped=dropped)
