"""The examples run as their READMEs say, through the ``routilux`` command line, and do what
they claim (reports written, retries made, windows and batches formed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def routilux(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "routilux.cli", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def run_json(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    proc = routilux("run", *args, "--json", env=env)
    assert proc.stderr == "", proc.stderr
    return proc.returncode, json.loads(proc.stdout)


class TestEtl:
    TARGET = "examples/etl/flow.py:flow"

    def test_report_from_the_shipped_csv(self, tmp_path: Path) -> None:
        report = tmp_path / "out" / "report.json"
        code, data = run_json(self.TARGET, "--param", f"report={report}")
        assert code == 0 and data["status"] == "completed"
        written = json.loads(report.read_text(encoding="utf-8"))
        assert written["orders"] == 19
        assert written["revenue"] == 1905.42
        assert written["by_country"]["GB"] == {"orders": 5, "revenue": 342.6}
        assert written["by_customer"]["Ada Lovelace"] == 184.6  # 120.50 + 64.10 (22.30 shipped)
        assert written["not_paid"] == [1003, 1008, 1023]
        # schema failures go to the dead letter with their reason ...
        assert [r["line"] for r in written["rejected"]] == [11, 12, 16, 17, 28]
        assert "is not one of ['paid', 'refunded', 'pending']" in written["rejected"][3]["reason"]
        # ... lines that cannot be parsed are skipped (SKIP strategy), not errors
        assert written["skipped_lines"] == 3
        parse = data["routines"]["parse"]
        assert (parse["activations"], parse["skipped"], parse["errors"]) == (30, 3, 0)
        assert data["shared_data"]["report"] == str(report)
        assert data["output_log"][0]["data"]["orders"] == 19

    def test_default_report_goes_to_the_temp_dir(self, tmp_path: Path) -> None:
        env = {"TMPDIR": str(tmp_path), "TEMP": str(tmp_path), "TMP": str(tmp_path)}
        code, data = run_json(self.TARGET, env=env)
        assert code == 0
        expected = tmp_path / "routilux-examples" / "etl-report.json"
        assert data["shared_data"]["report"] == str(expected) and expected.is_file()

    def test_plain_progress_and_summary(self, tmp_path: Path) -> None:
        proc = routilux("run", self.TARGET, "--param", f"report={tmp_path / 'r.json'}")
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout.splitlines()
        assert out[0].startswith("running flow 'etl_orders' (job ")
        assert any(line.startswith("completed in ") for line in out)
        header = next(line for line in out if line.startswith("routine "))
        assert header.split() == ["routine", "activations", "errors", "retries", "skipped",
                                  "in", "out", "seconds"]
        assert next(line for line in out if line.startswith("parse ")).split()[1:5] == [
            "30", "0", "0", "3"]
        assert "outputs:" in out

    def test_graph_and_validate(self) -> None:
        graph = routilux("graph", self.TARGET)
        assert graph.returncode == 0
        assert "builtins.SchemaValidator" in graph.stdout and "on error: skip" in graph.stdout
        assert routilux("validate", self.TARGET).returncode == 0
        # the YAML alone names the example's own routine types, unregistered without flow.py
        bare = routilux("validate", "examples/etl/flow.yaml")
        assert bare.returncode == 1
        assert bare.stdout.splitlines() == [
            f"routines.{rid}.type: routine type '{name}' is not registered; import the module "
            "that defines it, or install the pack that provides it"
            for rid, name in [("read", "etl.ReadCsv"), ("totals", "etl.Totals"),
                              ("report", "etl.WriteReport")]
        ]


class TestApiOrchestration:
    TARGET = "examples/api_orchestration/flow.py:build_flow"

    def test_fan_out_retry_fan_in(self) -> None:
        code, data = run_json(self.TARGET)
        assert code == 0 and data["status"] == "completed"
        assert data["shared_data"]["result"] == {
            "user": "Ada Lovelace", "plan": "pro", "orders": 3, "spent": 206.9,
            "recommended": ["difference engine", "punched cards"],
        }
        retries = {rid: data["routines"][rid]["retries"]
                   for rid in ("profile", "orders", "recommendations")}
        assert retries == {"profile": 0, "orders": 1, "recommendations": 2}
        assert data["routines"]["join"]["payloads_in"] == 3
        assert data["routines"]["join"]["activations"] == 1

    def test_unknown_user_is_not_retried_and_fails_the_job(self) -> None:
        code, data = run_json(self.TARGET, "--param", "user_id=7")
        assert code == 1 and data["status"] == "failed"
        assert data["error"]["routine"] == "profile"
        assert data["error"]["type"] == "LookupError"
        assert data["routines"]["profile"]["retries"] == 0

    def test_progress_shows_retried_attempts(self) -> None:
        proc = routilux("run", self.TARGET)
        assert proc.returncode == 0, proc.stderr
        retried = [line for line in proc.stdout.splitlines() if line.startswith("  ! ")]
        assert len(retried) == 3
        assert all("retrying): ConnectionError: GET http://127.0.0.1:" in r for r in retried)
        assert "shared_data['result'] = {'user': 'Ada Lovelace'" in proc.stdout


class TestEventStream:
    def test_windows_and_batches(self) -> None:
        proc = subprocess.run(
            [sys.executable, str(EXAMPLES / "event_stream" / "stream.py")],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[:6] == [
            f"second {n}: posted {count}, job idle"
            for n, count in enumerate(["4 readings", "2 readings", "3 readings", "1 reading",
                                       "3 readings", "2 readings"])
        ]
        windows = [line for line in lines if line.startswith("window closed")]
        assert windows[0] == "window closed at t=0s: 1 reading from a, mean 20.5"
        assert windows[1] == "window closed at t=1s: 3 readings from a,b,c, mean 20.67"
        assert len(windows) == 7
        assert sum(int(w.split(": ")[1].split()[0]) for w in windows) == 15  # every reading once
        assert [line for line in lines if line.startswith("stored batch")] == [
            "stored batch 1: windows at t=[0.0, 1.0, 2.0]",
            "stored batch 2: windows at t=[3.0, 4.0, 5.0]",
            "stored batch 3: windows at t=[6.0] (partial, flushed by complete_job)",
        ]
        assert lines[-1] == "job completed"

    def test_graph_shows_both_policies(self) -> None:
        proc = routilux("graph", "examples/event_stream/stream.py:build_flow", "-f", "dot")
        assert proc.returncode == 0, proc.stderr
        assert "policy: time_interval(seconds=1.0)" in proc.stdout
        assert "policy: batch_size(size=3, flush_partial=True)" in proc.stdout


class TestEveryExampleHasAReadme:
    def test_readmes(self) -> None:
        for name in ("etl", "api_orchestration", "event_stream"):
            text = (EXAMPLES / name / "README.md").read_text(encoding="utf-8")
            assert text.startswith("# ") and "uv run " in text


class TestPluginsCommand:
    def test_lists_the_builtins_pack(self) -> None:
        proc = routilux("plugins", "--json")
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)
        builtins = next(p for p in data["plugins"] if p["name"] == "builtins")
        assert builtins["distribution"] == "routilux-builtins"
        assert "builtins.SchemaValidator" in builtins["registered"]["routines"]
        assert data["broken"] == []

    def test_table(self) -> None:
        proc = routilux("plugins")
        assert proc.returncode == 0
        assert "routilux-builtins" in proc.stdout and "builtins.Mapper" in proc.stdout

    def test_broken_plugin_is_listed_with_its_reason(self, tmp_path: Path) -> None:
        # A distribution whose entry point cannot be imported, found through PYTHONPATH.
        dist = tmp_path / "brokenpack-1.0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenpack\nVersion: 1.0\n",
                                       encoding="utf-8")
        (dist / "entry_points.txt").write_text(
            "[routilux.routines]\nbrokenpack = brokenpack_missing_module\n", encoding="utf-8")
        proc = routilux("plugins", "--json", env={"PYTHONPATH": str(tmp_path)})
        assert proc.returncode == 0, proc.stderr
        broken = json.loads(proc.stdout)["broken"]
        assert [b["name"] for b in broken] == ["brokenpack"]
        assert "could not be imported" in broken[0]["error"]
