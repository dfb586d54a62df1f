"""The click commands of ``routilux`` (imported only when the command line runs)."""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..errors import RoutiluxError
from ._targets import CliUsageError, describe_problems, is_flow_file, load_params, load_target

EXIT_USAGE = 2

TARGET_HELP = """\b
TARGET is one of:
  flow.yaml / flow.yml / flow.json   a flow file; routine types are looked up
                                     by registered name, nothing is imported
  package.module:ATTRIBUTE           a Python flow: a Flow, or a function
  path/to/file.py:ATTRIBUTE          with no arguments that returns one

The Python forms import and run that module's code. That is allowed here only
because you typed it on the command line; a flow file never causes an import."""


def _fail(ctx: click.Context, message: str, exc: BaseException | None = None) -> None:
    """Print ``error: message`` (plus the traceback with --debug) and exit 2."""
    debug = bool(ctx.find_root().params.get("debug"))
    if debug and exc is not None:
        traceback.print_exception(exc, file=sys.stderr)
    click.echo(f"error: {message}", err=True)
    ctx.exit(EXIT_USAGE)


class _Group(click.Group):
    """Turns user mistakes raised by any command into one ``error:`` line (exit 2)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except RoutiluxError as exc:
            problems = describe_problems(exc)
            if len(problems) > 1:
                first = str(exc).splitlines()[0]
                _fail(ctx, first + "\n" + "\n".join(f"  {p}" for p in problems), exc)
            _fail(ctx, problems[0], exc)
        except (OSError, ImportError) as exc:
            _fail(ctx, f"{type(exc).__name__}: {exc}", exc)
        except Exception as exc:
            _fail(
                ctx,
                f"{type(exc).__name__}: {exc} (run with --debug for the traceback)",
                exc,
            )
        return None


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="""\b
Examples:
  routilux run examples/etl/flow.py:flow         run a flow, show progress
  routilux run flow.yaml --param limit=10 --json  machine-readable summary
  routilux validate flow.yaml                     list every problem of a file
  routilux graph flow.yaml --format mermaid       draw the flow
  routilux plugins                                installed routine packs
  routilux jobs resume JOB --store jobs.db        continue a job after a crash
  routilux serve --flows flows/                   HTTP API (needs routilux-server)

Run "routilux COMMAND --help" for a command's options.""",
)
@click.version_option(__version__, "-V", "--version", prog_name="routilux")
@click.option(
    "--debug", is_flag=True, envvar="ROUTILUX_DEBUG",
    help="Show the full traceback when a command fails (or set ROUTILUX_DEBUG=1).",
)
def cli(debug: bool) -> None:
    """Run, check and draw Routilux flows.

    A flow is routines (logic with input slots and output events) wired together; running
    it starts one job on a worker pool. Exit status: 0 success, 1 the job failed or was
    cancelled (or validation found problems), 2 a usage or configuration error.
    """


@cli.command(
    epilog=TARGET_HELP + """

\b
Examples:
  routilux run examples/etl/flow.py:flow
  routilux run examples/etl/flow.py:flow --param report=/tmp/report.json
  routilux run flow.yaml --param name=Ada --param limit=10
  routilux run flow.yaml --params-file params.json --json > result.json
  routilux run myapp.flows:build_flow --timeout 60""",
)
@click.argument("target")
@click.option(
    "--param", "-p", "params", multiple=True, metavar="KEY=VALUE",
    help="An entry parameter (repeatable). VALUE is read as JSON when it is valid JSON "
    "(10, true, [1,2], \"10\"), else as text. Overrides --params-file.",
)
@click.option(
    "--params-file", type=click.Path(dir_okay=False), metavar="FILE",
    help="Entry parameters from a JSON or YAML file holding one object.",
)
@click.option(
    "--json", "as_json", is_flag=True,
    help="Print only the summary, as one JSON document (no progress display).",
)
@click.option(
    "--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
    help="Fail the job (JobTimeoutError) if it runs longer (default: the flow's own).",
)
@click.option(
    "--workers", type=click.IntRange(min=1), metavar="N",
    help="Worker threads of the runtime (default: CPU count + 4, at most 32).",
)
@click.pass_context
def run(
    ctx: click.Context,
    target: str,
    params: tuple[str, ...],
    params_file: str | None,
    as_json: bool,
    timeout: float | None,
    workers: int | None,
) -> None:
    """Run one job of a flow and summarise it.

    Shows per-routine progress while the job runs (a live table on a terminal, plain lines
    otherwise), then the status, duration, per-routine counters and the job's outputs
    (shared_data, shared_log, output_log). Exit status 0 if the job completed, 1 if it failed
    or was cancelled (Ctrl-C cancels it), 2 for a usage or configuration error.
    """
    from ._run import run_flow

    entry = load_params(params_file, params)
    flow = load_target(target)
    ctx.exit(run_flow(flow, entry, as_json=as_json, timeout=timeout, workers=workers))


