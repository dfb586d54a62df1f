"""What the command line's TARGET and parameter options name, turned into flows and dicts.

A TARGET is a flow file (``.yaml``/``.yml``/``.json``, loaded by registered type names, nothing
imported) or ``MODULE:ATTRIBUTE`` / ``path/to/file.py:ATTRIBUTE`` naming a Python flow. The
Python form imports code, which is allowed here only because the user typed the target on the
command line; flow documents never cause an import.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import RoutiluxError
from ..flow import Flow

__all__ = [
    "CliUsageError",
    "describe_problems",
    "is_flow_file",
    "load_params",
    "load_target",
    "parse_param",
]

FLOW_SUFFIXES = (".yaml", ".yml", ".json")


class CliUsageError(RoutiluxError, ValueError):
    """The command line names something that cannot be used (exit status 2)."""


def is_flow_file(target: str) -> bool:
    return Path(target).suffix.lower() in FLOW_SUFFIXES and ":" not in Path(target).name


def _import_file(path: Path) -> Any:
    """Import ``path`` as a module; its folder goes first on ``sys.path`` so the file can
    import its neighbours (as ``python path/to/file.py`` would)."""
    folder = str(path.parent.resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = f"_routilux_target_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CliUsageError(f"cannot import {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _import_module(name: str) -> Any:
    """Import ``name`` with the working directory on ``sys.path`` (as ``python -m`` would)."""
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise CliUsageError(
                f"no module named {exc.name!r} (looked in the working directory and the "
                "installed packages); give MODULE:ATTRIBUTE or path/to/file.py:ATTRIBUTE"
            ) from None
        raise


def _load_python(target: str) -> Flow:
    module_part, _, attr = target.rpartition(":")
    if not module_part or not attr:
        raise CliUsageError(
            f"{target!r} is neither a flow file (.yaml, .yml, .json) nor MODULE:ATTRIBUTE"
        )
    if module_part.endswith(".py") or "/" in module_part or "\\" in module_part:
        path = Path(module_part)
        if not path.is_file():
            raise CliUsageError(f"no such file: {module_part}")
        module = _import_file(path)
    else:
        module = _import_module(module_part)
    value: Any = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise CliUsageError(f"{module_part!r} has no attribute {attr!r}") from None
    if not isinstance(value, Flow) and callable(value):
        value = value()  # a factory such as build_flow()
    if not isinstance(value, Flow):
        raise CliUsageError(
            f"{target} is a {type(value).__name__}, not a Flow (nor a function returning one)"
        )
    return value


def load_target(target: str) -> Flow:
    """The flow TARGET names (see the module docstring)."""
    path = Path(target)
    if is_flow_file(target):
        if not path.is_file():
            raise CliUsageError(f"no such file: {target}")
        from ..serialization import load_flow

        return load_flow(path)
    if ":" in target:
        return _load_python(target)
    if path.is_file():
        raise CliUsageError(
            f"{target}: unsupported file type {path.suffix or '(none)'!r}; give a flow file "
            "(.yaml, .yml, .json) or a Python flow as path/to/file.py:ATTRIBUTE"
        )
    raise CliUsageError(
        f"no such file: {target} (a TARGET is a flow file, or MODULE:ATTRIBUTE for a Python flow)"
    )


def parse_param(text: str) -> tuple[str, Any]:
    """``key=value``; the value is read as JSON when it is valid JSON (``3``, ``true``,
    ``[1, 2]``, ``"3"``), else kept as the string typed."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise CliUsageError(f"--param {text!r}: expected KEY=VALUE, for example --param limit=10")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def load_params(params_file: str | None, params: Iterable[str]) -> dict[str, Any]:
    """Entry parameters: the file's object first, then every ``--param`` over it."""
    result: dict[str, Any] = {}
    if params_file is not None:
        path = Path(params_file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CliUsageError(f"cannot read params file {params_file!r}: {exc}") from None
        data: Any
        if path.suffix.lower() in (".yaml", ".yml"):
            from .._flow_document import _yaml

            yaml = _yaml()
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise CliUsageError(f"{params_file}: not valid YAML: {exc}") from None
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise CliUsageError(f"{params_file}: not valid JSON: {exc}") from None
        if not isinstance(data, Mapping):
            raise CliUsageError(
                f"{params_file}: the params file must hold an object (key: value pairs), "
                f"not a {type(data).__name__}"
            )
        result.update(data)
    for text in params:
        key, value = parse_param(text)
        result[key] = value
    return result


def describe_problems(exc: RoutiluxError) -> list[str]:
    """Every problem an error carries (``issues``), one line each; else its message."""
    issues = getattr(exc, "issues", None) or []
    if issues:
        return [str(i) for i in issues]
    return [str(exc)]

