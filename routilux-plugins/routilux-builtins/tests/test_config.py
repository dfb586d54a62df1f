"""Configuration is checked when it is set, with errors that name the routine type, the key and
what to change; the pack's public surface and type names."""

from __future__ import annotations

from typing import Any

import pytest
import routilux_builtins
from routilux import Flow, Routine, Runtime
from routilux.activation_policies import ActivationPolicy
from routilux.errors import ConfigurationError, FlowValidationError
from routilux.registry import routine_types
from routilux_builtins import (
    Aggregator,
    Batcher,
    ConditionalRouter,
    DataTransformer,
    DeadLetter,
    Debouncer,
    Filter,
    InvalidConfigError,
    Mapper,
    ResultCollector,
    SchemaValidator,
    Splitter,
)

BAD_CONFIGS: list[tuple[type[Routine], dict[str, Any], str, str]] = [
    (Mapper, {"fields": {"x": "a["}}, "fields.x", "not a valid JMESPath"),
    (Mapper, {"fields": {}}, "fields", "non-empty mapping"),
    (Mapper, {"keep_input": "yes"}, "keep_input", "true or false"),
    (Filter, {"when": "a ==="}, "when", "JMESPath"),
    (Filter, {"condition": "no.such.condition"}, "when", "register_condition"),
    (Filter, {"when": "a", "condition": "x"}, "when", "exactly one"),
    (DataTransformer, {"transforms": {"x": "no_such_transform"}}, "transforms.x",
     "register_transform"),
    (DataTransformer, {"transforms": {"x": {"name": "round", "digits": 2}}}, "transforms.x",
     "bad parameters"),
    (DataTransformer, {"on_error": "ignore"}, "on_error", "one of"),
    (SchemaValidator, {"schema": {"type": "nonsense"}}, "schema", "not a valid JSON Schema"),
    (SchemaValidator, {"schema": []}, "schema", "JSON Schema object"),
    (SchemaValidator, {"max_errors": 0}, "max_errors", ">= 1"),
    (Splitter, {"max_items": -1}, "max_items", ">= 1"),
    (Splitter, {"include": ["item"]}, "item_key", "different fields"),
    (Aggregator, {"inputs": ["a", "a"]}, "inputs", "twice"),
    (Aggregator, {"inputs": ["a b"]}, "inputs", "input names"),
    (Aggregator, {"inputs": ["a", "b"], "mode": "n_of_m", "n": 3}, "n", "only 2 inputs"),
    (Aggregator, {"inputs": ["a", "b"], "n": 1}, "n", "only to mode 'n_of_m'"),
    (Aggregator, {"round_timeout": 0}, "round_timeout", "seconds > 0"),
    (Batcher, {"size": 0}, "size", ">= 1"),
    (Batcher, {"size": 10, "max_pending": 5}, "max_pending", "at least size"),
    (Batcher, {"overflow": "explode"}, "overflow", "one of"),
    (Debouncer, {"wait": -1}, "wait", "seconds > 0"),
    (Debouncer, {"wait": 5, "max_wait": 1}, "max_wait", "at least wait"),
    (ConditionalRouter, {"routes": [{"name": "default", "when": "a"}]}, "routes[0]",
     "other than 'default'"),
    (ConditionalRouter, {"routes": [{"name": "a", "when": "x"}, {"name": "a", "when": "y"}]},
     "routes[1]", "repeats"),
    (ConditionalRouter, {"routes": [{"name": "a", "when": "x", "eval": "1"}]}, "routes[0]",
     "unknown key"),
    (ConditionalRouter, {"match": "some"}, "match", "one of"),
    (DeadLetter, {"max_items": 0}, "max_items", ">= 1"),
    (ResultCollector, {"overflow": "block"}, "overflow", "drop_oldest"),
    (ResultCollector, {"emit_on_drain": 1}, "emit_on_drain", "true or false"),
]


