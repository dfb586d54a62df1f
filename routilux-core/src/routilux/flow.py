"""Flows: which routines exist and how their events are wired to slots (a template)."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs

from .error_handling import ErrorHandler
from .errors import (
    ConfigurationError,
    DuplicateRoutineError,
    FlowValidationError,
    UnknownEventError,
    UnknownRoutineError,
    UnknownSlotError,
    WiringError,
)
from .routine import EDIT_EPOCH, Routine

if TYPE_CHECKING:
    from ._plan import FlowPlan
    from .registry import TypeRegistry

__all__ = ["Connection", "Entry", "Flow", "ValidationIssue", "ValidationReport"]


@attrs.frozen(kw_only=True)
class Connection:
    """``source_id.event`` → ``target_id.slot``."""

    source_id: str
    event: str
    target_id: str
    slot: str

    def __str__(self) -> str:
        return f"{self.source_id}.{self.event} -> {self.target_id}.{self.slot}"


@attrs.frozen(kw_only=True)
class Entry:
    """Where ``exec``'s entry parameters are delivered."""

    routine_id: str
    slot: str


@attrs.frozen(kw_only=True)
class ValidationIssue:
    """One finding of :meth:`Flow.validate`.

    ``severity`` is ``"error"`` (the flow cannot run) or ``"info"`` (worth knowing, such as a
    cycle, which is allowed). ``path`` locates the problem (``routines.<id>...``).
    """

    severity: str
    code: str
    message: str
    path: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@attrs.frozen(kw_only=True)
