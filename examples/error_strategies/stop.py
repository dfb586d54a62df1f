"""STOP (the default): the first failure fails the job.

    uv run python examples/error_strategies/stop.py

``charge`` raises on the order it cannot handle. The job goes FAILED with the error, the routine
that raised and the traceback; orders after the failing one are never charged, and the job
refuses further work.
"""

from __future__ import annotations

from routilux import ErrorHandler, ErrorStrategy, Flow, Routine, Runtime
from routilux.errors import JobNotAcceptingWorkError


class Orders(Routine):
    """Emits one ``order`` per id in the entry parameter ``ids``."""

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("order", ["order_id"])

        def logic(slot_data, policy_message, job_state):
            for params in slot_data["input"]:
                for order_id in params["ids"]:
                    self.emit("order", order_id=order_id)

        self.set_logic(logic)


class Charge(Routine):
    """Charges one order per activation; order 13 is refused by the payment provider."""

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")

        def logic(slot_data, policy_message, job_state):
            (order,) = slot_data["input"]
            if order["order_id"] == 13:
                raise ValueError("payment refused for order 13")
            job_state.shared_data.setdefault("charged", []).append(order["order_id"])

        self.set_logic(logic)


def build_flow() -> Flow:
    flow = Flow(flow_id="orders_stop")
    flow.add_routine(Orders(), "orders")
    flow.add_routine(Charge(), "charge")
    flow.connect("orders", "order", "charge", "input")
    # STOP is also what applies when no handler is set at all.
    flow.set_error_handler(ErrorHandler(strategy=ErrorStrategy.STOP))
    return flow


def main() -> int:
    flow = build_flow()
    with Runtime(thread_pool_size=2) as runtime:
        job = runtime.exec(flow, entry_params={"ids": [11, 12, 13, 14, 15]})
        runtime.wait_job(job.job_id, timeout=10)
        print(f"status: {job.status.value}")
        print(f"charged: {job.shared_data.get('charged', [])}")
        print(f"error: {job.error}")
        print(f"error_routine: {job.error_routine}")
        last_line = (job.error_traceback or "").strip().splitlines()[-1]
        print(f"traceback ends with: {last_line}")
        try:
            runtime.post(flow, "charge", "input", {"order_id": 16}, job_id=job.job_id)
        except JobNotAcceptingWorkError as exc:
            print(f"post refused: {type(exc).__name__}")
        return 0 if job.status.value == "failed" else 1


if __name__ == "__main__":
    raise SystemExit(main())
