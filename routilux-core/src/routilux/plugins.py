"""Finding, loading and listing plugins.

Nothing here runs at import time. :func:`get_plugin_manager` builds the process-wide manager on
first use: it loads the ``routilux.routines`` entry points (minus the blocked ones), calls every
plugin's ``routilux_register_types`` hook against the process-wide
:data:`~routilux.registry.type_registry`, and remembers what each plugin registered. A plugin
that fails to import or to register is recorded as a :class:`PluginLoadError` naming its
distribution and entry point; it never takes the others down.

Blocking plugins: ``ROUTILUX_DISABLE_PLUGINS`` (comma-separated entry-point names, or ``*`` for
all), ``ROUTILUX_DISABLE_PLUGIN_AUTOLOAD=1`` (load no entry points), or
``create_plugin_manager(disabled=[...])`` / ``Runtime(disabled_plugins=[...])``.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import threading
from collections.abc import Iterable
from typing import Any

import attrs
import pluggy
import structlog

from . import hookspecs
from .errors import RoutiluxError
from .registry import TypeRegistry, type_registry

__all__ = [
    "DISABLE_AUTOLOAD_ENV",
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "PluginInfo",
    "PluginLoadError",
    "PluginManager",
    "create_plugin_manager",
    "get_plugin_manager",
    "list_plugins",
]

ENTRY_POINT_GROUP = "routilux.routines"
DISABLE_ENV = "ROUTILUX_DISABLE_PLUGINS"
DISABLE_AUTOLOAD_ENV = "ROUTILUX_DISABLE_PLUGIN_AUTOLOAD"

_log = structlog.get_logger("routilux.plugins")


class PluginLoadError(RoutiluxError, ImportError):
    """A plugin could not be loaded or could not register its types."""

    def __init__(self, message: str, *, plugin: str, distribution: str | None) -> None:
        super().__init__(message)
        self.plugin = plugin
        self.distribution = distribution


@attrs.frozen(kw_only=True)
class PluginInfo:
    """One loaded plugin and what it registered, by kind (``routines``, ``policies``, ...)."""

    name: str
    distribution: str | None
    version: str | None
    registered: dict[str, list[str]]


_KINDS = (
    "routines",
    "policies",
    "predicates",
    "exceptions",
    "error_strategies",
    "tracking_sinks",
    "stores",
    "executors",
)


def _names(registry: TypeRegistry) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for kind in _KINDS:
        reg = getattr(registry, kind, None)
        if reg is not None:
            found[kind] = set(reg.names())
    codecs = getattr(registry, "codecs", None)
    if codecs is not None:
        found["codecs"] = set(codecs.tags())
    return found


def _routines_of(plugin: Any, registry: TypeRegistry) -> set[str]:
    """Routine type names whose classes live in the top-level package of ``plugin``."""
    module = getattr(plugin, "__name__", None) or type(plugin).__module__
    package = str(module).split(".")[0]
    routines = registry.routines
    return {
        name
        for name in routines.names()
        if routines.get(name).__module__.split(".")[0] == package
    }


def _blocked_from_env() -> set[str]:
    raw = os.environ.get(DISABLE_ENV, "")
    return {part.strip() for part in raw.split(",") if part.strip()}


class PluginManager:
    """A pluggy manager for the ``routilux`` hooks plus the registry its plugins filled."""

    def __init__(self, registry: TypeRegistry) -> None:
        self.registry = registry
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.errors: list[PluginLoadError] = []
        self._info: dict[str, PluginInfo] = {}

    @property
    def hook(self) -> Any:
        """The pluggy hook relay (call hooks with keyword arguments only)."""
        return self.pm.hook

    def load_entry_points(self, *, disabled: Iterable[str] = ()) -> None:
        """Import and register every ``routilux.routines`` entry point not blocked."""
        blocked = set(disabled) | _blocked_from_env()
        if "*" in blocked or os.environ.get(DISABLE_AUTOLOAD_ENV, "") not in ("", "0"):
            return
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else None
            if ep.name in blocked or (dist is not None and dist in blocked):
                continue
            if self.pm.get_plugin(ep.name) is not None:
                continue
            before = _names(self.registry)  # importing a pack defines (registers) routines
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken pack must not take the runtime down
                self._broken(ep.name, dist, f"could not be imported: {type(exc).__name__}: {exc}")
                continue
            self.register(plugin, name=ep.name, distribution=dist, _before=before)

    def register(
        self,
        plugin: Any,
        *,
        name: str | None = None,
        distribution: str | None = None,
        _before: dict[str, set[str]] | None = None,
    ) -> None:
        """Register a plugin object and let it add its types to the registry at once."""
        try:
            name = self.pm.register(plugin, name=name)
        except ValueError as exc:
            self._broken(str(name), distribution, f"could not be registered: {exc}")
            return
        assert name is not None
        version = None
        if distribution is not None:
            try:
                version = md.version(distribution)
            except md.PackageNotFoundError:
                version = None
        before = _names(self.registry) if _before is None else _before
        impl = getattr(plugin, "routilux_register_types", None)
        if impl is not None:
            try:
                impl(registry=self.registry)
            except Exception as exc:
                self._broken(name, distribution, f"failed to register its types: "
                             f"{type(exc).__name__}: {exc}")
        after = _names(self.registry)
        added = {kind: after[kind] - before.get(kind, set()) for kind in after}
        if distribution is not None:
            # Routine classes register when their module is imported, so a pack imported before
            # this manager loaded it added nothing new: claim the routine types its package
            # defines instead.
            added["routines"] = added.get("routines", set()) | _routines_of(plugin, self.registry)
        registered = {kind: sorted(names) for kind, names in added.items() if names}
        self._info[name] = PluginInfo(
            name=name, distribution=distribution, version=version, registered=registered
        )

    def unregister(self, name: str) -> None:
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        self._info.pop(name, None)

    def _broken(self, name: str, distribution: str | None, what: str) -> None:
        where = f"entry point {name!r}" + (f" of {distribution!r}" if distribution else "")
        err = PluginLoadError(
            f"plugin {where} {what}; fix or uninstall it, or block it with "
            f"{DISABLE_ENV}={name}",
            plugin=name,
            distribution=distribution,
        )
        self.errors.append(err)
        _log.warning("plugin.broken", plugin=name, distribution=distribution, error=str(err))

    def plugins(self) -> list[PluginInfo]:
        """Every plugin registered, with what it registered."""
        return list(self._info.values())


def create_plugin_manager(
    *,
    registry: TypeRegistry | None = None,
    load_entry_points: bool = True,
    plugins: Iterable[Any] = (),
    disabled: Iterable[str] = (),
) -> PluginManager:
    """Build a plugin manager (entry points unless told not to, then ``plugins``)."""
    manager = PluginManager(registry if registry is not None else TypeRegistry())
    if load_entry_points:
        manager.load_entry_points(disabled=disabled)
    for plugin in plugins:
        manager.register(plugin, name=getattr(plugin, "__name__", None))
    return manager


_default: PluginManager | None = None
_default_lock = threading.Lock()


def get_plugin_manager() -> PluginManager:
    """The process-wide manager, built (and entry points loaded) on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = create_plugin_manager(registry=type_registry)
        return _default


def list_plugins() -> list[PluginInfo]:
    """Installed plugins (loaded through the process-wide manager) and what each registered."""
    return get_plugin_manager().plugins()
