"""Flows as documents: ``Flow`` <-> plain dict (JSON/YAML), and validation of flow files.

A flow document names routine types, policies, predicates and exceptions by **registered
name** only. Loading looks them up in a :class:`~routilux.registry.TypeRegistry`, creates each
routine with its class's parameterless constructor, applies ``config`` with ``set_config``,
then the policy, the error handler and the concurrency limit. Nothing is imported and no
attribute path is resolved.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import cattrs

from ._codecs import MAX_DEPTH, key_path
from ._convert import converter_for, format_cattrs_error
from .activation_policies import ActivationPolicy
from .error_handling import ErrorHandler
from .errors import (
    ConfigurationError,
    FlowValidationError,
    RoutiluxError,
    SerializationError,
    UnknownTypeError,
)
from .flow import Flow, ValidationIssue
from .registry import TypeRegistry, default_types
from .routine import Routine

__all__ = [
    "FLOW_FORMAT_VERSION",
    "flow_from_dict",
    "flow_from_json",
    "flow_from_yaml",
    "flow_to_dict",
    "flow_to_json",
    "flow_to_yaml",
    "register_flow_migration",
    "validate_flow_document",
]

FLOW_FORMAT_VERSION = 1
"""Version of the flow document format (``format_version`` in a flow file)."""

_TOP_KEYS = ("format_version", "flow_id", "execution_timeout", "error_handler", "routines",
             "connections", "entry", "description")
_ROUTINE_KEYS = ("type", "config", "policy", "error_handler", "max_concurrency", "description")
_CONNECTION_KEYS = ("source", "event", "target", "slot")
_ENTRY_KEYS = ("routine", "slot")
_ARROW = re.compile(r"^\s*([^.\s]+)\.(\S+)\s*->\s*([^.\s]+)\.(\S+)\s*$")

_FLOW_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def register_flow_migration(
    from_version: int, migrate: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    """Register ``migrate``, which turns a flow document of ``from_version`` into one of
    ``from_version + 1``; loading chains migrations up to :data:`FLOW_FORMAT_VERSION`."""
    _FLOW_MIGRATIONS[from_version] = migrate


# -- writing ---------------------------------------------------------------------------------


def _logic_key(fn: Any) -> Any:
    fn = getattr(fn, "__func__", fn)
    code = getattr(fn, "__code__", None)
    return code if code is not None else type(fn)


def _slot_sig(r: Routine) -> list[tuple[Any, ...]]:
    return [(s.name, s.max_queue_length, s.overflow, s.block_timeout) for s in r.slots.values()]


def _event_sig(r: Routine) -> list[tuple[Any, ...]]:
    return [(e.name, e.output_params) for e in r.events.values()]


def _check_rebuildable(
    rid: str, routine: Routine, types: TypeRegistry, issues: list[ValidationIssue]
) -> Routine | None:
    """A fresh instance of ``routine``'s class, after checking it rebuilds the same routine."""
    path = key_path("routines", rid)
    cls = type(routine)

    def add(code: str, message: str) -> None:
        issues.append(ValidationIssue(severity="error", code=code, message=message, path=path))

    if cls is Routine:
        add(
            "routine.not_serializable",
            f"routine {rid!r} is a plain Routine configured after construction (set_logic, "
            "add_slot...), which cannot be rebuilt from data. Define a Routine subclass whose "
            "__init__ (no arguments) declares its slots, events and logic; it registers itself "
            "as 'module:QualName', and per-instance values go in set_config",
        )
        return None
    try:
        registered = types.routines.get(cls.type_name)
    except UnknownTypeError as exc:
        add("routine.unknown_type", str(exc))
        return None
    if registered is not cls:
        add(
            "routine.type_mismatch",
            f"routine {rid!r}: type name {cls.type_name!r} is registered for "
            f"{registered.__module__}.{registered.__qualname__}, not for "
            f"{cls.__module__}.{cls.__qualname__}; give the class its own type_name",
        )
        return None
    try:
        fresh = cls()
    except Exception as exc:
        add(
            "routine.constructor",
            f"routine {rid!r}: {cls.__qualname__}() raised {type(exc).__name__}: {exc}; a "
            "routine class must be constructible without arguments to be saved and loaded",
        )
        return None
    what = []
    if _slot_sig(fresh) != _slot_sig(routine):
        what.append("slots")
    if _event_sig(fresh) != _event_sig(routine):
        what.append("events")
    if _logic_key(fresh.logic) != _logic_key(routine.logic):
        what.append("logic")
    if what:
        add(
            "routine.not_serializable",
            f"routine {rid!r}: its {', '.join(what)} differ from what {cls.__qualname__}() "
            "creates, so a loaded copy would behave differently. Declare slots, events and "
            "logic in the class's __init__ (use set_config for per-instance values) instead "
            "of changing them after construction",
        )
        return None
    return fresh


