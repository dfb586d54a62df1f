"""The documentation builds without a warning, and its code examples run.

* the Sphinx site builds with warnings as errors (into a temporary directory);
* the Python blocks of the quickstart and concepts pages run, in order, as one script each;
* the original product description's examples are the ones
  ``routilux-core/tests/test_intro_examples.py`` runs, exactly as written.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from routilux import hookspecs

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def test_sphinx_build_has_no_warnings(tmp_path: Path) -> None:
    out = tmp_path / "html"
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    for page in ("index", "introduction", "installation", "quickstart", "concepts", "cli",
                 "api", "plugins", "performance"):
        assert (out / f"{page}.html").is_file(), page
    cli = (out / "cli.html").read_text(encoding="utf-8")
    for command in ("run", "validate", "graph", "plugins"):
        assert f"Usage: routilux {command} [OPTIONS]" in cli  # generated from click's help
    plugins = (out / "plugins.html").read_text(encoding="utf-8")
    hooks = [name for name in dir(hookspecs) if name.startswith("routilux_")]
    assert len(hooks) >= 5
    for hook in hooks:
        assert f'id="routilux.hookspecs.{hook}"' in plugins  # autodoc from the hookspecs
    api = (out / "api.html").read_text(encoding="utf-8")
    assert 'id="routilux.runtime.Runtime.exec"' in api


def python_blocks(page: str) -> list[str]:
    text = (DOCS / page).read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)


@pytest.mark.parametrize("page", ["quickstart.md", "concepts.md"])
def test_python_examples_run(page: str, tmp_path: Path) -> None:
    blocks = python_blocks(page)
    assert blocks, f"{page} has no Python example"
    script = tmp_path / "example.py"
    script.write_text("\n\n".join(blocks), encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_quickstart_prints_what_it_says() -> None:
    (block,) = python_blocks("quickstart.md")
    proc = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True,
                          timeout=60)
    assert proc.stdout.splitlines() == ["completed", "{'to': 2, 'be': 2, 'or': 1, 'not': 1}"]


def rst_code_blocks(text: str) -> list[str]:
    """The bodies of ``.. code-block:: python`` directives, dedented."""
    blocks = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == ".. code-block:: python":
            indent = len(line) - len(line.lstrip())
            body = []
            for nxt in lines[i + 1:]:
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                    break
                body.append(nxt)
            blocks.append(_squeeze(textwrap.dedent("\n".join(body))))
    return blocks


def _squeeze(text: str) -> str:
    """Stripped, with runs of blank lines made one (a removed "(added)" line leaves one)."""
    return re.sub(r"\n\s*\n+", "\n\n", text).strip()


def test_introduction_examples_are_tested_exactly_as_written() -> None:
    # The product description's examples must run as written: every line of every example
    # (a verbatim copy of the description is kept in the tests) appears, unchanged and in
    # order, in the test module that runs them; only lines completing an example may sit in
    # between. docs/introduction.rst is the corrected page for readers.
    seed = ROOT / "routilux-core" / "tests" / "data" / "seed_introduction.rst"
    blocks = rst_code_blocks(seed.read_text(encoding="utf-8"))
    assert len(blocks) >= 9
    tests = (ROOT / "routilux-core" / "tests" / "test_intro_examples.py").read_text("utf-8")
    test_lines = [line.strip() for line in tests.splitlines()]
    for number, block in enumerate(blocks, 1):
        pos = 0
        for line in (ln.strip() for ln in block.splitlines() if ln.strip()):
            try:
                pos = test_lines.index(line, pos) + 1
            except ValueError:
                raise AssertionError(
                    f"example {number} of the introduction: line {line!r} is not in "
                    "test_intro_examples.py (in order) as written"
                ) from None
