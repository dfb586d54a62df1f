"""Saving and loading: flows as documents, job states as JSON, and the codecs between them.

Everything polymorphic is written with its **registered name** and read back by looking that
name up in a :class:`~routilux.registry.TypeRegistry` (default: the process-wide
``type_registry``), through one private cattrs converter per registry. Nothing here imports a
module, resolves an attribute path or calls a constructor named by the data.
"""

from __future__ import annotations

import json
import math
import os
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from . import _job_control as control
from ._codecs import MAX_DEPTH, TAG_KEY, key_path
from ._flow_document import (
    FLOW_FORMAT_VERSION,
    flow_from_dict,
    flow_from_json,
    flow_from_yaml,
    flow_to_dict,
    flow_to_json,
    flow_to_yaml,
    register_flow_migration,
    validate_flow_document,
)
from .errors import RoutiluxError, SerializationError
from .job_state import DEFAULT_HISTORY_LIMIT, FORMAT_VERSION, ExecutionRecord, JobState
from .registry import TypeRegistry, default_types

if TYPE_CHECKING:
    from .flow import Flow, ValidationIssue

__all__ = [
    "FLOW_FORMAT_VERSION",
    "JOB_STATE_FORMAT_VERSION",
    "MAX_DEPTH",
    "TAG_KEY",
    "dumps_checked",
    "find_unserializable",
    "flow_from_dict",
    "flow_from_json",
    "flow_from_yaml",
    "flow_schema",
    "flow_to_dict",
    "flow_to_json",
    "flow_to_yaml",
    "job_state_from_dict",
    "job_state_to_dict",
    "load_flow",
    "read_flow_document",
    "register_codec",
    "register_flow_migration",
    "register_job_state_migration",
    "validate_flow_document",
    "validate_flow_file",
]

JOB_STATE_FORMAT_VERSION = FORMAT_VERSION

_USER_FIELDS = (
    "entry_params",
    "routine_states",
    "shared_data",
    "shared_log",
    "output_log",
    "unconsumed",
)
"""Fields holding user values: written through the codecs, never through cattrs."""

_SNAPSHOT_FIELDS = ("pending", "in_flight", "policy_states")


def _build_converter() -> cattrs.Converter:
    conv = cattrs.Converter()
    conv.register_unstructure_hook(datetime, lambda d: d.isoformat())

    def _dt(value: Any, _: Any) -> datetime:
        if not isinstance(value, str):
            raise ValueError(f"expected an ISO 8601 date-time string, got {value!r:.60}")
        return datetime.fromisoformat(value)

    conv.register_structure_hook(datetime, _dt)
    is_history = lambda t: t == deque[ExecutionRecord]  # noqa: E731
    conv.register_unstructure_hook_func(is_history, lambda d: [r.to_dict() for r in d])

    def _history(value: Any, _: Any) -> deque[ExecutionRecord]:
        if not isinstance(value, list):
            raise ValueError("execution_history must be a list")
        for item in value:
            if not isinstance(item, Mapping):
                raise ValueError("execution_history entries must be mappings")
        return deque(
            (ExecutionRecord.from_dict(v) for v in value), maxlen=DEFAULT_HISTORY_LIMIT
        )

    conv.register_structure_hook_func(is_history, _history)
    omitted: dict[str, Any] = {
        name: override(omit=True) for name in (*_USER_FIELDS, *_SNAPSHOT_FIELDS)
    }
    conv.register_unstructure_hook(
        JobState,
        make_dict_unstructure_fn(
            JobState, conv, output_handler=override(omit=True), **omitted
        ),
    )
    conv.register_structure_hook(
        JobState,
        make_dict_structure_fn(JobState, conv, output_handler=override(omit=True), **omitted),
    )
    return conv


_CONVERTER = _build_converter()


# -- codecs ------------------------------------------------------------------------------------


