"""Errors raised by the builtin routines.

Both classes sit in Routilux's one error hierarchy (``RoutiluxError``) and also subclass
``ValueError``, the builtin a caller would catch for bad values.
"""

from __future__ import annotations

from routilux.errors import ConfigurationError, RoutiluxError

__all__ = ["InvalidConfigError", "PayloadError"]


class InvalidConfigError(ConfigurationError):
    """A builtin routine was given a configuration value that cannot work.

    Raised by ``set_config`` (so a bad flow fails while it is being built, not while it runs)
    and by ``validate_config`` for required keys that were never set.

    Attributes:
        routine_type: the registered type name of the routine (``"builtins.Mapper"``).
        key: the configuration key at fault.
    """

    def __init__(self, message: str, *, routine_type: str, key: str) -> None:
        super().__init__(message)
        self.routine_type = routine_type
        self.key = key


class PayloadError(RoutiluxError, ValueError):
    """A payload does not have the shape a builtin routine was configured for.

    Raised from logic, so the routine's error handler (STOP, CONTINUE, SKIP, RETRY or a
    plugin strategy such as a dead letter) decides what happens to the job.

    Attributes:
        routine_type: the registered type name of the routine.
        field: the payload field at fault, if one is.
    """

    def __init__(self, message: str, *, routine_type: str, field: str | None = None) -> None:
        super().__init__(message)
        self.routine_type = routine_type
        self.field = field
