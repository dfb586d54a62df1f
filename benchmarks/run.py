"""Run the benchmark workloads W1-W6 (issue 3) and W3a (issue 14) beside their baselines.

    uv run python benchmarks/run.py [--quick] [--json FILE] [--only W1,W2] [--reps N]
                                    [--markdown FILE] [--src DIR] [--dask]

Every repetition of every workload runs in a fresh process (``benchmarks/workloads.py``), with
the Routilux, stdlib-router and direct-call implementations interleaved so that background load
hits them alike. The table shows medians and min-max over the repetitions, the ratio of the
Routilux figure to the stdlib router's, and the issue's targets (met or missed).

The exit status is non-zero when any run failed to deliver every payload (or crashed); missed
performance targets never fail the run (numbers on shared machines are noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORKLOADS = ("W1", "W1t", "W1s", "W2", "W3", "W3a", "W4", "W5", "W6")
IMPLS: dict[str, tuple[str, ...]] = {
    "W1": ("routilux", "stdlib", "direct"),
    "W1t": ("routilux",),
    "W1s": ("routilux",),
    "W2": ("routilux", "stdlib", "direct"),
    "W3": ("routilux", "stdlib"),
    "W3a": ("routilux", "stdlib"),
    "W4": ("routilux", "stdlib", "direct"),
    "W5": ("routilux", "stdlib"),
    "W6": ("routilux", "stdlib"),
}

# (workload, metric key, label, unit, target op, target value)
ROWS: list[tuple[str, str, str, str, str | None, float | None]] = [
    ("W1", "us_per_hop", "stream: time per hop", "µs", "<=", 10),
    ("W1", "hops_per_s", "stream: payloads×hops/s", "/s", None, None),
    ("W1t", "us_per_hop", "stream + in-memory sink: per hop", "µs", None, None),
    ("W1t", "untracked_us_per_hop", "same process, no sink: per hop", "µs", None, None),
    ("W1t", "overhead_pct", "tracking overhead (in-memory sink)", "%", "<=", 25),
    ("W1t", "overhead_medians_pct", "same, as a ratio of medians (earlier runs)", "%", None,
     None),
    ("W1s", "us_per_activation", "stream + SQLite store (NORMAL): per activation", "µs", "<=",
     150),
    ("W2", "burst_jobs_per_s", "3-step jobs, burst", "jobs/s", ">=", 8000),
    ("W2", "burst_p50_ms", "burst exec→done p50", "ms", None, None),
    ("W2", "burst_p99_ms", "burst exec→done p99", "ms", None, None),
    ("W2", "serial_p50_ms", "serial exec→done p50", "ms", "<=", 0.12),
    ("W2", "serial_p99_ms", "serial exec→done p99", "ms", "<=", 1.0),
    ("W2", "serial_jobs_per_s", "serial jobs/s", "jobs/s", None, None),
    ("W3", "wall_over_ideal", "200×50 ms on 50: wall/ideal", "×", "<=", 1.05),
    ("W3", "ramp_ms", "first exec → 50th activation starts", "ms", None, None),
    ("W3", "after_ramp_over_ideal", "wall after that start / ideal", "×", None, None),
    ("W3", "peak_concurrent", "peak concurrent activations", "", "<=", 50),
    ("W3a", "wall_over_ideal", "async jobs × 50 ms on a limit: wall/ideal", "×", "<=", 1.3),
    ("W3a", "wall_s", "async: wall", "s", None, None),
    ("W3a", "exec_all_ms", "async: time to exec all jobs", "ms", None, None),
    ("W3a", "drain_after_last_exec_ms", "async: last exec → all done", "ms", None, None),
    ("W3a", "peak_concurrent", "async: peak concurrent activations", "", "<=", 1000),
    ("W3a", "threads_alive_peak", "async: threads alive during the run", "", None, None),
    ("W3a", "threads_added", "async: threads added while awaiting", "", None, None),
    ("W4", "slot_serial_p50_ms", "fan-8, one-slot join: serial p50", "ms", "<=", 0.3),
    ("W4", "slot_serial_p99_ms", "fan-8, one-slot join: serial p99", "ms", None, None),
    ("W4", "slot_burst_jobs_per_s", "fan-8, one-slot join: burst", "jobs/s", ">=", 3000),
    ("W4", "all_serial_p50_ms", "fan-8, all-slots join: serial p50", "ms", "<=", 0.3),
    ("W4", "all_serial_p99_ms", "fan-8, all-slots join: serial p99", "ms", None, None),
    ("W4", "all_burst_jobs_per_s", "fan-8, all-slots join: burst", "jobs/s", ">=", 3000),
    ("W4", "misrouted_jobs", "jobs with misrouted payloads", "", "<=", 0),
    ("W5", "retained_bytes_per_job_beyond_bound", "retained/finished job beyond bound", "B",
     "<=", 2048),
    ("W5", "retained_bytes_per_job_within_bound", "retained/job kept (within bound)", "B",
     None, None),
    ("W5", "rss_after_bound_mb", "RSS with retention full", "MB", None, None),
    ("W5", "rss_end_mb", "RSS after all jobs", "MB", None, None),
    ("W5", "traced_peak_kb", "traced peak (tracemalloc pass)", "KB", None, None),
    ("W5", "threads_per_finished_job", "threads per finished job", "", "<=", 0),
    ("W5", "threads_alive_after", "threads alive after the jobs", "", None, None),
    ("W6", "p50_ms", "wait_until_all after last end p50", "ms", "<=", 1.0),
    ("W6", "p99_ms", "wait_until_all after last end p99", "ms", None, None),
    ("W6", "max_ms", "wait_until_all after last end max", "ms", None, None),
]

DESCRIPTIONS = {
    "W1": "one job; a source emits N payloads through a chain of 10 routines (10 hops each)",
    "W1s": "W1 (fewer payloads) with the SQLite job store at synchronous=NORMAL: every "
    "activation committed before its emits are routed (issue 10)",
    "W1t": "W1 alternated without and with an InMemorySink attached, fresh runtimes, same "
    "process: the cost of tracking (median over pairs of neighbouring runs, in alternating "
    "order)",
    "W2": "N jobs of a 3-routine chain, one payload each: burst (all exec'd, then wait) and "
    "serial (exec, wait_job, repeat)",
    "W3": "200 jobs, each one activation sleeping 50 ms, pool of 50 (ideal wall 0.2 s)",
    "W3a": "N jobs, each one async activation awaiting asyncio.sleep(50 ms), async_concurrency "
    "limit (full: 2000 on 1000, ideal wall 0.1 s; stdlib = plain asyncio tasks + Semaphore)",
    "W4": "N jobs: split → 8 workers → join (one slot, immediate; and 8 slots, "
    "all_slots_ready)",
    "W5": "bound jobs fill the retention (max_finished_jobs), then extra jobs more: RSS, bytes "
    "still allocated per job, threads",
    "W6": "time from the end of the last activation's logic to wait_until_all_jobs_finished "
    "returning",
}


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 10_000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def run_process(
    workload: str, impl: str, quick: bool, timeout: float, env: dict[str, str]
) -> dict[str, Any]:
    cmd = [sys.executable, str(HERE / "workloads.py"), workload, "--impl", impl, "--json"]
    if quick:
        cmd.append("--quick")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        return {"workload": workload, "impl": impl, "ok": False, "metrics": {},
                "errors": [f"timed out after {timeout:g} s"]}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    try:
        out: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"workload": workload, "impl": impl, "ok": False, "metrics": {},
                "errors": [f"exit {proc.returncode}, no result: " + " | ".join(tail)]}
    out["process_s"] = time.perf_counter() - t0
    if proc.returncode != 0 and out.get("ok"):
        out["ok"] = False
        out.setdefault("errors", []).append(f"exit status {proc.returncode}")
    return out


def summarise(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def met(op: str | None, target: float | None, value: float | None) -> str:
    if op is None or target is None:
        return ""
    if value is None:
        return "n/a"
    ok = value <= target if op == "<=" else value >= target
    return "met" if ok else "MISSED"


def build_table(runs: list[dict[str, Any]], workloads: list[str]) -> list[dict[str, Any]]:
    rows = []
    for w, key, label, unit, op, target in ROWS:
        if w not in workloads:
            continue
        cell: dict[str, dict[str, float] | None] = {}
        for impl in ("routilux", "stdlib", "direct"):
            vals = [r["metrics"][key] for r in runs
                    if r.get("workload") == w and r.get("impl") == impl
                    and key in r.get("metrics", {})]
            cell[impl] = summarise(vals)
        rx, sx = cell["routilux"], cell["stdlib"]
        ratio = rx["median"] / sx["median"] if rx and sx and sx["median"] else None
        rows.append({
            "workload": w, "metric": key, "label": label, "unit": unit,
            "routilux": rx, "stdlib": sx, "direct": cell["direct"], "ratio": ratio,
            "target": None if op is None else f"{op} {fmt(target)}",
            "status": met(op, target, rx["median"] if rx else None),
        })
    return rows


REFERENCE_STDLIB_HOP_US = 25.0  # issue 3: "a router that submits every payload ... ~25 µs"


def host_gauge(rows: list[dict[str, Any]]) -> float | None:
    """The stdlib router's median W1 hop in this run (µs): how fast the host ran."""
    for r in rows:
        if r["workload"] == "W1" and r["metric"] == "us_per_hop" and r["stdlib"]:
            return float(r["stdlib"]["median"])
    return None


