"""Registered type names: the serialization contract.

Every :class:`~routilux.routine.Routine` subclass is registered under a type name when its class
is defined (``module:QualName`` unless the class sets ``type_name``). Loading a flow looks names
up here only; nothing is ever imported from a string found in data.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .errors import ConfigurationError, UnknownTypeError

if TYPE_CHECKING:
    from .activation_policies import ActivationPolicy
    from .error_handling import CustomErrorStrategy, ErrorHandler
    from .routine import Routine

__all__ = [
    "NamedRegistry",
    "RoutineTypeRegistry",
    "TypeRegistry",
    "default_types",
    "register_exception_type",
    "register_policy_type",
    "register_predicate",
    "routine_types",
    "type_registry",
]


class RoutineTypeRegistry:
    """Maps type names to routine classes (and remembers which pack provides a name)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._types: dict[str, type[Routine]] = {}
        self._providers: dict[str, str] = {}

    def register(self, name: str, cls: type[Routine], *, replace: bool = False) -> None:
        """Register ``cls`` under ``name``.

        Re-registering the same name for a different class raises ``ConfigurationError``
        unless ``replace`` is True or the old class has the same module and qualified name (a
        module reloaded, or a class redefined in a test).
        """
        with self._lock:
            old = self._types.get(name)
            if (
                old is not None
                and old is not cls
                and not replace
                and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__)
            ):
                raise ConfigurationError(
                    f"routine type name {name!r} is already registered for "
                    f"{old.__module__}.{old.__qualname__}; give {cls.__qualname__} another "
                    "type_name"
                )
            self._types[name] = cls

    def note_provider(self, name: str, provider: str) -> None:
        """Remember that ``provider`` (a pack or module) supplies ``name``, for error messages."""
        with self._lock:
            self._providers[name] = provider

    def get(self, name: str) -> type[Routine]:
        """The class registered under ``name``; ``UnknownTypeError`` if there is none."""
        try:
            return self._types[name]
        except KeyError:
            provider = self._providers.get(name)
            hint = (
                f"install or import {provider!r}, which provides it"
                if provider
                else "import the module that defines it, or install the pack that provides it"
            )
            raise UnknownTypeError(
                f"routine type {name!r} is not registered; {hint}",
                type_name=name,
                provider=provider,
            ) from None

    def name_of(self, cls: type[Routine]) -> str:
        """The registered name of ``cls``."""
        return cls.type_name

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._types)

    def __contains__(self, name: object) -> bool:
        return name in self._types


routine_types = RoutineTypeRegistry()
"""The process-wide routine type registry, filled as routine classes are defined."""


# -- named registries for the other polymorphic values ------------------------------------

T = TypeVar("T")

PolicyFactory = Callable[[Mapping[str, Any]], "ActivationPolicy"]
"""Builds a policy from its saved ``params`` (raises ``ConfigurationError``/``TypeError``)."""

Predicate = Callable[[dict[str, list[dict[str, Any]]], Any], Any]
"""A :class:`~routilux.activation_policies.CustomPolicy` predicate ``(queued, job_state)``."""

SinkFactory = Callable[..., Any]
"""Builds a tracking sink from keyword options (``Runtime(tracking_sinks=[("jsonl", {...})])``)."""

StoreFactory = Callable[..., Any]
"""Builds a durable job store from keyword options (``Runtime(store=("sqlite", {...}))``)."""

ExecutorFactory = Callable[..., Any]
"""Builds an activation executor from keyword options (``Runtime(executor=("dask", {...}))``)."""


