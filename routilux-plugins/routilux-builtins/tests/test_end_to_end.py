"""Several builtins in one flow: orders are split, validated, normalised, routed, batched and
collected; bad lines end in the dead-letter store."""

from __future__ import annotations

from routilux import Flow, JobStatus, ManualClock, Runtime
from routilux_builtins import (
    Batcher,
    ConditionalRouter,
    DataTransformer,
    DeadLetter,
    Mapper,
    ResultCollector,
    SchemaValidator,
    Splitter,
)
from routilux_testing import wait_for

LINE_SCHEMA = {
    "type": "object",
    "required": ["item", "order"],
    "properties": {"item": {"type": "object", "required": ["sku", "qty"]}},
}


def order_flow() -> Flow:
    flow = Flow("orders")
    flow.add_routine(Splitter.configured(field="lines", include=["order"]), "split")
    flow.add_routine(SchemaValidator.configured(schema=LINE_SCHEMA), "validate")
    flow.add_routine(
        Mapper.configured(fields={"order": "order", "sku": "item.sku", "qty": "item.qty"}),
        "map",
    )
    flow.add_routine(DataTransformer.configured(transforms={"sku": ["strip", "upper"],
                                                            "qty": "int"}), "clean")
    flow.add_routine(ConditionalRouter.configured(
        routes=[{"name": "bulk", "when": "qty >= `10`"}]), "route")
    flow.add_routine(Batcher.configured(size=2, max_wait=30), "batch")
    flow.add_routine(ResultCollector.configured(key="bulk", field="sku"), "bulk")
    flow.add_routine(ResultCollector.configured(key="batches", field="size",
                                                emit_on_drain=True), "batches")
    flow.add_routine(DeadLetter.configured(max_items=10), "dlq")
    flow.connect("split", "item", "validate", "input")
    flow.connect("validate", "valid", "map", "input")
    flow.connect("validate", "invalid", "dlq", "input")
    flow.connect("map", "output", "clean", "input")
    flow.connect("clean", "output", "route", "input")
    flow.connect("route", "bulk", "bulk", "input")
    flow.connect("route", "default", "batch", "input")
    flow.connect("batch", "batch", "batches", "input")
    return flow


class TestOrderPipeline:
    def test_end_to_end(self, clocked: Runtime, clock: ManualClock) -> None:
        lines = [
            {"sku": " ab-1 ", "qty": "2"},
            {"sku": "cd-2", "qty": "12"},
            {"qty": "1"},                      # no sku: dead letter
            {"sku": "ef-3", "qty": "1"},
            {"sku": "gh-4", "qty": 3},
        ]
        state = clocked.exec(order_flow(), entry_params={"order": 42, "lines": lines})
        # The three small lines make one full batch and one partial batch held for max_wait.
        def partial_batch_held() -> bool:
            metrics = clocked.get_job_metrics(state.job_id)
            return (
                metrics["routines"]["batch"]["payloads_in"] == 3
                and metrics["queue_depths"]["batch.input"] == 1
                and "batch" not in metrics["running"]
            )

        assert wait_for(partial_batch_held)
        clock.advance(30)
        assert clocked.wait_job(state.job_id, timeout=10)
        assert state.status is JobStatus.COMPLETED, state.error
        assert state.shared_data["bulk"] == ["CD-2"]
        assert state.shared_data["batches"] == [2, 1]
        [letter] = state.shared_data["dead_letters"]
        assert letter["payload"]["payload"]["item"] == {"qty": "1"}
        assert "'sku' is a required property" in letter["reason"]
        assert state.unconsumed == {}
