"""Routilux executor for Dask distributed: ``Runtime(executor=DaskExecutor(client))``.

Routine logic runs on the cluster's workers; routing, activation policies, error handling,
the job state and any store stay in the runtime process. See ``docs/dask.md``.
"""

from __future__ import annotations

from ._executor import DaskExecutor

__version__ = "0.1.0"

__all__ = ["DaskExecutor", "__version__"]
