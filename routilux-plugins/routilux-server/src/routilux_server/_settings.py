"""Server settings: API keys, origins, limits; read from the environment or given in Python."""

from __future__ import annotations

import hashlib
import ipaddress
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
from routilux.errors import ConfigurationError

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "ServerConfigError",
    "ServerSettings",
    "is_loopback",
    "read_key_file",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 20555

MIN_KEY_LENGTH = 16
"""Shorter API keys are refused: they could be guessed within the rate limit's reach."""


class ServerConfigError(ConfigurationError):
    """The server was configured in a way that would be unsafe or cannot work."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_key_file(path: str | os.PathLike[str]) -> list[str]:
    """API keys from a file: one per line; blank lines and ``#`` comments are ignored.

    Only the command line calls this (the path is the operator's choice); no endpoint reads a
    file by a path it was sent.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ServerConfigError(f"cannot read API key file {str(p)!r}: {exc}") from None
    keys = [line.strip() for line in text.splitlines()]
    return [k for k in keys if k and not k.startswith("#")]


def keys_from_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """Keys from ``ROUTILUX_API_KEY`` (one key) and ``ROUTILUX_API_KEYS`` (comma-separated)."""
    env = os.environ if environ is None else environ
    keys = []
    one = env.get("ROUTILUX_API_KEY", "").strip()
    if one:
        keys.append(one)
    many = env.get("ROUTILUX_API_KEYS", "")
    keys.extend(k.strip() for k in many.split(",") if k.strip())
    return keys


def _check_keys(_: Any, __: Any, keys: tuple[str, ...]) -> None:
    for key in keys:
        if not isinstance(key, str) or len(key) < MIN_KEY_LENGTH:
            raise ServerConfigError(
                f"API keys must be strings of at least {MIN_KEY_LENGTH} characters; generate "
                'one with: python -c "import secrets; print(secrets.token_urlsafe(32))"'
            )
        if not key.isascii() or any(c.isspace() or c == "," for c in key):
            raise ServerConfigError(
                "API keys must be ASCII without spaces or commas (they travel in a header)"
            )


def _positive(_: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ServerConfigError(f"{attr.name} must be a positive number, got {value!r}")


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _origins(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(o.rstrip("/") for o in values)


@attrs.frozen(kw_only=True)
class ServerSettings:
    """How the server authenticates and limits clients.

    Attributes:
        api_keys: accepted keys (sent as ``X-API-Key``). Required unless
            ``insecure_no_auth`` is set.
        insecure_no_auth: serve without keys. Only for development: requests must then come
            from a loopback address, and ``routilux serve`` refuses a non-loopback bind.
        allowed_origins: browser origins (``https://dash.example.com``) allowed to open
            WebSockets and send state-changing requests, besides the server's own origin.
        max_body_bytes: largest request body (413 beyond).
        max_ws_message_bytes: largest WebSocket message a client may send (close 1009).
        rate_limit: requests per second allowed per client (API key, or address without
            keys), refilled continuously (429 beyond, with ``Retry-After``).
        rate_burst: requests a client may send at once before the rate applies.
        token_ttl: seconds a browser token from ``POST /api/auth/token`` stays valid.
        ws_queue_size: tracking records queued for one WebSocket subscriber; a subscriber
            that falls this far behind is closed (code 1013) and counted.
        job_trace_size: tracking records kept per job for late subscribers and
            ``GET /api/jobs/{id}/trace``.
        trace_jobs: jobs whose records are kept (least recently active forgotten first).
        max_wait: longest ``GET /api/jobs/{id}/wait`` may block, in seconds.
        dashboard: serve the web dashboard at ``/`` (docs/dashboard.md). Its files are
            public; everything it shows comes from the API with the user's key.
    """

    api_keys: tuple[str, ...] = attrs.field(
        default=(), converter=_unique, validator=_check_keys
    )
    insecure_no_auth: bool = False
    allowed_origins: tuple[str, ...] = attrs.field(default=(), converter=_origins)
    max_body_bytes: int = attrs.field(default=1_048_576, validator=_positive)
    max_ws_message_bytes: int = attrs.field(default=65_536, validator=_positive)
    rate_limit: float = attrs.field(default=50.0, validator=_positive)
    rate_burst: int = attrs.field(default=100, validator=_positive)
    token_ttl: float = attrs.field(default=300.0, validator=_positive)
    ws_queue_size: int = attrs.field(default=10_000, validator=_positive)
    job_trace_size: int = attrs.field(default=2_000, validator=_positive)
    trace_jobs: int = attrs.field(default=1_000, validator=_positive)
    max_wait: float = attrs.field(default=30.0, validator=_positive)
    dashboard: bool = True

    def __attrs_post_init__(self) -> None:
        if not self.api_keys and not self.insecure_no_auth:
            raise ServerConfigError(
                "no API key configured: set ROUTILUX_API_KEY (or ROUTILUX_API_KEYS, or "
                "--api-key-file); for local development only, --insecure-no-auth serves "
                "without keys on a loopback address"
            )

    @classmethod
    def from_env(
        cls,
        *,
        key_file: str | os.PathLike[str] | None = None,
        extra_keys: Iterable[str] = (),
        environ: Mapping[str, str] | None = None,
        **options: object,
    ) -> ServerSettings:
        """Settings with keys from the environment, ``key_file`` and ``extra_keys``."""
        keys = [*keys_from_env(environ), *extra_keys]
        if key_file is not None:
            keys.extend(read_key_file(key_file))
        return cls(api_keys=tuple(keys), **options)  # type: ignore[arg-type]

    def key_ids(self) -> dict[bytes, str]:
        """SHA-256 digest of each key -> a short id (for rate limiting and logs; never the
        key itself)."""
        out = {}
        for key in self.api_keys:
            digest = hashlib.sha256(key.encode()).digest()
            out[digest] = "key-" + digest.hex()[:8]
        return out
