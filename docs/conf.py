"""Sphinx configuration of the Routilux documentation (Markdown pages through MyST).

Build: ``uv run sphinx-build -W --keep-going -b html docs docs/_build/html``. The CLI
reference is generated here, at build time, from the click commands' own help text, so it
cannot drift from ``routilux --help``.
"""

from __future__ import annotations

from typing import Any

project = "Routilux"
author = "Routilux contributors"
copyright = "Routilux contributors"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3
html_theme = "alabaster"
html_theme_options = {"description": "event-driven workflow orchestration for Python"}

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
nitpicky = False

CLI_MARKER = "<!-- routilux-cli-help -->"


def cli_reference() -> str:
    """Every command's ``--help`` text, as Markdown sections."""
    import click
    from routilux.cli._app import cli

    root = click.Context(cli, info_name="routilux", terminal_width=100, max_content_width=100)
    parts = ["## `routilux`", "", "```text", cli.get_help(root), "```", ""]
    for name in sorted(cli.commands):
        command = cli.commands[name]
        ctx = click.Context(command, info_name=name, parent=root, terminal_width=100,
                            max_content_width=100)
        parts += [f"## `routilux {name}`", "", "```text", command.get_help(ctx), "```", ""]
        for sub in sorted(getattr(command, "commands", {})):
            subcommand = command.commands[sub]  # type: ignore[attr-defined]
            sctx = click.Context(subcommand, info_name=sub, parent=ctx, terminal_width=100,
                                 max_content_width=100)
            parts += [f"### `routilux {name} {sub}`", "", "```text",
                      subcommand.get_help(sctx), "```", ""]
    return "\n".join(parts)


def _insert_cli_help(app: Any, docname: str, source: list[str]) -> None:
    if docname == "cli" and CLI_MARKER in source[0]:
        source[0] = source[0].replace(CLI_MARKER, cli_reference())


def setup(app: Any) -> dict[str, Any]:
    app.connect("source-read", _insert_cli_help)
    return {"parallel_read_safe": True}
