# ruff: noqa: F811, F841, I001
# (The introduction's examples are copied exactly, so lint must not rewrite them: F811 because
# one defines ``logic`` twice, the wrong way then the right way; F841 because one reads a config
# value it never uses; I001 because their imports are in the introduction's order.)
"""Every code example of the product description (docs introduction), run as a test.

Each example is copied exactly, between ``# --- introduction: <section> ---`` and
``# --- end of example ---`` markers. Where an example is incomplete (it uses names it does not
define, or connects routines it never adds), the test completes it *around* the unchanged
lines, and a comment marked ``(added)`` says what was added and why. Examples that use the
process-wide ``FlowRegistry`` keep doing so; the ``global_registry`` fixture removes the flows
they register afterwards. After each example the test checks what a user would observe.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from routilux import (
    Flow,
    FlowRegistry,
    JobStatus,
    ManualClock,
    Routine,
    Runtime,
    current_activation,
)
from routilux.errors import PauseTimeoutError

WAIT = 5.0


@pytest.fixture
def global_registry() -> Iterator[FlowRegistry]:
    """The process-wide registry, with every name an example registers removed afterwards."""
    registry = FlowRegistry.get_instance()
    before = set(registry.names())
    yield registry
    for name in set(registry.names()) - before:
        registry.unregister(name)


class Collector(Routine):
    """(added) Records every payload it receives in the job's shared_log."""

    def __init__(self):
        super().__init__()
        self.add_slot("input")

        def logic(slot_data, policy_message, job_state):
            job_state.shared_log.extend(slot_data["input"])

        self.set_logic(logic)


class Relay(Routine):
    """(added) Logs ``(routine_id, payload)`` and forwards the payload on ``output``."""

    def __init__(self):
        super().__init__()
        self.add_slot("input")
        self.add_event("output", ["data"])

        def logic(slot_data, policy_message, job_state):
            routine_id = current_activation().routine_id
            for payload in slot_data["input"]:
                job_state.shared_log.append((routine_id, payload))
                self.emit("output", **payload)

        self.set_logic(logic)


def intro_pipeline_flow() -> Flow:
    # --- introduction: Flexible Connections ---
    from routilux import Flow

    flow = Flow(flow_id="my_pipeline")
    # (added) The example connects routines it never adds to the flow; add them first.
    for routine_id in ("source", "processor1", "processor2", "source1", "source2", "aggregator"):
        flow.add_routine(Relay(), routine_id)

    # One event to multiple slots
    flow.connect("source", "output", "processor1", "input")
    flow.connect("source", "output", "processor2", "input")

    # Multiple events to one slot
    flow.connect("source1", "output", "aggregator", "input")
    flow.connect("source2", "output", "aggregator", "input")
    # --- end of example ---
    return flow


class TestEventDrivenArchitecture:
    def test_data_processor_processes_and_emits(self, runtime: Runtime) -> None:
        # --- introduction: Event-Driven Architecture ---
        from routilux import Routine
        from routilux.activation_policies import immediate_policy

        class DataProcessor(Routine):
            def __init__(self):
                super().__init__()
                # Define input slot
                self.input_slot = self.add_slot("input")
                # Define output event
                self.output_event = self.add_event("output", ["result"])

                def logic(slot_data, policy_message, job_state):
                    data = slot_data.get("input", [{}])[0].get("data", "")
                    result = f"Processed: {data}"
                    self.emit("output", result=result)

                self.set_logic(logic)
                self.set_activation_policy(immediate_policy())
        # --- end of example ---

        # (added) Run it: the result arrives at a downstream routine.
        flow = Flow("event-driven")
        flow.add_routine(DataProcessor(), "processor")
        flow.add_routine(Collector(), "collector")
        flow.connect("processor", "output", "collector", "input")
        state = runtime.exec(flow, entry_params={"data": "hello"})
        assert runtime.wait_job(state.job_id, timeout=WAIT)
        assert state.status is JobStatus.COMPLETED
        assert state.shared_log == [{"result": "Processed: hello"}]


class TestFlexibleConnections:
    def test_one_to_many_and_many_to_one_connections(self) -> None:
        flow = intro_pipeline_flow()
        assert len(flow.connections) == 4
        assert flow.validate().ok


class TestRuntimeBasedExecution:
    def test_registered_flow_runs_to_completion(self, global_registry: FlowRegistry) -> None:
        flow = intro_pipeline_flow()  # (added) the flow of the previous example

        # --- introduction: Runtime-Based Execution ---
        from routilux.runtime import Runtime
        from routilux.monitoring.flow_registry import FlowRegistry

        # Register flow
        registry = FlowRegistry.get_instance()
        registry.register_by_name("my_pipeline", flow)

        # Execute with Runtime
        runtime = Runtime(thread_pool_size=10)
        job_state = runtime.exec("my_pipeline", entry_params={"data": "hello"})
        runtime.wait_until_all_jobs_finished(timeout=5.0)
        # --- end of example ---

        try:
            assert job_state.status is JobStatus.COMPLETED
            received: dict[str, list] = {}
            for routine_id, payload in job_state.shared_log:
                received.setdefault(routine_id, []).append(payload)
            hello = {"data": "hello"}
            assert received == {
                "source": [hello], "source1": [hello], "source2": [hello],
                "processor1": [hello], "processor2": [hello], "aggregator": [hello, hello],
            }
        finally:
            runtime.shutdown()


