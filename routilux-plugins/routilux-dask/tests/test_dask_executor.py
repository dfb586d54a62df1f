"""The Dask executor against a real ``distributed.LocalCluster`` with worker processes.

One cluster (2 worker processes, 1 thread each) serves the whole module. Workers are started
through a fork server (``distributed.worker.multiprocessing-method``): a fresh interpreter,
like ``spawn`` (nothing of this process leaks into them, so routines really are rebuilt from
what the workers import), but a restarted worker comes up in well under a second.
``allowed-failures`` is 0 so a worker killed mid-task surfaces at once as ``KilledWorker``,
which the executor maps to ``WorkerLostError`` for the routine's error handler to retry.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import pytest
from distributed import Client, LocalCluster
from routilux import ErrorHandler, ErrorStrategy, Flow, JobState, JobStatus, Routine, Runtime
from routilux.errors import ConfigurationError, UnknownTypeError, WorkerLostError
from routilux_dask import DaskExecutor
from routilux_dask._worker import load_file
from routilux_dask.testing import HoldOnFirstAttempt, StateWriter
from routilux_testing import wait_for

# Sockets left for the garbage collector (distributed's connection pool after a worker is
# killed, and the API example's HTTPError responses) are reported as ResourceWarnings at some
# later, unrelated line; they say nothing about the behaviour under test.
pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

ROOT = Path(__file__).resolve().parents[3]
ETL = ROOT / "examples" / "etl" / "flow.py"
API = ROOT / "examples" / "api_orchestration" / "flow.py"
TESTING = "routilux_dask.testing"
"""Workers import only what they are told to: the test routines' module is preloaded."""


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    config = dask.config.set({
        "distributed.scheduler.allowed-failures": 0,
        "distributed.worker.multiprocessing-method": "forkserver",
    })
    with config:
        cluster = LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0",
        )
        c = Client(cluster, set_as_default=False)
        try:
            yield c
        finally:
            c.close()
            cluster.close()


def run(rt: Runtime, flow: Flow, entry: dict[str, Any], timeout: float = 30) -> JobState:
    js = rt.exec(flow, entry_params=entry)
    assert rt.wait_job(js.job_id, timeout), f"job {js.job_id} did not finish: {js.status}"
    return js


