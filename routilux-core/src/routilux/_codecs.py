"""Codecs: how payload values JSON cannot hold are written to, and read back from, saved data.

A value with a registered codec is saved as ``{"__routilux_type__": tag, "value": encoded}``.
Dicts that JSON cannot hold as they are (non-string keys, or a key equal to the tag key) are
saved tagged ``"map"`` as a list of ``[key, value]`` pairs, so user data that happens to use
the tag key round-trips unchanged. Decoding looks tags up in the registry only.
"""

from __future__ import annotations

import base64
import math
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import attrs

from .errors import ConfigurationError, SerializationError, UnknownTypeError

__all__ = ["MAX_DEPTH", "TAG_KEY", "VALUE_KEY", "Codec", "CodecRegistry", "key_path"]

TAG_KEY = "__routilux_type__"
"""The key that marks an encoded value in saved data."""

VALUE_KEY = "value"
MAP_TAG = "map"
MAX_DEPTH = 400
"""Deepest nesting of containers a saved value may have (deeper data is refused, not
recursed into)."""

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def key_path(path: str, key: object) -> str:
    """``path`` extended by a mapping key (``a.b`` for identifiers, ``a['x y']`` otherwise)."""
    if isinstance(key, str) and _IDENT.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{key!r}]"


@attrs.frozen(kw_only=True)
class Codec:
    """Encode ``type_`` values into JSON-ready data under ``tag`` and decode them back.

    ``encode(value)`` may return any value the codecs can write (it is encoded again, so a
    tuple codec can return a list of arbitrary items); ``decode`` receives that value already
    decoded.
    """

    type_: type
    tag: str
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


