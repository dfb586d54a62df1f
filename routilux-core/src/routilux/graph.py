"""Flows drawn as graph text: Mermaid (renders on GitHub and in most Markdown) and Graphviz DOT.

Each routine is a node labelled with its id, its registered type name, its activation policy
and its error handler when it has one; each connection is an edge labelled
``event → slot``. The entry, when the flow declares one, is drawn as a start node. Nothing is
rendered here: the functions return text (``routilux graph`` writes it out).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .error_handling import ErrorHandler
    from .flow import Flow
    from .job_state import JobState
    from .routine import Routine

__all__ = ["ROUTINE_STATUS_COLORS", "flow_to_dot", "flow_to_mermaid", "job_to_dot",
           "job_to_mermaid", "routine_statuses"]


def _policy(routine: Routine) -> str:
    policy = routine.activation_policy
    if policy is None:
        return "immediate"
    params = policy.params()
    if not params:
        return policy.name or type(policy).__name__
    args = ", ".join(f"{k}={v}" for k, v in params.items() if not callable(v))
    return f"{policy.name or type(policy).__name__}({args})"


def _handler(handler: ErrorHandler | None) -> str | None:
    if handler is None:
        return None
    strategy = str(getattr(handler.strategy, "value", handler.strategy))
    if strategy == "retry":
        return f"retry x{handler.max_retries}, then {handler.fallback.value}"
    return strategy


def _lines(routine_id: str, routine: Routine) -> list[str]:
    lines = [routine_id, type(routine).type_name, f"policy: {_policy(routine)}"]
    handler = _handler(routine.error_handler)
    if handler is not None:
        lines.append(f"on error: {handler}")
    return lines


def _mermaid_text(text: str) -> str:
    # Mermaid labels are quoted; a double quote inside is written as an HTML entity.
    return text.replace('"', "#quot;")


def flow_to_mermaid(flow: Flow) -> str:
    """The flow as a Mermaid ``flowchart`` (left to right).

    Node ids are generated (``r0``, ``r1``, ...) so any routine id is safe; the routine id is
    the first line of the node's label.
    """
    ids = {rid: f"r{i}" for i, rid in enumerate(flow.routines)}
    out = ["flowchart LR", f"  %% flow: {flow.flow_id}"]
    handler = _handler(flow.error_handler)
    if handler is not None:
        out.append(f"  %% flow error handler: {handler}")
    if flow.execution_timeout is not None:
        out.append(f"  %% execution timeout: {flow.execution_timeout:g} s")
    for rid, routine in flow.routines.items():
        label = "<br/>".join(_mermaid_text(line) for line in _lines(rid, routine))
        out.append(f'  {ids[rid]}["{label}"]')
    entry = flow.entry
    if entry is not None:
        out.append("  entry((entry))")
        out.append(f'  entry -- "{_mermaid_text(entry.slot)}" --> {ids[entry.routine_id]}')
    for c in flow.connections:
        label = _mermaid_text(f"{c.event} → {c.slot}")
        out.append(f'  {ids[c.source_id]} -- "{label}" --> {ids[c.target_id]}')
    return "\n".join(out) + "\n"


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def flow_to_dot(flow: Flow) -> str:
    """The flow as a Graphviz ``digraph`` (render with ``dot -Tsvg``)."""
    out = [f'digraph "{_dot_text(flow.flow_id)}" {{', "  rankdir=LR;", "  node [shape=box];"]
    notes = []
    handler = _handler(flow.error_handler)
    if handler is not None:
        notes.append(f"on error: {handler}")
    if flow.execution_timeout is not None:
        notes.append(f"timeout: {flow.execution_timeout:g} s")
    title = "\\n".join(_dot_text(t) for t in [flow.flow_id, *notes])
    out.append(f'  label="{title}";')
    for rid, routine in flow.routines.items():
        label = "\\n".join(_dot_text(line) for line in _lines(rid, routine))
        out.append(f'  "{_dot_text(rid)}" [label="{label}"];')
    entry = flow.entry
    if entry is not None:
        out.append('  "__entry__" [label="entry", shape=circle];')
        out.append(
            f'  "__entry__" -> "{_dot_text(entry.routine_id)}" [label="{_dot_text(entry.slot)}"];'
        )
    for c in flow.connections:
        out.append(
            f'  "{_dot_text(c.source_id)}" -> "{_dot_text(c.target_id)}" '
            f'[label="{_dot_text(f"{c.event} → {c.slot}")}"];'
        )
    out.append("}")
    return "\n".join(out) + "\n"


# -- a job: the flow coloured by routine status ---------------------------------------------------

ROUTINE_STATUS_COLORS: dict[str, tuple[str, str]] = {
    "completed": ("#d4edda", "#28a745"),
    "running": ("#cce5ff", "#004085"),
    "failed": ("#f8d7da", "#dc3545"),
    "idle": ("#eeeeee", "#999999"),
}
"""Fill and stroke colour per routine status in ``job_to_mermaid`` / ``job_to_dot``."""


def routine_statuses(flow: Flow, job: JobState | Mapping[str, Any]) -> dict[str, str]:
    """Status of every routine of ``flow`` in a job: ``failed`` (it has errors, or failed the
    job), ``running`` (an activation runs now), ``completed`` (it ran) or ``idle`` (never ran).

    ``job`` is a ``JobState`` or the dict ``Runtime.get_job_metrics`` returns.
    """
    metrics: Mapping[str, Any] | None
    error_routine: str | None
    if isinstance(job, Mapping):
        metrics = job
        error_routine = job.get("error_routine")
    else:
        live = job._live
        metrics = None
        if live is not None:
            from .tracking.metrics import job_metrics

            metrics = job_metrics(live)
        error_routine = job.error_routine
    out: dict[str, str] = {}
    if metrics is not None:
        routines = metrics.get("routines", {})
        running = metrics.get("running", {})
        for rid in flow.routines:
            m = routines.get(rid, {})
            if rid == error_routine or m.get("errors", 0):
                out[rid] = "failed"
            elif running.get(rid):
                out[rid] = "running"
            elif m.get("activations", 0) or m.get("skipped", 0) or m.get("retries", 0):
                out[rid] = "completed"
            else:
                out[rid] = "idle"
        return out
    assert not isinstance(job, Mapping)
    seen: dict[str, set[str]] = {}
    for rec in job.execution_history:
        seen.setdefault(rec.routine_id, set()).add(rec.status)
    for rid in flow.routines:
        statuses = seen.get(rid, set())
        if rid == error_routine or statuses & {"failed", "timed_out"}:
            out[rid] = "failed"
        elif statuses:
            out[rid] = "completed"
        else:
            out[rid] = "idle"
    return out


def job_to_mermaid(flow: Flow, job: JobState | Mapping[str, Any]) -> str:
    """``flow_to_mermaid(flow)`` with each routine coloured by its status in ``job``
    (see :func:`routine_statuses`; colours in :data:`ROUTINE_STATUS_COLORS`)."""
    statuses = routine_statuses(flow, job)
    ids = {rid: f"r{i}" for i, rid in enumerate(flow.routines)}
    out = [flow_to_mermaid(flow).rstrip("\n")]
    for status, (fill, stroke) in ROUTINE_STATUS_COLORS.items():
        out.append(f"  classDef {status} fill:{fill},stroke:{stroke};")
    for status in ROUTINE_STATUS_COLORS:
        members = [ids[rid] for rid, st in statuses.items() if st == status]
        if members:
            out.append(f"  class {','.join(members)} {status};")
    return "\n".join(out) + "\n"


def job_to_dot(flow: Flow, job: JobState | Mapping[str, Any]) -> str:
    """``flow_to_dot(flow)`` with each routine filled by its status in ``job``."""
    statuses = routine_statuses(flow, job)
    text = flow_to_dot(flow).rstrip("\n")
    assert text.endswith("}")
    lines = [text[:-1].rstrip("\n")]
    for rid, status in statuses.items():
        fill, stroke = ROUTINE_STATUS_COLORS[status]
        lines.append(
            f'  "{_dot_text(rid)}" [style=filled, fillcolor="{fill}", color="{stroke}", '
            f'tooltip="{status}"];'
        )
    lines.append("}")
    return "\n".join(lines) + "\n"
