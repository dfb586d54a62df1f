"""The web dashboard in a real browser (Debian's Chromium driven by Playwright).

A real server (uvicorn on a loopback port, a real API key) serves the dashboard; the tests log
in with the key, start jobs from the page and watch them live over the WebSocket. Chromium is
found through ``ROUTILUX_CHROMIUM`` (``.ci/run`` exports it from ``.ci/chromium.sh``) or on the
PATH; without it these tests skip, saying so, except under ``ROUTILUX_REQUIRE_BROWSER=1`` (set
by ``.ci/run``), where they fail. A failing test leaves a screenshot in
``test-artifacts/dashboard/``.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from routilux import ErrorHandler, ErrorStrategy, Flow, Routine
from routilux_server import ServerSettings

from .conftest import KEY, LiveServer, start_server

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "dashboard"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TIMEOUT_MS = 20_000


def chromium_path() -> str | None:
    path = os.environ.get("ROUTILUX_CHROMIUM") or shutil.which("chromium")
    return path if path and Path(path).exists() else None


# -- flows the tests run ---------------------------------------------------------------------


class Steps(Routine):
    """Emits ``n`` numbered payloads (default 5)."""

    type_name = "dashtest.Steps"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("step", ["i"])
        self.set_logic(self._run)

    def _run(self, slot_data: Any, policy_message: Any, job_state: Any) -> None:
        for params in slot_data["input"]:
            for i in range(int(params.get("n", 5))):
                self.emit("step", i=i)


class Square(Routine):
    """Squares ``i``; waits ``delay`` seconds first when the payload asks (slow steps)."""

    type_name = "dashtest.Square"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("output", ["i", "square"])
        self.set_logic(self._run)

    def _run(self, slot_data: Any, policy_message: Any, job_state: Any) -> None:
        for p in slot_data["input"]:
            self.emit("output", i=p["i"], square=p["i"] * p["i"])


class Keep(Routine):
    """Stores every square in shared data."""

    type_name = "dashtest.Keep"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.set_logic(self._run)

    def _run(self, slot_data: Any, policy_message: Any, job_state: Any) -> None:
        for p in slot_data["input"]:
            job_state.shared_data.setdefault("squares", []).append(p["square"])


class Tick(Routine):
    """Runs forever: each activation waits a little and triggers the next (a loop)."""

    type_name = "dashtest.Tick"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("next", ["n"])
        self.set_logic(self._run)

    def _run(self, slot_data: Any, policy_message: Any, job_state: Any) -> None:
        for p in slot_data["input"]:
            time.sleep(0.05)
            self.emit("next", n=int(p.get("n", 0)) + 1)


class BrokenParser(Routine):
    """Fails on every payload (the test looks for this name in the traceback)."""

    type_name = "dashtest.BrokenParser"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("output", ["value"])
        self.set_logic(self._parse_or_explode)

    def _parse_or_explode(self, slot_data: Any, policy_message: Any, job_state: Any) -> None:
        raise ValueError("cannot parse 'not a number' as a number")


def _pipeline() -> Flow:
    flow = Flow(flow_id="pipeline")
    flow.add_routine(Steps(), "steps")
    flow.add_routine(Square(), "square")
    flow.add_routine(Keep(), "keep")
    flow.connect("steps", "step", "square", "input")
    flow.connect("square", "output", "keep", "input")
    flow.set_entry("steps", "input")
    return flow


def _forever() -> Flow:
    flow = Flow(flow_id="forever")
    flow.add_routine(Tick(), "tick")
    flow.connect("tick", "next", "tick", "input")
    flow.set_entry("tick", "input")
    return flow


def _broken() -> Flow:
    flow = Flow(flow_id="broken")
    flow.add_routine(Steps(), "source")
    parser = BrokenParser()
    parser.set_error_handler(ErrorHandler(strategy=ErrorStrategy.STOP))
    flow.add_routine(parser, "parser")
    flow.add_routine(Keep(), "sink")
    flow.connect("source", "step", "parser", "input")
    flow.connect("parser", "output", "sink", "input")
    flow.set_entry("source", "input")
    return flow


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    live = start_server(ServerSettings(api_keys=(KEY,), rate_limit=1000, rate_burst=1000),
                        flows={})
    for name, build in (("pipeline", _pipeline), ("forever", _forever), ("broken", _broken)):
        live.runtime.flow_registry.register_by_name(name, build())
    yield live
    live.stop()
    live.runtime.shutdown(wait=False, timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium_path()
    if path is None and os.environ.get("ROUTILUX_REQUIRE_BROWSER"):
        pytest.fail("ROUTILUX_REQUIRE_BROWSER is set (CI) but Chromium was not found: "
                    "ROUTILUX_CHROMIUM must name Debian's chromium (.ci/chromium.sh)")
    if path is None:
        pytest.skip("Chromium not found: set ROUTILUX_CHROMIUM (.ci/chromium.sh installs "
                    "Debian's chromium and prints its path) or put chromium on the PATH")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, server: LiveServer, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context (empty session storage) at 1280×800; screenshot on failure."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    shot = ARTIFACTS / (re.sub(r"[^\w.-]+", "_", request.node.name) + ".png")
    shot.unlink(missing_ok=True)  # no stale picture from an earlier run
    failed_before = request.session.testsfailed
    yield pg
    # the call phase's report is counted before teardown runs: a failure shows here
    if request.session.testsfailed > failed_before:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(shot), full_page=True)
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def login(page: Any, server: LiveServer, target: str = "#/flows") -> None:
    page.goto(f"{server.base_url}/{target}")
    page.get_by_label("API key").fill(KEY)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_selector("header .link-button:not([hidden])")


def start_from_page(page: Any, server: LiveServer, flow: str, params: str = "{}") -> str:
    page.goto(f"{server.base_url}/#/flows/{flow}")
    page.get_by_label("Entry parameters (JSON object)").fill(params)
    page.get_by_role("button", name="Start job").click()
    page.wait_for_url(re.compile(r"#/jobs/[0-9a-f]{32}$"))
    return page.url.rsplit("/", 1)[1]


def job_status(page: Any) -> str:
    return str(page.locator("#job-status .badge").get_attribute("data-status"))


def wait_status(page: Any, status: str) -> None:
    page.wait_for_selector(f'#job-status .badge[data-status="{status}"]')


# -- tests -------------------------------------------------------------------------------------


def test_page_and_assets_are_public_but_the_api_is_not(server: LiveServer) -> None:
    page = httpx.get(server.base_url + "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "<script type=\"module\" src=\"/ui/js/main.js\">" in page.text
    for asset in ("/ui/js/main.js", "/ui/js/api.js", "/ui/app.css"):
        r = httpx.get(server.base_url + asset)
        assert r.status_code == 200, asset
        assert r.headers["x-content-type-options"] == "nosniff"
    assert "javascript" in httpx.get(server.base_url + "/ui/js/main.js").headers["content-type"]
    # the public prefix reaches the static files only, never an API route
    assert httpx.get(server.base_url + "/api/flows").status_code == 401
    sneaky = httpx.get(server.base_url + "/ui/../api/flows")
    assert sneaky.status_code in (401, 404) and "pipeline" not in sneaky.text
    raw = httpx.Request("GET", server.base_url + "/ui/%2e%2e/api/flows")
    with httpx.Client() as c:
        r = c.send(raw)
    assert r.status_code in (401, 404) and "pipeline" not in r.text
    assert httpx.post(server.base_url + "/ui/js/main.js").status_code in (401, 405)


def test_dashboard_can_be_turned_off() -> None:
    live = start_server(ServerSettings(api_keys=(KEY,), dashboard=False), flows={})
    try:
        assert httpx.get(live.base_url + "/").status_code == 404
        assert httpx.get(live.base_url + "/ui/js/main.js").status_code == 404
        health = httpx.get(live.base_url + "/api/health", headers={"X-API-Key": KEY})
        assert health.status_code == 200
    finally:
        live.stop()
        live.runtime.shutdown(wait=False, timeout=10)


def test_login_refuses_a_wrong_key_and_keeps_the_right_one_in_the_session(
    page: Any, server: LiveServer
) -> None:
    page.goto(server.base_url + "/#/flows")
    page.get_by_label("API key").fill("wrong-key-0123456789abcdef")
    page.get_by_role("button", name="Log in").click()
    assert "refused" in page.get_by_role("alert").inner_text()
    assert page.evaluate("sessionStorage.length") == 0
    page.get_by_label("API key").fill(KEY)
    page.get_by_role("button", name="Log in").click()
    rows = page.locator("table tbody tr")
    rows.first.wait_for()
    assert {r.split("\t")[0] for r in rows.all_inner_texts()} == {"pipeline", "forever", "broken"}
    assert page.evaluate("sessionStorage.getItem('routilux.apiKey')") == KEY
    assert page.evaluate("localStorage.length") == 0
    page.get_by_role("button", name="Log out").click()
    page.get_by_label("API key").wait_for()
    assert page.evaluate("sessionStorage.length") == 0


def test_flow_graph_then_a_job_started_from_the_page_completes_live(
    page: Any, server: LiveServer
) -> None:
    sockets: list[Any] = []
    page.on("websocket", lambda ws: sockets.append(ws))
    login(page, server)
    page.get_by_role("link", name="pipeline").click()
    graph = page.locator("svg.flow-graph")
    graph.wait_for()
    nodes = graph.locator("g.node[data-routine]")
    assert sorted(nodes.evaluate_all("ns => ns.map(n => n.dataset.routine)")) == \
        ["keep", "square", "steps"]
    assert graph.locator("path.edge").count() == 3  # entry + 2 connections
    assert "dashtest.Square" in graph.inner_html() and "immediate" in graph.inner_html()

    job_id = start_from_page(page, server, "pipeline", '{"n": 40}')
    wait_status(page, "completed")
    # the stream delivered every activation: counts on the graph and in the table
    keep = page.locator('#routine-table tr[data-routine="keep"] td')
    page.wait_for_function(
        "() => document.querySelector('#routine-table tr[data-routine=keep] td:nth-child(5)')?"
        ".textContent === '40'")
    assert keep.nth(1).inner_text() == "0"  # nothing left queued
    for rid in ("steps", "square", "keep"):
        assert page.locator(f'g.node[data-routine="{rid}"]').get_attribute("data-status") == \
            "completed"
    assert "ok 40" in page.locator('g.node[data-routine="square"] .node-stats').first.text_content()
    timeline = page.locator("#timeline li")
    assert timeline.first.get_attribute("data-kind") == "job.finished"
    # the WebSocket carried no key: a token in the subprotocol, the key nowhere in the URL
    assert sockets and all(KEY not in ws.url for ws in sockets)
    assert any(f"/api/ws/jobs/{job_id}" in ws.url for ws in sockets)
    state = server.runtime.get_job(job_id)
    assert state is not None and len(state.shared_data["squares"]) == 40


def test_pause_resume_and_cancel_a_long_job_from_the_page(page: Any, server: LiveServer) -> None:
    login(page, server)
    job_id = start_from_page(page, server, "forever")
    wait_status(page, "running")
    # completed activations keep arriving live
    page.wait_for_function("() => Number(document.querySelector('#routine-table "
                           "tr[data-routine=tick] td:nth-child(5)')?.textContent) >= 3")
    page.get_by_role("button", name="Pause").click()
    wait_status(page, "paused")
    assert page.get_by_role("button", name="Resume").is_enabled()
    page.get_by_role("button", name="Resume").click()
    wait_status(page, "running")
    page.get_by_role("button", name="Cancel").click()
    wait_status(page, "cancelled")
    assert page.get_by_role("button", name="Cancel").is_disabled()
    assert page.get_by_role("button", name="Post payload").is_disabled()
    state = server.runtime.get_job(job_id)
    assert state is not None and state.status.value == "cancelled"
    page.locator('#timeline li[data-kind="job.cancelled"]').wait_for()


def test_a_failed_routine_shows_its_error_and_traceback(page: Any, server: LiveServer) -> None:
    login(page, server)
    start_from_page(page, server, "broken", '{"n": 2}')
    wait_status(page, "failed")
    panel = page.locator("#error-panel")
    panel.get_by_text("The job failed in parser").wait_for()
    assert "ValueError: cannot parse 'not a number' as a number" in panel.inner_text()
    traceback = page.locator("#traceback pre")
    traceback.wait_for()
    text = traceback.inner_text()
    assert "Traceback (most recent call last)" in text and "_parse_or_explode" in text
    assert page.locator('g.node[data-routine="parser"]').get_attribute("data-status") == "failed"
    page.locator('#timeline li[data-kind="activation.failed"]').first.wait_for()


def test_post_a_payload_to_a_slot_of_an_open_job(page: Any, server: LiveServer) -> None:
    login(page, server)
    page.goto(f"{server.base_url}/#/flows/pipeline")
    page.get_by_label("Entry parameters (JSON object)").fill('{"n": 1}')
    page.get_by_label("Keep the job open for posted payloads").check()
    page.get_by_role("button", name="Start job").click()
    page.wait_for_url(re.compile(r"#/jobs/[0-9a-f]{32}$"))
    job_id = page.url.rsplit("/", 1)[1]
    page.wait_for_function("() => document.querySelector('#routine-table "
                           "tr[data-routine=keep] td:nth-child(5)')?.textContent === '1'")
    page.get_by_label("Routine", exact=True).select_option("square")
    page.get_by_label("Slot", exact=True).select_option("input")
    page.get_by_label("Payload (JSON object)").fill('{"i": 7}')
    page.get_by_role("button", name="Post payload").click()
    page.get_by_text("Posted to square.input.").wait_for()
    page.wait_for_function("() => document.querySelector('#routine-table "
                           "tr[data-routine=keep] td:nth-child(5)')?.textContent === '2'")
    state = server.runtime.get_job(job_id)
    assert state is not None and state.shared_data["squares"] == [0, 49]
    page.get_by_role("button", name="Complete").click()
    wait_status(page, "completed")


def test_a_page_left_while_it_loads_never_draws_into_the_next_one(
    page: Any, server: LiveServer
) -> None:
    login(page, server)
    with server.client() as c:
        job = c.start_job("pipeline", {"n": 2})
    held: list[Any] = []

    def hold_the_first(route: Any) -> None:  # the job page's first request waits
        if held:
            route.continue_()
        else:
            held.append(route)

    page.route(f"**/api/jobs/{job.job_id}", hold_the_first)
    page.goto(f"{server.base_url}/#/jobs/{job.job_id}")
    deadline = time.monotonic() + 10
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(10)
    assert held, "the job page never asked for the job"
    page.goto(f"{server.base_url}/#/flows/pipeline")  # leave it while it waits
    page.locator("main h1", has_text="Flow pipeline").wait_for()
    with page.expect_event("requestfinished", lambda r: r.url.endswith(job.job_id)):
        held[0].continue_()  # the left page gets its answer and goes on rendering, detached
    page.wait_for_timeout(300)  # (its remaining requests and drawing: 2 graphs before the fix)
    assert page.locator("main h1").all_inner_texts() == ["Flow pipeline"]
    assert page.locator(".graph-scroll").count() == 1


def test_jobs_list_filters_by_status_and_flow(page: Any, server: LiveServer) -> None:
    with server.client() as c:
        c.start_job("pipeline", {"n": 1})
        c.start_job("broken", {"n": 1})
    login(page, server, "#/jobs")
    page.locator("table tbody tr").first.wait_for()
    page.get_by_label("Status").select_option("failed")
    page.wait_for_url(re.compile(r"#/jobs\?status=failed$"))
    page.wait_for_function("() => { const c = [...document.querySelectorAll('tbody tr "
                           "td:nth-child(3)')]; return c.length && c.every(td => "
                           "td.textContent === 'failed'); }")
    statuses = page.locator("tbody tr td:nth-child(3)").all_inner_texts()
    assert statuses and set(statuses) == {"failed"}
    page.get_by_label("Status").select_option("")
    page.get_by_label("Flow").select_option("pipeline")
    page.wait_for_url(re.compile(r"#/jobs\?flow=pipeline$"))
    page.wait_for_function("() => { const c = [...document.querySelectorAll('tbody tr "
                           "td:nth-child(2)')]; return c.length && c.every(td => "
                           "td.textContent === 'pipeline'); }")
    flows = page.locator("tbody tr td:nth-child(2)").all_inner_texts()
    assert flows and set(flows) == {"pipeline"}
    page.locator("tbody tr a").first.click()
    page.locator("svg.flow-graph").wait_for()


def test_plugins_page_lists_plugins_and_types(page: Any, server: LiveServer) -> None:
    login(page, server, "#/plugins")
    page.get_by_role("heading", name="Plugins").wait_for()
    assert "routilux-builtins" in page.locator("table").inner_text()
    routines = page.get_by_role("region", name="routines")
    assert "builtins.Mapper" in routines.inner_text()
    assert "dashtest.Square" in routines.inner_text()


def test_keyboard_navigation(page: Any, server: LiveServer) -> None:
    page.goto(server.base_url + "/")
    # the key field has focus; typing and Enter logs in
    page.keyboard.type(KEY)
    page.keyboard.press("Enter")
    page.locator("table tbody tr").first.wait_for()
    # from the top of a fresh load: skip link, then the navigation links, in order
    page.reload()
    page.locator("table tbody tr").first.wait_for()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    order = []
    for _ in range(4):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.textContent"))
    assert order == ["Flows", "Jobs", "Plugins", "Log out"]
    # Enter on a focused link navigates and moves focus to the new page's heading
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.textContent") == "Jobs"
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.activeElement.tagName === 'H1' && "
                           "document.activeElement.textContent === 'Jobs'")
    # a flow's start form is reachable and usable with the keyboard alone
    page.goto(f"{server.base_url}/#/flows/pipeline")
    page.locator("svg.flow-graph").wait_for()
    page.get_by_label("Entry parameters (JSON object)").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "keep-open"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Start job"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"#/jobs/[0-9a-f]{32}$"))
    wait_status(page, "completed")
    # every control of the job view is a real button or link
    clickable = page.evaluate(
        "[...document.querySelectorAll('[onclick], [role=button]')].length")
    assert clickable == 0
    for name in ("Pause", "Resume", "Cancel"):
        assert page.get_by_role("button", name=name).evaluate("b => b.tagName") == "BUTTON"


CONTRAST_JS = """() => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const out = [];
  const sel = "main p, main td, main th, main label, main dt, main dd, main li, main button, "
    + "main a, header a, header button, .badge, .hint, caption";
  for (const el of document.querySelectorAll(sel)) {
    if (!el.textContent.trim() || !el.getClientRects().length) continue;
    const a = lum(rgb(getComputedStyle(el).color)), b = lum(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    out.push([el.tagName + "." + el.className, el.textContent.trim().slice(0, 30), ratio]);
  }
  return out;
}"""


def test_text_contrast_meets_wcag_aa(page: Any, server: LiveServer) -> None:
    """Every visible text of the job view and the jobs list: at least 4.5:1 (WCAG AA)."""
    login(page, server)
    with server.client() as c:
        job = c.start_job("broken", {"n": 1})
    checked = 0
    for target in (f"#/jobs/{job.job_id}", "#/jobs", "#/flows/pipeline"):
        page.goto(f"{server.base_url}/{target}")
        page.locator("main h1").wait_for()
        page.wait_for_load_state("networkidle")
        if target.startswith("#/jobs/"):
            wait_status(page, "failed")
            page.locator("#traceback").wait_for()
        rows = page.evaluate(CONTRAST_JS)
        assert all(isinstance(r[2], int | float) and r[2] >= 1.0 for r in rows), rows[:3]
        low = [r for r in rows if r[2] < 4.5]
        assert not low, (target, low)
        checked += len(rows)
    assert checked > 50


@pytest.mark.parametrize("size", [(600, 900), (1280, 800)], ids=["narrow-600", "1280x800"])
def test_layout_fits_the_window(page: Any, server: LiveServer, size: tuple[int, int]) -> None:
    width, height = size
    page.set_viewport_size({"width": width, "height": height})
    login(page, server)
    with server.client() as c:
        job = c.start_job("pipeline", {"n": 3})
    for target in ("#/flows", "#/flows/pipeline", "#/jobs", f"#/jobs/{job.job_id}", "#/plugins"):
        page.goto(f"{server.base_url}/{target}")
        page.locator("main h1").wait_for()
        page.wait_for_load_state("networkidle")
        # the page never scrolls sideways: wide graphs and tables scroll inside their own box
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, (target, overflow)
    page.goto(f"{server.base_url}/#/jobs/{job.job_id}")
    wait_status(page, "completed")
    # both boxes measured at the same moment
    main_col, side = page.evaluate("""() => ['.job-main', '.job-side'].map(sel => {
        const r = document.querySelector(sel).getBoundingClientRect();
        return {x: r.x, y: r.y, right: r.right, bottom: r.bottom}; })""")
    if width < 900:  # one column: the timeline comes below the counters and the post form
        assert side["y"] >= main_col["bottom"] - 1, (main_col, side)
    else:  # two columns side by side
        assert side["x"] >= main_col["right"] - 1, (main_col, side)
    # a graph wider than the window scrolls inside its own box, which fits the window
    box = page.locator(".graph-scroll").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
