"""The runtime's side of a remote executor: build requests, apply outcomes, react to a lost
cluster. Used by :meth:`routilux._job.Job.run_task` only when ``Runtime(executor=...)`` names
an executor other than the thread pool."""

from __future__ import annotations

import hashlib
import pickle
import threading
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

import structlog

from ._activation import Activation
from .errors import ClusterLostError, ConfigurationError, UnknownTypeError
from .executors import (
    ON_CLUSTER_LOST,
    ActivationRequest,
    Executor,
    ThreadExecutor,
    apply_ops,
    snapshot_view,
)
from .job_state import JobStatus

if TYPE_CHECKING:
    from ._context import ActivationContext
    from ._job import Job
    from ._plan import FlowPlan
    from .registry import TypeRegistry
    from .routine import Routine

__all__ = ["RemoteDispatch", "resolve_executor"]

_log = structlog.get_logger("routilux.executors")

Spec = tuple[str, str, dict[str, Any]]
"""``(routine type name, routine key, config)`` of one routine of a plan."""


def resolve_executor(spec: Any, registry: TypeRegistry) -> Executor | None:
    """The executor ``Runtime(executor=spec)`` asks for; None for the thread pool."""
    if spec is None:
        return None
    spec, _ = registry.executors.build(spec)
    if not isinstance(spec, Executor):
        raise ConfigurationError(
            "executor must be an Executor instance, a registered executor name or "
            f"(name, {{options}}), got {spec!r}"
        )
    if isinstance(spec, ThreadExecutor):
        return None
    if spec.on_cluster_lost not in ON_CLUSTER_LOST:
        raise ConfigurationError(
            f"executor {spec.name!r}: on_cluster_lost must be one of "
            f"{', '.join(ON_CLUSTER_LOST)}, got {spec.on_cluster_lost!r}"
        )
    return spec


