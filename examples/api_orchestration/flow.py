"""API orchestration: fan out three HTTP calls, retry the ones that fail, join the answers.

    uv run routilux run examples/api_orchestration/flow.py:build_flow
    uv run routilux run examples/api_orchestration/flow.py:build_flow --param user_id=2

``build_flow()`` starts a small HTTP API on 127.0.0.1 (a free port, in a daemon thread) that
fails some requests on purpose: the first request to ``/orders`` and the first two to
``/recommendations`` answer ``503``. The flow:

* ``start`` sends one request payload to three ``api.Fetch`` routines (fan-out);
* each fetch calls its endpoint with ``urllib``; a 5xx answer raises ``ConnectionError``, which
  its ``ErrorHandler(strategy=RETRY)`` retries on a timer (50 ms, then 100 ms, ...) without
  holding a worker; a 4xx answer raises ``LookupError``, which is not retried and fails the job;
* ``join`` (``builtins.Aggregator``) waits for all three answers (fan-in) and hands them on
  together; ``present`` builds the joined result into ``shared_data["result"]``.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from routilux import ErrorHandler, ErrorStrategy, Flow, Routine
from routilux_builtins import Aggregator

USERS = {1: {"name": "Ada Lovelace", "plan": "pro"}, 2: {"name": "Grace Hopper", "plan": "free"}}
ORDERS = {1: [120.5, 64.1, 22.3], 2: [89.99]}
RECOMMENDATIONS = {1: ["difference engine", "punched cards"], 2: ["compilers", "COBOL"]}


class FakeApi(BaseHTTPRequestHandler):
    """``/users/<id>``, ``/orders?user=<id>``, ``/recommendations?user=<id>``; fails the
    first ``server.fail_first[path]`` requests of each path with 503."""

    server: Any

    def do_GET(self) -> None:
        url = urlparse(self.path)
        user = int(parse_qs(url.query).get("user", ["0"])[0])
        path = url.path
        if path.startswith("/users/"):
            user, path = int(path.rsplit("/", 1)[1]), "/users"
        with self.server.lock:
            self.server.requests[path] = seen = self.server.requests.get(path, 0) + 1
        if seen <= self.server.fail_first.get(path, 0):
            return self._send(503, {"error": "injected failure, try again"})
        if user not in USERS:
            return self._send(404, {"error": f"no user {user}"})
        body = {
            "/users": lambda: {"id": user, **USERS[user]},
            "/orders": lambda: {"user": user, "amounts": ORDERS[user]},
            "/recommendations": lambda: {"user": user, "items": RECOMMENDATIONS[user]},
        }.get(path)
        if body is None:
            return self._send(404, {"error": f"no endpoint {path}"})
        self._send(200, body())

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # keep the output readable
        pass


def start_server(fail_first: dict[str, int] | None = None) -> ThreadingHTTPServer:
    """Serve the fake API on 127.0.0.1 (free port) from a daemon thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    server.lock = threading.Lock()  # type: ignore[attr-defined]
    server.requests = {}  # type: ignore[attr-defined]
    server.fail_first = (  # type: ignore[attr-defined]
        {"/orders": 1, "/recommendations": 2} if fail_first is None else fail_first
    )
    threading.Thread(target=server.serve_forever, name="fake-api", daemon=True).start()
    return server


class Start(Routine):
    """Turns the entry parameters into one request payload for every fetcher."""

    type_name = "api.Start"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("request", ["user_id", "base_url"])
        self.set_logic(self._start)

    def _start(self, slot_data, policy_message, job_state):
        for params in slot_data["input"]:
            self.emit("request", user_id=int(params.get("user_id", 1)),
                      base_url=params.get("base_url") or self.get_config("base_url"))


class Fetch(Routine):
    """GETs ``base_url + path`` (``path`` from config, formatted with the request's fields)."""

    type_name = "api.Fetch"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("response", ["body"])
        self.set_logic(self._fetch)
        self.set_error_handler(ErrorHandler(
            strategy=ErrorStrategy.RETRY, max_retries=3, retry_delay=0.05, retry_backoff=2.0,
            retryable_exceptions=(ConnectionError, TimeoutError),
        ))

    def _fetch(self, slot_data, policy_message, job_state):
        (request,) = slot_data["input"]
        url = request["base_url"] + self.get_config("path").format(**request)
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                body = json.load(answer)
        except urllib.error.HTTPError as exc:
            exc.close()  # (its response, now: not when the garbage collector gets to it)
            if exc.code >= 500:  # the server's trouble: worth another try
                raise ConnectionError(f"GET {url}: HTTP {exc.code}") from None
            raise LookupError(f"GET {url}: HTTP {exc.code}") from None
        self.emit("response", body=body)


class Present(Routine):
    """Builds the joined result from the three answers the join hands on together."""

    type_name = "api.Present"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("joined")
        self.set_logic(self._present)

    def _present(self, slot_data, policy_message, job_state):
        for joined in slot_data["joined"]:
            values = joined["values"]
            amounts = values["orders"]["body"]["amounts"]
            result = {
                "user": values["profile"]["body"]["name"],
                "plan": values["profile"]["body"]["plan"],
                "orders": len(amounts),
                "spent": round(sum(amounts), 2),
                "recommended": values["recommendations"]["body"]["items"],
            }
            job_state.shared_data["result"] = result
            self.send_output("result", **result)


def build_flow() -> Flow:
    """Start the fake API and return the flow wired against it."""
    server = start_server()
    host, port = server.server_address[:2]
    flow = Flow(flow_id="api_orchestration", execution_timeout=30)
    start = Start()
    start.set_config(base_url=f"http://{host}:{port}")
    flow.add_routine(start, "start")
    endpoints = {
        "profile": "/users/{user_id}",
        "orders": "/orders?user={user_id}",
        "recommendations": "/recommendations?user={user_id}",
    }
    flow.add_routine(Aggregator.configured(inputs=list(endpoints)), "join")
    for name, path in endpoints.items():
        fetch = Fetch()
        fetch.set_config(path=path)
        flow.add_routine(fetch, name)
        flow.connect("start", "request", name, "input")  # fan-out
        flow.connect(name, "response", "join", name)  # fan-in
    flow.add_routine(Present(), "present")
    flow.connect("join", "output", "present", "joined")
    flow.set_entry("start", "input")
    return flow
