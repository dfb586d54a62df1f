"""The ASGI app factory."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

import attrs
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from routilux import Runtime, __version__
from routilux.monitoring.flow_registry import FlowRegistry

from . import _api, _dashboard, _ws
from ._adapter import RuntimeAdapter
from ._errors import install_error_handlers
from ._live import LiveSink
from ._security import (
    Authenticator,
    BodyLimitMiddleware,
    RateLimiter,
    SecurityMiddleware,
)
from ._settings import ServerSettings

__all__ = ["ServerContext", "create_app"]


@attrs.define(kw_only=True)
class ServerContext:
    """What the routes share (``app.state.routilux``)."""

    runtime: Runtime
    adapter: RuntimeAdapter
    sink: LiveSink
    settings: ServerSettings
    auth: Authenticator
    limiter: RateLimiter
    refused: dict[int, int]
    owns_runtime: bool
    flows_lock: threading.Lock = attrs.field(factory=threading.Lock)


def create_app(
    runtime: Runtime | None = None, settings: ServerSettings | None = None
) -> FastAPI:
    """Build the Routilux HTTP API as an ASGI app (FastAPI).

    Args:
        runtime: the runtime to serve. Default: a new one with its own flow registry, shut
            down when the app stops. A runtime you pass is left running; the server's
            tracking sink is attached to it now (jobs started from now on stream live) and
            detached when the app stops.
        settings: keys and limits. Default: :meth:`ServerSettings.from_env` (the keys in
            ``ROUTILUX_API_KEY`` / ``ROUTILUX_API_KEYS``); without any key this raises
            :class:`~routilux_server.ServerConfigError`, unless ``insecure_no_auth`` is set.

    Serve it with uvicorn, e.g. ``uvicorn --factory routilux_server:create_app`` (keys from
    the environment), or with ``routilux serve``.
    """
    settings = settings if settings is not None else ServerSettings.from_env()
    owns = runtime is None
    if runtime is None:
        runtime = Runtime(flow_registry=FlowRegistry())
    sink = LiveSink(trace_size=settings.job_trace_size, trace_jobs=settings.trace_jobs,
                    queue_size=settings.ws_queue_size)
    runtime.tracking.add_sink(sink)
    auth = Authenticator(settings)
    limiter = RateLimiter(settings.rate_limit, settings.rate_burst)
    refused: dict[int, int] = {}
    ctx = ServerContext(runtime=runtime, adapter=RuntimeAdapter(runtime), sink=sink,
                        settings=settings, auth=auth, limiter=limiter, refused=refused,
                        owns_runtime=owns)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if owns:
                await ctx.adapter.call(runtime.shutdown, False, 10.0)
            else:
                await ctx.adapter.call(runtime.tracking.remove_sink, sink, close=False)

    app = FastAPI(
        title="Routilux API",
        version=__version__,
        description="Flows, jobs and live tracking of a Routilux runtime. Every route needs "
        "an API key in the `X-API-Key` header (or a token from `POST /api/auth/token`); "
        "see docs/server.md.",
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.routilux = ctx
    install_error_handlers(app)
    # The routes are added as they are (not through include_router), so ``app.routes`` lists
    # every route: the auth matrix test is generated from it.
    app.router.routes.extend([*_api.router.routes, *_ws.router.routes])
    if settings.dashboard:
        app.router.routes.extend(_dashboard.routes())
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(SecurityMiddleware, settings=settings, authenticator=auth,
                       limiter=limiter, refused=refused)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "Token": {"type": "http", "scheme": "bearer"},
            }
            schema["security"] = [{"ApiKey": []}, {"Token": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
