"""The job-store side of ``routilux jobs`` (``--store PATH|DSN``): list, show and resume jobs
recorded in a durable job store. The command group itself is in ``_server.py``."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from ._targets import CliUsageError, _import_file, _import_module

STORE_HELP = (
    "The job store: an SQLite file (as given to SqliteJobStore), or a PostgreSQL connection "
    "string (postgresql://... or 'host=... dbname=...') for PostgresJobStore."
)
SCHEMA_HELP = "The PostgreSQL schema of the store (default: routilux)."


def _is_dsn(where: str) -> bool:
    return where.startswith(("postgresql://", "postgres://")) or (
        "=" in where and not Path(where).exists()
    )


def _open(where: str, schema: str) -> Any:
    if _is_dsn(where):
        from ..store._postgres import PostgresJobStore

        return PostgresJobStore(where, schema=schema)
    from ..store import SqliteJobStore

    if not Path(where).is_file():
        raise CliUsageError(f"no job store at {where} (no such file)")
    return SqliteJobStore(where)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def store_list(store_path: str, schema: str, status: str | None, flow: str | None,
               as_json: bool) -> None:
    """List the jobs of a store, oldest first."""
    store = _open(store_path, schema)
    try:
        rows = store.list_jobs(status)
    finally:
        store.close()
    if flow is not None:
        rows = [r for r in rows if flow in (r.flow_name, r.flow_id)]
    if as_json:
        click.echo(json.dumps([
            {"job_id": r.job_id, "flow": r.flow_name, "flow_id": r.flow_id,
             "status": r.status, "activations": r.activations, "created": r.created,
             "updated": r.updated, "error": r.error}
            for r in rows
        ], indent=2))
        return
    if not rows:
        click.echo("no jobs")
        return
    for r in rows:
        click.echo(f"{r.job_id}  {r.status:<9}  {r.flow_name:<20}  "
                   f"{r.activations:>7} activations  updated {_when(r.updated)}")


def store_show(job_id: str, store_path: str, schema: str, as_json: bool) -> None:
    """Show a stored job: status, queued payloads, pending retries, routine states."""
    store = _open(store_path, schema)
    try:
        snap = store.load_job(job_id)
        acts = store.activations(job_id)
    finally:
        store.close()
    queued: dict[str, int] = {}
    for p in snap.payloads:
        if p.held_by is None:
            key = f"{p.routine_id}.{p.slot}"
            queued[key] = queued.get(key, 0) + 1
    data = {
        "job_id": snap.job_id, "flow": snap.flow_name, "flow_id": snap.flow_id,
        "status": snap.status, "error": snap.error, "activations": len(acts),
        "queued": queued,
        "held": [{"routine_id": h.routine_id, "attempt": h.attempt, "seq": h.seq}
                 for h in snap.held],
        "routine_states": {rid: json.loads(text) for rid, text in snap.states},
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"job {snap.job_id}: {snap.status} (flow {snap.flow_name!r})")
    if snap.error:
        click.echo(f"  error: {snap.error}")
    click.echo(f"  committed activations: {len(acts)}")
    for key, n in queued.items():
        click.echo(f"  queued: {key} x{n}")
    for h in snap.held:
        click.echo(f"  waiting to run again: {h.routine_id} (attempt {h.attempt})")


def store_resume(
    ctx: click.Context, job_id: str, store_path: str, schema: str, imports: tuple[str, ...],
    workers: int | None, timeout: float | None,
) -> None:
    """Resume a stored job in this process and wait until it finishes.

    Completed activations are not run again; the activation that was running when the
    job's process died runs again. Exit status 0 if the job completed, 1 if it failed, was
    cancelled or did not finish within --timeout, 2 for a usage or store error.
    """
    from ..runtime import Runtime

    for name in imports:
        if name.endswith(".py") or "/" in name:
            if not Path(name).is_file():
                raise CliUsageError(f"no such file: {name}")
            _import_file(Path(name))
        else:
            _import_module(name)
    from ..errors import RoutiluxError

    store = _open(store_path, schema)
    rt = Runtime(thread_pool_size=workers, store=store)
    finished = False
    try:
        state = rt.resume(job_id)
        click.echo(f"resumed job {job_id} (flow {state.flow_id!r})", err=True)
        finished = rt.wait_job(job_id, timeout)
        status = state.status.value
        click.echo(f"job {job_id}: {status}" + (f": {state.error}" if state.error else ""))
        if not finished:
            click.echo(f"job {job_id} did not finish within {timeout:g} s", err=True)
    finally:
        if not finished:
            # Leave the job as the store has it, resumable: shutting down cancels a running
            # job (recorded as cancelled), a paused one is left alone.
            with contextlib.suppress(RoutiluxError):
                rt.pause_job(job_id, timeout=0)
        rt.shutdown(wait=False)
        store.close()
    ctx.exit(0 if finished and status == "completed" else 1)