class NamedRegistry(Generic[T]):
    """Maps registered names to values of one kind (policies, predicates, exception types...).

    Lookups by name only: data never names a module or attribute path. ``version`` grows with
    every registration, so converters built from the registry know when to rebuild.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._lock = threading.Lock()
        self._items: dict[str, T] = {}
        self._providers: dict[str, str] = {}
        self.version = 0

    def register(self, name: str, value: T, *, replace: bool = False) -> None:
        """Register ``value`` under ``name``; a different value under a taken name raises
        ``ConfigurationError`` unless ``replace`` is True."""
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"{self.kind} name must be a non-empty string, got {name!r}")
        with self._lock:
            old = self._items.get(name)
            if old is not None and old is not value and not replace:
                raise ConfigurationError(
                    f"{self.kind} name {name!r} is already registered for {old!r}; choose "
                    "another name or pass replace=True"
                )
            self._items[name] = value
            self.version += 1

    def unregister(self, name: str) -> None:
        with self._lock:
            if self._items.pop(name, None) is not None:
                self.version += 1

    def note_provider(self, name: str, provider: str) -> None:
        """Remember that ``provider`` (a pack or module) supplies ``name``, for error messages."""
        with self._lock:
            self._providers[name] = provider

    def get(self, name: str) -> T:
        """The value registered under ``name``; ``UnknownTypeError`` if there is none."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            provider = self._providers.get(name) if isinstance(name, str) else None
            if provider:
                hint = f"install or import {provider!r}, which provides it"
            else:
                known = ", ".join(sorted(self._items)[:20]) or "none"
                hint = f"registered: {known}"
            raise UnknownTypeError(
                f"unknown {self.kind} {name!r}; {hint}",
                type_name=str(name),
                provider=provider,
            ) from None

    def name_of(self, value: object) -> str | None:
        """The name ``value`` (the very object) is registered under, or None."""
        with self._lock:
            for name, item in self._items.items():
                if item is value:
                    return name
        return None

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._items)

    def build(self, spec: Any) -> tuple[Any, bool]:
        """Build from a factory registered here when ``spec`` names one: ``"name"`` or
        ``("name", {options})`` calls ``factory(**options)`` and returns ``(value, True)``;
        anything else is returned as is, ``(spec, False)``, for the caller to check.

        Raises ``UnknownTypeError`` for an unknown name and ``ConfigurationError`` when the
        options are not a dict or the factory refuses them.
        """
        options: Any
        if isinstance(spec, str):
            name, options = spec, {}
        elif isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str):
            name, options = spec
            if options is None:
                options = {}
            if not isinstance(options, Mapping):
                raise ConfigurationError(
                    f"{self.kind} options for {name!r} must be a dict, got "
                    f"{type(options).__name__}"
                )
        else:
            return spec, False
        factory = self.get(name)
        try:
            return factory(**options), True  # type: ignore[operator]
        except TypeError as exc:
            raise ConfigurationError(
                f"{self.kind} {name!r}: bad options {dict(options)!r}: {exc}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._items


class TypeRegistry:
    """Every registry the serialization contract reads, bundled.

    Attributes:
        routines: routine classes by type name.
        policies: activation-policy factories by policy ``name``.
        predicates: custom-policy predicates by name.
        exceptions: exception classes an ``ErrorHandler`` may retry, by name.
        error_handlers: ``ErrorHandler`` classes by name (``"error_handler"`` is the core one).
        codecs: encoders/decoders of payload values JSON cannot hold.
        tracking_sinks: tracking-sink factories by name (``memory``, ``jsonl``, ``otel``,
            ``prometheus`` built in), so sinks can be chosen by name.
        stores: durable job-store factories by name, so a store can be chosen by name
            (``Runtime(store=...)``, ``routilux jobs resume``).
        executors: activation-executor factories by name (where routine logic runs: the
            thread pool by default, or e.g. a Dask cluster), chosen by ``Runtime(executor=...)``.
    """

    def __init__(self, routines: RoutineTypeRegistry | None = None, *, builtins: bool = True):
        from ._codecs import CodecRegistry

        self.routines = routines if routines is not None else RoutineTypeRegistry()
        self.policies: NamedRegistry[PolicyFactory] = NamedRegistry("activation policy")
        self.predicates: NamedRegistry[Predicate] = NamedRegistry("custom policy predicate")
        self.exceptions: NamedRegistry[type[BaseException]] = NamedRegistry("exception type")
        self.error_handlers: NamedRegistry[type[ErrorHandler]] = NamedRegistry(
            "error handler type"
        )
        self.error_strategies: NamedRegistry[CustomErrorStrategy] = NamedRegistry(
            "error strategy"
        )
        self.tracking_sinks: NamedRegistry[SinkFactory] = NamedRegistry("tracking sink")
        self.stores: NamedRegistry[StoreFactory] = NamedRegistry("job store")
        self.executors: NamedRegistry[ExecutorFactory] = NamedRegistry("executor")
        self.codecs = CodecRegistry(builtins=builtins)
        if builtins:
            _install_builtins(self)

    @property
    def version(self) -> tuple[int, ...]:
        return (
            self.policies.version,
            self.predicates.version,
            self.exceptions.version,
            self.error_handlers.version,
            self.error_strategies.version,
            self.codecs.version,
        )


def _construct(cls: type[ActivationPolicy]) -> PolicyFactory:
    def factory(params: Mapping[str, Any]) -> ActivationPolicy:
        return cls(**params)

    return factory


def _install_builtins(types: TypeRegistry) -> None:
    from . import activation_policies as ap
    from . import errors as rerr
    from .error_handling import ErrorHandler

    for cls in (
        ap.ImmediatePolicy,
        ap.BatchSizePolicy,
        ap.AllSlotsReadyPolicy,
        ap.TimeIntervalPolicy,
        ap.BreakpointPolicy,
    ):
        types.policies.register(cls.name, _construct(cls))

    def custom(params: Mapping[str, Any]) -> ActivationPolicy:
        extra = set(params) - {"predicate"}
        if extra:
            raise TypeError(f"unexpected parameter(s) {', '.join(sorted(extra))}")
        if "predicate" not in params:
            raise TypeError("missing parameter 'predicate'")
        name = params["predicate"]
        if not isinstance(name, str):
            raise TypeError(f"'predicate' must be a registered predicate name, got {name!r}")
        return ap.CustomPolicy(types.predicates.get(name), name=name)

    types.policies.register(ap.CustomPolicy.name, custom)
    _install_sinks(types)
    from .executors import ThreadExecutor

    def threads() -> ThreadExecutor:
        return ThreadExecutor()

    types.executors.register(ThreadExecutor.name, threads)
    types.error_handlers.register("error_handler", ErrorHandler)
    builtin_exceptions: list[type[BaseException]] = [
        BaseException, Exception, ArithmeticError, AssertionError, AttributeError,
        ConnectionError, EOFError, FileNotFoundError, IndexError, KeyError, LookupError,
        NotImplementedError, OSError, PermissionError, RuntimeError, TimeoutError, TypeError,
        ValueError, ZeroDivisionError, UnicodeError, BrokenPipeError, ConnectionResetError,
        ConnectionRefusedError, ConnectionAbortedError, InterruptedError, BlockingIOError,
    ]
    for exc in builtin_exceptions:
        types.exceptions.register(exc.__name__, exc)
    for name in rerr.__all__:
        exc = getattr(rerr, name)
        types.exceptions.register(f"routilux.{name}", exc)


def _install_sinks(types: TypeRegistry) -> None:
    # Factories import their sink lazily: optional extras are needed only when used.
    def memory(**options: Any) -> Any:
        from .tracking.sinks import InMemorySink

        return InMemorySink(**options)

    def jsonl(**options: Any) -> Any:
        from .tracking.sinks import JsonLinesSink

        return JsonLinesSink(**options)

    def otel(**options: Any) -> Any:
        from .tracking.otel import OpenTelemetrySink

        return OpenTelemetrySink(**options)

    def prometheus(**options: Any) -> Any:
        from .tracking.prometheus import PrometheusSink

        return PrometheusSink(**options)

    for name, factory in (
        ("memory", memory), ("jsonl", jsonl), ("otel", otel), ("prometheus", prometheus)
    ):
        types.tracking_sinks.register(name, factory)

    def sqlite(**options: Any) -> Any:
        from .store import SqliteJobStore

        return SqliteJobStore(**options)

    def postgres(**options: Any) -> Any:
        from .store._postgres import PostgresJobStore

        return PostgresJobStore(**options)

    types.stores.register("sqlite", sqlite)
    types.stores.register("postgres", postgres)


type_registry = TypeRegistry(routine_types)
"""The process-wide registry bundle (routines, policies, predicates, exceptions, codecs)."""


def default_types() -> TypeRegistry:
    """The process-wide registry, after installed plugins have registered their types.

    Loading a flow by type names goes through this, so routines of installed packs are found
    without the user importing anything.
    """
    from .plugins import get_plugin_manager

    return get_plugin_manager().registry


def register_predicate(name: str, predicate: Predicate, *, replace: bool = False) -> Predicate:
    """Register a custom-policy predicate so flows using it serialize by ``name``.

    ``custom_policy(fn, name=name)`` with a registered ``name`` saves as
    ``{"name": "custom", "params": {"predicate": name}}`` and loads back with the same
    function. Returns ``predicate`` (usable as a decorator through ``functools.partial``).
    """
    if not callable(predicate):
        raise ConfigurationError(f"register_predicate needs a callable, got {predicate!r}")
    type_registry.predicates.register(name, predicate, replace=replace)
    return predicate


def register_policy_type(name: str, factory: PolicyFactory, *, replace: bool = False) -> None:
    """Register an activation-policy type: ``factory(params)`` rebuilds a policy whose
    ``name`` is ``name`` from its ``params()``."""
    if not callable(factory):
        raise ConfigurationError(f"register_policy_type needs a callable, got {factory!r}")
    type_registry.policies.register(name, factory, replace=replace)


def register_exception_type(
    name: str, exc_type: type[BaseException], *, replace: bool = False
) -> None:
    """Register an exception class so ``ErrorHandler.retryable_exceptions`` naming it
    serializes (as ``name``)."""
    if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
        raise ConfigurationError(
            f"register_exception_type needs an exception class, got {exc_type!r}"
        )
    type_registry.exceptions.register(name, exc_type, replace=replace)
