"""A third-party pack as a user would write one: a routine, a policy, an error strategy."""

from __future__ import annotations

from typing import Any

from routilux import Routine
from routilux.activation_policies import ActivationPolicy, PolicyView
from routilux.error_handling import ErrorStrategy, Failure

__all__ = ["Echo", "EveryOtherPolicy", "Flaky", "SkipTwiceStrategy"]


class Echo(Routine):
    """Emits each input payload unchanged on ``output``."""

    type_name = "testpack.Echo"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("output", ["value"])

        def logic(
            slot_data: dict[str, list[dict[str, Any]]], policy_message: Any, job_state: Any
        ) -> None:
            for payload in slot_data["input"]:
                job_state.shared_log.append(payload.get("value"))
                self.emit("output", **payload)

        self.set_logic(logic)


class Flaky(Routine):
    """Raises ``ValueError`` for odd values, records even ones."""

    type_name = "testpack.Flaky"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")

        def logic(
            slot_data: dict[str, list[dict[str, Any]]], policy_message: Any, job_state: Any
        ) -> None:
            for payload in slot_data["input"]:
                if payload["value"] % 2:
                    raise ValueError(f"odd value {payload['value']}")
                job_state.shared_log.append(payload["value"])

        self.set_logic(logic)


class EveryOtherPolicy(ActivationPolicy):
    """Runs once two payloads are queued, consuming both (a pack's own policy)."""

    name = "testpack.pairs"

    def take(self, view: PolicyView, final: bool) -> Any:
        q = view.queues[0]
        if len(q) >= 2 or (final and q):
            return {view.slot_names[0]: view.take(0, 2)}, {"policy": self.name}
        return None


class SkipTwiceStrategy:
    """Skips the first two failures of a job, then stops it (state kept in the job)."""

    name = "testpack.skip_twice"

    def handle(self, failure: Failure) -> ErrorStrategy:
        seen = failure.job_state.shared_data.get("skip_twice", 0) + 1
        failure.job_state.shared_data["skip_twice"] = seen
        return ErrorStrategy.SKIP if seen <= 2 else ErrorStrategy.STOP
