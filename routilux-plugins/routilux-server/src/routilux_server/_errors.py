"""Errors as HTTP answers: every error body is ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

import re
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from routilux import errors as E
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["ApiError", "install_error_handlers", "status_of"]

_log = structlog.get_logger("routilux_server")


class ApiError(Exception):
    """An error the server itself raises (not from the runtime)."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


# Most specific first: the first class the error is an instance of decides.
_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (E.UnknownJobError, 404),
    (E.UnknownFlowError, 404),
    (E.UnknownRoutineError, 422),
    (E.UnknownSlotError, 422),
    (E.UnknownEventError, 422),
    (E.UnknownTypeError, 422),
    (E.FlowValidationError, 422),
    (E.SerializationError, 422),
    (E.EntryError, 422),
    (E.ConfigurationError, 422),
    (E.QueueFullError, 429),
    (E.JobNotAcceptingWorkError, 409),
    (E.IllegalTransitionError, 409),
    (E.PauseTimeoutError, 409),
    (E.RuntimeClosedError, 409),
)
"""RoutiluxError subclass -> status; any other RoutiluxError is a 409 (a conflict with the
job's or runtime's state)."""


def status_of(exc: BaseException) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 409


def _code(exc: BaseException) -> str:
    """``UnknownJobError`` -> ``unknown_job``."""
    name = type(exc).__name__.removesuffix("Error")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


_CONTEXT = ("job_id", "flow", "flow_id", "routine_id", "slot", "event", "type_name", "provider",
            "status", "target", "path", "running", "timeout")


def _details(exc: BaseException) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    for name in _CONTEXT:
        value = getattr(exc, name, None)
        if value is not None:
            out[name] = value
    issues = getattr(exc, "issues", None)
    if issues:
        out["issues"] = [
            {k: getattr(i, k) for k in ("severity", "code", "message", "path") if hasattr(i, k)}
            if not isinstance(i, str | dict) else i
            for i in issues
        ]
    return out or None


def error_response(status: int, code: str, message: str, details: Any = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": details}},
        status_code=status,
        headers=headers,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Map RoutiluxError subclasses, request validation and HTTP errors to the error body."""

    async def routilux_error(_: Request, exc: Exception) -> JSONResponse:
        status = status_of(exc)
        headers = {"Retry-After": "1"} if status == 429 else None
        return error_response(status, _code(exc), str(exc), _details(exc), headers)

    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message, exc.details)

    async def invalid_request(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": list(e.get("loc", ())), "type": e.get("type"), "msg": e.get("msg")}
            for e in exc.errors()
        ]
        if any(e["type"] == "json_invalid" for e in errors):
            return error_response(400, "bad_request", "the request body is not valid JSON",
                                  errors)
        return error_response(422, "invalid_request", "the request does not match the API "
                              "schema (see details and /docs)", errors)

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
                 413: "payload_too_large", 415: "unsupported_media_type"}
        return error_response(exc.status_code, codes.get(exc.status_code, "http_error"),
                              str(exc.detail), None, dict(exc.headers or {}) or None)

    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        _log.exception("server.unexpected_error", error_type=type(exc).__name__)
        return error_response(500, "internal_error", "unexpected server error (logged)")

    app.add_exception_handler(E.RoutiluxError, routilux_error)
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
