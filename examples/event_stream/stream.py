"""Event stream: a job kept open for posts, with time windows and batched writes.

    uv run python examples/event_stream/stream.py

Sensor readings are posted, one by one, into a job that stays open (``runtime.post`` starts it
and keeps it open; later posts name its ``job_id``). ``window`` runs with
``time_interval_policy(1.0)``: at most once per second it takes every reading queued so far and
emits one summary (the first reading runs at once; the rest of a second is held until the
interval ends, by a timer, not by the next arrival). ``store`` runs with
``batch_size_policy(3)``: it writes summaries three at a time, and ``complete_job`` flushes the
last, partial batch.

The stream is a recording replayed against a ``ManualClock``: each burst of readings arrives
at the start of a second, then the clock moves one second on. Time is simulated, so every run
prints the same windows; pass ``clock=None`` to ``Runtime`` to follow the wall clock instead.
"""

from __future__ import annotations

from routilux import (
    Flow,
    ManualClock,
    Routine,
    Runtime,
    batch_size_policy,
    time_interval_policy,
)

# One burst of (sensor, value) readings per second.
RECORDING = [
    [("a", 20.5), ("b", 19.0), ("a", 20.9), ("c", 22.1)],
    [("b", 19.4), ("c", 22.0)],
    [("a", 21.6), ("a", 21.8), ("b", 19.9)],
    [("c", 22.6)],
    [("a", 22.0), ("b", 20.1), ("c", 22.9)],
    [("b", 20.3), ("c", 23.1)],
]


class Window(Routine):
    """Summarises every reading of one time window (count, sensors, mean value)."""

    type_name = "stream.Window"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("readings")
        self.add_event("summary", ["at", "count", "sensors", "mean"])
        self.set_logic(self._summarise)
        self.set_activation_policy(time_interval_policy(1.0))

    def _summarise(self, slot_data, policy_message, job_state):
        readings = slot_data["readings"]
        values = [r["value"] for r in readings]
        self.emit(
            "summary",
            at=policy_message["fired_at"],
            count=len(readings),
            sensors=sorted({r["sensor"] for r in readings}),
            mean=round(sum(values) / len(values), 2),
        )


class Store(Routine):
    """Writes window summaries in batches (here: into ``shared_data["stored"]``)."""

    type_name = "stream.Store"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("summaries")
        self.set_logic(self._store)
        self.set_activation_policy(batch_size_policy(3))

    def _store(self, slot_data, policy_message, job_state):
        batch = slot_data["summaries"]
        job_state.shared_data.setdefault("stored", []).append(
            {"windows": [s["at"] for s in batch], "partial": policy_message["partial"]}
        )
        job_state.shared_data.setdefault("windows", []).extend(batch)


def build_flow() -> Flow:
    flow = Flow(flow_id="event_stream")
    flow.add_routine(Window(), "window")
    flow.add_routine(Store(), "store")
    flow.connect("window", "summary", "store", "summaries")
    return flow


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def main() -> int:
    flow = build_flow()
    clock = ManualClock()
    with Runtime(thread_pool_size=4, clock=clock) as runtime:
        job_id = None
        for second, burst in enumerate(RECORDING):
            for sensor, value in burst:
                state = runtime.post(flow, "window", "readings",
                                     {"sensor": sensor, "value": value, "second": second},
                                     job_id=job_id)
                job_id = state.job_id
            clock.advance(1.0)  # the second is over: the held readings' window closes
            if not runtime.wait_job(job_id, timeout=10):  # drained: the job is IDLE again
                print(f"job {job_id} did not drain")
                return 1
            print(f"second {second}: posted {_n(len(burst), 'reading')}, job {state.status.value}")
        runtime.complete_job(job_id)  # no more posts: flush the last partial batch, complete
        runtime.wait_job(job_id, timeout=10)
    for w in state.shared_data["windows"]:
        print(f"window closed at t={w['at']:.0f}s: {_n(w['count'], 'reading')} from "
              f"{','.join(w['sensors'])}, mean {w['mean']}")
    for n, batch in enumerate(state.shared_data["stored"], start=1):
        note = " (partial, flushed by complete_job)" if batch["partial"] else ""
        print(f"stored batch {n}: windows at t={batch['windows']}{note}")
    print(f"job {state.status.value}")
    return 0 if state.status.value == "completed" else 1


if __name__ == "__main__":
    raise SystemExit(main())
