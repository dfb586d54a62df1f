"""The REST routes under ``/api``: flows, jobs, plugins, health, tokens."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse
from routilux import Flow, JobState, JobStatus, __version__
from routilux.errors import RoutiluxError
from routilux.graph import flow_to_mermaid
from routilux.serialization import (
    flow_from_dict,
    flow_to_json,
    flow_to_yaml,
    validate_flow_document,
)

from ._errors import ApiError
from ._models import (
    ActionResult,
    ConnectionInfo,
    EntryInfo,
    ErrorResponse,
    FlowDetail,
    FlowList,
    FlowSummary,
    Health,
    HistoryEntry,
    JobHistory,
    JobList,
    JobLogs,
    JobSummary,
    JobTrace,
    PluginInfoModel,
    PluginList,
    PostRequest,
    RoutineInfo,
    StartJobRequest,
    TokenResponse,
    ValidationIssueModel,
    ValidationResult,
)

if TYPE_CHECKING:
    from ._app import ServerContext

__all__ = ["flow_detail", "job_summary", "router"]

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in (
        (400, "Malformed request"), (401, "No API key or token"),
        (403, "Wrong key or token, or origin not allowed"), (404, "No such flow or job"),
        (409, "Conflicts with the job's state"), (413, "Body too large"),
        (422, "Invalid input"), (429, "Rate limited (see Retry-After)"),
    )
}

router = APIRouter(prefix="/api", responses=_ERRORS)

FLOW_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")

_DOCUMENT_BODY = {
    "requestBody": {
        "required": True,
        "description": "A flow document (docs/serialization.md) as JSON or YAML. Routine, "
        "policy and error-strategy types are looked up by registered name only.",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


def _ctx(request: Request) -> ServerContext:
    ctx: ServerContext = request.app.state.routilux
    return ctx


# -- shapes --------------------------------------------------------------------------------


def job_summary(state: JobState) -> JobSummary:
    return JobSummary(
        job_id=state.job_id,
        flow_id=state.flow_id,
        status=state.status.value,
        created_at=state.created_at,
        started_at=state.started_at,
        finished_at=state.finished_at,
        keep_open=state.keep_open,
        error=state.error,
        error_type=state.error_type,
        error_routine=state.error_routine,
    )


def _handler_dict(handler: Any) -> dict[str, Any] | None:
    if handler is None:
        return None
    strategy = handler.strategy
    return {
        "strategy": str(getattr(strategy, "value", strategy)),
        "max_retries": handler.max_retries,
        "retry_delay": handler.retry_delay,
        "retry_backoff": handler.retry_backoff,
        "fallback": handler.fallback.value,
        "is_critical": handler.is_critical,
        "timeout": handler.timeout,
    }


def _jsonable(value: Any) -> Any:
    """``value`` if JSON can hold it, else its text (config may hold any Python value)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return value


def flow_detail(name: str, flow: Flow) -> FlowDetail:
    routines = {}
    for rid, r in flow.routines.items():
        policy = r.activation_policy
        routines[rid] = RoutineInfo(
            type=type(r).type_name,
            slots=list(r.slots),
            events={n: list(e.output_params) for n, e in r.events.items()},
            policy=(policy.name or type(policy).__name__) if policy is not None else "immediate",
            policy_params={k: _jsonable(v) for k, v in policy.params().items()}
            if policy is not None else {},
            error_handler=_handler_dict(r.error_handler),
            config={k: _jsonable(v) for k, v in r.config.items()},
        )
    entry = flow.entry
    return FlowDetail(
        name=name,
        flow_id=flow.flow_id,
        routines=routines,
        connections=[
            ConnectionInfo(source=c.source_id, event=c.event, target=c.target_id, slot=c.slot)
            for c in flow.connections
        ],
        entry=EntryInfo(routine=entry.routine_id, slot=entry.slot) if entry else None,
        execution_timeout=flow.execution_timeout,
        error_handler=_handler_dict(flow.error_handler),
    )


