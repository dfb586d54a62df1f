"""The base class of every builtin routine: declared config keys, validated on ``set_config``.

A builtin declares its keys with their defaults in ``CONFIG_DEFAULTS`` and the keys that have
no usable default in ``REQUIRED``. ``set_config`` rejects unknown keys (with a "did you mean"),
checks the merged configuration through ``_check_config`` and then lets the routine derive what
it needs from it (compiled expressions, a policy, slot bounds) in ``_apply_config``. That work
is done once, when the flow is built; logic only reads the result.
"""

from __future__ import annotations

import abc
import copy
import difflib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, NoReturn

import jmespath
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult
from routilux import Routine
from routilux.slot import Overflow

from .errors import InvalidConfigError

__all__ = ["BuiltinRoutine", "jmespath_truthy"]

CORE_CONFIG_KEYS = frozenset({"timeout"})
"""Keys the core reads from every routine's config (``timeout`` of one activation)."""

_OVERFLOWS = tuple(o.value for o in Overflow)


def jmespath_truthy(value: Any) -> bool:
    """JMESPath truthiness: ``null``, ``false``, ``""``, ``[]`` and ``{}`` are false; every
    number (including 0) is true."""
    if value is None or value is False:
        return False
    if isinstance(value, str | list | dict):
        return bool(value)
    return True


