"""Routilux: event-driven workflow orchestration.

Routines (logic with input slots and output events) are wired into flows; a runtime runs
flows on a shared worker pool, each execution with its own job state.
"""

from ._context import ActivationInfo, current_activation
from .activation_policies import (
    ActivationPolicy,
    all_slots_ready_policy,
    batch_size_policy,
    breakpoint_policy,
    custom_policy,
    immediate_policy,
    time_interval_policy,
)
from .clock import ManualClock, SystemClock
from .error_handling import ErrorHandler, ErrorStrategy
from .errors import RoutiluxError
from .event import Event
from .flow import Connection, Flow, ValidationIssue, ValidationReport
from .hookspecs import hookimpl
from .job_state import ExecutionRecord, JobState, JobStatus
from .monitoring.flow_registry import FlowRegistry
from .registry import (
    TypeRegistry,
    register_exception_type,
    register_policy_type,
    register_predicate,
    type_registry,
)
from .routine import Routine
from .runtime import Runtime
from .slot import Overflow, Slot

__version__ = "0.1.0"

__all__ = [
    "ActivationInfo",
    "ActivationPolicy",
    "Connection",
    "ErrorHandler",
    "ErrorStrategy",
    "Event",
    "ExecutionRecord",
    "Flow",
    "FlowRegistry",
    "JobState",
    "JobStatus",
    "ManualClock",
    "Overflow",
    "RoutiluxError",
    "Routine",
    "Runtime",
    "Slot",
    "SystemClock",
    "TypeRegistry",
    "ValidationIssue",
    "ValidationReport",
    "__version__",
    "all_slots_ready_policy",
    "batch_size_policy",
    "breakpoint_policy",
    "current_activation",
    "custom_policy",
    "hookimpl",
    "immediate_policy",
    "register_exception_type",
    "register_policy_type",
    "register_predicate",
    "time_interval_policy",
    "type_registry",
]
