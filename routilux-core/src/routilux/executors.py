"""Where routine logic runs: the executor seam.

By default the runtime runs every activation's logic on its own worker threads (the thread
pool). An :class:`Executor` moves *only the logic* elsewhere, for example onto a Dask cluster
(``routilux-dask``). Everything else stays in the runtime process: queues, routing, activation
policies, error handling and retries, timers, the job state and any store.

For one activation the runtime sends an :class:`ActivationRequest`, plain data:

* the routine's **registered type name and configuration** (never the routine object, the
  flow or a closure): the executor's side rebuilds the routine with its class's parameterless
  constructor and ``set_config(**config)``, exactly as a flow file is loaded, so the class
  must be importable and registered there;
* the activation's input: ``slot_data`` (the consumed payloads), the policy message, the
  attempt number and sequence number;
* a snapshot of the **job-state view** logic may read: job and flow ids, status,
  ``entry_params``, ``routine_states``, ``shared_data``, ``shared_log`` and the execution
  history (pickled once, when the activation is sent).

Logic runs there against a :class:`~routilux.job_state.JobState` built from that view, with a
context that *captures* ``emit`` and ``send_output`` instead of routing them. It answers with
an :class:`ActivationOutcome`: the emitted payloads in order, the changes it made to routine
states, ``shared_data`` and ``shared_log`` (as merge operations, see :func:`diff_values`),
its outputs and its exception, if any. The runtime applies the changes, hands the outputs to
the job's ``output_handler``, routes the emits, then lets the error handler judge the
exception, so a flow written for the thread pool runs unchanged.

Executors are registered by name in ``registry.executors`` (the core registers
``"threads"``, the default) and chosen with ``Runtime(executor=...)``: an instance, a name or
``("name", {options})``.
"""

from __future__ import annotations

import pickle
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from ._activation import Activation
from ._context import CURRENT, ActivationContext
from .errors import (
    ConfigurationError,
    EmitOutsideActivationError,
    RemoteLogicError,
    UnknownEventError,
)
from .job_state import JobState, JobStatus

if TYPE_CHECKING:
    from .registry import TypeRegistry
    from .routine import Routine
    from .runtime import Runtime

__all__ = [
    "ON_CLUSTER_LOST",
    "ActivationOutcome",
    "ActivationRequest",
    "Executor",
    "ThreadExecutor",
    "apply_ops",
    "diff_values",
    "execute_request",
    "snapshot_view",
]

ON_CLUSTER_LOST = ("fail", "pause")
"""What a job does when its executor reports the cluster gone (``ClusterLostError``)."""

Op = tuple[Any, ...]
"""One change: ``("set", path, value)``, ``("del", path)``, ``("extend", path, items)`` or
``("dict", path)`` (make sure a dict is there)."""


# -- the contract -----------------------------------------------------------------------------


@attrs.frozen(kw_only=True, slots=True)
class ActivationRequest:
    """What an executor needs to run one activation remotely (plain, picklable data).

    Attributes:
        job_id, flow_id, routine_id: where the activation belongs.
        routine_type: the routine class's registered type name.
        routine_key: identifies (type, config) so the other side can cache the rebuilt
            routine; equal keys mean equal type and configuration.
        config: the routine's ``set_config`` values.
        slot_data: ``{slot: [payload, ...]}``, the activation's input.
        message: the activation policy's message (a dict, or None).
        attempt: 0 for a first run, n for the n-th retry.
        seq: the activation's sequence number in its job (stable across retries).
        view: the pickled job-state view (see :func:`_snapshot_view`).
        input_seqs: with a job store, the input payloads' sequence numbers in the store, so
            ``current_activation().idempotency_key`` is the same on the worker as it would be
            on the thread pool (and across a crash and resume); empty without a store.
        durable: whether the runtime records the job in a store.
    """

    job_id: str
    flow_id: str
    routine_id: str
    routine_type: str
    routine_key: str
    config: dict[str, Any]
    slot_data: dict[str, list[dict[str, Any]]]
    message: dict[str, Any] | None
    attempt: int
    seq: int
    view: bytes
    input_seqs: tuple[int, ...] = ()
    durable: bool = False


