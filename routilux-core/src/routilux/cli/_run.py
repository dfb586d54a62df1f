"""``routilux run``: start a job, show its progress, summarise what it did.

On a terminal the progress is a live rich table (activations, queued payloads, running
activations, errors per routine); otherwise it is plain lines, one per routine whose counters
changed, and one per error. The summary ends every run; ``--json`` prints it as one JSON
document instead of all of that.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from ..flow import Flow
from ..job_state import JobState, JobStatus
from ..runtime import Runtime

__all__ = ["EXIT_FAILED", "EXIT_OK", "run_flow"]

EXIT_OK = 0
EXIT_FAILED = 1
POLL = 0.1  # seconds between progress updates (the job is waited on, not slept on)
PLAIN_EVERY = 1.0  # seconds between plain progress lines of the same routine
PREVIEW = 200  # characters of a value shown in the summary


def _queued(metrics: Mapping[str, Any]) -> dict[str, int]:
    queued: dict[str, int] = {}
    for key, depth in metrics.get("queue_depths", {}).items():
        rid = key.rsplit(".", 1)[0]
        queued[rid] = queued.get(rid, 0) + depth
    return queued


def _rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    queued = _queued(metrics)
    running = metrics.get("running", {})
    return [
        {
            "routine": rid,
            "activations": m["activations"],
            "queued": queued.get(rid, 0),
            "running": running.get(rid, 0),
            "errors": m["errors"],
            "retries": m["retries"],
            "skipped": m["skipped"],
            "payloads_in": m["payloads_in"],
            "payloads_out": m["payloads_out"],
            "seconds": round(m["duration"]["total"], 4),
        }
        for rid, m in metrics["routines"].items()
    ]


def _say(text: str) -> None:
    """One plain line on standard output (no wrapping, no markup), flushed at once."""
    print(text, flush=True)


def _preview(value: Any) -> str:
    text = repr(value)
    if isinstance(value, list) and len(value) > 1:
        text = f"({len(value)} items) {text}"
    return text if len(text) <= PREVIEW else text[: PREVIEW - 3] + "..."


class _Progress:
    """Follows a job: a live table on a terminal, plain lines elsewhere."""

    def __init__(self, console: Any, *, live: bool) -> None:
        self.console = console
        self.live_mode = live
        self.live: Any = None
        self.last: dict[str, tuple[int, ...]] = {}
        self.printed_at: dict[str, float] = {}
        self.failures: dict[str, int] = {}
        self.started = time.monotonic()

    def start(self, flow: Flow, state: JobState) -> None:
        self.started = time.monotonic()
        head = f"running flow {flow.flow_id!r} (job {state.job_id[:8]})"
        if self.live_mode:
            from rich.live import Live

            self.console.print(f"[bold]{head}[/bold]")
            self.live = Live(console=self.console, refresh_per_second=10, transient=True)
            self.live.start()
        else:
            _say(head)

    def update(self, state: JobState, metrics: Mapping[str, Any], final: bool = False) -> None:
        rows = _rows(metrics)
        self._errors(state, metrics)
        if self.live is not None:
            self.live.update(self._table(state, rows))
            return
        now = time.monotonic()
        for row in rows:
            rid = row["routine"]
            key = (row["activations"], row["queued"], row["errors"], row["retries"])
            if key == self.last.get(rid, (0, 0, 0, 0)):
                continue
            if not final and now - self.printed_at.get(rid, -PLAIN_EVERY) < PLAIN_EVERY:
                continue
            self.last[rid] = key
            self.printed_at[rid] = now
            _say(
                f"  [{now - self.started:6.2f}s] {rid}: activations={row['activations']} "
                f"queued={row['queued']} errors={row['errors']} retries={row['retries']}"
            )

    def _errors(self, state: JobState, metrics: Mapping[str, Any]) -> None:
        """Print each new failed/retried/timed-out activation once, as it shows up."""
        for rid, m in metrics["routines"].items():
            count = m["errors"] + m["retries"] + m["timeouts"]
            new = count - self.failures.get(rid, 0)
            if new <= 0:
                continue
            self.failures[rid] = count
            records = [r for r in state.history(rid) if r.error][-new:]
            for r in records:
                line = f"  ! {rid} (attempt {r.attempt}, {r.status}): {r.error}"
                if self.live is not None:
                    self.live.console.print(line, style="red", highlight=False, markup=False)
                else:
                    _say(line)

    def _table(self, state: JobState, rows: list[dict[str, Any]]) -> Any:
        from rich.table import Table

        elapsed = time.monotonic() - self.started
        table = Table(title=f"{state.status.value} · {elapsed:.1f} s", title_justify="left")
        for col in ("routine", "activations", "queued", "running", "errors", "retries"):
            table.add_column(col, justify="left" if col == "routine" else "right")
        for row in rows:
            errors = str(row["errors"])
            table.add_row(
                row["routine"], str(row["activations"]), str(row["queued"]), str(row["running"]),
                f"[red]{errors}[/red]" if row["errors"] else errors, str(row["retries"]),
            )
        return table

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def _duration(state: JobState, fallback: float) -> float:
    """Seconds from the job's start to its end (or to now, if it has not ended)."""
    if state.started_at is None:
        return fallback
    end = state.finished_at
    if end is None:
        from datetime import UTC, datetime

        end = datetime.now(UTC)
    return (end - state.started_at).total_seconds()