def _config_issue(rid: str, config: Mapping[str, Any]) -> ValidationIssue | None:
    from .serialization import find_unserializable

    found = find_unserializable(dict(config))
    if found is None:
        return None
    where, bad = found
    if isinstance(bad, Mapping | list | tuple):
        message = f"config is nested deeper than {MAX_DEPTH} levels"
    else:
        message = (
            f"config value of type {type(bad).__name__} cannot be written as JSON; config "
            "must hold JSON values (str, finite number, bool, None, list, dict)"
        )
    return ValidationIssue(
        severity="error",
        code="routine.config",
        message=message,
        path=f"{key_path('routines', rid)}.config.{where}",
    )


def flow_to_dict(flow: Flow, types: TypeRegistry | None = None) -> dict[str, Any]:
    """The flow as a JSON/YAML-ready document (see ``docs/serialization.md``).

    Raises:
        SerializationError: listing every routine, policy or handler that cannot be written
            (``.issues``), such as a plain ``Routine`` configured with ``set_logic``.
    """
    types = types or default_types()
    conv = converter_for(types)
    issues: list[ValidationIssue] = []

    def unstructure(value: Any, path: str, as_: type) -> Any:
        try:
            return conv.unstructure(value, unstructure_as=as_)
        except SerializationError as exc:
            issues.append(
                ValidationIssue(severity="error", code="serialize", message=str(exc), path=path)
            )
            return None

    routines: dict[str, Any] = {}
    for rid, r in flow.routines.items():
        path = key_path("routines", rid)
        fresh = _check_rebuildable(rid, r, types, issues)
        spec: dict[str, Any] = {"type": type(r).type_name}
        if r.config:
            bad = _config_issue(rid, r.config)
            if bad is not None:
                issues.append(bad)
            spec["config"] = json.loads(json.dumps(dict(r.config))) if bad is None else None
        policy = r.activation_policy
        if policy is not None or (fresh is not None and fresh.activation_policy is not None):
            from .activation_policies import immediate_policy

            spec["policy"] = unstructure(
                policy or immediate_policy(), f"{path}.policy", ActivationPolicy
            )
        if r.error_handler is not None:
            spec["error_handler"] = unstructure(
                r.error_handler, f"{path}.error_handler", ErrorHandler
            )
        elif fresh is not None and fresh.error_handler is not None:
            spec["error_handler"] = None
        if r.max_concurrency != 1 or (fresh is not None and fresh.max_concurrency != 1):
            spec["max_concurrency"] = r.max_concurrency
        routines[rid] = spec
    doc: dict[str, Any] = {"format_version": FLOW_FORMAT_VERSION, "flow_id": flow.flow_id}
    if flow.execution_timeout is not None:
        doc["execution_timeout"] = flow.execution_timeout
    if flow.error_handler is not None:
        doc["error_handler"] = unstructure(flow.error_handler, "error_handler", ErrorHandler)
    doc["routines"] = routines
    doc["connections"] = [
        {"source": c.source_id, "event": c.event, "target": c.target_id, "slot": c.slot}
        for c in flow.connections
    ]
    if flow.entry is not None:
        doc["entry"] = {"routine": flow.entry.routine_id, "slot": flow.entry.slot}
    if issues:
        lines = "\n".join(f"  - {i}" for i in issues)
        raise SerializationError(
            f"flow {flow.flow_id!r} cannot be serialized ({len(issues)} problem(s)):\n{lines}",
            path=issues[0].path,
            routine_id=issues[0].path.split(".")[1] if issues[0].path.count(".") else None,
            issues=issues,
        )
    return doc


# -- reading ---------------------------------------------------------------------------------


