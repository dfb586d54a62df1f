"""The README's main command: examples/quickstart.py runs end to end and says what it did."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class TestQuickstart:
    def test_runs_end_to_end_and_prints_the_result(self) -> None:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "quickstart.py")],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0].endswith("completed")
        assert lines[1] == "result: ROUTINES WIRED INTO FLOWS RUN ON A SHARED POOL"
        # nine words in batches of three: three full batches, nothing left over
        assert "'partial': False" in lines[2] and "'partial': True" not in lines[2]
        assert any(line.split()[0] == "upper" and "activations=  9" in line for line in lines)
