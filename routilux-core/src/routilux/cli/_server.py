"""``routilux serve`` and ``routilux jobs``.

``jobs`` talks to a running server (``--server URL``, needs the ``routilux-server`` pack) or
reads a durable job store (``--store PATH|DSN``, see ``_jobs.py``). The pack is imported only
when a command that needs it runs; without it the command says how to install it."""

from __future__ import annotations

import json
from typing import Any

import click

from ._jobs import SCHEMA_HELP, STORE_HELP, store_list, store_resume, store_show
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


class _Server:
    """The ``--server``/``--api-key`` of ``routilux jobs``; the client is made on first use."""

    def __init__(self, ctx: click.Context, url: str | None, api_key: str | None) -> None:
        self._ctx = ctx
        self.url = url
        self.api_key = api_key
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            if not self.url:
                raise CliUsageError(
                    "this command talks to a routilux server: give --server URL before the "
                    "command (routilux jobs --server URL ...) or set ROUTILUX_SERVER"
                )
            client_mod = _client_module()
            self._client = client_mod.RoutiluxClient(self.url, api_key=self.api_key or "")
            self._ctx.call_on_close(self._client.close)
        return self._client


@click.group(
    epilog="""\b
Examples:
  (a running server)
  routilux jobs --server http://127.0.0.1:20555 list --status running
  routilux jobs --server http://127.0.0.1:20555 start etl_orders --param limit=10 --wait
  routilux jobs --server http://127.0.0.1:20555 get 3f2a...
  routilux jobs --server http://127.0.0.1:20555 cancel 3f2a...
\b
  (a durable job store, no server)
  routilux jobs list --store jobs.db --status running
  routilux jobs show 3f2a... --store jobs.db
  routilux jobs resume 3f2a... --store jobs.db --import myapp.routines""",
)
@click.option("--server", envvar="ROUTILUX_SERVER", metavar="URL",
              help="Base URL of a routilux server (or set ROUTILUX_SERVER); needed by every "
                   "command not given --store.")
@click.option("--api-key", envvar="ROUTILUX_API_KEY", metavar="KEY",
              help="API key (default: $ROUTILUX_API_KEY).")
@click.pass_context
def jobs(ctx: click.Context, server: str | None, api_key: str | None) -> None:
    """Inspect and control jobs: on a running server (--server URL, needs routilux-server),
    or recorded in a durable job store (--store PATH|DSN; docs/persistence.md)."""
    ctx.obj = _Server(ctx, server, api_key)


_STORE = click.option("--store", "store_path", metavar="PATH|DSN",
                      help="Read this job store instead of a server. " + STORE_HELP)
_SCHEMA = click.option("--schema", default="routilux", show_default=True, help=SCHEMA_HELP)


@jobs.command("list")
@click.option("--status", help="Only jobs with this status.")
@click.option("--flow", help="Only jobs of this flow (name or id).")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True,
              help="Server: jobs per page.")
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Server: jobs to skip.")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@_STORE
@_SCHEMA
@click.pass_context
def list_jobs(ctx: click.Context, status: str | None, flow: str | None, limit: int,
              offset: int, as_json: bool, store_path: str | None, schema: str) -> None:
    """List jobs: a server's newest first, a store's oldest first."""
    if store_path is not None:
        store_list(store_path, schema, status, flow, as_json)
        return
    page = ctx.obj.client.list_jobs(status=status, flow=flow, limit=limit, offset=offset)
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
    client = ctx.obj.client
    _echo_json(client.job_state(job_id) if full else _dump(client.get_job(job_id)))


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
    client = ctx.obj.client
    job = client.start_job(flow, entry, keep_open=keep_open)
    if wait:
        job = client.wait_job(job.job_id, timeout=timeout)
    _echo_json(_dump(job))
    if wait and job.status in ("failed", "cancelled"):
        ctx.exit(1)


def _action(name: str, help_text: str) -> None:
    @jobs.command(name, help=help_text)
    @click.argument("job_id")
    @click.pass_context
    def command(ctx: click.Context, job_id: str) -> None:
        _echo_json(_dump(getattr(ctx.obj.client, name)(job_id)))


_action("cancel", "Cancel a job (nothing starts after this returns).")
_action("pause", "Pause a job (returns once in-flight activations end).")


@jobs.command(
    "resume",
    epilog="""\b
With --store, the job's flow is rebuilt from the store by registered type names; routine
classes defined in your own code must be registered first: give their module with --import
(a module name or path/to/file.py, repeatable). Nothing else is imported.""",
)
@click.argument("job_id")
@_STORE
@_SCHEMA
@click.option(
    "--import", "imports", multiple=True, metavar="MODULE",
    help="With --store: import MODULE (or path/to/file.py) first, so its routine types are "
         "registered.",
)
@click.option("--workers", type=click.IntRange(min=1), metavar="N",
              help="With --store: worker threads of the runtime.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="With --store: give up waiting after SECONDS (the job stays resumable).")
@click.pass_context
def resume(
    ctx: click.Context, job_id: str, store_path: str | None, schema: str,
    imports: tuple[str, ...], workers: int | None, timeout: float | None,
) -> None:
    """Resume a paused job on a server, or (--store) a stored job after a crash.

    With --store the job is resumed in this process and the command waits until it
    finishes: completed activations are not run again; the activation that was running when
    the job's process died runs again. Exit status 0 if the job completed, 1 if it failed,
    was cancelled or did not finish within --timeout, 2 for a usage or store error.
    """
    if store_path is not None:
        store_resume(ctx, job_id, store_path, schema, imports, workers, timeout)
        return
    _echo_json(_dump(ctx.obj.client.resume(job_id)))


@jobs.command("show")
@click.argument("job_id")
@click.option("--store", "store_path", required=True, metavar="PATH|DSN", help=STORE_HELP)
@_SCHEMA
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
def show(job_id: str, store_path: str, schema: str, as_json: bool) -> None:
    """Show a stored job: status, queued payloads, pending retries, routine states."""
    store_show(job_id, store_path, schema, as_json)
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
    payload = load_params(params_file, params)
    _echo_json(_dump(ctx.obj.client.post(job_id, routine, slot, payload)))
