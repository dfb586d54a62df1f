"""Named transforms and conditions: how configuration refers to code without ``eval``.

A flow file can only *name* a function; the function itself is registered here by the code
that owns it. ``DataTransformer`` looks transforms up by name, ``Filter`` and
``ConditionalRouter`` look conditions up by name (besides JMESPath expressions, which are data,
not code). Unknown names raise ``UnknownTypeError`` listing what is registered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from routilux.errors import ConfigurationError
from routilux.registry import NamedRegistry

__all__ = [
    "Condition",
    "Transform",
    "conditions",
    "register_condition",
    "register_transform",
    "transforms",
]

Transform = Callable[..., Any]
"""``transform(value, **params) -> new value``; raise to signal a value it cannot convert."""

Condition = Callable[[dict[str, Any]], Any]
"""``condition(payload) -> truthy or falsy``."""

transforms: NamedRegistry[Transform] = NamedRegistry("builtins transform")
"""Transforms available to ``DataTransformer`` by name."""

conditions: NamedRegistry[Condition] = NamedRegistry("builtins condition")
"""Conditions available to ``Filter`` and ``ConditionalRouter`` by name."""


def register_transform(name: str, fn: Transform, *, replace: bool = False) -> Transform:
    """Make ``fn(value, **params)`` usable as ``{"field": name}`` in a ``DataTransformer``.

    Register before configuring routines that use it (configuration checks names at once).
    Returns ``fn``. A different function under a taken name raises ``ConfigurationError``
    unless ``replace`` is True.
    """
    if not callable(fn):
        raise ConfigurationError(f"register_transform needs a callable, got {fn!r}")
    transforms.register(name, fn, replace=replace)
    return fn


def register_condition(name: str, fn: Condition, *, replace: bool = False) -> Condition:
    """Make ``fn(payload)`` usable as ``{"condition": name}`` in ``Filter`` and
    ``ConditionalRouter``. Returns ``fn``."""
    if not callable(fn):
        raise ConfigurationError(f"register_condition needs a callable, got {fn!r}")
    conditions.register(name, fn, replace=replace)
    return fn


# -- the transforms every install has -----------------------------------------------------


def _round(value: Any, ndigits: int = 0) -> Any:
    result = round(value, ndigits)
    return int(result) if ndigits == 0 else result


def _default(value: Any, value_if_none: Any = None) -> Any:
    return value_if_none if value is None else value


def _replace(value: str, old: str, new: str, count: int = -1) -> str:
    return value.replace(old, new, count)


def _split(value: str, sep: str | None = None, maxsplit: int = -1) -> list[str]:
    return value.split(sep, maxsplit)


def _join(value: list[Any], sep: str = "") -> str:
    return sep.join(str(v) for v in value)


def _int(value: Any, base: int = 10) -> int:
    if isinstance(value, str):
        return int(value.strip(), base)
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{value!r} is not a whole number; apply 'round' first")
    return int(value)


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        text = value.strip().lower()
        if text in {"true", "yes", "1", "on"}:
            return True
        if text in {"false", "no", "0", "off", ""}:
            return False
        raise ValueError(f"{value!r} is not a boolean word (true/false, yes/no, 1/0, on/off)")
    return bool(value)


_BUILTIN_TRANSFORMS: dict[str, Transform] = {
    "lower": str.lower,
    "upper": str.upper,
    "strip": lambda value, chars=None: value.strip(chars),
    "title": str.title,
    "str": str,
    "int": _int,
    "float": float,
    "bool": _bool,
    "abs": abs,
    "round": _round,
    "default": _default,
    "replace": _replace,
    "split": _split,
    "join": _join,
}

for _name, _fn in _BUILTIN_TRANSFORMS.items():
    transforms.register(_name, _fn)
    transforms.note_provider(_name, "routilux-builtins")
