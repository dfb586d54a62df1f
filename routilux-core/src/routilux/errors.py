"""The one error hierarchy of Routilux.

Every failure a user can cause raises a subclass of :class:`RoutiluxError`. Each subclass also
inherits the builtin exception a caller would naturally catch (``LookupError`` for unknown
names, ``ValueError`` for bad configuration, ``RuntimeError`` for illegal job operations,
``TimeoutError`` for timeouts), and carries its context as attributes so callers never need to
parse messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "ActivationPolicyError",
    "ClusterLostError",
    "ConfigurationError",
    "DuplicateRoutineError",
    "EmitOutsideActivationError",
    "EntryError",
    "ExecutorError",
    "FlowValidationError",
    "IllegalTransitionError",
    "JobNotAcceptingWorkError",
    "JobTimeoutError",
    "PauseTimeoutError",
    "QueueFullError",
    "RemoteLogicError",
    "RoutiluxError",
    "RoutineTimeoutError",
    "RuntimeClosedError",
    "SerializationError",
    "StoreCorruptError",
    "StoreError",
    "StoreResumeError",
    "StoreVersionError",
    "UnknownEventError",
    "UnknownFlowError",
    "UnknownJobError",
    "UnknownRoutineError",
    "UnknownSlotError",
    "UnknownTypeError",
    "WiringError",
    "WorkerLostError",
]


class RoutiluxError(Exception):
    """Root of every error Routilux raises on purpose."""


class ConfigurationError(RoutiluxError, ValueError):
    """A routine, flow, policy or runtime was configured with a value that cannot work."""


class WiringError(ConfigurationError):
    """A connection between routines cannot be made as asked."""


class DuplicateRoutineError(ConfigurationError):
    """A routine id is used twice in one flow."""

    def __init__(self, message: str, *, flow_id: str, routine_id: str) -> None:
        super().__init__(message)
        self.flow_id = flow_id
        self.routine_id = routine_id


class _UnknownName(RoutiluxError, LookupError):
    """Base for "no such thing" errors; ``str()`` is the message, not a repr of the key."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownFlowError(_UnknownName):
    """No flow is registered under the requested name."""

    def __init__(self, message: str, *, flow: str) -> None:
        super().__init__(message)
        self.flow = flow


class UnknownRoutineError(_UnknownName):
    """A flow has no routine with the requested id."""

    def __init__(self, message: str, *, flow_id: str | None, routine_id: str) -> None:
        super().__init__(message)
        self.flow_id = flow_id
        self.routine_id = routine_id


class UnknownSlotError(_UnknownName):
    """A routine has no slot with the requested name."""

    def __init__(self, message: str, *, routine_id: str | None, slot: str) -> None:
        super().__init__(message)
        self.routine_id = routine_id
        self.slot = slot


class UnknownEventError(_UnknownName):
    """A routine has no event with the requested name."""

    def __init__(self, message: str, *, routine_id: str | None, event: str) -> None:
        super().__init__(message)
        self.routine_id = routine_id
        self.event = event