def _parse_document(body: bytes, content_type: str) -> Any:
    """A flow document from a request body (JSON, or YAML without anchors/aliases)."""
    kind = content_type.split(";")[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "bad_request", "the body must be UTF-8 text") from None
    if kind in ("application/json", "") or kind.endswith("+json"):
        try:
            return json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ApiError(400, "bad_request", f"the body is not valid JSON: {exc}") from None
    if kind in ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"):
        import yaml  # type: ignore[import-untyped, unused-ignore]

        try:
            # Aliases would let a small document expand into a huge one: refused.
            for event in yaml.parse(text, Loader=yaml.SafeLoader):
                if isinstance(event, yaml.AliasEvent):
                    raise ApiError(422, "yaml_alias", "YAML anchors and aliases are not "
                                   "accepted in flow documents; write the values out")
            return yaml.safe_load(text)
        except (yaml.YAMLError, RecursionError) as exc:
            raise ApiError(400, "bad_request", f"the body is not valid YAML: {exc}") from None
    raise ApiError(415, "unsupported_media_type", f"send the flow document as "
                   f"application/json or application/yaml, not {kind!r}")


def _check_name(name: str) -> str:
    if not FLOW_NAME.match(name):
        raise ApiError(422, "invalid_flow_name", "flow names are 1-128 characters of letters, "
                       f"digits and . _ : -; got {name!r}")
    return name


# -- flows ---------------------------------------------------------------------------------


@router.get("/flows", response_model=FlowList, tags=["flows"], summary="List flows")
async def list_flows(request: Request) -> FlowList:
    ctx = _ctx(request)

    def collect() -> list[FlowSummary]:
        out = []
        for name in ctx.adapter.flows.names():
            try:
                flow = ctx.adapter.flows.get(name)
            except RoutiluxError:
                continue  # deleted meanwhile
            out.append(FlowSummary(name=name, flow_id=flow.flow_id,
                                   routines=len(flow.routines),
                                   connections=len(flow.connections)))
        return out

    return FlowList(items=await ctx.adapter.call(collect))


@router.get("/flows/{name}", response_model=FlowDetail, tags=["flows"],
            summary="A flow: routines, policies, error handlers, connections, entry")
async def get_flow(name: str, request: Request) -> FlowDetail:
    ctx = _ctx(request)
    flow = await ctx.adapter.flow(name)
    return await ctx.adapter.call(flow_detail, name, flow)


@router.post("/flows", response_model=FlowDetail, status_code=201, tags=["flows"],
             summary="Create a flow from a flow document", openapi_extra=_DOCUMENT_BODY)
async def create_flow(
    request: Request,
    name: Annotated[str | None, Query(description="Register under this name "
                                      "(default: the document's flow_id).")] = None,
    replace: Annotated[bool, Query(description="Replace a flow already registered under "
                                   "the name (running jobs keep the old one).")] = False,
) -> FlowDetail:
    ctx = _ctx(request)
    document = await ctx.adapter.call(  # parsing up to max_body_bytes: off the event loop
        _parse_document, await request.body(), request.headers.get("content-type", ""))
    types = ctx.runtime.plugin_manager.registry

    def build() -> FlowDetail:
        flow = flow_from_dict(document, types)
        flow.validate().raise_for_errors()
        key = _check_name(name or flow.flow_id)
        with ctx.flows_lock:
            if key in ctx.adapter.flows and not replace:
                raise ApiError(409, "flow_exists", f"a flow is already registered under "
                               f"{key!r}; pass replace=true to replace it", {"flow": key})
            ctx.adapter.flows.register_by_name(key, flow)
        return flow_detail(key, flow)

    return await ctx.adapter.call(build)


@router.post("/flows/validate", response_model=ValidationResult, tags=["flows"],
             summary="Check a flow document; every problem with its path",
             openapi_extra=_DOCUMENT_BODY)
async def validate_flow(request: Request) -> ValidationResult:
    ctx = _ctx(request)
    document = await ctx.adapter.call(  # parsing up to max_body_bytes: off the event loop
        _parse_document, await request.body(), request.headers.get("content-type", ""))
    types = ctx.runtime.plugin_manager.registry
    issues = await ctx.adapter.call(validate_flow_document, document, types)
    return ValidationResult(
        ok=not any(i.severity == "error" for i in issues),
        issues=[ValidationIssueModel(severity=i.severity, code=i.code, message=i.message,
                                     path=i.path) for i in issues],
    )


@router.delete("/flows/{name}", status_code=204, tags=["flows"],
               summary="Unregister a flow (its running jobs go on)")
async def delete_flow(name: str, request: Request) -> Response:
    ctx = _ctx(request)
    await ctx.adapter.call(ctx.adapter.flows.unregister, name)
    return Response(status_code=204)


_EXPORT_TYPES = {"json": "application/json", "yaml": "application/yaml",
                 "mermaid": "text/plain; charset=utf-8"}


