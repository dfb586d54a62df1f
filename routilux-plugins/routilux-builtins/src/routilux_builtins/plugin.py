"""Hook implementations of the builtins pack (loaded through the ``routilux.routines`` entry
point; nothing else in the pack touches the plugin system)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from routilux.activation_policies import ActivationPolicy
from routilux.hookspecs import hookimpl
from routilux.registry import TypeRegistry

from . import policy_classes, routine_classes
from .strategies import DeadLetterStrategy

PROVIDER = "routilux-builtins"


def _factory(cls: type[ActivationPolicy]) -> Any:
    def build(params: Mapping[str, Any]) -> ActivationPolicy:
        return cls(**params)

    return build


@hookimpl
def routilux_register_types(registry: TypeRegistry) -> None:
    for cls in routine_classes():
        registry.routines.register(cls.type_name, cls)
        registry.routines.note_provider(cls.type_name, PROVIDER)
    for policy in policy_classes():
        registry.policies.register(policy.name, _factory(policy), replace=True)
        registry.policies.note_provider(policy.name, PROVIDER)
    registry.error_strategies.register(DeadLetterStrategy.name, DeadLetterStrategy(), replace=True)
    registry.error_strategies.note_provider(DeadLetterStrategy.name, PROVIDER)
