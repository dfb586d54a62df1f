"""A runtime given its own flow registry keeps it, even while the registry is empty."""

from __future__ import annotations

from routilux import Flow, Runtime
from routilux.monitoring.flow_registry import FlowRegistry


def test_an_empty_registry_of_its_own_is_not_replaced_by_the_global_one() -> None:
    own = FlowRegistry()
    with Runtime(1, flow_registry=own) as runtime:
        assert runtime.flow_registry is own
        runtime.flow_registry.register_by_name("only-here", Flow(flow_id="only-here"))
    assert "only-here" in own
    assert "only-here" not in FlowRegistry.get_instance()
