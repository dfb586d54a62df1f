"""``routilux serve`` and ``routilux jobs --server URL ...``: the commands that need the
``routilux-server`` pack. The pack is imported only when one of them runs; without it they say
how to install it."""

from __future__ import annotations

import json
from typing import Any

import click

from ._targets import CliUsageError, load_params

__all__ = ["jobs", "serve"]

MISSING_SERVER = (
    "this command needs the routilux-server pack: pip install routilux-server"
)


def _server_pack() -> Any:
    try:
        import routilux_server
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] != "routilux_server":
            raise  # the pack is there but one of its dependencies is broken: say which
        raise CliUsageError(MISSING_SERVER) from None
    return routilux_server


def _client_module() -> Any:
    _server_pack()
    import routilux_server.client

    return routilux_server.client


@click.command(
    epilog="""\b
Examples:
  export ROUTILUX_API_KEY=$(python -c "import secrets; print(secrets.token_urlsafe(32))")
  routilux serve --flows examples/flows/
  routilux serve --host 0.0.0.0 --api-key-file /etc/routilux/keys
  routilux serve --insecure-no-auth          (loopback only, for development)""",
)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback needs API keys.")
@click.option("--port", default=20555, show_default=True, type=click.IntRange(0, 65535))
@click.option("--flows", "flows_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Register every flow file (*.yaml, *.yml, *.json) of DIR under its "
              "flow_id (types by registered name only).")
@click.option("--api-key-file", type=click.Path(dir_okay=False), metavar="FILE",
              help="API keys, one per line (added to $ROUTILUX_API_KEY and "
              "$ROUTILUX_API_KEYS).")
@click.option("--insecure-no-auth", is_flag=True,
              help="Serve without API keys. Loopback addresses only; for development.")
@click.option("--allow-origin", "origins", multiple=True, metavar="ORIGIN",
              help="A browser origin (https://dash.example.com) allowed to open WebSockets "
              "and send state-changing requests (repeatable).")
@click.option("--workers", type=click.IntRange(min=1), metavar="N",
              help="Worker threads of the runtime.")
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=1_048_576,
              show_default=True, help="Largest request body (413 beyond).")
@click.option("--rate-limit", type=click.FloatRange(min=0, min_open=True), default=50.0,
              show_default=True, help="Requests per second per API key (429 beyond).")
@click.option("--rate-burst", type=click.IntRange(min=1), default=100, show_default=True,
              help="Requests a client may send at once before --rate-limit applies.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.option("--access-log/--no-access-log", default=True, show_default=True,
              help="Log one line per request (at info level).")
def serve(
    host: str, port: int, flows_dir: str | None, api_key_file: str | None,
    insecure_no_auth: bool, origins: tuple[str, ...], workers: int | None,
    max_body_bytes: int, rate_limit: float, rate_burst: int, log_level: str,
    access_log: bool,
) -> None:
    """Serve the HTTP API and live WebSocket monitoring (needs routilux-server).

    Every route needs an API key in the X-API-Key header: set ROUTILUX_API_KEY (one key),
    ROUTILUX_API_KEYS (comma-separated) or --api-key-file. OpenAPI docs at /docs.
    """
    pack = _server_pack()
    settings = pack.ServerSettings.from_env(
        key_file=api_key_file,
        insecure_no_auth=insecure_no_auth,
        allowed_origins=origins,
        max_body_bytes=max_body_bytes,
        rate_limit=rate_limit,
        rate_burst=rate_burst,
    )
    pack.serve(host=host, port=port, settings=settings, flows_dir=flows_dir, workers=workers,
               log_level=log_level, access_log=access_log)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json")


@click.group(
    epilog="""\b
Examples:
  routilux jobs --server http://127.0.0.1:20555 list --status running
  routilux jobs --server http://127.0.0.1:20555 start etl_orders --param limit=10 --wait
  routilux jobs --server http://127.0.0.1:20555 get 3f2a...
  routilux jobs --server http://127.0.0.1:20555 cancel 3f2a...""",
)
@click.option("--server", envvar="ROUTILUX_SERVER", required=True, metavar="URL",
              help="Base URL of a routilux server (or set ROUTILUX_SERVER).")
