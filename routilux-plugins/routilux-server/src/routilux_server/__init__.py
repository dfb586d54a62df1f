"""Routilux HTTP API and live WebSocket monitoring (FastAPI, served by uvicorn).

``create_app(runtime=..., settings=...)`` builds the ASGI app; ``routilux serve`` runs it;
:mod:`routilux_server.client` talks to it. Secure by default: every route needs an API key
(docs/server.md).
"""

from ._app import ServerContext, create_app
from ._live import LiveSink
from ._serve import bind_socket, build_server, check_bind, load_flows_dir, serve
from ._settings import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    ServerConfigError,
    ServerSettings,
    is_loopback,
    read_key_file,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "LiveSink",
    "ServerConfigError",
    "ServerContext",
    "ServerSettings",
    "__version__",
    "bind_socket",
    "build_server",
    "check_bind",
    "create_app",
    "is_loopback",
    "load_flows_dir",
    "read_key_file",
    "serve",
]