@attrs.frozen(kw_only=True, slots=True)
class ActivationOutcome:
    """What one remotely run activation did, for the runtime to apply.

    Attributes:
        emits: ``(event, payload)`` in emission order.
        routine_states: per routine id, the changes made to its state dict.
        shared_data: the changes made to ``shared_data``.
        shared_log: the records appended to ``shared_log``.
        outputs: the records sent with ``send_output`` (each as the thread pool would make it).
        error: the exception logic raised, or None.
        duration: seconds the logic ran.
        worker: where it ran (for logs and tests).
    """

    emits: list[tuple[str, dict[str, Any]]] = attrs.field(factory=list)
    routine_states: dict[str, list[Op]] = attrs.field(factory=dict)
    shared_data: list[Op] = attrs.field(factory=list)
    shared_log: list[Any] = attrs.field(factory=list)
    outputs: list[dict[str, Any]] = attrs.field(factory=list)
    error: BaseException | None = None
    duration: float = 0.0
    worker: str = ""

    @property
    def changes_state(self) -> bool:
        return bool(self.routine_states or self.shared_data or self.shared_log or self.outputs)


class Executor(ABC):
    """Runs activations' logic somewhere other than the runtime's threads.

    Subclasses implement :meth:`run`. The runtime's worker threads stay the dispatchers: each
    calls ``run`` for one activation and blocks until its outcome arrives, so
    ``thread_pool_size`` bounds the activations in flight (``dispatch_threads`` is the default
    size when the runtime is given none). ``run`` raises
    :class:`~routilux.errors.WorkerLostError` when the remote side went away mid-activation
    (the error handler may retry it) and :class:`~routilux.errors.ClusterLostError` when the
    whole cluster is unreachable (the job fails or pauses, per ``on_cluster_lost``).
    """

    name: ClassVar[str] = "executor"
    dispatch_threads: int | None = None
    on_cluster_lost: str = "fail"

    def start(self, runtime: Runtime) -> None:  # noqa: B027 (optional hook, no-op by default)
        """Called once by the runtime that uses this executor, before any activation."""

    @abstractmethod
    def run(self, request: ActivationRequest) -> ActivationOutcome:
        """Run ``request`` and return its outcome (blocking the calling dispatcher thread)."""

    def shutdown(self, wait: bool = True) -> None:  # noqa: B027 (optional hook, no-op by default)
        """Release connections and threads; called when the runtime shuts down."""


class ThreadExecutor(Executor):
    """The default: logic runs on the runtime's own worker threads (no request is built).

    ``Runtime(executor="threads")`` is the same as no executor at all; the runtime never calls
    :meth:`run` on it.
    """

    name = "threads"

    def run(self, request: ActivationRequest) -> ActivationOutcome:
        raise ConfigurationError("the thread executor runs logic in place; run() is not used")


# -- merging changes ----------------------------------------------------------------------------


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # values whose == raises (arrays...): treat as changed
        return False


def diff_values(old: Mapping[str, Any], new: Mapping[str, Any], path: tuple[Any, ...] = ()
                ) -> list[Op]:
    """The operations that turn dict ``old`` into ``new``, as fine-grained as possible.

    Nested dicts are compared key by key, a list that only grew becomes an ``extend`` of its
    new items, and a new list or dict is appended to / merged into whatever another writer
    created meanwhile, so changes made by activations running at the same time on different
    workers (two routines appending to one list, or writing different keys) merge instead of
    overwriting each other. Anything else is a ``set`` of the new value.
    """
    ops: list[Op] = []
    for key, value in new.items():
        where = (*path, key)
        if key not in old:
            # Created by this activation, but maybe by a concurrent one too: a new list is
            # appended to and a new dict merged into whatever is there by then.
            if isinstance(value, list):
                ops.append(("extend", where, value))
            elif isinstance(value, dict):
                ops.append(("dict", where))
                ops.extend(diff_values({}, value, where))
            else:
                ops.append(("set", where, value))
            continue
        before = old[key]
        if before is value or _equal(before, value):
            continue
        if isinstance(before, dict) and isinstance(value, dict):
            ops.extend(diff_values(before, value, where))
        elif (
            isinstance(before, list) and isinstance(value, list)
            and len(value) > len(before) and _equal(value[: len(before)], before)
        ):
            ops.append(("extend", where, value[len(before):]))
        else:
            ops.append(("set", where, value))
    for key in old:
        if key not in new:
            ops.append(("del", (*path, key)))
    return ops


