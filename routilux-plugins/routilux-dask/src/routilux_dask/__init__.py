"""Routilux executor for Dask distributed: ``Runtime(executor=DaskExecutor(client))``.

Routine logic runs on the cluster's workers; routing, activation policies, error handling,
the job state and any store stay in the runtime process. See ``docs/dask.md``.

Importing the package (which plugin discovery does for every runtime) does not import
``distributed``; ``DaskExecutor`` is loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._executor import DaskExecutor

__version__ = "0.1.0"

__all__ = ["DaskExecutor", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "DaskExecutor":
        from ._executor import DaskExecutor

        return DaskExecutor
    raise AttributeError(f"module 'routilux_dask' has no attribute {name!r}")
