"""W2 and W3 with routine logic on a Dask cluster (``routilux-dask``), opt-in: ``--dask``.

Run one workload in this process and print its result as JSON::

    uv run python benchmarks/dask_workloads.py W2 --json [--quick] [--batch-size N]

Each run starts its own ``distributed.LocalCluster`` of 2 worker processes (fork server),
preloads the benchmark routines (``routilux_dask.testing``) there, and times the workload
once the cluster is warm. ``benchmarks/run.py --dask`` runs these beside the main table.

* W2: jobs of a 3-routine chain (hop, hop, sink), one payload each: a burst (all exec'd,
  then wait) and serial jobs (exec, wait_job, repeat). Every activation is a round trip to
  a worker process, so this measures the executor's overhead and what micro-batching saves
  (``--batch-size 1`` turns batching off).
* W3: 200 jobs of one activation sleeping 50 ms on 50 worker threads (2 processes x 25):
  ideal wall time 0.2 s, as in the thread-pool W3.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

pc = time.perf_counter

FULL = {"W2": {"jobs": 2_000, "serial": 200, "warmup": 50},
        "W3": {"jobs": 200, "threads": 25, "sleep_ms": 50}}
QUICK = {"W2": {"jobs": 200, "serial": 30, "warmup": 10},
         "W3": {"jobs": 200, "threads": 25, "sleep_ms": 50}}


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))] if s else 0.0


def cluster(threads: int) -> tuple[Any, Any]:
    import dask
    from distributed import Client, LocalCluster

    dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"})
    lc = LocalCluster(n_workers=2, processes=True, threads_per_worker=threads,
                      dashboard_address=":0", silence_logs=40)
    return lc, Client(lc, set_as_default=False)


def check(jobs: list[Any], errors: list[str]) -> int:
    bad = 0
    for i, js in enumerate(jobs):
        if js.status.value != "completed" or js.shared_data.get("got") != [i]:
            bad += 1
    if bad:
        errors.append(f"{bad} jobs did not complete with exactly their own payload")
    return bad


def w2(
    size: dict[str, int], batch_size: int, linger: float, metrics: dict[str, Any],
    errors: list[str],
) -> None:
    from routilux import Flow, Runtime
    from routilux_dask import DaskExecutor
    from routilux_dask.testing import Hop, Sink

    flow = Flow(flow_id="w2_dask")
    flow.add_routine(Hop(), "h1")
    flow.add_routine(Hop(), "h2")
    flow.add_routine(Sink(), "sink")
    flow.connect("h1", "out", "h2", "in")
    flow.connect("h2", "out", "sink", "in")
    lc, client = cluster(1)
    try:
        ex = DaskExecutor(client, preload=["routilux_dask.testing"], batch_size=batch_size,
                          linger=linger)
        with Runtime(executor=ex, max_finished_jobs=size["jobs"] + 1000) as rt:
            for i in range(size["warmup"]):
                rt.wait_job(rt.exec(flow, entry_params={"i": i}).job_id, 60)
            n = size["jobs"]
            b0, a0 = ex.batches, ex.activations
            starts: list[float] = []
            jobs = []
            t0 = pc()
            for i in range(n):
                starts.append(pc())
                jobs.append(rt.exec(flow, entry_params={"i": i}))
            if not rt.wait_until_all_jobs_finished(600):
                errors.append("burst did not finish within 600 s")
            wall = pc() - t0
            metrics["misrouted_jobs"] = check(jobs, errors)
            lat = [js.shared_data.get("t", t) - t for js, t in zip(jobs, starts, strict=True)]
            metrics["burst_jobs_per_s"] = n / wall
            metrics["burst_activations_per_s"] = 3 * n / wall
            metrics["burst_p50_ms"] = pct(lat, 0.5) * 1e3
            metrics["burst_p99_ms"] = pct(lat, 0.99) * 1e3
            metrics["burst_avg_batch"] = (ex.activations - a0) / max(1, ex.batches - b0)
            lat = []
            jobs = []
            for i in range(size["serial"]):
                t = pc()
                js = rt.exec(flow, entry_params={"i": i})
                rt.wait_job(js.job_id, 60)
                lat.append(pc() - t)
                jobs.append(js)
            metrics["misrouted_jobs"] += check(jobs, errors)
            metrics["serial_p50_ms"] = pct(lat, 0.5) * 1e3
            metrics["serial_p99_ms"] = pct(lat, 0.99) * 1e3
            metrics["serial_jobs_per_s"] = len(lat) / sum(lat)
            # the floor: one plain Dask task round trip (a serial job makes three)
            rtt = []
            for _ in range(size["serial"]):
                t = pc()
                client.submit(abs, 1, pure=False).result()
                rtt.append(pc() - t)
            metrics["dask_roundtrip_p50_ms"] = pct(rtt, 0.5) * 1e3
    finally:
        client.close()
        lc.close()


def w3(
    size: dict[str, int], batch_size: int, linger: float, metrics: dict[str, Any],
    errors: list[str],
) -> None:
    from routilux import Flow, Runtime
    from routilux_dask import DaskExecutor
    from routilux_dask.testing import Sleeper

    n, threads, sleep = size["jobs"], size["threads"], size["sleep_ms"] / 1e3
    flow = Flow(flow_id="w3_dask")
    s = Sleeper()
    s.set_config(sleep=sleep)
    flow.add_routine(s, "sleep")
    lc, client = cluster(threads)
    try:
        ex = DaskExecutor(client, preload=["routilux_dask.testing"], batch_size=batch_size,
                          linger=linger)
        with Runtime(executor=ex, thread_pool_size=n) as rt:
            rt.wait_job(rt.exec(flow, entry_params={"i": 0}).job_id, 60)  # warm the workers
            t0 = pc()
            jobs = [rt.exec(flow, entry_params={"i": i}) for i in range(n)]
            if not rt.wait_until_all_jobs_finished(120):
                errors.append("jobs did not finish within 120 s")
            wall = pc() - t0
        metrics["misrouted_jobs"] = check(jobs, errors)
        ideal = n / (2 * threads) * sleep
        metrics["wall_s"] = wall
        metrics["wall_over_ideal"] = wall / ideal
        # the floor on this machine: the same sleeps as plain Dask tasks, no Routilux at all
        t0 = pc()
        client.gather(client.map(time.sleep, [sleep] * n, pure=False))
        metrics["dask_map_wall_s"] = pc() - t0
        metrics["wall_over_dask_map"] = wall / metrics["dask_map_wall_s"]
    finally:
        client.close()
        lc.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workload", choices=("W2", "W3"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--linger", type=float, default=0.005, help="seconds (default 0.005)")
    args = ap.parse_args(argv)
    size = (QUICK if args.quick else FULL)[args.workload]
    metrics: dict[str, Any] = {}
    errors: list[str] = []
    t0 = pc()
    try:
        (w2 if args.workload == "W2" else w3)(size, args.batch_size, args.linger, metrics, errors)
    except Exception as exc:  # report, do not hide
        errors.append(f"{type(exc).__name__}: {exc}")
    metrics["elapsed_s"] = pc() - t0
    out = {"workload": args.workload, "impl": f"dask-b{args.batch_size}", "ok": not errors,
           "errors": errors, "metrics": metrics, "sizes": size, "pid": os.getpid(),
           "python": sys.version.split()[0]}
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    return 0 if not errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
