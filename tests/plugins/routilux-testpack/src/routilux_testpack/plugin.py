"""Hook implementations of the test pack."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from routilux.hookspecs import hookimpl
from routilux.registry import TypeRegistry

from . import EveryOtherPolicy, SkipTwiceStrategy

STARTED: list[Any] = []
STOPPED: list[Any] = []


@hookimpl
def routilux_register_types(registry: TypeRegistry) -> None:
    def pairs(params: Mapping[str, Any]) -> EveryOtherPolicy:
        return EveryOtherPolicy(**params)

    registry.policies.register(EveryOtherPolicy.name, pairs, replace=True)
    registry.error_strategies.register(SkipTwiceStrategy.name, SkipTwiceStrategy(), replace=True)


@hookimpl
def routilux_runtime_started(runtime: Any) -> None:
    STARTED.append(runtime)


@hookimpl
def routilux_runtime_stopped(runtime: Any) -> None:
    STOPPED.append(runtime)
