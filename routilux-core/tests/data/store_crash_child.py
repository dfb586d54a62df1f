"""Child process of the store crash tests (routilux-core/tests/test_store_crash.py).

    python store_crash_child.py start  DB LEDGER FLOW [SYNC]   # says "job <id>", runs it
    python store_crash_child.py resume DB LEDGER FLOW [SYNC]   # says "ready", recovers all

The tests call :func:`child_main` in processes forked from a multiprocessing forkserver that
imported Routilux once (a fresh interpreter per kill would spend seconds importing).

Every activation appends one JSON line ``{job, routine, attempt, key, ident}`` to LEDGER and
fsyncs it *before* its logic returns: the side-effect ledger the parent compares with the
store after killing this process (SIGKILL) at random points or at a labelled crash point
(``ROUTILUX_CRASH_AT``). ``ident`` is the logical identity of the activation (routine and
input values), so the parent can tell a re-run from a different activation.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from routilux import Flow, Routine, Runtime, all_slots_ready_policy, current_activation
from routilux.store import SqliteJobStore

ITEMS = 4
STEPS = 10
BRANCHES = ("a", "b", "c")
_PAUSE = float(os.environ.get("CRASH_CHILD_PAUSE", "0.001"))


class Ledger:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def add(self, ident: str) -> None:
        info = current_activation()
        assert info is not None
        line = json.dumps({"job": info.job_id, "routine": info.routine_id,
                           "attempt": info.attempt, "key": info.idempotency_key,
                           "ident": ident})
        os.write(self.fd, (line + "\n").encode())
        os.fsync(self.fd)


LEDGER: Ledger | None = None


def _ledger(ident: str) -> None:
    assert LEDGER is not None
    LEDGER.add(ident)
    time.sleep(_PAUSE)  # widen the window a random kill can hit


class Split(Routine):
    """Entry: emits ITEMS numbered values."""

    type_name = "crashtest.Split"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("in")
        self.add_event("out", ["v"])
        self.set_logic(self.run)

    def run(self, slot_data: dict[str, list[dict[str, Any]]], msg: Any, js: Any) -> None:
        n = slot_data["in"][0]["items"]
        _ledger(f"split:{n}")
        for i in range(n):
            self.emit("out", v=i + 1)


class Step(Routine):
    """Forwards ``v * 3 + k`` (k from config) for each payload."""

    type_name = "crashtest.Step"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("in")
        self.add_event("out", ["v"])
        self.set_logic(self.run)

    def run(self, slot_data: dict[str, list[dict[str, Any]]], msg: Any, js: Any) -> None:
        k = self.get_config("k", 0)
        for p in slot_data["in"]:
            rid = current_activation().routine_id  # type: ignore[union-attr]
            _ledger(f"{rid}:{p['v']}")
            self.emit("out", v=(p["v"] * 3 + k) % 1_000_003)


class Join(Routine):
    """Fan-in of the three branches (one payload from each): emits their sum."""

    type_name = "crashtest.Join"

    def __init__(self) -> None:
        super().__init__()
        for b in BRANCHES:
            self.add_slot(b)
        self.add_event("out", ["v"])
        self.set_activation_policy(all_slots_ready_policy())
        self.set_logic(self.run)

    def run(self, slot_data: dict[str, list[dict[str, Any]]], msg: Any, js: Any) -> None:
        vals = [slot_data[b][0]["v"] for b in BRANCHES]
        _ledger("join:" + ",".join(map(str, vals)))
        self.emit("out", v=sum(vals))


class Sink(Routine):
    """Collects values in its routine state (durable with each activation)."""

    type_name = "crashtest.Sink"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("in")
        self.set_logic(self.run)

    def run(self, slot_data: dict[str, list[dict[str, Any]]], msg: Any, js: Any) -> None:
        vals = [p["v"] for p in slot_data["in"]]
        _ledger("sink:" + ",".join(map(str, vals)))
        old = js.get_routine_state("sink", {}).get("got", [])
        js.update_routine_state("sink", {"got": old + vals})


def chain_flow() -> Flow:
    flow = Flow(flow_id="crash_chain")
    flow.add_routine(Split(), "split")
    prev = "split"
    for k in range(1, STEPS):
        step = Step()
        step.set_config(k=k)
        flow.add_routine(step, f"s{k}")
        flow.connect(prev, "out", f"s{k}", "in")
        prev = f"s{k}"
    flow.add_routine(Sink(), "sink")
    flow.connect(prev, "out", "sink", "in")
    return flow


def fan_flow() -> Flow:
    flow = Flow(flow_id="crash_fan")
    flow.add_routine(Split(), "split")
    flow.add_routine(Join(), "join")
    for i, b in enumerate(BRANCHES):
        step = Step()
        step.set_config(k=i + 1)
        flow.add_routine(step, b)
        flow.connect("split", "out", b, "in")
        flow.connect(b, "out", "join", b)
    flow.add_routine(Sink(), "sink")
    flow.connect("join", "out", "sink", "in")
    return flow


FLOWS = {"chain": chain_flow, "fan": fan_flow}


def child_main(mode: str, db: str, ledger: str, kind: str, sync: str = "FULL",
               crash_at: str | None = None, conn: Any = None, pipelined: bool = True,
               report_late: bool = False) -> int:
    """Run (``start``) or recover (``resume``) the job; report progress on ``conn``.

    ``report_late`` (start) says "job" only once the job completed, not as soon as ``exec``
    returned: the parent must then learn of a job that died at a crash point from the store,
    as it must whenever a busy machine holds the main thread back while the job's worker runs
    its first activations into the crash point.
    """
    global LEDGER

    def say(*msg: Any) -> None:
        if conn is not None:
            conn.send(msg)
        else:
            print(*msg, flush=True)

    if crash_at:
        os.environ["ROUTILUX_CRASH_AT"] = crash_at
    else:
        os.environ.pop("ROUTILUX_CRASH_AT", None)
    LEDGER = Ledger(ledger)
    store: Any
    if db.startswith("pg:"):  # pg:SCHEMA:DSN
        from routilux.store import PostgresJobStore

        _, schema, dsn = db.split(":", 2)
        store = PostgresJobStore(dsn, schema=schema, synchronous=sync, pipelined=pipelined)
    else:
        store = SqliteJobStore(db, synchronous=sync, pipelined=pipelined)
    rt = Runtime(thread_pool_size=1, store=store)
    if mode == "start":
        state = rt.exec(FLOWS[kind](), entry_params={"items": ITEMS})
        if not report_late:
            say("job", state.job_id)
        jobs = [state]
    else:
        say("ready")
        jobs = rt.recover()
    for js in jobs:
        rt.wait_job(js.job_id, 60)
        if js.status.value != "completed":
            say("failed", f"job {js.job_id} ended {js.status.value}: {js.error}")
            return 1
    if mode == "start" and report_late:
        say("job", jobs[0].job_id)
    rt.shutdown()
    store.close()
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(child_main(*sys.argv[1:6]))


def _warm() -> None:
    """Build the process-wide plugin manager in the forkserver (the children inherit it)."""
    from routilux.plugins import get_plugin_manager

    get_plugin_manager()


_warm()
