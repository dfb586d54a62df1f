"""Routines: units of logic with input slots and output events.

A routine is a *template*: it describes slots, events, configuration, logic, activation policy
and error handling. It holds no execution state; every execution (job) keeps its own queues,
policy state and routine state, so one routine object can serve many jobs at once.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from ._context import CURRENT
from .activation_policies import ActivationPolicy
from .error_handling import ErrorHandler, ErrorStrategy
from .errors import (
    ConfigurationError,
    EmitOutsideActivationError,
    UnknownEventError,
    UnknownSlotError,
)
from .event import Event
from .registry import routine_types
from .slot import DEFAULT_MAX_QUEUE_LENGTH, Overflow, Slot

__all__ = ["Logic", "Routine"]

Logic = Callable[[dict[str, list[dict[str, Any]]], Mapping[str, Any], Any], Any]
"""``logic(slot_data, policy_message, job_state)``."""


EDIT_EPOCH = [0]
"""Bumped by every edit of any routine or flow, so ``Flow.plan()`` can skip re-checking
when nothing anywhere changed (the common case on the ``exec`` path)."""


def _check_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{kind} name must be a non-empty string, got {name!r}")
    return name


class Routine:
    """Base class of every routine.

    Subclasses take **no constructor arguments** (so they can be recreated from their type name
    and configuration) and declare their interface in ``__init__``::

        class Upper(Routine):
            def __init__(self):
                super().__init__()
                self.add_slot("input")
                self.add_event("output", ["text"])

                def logic(slot_data, policy_message, job_state):
                    for payload in slot_data["input"]:
                        self.emit("output", text=payload["text"].upper())

                self.set_logic(logic)

    Logic must not modify instance attributes: keep execution state in the ``job_state``.

    Each subclass is registered under ``type_name`` (default ``module:QualName``) when defined.
    """

    type_name: ClassVar[str] = "routilux.routine:Routine"

    def __init_subclass__(cls, register: bool = True, **kwargs: Any) -> None:
        """Register the subclass under its ``type_name``; ``class Base(Routine,
        register=False)`` keeps an abstract base class out of the registry."""
        super().__init_subclass__(**kwargs)
        if "type_name" not in cls.__dict__:
            cls.type_name = f"{cls.__module__}:{cls.__qualname__}"
        if register:
            routine_types.register(cls.type_name, cls)

    def __init__(self) -> None:
        self._slots: dict[str, Slot] = {}
        self._events: dict[str, Event] = {}
        self._config: dict[str, Any] = {}
        self._logic: Logic | None = None
        self._is_async = False
        self._activation_policy: ActivationPolicy | None = None
        self._error_handler: ErrorHandler | None = None
        self._max_concurrency = 1
        self._version = 0

    def _touch(self) -> None:
        """Record an edit: flows recompile their plan for new jobs."""
        self._version += 1
        EDIT_EPOCH[0] += 1

    # -- interface -----------------------------------------------------------------------

    def add_slot(
        self,
        name: str,
        *,
        max_queue_length: int = DEFAULT_MAX_QUEUE_LENGTH,
        overflow: Overflow | str = Overflow.BLOCK,
        block_timeout: float = 30.0,
    ) -> Slot:
        """Declare an input slot.

        Args:
            name: unique among this routine's slots.
            max_queue_length: bound of the slot's queue in each job.
            overflow: what a full queue does (``"block"``, ``"fail"`` or ``"drop_oldest"``).
            block_timeout: seconds a producer waits for room under ``"block"``.
        """
        _check_name("slot", name)
        if name in self._slots:
            raise ConfigurationError(
                f"{type(self).__qualname__} already has a slot named {name!r}; slot names must "
                "be unique per routine"
            )
        try:
            slot = Slot(
                name=name,
                routine=self,
                max_queue_length=max_queue_length,
                overflow=overflow,
                block_timeout=block_timeout,
            )
        except ValueError as exc:
            raise ConfigurationError(f"slot {name!r}: {exc}") from None
        self._slots[name] = slot
        self._touch()
        return slot

    def add_event(self, name: str, output_params: Iterable[str] | None = None) -> Event:
        """Declare an output event carrying the keyword arguments named in ``output_params``."""
        _check_name("event", name)
        if name in self._events:
            raise ConfigurationError(
                f"{type(self).__qualname__} already has an event named {name!r}; event names "
                "must be unique per routine"
            )
        params: tuple[str, ...] = (
            (output_params,) if isinstance(output_params, str) else tuple(output_params or ())
        )
        event = Event(name=name, output_params=params, routine=self)
        self._events[name] = event
        self._touch()
        return event

    @property
    def slots(self) -> Mapping[str, Slot]:
        """The declared slots, in declaration order (read-only)."""
        return MappingProxyType(self._slots)

    @property
    def events(self) -> Mapping[str, Event]:
        """The declared events, in declaration order (read-only)."""
        return MappingProxyType(self._events)

    def get_slot(self, name: str) -> Slot:
        try:
            return self._slots[name]
        except KeyError:
            known = ", ".join(self._slots) or "none"
            raise UnknownSlotError(
                f"{type(self).__qualname__} has no slot {name!r} (slots: {known})",
                routine_id=None,
                slot=name,
            ) from None

    def get_event(self, name: str) -> Event:
        try:
            return self._events[name]
        except KeyError:
            known = ", ".join(self._events) or "none"
            raise UnknownEventError(
                f"{type(self).__qualname__} has no event {name!r} (events: {known})",
                routine_id=None,
                event=name,
            ) from None

    # -- configuration -------------------------------------------------------------------

    def set_config(self, **config: Any) -> None:
        """Merge static configuration values (read by logic with :meth:`get_config`)."""
        self._config.update(config)
        self._touch()

    def get_config(self, key: str, default: Any = None) -> Any:
        return self._config.get(key, default)

    def validate_config(self) -> None:
        """Check that the configuration can work; raise ``ConfigurationError`` if not.

        Called by ``Flow.validate()`` and when a flow is compiled for a job, so a problem is
        reported before anything runs. The default accepts anything; routine packs override
        it (for example to require keys).
        """
        return None

    @property
    def config(self) -> Mapping[str, Any]:
        """The static configuration (read-only view)."""
        return MappingProxyType(self._config)

    def set_logic(self, logic: Logic) -> None:
        """Set the function run for each activation: ``logic(slot_data, policy_message,
        job_state)``.

        An ``async def`` function (or an object whose ``__call__`` is one) makes this an
        *async routine*: each activation runs as a coroutine on the runtime's event loop
        instead of holding a worker thread while it awaits (see docs/async.md). Whether the
        logic is async is decided here, once.
        """
        if not callable(logic):
            raise ConfigurationError(f"set_logic needs a callable, got {logic!r}")
        call = None if inspect.isroutine(logic) else type(logic).__call__
        self._is_async = inspect.iscoroutinefunction(logic) or inspect.iscoroutinefunction(call)
        self._logic = logic
        self._touch()

    @property
    def is_async(self) -> bool:
        """Whether the logic is a coroutine function (run on the runtime's event loop)."""
        return self._is_async

    @property
    def logic(self) -> Logic | None:
        return self._logic

    def set_activation_policy(self, policy: ActivationPolicy) -> None:
        """Choose when this routine runs (default: :func:`~routilux.activation_policies.
        immediate_policy`)."""
        if not isinstance(policy, ActivationPolicy):
            raise ConfigurationError(
                f"{type(self).__qualname__}: set_activation_policy needs an ActivationPolicy "
                f"(for example immediate_policy()), got {policy!r}"
            )
        self._activation_policy = policy
        self._touch()

    @property
    def activation_policy(self) -> ActivationPolicy | None:
        return self._activation_policy

    def set_error_handler(self, handler: ErrorHandler | None) -> None:
        """Set this routine's error handler; it wins over the flow's."""
        if handler is not None and not isinstance(handler, ErrorHandler):
            raise ConfigurationError(
                f"{type(self).__qualname__}: set_error_handler needs an ErrorHandler, "
                f"got {handler!r}"
            )
        self._error_handler = handler
        self._touch()

    @property
    def error_handler(self) -> ErrorHandler | None:
        return self._error_handler

    def set_as_optional(
        self, *, max_retries: int = 0, retry_delay: float = 1.0, **options: Any
    ) -> None:
        """Failures of this routine are recorded and the job goes on (after ``max_retries``
        retries, if any).

        ``options`` are further :class:`ErrorHandler` fields (``retry_backoff``,
        ``max_delay``, ``jitter``, ``retryable_exceptions``, ``timeout``).
        """
        if max_retries:
            self.set_error_handler(
                ErrorHandler(
                    strategy=ErrorStrategy.RETRY,
                    max_retries=max_retries,
                    retry_delay=retry_delay,
                    fallback=ErrorStrategy.CONTINUE,
                    **options,
                )
            )
        else:
            self.set_error_handler(ErrorHandler(strategy=ErrorStrategy.CONTINUE, **options))

    def set_as_critical(
        self, *, max_retries: int = 3, retry_delay: float = 1.0, **options: Any
    ) -> None:
        """Retry failures of this routine, then fail the job (whatever the flow's handler).

        ``options`` are further :class:`ErrorHandler` fields (``retry_backoff``,
        ``max_delay``, ``jitter``, ``retryable_exceptions``, ``timeout``).
        """
        self.set_error_handler(
            ErrorHandler(
                strategy=ErrorStrategy.RETRY,
                max_retries=max_retries,
                retry_delay=retry_delay,
                is_critical=True,
                **options,
            )
        )

    def set_max_concurrency(self, n: int) -> None:
        """Allow up to ``n`` activations of this routine to run at once within one job.

        The default, 1, runs activations of a routine one after another per job.
        """
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigurationError(f"max concurrency must be an integer >= 1, got {n!r}")
        self._max_concurrency = n
        self._touch()

    @property
    def max_concurrency(self) -> int:
        return self._max_concurrency

    # -- inside logic --------------------------------------------------------------------

    def emit(self, event: str, **payload: Any) -> None:
        """Send ``payload`` (the keyword arguments) out of ``event`` to every connected slot.

        Works from logic on any worker: the current job comes from the activation context.
        The payload dict is shared by all receivers, not copied: treat it as read-only.
        """
        ctx = CURRENT.get()
        if ctx is None:
            raise EmitOutsideActivationError(
                f"{type(self).__qualname__}.emit({event!r}) was called outside an activation; "
                "emit only from the routine's logic while a runtime runs it"
            )
        if ctx.routine is self:
            ctx.job.emit(ctx.routine_index, event, payload, ctx)
        else:
            ctx.job.emit_from(self, event, payload, ctx)

    def send_output(self, output_type: str, **data: Any) -> None:
        """Record an execution-specific output in the job's ``output_log`` and hand it to the
        job's ``output_handler``, if one is set."""
        ctx = CURRENT.get()
        if ctx is None:
            raise EmitOutsideActivationError(
                f"{type(self).__qualname__}.send_output was called outside an activation"
            )
        job = ctx.job
        record = {
            "routine_id": job.plan.routine_ids[ctx.routine_index],
            "output_type": output_type,
            "data": data,
            "timestamp": time.time(),
        }
        job.state.output_log.append(record)
        handler = job.state.output_handler
        if handler is not None:
            handler(record)

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} slots={list(self._slots)} events={list(self._events)}>"
