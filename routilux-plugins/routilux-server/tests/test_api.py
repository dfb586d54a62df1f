"""The REST API against a live server, through the typed client (and raw httpx for the
error shapes)."""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
import pytest
import yaml
from routilux_server.client import ApiError

from .conftest import DOUBLE, KEY

H = {"X-API-Key": KEY}


def _error(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    err: dict[str, Any] = body["error"]
    return err


class TestFlows:
    def test_list_and_get(self, live: Any) -> None:
        with live.client() as c:
            flows = c.list_flows().items
            assert [(f.name, f.flow_id, f.routines, f.connections) for f in flows] == [
                ("double", "double", 2, 1)]
            detail = c.get_flow("double")
        assert detail.entry is not None and detail.entry.routine == "map"
        assert detail.routines["map"].type == "builtins.Mapper"
        assert detail.routines["map"].slots == ["input"]
        assert detail.routines["collect"].policy == "builtins.collect"
        assert detail.routines["collect"].policy_params == {"emit_on_drain": False}
        assert [(x.source, x.event, x.target, x.slot) for x in detail.connections] == [
            ("map", "output", "collect", "input")]

    def test_create_from_json_and_yaml_then_run(self, live: Any) -> None:
        doc = copy.deepcopy(DOUBLE)
        doc["flow_id"] = "from_json"
        doc["routines"]["map"]["error_handler"] = {"strategy": "retry", "max_retries": 2}
        with live.client() as c:
            created = c.create_flow(doc)
            assert created.name == "from_json"
            assert created.routines["map"].error_handler["strategy"] == "retry"
            doc["flow_id"] = "from_yaml"
            c.create_flow(yaml.safe_dump(doc), name="yaml_named")
            assert {f.name for f in c.list_flows().items} == {"double", "from_json",
                                                              "yaml_named"}
            job = c.wait_job(c.start_job("yaml_named", {"x": 5}).job_id, timeout=10)
            assert job.status == "completed" and job.flow_id == "from_yaml"

    def test_duplicate_name_is_409_unless_replace(self, live: Any) -> None:
        with live.client() as c:
            with pytest.raises(ApiError) as info:
                c.create_flow(DOUBLE)
            assert info.value.status == 409 and info.value.code == "flow_exists"
            doc = copy.deepcopy(DOUBLE)
            doc["routines"]["map"]["config"]["fields"] = {"y": "x"}
            assert c.create_flow(doc, replace=True).routines["map"].config["fields"] == {
                "y": "x"}

    def test_unregistered_type_is_422_and_nothing_is_imported(self, live: Any) -> None:
        doc = copy.deepcopy(DOUBLE)
        doc["flow_id"] = "evil"
        doc["routines"]["map"]["type"] = "os:system"
        r = httpx.post(live.base_url + "/api/flows", headers=H, json=doc)
        assert r.status_code == 422
        err = _error(r)
        assert err["code"] == "flow_validation"
        assert any("os:system" in i["message"] for i in err["details"]["issues"])
        assert "evil" not in live.runtime.flow_registry

    def test_validate_reports_every_problem(self, live: Any) -> None:
        doc = copy.deepcopy(DOUBLE)
        doc["routines"]["map"]["type"] = "no.Such"
        doc["bogus_key"] = 1
        with live.client() as c:
            result = c.validate_flow(doc)
            assert not result.ok and len(result.issues) >= 2
            assert c.validate_flow(DOUBLE).ok

    def test_export(self, live: Any) -> None:
        with live.client() as c:
            as_json = json.loads(c.export_flow("double", "json"))
            as_yaml = yaml.safe_load(c.export_flow("double", "yaml"))
            mermaid = c.export_flow("double", "mermaid")
        assert as_json == as_yaml and as_json["flow_id"] == "double"
        assert mermaid.startswith("flowchart LR") and "builtins.Mapper" in mermaid
        r = httpx.get(live.base_url + "/api/flows/double/export?format=python", headers=H)
        assert r.status_code == 422

    def test_delete_keeps_running_jobs_going(self, live: Any) -> None:
        with live.client() as c:
            job = c.start_job("double", keep_open=True)
            c.delete_flow("double")
            with pytest.raises(ApiError) as info:
                c.get_flow("double")
            assert info.value.status == 404 and info.value.code == "unknown_flow"
            c.post(job.job_id, "map", "input", {"x": 9})
            c.complete(job.job_id)
            assert c.wait_job(job.job_id, timeout=10).status == "completed"
            assert c.job_state(job.job_id)["shared_data"]["out"] == [{"y": 9, "x": 9}]
            with pytest.raises(ApiError) as info:
                c.delete_flow("double")
            assert info.value.status == 404

    def test_bad_bodies(self, live: Any) -> None:
        url = live.base_url + "/api/flows"
        r = httpx.post(url, headers={**H, "Content-Type": "application/json"}, content=b"{nope")
        assert r.status_code == 400 and _error(r)["code"] == "bad_request"
        r = httpx.post(url, headers={**H, "Content-Type": "text/x-python"}, content=b"import os")
        assert r.status_code == 415
        bomb = "a: &a [1, 2]\nb: [*a, *a]\n"
        r = httpx.post(url, headers={**H, "Content-Type": "application/yaml"}, content=bomb)
        assert r.status_code == 422 and _error(r)["code"] == "yaml_alias"
        r = httpx.post(url, headers=H, json=[1, 2])
        assert r.status_code == 422


class TestJobs:
    def test_start_get_state_metrics_history_trace_logs(self, live: Any) -> None:
        with live.client() as c:
            job = c.start_job("double", {"x": 4})
            assert job.flow_id == "double"
            done = c.wait_job(job.job_id, timeout=10)
            assert done.status == "completed" and done.finished_at is not None
            state = c.job_state(job.job_id)
            assert state["shared_data"]["out"] == [{"y": 4, "x": 4}]
            metrics = c.metrics(job.job_id)
            assert metrics["routines"]["map"]["activations"] == 1
            history = c.history(job.job_id)
            assert [h.routine_id for h in history.items] == ["map", "collect"]
            assert [h.routine_id for h in c.history(job.job_id, "collect").items] == [
                "collect"]
            live.runtime.tracking.flush()
            trace = c.trace(job.job_id)
            seqs = [r["seq"] for r in trace.records]
            assert seqs == list(range(1, len(seqs) + 1)) and not trace.truncated
            assert trace.records[-1]["kind"] == "job.finished"
            logs = c.logs(job.job_id)
            assert logs.shared_log == [] and logs.output_log == []

    def test_list_filters_and_pagination(self, live: Any) -> None:
        with live.client() as c:
            ids = [c.start_job("double", {"x": i}).job_id for i in range(5)]
            for i in ids:
                c.wait_job(i, timeout=10)
            kept = c.start_job("double", keep_open=True)
            c.wait_job(kept.job_id, timeout=10)
            page = c.list_jobs(limit=2)
            assert page.total == 6 and [j.job_id for j in page.items] == [kept.job_id, ids[4]]
            page2 = c.list_jobs(limit=2, offset=2)
            assert [j.job_id for j in page2.items] == [ids[3], ids[2]]
            done = c.list_jobs(status="completed")
            assert done.total == 5 and {j.job_id for j in done.items} == set(ids)
            assert c.list_jobs(status="idle").total == 1
            assert c.list_jobs(flow="double").total == 6
            assert c.list_jobs(flow="other").total == 0
        r = httpx.get(live.base_url + "/api/jobs?status=bogus", headers=H)
        assert r.status_code == 422 and _error(r)["code"] == "invalid_request"
        r = httpx.get(live.base_url + "/api/jobs?limit=0", headers=H)
        assert r.status_code == 422

    def test_kept_open_job_post_pause_resume_complete(self, live: Any) -> None:
        with live.client() as c:
            job = c.start_job("double", keep_open=True)
            assert c.wait_job(job.job_id, timeout=10).status == "idle"
            paused = c.pause(job.job_id)
            assert paused.changed and paused.job.status == "paused"
            c.post(job.job_id, "map", "input", {"x": 1})
            assert c.get_job(job.job_id).status == "paused"
            assert c.job_state(job.job_id)["shared_data"].get("out") is None
            assert c.resume(job.job_id).changed
            assert not c.resume(job.job_id).changed
            assert c.wait_job(job.job_id, timeout=10).status == "idle"
            assert c.job_state(job.job_id)["shared_data"]["out"] == [{"y": 1, "x": 1}]
            done = c.complete(job.job_id)
            assert done.changed
            assert c.wait_job(job.job_id, timeout=10).status == "completed"

    def test_cancel_and_conflicts(self, live: Any) -> None:
        with live.client() as c:
            job = c.start_job("double", keep_open=True)
            assert c.cancel(job.job_id).job.status == "cancelled"
            assert not c.cancel(job.job_id).changed
            with pytest.raises(ApiError) as info:
                c.post(job.job_id, "map", "input", {"x": 1})
            assert info.value.status == 409 and info.value.code == "job_not_accepting_work"
            assert info.value.details["job_id"] == job.job_id
            with pytest.raises(ApiError) as info:
                c.pause(job.job_id)
            assert info.value.status == 409

    def test_unknown_things(self, live: Any) -> None:
        with live.client() as c:
            for call in (lambda: c.get_job("nope"), lambda: c.job_state("nope"),
                         lambda: c.cancel("nope"), lambda: c.metrics("nope"),
                         lambda: c.trace("nope"), lambda: c.logs("nope")):
                with pytest.raises(ApiError) as info:
                    call()
                assert info.value.status == 404 and info.value.code == "unknown_job"
            with pytest.raises(ApiError) as info:
                c.start_job("nope")
            assert info.value.status == 404 and info.value.code == "unknown_flow"
            job = c.start_job("double", keep_open=True)
            with pytest.raises(ApiError) as info:
                c.post(job.job_id, "map", "no_slot", {"x": 1})
            assert info.value.status == 422 and info.value.code == "unknown_slot"
            with pytest.raises(ApiError) as info:
                c.post(job.job_id, "ghost", "input", {"x": 1})
            assert info.value.status == 422 and info.value.code == "unknown_routine"

    def test_request_schema_errors(self, live: Any) -> None:
        url = live.base_url + "/api/jobs"
        r = httpx.post(url, headers=H, json={"flow": "double", "entry_params": [1]})
        assert r.status_code == 422 and _error(r)["code"] == "invalid_request"
        r = httpx.post(url, headers=H, json={"flow": "double", "surprise": 1})
        assert r.status_code == 422
        r = httpx.post(url, headers=H, json={"flow": "double", "timeout": -1})
        assert r.status_code == 422


class TestServer:
    def test_plugins_and_health(self, live: Any) -> None:
        with live.client() as c:
            plugins = c.plugins()
            assert "builtins.Mapper" in plugins.types["routines"]
            assert any(p.name == "builtins" for p in plugins.plugins)
            c.wait_job(c.start_job("double", {"x": 1}).job_id, timeout=10)
            health = c.health()
        assert health.status == "ok" and health.flows == 1
        assert health.jobs == {"completed": 1}
        assert "routilux-server" in health.tracking["sinks"]

    def test_openapi_documents_models(self, live: Any) -> None:
        schema = httpx.get(live.base_url + "/openapi.json").json()
        assert "JobSummary" in schema["components"]["schemas"]
        assert schema["components"]["securitySchemes"]["ApiKey"]["name"] == "X-API-Key"
        assert "429" in schema["paths"]["/api/jobs"]["post"]["responses"]
