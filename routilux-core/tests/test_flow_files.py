"""Flow files: the documented format, the shipped JSON Schema, and validation with paths."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from routilux import Flow, JobState, Routine, Runtime, register_predicate
from routilux.errors import FlowValidationError, SerializationError
from routilux.serialization import (
    flow_schema,
    load_flow,
    validate_flow_document,
    validate_flow_file,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "serialization.md"


class Splitter(Routine):
    type_name = "myapp.routines:Splitter"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("word", ["word"])
        self.set_logic(self._run)

    def _run(self, slot_data: Any, policy_message: Any, job_state: JobState) -> None:
        sep = self.get_config("separator", " ")
        for p in slot_data["input"]:
            for word in p.get("text", "").split(sep):
                self.emit("word", word=word)


class Upper(Routine):
    type_name = "myapp.routines:Upper"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("output", ["word"])
        self.set_logic(self._run)

    def _run(self, slot_data: Any, policy_message: Any, job_state: JobState) -> None:
        for p in slot_data["input"]:
            self.emit("output", word=p["word"].upper() + self.get_config("suffix", ""))


class Collector(Routine):
    type_name = "myapp.routines:Collector"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("words")
        self.set_logic(self._run)

    def _run(self, slot_data: Any, policy_message: Any, job_state: JobState) -> None:
        with job_state._lock:
            job_state.shared_log.extend(p["word"] for p in slot_data["words"])


def enough_words(queued: dict[str, list[dict[str, Any]]], job_state: Any) -> bool:
    return True


register_predicate("myapp.enough_words", enough_words, replace=True)


def doc_examples() -> list[tuple[str, Any]]:
    """The flow documents shown in docs/serialization.md (yaml and json code blocks)."""
    text = DOCS.read_text(encoding="utf-8")
    out = []
    for lang, body in re.findall(r"```(yaml|json)\n(.*?)```", text, flags=re.S):
        data = yaml.safe_load(body) if lang == "yaml" else json.loads(body)
        out.append((f"{lang}:{data['flow_id']}", data))
    return out


EXAMPLES = doc_examples()
VALIDATOR = jsonschema.Draft202012Validator(flow_schema())


class TestDocumentedExamples:
    def test_docs_show_examples(self) -> None:
        assert {name for name, _ in EXAMPLES} == {"yaml:pipeline", "json:fan"}

    @pytest.mark.parametrize(("name", "data"), EXAMPLES, ids=[n for n, _ in EXAMPLES])
    def test_example_matches_the_schema(self, name: str, data: Any) -> None:
        VALIDATOR.validate(data)

    @pytest.mark.parametrize(("name", "data"), EXAMPLES, ids=[n for n, _ in EXAMPLES])
    def test_example_loads_validates_and_runs(self, name: str, data: Any) -> None:
        assert validate_flow_document(data) == []
        flow = Flow.from_dict(data)
        VALIDATOR.validate(flow.to_dict())  # what we write also matches the schema
        with Runtime(thread_pool_size=2) as runtime:
            state = runtime.exec(flow, entry_params={"text": "a b c"})
            assert runtime.wait_job(state.job_id, timeout=20)
        assert state.status.value == "completed", state.error
        assert sorted(state.shared_log) == sorted(
            w for w in (["A", "B", "C"] if name == "yaml:pipeline" else
                        ["A", "B", "C", "A!", "B!", "C!"])
        )

    def test_schema_is_shipped_in_the_package(self) -> None:
        import routilux

        path = Path(routilux.__file__).parent / "schemas" / "flow.schema.json"
        assert json.loads(path.read_text()) == flow_schema()


BAD = {
    "flow_id": "bad",
    "colour": "blue",
    "routines": {
        "parse": {"type": "x"},
        "split": {"type": "myapp.routines:Splitter", "config": ["not", "a", "mapping"]},
        "upper": {
            "type": "myapp.routines:Upper",
            "policy": {"name": "batch_size", "params": {"sise": 3}},
            "error_handler": {"strategy": "retry", "max_retries": "three",
                              "retryable_exceptions": ["os.system"]},
            "max_concurrency": 0,
        },
        "collect": {"type": "myapp.routines:Collector", "policy": "no_such_policy"},
    },
    "connections": [
        {"source": "split", "event": "word", "target": "upper", "slot": "input"},
        {"source": "split", "event": "words", "target": "upper", "slot": "input"},
        {"source": "upper", "event": "output", "target": "collect", "slot": "word"},
        "upper.output => collect.words",
        {"source": "ghost", "event": "out", "target": "collect", "slot": "words"},
        {"source": "parse", "event": "out", "target": "collect", "slot": "words"},
    ],
    "entry": {"routine": "split", "slot": "nope"},
}


class TestValidation:
    def test_every_problem_is_reported_with_its_path(self) -> None:
        issues = validate_flow_document(BAD)
        assert [i.path for i in issues] == [
            "colour",
            "routines.parse.type",
            "routines.split.config",
            "routines.upper.policy",
            "routines.upper.error_handler.max_retries",
            "routines.upper.error_handler.retryable_exceptions",
            "routines.upper.max_concurrency",
            "routines.collect.policy",
            "connections[1].event",
            "connections[2].slot",
            "connections[3]",
            "connections[4].source",
            "entry.slot",
        ]
        text = "\n".join(map(str, issues))
        assert "routines.parse.type: routine type 'x' is not registered" in text
        assert "unknown activation policy 'no_such_policy'" in text
        assert "unknown exception type 'os.system'" in text
        assert "sise" in text
        assert all(i.severity == "error" for i in issues)

    def test_from_dict_raises_flow_validation_error_with_all_issues(self) -> None:
        with pytest.raises(FlowValidationError) as info:
            Flow.from_dict(BAD)
        assert len(info.value.issues) == 13
        assert "connections[2].slot: routine 'collect' has no slot 'word'" in str(info.value)

    def test_the_schema_also_rejects_the_structural_problems(self) -> None:
        errors = {"/".join(map(str, e.absolute_path)) for e in VALIDATOR.iter_errors(BAD)}
        assert "" in errors  # the unknown top-level key
        assert "routines/split/config" in errors
        assert "routines/upper/max_concurrency" in errors
        assert "connections/3" in errors

    def test_flow_checks_are_added_when_the_document_is_sound(self) -> None:
        doc = {"flow_id": "two-roots", "routines": {"a": {"type": "myapp.routines:Upper"},
                                                    "b": {"type": "myapp.routines:Upper"},
                                                    "c": {"type": "myapp.routines:Collector"}},
               "connections": ["a.output -> c.words", "b.output -> c.words"]}
        assert validate_flow_document(doc) == []
        doc["connections"] = ["a.output -> c.words", "c.words -> a.input"]
        issues = validate_flow_document(doc)
        assert [i.path for i in issues] == ["connections[1].event"]

    @pytest.mark.parametrize(
        ("data", "path"),
        [
            ([], "<root>"),
            ({"routines": {}}, "flow_id"),
            ({"flow_id": "f"}, "routines"),
            ({"flow_id": "f", "routines": {}, "format_version": 7}, "format_version"),
            ({"flow_id": "f", "routines": {}, "execution_timeout": -1}, "execution_timeout"),
            ({"flow_id": "f", "routines": {"a": {}}}, "routines.a.type"),
            ({"flow_id": "f", "routines": {"a.b": {"type": 1}}}, "routines['a.b'].type"),
            ({"flow_id": "f", "routines": {}, "connections": {}}, "connections"),
            ({"flow_id": "f", "routines": {}, "error_handler": {"strategy": "explode"}},
             "error_handler.strategy"),
        ],
    )
    def test_bad_documents_give_typed_errors_with_paths(self, data: Any, path: str) -> None:
        with pytest.raises(FlowValidationError) as info:
            Flow.from_dict(data)
        assert path in [i.path for i in info.value.issues]


class TestFiles:
    def test_yaml_and_json_files_load(self, tmp_path: Path) -> None:
        (_name, data), _ = EXAMPLES
        y = tmp_path / "flow.yaml"
        y.write_text(yaml.safe_dump(data))
        j = tmp_path / "flow.json"
        j.write_text(json.dumps(data))
        assert load_flow(y).to_dict() == load_flow(j).to_dict()
        assert validate_flow_file(y) == []

    def test_unreadable_or_malformed_files_are_serialization_errors(self, tmp_path: Path) -> None:
        with pytest.raises(SerializationError, match="cannot read"):
            load_flow(tmp_path / "missing.yaml")
        bad = tmp_path / "bad.yaml"
        bad.write_text("routines: [unclosed")
        with pytest.raises(SerializationError, match="not valid YAML"):
            load_flow(bad)
        bad_json = tmp_path / "bad.json"
        bad_json.write_text("{")
        with pytest.raises(SerializationError, match="not valid JSON"):
            load_flow(bad_json)

    def test_yaml_tags_that_would_build_objects_are_refused(self) -> None:
        text = "flow_id: !!python/object/apply:os.system ['echo pwned']\nroutines: {}\n"
        with pytest.raises(SerializationError, match="not valid YAML"):
            Flow.from_yaml(text)
