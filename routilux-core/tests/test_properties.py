"""Invariants of the runtime, checked with hypothesis on random flows.

* For random DAG flows (1..8 routines, edges from lower to higher index, random fan-out and
  fan-in, random policies and payload counts), every emitted payload is consumed exactly once
  per connected slot, and the job completes. Flows are drawn with
  ``routilux_testing.strategies.flow_specs``.
* Concurrent jobs of one flow never see each other's payloads.
* ``wait_until_all_jobs_finished`` never returns True while an activation is queued or running.
* Random mixes of sync and async routines (``AsyncNode``) keep exactly-once delivery and
  complete.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from routilux import Flow, JobStatus, Routine, Runtime, current_activation
from routilux.activation_policies import batch_size_policy, custom_policy, immediate_policy
from routilux_testing.strategies import FlowSpec, flow_specs

WAIT = 10.0
SLOTS = ("a", "b")


@attrs.frozen
class Dag:
    spec: FlowSpec  # routines r0..rn-1 in topological order, entry on r0
    count: int  # payloads the root emits for its entry payload


POLICIES = {
    "immediate": immediate_policy,
    "batch2": lambda: batch_size_policy(2),
    "batch3": lambda: batch_size_policy(3),
    "custom": lambda: custom_policy(lambda queued, job_state: True, name="always"),
}


class Node(Routine):
    """Logs every consumed payload and emits one derived payload per consumed payload."""

    def __init__(self) -> None:
        super().__init__()
        for slot in SLOTS:
            self.add_slot(slot)
        self.add_event("output", ["pid", "tag"])
        self.set_logic(self._run)

    def _run(self, slot_data: dict[str, list[dict[str, Any]]], policy_message: Any,
             job_state: Any) -> None:
        hook = self.get_config("hook")
        if hook is not None:
            hook()
        rid = current_activation().routine_id
        log = job_state.shared_log
        for slot, payloads in slot_data.items():
            for p in payloads:
                log.append(("in", rid, slot, p["pid"], p["tag"]))
                if p["pid"] == "entry":
                    children = [f"{rid}-{k}" for k in range(p["count"])]
                else:
                    children = [f"{rid}.{slot}({p['pid']})"]
                for pid in children:
                    log.append(("out", rid, pid, p["tag"]))
                    self.emit("output", pid=pid, tag=p["tag"])
        if hook is not None:
            self.get_config("exit_hook")()


class AsyncNode(Node):
    """``Node`` with async logic: awaits between consuming and emitting each payload."""

    def __init__(self) -> None:
        super().__init__()
        self.set_logic(self._arun)

    async def _arun(self, slot_data: dict[str, list[dict[str, Any]]], policy_message: Any,
                    job_state: Any) -> None:
        rid = current_activation().routine_id
        log = job_state.shared_log
        for slot, payloads in slot_data.items():
            for p in payloads:
                await asyncio.sleep(0)
                log.append(("in", rid, slot, p["pid"], p["tag"]))
                if p["pid"] == "entry":
                    children = [f"{rid}-{k}" for k in range(p["count"])]
                else:
                    children = [f"{rid}.{slot}({p['pid']})"]
                for pid in children:
                    await asyncio.sleep(0)
                    log.append(("out", rid, pid, p["tag"]))
                    self.emit("output", pid=pid, tag=p["tag"])


def dags(
    *, policies: tuple[str, ...] = tuple(POLICIES), types: tuple[type[Node], ...] = (Node,)
) -> st.SearchStrategy[Dag]:
    """Random DAG flows of ``types`` (1..8 routines, fan-out and fan-in, random policies and
    concurrency) from ``routilux_testing.strategies``, plus how many payloads the root emits."""
    return st.builds(
        Dag,
        spec=flow_specs(list(types), max_routines=8, flow_id="dag",
                        policies={name: POLICIES[name] for name in policies},
                        max_concurrency=(1, 1, 2)),
        count=st.integers(0, 6),
    )


def build(dag: Dag, hook: Any = None, exit_hook: Any = None) -> Flow:
    def configure(routine_id: str, node: Routine) -> None:
        if hook is not None:
            node.set_config(hook=hook, exit_hook=exit_hook)

    return dag.spec.build(configure)


def check_exactly_once(dag: Dag, log: list[tuple], tag: Any) -> None:
    """Every out of a routine is consumed exactly once by each slot it is connected to."""
    spec = dag.spec
    expected: Counter[tuple] = Counter({(*spec.entry, "entry"): 1})
    actual: Counter[tuple] = Counter()
    for entry in log:
        if entry[0] == "out":
            _, rid, pid, t = entry
            assert t == tag
            for _, dst, slot in spec.targets(rid):
                expected[(dst, slot, pid)] += 1
        else:
            _, rid, slot, pid, t = entry
            assert t == tag, f"payload of job {t!r} seen by job {tag!r}"
            actual[(rid, slot, pid)] += 1
    assert actual == expected


def expected_activations_immediate(dag: Dag) -> int:
    """Activations of an all-immediate DAG: the root's entry plus one per delivery."""
    spec = dag.spec
    emitted = dict.fromkeys(spec.routine_ids, 0)
    emitted[spec.entry[0]] = dag.count
    received = dict.fromkeys(spec.routine_ids, 0)
    for rid in spec.routine_ids[1:]:  # topological order: sources are done before targets
        received[rid] = sum(emitted[src] for src, _, _ in spec.sources(rid))
        emitted[rid] = received[rid]
    return 1 + sum(received.values())


