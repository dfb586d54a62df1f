"""Take the dashboard screenshots in the docs (docs/_static/dashboard-*.png).

    ROUTILUX_CHROMIUM=$(.ci/chromium.sh) uv run python docs/screenshots.py

Starts a real server on a loopback port with a throwaway API key, registers the ETL example
(examples/etl/flow.py), logs in to the dashboard in headless Chromium, starts the ETL job from
the flow page on a large generated orders file (so it runs for a few seconds) and takes the job
view while it runs. The flow view is taken too.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import secrets
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from routilux import Runtime
from routilux.monitoring.flow_registry import FlowRegistry
from routilux_server import ServerSettings, build_server

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "_static"
ROWS = 30_000
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def load_etl() -> object:
    spec = importlib.util.spec_from_file_location("etl_example", ROOT / "examples/etl/flow.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["etl_example"] = module
    spec.loader.exec_module(module)
    return module.flow


def big_orders(path: Path) -> None:
    """The example's orders, repeated with new ids (keeps its bad lines and rejects)."""
    with (ROOT / "examples/etl/orders.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        for i in range(ROWS):
            row = dict(rows[i % len(rows)])
            row["order_id"] = str(100_000 + i) if row["order_id"].strip().isdigit() else \
                row["order_id"]
            writer.writerow(row)


def main() -> int:
    chromium = os.environ.get("ROUTILUX_CHROMIUM") or shutil.which("chromium")
    if not chromium:
        print("Chromium not found: run with ROUTILUX_CHROMIUM=$(.ci/chromium.sh)")
        return 1
    from playwright.sync_api import sync_playwright

    key = secrets.token_urlsafe(24)
    runtime = Runtime(2, flow_registry=FlowRegistry())
    runtime.flow_registry.register_by_name("etl_orders", load_etl())
    server = build_server(host="127.0.0.1", port=0, settings=ServerSettings(api_keys=(key,)),
                          runtime=runtime, log_level="warning")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        orders = Path(tmp) / "orders.csv"
        big_orders(orders)
        browser = p.chromium.launch(executable_path=chromium, args=ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(base + "/#/flows/etl_orders")
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Log in").click()
        page.locator("svg.flow-graph").wait_for()
        page.screenshot(path=str(OUT / "dashboard-flow.png"))
        params = f'{{"csv": "{orders}", "report": "{Path(tmp) / "report.json"}"}}'
        page.get_by_label("Entry parameters (JSON object)").fill(params)
        page.get_by_role("button", name="Start job").click()
        page.wait_for_url("**/#/jobs/*")
        # mid-run: the job runs and the later routines have done some of their work
        page.wait_for_function(
            "() => document.querySelector('#job-status .badge')?.dataset.status === 'running'"
            " && document.querySelector('#live-state')?.textContent === 'live'"
            " && Number(document.querySelector('#routine-table tr[data-routine=keep_paid] "
            "td:nth-child(5)')?.textContent) > 500", timeout=30_000)
        page.screenshot(path=str(OUT / "dashboard-job.png"))
        status = page.locator("#job-status .badge").get_attribute("data-status")
        page.get_by_role("button", name="Cancel").click()
        browser.close()
    server.should_exit = True
    thread.join(15)
    runtime.shutdown(wait=False, timeout=10)
    print(f"wrote {OUT / 'dashboard-flow.png'} and {OUT / 'dashboard-job.png'} "
          f"(job {status} when taken)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
