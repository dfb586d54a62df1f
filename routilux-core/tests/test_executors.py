"""The executor seam: activations handed to an Executor, outcomes applied by the runtime.

An in-process executor that pickles every request and outcome (as a remote engine would)
stands in for a cluster, so the seam's semantics are tested fast and without Dask; the Dask
executor has its own tests against a real LocalCluster (routilux-plugins/routilux-dask).
"""

from __future__ import annotations

import copy
import pickle
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from routilux import (
    ErrorHandler,
    ErrorStrategy,
    Flow,
    JobStatus,
    Routine,
    Runtime,
    current_activation,
    hookimpl,
)
from routilux.errors import (
    ClusterLostError,
    ConfigurationError,
    UnknownTypeError,
    WorkerLostError,
)
from routilux.executors import (
    ActivationOutcome,
    ActivationRequest,
    Executor,
    apply_ops,
    diff_values,
    execute_request,
)


class Writer(Routine):
    """Writes to every part of the job state and forwards ``n`` on ``out``."""

    type_name = "test_executors.Writer"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("out", ["n", "seen", "thread"])
        self.set_config(tag="w")
        self.set_logic(self._run)

    def _run(self, slot_data: Any, message: Any, job_state: Any) -> None:
        info = current_activation()
        assert info is not None
        tag = self.get_config("tag")
        for p in slot_data["input"]:
            seen = job_state.shared_data.get("items", [])[:]
            job_state.update_routine_state(info.routine_id, {"last": p["n"], "tag": tag})
            job_state.shared_data.setdefault("items", []).append(f"{tag}{p['n']}")
            job_state.shared_data.setdefault("by_tag", {})[tag] = p["n"]
            job_state.shared_log.append((tag, p["n"]))
            self.send_output("wrote", tag=tag, n=p["n"])
            self.emit("out", n=p["n"], seen=seen, thread=threading.current_thread().name)


class FailFirst(Routine):
    """Raises ``KeyError`` on its first attempt, emits on later ones."""

    type_name = "test_executors.FailFirst"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("out", ["attempt"])
        self.set_logic(self._run)

    def _run(self, slot_data: Any, message: Any, job_state: Any) -> None:
        info = current_activation()
        assert info is not None
        if info.attempt == 0:
            raise KeyError("first attempt fails")
        self.emit("out", attempt=info.attempt)


class KeyRecorder(Routine):
    """Records its activation's idempotency key in its routine state, forwards ``n``."""

    type_name = "test_executors.KeyRecorder"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("out", ["n"])
        self.set_logic(self._run)

    def _run(self, slot_data: Any, message: Any, job_state: Any) -> None:
        info = current_activation()
        assert info is not None
        job_state.update_routine_state(info.routine_id, {"key": info.idempotency_key})
        for p in slot_data["input"]:
            self.emit("out", n=p["n"])


class PickleExecutor(Executor):
    """Runs requests in this process, but only through pickled requests and outcomes."""

    name = "pickle"

    def __init__(self, on_cluster_lost: str = "fail") -> None:
        self.on_cluster_lost = on_cluster_lost
        self.requests: list[ActivationRequest] = []
        self.failures: list[BaseException] = []
        self.started: list[Any] = []
        self.stopped = 0
        self.lock = threading.Lock()

    def start(self, runtime: Any) -> None:
        self.started.append(runtime)

    def shutdown(self, wait: bool = True) -> None:
        self.stopped += 1

    def run(self, request: ActivationRequest) -> ActivationOutcome:
        with self.lock:
            self.requests.append(request)
            failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        shipped = pickle.loads(pickle.dumps(request))
        outcome = execute_request(shipped, executor=self.name, worker="in-process")
        result: ActivationOutcome = pickle.loads(pickle.dumps(outcome))
        return result


def chain(flow_id: str = "chain") -> Flow:
    flow = Flow(flow_id=flow_id)
    a, b = Writer(), Writer()
    a.set_config(tag="a")
    b.set_config(tag="b")
    flow.add_routine(a, "a")
    flow.add_routine(b, "b")
    flow.connect("a", "out", "b", "input")
    return flow


def run(rt: Runtime, flow: Flow, entry: dict[str, Any]) -> Any:
    js = rt.exec(flow, entry_params=entry)
    assert rt.wait_job(js.job_id, 30)
    return js


# -- merging --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=3), inner, max_size=4),
    max_leaves=12,
)
dicts = st.dictionaries(st.text(max_size=3), json_values, max_size=5)