class TestRobustErrorHandling:
    def test_retry_handler_reruns_a_failed_activation(
        self, clocked_runtime: Runtime, clock: ManualClock, eventually
    ) -> None:
        # (added) A flow whose routine fails on its first attempt only.
        class Flaky(Routine):
            def __init__(self):
                super().__init__()
                self.add_slot("input")

                def logic(slot_data, policy_message, job_state):
                    if current_activation().attempt == 0:
                        raise ConnectionError("first attempt fails")
                    job_state.shared_log.append("succeeded")

                self.set_logic(logic)

        flow = Flow("retrying")
        flow.add_routine(Flaky(), "flaky")

        # --- introduction: Robust Error Handling ---
        from routilux import ErrorHandler, ErrorStrategy

        error_handler = ErrorHandler(
            strategy=ErrorStrategy.RETRY,
            max_retries=3,
            retry_delay=1.0
        )
        flow.set_error_handler(error_handler)
        # --- end of example ---

        assert flow.error_handler is error_handler
        state = clocked_runtime.exec(flow, entry_params={})
        metrics = lambda: clocked_runtime.get_job_metrics(state.job_id)  # noqa: E731
        assert eventually(lambda: metrics()["routines"]["flaky"]["retries"] == 1)
        assert not clocked_runtime.wait_job(state.job_id, timeout=0.05)  # waiting on a timer
        clock.advance(1.0)  # retry_delay
        assert clocked_runtime.wait_job(state.job_id, timeout=WAIT)
        assert state.status is JobStatus.COMPLETED
        assert state.shared_log == ["succeeded"]
        assert [(r.status, r.attempt) for r in state.history("flaky")] == [
            ("retrying", 0), ("completed", 1),
        ]


class TestFullSerializationSupport:
    def test_saved_job_resumes(
        self, global_registry: FlowRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)  # (added) "state.json" is written in a scratch directory
        # (added) The example saves a `job_state` and resumes it with a `runtime` and a flow
        # registered as "my_flow", none of which it defines. Build a job that is paused with
        # work still queued (a finished job has nothing to resume), and a fresh runtime.
        gate, entered = threading.Event(), threading.Event()

        class Gated(Routine):
            def __init__(self):
                super().__init__()
                self.add_slot("input")
                self.add_event("output", ["n"])

                def logic(slot_data, policy_message, job_state):
                    entered.set()
                    assert gate.wait(WAIT)
                    for n in range(3):
                        self.emit("output", n=n)

                self.set_logic(logic)

        my_flow = Flow("my_flow")
        my_flow.add_routine(Gated(), "gated")
        my_flow.add_routine(Collector(), "collector")
        my_flow.connect("gated", "output", "collector", "input")
        global_registry.register_by_name("my_flow", my_flow)
        with Runtime(thread_pool_size=2) as first_runtime:
            job_state = first_runtime.exec("my_flow", entry_params={})
            assert entered.wait(WAIT)
            with pytest.raises(PauseTimeoutError):
                first_runtime.pause_job(job_state.job_id, timeout=0.05)
            gate.set()
            first_runtime.pause_job(job_state.job_id, timeout=WAIT)
            assert job_state.status is JobStatus.PAUSED and job_state.shared_log == []
        runtime = Runtime(thread_pool_size=2)
        try:
            # --- introduction: Full Serialization Support ---
            # Save job state
            job_state.save("state.json")

            # Resume from saved state
            from routilux.job_state import JobState
            saved_state = JobState.load("state.json")
            runtime.exec("my_flow", job_state=saved_state)
            # --- end of example ---

            assert (tmp_path / "state.json").is_file()
            assert runtime.wait_job(saved_state.job_id, timeout=WAIT)
            assert saved_state.job_id == job_state.job_id
            assert saved_state.status is JobStatus.COMPLETED
            assert saved_state.shared_log == [{"n": 0}, {"n": 1}, {"n": 2}]
            assert [r.routine_id for r in saved_state.history()].count("gated") == 1
        finally:
            runtime.shutdown()


class TestParameterlessConstructor:
    def test_wrong_and_correct_constructors(self) -> None:
        # --- introduction: Critical Constraint: Parameterless Constructor ---
        # ❌ WRONG - Will break serialization
        class MyRoutine(Routine):
            def __init__(self, name: str):
                super().__init__()
                self.name = name

        wrong = MyRoutine  # (added) keep the wrong class to show why it is wrong

        # ✅ CORRECT - Use _config dictionary
        class MyRoutine(Routine):
            def __init__(self):
                super().__init__()
                self.set_config(name="my_routine", timeout=30)
        # --- end of example ---

        with pytest.raises(TypeError):
            wrong()  # cannot be recreated from its type name and configuration
        routine = MyRoutine()
        assert routine.get_config("name") == "my_routine"
        assert dict(routine.config) == {"name": "my_routine", "timeout": 30}


