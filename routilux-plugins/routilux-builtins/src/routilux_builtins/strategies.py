"""The ``dead_letter`` error strategy: park the failed input, let the job go on."""

from __future__ import annotations

from routilux.error_handling import ErrorStrategy, Failure

from .sinks import record_dead_letter

__all__ = ["DeadLetterStrategy"]


class DeadLetterStrategy:
    """``ErrorHandler(strategy="dead_letter")``: record each payload of a failed activation in
    ``job_state.shared_data["dead_letters"]`` (bounded to ``max_items``, drops counted in
    ``dead_letters_dropped``) with the error as the reason, then CONTINUE.

    Combined with the handler's retry parameters nothing is retried: a failure is parked at
    once. A policy failure (no input) records one entry with an empty payload.
    """

    name = "dead_letter"

    def __init__(self, *, key: str = "dead_letters", max_items: int = 1000) -> None:
        self.key = key
        self.max_items = max_items

    def handle(self, failure: Failure) -> ErrorStrategy:
        reason = f"{type(failure.error).__name__}: {failure.error}"
        payloads = [p for items in failure.slot_data.values() for p in items] or [{}]
        for payload in payloads:
            record_dead_letter(
                failure.job_state, payload, reason, key=self.key, max_items=self.max_items,
                source=failure.routine_id,
            )
        return ErrorStrategy.CONTINUE
