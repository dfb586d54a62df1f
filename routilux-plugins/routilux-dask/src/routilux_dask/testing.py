"""Routines for testing and benchmarking the Dask executor.

They live in the installed package (not in a test module) because Dask worker processes must
import them to rebuild them by type name. Importing this module registers them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from routilux import Routine, current_activation

__all__ = ["HoldOnFirstAttempt", "Hop", "Sink", "Sleeper", "StateWriter"]


class StateWriter(Routine):
    """Touches every part of the job state logic may change, then emits what it saw.

    Per payload ``{"n": int}``: merges into its routine state (with its process id), appends
    to a list and bumps a nested counter in ``shared_data``, appends to ``shared_log``, sends
    an output and emits ``out`` with what it read (the previous ``seen`` of its state, the
    entry parameters and its activation facts).
    """

    type_name = "dask.testing.StateWriter"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("out", ["n", "seen_before", "entry", "pid", "attempt", "routine_id"])
        self.set_config(tag="w")
        self.set_logic(self._run)

    def _run(self, slot_data: dict[str, list[dict[str, Any]]], message: Any,
               job_state: Any) -> None:
        info = current_activation()
        assert info is not None
        rid = info.routine_id
        tag = self.get_config("tag")
        for payload in slot_data["input"]:
            n = payload["n"]
            before = (job_state.get_routine_state(rid, {}) or {}).get("seen", [])
            job_state.update_routine_state(
                rid, {"seen": [*before, n], "last": n, "pid": os.getpid()}
            )
            job_state.shared_data.setdefault(f"{tag}:items", []).append(n)
            counts = job_state.shared_data.setdefault("counts", {})
            counts[tag] = counts.get(tag, 0) + 1
            job_state.shared_log.append(f"{tag}:{n}")
            self.send_output("seen", n=n, routine=rid)
            self.emit("out", n=n, seen_before=before, entry=job_state.entry_params,
                      pid=os.getpid(), attempt=info.attempt, routine_id=rid)


class HoldOnFirstAttempt(Routine):
    """On its first attempt writes its process id to ``config["marker"]`` and waits there
    (for a test to kill the worker); on a retry it emits ``done``.

    The marker file is written once per job (exclusive create), so only one activation holds.
    """

    type_name = "dask.testing.HoldOnFirstAttempt"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("done", ["n", "attempt", "pid"])
        self.set_config(marker="", hold=30.0)
        self.set_logic(self._run)

    def _run(self, slot_data: dict[str, list[dict[str, Any]]], message: Any,
               job_state: Any) -> None:
        info = current_activation()
        assert info is not None
        marker = self.get_config("marker")
        for payload in slot_data["input"]:
            if info.attempt == 0 and marker and payload.get("hold"):
                try:
                    with Path(marker).open("x", encoding="utf-8") as fh:
                        fh.write(str(os.getpid()))
                except FileExistsError:
                    pass
                else:
                    time.sleep(float(self.get_config("hold")))
            self.emit("done", n=payload["n"], attempt=info.attempt, pid=os.getpid())


class Hop(Routine):
    """Forwards each payload's ``i`` (the benchmark chain's middle step)."""

    type_name = "dask.testing.Hop"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("in")
        self.add_event("out", ["i"])
        self.set_logic(self._run)

    def _run(self, slot_data: dict[str, list[dict[str, Any]]], message: Any,
               job_state: Any) -> None:
        for p in slot_data["in"]:
            self.emit("out", i=p["i"])


class Sink(Routine):
    """Records every ``i`` in ``shared_data["got"]`` and the (system-wide monotonic) time."""

    type_name = "dask.testing.Sink"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("in")
        self.set_logic(self._run)

    def _run(self, slot_data: dict[str, list[dict[str, Any]]], message: Any,
               job_state: Any) -> None:
        got = job_state.shared_data.setdefault("got", [])
        for p in slot_data["in"]:
            got.append(p["i"])
        job_state.shared_data["t"] = time.perf_counter()


class Sleeper(Routine):
    """Sleeps ``config["sleep"]`` seconds per activation, then records its input."""

    type_name = "dask.testing.Sleeper"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("in")
        self.set_config(sleep=0.05)
        self.set_logic(self._run)

    def _run(self, slot_data: dict[str, list[dict[str, Any]]], message: Any,
               job_state: Any) -> None:
        time.sleep(self.get_config("sleep"))
        job_state.shared_data["got"] = [p["i"] for p in slot_data["in"]]
        job_state.shared_data["t"] = time.perf_counter()