def summary(
    flow: Flow, state: JobState, metrics: Mapping[str, Any], seconds: float
) -> dict[str, Any]:
    """Everything the run's summary shows, as JSON-ready data."""
    return {
        "flow_id": flow.flow_id,
        "job_id": state.job_id,
        "status": state.status.value,
        "duration_s": round(_duration(state, seconds), 4),
        "error": None if state.error is None else {
            "type": state.error_type,
            "message": state.error,
            "routine": state.error_routine,
        },
        "routines": {row.pop("routine"): row for row in _rows(metrics)},
        "shared_data": state.shared_data,
        "shared_log": state.shared_log,
        "output_log": state.output_log,
        "unconsumed": {k: len(v) for k, v in state.unconsumed.items()},
        "dropped": dict(state.dropped),
    }


def _print_summary(console: Any, data: Mapping[str, Any], *, rich_mode: bool) -> None:
    status = data["status"]
    head = (
        f"{status} in {data['duration_s']:.3f} s · flow {data['flow_id']!r} · "
        f"job {data['job_id']}"
    )
    say = _say
    if rich_mode:
        colour = {"completed": "green", "failed": "red"}.get(status, "yellow")
        console.print(f"[bold {colour}]{status}[/]" + head[len(status):])

        def say(text: str) -> None:
            console.print(text, markup=False)
    else:
        say(head)
    err = data["error"]
    if err is not None:
        where = f" in routine {err['routine']!r}" if err["routine"] else ""
        message = err["message"] or ""
        if err["type"] and not message.startswith(f"{err['type']}:"):
            message = f"{err['type']}: {message}"
        say(f"error{where}: {message}")
    cols = ("activations", "errors", "retries", "skipped", "payloads_in", "payloads_out",
            "seconds")
    names = [c.replace("payloads_", "") for c in cols]
    routines = data["routines"]
    if rich_mode:
        from rich.table import Table

        table = Table(box=None, pad_edge=False)
        table.add_column("routine")
        for name in names:
            table.add_column(name, justify="right")
        for rid, row in routines.items():
            table.add_row(rid, *(str(row[c]) for c in cols))
        console.print(table)
    else:
        width = max([len("routine"), *(len(r) for r in routines)])
        widths = [
            max([len(n), *(len(str(row[c])) for row in routines.values())]) + 2
            for n, c in zip(names, cols, strict=True)
        ]
        say("routine".ljust(width) + "".join(n.rjust(w) for n, w in zip(names, widths,
                                                                          strict=True)))
        for rid, row in routines.items():
            say(rid.ljust(width) + "".join(
                str(row[c]).rjust(w) for c, w in zip(cols, widths, strict=True)
            ))
    lines = []
    for key, value in data["shared_data"].items():
        lines.append(f"  shared_data[{key!r}] = {_preview(value)}")
    if data["shared_log"]:
        entries = data["shared_log"]
        lines.append(f"  shared_log: {len(entries)} entries, last: {_preview(entries[-1])}")
    if data["output_log"]:
        entries = data["output_log"]
        last = entries[-1]
        lines.append(
            f"  output_log: {len(entries)} records, last: {last.get('routine_id')} sent "
            f"{last.get('output_type')!r} {_preview(last.get('data'))}"
        )
    for key, n in data["unconsumed"].items():
        lines.append(f"  unconsumed: {n} payload(s) left in {key} (no policy consumed them)")
    for key, n in data["dropped"].items():
        lines.append(f"  dropped: {n} payload(s) at {key}")
    if lines:
        say("outputs:")
        for line in lines:
            say(line)


def run_flow(
    flow: Flow,
    entry_params: Mapping[str, Any],
    *,
    as_json: bool,
    timeout: float | None,
    workers: int | None,
) -> int:
    """Run one job of ``flow`` to its end; returns the exit status (0 completed, 1 not)."""
    from rich.console import Console

    console = Console(highlight=False)
    rich_mode = console.is_terminal and not as_json
    progress = None if as_json else _Progress(console, live=rich_mode)
    started = time.monotonic()
    with Runtime(thread_pool_size=workers) as runtime:
        state = runtime.exec(flow, entry_params=dict(entry_params), timeout=timeout)
        if progress is not None:
            progress.start(flow, state)
        try:
            while not runtime.wait_job(state.job_id, timeout=POLL):
                if progress is not None:
                    progress.update(state, runtime.get_job_metrics(state.job_id))
                if state.status is JobStatus.PAUSED:
                    break  # a breakpoint holds data: nothing more runs in this process
        except KeyboardInterrupt:
            runtime.cancel_job(state.job_id)
            runtime.wait_job(state.job_id, timeout=5)
        finally:
            seconds = time.monotonic() - started
            metrics = runtime.get_job_metrics(state.job_id)
            if progress is not None:
                progress.update(state, metrics, final=True)
                progress.stop()
        data = summary(flow, state, metrics, seconds)
        if state.status is JobStatus.PAUSED:
            runtime.cancel_job(state.job_id)  # let the runtime shut down
    if as_json:
        print(json.dumps(data, indent=2, default=repr))
    else:
        _print_summary(console, data, rich_mode=rich_mode)
    return EXIT_OK if data["status"] == JobStatus.COMPLETED.value else EXIT_FAILED
