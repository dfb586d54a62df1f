"""Benchmark workloads W1-W6 (issue 3) and W3a (issue 14), on Routilux and the stdlib.

Run one workload, one implementation, in this process and print its result as JSON::

    uv run python benchmarks/workloads.py W1 --impl routilux --json [--quick]

``benchmarks/run.py`` calls this in a fresh process per repetition. Implementations:

* ``routilux``: the workload as a Routilux flow on a ``Runtime``.
* ``stdlib``: the same graph on a hand-written router: one thread reads ``(fn, args)`` items
  from a ``queue.SimpleQueue`` and submits **one ``ThreadPoolExecutor`` task per payload per
  hop**; a hop "emits" by putting the next item on the queue.
* ``direct``: the same logic as plain nested function calls on one thread (no concurrency),
  where that is meaningful (W1, W2, W4).

Every run also checks correctness: every payload delivered exactly once, counts match, no
payload seen by a job other than its own. ``ok`` is False (and ``errors`` says why) otherwise.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import resource
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from queue import SimpleQueue
from typing import Any, ClassVar

pc = time.perf_counter

POOL = 4
"""Worker threads for W1, W2, W4, W5, W6 (same for Routilux and the stdlib router)."""

FULL: dict[str, dict[str, int]] = {
    "W1": {"payloads": 10_000, "hops": 10},
    "W1t": {"payloads": 10_000, "hops": 10, "pairs": 6},
    "W1s": {"payloads": 2_000, "hops": 10},
    "W2": {"jobs": 2_000, "warmup": 100},
    "W3": {"jobs": 200, "pool": 50, "sleep_ms": 50},
    "W3a": {"jobs": 2_000, "limit": 1_000, "sleep_ms": 50},
    "W4": {"jobs": 500, "fanout": 8, "warmup": 50},
    "W5": {"bound": 1_000, "extra": 10_000, "wave": 500},
    "W6": {"trials": 200, "sleep_ms": 2},
}
QUICK: dict[str, dict[str, int]] = {
    "W1": {"payloads": 1_000, "hops": 10},
    "W1t": {"payloads": 1_000, "hops": 10, "pairs": 4},
    "W1s": {"payloads": 300, "hops": 10},
    "W2": {"jobs": 300, "warmup": 30},
    "W3": {"jobs": 200, "pool": 50, "sleep_ms": 50},
    "W3a": {"jobs": 400, "limit": 200, "sleep_ms": 50},
    "W4": {"jobs": 100, "fanout": 8, "warmup": 10},
    "W5": {"bound": 100, "extra": 1_000, "wave": 250},
    "W6": {"trials": 30, "sleep_ms": 2},
}


def pct(values: list[float], p: float) -> float:
    """The ``p`` quantile (0..1) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p * (len(s) - 1))))]


def rss_kb() -> int:
    """Current resident set size in KiB (from /proc/self/status; ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def usage() -> tuple[float, int]:
    """(CPU seconds, voluntary + involuntary context switches) of this process so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime, ru.ru_nvcsw + ru.ru_nivcsw


def add_usage(res: Result, before: tuple[float, int], units: int, unit: str) -> None:
    cpu, csw = usage()
    res.metrics[f"cpu_us_per_{unit}"] = (cpu - before[0]) / units * 1e6
    res.metrics[f"ctx_switches_per_{unit}"] = (csw - before[1]) / units


class Result:
    """Metrics and correctness findings of one run."""

    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}
        self.errors: list[str] = []

    def check(self, cond: bool, message: str) -> None:
        if not cond:
            self.errors.append(message)

    def to_dict(self, workload: str, impl: str, sizes: dict[str, int]) -> dict[str, Any]:
        return {
            "workload": workload,
            "impl": impl,
            "sizes": sizes,
            "ok": not self.errors,
            "errors": self.errors[:20],
            "metrics": self.metrics,
        }


# =============================================================================================
# The stdlib baseline: SimpleQueue + ThreadPoolExecutor router
# =============================================================================================


class StdRouter:
    """One router thread moves ``(fn, *args)`` items from a SimpleQueue into a thread pool,
    one pool task per item (that is, per payload per hop)."""

    def __init__(self, workers: int) -> None:
        self.queue: SimpleQueue[tuple[Any, ...] | None] = SimpleQueue()
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="std-worker")
        self.emit = self._emit
        self._thread = threading.Thread(target=self._loop, name="std-router", daemon=True)
        self._thread.start()

    def _emit(self, fn: Callable[..., Any], *args: Any) -> None:
        self.queue.put((fn, *args))

    def _loop(self) -> None:
        get = self.queue.get
        submit = self.pool.submit
        while True:
            item = get()
            if item is None:
                return
            submit(*item)

    def close(self) -> None:
        self.queue.put(None)
        self._thread.join()
        self.pool.shutdown(wait=True)


class Done:
    """Counts finished jobs; ``event`` is set when ``target`` is reached."""

    def __init__(self, target: int) -> None:
        self.lock = threading.Lock()
        self.n = 0
        self.target = target
        self.event = threading.Event()

    def hit(self) -> None:
        with self.lock:
            self.n += 1
            if self.n == self.target:
                self.event.set()


# =============================================================================================
# Routilux building blocks
# =============================================================================================


def _routilux() -> Any:
    import routilux

    return routilux


