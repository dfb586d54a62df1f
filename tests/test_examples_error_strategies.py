"""The error-strategy examples run as written and show what their strategy does."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "error_strategies"


def run_example(name: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_every_strategy_has_an_example() -> None:
    names = {p.name for p in EXAMPLES.glob("*.py")}
    assert {"stop.py", "continue_.py", "retry.py", "skip.py"} <= names


def test_stop() -> None:
    out = run_example("stop.py")
    assert "status: failed" in out
    assert "charged: [11, 12]" in out  # nothing after the failing order
    assert "error: ValueError: payment refused for order 13" in out
    assert "error_routine: charge" in out
    assert "traceback ends with: ValueError: payment refused for order 13" in out
    assert "post refused: JobNotAcceptingWorkError" in out


def test_continue() -> None:
    out = run_example("continue_.py")
    assert "status: completed" in out
    assert "stored: ['ada:UK', 'grace:US']" in out
    assert "failed KeyError: 'bob'" in out
    assert "enrich errors: 1" in out


def test_skip() -> None:
    out = run_example("skip.py")
    assert "status: completed" in out
    assert "totals: {'a': 4, 'b': 2}" in out
    assert "skipped_activations: 2" in out
    assert "history statuses: ['completed', 'skipped', 'completed', 'completed', 'skipped']" in out
    assert "parse skipped=2 errors=0" in out


def test_retry() -> None:
    out = run_example("retry.py")
    assert "job ok: completed, body=<contents of https://example.org/a>" in out
    assert "job ok attempts: [0, 1, 2]" in out
    assert re.search(r"attempt 0: retrying\n\s+attempt 1: retrying\n\s+attempt 2: completed", out)
    assert "job bad: failed, attempts: [0, 1, 2, 3]" in out
    assert "job bad error: ConnectionError" in out
    assert "job ok retries: 2" in out
    waits = re.search(r"waited ~\[([\d.]+), ([\d.]+)\] s", out)
    assert waits is not None
    first, second = float(waits.group(1)), float(waits.group(2))
    assert first >= 0.04  # retry_delay 0.05 s (rounded to 2 digits) ...
    assert second >= 0.09  # ... then doubled


@pytest.mark.parametrize("name", ["stop.py", "continue_.py", "retry.py", "skip.py"])
def test_example_has_a_main(name: str) -> None:
    text = (EXAMPLES / name).read_text(encoding="utf-8")
    assert "def main() -> int:" in text
    assert 'if __name__ == "__main__":' in text
