"""Monitoring helpers: the flow registry (and, later, tracking views)."""

from .flow_registry import FlowRegistry

__all__ = ["FlowRegistry"]
