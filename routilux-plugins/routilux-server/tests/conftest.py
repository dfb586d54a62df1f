"""A real uvicorn server on a loopback port, in a thread, for each test that asks for one."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
from routilux import Runtime
from routilux.monitoring.flow_registry import FlowRegistry
from routilux_server import ServerSettings, bind_socket, build_server
from routilux_server.client import RoutiluxClient
from routilux_testing import wait_for

KEY = "test-key-0123456789abcdef"
OTHER_KEY = "other-key-0123456789abcdef"

DOUBLE = {
    "format_version": 1,
    "flow_id": "double",
    "routines": {
        "map": {"type": "builtins.Mapper", "config": {"fields": {"y": "x", "x": "x"}}},
        "collect": {"type": "builtins.ResultCollector", "config": {"key": "out"}},
    },
    "connections": ["map.output -> collect.input"],
    "entry": {"routine": "map", "slot": "input"},
}
"""A two-routine flow of builtin types: entry ``{"x": ...}`` ends in ``shared_data["out"]``."""


@attrs.define
class LiveServer:
    base_url: str
    ws_url: str
    runtime: Runtime
    app: Any
    server: Any
    thread: threading.Thread

    @property
    def ctx(self) -> Any:
        return self.app.state.routilux

    def client(self, key: str | None = KEY) -> RoutiluxClient:
        return RoutiluxClient(self.base_url, api_key=key or "")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def start_server(settings: ServerSettings, *, flows: dict[str, dict[str, Any]] | None = None,
                 workers: int = 4, **runtime_options: Any) -> LiveServer:
    runtime = Runtime(workers, flow_registry=FlowRegistry(), **runtime_options)
    from routilux.serialization import flow_from_dict

    for name, doc in (flows if flows is not None else {"double": DOUBLE}).items():
        runtime.flow_registry.register_by_name(name, flow_from_dict(doc))
    server = build_server(host="127.0.0.1", port=0, settings=settings, runtime=runtime,
                          log_level="warning")
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name="uvicorn-test")
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), "the server to start", 15)
    assert server.started, "the test server did not start (see the log above)"
    return LiveServer(base_url=f"http://127.0.0.1:{port}", ws_url=f"ws://127.0.0.1:{port}",
                      runtime=runtime, app=server.config.app, server=server, thread=thread)


@pytest.fixture
def make_server() -> Iterator[Callable[..., LiveServer]]:
    started: list[LiveServer] = []

    def make(settings: ServerSettings | None = None, **kwargs: Any) -> LiveServer:
        live = start_server(settings or ServerSettings(api_keys=(KEY, OTHER_KEY),
                                                       rate_limit=10_000, rate_burst=10_000),
                            **kwargs)
        started.append(live)
        return live

    yield make
    for live in started:
        live.stop()
        live.runtime.shutdown(wait=False, timeout=10)


@pytest.fixture
def live(make_server: Callable[..., LiveServer]) -> LiveServer:
    return make_server()


@attrs.define
class ServedProcess:
    """``routilux serve`` running in a child process."""

    base_url: str
    ws_url: str
    process: Any
    log: list[str]
    reader: threading.Thread

    def stop(self) -> None:
        import signal

        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(15)
        except Exception:
            self.process.kill()
            self.process.wait(5)
        self.reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


def serve_subprocess(flows_dir: Any, *args: str, env: dict[str, str] | None = None
                     ) -> ServedProcess:
    """Start ``routilux serve --port 0 --flows DIR ...`` and read the port it bound."""
    import os
    import re
    import subprocess
    import sys

    environ = {**os.environ, "ROUTILUX_API_KEY": KEY, **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "routilux.cli", "serve", "--port", "0", "--flows", str(flows_dir),
         "--log-level", "info", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environ,
    )
    assert proc.stdout is not None
    log: list[str] = []
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in proc.stdout or ():
            log.append(line)
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    port = None
    deadline = time.monotonic() + 30
    while port is None:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            line = None
        if line is None:  # exited, or silent for 30 s
            proc.kill()
            proc.wait(10)
            raise AssertionError("routilux serve did not start:\n" + "".join(log))
        m = re.search(r"running on http://127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
    return ServedProcess(base_url=f"http://127.0.0.1:{port}", ws_url=f"ws://127.0.0.1:{port}",
                         process=proc, log=log, reader=reader)


def _served(folder: Any) -> Iterator[Callable[..., ServedProcess]]:
    import json

    started: list[ServedProcess] = []
    flows = folder / "flows"
    flows.mkdir()
    (flows / "double.json").write_text(json.dumps(DOUBLE))

    def start(*args: str, env: dict[str, str] | None = None) -> ServedProcess:
        s = serve_subprocess(flows, *args, env=env)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def served(tmp_path: Any) -> Iterator[Callable[..., ServedProcess]]:
    """Start ``routilux serve`` processes (flows dir holding DOUBLE), stopped after the test."""
    yield from _served(tmp_path)
