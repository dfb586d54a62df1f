"""Graph exporters: every routine, connection, entry and policy appears in the text."""

from __future__ import annotations

from routilux import ErrorHandler, ErrorStrategy, Flow, Routine, batch_size_policy
from routilux.graph import flow_to_dot, flow_to_mermaid


class Source(Routine, register=False):
    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("out", ["x"])
        self.set_logic(lambda slot_data, policy_message, job_state: None)


class Sink(Routine, register=False):
    def __init__(self) -> None:
        super().__init__()
        self.add_slot("items")
        self.set_logic(lambda slot_data, policy_message, job_state: None)
        self.set_activation_policy(batch_size_policy(3))
        self.set_error_handler(ErrorHandler(strategy=ErrorStrategy.RETRY, max_retries=2))


def build() -> Flow:
    flow = Flow(flow_id='say "hi"', execution_timeout=5)
    flow.add_routine(Source(), "src")
    flow.add_routine(Sink(), "sink")
    flow.connect("src", "out", "sink", "items")
    flow.set_entry("src", "input")
    flow.set_error_handler(ErrorHandler(strategy="continue"))
    return flow


class TestMermaid:
    def test_nodes_edges_entry_and_policies(self) -> None:
        text = flow_to_mermaid(build())
        lines = text.splitlines()
        assert lines[0] == "flowchart LR"
        assert "  %% flow error handler: continue" in lines
        assert '  r0["src<br/>' + Source.type_name + '<br/>policy: immediate"]' in lines
        assert any(
            line.startswith('  r1["sink<br/>')
            and "policy: batch_size(size=3, flush_partial=True)" in line
            and "on error: retry x2, then stop" in line
            for line in lines
        )
        assert '  r0 -- "out → items" --> r1' in lines
        assert '  entry -- "input" --> r0' in lines


class TestDot:
    def test_quotes_are_escaped_and_edges_labelled(self) -> None:
        text = flow_to_dot(build())
        assert text.startswith('digraph "say \\"hi\\"" {\n')
        assert '  "src" -> "sink" [label="out → items"];' in text
        assert '  "__entry__" -> "src" [label="input"];' in text
        assert "timeout: 5 s" in text
        assert text.rstrip().endswith("}")