def render(rows: list[dict[str, Any]]) -> str:
    head = ["", "metric", "unit", "routilux median (min–max)", "stdlib router (min–max)",
            "÷ stdlib", "direct calls", "target", ""]
    body = []
    for r in rows:
        def span(c: dict[str, float] | None) -> str:
            if c is None:
                return "-"
            return f"{fmt(c['median'])} ({fmt(c['min'])}–{fmt(c['max'])})"

        body.append([
            r["workload"], r["label"], r["unit"], span(r["routilux"]), span(r["stdlib"]),
            "-" if r["ratio"] is None else f"{r['ratio']:.2f}",
            "-" if r["direct"] is None else fmt(r["direct"]["median"]),
            r["target"] or "", r["status"],
        ])
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(wd) for c, wd in zip(cells, widths, strict=True)) + " |"

    out = [line(head), "|" + "|".join("-" * (wd + 2) for wd in widths) + "|"]
    out.extend(line(b) for b in body)
    return "\n".join(out)


DASK_VARIANTS = (("W2", 64), ("W2", 1), ("W3", 64))
"""(workload, batch size) run with ``--dask``; batch size 1 shows what batching saves."""

DASK_ROWS = [
    ("W2", "burst_jobs_per_s", "3-step jobs, burst", "jobs/s"),
    ("W2", "burst_activations_per_s", "activations/s, burst", "/s"),
    ("W2", "burst_avg_batch", "activations per Dask task, burst", ""),
    ("W2", "burst_p50_ms", "burst exec→done p50", "ms"),
    ("W2", "serial_p50_ms", "serial exec→done p50", "ms"),
    ("W2", "serial_p99_ms", "serial exec→done p99", "ms"),
    ("W2", "dask_roundtrip_p50_ms", "plain Dask task round trip p50 (floor)", "ms"),
    ("W3", "wall_over_ideal", "200×50 ms on 2×25 threads: wall/ideal", "×"),
    ("W3", "wall_s", "200×50 ms on 2×25 threads: wall", "s"),
    ("W3", "dask_map_wall_s", "same sleeps as plain client.map (floor)", "s"),
]