class BuiltinRoutine(Routine, abc.ABC, register=False):
    """Base of the builtin routines: declared, validated configuration.

    Subclasses set ``CONFIG_DEFAULTS`` (every accepted key and its default) and ``REQUIRED``
    (keys without a usable default), override ``_check_config(config)`` to raise
    :class:`~routilux_builtins.errors.InvalidConfigError` through :meth:`_bad`, and
    ``_apply_config(config)`` to precompute what logic needs.
    """

    type_name = "builtins.BuiltinRoutine"
    CONFIG_DEFAULTS: ClassVar[Mapping[str, Any]] = {}
    REQUIRED: ClassVar[frozenset[str]] = frozenset()

    def __init__(self) -> None:
        super().__init__()
        defaults = copy.deepcopy(dict(self.CONFIG_DEFAULTS))
        Routine.set_config(self, **defaults)
        self._declare()
        self._apply_config(defaults)

    @abc.abstractmethod
    def _declare(self) -> None:
        """Declare slots, events and logic (called once by ``__init__``)."""

    # -- configuration ---------------------------------------------------------------------

    def set_config(self, **config: Any) -> None:
        """Merge ``config`` into this routine's configuration, validating it first.

        Raises:
            InvalidConfigError: an unknown key, or a value that cannot work; nothing is
                changed in that case.
        """
        known = set(self.CONFIG_DEFAULTS) | CORE_CONFIG_KEYS
        for key in config:
            if key not in known:
                close = difflib.get_close_matches(str(key), sorted(known), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                self._bad(
                    str(key),
                    f"is not a configuration key of this routine; {hint}known keys: "
                    f"{', '.join(sorted(self.CONFIG_DEFAULTS))}",
                )
        merged = {**self.config, **config}
        self._check_config(merged)
        self._apply_config(merged)
        super().set_config(**config)

    def validate_config(self) -> None:
        """Check that the configuration is complete (required keys set) and valid.

        ``set_config`` already checks each value as it is set; this also catches a required
        key that was never set. The routine's logic calls it on its first activation too.
        """
        config = dict(self.config)
        for key in sorted(self.REQUIRED):
            if config.get(key) is None:
                self._bad(key, "is required; call set_config(" + key + "=...)")
        self._check_config(config)

    @classmethod
    def configured(cls, **config: Any) -> BuiltinRoutine:
        """A new routine with ``config`` set and checked (``Mapper.configured(fields=...)``)."""
        routine = cls()
        routine.set_config(**config)
        routine.validate_config()
        return routine

    def _check_config(self, config: Mapping[str, Any]) -> None:
        """Raise ``InvalidConfigError`` (via :meth:`_bad`) if ``config`` cannot work."""

    def _apply_config(self, config: Mapping[str, Any]) -> None:
        """Precompute what logic needs from a checked ``config``."""

    def _ensure_ready(self) -> None:
        """Called by logic: fail clearly if required keys were never configured."""
        for key in self.REQUIRED:
            if self.get_config(key) is None:
                self.validate_config()

    # -- helpers for subclasses --------------------------------------------------------------

    def _bad(self, key: str, problem: str) -> NoReturn:
        name = type(self).type_name
        raise InvalidConfigError(
            f"{name} config {key!r} {problem}", routine_type=name, key=key
        )

    def _check_int(self, config: Mapping[str, Any], key: str, *, minimum: int = 1,
                   optional: bool = False) -> None:
        value = config.get(key)
        if value is None and optional:
            return
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            self._bad(key, f"must be an integer >= {minimum}, got {value!r}")

    def _check_seconds(self, config: Mapping[str, Any], key: str, *,
                       optional: bool = False) -> None:
        value = config.get(key)
        if value is None and optional:
            return
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            self._bad(key, f"must be a number of seconds > 0, got {value!r}")

    def _check_choice(self, config: Mapping[str, Any], key: str, choices: Iterable[str]) -> None:
        value = config.get(key)
        options = tuple(choices)
        if value not in options:
            self._bad(key, f"must be one of {', '.join(map(repr, options))}, got {value!r}")

    def _check_str(self, config: Mapping[str, Any], key: str, *, optional: bool = False) -> None:
        value = config.get(key)
        if value is None and optional:
            return
        if not isinstance(value, str) or not value:
            self._bad(key, f"must be a non-empty string, got {value!r}")

    def _check_overflow(self, config: Mapping[str, Any], key: str = "overflow") -> None:
        self._check_choice(config, key, _OVERFLOWS)

    def _compile(self, key: str, expression: Any) -> ParsedResult:
        """Compile a JMESPath expression found under config ``key`` (never ``eval``)."""
        if not isinstance(expression, str) or not expression.strip():
            self._bad(key, f"must be a JMESPath expression string, got {expression!r}")
        try:
            return jmespath.compile(expression)
        except JMESPathError as exc:
            detail = " ".join(str(exc).split())
            self._bad(key, f"is not a valid JMESPath expression ({detail}); see jmespath.org")

    def _bound_slot(self, slot: str, max_pending: int, overflow: str) -> None:
        """Apply a queue bound and overflow behaviour to one of this routine's slots."""
        target = self.get_slot(slot)
        target.max_queue_length = max_pending
        target.overflow = Overflow(overflow)

    def _set_logic_checked(self, logic: Callable[..., Any]) -> None:
        """``set_logic`` with a first-activation check of required configuration."""
        ensure = self._ensure_ready

        def checked(slot_data: Any, policy_message: Any, job_state: Any) -> Any:
            ensure()
            return logic(slot_data, policy_message, job_state)

        self.set_logic(checked)


def _expression_test(expr: ParsedResult) -> Callable[[dict[str, Any]], bool]:
    def test(payload: dict[str, Any]) -> bool:
        return jmespath_truthy(expr.search(payload))

    return test


def _named_test(fn: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], bool]:
    def test(payload: dict[str, Any]) -> bool:
        return bool(fn(payload))

    return test


def build_test(
    routine: BuiltinRoutine, key: str, when: Any, condition: Any
) -> Callable[[dict[str, Any]], bool]:
    """A payload test from a JMESPath ``when`` or a registered ``condition`` name (one of)."""
    from routilux.errors import UnknownTypeError

    from .registries import conditions

    if (when is None) == (condition is None):
        routine._bad(key, "needs exactly one of 'when' (a JMESPath expression) or 'condition' "
                     "(a name registered with register_condition)")
    if when is not None:
        return _expression_test(routine._compile(f"{key}.when" if key != "when" else key, when))
    if not isinstance(condition, str):
        routine._bad(key, f"'condition' must be a registered condition name, got {condition!r}")
    try:
        fn = conditions.get(condition)
    except UnknownTypeError as exc:
        routine._bad(key, f"names condition {condition!r}, which is not registered ({exc}); "
                     "call routilux_builtins.register_condition(name, fn) first")
    return _named_test(fn)
