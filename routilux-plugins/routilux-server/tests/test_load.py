"""Load: 1,000 jobs started over HTTP by 20 concurrent clients against ``routilux serve`` in
its own process, with a WebSocket subscriber that keeps up. Everything must complete and the
subscriber must get every record; request latency is reported, never asserted."""

from __future__ import annotations

import asyncio
import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from routilux_server.client import RoutiluxClient
from websockets.asyncio.client import connect as aconnect

from .conftest import KEY

JOBS = 1000
CLIENTS = 20


def test_thousand_jobs_twenty_clients(served: Any, capsys: Any) -> None:
    server = served("--rate-limit", "100000", "--rate-burst", "100000", "--no-access-log")
    records: list[dict[str, Any]] = []
    ready = threading.Event()
    done = threading.Event()
    errors: list[BaseException] = []

    async def subscribe() -> None:
        finished = 0
        async with aconnect(f"{server.ws_url}/api/ws/flows/double",
                            additional_headers={"X-API-Key": KEY}, max_size=None) as ws:
            snap = json.loads(await ws.recv())
            assert snap["type"] == "snapshot" and snap["records"] == []
            ready.set()
            while finished < JOBS:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 60))
                records.extend(msg["records"])
                finished += sum(r["kind"] == "job.finished" for r in msg["records"])

    def run_subscriber() -> None:
        try:
            asyncio.run(subscribe())
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            ready.set()
            done.set()

    sub = threading.Thread(target=run_subscriber, daemon=True)
    sub.start()
    assert ready.wait(30) and not errors

    latencies: list[float] = []
    lock = threading.Lock()

    def client_run(n: int) -> list[str]:
        ids = []
        mine = []
        with RoutiluxClient(server.base_url, api_key=KEY) as c:
            for i in range(n):
                t0 = time.perf_counter()
                ids.append(c.start_job("double", {"x": i}).job_id)
                mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)
        return ids

    t0 = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        batches = list(pool.map(client_run, [JOBS // CLIENTS] * CLIENTS))
    started = time.perf_counter() - t0
    ids = {i for b in batches for i in b}
    assert len(ids) == JOBS
    assert done.wait(120), "the subscriber did not see every job finish"
    elapsed = time.perf_counter() - t0
    assert not errors, errors

    with RoutiluxClient(server.base_url, api_key=KEY) as c:
        page = c.list_jobs(status="completed", limit=1000)
        assert page.total == JOBS and {j.job_id for j in page.items} == ids
        health = c.health()
    assert health.tracking["dropped"] == 0
    assert health.websocket["slow_closed"] == 0

    by_job: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_job.setdefault(r["job_id"], []).append(r)
    assert set(by_job) == ids
    for job_records in by_job.values():
        seqs = [r["seq"] for r in job_records]
        assert seqs == list(range(1, len(seqs) + 1))  # no record lost or repeated
        assert job_records[-1]["kind"] == "job.finished"
        assert job_records[-1]["status"] == "completed"

    lat = sorted(latencies)
    p50 = statistics.median(lat)
    p99 = lat[int(len(lat) * 0.99) - 1]
    with capsys.disabled():
        print(
            f"\n[load] {JOBS} jobs by {CLIENTS} clients: started in {started:.2f} s "
            f"({JOBS / started:.0f} req/s), all completed and streamed in {elapsed:.2f} s; "
            f"start latency p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
            f"max {lat[-1] * 1000:.1f} ms; {len(records)} records to the subscriber"
        )