def run_dask(quick: bool, reps: int, timeout: float, env: dict[str, str]) -> list[dict[str, Any]]:
    """Run the Dask variants of W2 and W3, each repetition in a fresh process."""
    runs = []
    for w, batch in DASK_VARIANTS:
        t_w = time.perf_counter()
        for rep in range(reps):
            cmd = [sys.executable, str(HERE / "dask_workloads.py"), w, "--json",
                   "--batch-size", str(batch)]
            if quick:
                cmd.append("--quick")
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                      env=env, check=False)
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
                out: dict[str, Any] = json.loads(lines[-1])
            except (subprocess.TimeoutExpired, IndexError, json.JSONDecodeError) as exc:
                out = {"workload": w, "impl": f"dask-b{batch}", "ok": False, "metrics": {},
                       "errors": [f"no result: {type(exc).__name__}"]}
            out["rep"] = rep
            runs.append(out)
            if not out.get("ok"):
                print(f"  {w} dask-b{batch} rep {rep}: FAILED: "
                      f"{'; '.join(out.get('errors', []))}", flush=True)
        print(f"  {w} dask (batch {batch}) done in {time.perf_counter() - t_w:.1f} s",
              flush=True)
    return runs


def dask_table(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for w, key, label, unit in DASK_ROWS:
        cells = {}
        for batch in sorted({b for ww, b in DASK_VARIANTS if ww == w}, reverse=True):
            vals = [r["metrics"][key] for r in runs
                    if r.get("impl") == f"dask-b{batch}" and r.get("workload") == w
                    and key in r.get("metrics", {})]
            cells[batch] = summarise(vals)
        rows.append({"workload": w, "metric": key, "label": label, "unit": unit,
                     "by_batch_size": cells})
    return rows


def render_dask(rows: list[dict[str, Any]]) -> str:
    head = ["", "metric", "unit", "batch 64: median (min–max)", "batch 1 (unbatched)"]
    body = []
    for r in rows:
        def span(c: dict[str, float] | None) -> str:
            return "-" if c is None else f"{fmt(c['median'])} ({fmt(c['min'])}–{fmt(c['max'])})"

        cells = r["by_batch_size"]
        body.append([r["workload"], r["label"], r["unit"], span(cells.get(64)),
                     span(cells.get(1))])
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(wd) for c, wd in zip(cells, widths, strict=True)) + " |"

    out = [line(head), "|" + "|".join("-" * (wd + 2) for wd in widths) + "|"]
    out.extend(line(b) for b in body)
    return "\n".join(out)


