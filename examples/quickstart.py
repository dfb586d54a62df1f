"""Quickstart: a three-routine pipeline run end to end.

    uv run python examples/quickstart.py

A source splits a sentence into words, a transformer upper-cases each word (one activation
per word), and a collector batches the results and records them in the job's shared data.
"""

from __future__ import annotations

from routilux import Flow, Routine, Runtime, batch_size_policy
from routilux.monitoring.flow_registry import FlowRegistry


class Splitter(Routine):
    """Emits one ``word`` payload per word of the entry parameter ``text``."""

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("word", ["word", "position"])

        def logic(slot_data, policy_message, job_state):
            for params in slot_data["input"]:
                for position, word in enumerate(params.get("text", "").split()):
                    self.emit("word", word=word, position=position)

        self.set_logic(logic)


class Upper(Routine):
    """Upper-cases one word per activation."""

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("output", ["word", "position"])

        def logic(slot_data, policy_message, job_state):
            (payload,) = slot_data["input"]
            self.emit("output", word=payload["word"].upper(), position=payload["position"])

        self.set_logic(logic)


class Collector(Routine):
    """Collects words in batches of three and stores them, in order, in shared data."""

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("words")

        def logic(slot_data, policy_message, job_state):
            batch = slot_data["words"]
            job_state.shared_log.append({"batch": len(batch), "partial": policy_message["partial"]})
            words = job_state.shared_data.setdefault("words", {})
            for payload in batch:
                words[payload["position"]] = payload["word"]

        self.set_logic(logic)
        self.set_activation_policy(batch_size_policy(3))


def build_flow() -> Flow:
    flow = Flow(flow_id="quickstart")
    flow.add_routine(Splitter(), "split")
    flow.add_routine(Upper(), "upper")
    flow.add_routine(Collector(), "collect")
    flow.connect("split", "word", "upper", "input")
    flow.connect("upper", "output", "collect", "words")
    return flow


def main() -> int:
    FlowRegistry.get_instance().register_by_name("quickstart", build_flow())
    with Runtime(thread_pool_size=4) as runtime:
        text = "routines wired into flows run on a shared pool"
        job = runtime.exec("quickstart", entry_params={"text": text})
        runtime.wait_job(job.job_id, timeout=10)
        words = job.shared_data.get("words", {})
        print(f"job {job.job_id[:8]} {job.status.value}")
        print("result:", " ".join(words[i] for i in sorted(words)))
        print("batches:", job.shared_log)
        metrics = runtime.get_job_metrics(job.job_id)
        for rid, m in metrics["routines"].items():
            print(
                f"  {rid:8} activations={m['activations']:3} "
                f"payloads in={m['payloads_in']:3} out={m['payloads_out']:3}"
            )
        return 0 if job.status.value == "completed" else 1


if __name__ == "__main__":
    raise SystemExit(main())
