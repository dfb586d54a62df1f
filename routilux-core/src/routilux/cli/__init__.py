"""The ``routilux`` command line: run, validate, draw and inspect flows.

Needs the ``cli`` extra (``pip install "routilux[cli]"``: click and rich). Nothing here imports
them at module level, so ``import routilux`` never needs them; :func:`main` says how to install
them when they are missing.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

MISSING_EXTRA = (
    'error: the routilux command line needs click and rich: pip install "routilux[cli]"'
)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``routilux`` console script (exits with the command's status)."""
    try:
        import click  # noqa: F401
        import rich  # noqa: F401
    except ImportError:
        print(MISSING_EXTRA, file=sys.stderr)
        raise SystemExit(2) from None
    from ._app import cli

    args = list(sys.argv[1:] if argv is None else argv)
    # --debug is a global option; accept it anywhere before "--" (routilux run x --debug).
    end = args.index("--") if "--" in args else len(args)
    if "--debug" in args[1:end]:
        args.remove("--debug")
        args.insert(0, "--debug")
    _configure_logging(debug="--debug" in args[:1])
    cli.main(args=args, prog_name="routilux")


def _configure_logging(*, debug: bool) -> None:
    """The command line is an application, so it configures structlog (a library never does):
    log lines go to standard error, never into the output (``--json`` stays parseable), and
    below WARNING only with --debug."""
    import logging

    import structlog

    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.DEBUG if debug else logging.WARNING
        ),
    )
