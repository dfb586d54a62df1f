"""CONTINUE: a failure is recorded and the job goes on.

    uv run python examples/error_strategies/continue_.py

``enrich`` looks up an optional detail for each record; a failed lookup is recorded in the
execution history (status ``failed``) and counted in the metrics, and every other record still
flows on. ``routine.set_as_optional()`` is the shortcut for this handler.
"""

from __future__ import annotations

from typing import ClassVar

from routilux import ErrorHandler, ErrorStrategy, Flow, Routine, Runtime


class Records(Routine):
    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("record", ["name"])

        def logic(slot_data, policy_message, job_state):
            for params in slot_data["input"]:
                for name in params["names"]:
                    self.emit("record", name=name)

        self.set_logic(logic)


class Enrich(Routine):
    """Adds a country to each record; the lookup fails for unknown names."""

    COUNTRIES: ClassVar[dict[str, str]] = {"ada": "UK", "grace": "US", "linus": "FI"}

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("enriched", ["name", "country"])

        def logic(slot_data, policy_message, job_state):
            (record,) = slot_data["input"]
            country = self.COUNTRIES[record["name"]]  # KeyError for unknown names
            self.emit("enriched", name=record["name"], country=country)

        self.set_logic(logic)
        self.set_error_handler(ErrorHandler(strategy=ErrorStrategy.CONTINUE))


class Store(Routine):
    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")

        def logic(slot_data, policy_message, job_state):
            for record in slot_data["input"]:
                job_state.shared_data.setdefault("stored", []).append(
                    f"{record['name']}:{record['country']}"
                )

        self.set_logic(logic)


def build_flow() -> Flow:
    flow = Flow(flow_id="records_continue")
    flow.add_routine(Records(), "records")
    flow.add_routine(Enrich(), "enrich")
    flow.add_routine(Store(), "store")
    flow.connect("records", "record", "enrich", "input")
    flow.connect("enrich", "enriched", "store", "input")
    return flow


def main() -> int:
    with Runtime(thread_pool_size=2) as runtime:
        job = runtime.exec(build_flow(), entry_params={"names": ["ada", "bob", "grace"]})
        runtime.wait_job(job.job_id, timeout=10)
        print(f"status: {job.status.value}")
        print(f"stored: {sorted(job.shared_data.get('stored', []))}")
        for record in job.history("enrich"):
            print(f"enrich attempt {record.attempt}: {record.status} {record.error or ''}".rstrip())
        metrics = runtime.get_job_metrics(job.job_id)["routines"]["enrich"]
        print(f"enrich errors: {metrics['errors']}")
        return 0 if job.status.value == "completed" else 1


if __name__ == "__main__":
    raise SystemExit(main())
