"""WebSocket streaming against a live server: fan-out, late subscribers, slow subscribers,
message limits."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from routilux_server import ServerSettings
from websockets.asyncio.client import connect as aconnect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from .conftest import KEY

H = {"X-API-Key": KEY}


async def _read_until_finished(url: str, jobs: set[str] | None, *, ready: asyncio.Event,
                               count: int | None = None) -> list[dict[str, Any]]:
    """Every record the socket delivers (snapshot first) until each job in ``jobs`` (or
    ``count`` jobs) has sent ``job.finished``."""
    records: list[dict[str, Any]] = []
    finished: set[str] = set()
    async with aconnect(url, additional_headers=H, max_size=None) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert first["type"] == "snapshot"
        records.extend(first["records"])
        finished.update(r["job_id"] for r in first["records"] if r["kind"] == "job.finished")
        ready.set()
        while (jobs is None or not jobs <= finished) and (count is None or len(finished) < count):
            msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
            assert msg["type"] == "records"
            records.extend(msg["records"])
            finished.update(r["job_id"] for r in msg["records"] if r["kind"] == "job.finished")
    return records


def _by_job(records: list[dict[str, Any]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for r in records:
        out.setdefault(r["job_id"], []).append(r["seq"])
    return out


class TestFanOut:
    def test_three_subscribers_each_get_every_event(self, live: Any) -> None:
        url = f"{live.ws_url}/api/ws/flows/double"
        n_jobs = 30

        async def main() -> list[list[dict[str, Any]]]:
            readies = [asyncio.Event() for _ in range(3)]
            tasks = [asyncio.ensure_future(_read_until_finished(url, None, ready=r,
                                                                count=n_jobs))
                     for r in readies]
            for r in readies:
                await asyncio.wait_for(r.wait(), 10)

            def start() -> None:
                with live.client() as c:
                    for i in range(n_jobs):
                        c.start_job("double", {"x": i})

            await asyncio.to_thread(start)
            return list(await asyncio.wait_for(asyncio.gather(*tasks), 60))

        results = asyncio.run(main())
        live.runtime.tracking.flush()
        expected = {}
        for state in live.runtime.list_jobs():
            seqs = [r["seq"] for r in live.ctx.sink.trace(state.job_id)]
            assert seqs == list(range(1, len(seqs) + 1))
            expected[state.job_id] = seqs
        assert len(expected) == n_jobs
        for records in results:
            assert _by_job(records) == expected  # all of them, in order, no duplicates

    def test_late_subscribers_get_snapshot_then_live_without_gap(self, live: Any) -> None:
        with live.client() as c:
            job = c.start_job("double", keep_open=True)
        posted = threading.Event()

        def feed() -> None:
            for i in range(300):
                live.runtime.post("double", "map", "input", {"x": i}, job_id=job.job_id)
            posted.set()

        url = f"{live.ws_url}/api/ws/jobs/{job.job_id}"

        async def main() -> list[list[dict[str, Any]]]:
            feeder = threading.Thread(target=feed)
            feeder.start()
            tasks = []
            for _ in range(3):  # connect one after another while posts keep coming
                ready = asyncio.Event()
                tasks.append(asyncio.ensure_future(
                    _read_until_finished(url, {job.job_id}, ready=ready)))
                await asyncio.wait_for(ready.wait(), 10)
            await asyncio.to_thread(feeder.join)
            live.runtime.complete_job(job.job_id)
            return list(await asyncio.wait_for(asyncio.gather(*tasks), 60))

        results = asyncio.run(main())
        assert posted.is_set()
        total = [r["seq"] for r in live.ctx.sink.trace(job.job_id)]
        assert total == list(range(1, len(total) + 1)) and len(total) > 300
        for records in results:
            seqs = [r["seq"] for r in records]
            assert seqs == total  # snapshot + live: every record once, in order

    def test_snapshot_carries_job_summary(self, live: Any) -> None:
        with live.client() as c:
            job = c.start_job("double", {"x": 1})
            c.wait_job(job.job_id, timeout=10)
        live.runtime.tracking.flush()
        with connect(f"{live.ws_url}/api/ws/jobs/{job.job_id}", additional_headers=H) as ws:
            snap = json.loads(ws.recv(timeout=10))
            ws.send("ping")
            assert json.loads(ws.recv(timeout=10)) == {"type": "pong"}
        assert snap["job"]["status"] == "completed"
        assert snap["records"][-1]["kind"] == "job.finished"

    def test_unknown_flow_closes_4404(self, live: Any) -> None:
        with connect(f"{live.ws_url}/api/ws/flows/nope", additional_headers=H) as ws:
            assert json.loads(ws.recv(timeout=10))["error"]["code"] == "unknown_flow"
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 4404


class TestBackpressure:
    def test_slow_subscriber_is_closed_and_counted(self, make_server: Any) -> None:
        live = make_server(ServerSettings(api_keys=[KEY], ws_queue_size=2,
                                          rate_limit=1000, rate_burst=1000))
        state = live.runtime.exec("double", keep_open=True)
        with connect(f"{live.ws_url}/api/ws/jobs/{state.job_id}", additional_headers=H) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
            for i in range(100):  # hundreds of records arrive in batches larger than 2
                live.runtime.post("double", "map", "input", {"x": i}, job_id=state.job_id)
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    ws.recv(timeout=20)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1013
        assert live.ctx.sink.stats()["slow_closed"] == 1
        assert live.ctx.sink.stats()["subscribers"] == 0
        # the runtime was never held up: the job still drains
        assert live.runtime.wait_job(state.job_id, timeout=10)

    def test_client_message_too_big_closes_1009(self, live: Any) -> None:
        with connect(f"{live.ws_url}/api/ws/flows/double", additional_headers=H) as ws:
            ws.recv(timeout=10)
            ws.send("x" * (live.ctx.settings.max_ws_message_bytes + 1))
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