class RemoteDispatch:
    """Runs activations through a remote :class:`~routilux.executors.Executor`."""

    __slots__ = ("_lock", "_specs", "executor", "registry")

    def __init__(self, executor: Executor, registry: TypeRegistry) -> None:
        self.executor = executor
        self.registry = registry
        self._lock = threading.Lock()
        self._specs: WeakKeyDictionary[FlowPlan, tuple[Spec, ...]] = WeakKeyDictionary()

    def specs(self, plan: FlowPlan) -> tuple[Spec, ...]:
        """What is shipped for each routine of ``plan``; ``ConfigurationError`` (naming every
        routine that cannot be rebuilt remotely) if any cannot."""
        specs = self._specs.get(plan)
        if specs is None:
            specs = self._build(plan)
            with self._lock:
                self._specs[plan] = specs
        return specs

    def _build(self, plan: FlowPlan) -> tuple[Spec, ...]:
        problems: list[str] = []
        specs: list[Spec] = []
        for rid, routine in zip(plan.routine_ids, plan.routines, strict=True):
            config = dict(routine.config)
            problem = self._rebuild_problem(routine, config)
            if problem is None:
                try:
                    blob = pickle.dumps(config, pickle.HIGHEST_PROTOCOL)
                except Exception as exc:
                    problem = f"its config does not pickle ({type(exc).__name__}: {exc})"
            if problem is not None:
                problems.append(f"routine {rid!r}: {problem}")
                continue
            digest = hashlib.blake2b(blob, digest_size=12).hexdigest()
            specs.append((routine.type_name, f"{routine.type_name}#{digest}", config))
        if problems:
            raise ConfigurationError(
                f"flow {plan.flow_id!r} cannot run on the {self.executor.name!r} executor, "
                "which rebuilds every routine from its registered type name and config on "
                "the remote side: " + "; ".join(problems)
            )
        return tuple(specs)

    def _rebuild_problem(self, routine: Routine, config: dict[str, Any]) -> str | None:
        """Why ``type(routine)() + set_config(**config)`` would not be the same routine."""
        from ._flow_document import _event_sig, _logic_key, _slot_sig
        from .routine import Routine

        cls = type(routine)
        if cls is Routine:
            return (
                "it is a plain Routine configured after construction (set_logic, add_slot...). "
                "Define a Routine subclass whose __init__ (no arguments) declares its slots, "
                "events and logic; per-instance values go in set_config"
            )
        if routine.is_async:
            return (
                "its logic is async (async def), and async routines run on the runtime's own "
                "event loop; a remote executor runs only regular logic. Make the logic a plain "
                "function, or run this flow without the executor"
            )
        try:
            registered = self.registry.routines.get(cls.type_name)
        except UnknownTypeError as exc:
            return str(exc)
        if registered is not cls:
            return (
                f"type name {cls.type_name!r} is registered for {registered.__module__}."
                f"{registered.__qualname__}, not for {cls.__module__}.{cls.__qualname__}; give "
                "the class its own type_name"
            )
        try:
            fresh = cls()
            if config:
                fresh.set_config(**config)
        except Exception as exc:
            return f"{cls.__qualname__}() with its config raised {type(exc).__name__}: {exc}"
        what = [
            name
            for name, sig in (("slots", _slot_sig), ("events", _event_sig))
            if sig(fresh) != sig(routine)
        ]
        if _logic_key(fresh.logic) != _logic_key(routine.logic):
            what.append("logic")
        if what:
            return (
                f"its {', '.join(what)} differ from what {cls.__qualname__}() with its config "
                "creates; declare slots, events and logic in the class's __init__ (per-instance "
                "values in set_config) instead of changing them after construction"
            )
        return None

    def run(self, job: Job, ri: int, act: Activation, ctx: ActivationContext) -> None:
        """Run one activation remotely, then apply what it did as if it had run here.

        State changes and outputs are applied first, then the emits are routed (so routines
        they start see the state), then the logic's exception, if any, is raised for the
        error handler.
        """
        plan = job.plan
        rtype, key, config = self.specs(plan)[ri]
        state = job.state
        with job.lock:
            view = snapshot_view(state)
        message = act.message
        request = ActivationRequest(
            job_id=job.job_id,
            flow_id=plan.flow_id,
            routine_id=plan.routine_ids[ri],
            routine_type=rtype,
            routine_key=key,
            config=config,
            slot_data=act.slot_data,
            message=dict(message) if message is not None else None,
            attempt=act.attempt,
            seq=act.seq,
            view=view,
            input_seqs=() if job.durable is None else job.durable.inputs_of(act),
            durable=job.durable is not None,
        )
        try:
            outcome = self.executor.run(request)
        except ClusterLostError as err:
            if self._cluster_lost(job, ri, act, err):
                return
            raise
        if outcome.changes_state:
            with job.lock, state._lock:
                for rid, ops in outcome.routine_states.items():
                    apply_ops(state.routine_states.setdefault(rid, {}), ops)
                if outcome.shared_data:
                    apply_ops(state.shared_data, outcome.shared_data)
                if outcome.shared_log:
                    state.shared_log.extend(outcome.shared_log)
                if outcome.outputs:
                    state.output_log.extend(outcome.outputs)
            handler = state.output_handler
            if handler is not None:
                for record in outcome.outputs:
                    handler(record)
        for event, payload in outcome.emits:
            job.emit(ri, event, payload, ctx)
        if outcome.error is not None:
            raise outcome.error

    def _cluster_lost(self, job: Job, ri: int, act: Activation, err: ClusterLostError) -> bool:
        """Fail the job (returns False: the caller re-raises) or pause it with the activation
        put back, as it never ran (returns True)."""
        rid = job.plan.routine_ids[ri]
        if self.executor.on_cluster_lost == "pause":
            with job.lock:
                if job.stopped:
                    return False
                act.abandoned = True  # run_task leaves it alone; its input goes back
                job.executing.discard(act)
                if act.timer is not None:
                    act.timer.cancel()
                job._unclaim_locked(
                    Activation(ri, act.slot_data, act.message, act.attempt, act.seq)
                )
                if not job.paused:
                    job.state._transition(JobStatus.PAUSED)
                    job.paused = True
                    job.pause_reason = "cluster_lost"
                    job._unsettle_locked()
                    if job.tracker is not None:
                        job.tracker.paused("cluster_lost")
                job._task_end_locked(ri)
            job.runtime._notify()
            _log.warning("job.paused_cluster_lost", job_id=job.job_id, routine=rid,
                         executor=self.executor.name, error=str(err))
            return True
        with job.lock:
            job._finish_locked(JobStatus.FAILED, err, rid)
        return False