class _Checker:
    """Walks a flow document, collecting every problem with its path, and builds the flow."""

    def __init__(self, types: TypeRegistry) -> None:
        self.types = types
        self.conv = converter_for(types)
        self.issues: list[ValidationIssue] = []

    def add(self, path: str, message: str, code: str = "document") -> None:
        self.issues.append(
            ValidationIssue(severity="error", code=code, message=message, path=path or "<root>")
        )

    def mapping(self, value: Any, path: str, what: str) -> Mapping[str, Any] | None:
        if not isinstance(value, Mapping):
            self.add(path, f"{what} must be a mapping, got {_kind(value)}", "document.type")
            return None
        for k in value:
            if not isinstance(k, str):
                self.add(path, f"keys must be strings, got {k!r:.40}", "document.type")
                return None
        return value

    def keys(self, value: Mapping[str, Any], allowed: tuple[str, ...], path: str) -> None:
        for k in value:
            if k not in allowed:
                self.add(
                    key_path(path, k),
                    f"unknown key {k!r}; expected one of: {', '.join(allowed)}",
                    "document.unknown_key",
                )

    def string(self, value: Any, path: str, what: str) -> str | None:
        if not isinstance(value, str) or not value:
            self.add(path, f"{what} must be a non-empty string, got {_kind(value)}",
                     "document.type")
            return None
        return value

    def structure(self, value: Any, as_: type, path: str, code: str) -> Any:
        try:
            return self.conv.structure(value, as_)
        except cattrs.BaseValidationError as exc:
            for line in cattrs.transform_error(exc, path="$", format_exception=format_cattrs_error):
                msg, _, where = line.rpartition(" @ ")
                sub = where[1:] if where.startswith("$") else where
                self.add(path + sub, msg or line, code)
        except UnknownTypeError as exc:
            self.add(path, str(exc), "unknown_type")
        except RoutiluxError as exc:
            self.add(path, str(exc), code)
        except Exception as exc:  # a plugin factory or hook: report, never crash the load
            self.add(path, f"{type(exc).__name__}: {exc}", code)
        return None

    def routine(self, rid: str, spec: Any) -> Routine | None:
        path = key_path("routines", rid)
        body = self.mapping(spec, path, f"routine {rid!r}")
        if body is None:
            return None
        self.keys(body, _ROUTINE_KEYS, path)
        if "type" not in body:
            self.add(f"{path}.type", "required key is missing (a registered routine type name)",
                     "document.missing")
            return None
        type_name = self.string(body["type"], f"{path}.type", "type")
        if type_name is None:
            return None
        try:
            cls = self.types.routines.get(type_name)
        except UnknownTypeError as exc:
            self.add(f"{path}.type", str(exc), "routine.unknown_type")
            return None
        try:
            routine = cls()
        except Exception as exc:
            self.add(f"{path}.type", f"{cls.__qualname__}() raised {type(exc).__name__}: {exc}",
                     "routine.constructor")
            return None
        if "config" in body and body["config"] is not None:
            config = self.mapping(body["config"], f"{path}.config", "config")
            if config is not None:
                bad = _config_issue(rid, config)
                if bad is not None:
                    self.issues.append(bad)
                else:
                    try:
                        routine.set_config(**config)
                    except Exception as exc:  # a routine refusing its config: report it
                        key = getattr(exc, "key", None)
                        where = f"{path}.config" + (f".{key}" if isinstance(key, str) else "")
                        message = str(exc) if isinstance(exc, RoutiluxError) else (
                            f"set_config raised {type(exc).__name__}: {exc}")
                        self.add(where, message, "routine.config")
        if "policy" in body:
            policy = self.structure(body["policy"], ActivationPolicy, f"{path}.policy", "policy")
            if policy is not None:
                routine.set_activation_policy(policy)
        if "error_handler" in body:
            handler = None
            if body["error_handler"] is not None:
                handler = self.structure(
                    body["error_handler"], ErrorHandler, f"{path}.error_handler", "error_handler"
                )
            routine.set_error_handler(handler)
        if "max_concurrency" in body:
            n = body["max_concurrency"]
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                self.add(f"{path}.max_concurrency", f"must be an integer >= 1, got {n!r:.40}",
                         "document.type")
            else:
                routine.set_max_concurrency(n)
        if "description" in body and not isinstance(body["description"], str):
            self.add(f"{path}.description", "must be a string", "document.type")
        return routine

    def connection(self, i: int, item: Any, flow: Flow, failed: set[str]) -> None:
        path = f"connections[{i}]"
        if isinstance(item, str):
            m = _ARROW.match(item)
            if m is None:
                self.add(path, f"{item!r:.60} is not 'source.event -> target.slot'",
                         "connection.syntax")
                return
            item = dict(zip(_CONNECTION_KEYS, m.groups(), strict=True))
        body = self.mapping(item, path, "a connection")
        if body is None:
            return
        self.keys(body, _CONNECTION_KEYS, path)
        parts = {}
        for k in _CONNECTION_KEYS:
            if k not in body:
                self.add(f"{path}.{k}", "required key is missing", "document.missing")
            else:
                parts[k] = self.string(body[k], f"{path}.{k}", k)
        if len(parts) != 4 or None in parts.values():
            return
        source, event, target, slot = (parts[k] for k in _CONNECTION_KEYS)
        if source in failed or target in failed:
            return  # the routine's own problem is reported already
        routines = flow.routines
        ok = True
        for key, rid in (("source", source), ("target", target)):
            if rid not in routines:
                known = ", ".join(routines) or "none"
                self.add(f"{path}.{key}", f"no routine {rid!r} in this flow (routines: {known})",
                         "connection.unknown_routine")
                ok = False
        if not ok:
            return
        assert source is not None and target is not None and event is not None
        assert slot is not None
        if event not in routines[source].events:
            known = ", ".join(routines[source].events) or "none"
            self.add(f"{path}.event", f"routine {source!r} has no event {event!r} (events: "
                     f"{known})", "connection.unknown_event")
            ok = False
        if slot not in routines[target].slots:
            known = ", ".join(routines[target].slots) or "none"
            self.add(f"{path}.slot", f"routine {target!r} has no slot {slot!r} (slots: {known})",
                     "connection.unknown_slot")
            ok = False
        if ok:
            try:
                flow.connect(source, event, target, slot)
            except ConfigurationError as exc:
                self.add(path, str(exc), "connection.duplicate")

    def entry(self, value: Any, flow: Flow, failed: set[str]) -> None:
        body = self.mapping(value, "entry", "entry")
        if body is None:
            return
        self.keys(body, _ENTRY_KEYS, "entry")
        rid = self.string(body.get("routine"), "entry.routine", "entry routine")
        slot = self.string(body.get("slot"), "entry.slot", "entry slot")
        if rid is None or slot is None or rid in failed:
            return
        if rid not in flow.routines:
            known = ", ".join(flow.routines) or "none"
            self.add("entry.routine", f"no routine {rid!r} in this flow (routines: {known})",
                     "entry.unknown_routine")
        elif slot not in flow.routines[rid].slots:
            known = ", ".join(flow.routines[rid].slots) or "none"
            self.add("entry.slot", f"routine {rid!r} has no slot {slot!r} (slots: {known})",
                     "entry.unknown_slot")
        else:
            flow.set_entry(rid, slot)

    def flow(self, data: Any) -> Flow | None:
        doc = self.mapping(data, "", "a flow document")
        if doc is None:
            return None
        doc = self.migrate(doc)
        if doc is None:
            return None
        self.keys(doc, _TOP_KEYS, "")
        flow_id = None
        if "flow_id" not in doc:
            self.add("flow_id", "required key is missing", "document.missing")
        else:
            flow_id = self.string(doc["flow_id"], "flow_id", "flow_id")
        timeout = doc.get("execution_timeout")
        if timeout is not None and (
            not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0
        ):
            self.add("execution_timeout", f"must be a number of seconds > 0, got {timeout!r:.40}",
                     "document.type")
            timeout = None
        handler = None
        if doc.get("error_handler") is not None:
            handler = self.structure(doc["error_handler"], ErrorHandler, "error_handler",
                                     "error_handler")
        flow = Flow(flow_id or "invalid", execution_timeout=timeout, error_handler=handler)
        failed: set[str] = set()
        if "routines" not in doc:
            self.add("routines", "required key is missing", "document.missing")
        else:
            routines = self.mapping(doc["routines"], "routines", "routines")
            if routines is not None:
                for rid, spec in routines.items():
                    if not rid:
                        self.add("routines", "routine ids must be non-empty", "document.type")
                        continue
                    routine = self.routine(rid, spec)
                    if routine is None:
                        failed.add(rid)
                    else:
                        flow.add_routine(routine, rid)
        connections = doc.get("connections", [])
        if connections is None:
            connections = []
        if not isinstance(connections, list):
            self.add("connections", f"must be a list, got {_kind(connections)}", "document.type")
        else:
            for i, item in enumerate(connections):
                self.connection(i, item, flow, failed)
        if doc.get("entry") is not None:
            self.entry(doc["entry"], flow, failed)
        if "description" in doc and not isinstance(doc["description"], str):
            self.add("description", "must be a string", "document.type")
        return flow

    def migrate(self, doc: Mapping[str, Any]) -> Mapping[str, Any] | None:
        version = doc.get("format_version", FLOW_FORMAT_VERSION)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            self.add("format_version", f"must be an integer >= 1, got {version!r:.40}",
                     "document.version")
            return None
        if version > FLOW_FORMAT_VERSION:
            self.add("format_version", f"version {version} is newer than this routilux "
                     f"understands ({FLOW_FORMAT_VERSION}); upgrade routilux",
                     "document.version")
            return None
        body = dict(doc)
        while version < FLOW_FORMAT_VERSION:
            step = _FLOW_MIGRATIONS.get(version)
            if step is None:
                self.add("format_version", f"no migration from flow format {version}",
                         "document.version")
                return None
            body = step(body)
            version += 1
            body["format_version"] = version
        return body


