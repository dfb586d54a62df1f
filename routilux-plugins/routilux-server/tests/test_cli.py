"""``routilux serve`` and ``routilux jobs --server URL``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from routilux.cli._app import cli

from .conftest import KEY


def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="routilux",
                              env={"ROUTILUX_API_KEY": KEY, **(env or {})})


def out(result: Result) -> Any:
    """The JSON document a command printed (the in-process runtime's log lines, which the
    real command line sends to stderr, may precede it here)."""
    assert result.exit_code == 0, result.output
    text = result.stdout
    return json.JSONDecoder().raw_decode(text[text.index("\n{") + 1 if not text.startswith("{")
                                              else 0:])[0]


class TestJobsCommand:
    def test_start_wait_get_list(self, live: Any) -> None:
        result = run("jobs", "--server", live.base_url, "start", "double", "--param", "x=7",
                     "--wait", "--timeout", "10")
        assert result.exit_code == 0, result.output
        job = out(result)
        assert job["status"] == "completed"
        got = run("jobs", "--server", live.base_url, "get", job["job_id"])
        assert out(got)["job_id"] == job["job_id"]
        state = run("jobs", "--server", live.base_url, "get", job["job_id"], "--state")
        assert out(state)["shared_data"]["out"] == [{"y": 7, "x": 7}]
        listed = run("jobs", "--server", live.base_url, "list")
        assert listed.exit_code == 0 and job["job_id"] in listed.stdout
        as_json = out(run("jobs", "--server", live.base_url, "list", "--json"))
        assert as_json["total"] == 1

    def test_keep_open_post_pause_resume_complete_cancel(self, live: Any) -> None:
        base = ("jobs", "--server", live.base_url)
        job = out(run(*base, "start", "double", "--keep-open"))
        jid = job["job_id"]
        assert out(run(*base, "pause", jid))["job"]["status"] == "paused"
        assert run(*base, "post", jid, "map", "input", "-p", "x=2").exit_code == 0
        assert out(run(*base, "resume", jid))["changed"] is True
        assert live.runtime.wait_job(jid, 10)
        assert out(run(*base, "complete", jid))["changed"] is True
        other = out(run(*base, "start", "double", "--keep-open"))["job_id"]
        assert out(run(*base, "cancel", other))["job"]["status"] == "cancelled"

    def test_errors_are_one_line(self, live: Any) -> None:
        result = run("jobs", "--server", live.base_url, "get", "nope")
        assert result.exit_code == 2 and "404 unknown_job" in result.stderr
        result = run("jobs", "--server", live.base_url, "list", env={"ROUTILUX_API_KEY": None})
        assert result.exit_code == 2 and "401 missing_credentials" in result.stderr


class TestServeCommand:
    def test_serves_flows_dir_with_keys(self, served: Any) -> None:
        server = served()
        assert httpx.get(server.base_url + "/api/flows").status_code == 401
        r = httpx.get(server.base_url + "/api/flows", headers={"X-API-Key": KEY})
        assert [f["name"] for f in r.json()["items"]] == ["double"]

    def test_refuses_to_start_without_keys(self) -> None:
        result = run("serve", env={"ROUTILUX_API_KEY": None, "ROUTILUX_API_KEYS": None})
        assert result.exit_code == 2 and "no API key configured" in result.stderr

    def test_refuses_public_bind_without_keys(self) -> None:
        result = run("serve", "--host", "0.0.0.0", "--insecure-no-auth")
        assert result.exit_code == 2 and "refusing to listen" in result.stderr

    def test_bad_flow_file_names_the_file(self, tmp_path: Path) -> None:
        (tmp_path / "broken.yaml").write_text("flow_id: x\nroutines: {a: {type: no.Such}}\n")
        result = run("serve", "--flows", str(tmp_path))
        assert result.exit_code == 2
        assert "broken.yaml" in result.stderr and "no.Such" in result.stderr

    def test_missing_pack_says_how_to_install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, "routilux_server", None)
        for args in (["serve"], ["jobs", "--server", "http://127.0.0.1:1", "list"]):
            result = run(*args)
            assert result.exit_code == 2
            assert "pip install routilux-server" in result.stderr
