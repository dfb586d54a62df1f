"""Hook implementations of the Dask pack (loaded through the ``routilux.routines`` entry
point): registers the ``"dask"`` executor, so ``Runtime(executor=("dask", {...}))`` works."""

from __future__ import annotations

from typing import Any

from routilux.hookspecs import hookimpl
from routilux.registry import TypeRegistry

PROVIDER = "routilux-dask"


def _dask(address: Any = None, **options: Any) -> Any:
    """``("dask", {"address": "tcp://host:8786", "batch_size": 64, ...})``."""
    from ._executor import DaskExecutor

    return DaskExecutor(address, **options)


@hookimpl
def routilux_register_types(registry: TypeRegistry) -> None:
    registry.executors.register("dask", _dask, replace=True)
    registry.executors.note_provider("dask", PROVIDER)
