"""Activation policies decide when a routine runs and which queued payloads it consumes.

A policy is a small named object with parameters (so it can be serialized and shown), never an
anonymous closure. The runtime evaluates it under the job's lock against that job's own queues
for the routine (a :class:`PolicyView`); the policy *takes* what it consumes and returns
``(slot_data, policy_message)``, or ``None`` to wait for more data.

Per-job policy state (timestamps, counters) lives in ``view.state``, never on the policy object,
so one flow can run many jobs at once without them seeing each other.
"""

from __future__ import annotations

import abc
from collections import deque
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .job_state import JobState

__all__ = [
    "ActivationPolicy",
    "AllSlotsReadyPolicy",
    "BatchSizePolicy",
    "BreakpointPolicy",
    "CustomPolicy",
    "ImmediatePolicy",
    "PolicyView",
    "TimeIntervalPolicy",
    "all_slots_ready_policy",
    "batch_size_policy",
    "breakpoint_policy",
    "custom_policy",
    "immediate_policy",
    "time_interval_policy",
]

Activation = tuple[dict[str, list[dict[str, Any]]], Mapping[str, Any]]
"""What a policy returns when a routine should run: ``(slot_data, policy_message)``."""


class PolicyView:
    """One job's view of one routine's queues, as an activation policy sees it.

    Attributes:
        queues: one ``deque`` of payload dicts per slot, in the routine's slot order.
        slot_names: the slot names, aligned with ``queues``.
        state: a dict the policy may keep per-job state in (saved with the job).
        job_state: the job's :class:`~routilux.job_state.JobState`.
    """

    __slots__ = (
        "_arm", "_cancel", "_index", "_now", "_owner", "job_state", "queues", "routine_id",
        "slot_names", "state",
    )

    def __init__(
        self,
        *,
        routine_id: str,
        slot_names: tuple[str, ...],
        queues: tuple[deque[dict[str, Any]], ...],
        state: dict[str, Any],
        job_state: JobState,
        now: Callable[[], float],
        arm: Callable[[float], None] | None = None,
        cancel: Callable[[], None] | None = None,
        owner: Any = None,
        index: int = 0,
    ) -> None:
        self.routine_id = routine_id
        self.slot_names = slot_names
        self.queues = queues
        self.state = state
        self.job_state = job_state
        self._now = now
        self._arm = arm
        self._cancel = cancel
        self._owner = owner  # the runtime's job: timers go to owner._arm_policy_timer(index, ...)
        self._index = index

    def now(self) -> float:
        """The runtime clock's current time (monotonic seconds)."""
        return self._now()

    def arm_timer(self, deadline: float) -> None:
        """Ask the runtime to evaluate this policy again at ``deadline`` (clock time).

        Only the earliest pending deadline per job and routine is kept; an armed timer counts
        as outstanding work, so the job does not complete while it is pending.
        """
        if self._owner is not None:
            self._owner._arm_policy_timer(self._index, deadline)
        elif self._arm is not None:
            self._arm(deadline)

    def cancel_timer(self) -> None:
        """Drop the pending timer armed for this job and routine, if any (for example when a
        batch went out before its deadline), so it no longer keeps the job open."""
        if self._owner is not None:
            self._owner._cancel_policy_timer(self._index)
        elif self._cancel is not None:
            self._cancel()

    def total(self) -> int:
        """Payloads queued across all slots."""
        return sum(len(q) for q in self.queues)

    def take_all(self) -> dict[str, list[dict[str, Any]]]:
        """Consume every queued payload of every slot that has any."""
        data: dict[str, list[dict[str, Any]]] = {}
        for name, q in zip(self.slot_names, self.queues, strict=True):
            if q:
                data[name] = list(q)
                q.clear()
        return data

    def take(self, index: int, count: int) -> list[dict[str, Any]]:
        """Consume up to ``count`` payloads from slot ``index``, oldest first."""
        q = self.queues[index]
        if count >= len(q):
            items = list(q)
            q.clear()
            return items
        return [q.popleft() for _ in range(count)]


