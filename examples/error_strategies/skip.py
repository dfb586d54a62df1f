"""SKIP: the failed activation is marked skipped and the job goes on.

    uv run python examples/error_strategies/skip.py

``parse`` skips lines it cannot parse. A skipped activation is not an error: the history shows
status ``skipped``, the routine state counts ``skipped_activations`` and the metrics count
``skipped`` (``errors`` stays 0).
"""

from __future__ import annotations

from routilux import ErrorHandler, ErrorStrategy, Flow, Routine, Runtime


class Lines(Routine):
    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("line", ["text"])

        def logic(slot_data, policy_message, job_state):
            for params in slot_data["input"]:
                for text in params["lines"]:
                    self.emit("line", text=text)

        self.set_logic(logic)


class Parse(Routine):
    """Parses ``key=number`` lines and adds the numbers up in shared data."""

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")

        def logic(slot_data, policy_message, job_state):
            (line,) = slot_data["input"]
            key, value = line["text"].split("=")  # ValueError on a malformed line
            totals = job_state.shared_data.setdefault("totals", {})
            totals[key] = totals.get(key, 0) + int(value)

        self.set_logic(logic)
        self.set_error_handler(ErrorHandler(strategy=ErrorStrategy.SKIP))


def build_flow() -> Flow:
    flow = Flow(flow_id="lines_skip")
    flow.add_routine(Lines(), "lines")
    flow.add_routine(Parse(), "parse")
    flow.connect("lines", "line", "parse", "input")
    return flow


def main() -> int:
    lines = ["a=1", "garbage", "b=2", "a=3", "x=y=z"]
    with Runtime(thread_pool_size=2) as runtime:
        job = runtime.exec(build_flow(), entry_params={"lines": lines})
        runtime.wait_job(job.job_id, timeout=10)
        print(f"status: {job.status.value}")
        print(f"totals: {dict(sorted(job.shared_data['totals'].items()))}")
        state = job.get_routine_state("parse")
        print(f"skipped_activations: {state['skipped_activations']}")
        print(f"history statuses: {[r.status for r in job.history('parse')]}")
        metrics = runtime.get_job_metrics(job.job_id)["routines"]["parse"]
        print(f"parse skipped={metrics['skipped']} errors={metrics['errors']}")
        return 0 if job.status.value == "completed" else 1


if __name__ == "__main__":
    raise SystemExit(main())
