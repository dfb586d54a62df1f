"""Activation policies behind the timer-driven builtins.

Each policy keeps what changes per execution in ``view.state`` (saved with the job) and asks
the runtime to evaluate it again with ``view.arm_timer(deadline)``; the policy objects
themselves are shared by every job of a flow and hold only their parameters. Their ``name``
is the registered type name and ``params()`` are exactly the constructor's keyword arguments,
so a flow using them saves and loads.

Deadlines these policies arm never move earlier within one job and routine (a new round starts
no earlier than the previous one fired), which is what the runtime's one-timer-per-routine rule
needs.
"""

from __future__ import annotations

from typing import Any

from routilux.activation_policies import ActivationPolicy, PolicyView
from routilux.errors import ConfigurationError

__all__ = [
    "AggregatePolicy",
    "CollectPolicy",
    "DebouncePolicy",
    "SizeOrTimePolicy",
]

Activation = tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]

def _seconds(policy: str, key: str, value: Any, *, optional: bool) -> float | None:
    if value is None and optional:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ConfigurationError(f"{policy} policy needs {key} > 0 seconds, got {value!r}")
    return float(value)


def _count(policy: str, key: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(f"{policy} policy needs an integer {key} >= 1, got {value!r}")
    return value


class AggregatePolicy(ActivationPolicy):
    """Join the routine's slots: fire when enough inputs hold data, or when a round times out.

    A *round* starts when the first payload arrives on any slot. The policy fires, consuming
    one payload from every slot that holds one, when

    * ``mode="all"``: every slot holds data; ``"any"``: one does; ``"n_of_m"``: ``n`` do
      (``reason="complete"``);
    * ``timeout`` seconds passed since the round started (``reason="timeout"``);
    * the job drains with a round open (``reason="drained"``).

    ``policy_message``: ``{"policy", "reason", "started_at", "fired_at"}``.
    """

    name = "builtins.aggregate"
    MODES = ("all", "any", "n_of_m")

    def __init__(self, mode: str = "all", n: int | None = None,
                 timeout: float | None = None) -> None:
        if mode not in self.MODES:
            raise ConfigurationError(
                f"aggregate policy mode must be one of {', '.join(self.MODES)}, got {mode!r}"
            )
        if mode == "n_of_m":
            n = _count("aggregate", "n", n)
        elif n is not None:
            raise ConfigurationError(
                f"aggregate policy takes n only with mode='n_of_m', not {mode!r}"
            )
        self.mode = mode
        self.n = n
        self.timeout = _seconds("aggregate", "timeout", timeout, optional=True)

    def params(self) -> dict[str, Any]:
        return {"mode": self.mode, "n": self.n, "timeout": self.timeout}

    def _needed(self, slots: int) -> int:
        if self.mode == "all":
            return slots
        if self.mode == "any":
            return 1
        assert self.n is not None
        return min(self.n, slots)

    def take(self, view: PolicyView, final: bool) -> Activation | None:
        queues = view.queues
        ready = [i for i, q in enumerate(queues) if q]
        state = view.state
        if not ready:
            state.pop("started", None)
            return None
        now = view.now()
        started = state.get("started")
        if started is None:
            started = state["started"] = now
        if len(ready) >= self._needed(len(queues)):
            reason = "complete"
        elif self.timeout is not None and now >= started + self.timeout:
            reason = "timeout"
        elif final:
            reason = "drained"
        else:
            if self.timeout is not None:
                view.arm_timer(started + self.timeout)
            return None
        names = view.slot_names
        data = {names[i]: [queues[i].popleft()] for i in ready}
        if any(queues):
            state["started"] = now
            if self.timeout is not None:
                view.arm_timer(now + self.timeout)
        else:
            state.pop("started", None)
        message = {"policy": self.name, "reason": reason, "started_at": started, "fired_at": now}
        return data, message


class SizeOrTimePolicy(ActivationPolicy):
    """Deliver a batch of ``size`` payloads, or what is queued ``max_wait`` seconds after the
    batch's first payload, whichever comes first (one slot; the first slot if several).

    When the job drains, what is left is delivered as a last, smaller batch.
    ``policy_message``: ``{"policy", "reason": "size" | "time" | "drained", "size"}``.
    """

    name = "builtins.size_or_time"

    def __init__(self, size: int = 100, max_wait: float | None = None) -> None:
        self.size = _count("size_or_time", "size", size)
        self.max_wait = _seconds("size_or_time", "max_wait", max_wait, optional=True)

    def params(self) -> dict[str, Any]:
        return {"size": self.size, "max_wait": self.max_wait}

    def take(self, view: PolicyView, final: bool) -> Activation | None:
        q = view.queues[0]
        state = view.state
        if not q:
            state.pop("first", None)
            return None
        now = view.now()
        first = state.get("first")
        if first is None:
            first = state["first"] = now
        if len(q) >= self.size:
            reason = "size"
        elif self.max_wait is not None and now >= first + self.max_wait:
            reason = "time"
        elif final:
            reason = "drained"
        else:
            if self.max_wait is not None:
                view.arm_timer(first + self.max_wait)
            return None
        items = view.take(0, self.size)
        if q:
            state["first"] = now
            if self.max_wait is not None:
                view.arm_timer(now + self.max_wait)
        else:
            state.pop("first", None)
        message = {"policy": self.name, "reason": reason, "size": len(items)}
        return {view.slot_names[0]: items}, message


class DebouncePolicy(ActivationPolicy):
    """Deliver only the latest payload once ``wait`` seconds pass without a new one.

    Older payloads still queued are superseded: removed from the queue as soon as the policy
    sees a newer one, and counted (``policy_message["superseded"]``), so the routine buffers at
    most one payload per job. With ``max_wait``, the latest payload is delivered at the latest
    ``max_wait`` seconds after the first one of the quiet period, even under constant traffic.
    When the job drains, a held payload is delivered at once.
    ``policy_message``: ``{"policy", "reason": "quiet" | "max_wait" | "drained",
    "superseded"}``.
    """

    name = "builtins.debounce"

    def __init__(self, wait: float = 1.0, max_wait: float | None = None) -> None:
        wait_s = _seconds("debounce", "wait", wait, optional=False)
        assert wait_s is not None
        self.wait = wait_s
        self.max_wait = _seconds("debounce", "max_wait", max_wait, optional=True)

    def params(self) -> dict[str, Any]:
        return {"wait": self.wait, "max_wait": self.max_wait}

    def take(self, view: PolicyView, final: bool) -> Activation | None:
        q = view.queues[0]
        state = view.state
        if not q:
            state.pop("holding", None)
            return None
        now = view.now()
        if len(q) > 1 or not state.get("holding"):
            # New arrivals since the last evaluation: keep the latest, count the rest.
            extra = len(q) - 1
            if extra:
                latest = q.pop()
                q.clear()
                q.append(latest)
                state["superseded"] = state.get("superseded", 0) + extra
            if not state.get("holding"):
                state["holding"] = True
                state["first"] = now
            state["last"] = now
        quiet_at = state["last"] + self.wait
        due = quiet_at
        if self.max_wait is not None:
            due = min(due, state["first"] + self.max_wait)
        if now >= due or final:
            reason = "drained" if now < due else "quiet" if now >= quiet_at else "max_wait"
            superseded = state.pop("superseded", 0)
            for key in ("holding", "first", "last"):
                state.pop(key, None)
            message = {"policy": self.name, "reason": reason, "superseded": superseded}
            return {view.slot_names[0]: [q.popleft()]}, message
        view.arm_timer(due)
        return None


class CollectPolicy(ActivationPolicy):
    """Deliver everything queued at once; with ``emit_on_drain``, also run the routine one last
    time (``policy_message["final"]`` True, with whatever is still queued) when the job drains
    after the routine has received something since its last final run.

    Whether a final run is owed is kept in the per-job policy state (saved with the job); the
    runtime gives every policy its final say when a job drains.
    """

    name = "builtins.collect"

    def __init__(self, emit_on_drain: bool = False) -> None:
        if not isinstance(emit_on_drain, bool):
            raise ConfigurationError(
                f"collect policy needs emit_on_drain true or false, got {emit_on_drain!r}"
            )
        self.emit_on_drain = emit_on_drain

    def params(self) -> dict[str, Any]:
        return {"emit_on_drain": self.emit_on_drain}

    def take(self, view: PolicyView, final: bool) -> Activation | None:
        q = view.queues[0]
        if final and self.emit_on_drain and (q or view.state.get("final_owed")):
            view.state["final_owed"] = False
            items = list(q)
            q.clear()
            data = {view.slot_names[0]: items} if items else {}
            return data, {"policy": self.name, "final": True}
        if not q:
            return None
        items = list(q)
        q.clear()
        if self.emit_on_drain:
            view.state["final_owed"] = True
        return {view.slot_names[0]: items}, {"policy": self.name, "final": False}