class ActivationPolicy(abc.ABC):
    """Base class of activation policies.

    Subclasses set ``name`` (the registered type name) and implement :meth:`take`. They must
    keep per-job state in ``view.state`` only.
    """

    name: ClassVar[str] = ""

    def params(self) -> dict[str, Any]:
        """The parameters that, with ``name``, recreate this policy."""
        return {}

    @abc.abstractmethod
    def take(self, view: PolicyView, final: bool) -> Activation | None:
        """Consume and return the next activation's input, or ``None`` to wait.

        ``final`` is True when the job has drained and this is the last chance to consume what
        is left (a batch policy may flush a partial batch); payloads still queued after the
        final evaluation are recorded as unconsumed in the job state.
        """

    def holds(self, view: PolicyView) -> bool:
        """True if queued data must keep the job open instead of completing it."""
        return False

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and isinstance(other, ActivationPolicy)
            and other.params() == self.params()
        )

    def __hash__(self) -> int:
        return hash((type(self), self.name))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


_IMMEDIATE_MESSAGE: Mapping[str, Any] = MappingProxyType({"policy": "immediate"})


class ImmediatePolicy(ActivationPolicy):
    """Run once per payload, as soon as it arrives.

    Each activation consumes exactly one payload. When several slots hold data, slots are
    served in turn (round robin), so no slot starves another.
    """

    name = "immediate"

    def take(self, view: PolicyView, final: bool) -> Activation | None:
        queues = view.queues
        if len(queues) == 1:
            q = queues[0]
            if q:
                return {view.slot_names[0]: [q.popleft()]}, _IMMEDIATE_MESSAGE
            return None
        state = view.state
        n = len(queues)
        start = state.get("next", 0)
        for k in range(n):
            i = (start + k) % n
            q = queues[i]
            if q:
                state["next"] = (i + 1) % n
                return {view.slot_names[i]: [q.popleft()]}, _IMMEDIATE_MESSAGE
        return None


class BatchSizePolicy(ActivationPolicy):
    """Run when a slot holds ``size`` payloads, consuming exactly ``size`` of them.

    When the job drains with fewer than ``size`` payloads left, they are delivered as one
    partial batch (``policy_message["partial"]`` is True) unless ``flush_partial=False``, in
    which case they are recorded as unconsumed.
    """

    name = "batch_size"

    def __init__(self, size: int, flush_partial: bool = True) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ConfigurationError(f"batch_size_policy needs an integer size >= 1, got {size!r}")
        self.size = size
        self.flush_partial = bool(flush_partial)

    def params(self) -> dict[str, Any]:
        return {"size": self.size, "flush_partial": self.flush_partial}

    def take(self, view: PolicyView, final: bool) -> Activation | None:
        size = self.size
        for i, q in enumerate(view.queues):
            if len(q) >= size:
                msg = {"policy": self.name, "batch_size": size, "partial": False}
                return {view.slot_names[i]: view.take(i, size)}, msg
        if final and self.flush_partial:
            for i, q in enumerate(view.queues):
                if q:
                    msg = {"policy": self.name, "batch_size": size, "partial": True}
                    return {view.slot_names[i]: view.take(i, size)}, msg
        return None


class AllSlotsReadyPolicy(ActivationPolicy):
    """Run when every slot holds at least one payload, consuming one from each (a join)."""

    name = "all_slots_ready"

    def take(self, view: PolicyView, final: bool) -> Activation | None:
        queues = view.queues
        for q in queues:
            if not q:
                return None
        data = {name: [q.popleft()] for name, q in zip(view.slot_names, queues, strict=True)}
        return data, {"policy": self.name}


class TimeIntervalPolicy(ActivationPolicy):
    """Run at most once per ``seconds``, consuming everything queued.

    The first payload runs at once; payloads that arrive within the interval are held and
    delivered together when the interval ends, driven by a timer (not by the next arrival).
    """

    name = "time_interval"

    def __init__(self, seconds: float) -> None:
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0:
            raise ConfigurationError(
                f"time_interval_policy needs seconds > 0, got {seconds!r}"
            )
        self.seconds = float(seconds)

    def params(self) -> dict[str, Any]:
        return {"seconds": self.seconds}

    def take(self, view: PolicyView, final: bool) -> Activation | None:
        if not any(view.queues):
            return None
        now = view.now()
        last = view.state.get("last_fired")
        if final or last is None or now - last >= self.seconds:
            view.state["last_fired"] = now
            return view.take_all(), {"policy": self.name, "fired_at": now}
        view.arm_timer(last + self.seconds)
        return None


