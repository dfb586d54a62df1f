"""Context variables set for every activation, so ``Routine.emit`` needs no extra arguments."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from ._activation import Activation
    from ._job import Job
    from .routine import Routine

__all__ = ["ActivationContext", "ActivationInfo", "current_activation"]


class ActivationContext:
    """What the worker running an activation knows about it (mutable, one per task)."""

    __slots__ = ("activation", "job", "routine", "routine_index")

    def __init__(self, job: Job, routine_index: int, routine: Routine) -> None:
        self.job = job
        self.routine_index = routine_index
        self.routine = routine
        self.activation: Activation | None = None


CURRENT: ContextVar[ActivationContext | None] = ContextVar("routilux_activation", default=None)


@attrs.frozen(kw_only=True)
class ActivationInfo:
    """Facts about the running activation, for logic that needs them.

    ``idempotency_key`` is stable across retries of one activation's input within a job
    (it includes the attempt number separately), so side effects can be de-duplicated.
    """

    job_id: str
    flow_id: str
    routine_id: str
    attempt: int
    activation_seq: int

    @property
    def idempotency_key(self) -> str:
        return f"{self.job_id}:{self.routine_id}:{self.activation_seq}"


def current_activation() -> ActivationInfo | None:
    """Describe the activation running on this thread, or ``None`` outside any activation."""
    ctx = CURRENT.get()
    if ctx is None or ctx.activation is None:
        return None
    job = ctx.job
    act = ctx.activation
    return ActivationInfo(
        job_id=job.job_id,
        flow_id=job.plan.flow_id,
        routine_id=job.plan.routine_ids[ctx.routine_index],
        attempt=act.attempt,
        activation_seq=act.seq,
    )


