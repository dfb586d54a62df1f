"""Profile the Routilux hot path (W1 stream, W2 jobs) across all worker threads.

    uv run python benchmarks/profile_hot.py W1 [--top 30] [--pool 4] [--pyinstrument]
    uv run python benchmarks/profile_hot.py W2 [--burst | --serial]

cProfile runs in every runtime worker thread (``Runtime._worker`` is wrapped) and in the main
thread; the stats are merged and shown per hop (W1: per payload per hop; W2: per job), so
``calls/hop`` tells how much work each message costs. ``--pyinstrument`` instead samples the
main thread with pyinstrument (useful for the ``exec`` path of W2, which runs there).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import pstats
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads as wl


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workload", choices=("W1", "W2"))
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--pool", type=int, default=wl.POOL)
    ap.add_argument("--n", type=int, help="payloads (W1) or jobs (W2)")
    ap.add_argument("--serial", action="store_true", help="W2: one job at a time")
    ap.add_argument("--pyinstrument", action="store_true", help="sample the main thread")
    ap.add_argument("--sort", default="tottime", choices=("tottime", "cumulative"))
    args = ap.parse_args(argv)

    import routilux
    from routilux import runtime as rt_mod

    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()
    original = rt_mod.Runtime._worker

    def profiled_worker(self: Any) -> None:
        prof = cProfile.Profile()
        with lock:
            profiles.append(prof)
        prof.enable()
        try:
            original(self)
        finally:
            prof.disable()

    if not args.pyinstrument:
        rt_mod.Runtime._worker = profiled_worker  # type: ignore[method-assign]

    rt = routilux.Runtime(thread_pool_size=args.pool, max_finished_jobs=100_000)
    if args.workload == "W1":
        n = args.n or 10_000
        hops = 10
        units = n * hops
        flow = wl.chain_flow("w1", hops, with_source=True)
        rt.wait_job(rt.exec(flow, entry_params={"payloads": 10}).job_id, 30)

        def work() -> None:
            job = rt.exec(flow, entry_params={"payloads": n})
            rt.wait_job(job.job_id, 600)
            assert len(job.shared_data["got"]) == n, "payloads lost"
    else:
        n = args.n or 2_000
        units = n
        flow = wl.chain_flow("w2", 3, with_source=False)
        for i in range(50):
            rt.wait_job(rt.exec(flow, entry_params={"i": i}).job_id, 10)

        def work() -> None:
            if args.serial:
                for i in range(n):
                    rt.wait_job(rt.exec(flow, entry_params={"i": i}).job_id, 10)
            else:
                for i in range(n):
                    rt.exec(flow, entry_params={"i": i})
                rt.wait_until_all_jobs_finished(600)

    main_prof = cProfile.Profile()
    if args.pyinstrument:
        from pyinstrument import Profiler

        p = Profiler(interval=0.0002)
        t0 = time.perf_counter()
        p.start()
        work()
        p.stop()
        wall = time.perf_counter() - t0
        print(p.output_text(unicode=True, color=False, show_all=False))
    else:
        t0 = time.perf_counter()
        main_prof.enable()
        work()
        main_prof.disable()
        wall = time.perf_counter() - t0
    rt.shutdown()
    unit = "hop" if args.workload == "W1" else "job"
    print(f"{args.workload}: {units} {unit}s in {wall:.3f} s under the profiler "
          f"({wall / units * 1e6:.1f} µs/{unit}, profiler overhead included)")
    if args.pyinstrument:
        return 0
    stats = pstats.Stats(main_prof)
    for prof in profiles:
        with contextlib.suppress(TypeError):  # a worker that never ran anything
            stats.add(prof)
    stats.sort_stats(args.sort)
    buf = io.StringIO()
    stats.stream = buf  # type: ignore[attr-defined]
    stats.print_stats(args.top)
    print(buf.getvalue())
    # per-unit view
    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((tt, ct, nc, f"{Path(file).name}:{line}({func})"))
    rows.sort(reverse=args.sort == "tottime")
    if args.sort == "cumulative":
        rows.sort(key=lambda r: r[1], reverse=True)
    print(f"{'own µs/' + unit:>12} {'cum µs/' + unit:>12} {'calls/' + unit:>10}  function")
    for tt, ct, nc, name in rows[: args.top]:
        print(f"{tt / units * 1e6:12.2f} {ct / units * 1e6:12.2f} {nc / units:10.2f}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
