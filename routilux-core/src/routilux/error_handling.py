"""What a failure does: error strategies and the handler that carries their parameters."""

from __future__ import annotations

import enum
import random
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .job_state import JobState

__all__ = [
    "DEFAULT_ERROR_HANDLER",
    "CustomErrorStrategy",
    "ErrorHandler",
    "ErrorStrategy",
    "Failure",
]


class ErrorStrategy(enum.StrEnum):
    """The built-in answers to "a routine's logic raised".

    STOP: the job fails, stops taking work and records the error with its traceback.
    CONTINUE: the error is recorded (the activation counts as failed) and the job goes on.
    SKIP: the activation is recorded as skipped (not as an error) and the job goes on.
    RETRY: the activation re-runs with the same input after a backoff delay, on a timer.
    """

    STOP = "stop"
    CONTINUE = "continue"
    RETRY = "retry"
    SKIP = "skip"


def _to_strategy(value: ErrorStrategy | str) -> ErrorStrategy:
    if isinstance(value, ErrorStrategy):
        return value
    try:
        return ErrorStrategy(str(value).lower())
    except ValueError:
        known = ", ".join(s.value for s in ErrorStrategy)
        raise ConfigurationError(
            f"unknown error strategy {value!r}; use one of: {known}"
        ) from None


_STRATEGY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,99}")


def _to_strategy_or_name(value: ErrorStrategy | str) -> ErrorStrategy | str:
    """A built-in strategy, or the name of a custom one (resolved when a job starts)."""
    if isinstance(value, ErrorStrategy):
        return value
    if not isinstance(value, str):
        raise ConfigurationError(f"error strategy must be a name, got {value!r}")
    try:
        return ErrorStrategy(value.strip().lower())
    except ValueError:
        pass
    name = value.strip()
    if not _STRATEGY_NAME.fullmatch(name):
        raise ConfigurationError(
            f"{value!r} is not a valid error strategy name; use stop, continue, retry, skip or "
            "the registered name of a custom strategy (letters, digits, '_', '.', ':', '-')"
        )
    return name


@attrs.frozen(kw_only=True)
class Failure:
    """What a custom error strategy is told about one failed activation.

    Attributes:
        job_state: the failing job's state (write to it to record what you did).
        routine_id: the routine whose activation failed.
        error: the exception (``RoutineTimeoutError`` for a timeout,
            ``ActivationPolicyError`` for a policy that raised).
        attempt: 0 for the first run, n for the n-th retry.
        slot_data: the input of the activation (empty for a policy failure).
        handler: the routine's error handler (its retry parameters apply to RETRY).
    """

    job_state: JobState
    routine_id: str
    error: BaseException
    attempt: int
    slot_data: Mapping[str, list[dict[str, Any]]]
    handler: ErrorHandler


@runtime_checkable
class CustomErrorStrategy(Protocol):
    """A strategy provided by a plugin and chosen by name: ``ErrorHandler(strategy="name")``.

    ``handle`` runs under the job's lock, on the thread that noticed the failure: keep it short,
    never block, and do not call the runtime for the same job. It may record things in
    ``failure.job_state`` and returns what happens next as a built-in strategy: STOP, CONTINUE,
    SKIP, or RETRY (honoured with the handler's retry parameters while retries remain, then the
    handler's fallback). If ``handle`` raises, the job fails with that error.
    """

    def handle(self, failure: Failure) -> ErrorStrategy: ...


