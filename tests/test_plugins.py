"""The plugin system end to end, against the real installed packs.

``routilux-builtins`` and ``routilux-testpack`` (``tests/plugins/routilux-testpack``) are
installed in the workspace and found through their ``routilux.routines`` entry points, exactly
as a user's ``pip install`` would make them found. Broken packs are real distributions written
to ``tmp_path``. The hookspec meta-tests at the end check that every hook is documented in
``docs/plugins.md`` and exercised in this file.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import routilux
import routilux_testpack.plugin as testpack_plugin
from routilux import (
    ErrorHandler,
    ErrorStrategy,
    Flow,
    JobState,
    JobStatus,
    Routine,
    Runtime,
    hookimpl,
)
from routilux import hookspecs as hookspecs_module
from routilux.activation_policies import Activation, ActivationPolicy, PolicyView
from routilux.error_handling import CustomErrorStrategy, Failure
from routilux.errors import FlowValidationError, UnknownTypeError
from routilux.plugins import (
    DISABLE_AUTOLOAD_ENV,
    DISABLE_ENV,
    ENTRY_POINT_GROUP,
    PluginLoadError,
    PluginManager,
    create_plugin_manager,
    get_plugin_manager,
    list_plugins,
)
from routilux.registry import TypeRegistry, default_types, routine_types

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "plugins.md"
WAIT = 10.0

BUILTIN_ROUTINES = {
    "builtins.Aggregator", "builtins.Batcher", "builtins.ConditionalRouter",
    "builtins.DataTransformer", "builtins.DeadLetter", "builtins.Debouncer", "builtins.Filter",
    "builtins.Mapper", "builtins.ResultCollector", "builtins.SchemaValidator",
    "builtins.Splitter",
}  # fmt: skip
BUILTIN_POLICIES = {
    "builtins.aggregate", "builtins.collect", "builtins.debounce", "builtins.size_or_time",
}  # fmt: skip


# -- routines, policies and strategies of this test module --------------------------------------


class Fanout(Routine):
    """Emits ``{"value": v}`` on ``output`` for every ``v`` of the input's ``values``."""

    type_name = "tests_plugins.Fanout"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("output", ["value"])

        def logic(slot_data: Any, policy_message: Any, job_state: Any) -> None:
            for payload in slot_data["input"]:
                for value in payload["values"]:
                    self.emit("output", value=value)

        self.set_logic(logic)


class BatchLog(Routine):
    """Appends the sorted values of each activation's input to ``job_state.shared_log``."""

    type_name = "tests_plugins.BatchLog"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")

        def logic(slot_data: Any, policy_message: Any, job_state: Any) -> None:
            job_state.shared_log.append(sorted(p["value"] for p in slot_data["input"]))

        self.set_logic(logic)


class AlwaysFails(Routine):
    """Raises ``ValueError`` on every activation."""

    type_name = "tests_plugins.AlwaysFails"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")

        def logic(slot_data: Any, policy_message: Any, job_state: Any) -> None:
            raise ValueError(f"cannot handle {slot_data['input']}")

        self.set_logic(logic)


class TriplesPolicy(ActivationPolicy):
    """Runs once ``size`` payloads are queued (the rest when the job drains)."""

    name = "tests_plugins.groups"

    def __init__(self, size: int = 3) -> None:
        self.size = size

    def params(self) -> dict[str, Any]:
        return {"size": self.size}

    def take(self, view: PolicyView, final: bool) -> Activation | None:
        queue = view.queues[0]
        if len(queue) >= self.size or (final and queue):
            return {view.slot_names[0]: view.take(0, self.size)}, {"policy": self.name}
        return None


class Decide:
    """A custom error strategy answering ``decision`` and remembering every failure."""

    def __init__(self, decision: ErrorStrategy) -> None:
        self.decision = decision
        self.failures: list[Failure] = []

    def handle(self, failure: Failure) -> ErrorStrategy:
        self.failures.append(failure)
        return self.decision


class Explodes:
    """A custom error strategy that itself raises."""

    def handle(self, failure: Failure) -> ErrorStrategy:
        raise RuntimeError("strategy exploded")


class RegistersStrategy:
    """A plugin registering one error strategy through ``routilux_register_types``."""

    def __init__(self, name: str, strategy: CustomErrorStrategy) -> None:
        self.name = name
        self.strategy = strategy

    @hookimpl
    def routilux_register_types(self, registry: TypeRegistry) -> None:
        registry.error_strategies.register(self.name, self.strategy)


class ProvidesStrategy:
    """A plugin answering ``routilux_error_strategy`` for one name (None for the others)."""

    def __init__(self, name: str, strategy: CustomErrorStrategy | None) -> None:
        self.name = name
        self.strategy = strategy
        self.asked: list[str] = []

    @hookimpl
    def routilux_error_strategy(self, name: str) -> CustomErrorStrategy | None:
        self.asked.append(name)
        return self.strategy if name == self.name else None