@functools.cache
def make_routines() -> dict[str, type]:
    """Routine classes used by the workloads (no constructor arguments, as the API asks)."""
    from routilux import Routine, all_slots_ready_policy

    class Source(Routine):
        """No slots: runs once at start and emits ``entry_params["payloads"]`` payloads."""

        def __init__(self) -> None:
            super().__init__()
            self.add_event("out", ["i"])

            def logic(slot_data: Any, message: Any, job_state: Any) -> None:
                emit = self.emit
                for i in range(job_state.entry_params["payloads"]):
                    emit("out", i=i)

            self.set_logic(logic)

    class Hop(Routine):
        """Forwards each payload's ``i`` (and ``w`` if present) as a new payload."""

        def __init__(self) -> None:
            super().__init__()
            self.add_slot("in")
            self.add_event("out", ["i"])

            def logic(slot_data: Any, message: Any, job_state: Any) -> None:
                for p in slot_data["in"]:
                    self.emit("out", i=p["i"])

            self.set_logic(logic)

    class Sink(Routine):
        """Records every ``i`` it receives in ``shared_data["got"]`` and the time."""

        def __init__(self) -> None:
            super().__init__()
            self.add_slot("in")

            def logic(slot_data: Any, message: Any, job_state: Any) -> None:
                shared = job_state.shared_data
                got = shared.setdefault("got", [])
                for p in slot_data["in"]:
                    got.append(p["i"])
                shared["t"] = pc()

            self.set_logic(logic)

    class Worker(Routine):
        """A fan-out branch: forwards ``i`` and tags it with its branch number ``w``."""

        def __init__(self) -> None:
            super().__init__()
            self.add_slot("in")
            self.add_event("out", ["i", "w"])
            self.set_config(w=0)

            def logic(slot_data: Any, message: Any, job_state: Any) -> None:
                w = self.get_config("w")
                for p in slot_data["in"]:
                    self.emit("out", i=p["i"], w=w)

            self.set_logic(logic)

    class OneSlotJoin(Routine):
        """Fan-in on one slot (immediate policy: one activation per arriving payload)."""

        def __init__(self) -> None:
            super().__init__()
            self.add_slot("in")

            def logic(slot_data: Any, message: Any, job_state: Any) -> None:
                shared = job_state.shared_data
                got = shared.setdefault("got", [])
                for p in slot_data["in"]:
                    got.append((p["i"], p["w"]))
                shared["t"] = pc()

            self.set_logic(logic)

    class AllSlotsJoin(Routine):
        """Fan-in on 8 slots with ``all_slots_ready_policy`` (one activation per job)."""

        def __init__(self) -> None:
            super().__init__()
            for k in range(8):
                self.add_slot(f"in{k}")
            self.set_activation_policy(all_slots_ready_policy())

            def logic(slot_data: Any, message: Any, job_state: Any) -> None:
                shared = job_state.shared_data
                got = shared.setdefault("got", [])
                for payloads in slot_data.values():
                    for p in payloads:
                        got.append((p["i"], p["w"]))
                shared["t"] = pc()

            self.set_logic(logic)

    class Sleeper(Routine):
        """Sleeps ``sleep`` seconds per activation, tracking how many run at once and when
        each started."""

        active = 0
        peak = 0
        lock = threading.Lock()
        starts: ClassVar[list[float]] = []

        def __init__(self) -> None:
            super().__init__()
            self.add_slot("in")
            self.set_config(sleep=0.05)

            def logic(slot_data: Any, message: Any, job_state: Any) -> None:
                cls = type(self)
                with cls.lock:
                    cls.starts.append(pc())
                    cls.active += 1
                    cls.peak = max(cls.peak, cls.active)
                time.sleep(self.get_config("sleep"))
                with cls.lock:
                    cls.active -= 1
                job_state.shared_data["got"] = [p["i"] for p in slot_data["in"]]
                job_state.shared_data["t"] = pc()

            self.set_logic(logic)

    return {
        "Source": Source,
        "Hop": Hop,
        "Sink": Sink,
        "Worker": Worker,
        "OneSlotJoin": OneSlotJoin,
        "AllSlotsJoin": AllSlotsJoin,
        "Sleeper": Sleeper,
    }


