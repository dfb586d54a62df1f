"""Routine classes for the store tests (registered type names, so their flows serialize).

Each records its calls in ``CALLS`` (a process-wide list the tests clear), so a test can tell
which activations ran in which runtime.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from routilux import Routine, current_activation

CALLS: list[tuple[str, Any, int]] = []
GATES: dict[str, threading.Event] = {}
FAIL_FIRST: set[str] = set()
STARTED = threading.Event()
FAILED = threading.Event()


def _note(value: Any) -> Any:
    info = current_activation()
    assert info is not None
    CALLS.append((info.routine_id, value, info.attempt))
    return info


class Emit(Routine):
    """Entry: emits ``n`` payloads ``{"v": i, "at": datetime}`` (a codec-encoded value)."""

    type_name = "storetest.Emit"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("in")
        self.add_event("out", ["v", "at"])
        self.set_logic(self.run)

    def run(self, slot_data: dict[str, list[dict[str, Any]]], msg: Any, js: Any) -> None:
        n = slot_data["in"][0].get("n", 1)
        _note(n)
        for i in range(n):
            self.emit("out", v=i, at=datetime(2026, 1, 1 + i % 28))


class Gate(Routine):
    """Forwards ``v + 1``; waits for ``GATES[routine_id]`` (if set) first; fails its first
    attempt if its id is in ``FAIL_FIRST``."""

    type_name = "storetest.Gate"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("in")
        self.add_event("out", ["v"])
        self.set_logic(self.run)

    def run(self, slot_data: dict[str, list[dict[str, Any]]], msg: Any, js: Any) -> None:
        values = [p["v"] for p in slot_data["in"]]
        info = _note(values)
        gate = GATES.get(info.routine_id)
        if gate is not None:
            STARTED.set()
            gate.wait(30)
        if info.routine_id in FAIL_FIRST and info.attempt == 0:
            FAILED.set()
            raise ConnectionError("first attempt fails")
        for v in values:
            self.emit("out", v=v + 1)


class Collect(Routine):
    """Appends every ``v`` to its routine state ``got`` (and the keys it saw to ``keys``)."""

    type_name = "storetest.Collect"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("in")
        self.set_logic(self.run)

    def run(self, slot_data: dict[str, list[dict[str, Any]]], msg: Any, js: Any) -> None:
        values = [p["v"] for p in slot_data["in"]]
        info = _note(values)
        st = js.get_routine_state(info.routine_id, {})
        js.update_routine_state(info.routine_id, {
            "got": st.get("got", []) + values,
            "keys": [*st.get("keys", []), info.idempotency_key],
        })


class AsyncGate(Routine):
    """``Gate`` with ``async def`` logic (runs on the runtime's event loop): forwards
    ``v + 1``, after an ``await``; fails its first attempt if its id is in ``FAIL_FIRST``."""

    type_name = "storetest.AsyncGate"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("in")
        self.add_event("out", ["v"])
        self.set_logic(self.run)

    async def run(self, slot_data: dict[str, list[dict[str, Any]]], msg: Any, js: Any) -> None:
        import asyncio

        values = [p["v"] for p in slot_data["in"]]
        info = _note(values)
        await asyncio.sleep(0)
        if info.routine_id in FAIL_FIRST and info.attempt == 0:
            FAILED.set()
            raise ConnectionError("first attempt fails")
        for v in values:
            self.emit("out", v=v + 1)
