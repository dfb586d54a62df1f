"""Where the durable store, async routines, remote executors and the hot-path work meet:
regressions found when the four were merged (each test failed before its fix)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from routilux import Flow, JobStatus, Routine, Runtime
from routilux.serialization import job_state_from_dict, job_state_to_dict
from routilux.store import SqliteJobStore

WAIT = 10.0


def rout(fn: Any, slots: tuple[str, ...] = ("input",), events: tuple[str, ...] = ("output",),
         **config: Any) -> Routine:
    r = Routine()
    for s in slots:
        r.add_slot(s)
    for e in events:
        r.add_event(e)
    r.set_logic(lambda sd, m, js: fn(r, sd, m, js))
    if config:
        r.set_config(**config)
    return r


def noop(r: Routine, sd: Any, m: Any, js: Any) -> None:
    return None


def wait_status(state: Any, status: JobStatus) -> None:
    deadline = time.monotonic() + WAIT
    while state.status is not status and time.monotonic() < deadline:
        time.sleep(0.005)
    assert state.status is status, (state.status, state.error)


class TestRetention:
    def test_forgotten_failed_job_with_a_running_activation_still_settles_under_a_store(
        self, tmp_path: Path
    ) -> None:
        """A failed job is forgotten (retention bound) while another of its activations runs;
        that activation's durable commit must not crash the worker (it read ``views[ri]`` of
        the emptied list), or the job never settles and ``wait_until_all`` hangs."""
        gate, started = threading.Event(), threading.Event()

        def slow(r: Routine, sd: Any, m: Any, js: Any) -> None:
            started.set()
            gate.wait(WAIT)

        def boom(r: Routine, sd: Any, m: Any, js: Any) -> None:
            started.wait(WAIT)
            raise ValueError("boom")

        flow = Flow("fails")
        flow.add_routine(rout(slow, events=()), "slow")
        flow.add_routine(rout(boom, events=()), "boom")
        other = Flow("other")
        other.add_routine(rout(noop, events=()), "n")
        rt = Runtime(store=SqliteJobStore(tmp_path / "s.db"), max_finished_jobs=1,
                     thread_pool_size=4)
        try:
            state = rt.exec(flow, {"a": 1})
            wait_status(state, JobStatus.FAILED)
            done = rt.exec(other, {"b": 1})
            assert rt.wait_job(done.job_id, timeout=WAIT)  # (returns after the lock is free)
            assert rt.get_job(state.job_id) is None  # forgotten, still running "slow"
            gate.set()
            assert rt.wait_until_all_jobs_finished(timeout=WAIT)
        finally:
            gate.set()
            rt.shutdown(timeout=WAIT)

    def test_continuing_an_ended_job_id_is_not_forgotten_while_it_runs(self) -> None:
        """A saved copy of a job that then ended is run again under the same id; finishing
        another job must not evict the new, running job through the old one's retention
        entry."""
        gate = threading.Event()

        def slow(r: Routine, sd: Any, m: Any, js: Any) -> None:
            gate.wait(WAIT)

        flow = Flow("held")
        flow.add_routine(rout(slow, events=()), "slow")
        other = Flow("other")
        other.add_routine(rout(noop, events=()), "n")
        rt = Runtime(max_finished_jobs=1, thread_pool_size=4)
        try:
            state = rt.exec(flow, {"a": 1})
            saved = job_state_to_dict(state)  # its payload is in flight
            rt.cancel_job(state.job_id)
            gate.set()
            assert rt.wait_job(state.job_id, timeout=WAIT)
            gate.clear()
            again = rt.exec(flow, job_state=job_state_from_dict(saved))
            done = rt.exec(other, {"b": 1})
            assert rt.wait_job(done.job_id, timeout=WAIT)
            assert rt.get_job(state.job_id) is again
            gate.set()
            assert rt.wait_job(state.job_id, timeout=WAIT)
            assert again.status is JobStatus.COMPLETED, again.error
            assert rt.wait_until_all_jobs_finished(timeout=WAIT)
        finally:
            gate.set()
            rt.shutdown(timeout=WAIT)
