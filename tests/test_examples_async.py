"""examples/api_orchestration/async_fanout.py (issue 14): 500 concurrent HTTP requests from
async routines, joined by a sync routine, awaited with ``runtime.aexec``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "api_orchestration" / "async_fanout.py"


class TestAsyncFanout:
    def test_500_requests_are_open_at_once_and_every_answer_is_joined(self) -> None:
        proc = subprocess.run(
            [sys.executable, str(SCRIPT), "--requests", "500"],
            capture_output=True, text=True, timeout=110, cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0].startswith("job completed in ")
        result = ast.literal_eval(lines[1].removeprefix("result: "))
        # the fake API quotes 1 + (id * 37 % 100) / 4 for product id
        expected = round(sum(round(1.0 + (i * 37 % 100) / 4, 2) for i in range(500)), 2)
        assert result == {"answers": 500, "distinct_ids": 500, "total": expected}
        # the server answers only once all 500 requests are open: they ran concurrently
        assert lines[2] == "server: 500 requests served, 500 open at once"
        threads = int(lines[3].rsplit(" ", 1)[1])
        assert threads < 50  # no thread per waiting request