class CustomPolicy(ActivationPolicy):
    """Run when ``predicate(queued, job_state)`` says so.

    ``queued`` maps each slot name to a list copy of its queued payloads. The predicate returns
    True (consume everything queued), False/None (wait), or a mapping ``{slot: count}`` of how
    many payloads to consume from which slots.
    """

    name = "custom"

    def __init__(
        self,
        predicate: Callable[[dict[str, list[dict[str, Any]]], JobState], Any],
        name: str | None = None,
    ) -> None:
        if not callable(predicate):
            raise ConfigurationError(f"custom_policy needs a callable, got {predicate!r}")
        self.predicate = predicate
        self.predicate_name = name or getattr(predicate, "__qualname__", "predicate")

    def params(self) -> dict[str, Any]:
        return {"predicate": self.predicate_name}

    def take(self, view: PolicyView, final: bool) -> Activation | None:
        if not any(view.queues):
            return None
        queued = {n: list(q) for n, q in zip(view.slot_names, view.queues, strict=True)}
        decision = self.predicate(queued, view.job_state)
        if not decision:
            return None
        msg = {"policy": self.name, "predicate": self.predicate_name}
        if decision is True:
            return view.take_all(), msg
        if isinstance(decision, Mapping):
            data: dict[str, list[dict[str, Any]]] = {}
            for slot, count in decision.items():
                if slot not in view.slot_names:
                    raise ConfigurationError(
                        f"custom policy {self.predicate_name!r} of routine "
                        f"{view.routine_id!r} asked for unknown slot {slot!r}"
                    )
                taken = view.take(view.slot_names.index(slot), int(count))
                if taken:
                    data[slot] = taken
            return (data, msg) if data else None
        return view.take_all(), msg


class BreakpointPolicy(ActivationPolicy):
    """Hold every payload until the breakpoint is released.

    Held data is never dropped: when the rest of the job has drained, the job goes PAUSED
    instead of completing. ``runtime.release_breakpoint(job_id, routine_id)`` (or
    ``runtime.resume_job``) releases it; from then on payloads flow one per activation.
    """

    name = "breakpoint"

    def take(self, view: PolicyView, final: bool) -> Activation | None:
        if not view.state.get("released"):
            return None
        return _IMMEDIATE.take(view, final)

    def holds(self, view: PolicyView) -> bool:
        return not view.state.get("released") and any(view.queues)


_IMMEDIATE = ImmediatePolicy()


def immediate_policy() -> ImmediatePolicy:
    """Run once per payload as soon as it arrives (the default)."""
    return _IMMEDIATE


def batch_size_policy(size: int, flush_partial: bool = True) -> BatchSizePolicy:
    """Run once ``size`` payloads are queued in a slot, consuming ``size``."""
    return BatchSizePolicy(size, flush_partial=flush_partial)


def all_slots_ready_policy() -> AllSlotsReadyPolicy:
    """Run when every slot has data, consuming one payload per slot."""
    return AllSlotsReadyPolicy()


def time_interval_policy(seconds: float) -> TimeIntervalPolicy:
    """Run at most once per ``seconds``, delivering everything held when the interval ends."""
    return TimeIntervalPolicy(seconds)


def custom_policy(
    predicate: Callable[[dict[str, list[dict[str, Any]]], JobState], Any],
    name: str | None = None,
) -> CustomPolicy:
    """Run when ``predicate(queued, job_state)`` is truthy (see :class:`CustomPolicy`)."""
    return CustomPolicy(predicate, name=name)


def breakpoint_policy() -> BreakpointPolicy:
    """Hold data until released (see :class:`BreakpointPolicy`)."""
    return BreakpointPolicy()
