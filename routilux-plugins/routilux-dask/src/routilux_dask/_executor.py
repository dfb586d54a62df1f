"""DaskExecutor: routine logic on a Dask distributed cluster, in micro-batches."""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any

import structlog
from distributed import Client, Future
from routilux.errors import ClusterLostError, ConfigurationError, ExecutorError, WorkerLostError
from routilux.executors import ON_CLUSTER_LOST, ActivationOutcome, ActivationRequest, Executor

from ._worker import Preload, run_batch

if TYPE_CHECKING:
    from routilux.runtime import Runtime

__all__ = ["DaskExecutor"]

_log = structlog.get_logger("routilux.dask")

_Item = tuple[ActivationRequest, "concurrent.futures.Future[ActivationOutcome]"]

_GONE = ("closing", "closed", "failed")
"""Client statuses after which the cluster will not come back for this client."""


def _is_path(item: str) -> bool:
    return item.endswith(".py") or os.sep in item or "/" in item


class DaskExecutor(Executor):
    """Runs routine logic on a Dask cluster; everything else stays in the runtime.

    ``Runtime(executor=DaskExecutor(client_or_address))``. Each activation is shipped as the
    routine's registered type name, its config, its input payloads and a snapshot of the job
    state logic may read (see :mod:`routilux.executors`); the worker rebuilds the routine,
    runs its logic and returns its emits and state changes, which the runtime applies and
    routes. Activations that become ready within ``linger`` seconds of each other travel as
    one Dask task of up to ``batch_size`` activations, run one after another on one worker.

    Args:
        client_or_address: a ``distributed.Client`` (left open on shutdown), a scheduler
            address such as ``"tcp://10.0.0.5:8786"`` (a client is created and closed by the
            executor), or None for the current default client.
        batch_size: most activations per Dask task.
        linger: seconds a ready activation waits for others to share its task, while other
            tasks of this executor are in flight (with none in flight it is sent at once, so
            a lone job pays no added latency); 0: never wait (batches then only form from
            activations that became ready together).
        preload: modules (``"my_pack.routines"``) and Python files (``"flows/etl.py"``)
            imported on every worker, also on workers that join or restart later, so the
            routines they define are registered there. Installed packs need no preload.
        on_cluster_lost: ``"fail"`` (the job fails with ``ClusterLostError``) or ``"pause"``
            (the job pauses with the interrupted activation put back; ``resume_job`` once
            the cluster is back).
        reconnect_timeout: seconds the client may spend reconnecting to the scheduler before
            the cluster counts as lost.
        dispatch_threads: the runtime's worker threads when it is given no
            ``thread_pool_size``: each waits on one activation in flight, so this bounds the
            activations in flight (and so the batches that can form).
        submit_options: extra keyword arguments for ``Client.submit`` (``resources``,
            ``workers``, ``priority``...).
    """

    name = "dask"

    def __init__(
        self,
        client_or_address: Client | str | None = None,
        *,
        batch_size: int = 64,
        linger: float = 0.005,
        preload: Iterable[str] = (),
        on_cluster_lost: str = "fail",
        reconnect_timeout: float = 10.0,
        dispatch_threads: int = 64,
        submit_options: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ConfigurationError(f"DaskExecutor batch_size must be >= 1, got {batch_size!r}")
        if not isinstance(linger, int | float) or isinstance(linger, bool) or linger < 0:
            raise ConfigurationError(f"DaskExecutor linger must be seconds >= 0, got {linger!r}")
        if on_cluster_lost not in ON_CLUSTER_LOST:
            raise ConfigurationError(
                f"DaskExecutor on_cluster_lost must be 'fail' or 'pause', got {on_cluster_lost!r}"
            )
        if not isinstance(dispatch_threads, int) or dispatch_threads < 1:
            raise ConfigurationError(
                f"DaskExecutor dispatch_threads must be >= 1, got {dispatch_threads!r}"
            )
        if not (client_or_address is None or isinstance(client_or_address, Client | str)):
            raise ConfigurationError(
                "DaskExecutor needs a distributed.Client, a scheduler address or None, got "
                f"{client_or_address!r}"
            )
        if isinstance(preload, str):
            preload = [preload]
        modules: list[str] = []
        paths: list[str] = []
        for item in preload:
            if not isinstance(item, str) or not item:
                raise ConfigurationError(f"DaskExecutor preload entries are strings, got {item!r}")
            if _is_path(item):
                path = Path(item).resolve()
                if not path.is_file():
                    raise ConfigurationError(f"DaskExecutor preload: no file {str(path)!r}")
                paths.append(str(path))
            else:
                modules.append(item)
        self.batch_size = batch_size
        self.linger = float(linger)
        self.on_cluster_lost = on_cluster_lost
        self.reconnect_timeout = float(reconnect_timeout)
        self.dispatch_threads = dispatch_threads
        self.submit_options = dict(submit_options or {})
        self.preload_modules = modules
        self.preload_paths = paths
        self._target = client_or_address
        self._client: Client | None = None
        self._own_client = False
        self._cv = threading.Condition()
        self._pending: deque[_Item] = deque()
        self._inflight: dict[str, tuple[Future, list[_Item]]] = {}
        self._done: SimpleQueue[Future | None] = SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._not_running_since: float | None = None
        self._slots = 1
        self._slots_checked = -1e9
        self._ids = itertools.count()
        self._prefix = f"routilux-{uuid.uuid4().hex[:8]}"
        self.batches = 0
        """Dask tasks submitted so far (each carries up to ``batch_size`` activations)."""
        self.activations = 0
        """Activations submitted so far."""

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def client(self) -> Client:
        if self._client is None:
            raise ConfigurationError("the DaskExecutor is not started (give it to a Runtime)")
        return self._client

    def start(self, runtime: Runtime | None = None) -> None:
        """Connect (if given an address), install the preload plugin, start the batcher."""
        with self._cv:
            if self._client is not None:
                return
            target = self._target
            if isinstance(target, Client):
                client = target
            elif target is None:
                from distributed import get_client

                client = get_client()
            else:
                client = Client(target, set_as_default=False)
                self._own_client = True
            self._client = client
        if self.preload_modules or self.preload_paths:
            client.register_plugin(Preload(self.preload_modules, self.preload_paths),
                                   name=f"routilux-preload-{self._prefix}")
        for target_fn, name in ((self._batcher, "batcher"), (self._collector, "collector")):
            t = threading.Thread(target=target_fn, name=f"routilux-dask-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def shutdown(self, wait: bool = True) -> None:
        """Stop batching; activations still waiting get ``ClusterLostError``."""
        with self._cv:
            if self._closed:
                return
            self._closed = True
            waiting = list(self._pending)
            self._pending.clear()
            inflight = list(self._inflight.values())
            self._inflight.clear()
            self._cv.notify_all()
        gone = ClusterLostError(
            "the Dask executor was shut down while the activation waited",
            routine_id=None, executor=self.name,
        )
        for _, fut in waiting:
            fut.set_exception(gone)
        for dfut, items in inflight:
            for _, fut in items:
                if not fut.done():
                    fut.set_exception(gone)
            dfut.release()
        self._done.put(None)
        for t in self._threads:
            t.join(5.0 if wait else 0.5)
        self._threads = []
        if self._own_client and self._client is not None:
            self._client.close()

    # -- one activation --------------------------------------------------------------------------

    def run(self, request: ActivationRequest) -> ActivationOutcome:
        fut: concurrent.futures.Future[ActivationOutcome] = concurrent.futures.Future()
        with self._cv:
            if self._closed:
                raise ClusterLostError(
                    f"routine {request.routine_id!r}: the Dask executor is shut down",
                    routine_id=request.routine_id, executor=self.name,
                )
            self._pending.append((request, fut))
            n = len(self._pending)
            if n == 1 or n >= self.batch_size:
                self._cv.notify()
        while True:
            try:
                return fut.result(timeout=1.0)
            except concurrent.futures.TimeoutError:
                if self._cluster_gone():
                    raise self._lost(request, "the client lost its scheduler") from None

    def _cluster_gone(self) -> bool:
        client = self._client
        if client is None or self._closed:
            return True
        status = client.status
        if status == "running":
            self._not_running_since = None
            return False
        if status in _GONE:
            return True
        now = time.monotonic()
        if self._not_running_since is None:
            self._not_running_since = now
        return now - self._not_running_since > self.reconnect_timeout

    def _lost(self, request: ActivationRequest, why: str) -> ClusterLostError:
        return ClusterLostError(
            f"routine {request.routine_id!r}: the Dask cluster is unreachable ({why}); "
            "check the scheduler, or use on_cluster_lost='pause' to hold jobs until it is back",
            routine_id=request.routine_id, executor=self.name,
        )

    # -- batching ---------------------------------------------------------------------------------

    def _batcher(self) -> None:
        cv = self._cv
        pending = self._pending
        while True:
            with cv:
                while not pending and not self._closed:
                    cv.wait()
                if self._closed:
                    return
                # Nagle-like: with nothing in flight the first activation goes at once (no
                # added latency for a lone job); while tasks are out, wait for company.
                if len(pending) < self.batch_size and self.linger > 0 and self._inflight:
                    deadline = time.monotonic() + self.linger
                    while len(pending) < self.batch_size and not self._closed:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        cv.wait(remaining)
                    if self._closed:
                        return
                ready = list(pending)
                pending.clear()
            for batch in self._split(ready):
                self._submit(batch)

    def _split(self, ready: list[_Item]) -> list[list[_Item]]:
        """Cut the ready activations into tasks of at most ``batch_size``, and into at least
        as many tasks as the cluster has worker threads (when there are enough), so batching
        never leaves a thread idle while another runs a queue of activations."""
        n = len(ready)
        slots = self._worker_threads()
        tasks = max(-(-n // self.batch_size), min(n, slots))
        size = -(-n // tasks)
        return [ready[i : i + size] for i in range(0, n, size)]

    def _worker_threads(self) -> int:
        now = time.monotonic()
        if now - self._slots_checked > 1.0 and self.client.status == "running":
            self._slots_checked = now
            with contextlib.suppress(Exception):  # unreachable: submitting will say so
                self._slots = max(1, sum(self.client.nthreads().values()))
        return self._slots

    def _submit(self, batch: list[_Item]) -> None:
        requests = [req for req, _ in batch]
        key = f"{self._prefix}-{next(self._ids)}"
        try:
            dfut = self.client.submit(
                run_batch, requests, key=key, pure=False, **self.submit_options
            )
        except Exception as exc:
            self._fail(batch, exc)
            return
        with self._cv:
            if self._closed:
                dfut.release()
                return
            self._inflight[key] = (dfut, batch)
            self.batches += 1
            self.activations += len(batch)
        dfut.add_done_callback(self._done.put)

    def _collector(self) -> None:
        """Hand finished Dask tasks' outcomes to the waiting dispatchers.

        Tasks that finished meanwhile are fetched with one ``gather`` (one round trip to the
        workers for all of them, instead of one per task).
        """
        done_q = self._done
        while True:
            first = done_q.get()
            if first is None:
                return
            finished = [first]
            stop = False
            while not done_q.empty():
                nxt = done_q.get()
                if nxt is None:
                    stop = True
                    break
                finished.append(nxt)
            entries = []
            with self._cv:
                for dfut in finished:
                    entry = self._inflight.pop(dfut.key, None)
                    if entry is not None:
                        entries.append(entry)
            ok = [(dfut, batch) for dfut, batch in entries if dfut.status == "finished"]
            failed = [(dfut, batch) for dfut, batch in entries if dfut.status != "finished"]
            if ok:
                try:
                    results = self.client.gather([dfut for dfut, _ in ok])
                except BaseException:
                    failed.extend(ok)  # sort out one by one which of them failed
                else:
                    for (_, batch), outcomes in zip(ok, results, strict=True):
                        for (_, fut), outcome in zip(batch, outcomes, strict=True):
                            fut.set_result(outcome)
            for dfut, batch in failed:
                try:
                    outcomes = dfut.result()
                except BaseException as exc:
                    self._fail(batch, exc)
                else:
                    for (_, fut), outcome in zip(batch, outcomes, strict=True):
                        if not fut.done():
                            fut.set_result(outcome)
            for dfut, _ in entries:
                dfut.release()
            if stop:
                return

    def _fail(self, batch: list[_Item], exc: BaseException) -> None:
        """Resolve every activation of a failed Dask task with a typed error."""
        gone = self._cluster_gone() or (isinstance(exc, concurrent.futures.CancelledError) and (
            self._client is None or self._client.status != "running"
        ))
        what = f"{type(exc).__name__}: {exc}"
        _log.warning("dask.batch_failed", activations=len(batch), error=what, cluster_lost=gone)
        for req, fut in batch:
            err: ExecutorError
            if gone:
                err = self._lost(req, what)
            elif _is_worker_loss(exc):
                err = WorkerLostError(
                    f"routine {req.routine_id!r} (job {req.job_id}, attempt {req.attempt}): "
                    f"the Dask worker running the activation was lost ({what}); it may have "
                    "run partly, and its error handler decides whether it runs again",
                    routine_id=req.routine_id, executor=self.name,
                )
            else:
                err = ExecutorError(
                    f"routine {req.routine_id!r}: the Dask cluster could not run the "
                    f"activation ({what})",
                    routine_id=req.routine_id, executor=self.name,
                )
                err.__cause__ = exc
            if not fut.done():
                fut.set_exception(err)

    def __repr__(self) -> str:
        return (
            f"<DaskExecutor batch_size={self.batch_size} linger={self.linger:g} "
            f"client={self._client!r}>"
        )


def _is_worker_loss(exc: BaseException) -> bool:
    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker

    return isinstance(
        exc, KilledWorker | CommClosedError | OSError | concurrent.futures.CancelledError
    )