def untimed(value: Any) -> Any:
    """``value`` without timestamps and the report path (they differ between two runs)."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k not in ("recorded_at", "report")}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def counts(rt: Runtime, js: JobState) -> dict[str, tuple[int, ...]]:
    """Per routine: payloads in and out, retries, skips, errors (the number of activations
    of a routine whose policy drains whatever is queued depends on timing, these do not)."""
    routines = rt.get_job_metrics(js.job_id)["routines"]
    return {
        rid: (m["payloads_in"], m["payloads_out"], m["retries"], m["skipped"], m["errors"])
        for rid, m in routines.items()
    }


class TestSameResultsAsTheThreadPool:
    def test_etl_example(self, client: Client, tmp_path: Path) -> None:
        etl = load_file(str(ETL))
        with Runtime(thread_pool_size=4) as rt:
            local = run(rt, etl.flow, {"report": str(tmp_path / "local.json")})
            local_counts = counts(rt, local)
        ex = DaskExecutor(client, preload=[str(ETL)])
        with Runtime(executor=ex) as rt:
            remote = run(rt, etl.flow, {"report": str(tmp_path / "remote.json")}, 60)
            remote_counts = counts(rt, remote)
        assert local.status is remote.status is JobStatus.COMPLETED
        local_report = json.loads((tmp_path / "local.json").read_text())
        remote_report = json.loads((tmp_path / "remote.json").read_text())
        assert remote_report == local_report
        assert local_report["orders"] > 0 and local_report["rejected"]
        assert local_report["skipped_lines"] > 0  # read from the history shipped remotely
        assert remote_counts == local_counts
        assert untimed(remote.shared_data) == untimed(local.shared_data)
        assert [o["data"]["revenue"] for o in remote.output_log] == [
            o["data"]["revenue"] for o in local.output_log
        ]
        assert ex.activations >= len(remote.history())

    def test_api_orchestration_example_with_remote_retries(self, client: Client) -> None:
        api = load_file(str(API))
        with Runtime(thread_pool_size=4) as rt:
            local = run(rt, api.build_flow(), {"user_id": 1})
            local_counts = counts(rt, local)
        ex = DaskExecutor(client, preload=[str(API)])
        with Runtime(executor=ex) as rt:
            remote = run(rt, api.build_flow(), {"user_id": 1}, 60)
            remote_counts = counts(rt, remote)
        assert local.status is remote.status is JobStatus.COMPLETED
        assert remote.shared_data["result"] == local.shared_data["result"]
        assert remote.shared_data["result"]["user"] == "Ada Lovelace"
        # ConnectionError raised on a worker came back as itself and was retried here
        assert remote_counts == local_counts
        retried = [(r.routine_id, r.attempt) for r in remote.history() if r.status == "retrying"]
        assert sorted(retried) == [("orders", 0), ("recommendations", 0), ("recommendations", 1)]


class TestRemoteState:
    def test_state_changes_made_remotely_are_in_the_job_state(self, client: Client) -> None:
        flow = Flow(flow_id="state")
        a, b = StateWriter(), StateWriter()
        a.set_config(tag="a")
        b.set_config(tag="b")
        flow.add_routine(a, "a")
        flow.add_routine(b, "b")
        flow.connect("a", "out", "b", "input")
        outputs: list[dict[str, Any]] = []
        with Runtime(executor=DaskExecutor(client, preload=[TESTING])) as rt:
            js = rt.exec(flow, entry_params={"n": 5})
            js.output_handler = outputs.append
            assert rt.wait_job(js.job_id, 30)
        assert js.status is JobStatus.COMPLETED, js.error
        worker_pids = set(client.run(os.getpid).values())
        pids = {rid: st.pop("pid") for rid, st in js.routine_states.items()}
        assert set(pids.values()) <= worker_pids and os.getpid() not in worker_pids
        assert js.routine_states == {"a": {"seen": [5], "last": 5},
                                     "b": {"seen": [5], "last": 5}}
        assert js.shared_data == {"a:items": [5], "b:items": [5], "counts": {"a": 1, "b": 1}}
        assert js.shared_log == ["a:5", "b:5"]
        assert [(o["routine_id"], o["data"]) for o in outputs] == [
            ("a", {"n": 5, "routine": "a"}), ("b", {"n": 5, "routine": "b"})
        ]
        assert js.output_log == outputs

    def test_logic_runs_on_the_workers_and_concurrent_appends_merge(
        self, client: Client
    ) -> None:
        flow = Flow(flow_id="fan")
        src = StateWriter()
        src.set_config(tag="src")
        flow.add_routine(src, "src")

        for k in range(4):
            w = StateWriter()
            w.set_config(tag="same")  # all four append to shared_data["same:items"]
            flow.add_routine(w, f"w{k}")
            flow.connect("src", "out", f"w{k}", "input")
        with Runtime(executor=DaskExecutor(client, linger=0.0, preload=[TESTING])) as rt:
            jobs = [rt.exec(flow, entry_params={"n": n}) for n in range(10)]
            assert rt.wait_until_all_jobs_finished(60)
        worker_pids = set(client.run(os.getpid).values())
        for n, js in enumerate(jobs):
            assert js.status is JobStatus.COMPLETED, js.error
            assert js.shared_data["same:items"] == [n] * 4
            assert sorted(js.shared_log) == sorted([f"src:{n}"] + [f"same:{n}"] * 4)
            assert set(js.routine_states) == {"src", "w0", "w1", "w2", "w3"}
            pids = {st["pid"] for st in js.routine_states.values()}
            assert pids <= worker_pids
        assert os.getpid() not in worker_pids


class TestWorkerLoss:
    def test_a_worker_killed_mid_activation_is_retried_and_the_job_completes(
        self, client: Client, tmp_path: Path
    ) -> None:
        marker = tmp_path / "holding.pid"
        flow = Flow(flow_id="kill")
        hold = HoldOnFirstAttempt()
        hold.set_config(marker=str(marker), hold=60.0)
        hold.set_error_handler(ErrorHandler(
            strategy=ErrorStrategy.RETRY, max_retries=3, retry_delay=0.05,
            retryable_exceptions=(WorkerLostError,),
        ))
        flow.add_routine(hold, "hold")
        after = StateWriter()
        flow.add_routine(after, "after")
        flow.connect("hold", "done", "after", "input")
        with Runtime(executor=DaskExecutor(client, preload=[TESTING])) as rt:
            js = rt.exec(flow, entry_params={"n": 1, "hold": True})
            assert wait_for(lambda: marker.exists() and marker.read_text() != "",
                            "the activation to start on a worker", timeout=60)
            pid = int(marker.read_text())
            assert pid in client.run(os.getpid).values()
            os.kill(pid, signal.SIGKILL)
            assert rt.wait_job(js.job_id, 90)
        assert js.status is JobStatus.COMPLETED, js.error
        hist = [(r.routine_id, r.status, r.attempt) for r in js.history()]
        assert hist == [("hold", "retrying", 0), ("hold", "completed", 1),
                        ("after", "completed", 0)]
        assert "WorkerLostError" in (js.history("hold")[0].error or "")
        assert js.shared_log == ["w:1"]  # the retried activation's emit, routed once


class TestConfiguration:
    def test_plugin_discovery_registers_dask_without_importing_distributed(self) -> None:
        code = (
            "import sys\n"
            "from routilux.plugins import get_plugin_manager\n"
            "registry = get_plugin_manager().registry\n"
            "print('dask' in registry.executors, 'distributed' in sys.modules)\n"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60, check=False)
        assert proc.stdout.split() == ["True", "False"], proc.stderr

    def test_the_executor_is_registered_by_name(self, client: Client) -> None:
        address = client.scheduler.address
        options = {"address": address, "batch_size": 8, "preload": [TESTING]}
        with Runtime(executor=("dask", options)) as rt:
            ex = rt._remote.executor if rt._remote is not None else None
            assert isinstance(ex, DaskExecutor)
            assert ex.batch_size == 8
            flow = Flow(flow_id="named")
            flow.add_routine(StateWriter(), "w")
            js = run(rt, flow, {"n": 2})
        assert js.shared_data["w:items"] == [2]

    def test_bad_options_are_refused(self) -> None:
        with pytest.raises(ConfigurationError, match="batch_size"):
            DaskExecutor(batch_size=0)
        with pytest.raises(ConfigurationError, match="on_cluster_lost"):
            DaskExecutor(on_cluster_lost="retry")
        with pytest.raises(ConfigurationError, match="no file"):
            DaskExecutor(preload=["/nonexistent/flow.py"])
        with pytest.raises(ConfigurationError, match="Client"):
            DaskExecutor(42)  # type: ignore[arg-type]

    def test_a_routine_type_unknown_on_the_workers_fails_with_a_clear_error(
        self, client: Client
    ) -> None:
        class OnlyHere(Routine):
            type_name = "dask.tests.OnlyHere"

            def __init__(self) -> None:
                super().__init__()
                self.add_slot("input")
                self.set_logic(lambda slot_data, message, job_state: None)

        flow = Flow(flow_id="unknown")
        flow.add_routine(OnlyHere(), "here")
        with Runtime(executor=DaskExecutor(client, preload=[TESTING])) as rt:
            js = run(rt, flow, {})
        assert js.status is JobStatus.FAILED
        assert js.error_type == "ConfigurationError"
        assert "dask.tests.OnlyHere" in (js.error or "")
        assert "preload" in (js.error or "")
        assert UnknownTypeError.__name__ in (js.error or "")


class TestClusterLost:
    """A cluster that goes away (its scheduler closed) fails or pauses jobs, as configured.

    A small in-process cluster of its own is closed under the runtime; the module's cluster
    keeps serving the other tests.
    """

    @pytest.fixture
    def lost(self) -> Iterator[Client]:
        cluster = LocalCluster(n_workers=1, processes=False, threads_per_worker=1,
                               dashboard_address=":0")
        c = Client(cluster, set_as_default=False)
        try:
            yield c
        finally:
            c.close()
            cluster.close()

    def writer_flow(self) -> Flow:
        flow = Flow(flow_id="lost")
        w = StateWriter()
        w.set_error_handler(ErrorHandler(strategy=ErrorStrategy.RETRY, max_retries=5,
                                         retry_delay=0.05))
        flow.add_routine(w, "w")
        return flow

    def close_scheduler(self, client: Client) -> None:
        """The cluster goes away; the client stays."""
        assert client.cluster is not None
        client.cluster.close()
        assert wait_for(lambda: client.status != "running", "the client to notice", 30)

    def test_on_cluster_lost_fail_fails_the_job_with_a_clear_error(self, lost: Client) -> None:
        ex = DaskExecutor(lost, on_cluster_lost="fail", reconnect_timeout=0.2)
        with Runtime(executor=ex) as rt:
            self.close_scheduler(lost)
            js = run(rt, self.writer_flow(), {"n": 1})
        assert js.status is JobStatus.FAILED
        assert js.error_type == "ClusterLostError"
        assert "unreachable" in (js.error or "") and "'w'" in (js.error or "")
        assert [r.status for r in js.history()] == ["failed"]  # not retried

    def test_on_cluster_lost_pause_keeps_the_input_for_resume(self, lost: Client) -> None:
        ex = DaskExecutor(lost, on_cluster_lost="pause", reconnect_timeout=0.2)
        with Runtime(executor=ex) as rt:
            self.close_scheduler(lost)
            js = rt.exec(self.writer_flow(), entry_params={"n": 1})
            assert wait_for(lambda: js.status is JobStatus.PAUSED, "the job to pause", 30)
            assert js.to_dict()["pending"] == {"w": {"input": [{"n": 1}]}}
            assert js.history() == [] and js.shared_data == {}


class TestMicroBatching:
    def test_activations_ready_together_share_dask_tasks(self, client: Client) -> None:
        flow = Flow(flow_id="batched")
        flow.add_routine(StateWriter(), "w")
        ex = DaskExecutor(client, preload=[TESTING], batch_size=16, linger=0.05)
        with Runtime(executor=ex) as rt:
            jobs = [rt.exec(flow, entry_params={"n": n}) for n in range(60)]
            assert rt.wait_until_all_jobs_finished(60)
        for n, js in enumerate(jobs):
            assert js.status is JobStatus.COMPLETED, js.error
            assert js.shared_data["w:items"] == [n]  # every job got its own outcome
        assert ex.activations == 60
        assert ex.batches < ex.activations

    def test_tasks_are_spread_over_the_clusters_worker_threads(self, client: Client) -> None:
        # The cluster is shared by the module: a worker killed by an earlier test may still
        # be restarting, and the split follows the threads the cluster has right now.
        client.wait_for_workers(n_workers=2, timeout=60)
        ex = DaskExecutor(client, batch_size=4)
        ex.start()
        try:
            items: list[Any] = list(range(10))
            assert [len(b) for b in ex._split(items)] == [4, 4, 2]  # at most batch_size
            assert [len(b) for b in ex._split(items[:3])] == [2, 1]  # 2 threads, 2 tasks
            assert [b for batch in ex._split(items) for b in batch] == items  # order kept
        finally:
            ex.shutdown()