class CodecRegistry:
    """Codecs by value type (for writing) and by tag (for reading)."""

    def __init__(self, *, builtins: bool = True) -> None:
        self._lock = threading.Lock()
        self._by_type: dict[type, Codec] = {}
        self._by_tag: dict[str, Codec] = {}
        self._resolved: dict[type, Codec | None] = {}
        self.version = 0
        if builtins:
            for codec in _BUILTINS:
                self._add(codec, replace=False)

    def register(
        self,
        type_: type,
        encode: Callable[[Any], Any],
        decode: Callable[[Any], Any],
        tag: str,
        *,
        replace: bool = False,
    ) -> None:
        """Register a codec; instances of ``type_`` and of its subclasses use it."""
        if not isinstance(type_, type):
            raise ConfigurationError(f"register_codec needs a type, got {type_!r}")
        if not isinstance(tag, str) or not tag or tag == MAP_TAG:
            raise ConfigurationError(
                f"codec tag must be a non-empty string other than {MAP_TAG!r}, got {tag!r}"
            )
        if not (callable(encode) and callable(decode)):
            raise ConfigurationError("register_codec needs callable encode and decode functions")
        self._add(Codec(type_=type_, tag=tag, encode=encode, decode=decode), replace=replace)

    def _add(self, codec: Codec, *, replace: bool) -> None:
        with self._lock:
            old = self._by_tag.get(codec.tag)
            if old is not None and old.type_ is not codec.type_ and not replace:
                raise ConfigurationError(
                    f"codec tag {codec.tag!r} is already used for {old.type_.__qualname__}; "
                    "choose another tag or pass replace=True"
                )
            if old is not None:
                self._by_type.pop(old.type_, None)
            self._by_type[codec.type_] = codec
            self._by_tag[codec.tag] = codec
            self._resolved.clear()
            self.version += 1

    def for_type(self, cls: type) -> Codec | None:
        """The codec for ``cls`` (its own, or the nearest base class's), or None."""
        try:
            return self._resolved[cls]
        except KeyError:
            pass
        found = None
        for base in cls.__mro__:
            found = self._by_type.get(base)
            if found is not None:
                break
        self._resolved[cls] = found
        return found

    def by_tag(self, tag: str) -> Codec:
        try:
            return self._by_tag[tag]
        except (KeyError, TypeError):
            known = ", ".join(sorted(self._by_tag)) or "none"
            raise UnknownTypeError(
                f"unknown value codec {tag!r}; register one with "
                f"routilux.serialization.register_codec (registered: {known})",
                type_name=str(tag),
            ) from None

    def tags(self) -> list[str]:
        with self._lock:
            return sorted(self._by_tag)

    # -- walking -----------------------------------------------------------------------------

    def encode(self, value: Any, path: str, depth: int = 0) -> Any:
        """``value`` as JSON-ready data; ``SerializationError`` naming ``path`` if impossible."""
        if value is None or isinstance(value, str | bool | int):
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise SerializationError(
                    f"non-finite float {value!r} at {path or '<root>'}; JSON cannot hold it",
                    path=path,
                )
            return value
        if depth > MAX_DEPTH:
            raise SerializationError(
                f"value nested deeper than {MAX_DEPTH} levels at {path}", path=path
            )
        if isinstance(value, list):
            return [self.encode(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
        if isinstance(value, Mapping):
            if TAG_KEY not in value and all(isinstance(k, str) for k in value):
                return {k: self.encode(v, key_path(path, k), depth + 1) for k, v in value.items()}
            pairs = [
                [
                    self.encode(k, f"{path}[{k!r}] (key)", depth + 1),
                    self.encode(v, key_path(path, k), depth + 1),
                ]
                for k, v in value.items()
            ]
            return {TAG_KEY: MAP_TAG, VALUE_KEY: pairs}
        codec = self.for_type(type(value))
        if codec is None:
            raise SerializationError(
                f"{type(value).__qualname__} value at {path or '<root>'} cannot be written as "
                "JSON; store JSON-compatible values (str, number, bool, None, list, dict), "
                "convert it before emitting, or register a codec with "
                "routilux.serialization.register_codec",
                path=path,
            )
        try:
            inner = codec.encode(value)
        except Exception as exc:
            raise SerializationError(
                f"codec {codec.tag!r} failed to encode the value at {path}: "
                f"{type(exc).__name__}: {exc}",
                path=path,
            ) from None
        return {TAG_KEY: codec.tag, VALUE_KEY: self.encode(inner, path, depth + 1)}

    def decode(self, value: Any, path: str, depth: int = 0) -> Any:
        """The inverse of :meth:`encode`; typed errors (with ``path``) for bad data."""
        if isinstance(value, list):
            if depth > MAX_DEPTH:
                raise SerializationError(
                    f"value nested deeper than {MAX_DEPTH} levels at {path}", path=path
                )
            return [self.decode(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
        if not isinstance(value, dict):
            return value
        if depth > MAX_DEPTH:
            raise SerializationError(
                f"value nested deeper than {MAX_DEPTH} levels at {path}", path=path
            )
        if TAG_KEY not in value:
            return {k: self.decode(v, key_path(path, k), depth + 1) for k, v in value.items()}
        tag = value[TAG_KEY]
        if set(value) != {TAG_KEY, VALUE_KEY}:
            raise SerializationError(
                f"{path or '<root>'}: an encoded value must have exactly the keys "
                f"{TAG_KEY!r} and {VALUE_KEY!r}",
                path=path,
            )
        inner = value[VALUE_KEY]
        if tag == MAP_TAG:
            if not isinstance(inner, list):
                raise SerializationError(
                    f"{path}: an encoded map must hold a list of [key, value] pairs", path=path
                )
            out: dict[Any, Any] = {}
            for i, pair in enumerate(inner):
                if not isinstance(pair, list) or len(pair) != 2:
                    raise SerializationError(
                        f"{path}[{i}]: an encoded map entry must be a [key, value] pair",
                        path=f"{path}[{i}]",
                    )
                k = self.decode(pair[0], f"{path}[{i}] (key)", depth + 1)
                try:
                    out[k] = self.decode(pair[1], key_path(path, k), depth + 1)
                except TypeError:
                    raise SerializationError(
                        f"{path}[{i}]: map key {k!r} is not hashable", path=f"{path}[{i}]"
                    ) from None
            return out
        if not isinstance(tag, str):
            raise SerializationError(f"{path}: value tag must be a string, got {tag!r}", path=path)
        try:
            codec = self.by_tag(tag)
        except UnknownTypeError as exc:
            raise UnknownTypeError(
                f"{path or '<root>'}: {exc}", type_name=exc.type_name
            ) from None
        decoded = self.decode(inner, path, depth + 1)
        try:
            return codec.decode(decoded)
        except Exception as exc:
            raise SerializationError(
                f"{path or '<root>'}: codec {tag!r} cannot decode {decoded!r:.80}: "
                f"{type(exc).__name__}: {exc}",
                path=path,
            ) from None


def _expect(kind: type | tuple[type, ...], value: Any) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"expected {kind}, got {type(value).__name__}")
    return value


_BUILTINS: tuple[Codec, ...] = (
    Codec(type_=tuple, tag="tuple", encode=list, decode=lambda v: tuple(_expect(list, v))),
    Codec(type_=set, tag="set", encode=list, decode=lambda v: set(_expect(list, v))),
    Codec(
        type_=frozenset, tag="frozenset", encode=list,
        decode=lambda v: frozenset(_expect(list, v)),
    ),
    Codec(
        type_=datetime, tag="datetime", encode=lambda d: d.isoformat(),
        decode=lambda v: datetime.fromisoformat(_expect(str, v)),
    ),
    Codec(
        type_=date, tag="date", encode=lambda d: d.isoformat(),
        decode=lambda v: date.fromisoformat(_expect(str, v)),
    ),
    Codec(
        type_=time, tag="time", encode=lambda t: t.isoformat(),
        decode=lambda v: time.fromisoformat(_expect(str, v)),
    ),
    Codec(
        type_=timedelta, tag="timedelta",
        encode=lambda d: [d.days, d.seconds, d.microseconds],
        decode=lambda v: timedelta(*(_expect(int, x) for x in _expect(list, v))),
    ),
    Codec(type_=Decimal, tag="decimal", encode=str, decode=lambda v: Decimal(_expect(str, v))),
    Codec(type_=uuid.UUID, tag="uuid", encode=str, decode=lambda v: uuid.UUID(_expect(str, v))),
    Codec(
        type_=bytes, tag="bytes", encode=lambda b: base64.b64encode(b).decode("ascii"),
        decode=lambda v: base64.b64decode(_expect(str, v), validate=True),
    ),
)
