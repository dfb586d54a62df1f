"""The cattrs converter built from a :class:`~routilux.registry.TypeRegistry`.

Polymorphic values are written with their registered name and read back by looking that
name up in the registry: activation policies as ``{"name", "params"}``, error handlers as
their fields (plus ``"type"`` when not the core ``ErrorHandler``), retryable exceptions by
registered exception name. Primitive hooks are strict (no ``"3"`` for an int, no ``true``
for a number) because flow files are written by hand.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from typing import Any

import attrs
import cattrs
from cattrs.errors import ForbiddenExtraKeysError
from cattrs.gen import make_dict_structure_fn

from .activation_policies import ActivationPolicy, CustomPolicy
from .error_handling import ErrorHandler, ErrorStrategy
from .errors import ConfigurationError, SerializationError, UnknownTypeError
from .registry import TypeRegistry

__all__ = ["converter_for", "format_cattrs_error"]

ExceptionTypes = tuple[type[BaseException], ...]
DEFAULT_HANDLER_TYPE = "error_handler"


def _policy_from_plugins(name: str, params: dict[str, Any]) -> Any:
    """The policy a plugin's ``routilux_activation_policy`` hook builds for ``name``, or None."""
    from .plugins import get_plugin_manager

    return get_plugin_manager().hook.routilux_activation_policy(name=name, params=params)


def _strategy_from_plugins(name: str) -> bool:
    """True when a plugin's ``routilux_error_strategy`` hook provides the strategy ``name``."""
    from .plugins import get_plugin_manager

    return get_plugin_manager().hook.routilux_error_strategy(name=name) is not None


def _is_policy(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, ActivationPolicy)


def _is_handler(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, ErrorHandler)


def _strict_int(value: Any, _: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {value!r:.60}")
    return value


def _strict_float(value: Any, _: Any) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"expected a number, got {value!r:.60}")
    return float(value)


def _strict_bool(value: Any, _: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r:.60}")
    return value


def _strict_str(value: Any, _: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r:.60}")
    return value


def _strategy(value: Any, _: Any) -> ErrorStrategy:
    if not isinstance(value, str):
        raise TypeError(f"expected a strategy name, got {value!r:.60}")
    try:
        return ErrorStrategy(value.lower())
    except ValueError:
        known = ", ".join(s.value for s in ErrorStrategy)
        raise ValueError(f"unknown error strategy {value!r}; use one of: {known}") from None


def format_cattrs_error(exc: BaseException, _type: Any) -> str:
    """One-line message for an error cattrs collected (used with ``transform_error``)."""
    if isinstance(exc, ForbiddenExtraKeysError):
        return f"unknown key(s): {', '.join(sorted(exc.extra_fields))}"
    if isinstance(exc, KeyError):
        return "required key is missing"
    return str(exc) or type(exc).__name__


