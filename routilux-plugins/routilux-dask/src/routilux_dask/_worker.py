"""What runs on the Dask workers: a batch of activations, and the preload plugin."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin
from routilux.executors import ActivationOutcome, ActivationRequest, execute_request

__all__ = ["Preload", "run_batch"]


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except ValueError:  # not inside a worker (tests calling run_batch directly)
        return ""


def run_batch(requests: Sequence[ActivationRequest]) -> list[ActivationOutcome]:
    """Run activations one after another in this worker process, in the order received.

    Each activation's failure is in its outcome; only infrastructure trouble (the task could
    not be deserialised, the worker died) fails the whole Dask task.
    """
    worker = _worker_address()
    return [execute_request(r, executor="dask", worker=worker) for r in requests]


def module_name_for(path: str) -> str:
    """The module name a preloaded file is imported under (stable per absolute path)."""
    digest = hashlib.blake2b(path.encode(), digest_size=6).hexdigest()
    stem = "".join(c if c.isalnum() else "_" for c in Path(path).stem)
    return f"routilux_preload_{stem}_{digest}"


def load_file(path: str) -> Any:
    """Import the Python file ``path`` once per process (its routine classes register)."""
    name = module_name_for(path)
    module = sys.modules.get(name)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path!r}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


class Preload(WorkerPlugin):
    """Imports the modules and files that define a flow's routines on every worker, including
    workers that join (or are restarted) later, so routines are found by type name there."""

    name = "routilux-preload"

    def __init__(self, modules: Sequence[str], paths: Sequence[str]) -> None:
        self.modules = list(modules)
        self.paths = list(paths)

    def setup(self, worker: Any) -> None:
        for module in self.modules:
            importlib.import_module(module)
        for path in self.paths:
            load_file(path)