@router.get("/flows/{name}/export", tags=["flows"], response_class=PlainTextResponse,
            summary="The flow as a JSON or YAML document, or a Mermaid graph",
            responses={200: {"content": {t: {} for t in _EXPORT_TYPES.values()}}})
async def export_flow(
    name: str, request: Request,
    format: Annotated[str, Query(pattern="^(json|yaml|mermaid)$")] = "json",
) -> PlainTextResponse:
    ctx = _ctx(request)
    flow = await ctx.adapter.flow(name)
    types = ctx.runtime.plugin_manager.registry

    def render() -> str:
        if format == "mermaid":
            return flow_to_mermaid(flow)
        if format == "yaml":
            return flow_to_yaml(flow, types)
        return flow_to_json(flow, types)

    text = await ctx.adapter.call(render)
    return PlainTextResponse(text, media_type=_EXPORT_TYPES[format])


# -- jobs ----------------------------------------------------------------------------------


@router.post("/jobs", response_model=JobSummary, status_code=201, tags=["jobs"],
             summary="Start a job of a registered flow")
async def start_job(body: StartJobRequest, request: Request) -> JobSummary:
    ctx = _ctx(request)
    state = await ctx.adapter.start(body.flow, body.entry_params, keep_open=body.keep_open,
                                    timeout=body.timeout)
    return job_summary(state)