class TestDiff:
    @given(dicts, dicts)
    def test_applying_the_diff_turns_old_into_new(self, old: dict[str, Any],
                                                 new: dict[str, Any]) -> None:
        target = copy.deepcopy(old)
        apply_ops(target, diff_values(old, new))
        assert target == new

    @given(st.lists(st.integers(), max_size=5), st.lists(st.integers(), max_size=5),
           st.lists(st.integers(), max_size=5))
    def test_concurrent_appends_to_one_list_both_land(
        self, base: list[int], mine: list[int], theirs: list[int]
    ) -> None:
        old = {"log": base, "n": {"x": 1}}
        a = diff_values(old, {"log": base + mine, "n": {"x": 1, "a": 1}})
        b = diff_values(old, {"log": base + theirs, "n": {"x": 1, "b": 2}})
        live = copy.deepcopy(old)
        apply_ops(live, a)
        apply_ops(live, b)
        assert live == {"log": base + mine + theirs, "n": {"x": 1, "a": 1, "b": 2}}


# -- the seam -------------------------------------------------------------------------------


class TestRemoteRun:
    def test_results_match_the_thread_pool(self) -> None:
        with Runtime(thread_pool_size=2) as rt:
            local = run(rt, chain(), {"n": 1})
        ex = PickleExecutor()
        with Runtime(thread_pool_size=2, executor=ex) as rt:
            remote = run(rt, chain(), {"n": 1})
        assert remote.status is local.status is JobStatus.COMPLETED
        for attr in ("shared_data", "shared_log", "routine_states"):
            assert getattr(remote, attr) == getattr(local, attr), attr
        strip = [{k: v for k, v in r.items() if k != "timestamp"} for r in remote.output_log]
        assert strip == [{k: v for k, v in r.items() if k != "timestamp"}
                         for r in local.output_log]
        assert [r.routine_id for r in remote.history()] == ["a", "b"]
        assert [r.routine_id for r in ex.requests] == ["a", "b"]

    def test_with_a_store_the_worker_sees_the_stored_idempotency_key(self, tmp_path: Any) -> None:
        """The key names the stored input on the worker exactly as on the thread pool."""
        from routilux.store import SqliteJobStore

        def keys(executor: Any, name: str) -> dict[str, str]:
            flow = Flow(flow_id="keys")
            flow.add_routine(KeyRecorder(), "a")
            flow.add_routine(KeyRecorder(), "b")
            flow.connect("a", "out", "b", "input")
            with SqliteJobStore(tmp_path / f"{name}.db") as store, Runtime(
                thread_pool_size=2, executor=executor, store=store
            ) as rt:
                js = run(rt, flow, {"n": 1})
            assert js.status is JobStatus.COMPLETED
            return {rid: st["key"].replace(js.job_id, "JOB")
                    for rid, st in js.routine_states.items()}

        local = keys(None, "local")
        assert local["b"].startswith("JOB:b:in-")
        assert keys(PickleExecutor(), "remote") == local

    def test_logic_sees_state_written_by_earlier_activations(self) -> None:
        got: list[dict[str, Any]] = []
        ex = PickleExecutor()
        with Runtime(thread_pool_size=2, executor=ex) as rt:
            # The handler is set before any logic can run (a worker may run ``a`` as soon
            # as the entry is delivered, before ``exec`` returns): the entry is posted.
            flow = chain()
            js = rt.exec(flow, keep_open=True)
            js.output_handler = got.append  # outputs are handed over in this process
            rt.post(flow, "a", "input", {"n": 7}, job_id=js.job_id)
            assert rt.wait_job(js.job_id, 30)
            assert rt.complete_job(js.job_id)
        assert js.shared_data == {"items": ["a7", "b7"], "by_tag": {"a": 7, "b": 7}}
        assert js.routine_states == {"a": {"last": 7, "tag": "a"}, "b": {"last": 7, "tag": "b"}}
        assert [r["data"] for r in got] == [{"tag": "a", "n": 7}, {"tag": "b", "n": 7}]
        second = ex.requests[1]
        assert pickle.loads(second.view)[3] == {"items": ["a7"], "by_tag": {"a": 7}}
        assert second.routine_type == "test_executors.Writer"
        assert second.config == {"tag": "b"}

    def test_the_default_executor_adds_no_dispatch(self) -> None:
        with Runtime(thread_pool_size=1, executor="threads") as rt:
            assert rt._remote is None
            js = run(rt, chain(), {"n": 1})
        assert js.status is JobStatus.COMPLETED

    def test_remote_exceptions_keep_their_type_for_the_error_handler(self) -> None:
        flow = Flow(flow_id="retry")
        r = FailFirst()
        r.set_error_handler(ErrorHandler(strategy=ErrorStrategy.RETRY, max_retries=2,
                                         retry_delay=0.01, retryable_exceptions=(KeyError,)))
        flow.add_routine(r, "r")
        with Runtime(thread_pool_size=2, executor=PickleExecutor()) as rt:
            js = run(rt, flow, {"x": 1})
        assert js.status is JobStatus.COMPLETED
        statuses = [(h.status, h.attempt) for h in js.history("r")]
        assert statuses == [("retrying", 0), ("completed", 1)]
        assert js.history("r")[0].error.startswith("KeyError")

    def test_a_routine_that_cannot_be_rebuilt_is_refused_at_exec(self) -> None:
        flow = Flow(flow_id="plain")
        plain = Routine()
        plain.add_slot("input")
        plain.set_logic(lambda s, m, j: None)
        flow.add_routine(plain, "adhoc")
        with Runtime(thread_pool_size=1, executor=PickleExecutor()) as rt, \
                pytest.raises(ConfigurationError, match=r"'adhoc'.*plain Routine"):
            rt.exec(flow, entry_params={})

    def test_executor_is_started_and_shut_down_with_the_runtime(self) -> None:
        ex = PickleExecutor()
        rt = Runtime(thread_pool_size=1, executor=ex)
        assert ex.started == [rt]
        rt.shutdown()
        assert ex.stopped == 1