def async_sleep_flow(flow_id: str, sleep: float) -> Any:
    """One async routine that awaits ``asyncio.sleep(sleep)`` and logs its input's ``i``."""
    import asyncio

    rl = _routilux()

    class AsyncSleeper(rl.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.add_slot("input")

            async def logic(slot_data: Any, message: Any, job_state: Any) -> None:
                await asyncio.sleep(sleep)
                job_state.shared_log.append(slot_data["input"][0]["i"])

            self.set_logic(logic)

    flow = rl.Flow(flow_id=flow_id)
    flow.add_routine(AsyncSleeper(), "sleep")
    return flow


def chain_flow(flow_id: str, hops: int, with_source: bool) -> Any:
    """``[source ->] h1 -> ... -> h(hops-1) -> sink``: ``hops`` receiving routines."""
    rl = _routilux()
    R = make_routines()
    flow = rl.Flow(flow_id=flow_id)
    prev = None
    if with_source:
        flow.add_routine(R["Source"](), "src")
        prev = "src"
    for k in range(1, hops):
        flow.add_routine(R["Hop"](), f"h{k}")
        if prev is not None:
            flow.connect(prev, "out", f"h{k}", "in")
        prev = f"h{k}"
    flow.add_routine(R["Sink"](), "sink")
    if prev is not None:
        flow.connect(prev, "out", "sink", "in")
    return flow


def fan_flow(flow_id: str, fanout: int, join: str) -> Any:
    """``split -> w0..w(fanout-1) -> join`` (``join`` is "slot" or "all")."""
    rl = _routilux()
    R = make_routines()
    flow = rl.Flow(flow_id=flow_id)
    flow.add_routine(R["Hop"](), "split")
    flow.add_routine(R["OneSlotJoin"]() if join == "slot" else R["AllSlotsJoin"](), "join")
    for k in range(fanout):
        w = R["Worker"]()
        w.set_config(w=k)
        flow.add_routine(w, f"w{k}")
        flow.connect("split", "out", f"w{k}", "in")
        flow.connect(f"w{k}", "out", "join", "in" if join == "slot" else f"in{k}")
    return flow


# =============================================================================================
# W1 stream: one job, a source emits N payloads through a chain of `hops` routines
# =============================================================================================


def w1_routilux(size: dict[str, int], res: Result) -> None:
    rl = _routilux()
    n, hops = size["payloads"], size["hops"]
    flow = chain_flow("w1", hops, with_source=True)
    rt = rl.Runtime(thread_pool_size=POOL)
    try:
        warm = rt.exec(flow, entry_params={"payloads": 10})  # start threads, compile the plan
        rt.wait_job(warm.job_id, 30)
        u0 = usage()
        t0 = pc()
        job = rt.exec(flow, entry_params={"payloads": n})
        finished = rt.wait_job(job.job_id, 300)
        wall = pc() - t0
        add_usage(res, u0, n * hops, "hop")
        res.check(finished, "job did not finish within 300 s")
        res.check(job.status.value == "completed", f"job status {job.status.value}: {job.error}")
        got = job.shared_data.get("got", [])
        res.check(len(got) == n, f"sink got {len(got)} payloads, expected {n}")
        res.check(sorted(got) == list(range(n)), "sink payloads are not exactly 0..n-1")
        metrics = rt.get_job_metrics(job.job_id)["routines"]
        for rid, m in metrics.items():
            if rid != "src":
                res.check(m["payloads_in"] == n, f"{rid} received {m['payloads_in']} != {n}")
        res.metrics["activations"] = sum(m["activations"] for m in metrics.values())
    finally:
        rt.shutdown()
    res.metrics["wall_s"] = wall
    res.metrics["us_per_hop"] = wall / (n * hops) * 1e6
    res.metrics["hops_per_s"] = n * hops / wall


def _w1_once(rl: Any, flow: Any, n: int, hops: int, res: Result, sink: Any) -> float:
    """One W1 job on a fresh runtime (with ``sink`` attached if given); seconds per hop."""
    rt = rl.Runtime(thread_pool_size=POOL, tracking_sinks=[sink] if sink is not None else None)
    try:
        warm = rt.exec(flow, entry_params={"payloads": 10})
        rt.wait_job(warm.job_id, 30)
        t0 = pc()
        job = rt.exec(flow, entry_params={"payloads": n})
        finished = rt.wait_job(job.job_id, 300)
        wall = pc() - t0
        res.check(finished and job.status.value == "completed", "W1t job did not complete")
        res.check(sorted(job.shared_data.get("got", [])) == list(range(n)),
                  "W1t sink payloads are not exactly 0..n-1")
        if sink is not None:
            rt.tracking.flush(60)
            kinds: dict[str, int] = {}
            for r in sink.records(job.job_id):
                kinds[r.kind] = kinds.get(r.kind, 0) + 1
            dropped = rt.tracking.dropped
            res.metrics["records_dropped"] = res.metrics.get("records_dropped", 0) + dropped
            res.metrics["records_per_hop"] = sink.received / (n * hops)
            if dropped == 0 and not sink.evicted:
                res.check(kinds.get("payload.emitted") == n * hops,
                          f"W1t: {kinds.get('payload.emitted')} emitted records")
                res.check(kinds.get("activation.finished") == n * hops + 1,
                          f"W1t: {kinds.get('activation.finished')} finished records")
    finally:
        rt.shutdown()
    return wall / (n * hops)


def w1s_routilux(size: dict[str, int], res: Result) -> None:
    """W1 with the SQLite job store at ``synchronous=NORMAL`` (issue 10): every activation
    is committed (its consumed input, emitted payloads and state) before its emits are
    routed. ``us_per_activation`` is wall time over committed activations."""
    import tempfile

    rl = _routilux()
    from routilux.store import SqliteJobStore

    n, hops = size["payloads"], size["hops"]
    flow = chain_flow("w1s", hops, with_source=True)
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteJobStore(os.path.join(tmp, "jobs.db"), synchronous="NORMAL")
        rt = rl.Runtime(thread_pool_size=POOL, store=store)
        try:
            warm = rt.exec(flow, entry_params={"payloads": 10})
            rt.wait_job(warm.job_id, 30)
            u0 = usage()
            t0 = pc()
            job = rt.exec(flow, entry_params={"payloads": n})
            finished = rt.wait_job(job.job_id, 600)
            wall = pc() - t0
            add_usage(res, u0, n * hops, "hop")
            res.check(finished and job.status.value == "completed",
                      f"W1s job did not complete: {job.status.value} {job.error}")
            res.check(sorted(job.shared_data.get("got", [])) == list(range(n)),
                      "W1s sink payloads are not exactly 0..n-1")
            acts = len(store.activations(job.job_id))
        finally:
            rt.shutdown()
            store.close()
    res.check(acts == n * hops + 1, f"W1s: {acts} committed activations, expected {n * hops + 1}")
    res.metrics["activations"] = acts
    res.metrics["wall_s"] = wall
    res.metrics["us_per_activation"] = wall / acts * 1e6
    res.metrics["us_per_hop"] = wall / (n * hops) * 1e6


def w1t_routilux(size: dict[str, int], res: Result) -> None:
    """W1 with and without an in-memory tracking sink, alternated in this process.

    ``us_per_hop`` is with the sink (the median of the tracked runs), ``untracked_us_per_hop``
    without. ``overhead_pct``, the cost of tracking, is the median over the pairs of a tracked
    run's time over its untracked neighbour's, minus one; the pairs run in alternating order
    (untracked first, then tracked first), on fresh runtimes. The machine's speed drifts by
    tens of percent over seconds (an untracked run alone varies that much from one run to the
    next): comparing each run with its neighbour, in balanced order, cancels most of it, where
    a ratio of medians of runs seconds apart does not. ``overhead_medians_pct`` is that ratio
    of medians, for comparison with earlier runs.
    """
    rl = _routilux()
    from routilux.tracking import InMemorySink

    n, hops = size["payloads"], size["hops"]
    flow = chain_flow("w1t", hops, with_source=True)
    plain: list[float] = []
    tracked: list[float] = []
    for i in range(size["pairs"]):
        if i % 2 == 0:
            plain.append(_w1_once(rl, flow, n, hops, res, None))
        tracked.append(_w1_once(rl, flow, n, hops, res, InMemorySink(capacity=n * hops * 4)))
        if i % 2 == 1:
            plain.append(_w1_once(rl, flow, n, hops, res, None))
    t, u = statistics.median(tracked), statistics.median(plain)
    res.metrics["us_per_hop"] = t * 1e6
    res.metrics["untracked_us_per_hop"] = u * 1e6
    res.metrics["overhead_pct"] = (
        statistics.median(a / b for a, b in zip(tracked, plain, strict=True)) - 1) * 100
    res.metrics["overhead_medians_pct"] = (t / u - 1) * 100


def w1_stdlib(size: dict[str, int], res: Result) -> None:
    n, hops = size["payloads"], size["hops"]
    router = StdRouter(POOL)
    emit = router.emit
    got: list[int] = []
    lock = threading.Lock()
    done = threading.Event()

    def hop(k: int, p: dict[str, int]) -> None:
        if k < hops:
            emit(hop, k + 1, {"i": p["i"]})
        else:
            with lock:
                got.append(p["i"])
                if len(got) == total:
                    done.set()

    def source(count: int) -> None:
        for i in range(count):
            emit(hop, 1, {"i": i})

    total = 10  # warm-up
    emit(source, 10)
    done.wait(30)
    got.clear()
    done.clear()
    total = n
    u0 = usage()
    t0 = pc()
    emit(source, n)
    finished = done.wait(300)
    wall = pc() - t0
    add_usage(res, u0, n * hops, "hop")
    router.close()
    res.check(finished, "stdlib stream did not finish within 300 s")
    res.check(sorted(got) == list(range(n)), "sink payloads are not exactly 0..n-1")
    res.metrics["wall_s"] = wall
    res.metrics["us_per_hop"] = wall / (n * hops) * 1e6
    res.metrics["hops_per_s"] = n * hops / wall


def w1_direct(size: dict[str, int], res: Result) -> None:
    n, hops = size["payloads"], size["hops"]
    got: list[int] = []

    def hop(k: int, p: dict[str, int]) -> None:
        if k < hops:
            hop(k + 1, {"i": p["i"]})
        else:
            got.append(p["i"])

    t0 = pc()
    for i in range(n):
        hop(1, {"i": i})
    wall = pc() - t0
    res.check(got == list(range(n)), "direct calls lost payloads")
    res.metrics["wall_s"] = wall
    res.metrics["us_per_hop"] = wall / (n * hops) * 1e6
    res.metrics["hops_per_s"] = n * hops / wall


# =============================================================================================
# W2 jobs: many 3-routine jobs, one payload each, in a burst and one after another
# =============================================================================================


def _check_jobs(res: Result, jobs: list[Any], expect_len: int = 1) -> None:
    bad_status = sum(1 for js in jobs if js.status.value != "completed")
    res.check(bad_status == 0, f"{bad_status} jobs did not complete")
    misrouted = 0
    for i, js in enumerate(jobs):
        got = js.shared_data.get("got", [])
        if len(got) != expect_len or any(g != i for g in got):
            misrouted += 1
    res.metrics["misrouted_jobs"] = misrouted
    res.check(misrouted == 0, f"{misrouted} jobs got missing, extra or foreign payloads")


def w2_routilux(size: dict[str, int], res: Result) -> None:
    rl = _routilux()
    n = size["jobs"]
    flow = chain_flow("w2", 3, with_source=False)
    rt = rl.Runtime(thread_pool_size=POOL, max_finished_jobs=max(1000, n))
    try:
        for i in range(size["warmup"]):
            rt.wait_job(rt.exec(flow, entry_params={"i": i}).job_id, 10)
        rt.wait_until_all_jobs_finished(30)
        # burst
        starts: list[float] = []
        jobs: list[Any] = []
        u0 = usage()
        t0 = pc()
        for i in range(n):
            starts.append(pc())
            jobs.append(rt.exec(flow, entry_params={"i": i}))
        exec_s = pc() - t0
        res.check(rt.wait_until_all_jobs_finished(300), "burst did not finish within 300 s")
        wall = pc() - t0
        add_usage(res, u0, n, "job")
        res.metrics["burst_exec_us_per_job"] = exec_s / n * 1e6
        _check_jobs(res, jobs)
        lat = [js.shared_data.get("t", t) - t for js, t in zip(jobs, starts, strict=True)]
        res.metrics["burst_jobs_per_s"] = n / wall
        res.metrics["burst_p50_ms"] = pct(lat, 0.5) * 1e3
        res.metrics["burst_p99_ms"] = pct(lat, 0.99) * 1e3
        # serial
        lat = []
        jobs = []
        for i in range(n):
            t = pc()
            js = rt.exec(flow, entry_params={"i": i})
            rt.wait_job(js.job_id, 10)
            lat.append(pc() - t)
            jobs.append(js)
        _check_jobs(res, jobs)
        res.metrics["serial_jobs_per_s"] = n / sum(lat)
        res.metrics["serial_p50_ms"] = pct(lat, 0.5) * 1e3
        res.metrics["serial_p99_ms"] = pct(lat, 0.99) * 1e3
    finally:
        rt.shutdown()


class StdJob:
    __slots__ = ("event", "got", "i", "t")

    def __init__(self, i: int, event: threading.Event | None) -> None:
        self.i = i
        self.got: list[Any] = []
        self.t = 0.0
        self.event = event


def w2_stdlib(size: dict[str, int], res: Result) -> None:
    n = size["jobs"]
    router = StdRouter(POOL)
    emit = router.emit
    done = Done(0)

    def a(job: StdJob, p: dict[str, int]) -> None:
        emit(b, job, {"i": p["i"]})

    def b(job: StdJob, p: dict[str, int]) -> None:
        emit(c, job, {"i": p["i"]})

    def c(job: StdJob, p: dict[str, int]) -> None:
        job.got.append(p["i"])
        job.t = pc()
        if job.event is not None:
            job.event.set()
        else:
            done.hit()

    for i in range(size["warmup"]):
        j = StdJob(i, threading.Event())
        emit(a, j, {"i": i})
        j.event.wait(10)  # type: ignore[union-attr]
    done.target = n
    jobs: list[Any] = []
    starts: list[float] = []
    u0 = usage()
    t0 = pc()
    for i in range(n):
        starts.append(pc())
        j = StdJob(i, None)
        jobs.append(j)
        emit(a, j, {"i": i})
    res.metrics["burst_exec_us_per_job"] = (pc() - t0) / n * 1e6
    res.check(done.event.wait(300), "burst did not finish within 300 s")
    wall = pc() - t0
    add_usage(res, u0, n, "job")
    _check_std_jobs(res, jobs, 1)
    lat = [j.t - t for j, t in zip(jobs, starts, strict=True)]
    res.metrics["burst_jobs_per_s"] = n / wall
    res.metrics["burst_p50_ms"] = pct(lat, 0.5) * 1e3
    res.metrics["burst_p99_ms"] = pct(lat, 0.99) * 1e3
    lat = []
    jobs = []
    for i in range(n):
        t = pc()
        j = StdJob(i, threading.Event())
        emit(a, j, {"i": i})
        j.event.wait(10)  # type: ignore[union-attr]
        lat.append(pc() - t)
        jobs.append(j)
    _check_std_jobs(res, jobs, 1)
    router.close()
    res.metrics["serial_jobs_per_s"] = n / sum(lat)
    res.metrics["serial_p50_ms"] = pct(lat, 0.5) * 1e3
    res.metrics["serial_p99_ms"] = pct(lat, 0.99) * 1e3


def _check_std_jobs(res: Result, jobs: list[StdJob], expect_len: int) -> None:
    misrouted = 0
    for i, j in enumerate(jobs):
        got = [g if isinstance(g, int) else g[0] for g in j.got]
        if len(got) != expect_len or any(g != i for g in got):
            misrouted += 1
    res.metrics["misrouted_jobs"] = res.metrics.get("misrouted_jobs", 0) + misrouted
    res.check(misrouted == 0, f"{misrouted} jobs got missing, extra or foreign payloads")


def w2_direct(size: dict[str, int], res: Result) -> None:
    n = size["jobs"]

    def a(job: StdJob, p: dict[str, int]) -> None:
        b(job, {"i": p["i"]})

    def b(job: StdJob, p: dict[str, int]) -> None:
        c(job, {"i": p["i"]})

    def c(job: StdJob, p: dict[str, int]) -> None:
        job.got.append(p["i"])

    lat = []
    jobs = []
    for i in range(n):
        t = pc()
        j = StdJob(i, None)
        a(j, {"i": i})
        lat.append(pc() - t)
        jobs.append(j)
    _check_std_jobs(res, jobs, 1)
    res.metrics["burst_jobs_per_s"] = n / sum(lat)
    res.metrics["serial_jobs_per_s"] = n / sum(lat)
    res.metrics["serial_p50_ms"] = pct(lat, 0.5) * 1e3
    res.metrics["serial_p99_ms"] = pct(lat, 0.99) * 1e3


# =============================================================================================
# W3 I/O: jobs that sleep in one routine, on a pool of 50
# =============================================================================================


def w3_routilux(size: dict[str, int], res: Result) -> None:
    rl = _routilux()
    n, pool, sleep = size["jobs"], size["pool"], size["sleep_ms"] / 1e3
    R = make_routines()
    flow = rl.Flow(flow_id="w3")
    s = R["Sleeper"]()
    s.set_config(sleep=sleep)
    flow.add_routine(s, "sleep")
    rt = rl.Runtime(thread_pool_size=pool)
    try:
        t0 = pc()
        jobs = [rt.exec(flow, entry_params={"i": i}) for i in range(n)]
        res.metrics["exec_all_ms"] = (pc() - t0) * 1e3
        res.check(rt.wait_until_all_jobs_finished(60), "jobs did not finish within 60 s")
        wall = pc() - t0
        _check_jobs(res, jobs)
    finally:
        rt.shutdown()
    ideal = n / pool * sleep
    res.metrics["wall_s"] = wall
    res.metrics["wall_over_ideal"] = wall / ideal
    _ramp(res, R["Sleeper"].starts, t0, pool, wall, ideal)
    res.metrics["peak_concurrent"] = R["Sleeper"].peak
    res.check(R["Sleeper"].peak <= pool, f"{R['Sleeper'].peak} activations ran at once > {pool}")


def _ramp(res: Result, starts: list[float], t0: float, pool: int, wall: float,
          ideal: float) -> None:
    """W3's ramp: when the pool's last thread ran its first activation (the pool has grown
    and every thread runs one), and the wall time after that against the ideal. The wall is
    that start plus the run's sleeps in a row; the ramp is mostly thread starts."""
    if not starts:
        return
    first_wave = sorted(starts)[min(pool, len(starts)) - 1] - t0
    res.metrics["ramp_ms"] = first_wave * 1e3
    res.metrics["after_ramp_over_ideal"] = (wall - first_wave) / ideal


def w3_stdlib(size: dict[str, int], res: Result) -> None:
    n, pool, sleep = size["jobs"], size["pool"], size["sleep_ms"] / 1e3
    lock = threading.Lock()
    active = [0, 0]
    starts: list[float] = []

    def job(i: int) -> int:
        with lock:
            starts.append(pc())
            active[0] += 1
            active[1] = max(active[1], active[0])
        time.sleep(sleep)
        with lock:
            active[0] -= 1
        return i

    t0 = pc()
    with ThreadPoolExecutor(pool) as ex:
        futs = [ex.submit(job, i) for i in range(n)]
        res.metrics["exec_all_ms"] = (pc() - t0) * 1e3
        futures_wait(futs)
        wall = pc() - t0
    res.check([f.result() for f in futs] == list(range(n)), "stdlib lost a job")
    ideal = n / pool * sleep
    res.metrics["wall_s"] = wall
    res.metrics["wall_over_ideal"] = wall / ideal
    _ramp(res, starts, t0, pool, wall, ideal)
    res.metrics["peak_concurrent"] = active[1]


# =============================================================================================
# W3a async I/O: jobs that await asyncio.sleep in one async routine, at most `limit` at once
# =============================================================================================


def w3a_routilux(size: dict[str, int], res: Result) -> None:
    import asyncio

    rl = _routilux()
    n, limit, sleep = size["jobs"], size["limit"], size["sleep_ms"] / 1e3
    lock = threading.Lock()
    seen = {"active": 0, "peak": 0, "threads": 0}

    class AsyncSleeper(rl.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.add_slot("input")

            async def logic(slot_data: Any, message: Any, job_state: Any) -> None:
                with lock:
                    seen["active"] += 1
                    seen["peak"] = max(seen["peak"], seen["active"])
                    seen["threads"] = max(seen["threads"], threading.active_count())
                await asyncio.sleep(sleep)
                job_state.shared_log.append(slot_data["input"][0]["i"])
                with lock:
                    seen["active"] -= 1

            self.set_logic(logic)

    flow = rl.Flow(flow_id="w3a")
    flow.add_routine(AsyncSleeper(), "sleep")
    threads_before = threading.active_count()
    rt = rl.Runtime(thread_pool_size=POOL, async_concurrency=limit)
    try:
        warm = rt.exec(flow, entry_params={"i": -1})  # start the loop and workers, compile
        res.check(rt.wait_job(warm.job_id, 10), "warm-up job did not finish")
        seen["peak"] = seen["threads"] = 0
        t0 = pc()
        jobs = [rt.exec(flow, entry_params={"i": i}) for i in range(n)]
        t_exec = pc()
        res.check(rt.wait_until_all_jobs_finished(60), "jobs did not finish within 60 s")
        wall = pc() - t0
    finally:
        rt.shutdown()
    for i, job in enumerate(jobs):
        if list(job.shared_log) != [i] or job.status.value != "completed":
            res.check(False, f"job {i}: {job.status.value}, log {list(job.shared_log)[:3]}")
            break
    ideal = -(-n // limit) * sleep
    res.metrics["wall_s"] = wall
    res.metrics["wall_over_ideal"] = wall / ideal
    res.metrics["exec_all_ms"] = (t_exec - t0) * 1e3
    res.metrics["drain_after_last_exec_ms"] = (wall - (t_exec - t0)) * 1e3
    res.metrics["peak_concurrent"] = seen["peak"]
    res.metrics["threads_alive_peak"] = seen["threads"]
    res.metrics["threads_added"] = seen["threads"] - threads_before
    res.check(seen["peak"] <= limit, f"{seen['peak']} activations ran at once > {limit}")


def w3a_stdlib(size: dict[str, int], res: Result) -> None:
    """Plain asyncio: one task per job, an ``asyncio.Semaphore(limit)``."""
    import asyncio

    n, limit, sleep = size["jobs"], size["limit"], size["sleep_ms"] / 1e3
    seen = {"active": 0, "peak": 0, "threads": 0}
    threads_before = threading.active_count()

    async def main() -> tuple[list[int], float, float]:
        sem = asyncio.Semaphore(limit)

        async def job(i: int) -> int:
            async with sem:
                seen["active"] += 1
                seen["peak"] = max(seen["peak"], seen["active"])
                seen["threads"] = max(seen["threads"], threading.active_count())
                await asyncio.sleep(sleep)
                seen["active"] -= 1
            return i

        t0 = pc()
        tasks = [asyncio.create_task(job(i)) for i in range(n)]
        t_exec = pc()
        out = await asyncio.gather(*tasks)
        return out, t0, t_exec

    out, t0, t_exec = asyncio.run(main())
    wall = pc() - t0
    res.check(out == list(range(n)), "stdlib lost a job")
    ideal = -(-n // limit) * sleep
    res.metrics["wall_s"] = wall
    res.metrics["wall_over_ideal"] = wall / ideal
    res.metrics["exec_all_ms"] = (t_exec - t0) * 1e3
    res.metrics["drain_after_last_exec_ms"] = (wall - (t_exec - t0)) * 1e3
    res.metrics["peak_concurrent"] = seen["peak"]
    res.metrics["threads_alive_peak"] = seen["threads"]
    res.metrics["threads_added"] = seen["threads"] - threads_before


# =============================================================================================
# W4 fan-out 8 -> fan-in (one slot / all-slots-ready join)
# =============================================================================================


def _check_fan(res: Result, jobs: list[Any], fanout: int, tag: str) -> int:
    misrouted = 0
    for i, js in enumerate(jobs):
        got = js.shared_data.get("got", []) if hasattr(js, "shared_data") else js.got
        if sorted(got) != [(i, k) for k in range(fanout)]:
            misrouted += 1
    res.check(misrouted == 0, f"{tag}: {misrouted} jobs got missing, extra or foreign payloads")
    return misrouted


def w4_routilux(size: dict[str, int], res: Result) -> None:
    rl = _routilux()
    n, fanout = size["jobs"], size["fanout"]
    rt = rl.Runtime(thread_pool_size=POOL, max_finished_jobs=max(1000, n))
    misrouted = 0
    try:
        for join in ("slot", "all"):
            flow = fan_flow(f"w4-{join}", fanout, join)
            for i in range(size["warmup"]):
                rt.wait_job(rt.exec(flow, entry_params={"i": i}).job_id, 10)
            jobs: list[Any] = []
            t0 = pc()
            for i in range(n):
                jobs.append(rt.exec(flow, entry_params={"i": i}))
            res.check(rt.wait_until_all_jobs_finished(300), f"{join}: burst did not finish")
            wall = pc() - t0
            bad = sum(1 for js in jobs if js.status.value != "completed")
            res.check(bad == 0, f"{join}: {bad} burst jobs did not complete")
            misrouted += _check_fan(res, jobs, fanout, f"{join} burst")
            res.metrics[f"{join}_burst_jobs_per_s"] = n / wall
            lat = []
            jobs = []
            for i in range(n):
                t = pc()
                js = rt.exec(flow, entry_params={"i": i})
                rt.wait_job(js.job_id, 10)
                lat.append(pc() - t)
                jobs.append(js)
            misrouted += _check_fan(res, jobs, fanout, f"{join} serial")
            res.metrics[f"{join}_serial_p50_ms"] = pct(lat, 0.5) * 1e3
            res.metrics[f"{join}_serial_p99_ms"] = pct(lat, 0.99) * 1e3
    finally:
        rt.shutdown()
    res.metrics["misrouted_jobs"] = misrouted


def w4_stdlib(size: dict[str, int], res: Result) -> None:
    n, fanout = size["jobs"], size["fanout"]
    router = StdRouter(POOL)
    emit = router.emit
    lock = threading.Lock()
    done = Done(0)
    misrouted = 0

    def finish(job: StdJob) -> None:
        job.t = pc()
        if job.event is not None:
            job.event.set()
        else:
            done.hit()

    def split(job: StdJob, p: dict[str, int], join: Callable[..., None]) -> None:
        for k in range(fanout):
            emit(worker, job, k, {"i": p["i"]}, join)

    def worker(job: StdJob, k: int, p: dict[str, int], join: Callable[..., None]) -> None:
        join(job, {"i": p["i"], "w": k})

    def slot_join_emit(job: StdJob, p: dict[str, int]) -> None:
        emit(slot_join, job, p)

    def slot_join(job: StdJob, p: dict[str, int]) -> None:  # one task per arriving payload
        with lock:
            job.got.append((p["i"], p["w"]))
            last = len(job.got) == fanout
        if last:
            finish(job)

    def all_join_collect(job: StdJob, p: dict[str, int]) -> None:  # barrier, then one task
        with lock:
            job.got.append((p["i"], p["w"]))
            last = len(job.got) == fanout
        if last:
            emit(all_join, job)

    def all_join(job: StdJob) -> None:
        finish(job)

    for name, join in (("slot", slot_join_emit), ("all", all_join_collect)):
        for i in range(size["warmup"]):
            j = StdJob(i, threading.Event())
            emit(split, j, {"i": i}, join)
            j.event.wait(10)  # type: ignore[union-attr]
        done = Done(n)
        jobs = [StdJob(i, None) for i in range(n)]
        t0 = pc()
        for i, j in enumerate(jobs):
            emit(split, j, {"i": i}, join)
        res.check(done.event.wait(300), f"{name}: burst did not finish")
        res.metrics[f"{name}_burst_jobs_per_s"] = n / (pc() - t0)
        misrouted += _check_fan(res, jobs, fanout, f"{name} burst")
        lat = []
        jobs = []
        for i in range(n):
            t = pc()
            j = StdJob(i, threading.Event())
            emit(split, j, {"i": i}, join)
            j.event.wait(10)  # type: ignore[union-attr]
            lat.append(pc() - t)
            jobs.append(j)
        misrouted += _check_fan(res, jobs, fanout, f"{name} serial")
        res.metrics[f"{name}_serial_p50_ms"] = pct(lat, 0.5) * 1e3
        res.metrics[f"{name}_serial_p99_ms"] = pct(lat, 0.99) * 1e3
    router.close()
    res.metrics["misrouted_jobs"] = misrouted


def w4_direct(size: dict[str, int], res: Result) -> None:
    n, fanout = size["jobs"], size["fanout"]

    def split(job: StdJob, p: dict[str, int]) -> None:
        for k in range(fanout):
            worker(job, k, {"i": p["i"]})

    def worker(job: StdJob, k: int, p: dict[str, int]) -> None:
        join(job, {"i": p["i"], "w": k})

    def join(job: StdJob, p: dict[str, int]) -> None:
        job.got.append((p["i"], p["w"]))

    lat = []
    jobs = []
    for i in range(n):
        t = pc()
        j = StdJob(i, None)
        split(j, {"i": i})
        lat.append(pc() - t)
        jobs.append(j)
    misrouted = _check_fan(res, jobs, fanout, "direct")
    for name in ("slot", "all"):
        res.metrics[f"{name}_burst_jobs_per_s"] = n / sum(lat)
        res.metrics[f"{name}_serial_p50_ms"] = pct(lat, 0.5) * 1e3
        res.metrics[f"{name}_serial_p99_ms"] = pct(lat, 0.99) * 1e3
    res.metrics["misrouted_jobs"] = misrouted


# =============================================================================================
# W5 memory: retained bytes per finished job beyond the retention bound, threads afterwards
# =============================================================================================


def _memory_run(
    size: dict[str, int],
    res: Result,
    make: Callable[[], tuple[Callable[[int, int], int], Callable[[], None]]],
    pool_threads: int,
) -> None:
    """Run ``bound`` jobs (fills the retention), then ``extra`` more; measure what stays.

    Two passes on fresh runners: the first without tracemalloc (RSS and threads, undistorted),
    the second under tracemalloc (bytes still allocated per job after ``gc.collect()``).
    ``make()`` returns ``(run_wave(start, count) -> jobs delivered, close())``.
    """
    bound, extra, wave = size["bound"], size["extra"], size["wave"]
    total = bound + extra

    def waves(run_wave: Callable[[int, int], int], lo: int, hi: int) -> int:
        return sum(run_wave(s, min(wave, hi - s)) for s in range(lo, hi, wave))

    # pass 1: RSS and threads
    threads_before = threading.active_count()
    run_wave, close = make()
    run_wave(-20, 20)  # start threads, compile, warm caches
    gc.collect()
    threads0 = threading.active_count()
    rss0 = rss_kb()
    delivered = waves(run_wave, 0, bound)
    gc.collect()
    rss_bound = rss_kb()
    threads_bound = threading.active_count()
    delivered += waves(run_wave, bound, total)
    gc.collect()
    rss_after = rss_kb()
    threads_after = threading.active_count()
    close()
    res.metrics["threads_after_shutdown"] = threading.active_count() - threads_before
    res.check(delivered == total, f"pass 1: {delivered} of {total} jobs delivered")
    # pass 2: retained bytes
    run_wave, close = make()
    run_wave(-20, 20)
    gc.collect()
    tracemalloc.start()
    delivered = waves(run_wave, 0, bound)
    gc.collect()
    mem_bound, _ = tracemalloc.get_traced_memory()
    delivered += waves(run_wave, bound, total)
    gc.collect()
    mem_after, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    close()
    res.check(delivered == total, f"pass 2: {delivered} of {total} jobs delivered")
    res.metrics["retained_bytes_per_job_within_bound"] = mem_bound / max(1, bound)
    res.metrics["retained_bytes_per_job_beyond_bound"] = (mem_after - mem_bound) / extra
    res.metrics["traced_peak_kb"] = peak / 1024
    res.metrics["rss_start_mb"] = rss0 / 1024
    res.metrics["rss_after_bound_mb"] = rss_bound / 1024
    res.metrics["rss_end_mb"] = rss_after / 1024
    res.metrics["rss_growth_beyond_bound_mb"] = (rss_after - rss_bound) / 1024
    res.metrics["threads_alive_after"] = threads_after
    res.metrics["threads_per_finished_job"] = (threads_after - threads0) / total
    res.metrics["threads_growth_beyond_bound"] = threads_after - threads_bound
    res.metrics["pool_threads"] = pool_threads


def w5_routilux(size: dict[str, int], res: Result) -> None:
    rl = _routilux()
    R = make_routines()
    seen = [0, 0]  # jobs delivered, jobs that saw a foreign payload
    lock = threading.Lock()

    class CheckingSink(R["Sink"]):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            super().__init__()

            def logic(slot_data: Any, message: Any, job_state: Any) -> None:
                ok = [p["i"] for p in slot_data["in"]] == [job_state.entry_params["i"]]
                with lock:
                    seen[0] += 1
                    seen[1] += not ok

            self.set_logic(logic)

    flow = rl.Flow(flow_id="w5")
    flow.add_routine(R["Hop"](), "h1")
    flow.add_routine(R["Hop"](), "h2")
    flow.add_routine(CheckingSink(), "check")
    flow.connect("h1", "out", "h2", "in")
    flow.connect("h2", "out", "check", "in")

    def make() -> tuple[Callable[[int, int], int], Callable[[], None]]:
        rt = rl.Runtime(thread_pool_size=POOL, max_finished_jobs=size["bound"])

        def run_wave(start: int, count: int) -> int:
            before = seen[0]
            for i in range(start, start + count):
                rt.exec(flow, entry_params={"i": i})
            res.check(rt.wait_until_all_jobs_finished(120), "a wave did not finish")
            return seen[0] - before

        def close() -> None:
            retained = len(rt.list_jobs())
            res.metrics["jobs_retained"] = retained
            res.check(retained <= size["bound"], f"runtime retains {retained} jobs > bound")
            rt.shutdown()

        return run_wave, close

    _memory_run(size, res, make, POOL)
    res.metrics["misrouted_jobs"] = seen[1]
    res.check(seen[1] == 0, f"{seen[1]} jobs saw a foreign payload")


def w5_stdlib(size: dict[str, int], res: Result) -> None:
    seen = [0, 0]
    lock = threading.Lock()

    def make() -> tuple[Callable[[int, int], int], Callable[[], None]]:
        router = StdRouter(POOL)
        emit = router.emit
        done = [Done(0)]

        def a(job: StdJob, p: dict[str, int]) -> None:
            emit(b, job, {"i": p["i"]})

        def b(job: StdJob, p: dict[str, int]) -> None:
            emit(c, job, {"i": p["i"]})

        def c(job: StdJob, p: dict[str, int]) -> None:
            with lock:
                seen[0] += 1
                seen[1] += p["i"] != job.i
            done[0].hit()

        def run_wave(start: int, count: int) -> int:
            before = seen[0]
            done[0] = Done(count)
            for i in range(start, start + count):
                emit(a, StdJob(i, None), {"i": i})
            res.check(done[0].event.wait(120), "a wave did not finish")
            return seen[0] - before

        return run_wave, router.close

    _memory_run(size, res, make, POOL)
    res.metrics["misrouted_jobs"] = seen[1]
    res.check(seen[1] == 0, f"{seen[1]} jobs saw a foreign payload")


# =============================================================================================
# W6 wait_until_all_jobs_finished latency after the last activation ends
# =============================================================================================


def w6_routilux(size: dict[str, int], res: Result) -> None:
    rl = _routilux()
    sleep = size["sleep_ms"] / 1e3
    flow = rl.Flow(flow_id="w6")
    r = rl.Routine()
    r.add_slot("in")

    def logic(slot_data: Any, message: Any, job_state: Any) -> None:
        time.sleep(sleep)  # let the caller block in wait_until_all_jobs_finished first
        job_state.shared_data["t_end"] = pc()  # the last statement of the last activation

    r.set_logic(logic)
    flow.add_routine(r, "only")
    rt = rl.Runtime(thread_pool_size=POOL)
    lat: list[float] = []
    try:
        rt.wait_job(rt.exec(flow, entry_params={"i": -1}).job_id, 10)
        for i in range(size["trials"]):
            js = rt.exec(flow, entry_params={"i": i})
            ok = rt.wait_until_all_jobs_finished(10)
            t_ret = pc()
            res.check(ok and js.status.value == "completed", f"trial {i}: job not completed")
            if "t_end" in js.shared_data:
                lat.append(t_ret - js.shared_data["t_end"])
    finally:
        rt.shutdown()
    res.check(len(lat) == size["trials"], f"{len(lat)} of {size['trials']} trials measured")
    res.metrics["p50_ms"] = pct(lat, 0.5) * 1e3
    res.metrics["p99_ms"] = pct(lat, 0.99) * 1e3
    res.metrics["max_ms"] = max(lat, default=0.0) * 1e3
    res.metrics["mean_ms"] = statistics.fmean(lat) * 1e3 if lat else 0.0


def w6_stdlib(size: dict[str, int], res: Result) -> None:
    sleep = size["sleep_ms"] / 1e3
    box: dict[int, float] = {}

    def fn(i: int) -> None:
        time.sleep(sleep)
        box[i] = pc()

    lat: list[float] = []
    with ThreadPoolExecutor(POOL) as ex:
        ex.submit(fn, -1).result()
        for i in range(size["trials"]):
            fut = ex.submit(fn, i)
            futures_wait([fut])
            lat.append(pc() - box[i])
    res.check(len(lat) == size["trials"], "stdlib lost a trial")
    res.metrics["p50_ms"] = pct(lat, 0.5) * 1e3
    res.metrics["p99_ms"] = pct(lat, 0.99) * 1e3
    res.metrics["max_ms"] = max(lat, default=0.0) * 1e3
    res.metrics["mean_ms"] = statistics.fmean(lat) * 1e3 if lat else 0.0


IMPLS: dict[str, dict[str, Callable[[dict[str, int], Result], None]]] = {
    "W1": {"routilux": w1_routilux, "stdlib": w1_stdlib, "direct": w1_direct},
    "W1t": {"routilux": w1t_routilux},
    "W1s": {"routilux": w1s_routilux},
    "W2": {"routilux": w2_routilux, "stdlib": w2_stdlib, "direct": w2_direct},
    "W3": {"routilux": w3_routilux, "stdlib": w3_stdlib},
    "W3a": {"routilux": w3a_routilux, "stdlib": w3a_stdlib},
    "W4": {"routilux": w4_routilux, "stdlib": w4_stdlib, "direct": w4_direct},
    "W5": {"routilux": w5_routilux, "stdlib": w5_stdlib},
    "W6": {"routilux": w6_routilux, "stdlib": w6_stdlib},
}


def run_one(workload: str, impl: str, quick: bool) -> dict[str, Any]:
    sizes = (QUICK if quick else FULL)[workload]
    res = Result()
    t0 = pc()
    try:
        IMPLS[workload][impl](sizes, res)
    except Exception as exc:  # report, do not hide: the runner marks the workload failed
        res.errors.append(f"{type(exc).__name__}: {exc}")
    res.metrics["elapsed_s"] = pc() - t0
    return res.to_dict(workload, impl, sizes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workload", choices=sorted(IMPLS))
    ap.add_argument("--impl", default="routilux", choices=("routilux", "stdlib", "direct"))
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if args.impl not in IMPLS[args.workload]:
        ap.error(f"{args.workload} has no {args.impl} implementation")
    out = run_one(args.workload, args.impl, args.quick)
    out["pid"] = os.getpid()
    out["python"] = sys.version.split()[0]
    if args.json:
        print(json.dumps(out))
    else:
        print(json.dumps(out, indent=2))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