@pytest.fixture(scope="module")
def shared_runtime() -> Iterator[Runtime]:
    from routilux import FlowRegistry

    rt = Runtime(thread_pool_size=4, flow_registry=FlowRegistry())
    yield rt
    rt.shutdown(timeout=WAIT)


class TestExactlyOnceDelivery:
    @settings(max_examples=150, deadline=None)
    @given(dag=dags())
    def test_every_payload_consumed_once_per_connected_slot(
        self, shared_runtime: Runtime, dag: Dag
    ) -> None:
        state = shared_runtime.exec(build(dag), entry_params={"pid": "entry", "tag": 0,
                                                             "count": dag.count})
        assert shared_runtime.wait_job(state.job_id, timeout=WAIT)
        assert state.status is JobStatus.COMPLETED, state.error
        assert state.unconsumed == {} and state.dropped == {}
        check_exactly_once(dag, list(state.shared_log), tag=0)


class TestSyncAsyncMix:
    @settings(max_examples=100, deadline=None)
    @given(dag=dags(types=(Node, AsyncNode)), jobs=st.integers(1, 3))
    def test_mixed_dags_deliver_once_per_connected_slot_and_complete(
        self, shared_runtime: Runtime, dag: Dag, jobs: int
    ) -> None:
        states = [
            shared_runtime.exec(build(dag), entry_params={"pid": "entry", "tag": k,
                                                         "count": dag.count})
            for k in range(jobs)
        ]
        for k, state in enumerate(states):
            assert shared_runtime.wait_job(state.job_id, timeout=WAIT)
            assert state.status is JobStatus.COMPLETED, state.error
            assert state.unconsumed == {} and state.dropped == {}
            check_exactly_once(dag, list(state.shared_log), tag=k)


class TestJobIsolation:
    @settings(max_examples=80, deadline=None)
    @given(dag=dags(), jobs=st.integers(2, 4))
    def test_concurrent_jobs_never_see_each_others_payloads(
        self, shared_runtime: Runtime, dag: Dag, jobs: int
    ) -> None:
        barrier = threading.Barrier(jobs, timeout=WAIT)
        entered: set[str] = set()
        lock = threading.Lock()

        def meet() -> None:
            # The first activation of each job waits for the other jobs' first activations,
            # so every job is running at the same time.
            info = current_activation()
            with lock:
                first = info.job_id not in entered
                entered.add(info.job_id)
            if first:
                barrier.wait()

        flow = build(dag, hook=meet, exit_hook=lambda: None)
        states = [
            shared_runtime.exec(flow, entry_params={"pid": "entry", "tag": k, "count": dag.count})
            for k in range(jobs)
        ]
        for state in states:
            assert shared_runtime.wait_job(state.job_id, timeout=WAIT)
        for k, state in enumerate(states):
            assert state.status is JobStatus.COMPLETED, state.error
            check_exactly_once(dag, list(state.shared_log), tag=k)


class TestWaitIsExact:
    @settings(max_examples=80, deadline=None)
    @given(dag=dags(policies=("immediate",)), jobs=st.integers(1, 3),
           work=st.sampled_from((0.0, 0.0005)))
    def test_wait_all_never_returns_while_work_is_queued_or_running(
        self, dag: Dag, jobs: int, work: float
    ) -> None:
        from routilux import FlowRegistry

        lock = threading.Lock()
        counts = {"running": 0, "done": 0}

        def enter() -> None:
            with lock:
                counts["running"] += 1
            if work:
                time.sleep(work)  # simulated work

        def leave() -> None:
            with lock:
                counts["running"] -= 1
                counts["done"] += 1

        flow = build(dag, hook=enter, exit_hook=leave)
        with Runtime(thread_pool_size=3, flow_registry=FlowRegistry()) as rt:
            for k in range(jobs):
                rt.exec(flow, entry_params={"pid": "entry", "tag": k, "count": dag.count})
            assert rt.wait_until_all_jobs_finished(timeout=WAIT)
            with lock:
                snapshot = dict(counts)
            assert snapshot == {"running": 0,
                                "done": jobs * expected_activations_immediate(dag)}
            assert all(s.status is JobStatus.COMPLETED for s in rt.list_jobs())
