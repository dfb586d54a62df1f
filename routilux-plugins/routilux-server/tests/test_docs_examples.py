"""The curl and Python-client examples of docs/server.md run as written against
``routilux serve`` (only the port differs: the test server listens on a free one)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import KEY

DOC = Path(__file__).resolve().parents[3] / "docs" / "server.md"
DOC_URL = "http://127.0.0.1:20555"


def _block(name: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    m = re.search(rf"<!-- docs-test: {re.escape(name)} -->\n```\w+\n(.*?)\n```", text, re.S)
    assert m, f"docs/server.md has no block marked {name!r}"
    return m.group(1) + "\n"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "flow.yaml").write_text(_block("flow.yaml"), encoding="utf-8")
    return tmp_path


def _env() -> dict[str, str]:
    return {**os.environ, "ROUTILUX_API_KEY": KEY}


@pytest.fixture
def server(served: Any) -> Any:
    return served()


def test_python_client_example(server: Any, workdir: Path) -> None:
    code = _block("python-client").replace(DOC_URL, server.base_url)
    proc = subprocess.run([sys.executable, "-c", code], cwd=workdir, env=_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["completed", "['hello Grace']", "1", "404 unknown_job"]


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("jq") is None,
                    reason="the curl example needs curl and jq")
def test_curl_example(server: Any, workdir: Path) -> None:
    script = _block("curl").replace(DOC_URL, server.base_url)
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=workdir, env=_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    lines = proc.stdout.splitlines()
    assert lines[:5] == ["ok", "greet", "completed", '["hello Ada"]', "1"]
    assert lines[5] == "flowchart LR"
