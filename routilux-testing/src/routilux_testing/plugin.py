"""The ``routilux`` pytest plugin (entry point ``pytest11: routilux``).

Fixtures (none autouse; a test that requests none of them is not affected):

* ``routilux_runtime``: a :class:`~routilux.Runtime` shut down after the test; the test fails
  at teardown if a job is still pending or running, or a thread started during the test is
  still alive.
* ``routilux_flow_registry``: a fresh :class:`~routilux.FlowRegistry`, used by the runtime.
* ``routilux_clock``: a :class:`~routilux.ManualClock`; when a test requests it, the runtimes
  of the test run on it.
* ``routilux_plugins``: ``routilux_plugins(*plugin_objects)`` returns a new runtime built with
  those plugins (checked at teardown like ``routilux_runtime``).
* ``routilux_tracker``: an in-memory tracking sink attached to the test's runtimes, read with
  deterministic job ids and without clock-dependent fields.

The marker ``@pytest.mark.routilux(**options)`` passes ``Runtime`` keywords
(``thread_pool_size``, ``plugins``, ``history_limit``, ...) to the test's runtimes, and tunes
the teardown checks (``allow_running_jobs``, ``check_threads``, ``settle_timeout``,
``join_timeout``).

Importing this module imports neither routilux nor hypothesis: the plugin is loaded in every
pytest session of an environment where routilux-testing is installed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from routilux import FlowRegistry, ManualClock, Runtime

    from ._runtimes import RuntimeSupervisor
    from ._tracker import Tracker

__all__ = [
    "PluginRuntimeFactory",
    "routilux_clock",
    "routilux_flow_registry",
    "routilux_plugins",
    "routilux_runtime",
    "routilux_tracker",
]

MARKER = "routilux"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): Runtime keyword arguments for the routilux_runtime and "
        "routilux_plugins fixtures (thread_pool_size=, plugins=, history_limit=, ...) and "
        "teardown checks (allow_running_jobs=False, check_threads=True, settle_timeout=1.0, "
        "join_timeout=5.0)",
    )


@pytest.fixture
def routilux_flow_registry() -> FlowRegistry:
    """A flow registry of this test only; ``routilux_runtime`` looks flow names up in it."""
    from routilux import FlowRegistry

    return FlowRegistry()


@pytest.fixture
def routilux_clock() -> ManualClock:
    """A manual clock starting at 0. The test's runtimes run on it: timers (time-interval
    policies, retry backoff, routine and job timeouts) fire when ``advance`` moves time past
    them, and ``advance`` returns once they have fired."""
    from routilux import ManualClock

    return ManualClock()


@pytest.fixture
def _routilux_supervisor(
    request: pytest.FixtureRequest, routilux_flow_registry: FlowRegistry
) -> Iterator[RuntimeSupervisor]:
    from ._runtimes import SUPERVISOR_OPTIONS, RuntimeSupervisor

    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers(MARKER))):  # closest wins
        if marker.args:
            raise pytest.UsageError(
                f"@pytest.mark.{MARKER} takes keyword arguments only, got {marker.args!r}"
            )
        options.update(marker.kwargs)
    checks = {k: options.pop(k) for k in list(options) if k in SUPERVISOR_OPTIONS}
    uses = request.fixturenames
    clock = request.getfixturevalue("routilux_clock") if "routilux_clock" in uses else None
    if "routilux_tracker" in uses:
        tracker = request.getfixturevalue("routilux_tracker")
        options["tracking_sinks"] = [*options.get("tracking_sinks", ()), tracker.sink]
    supervisor = RuntimeSupervisor(
        flow_registry=routilux_flow_registry,
        clock=clock,
        runtime_options=options,
        **checks,
    )
    yield supervisor
    problems = supervisor.close()
    if problems:
        pytest.fail("\n".join(["routilux teardown checks failed:", *problems]), pytrace=False)


@pytest.fixture
def routilux_tracker() -> Tracker:
    """An in-memory tracking sink that the test's runtimes (``routilux_runtime``,
    ``routilux_plugins(...)``) attach, read with deterministic ids: see
    :class:`routilux_testing.Tracker`."""
    from routilux.tracking import InMemorySink

    from ._tracker import Tracker

    return Tracker(InMemorySink())


@pytest.fixture
def routilux_runtime(_routilux_supervisor: RuntimeSupervisor) -> Runtime:
    """A runtime (4 workers by default) on ``routilux_flow_registry``, and on
    ``routilux_clock`` when the test uses it.

    It is shut down after the test. The test fails at teardown if a job is still pending or
    running one second after it (paused jobs and idle kept-open jobs are fine), or if a thread
    started during the test is still alive after the shutdown.
    """
    return _routilux_supervisor.create()


class PluginRuntimeFactory:
    """``routilux_plugins(*plugins, disabled=(), **runtime_options)``: a new runtime whose
    plugin manager has ``plugins`` (modules or objects with ``@routilux.hookimpl``
    functions) on top of the installed ones, minus ``disabled``.

    The plugins exist only in that runtime and its own type registry
    (``runtime.plugin_manager.registry``); the process-wide plugin manager is never touched,
    so nothing leaks into other tests. The runtime shares the test's flow registry and clock
    and is checked at teardown like ``routilux_runtime``.
    """

    def __init__(self, supervisor: RuntimeSupervisor) -> None:
        self._supervisor = supervisor

    def __call__(
        self, *plugins: Any, disabled: tuple[str, ...] | list[str] = (), **runtime_options: Any
    ) -> Runtime:
        if not plugins and not disabled:
            raise TypeError("routilux_plugins() needs at least one plugin object (or disabled=)")
        return self._supervisor.create(
            plugins=list(plugins), disabled_plugins=list(disabled), **runtime_options
        )


@pytest.fixture
def routilux_plugins(_routilux_supervisor: RuntimeSupervisor) -> Callable[..., Runtime]:
    """Register temporary plugins for one test: ``rt = routilux_plugins(MyPlugin())``."""
    return PluginRuntimeFactory(_routilux_supervisor)
