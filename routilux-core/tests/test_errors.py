"""The one error hierarchy: every error is a RoutiluxError and the builtin a caller catches."""

from __future__ import annotations

import inspect

import pytest
import routilux.errors as errors_module
from routilux import Flow, JobStatus, Runtime
from routilux.activation_policies import custom_policy
from routilux.errors import (
    ActivationPolicyError,
    ClusterLostError,
    ConfigurationError,
    DuplicateRoutineError,
    EmitOutsideActivationError,
    EntryError,
    ExecutorError,
    FlowValidationError,
    IllegalTransitionError,
    JobNotAcceptingWorkError,
    JobTimeoutError,
    PauseTimeoutError,
    QueueFullError,
    RemoteLogicError,
    RoutiluxError,
    RoutineTimeoutError,
    RuntimeClosedError,
    SerializationError,
    StoreCorruptError,
    StoreError,
    StoreResumeError,
    StoreVersionError,
    UnknownEventError,
    UnknownFlowError,
    UnknownJobError,
    UnknownRoutineError,
    UnknownSlotError,
    UnknownTypeError,
    WiringError,
    WorkerLostError,
)

BUILTIN_OF = {
    ConfigurationError: ValueError,
    WiringError: ValueError,
    DuplicateRoutineError: ValueError,
    EntryError: ValueError,
    FlowValidationError: ValueError,
    SerializationError: ValueError,
    UnknownFlowError: LookupError,
    UnknownRoutineError: LookupError,
    UnknownSlotError: LookupError,
    UnknownEventError: LookupError,
    UnknownJobError: LookupError,
    UnknownTypeError: LookupError,
    IllegalTransitionError: RuntimeError,
    JobNotAcceptingWorkError: RuntimeError,
    QueueFullError: RuntimeError,
    ActivationPolicyError: RuntimeError,
    EmitOutsideActivationError: RuntimeError,
    RuntimeClosedError: RuntimeError,
    RoutineTimeoutError: TimeoutError,
    JobTimeoutError: TimeoutError,
    PauseTimeoutError: TimeoutError,
    StoreError: RuntimeError,
    StoreCorruptError: RuntimeError,
    StoreVersionError: RuntimeError,
    StoreResumeError: RuntimeError,
    ExecutorError: RuntimeError,
    WorkerLostError: RuntimeError,
    ClusterLostError: RuntimeError,
    RemoteLogicError: RuntimeError,
}


class TestHierarchy:
    def test_every_error_class_in_the_module_is_covered(self) -> None:
        defined = {
            obj
            for name, obj in vars(errors_module).items()
            if inspect.isclass(obj) and issubclass(obj, RoutiluxError) and not name.startswith("_")
        }
        assert defined - {RoutiluxError} == set(BUILTIN_OF)

    @pytest.mark.parametrize("cls", list(BUILTIN_OF), ids=lambda c: c.__name__)
    def test_error_is_routilux_error_and_builtin(self, cls: type[Exception]) -> None:
        assert issubclass(cls, RoutiluxError)
        assert issubclass(cls, BUILTIN_OF[cls])

    def test_routilux_error_is_an_exception(self) -> None:
        assert issubclass(RoutiluxError, Exception)

    def test_unknown_name_errors_print_their_message_not_a_key_repr(self) -> None:
        err = UnknownFlowError("no flow is registered under 'x'", flow="x")
        assert str(err) == "no flow is registered under 'x'"
        assert err.flow == "x"


class TestActivationPolicyFailure:
    def test_raising_policy_fails_job_with_activation_policy_error(
        self, runtime: Runtime, make_routine
    ) -> None:
        def predicate(queued, job_state):
            raise ZeroDivisionError("bad predicate")

        flow = Flow("policy-raises")
        flow.add_routine(make_routine(policy=custom_policy(predicate, name="explodes")), "r")
        state = runtime.exec(flow, entry_params={"x": 1})
        assert runtime.wait_job(state.job_id, timeout=5)
        assert state.status is JobStatus.FAILED
        assert state.error_type == "ActivationPolicyError"
        assert "'custom'" in state.error and "'r'" in state.error
        assert "ZeroDivisionError" in state.error
        failed = [rec for rec in state.history("r") if rec.status == "failed"]
        assert len(failed) == 1 and "ActivationPolicyError" in failed[0].error
        assert runtime.get_job_metrics(state.job_id)["routines"]["r"]["errors"] == 1

    def test_nothing_is_evaluated_after_the_policy_failure_stopped_the_job(
        self, runtime: Runtime, make_routine
    ) -> None:
        calls: list[str] = []

        def predicate(queued, job_state):
            calls.append("called")
            raise ValueError("bad predicate")

        flow = Flow("two-raising-roots")
        flow.add_routine(make_routine(policy=custom_policy(predicate)), "a")
        flow.add_routine(make_routine(policy=custom_policy(predicate)), "b")
        state = runtime.exec(flow, entry_params={"x": 1})
        assert runtime.wait_job(state.job_id, timeout=5)
        assert state.status is JobStatus.FAILED
        assert calls == ["called"]
        assert len([r for r in state.history() if r.status == "failed"]) == 1


class TestExecutorErrors:
    """Executor errors cross process boundaries (pickled by the engine) intact."""

    @pytest.mark.parametrize("cls", [ExecutorError, WorkerLostError, ClusterLostError])
    def test_they_pickle_with_their_context(self, cls: type[ExecutorError]) -> None:
        import pickle

        err = cls("worker gone", routine_id="fetch", executor="dask")
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is cls
        assert (str(back), back.routine_id, back.executor) == ("worker gone", "fetch", "dask")

    def test_remote_logic_error_keeps_the_remote_type(self) -> None:
        import pickle

        err = RemoteLogicError("boom", routine_id="r", executor="dask", remote_type="x.Y")
        back = pickle.loads(pickle.dumps(err))
        assert (back.remote_type, back.routine_id, str(back)) == ("x.Y", "r", "boom")
