"""Flows and job states round-trip by registered name, safely; saved jobs resume exactly."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from routilux import (
    ErrorHandler,
    Flow,
    FlowRegistry,
    JobState,
    JobStatus,
    ManualClock,
    Routine,
    Runtime,
    all_slots_ready_policy,
    batch_size_policy,
    breakpoint_policy,
    current_activation,
    custom_policy,
    immediate_policy,
    register_predicate,
    time_interval_policy,
    type_registry,
)
from routilux._convert import converter_for
from routilux.activation_policies import ActivationPolicy
from routilux.errors import (
    FlowValidationError,
    PauseTimeoutError,
    RoutiluxError,
    SerializationError,
    UnknownTypeError,
)
from routilux.serialization import (
    TAG_KEY,
    register_codec,
    register_job_state_migration,
)

WAIT = 20.0

# -- routines used by the tests --------------------------------------------------------------

_HOOKS: dict[str, Callable[[JobState, dict[str, Any]], None]] = {}
"""Test hooks a routine calls when its config names one (``config["hook"]``)."""


def _count_call(job_state: JobState) -> str:
    info = current_activation()
    assert info is not None
    rid = info.routine_id
    calls = (job_state.get_routine_state(rid) or {}).get("calls", 0)
    job_state.update_routine_state(rid, {"calls": calls + 1})
    return rid


class Source(Routine):
    """Emits ``n`` items (entry parameter) carrying values JSON cannot hold natively."""

    type_name = "tests.serialization:Source"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("out", ["i", "when", "tags"])

        def logic(slot_data: Any, policy_message: Any, job_state: JobState) -> None:
            _count_call(job_state)
            for params in slot_data["input"]:
                base = datetime(2024, 1, 1, tzinfo=UTC)
                for i in range(params["n"]):
                    self.emit("out", i=i, when=base + timedelta(days=i), tags=("t", i))

        self.set_logic(logic)


class Work(Routine):
    """Squares ``i``; calls the configured test hook first."""

    type_name = "tests.serialization:Work"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("out", ["i", "v", "when", "tags"])

        def logic(slot_data: Any, policy_message: Any, job_state: JobState) -> None:
            _count_call(job_state)
            hook = _HOOKS.get(self.get_config("hook", ""))
            for p in slot_data["input"]:
                if hook is not None:
                    hook(job_state, p)
                self.emit("out", i=p["i"], v=p["i"] * p["i"] * self.get_config("scale", 1),
                          when=p["when"], tags=p["tags"])

        self.set_logic(logic)


class Flaky(Routine):
    """Fails the first ``fail_times`` calls (counted in its routine state), then squares."""

    type_name = "tests.serialization:Flaky"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("out", ["i", "v", "when", "tags"])

        def logic(slot_data: Any, policy_message: Any, job_state: JobState) -> None:
            rid = _count_call(job_state)
            failures = job_state.get_routine_state(rid).get("failures", 0)
            if failures < self.get_config("fail_times", 0):
                job_state.update_routine_state(rid, {"failures": failures + 1})
                hook = _HOOKS.get(self.get_config("hook", ""))
                if hook is not None:
                    hook(job_state, {})
                raise RuntimeError(f"flaky failure {failures + 1}")
            for p in slot_data["input"]:
                self.emit("out", i=p["i"], v=p["i"] * p["i"], when=p["when"], tags=p["tags"])

        self.set_logic(logic)


class Join(Routine):
    """Pairs one payload from ``left`` with one from ``right``."""

    type_name = "tests.serialization:Join"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("left")
        self.add_slot("right")
        self.add_event("out", ["i", "v", "when", "tags"])

        def logic(slot_data: Any, policy_message: Any, job_state: JobState) -> None:
            _count_call(job_state)
            (left,) = slot_data["left"]
            (right,) = slot_data["right"]
            self.emit("out", i=(left["i"], right["i"]), v=left["v"] + right["v"],
                      when=left["when"], tags=left["tags"])

        self.set_logic(logic)
        self.set_activation_policy(all_slots_ready_policy())


class Collect(Routine):
    """Stores every result in shared data, keyed by ``i``."""

    type_name = "tests.serialization:Collect"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")

        def logic(slot_data: Any, policy_message: Any, job_state: JobState) -> None:
            _count_call(job_state)
            results = job_state.shared_data.setdefault("results", {})
            for p in slot_data["input"]:
                key = p["i"] if not isinstance(p["i"], list) else tuple(p["i"])
                results[key] = {"v": p["v"], "when": p["when"], "tags": p["tags"]}

        self.set_logic(logic)


class Relay(Routine):
    """Forwards each payload, appending its routine id to ``path``."""

    type_name = "tests.serialization:Relay"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("in")
        self.add_event("out", ["path"])

        def logic(slot_data: Any, policy_message: Any, job_state: JobState) -> None:
            info = current_activation()
            assert info is not None
            for _name, payloads in slot_data.items():
                for p in payloads:
                    path = [*p.get("path", []), info.routine_id]
                    with job_state._lock:
                        job_state.shared_log.append(tuple(path))
                    self.emit("out", path=path)

        self.set_logic(logic)


class Bare(Routine):
    """A registered class whose instances the tests modify after construction."""

    type_name = "tests.serialization:Bare"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("in")
        self.set_logic(lambda slot_data, policy_message, job_state: None)


def _always(queued: dict[str, list[dict[str, Any]]], job_state: Any) -> bool:
    return True


def _two_queued(queued: dict[str, list[dict[str, Any]]], job_state: Any) -> bool:
    return sum(len(v) for v in queued.values()) >= 2


register_predicate("tests.always", _always, replace=True)
register_predicate("tests.two_queued", _two_queued, replace=True)


# -- flows -----------------------------------------------------------------------------------


def linear_flow(hook: str | None = None) -> Flow:
    flow = Flow("ser-linear")
    flow.add_routine(Source(), "source")
    work = Work()
    if hook:
        work.set_config(hook=hook)
    flow.add_routine(work, "work")
    flow.add_routine(Collect(), "collect")
    flow.connect("source", "out", "work", "input")
    flow.connect("work", "out", "collect", "input")
    return flow


def fan_flow(hook: str | None = None) -> Flow:
    flow = Flow("ser-fan")
    flow.add_routine(Source(), "source")
    left, right = Work(), Work()
    right.set_config(scale=10)
    if hook:
        left.set_config(hook=hook)
    flow.add_routine(left, "left")
    flow.add_routine(right, "right")
    flow.add_routine(Join(), "join")
    flow.add_routine(Collect(), "collect")
    flow.connect("source", "out", "left", "input")
    flow.connect("source", "out", "right", "input")
    flow.connect("left", "out", "join", "left")
    flow.connect("right", "out", "join", "right")
    flow.connect("join", "out", "collect", "input")
    return flow


def retry_flow(hook: str | None = None) -> Flow:
    flow = Flow("ser-retry")
    flow.add_routine(Source(), "source")
    flaky = Flaky()
    flaky.set_config(fail_times=2, **({"hook": hook} if hook else {}))
    flaky.set_error_handler(ErrorHandler(strategy="retry", max_retries=5, retry_delay=0.01,
                                         retry_backoff=1.0))
    flow.add_routine(flaky, "flaky")
    flow.add_routine(Collect(), "collect")
    flow.connect("source", "out", "flaky", "input")
    flow.connect("flaky", "out", "collect", "input")
    return flow


def run_to_end(flow: Flow, entry: dict[str, Any]) -> JobState:
    with Runtime(thread_pool_size=4) as runtime:
        state = runtime.exec(flow, entry_params=entry)
        assert runtime.wait_job(state.job_id, timeout=WAIT)
    assert state.status is JobStatus.COMPLETED, state.error
    return state


def pause_hook(runtime: Runtime, when: Callable[[dict[str, Any]], bool]) -> tuple[
    Callable[[JobState, dict[str, Any]], None], threading.Event
]:
    """A hook that pauses its job (once) from inside logic, and an event set once it did."""
    fired = threading.Event()

    def hook(job_state: JobState, payload: dict[str, Any]) -> None:
        if fired.is_set() or not when(payload):
            return
        # the job pauses; PauseTimeoutError only says this activation itself still runs
        with contextlib.suppress(PauseTimeoutError):
            runtime.pause_job(job_state.job_id, timeout=0)
        fired.set()

    return hook, fired


def interrupted_run(
    build: Callable[[str | None], Flow],
    entry: dict[str, Any],
    when: Callable[[dict[str, Any]], bool],
    tmp_path: Path,
    *,
    clock: ManualClock | None = None,
) -> tuple[JobState, JobState]:
    """Pause a job from inside logic, save it, load it in a fresh runtime (with the flow
    rebuilt from its document) and run it to the end. Returns (saved-and-loaded, final)."""
    key = f"pause-{build.__name__}-{id(tmp_path)}"
    with Runtime(thread_pool_size=4, clock=clock) as runtime:
        hook, fired = pause_hook(runtime, when)
        _HOOKS[key] = hook
        flow = build(key)
        state = runtime.exec(flow, entry_params=entry)
        assert fired.wait(WAIT)
        runtime.pause_job(state.job_id, timeout=WAIT)  # waits for in-flight activations
        assert state.status is JobStatus.PAUSED
        path = state.save(tmp_path / "job.json")
        document = flow.to_json()
        runtime.cancel_job(state.job_id)
    loaded = JobState.load(path)
    registry = FlowRegistry()
    registry.register_by_name("resumed", Flow.from_json(document))
    with Runtime(thread_pool_size=4, flow_registry=registry) as fresh:
        final = fresh.exec("resumed", job_state=JobState.load(path))
        assert fresh.wait_job(final.job_id, timeout=WAIT)
    assert final.status is JobStatus.COMPLETED, final.error
    return loaded, final


# -- resume equivalence ----------------------------------------------------------------------


class TestResumeEquivalence:
    def test_linear_flow_resumes_to_the_same_result(self, tmp_path: Path) -> None:
        entry = {"n": 6}
        reference = run_to_end(linear_flow(), entry)
        loaded, final = interrupted_run(linear_flow, entry, lambda p: p["i"] == 2, tmp_path)
        assert loaded.status is JobStatus.PAUSED
        assert loaded.pending["work"]["input"], "queued payloads were saved"
        assert final.shared_data == reference.shared_data
        assert len(final.shared_data["results"]) == 6
        assert final.routine_states == reference.routine_states  # nothing ran twice

    def test_fan_out_fan_in_flow_resumes_to_the_same_result(self, tmp_path: Path) -> None:
        entry = {"n": 5}
        reference = run_to_end(fan_flow(), entry)
        loaded, final = interrupted_run(fan_flow, entry, lambda p: p["i"] == 1, tmp_path)
        assert loaded.pending, "queued payloads were saved"
        assert final.shared_data == reference.shared_data
        assert sorted(final.shared_data["results"]) == [(i, i) for i in range(5)]
        assert final.routine_states == reference.routine_states

    def test_retrying_flow_resumes_with_its_pending_retry(self, tmp_path: Path) -> None:
        entry = {"n": 3}
        reference = run_to_end(retry_flow(), entry)
        assert reference.routine_states["flaky"]["failures"] == 2
        # A manual clock keeps the retry timer from firing before the save.
        loaded, final = interrupted_run(
            retry_flow, entry, lambda p: True, tmp_path, clock=ManualClock()
        )
        waiting = [a for a in loaded.in_flight if a["retry_in"] > 0]
        assert waiting and waiting[0]["routine_id"] == "flaky"
        assert waiting[0]["attempt"] == 1
        assert final.shared_data == reference.shared_data
        assert final.routine_states == reference.routine_states
        # the history saved before the pause continues: one retry before, one after
        statuses = [r.status for r in final.history("flaky")]
        assert statuses == [r.status for r in reference.history("flaky")]
        assert statuses.count("retrying") == 2

    def test_idle_job_saved_and_resumed_keeps_open(self, tmp_path: Path) -> None:
        flow = linear_flow()
        with Runtime(thread_pool_size=2) as runtime:
            state = runtime.post(flow, "source", "input", {"n": 2})
            assert runtime.wait_job(state.job_id, timeout=WAIT)
            assert state.status is JobStatus.IDLE
            path = state.save(tmp_path / "idle.json")
            runtime.cancel_job(state.job_id)
        with Runtime(thread_pool_size=2) as fresh:
            resumed = fresh.exec(flow, job_state=JobState.load(path))
            assert fresh.wait_job(resumed.job_id, timeout=WAIT)
            assert resumed.status is JobStatus.IDLE
            fresh.post(flow, "source", "input", {"n": 3}, job_id=resumed.job_id)
            fresh.complete_job(resumed.job_id)
            assert fresh.wait_job(resumed.job_id, timeout=WAIT)
        assert resumed.status is JobStatus.COMPLETED
        assert sorted(resumed.shared_data["results"]) == [0, 1, 2]
        assert resumed.routine_states["source"]["calls"] == 2


# -- job state files -------------------------------------------------------------------------


class TestJobStateSave:
    def test_unserializable_payload_names_routine_slot_and_key_path(self) -> None:
        state = JobState(flow_id="f")
        state.pending = {"routine_b": {"input": [{}, {}, {}, {"when": object()}]}}
        with pytest.raises(SerializationError) as info:
            state.save(Path("/nonexistent-dir-never-written/job.json"))
        err = info.value
        assert err.path == "pending.routine_b.input[3].when"
        assert err.routine_id == "routine_b"
        assert err.slot == "input"
        assert "routine 'routine_b'" in str(err) and "register_codec" in str(err)

    def test_unserializable_in_flight_payload_names_its_routine(self) -> None:
        state = JobState(flow_id="f")
        state.in_flight = [{"routine_id": "w", "slot_data": {"in": [{"x": [1, {2}, object()]}]},
                            "message": None, "attempt": 1, "seq": 3, "retry_in": 0.5}]
        with pytest.raises(SerializationError) as info:
            state.to_dict()
        assert info.value.path == "in_flight[0].slot_data.in[0].x[2]"
        assert (info.value.routine_id, info.value.slot) == ("w", "in")

    def test_non_finite_float_is_a_typed_error(self) -> None:
        state = JobState(flow_id="f", shared_data={"x": float("nan")})
        with pytest.raises(SerializationError) as info:
            state.to_json()
        assert info.value.path == "shared_data.x"

    def test_save_is_atomic_and_leaves_no_temp_file(self, tmp_path: Path) -> None:
        target = tmp_path / "job.json"
        JobState(flow_id="f", shared_data={"v": 1}).save(target)
        bad = JobState(flow_id="f", shared_data={"v": object()})
        with pytest.raises(SerializationError):
            bad.save(target)
        assert [p.name for p in tmp_path.iterdir()] == ["job.json"]
        assert JobState.load(target).shared_data == {"v": 1}

    def test_everything_round_trips(self, tmp_path: Path) -> None:
        state = JobState(flow_id="f", status="paused", entry_params={"n": (1, 2)})
        state.update_routine_state("a", {"calls": 2, "seen": {1, 2}})
        state.shared_data = {"d": Decimal("1.10"), 7: b"\x00\xff", "when": datetime.now(UTC)}
        state.shared_log = [("x", 1)]
        state.pending = {"b": {"input": [{"k": timedelta(seconds=3)}]}}
        state.in_flight = [{"routine_id": "b", "slot_data": {"input": [{"k": 1}]},
                            "message": {"policy": "immediate"}, "attempt": 2, "seq": 9,
                            "retry_in": 0.25}]
        state.policy_states = {"b": {"next": 1, "last_fired": 12.5}}
        state.unconsumed = {"c.in": [{"z": None}]}
        state.dropped = {"c.in": 2}
        loaded = JobState.load(state.save(tmp_path / "s.json"))
        for name in ("flow_id", "job_id", "status", "created_at", "entry_params",
                     "routine_states", "shared_data", "shared_log", "pending", "in_flight",
                     "policy_states", "unconsumed", "dropped"):
            assert getattr(loaded, name) == getattr(state, name), name
        raw = json.loads((tmp_path / "s.json").read_text())
        assert raw["format_version"] == 1

    def test_plugin_codec_round_trips_its_type(self) -> None:
        class Point:
            def __init__(self, x: int, y: int) -> None:
                self.x, self.y = x, y

            def __eq__(self, other: object) -> bool:
                return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

            __hash__ = None  # type: ignore[assignment]

        register_codec(Point, lambda p: [p.x, p.y], lambda v: Point(*v), "tests.point",
                       replace=True)
        try:
            state = JobState(flow_id="f", shared_data={"p": [Point(1, 2)]})
            data = json.loads(state.to_json())
            assert data["shared_data"]["p"][0] == {TAG_KEY: "tests.point", "value": [1, 2]}
            assert JobState.from_dict(data).shared_data == {"p": [Point(1, 2)]}
        finally:
            type_registry.codecs._by_tag.pop("tests.point", None)
            type_registry.codecs._by_type.pop(Point, None)
            type_registry.codecs._resolved.clear()

    def test_unknown_codec_tag_is_unknown_type_error(self) -> None:
        data = JobState(flow_id="f").to_dict()
        data["shared_data"] = {"x": {TAG_KEY: "os.system", "value": "rm -rf /"}}
        with pytest.raises(UnknownTypeError) as info:
            JobState.from_dict(data)
        assert "shared_data.x" in str(info.value)

    def test_newer_format_version_is_refused(self) -> None:
        data = JobState(flow_id="f").to_dict()
        data["format_version"] = 99
        with pytest.raises(SerializationError, match="newer"):
            JobState.from_dict(data)

    def test_migration_hook_upgrades_old_formats(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import routilux.serialization as ser

        monkeypatch.setattr(ser, "FORMAT_VERSION", 2)

        def upgrade(data: dict[str, Any]) -> dict[str, Any]:
            data["shared_data"] = {"migrated": True, **data.get("shared_data", {})}
            return data

        monkeypatch.setitem(ser._JOB_MIGRATIONS, 1, upgrade)
        data = JobState(flow_id="f").to_dict()
        data["format_version"] = 1
        assert JobState.from_dict(data).shared_data == {"migrated": True}
        register_job_state_migration  # the public name of that hook  # noqa: B018


# -- policies, handlers and flows round-trip --------------------------------------------------

POLICIES: dict[str, st.SearchStrategy[ActivationPolicy]] = {
    "immediate": st.just(immediate_policy()),
    "batch_size": st.builds(batch_size_policy, st.integers(1, 10_000), st.booleans()),
    "all_slots_ready": st.builds(all_slots_ready_policy),
    "time_interval": st.builds(
        time_interval_policy, st.floats(1e-3, 1e6, allow_nan=False, allow_infinity=False)
    ),
    "breakpoint": st.builds(breakpoint_policy),
    "custom": st.sampled_from(
        [custom_policy(_always, name="tests.always"),
         custom_policy(_two_queued, name="tests.two_queued")]
    ),
}

handlers = st.builds(
    ErrorHandler,
    strategy=st.sampled_from(["stop", "continue", "retry", "skip"]),
    max_retries=st.integers(0, 50),
    retry_delay=st.floats(0, 100, allow_nan=False),
    retry_backoff=st.floats(0, 10, allow_nan=False),
    max_delay=st.none() | st.floats(0, 1000, allow_nan=False),
    jitter=st.booleans(),
    retryable_exceptions=st.lists(
        st.sampled_from(["Exception", "TimeoutError", "ConnectionError", "KeyError",
                         "routilux.QueueFullError"]),
        min_size=1, max_size=3, unique=True,
    ).map(lambda names: tuple(type_registry.exceptions.get(n) for n in names)),
    fallback=st.sampled_from(["stop", "continue", "skip"]),
    is_critical=st.booleans(),
)


class TestPolicyAndHandlerRoundTrip:
    def test_every_core_policy_has_a_strategy(self) -> None:
        # plugins (e.g. routilux-builtins) test their own policies' round trips
        from routilux.registry import TypeRegistry

        assert set(TypeRegistry().policies.names()) <= set(POLICIES)

    @given(st.one_of(*POLICIES.values()))
    def test_policy_round_trips_with_parameters(self, policy: ActivationPolicy) -> None:
        conv = converter_for(type_registry)
        data = json.loads(json.dumps(conv.unstructure(policy, unstructure_as=ActivationPolicy)))
        back = conv.structure(data, ActivationPolicy)
        assert type(back) is type(policy)
        assert back == policy and back.params() == policy.params()

    @given(handlers)
    def test_error_handler_round_trips(self, handler: ErrorHandler) -> None:
        conv = converter_for(type_registry)
        data = json.loads(json.dumps(conv.unstructure(handler, unstructure_as=ErrorHandler)))
        assert conv.structure(data, ErrorHandler) == handler

    def test_custom_policy_keeps_its_registered_predicate(self) -> None:
        flow = linear_flow()
        flow.get_routine("collect").set_activation_policy(
            custom_policy(_two_queued, name="tests.two_queued")
        )
        loaded = Flow.from_dict(flow.to_dict())
        policy = loaded.get_routine("collect").activation_policy
        assert policy is not None and policy.predicate is _two_queued  # type: ignore[attr-defined]

    def test_unregistered_predicate_cannot_be_saved(self) -> None:
        flow = linear_flow()
        flow.get_routine("collect").set_activation_policy(custom_policy(lambda q, s: True))
        with pytest.raises(SerializationError) as info:
            flow.to_dict()
        assert info.value.path == "routines.collect.policy"
        assert "register_predicate" in str(info.value)

    def test_unknown_predicate_on_load_is_unknown_type(self) -> None:
        doc = linear_flow().to_dict()
        doc["routines"]["collect"]["policy"] = {"name": "custom",
                                                "params": {"predicate": "nope"}}
        with pytest.raises(FlowValidationError) as info:
            Flow.from_dict(doc)
        (issue,) = info.value.issues
        assert issue.path == "routines.collect.policy"
        assert "unknown custom policy predicate 'nope'" in issue.message


ROUTINE_TYPES = {"relay": Relay, "join": Join}


@st.composite
def random_flows(draw: st.DrawFn) -> Flow:
    n = draw(st.integers(1, 7))
    ids = draw(st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
                        min_size=n, max_size=n, unique=True))
    flow = Flow(draw(st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)),
                execution_timeout=draw(st.none() | st.floats(0.5, 1e4)))
    if draw(st.booleans()):
        flow.set_error_handler(draw(handlers))
    for rid in ids:
        routine = draw(st.sampled_from(list(ROUTINE_TYPES.values())))()
        routine.set_config(**draw(st.dictionaries(
            st.text(min_size=1, max_size=5),
            st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                         lambda c: st.lists(c, max_size=3)
                         | st.dictionaries(st.text(max_size=3), c, max_size=3),
                         max_leaves=5),
            max_size=3,
        )))
        if draw(st.booleans()):
            routine.set_activation_policy(draw(st.one_of(*POLICIES.values())))
        if draw(st.booleans()):
            routine.set_error_handler(draw(handlers))
        routine.set_max_concurrency(draw(st.integers(1, 4)))
        flow.add_routine(routine, rid)
    pairs = [(s, e, t, sl) for s in ids for e in flow.routines[s].events
             for t in ids for sl in flow.routines[t].slots]
    for conn in draw(st.lists(st.sampled_from(pairs), unique=True, max_size=10)):
        flow.connect(*conn)
    if draw(st.booleans()):
        rid = draw(st.sampled_from(ids))
        flow.set_entry(rid, draw(st.sampled_from(list(flow.routines[rid].slots))))
    return flow


def _shape(flow: Flow) -> Any:
    return (
        flow.flow_id, flow.execution_timeout, flow.error_handler, flow.entry,
        flow.connections,
        [(rid, type(r), dict(r.config), r.activation_policy, r.error_handler,
          r.max_concurrency) for rid, r in flow.routines.items()],
    )


class TestFlowRoundTrip:
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(random_flows())
    def test_random_flow_round_trips_through_dict_json_and_yaml(self, flow: Flow) -> None:
        doc = flow.to_dict()
        for loaded in (Flow.from_dict(doc), Flow.from_json(flow.to_json()),
                       Flow.from_yaml(flow.to_yaml())):
            assert _shape(loaded) == _shape(flow)
            assert loaded.to_dict() == doc

    @settings(max_examples=15, deadline=None)
    @given(st.data())
    def test_random_relay_dag_runs_identically_after_round_trip(self, data: st.DataObject) -> None:
        n = data.draw(st.integers(2, 8))
        flow = Flow("dag")
        for i in range(n):
            flow.add_routine(Relay(), f"r{i}")
        edges = data.draw(st.lists(
            st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(lambda e: e[0] < e[1]),
            unique=True, max_size=12,
        ))
        for a, b in edges:
            flow.connect(f"r{a}", "out", f"r{b}", "in")
        flow.set_entry("r0", "in")
        loaded = Flow.from_json(flow.to_json())
        logs = []
        for f in (flow, loaded):
            state = run_to_end(f, {"path": []})
            logs.append(sorted(state.shared_log))
        assert logs[0] == logs[1]
        assert len(logs[0]) >= 1

    def test_shared_event_and_slot_names_keep_their_wiring(self) -> None:
        flow = fan_flow()
        loaded = Flow.from_dict(json.loads(flow.to_json()))
        assert loaded.connections == flow.connections
        assert loaded.get_routine("right").get_config("scale") == 10
        a = run_to_end(flow, {"n": 4})
        b = run_to_end(loaded, {"n": 4})
        assert a.shared_data == b.shared_data
        assert b.shared_data["results"][(3, 3)]["v"] == 9 + 90

    def test_plain_routine_with_set_logic_cannot_be_saved(self) -> None:
        flow = Flow("plain")
        r = Routine()
        r.add_slot("in")
        r.set_logic(lambda slot_data, policy_message, job_state: None)
        flow.add_routine(r, "plain")
        with pytest.raises(SerializationError) as info:
            flow.to_dict()
        assert info.value.path == "routines.plain"
        assert "Routine subclass" in str(info.value)

    @pytest.mark.parametrize("change", ["logic", "slot", "event", "queue"])
    def test_routine_changed_after_construction_cannot_be_saved(self, change: str) -> None:
        r = Bare()
        if change == "logic":
            r.set_logic(lambda slot_data, policy_message, job_state: 1)
        elif change == "slot":
            r.add_slot("extra")
        elif change == "event":
            r.add_event("extra")
        else:
            r.get_slot("in").max_queue_length = 3
        flow = Flow("changed")
        flow.add_routine(r, "x")
        with pytest.raises(SerializationError, match="differ from what Bare"):
            flow.to_dict()

    def test_all_problems_are_reported_together(self) -> None:
        flow = Flow("many")
        for rid in ("a", "b"):
            r = Routine()
            r.set_logic(lambda slot_data, policy_message, job_state: None)
            flow.add_routine(r, rid)
        ok = Bare()
        ok.set_config(handle=object())
        flow.add_routine(ok, "c")
        with pytest.raises(SerializationError) as info:
            flow.to_dict()
        assert [i.path for i in info.value.issues] == [
            "routines.a", "routines.b", "routines.c.config.handle",
        ]


# -- safety ----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(["os.system", "builtins:eval", "subprocess:Popen", "__import__",
                       TAG_KEY, "_type", "$type", "map", "tuple", "bytes", "custom"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["type", "_type", "__type__", TAG_KEY, "value", "name", "params",
                         "routines", "policy", "connections", "pending", "in_flight",
                         "shared_data", "flow_id", "entry", "error_handler", "config"])
        | st.text(max_size=6),
        children, max_size=5,
    ),
    max_leaves=30,
)


def _flow_like(values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    routine = st.fixed_dictionaries(
        {"type": st.sampled_from(["os.system", "builtins:eval", "tests.serialization:Work",
                                  "subprocess:Popen", "antigravity:fly"]) | values},
        optional={"config": values, "policy": values | st.sampled_from(["custom", "batch_size"]),
                  "error_handler": values, "max_concurrency": values},
    )
    return st.fixed_dictionaries(
        {"flow_id": st.text(max_size=5) | values,
         "routines": st.dictionaries(st.text(max_size=4), routine | values, max_size=4)},
        optional={"connections": st.lists(values | st.text(max_size=12), max_size=4),
                  "entry": values, "error_handler": values, "format_version": values},
    )


def _state_like(values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    base = JobState(flow_id="f").to_dict()
    return st.fixed_dictionaries(
        {}, optional={k: values | st.just(v) for k, v in base.items()}
    )


class TestLoadSafety:
    @settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
    @given(st.one_of(json_values, _flow_like(json_values)))
    def test_flow_from_dict_raises_only_typed_errors(self, data: Any) -> None:
        modules = set(sys.modules)
        with contextlib.suppress(RoutiluxError):
            Flow.from_dict(data)
        assert set(sys.modules) == modules, "loading imported a module"

    @settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
    @given(st.one_of(json_values, _state_like(json_values)))
    def test_job_state_from_dict_raises_only_typed_errors(self, data: Any) -> None:
        modules = set(sys.modules)
        with contextlib.suppress(RoutiluxError):
            JobState.from_dict(data)
        assert set(sys.modules) == modules, "loading imported a module"

    @given(json_values)
    def test_user_data_with_tag_like_keys_round_trips_unchanged(self, value: Any) -> None:
        state = JobState(flow_id="f", shared_data={"v": value}, shared_log=[value])
        state.update_routine_state("r", {TAG_KEY: value, "_type": "os.system"})
        loaded = JobState.from_json(state.to_json())
        assert loaded.shared_data == {"v": value}
        assert loaded.shared_log == [value]
        assert loaded.routine_states == {"r": {TAG_KEY: value, "_type": "os.system"}}

    @pytest.mark.parametrize("depth", [50, 5_000])
    def test_deep_nesting_is_refused_or_loaded_never_crashes(self, depth: int) -> None:
        nested: Any = "leaf"
        for _ in range(depth):
            nested = {"k": [nested]}
        data = JobState(flow_id="f").to_dict()
        data["shared_data"] = {"deep": nested}
        try:
            JobState.from_dict(data)
        except SerializationError as exc:
            assert "nested deeper" in str(exc)
        doc = {"flow_id": "f", "routines": {"a": {"type": "tests.serialization:Work",
                                                  "config": {"deep": nested}}}}
        with contextlib.suppress(RoutiluxError):
            Flow.from_dict(doc)

    @pytest.mark.parametrize(
        "name", ["os.system", "os:system", "builtins:eval", "subprocess:Popen",
                 "antigravity:Fly", "routilux.routine:Routine.__subclasses__"],
    )
    def test_names_of_importable_things_are_unknown_types(self, name: str) -> None:
        modules = set(sys.modules)
        with pytest.raises(FlowValidationError) as info:
            Flow.from_dict({"flow_id": "f", "routines": {"x": {"type": name}}})
        (issue,) = info.value.issues
        assert issue.path == "routines.x.type"
        assert f"{name!r} is not registered" in issue.message
        assert set(sys.modules) == modules

    def test_unknown_routine_type_names_its_provider_when_known(self) -> None:
        type_registry.routines.note_provider("pack:Thing", "routilux-builtins")
        with pytest.raises(FlowValidationError) as info:
            Flow.from_dict({"flow_id": "f", "routines": {"x": {"type": "pack:Thing"}}})
        assert "routilux-builtins" in info.value.issues[0].message