class TestValidation:
    @pytest.mark.parametrize(("cls", "config", "key", "needle"), BAD_CONFIGS)
    def test_bad_values_raise_naming_type_and_key(
        self, cls: type[Routine], config: dict[str, Any], key: str, needle: str
    ) -> None:
        routine = cls()
        before = dict(routine.config)
        with pytest.raises(InvalidConfigError) as info:
            routine.set_config(**config)
        err = info.value
        assert isinstance(err, ConfigurationError) and isinstance(err, ValueError)
        assert err.routine_type == cls.type_name and err.key == key
        assert cls.type_name in str(err) and needle in str(err)
        assert dict(routine.config) == before  # nothing applied

    def test_unknown_key_suggests_the_close_one(self) -> None:
        with pytest.raises(InvalidConfigError, match="did you mean 'max_wait'"):
            Batcher().set_config(max_wiat=3)

    def test_core_timeout_key_is_accepted(self) -> None:
        m = Mapper.configured(fields={"a": "a"}, timeout=5)
        assert m.get_config("timeout") == 5

    @pytest.mark.parametrize("cls", [Mapper, DataTransformer, SchemaValidator, Aggregator,
                                     ConditionalRouter, Filter])
    def test_validate_config_reports_missing_required_key(self, cls: type[Any]) -> None:
        with pytest.raises(InvalidConfigError, match="is required"):
            cls().validate_config()

    def test_unconfigured_routine_is_refused_before_it_runs(self, runtime: Runtime) -> None:
        flow = Flow("unconfigured")
        flow.add_routine(Mapper(), "m")
        report = flow.validate()
        assert [i.path for i in report.errors] == ["routines.m.config"]
        assert "builtins.Mapper config 'fields' is required" in report.errors[0].message
        with pytest.raises(FlowValidationError, match="'fields' is required"):
            runtime.exec(flow, entry_params={"a": 1})
        assert runtime.list_jobs() == []

    def test_inputs_and_routes_can_grow_not_shrink(self) -> None:
        agg = Aggregator.configured(inputs=["a", "b"])
        agg.set_config(inputs=["a", "b", "c"])
        assert list(agg.slots) == ["a", "b", "c"]
        with pytest.raises(InvalidConfigError, match="drops input"):
            agg.set_config(inputs=["a"])
        router = ConditionalRouter.configured(routes=[{"name": "x", "when": "x"}])
        with pytest.raises(InvalidConfigError, match="drops route"):
            router.set_config(routes=[{"name": "y", "when": "y"}])

    def test_routines_are_independent_instances(self) -> None:
        one, two = Splitter(), Splitter()
        one.set_config(include=["a"])
        assert two.get_config("include") == []


class TestPublicSurface:
    def test_all_names_exist(self) -> None:
        for name in routilux_builtins.__all__:
            assert hasattr(routilux_builtins, name), name

    def test_routine_classes_have_explicit_registered_type_names(self) -> None:
        classes = routilux_builtins.routine_classes()
        assert len(classes) == 11
        for cls in classes:
            assert cls.type_name == f"builtins.{cls.__name__}"
            assert routine_types.get(cls.type_name) is cls
            assert cls.__name__ in routilux_builtins.__all__
            cls()  # parameterless

    def test_policies_round_trip_through_params(self) -> None:
        for cls in routilux_builtins.policy_classes():
            assert issubclass(cls, ActivationPolicy) and cls.name.startswith("builtins.")
        policies = [
            routilux_builtins.AggregatePolicy("n_of_m", 2, 3.0),
            routilux_builtins.SizeOrTimePolicy(10, 2.5),
            routilux_builtins.DebouncePolicy(1.0, 4.0),
            routilux_builtins.CollectPolicy(True),
        ]
        for policy in policies:
            assert type(policy)(**policy.params()) == policy

    def test_routine_sets_its_policy_from_config(self) -> None:
        b = Batcher.configured(size=7, max_wait=1.5)
        assert b.activation_policy == routilux_builtins.SizeOrTimePolicy(7, 1.5)
