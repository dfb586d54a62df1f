"""Hypothesis strategies for Routilux: payloads, random valid flows, job states.

* :func:`json_values` / :func:`payloads`: JSON-compatible values and payload dicts.
* :func:`flow_specs` / :func:`flows`: random valid DAG flows built from routine classes you
  choose, with random activation policies; a :class:`FlowSpec` keeps the drawn structure, so a
  property can compute what the flow must do.
* :func:`job_states`: :class:`~routilux.JobState` values that survive ``to_dict`` /
  ``from_dict`` and ``save`` / ``load``.

Example::

    from hypothesis import given
    from routilux_testing import run_flow
    from routilux_testing.strategies import flow_specs

    @given(spec=flow_specs([Relay, Join], max_routines=5))
    def test_every_flow_completes(spec):
        run_flow(spec.build(), {"n": 1})
"""

from __future__ import annotations

import functools
import string
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

if TYPE_CHECKING:
    from routilux import ActivationPolicy, Flow, JobState, Routine

__all__ = [
    "BUILTIN_POLICIES",
    "FlowSpec",
    "RoutineSpec",
    "flow_specs",
    "flows",
    "identifiers",
    "job_states",
    "json_values",
    "payloads",
]

BUILTIN_POLICIES = ("immediate", "batch_size", "all_slots_ready")
"""Policy names :func:`flow_specs` understands without a factory (``batch_size`` draws a size
of 1 to 3)."""

_KEY_CHARS = string.ascii_letters + string.digits + "_-. "


@functools.lru_cache(maxsize=64)
def identifiers(*, max_size: int = 8) -> st.SearchStrategy[str]:
    """Short lowercase identifiers (routine ids, slot and event names)."""
    return st.from_regex(rf"[a-z][a-z0-9_]{{0,{max_size - 1}}}", fullmatch=True)


@functools.lru_cache(maxsize=64)
def json_values(
    *, max_leaves: int = 12, keys: st.SearchStrategy[str] | None = None
) -> st.SearchStrategy[Any]:
    """Values JSON holds exactly: None, booleans, integers, finite floats, strings, and lists
    and string-keyed dicts of them (nested)."""
    key = keys if keys is not None else st.text(_KEY_CHARS, max_size=8)
    leaves = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**53), max_value=2**53)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=12)
    )
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(key, inner, max_size=4),
        max_leaves=max_leaves,
    )


