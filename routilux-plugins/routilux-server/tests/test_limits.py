"""Body size limits (413) and rate limiting (429) on a live server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
from routilux_server import ServerSettings
from routilux_server._security import RateLimiter

from .conftest import KEY, OTHER_KEY

H = {"X-API-Key": KEY}


class TestBodyLimit:
    def test_declared_length_over_limit_is_413(self, make_server: Any) -> None:
        live = make_server(ServerSettings(api_keys=[KEY], max_body_bytes=1000,
                                          rate_limit=1000, rate_burst=1000))
        r = httpx.post(live.base_url + "/api/jobs", headers=H,
                       json={"flow": "double", "entry_params": {"x": "a" * 2000}})
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "payload_too_large"
        assert live.runtime.list_jobs() == []
        ok = httpx.post(live.base_url + "/api/jobs", headers=H,
                        json={"flow": "double", "entry_params": {"x": "a" * 100}})
        assert ok.status_code == 201

    def test_streamed_body_over_limit_is_413(self, make_server: Any) -> None:
        live = make_server(ServerSettings(api_keys=[KEY], max_body_bytes=1000,
                                          rate_limit=1000, rate_burst=1000))

        def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
            yield b'{"flow": "double", "entry_params": {"x": "'
            for _ in range(20):
                yield b"a" * 100
            yield b'"}}'

        r = httpx.post(live.base_url + "/api/flows", content=chunks(),
                       headers={**H, "Content-Type": "application/json"})
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "payload_too_large"


class TestRateLimit:
    # One token per 1,000 s: no token comes back while a test runs, however slowly the
    # machine answers (at 0.5/s a loaded CI machine refilled one between requests).
    def test_429_with_retry_after_per_key(self, make_server: Any) -> None:
        live = make_server(ServerSettings(api_keys=[KEY, OTHER_KEY], rate_limit=0.001,
                                          rate_burst=3))
        statuses = [httpx.get(live.base_url + "/api/flows", headers=H).status_code
                    for _ in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
        r = httpx.get(live.base_url + "/api/flows", headers=H)
        assert r.json()["error"]["code"] == "rate_limited"
        assert int(r.headers["Retry-After"]) >= 1
        # another key has its own bucket
        other = httpx.get(live.base_url + "/api/flows", headers={"X-API-Key": OTHER_KEY})
        assert other.status_code == 200
        assert live.ctx.refused[429] >= 3

    def test_failed_authentication_is_rate_limited_too(self, make_server: Any) -> None:
        live = make_server(ServerSettings(api_keys=[KEY], rate_limit=0.001, rate_burst=3))
        statuses = [httpx.get(live.base_url + "/api/flows",
                              headers={"X-API-Key": f"guess-{i:020d}"}).status_code
                    for i in range(5)]
        assert statuses == [403, 403, 403, 429, 429]

    def test_bucket_refills(self) -> None:
        now = [0.0]
        limiter = RateLimiter(2.0, 2, clock=lambda: now[0])
        assert [limiter.take("a") for _ in range(3)][:2] == [0.0, 0.0]
        assert limiter.take("a") > 0
        now[0] += 0.5  # one token back
        assert limiter.take("a") == 0.0
        assert limiter.take("a") > 0
        assert limiter.take("b") == 0.0
        assert limiter.limited == 3

    def test_bounded_memory(self) -> None:
        limiter = RateLimiter(1.0, 1, max_clients=10)
        for i in range(100):
            limiter.take(f"c{i}")
        assert len(limiter._buckets) == 10
