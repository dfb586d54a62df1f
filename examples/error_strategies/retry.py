"""RETRY: the failed activation runs again, with the same input, after a backoff delay.

    uv run python examples/error_strategies/retry.py

``fetch`` calls a flaky service that fails twice before answering. The handler retries up to
3 times, waiting ``retry_delay * retry_backoff ** (attempt - 1)`` seconds (0.05 s, then 0.1 s)
on the runtime's timer: no worker thread sleeps meanwhile. Each attempt is in the execution
history with its number; a second job whose service never answers runs out of retries and
falls back to STOP.
"""

from __future__ import annotations

import itertools
import time

from routilux import ErrorHandler, ErrorStrategy, Flow, Routine, Runtime, current_activation


class Fetch(Routine):
    """Fetches ``url``; the fake service fails ``fail_times`` times, then answers."""

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")

        def logic(slot_data, policy_message, job_state):
            (request,) = slot_data["input"]
            attempt = current_activation().attempt
            job_state.shared_log.append((attempt, time.monotonic(), request["url"]))
            if attempt < request["fail_times"]:
                raise ConnectionError(f"{request['url']} unreachable (attempt {attempt})")
            job_state.shared_data["body"] = f"<contents of {request['url']}>"

        self.set_logic(logic)
        self.set_error_handler(
            ErrorHandler(
                strategy=ErrorStrategy.RETRY,
                max_retries=3,
                retry_delay=0.05,
                retry_backoff=2.0,
                max_delay=1.0,
                retryable_exceptions=(ConnectionError, TimeoutError),
            )
        )


def build_flow() -> Flow:
    flow = Flow(flow_id="fetch_retry")
    flow.add_routine(Fetch(), "fetch")
    return flow


def main() -> int:
    flow = build_flow()
    with Runtime(thread_pool_size=1) as runtime:
        ok = runtime.exec(flow, entry_params={"url": "https://example.org/a", "fail_times": 2})
        bad = runtime.exec(flow, entry_params={"url": "https://example.org/b", "fail_times": 99})
        runtime.wait_until_all_jobs_finished(timeout=10)

        print(f"job ok: {ok.status.value}, body={ok.shared_data.get('body')}")
        starts = [t for _, t, _ in ok.shared_log]
        waits = [round(b - a, 2) for a, b in itertools.pairwise(starts)]
        print(f"job ok attempts: {[a for a, _, _ in ok.shared_log]}, waited ~{waits} s")
        for record in ok.history("fetch"):
            print(f"  attempt {record.attempt}: {record.status}")
        print(f"job bad: {bad.status.value}, attempts: {[a for a, _, _ in bad.shared_log]}")
        print(f"job bad error: {bad.error}")
        metrics = runtime.get_job_metrics(ok.job_id)["routines"]["fetch"]
        print(f"job ok retries: {metrics['retries']}")
        return 0 if ok.status.value == "completed" and bad.status.value == "failed" else 1


if __name__ == "__main__":
    raise SystemExit(main())
