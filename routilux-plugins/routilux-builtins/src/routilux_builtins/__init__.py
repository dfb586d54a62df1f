"""Routilux built-in routine pack: the data and control-flow routines users expect.

Every routine takes no constructor arguments, is configured with ``set_config(...)`` (checked
at once: a bad value raises :class:`InvalidConfigError` naming the routine type, the key and
what to change) and is registered under an explicit type name (``"builtins.Mapper"``, ...),
which is how flow files name it. Anything a routine buffers is bounded. See ``docs/builtins.md``.
"""

from __future__ import annotations

from routilux.activation_policies import ActivationPolicy
from routilux.routine import Routine

from .control import Aggregator, Batcher, ConditionalRouter, Debouncer
from .data import DataTransformer, Filter, Mapper, SchemaValidator, Splitter
from .errors import InvalidConfigError, PayloadError
from .policies import AggregatePolicy, CollectPolicy, DebouncePolicy, SizeOrTimePolicy
from .registries import register_condition, register_transform
from .sinks import DeadLetter, ResultCollector, append_bounded, record_dead_letter

__version__ = "0.1.0"

__all__ = [
    "AggregatePolicy",
    "Aggregator",
    "Batcher",
    "CollectPolicy",
    "ConditionalRouter",
    "DataTransformer",
    "DeadLetter",
    "DebouncePolicy",
    "Debouncer",
    "Filter",
    "InvalidConfigError",
    "Mapper",
    "PayloadError",
    "ResultCollector",
    "SchemaValidator",
    "SizeOrTimePolicy",
    "Splitter",
    "__version__",
    "append_bounded",
    "policy_classes",
    "record_dead_letter",
    "register_condition",
    "register_transform",
    "routine_classes",
]

_ROUTINES: tuple[type[Routine], ...] = (
    Mapper,
    Filter,
    DataTransformer,
    SchemaValidator,
    Splitter,
    Aggregator,
    Batcher,
    Debouncer,
    ConditionalRouter,
    DeadLetter,
    ResultCollector,
)

_POLICIES: tuple[type[ActivationPolicy], ...] = (
    AggregatePolicy,
    SizeOrTimePolicy,
    DebouncePolicy,
    CollectPolicy,
)


def routine_classes() -> tuple[type[Routine], ...]:
    """The routine classes of this pack; each is registered under its ``type_name``."""
    return _ROUTINES


def policy_classes() -> tuple[type[ActivationPolicy], ...]:
    """The activation policy classes of this pack; register each under its ``name`` with a
    factory ``lambda params: cls(**params)`` (its ``params()`` are its keyword arguments)."""
    return _POLICIES