def register_codec(
    type_: type,
    encode: Callable[[Any], Any],
    decode: Callable[[Any], Any],
    tag: str,
    *,
    replace: bool = False,
    types: TypeRegistry | None = None,
) -> None:
    """Let job states hold values of ``type_`` (and its subclasses).

    Saved as ``{"__routilux_type__": tag, "value": encode(value)}`` and read back with
    ``decode``; ``encode`` may return any value the codecs can write (lists, dicts, other
    registered types). Built-in tags: tuple, set, frozenset, datetime, date, time, timedelta,
    decimal, uuid, bytes.
    """
    (types or default_types()).codecs.register(type_, encode, decode, tag, replace=replace)


# -- JSON checks ---------------------------------------------------------------------------


def find_unserializable(value: Any, path: str = "", _depth: int = 0) -> tuple[str, Any] | None:
    """The key path and value of the first thing in ``value`` JSON cannot represent
    (containers nested deeper than ``MAX_DEPTH`` count as such)."""
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (path or "<root>", value)
    if _depth > MAX_DEPTH and isinstance(value, Mapping | list | tuple):
        return (path or "<root>", value)
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                return (f"{path}[{k!r}] (key)", k)
            found = find_unserializable(v, key_path(path, k), _depth + 1)
            if found:
                return found
        return None
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found = find_unserializable(v, f"{path}[{i}]", _depth + 1)
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
            "store JSON-compatible values (str, number, bool, None, list, dict), convert it "
            "before emitting, or register a codec with routilux.serialization.register_codec",
            path=path,
        ) from None


# -- job states ------------------------------------------------------------------------------


def _encode_state(
    state: JobState, snap: Mapping[str, Any], types: TypeRegistry
) -> dict[str, Any]:
    codecs = types.codecs

    def enc(value: Any, path: str, routine_id: str | None = None, slot: str | None = None) -> Any:
        try:
            return codecs.encode(value, path)
        except SerializationError as exc:
            where = ""
            if routine_id is not None:
                where = f" (routine {routine_id!r}" + (f", slot {slot!r})" if slot else ")")
            raise SerializationError(
                f"job {state.job_id} cannot be saved: {exc}{where}",
                path=exc.path,
                routine_id=routine_id,
                slot=slot,
            ) from None

    out: dict[str, Any] = {
        "entry_params": enc(state.entry_params, "entry_params"),
        "routine_states": {
            rid: enc(st, key_path("routine_states", rid), rid)
            for rid, st in state.routine_states.items()
        },
        "shared_data": enc(state.shared_data, "shared_data"),
        "shared_log": enc(state.shared_log, "shared_log"),
        "output_log": enc(state.output_log, "output_log"),
    }
    unconsumed = {}
    for key, payloads in state.unconsumed.items():
        rid, _, slot = key.partition(".")
        unconsumed[key] = enc(payloads, key_path("unconsumed", key), rid, slot or None)
    out["unconsumed"] = unconsumed
    pending: dict[str, dict[str, Any]] = {}
    for rid, slots in snap["pending"].items():
        base = key_path("pending", rid)
        pending[rid] = {
            slot: enc(list(payloads), key_path(base, slot), rid, slot)
            for slot, payloads in slots.items()
        }
    out["pending"] = pending
    in_flight = []
    for i, item in enumerate(snap["in_flight"]):
        rid = item.get("routine_id")
        base = f"in_flight[{i}]"
        encoded = dict(item)
        encoded["slot_data"] = {
            slot: enc(payloads, key_path(f"{base}.slot_data", slot), rid, slot)
            for slot, payloads in item.get("slot_data", {}).items()
        }
        encoded["message"] = enc(item.get("message"), f"{base}.message", rid)
        in_flight.append(encoded)
    out["in_flight"] = in_flight
    out["policy_states"] = {
        rid: enc(st, key_path("policy_states", rid), rid)
        for rid, st in snap["policy_states"].items()
    }
    return out


