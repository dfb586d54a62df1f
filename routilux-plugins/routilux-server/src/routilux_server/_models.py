"""The JSON shapes of the API (pydantic models; they make up the OpenAPI schema at /docs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ActionResult",
    "ConnectionInfo",
    "EntryInfo",
    "ErrorDetail",
    "ErrorResponse",
    "FlowDetail",
    "FlowList",
    "FlowSummary",
    "Health",
    "HistoryEntry",
    "JobHistory",
    "JobList",
    "JobLogs",
    "JobSummary",
    "JobTrace",
    "PluginInfoModel",
    "PluginList",
    "PostRequest",
    "RoutineInfo",
    "StartJobRequest",
    "TokenResponse",
    "ValidationIssueModel",
    "ValidationResult",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Model):
    code: str = Field(description="Stable machine-readable code, e.g. `unknown_job`.")
    message: str = Field(description="What went wrong and what to change.")
    details: Any = Field(default=None, description="Structured context (issues, names).")


class ErrorResponse(_Model):
    """Every error answer has this body."""

    error: ErrorDetail


# -- jobs ----------------------------------------------------------------------------------


class StartJobRequest(_Model):
    flow: str = Field(description="Name of a registered flow.")
    entry_params: dict[str, Any] | None = Field(
        default=None, description="Delivered as one payload to the flow's entry."
    )
    keep_open: bool = Field(
        default=False, description="Keep the job open for posts (IDLE when drained)."
    )
    timeout: float | None = Field(default=None, gt=0, description="Job timeout in seconds.")


class PostRequest(_Model):
    routine: str = Field(description="Routine id in the job's flow.")
    slot: str = Field(description="Slot of that routine.")
    data: dict[str, Any] = Field(description="One payload.")


class JobSummary(_Model):
    job_id: str
    flow_id: str
    status: Literal["pending", "running", "idle", "paused", "completed", "failed", "cancelled"]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    keep_open: bool
    error: str | None
    error_type: str | None
    error_routine: str | None


class JobList(_Model):
    items: list[JobSummary]
    total: int = Field(description="Jobs matching the filters (before paging).")
    limit: int
    offset: int


class ActionResult(_Model):
    changed: bool = Field(description="False when the job was already in that state.")
    job: JobSummary


class HistoryEntry(_Model):
    routine_id: str
    status: str
    started_at: str
    duration: float
    attempt: int
    error: str | None


class JobHistory(_Model):
    job_id: str
    items: list[HistoryEntry]


class JobLogs(_Model):
    job_id: str
    shared_log: list[Any]
    output_log: list[dict[str, Any]]


class JobTrace(_Model):
    job_id: str
    records: list[dict[str, Any]] = Field(
        description="Tracking records (docs/tracking.md), oldest first; bounded per job."
    )
    truncated: bool = Field(description="True if older records were let go.")


# -- flows ---------------------------------------------------------------------------------


class FlowSummary(_Model):
    name: str
    flow_id: str
    routines: int
    connections: int


class FlowList(_Model):
    items: list[FlowSummary]


class RoutineInfo(_Model):
    type: str
    slots: list[str]
    events: dict[str, list[str]]
    policy: str
    policy_params: dict[str, Any]
    error_handler: dict[str, Any] | None
    config: dict[str, Any]


class ConnectionInfo(_Model):
    source: str
    event: str
    target: str
    slot: str


class EntryInfo(_Model):
    routine: str
    slot: str


class FlowDetail(_Model):
    name: str
    flow_id: str
    routines: dict[str, RoutineInfo]
    connections: list[ConnectionInfo]
    entry: EntryInfo | None
    execution_timeout: float | None
    error_handler: dict[str, Any] | None


class ValidationIssueModel(_Model):
    severity: str
    code: str
    message: str
    path: str


class ValidationResult(_Model):
    ok: bool
    issues: list[ValidationIssueModel]


# -- the rest ------------------------------------------------------------------------------


class PluginInfoModel(_Model):
    name: str
    distribution: str | None
    version: str | None
    registered: dict[str, list[str]]


class PluginList(_Model):
    plugins: list[PluginInfoModel]
    broken: list[dict[str, Any]]
    types: dict[str, list[str]] = Field(
        description="Registered names by kind: routines, policies, error_strategies, ..."
    )


class Health(_Model):
    status: Literal["ok"]
    version: str
    flows: int
    jobs: dict[str, int] = Field(description="Jobs held by the runtime, by status.")
    tracking: dict[str, Any]
    websocket: dict[str, int]
    refused: dict[str, int] = Field(description="Requests refused, by status code.")


class TokenResponse(_Model):
    token: str = Field(
        description="Send as `Authorization: Bearer <token>`, or offer the WebSocket "
        "subprotocols `routilux.v1` and `routilux.token.<token>`."
    )
    expires_in: float
