"""``routilux serve``: check the bind address, load flow files, run uvicorn."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from routilux import Runtime
from routilux.errors import FlowValidationError, RoutiluxError
from routilux.monitoring.flow_registry import FlowRegistry
from routilux.serialization import load_flow

from ._settings import DEFAULT_HOST, DEFAULT_PORT, ServerConfigError, ServerSettings, is_loopback

__all__ = ["bind_socket", "build_server", "check_bind", "load_flows_dir", "serve"]

FLOW_SUFFIXES = (".yaml", ".yml", ".json")


def check_bind(host: str, settings: ServerSettings) -> None:
    """Refuse to serve a non-loopback address without API keys."""
    if not is_loopback(host) and (settings.insecure_no_auth or not settings.api_keys):
        raise ServerConfigError(
            f"refusing to listen on {host!r} without API keys: --insecure-no-auth is for "
            "loopback addresses only (127.0.0.1, ::1, localhost); set ROUTILUX_API_KEY to "
            "serve other hosts"
        )


def load_flows_dir(directory: str | os.PathLike[str], runtime: Runtime) -> list[str]:
    """Register every flow file (``*.yaml``, ``*.yml``, ``*.json``) of ``directory`` under
    its ``flow_id``; types by registered name only. Returns the names, sorted."""
    folder = Path(directory)
    if not folder.is_dir():
        raise ServerConfigError(f"--flows {str(folder)!r} is not a directory")
    types = runtime.plugin_manager.registry
    names: dict[str, Path] = {}
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in FLOW_SUFFIXES):
        try:
            flow = load_flow(path, types)
        except FlowValidationError as exc:
            lines = "\n".join(f"  - {i}" for i in exc.issues)
            raise ServerConfigError(f"{path}: {len(exc.issues)} problem(s):\n{lines}") from None
        except RoutiluxError as exc:
            raise ServerConfigError(f"{path}: {exc}") from None
        if flow.flow_id in names:
            raise ServerConfigError(
                f"{path} and {names[flow.flow_id]} both define flow {flow.flow_id!r}; flow ids "
                "must be unique in --flows"
            )
        names[flow.flow_id] = path
        runtime.flow_registry.register_by_name(flow.flow_id, flow)
    return sorted(names)


def build_server(
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    settings: ServerSettings,
    runtime: Runtime | None = None,
    flows_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    log_level: str = "info",
    access_log: bool = True,
) -> Any:
    """A configured ``uvicorn.Server`` (not started), after the bind check."""
    import uvicorn

    from ._app import create_app

    check_bind(host, settings)
    if runtime is None:
        runtime = Runtime(workers, flow_registry=FlowRegistry())
    if flows_dir is not None:
        load_flows_dir(flows_dir, runtime)
    app = create_app(runtime=runtime, settings=settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ws="wsproto",
        ws_max_size=settings.max_ws_message_bytes,
        log_level=log_level,
        access_log=access_log,
        proxy_headers=False,
        server_header=False,
        lifespan="on",
    )
    return uvicorn.Server(config)


def bind_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket for ``host:port`` (port 0: any free port), for running a server
    built by :func:`build_server` with ``server.run(sockets=[sock])`` (tests, embedding).

    Created with ``proto=IPPROTO_TCP`` on purpose: asyncio only turns Nagle's algorithm off
    (``TCP_NODELAY``) on accepted sockets whose protocol says TCP, and a socket created with
    the default ``proto=0`` makes every response wait ~40 ms for a delayed ACK (headers and
    body go out in two writes).
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def serve(**options: Any) -> None:
    """Build the server (see :func:`build_server`) and run it until interrupted."""
    server = build_server(**options)
    runtime = server.config.app.state.routilux.runtime
    try:
        server.run()  # uvicorn binds host:port itself (a TCP socket, Nagle off)
    finally:
        runtime.shutdown(wait=False, timeout=10.0)
