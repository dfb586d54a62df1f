"""Turning job states into JSON-ready data and back, with one private cattrs converter.

Nothing here imports a module or calls a constructor named by the data.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from .errors import SerializationError
from .job_state import DEFAULT_HISTORY_LIMIT, FORMAT_VERSION, ExecutionRecord, JobState

__all__ = ["dumps_checked", "find_unserializable", "job_state_from_dict", "job_state_to_dict"]


def _build_converter() -> cattrs.Converter:
    conv = cattrs.Converter()
    conv.register_unstructure_hook(datetime, lambda d: d.isoformat())

    def _dt(value: Any, _: Any) -> datetime:
        if not isinstance(value, str):
            raise ValueError(f"expected an ISO 8601 date-time string, got {value!r}")
        return datetime.fromisoformat(value)

    conv.register_structure_hook(datetime, _dt)
    is_history = lambda t: t == deque[ExecutionRecord]  # noqa: E731
    conv.register_unstructure_hook_func(is_history, lambda d: [r.to_dict() for r in d])

    def _history(value: Any, _: Any) -> deque[ExecutionRecord]:
        if not isinstance(value, list):
            raise ValueError("execution_history must be a list")
        return deque(
            (ExecutionRecord.from_dict(v) for v in value), maxlen=DEFAULT_HISTORY_LIMIT
        )

    conv.register_structure_hook_func(is_history, _history)
    conv.register_unstructure_hook(
        JobState,
        make_dict_unstructure_fn(JobState, conv, output_handler=override(omit=True)),
    )
    conv.register_structure_hook(
        JobState,
        make_dict_structure_fn(JobState, conv, output_handler=override(omit=True)),
    )
    return conv


_CONVERTER = _build_converter()


def find_unserializable(value: Any, path: str = "") -> tuple[str, Any] | None:
    """The key path and value of the first thing in ``value`` JSON cannot represent."""
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        return None
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                return (f"{path}[{k!r}] (key)", k)
            found = find_unserializable(v, f"{path}.{k}" if path else k)
            if found:
                return found
        return None
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found = find_unserializable(v, f"{path}[{i}]")
            if found:
                return found
        return None
    return (path or "<root>", value)


def dumps_checked(data: Any, *, what: str, **kwargs: Any) -> str:
    """``json.dumps`` that names the key path of a value JSON cannot hold."""
    try:
        return json.dumps(data, allow_nan=False, **kwargs)
    except (TypeError, ValueError) as exc:
        found = find_unserializable(data)
        if found is None:
            raise SerializationError(f"{what} cannot be written as JSON: {exc}") from None
        path, bad = found
        raise SerializationError(
            f"{what} cannot be written as JSON: {type(bad).__name__} value at {path}; "
            "store JSON-compatible values (str, number, bool, None, list, dict) or convert it "
            "before emitting",
            path=path,
        ) from None


def job_state_to_dict(state: JobState) -> dict[str, Any]:
    live = state._live
    if live is not None:
        with live.lock, state._lock:
            data: dict[str, Any] = _CONVERTER.unstructure(state)
            data.update(live.snapshot())
    else:
        with state._lock:
            data = _CONVERTER.unstructure(state)
    data = {"format_version": FORMAT_VERSION, **data}
    return data


def _migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Bring older saved formats up to ``FORMAT_VERSION`` (none exist yet)."""
    version = data.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise SerializationError(
            f"job state format_version {version!r} is newer than this routilux understands "
            f"({FORMAT_VERSION}); upgrade routilux"
        )
    return data


def job_state_from_dict(data: Mapping[str, Any]) -> JobState:
    if not isinstance(data, Mapping):
        raise SerializationError(f"job state must be a mapping, got {type(data).__name__}")
    body = _migrate(dict(data))
    body.pop("format_version", None)
    try:
        return _CONVERTER.structure(body, JobState)
    except cattrs.ClassValidationError as exc:
        problems = "; ".join(cattrs.transform_error(exc, path="job_state"))
        raise SerializationError(f"invalid job state: {problems}") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise SerializationError(f"invalid job state: {exc}") from None
