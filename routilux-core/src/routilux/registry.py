"""Registered type names: the serialization contract.

Every :class:`~routilux.routine.Routine` subclass is registered under a type name when its class
is defined (``module:QualName`` unless the class sets ``type_name``). Loading a flow looks names
up here only; nothing is ever imported from a string found in data.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from .errors import ConfigurationError, UnknownTypeError

if TYPE_CHECKING:
    from .routine import Routine

__all__ = ["RoutineTypeRegistry", "routine_types"]


class RoutineTypeRegistry:
    """Maps type names to routine classes (and remembers which pack provides a name)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._types: dict[str, type[Routine]] = {}
        self._providers: dict[str, str] = {}

    def register(self, name: str, cls: type[Routine], *, replace: bool = False) -> None:
        """Register ``cls`` under ``name``.

        Re-registering the same name for a different class raises ``ConfigurationError``
        unless ``replace`` is True or the old class has the same module and qualified name (a
        module reloaded, or a class redefined in a test).
        """
        with self._lock:
            old = self._types.get(name)
            if (
                old is not None
                and old is not cls
                and not replace
                and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__)
            ):
                raise ConfigurationError(
                    f"routine type name {name!r} is already registered for "
                    f"{old.__module__}.{old.__qualname__}; give {cls.__qualname__} another "
                    "type_name"
                )
            self._types[name] = cls

    def note_provider(self, name: str, provider: str) -> None:
        """Remember that ``provider`` (a pack or module) supplies ``name``, for error messages."""
        with self._lock:
            self._providers[name] = provider

    def get(self, name: str) -> type[Routine]:
        """The class registered under ``name``; ``UnknownTypeError`` if there is none."""
        try:
            return self._types[name]
        except KeyError:
            provider = self._providers.get(name)
            hint = (
                f"install or import {provider!r}, which provides it"
                if provider
                else "import the module that defines it, or install the pack that provides it"
            )
            raise UnknownTypeError(
                f"routine type {name!r} is not registered; {hint}",
                type_name=name,
                provider=provider,
            ) from None

    def name_of(self, cls: type[Routine]) -> str:
        """The registered name of ``cls``."""
        return cls.type_name

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._types)

    def __contains__(self, name: object) -> bool:
        return name in self._types


routine_types = RoutineTypeRegistry()
"""The process-wide routine type registry, filled as routine classes are defined."""