class ProvidesPolicy:
    """A plugin building ``TriplesPolicy`` through ``routilux_activation_policy``."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, dict[str, Any]]] = []

    @hookimpl
    def routilux_activation_policy(
        self, name: str, params: Mapping[str, Any]
    ) -> ActivationPolicy | None:
        self.asked.append((name, dict(params)))
        return TriplesPolicy(**params) if name == TriplesPolicy.name else None


class Lifecycle:
    """A plugin recording the runtimes it sees start and stop."""

    def __init__(self) -> None:
        self.started: list[Runtime] = []
        self.stopped: list[Runtime] = []

    @hookimpl
    def routilux_runtime_started(self, runtime: Runtime) -> None:
        self.started.append(runtime)

    @hookimpl
    def routilux_runtime_stopped(self, runtime: Runtime) -> None:
        self.stopped.append(runtime)


class StopHookFails:
    @hookimpl
    def routilux_runtime_stopped(self, runtime: Runtime) -> None:
        raise RuntimeError("stop hook failed")


# -- helpers and fixtures ------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_plugin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own blocking variables must not change what these tests see."""
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)


@pytest.fixture
def runtime() -> Iterator[Runtime]:
    rt = Runtime(thread_pool_size=2)
    yield rt
    rt.shutdown(timeout=WAIT)


@pytest.fixture
def default_plugin() -> Iterator[Any]:
    """``add(plugin, name)`` registers a plugin on the process-wide manager for one test."""
    manager = get_plugin_manager()
    added: list[str] = []

    def add(plugin: Any, name: str) -> Any:
        manager.register(plugin, name=name)
        added.append(name)
        return plugin

    yield add
    for name in added:
        manager.unregister(name)


def fresh_manager(**kwargs: Any) -> PluginManager:
    return create_plugin_manager(registry=TypeRegistry(routine_types), **kwargs)


def names(manager: PluginManager) -> set[str]:
    return {p.name for p in manager.plugins()}


def failing_flow(strategy: str, **handler: Any) -> Flow:
    """``fan`` (Fanout) -> ``flaky`` (testpack.Flaky, odd values raise) with ``strategy``."""
    from routilux_testpack import Flaky

    flow = Flow("plugins_failing")
    flow.add_routine(Fanout(), "fan")
    flaky = Flaky()
    flaky.set_error_handler(ErrorHandler(strategy=strategy, **handler))
    flow.add_routine(flaky, "flaky")
    flow.connect("fan", "output", "flaky", "input")
    return flow


def run(rt: Runtime, flow: Flow, entry: Mapping[str, Any]) -> JobState:
    state = rt.exec(flow, entry)
    assert rt.wait_job(state.job_id, timeout=WAIT), f"job did not settle: {state.status}"
    return state


def statuses(state: JobState, routine_id: str) -> list[str]:
    return [r.status for r in state.history(routine_id)]


def run_python(code: str, **env: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter (repo root as cwd); it prints one JSON line."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ROUTILUX_")}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# -- 1. discovery of the installed distributions -------------------------------------------------


class TestDiscovery:
    def test_list_plugins_shows_the_installed_packs(self) -> None:
        found = {p.name: p for p in list_plugins()}
        assert {"builtins", "testpack"} <= set(found)
        builtins, testpack = found["builtins"], found["testpack"]
        assert (builtins.distribution, builtins.version) == ("routilux-builtins", "0.1.0")
        assert (testpack.distribution, testpack.version) == ("routilux-testpack", "0.0.1")

    def test_list_plugins_shows_what_each_pack_registered(self) -> None:
        found = {p.name: p.registered for p in list_plugins()}
        assert set(found["builtins"]["routines"]) == BUILTIN_ROUTINES
        assert set(found["builtins"]["policies"]) == BUILTIN_POLICIES
        assert found["builtins"]["error_strategies"] == ["dead_letter"]
        assert found["testpack"] == {
            "routines": ["testpack.Echo", "testpack.Flaky"],
            "policies": ["testpack.pairs"],
            "error_strategies": ["testpack.skip_twice"],
        }

    def test_a_second_manager_still_credits_routines_imported_earlier(self) -> None:
        # Both packs are imported by now, so their routine classes are already registered.
        assert "routilux_testpack" in sys.modules
        info = {p.name: p.registered for p in fresh_manager().plugins()}
        assert info["testpack"]["routines"] == ["testpack.Echo", "testpack.Flaky"]
        assert set(info["builtins"]["routines"]) == BUILTIN_ROUTINES

    def test_the_process_wide_manager_is_built_once_and_fills_the_default_registry(
        self,
    ) -> None:
        manager = get_plugin_manager()
        assert get_plugin_manager() is manager
        assert default_types() is manager.registry is routilux.type_registry
        assert "dead_letter" in manager.registry.error_strategies
        assert "testpack.pairs" in manager.registry.policies
        assert manager.errors == []

    def test_every_kind_a_plugin_registers_is_reported(self) -> None:
        class Point:
            pass

        class RegistersEverything:
            @hookimpl
            def routilux_register_types(self, registry: TypeRegistry) -> None:
                registry.policies.register(TriplesPolicy.name, lambda p: TriplesPolicy(**p))
                registry.predicates.register("tests.always", lambda queued, state: True)
                registry.exceptions.register("tests.Oops", LookupError)
                registry.error_strategies.register("tests.any", Decide(ErrorStrategy.SKIP))
                registry.codecs.register(Point, lambda p: [], lambda v: Point(), "tests.point")
                registry.tracking_sinks.register("tests.sink", lambda **o: Point())
                registry.stores.register("tests.store", lambda **o: Point())
                registry.executors.register("tests.executor", lambda **o: Point())

        [info] = fresh_manager(load_entry_points=False, plugins=[RegistersEverything()]).plugins()
        assert info.registered == {
            "policies": [TriplesPolicy.name],
            "predicates": ["tests.always"],
            "exceptions": ["tests.Oops"],
            "error_strategies": ["tests.any"],
            "tracking_sinks": ["tests.sink"],
            "stores": ["tests.store"],
            "executors": ["tests.executor"],
            "codecs": ["tests.point"],
        }
        assert (info.distribution, info.version) == (None, None)

    def test_entry_points_are_found_in_the_routilux_routines_group(self) -> None:
        import importlib.metadata as md

        eps = {ep.name: ep.value for ep in md.entry_points(group=ENTRY_POINT_GROUP)}
        assert eps["builtins"] == "routilux_builtins.plugin"
        assert eps["testpack"] == "routilux_testpack.plugin"

    def test_importing_routilux_loads_no_plugin(self) -> None:
        out = run_python(
            """
            import json, sys
            import routilux, routilux.plugins, routilux.hookspecs
            print(json.dumps({
                "builtins": "routilux_builtins" in sys.modules,
                "testpack": "routilux_testpack" in sys.modules,
                "manager": routilux.plugins._default is not None,
            }))
            """
        )
        assert out == {"builtins": False, "testpack": False, "manager": False}