def apply_ops(target: dict[str, Any], ops: list[Op]) -> None:
    """Apply :func:`diff_values` operations to ``target`` in place.

    A path whose parents are missing (or are no longer dicts because another activation
    replaced them) is created; an ``extend`` of something that is not a list sets the items.
    """
    for op in ops:
        kind, path = op[0], op[1]
        parent: Any = target
        for key in path[:-1]:
            nxt = parent.get(key)
            if not isinstance(nxt, dict):
                nxt = parent[key] = {}
            parent = nxt
        last = path[-1]
        if kind == "set":
            parent[last] = op[2]
        elif kind == "del":
            parent.pop(last, None)
        elif kind == "dict":
            if not isinstance(parent.get(last), dict):
                parent[last] = {}
        else:  # extend
            current = parent.get(last)
            if isinstance(current, list):
                current.extend(op[2])
            else:
                parent[last] = list(op[2])


# -- the remote side ----------------------------------------------------------------------------


def snapshot_view(state: JobState) -> bytes:
    """Pickle the part of ``state`` remote logic may read (call under the job's lock)."""
    return pickle.dumps(
        (
            state.status.value,
            state.entry_params,
            state.routine_states,
            state.shared_data,
            state.shared_log,
            list(state.execution_history),
        ),
        pickle.HIGHEST_PROTOCOL,
    )


class _Plan:
    """The little of a flow plan the activation context and ``current_activation`` read."""

    __slots__ = ("flow_id", "routine_ids")

    def __init__(self, flow_id: str, routine_id: str) -> None:
        self.flow_id = flow_id
        self.routine_ids = (routine_id,)


class _StoredInput:
    """On a worker, answers ``current_activation``'s question about a stored job's input."""

    __slots__ = ("seqs",)

    def __init__(self, seqs: tuple[int, ...]) -> None:
        self.seqs = seqs

    def inputs_of(self, act: Activation) -> tuple[int, ...]:
        return self.seqs


class _CapturingJob:
    """Stands in for the runtime's job on the remote side: captures emits and outputs."""

    __slots__ = ("durable", "emits", "events", "job_id", "plan", "routine", "state")

    def __init__(self, request: ActivationRequest, routine: Routine, state: JobState) -> None:
        self.job_id = request.job_id
        # Read by ``current_activation`` (the idempotency key names the stored input).
        self.durable = _StoredInput(request.input_seqs) if request.durable else None
        self.plan = _Plan(request.flow_id, request.routine_id)
        self.routine = routine
        self.state = state
        self.events = routine.events
        self.emits: list[tuple[str, dict[str, Any]]] = []

    def emit(self, ri: int, event: str, payload: dict[str, Any], ctx: Any) -> None:
        if event not in self.events:
            rid = self.plan.routine_ids[0]
            raise UnknownEventError(
                f"routine {rid!r} has no event {event!r} "
                f"(events: {', '.join(self.events) or 'none'})",
                routine_id=rid,
                event=event,
            )
        self.emits.append((event, payload))

    def emit_from(self, routine: Routine, event: str, payload: dict[str, Any], ctx: Any) -> None:
        raise EmitOutsideActivationError(
            f"{type(routine).__qualname__}.emit({event!r}) was called from the logic of "
            f"routine {self.plan.routine_ids[0]!r} on a remote worker; only the routine whose "
            "logic runs can emit there"
        )


_CACHE_SIZE = 256
"""Rebuilt routines kept per process on the remote side (least recently used beyond)."""

_routines: OrderedDict[str, Routine] = OrderedDict()
_routines_lock = threading.Lock()


