"""What a failure does: error strategies and the handler that carries their parameters."""

from __future__ import annotations

import enum
import random
from typing import Any

import attrs

from .errors import ConfigurationError

__all__ = ["DEFAULT_ERROR_HANDLER", "ErrorHandler", "ErrorStrategy"]


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
        strategy: what a failure does.
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

    strategy: ErrorStrategy = attrs.field(default=ErrorStrategy.STOP, converter=_to_strategy)
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
        if self.strategy is ErrorStrategy.RETRY:
            if attempt < self.max_retries and isinstance(exc, self.retryable_exceptions):
                return ErrorStrategy.RETRY
            return ErrorStrategy.STOP if self.is_critical else self.fallback
        return self.strategy


DEFAULT_ERROR_HANDLER = ErrorHandler(strategy=ErrorStrategy.STOP)
"""The handler that applies when neither the routine nor the flow sets one."""