class TestFailures:
    def retrying(self) -> Flow:
        flow = Flow(flow_id="lossy")
        w = Writer()
        w.set_error_handler(ErrorHandler(strategy=ErrorStrategy.RETRY, max_retries=2,
                                         retry_delay=0.01))
        flow.add_routine(w, "w")
        return flow

    def lost(self) -> WorkerLostError:
        return WorkerLostError("worker gone", routine_id="w", executor="pickle")

    def test_a_lost_worker_is_retried_per_the_error_handler(self) -> None:
        ex = PickleExecutor()
        ex.failures.append(self.lost())
        with Runtime(thread_pool_size=1, executor=ex) as rt:
            js = run(rt, self.retrying(), {"n": 1})
        assert js.status is JobStatus.COMPLETED
        assert [h.status for h in js.history("w")] == ["retrying", "completed"]
        assert "WorkerLostError" in (js.history("w")[0].error or "")
        assert js.shared_data["items"] == ["w1"]  # the lost attempt changed nothing

    def test_a_lost_worker_without_retry_fails_the_job_with_the_typed_error(self) -> None:
        ex = PickleExecutor()
        ex.failures.append(self.lost())
        with Runtime(thread_pool_size=1, executor=ex) as rt:
            js = run(rt, chain(), {"n": 1})
        assert js.status is JobStatus.FAILED
        assert js.error_type == "WorkerLostError"

    def test_cluster_lost_fails_the_job_whatever_its_error_strategy(self) -> None:
        ex = PickleExecutor(on_cluster_lost="fail")
        ex.failures.append(ClusterLostError("gone", routine_id="w", executor="pickle"))
        with Runtime(thread_pool_size=1, executor=ex) as rt:
            js = run(rt, self.retrying(), {"n": 1})
        assert js.status is JobStatus.FAILED
        assert js.error_type == "ClusterLostError"
        assert len(ex.requests) == 1  # no retry was attempted

    def test_cluster_lost_pauses_the_job_and_resume_runs_the_input_once(self) -> None:
        ex = PickleExecutor(on_cluster_lost="pause")
        ex.failures.append(ClusterLostError("gone", routine_id="a", executor="pickle"))
        with Runtime(thread_pool_size=2, executor=ex) as rt:
            js = rt.exec(chain(), entry_params={"n": 3})
            assert not rt.wait_job(js.job_id, 0.3)  # paused jobs are not settled
            assert js.status is JobStatus.PAUSED
            assert js.to_dict()["pending"] == {"a": {"input": [{"n": 3}]}}
            assert js.history() == []
            assert rt.resume_job(js.job_id)
            assert rt.wait_job(js.job_id, 30)
        assert js.status is JobStatus.COMPLETED
        assert js.shared_data["items"] == ["a3", "b3"]


    def test_with_a_store_a_lost_cluster_pauses_and_the_store_keeps_the_input_queued(
        self, tmp_path: Any
    ) -> None:
        """The seam of remote executors and the store: the input given back at a lost
        cluster stays one queued row (not consumed, not held), and after resume it is
        consumed once; a remote retry under a store leaves nothing behind."""
        from routilux.store import SqliteJobStore

        ex = PickleExecutor(on_cluster_lost="pause")
        ex.failures.append(ClusterLostError("gone", routine_id="a", executor="pickle"))
        flow = chain("chain_lost_store")
        retry = FailFirst()
        retry.set_error_handler(ErrorHandler(strategy=ErrorStrategy.RETRY, max_retries=1,
                                             retry_delay=0.0))
        flow.add_routine(retry, "f")
        flow.connect("b", "out", "f", "input")
        with SqliteJobStore(tmp_path / "s.db") as store, Runtime(
            thread_pool_size=2, executor=ex, store=store
        ) as rt:
            js = rt.exec(flow, entry_params={"n": 3}, keep_open=True)
            assert not rt.wait_job(js.job_id, 0.3)
            assert js.status is JobStatus.PAUSED
            store.flush()
            snap = store.load_job(js.job_id)
            assert [(p.routine_id, p.held_by) for p in snap.payloads] == [("a", None)]
            assert rt.resume_job(js.job_id)
            assert rt.wait_job(js.job_id, 30)
            assert js.status is JobStatus.IDLE, js.error
            store.flush()
            snap = store.load_job(js.job_id)
            assert snap.payloads == () and snap.held == ()
            assert [(a.routine_id, a.outcome) for a in store.activations(js.job_id)] == [
                ("a", "completed"), ("b", "completed"), ("f", "retry"), ("f", "completed")]
            assert rt.complete_job(js.job_id)
        assert js.shared_data["items"] == ["a3", "b3"]


