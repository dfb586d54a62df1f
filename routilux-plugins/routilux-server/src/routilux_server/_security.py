"""Authentication (API keys, short-lived tokens), origin checks, rate limiting, size limits.

Everything here is ASGI middleware in front of the FastAPI app, so every route, including one
added later, is covered without a per-route dependency that could be forgotten. WebSocket
handshakes are checked *before* the app sees them: a refused handshake never reaches the
endpoint, so it cannot reveal whether a job exists.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import HTTPException

from ._settings import ServerSettings, is_loopback

__all__ = [
    "PUBLIC_PATHS",
    "PUBLIC_PREFIXES",
    "SUBPROTOCOL",
    "TOKEN_SUBPROTOCOL_PREFIX",
    "AuthError",
    "Authenticator",
    "BodyLimitMiddleware",
    "PayloadTooLarge",
    "RateLimiter",
    "SecurityMiddleware",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PUBLIC_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/openapi.json", "/"})
"""Served without a key: the API description and its viewer, and the dashboard's page (they
hold no runtime data)."""

PUBLIC_PREFIXES = ("/ui/",)
"""Paths under these are served without a key: the dashboard's scripts and styles."""

SUBPROTOCOL = "routilux.v1"
"""The WebSocket subprotocol the server speaks (browsers offer it with a token)."""

