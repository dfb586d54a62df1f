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


_object_new = object.__new__


def new_context(job: Job, routine_index: int, routine: Routine) -> ActivationContext:
    """``ActivationContext(job, routine_index, routine)`` for ``Job.run_task`` (one per
    task), without a type call (see ``_activation.new_activation``); same fields."""
    ctx: ActivationContext = _object_new(ActivationContext)
    ctx.job = job
    ctx.routine_index = routine_index
    ctx.routine = routine
    ctx.activation = None
    return ctx


CURRENT: ContextVar[ActivationContext | None] = ContextVar("routilux_activation", default=None)


@attrs.frozen(kw_only=True)
class ActivationInfo:
    """Facts about the running activation, for logic that needs them.

    ``idempotency_key`` identifies the activation's *input* within its job: it stays the same
    across retries of that input (the attempt is ``attempt``, and ``attempt_key`` includes
    it) and, when the runtime has a job store, across a crash and ``resume`` (it is then built
    from the input payloads' sequence numbers, ``input_seqs``). Use it to make side effects
    idempotent (docs/persistence.md).
    """

    job_id: str
    flow_id: str
    routine_id: str
    attempt: int
    activation_seq: int
    input_seqs: tuple[int, ...] = ()
    durable_key: str | None = None

    @property
    def idempotency_key(self) -> str:
        if self.durable_key is not None:
            return self.durable_key
        return f"{self.job_id}:{self.routine_id}:{self.activation_seq}"

    @property
    def attempt_key(self) -> str:
        """``idempotency_key`` plus the attempt: one value per run of the logic."""
        return f"{self.idempotency_key}:{self.attempt}"


def current_activation() -> ActivationInfo | None:
    """Describe the activation running on this thread, or ``None`` outside any activation."""
    ctx = CURRENT.get()
    if ctx is None or ctx.activation is None:
        return None
    job = ctx.job
    act = ctx.activation
    rid = job.plan.routine_ids[ctx.routine_index]
    durable = job.durable
    inputs: tuple[int, ...] = ()
    key = None
    if durable is not None:
        from ._durable import activation_key

        inputs = durable.inputs_of(act)
        key = activation_key(job.job_id, rid, inputs, act)
    return ActivationInfo(
        job_id=job.job_id,
        flow_id=job.plan.flow_id,
        routine_id=rid,
        attempt=act.attempt,
        activation_seq=act.seq,
        input_seqs=inputs,
        durable_key=key,
    )
