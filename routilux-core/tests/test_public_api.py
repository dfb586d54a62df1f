"""The public surface: what ``routilux`` exports and the import paths SPEC §2 promises."""

from __future__ import annotations

import importlib

import pytest
import routilux


class TestAll:
    @pytest.mark.parametrize("name", routilux.__all__)
    def test_every_exported_name_exists(self, name: str) -> None:
        assert hasattr(routilux, name), f"routilux.__all__ lists {name!r} but it is missing"

    def test_all_has_no_duplicates(self) -> None:
        assert len(routilux.__all__) == len(set(routilux.__all__))

    def test_public_classes_are_in_all(self) -> None:
        public = {
            name
            for name, value in vars(routilux).items()
            if not name.startswith("_") and isinstance(value, type)
        }
        assert public <= set(routilux.__all__)


class TestSpecImportPaths:
    def test_top_level_names(self) -> None:
        from routilux import ErrorHandler, ErrorStrategy, Flow, JobState, Routine, Runtime

        assert all((ErrorHandler, ErrorStrategy, Flow, JobState, Routine, Runtime))

    @pytest.mark.parametrize(
        ("module", "name"),
        [
            ("routilux.runtime", "Runtime"),
            ("routilux.job_state", "JobState"),
            ("routilux.monitoring.flow_registry", "FlowRegistry"),
            ("routilux.activation_policies", "immediate_policy"),
            ("routilux.activation_policies", "batch_size_policy"),
            ("routilux.activation_policies", "all_slots_ready_policy"),
            ("routilux.activation_policies", "time_interval_policy"),
            ("routilux.activation_policies", "custom_policy"),
            ("routilux.activation_policies", "breakpoint_policy"),
            ("routilux.errors", "RoutiluxError"),
        ],
    )
    def test_module_path_imports(self, module: str, name: str) -> None:
        value = getattr(importlib.import_module(module), name)
        assert value is not None

    def test_module_paths_are_the_same_objects_as_top_level(self) -> None:
        from routilux.job_state import JobState
        from routilux.monitoring.flow_registry import FlowRegistry
        from routilux.runtime import Runtime

        assert (Runtime, JobState, FlowRegistry) == (
            routilux.Runtime,
            routilux.JobState,
            routilux.FlowRegistry,
        )

    @pytest.mark.parametrize(
        "module",
        [
            "routilux.routine",
            "routilux.flow",
            "routilux.runtime",
            "routilux.job_state",
            "routilux.activation_policies",
            "routilux.error_handling",
            "routilux.errors",
            "routilux.serialization",
        ],
    )
    def test_module_all_names_exist(self, module: str) -> None:
        mod = importlib.import_module(module)
        for name in mod.__all__:
            assert hasattr(mod, name), f"{module}.__all__ lists missing {name!r}"