TOKEN_SUBPROTOCOL_PREFIX = "routilux.token."

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class AuthError(Exception):
    """A request was refused before reaching the app."""

    def __init__(self, status: int, code: str, message: str, retry_after: float = 0.0):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class PayloadTooLarge(HTTPException):
    """A request body went over ``max_body_bytes`` while it was read."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")
        self.limit = limit


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Authenticator:
    """Checks API keys (constant time) and issues/verifies short-lived browser tokens.

    Keys are compared as SHA-256 digests with :func:`hmac.compare_digest`, against every
    configured key without stopping at a match, so timing reveals neither the key nor which
    one matched. Tokens are ``v1.<expiry>.<key id>.<HMAC>`` signed with a secret drawn when the
    app is created: they die with the process and carry no key material.
    """

    def __init__(self, settings: ServerSettings, *, clock: Callable[[], float] = time.time):
        self.settings = settings
        self._digests = settings.key_ids()
        self._secret = secrets.token_bytes(32)
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return not self.settings.insecure_no_auth

    def check_key(self, key: str) -> str | None:
        """The id of the key ``key`` matches, else None."""
        given = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        found = None
        for digest, kid in self._digests.items():
            if hmac.compare_digest(digest, given):
                found = kid
        return found

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._secret, body.encode(), hashlib.sha256).digest())

    def issue_token(self, principal: str) -> tuple[str, float]:
        """A token for ``principal`` and its lifetime in seconds."""
        ttl = self.settings.token_ttl
        body = f"v1.{math.ceil(self._clock() + ttl)}.{principal}"
        return f"{body}.{self._sign(body)}", ttl

    def check_token(self, token: str) -> str | None:
        """The principal a valid, unexpired token was issued to, else None."""
        body, _, sig = token.rpartition(".")
        parts = body.split(".")
        if len(parts) != 3 or parts[0] != "v1":
            return None
        if not hmac.compare_digest(self._sign(body).encode(), sig.encode()):
            return None
        try:
            expiry = int(parts[1])
        except ValueError:
            return None
        if expiry < self._clock():
            return None
        return parts[2]


class RateLimiter:
    """A token bucket per client: ``rate`` requests per second, bursts up to ``burst``.

    Buckets of the ``max_clients`` most recently seen clients are kept (a forgotten client
    comes back with a full bucket, so memory stays bounded without letting anyone exceed
    ``burst`` at a time by more than one refill).
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()
        self.limited = 0
        """Requests refused so far."""

    def take(self, client: str) -> float:
        """Spend one token of ``client``; 0.0 if allowed, else seconds until one is free."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                wait = 0.0
            else:
                self._buckets[client] = (tokens, now)
                self.limited += 1
                wait = (1.0 - tokens) / self.rate
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        return wait


def _headers(scope: Scope) -> dict[str, str]:
    """Request headers, lower-case names; a repeated header keeps its first value."""
    out: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        out.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return out


def _client_host(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def error_body(code: str, message: str, details: Any = None) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "details": details}}).encode()


class SecurityMiddleware:
    """Authenticates, checks the Origin and rate-limits every HTTP request and WebSocket
    handshake; see docs/server.md, "Security"."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: ServerSettings,
        authenticator: Authenticator,
        limiter: RateLimiter,
        refused: dict[int, int],
    ) -> None:
        self.app = app
        self.settings = settings
        self.auth = authenticator
        self.limiter = limiter
        self.refused = refused
        """Refusals by status (401, 403, 429), shared with the health route."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    # -- the checks ------------------------------------------------------------------------

    def _principal(self, scope: Scope, headers: dict[str, str], *, websocket: bool) -> str:
        """Who is calling, or AuthError (401 no credentials, 403 wrong ones)."""
        host = _client_host(scope)
        if not self.auth.enabled:
            if not is_loopback(host):
                raise AuthError(403, "forbidden", "this server runs without API keys and only "
                                "answers loopback clients")
            return "local"
        key = headers.get("x-api-key")
        if key is not None:
            kid = self.auth.check_key(key)
            if kid is None:
                raise AuthError(403, "invalid_api_key", "the X-API-Key is not valid")
            return kid
        token = None
        authz = headers.get("authorization")
        if authz is not None:
            scheme, _, value = authz.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise AuthError(403, "invalid_token", "Authorization must be 'Bearer <token>'")
            token = value.strip()
        elif websocket:
            for proto in _subprotocols(scope):
                if proto.startswith(TOKEN_SUBPROTOCOL_PREFIX):
                    token = proto[len(TOKEN_SUBPROTOCOL_PREFIX):]
                    break
        if token is None:
            raise AuthError(401, "missing_credentials", "send an API key in the X-API-Key "
                            "header (or a token from POST /api/auth/token)")
        principal = self.auth.check_token(token)
        if principal is None:
            raise AuthError(403, "invalid_token", "the token is not valid or has expired; "
                            "get a new one from POST /api/auth/token")
        return principal

    def _check_origin(self, scope: Scope, headers: dict[str, str]) -> None:
        origin = headers.get("origin")
        if origin is None:
            return  # not a browser (browsers always send Origin where it matters)
        origin = origin.rstrip("/")
        if origin in self.settings.allowed_origins:
            return
        scheme = {"ws": "http", "wss": "https"}.get(scope.get("scheme", "http"),
                                                     scope.get("scheme", "http"))
        if origin == f"{scheme}://{headers.get('host', '')}":
            return  # same origin (the dashboard served by this server)
        raise AuthError(403, "origin_not_allowed", f"origin {origin!r} is not allowed; add it "
                        "to the server's allowed origins (--allow-origin)")

    def _limit(self, client: str) -> None:
        wait = self.limiter.take(client)
        if wait > 0:
            raise AuthError(429, "rate_limited", "too many requests; slow down",
                            retry_after=wait)

    def _check(self, scope: Scope, *, websocket: bool) -> str | None:
        """The principal, None for a public path; AuthError when refused."""
        headers = _headers(scope)
        path = scope.get("path", "")
        if not websocket and scope.get("method") in _SAFE_METHODS and (
                path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)):
            self._limit(f"addr:{_client_host(scope)}")
            return None
        try:
            principal = self._principal(scope, headers, websocket=websocket)
        except AuthError:
            # failed attempts count against the address: guessing keys is rate limited too
            self._limit(f"addr:{_client_host(scope)}")
            raise
        if websocket or scope.get("method") not in _SAFE_METHODS:
            self._check_origin(scope, headers)
        self._limit(principal)
        return principal

    # -- HTTP ------------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            principal = self._check(scope, websocket=False)
        except AuthError as exc:
            self.refused[exc.status] = self.refused.get(exc.status, 0) + 1
            await _send_error(send, exc)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)

    # -- WebSocket -------------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        try:
            principal = self._check(scope, websocket=True)
        except AuthError as exc:
            self.refused[exc.status] = self.refused.get(exc.status, 0) + 1
            if "websocket.http.response" in scope.get("extensions", {}):
                await _send_error(send, exc, prefix="websocket.")
            else:  # the server cannot answer the handshake: refuse it (policy violation)
                await send({"type": "websocket.close", "code": 1008, "reason": exc.code})
            return
        state = scope.setdefault("state", {})
        state["principal"] = principal
        state["subprotocol"] = (
            SUBPROTOCOL if SUBPROTOCOL in _subprotocols(scope) else None
        )
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return first
            return await receive()

        await self.app(scope, replay, send)


def _subprotocols(scope: Scope) -> list[str]:
    """Every subprotocol the client offered (in one header or several)."""
    out = [str(p) for p in scope.get("subprotocols", ())]  # the ASGI field
    for name, value in scope.get("headers", ()):
        if name.lower() == b"sec-websocket-protocol":
            out.extend(p.strip() for p in value.decode("latin-1").split(",") if p.strip())
    return list(dict.fromkeys(out))


async def _send_error(send: Send, exc: AuthError, prefix: str = "") -> None:
    body = error_body(exc.code, exc.message)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if exc.status == 401:
        headers.append((b"www-authenticate", b'ApiKey header="X-API-Key"'))
    if exc.status == 429:
        headers.append((b"retry-after", str(max(1, math.ceil(exc.retry_after))).encode()))
    await send({"type": f"{prefix}http.response.start", "status": exc.status, "headers": headers})
    await send({"type": f"{prefix}http.response.body", "body": body})


class BodyLimitMiddleware:
    """Refuses request bodies over ``limit`` bytes with 413: at once when Content-Length says
    so, else as soon as the streamed body passes the limit (nothing more is read)."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _headers(scope).get("content-length")
        if length is not None:
            try:
                too_big = int(length) > self.limit
            except ValueError:
                too_big = False
            if too_big:
                await _send_error(send, AuthError(
                    413, "payload_too_large", f"request body larger than {self.limit} bytes"))
                return
        seen = 0
        started = False

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise PayloadTooLarge(self.limit)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, tracked)
        except PayloadTooLarge:
            if started:
                raise
            await _send_error(send, AuthError(
                413, "payload_too_large", f"request body larger than {self.limit} bytes"))