class UnknownJobError(_UnknownName):
    """The runtime holds no job with the requested id (never started, or evicted)."""

    def __init__(self, message: str, *, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class UnknownTypeError(_UnknownName):
    """Serialized data names a type that is not registered."""

    def __init__(self, message: str, *, type_name: str, provider: str | None = None) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.provider = provider


class EntryError(ConfigurationError):
    """``exec`` cannot decide where a flow's entry parameters go."""

    def __init__(self, message: str, *, flow_id: str) -> None:
        super().__init__(message)
        self.flow_id = flow_id


class FlowValidationError(ConfigurationError):
    """A flow has one or more problems; ``issues`` lists every one of them."""

    def __init__(self, message: str, *, flow_id: str, issues: Sequence[Any]) -> None:
        super().__init__(message)
        self.flow_id = flow_id
        self.issues = list(issues)


class SerializationError(RoutiluxError, ValueError):
    """Data could not be turned into, or read back from, its serialized form.

    ``path`` locates the problem in the data (``pending.b.input[3].when``); ``routine_id`` and
    ``slot`` name the routine and slot a bad payload belongs to, when known; ``issues`` lists
    every problem when several were found at once.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        routine_id: str | None = None,
        slot: str | None = None,
        issues: Sequence[Any] = (),
    ) -> None:
        super().__init__(message)
        self.path = path
        self.routine_id = routine_id
        self.slot = slot
        self.issues = list(issues)


class IllegalTransitionError(RoutiluxError, RuntimeError):
    """A job was asked to move to a status it cannot reach from its current one."""

    def __init__(self, message: str, *, job_id: str, status: str, target: str) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.status = status
        self.target = target


class JobNotAcceptingWorkError(RoutiluxError, RuntimeError):
    """Work was posted to a job that is finished (completed, failed or cancelled)."""

    def __init__(self, message: str, *, job_id: str, status: str) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.status = status


class QueueFullError(RoutiluxError, RuntimeError):
    """A slot queue stayed full: the payload was not accepted (and nothing was dropped)."""

    def __init__(self, message: str, *, job_id: str, routine_id: str, slot: str) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.routine_id = routine_id
        self.slot = slot


class ActivationPolicyError(RoutiluxError, RuntimeError):
    """An activation policy raised while deciding whether a routine should run."""

    def __init__(self, message: str, *, routine_id: str, policy: str) -> None:
        super().__init__(message)
        self.routine_id = routine_id
        self.policy = policy


class EmitOutsideActivationError(RoutiluxError, RuntimeError):
    """``Routine.emit`` was called where no activation of that routine is running."""


class RoutineTimeoutError(RoutiluxError, TimeoutError):
    """An activation ran longer than its routine's timeout."""

    def __init__(self, message: str, *, routine_id: str, timeout: float) -> None:
        super().__init__(message)
        self.routine_id = routine_id
        self.timeout = timeout


class JobTimeoutError(RoutiluxError, TimeoutError):
    """A job ran longer than its execution timeout."""

    def __init__(self, message: str, *, job_id: str, timeout: float) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.timeout = timeout


class PauseTimeoutError(RoutiluxError, TimeoutError):
    """``pause_job`` gave up waiting for in-flight activations; ``running`` names them."""

    def __init__(self, message: str, *, job_id: str, running: Sequence[str]) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.running = list(running)


class RuntimeClosedError(RoutiluxError, RuntimeError):
    """The runtime was shut down and takes no new jobs."""


class StoreError(RoutiluxError, RuntimeError):
    """A durable job store cannot be used as asked; ``path`` names its file when it has one."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class StoreCorruptError(StoreError):
    """The store's database is damaged, or is not a Routilux job store at all."""


class StoreVersionError(StoreError):
    """The store was written by a newer Routilux (its schema version is unknown here)."""

    def __init__(self, message: str, *, path: str | None, found: int, supported: int) -> None:
        super().__init__(message, path=path)
        self.found = found
        self.supported = supported


class StoreResumeError(StoreError):
    """A stored job cannot be rebuilt (e.g. its flow names types no longer registered).

    Nothing was started: the job stays in the store exactly as it was.
    """

    def __init__(self, message: str, *, job_id: str, path: str | None = None) -> None:
        super().__init__(message, path=path)
        self.job_id = job_id


class ExecutorError(RoutiluxError, RuntimeError):
    """An executor could not run an activation (see :mod:`routilux.executors`).

    ``routine_id`` names the routine whose activation was affected, ``executor`` the executor's
    name (for example ``"dask"``).
    """

    def __init__(self, message: str, *, routine_id: str | None, executor: str) -> None:
        super().__init__(message)
        self.routine_id = routine_id
        self.executor = executor

    def __reduce__(self) -> Any:
        return (_rebuild_executor_error, (type(self), str(self), self.routine_id, self.executor))


def _rebuild_executor_error(
    cls: type[ExecutorError], message: str, routine_id: str | None, executor: str
) -> ExecutorError:
    return cls(message, routine_id=routine_id, executor=executor)


class WorkerLostError(ExecutorError):
    """The remote worker running an activation went away before it answered.

    The activation may or may not have run: its error handler decides (RETRY re-runs it, so
    remote execution is at-least-once). Retryable by default (``retryable_exceptions`` is
    ``(Exception,)`` unless narrowed).
    """


class ClusterLostError(ExecutorError):
    """The remote cluster itself is unreachable (scheduler gone, client closed).

    Not handed to the error handler: the executor's ``on_cluster_lost`` setting decides whether
    the job fails with this error or pauses until it is resumed.
    """


class RemoteLogicError(ExecutorError):
    """Routine logic raised on a remote worker an exception that could not be sent back as
    itself (it does not pickle); the message carries its type, text and remote traceback."""

    def __init__(
        self, message: str, *, routine_id: str | None, executor: str, remote_type: str = ""
    ) -> None:
        super().__init__(message, routine_id=routine_id, executor=executor)
        self.remote_type = remote_type

    def __reduce__(self) -> Any:
        return (
            _rebuild_remote_logic_error,
            (str(self), self.routine_id, self.executor, self.remote_type),
        )


def _rebuild_remote_logic_error(
    message: str, routine_id: str | None, executor: str, remote_type: str
) -> RemoteLogicError:
    return RemoteLogicError(
        message, routine_id=routine_id, executor=executor, remote_type=remote_type
    )