def _non_negative(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise ConfigurationError(f"ErrorHandler.{attribute.name} must be >= 0, got {value!r}")


def _positive_or_none(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ConfigurationError(
            f"ErrorHandler.{attribute.name} must be a number of seconds > 0 or None, "
            f"got {value!r}"
        )


def _exception_types(value: Any) -> tuple[type[BaseException], ...]:
    if isinstance(value, type):
        value = (value,)
    types = tuple(value)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise ConfigurationError(
                f"ErrorHandler.retryable_exceptions must hold exception classes, got {t!r}"
            )
    return types


@attrs.frozen(kw_only=True)
class ErrorHandler:
    """How failures of a routine (or of every routine of a flow) are handled.

    Set it on a flow with ``flow.set_error_handler`` or on one routine with
    ``routine.set_error_handler``; the routine's handler wins over the flow's, which wins over
    the default (STOP).

    Args:
        strategy: what a failure does: a built-in :class:`ErrorStrategy` (or its name), or the
            registered name of a custom strategy provided by a plugin (checked when a job
            starts; see :class:`CustomErrorStrategy`).
        max_retries: RETRY only: how many times an activation is re-run after its first failure.
        retry_delay: RETRY only: seconds before the first retry.
        retry_backoff: RETRY only: multiplier applied per further attempt, so attempt ``n``
            (1-based) waits ``retry_delay * retry_backoff ** (n - 1)``.
        max_delay: RETRY only: upper bound on any single delay.
        jitter: RETRY only: scale each delay by a random factor in [0.5, 1.0].
        retryable_exceptions: RETRY only: exceptions worth retrying; others fall through.
        fallback: what applies when retries are exhausted or the exception is not retryable
            (STOP by default; CONTINUE for optional routines).
        is_critical: a critical routine always falls back to STOP.
        timeout: seconds one activation may run before it fails with ``RoutineTimeoutError``
            (handled by this same handler), for routines that set no ``timeout`` config; on a
            flow handler it is the default of every routine that uses the flow's handler.
    """

    strategy: ErrorStrategy | str = attrs.field(
        default=ErrorStrategy.STOP, converter=_to_strategy_or_name
    )
    max_retries: int = attrs.field(default=3, validator=_non_negative)
    retry_delay: float = attrs.field(default=1.0, validator=_non_negative)
    retry_backoff: float = attrs.field(default=2.0, validator=_non_negative)
    max_delay: float | None = attrs.field(default=None, validator=_non_negative)
    jitter: bool = False
    retryable_exceptions: tuple[type[BaseException], ...] = attrs.field(
        default=(Exception,), converter=_exception_types
    )
    fallback: ErrorStrategy = attrs.field(default=ErrorStrategy.STOP, converter=_to_strategy)
    is_critical: bool = False
    timeout: float | None = attrs.field(default=None, validator=_positive_or_none)

    def __attrs_post_init__(self) -> None:
        if self.fallback is ErrorStrategy.RETRY:
            raise ConfigurationError(
                "ErrorHandler.fallback cannot be RETRY; use STOP, CONTINUE or SKIP"
            )

    def delay_for(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1 for the first retry)."""
        delay = self.retry_delay * (self.retry_backoff ** max(0, attempt - 1))
        if self.max_delay is not None:
            delay = min(delay, self.max_delay)
        if self.jitter:
            delay *= random.uniform(0.5, 1.0)
        return delay

    def decide(self, exc: BaseException, attempt: int) -> ErrorStrategy:
        """The strategy that applies to ``exc`` raised by attempt ``attempt`` (0 = first run).

        RETRY is returned only while retries remain and ``exc`` is retryable; otherwise the
        fallback (always STOP for a critical routine).
        """
        return self.settle(self.strategy, exc, attempt)

    @property
    def is_custom(self) -> bool:
        """True when ``strategy`` names a custom (plugin) strategy."""
        return not isinstance(self.strategy, ErrorStrategy)

    def settle(
        self, wanted: ErrorStrategy | str, exc: BaseException, attempt: int
    ) -> ErrorStrategy:
        """Turn the strategy a failure asks for into what happens: RETRY only while retries
        remain and ``exc`` is retryable, else the fallback (STOP for a critical routine)."""
        if not isinstance(wanted, ErrorStrategy):
            raise ConfigurationError(
                f"custom error strategy {wanted!r} must be resolved by the runtime; "
                "ErrorHandler.decide only answers for built-in strategies"
            )
        if wanted is ErrorStrategy.RETRY:
            if attempt < self.max_retries and isinstance(exc, self.retryable_exceptions):
                return ErrorStrategy.RETRY
            return ErrorStrategy.STOP if self.is_critical else self.fallback
        return wanted


DEFAULT_ERROR_HANDLER = ErrorHandler(strategy=ErrorStrategy.STOP)
"""The handler that applies when neither the routine nor the flow sets one."""