def _routine_for(request: ActivationRequest, registry: TypeRegistry) -> Routine:
    with _routines_lock:
        routine = _routines.get(request.routine_key)
        if routine is not None:
            _routines.move_to_end(request.routine_key)
            return routine
    cls = registry.routines.get(request.routine_type)
    routine = cls()
    if request.config:
        routine.set_config(**request.config)
    with _routines_lock:
        _routines[request.routine_key] = routine
        while len(_routines) > _CACHE_SIZE:
            _routines.popitem(last=False)
    return routine


def _sendable(err: BaseException, request: ActivationRequest, executor: str) -> BaseException:
    """``err`` if it survives pickling, else a :class:`RemoteLogicError` describing it."""
    text = "".join(traceback.format_exception(err))
    try:
        err.add_note(f"[raised remotely, {executor}]\n{text}")
        try:
            pickle.loads(pickle.dumps(err))
        except Exception:
            # Engines may pickle tracebacks and chained exceptions too (distributed installs
            # tblib's support); those can hold anything. The note above keeps their text.
            err.__context__ = err.__cause__ = None
            err.__traceback__ = None
            pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return RemoteLogicError(
            f"routine {request.routine_id!r} raised {type(err).__name__}: {err} (on a remote "
            f"worker; the exception could not be sent back as itself)\n{text}",
            routine_id=request.routine_id,
            executor=executor,
            remote_type=f"{type(err).__module__}.{type(err).__qualname__}",
        )


def execute_request(
    request: ActivationRequest, registry: TypeRegistry | None = None, *, executor: str = "remote",
    worker: str = "",
) -> ActivationOutcome:
    """Run one activation on this process (the remote side of an executor).

    Rebuilds the routine from ``registry`` (default: the process-wide registry with the
    installed packs), runs its logic with a context that captures emits and outputs against a
    job state built from the request's view, and returns what changed. Never raises for a
    failure of the logic (it is in ``outcome.error``); an unknown type name is reported the
    same way, naming what to install or import on the worker.
    """
    if registry is None:
        from .registry import default_types

        registry = default_types()
    status, entry, rstates, shared, log, history = pickle.loads(request.view)
    _, _, before_states, before_shared, before_log, _ = pickle.loads(request.view)
    log_len = len(before_log)
    state = JobState(
        flow_id=request.flow_id,
        job_id=request.job_id,
        status=JobStatus(status),
        entry_params=entry,
        routine_states=rstates,
        shared_data=shared,
        shared_log=log,
        execution_history=deque(history, maxlen=max(len(history), 1)),
    )
    try:
        routine = _routine_for(request, registry)
    except Exception as exc:
        note = (
            f"routine {request.routine_id!r} could not be rebuilt on {executor} worker "
            f"{worker or '?'}: {type(exc).__name__}: {exc} (the workers must import the "
            "module that defines it: install its pack there, or have the executor preload it)"
        )
        return ActivationOutcome(
            error=_sendable(ConfigurationError(note), request, executor), worker=worker
        )
    logic = routine.logic
    job = _CapturingJob(request, routine, state)
    ctx = ActivationContext(job, 0, routine)  # type: ignore[arg-type]
    ctx.activation = Activation(0, request.slot_data, request.message, request.attempt,
                                request.seq)
    token = CURRENT.set(ctx)
    err: BaseException | None = None
    t0 = time.perf_counter()
    try:
        if logic is None:
            raise ConfigurationError(
                f"routine {request.routine_id!r} ({request.routine_type}) has no logic"
            )
        logic(request.slot_data, request.message, state)  # type: ignore[arg-type]
    except BaseException as exc:
        err = _sendable(exc, request, executor)
    finally:
        CURRENT.reset(token)
    duration = time.perf_counter() - t0
    changed_states: dict[str, list[Op]] = {}
    for rid, now in state.routine_states.items():
        ops = diff_values(before_states.get(rid, {}), now)
        if ops:
            changed_states[rid] = ops
    return ActivationOutcome(
        emits=job.emits,
        routine_states=changed_states,
        shared_data=diff_values(before_shared, state.shared_data),
        shared_log=list(state.shared_log[log_len:]),
        outputs=list(state.output_log),
        error=err,
        duration=duration,
        worker=worker,
    )