# -- 2. a fresh interpreter: the "done when" and the environment variables -------------

FLOW_WITH_BUILTINS = """
flow_id: builtins_by_name
routines:
  split:
    type: builtins.Splitter
    config: {field: values}
  keep_big:
    type: builtins.Filter
    config: {when: "item > `2`"}
  collect:
    type: builtins.ResultCollector
    config: {key: big, field: item}
connections:
  - split.item -> keep_big.input
  - keep_big.passed -> collect.input
entry: {routine: split, slot: input}
"""

RUN_BUILTINS_FLOW = f"""
import json, sys
from routilux import Flow, Runtime
from routilux.errors import FlowValidationError
from routilux.plugins import list_plugins

imported_before = "routilux_builtins" in sys.modules
try:
    flow = Flow.from_yaml({FLOW_WITH_BUILTINS!r})
except FlowValidationError as exc:
    print(json.dumps({{"load_error": str(exc), "plugins": [p.name for p in list_plugins()]}}))
    raise SystemExit(0)
with Runtime(thread_pool_size=2) as rt:
    state = rt.exec(flow, {{"values": [1, 5, 2, 7]}})
    settled = rt.wait_job(state.job_id, timeout=10)
print(json.dumps({{
    "imported_before": imported_before,
    "settled": settled,
    "status": state.status.value,
    "big": sorted(state.shared_data.get("big", [])),
    "plugins": sorted(p.name for p in list_plugins()),
    "testpack_imported": "routilux_testpack" in sys.modules,
}}))
"""


class TestFreshInterpreter:
    def test_a_flow_file_naming_builtins_runs_without_importing_the_pack(self) -> None:
        out = run_python(RUN_BUILTINS_FLOW)
        assert out["imported_before"] is False
        assert (out["settled"], out["status"]) == (True, "completed")
        assert out["big"] == [5, 7]
        assert {"builtins", "testpack"} <= set(out["plugins"])

    def test_disable_env_hides_the_named_plugin(self) -> None:
        out = run_python(RUN_BUILTINS_FLOW, **{DISABLE_ENV: "testpack"})
        assert out["status"] == "completed"
        assert out["plugins"] == ["builtins"]
        assert out["testpack_imported"] is False

    def test_disable_autoload_env_loads_no_plugin(self) -> None:
        out = run_python(RUN_BUILTINS_FLOW, **{DISABLE_AUTOLOAD_ENV: "1"})
        assert out["plugins"] == []
        assert "builtins.Splitter" in out["load_error"]
        assert "routine type" in out["load_error"]


# -- 3. blocking plugins --------------------------------------------------------------------------


