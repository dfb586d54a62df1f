"""Data routines: reshape, filter, convert, validate and split payloads.

Every routine here is stateless per job (nothing is buffered): it handles each payload as it
arrives and emits at once, so the only buffer is the bounded slot queue in front of it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from jsonschema import validators
from jsonschema.exceptions import SchemaError
from routilux.errors import UnknownTypeError

from ._base import BuiltinRoutine, build_test
from .errors import PayloadError
from .registries import transforms

__all__ = ["DataTransformer", "Filter", "Mapper", "SchemaValidator", "Splitter"]

Payload = dict[str, Any]
SlotData = dict[str, list[Payload]]


class Mapper(BuiltinRoutine):
    """Build a new payload whose fields are JMESPath expressions over the input payload.

    Slots: ``input``. Events: ``output`` (the mapped payload).

    Config:
        fields (required): ``{"out_key": "jmespath expression"}``.
        keep_input (False): start from a copy of the input payload, then set the mapped fields.
        drop_missing (False): leave out fields whose expression found nothing (``null``).
    """

    type_name = "builtins.Mapper"
    CONFIG_DEFAULTS = MappingProxyType({"fields": None, "keep_input": False, "drop_missing": False})
    REQUIRED = frozenset({"fields"})

    def _declare(self) -> None:
        self.add_slot("input")
        self.add_event("output")
        self._compiled: tuple[tuple[str, Any], ...] = ()
        self._set_logic_checked(self._run)

    def _check_config(self, config: Mapping[str, Any]) -> None:
        fields = config["fields"]
        if fields is not None:
            if not isinstance(fields, Mapping) or not fields:
                self._bad("fields", "must be a non-empty mapping of output key to JMESPath "
                          f"expression, got {fields!r}")
            for out, expr in fields.items():
                if not isinstance(out, str) or not out:
                    self._bad("fields", f"has an output key {out!r}; use non-empty strings")
                self._compile(f"fields.{out}", expr)
        for key in ("keep_input", "drop_missing"):
            if not isinstance(config[key], bool):
                self._bad(key, f"must be true or false, got {config[key]!r}")

    def _apply_config(self, config: Mapping[str, Any]) -> None:
        fields = config["fields"] or {}
        self._compiled = tuple(
            (out, self._compile(f"fields.{out}", expr)) for out, expr in fields.items()
        )

    def _run(self, slot_data: SlotData, policy_message: Any, job_state: Any) -> None:
        keep = self.get_config("keep_input")
        drop = self.get_config("drop_missing")
        compiled = self._compiled
        for payload in slot_data["input"]:
            out: Payload = dict(payload) if keep else {}
            for key, expr in compiled:
                value = expr.search(payload)
                if value is None and drop:
                    continue
                out[key] = value
            self.emit("output", **out)


class Filter(BuiltinRoutine):
    """Split payloads into those a condition accepts and those it rejects.

    The condition is a JMESPath expression (``when``), true unless it yields ``null``,
    ``false``, ``""``, ``[]`` or ``{}`` (JMESPath truthiness: ``0`` is true), or the name of a
    function registered with :func:`~routilux_builtins.register_condition` (``condition``).

    Slots: ``input``. Events: ``passed`` and ``rejected`` (the payload unchanged).

    Config:
        when: JMESPath expression. condition: registered condition name. Exactly one is
            required.
    """

    type_name = "builtins.Filter"
    CONFIG_DEFAULTS = MappingProxyType({"when": None, "condition": None})

    def _declare(self) -> None:
        self.add_slot("input")
        self.add_event("passed")
        self.add_event("rejected")
        self._test: Callable[[Payload], bool] | None = None
        self._set_logic_checked(self._run)

    def validate_config(self) -> None:
        config = self.config
        if config["when"] is None and config["condition"] is None:
            self._bad("when", "is required (or 'condition'); call set_config(when=...)")
        super().validate_config()

    def _ensure_ready(self) -> None:
        if self._test is None:
            self.validate_config()

    def _check_config(self, config: Mapping[str, Any]) -> None:
        if config["when"] is not None or config["condition"] is not None:
            build_test(self, "when", config["when"], config["condition"])

    def _apply_config(self, config: Mapping[str, Any]) -> None:
        if config["when"] is not None or config["condition"] is not None:
            self._test = build_test(self, "when", config["when"], config["condition"])

    def _run(self, slot_data: SlotData, policy_message: Any, job_state: Any) -> None:
        test = self._test
        assert test is not None
        for payload in slot_data["input"]:
            self.emit("passed" if test(payload) else "rejected", **payload)


def _transform_steps(spec: Any) -> list[tuple[str, dict[str, Any]]]:
    items = spec if isinstance(spec, list) else [spec]
    steps = []
    for item in items:
        if isinstance(item, str):
            steps.append((item, {}))
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
            params = {k: v for k, v in item.items() if k != "name"}
            steps.append((item["name"], params))
        else:
            raise TypeError(f"{item!r} is neither a transform name nor {{'name': ..., params}}")
    return steps


class DataTransformer(BuiltinRoutine):
    """Convert payload fields with named transforms (never ``eval``).

    Built in: ``lower``, ``upper``, ``strip`` (``chars``), ``title``, ``str``, ``int``
    (``base``), ``float``, ``bool``, ``abs``, ``round`` (``ndigits``), ``default``
    (``value_if_none``), ``replace`` (``old``, ``new``, ``count``), ``split`` (``sep``,
    ``maxsplit``), ``join`` (``sep``). Add more with
    :func:`~routilux_builtins.register_transform`.

    Slots: ``input``. Events: ``output`` (a new payload with the converted fields) and
    ``failed`` (``payload``, ``field``, ``error``; only with ``on_error="emit"``).

    Config:
        transforms (required): ``{"field": step}`` where a step is a name, ``{"name": ...,
            **params}``, or a list of steps applied in order.
        on_missing ("skip"): a field absent from the payload is left out (``"skip"``) or
            raises ``PayloadError`` (``"error"``).
        on_error ("raise"): a transform that fails raises ``PayloadError`` (the routine's
            error handler decides), or the payload goes to ``failed`` (``"emit"``).
    """

    type_name = "builtins.DataTransformer"
    CONFIG_DEFAULTS = MappingProxyType(
        {"transforms": None, "on_missing": "skip", "on_error": "raise"}
    )
    REQUIRED = frozenset({"transforms"})

    def _declare(self) -> None:
        self.add_slot("input")
        self.add_event("output")
        self.add_event("failed", ["payload", "field", "error"])
        self._plan: tuple[tuple[str, tuple[tuple[str, Callable[..., Any], dict[str, Any]], ...]],
                          ...] = ()
        self._set_logic_checked(self._run)

    def _check_config(self, config: Mapping[str, Any]) -> None:
        self._check_choice(config, "on_missing", ("skip", "error"))
        self._check_choice(config, "on_error", ("raise", "emit"))
        if config["transforms"] is not None:
            self._build_plan(config["transforms"])

    def _apply_config(self, config: Mapping[str, Any]) -> None:
        if config["transforms"] is not None:
            self._plan = self._build_plan(config["transforms"])

    def _build_plan(self, spec: Any) -> tuple[Any, ...]:
        if not isinstance(spec, Mapping) or not spec:
            self._bad("transforms", "must be a non-empty mapping of field to transform(s), "
                      f"got {spec!r}")
        plan = []
        for field, steps_spec in spec.items():
            key = f"transforms.{field}"
            try:
                steps = _transform_steps(steps_spec)
            except TypeError as exc:
                self._bad(key, f"is not a valid transform step: {exc}")
            if not steps:
                self._bad(key, "lists no transforms")
            resolved = []
            for name, params in steps:
                try:
                    fn = transforms.get(name)
                except UnknownTypeError as exc:
                    self._bad(key, f"{exc}; register it with routilux_builtins."
                              "register_transform(name, fn) before configuring")
                try:
                    inspect.signature(fn).bind(None, **params)
                except TypeError as exc:
                    self._bad(key, f"gives transform {name!r} bad parameters: {exc}")
                except ValueError:  # a builtin without a signature: accepts only the value
                    if params:
                        self._bad(key, f"gives parameters to transform {name!r}, which takes "
                                  "none")
                resolved.append((name, fn, params))
            plan.append((field, tuple(resolved)))
        return tuple(plan)

    def _run(self, slot_data: SlotData, policy_message: Any, job_state: Any) -> None:
        plan = self._plan
        missing_is_error = self.get_config("on_missing") == "error"
        emit_errors = self.get_config("on_error") == "emit"
        for payload in slot_data["input"]:
            out = dict(payload)
            failed = False
            for field, steps in plan:
                if field not in out:
                    if missing_is_error:
                        raise PayloadError(
                            f"{self.type_name}: payload has no field {field!r} to transform "
                            f"(fields: {', '.join(map(str, payload)) or 'none'}); set "
                            "on_missing='skip' to let such payloads through",
                            routine_type=self.type_name, field=field,
                        )
                    continue
                value = out[field]
                for name, fn, params in steps:
                    try:
                        value = fn(value, **params)
                    except Exception as exc:
                        text = f"transform {name!r} failed on {value!r:.60}: " \
                               f"{type(exc).__name__}: {exc}"
                        if not emit_errors:
                            raise PayloadError(
                                f"{self.type_name} field {field!r}: {text}",
                                routine_type=self.type_name, field=field,
                            ) from exc
                        self.emit("failed", payload=payload, field=field, error=text)
                        failed = True
                        break
                if failed:
                    break
                out[field] = value
            if not failed:
                self.emit("output", **out)


class SchemaValidator(BuiltinRoutine):
    """Check each payload against a JSON Schema (any draft ``jsonschema`` knows; the
    ``$schema`` keyword picks it, the latest draft otherwise).

    Slots: ``input``. Events: ``valid`` (the payload unchanged) and ``invalid`` (``payload``
    and ``errors``: a list of ``{"message", "path", "location", "validator"}`` with ``path``
    like ``$.items[0].name``, ``location`` its parts, at most ``max_errors`` of them).

    Config:
        schema (required): the JSON Schema (a dict); checked when set.
        max_errors (20): errors reported per payload.
    """

    type_name = "builtins.SchemaValidator"
    CONFIG_DEFAULTS = MappingProxyType({"schema": None, "max_errors": 20})
    REQUIRED = frozenset({"schema"})

    def _declare(self) -> None:
        self.add_slot("input")
        self.add_event("valid")
        self.add_event("invalid", ["payload", "errors"])
        self._validator: Any = None
        self._set_logic_checked(self._run)

    def _check_config(self, config: Mapping[str, Any]) -> None:
        self._check_int(config, "max_errors")
        schema = config["schema"]
        if schema is None:
            return
        if not isinstance(schema, Mapping):
            self._bad("schema", f"must be a JSON Schema object (a dict), got {schema!r:.60}")
        cls = validators.validator_for(schema)
        try:
            cls.check_schema(schema)
        except SchemaError as exc:
            where = exc.json_path if exc.path else "$"
            self._bad("schema", f"is not a valid JSON Schema at {where}: {exc.message}")

    def _apply_config(self, config: Mapping[str, Any]) -> None:
        schema = config["schema"]
        if schema is not None:
            self._validator = validators.validator_for(schema)(schema)

    def _run(self, slot_data: SlotData, policy_message: Any, job_state: Any) -> None:
        validator = self._validator
        limit = self.get_config("max_errors")
        for payload in slot_data["input"]:
            errors = []
            for error in validator.iter_errors(payload):
                errors.append({
                    "message": error.message,
                    "path": error.json_path,
                    "location": list(error.absolute_path),
                    "validator": str(error.validator),
                })
                if len(errors) >= limit:
                    break
            if errors:
                self.emit("invalid", payload=payload, errors=errors)
            else:
                self.emit("valid", **payload)


class Splitter(BuiltinRoutine):
    """Emit one payload per element of a list field.

    Slots: ``input``. Events: ``item`` (``{item_key: element, index_key: i, total_key: n}``
    plus the fields named in ``include``) and ``done`` (``count`` plus the ``include``
    fields), after the last item of each input payload.

    Config:
        field ("items"): the list field to split.
        item_key ("item"), index_key ("index"), total_key ("total"; None to leave out).
        include ([]): input fields copied into every item (a parent id, for instance).
        max_items (10000): a longer list raises ``PayloadError`` rather than flooding the
            flow (downstream queues are bounded; raise it deliberately).
    """

    type_name = "builtins.Splitter"
    CONFIG_DEFAULTS = MappingProxyType({
        "field": "items", "item_key": "item", "index_key": "index", "total_key": "total",
        "include": [], "max_items": 10_000,
    })

    def _declare(self) -> None:
        self.add_slot("input")
        self.add_event("item")
        self.add_event("done", ["count"])
        self.set_logic(self._run)

    def _check_config(self, config: Mapping[str, Any]) -> None:
        for key in ("field", "item_key", "index_key"):
            self._check_str(config, key)
        self._check_str(config, "total_key", optional=True)
        self._check_int(config, "max_items")
        include = config["include"]
        if not isinstance(include, list | tuple) or not all(
            isinstance(f, str) for f in include
        ):
            self._bad("include", f"must be a list of field names, got {include!r}")
        keys = [config["item_key"], config["index_key"], config["total_key"]]
        clash = set(keys) & set(include)
        if clash or len({k for k in keys if k}) != len([k for k in keys if k]):
            self._bad("item_key", "item_key, index_key, total_key and include must name "
                      "different fields")

    def _run(self, slot_data: SlotData, policy_message: Any, job_state: Any) -> None:
        field = self.get_config("field")
        item_key = self.get_config("item_key")
        index_key = self.get_config("index_key")
        total_key = self.get_config("total_key")
        include = self.get_config("include")
        limit = self.get_config("max_items")
        for payload in slot_data["input"]:
            items = payload.get(field)
            if not isinstance(items, list | tuple):
                raise PayloadError(
                    f"{self.type_name}: field {field!r} must be a list to split, got "
                    f"{type(items).__name__}; set config 'field' to the list's name",
                    routine_type=self.type_name, field=field,
                )
            if len(items) > limit:
                raise PayloadError(
                    f"{self.type_name}: field {field!r} has {len(items)} items, more than "
                    f"max_items={limit}; raise max_items if that is expected",
                    routine_type=self.type_name, field=field,
                )
            extra = {k: payload[k] for k in include if k in payload}
            total = len(items)
            for i, element in enumerate(items):
                out = {**extra, item_key: element, index_key: i}
                if total_key:
                    out[total_key] = total
                self.emit("item", **out)
            self.emit("done", count=total, **extra)