def job_state_to_dict(state: JobState, types: TypeRegistry | None = None) -> dict[str, Any]:
    """A JSON-ready dict of ``state``, values JSON cannot hold written through the codecs.

    For a job the runtime is running, its queues, in-flight and retry-waiting activations and
    policy state are snapshotted under the job's lock.

    Raises:
        SerializationError: a value has no codec; ``.path`` (``pending.b.input[3].when``),
            ``.routine_id`` and ``.slot`` locate it.
    """
    types = types or default_types()
    live = state._live
    if live is not None:
        with live.lock, state._lock:
            data: dict[str, Any] = _CONVERTER.unstructure(state)
            snap = control.snapshot(live)
            data["activation_seq"] = snap.get("activation_seq", state.activation_seq)
            data.update(_encode_state(state, snap, types))
    else:
        with state._lock:
            data = _CONVERTER.unstructure(state)
            snap = {
                "pending": state.pending,
                "in_flight": state.in_flight,
                "policy_states": state.policy_states,
            }
            data.update(_encode_state(state, snap, types))
    return {"format_version": FORMAT_VERSION, **data}


_JOB_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def register_job_state_migration(
    from_version: int, migrate: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    """Register ``migrate``, which turns a saved job state of ``from_version`` into one of
    ``from_version + 1``; loading chains migrations up to the current format version."""
    _JOB_MIGRATIONS[from_version] = migrate


def _migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Bring older saved formats up to ``FORMAT_VERSION`` through registered migrations."""
    version = data.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SerializationError(
            f"job state format_version must be an integer >= 1, got {version!r:.40}",
            path="format_version",
        )
    if version > FORMAT_VERSION:
        raise SerializationError(
            f"job state format_version {version!r} is newer than this routilux understands "
            f"({FORMAT_VERSION}); upgrade routilux",
            path="format_version",
        )
    while version < FORMAT_VERSION:
        step = _JOB_MIGRATIONS.get(version)
        if step is None:
            raise SerializationError(
                f"no migration from job state format {version} to {version + 1}",
                path="format_version",
            )
        data = step(dict(data))
        version += 1
        data["format_version"] = version
    return data


def _bad(path: str, what: str, value: Any) -> SerializationError:
    return SerializationError(
        f"invalid job state: {path} must be {what}, got {type(value).__name__}", path=path
    )


def _dict_of(value: Any, path: str, what: str = "a mapping") -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _bad(path, f"{what} with string keys", value)
    return value


def _payloads(value: Any, path: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _bad(path, "a list of payloads", value)
    for i, p in enumerate(value):
        if not isinstance(p, dict):
            raise _bad(f"{path}[{i}]", "a payload mapping", p)
    return value


def _number(value: Any, path: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise _bad(path, "a number", value)
    if isinstance(value, float) and not math.isfinite(value):
        raise _bad(path, "a finite number", value)
    return value


def _decode_user(body: dict[str, Any], types: TypeRegistry) -> dict[str, Any]:
    dec = types.codecs.decode
    out: dict[str, Any] = {}
    if "entry_params" in body:
        ep = dec(body.pop("entry_params"), "entry_params")
        out["entry_params"] = None if ep is None else _dict_of(ep, "entry_params")
    if "routine_states" in body:
        states = _dict_of(dec(body.pop("routine_states"), "routine_states"), "routine_states")
        for rid, st in states.items():
            _dict_of(st, key_path("routine_states", rid))
        out["routine_states"] = states
    if "shared_data" in body:
        out["shared_data"] = dec(body.pop("shared_data"), "shared_data")
        if not isinstance(out["shared_data"], dict):
            raise _bad("shared_data", "a mapping", out["shared_data"])
    for name in ("shared_log", "output_log"):
        if name in body:
            out[name] = dec(body.pop(name), name)
            if not isinstance(out[name], list):
                raise _bad(name, "a list", out[name])
    if "unconsumed" in body:
        unconsumed = _dict_of(dec(body.pop("unconsumed"), "unconsumed"), "unconsumed")
        for key, payloads in unconsumed.items():
            _payloads(payloads, key_path("unconsumed", key))
        out["unconsumed"] = unconsumed
    if "pending" in body:
        pending = _dict_of(dec(body.pop("pending"), "pending"), "pending")
        for rid, slots in pending.items():
            base = key_path("pending", rid)
            for slot, payloads in _dict_of(slots, base).items():
                _payloads(payloads, key_path(base, slot))
        out["pending"] = pending
    if "in_flight" in body:
        items = dec(body.pop("in_flight"), "in_flight")
        if not isinstance(items, list):
            raise _bad("in_flight", "a list", items)
        for i, item in enumerate(items):
            base = f"in_flight[{i}]"
            _dict_of(item, base)
            if not isinstance(item.get("routine_id"), str):
                raise _bad(f"{base}.routine_id", "a string", item.get("routine_id"))
            slot_data = _dict_of(item.get("slot_data"), f"{base}.slot_data")
            for slot, payloads in slot_data.items():
                _payloads(payloads, key_path(f"{base}.slot_data", slot))
            if item.get("message") is not None:
                _dict_of(item["message"], f"{base}.message")
            _number(item.get("attempt", 0), f"{base}.attempt", int)
            _number(item.get("seq", 0), f"{base}.seq", int)
            retry_in = _number(item.get("retry_in", 0.0), f"{base}.retry_in", (int, float))
            if retry_in < 0:
                raise _bad(f"{base}.retry_in", "a number >= 0", retry_in)
        out["in_flight"] = items
    if "policy_states" in body:
        states = _dict_of(dec(body.pop("policy_states"), "policy_states"), "policy_states")
        for rid, st in states.items():
            _dict_of(st, key_path("policy_states", rid))
        out["policy_states"] = states
    return out


def job_state_from_dict(data: Any, types: TypeRegistry | None = None) -> JobState:
    """Rebuild a :class:`JobState` from :func:`job_state_to_dict` output.

    Raises:
        SerializationError: the data is malformed (``.path`` says where).
        UnknownTypeError: a value names a codec tag that is not registered.
    """
    types = types or default_types()
    if not isinstance(data, Mapping):
        raise SerializationError(f"job state must be a mapping, got {type(data).__name__}")
    try:
        body = _migrate(dict(data))
        body.pop("format_version", None)
        user = _decode_user(body, types)
        state = _CONVERTER.structure(body, JobState)
    except RoutiluxError:
        raise
    except cattrs.BaseValidationError as exc:
        problems = "; ".join(cattrs.transform_error(exc, path="job_state"))
        raise SerializationError(f"invalid job state: {problems}") from None
    except Exception as exc:  # malformed data: report it as such, whatever broke
        raise SerializationError(f"invalid job state: {type(exc).__name__}: {exc}") from None
    for name, value in user.items():
        setattr(state, name, value)
    return state


# -- flow files ------------------------------------------------------------------------------


def read_flow_document(path: str | os.PathLike[str]) -> Any:
    """The parsed content of a flow file (``.yaml``/``.yml`` through a safe YAML loader,
    anything else as JSON); ``SerializationError`` if it cannot be read or parsed."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SerializationError(f"cannot read flow file {str(p)!r}: {exc}") from None
    if p.suffix.lower() in (".yaml", ".yml"):
        from ._flow_document import _yaml

        yaml = _yaml()
        try:
            return yaml.safe_load(text)
        except (yaml.YAMLError, RecursionError) as exc:
            raise SerializationError(f"{p}: not valid YAML: {exc}") from None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise SerializationError(f"{p}: not valid JSON: {exc}") from None


def validate_flow_file(
    path: str | os.PathLike[str], types: TypeRegistry | None = None
) -> list[ValidationIssue]:
    """Every problem of the flow file at ``path`` (what ``routilux validate FILE`` prints)."""
    return validate_flow_document(read_flow_document(path), types)


def load_flow(path: str | os.PathLike[str], types: TypeRegistry | None = None) -> Flow:
    """The flow described by the YAML or JSON file at ``path``."""
    return flow_from_dict(read_flow_document(path), types)


def flow_schema() -> dict[str, Any]:
    """The JSON Schema of flow documents (shipped as ``routilux/schemas/flow.schema.json``)."""
    text = resources.files("routilux").joinpath("schemas/flow.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