class TestChoosingAnExecutor:
    def test_unknown_names_are_typed_errors(self) -> None:
        with pytest.raises(UnknownTypeError, match="nope"):
            Runtime(executor=("nope", {}))

    def test_bad_values_are_refused(self) -> None:
        with pytest.raises(ConfigurationError, match="executor must be"):
            Runtime(executor=42)
        with pytest.raises(ConfigurationError, match="on_cluster_lost"):
            Runtime(executor=PickleExecutor(on_cluster_lost="explode"))

    def test_a_plugin_registers_an_executor_by_name(self) -> None:
        made: list[PickleExecutor] = []

        class Pack:
            @hookimpl
            def routilux_register_types(self, registry: Any) -> None:
                def factory(**options: Any) -> PickleExecutor:
                    made.append(PickleExecutor(**options))
                    return made[-1]

                registry.executors.register("pickle", factory)

        with Runtime(thread_pool_size=1, plugins=[Pack()],
                     executor=("pickle", {"on_cluster_lost": "pause"})) as rt:
            js = run(rt, chain(), {"n": 2})
        assert js.status is JobStatus.COMPLETED
        assert made[0].on_cluster_lost == "pause"
        assert len(made[0].requests) == 2


class TestDiffCreation:
    def test_lists_and_dicts_created_concurrently_merge(self) -> None:
        old: dict[str, Any] = {"other": 1}
        first = diff_values(old, {"other": 1, "items": [1], "counts": {"a": 1}})
        second = diff_values(old, {"other": 1, "items": [2], "counts": {"b": 1}})
        live = copy.deepcopy(old)
        apply_ops(live, first)
        apply_ops(live, second)
        assert live == {"other": 1, "items": [1, 2], "counts": {"a": 1, "b": 1}}


class AsyncRoutine(Routine):
    type_name = "test_executors.AsyncRoutine"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")

        async def logic(slot_data: Any, message: Any, job_state: Any) -> None:
            return None

        self.set_logic(logic)


class TestAsyncRoutines:
    def test_a_remote_executor_refuses_async_routines_at_exec(self) -> None:
        flow = Flow(flow_id="async_remote")
        flow.add_routine(AsyncRoutine(), "aio")
        with Runtime(thread_pool_size=1, executor=PickleExecutor()) as rt, \
                pytest.raises(ConfigurationError, match=r"'aio'.*async"):
            rt.exec(flow, entry_params={})
