"""Instruction counts per unit of work, under ``valgrind --tool=callgrind`` (load-independent).

Wall-clock timings are noisy on a shared machine; instruction counts are not (much). Each
workload runs twice under callgrind, at ``n`` and ``2n`` units, and the difference divided by
``n`` is the cost of one unit (interpreter start-up, imports and warm-up cancel out)::

    uv run python benchmarks/instructions.py [W1 W1t W2b W2s W4s W4a] [--n N]

Units: W1/W1t per hop (one payload through one routine), W2b/W2s per job (3-routine chain,
burst / serial), W4s/W4a per job (fan-out 8, one-slot / all-slots join, serial), W3a per job
(one async activation awaiting a 1 ms ``asyncio.sleep``, a burst on a limit of n/2). Threads are
serialised by valgrind, so lock contention looks different from a real run: read the figures
as the CPU work each unit costs, not as latency. Counted runs use ``PYTHONHASHSEED=0`` and find
the bytecode caches already written, so the two runs differ only by the ``n`` extra units.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

DEFAULT_N = {
    "W1": 1000, "W1t": 1000, "W2b": 200, "W2s": 200, "W4s": 100, "W4a": 100, "W3a": 400,
}


def run_workload(name: str, n: int) -> None:
    import routilux as rl
    import workloads as wl

    if name in ("W1", "W1t"):
        from routilux.tracking import InMemorySink

        flow = wl.chain_flow("w1", 10, with_source=True)
        sinks = [InMemorySink(capacity=n * 10 * 4)] if name == "W1t" else None
        rt = rl.Runtime(thread_pool_size=wl.POOL, tracking_sinks=sinks)
        warm = rt.exec(flow, entry_params={"payloads": 10})
        rt.wait_job(warm.job_id, 300)
        job = rt.exec(flow, entry_params={"payloads": n // 10})
        assert rt.wait_job(job.job_id, 600)
        assert len(job.shared_data["got"]) == n // 10
        if sinks:
            rt.tracking.flush(600)
    elif name == "W3a":
        flow = wl.async_sleep_flow("w3a", 0.001)
        rt = rl.Runtime(thread_pool_size=wl.POOL, async_concurrency=max(1, n // 2))
        for i in range(10):
            rt.wait_job(rt.exec(flow, entry_params={"i": i}).job_id, 300)
        jobs = [rt.exec(flow, entry_params={"i": i}) for i in range(n)]
        assert rt.wait_until_all_jobs_finished(600)
        assert all(j.status.value == "completed" for j in jobs)
    else:
        if name.startswith("W2"):
            flow = wl.chain_flow("w2", 3, with_source=False)
        else:
            flow = wl.fan_flow(name, 8, "slot" if name == "W4s" else "all")
        rt = rl.Runtime(thread_pool_size=wl.POOL, max_finished_jobs=100)
        for i in range(10):
            rt.wait_job(rt.exec(flow, entry_params={"i": i}).job_id, 300)
        if name == "W2b":
            jobs = [rt.exec(flow, entry_params={"i": i}) for i in range(n)]
            assert rt.wait_until_all_jobs_finished(600)
            assert all(j.status.value == "completed" for j in jobs)
        else:
            for i in range(n):
                js = rt.exec(flow, entry_params={"i": i})
                assert rt.wait_job(js.job_id, 300)
    rt.shutdown()


def _child_env() -> dict[str, str]:
    # A fixed hash seed: with random ones, start-up work (dict layouts, string hashing) varies
    # from process to process by more than a per-unit saving, and only start-up cancels out.
    return {**os.environ, "PYTHONHASHSEED": "0"}


def _warm() -> None:
    """Import once outside valgrind so both counted runs find the bytecode caches written
    (otherwise the first run alone pays for compiling the sources)."""
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import routilux.tracking, workloads"
    subprocess.run([sys.executable, "-c", code], env=_child_env(), check=True)


def count(name: str, n: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             sys.executable, __file__, "--child", name, "--n", str(n)],
            capture_output=True, text=True, check=False, env=_child_env(),
        )
        m = re.search(r"Collected : (\d+)", proc.stderr)
        if proc.returncode != 0 or m is None:
            raise SystemExit(f"{name} n={n} failed:\n{proc.stderr[-3000:]}")
        return int(m.group(1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workloads", nargs="*", default=list(DEFAULT_N))
    ap.add_argument("--n", type=int)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        run_workload(args.workloads[0], args.n)
        return 0
    results: dict[str, Any] = {}
    _warm()
    for name in args.workloads:
        n = args.n or DEFAULT_N[name]
        a, b = count(name, n), count(name, 2 * n)
        results[name] = (b - a) / n
        unit = "hop" if name.startswith("W1") else "job"
        print(f"{name:4} {results[name]:>12,.0f} instructions per {unit}  (n={n})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
