"""Flows by name: what ``Runtime.exec(name)`` looks up."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, ClassVar

from ..errors import ConfigurationError, UnknownFlowError

if TYPE_CHECKING:
    from ..flow import Flow

__all__ = ["FlowRegistry"]


class FlowRegistry:
    """A thread-safe map of names to flows.

    ``FlowRegistry.get_instance()`` is the process-wide registry a ``Runtime`` uses by default
    (created on first use, not at import). Create separate instances, and pass one to
    ``Runtime(flow_registry=...)``, to keep registries isolated (as tests should).
    """

    _instance: ClassVar[FlowRegistry | None] = None
    _instance_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flows: dict[str, Flow] = {}

    @classmethod
    def get_instance(cls) -> FlowRegistry:
        """The process-wide registry."""
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def register_by_name(self, name: str, flow: Flow) -> None:
        """Register ``flow`` under ``name`` (replacing any flow registered under it)."""
        from ..flow import Flow

        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"flow name must be a non-empty string, got {name!r}")
        if not isinstance(flow, Flow):
            raise ConfigurationError(f"register_by_name needs a Flow, got {flow!r}")
        with self._lock:
            self._flows[name] = flow

    def register(self, flow: Flow) -> None:
        """Register ``flow`` under its ``flow_id``."""
        self.register_by_name(flow.flow_id, flow)

    def get(self, name: str) -> Flow:
        """The flow registered under ``name``; ``UnknownFlowError`` if none is."""
        with self._lock:
            flow = self._flows.get(name)
            known = sorted(self._flows)
        if flow is None:
            listing = ", ".join(known[:20]) or "none"
            raise UnknownFlowError(
                f"no flow is registered under {name!r} (registered: {listing}); register it "
                "with FlowRegistry.get_instance().register_by_name(name, flow)",
                flow=name,
            )
        return flow

    def unregister(self, name: str) -> None:
        with self._lock:
            if self._flows.pop(name, None) is None:
                raise UnknownFlowError(f"no flow is registered under {name!r}", flow=name)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._flows)

    def clear(self) -> None:
        with self._lock:
            self._flows.clear()

    def __contains__(self, name: object) -> bool:
        return name in self._flows

    def __len__(self) -> int:
        return len(self._flows)
