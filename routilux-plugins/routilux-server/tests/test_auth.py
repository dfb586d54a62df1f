"""Security: the auth matrix over every route of the app, tokens, origins, insecure mode."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute
from routilux_server import ServerConfigError, ServerSettings, check_bind
from routilux_server._security import (
    PUBLIC_PATHS,
    PUBLIC_PREFIXES,
    SUBPROTOCOL,
    TOKEN_SUBPROTOCOL_PREFIX,
    Authenticator,
    RateLimiter,
)
from starlette.routing import Mount, Route
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from .conftest import KEY, OTHER_KEY

WRONG = "wrong-key-0123456789abcdef"


def _fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


def _ws_status(url: str, headers: dict[str, str] | None = None, **kwargs: Any) -> int:
    """The HTTP status of a refused handshake, or 101 if the WebSocket opened."""
    try:
        with connect(url, additional_headers=headers or {}, open_timeout=10, **kwargs) as ws:
            json.loads(ws.recv(timeout=10))
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


class TestAuthMatrix:
    def test_every_route_needs_a_key(self, live: Any) -> None:
        """Generated from ``app.routes``: no key 401, wrong key 403, right key neither."""
        with live.client() as c:
            job = c.start_job("double", {"x": 1}, keep_open=True)
        values = {"name": "double", "job_id": job.job_id, "flow": "double"}
        rows: list[tuple[str, str]] = []
        public: set[str] = set()
        mounts: set[str] = set()
        routes = list(live.app.routes)
        # destructive routes last, so the others still find the flow and the job
        routes.sort(key=lambda r: "DELETE" in (getattr(r, "methods", None) or ()))
        for route in routes:
            if isinstance(route, APIRoute):
                for method in sorted(route.methods):
                    url = live.base_url + _fill(route.path, values)
                    body = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
                    no_key = httpx.request(method, url, **body)
                    wrong = httpx.request(method, url, headers={"X-API-Key": WRONG}, **body)
                    good = httpx.request(method, url, headers={"X-API-Key": KEY}, **body)
                    assert no_key.status_code == 401, (method, route.path, no_key.text)
                    assert no_key.json()["error"]["code"] == "missing_credentials"
                    assert wrong.status_code == 403, (method, route.path, wrong.text)
                    assert wrong.json()["error"]["code"] == "invalid_api_key"
                    assert good.status_code not in (401, 403), (method, route.path, good.text)
                    rows.append((method, route.path))
            elif isinstance(route, APIWebSocketRoute):
                url = live.ws_url + _fill(route.path, values)
                assert _ws_status(url) == 401, route.path
                assert _ws_status(url, {"X-API-Key": WRONG}) == 403, route.path
                assert _ws_status(url, {"X-API-Key": KEY}) == 101, route.path
                rows.append(("WS", route.path))
            elif isinstance(route, Route):
                public.add(route.path)
                for method in sorted(route.methods or ()):
                    r = httpx.request(method, live.base_url + route.path)
                    assert r.status_code == 200, (method, route.path)
            elif isinstance(route, Mount):  # the dashboard's static files: public, GET only
                assert route.path + "/" in PUBLIC_PREFIXES, route.path
                r = httpx.get(live.base_url + route.path + "/js/main.js")
                assert r.status_code == 200, route.path
                mounts.add(route.path)
            else:  # pragma: no cover - a new kind of route must be added to the matrix
                pytest.fail(f"route kind {type(route).__name__} not covered: {route}")
        # every route is in the matrix or in the documented public set, nothing else
        assert public == set(PUBLIC_PATHS)
        assert {m + "/" for m in mounts} == set(PUBLIC_PREFIXES)
        expected = {(m, r.path) for r in live.app.routes if isinstance(r, APIRoute)
                    for m in r.methods}
        expected |= {("WS", r.path) for r in live.app.routes
                     if isinstance(r, APIWebSocketRoute)}
        assert set(rows) == expected and len(rows) == len(expected)
        assert len(rows) >= 25

    def test_second_key_works_and_keys_are_not_interchangeable_ids(self, live: Any) -> None:
        r = httpx.get(live.base_url + "/api/health", headers={"X-API-Key": OTHER_KEY})
        assert r.status_code == 200

    def test_unknown_job_websocket_refused_before_revealing_anything(self, live: Any) -> None:
        url = live.ws_url + "/api/ws/jobs/no-such-job"
        assert _ws_status(url) == 401
        assert _ws_status(url, {"X-API-Key": WRONG}) == 403
        # with a good key the socket opens and then says the job is unknown (close 4404)
        with connect(url, additional_headers={"X-API-Key": KEY}) as ws:
            msg = json.loads(ws.recv(timeout=10))
            assert msg["type"] == "error" and msg["error"]["code"] == "unknown_job"
            with pytest.raises(Exception) as info:
                ws.recv(timeout=10)
        assert getattr(info.value, "rcvd", None) is not None and info.value.rcvd.code == 4404


class TestTokens:
    def test_bearer_token_and_websocket_subprotocol(self, live: Any) -> None:
        with live.client() as c:
            token = c.token().token
            job = c.start_job("double", {"x": 2})
            c.wait_job(job.job_id, timeout=10)
        r = httpx.get(f"{live.base_url}/api/jobs/{job.job_id}",
                      headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
        with connect(f"{live.ws_url}/api/ws/jobs/{job.job_id}",
                     subprotocols=[SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX + token]) as ws:
            assert ws.subprotocol == SUBPROTOCOL
            snap = json.loads(ws.recv(timeout=10))
        assert snap["type"] == "snapshot" and snap["job"]["job_id"] == job.job_id

    def test_tampered_or_foreign_token_is_refused(self, live: Any) -> None:
        with live.client() as c:
            token = c.token().token
        body, _, sig = token.rpartition(".")
        forged = body.replace("v1.", "v1.9", 1) + "." + sig
        for bad in (forged, token + "x", "v1.1.key.abc"):
            r = httpx.get(live.base_url + "/api/health",
                          headers={"Authorization": f"Bearer {bad}"})
            assert r.status_code == 403
        url = f"{live.ws_url}/api/ws/flows/double"
        assert _ws_status(url, subprotocols=[SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX + forged]) \
            == 403

    def test_token_expires(self) -> None:
        now = [1000.0]
        auth = Authenticator(ServerSettings(api_keys=[KEY], token_ttl=60),
                             clock=lambda: now[0])
        token, _ = auth.issue_token("key-1")
        assert auth.check_token(token) == "key-1"
        now[0] += 61
        assert auth.check_token(token) is None

    def test_keys_match_exactly(self) -> None:
        auth = Authenticator(ServerSettings(api_keys=[KEY, OTHER_KEY]))
        assert auth.check_key(KEY) is not None
        assert auth.check_key(KEY) != auth.check_key(OTHER_KEY)
        for near in (KEY[:-1], KEY + "x", KEY.upper(), "", "é" * 20):
            assert auth.check_key(near) is None


class TestOrigin:
    def test_foreign_origin_refused_for_state_changes_and_websockets(self, live: Any) -> None:
        headers = {"X-API-Key": KEY, "Origin": "http://evil.example"}
        r = httpx.post(live.base_url + "/api/jobs", headers=headers,
                       json={"flow": "double", "entry_params": {"x": 1}})
        assert r.status_code == 403 and r.json()["error"]["code"] == "origin_not_allowed"
        assert live.runtime.list_jobs() == []  # nothing started
        assert httpx.get(live.base_url + "/api/flows", headers=headers).status_code == 200
        assert _ws_status(live.ws_url + "/api/ws/flows/double", {"X-API-Key": KEY},
                          origin="http://evil.example") == 403

    def test_same_origin_and_allowed_origins_pass(self, make_server: Any) -> None:
        live = make_server(ServerSettings(api_keys=[KEY], allowed_origins=["https://dash.example"],
                                          rate_limit=1000, rate_burst=1000))
        own = live.base_url
        for origin in (own, "https://dash.example"):
            r = httpx.post(live.base_url + "/api/jobs", json={"flow": "double"},
                           headers={"X-API-Key": KEY, "Origin": origin})
            assert r.status_code == 201, r.text
            assert _ws_status(live.ws_url + "/api/ws/flows/double", {"X-API-Key": KEY},
                              origin=origin) == 101


class TestInsecureMode:
    def test_no_key_needed_on_loopback(self, make_server: Any) -> None:
        live = make_server(ServerSettings(insecure_no_auth=True))
        assert httpx.get(live.base_url + "/api/health").status_code == 200

    def test_non_loopback_client_refused(self) -> None:
        import asyncio

        from routilux_server._security import AuthError, SecurityMiddleware

        settings = ServerSettings(insecure_no_auth=True)
        mw = SecurityMiddleware(None, settings=settings,  # type: ignore[arg-type]
                                authenticator=Authenticator(settings),
                                limiter=RateLimiter(10, 10), refused={})
        scope = {"type": "http", "path": "/api/health", "method": "GET", "headers": [],
                 "client": ("10.1.2.3", 5000)}
        with pytest.raises(AuthError) as info:
            mw._check(scope, websocket=False)
        assert info.value.status == 403
        assert asyncio  # (sync check; no loop needed)

    @pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::", "example.com"])
    def test_non_loopback_bind_needs_keys(self, host: str) -> None:
        with pytest.raises(ServerConfigError, match="without API keys"):
            check_bind(host, ServerSettings(insecure_no_auth=True))
        check_bind(host, ServerSettings(api_keys=[KEY]))  # with keys: allowed

    @pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
    def test_loopback_bind_may_run_without_keys(self, host: str) -> None:
        check_bind(host, ServerSettings(insecure_no_auth=True))


class TestSettings:
    def test_no_keys_no_server(self) -> None:
        with pytest.raises(ServerConfigError, match="ROUTILUX_API_KEY"):
            ServerSettings()
        with pytest.raises(ServerConfigError, match="ROUTILUX_API_KEY"):
            ServerSettings.from_env(environ={})

    def test_keys_from_env_and_file(self, tmp_path: Any) -> None:
        f = tmp_path / "keys"
        f.write_text("# ops keys\nfile-key-0123456789abcdef\n\n")
        s = ServerSettings.from_env(
            key_file=f, environ={"ROUTILUX_API_KEY": KEY,
                                 "ROUTILUX_API_KEYS": f"{OTHER_KEY}, {KEY}"})
        assert s.api_keys == (KEY, OTHER_KEY, "file-key-0123456789abcdef")

    @pytest.mark.parametrize("key", ["short", "has space 0123456789", "comma,0123456789abcd"])
    def test_weak_or_malformed_keys_refused(self, key: str) -> None:
        with pytest.raises(ServerConfigError):
            ServerSettings(api_keys=[key])