@click.option("--api-key", envvar="ROUTILUX_API_KEY", metavar="KEY",
              help="API key (default: $ROUTILUX_API_KEY).")
@click.pass_context
def jobs(ctx: click.Context, server: str, api_key: str | None) -> None:
    """Inspect and control jobs on a running server (needs routilux-server)."""
    client_mod = _client_module()
    client = client_mod.RoutiluxClient(server, api_key=api_key or "")
    ctx.call_on_close(client.close)
    ctx.obj = client


@jobs.command("list")
@click.option("--status", help="Only jobs with this status.")
@click.option("--flow", help="Only jobs of this flow (name or id).")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0)
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON.")
@click.pass_context
def list_jobs(ctx: click.Context, status: str | None, flow: str | None, limit: int,
              offset: int, as_json: bool) -> None:
    """List jobs, newest first."""
    page = ctx.obj.list_jobs(status=status, flow=flow, limit=limit, offset=offset)
    if as_json:
        _echo_json(_dump(page))
        return
    for job in page.items:
        created = f"{job.created_at:%Y-%m-%d %H:%M:%S}"
        click.echo(f"{job.job_id}  {job.flow_id:<24} {job.status:<10} {created}")
    click.echo(f"{len(page.items)} of {page.total} job(s)", err=True)


@jobs.command("get")
@click.argument("job_id")
@click.option("--state", "full", is_flag=True, help="Print the full job state instead.")
@click.pass_context
def get_job(ctx: click.Context, job_id: str, full: bool) -> None:
    """Print one job as JSON."""
    _echo_json(ctx.obj.job_state(job_id) if full else _dump(ctx.obj.get_job(job_id)))


@jobs.command("start")
@click.argument("flow")
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE",
              help="An entry parameter (repeatable; VALUE read as JSON when valid JSON).")
@click.option("--params-file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Entry parameters from a JSON or YAML file holding one object.")
@click.option("--keep-open", is_flag=True, help="Keep the job open for posts.")
@click.option("--wait", "wait", is_flag=True, help="Wait until the job drains or ends.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="With --wait: give up after this long.")
@click.pass_context
def start_job(ctx: click.Context, flow: str, params: tuple[str, ...], params_file: str | None,
              keep_open: bool, wait: bool, timeout: float | None) -> None:
    """Start a job of a flow registered on the server; print it as JSON.

    With --wait, exit status 1 if the job failed or was cancelled.
    """
    entry = load_params(params_file, params)
    job = ctx.obj.start_job(flow, entry, keep_open=keep_open)
    if wait:
        job = ctx.obj.wait_job(job.job_id, timeout=timeout)
    _echo_json(_dump(job))
    if wait and job.status in ("failed", "cancelled"):
        ctx.exit(1)


def _action(name: str, help_text: str) -> None:
    @jobs.command(name, help=help_text)
    @click.argument("job_id")
    @click.pass_context
    def command(ctx: click.Context, job_id: str) -> None:
        _echo_json(_dump(getattr(ctx.obj, name)(job_id)))


_action("cancel", "Cancel a job (nothing starts after this returns).")
_action("pause", "Pause a job (returns once in-flight activations end).")
_action("resume", "Resume a paused job.")
_action("complete", "Complete a job kept open for posts.")


@jobs.command("post")
@click.argument("job_id")
@click.argument("routine")
@click.argument("slot")
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE",
              help="A field of the payload (repeatable).")
@click.option("--params-file", type=click.Path(dir_okay=False), metavar="FILE")
@click.pass_context
def post(ctx: click.Context, job_id: str, routine: str, slot: str, params: tuple[str, ...],
         params_file: str | None) -> None:
    """Deliver one payload to ROUTINE's SLOT of a running job."""
    _echo_json(_dump(ctx.obj.post(job_id, routine, slot, load_params(params_file, params))))
