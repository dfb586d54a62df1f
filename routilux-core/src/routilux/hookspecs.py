"""The hooks Routilux plugins implement.

A plugin is a module or object with functions marked ``@routilux.hookimpl`` whose names match
the specifications below. Installed packs expose one through the ``routilux.routines``
entry-point group; tests and applications can pass plugin objects to
``Runtime(plugins=[...])``. Hooks are always called with keyword arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .activation_policies import ActivationPolicy
    from .error_handling import CustomErrorStrategy
    from .registry import TypeRegistry
    from .runtime import Runtime
    from .tracking import TrackingSink

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]

PROJECT_NAME = "routilux"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# -- registering types -------------------------------------------------------------------------


@hookspec
def routilux_register_types(registry: TypeRegistry) -> None:
    """Add the types this plugin provides to ``registry``, by name.

    Called once per plugin manager, for every plugin, right after plugins are loaded and before
    any flow is compiled or loaded. Use ``registry.routines.register(name, cls)``,
    ``registry.policies.register(name, factory)``, ``registry.predicates``,
    ``registry.exceptions``, ``registry.codecs``, ``registry.error_strategies``,
    ``registry.tracking_sinks``, ``registry.stores`` (durable job-store factories) and
    ``registry.executors`` (activation-executor factories). Every
    implementation is called; return values are ignored. An implementation that raises is
    reported as a broken plugin (``PluginLoadError``) and the other plugins still register.
    """


# -- error strategies --------------------------------------------------------------------------


@hookspec(firstresult=True)
def routilux_error_strategy(name: str) -> CustomErrorStrategy | None:
    """Provide the implementation of the error strategy called ``name``, or None.

    Called when an ``ErrorHandler`` names a strategy that is neither built in (stop, continue,
    retry, skip) nor registered in ``registry.error_strategies``: when a job using it starts
    (the answer is cached per runtime) and when a flow file naming it is loaded. The first
    non-None result wins. Return an object with a ``handle(failure) -> ErrorStrategy`` method.
    """


# -- activation policies -----------------------------------------------------------------------


@hookspec(firstresult=True)
def routilux_activation_policy(name: str, params: Mapping[str, Any]) -> ActivationPolicy | None:
    """Build the activation policy called ``name`` from ``params``, or return None.

    Called when a flow file names a policy that is not in ``registry.policies`` (and when a
    flow using such a policy is saved). Raise ``TypeError`` for bad ``params``. The first
    non-None result wins.
    """


# -- runtime lifecycle -------------------------------------------------------------------------


@hookspec
def routilux_runtime_started(runtime: Runtime) -> None:
    """Called once when ``runtime`` has been created, before it runs any job.

    Every implementation is called; one that raises is logged and stops neither the others
    nor the runtime.
    """


@hookspec
def routilux_runtime_stopped(runtime: Runtime) -> None:
    """Called once when ``runtime`` has shut down (its first ``shutdown()``, or the end of its
    ``with`` block).

    Every implementation is called; errors are logged, not raised.
    """


# -- tracking ----------------------------------------------------------------------------------


@hookspec
def routilux_tracking_sinks(runtime: Runtime) -> list[TrackingSink] | None:
    """Return tracking sinks to attach to ``runtime``, or None for none.

    Called once when ``runtime`` is created, after its ``tracking_sinks=`` option has been
    applied and before ``routilux_runtime_started``. Every implementation is called and the
    lists are combined: every sink returned is attached (``runtime.tracking.add_sink``). An
    implementation that raises is logged and the others still count. Return a new sink per
    runtime: a sink is closed when its runtime shuts down.
    """