def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE.parent,
                             capture_output=True, text=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "routilux-core/src"],
                               cwd=HERE.parent, capture_output=True, text=True,
                               check=False).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Routilux benchmark suite (issue 3)")
    ap.add_argument("--quick", action="store_true", help="small sizes, 2 repetitions (smoke)")
    ap.add_argument("--json", metavar="FILE", help="write every run and the summary as JSON")
    ap.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown")
    ap.add_argument("--only", metavar="W1,W2", help="comma-separated workloads to run")
    ap.add_argument("--reps", type=int, help="repetitions (default 5, quick 2)")
    ap.add_argument("--dask", action="store_true",
                    help="also run W2 and W3 with routine logic on a Dask LocalCluster "
                    "(routilux-dask; benchmarks/dask_workloads.py), batched and unbatched")
    ap.add_argument("--src", metavar="DIR",
                    help="benchmark the routilux package found in DIR (e.g. an exported "
                    "commit's routilux-core/src) instead of the installed one")
    args = ap.parse_args(argv)

    workloads = list(WORKLOADS)
    if args.only:
        names = {w.upper(): w for w in WORKLOADS}
        workloads = [names.get(w.strip().upper(), w.strip()) for w in args.only.split(",")
                     if w.strip()]
        unknown = [w for w in workloads if w not in WORKLOADS]
        if unknown:
            ap.error(f"unknown workload(s): {', '.join(unknown)}")
    reps = args.reps or (2 if args.quick else 5)
    timeout = 120.0 if args.quick else 900.0
    env = dict(os.environ)
    if args.src:
        src = str(Path(args.src).resolve())
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")

    meta = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "quick": args.quick, "reps": reps, "cpus": os.cpu_count(),
        "python": platform.python_version(), "platform": platform.platform(),
        "git": git_rev(), "src": args.src, "loadavg_start": os.getloadavg(),
    }
    print(f"routilux benchmarks: {'quick' if args.quick else 'full'}, {reps} reps, "
          f"{meta['cpus']} CPUs, Python {meta['python']}, git {meta['git']}, "
          f"load {meta['loadavg_start'][0]:.2f}", flush=True)
    runs: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    for w in workloads:
        t_w = time.perf_counter()
        for rep in range(reps):
            for impl in IMPLS[w]:
                out = run_process(w, impl, args.quick, timeout, env)
                out["rep"] = rep
                runs.append(out)
                if not out.get("ok"):
                    print(f"  {w} {impl} rep {rep}: FAILED: {'; '.join(out.get('errors', []))}",
                          flush=True)
        print(f"  {w} done in {time.perf_counter() - t_w:.1f} s", flush=True)
    dask_rows: list[dict[str, Any]] = []
    if args.dask:
        dask_runs = run_dask(args.quick, reps, timeout, env)
        runs.extend(dask_runs)
        dask_rows = dask_table(dask_runs)
    meta["elapsed_s"] = time.perf_counter() - t_all
    meta["loadavg_end"] = os.getloadavg()

    rows = build_table(runs, workloads)
    table = render(rows)
    print()
    print(table)
    print()
    gauge = host_gauge(rows)
    if gauge is not None:
        meta["stdlib_w1_us_per_hop"] = gauge
        print(f"Host speed: the stdlib router's W1 hop took {fmt(gauge)} µs in this run (the "
              f"issue's reference: ~{fmt(REFERENCE_STDLIB_HOP_US)} µs, the speed its absolute "
              "targets were set at; read a figure near its line beside the stdlib column)")
        print()
    if dask_rows:
        print("Dask executor (routilux-dask, LocalCluster of 2 worker processes):")
        print(render_dask(dask_rows))
        print()
    failed = [r for r in runs if not r.get("ok")]
    for w in workloads:
        print(f"{w}: {DESCRIPTIONS[w]}")
    print(f"\n{len(runs)} runs in {meta['elapsed_s']:.1f} s; load average "
          f"{meta['loadavg_start'][0]:.2f} → {meta['loadavg_end'][0]:.2f}; "
          f"{len(failed)} failed to deliver")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"meta": meta, "summary": rows, "dask": dask_rows, "runs": runs},
                       indent=1) + "\n",
            encoding="utf-8",
        )
    if args.markdown:
        Path(args.markdown).write_text(table + "\n", encoding="utf-8")
    if failed:
        print("FAILED:", ", ".join(f"{r.get('workload')}/{r.get('impl')}#{r.get('rep')}"
                                   for r in failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