@functools.lru_cache(maxsize=64)
def payloads(
    *,
    min_size: int = 0,
    max_size: int = 5,
    keys: st.SearchStrategy[str] | None = None,
    values: st.SearchStrategy[Any] | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    """Payload dicts (what one ``emit`` sends): string keys, JSON-compatible values."""
    key = keys if keys is not None else st.text(_KEY_CHARS, min_size=1, max_size=8)
    return st.dictionaries(
        key, values if values is not None else json_values(), min_size=min_size,
        max_size=max_size,
    )


# -- flows ---------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class RoutineSpec:
    """One routine of a drawn flow."""

    routine_id: str
    routine_type: type[Routine]
    policy: str
    policy_params: tuple[tuple[str, Any], ...] = ()
    max_concurrency: int = 1


@attrs.frozen(kw_only=True)
class FlowSpec:
    """The structure of a drawn flow: build it with :meth:`build`, reason about it with the
    attributes.

    Routines are listed in topological order: every connection goes from a routine to a later
    one, so the flow is a DAG whose only entry is ``entry`` (on the first routine).

    Attributes:
        flow_id: the flow's id.
        routines: the routines, in order.
        connections: ``routilux.Connection`` values (source, event, target, slot).
        entry: ``(routine_id, slot)`` receiving the entry parameters.
        policy_factories: factories of the policies drawn by name (not built-in ones).
    """

    flow_id: str
    routines: tuple[RoutineSpec, ...]
    connections: tuple[Any, ...]
    entry: tuple[str, str]
    policy_factories: Mapping[str, Callable[[], ActivationPolicy]] = attrs.field(
        factory=dict, eq=False, repr=False
    )

    @property
    def routine_ids(self) -> tuple[str, ...]:
        return tuple(r.routine_id for r in self.routines)

    def targets(self, routine_id: str) -> list[tuple[str, str, str]]:
        """``(event, target_id, slot)`` of every connection out of ``routine_id``."""
        return [
            (c.event, c.target_id, c.slot) for c in self.connections if c.source_id == routine_id
        ]

    def sources(self, routine_id: str) -> list[tuple[str, str, str]]:
        """``(source_id, event, slot)`` of every connection into ``routine_id``."""
        return [
            (c.source_id, c.event, c.slot) for c in self.connections if c.target_id == routine_id
        ]

    def policy_of(self, spec: RoutineSpec) -> ActivationPolicy:
        """A new policy object for ``spec``."""
        from routilux import all_slots_ready_policy, batch_size_policy, immediate_policy

        factory = self.policy_factories.get(spec.policy)
        if factory is not None:
            return factory()
        params = dict(spec.policy_params)
        if spec.policy == "immediate":
            return immediate_policy()
        if spec.policy == "batch_size":
            return batch_size_policy(**params)
        if spec.policy == "all_slots_ready":
            return all_slots_ready_policy()
        raise ValueError(f"unknown policy {spec.policy!r}")  # pragma: no cover - checked early

    def build(self, configure: Callable[[str, Routine], None] | None = None) -> Flow:
        """A new :class:`~routilux.Flow` (new routine objects) of this structure.

        ``configure(routine_id, routine)`` is called for every routine before it is wired,
        for test-specific configuration.
        """
        from routilux import Flow

        flow = Flow(self.flow_id)
        for spec in self.routines:
            routine = spec.routine_type()
            routine.set_activation_policy(self.policy_of(spec))
            routine.set_max_concurrency(spec.max_concurrency)
            if configure is not None:
                configure(spec.routine_id, routine)
            flow.add_routine(routine, spec.routine_id)
        for c in self.connections:
            flow.connect(c.source_id, c.event, c.target_id, c.slot)
        flow.set_entry(*self.entry)
        return flow


def _interface(cls: type[Routine]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    from routilux import Routine
    from routilux.registry import routine_types

    if not (isinstance(cls, type) and issubclass(cls, Routine)):
        raise InvalidArgument(f"flow_specs needs Routine subclasses, got {cls!r}")
    if cls.type_name not in routine_types or routine_types.get(cls.type_name) is not cls:
        raise InvalidArgument(
            f"{cls.__qualname__} is not registered under its type name {cls.type_name!r}; "
            "flow_specs draws registered routine types only"
        )
    routine = cls()
    slots, events = tuple(routine.slots), tuple(routine.events)
    if not slots:
        raise InvalidArgument(
            f"{cls.__qualname__} declares no slot; every routine of a drawn flow must be able "
            "to receive payloads"
        )
    return slots, events


@st.composite
def _flow_specs(
    draw: st.DrawFn,
    types: tuple[type[Routine], ...],
    interfaces: Mapping[type[Routine], tuple[tuple[str, ...], tuple[str, ...]]],
    min_routines: int,
    max_routines: int,
    policies: tuple[str, ...],
    factories: Mapping[str, Callable[[], ActivationPolicy]],
    concurrency: tuple[int, ...],
    flow_id: str | None,
) -> FlowSpec:
    from routilux import Connection

    n = draw(st.integers(min_routines, max_routines))
    specs = []
    for i in range(n):
        cls = draw(st.sampled_from(types))
        policy = draw(st.sampled_from(policies))
        params: tuple[tuple[str, Any], ...] = ()
        if policy == "batch_size" and policy not in factories:
            params = (("size", draw(st.integers(1, 3))),)
        specs.append(
            RoutineSpec(
                routine_id=f"r{i}",
                routine_type=cls,
                policy=policy,
                policy_params=params,
                max_concurrency=draw(st.sampled_from(concurrency)),
            )
        )
    connections = []
    for j in range(1, n):
        slots = interfaces[specs[j].routine_type][0]
        for i in range(j):
            events = interfaces[specs[i].routine_type][1]
            if events and draw(st.booleans()):
                connections.append(
                    Connection(
                        source_id=specs[i].routine_id,
                        event=draw(st.sampled_from(events)),
                        target_id=specs[j].routine_id,
                        slot=draw(st.sampled_from(slots)),
                    )
                )
    entry_slot = draw(st.sampled_from(interfaces[specs[0].routine_type][0]))
    return FlowSpec(
        flow_id=flow_id if flow_id is not None else draw(identifiers()),
        routines=tuple(specs),
        connections=tuple(connections),
        entry=(specs[0].routine_id, entry_slot),
        policy_factories=dict(factories),
    )


def flow_specs(
    routine_types: Sequence[type[Routine]],
    *,
    min_routines: int = 1,
    max_routines: int = 6,
    policies: Sequence[str] | Mapping[str, Callable[[], ActivationPolicy]] = BUILTIN_POLICIES,
    max_concurrency: Sequence[int] = (1,),
    flow_id: str | None = None,
) -> st.SearchStrategy[FlowSpec]:
    """Random valid DAG flows of the given registered routine classes, as :class:`FlowSpec`.

    Each drawn flow has ``min_routines`` to ``max_routines`` routines ``r0, r1, ...``, each
    of a class drawn from ``routine_types``, with a drawn policy and max concurrency. For
    every pair ``i < j`` a coin decides whether one of ``ri``'s events (drawn) feeds one of
    ``rj``'s slots (drawn), so fan-out, fan-in, chains and unreachable routines all occur;
    the entry is a drawn slot of ``r0``. Shrinking goes towards fewer routines and
    connections.

    Args:
        routine_types: registered ``Routine`` subclasses whose ``__init__`` declares at least
            one slot (their slots and events are read from one instance).
        min_routines, max_routines: bounds on the number of routines.
        policies: names among :data:`BUILTIN_POLICIES` (``immediate``, ``batch_size``,
            ``all_slots_ready``), or a mapping ``{name: factory}`` of your own policies
            (a factory returns a new ``ActivationPolicy``; its name may also shadow a
            built-in one).
        max_concurrency: values drawn for ``routine.set_max_concurrency``.
        flow_id: the flow id (default: drawn).
    """
    types = tuple(routine_types)
    if not types:
        raise InvalidArgument("flow_specs needs at least one routine class")
    if not 1 <= min_routines <= max_routines:
        raise InvalidArgument(
            f"need 1 <= min_routines <= max_routines, got {min_routines}, {max_routines}"
        )
    factories: dict[str, Callable[[], ActivationPolicy]] = {}
    if isinstance(policies, Mapping):
        factories = dict(policies)
        names = tuple(factories)
    else:
        names = tuple(policies)
        unknown = [p for p in names if p not in BUILTIN_POLICIES]
        if unknown:
            raise InvalidArgument(
                f"unknown policy names {unknown}; use {', '.join(BUILTIN_POLICIES)} or pass "
                "a mapping {name: factory}"
            )
    if not names:
        raise InvalidArgument("flow_specs needs at least one policy")
    concurrency = tuple(max_concurrency)
    if not concurrency or any(not isinstance(c, int) or c < 1 for c in concurrency):
        raise InvalidArgument(f"max_concurrency values must be integers >= 1, got {concurrency}")
    interfaces = {cls: _interface(cls) for cls in dict.fromkeys(types)}
    return _flow_specs(
        types, interfaces, min_routines, max_routines, names, factories, concurrency, flow_id
    )


def flows(routine_types: Sequence[type[Routine]], **options: Any) -> st.SearchStrategy[Flow]:
    """Random valid DAG flows (new :class:`~routilux.Flow` objects); options as
    :func:`flow_specs`."""
    return flow_specs(routine_types, **options).map(lambda spec: spec.build())


# -- job states ----------------------------------------------------------------------------------

_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)


@functools.lru_cache(maxsize=64)
def _datetimes() -> st.SearchStrategy[datetime]:
    # Whole microseconds in a sane range: exactly what ISO text and epoch floats hold.
    return st.integers(0, 20 * 365 * 86_400 * 10**6).map(
        lambda us: _EPOCH + timedelta(microseconds=us)
    )


@functools.lru_cache(maxsize=64)
def _records(routine_ids: tuple[str, ...]) -> st.SearchStrategy[Any]:
    from routilux import ExecutionRecord

    return st.builds(
        ExecutionRecord,
        routine_id=st.sampled_from(routine_ids),
        status=st.sampled_from(["completed", "failed", "retrying", "skipped", "timed_out"]),
        started_at=_datetimes().map(lambda d: d.timestamp()),
        duration=st.floats(0, 1e4, allow_nan=False, allow_infinity=False),
        attempt=st.integers(0, 10),
        error=st.none() | st.text(max_size=20),
    )


@functools.lru_cache(maxsize=64)
def _small_payloads(max_size: int = 3) -> st.SearchStrategy[dict[str, Any]]:
    return payloads(max_size=max_size, values=json_values(max_leaves=4))


@st.composite
def _job_states(
    draw: st.DrawFn, flow_id: str | None, statuses: tuple[str, ...], routine_ids: tuple[str, ...]
) -> JobState:
    from routilux import JobState, JobStatus

    ids = routine_ids or tuple(draw(st.lists(identifiers(), min_size=1, max_size=4,
                                             unique=True)))
    status = JobStatus(draw(st.sampled_from(statuses)))
    failed = status is JobStatus.FAILED
    created = draw(_datetimes())
    state = JobState(
        flow_id=flow_id if flow_id is not None else draw(identifiers()),
        job_id=draw(st.uuids(version=4)).hex,
        status=status,
        created_at=created,
        started_at=draw(st.none() | _datetimes()),
        finished_at=draw(_datetimes()) if status.is_terminal else None,
        error=draw(st.text(min_size=1, max_size=30)) if failed else None,
        error_type=draw(st.sampled_from(["ValueError", "RoutineTimeoutError"])) if failed
        else None,
        error_traceback=draw(st.none() | st.text(max_size=60)) if failed else None,
        error_routine=draw(st.none() | st.sampled_from(ids)) if failed else None,
        entry_params=draw(st.none() | _small_payloads()),
        routine_states=draw(st.dictionaries(st.sampled_from(ids), _small_payloads(), max_size=3)),
        shared_data=draw(_small_payloads()),
        shared_log=draw(st.lists(json_values(max_leaves=4), max_size=5)),
        dropped=draw(st.dictionaries(st.sampled_from(ids).map(lambda r: f"{r}.input"),
                                     st.integers(1, 100), max_size=2)),
        discarded_emits=draw(st.integers(0, 100)),
        keep_open=draw(st.booleans()),
        entry_delivered=draw(st.booleans()),
        activation_seq=draw(st.integers(0, 10_000)),
    )
    for record in draw(st.lists(_records(ids), max_size=5)):
        state.execution_history.append(record)
    if status.is_terminal:
        state.unconsumed = draw(st.dictionaries(
            st.sampled_from(ids).map(lambda r: f"{r}.input"),
            st.lists(_small_payloads(2), min_size=1, max_size=2), max_size=2,
        ))
    else:  # what a saved, resumable job holds
        state.pending = draw(st.dictionaries(
            st.sampled_from(ids),
            st.dictionaries(identifiers(), st.lists(_small_payloads(2), min_size=1,
                                                    max_size=3), min_size=1, max_size=2),
            max_size=2,
        ))
        state.in_flight = draw(st.lists(
            st.fixed_dictionaries({
                "routine_id": st.sampled_from(ids),
                "slot_data": st.dictionaries(identifiers(), st.lists(_small_payloads(2),
                                                                     max_size=2), max_size=2),
                "message": st.none() | st.just({"policy": "immediate"}),
                "attempt": st.integers(0, 5),
                "seq": st.integers(1, 10_000),
                "retry_in": st.sampled_from([0.0, 0.5, 2.0]),
            }),
            max_size=2,
        ))
        state.policy_states = draw(st.dictionaries(
            st.sampled_from(ids), st.dictionaries(identifiers(), json_values(max_leaves=3),
                                                  min_size=1, max_size=2), max_size=2,
        ))
    return state


def job_states(
    *,
    flow_id: str | None = None,
    statuses: Sequence[str] | None = None,
    routine_ids: Sequence[str] = (),
) -> st.SearchStrategy[JobState]:
    """:class:`~routilux.JobState` values that round-trip through ``to_dict``/``from_dict``
    and ``save``/``load``: any status, history, routine states, shared data and log, and, for
    non-terminal ones, what a saved job holds (queued payloads, activations in flight or
    waiting for a retry, policy state).

    Args:
        flow_id: the flow id (default: drawn).
        statuses: status values to draw from (default: all).
        routine_ids: routine ids the state refers to (default: 1 to 4 drawn ids).
    """
    from routilux import JobStatus

    if statuses is None:
        statuses = [s.value for s in JobStatus]
    chosen = tuple(JobStatus(s).value for s in statuses)
    if not chosen:
        raise InvalidArgument("statuses must not be empty")
    return _job_states(flow_id, chosen, tuple(routine_ids))