class TestBlocking:
    def test_disabled_by_entry_point_name(self) -> None:
        manager = fresh_manager(disabled=["testpack"])
        assert names(manager) == {"builtins"}
        assert "testpack.pairs" not in manager.registry.policies
        assert "testpack.skip_twice" not in manager.registry.error_strategies
        assert "dead_letter" in manager.registry.error_strategies

    def test_disabled_by_distribution_name(self) -> None:
        manager = fresh_manager(disabled=["routilux-builtins"])
        assert names(manager) == {"testpack"}
        assert "dead_letter" not in manager.registry.error_strategies

    def test_disable_env_in_process(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(DISABLE_ENV, " testpack , nothing-else ")
        assert names(fresh_manager()) == {"builtins"}

    def test_disable_env_star_blocks_every_entry_point(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv(DISABLE_ENV, "*")
        assert names(fresh_manager()) == set()

    def test_disable_autoload_keeps_explicit_plugins(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
        plugin = RegistersStrategy("tests.explicit", Decide(ErrorStrategy.SKIP))
        manager = fresh_manager(plugins=[plugin])
        assert [p.registered for p in manager.plugins()] == [
            {"error_strategies": ["tests.explicit"]}
        ]
        assert "dead_letter" not in manager.registry.error_strategies

    def test_runtime_disabled_plugins_makes_their_strategy_unknown(self) -> None:
        flow = failing_flow("dead_letter")
        with Runtime(thread_pool_size=1, disabled_plugins=["builtins"]) as rt:
            assert names(rt.plugin_manager) == {"testpack"}
            with pytest.raises(UnknownTypeError, match="'dead_letter'") as info:
                rt.exec(flow, {"values": [1]})
            assert info.value.type_name == "dead_letter"
            assert rt.list_jobs() == []  # refused before any job started

    def test_runtime_without_options_shares_the_process_wide_manager(
        self, runtime: Runtime
    ) -> None:
        assert runtime.plugin_manager is get_plugin_manager()

    def test_blocking_in_one_runtime_leaves_the_process_wide_manager_alone(self) -> None:
        with Runtime(thread_pool_size=1, disabled_plugins=["builtins"]) as rt:
            assert rt.plugin_manager is not get_plugin_manager()
        assert "builtins" in {p.name for p in list_plugins()}
        assert "dead_letter" in default_types().error_strategies


# -- 4. broken plugins ---------------------------------------------------------------------------


def write_distribution(root: Path, dist: str, module: str, source: str) -> None:
    """A real installed distribution: ``<dist>-1.0.dist-info`` with an entry point to
    ``module`` in the ``routilux.routines`` group, and the module itself."""
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{dist} = {module}\n")
    (root / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def broken_packs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    get_plugin_manager()  # the process-wide manager is built before the broken packs exist
    write_distribution(
        tmp_path, "brokenpack", "brokenpack_plugin",
        """
        raise RuntimeError("boom at import")
        """,
    )  # fmt: skip
    write_distribution(
        tmp_path, "badregister", "badregister_plugin",
        """
        from routilux import hookimpl

        @hookimpl
        def routilux_register_types(registry):
            registry.policies.register("badregister.half", lambda params: None)
            raise ValueError("cannot register")
        """,
    )  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield tmp_path
    for module in ("brokenpack_plugin", "badregister_plugin"):
        sys.modules.pop(module, None)


class TestBrokenPlugins:
    def test_each_broken_pack_is_reported_with_a_typed_error(self, broken_packs: Path) -> None:
        manager = fresh_manager()
        errors = {e.plugin: e for e in manager.errors}
        assert set(errors) == {"brokenpack", "badregister"}
        for err in errors.values():
            assert isinstance(err, PluginLoadError)
            assert isinstance(err, ImportError)
            assert isinstance(err, routilux.RoutiluxError)

    def test_a_pack_that_fails_to_import_names_its_entry_point_and_distribution(
        self, broken_packs: Path
    ) -> None:
        [err] = [e for e in fresh_manager().errors if e.plugin == "brokenpack"]
        assert err.distribution == "brokenpack"
        message = str(err)
        assert "entry point 'brokenpack' of 'brokenpack'" in message
        assert "could not be imported: RuntimeError: boom at import" in message
        assert "fix or uninstall it" in message
        assert f"{DISABLE_ENV}=brokenpack" in message

    def test_a_pack_whose_registration_raises_is_reported(self, broken_packs: Path) -> None:
        [err] = [e for e in fresh_manager().errors if e.plugin == "badregister"]
        assert err.distribution == "badregister"
        assert "failed to register its types: ValueError: cannot register" in str(err)

    def test_the_good_packs_still_load(self, broken_packs: Path) -> None:
        manager = fresh_manager()
        assert {"builtins", "testpack"} <= names(manager)
        assert "brokenpack" not in names(manager)
        assert "dead_letter" in manager.registry.error_strategies
        assert "testpack.pairs" in manager.registry.policies

    def test_a_runtime_still_starts_and_runs(self, broken_packs: Path) -> None:
        with Runtime(thread_pool_size=2, disabled_plugins=[]) as rt:
            assert {e.plugin for e in rt.plugin_manager.errors} == {"brokenpack", "badregister"}
            state = run(rt, failing_flow("testpack.skip_twice"), {"values": [2, 1]})
        assert state.status is JobStatus.COMPLETED

    def test_a_blocked_broken_pack_is_not_even_imported(self, broken_packs: Path) -> None:
        manager = fresh_manager(disabled=["brokenpack", "badregister"])
        assert manager.errors == []
        assert "badregister_plugin" not in sys.modules

    def test_the_process_wide_manager_built_earlier_is_untouched(self, broken_packs: Path) -> None:
        assert get_plugin_manager().errors == []
        assert "badregister.half" not in default_types().policies


# -- 5. third-party error strategies -------------------------------------------------------------


class TestCustomErrorStrategy:
    def test_registered_by_a_runtime_plugin_and_used_by_name(self) -> None:
        strategy = Decide(ErrorStrategy.SKIP)
        plugin = RegistersStrategy("tests.skip", strategy)
        flow = failing_flow("tests.skip")
        with Runtime(thread_pool_size=2, plugins=[plugin]) as rt:
            state = run(rt, flow, {"values": [1, 2, 3, 4]})
        assert state.status is JobStatus.COMPLETED, state.error
        assert sorted(state.shared_log) == [2, 4]
        assert sorted(statuses(state, "flaky")) == ["completed", "completed", "skipped", "skipped"]
        assert state.get_routine_state("flaky")["skipped_activations"] == 2

    def test_the_strategy_is_told_about_the_failure(self) -> None:
        strategy = Decide(ErrorStrategy.CONTINUE)
        flow = failing_flow("tests.told")
        with Runtime(thread_pool_size=1, plugins=[RegistersStrategy("tests.told", strategy)]) as rt:
            state = run(rt, flow, {"values": [3]})
        [failure] = strategy.failures
        assert failure.job_state is state
        assert failure.routine_id == "flaky"
        assert isinstance(failure.error, ValueError)
        assert str(failure.error) == "odd value 3"
        assert failure.attempt == 0
        assert failure.slot_data == {"input": [{"value": 3}]}
        assert failure.handler is flow.routines["flaky"].error_handler
        assert statuses(state, "flaky") == ["failed"]  # CONTINUE records the error
        assert state.status is JobStatus.COMPLETED

    def test_a_runtime_plugin_does_not_leak_into_other_runtimes(self, runtime: Runtime) -> None:
        with Runtime(
            thread_pool_size=1,
            plugins=[RegistersStrategy("tests.private", Decide(ErrorStrategy.SKIP))],
        ):
            pass
        with pytest.raises(UnknownTypeError, match=re.escape("'tests.private'")):
            runtime.exec(failing_flow("tests.private"), {"values": [1]})

    def test_provided_only_by_the_error_strategy_hook(self) -> None:
        provider = ProvidesStrategy("tests.hooked", Decide(ErrorStrategy.SKIP))
        with Runtime(thread_pool_size=1, plugins=[provider]) as rt:
            state = run(rt, failing_flow("tests.hooked"), {"values": [1]})
        assert "tests.hooked" in provider.asked
        assert statuses(state, "flaky") == ["skipped"]

    def test_the_first_non_none_result_of_the_hook_wins(self) -> None:
        continues = ProvidesStrategy("tests.hooked", Decide(ErrorStrategy.CONTINUE))
        skips = ProvidesStrategy("tests.hooked", Decide(ErrorStrategy.SKIP))
        declines = ProvidesStrategy("tests.other", None)  # answers None for tests.hooked
        with Runtime(thread_pool_size=1, plugins=[continues, skips, declines]) as rt:
            state = run(rt, failing_flow("tests.hooked"), {"values": [1]})
        assert declines.asked == ["tests.hooked"]  # asked, said None, so the next was asked
        asked = [p for p in (continues, skips) if p.asked]
        assert len(asked) == 1  # once one answered, nobody else was asked
        winner = asked[0].strategy
        assert isinstance(winner, Decide) and len(winner.failures) == 1
        expected = "skipped" if winner.decision is ErrorStrategy.SKIP else "failed"
        assert statuses(state, "flaky") == [expected]

    def test_registered_strategies_win_over_the_hook(self) -> None:
        registered = Decide(ErrorStrategy.SKIP)
        provider = ProvidesStrategy("tests.both", Decide(ErrorStrategy.CONTINUE))
        plugins = [RegistersStrategy("tests.both", registered), provider]
        with Runtime(thread_pool_size=1, plugins=plugins) as rt:
            state = run(rt, failing_flow("tests.both"), {"values": [1]})
        assert provider.asked == []
        assert statuses(state, "flaky") == ["skipped"]

    def test_unknown_strategy_fails_exec_before_a_job_starts(self, runtime: Runtime) -> None:
        with pytest.raises(UnknownTypeError, match=re.escape("'tests.nobody'")) as info:
            runtime.exec(failing_flow("tests.nobody"), {"values": [1]})
        assert "install the pack that provides it" in str(info.value)
        assert runtime.list_jobs() == []

    def test_a_strategy_that_raises_fails_the_job_naming_it(self) -> None:
        plugin = RegistersStrategy("tests.explodes", Explodes())
        with Runtime(thread_pool_size=1, plugins=[plugin]) as rt:
            state = run(rt, failing_flow("tests.explodes"), {"values": [1]})
        assert state.status is JobStatus.FAILED
        assert state.error_type == "ConfigurationError"
        assert state.error_routine == "flaky"
        assert state.error is not None
        assert "error strategy 'tests.explodes' failed" in state.error
        assert "RuntimeError: strategy exploded" in state.error
        assert "ValueError" in state.error  # the failure it was handling

    def test_a_strategy_returning_a_non_strategy_fails_the_job(self) -> None:
        class ReturnsText:
            def handle(self, failure: Failure) -> Any:
                return "skip"

        plugin = RegistersStrategy("tests.text", ReturnsText())
        with Runtime(thread_pool_size=1, plugins=[plugin]) as rt:
            state = run(rt, failing_flow("tests.text"), {"values": [1]})
        assert state.status is JobStatus.FAILED
        assert state.error is not None and "'tests.text'" in state.error

    def test_retry_from_a_strategy_honours_max_retries_then_the_fallback(self) -> None:
        strategy = Decide(ErrorStrategy.RETRY)
        flow = Flow("plugins_retry")
        fails = AlwaysFails()
        fails.set_error_handler(
            ErrorHandler(strategy="tests.retry", max_retries=2, retry_delay=0.0, fallback="skip")
        )
        flow.add_routine(fails, "fails")
        with Runtime(
            thread_pool_size=1, plugins=[RegistersStrategy("tests.retry", strategy)]
        ) as rt:
            state = run(rt, flow, {"x": 1})
        assert [f.attempt for f in strategy.failures] == [0, 1, 2]
        assert statuses(state, "fails") == ["retrying", "retrying", "skipped"]
        assert state.status is JobStatus.COMPLETED

    def test_testpack_skip_twice_from_a_flow_document(self, runtime: Runtime) -> None:
        flow = Flow.from_dict({
            "flow_id": "plugins_skip_twice",
            "routines": {
                "fan": {"type": Fanout.type_name},
                "flaky": {"type": "testpack.Flaky", "max_concurrency": 1,
                          "error_handler": {"strategy": "testpack.skip_twice"}},
            },
            "connections": ["fan.output -> flaky.input"],
        })  # fmt: skip
        state = run(runtime, flow, {"values": [1, 2, 3, 5, 4]})
        assert state.status is JobStatus.FAILED  # the third failure stops the job
        assert state.shared_data["skip_twice"] == 3
        assert state.error == "ValueError: odd value 5"
        assert statuses(state, "flaky").count("skipped") == 2

    def test_builtins_dead_letter_parks_failed_payloads(self, runtime: Runtime) -> None:
        flow = Flow.from_dict({
            "flow_id": "plugins_dead_letter",
            "routines": {
                "fan": {"type": Fanout.type_name},
                "flaky": {"type": "testpack.Flaky", "error_handler": {"strategy": "dead_letter"}},
            },
            "connections": ["fan.output -> flaky.input"],
        })  # fmt: skip
        state = run(runtime, flow, {"values": [1, 2, 3]})
        assert state.status is JobStatus.COMPLETED, state.error
        letters = sorted(state.shared_data["dead_letters"], key=lambda d: d["payload"]["value"])
        assert [d["payload"] for d in letters] == [{"value": 1}, {"value": 3}]
        assert [d["reason"] for d in letters] == [
            "ValueError: odd value 1",
            "ValueError: odd value 3",
        ]
        assert {d["source"] for d in letters} == {"flaky"}
        assert state.shared_log == [2]

    def test_a_flow_document_naming_an_unknown_strategy_is_refused(self) -> None:
        doc = {
            "flow_id": "plugins_unknown_strategy",
            "routines": {"flaky": {"type": "testpack.Flaky",
                                   "error_handler": {"strategy": "tests.nobody"}}},
        }  # fmt: skip
        with pytest.raises(FlowValidationError, match=re.escape("tests.nobody")):
            Flow.from_dict(doc)

    def test_a_flow_document_may_name_a_strategy_only_the_hook_provides(
        self, default_plugin: Any, runtime: Runtime
    ) -> None:
        default_plugin(
            ProvidesStrategy("tests.doc_hooked", Decide(ErrorStrategy.SKIP)), "tests-doc-hooked"
        )
        flow = Flow.from_dict({
            "flow_id": "plugins_doc_hooked",
            "routines": {
                "fan": {"type": Fanout.type_name},
                "flaky": {"type": "testpack.Flaky",
                          "error_handler": {"strategy": "tests.doc_hooked"}},
            },
            "connections": ["fan.output -> flaky.input"],
        })  # fmt: skip
        state = run(runtime, flow, {"values": [1, 2]})
        assert sorted(statuses(state, "flaky")) == ["completed", "skipped"]
        assert flow.to_dict()["routines"]["flaky"]["error_handler"] == {
            "strategy": "tests.doc_hooked"
        }


# -- 6. third-party activation policies ----------------------------------------------------------


def batching_document(policy: Any) -> dict[str, Any]:
    return {
        "flow_id": "plugins_policy",
        "routines": {
            "fan": {"type": Fanout.type_name},
            "log": {"type": BatchLog.type_name, "policy": policy},
        },
        "connections": ["fan.output -> log.input"],
    }


class TestCustomActivationPolicy:
    def test_testpack_pairs_named_in_a_flow_document(self, runtime: Runtime) -> None:
        flow = Flow.from_dict(batching_document("testpack.pairs"))
        assert flow.routines["log"].activation_policy.name == "testpack.pairs"
        state = run(runtime, flow, {"values": [1, 2, 3, 4, 5]})
        assert state.status is JobStatus.COMPLETED, state.error
        assert sorted(state.shared_log) == [[1, 2], [3, 4], [5]]

    def test_testpack_pairs_round_trips(self) -> None:
        doc = Flow.from_dict(batching_document("testpack.pairs")).to_dict()
        assert doc["routines"]["log"]["policy"] == {"name": "testpack.pairs"}

    def test_provided_only_by_the_activation_policy_hook(
        self, default_plugin: Any, runtime: Runtime
    ) -> None:
        provider = default_plugin(ProvidesPolicy(), "tests-policy-provider")
        doc = batching_document({"name": TriplesPolicy.name, "params": {"size": 3}})
        flow = Flow.from_dict(doc)
        assert provider.asked == [(TriplesPolicy.name, {"size": 3})]
        state = run(runtime, flow, {"values": [1, 2, 3, 4, 5]})
        assert sorted(state.shared_log) == [[1, 2, 3], [4, 5]]

    def test_a_hook_provided_policy_round_trips(self, default_plugin: Any) -> None:
        default_plugin(ProvidesPolicy(), "tests-policy-provider")
        doc = batching_document({"name": TriplesPolicy.name, "params": {"size": 2}})
        again = Flow.from_dict(doc).to_dict()
        assert again["routines"]["log"]["policy"] == {
            "name": TriplesPolicy.name, "params": {"size": 2},
        }  # fmt: skip

    def test_registered_policies_are_not_asked_of_the_hook(self, default_plugin: Any) -> None:
        provider = default_plugin(ProvidesPolicy(), "tests-policy-provider")
        Flow.from_dict(batching_document("testpack.pairs"))
        assert provider.asked == []

    def test_a_policy_no_plugin_builds_is_refused(self, default_plugin: Any) -> None:
        provider = default_plugin(ProvidesPolicy(), "tests-policy-provider")
        with pytest.raises(FlowValidationError, match=re.escape("tests_plugins.nobody")) as info:
            Flow.from_dict(batching_document("tests_plugins.nobody"))
        assert provider.asked == [("tests_plugins.nobody", {})]
        assert "activation policy" in str(info.value)

    def test_bad_params_for_a_hook_policy_are_a_validation_error(self, default_plugin: Any) -> None:
        default_plugin(ProvidesPolicy(), "tests-policy-provider")
        doc = batching_document({"name": TriplesPolicy.name, "params": {"sise": 3}})
        with pytest.raises(FlowValidationError, match="bad parameters"):
            Flow.from_dict(doc)


# -- 7. lifecycle hooks ----------------------------------------------------------------------------


class TestLifecycleHooks:
    def test_installed_pack_sees_each_runtime_start_and_stop_once(self) -> None:
        rt = Runtime(thread_pool_size=1)
        assert testpack_plugin.STARTED.count(rt) == 1
        assert testpack_plugin.STOPPED.count(rt) == 0
        state = run(rt, failing_flow("skip"), {"values": [2]})
        assert state.status is JobStatus.COMPLETED
        assert rt.shutdown(timeout=WAIT)
        rt.shutdown(timeout=WAIT)
        assert testpack_plugin.STARTED.count(rt) == 1
        assert testpack_plugin.STOPPED.count(rt) == 1

    def test_runtime_plugins_see_their_runtime_start_and_stop(self) -> None:
        plugin = Lifecycle()
        with Runtime(thread_pool_size=1, plugins=[plugin]) as rt:
            assert (plugin.started, plugin.stopped) == ([rt], [])
        assert (plugin.started, plugin.stopped) == ([rt], [rt])
        assert testpack_plugin.STOPPED.count(rt) == 1  # installed packs are still called

    def test_runtime_plugins_are_not_called_for_other_runtimes(self) -> None:
        plugin = Lifecycle()
        with Runtime(thread_pool_size=1, plugins=[plugin]) as mine, Runtime(thread_pool_size=1):
            pass
        assert (plugin.started, plugin.stopped) == ([mine], [mine])

    def test_a_raising_stop_hook_does_not_break_shutdown(self) -> None:
        rt = Runtime(thread_pool_size=1, plugins=[StopHookFails()])
        assert rt.shutdown(timeout=WAIT) is True

    def test_a_raising_stop_hook_does_not_stop_the_others(self) -> None:
        plugin = Lifecycle()
        rt = Runtime(thread_pool_size=1, plugins=[plugin, StopHookFails()])
        rt.shutdown(timeout=WAIT)
        assert plugin.stopped == [rt]


class TracksJobs:
    """A plugin giving every runtime it is registered with an in-memory tracking sink."""

    def __init__(self) -> None:
        self.sinks: list[Any] = []

    @hookimpl
    def routilux_tracking_sinks(self, runtime: Runtime) -> list[Any]:
        from routilux.tracking import InMemorySink

        sink = InMemorySink()
        self.sinks.append((runtime, sink))
        return [sink]


class TestTrackingSinksHook:
    def test_a_runtime_plugin_attaches_its_sink_and_sees_the_jobs(self) -> None:
        plugin = TracksJobs()
        with Runtime(thread_pool_size=1, plugins=[plugin]) as rt:
            [(seen, sink)] = plugin.sinks
            assert seen is rt and rt.tracking.sinks == (sink,)
            state = run(rt, failing_flow("skip"), {"values": [1, 2]})
            records = sink.records(state.job_id)
        assert records[0].kind == "job.started"
        assert records[-1].kind == "job.finished" and records[-1].status == "completed"
        assert [r.routine for r in records if r.kind == "activation.skipped"] == ["flaky"]

    def test_sinks_of_a_runtime_plugin_stay_with_that_runtime(self) -> None:
        plugin = TracksJobs()
        with Runtime(thread_pool_size=1, plugins=[plugin]) as mine, Runtime(
            thread_pool_size=1
        ) as other:
            assert [rt for rt, _ in plugin.sinks] == [mine]
            assert other.tracking.sinks == ()


# -- 8. hookspec meta-tests: every hook is documented and tested -----------------------------------


def hookspecs() -> list[Any]:
    return [
        fn
        for name, fn in inspect.getmembers(hookspecs_module, inspect.isfunction)
        if name.startswith("routilux_")
    ]


def spec_options(fn: Any) -> dict[str, Any]:
    options: dict[str, Any] = getattr(fn, f"{hookspecs_module.PROJECT_NAME}_spec")
    return options


HOOK_IDS = [fn.__name__ for fn in hookspecs()]
FIRST_RESULT = "first non-none result wins"
ALL_CALLED = "every implementation is called"


class TestHookspecs:
    def test_the_expected_hooks_exist(self) -> None:
        assert set(HOOK_IDS) >= {
            "routilux_register_types",
            "routilux_error_strategy",
            "routilux_activation_policy",
            "routilux_runtime_started",
            "routilux_runtime_stopped",
            "routilux_tracking_sinks",
        }

    @pytest.mark.parametrize("name", HOOK_IDS)
    def test_is_a_pluggy_hookspec(self, name: str) -> None:
        assert isinstance(spec_options(getattr(hookspecs_module, name)), dict)

    @pytest.mark.parametrize("name", HOOK_IDS)
    def test_docstring_says_when_it_is_called_and_what_its_result_means(self, name: str) -> None:
        fn = getattr(hookspecs_module, name)
        doc = " ".join((fn.__doc__ or "").split()).lower()
        assert "called" in doc, f"{name}: say when the hook is called"
        semantics = FIRST_RESULT if spec_options(fn).get("firstresult") else ALL_CALLED
        assert semantics in doc, f"{name}: the docstring must say {semantics!r}"

    def test_the_docs_hook_reference_is_generated_from_the_hookspecs(self) -> None:
        # Every hook (and only real hooks) appears: the reference is autodoc of the module, so
        # the docstrings checked above are what the docs say.
        text = DOCS.read_text(encoding="utf-8")
        section = text[text.index("## Hook reference"):]
        assert ".. automodule:: routilux.hookspecs\n   :members:\n   :ignore-module-all:" in section

    @pytest.mark.parametrize("name", HOOK_IDS)
    def test_is_exercised_in_this_file(self, name: str) -> None:
        source = Path(__file__).read_text(encoding="utf-8")
        assert f"def {name}(" in source, f"no plugin in tests/test_plugins.py implements {name}"

    def test_the_docs_document_no_hook_by_hand(self) -> None:
        documented = re.findall(r"^#+ `(routilux_\w+)\(", DOCS.read_text(encoding="utf-8"), re.M)
        assert documented == []  # hand-written sections would drift from the hookspecs


# -- 9. public surface ----------------------------------------------------------------------------


class TestPublicSurface:
    def test_hookimpl_is_exported_from_routilux(self) -> None:
        assert "hookimpl" in routilux.__all__
        assert routilux.hookimpl is hookspecs_module.hookimpl

    def test_plugins_module_exports_its_api(self) -> None:
        import routilux.plugins as plugins

        for name in (
            "list_plugins",
            "create_plugin_manager",
            "get_plugin_manager",
            "PluginLoadError",
            "PluginInfo",
            "PluginManager",
        ):
            assert name in plugins.__all__
            assert hasattr(plugins, name)

    def test_hookimpl_marks_functions_for_the_routilux_project(self) -> None:
        assert isinstance(Lifecycle.routilux_runtime_started.routilux_impl, dict)