class TestNoInstanceVariableModification:
    def test_counter_kept_in_job_state(self, runtime: Runtime) -> None:
        class Counter(Routine):
            def __init__(self):
                super().__init__()
                self.add_slot("input")
                routine_id = "counter"  # (added) the examples assume the routine's id is known

                # --- introduction: Critical Constraint: No Instance Variable Modification ---
                # ❌ WRONG - Breaks execution isolation
                def logic(slot_data, policy_message, job_state):
                    self.counter += 1  # Data race!

                # ✅ CORRECT - Use JobState
                def logic(slot_data, policy_message, job_state):
                    counter = job_state.get_routine_state(routine_id, {}).get("count", 0)
                    job_state.update_routine_state(routine_id, {"count": counter + 1})
                # --- end of example ---

                self.set_logic(logic)  # (added) use the correct one

        flow = Flow("counting")
        flow.add_routine(Counter(), "counter")
        first = runtime.post(flow, "counter", "input", {})
        second = runtime.post(flow, "counter", "input", {})
        for _ in range(2):
            runtime.post(flow, "counter", "input", {}, job_id=first.job_id)
        assert runtime.wait_until_all_jobs_finished(timeout=WAIT)
        assert first.get_routine_state("counter") == {"count": 3}
        assert second.get_routine_state("counter") == {"count": 1}  # isolated per job


class TestCorrectUsage:
    def test_processor_keeps_state_in_job_state(self, runtime: Runtime) -> None:
        # --- introduction: Example - Correct Usage ---
        from routilux import Routine, Flow
        from routilux.activation_policies import immediate_policy

        class Processor(Routine):
            def __init__(self):
                super().__init__()
                # Static configuration (set once)
                self.set_config(threshold=10, timeout=30)
                self.input_slot = self.add_slot("input")
                self.output_event = self.add_event("output", ["result"])

                def logic(slot_data, policy_message, job_state):
                    # Read static config
                    threshold = self.get_config("threshold", 0)

                    # Store execution-specific state in JobState
                    # (Assuming routine_id is available via context)
                    job_state.update_routine_state("processor", {"processed": True})

                    # Store business data in JobState
                    job_state.shared_data["last_processed"] = slot_data
                    job_state.shared_log.append({"action": "process", "data": slot_data})

                self.set_logic(logic)
                self.set_activation_policy(immediate_policy())

        # Flow defines structure (static)
        flow = Flow(flow_id="my_workflow")
        processor = Processor()
        flow.add_routine(processor, "processor")
        # --- end of example ---

        # (added) Run the flow twice: each execution has its own independent JobState.
        one = runtime.exec(flow, entry_params={"item": 1})
        two = runtime.exec(flow, entry_params={"item": 2})
        assert runtime.wait_until_all_jobs_finished(timeout=WAIT)
        assert one.status is JobStatus.COMPLETED and two.status is JobStatus.COMPLETED
        assert one.get_routine_state("processor") == {"processed": True}
        assert one.shared_data["last_processed"] == {"input": [{"item": 1}]}
        assert two.shared_log == [{"action": "process", "data": {"input": [{"item": 2}]}}]
        assert processor.get_config("threshold") == 10


class TestGettingStarted:
    def test_quick_example_runs(self, global_registry: FlowRegistry) -> None:
        # --- introduction: Getting Started ---
        from routilux import Routine, Flow, Runtime
        from routilux.activation_policies import immediate_policy
        from routilux.monitoring.flow_registry import FlowRegistry

        class MyRoutine(Routine):
            def __init__(self):
                super().__init__()
                self.input = self.add_slot("input")
                self.output = self.add_event("output", ["result"])

                def logic(slot_data, policy_message, job_state):
                    data = slot_data.get("input", [{}])[0]
                    self.emit("output", result=f"Processed: {data}")

                self.set_logic(logic)
                self.set_activation_policy(immediate_policy())

        # Create flow
        flow = Flow(flow_id="my_workflow")
        routine = MyRoutine()
        flow.add_routine(routine, "my_routine")

        # Register and execute
        FlowRegistry.get_instance().register_by_name("my_workflow", flow)
        runtime = Runtime(thread_pool_size=5)
        job_state = runtime.exec("my_workflow", entry_params={"data": "Hello"})
        runtime.wait_until_all_jobs_finished(timeout=5.0)
        # --- end of example ---

        try:
            assert job_state.status is JobStatus.COMPLETED
            assert [(r.routine_id, r.status) for r in job_state.history()] == [
                ("my_routine", "completed")
            ]
            # (added) Connect a downstream routine: the emitted result arrives there.
            flow.add_routine(Collector(), "collector")
            flow.connect("my_routine", "output", "collector", "input")
            again = runtime.exec("my_workflow", entry_params={"data": "Hello"})
            assert runtime.wait_job(again.job_id, timeout=WAIT)
            assert again.shared_log == [{"result": "Processed: {'data': 'Hello'}"}]
        finally:
            runtime.shutdown()