@router.get("/jobs", response_model=JobList, tags=["jobs"], summary="List jobs, newest first")
async def list_jobs(
    request: Request,
    status: Annotated[JobStatus | None, Query()] = None,
    flow: Annotated[str | None, Query(description="Flow name or flow id.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JobList:
    ctx = _ctx(request)
    states = await ctx.adapter.jobs(status.value if status else None, flow)
    states.reverse()
    page = states[offset:offset + limit]
    return JobList(items=[job_summary(s) for s in page], total=len(states), limit=limit,
                   offset=offset)


@router.get("/jobs/{job_id}", response_model=JobSummary, tags=["jobs"], summary="A job")
async def get_job(job_id: str, request: Request) -> JobSummary:
    return job_summary(await _ctx(request).adapter.job(job_id))


@router.get("/jobs/{job_id}/state", response_model=dict[str, Any], tags=["jobs"],
            summary="The job's full state (JobState.to_dict(): queues, routine states, "
            "shared data, history)")
async def get_job_state(job_id: str, request: Request) -> dict[str, Any]:
    return await _ctx(request).adapter.state_dict(job_id)


@router.get("/jobs/{job_id}/wait", response_model=JobSummary, tags=["jobs"],
            summary="Wait until the job drains or ends (at most `timeout` seconds)")
async def wait_job(
    job_id: str, request: Request,
    timeout: Annotated[float, Query(gt=0, description="Seconds; capped by the server.")] = 10.0,
) -> JobSummary:
    ctx = _ctx(request)
    await ctx.adapter.wait(job_id, min(timeout, ctx.settings.max_wait))
    return job_summary(await ctx.adapter.job(job_id))


@router.post("/jobs/{job_id}/post", response_model=JobSummary, status_code=202, tags=["jobs"],
             summary="Deliver one payload to a routine's slot of a running job")
async def post_to_job(job_id: str, body: PostRequest, request: Request) -> JobSummary:
    state = await _ctx(request).adapter.post(job_id, body.routine, body.slot, body.data)
    return job_summary(state)


@router.post("/jobs/{job_id}/pause", response_model=ActionResult, tags=["jobs"],
             summary="Pause (returns once in-flight activations end)")
async def pause_job(job_id: str, request: Request) -> ActionResult:
    ctx = _ctx(request)
    before = (await ctx.adapter.job(job_id)).status
    await ctx.adapter.pause(job_id)
    state = await ctx.adapter.job(job_id)
    return ActionResult(changed=before is not JobStatus.PAUSED, job=job_summary(state))


async def _action(request: Request, job_id: str, name: str) -> ActionResult:
    ctx = _ctx(request)
    changed = await getattr(ctx.adapter, name)(job_id)
    return ActionResult(changed=bool(changed), job=job_summary(await ctx.adapter.job(job_id)))


@router.post("/jobs/{job_id}/resume", response_model=ActionResult, tags=["jobs"],
             summary="Resume a paused job")
async def resume_job(job_id: str, request: Request) -> ActionResult:
    return await _action(request, job_id, "resume")


@router.post("/jobs/{job_id}/cancel", response_model=ActionResult, tags=["jobs"],
             summary="Cancel a job (nothing starts after this returns)")
async def cancel_job(job_id: str, request: Request) -> ActionResult:
    return await _action(request, job_id, "cancel")


@router.post("/jobs/{job_id}/complete", response_model=ActionResult, tags=["jobs"],
             summary="Complete a job kept open for posts once its work drains")
async def complete_job(job_id: str, request: Request) -> ActionResult:
    return await _action(request, job_id, "complete")


@router.get("/jobs/{job_id}/metrics", response_model=dict[str, Any], tags=["jobs"],
            summary="Per-routine counters and durations (Runtime.get_job_metrics)")
async def job_metrics(job_id: str, request: Request) -> dict[str, Any]:
    return await _ctx(request).adapter.metrics(job_id)


@router.get("/jobs/{job_id}/history", response_model=JobHistory, tags=["jobs"],
            summary="Execution history: one entry per activation (bounded)")
async def job_history(
    job_id: str, request: Request, routine: Annotated[str | None, Query()] = None,
) -> JobHistory:
    state = await _ctx(request).adapter.job(job_id)
    return JobHistory(job_id=job_id,
                      items=[HistoryEntry(**r.to_dict()) for r in state.history(routine)])


@router.get("/jobs/{job_id}/trace", response_model=JobTrace, tags=["jobs"],
            summary="The job's tracking records (what the WebSocket streams), oldest first")
async def job_trace(job_id: str, request: Request) -> JobTrace:
    ctx = _ctx(request)
    records = await ctx.adapter.call(ctx.sink.trace, job_id)
    if records is None:
        await ctx.adapter.job(job_id)  # 404 if the runtime does not know it either
        records = []
    truncated = bool(records) and records[0].get("seq") != 1
    return JobTrace(job_id=job_id, records=records, truncated=truncated)


@router.get("/jobs/{job_id}/logs", response_model=JobLogs, tags=["jobs"],
            summary="The job's business logs: shared_log and output_log")
async def job_logs(job_id: str, request: Request) -> JobLogs:
    ctx = _ctx(request)
    state = await ctx.adapter.job(job_id)

    def read() -> JobLogs:
        # copies of append-only lists: a consistent prefix even while the job appends
        shared, output = list(state.shared_log), list(state.output_log)
        return JobLogs(job_id=job_id, shared_log=[_jsonable(v) for v in shared],
                       output_log=[{k: _jsonable(v) for k, v in o.items()} for o in output])

    return await ctx.adapter.call(read)


# -- plugins, health, tokens ---------------------------------------------------------------


@router.get("/plugins", response_model=PluginList, tags=["server"],
            summary="Installed plugins and every registered type name")
async def list_plugins(request: Request) -> PluginList:
    ctx = _ctx(request)
    manager = ctx.runtime.plugin_manager
    reg = manager.registry
    return PluginList(
        plugins=[PluginInfoModel(name=i.name, distribution=i.distribution, version=i.version,
                                 registered=i.registered) for i in manager.plugins()],
        broken=[{"name": e.plugin, "distribution": e.distribution, "error": str(e)}
                for e in manager.errors],
        types={
            "routines": reg.routines.names(),
            "policies": reg.policies.names(),
            "predicates": reg.predicates.names(),
            "exceptions": reg.exceptions.names(),
            "error_strategies": reg.error_strategies.names(),
            "tracking_sinks": reg.tracking_sinks.names(),
        },
    )


@router.get("/health", response_model=Health, tags=["server"], summary="Server health")
async def health(request: Request) -> Health:
    ctx = _ctx(request)
    states = await ctx.adapter.jobs(None, None)
    return Health(
        status="ok",
        version=__version__,
        flows=len(ctx.adapter.flows),
        jobs=dict(Counter(s.status.value for s in states)),
        tracking=ctx.runtime.tracking.stats(),
        websocket=ctx.sink.stats(),
        refused={str(k): v for k, v in sorted(ctx.refused.items())},
    )


@router.post("/auth/token", response_model=TokenResponse, tags=["server"],
             summary="A short-lived token for browsers (Bearer header or WebSocket "
             "subprotocol)")
async def issue_token(request: Request) -> TokenResponse:
    ctx = _ctx(request)
    principal = request.scope.get("state", {}).get("principal") or "local"
    token, ttl = ctx.auth.issue_token(principal)
    return TokenResponse(token=token, expires_in=ttl)


