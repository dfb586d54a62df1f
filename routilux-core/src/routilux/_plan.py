"""Compile a flow into an immutable plan: the routing tables the runtime's hot path reads.

Routing an emit is one dict lookup (event name → targets) and a loop over a short tuple of
``(routine index, queue index)`` pairs; nothing is scanned per message.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import attrs

from .activation_policies import ActivationPolicy, ImmediatePolicy, immediate_policy
from .error_handling import DEFAULT_ERROR_HANDLER, ErrorHandler
from .errors import ConfigurationError
from .flow import ValidationIssue, ValidationReport
from .slot import Overflow

if TYPE_CHECKING:
    from .flow import Flow
    from .routine import Logic, Routine

__all__ = ["FlowPlan", "analyse", "compile_flow"]

Target = tuple[int, int]
"""``(routine index, flat queue index)``."""


@attrs.frozen(kw_only=True, eq=False)
class FlowPlan:
    """Everything a job needs from its flow, frozen when the job starts."""

    flow_id: str
    routine_ids: tuple[str, ...]
    index_of: dict[str, int]
    routines: tuple[Routine, ...]
    logics: tuple[Logic, ...]
    policies: tuple[ActivationPolicy, ...]
    handlers: tuple[ErrorHandler, ...]
    max_concurrency: tuple[int, ...]
    timeouts: tuple[float | None, ...]
    slot_names: tuple[tuple[str, ...], ...]
    queue_base: tuple[int, ...]
    queue_count: int
    caps: tuple[int, ...]
    overflows: tuple[Overflow, ...]
    block_timeouts: tuple[float, ...]
    queue_owner: tuple[tuple[int, int], ...]
    routes: tuple[dict[str, tuple[Target, ...]], ...]
    entry_targets: tuple[Target, ...]
    sources: tuple[int, ...]
    entry_error: str | None
    execution_timeout: float | None
    custom_strategies: tuple[str, ...] = ()
    is_async: tuple[bool, ...] | None = None
    """Per routine: its logic is a coroutine function; None when no routine's is (the sync
    hot path then tests only this)."""
    async_limits: tuple[int | None, ...] = ()
    """Per routine: its ``async_concurrency`` config (runtime-wide cap), or None."""
    # Derived once here rather than looked up per job (each ``exec`` reads them).
    fast_queues: tuple[int, ...] = attrs.field(init=False, repr=False)
    """Per routine: its queue index if it has one slot and the immediate policy (served
    straight from that queue, without a policy call or view), else -1."""
    empty_queues: tuple[tuple[()], ...] = attrs.field(init=False, repr=False)
    """One empty, immutable queue per slot: what a completed job's queues become."""
    no_views: tuple[None, ...] = attrs.field(init=False, repr=False)
    """One ``None`` per routine: a completed job's views when none holds policy state."""
    no_tasks: tuple[int, ...] = attrs.field(init=False, repr=False)
    """One ``0`` per routine: a completed job's running-task counts."""
    fast_slots: tuple[str, ...] = attrs.field(init=False, repr=False)
    """Per routine: the name of its one slot if it is served straight from its queue, else
    ``""``."""
    policy_routines: tuple[int, ...] = attrs.field(init=False, repr=False)
    """The routines not served straight from a queue (``fast_queues[ri] < 0``): each job
    makes a policy view for these."""
    task_info: tuple[tuple[Any, ...], ...] = attrs.field(init=False, repr=False)
    """Per routine, what every task of it reads first (``Job.run_task``): its logic, id,
    timeout, whether success is recorded outside the job lock (one activation at a time, no
    timeout), whether it is served straight from its queue, the routine, and that queue's
    index and slot name (-1 and "" when it is not)."""

    def __attrs_post_init__(self) -> None:
        fast = tuple(
            self.queue_base[ri]
            if len(self.slot_names[ri]) == 1 and type(self.policies[ri]) is ImmediatePolicy
            else -1
            for ri in range(len(self.routine_ids))
        )
        object.__setattr__(self, "fast_queues", fast)
        object.__setattr__(self, "empty_queues", ((),) * self.queue_count)
        object.__setattr__(self, "no_views", (None,) * len(self.routine_ids))
        object.__setattr__(self, "no_tasks", (0,) * len(self.routine_ids))
        object.__setattr__(self, "fast_slots", tuple(
            self.slot_names[ri][0] if qi >= 0 else "" for ri, qi in enumerate(fast)
        ))
        object.__setattr__(
            self, "policy_routines", tuple(ri for ri, qi in enumerate(fast) if qi < 0)
        )
        object.__setattr__(self, "task_info", tuple(
            (self.logics[ri], self.routine_ids[ri], self.timeouts[ri],
             self.timeouts[ri] is None and self.max_concurrency[ri] == 1, fast[ri] >= 0,
             self.routines[ri], fast[ri], self.fast_slots[ri])
            for ri in range(len(self.routine_ids))
        ))

    def queue_index(self, routine_id: str, slot: str) -> tuple[int, int]:
        """``(routine index, flat queue index)`` of a slot, for posts and restores."""
        from .errors import UnknownRoutineError, UnknownSlotError

        ri = self.index_of.get(routine_id)
        if ri is None:
            raise UnknownRoutineError(
                f"flow {self.flow_id!r} has no routine {routine_id!r} "
                f"(routines: {', '.join(self.routine_ids) or 'none'})",
                flow_id=self.flow_id,
                routine_id=routine_id,
            )
        names = self.slot_names[ri]
        try:
            si = names.index(slot)
        except ValueError:
            raise UnknownSlotError(
                f"flow {self.flow_id!r}: routine {routine_id!r} has no slot {slot!r} "
                f"(slots: {', '.join(names) or 'none'})",
                routine_id=routine_id,
                slot=slot,
            ) from None
        return ri, self.queue_base[ri] + si


