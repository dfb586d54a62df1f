"""The web dashboard: static files shipped in this package, served at ``/`` and ``/ui/``.

The files hold no runtime data and are served without a key (like ``/docs``); the page then
asks for an API key and talks to ``/api`` like any other client (``X-API-Key`` on requests,
a short-lived token in the WebSocket subprotocol). See docs/dashboard.md.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import Request
from fastapi.responses import FileResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

__all__ = ["ASSETS", "DASHBOARD_PREFIX", "SECURITY_HEADERS", "routes"]

ASSETS = Path(__file__).parent / "dashboard"
"""The dashboard's files (plain ES modules and CSS; no build step)."""

DASHBOARD_PREFIX = "/ui/"

SECURITY_HEADERS = {
    # Everything comes from this server: no inline script or style, no other origin.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


async def _index(_: Request) -> FileResponse:
    return FileResponse(ASSETS / "index.html", media_type="text/html; charset=utf-8",
                        headers=SECURITY_HEADERS)


class _Assets(StaticFiles):
    """Static files with the dashboard's security headers (and revalidated on each load)."""

    def file_response(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        response = super().file_response(*args, **kwargs)
        response.headers.update(SECURITY_HEADERS)
        return response


def routes() -> list[Route | Mount]:
    """``GET /`` (the page) and ``/ui/`` (its scripts and styles)."""
    return [
        Route("/", _index, methods=["GET"], name="dashboard"),
        Mount(DASHBOARD_PREFIX.rstrip("/"), app=_Assets(directory=ASSETS), name="dashboard_ui"),
    ]