@cli.command(
    epilog=TARGET_HELP + """

\b
Examples:
  routilux validate examples/etl/flow.yaml
  routilux validate examples/etl/flow.py:flow""",
)
@click.argument("target")
@click.pass_context
def validate(ctx: click.Context, target: str) -> None:
    """Check a flow and list every problem at once, each with its path.

    For a flow file: unknown keys and type names, bad parameters, connections to routines,
    events or slots that do not exist, and an entry that cannot be decided. For a Python
    flow: the flow's own checks. Exit status 0 when it is sound, 1 when there are problems.
    """
    if is_flow_file(target):
        from ..errors import SerializationError
        from ..serialization import validate_flow_file

        if not Path(target).is_file():
            raise CliUsageError(f"no such file: {target}")
        try:
            problems = [str(i) for i in validate_flow_file(target)]
        except SerializationError as exc:  # not YAML/JSON at all: that is the problem
            problems = [str(exc)]
    else:
        from ..errors import FlowValidationError

        try:
            flow = load_target(target)
        except FlowValidationError as exc:
            problems = describe_problems(exc)
        else:
            problems = [str(i) for i in flow.validate().errors]
    if problems:
        for line in problems:
            click.echo(line)
        click.echo(f"{target}: {len(problems)} problem(s)", err=True)
        ctx.exit(1)
    click.echo(f"{target}: ok")


@cli.command(
    epilog=TARGET_HELP + """

\b
Examples:
  routilux graph examples/etl/flow.py:flow                 Mermaid to stdout
  routilux graph flow.yaml --format dot -o flow.dot
  routilux graph flow.yaml --format dot | dot -Tsvg > flow.svg""",
)
@click.argument("target")
@click.option(
    "--format", "-f", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid",
    show_default=True, help="Mermaid (renders in GitHub Markdown) or Graphviz DOT.",
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
    help="Write the graph to FILE instead of standard output.",
)
def graph(target: str, fmt: str, output: str | None) -> None:
    """Write a flow's graph: routines (id, type, policy, error handler) and the
    connections between them (event → slot)."""
    from ..graph import flow_to_dot, flow_to_mermaid

    flow = load_target(target)
    text = flow_to_mermaid(flow) if fmt == "mermaid" else flow_to_dot(flow)
    if output is None:
        click.echo(text, nl=False)
    else:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)


@cli.command(
    epilog="""\b
Examples:
  routilux plugins
  routilux plugins --json
  ROUTILUX_DISABLE_PLUGINS=mypack routilux plugins   (block one pack)""",
)
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def plugins(as_json: bool) -> None:
    """List installed plugins (routine packs) and what each registered.

    Plugins are found through the "routilux.routines" entry-point group. A plugin that could
    not be imported or could not register its types is listed as broken, with the reason.
    """
    from ..plugins import get_plugin_manager

    manager = get_plugin_manager()
    infos = manager.plugins()
    broken = [
        {"name": e.plugin, "distribution": e.distribution, "error": str(e)}
        for e in manager.errors
    ]
    if as_json:
        data = {
            "plugins": [
                {"name": i.name, "distribution": i.distribution, "version": i.version,
                 "registered": i.registered}
                for i in infos
            ],
            "broken": broken,
        }
        click.echo(json.dumps(data, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    if not infos:
        console.print("no plugins installed (pip install routilux-builtins for the builtin pack)")
    else:
        table = Table(title="installed plugins", title_justify="left", show_lines=True)
        for col in ("name", "distribution", "version", "registered"):
            table.add_column(col)
        for i in infos:
            registered = "\n".join(
                f"{kind}: {', '.join(names)}" for kind, names in i.registered.items()
            )
            table.add_row(i.name, i.distribution or "-", i.version or "-", registered or "-")
        console.print(table)
    for b in broken:
        console.print(f"[red]broken[/red] {b['name']}: {b['error']}", markup=True)



# Commands that need the routilux-server pack (imported only when they run).
from ._server import jobs as _jobs  # noqa: E402
from ._server import serve as _serve  # noqa: E402

cli.add_command(_serve)
cli.add_command(_jobs)