def _kind(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
             int: "an integer", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def validate_flow_document(
    data: Any, types: TypeRegistry | None = None, *, include_flow_checks: bool = True
) -> list[ValidationIssue]:
    """Every problem of a flow document, each with its path; empty when it loads and runs.

    Document problems (unknown keys and type names, bad parameters, connections to routines,
    events or slots that do not exist) are ``severity="error"``. With ``include_flow_checks``
    the loaded flow's own :meth:`~routilux.flow.Flow.validate` errors and warnings (such as an
    entry ``exec`` cannot decide) are added when the document itself is sound.
    """
    checker = _Checker(types or default_types())
    flow = checker.flow(data)
    issues = checker.issues
    if not issues and flow is not None and include_flow_checks:
        issues.extend(i for i in flow.validate().issues if i.severity != "info")
    return issues


def flow_from_dict(data: Any, types: TypeRegistry | None = None) -> Flow:
    """Build a :class:`Flow` from a flow document.

    Raises:
        FlowValidationError: listing every problem with its path (``.issues``).
    """
    checker = _Checker(types or default_types())
    flow = checker.flow(data)
    if checker.issues or flow is None:
        flow_id = data.get("flow_id") if isinstance(data, Mapping) else None
        flow_id = flow_id if isinstance(flow_id, str) else "<unknown>"
        lines = "\n".join(f"  - {i}" for i in checker.issues)
        raise FlowValidationError(
            f"flow document {flow_id!r} has {len(checker.issues)} problem(s):\n{lines}",
            flow_id=flow_id,
            issues=checker.issues,
        )
    return flow


# -- text formats ----------------------------------------------------------------------------


def flow_to_json(flow: Flow, types: TypeRegistry | None = None, **kwargs: Any) -> str:
    kwargs.setdefault("indent", 2)
    return json.dumps(flow_to_dict(flow, types), allow_nan=False, **kwargs)


def flow_from_json(text: str | bytes, types: TypeRegistry | None = None) -> Flow:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise SerializationError(f"flow document is not valid JSON: {exc}") from None
    return flow_from_dict(data, types)


def _yaml() -> Any:
    try:
        import yaml  # type: ignore[import-untyped, unused-ignore]
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigurationError(
            "YAML flow files need PyYAML; install it with: pip install 'routilux[yaml]'"
        ) from None
    return yaml


def flow_to_yaml(flow: Flow, types: TypeRegistry | None = None) -> str:
    yaml = _yaml()
    doc = flow_to_dict(flow, types)
    text: str = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    if yaml.safe_load(text) != doc:
        # PyYAML writes some characters (such as U+0085) raw that it then reads back
        # differently; escaping everything non-ASCII is always exact.
        text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=False)
    return text


def flow_from_yaml(text: str | bytes, types: TypeRegistry | None = None) -> Flow:
    yaml = _yaml()
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        raise SerializationError(f"flow document is not valid YAML: {exc}") from None
    return flow_from_dict(data, types)