def _timeout_of(
    routine: Routine, rid: str, handler: ErrorHandler | None = None
) -> float | None:
    value: Any = routine.get_config("timeout")
    if value is None:
        return handler.timeout if handler is not None else None
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ConfigurationError(
            f"routine {rid!r}: config 'timeout' must be a number of seconds > 0, got {value!r}"
        )
    return float(value)


def _async_limit_of(routine: Routine, rid: str) -> int | None:
    value: Any = routine.get_config("async_concurrency")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(
            f"routine {rid!r}: config 'async_concurrency' must be an integer >= 1 (the most "
            f"activations of this routine awaiting at once in a runtime), got {value!r}"
        )
    return value


def _entry_of(flow: Flow) -> tuple[list[tuple[str, str]], list[str], str | None]:
    """(entry (routine, slot) pairs, source routine ids, entry problem or None)."""
    routines = flow.routines
    sources = [rid for rid, r in routines.items() if not r.slots]
    if flow.entry is not None:
        return [(flow.entry.routine_id, flow.entry.slot)], sources, None
    fed = {c.target_id for c in flow.connections}
    entries: list[tuple[str, str]] = []
    problems: list[str] = []
    for rid, r in routines.items():
        if rid in fed or not r.slots:
            continue
        if len(r.slots) == 1:
            entries.append((rid, next(iter(r.slots))))
        else:
            problems.append(
                f"routine {rid!r} has no inbound connection and several slots "
                f"({', '.join(r.slots)}); call flow.set_entry({rid!r}, <slot>) to choose one"
            )
    if problems:
        return entries, sources, "; ".join(problems)
    if not entries and not sources:
        return (
            entries,
            sources,
            "every routine has an inbound connection, so there is no entry; call "
            "flow.set_entry(<routine_id>, <slot>)",
        )
    return entries, sources, None


