"""The worked example of docs/testing.md runs as a user's test file would."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def example(name: str) -> str:
    """The ```python block of docs/testing.md that starts with ``# <name>``."""
    for block in re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S):
        if block.startswith(f"# {name}\n"):
            return block
    raise AssertionError(f"docs/testing.md has no example starting with '# {name}'")


def test_worked_example_passes(run_plugin: Callable[..., pytest.RunResult]) -> None:
    source = example("test_batcher.py")
    result = run_plugin(source, "-v")
    result.assert_outcomes(passed=source.count("\ndef test_"))
    assert source.count("\ndef test_") == 4


def test_every_documented_fixture_exists() -> None:
    from routilux_testing import plugin

    text = DOC.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(routilux_\w+)` \|", text, re.M))
    assert documented == {"routilux_runtime", "routilux_flow_registry", "routilux_clock",
                          "routilux_plugins", "routilux_tracker"}
    assert all(callable(getattr(plugin, name)) for name in documented)


def test_every_public_name_is_documented() -> None:
    import routilux_testing
    import routilux_testing.strategies as strategies

    text = DOC.read_text(encoding="utf-8")
    for name in routilux_testing.__all__:
        if name != "ResumeCheck":   # documented as what assert_resume_equivalent returns
            assert f"{name}(" in text or f"`{name}`" in text, name
    for name in ("json_values", "payloads", "flow_specs", "flows", "job_states"):
        assert name in strategies.__all__ and f"{name}(" in text


def test_public_names_resolve_lazily() -> None:
    import routilux_testing

    assert set(routilux_testing.__all__) <= set(dir(routilux_testing))
    for name in routilux_testing.__all__:
        assert getattr(routilux_testing, name) is not None
    with pytest.raises(AttributeError):
        routilux_testing.nope  # noqa: B018