def _build(types: TypeRegistry) -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(int, _strict_int)
    conv.register_structure_hook(float, _strict_float)
    conv.register_structure_hook(bool, _strict_bool)
    conv.register_structure_hook(str, _strict_str)
    conv.register_structure_hook(ErrorStrategy, _strategy)
    conv.register_unstructure_hook(ErrorStrategy, lambda s: s.value)

    def structure_strategy_ref(value: Any, _: Any) -> ErrorStrategy | str:
        if not isinstance(value, str):
            raise TypeError(f"expected a strategy name, got {value!r:.60}")
        try:
            return ErrorStrategy(value.lower())
        except ValueError:
            pass
        if value not in types.error_strategies and not _strategy_from_plugins(value):
            known = ", ".join(
                [s.value for s in ErrorStrategy] + types.error_strategies.names()
            )
            raise UnknownTypeError(
                f"unknown error strategy {value!r}; use one of: {known} (custom strategies "
                "come from installed plugins)",
                type_name=value,
            )
        return value

    is_strategy_ref = lambda t: t == (ErrorStrategy | str)  # noqa: E731
    conv.register_structure_hook_func(is_strategy_ref, structure_strategy_ref)
    conv.register_unstructure_hook_func(
        is_strategy_ref, lambda v: v.value if isinstance(v, ErrorStrategy) else v
    )

    # -- exception types by registered name -------------------------------------------------

    def unstructure_exceptions(value: ExceptionTypes) -> list[str]:
        names = []
        for exc in value:
            name = types.exceptions.name_of(exc)
            if name is None:
                raise SerializationError(
                    f"exception class {exc.__module__}.{exc.__qualname__} is not registered; "
                    "call routilux.register_exception_type(name, cls) so handlers naming it "
                    "can be saved"
                )
            names.append(name)
        return names

    def structure_exceptions(value: Any, _: Any) -> ExceptionTypes:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise TypeError(f"expected a list of exception names, got {value!r:.60}")
        out = []
        for item in value:
            if not isinstance(item, str):
                raise TypeError(f"expected an exception name, got {item!r:.60}")
            out.append(types.exceptions.get(item))
        return tuple(out)

    is_exc_types = lambda t: t == ExceptionTypes  # noqa: E731
    conv.register_unstructure_hook_func(is_exc_types, unstructure_exceptions)
    conv.register_structure_hook_func(is_exc_types, structure_exceptions)

    # -- error handlers ----------------------------------------------------------------------

    structure_fns: dict[type, Any] = {}

    def unstructure_handler(handler: ErrorHandler) -> dict[str, Any]:
        cls = type(handler)
        name = types.error_handlers.name_of(cls)
        if name is None:
            raise SerializationError(
                f"error handler class {cls.__qualname__} is not registered; register it in "
                "the type registry's error_handlers"
            )
        out: dict[str, Any] = {} if name == DEFAULT_HANDLER_TYPE else {"type": name}
        attrs.resolve_types(cls)
        for field in attrs.fields(cls):
            value = getattr(handler, field.name)
            default = field.default
            if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                default = attrs.NOTHING
            if field.name != "strategy" and value == default:
                continue
            out[field.name] = conv.unstructure(value, unstructure_as=field.type)
        return out

    def structure_handler(value: Any, _: Any) -> ErrorHandler:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a mapping of error handler fields, got {value!r:.60}")
        body = dict(value)
        name = body.pop("type", DEFAULT_HANDLER_TYPE)
        if not isinstance(name, str):
            raise TypeError(f"error handler 'type' must be a string, got {name!r:.60}")
        cls = types.error_handlers.get(name)
        fn = structure_fns.get(cls)
        if fn is None:
            attrs.resolve_types(cls)
            fn = structure_fns[cls] = make_dict_structure_fn(cls, conv)
        result: ErrorHandler = fn(body, cls)
        return result

    conv.register_unstructure_hook_func(_is_handler, unstructure_handler)
    conv.register_structure_hook_func(_is_handler, structure_handler)

    # -- activation policies -----------------------------------------------------------------

    def unstructure_policy(policy: ActivationPolicy) -> dict[str, Any]:
        name = policy.name
        if name not in types.policies and _policy_from_plugins(name, policy.params()) is None:
            raise SerializationError(
                f"activation policy {name!r} ({type(policy).__qualname__}) is not registered; "
                "register it with routilux.register_policy_type"
            )
        if isinstance(policy, CustomPolicy):
            pname = str(policy.predicate_name)
            registered = types.predicates._items.get(pname)
            if registered is not policy.predicate:
                why = (
                    "is not registered"
                    if registered is None
                    else "is registered for a different function"
                )
                raise SerializationError(
                    f"custom policy predicate {pname!r} {why}; call "
                    f"routilux.register_predicate({pname!r}, fn) and build the policy with "
                    f"custom_policy(fn, name={pname!r}) so the flow can be saved"
                )
        params = policy.params()
        return {"name": name, "params": params} if params else {"name": name}

    def structure_policy(value: Any, _: Any) -> ActivationPolicy:
        if isinstance(value, str):
            value = {"name": value}
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a policy name or {{name, params}}, got {value!r:.60}")
        extra = set(value) - {"name", "params"}
        if extra:
            raise ForbiddenExtraKeysError("", ActivationPolicy, extra)
        name = value.get("name")
        if not isinstance(name, str):
            raise TypeError(f"policy 'name' must be a string, got {name!r:.60}")
        params = value.get("params") or {}
        if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
            raise TypeError(f"policy 'params' must be a mapping, got {params!r:.60}")
        try:
            if name in types.policies:
                policy = types.policies.get(name)(dict(params))
            else:  # not registered: a plugin's routilux_activation_policy hook may build it
                policy = _policy_from_plugins(name, dict(params))
                if policy is None:
                    types.policies.get(name)  # raises UnknownTypeError naming the known ones
        except (UnknownTypeError, ConfigurationError):
            raise
        except TypeError as exc:
            raise ConfigurationError(f"bad parameters for policy {name!r}: {exc}") from None
        if not isinstance(policy, ActivationPolicy):
            raise ConfigurationError(
                f"the factory registered for policy {name!r} returned {policy!r:.60}, "
                "not an ActivationPolicy"
            )
        return policy

    conv.register_unstructure_hook_func(_is_policy, unstructure_policy)
    conv.register_structure_hook_func(_is_policy, structure_policy)
    return conv


_cache_lock = threading.Lock()
_cache: weakref.WeakKeyDictionary[TypeRegistry, tuple[tuple[int, ...], cattrs.Converter]] = (
    weakref.WeakKeyDictionary()
)


def converter_for(types: TypeRegistry) -> cattrs.Converter:
    """The converter of ``types`` (rebuilt when something new was registered)."""
    with _cache_lock:
        hit = _cache.get(types)
        version = types.version
        if hit is None or hit[0] != version:
            hit = (version, _build(types))
            _cache[types] = hit
        return hit[1]