class ValidationReport:
    """Everything :meth:`Flow.validate` found, errors and information together."""

    flow_id: str
    issues: tuple[ValidationIssue, ...]

    @property
    def errors(self) -> list[ValidationIssue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def infos(self) -> list[ValidationIssue]:
        return [i for i in self.issues if i.severity == "info"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_for_errors(self) -> None:
        """Raise :class:`FlowValidationError` listing every error, if there are any."""
        errors = self.errors
        if errors:
            lines = "\n".join(f"  - {e.path}: {e.message}" for e in errors)
            raise FlowValidationError(
                f"flow {self.flow_id!r} has {len(errors)} problem(s):\n{lines}",
                flow_id=self.flow_id,
                issues=errors,
            )


_flow_counter = itertools.count(1)


class Flow:
    """Routines and the connections between them.

    A flow is a template that can be executed many times at once, each execution with its own
    :class:`~routilux.job_state.JobState`. It stores no execution state. Editing a flow while
    jobs run is safe: running jobs keep the compiled plan they started with, new jobs get the
    edited one.

    Args:
        flow_id: the flow's name (generated if omitted).
        execution_timeout: seconds after which a job of this flow fails with
            ``JobTimeoutError`` (None: no limit).
        error_handler: the handler for routines that set none.
    """

    def __init__(
        self,
        flow_id: str | None = None,
        *,
        execution_timeout: float | None = None,
        error_handler: ErrorHandler | None = None,
    ) -> None:
        if flow_id is not None and (not isinstance(flow_id, str) or not flow_id):
            raise ConfigurationError(f"flow_id must be a non-empty string, got {flow_id!r}")
        self.flow_id = flow_id or f"flow-{uuid.uuid4().hex[:8]}"
        self._routines: dict[str, Routine] = {}
        self._connections: list[Connection] = []
        self._entry: Entry | None = None
        self._error_handler: ErrorHandler | None = None
        self._execution_timeout: float | None = None
        self._version = 0
        self._plan_lock = threading.Lock()
        self._plan: FlowPlan | None = None
        self._plan_stamp: tuple[int, int] | None = None
        self._plan_epoch = -1
        if error_handler is not None:
            self.set_error_handler(error_handler)
        if execution_timeout is not None:
            self.set_execution_timeout(execution_timeout)

    # -- structure -----------------------------------------------------------------------

    def add_routine(self, routine: Routine, routine_id: str | None = None) -> str:
        """Add ``routine`` under ``routine_id`` (unique in this flow); returns the id."""
        if not isinstance(routine, Routine):
            raise ConfigurationError(
                f"flow {self.flow_id!r}: add_routine needs a Routine instance, got {routine!r}"
            )
        if routine_id is None:
            routine_id = f"{type(routine).__name__.lower()}_{next(_flow_counter)}"
        if not isinstance(routine_id, str) or not routine_id:
            raise ConfigurationError(
                f"flow {self.flow_id!r}: routine id must be a non-empty string, "
                f"got {routine_id!r}"
            )
        if routine_id in self._routines:
            raise DuplicateRoutineError(
                f"flow {self.flow_id!r} already has a routine with id {routine_id!r}; "
                "choose another id",
                flow_id=self.flow_id,
                routine_id=routine_id,
            )
        self._routines[routine_id] = routine
        self._touch()
        return routine_id

    def get_routine(self, routine_id: str) -> Routine:
        try:
            return self._routines[routine_id]
        except KeyError:
            raise self._unknown_routine(routine_id) from None

    def _unknown_routine(self, routine_id: str) -> UnknownRoutineError:
        known = ", ".join(self._routines) or "none"
        return UnknownRoutineError(
            f"flow {self.flow_id!r} has no routine {routine_id!r} (routines: {known})",
            flow_id=self.flow_id,
            routine_id=routine_id,
        )

    def connect(self, source_id: str, event: str, target_id: str, slot: str) -> Connection:
        """Route every emit of ``source_id``'s ``event`` to ``target_id``'s ``slot``.

        One event may feed many slots and one slot may be fed by many events.
        """
        source = self.get_routine(source_id)
        target = self.get_routine(target_id)
        if event not in source.events:
            known = ", ".join(source.events) or "none"
            raise UnknownEventError(
                f"flow {self.flow_id!r}: routine {source_id!r} has no event {event!r} "
                f"(events: {known})",
                routine_id=source_id,
                event=event,
            )
        if slot not in target.slots:
            known = ", ".join(target.slots) or "none"
            raise UnknownSlotError(
                f"flow {self.flow_id!r}: routine {target_id!r} has no slot {slot!r} "
                f"(slots: {known})",
                routine_id=target_id,
                slot=slot,
            )
        conn = Connection(source_id=source_id, event=event, target_id=target_id, slot=slot)
        if conn in self._connections:
            raise WiringError(f"flow {self.flow_id!r}: {conn} is already connected")
        self._connections.append(conn)
        self._touch()
        return conn

    def disconnect(self, source_id: str, event: str, target_id: str, slot: str) -> None:
        conn = Connection(source_id=source_id, event=event, target_id=target_id, slot=slot)
        try:
            self._connections.remove(conn)
        except ValueError:
            raise WiringError(f"flow {self.flow_id!r}: {conn} is not connected") from None
        self._touch()

    def set_entry(self, routine_id: str, slot: str) -> None:
        """Deliver ``exec``'s entry parameters to ``routine_id``'s ``slot``."""
        routine = self.get_routine(routine_id)
        if slot not in routine.slots:
            known = ", ".join(routine.slots) or "none"
            raise UnknownSlotError(
                f"flow {self.flow_id!r}: entry routine {routine_id!r} has no slot {slot!r} "
                f"(slots: {known})",
                routine_id=routine_id,
                slot=slot,
            )
        self._entry = Entry(routine_id=routine_id, slot=slot)
        self._touch()

    def set_error_handler(self, handler: ErrorHandler | None) -> None:
        """The handler for routines of this flow that set none (default: STOP)."""
        if handler is not None and not isinstance(handler, ErrorHandler):
            raise ConfigurationError(
                f"flow {self.flow_id!r}: set_error_handler needs an ErrorHandler, got {handler!r}"
            )
        self._error_handler = handler
        self._touch()

    def set_execution_timeout(self, seconds: float | None) -> None:
        if seconds is not None and (
            not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0
        ):
            raise ConfigurationError(
                f"flow {self.flow_id!r}: execution_timeout must be > 0 seconds, got {seconds!r}"
            )
        self._execution_timeout = None if seconds is None else float(seconds)
        self._touch()

    @property
    def routines(self) -> Mapping[str, Routine]:
        return MappingProxyType(self._routines)

    @property
    def connections(self) -> tuple[Connection, ...]:
        return tuple(self._connections)

    @property
    def entry(self) -> Entry | None:
        return self._entry

    @property
    def error_handler(self) -> ErrorHandler | None:
        return self._error_handler

    @property
    def execution_timeout(self) -> float | None:
        return self._execution_timeout

    def _touch(self) -> None:
        self._version += 1
        EDIT_EPOCH[0] += 1

    # -- checking and compiling ----------------------------------------------------------

    def validate(self) -> ValidationReport:
        """Check the flow and report every finding at once.

        Errors (the flow cannot run): no routines, a routine without logic, an entry that
        ``exec`` could not decide. Information: cycles (allowed: feedback loops are a feature),
        routines unreachable from the entry, events connected nowhere.
        """
        from ._plan import analyse

        return ValidationReport(flow_id=self.flow_id, issues=tuple(analyse(self)))

    def plan(self) -> FlowPlan:
        """The compiled, immutable plan for new jobs (rebuilt after any edit)."""
        plan = self._plan
        epoch = EDIT_EPOCH[0]
        if plan is not None and self._plan_epoch == epoch:
            return plan  # nothing was edited anywhere since this plan was checked
        from ._plan import compile_flow

        stamp = (self._version, sum(r._version for r in self._routines.values()))
        with self._plan_lock:
            if self._plan is None or self._plan_stamp != stamp:
                self._plan = compile_flow(self)
                self._plan_stamp = stamp
            self._plan_epoch = epoch
            return self._plan

    # -- saving and loading --------------------------------------------------------------

    def to_dict(self, types: TypeRegistry | None = None) -> dict[str, Any]:
        """The flow as a document: routine types by registered name, their config, policies
        with parameters, error handlers, connections by routine id, entry and timeout.

        Raises ``SerializationError`` (listing every problem) for what cannot be rebuilt from
        data, such as a plain ``Routine`` given its logic with ``set_logic``.
        """
        from ._flow_document import flow_to_dict

        return flow_to_dict(self, types)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], types: TypeRegistry | None = None) -> Flow:
        """Build a flow from a document; ``FlowValidationError`` lists every problem with its
        path. Names are looked up in the type registry only; nothing is imported."""
        from ._flow_document import flow_from_dict

        return flow_from_dict(data, types)

    def to_json(self, types: TypeRegistry | None = None, **kwargs: Any) -> str:
        from ._flow_document import flow_to_json

        return flow_to_json(self, types, **kwargs)

    @classmethod
    def from_json(cls, text: str | bytes, types: TypeRegistry | None = None) -> Flow:
        from ._flow_document import flow_from_json

        return flow_from_json(text, types)

    def to_yaml(self, types: TypeRegistry | None = None) -> str:
        """The document as YAML (needs the ``routilux[yaml]`` extra)."""
        from ._flow_document import flow_to_yaml

        return flow_to_yaml(self, types)

    @classmethod
    def from_yaml(cls, text: str | bytes, types: TypeRegistry | None = None) -> Flow:
        """Build a flow from YAML read with PyYAML's safe loader (``routilux[yaml]``)."""
        from ._flow_document import flow_from_yaml

        return flow_from_yaml(text, types)

    def describe(self) -> dict[str, Any]:
        """A plain summary of the structure (routines, slots, events, connections)."""
        return {
            "flow_id": self.flow_id,
            "routines": {
                rid: {
                    "type": type(r).type_name,
                    "slots": list(r.slots),
                    "events": {n: list(e.output_params) for n, e in r.events.items()},
                    "policy": (r.activation_policy.name if r.activation_policy else "immediate"),
                    "config": dict(r.config),
                }
                for rid, r in self._routines.items()
            },
            "connections": [attrs.asdict(c) for c in self._connections],
            "entry": attrs.asdict(self._entry) if self._entry else None,
        }

    def __repr__(self) -> str:
        return (
            f"<Flow {self.flow_id!r} routines={len(self._routines)} "
            f"connections={len(self._connections)}>"
        )
