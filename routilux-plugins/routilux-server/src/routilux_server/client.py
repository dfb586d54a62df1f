"""A typed Python client for the Routilux HTTP API (synchronous, on httpx).

Example::

    from routilux_server.client import RoutiluxClient

    with RoutiluxClient("http://127.0.0.1:20555", api_key="...") as client:
        job = client.start_job("my_flow", {"n": 3})
        job = client.wait_job(job.job_id, timeout=30)
        print(job.status, client.job_state(job.job_id)["shared_data"])

Every method returns the API's pydantic models (:mod:`routilux_server` documents the
shapes); an error answer raises :class:`ApiError` with the server's ``code``, ``message`` and
``details``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import httpx
from routilux.errors import RoutiluxError

from ._models import (
    ActionResult,
    FlowDetail,
    FlowList,
    Health,
    JobHistory,
    JobList,
    JobLogs,
    JobSummary,
    JobTrace,
    PluginList,
    TokenResponse,
    ValidationResult,
)

__all__ = ["ApiError", "RoutiluxClient"]

_SETTLED = frozenset({"completed", "failed", "cancelled", "idle"})


def _job(job_id: str, tail: str = "") -> str:
    return f"/api/jobs/{quote(job_id, safe='')}{tail}"


def _flow(name: str, tail: str = "") -> str:
    return f"/api/flows/{quote(name, safe='')}{tail}"


class ApiError(RoutiluxError):
    """The server answered with an error.

    Attributes:
        status: the HTTP status (401, 403, 404, 409, 413, 422, 429, ...).
        code: the server's error code (``unknown_job``, ``rate_limited``, ...).
        details: structured context sent by the server (issues, names), or None.
    """

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class RoutiluxClient:
    """Talks to one Routilux server.

    Args:
        base_url: e.g. ``http://127.0.0.1:20555``.
        api_key: sent as ``X-API-Key``; default ``$ROUTILUX_API_KEY``.
        timeout: seconds per request.
        transport: an httpx transport (tests); default a normal connection pool.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get("ROUTILUX_API_KEY")
        headers = {"X-API-Key": key} if key else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers,
                                  timeout=timeout, transport=transport)

    # -- plumbing --------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        if response.is_error:
            try:
                err = response.json()["error"]
                code, message, details = err["code"], err["message"], err.get("details")
            except (ValueError, KeyError, TypeError):
                code, message, details = "http_error", response.text[:500], None
            raise ApiError(response.status_code, code, message, details)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RoutiluxClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- server ----------------------------------------------------------------------------

    def health(self) -> Health:
        return Health.model_validate(self._json("GET", "/api/health"))

    def plugins(self) -> PluginList:
        return PluginList.model_validate(self._json("GET", "/api/plugins"))

    def token(self) -> TokenResponse:
        """A short-lived token (for handing to a browser)."""
        return TokenResponse.model_validate(self._json("POST", "/api/auth/token"))

    # -- flows -----------------------------------------------------------------------------

    def list_flows(self) -> FlowList:
        return FlowList.model_validate(self._json("GET", "/api/flows"))

    def get_flow(self, name: str) -> FlowDetail:
        return FlowDetail.model_validate(self._json("GET", _flow(name, "")))

    @staticmethod
    def _document(document: Mapping[str, Any] | str) -> dict[str, Any]:
        if isinstance(document, str):
            return {"content": document.encode(), "headers": {"Content-Type": "application/yaml"}}
        return {"json": dict(document)}

    def create_flow(
        self, document: Mapping[str, Any] | str, *, name: str | None = None,
        replace: bool = False,
    ) -> FlowDetail:
        """Register a flow from a document (a dict, or YAML text)."""
        params: dict[str, Any] = {"replace": str(replace).lower()}
        if name is not None:
            params["name"] = name
        return FlowDetail.model_validate(
            self._json("POST", "/api/flows", params=params, **self._document(document)))

    def validate_flow(self, document: Mapping[str, Any] | str) -> ValidationResult:
        return ValidationResult.model_validate(
            self._json("POST", "/api/flows/validate", **self._document(document)))

    def delete_flow(self, name: str) -> None:
        self._request("DELETE", _flow(name, ""))

    def export_flow(self, name: str, format: Literal["json", "yaml", "mermaid"] = "json") -> str:
        return self._request("GET", _flow(name, "/export"),
                             params={"format": format}).text

    # -- jobs ------------------------------------------------------------------------------

    def start_job(
        self, flow: str, entry_params: Mapping[str, Any] | None = None, *,
        keep_open: bool = False, timeout: float | None = None,
    ) -> JobSummary:
        body = {"flow": flow, "entry_params": dict(entry_params) if entry_params is not None
                else None, "keep_open": keep_open, "timeout": timeout}
        return JobSummary.model_validate(self._json("POST", "/api/jobs", json=body))

    def list_jobs(
        self, *, status: str | None = None, flow: str | None = None, limit: int = 100,
        offset: int = 0,
    ) -> JobList:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status is not None:
            params["status"] = status
        if flow is not None:
            params["flow"] = flow
        return JobList.model_validate(self._json("GET", "/api/jobs", params=params))

    def get_job(self, job_id: str) -> JobSummary:
        return JobSummary.model_validate(self._json("GET", _job(job_id, "")))

    def job_state(self, job_id: str) -> dict[str, Any]:
        """The full job state (``JobState.to_dict()``)."""
        state: dict[str, Any] = self._json("GET", _job(job_id, "/state"))
        return state

    def wait_job(self, job_id: str, timeout: float | None = None) -> JobSummary:
        """Block until the job drains or ends; ``TimeoutError`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 30.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"job {job_id} still running after {timeout} s")
            job = JobSummary.model_validate(self._json(
                "GET", _job(job_id, "/wait"), params={"timeout": min(left, 30.0)},
                timeout=min(left, 30.0) + 10.0))
            if job.status in _SETTLED:
                return job

    def post(
        self, job_id: str, routine: str, slot: str, data: Mapping[str, Any]
    ) -> JobSummary:
        body = {"routine": routine, "slot": slot, "data": dict(data)}
        return JobSummary.model_validate(self._json("POST", _job(job_id, "/post"),
                                                    json=body))

    def pause(self, job_id: str) -> ActionResult:
        return ActionResult.model_validate(self._json("POST", _job(job_id, "/pause")))

    def resume(self, job_id: str) -> ActionResult:
        return ActionResult.model_validate(self._json("POST", _job(job_id, "/resume")))

    def cancel(self, job_id: str) -> ActionResult:
        return ActionResult.model_validate(self._json("POST", _job(job_id, "/cancel")))

    def complete(self, job_id: str) -> ActionResult:
        return ActionResult.model_validate(self._json("POST", _job(job_id, "/complete")))

    def metrics(self, job_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self._json("GET", _job(job_id, "/metrics"))
        return data

    def history(self, job_id: str, routine: str | None = None) -> JobHistory:
        params = {"routine": routine} if routine is not None else {}
        return JobHistory.model_validate(self._json("GET", _job(job_id, "/history"),
                                                    params=params))

    def trace(self, job_id: str) -> JobTrace:
        return JobTrace.model_validate(self._json("GET", _job(job_id, "/trace")))

    def logs(self, job_id: str) -> JobLogs:
        return JobLogs.model_validate(self._json("GET", _job(job_id, "/logs")))
