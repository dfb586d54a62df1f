"""Async API orchestration: fan 500 HTTP requests out at once, join the answers.

    uv run python examples/api_orchestration/async_fanout.py [--requests 500]
    uv run routilux run examples/api_orchestration/async_fanout.py:build_flow

A small JSON price API runs on 127.0.0.1 (stdlib ``asyncio`` streams, a free port, its own
event loop in a daemon thread). To prove the requests really are concurrent, it *holds every
answer until all the expected requests are open at once* (or 10 s passed), then answers them
all: a flow that sent them one by one, or a thread each on a small pool, could not finish.
The flow:

* ``plan`` (async) emits one ``item`` payload per product id (fan-out);
* ``fetch`` (async, ``max_concurrency`` = the number of requests) awaits one ``httpx`` GET
  per payload on the runtime's event loop: 500 requests wait at once without a thread each;
* ``join`` (a plain sync routine, ``batch_size_policy(n)``) receives the ``n`` answers in one
  activation (fan-in) and puts the total in ``shared_data["result"]``.

``main()`` runs inside ``asyncio.run`` and awaits the job with ``runtime.aexec``: the caller's
loop keeps running while the job does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import threading
import time
import weakref
from typing import Any

import httpx
from routilux import Flow, Routine, Runtime
from routilux.activation_policies import batch_size_policy

HOLD_TIMEOUT = 10.0
"""Seconds the server holds answers waiting for every expected request to be open."""


def price_of(item: int) -> float:
    """The price the fake API quotes for product ``item`` (the test checks the total)."""
    return round(1.0 + (item * 37 % 100) / 4, 2)


class PriceApi:
    """``GET /price/<id>`` → ``{"id": id, "price": ...}``; answers only once ``expected``
    requests are open at the same time (``peak`` records the most that were)."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.open = 0
        self.peak = 0
        self.served = 0
        self.port = 0
        self._all_open: asyncio.Event | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._all_open is not None
        counted = False
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            path = request.split(b" ", 2)[1].decode()
            item = int(path.rsplit("/", 1)[1])
            self.open += 1
            counted = True
            self.peak = max(self.peak, self.open)
            if self.open >= self.expected:
                self._all_open.set()
            with contextlib.suppress(TimeoutError):  # answer anyway: the peak tells
                await asyncio.wait_for(self._all_open.wait(), HOLD_TIMEOUT)
            body = json.dumps({"id": item, "price": price_of(item)}).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
            self.served += 1
        finally:
            if counted:
                self.open -= 1
            writer.close()

    def start(self) -> PriceApi:
        """Serve on 127.0.0.1 (a free port) from a daemon thread with its own loop."""
        ready = threading.Event()

        async def serve() -> None:
            self._all_open = asyncio.Event()
            server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=1024)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            async with server:
                await server.serve_forever()

        threading.Thread(target=asyncio.run, args=(serve(),), name="price-api",
                         daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("the price API did not start")
        return self


_CLIENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def client() -> httpx.AsyncClient:
    """The HTTP client of the running event loop (an httpx client and its connection pool
    belong to one loop; every activation on the runtime's loop shares this one)."""
    loop = asyncio.get_running_loop()
    found = _CLIENTS.get(loop)
    if found is None:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
        found = _CLIENTS[loop] = httpx.AsyncClient(limits=limits, timeout=30, trust_env=False)
    return found


class Plan(Routine):
    """Fan-out: one ``item`` payload per product id in ``range(count)``."""

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("request")
        self.add_event("item", ["id"])

        async def logic(slot_data: dict[str, list[dict[str, Any]]], policy_message: Any,
                        job_state: Any) -> None:
            for request in slot_data["request"]:
                for item in range(int(request["count"])):
                    self.emit("item", id=item)

        self.set_logic(logic)


class Fetch(Routine):
    """One HTTP GET per payload, awaited on the runtime's event loop."""

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("item")
        self.add_event("price", ["id", "price"])

        async def logic(slot_data: dict[str, list[dict[str, Any]]], policy_message: Any,
                        job_state: Any) -> None:
            base = self.get_config("base_url")
            for payload in slot_data["item"]:
                answer = await client().get(f"{base}/price/{payload['id']}")
                answer.raise_for_status()
                self.emit("price", **answer.json())

        self.set_logic(logic)


class Join(Routine):
    """Fan-in (sync logic): all answers arrive in one activation."""

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("prices")

        def logic(slot_data: dict[str, list[dict[str, Any]]], policy_message: Any,
                  job_state: Any) -> None:
            prices = slot_data["prices"]
            job_state.shared_data["result"] = {
                "answers": len(prices),
                "distinct_ids": len({p["id"] for p in prices}),
                "total": round(sum(p["price"] for p in prices), 2),
            }

        self.set_logic(logic)


def build_flow(requests: int = 500, api: PriceApi | None = None) -> Flow:
    """The fan-out/fan-in flow against a running price API (one is started if not given)."""
    api = api or PriceApi(requests).start()
    flow = Flow("async_api_fanout")
    flow.add_routine(Plan(), "plan")
    fetch = Fetch()
    fetch.set_config(base_url=f"http://127.0.0.1:{api.port}")
    fetch.set_max_concurrency(requests)  # per job: every request of this job at once
    flow.add_routine(fetch, "fetch")
    join = Join()
    join.set_activation_policy(batch_size_policy(requests))
    flow.add_routine(join, "join")
    flow.connect("plan", "item", "fetch", "item")
    flow.connect("fetch", "price", "join", "prices")
    flow.set_entry("plan", "request")
    flow.set_execution_timeout(60)
    return flow


async def main(requests: int) -> int:
    api = PriceApi(requests).start()
    flow = build_flow(requests, api)
    with Runtime(async_concurrency=max(1000, requests)) as runtime:
        t0 = time.perf_counter()
        state = await runtime.aexec(flow, {"count": requests})  # our loop stays free
        wall = time.perf_counter() - t0
        threads = threading.active_count()
    print(f"job {state.status.value} in {wall:.2f} s")
    print(f"result: {state.shared_data.get('result')}")
    print(f"server: {api.served} requests served, {api.peak} open at once")
    print(f"threads alive during the run: {threads}")
    return 0 if state.status.value == "completed" and api.peak == requests else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    raise SystemExit(asyncio.run(main(parser.parse_args().requests)))