def _cycles(flow: Flow) -> list[list[str]]:
    graph: dict[str, list[str]] = {rid: [] for rid in flow.routines}
    for c in flow.connections:
        if c.target_id not in graph[c.source_id]:
            graph[c.source_id].append(c.target_id)
    cycles: list[list[str]] = []
    color: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        color[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if color.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in color:
                visit(nxt)
        stack.pop()
        color[node] = 2

    for rid in graph:
        if rid not in color:
            visit(rid)
    return cycles


def analyse(flow: Flow) -> Iterator[ValidationIssue]:
    """Every finding about ``flow``, errors first."""
    routines = flow.routines
    if not routines:
        yield ValidationIssue(
            severity="error",
            code="flow.empty",
            message="the flow has no routines; add one with flow.add_routine",
            path="routines",
        )
        return
    for rid, r in routines.items():
        if r.logic is None:
            yield ValidationIssue(
                severity="error",
                code="routine.no_logic",
                message=f"routine {rid!r} ({type(r).__qualname__}) has no logic; call set_logic",
                path=f"routines.{rid}",
            )
        try:
            r.validate_config()
        except ConfigurationError as exc:
            yield ValidationIssue(
                severity="error", code="routine.bad_config",
                message=f"routine {rid!r} ({type(r).__qualname__}): {exc}",
                path=f"routines.{rid}.config",
            )
        try:
            _timeout_of(r, rid)
        except ConfigurationError as exc:
            yield ValidationIssue(
                severity="error", code="routine.bad_timeout", message=str(exc),
                path=f"routines.{rid}.config.timeout",
            )
        try:
            limit = _async_limit_of(r, rid)
        except ConfigurationError as exc:
            yield ValidationIssue(
                severity="error", code="routine.bad_async_concurrency", message=str(exc),
                path=f"routines.{rid}.config.async_concurrency",
            )
        else:
            if limit is not None and r.logic is not None and not r.is_async:
                yield ValidationIssue(
                    severity="warning", code="routine.async_concurrency_unused",
                    message=f"routine {rid!r} has config 'async_concurrency' but its logic is "
                    "not async, so the limit has no effect (use set_max_concurrency)",
                    path=f"routines.{rid}.config.async_concurrency",
                )
    entries, sources, entry_problem = _entry_of(flow)
    if entry_problem:
        yield ValidationIssue(
            severity="warning",
            code="flow.entry",
            message=f"exec() cannot deliver entry parameters: {entry_problem} "
            "(posting to slots still works)",
            path="entry",
        )
    for cycle in _cycles(flow):
        yield ValidationIssue(
            severity="info",
            code="flow.cycle",
            message="cycle " + " -> ".join(cycle) + " (allowed; make sure it terminates)",
            path="connections",
        )
    fed = {(c.target_id, c.slot) for c in flow.connections}
    entry_slots = set(entries)
    for rid, r in routines.items():
        for name in r.events:
            if not any(c.source_id == rid and c.event == name for c in flow.connections):
                yield ValidationIssue(
                    severity="info",
                    code="event.unconnected",
                    message=f"event {rid}.{name} is connected to nothing; its emits go nowhere",
                    path=f"routines.{rid}.events.{name}",
                )
        for name in r.slots:
            if (rid, name) not in fed and (rid, name) not in entry_slots:
                yield ValidationIssue(
                    severity="info",
                    code="slot.unfed",
                    message=f"slot {rid}.{name} receives nothing from the flow (only posts)",
                    path=f"routines.{rid}.slots.{name}",
                )
    # reachability from the entry and the sources
    start = {rid for rid, _ in entries} | set(sources)
    if start:
        seen = set(start)
        frontier = list(start)
        while frontier:
            node = frontier.pop()
            for c in flow.connections:
                if c.source_id == node and c.target_id not in seen:
                    seen.add(c.target_id)
                    frontier.append(c.target_id)
        for rid in routines:
            if rid not in seen:
                yield ValidationIssue(
                    severity="info",
                    code="routine.unreachable",
                    message=f"routine {rid!r} cannot be reached from the entry (only by posts)",
                    path=f"routines.{rid}",
                )


def compile_flow(flow: Flow) -> FlowPlan:
    """Build the plan; raises ``FlowValidationError`` listing every error."""
    report = ValidationReport(flow_id=flow.flow_id, issues=tuple(analyse(flow)))
    report.raise_for_errors()
    ids = tuple(flow.routines)
    index_of = {rid: i for i, rid in enumerate(ids)}
    routines = tuple(flow.routines[rid] for rid in ids)
    slot_names = tuple(tuple(r.slots) for r in routines)
    queue_base: list[int] = []
    caps: list[int] = []
    overflows: list[Overflow] = []
    block_timeouts: list[float] = []
    owner: list[tuple[int, int]] = []
    for ri, r in enumerate(routines):
        queue_base.append(len(caps))
        for si, slot in enumerate(r.slots.values()):
            caps.append(slot.max_queue_length)
            overflows.append(slot.overflow)
            block_timeouts.append(slot.block_timeout)
            owner.append((ri, si))
    routes: list[dict[str, list[Target]]] = [{name: [] for name in r.events} for r in routines]
    for c in flow.connections:
        si = list(flow.routines[c.target_id].slots).index(c.slot)
        di = index_of[c.target_id]
        routes[index_of[c.source_id]][c.event].append((di, queue_base[di] + si))
    entries, sources, entry_problem = _entry_of(flow)
    entry_targets = tuple(
        (index_of[rid], queue_base[index_of[rid]] + slot_names[index_of[rid]].index(slot))
        for rid, slot in entries
    )
    flow_handler = flow.error_handler or DEFAULT_ERROR_HANDLER
    is_async = tuple(r.is_async for r in routines)
    handlers = tuple(r.error_handler or flow_handler for r in routines)
    return FlowPlan(
        flow_id=flow.flow_id,
        routine_ids=ids,
        index_of=index_of,
        routines=routines,
        logics=tuple(r.logic for r in routines),  # type: ignore[misc]
        policies=tuple(r.activation_policy or immediate_policy() for r in routines),
        handlers=handlers,
        max_concurrency=tuple(r.max_concurrency for r in routines),
        timeouts=tuple(
            _timeout_of(r, rid, r.error_handler or flow_handler)
            for rid, r in zip(ids, routines, strict=True)
        ),
        slot_names=slot_names,
        queue_base=tuple(queue_base),
        queue_count=len(caps),
        caps=tuple(caps),
        overflows=tuple(overflows),
        block_timeouts=tuple(block_timeouts),
        queue_owner=tuple(owner),
        routes=tuple({k: tuple(v) for k, v in r.items()} for r in routes),
        entry_targets=entry_targets,
        sources=tuple(index_of[rid] for rid in sources),
        entry_error=entry_problem,
        execution_timeout=flow.execution_timeout,
        custom_strategies=tuple(sorted({str(h.strategy) for h in handlers if h.is_custom})),
        is_async=is_async if any(is_async) else None,
        async_limits=tuple(_async_limit_of(r, rid) for rid, r in zip(ids, routines, strict=True)),
    )
