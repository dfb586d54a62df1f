"""Async routines (issue 14): coroutine logic on the runtime's event loop, with the semantics
of sync logic (isolation, emit, policies, error strategies, timeouts that cancel, pause and
cancel), concurrency limits, and the awaitable API (aexec, await_job, await_all)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from routilux import (
    ErrorHandler,
    ErrorStrategy,
    Flow,
    FlowRegistry,
    JobStatus,
    Routine,
    Runtime,
    current_activation,
)
from routilux.activation_policies import batch_size_policy
from routilux.errors import ConfigurationError, FlowValidationError

WAIT = 10.0

AsyncFn = Callable[[Routine, dict[str, list[dict[str, Any]]], Any, Any], Awaitable[None]]


class ARoutine(Routine):
    """A routine whose async logic is chosen after construction (tests only)."""


def arout(
    fn: AsyncFn, *, slots: tuple[str, ...] = ("input",), events: tuple[str, ...] = ("output",),
    **config: Any,
) -> ARoutine:
    routine = ARoutine()
    for name in slots:
        routine.add_slot(name)
    for name in events:
        routine.add_event(name)

    async def logic(slot_data: Any, policy_message: Any, job_state: Any) -> None:
        await fn(routine, slot_data, policy_message, job_state)

    routine.set_logic(logic)
    if config:
        routine.set_config(**config)
    return routine


async def forward(routine: Routine, slot_data: Any, message: Any, job_state: Any) -> None:
    """Await, then log and re-emit every payload on every event (emit after an await)."""
    for payload in slot_data["input"]:
        await asyncio.sleep(0)
        info = current_activation()
        assert info is not None
        job_state.shared_log.append((info.routine_id, payload))
        for event in routine.events:
            routine.emit(event, **payload)


class LoopGate:
    """An event async logic awaits and a test thread opens (no polling, no sleeps)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._open:
                return
            self._waiters.append((loop, fut))
        await fut

    def open(self) -> None:
        with self._lock:
            self._open = True
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            loop.call_soon_threadsafe(lambda f=fut: f.done() or f.set_result(None))


def single(routine: Routine, flow_id: str = "one") -> Flow:
    flow = Flow(flow_id)
    flow.add_routine(routine, "r")
    return flow


def finish(runtime: Runtime, state: Any) -> None:
    assert runtime.wait_job(state.job_id, timeout=WAIT)


class TestAsyncLogicRuns:
    def test_logic_runs_on_one_loop_thread_and_emits_after_awaits(self, runtime: Runtime) -> None:
        threads: set[int] = set()

        async def logic(routine: Routine, slot_data: Any, message: Any, js: Any) -> None:
            threads.add(threading.get_ident())
            await forward(routine, slot_data, message, js)

        flow = Flow("chain")
        flow.add_routine(arout(logic), "a")
        flow.add_routine(arout(forward, events=()), "b")
        flow.connect("a", "output", "b", "input")
        states = [runtime.exec(flow, {"tag": k}) for k in range(20)]
        for k, state in enumerate(states):
            finish(runtime, state)
            assert state.status is JobStatus.COMPLETED, state.error
            assert list(state.shared_log) == [("a", {"tag": k}), ("b", {"tag": k})]
        assert len(threads) == 1 and threading.get_ident() not in threads

    def test_emit_from_child_tasks_reaches_the_right_job(self, runtime: Runtime) -> None:
        async def fan(routine: Routine, slot_data: Any, message: Any, js: Any) -> None:
            tag = slot_data["input"][0]["tag"]

            async def one(i: int) -> None:
                await asyncio.sleep(0)
                routine.emit("output", tag=tag, i=i)

            await asyncio.gather(*(one(i) for i in range(5)))

        async def collect(routine: Routine, slot_data: Any, message: Any, js: Any) -> None:
            js.shared_log.extend(slot_data["input"])

        flow = Flow("fan")
        flow.add_routine(arout(fan), "fan")
        flow.add_routine(arout(collect, events=()), "sink")
        flow.connect("fan", "output", "sink", "input")
        states = [runtime.exec(flow, {"tag": k}) for k in range(10)]
        for k, state in enumerate(states):
            finish(runtime, state)
            assert sorted(p["i"] for p in state.shared_log) == [0, 1, 2, 3, 4]
            assert {p["tag"] for p in state.shared_log} == {k}

    def test_sync_and_async_routines_mix_in_one_flow(
        self, runtime: Runtime, make_routine: Any
    ) -> None:
        flow = Flow("mix")
        flow.add_routine(make_routine(), "s1")
        flow.add_routine(arout(forward), "a")
        flow.add_routine(make_routine(), "s2")
        flow.connect("s1", "output", "a", "input")
        flow.connect("a", "output", "s2", "input")
        state = runtime.exec(flow, {"x": 1})
        finish(runtime, state)
        assert state.status is JobStatus.COMPLETED, state.error
        assert [entry[0] for entry in state.shared_log] == ["s1", "a", "s2"]

    def test_activation_policy_batches_async_input(self, runtime: Runtime) -> None:
        async def source(routine: Routine, slot_data: Any, message: Any, js: Any) -> None:
            for i in range(6):
                routine.emit("output", i=i)

        async def batch(routine: Routine, slot_data: Any, message: Any, js: Any) -> None:
            await asyncio.sleep(0)
            js.shared_log.append([p["i"] for p in slot_data["input"]])

        b = arout(batch, events=())
        b.set_activation_policy(batch_size_policy(3))
        flow = Flow("batch")
        flow.add_routine(arout(source, slots=()), "src")
        flow.add_routine(b, "b")
        flow.connect("src", "output", "b", "input")
        state = runtime.exec(flow)
        finish(runtime, state)
        assert list(state.shared_log) == [[0, 1, 2], [3, 4, 5]]

    def test_emits_from_tasks_outliving_the_activation_are_discarded(
        self, runtime: Runtime
    ) -> None:
        leaked: list[asyncio.Task[None]] = []
        done = threading.Event()

        async def late(routine: Routine) -> None:
            await asyncio.sleep(0.01)
            routine.emit("output", late=True)
            done.set()

        async def logic(routine: Routine, slot_data: Any, message: Any, js: Any) -> None:
            leaked.append(asyncio.get_running_loop().create_task(late(routine)))

        flow = Flow("leak")
        flow.add_routine(arout(logic), "a")
        flow.add_routine(arout(forward, events=()), "b")
        flow.connect("a", "output", "b", "input")
        state = runtime.exec(flow, {})
        finish(runtime, state)
        assert done.wait(WAIT)
        assert state.status is JobStatus.COMPLETED
        assert list(state.shared_log) == [] and state.discarded_emits == 1


class TestCompletionCounting:
    def test_job_is_not_drained_while_a_coroutine_is_pending(self, runtime: Runtime) -> None:
        gate = LoopGate()
        started = threading.Event()

        async def logic(routine: Routine, slot_data: Any, message: Any, js: Any) -> None:
            started.set()
            await gate.wait()
            js.shared_log.append("after")

        state = runtime.exec(single(arout(logic, events=())), {})
        assert started.wait(WAIT)
        assert runtime.wait_job(state.job_id, timeout=0.05) is False
        assert runtime.wait_until_all_jobs_finished(timeout=0.0) is False
        assert state.status is JobStatus.RUNNING
        gate.open()
        finish(runtime, state)
        assert state.status is JobStatus.COMPLETED and list(state.shared_log) == ["after"]


class TestErrorStrategies:
    def test_retry_reruns_the_coroutine_until_it_succeeds(self, runtime: Runtime) -> None:
        attempts: list[int] = []

        async def flaky(routine: Routine, slot_data: Any, message: Any, js: Any) -> None:
            info = current_activation()
            assert info is not None
            attempts.append(info.attempt)
            await asyncio.sleep(0)
            if len(attempts) < 3:
                raise ConnectionError("try again")
            js.shared_log.append("ok")

        r = arout(flaky, events=())
        r.set_error_handler(
            ErrorHandler(strategy=ErrorStrategy.RETRY, max_retries=3, retry_delay=0.001)
        )
        state = runtime.exec(single(r), {})
        finish(runtime, state)
        assert state.status is JobStatus.COMPLETED, state.error
        assert attempts == [0, 1, 2] and list(state.shared_log) == ["ok"]
        assert [h.status for h in state.execution_history] == ["retrying", "retrying",
                                                               "completed"]

    def test_stop_fails_the_job_with_the_error(self, runtime: Runtime) -> None:
        async def boom(routine: Routine, slot_data: Any, message: Any, js: Any) -> None:
            await asyncio.sleep(0)
            raise ValueError("bad input")

        state = runtime.exec(single(arout(boom, events=())), {})
        finish(runtime, state)
        assert state.status is JobStatus.FAILED
        assert state.error == "ValueError: bad input" and state.error_routine == "r"

    def test_continue_records_the_failure_and_goes_on(self, runtime: Runtime) -> None:
        async def boom(routine: Routine, slot_data: Any, message: Any, js: Any) -> None:
            if slot_data["input"][0]["i"] == 0:
                raise ValueError("first fails")
            js.shared_log.append("second ran")

        r = arout(boom, events=())
        r.set_error_handler(ErrorHandler(strategy=ErrorStrategy.CONTINUE))
        flow = single(r)
        state = runtime.exec(flow, keep_open=True)
        runtime.post(flow, "r", "input", {"i": 0}, job_id=state.job_id)
        runtime.post(flow, "r", "input", {"i": 1}, job_id=state.job_id)
        runtime.complete_job(state.job_id)
        finish(runtime, state)
        assert state.status is JobStatus.COMPLETED
        assert [h.status for h in state.execution_history] == ["failed", "completed"]
        assert list(state.shared_log) == ["second ran"]


class TestTimeouts:
    def test_timeout_cancels_the_coroutine_and_fails_the_job(self, runtime: Runtime) -> None:
        seen: list[str] = []

        async def slow(routine: Routine, slot_data: Any, message: Any, js: Any) -> None:
            try:
                await asyncio.sleep(WAIT * 3)
                seen.append("after the await")  # must never run
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise

        state = runtime.exec(single(arout(slow, events=(), timeout=0.05)), {})
        finish(runtime, state)
        assert state.status is JobStatus.FAILED
        assert state.error_type == "RoutineTimeoutError"
        assert "cancelled" in (state.error or "")
        assert seen == ["cancelled"]
        counts = runtime.get_job_metrics(state.job_id)["routines"]["r"]
        assert (counts["timeouts"], counts["activations"], counts["executions"]) == (1, 0, 1)
        assert (counts["errors"], counts["successes"]) == (1, 0)

    def test_timeout_with_retry_runs_again_and_records_timed_out(
        self, runtime: Runtime
    ) -> None:
        calls: list[int] = []

        async def first_slow(routine: Routine, slot_data: Any, message: Any, js: Any) -> None:
            calls.append(1)
            if len(calls) == 1:
                await asyncio.sleep(WAIT * 3)
                js.shared_log.append("never")
            js.shared_log.append("fast")

        r = arout(first_slow, events=())
        r.set_error_handler(
            ErrorHandler(strategy=ErrorStrategy.RETRY, max_retries=1, retry_delay=0.0,
                         timeout=0.05)
        )
        state = runtime.exec(single(r), {})
        finish(runtime, state)
        assert state.status is JobStatus.COMPLETED, state.error
        assert list(state.shared_log) == ["fast"]
        assert [h.status for h in state.execution_history] == ["retrying", "completed"]

    def test_emits_after_a_swallowed_timeout_are_discarded(self, runtime: Runtime) -> None:
        async def stubborn(routine: Routine, slot_data: Any, message: Any, js: Any) -> None:
            with contextlib.suppress(asyncio.CancelledError):  # swallows it and goes on
                await asyncio.sleep(WAIT * 3)
            routine.emit("output", late=True)

        r = arout(stubborn, timeout=0.05)
        r.set_error_handler(ErrorHandler(strategy=ErrorStrategy.CONTINUE))
        flow = Flow("stubborn")
        flow.add_routine(r, "r")
        flow.add_routine(arout(forward, events=()), "sink")
        flow.connect("r", "output", "sink", "input")
        state = runtime.exec(flow, {})
        finish(runtime, state)
        assert state.status is JobStatus.COMPLETED
        assert [h.status for h in state.execution_history] == ["timed_out"]
        assert list(state.shared_log) == [] and state.discarded_emits == 1

    def test_job_timeout_cancels_running_coroutines(self, runtime: Runtime) -> None:
        seen: list[str] = []
        cancelled = threading.Event()

        async def slow(routine: Routine, slot_data: Any, message: Any, js: Any) -> None:
            try:
                await asyncio.sleep(WAIT * 3)
                seen.append("after")
            except asyncio.CancelledError:
                seen.append("cancelled")
                cancelled.set()
                raise

        flow = single(arout(slow, events=()))
        state = runtime.exec(flow, {}, timeout=0.05)
        finish(runtime, state)
        assert state.status is JobStatus.FAILED and state.error_type == "JobTimeoutError"
        # the cancellation is delivered on the loop just after the job failed (not at shutdown)
        assert cancelled.wait(WAIT)
        assert seen == ["cancelled"]


class TestPauseAndCancel:
    def test_cancel_job_cancels_in_flight_coroutines(self, runtime: Runtime) -> None:
        started = threading.Event()
        cancelled = threading.Event()
        after: list[str] = []

        async def hang(routine: Routine, slot_data: Any, message: Any, js: Any) -> None:
            started.set()
            try:
                await asyncio.sleep(WAIT * 3)
                after.append("after")
            except asyncio.CancelledError:
                cancelled.set()
                raise

        state = runtime.exec(single(arout(hang, events=())), {})
        assert started.wait(WAIT)
        assert runtime.cancel_job(state.job_id)
        finish(runtime, state)
        assert cancelled.wait(WAIT)
        assert state.status is JobStatus.CANCELLED and after == []

    def test_cancel_drops_activations_waiting_for_a_slot(self) -> None:
        rt = Runtime(thread_pool_size=2, flow_registry=FlowRegistry(), async_concurrency=1)
        try:
            gate = LoopGate()
            started = threading.Event()

            async def hang(routine: Routine, slot_data: Any, message: Any, js: Any) -> None:
                started.set()
                await gate.wait()

            flow = single(arout(hang, events=()))
            first = rt.exec(flow, {})
            assert started.wait(WAIT)
            queued = rt.exec(flow, {})  # waits for the runtime's only slot
            assert rt.cancel_job(queued.job_id)
            assert rt.wait_job(queued.job_id, WAIT)  # settles without getting a slot
            assert queued.status is JobStatus.CANCELLED
            assert rt.wait_job(first.job_id, timeout=0.0) is False
            gate.open()
            assert rt.wait_job(first.job_id, WAIT)
            assert first.status is JobStatus.COMPLETED
        finally:
            rt.shutdown(timeout=WAIT)

    def test_pause_lets_in_flight_coroutines_finish_and_holds_the_rest(
        self, runtime: Runtime
    ) -> None:
        gate = LoopGate()
        started = threading.Event()

        async def step(routine: Routine, slot_data: Any, message: Any, js: Any) -> None:
            started.set()
            await gate.wait()
            js.shared_log.append(slot_data["input"][0]["i"])

        flow = single(arout(step, events=()))
        state = runtime.exec(flow, keep_open=True)
        for i in range(3):
            runtime.post(flow, "r", "input", {"i": i}, job_id=state.job_id)
        assert started.wait(WAIT)
        pauser = threading.Thread(target=runtime.pause_job, args=(state.job_id, WAIT))
        pauser.start()
        deadline = time.monotonic() + WAIT
        while state.status is not JobStatus.PAUSED:  # pause_job marks it, then waits for us
            assert time.monotonic() < deadline
            time.sleep(0.001)
        gate.open()
        pauser.join(WAIT)
        assert state.status is JobStatus.PAUSED
        assert list(state.shared_log) == [0]
        assert runtime.resume_job(state.job_id)
        runtime.complete_job(state.job_id)
        finish(runtime, state)
        assert list(state.shared_log) == [0, 1, 2] and state.status is JobStatus.COMPLETED


class TestLimits:
    def test_runtime_limit_caps_concurrent_activations_in_arrival_order(self) -> None:
        rt = Runtime(thread_pool_size=2, flow_registry=FlowRegistry(), async_concurrency=3)
        try:
            lock = threading.Lock()
            active = [0, 0]
            order: list[int] = []
            three_in = LoopGate()  # the first three wait for each other: 3 really run at once

            async def work(routine: Routine, slot_data: Any, message: Any, js: Any) -> None:
                with lock:
                    order.append(slot_data["input"][0]["k"])
                    active[0] += 1
                    active[1] = max(active[1], active[0])
                    if active[0] == 3:
                        three_in.open()
                await three_in.wait()
                await asyncio.sleep(0.001)
                with lock:
                    active[0] -= 1

            flow = single(arout(work, events=()))
            states = [rt.exec(flow, {"k": k}) for k in range(30)]
            assert rt.wait_until_all_jobs_finished(WAIT)
            assert all(s.status is JobStatus.COMPLETED for s in states)
            assert active[1] == 3 and rt._aio.peak == 3
            assert order == list(range(30))
        finally:
            rt.shutdown(timeout=WAIT)

    def test_routine_limit_holds_only_its_own_routine(self, runtime: Runtime) -> None:
        gate = LoopGate()
        lock = threading.Lock()
        active = [0, 0]
        two_in = threading.Event()

        async def limited(routine: Routine, slot_data: Any, message: Any, js: Any) -> None:
            with lock:
                active[0] += 1
                active[1] = max(active[1], active[0])
                if active[0] == 2:
                    two_in.set()
            await gate.wait()
            with lock:
                active[0] -= 1

        slow = single(arout(limited, events=(), async_concurrency=2), "limited")
        fast = single(arout(forward, events=()), "fast")
        held = [runtime.exec(slow, {"k": k}) for k in range(6)]
        assert two_in.wait(WAIT)
        passing = [runtime.exec(fast, {"k": k}) for k in range(5)]
        for state in passing:  # not held up by the limited routine's queue
            finish(runtime, state)
            assert state.status is JobStatus.COMPLETED
        assert active == [2, 2]
        gate.open()
        for state in held:
            finish(runtime, state)
            assert state.status is JobStatus.COMPLETED
        assert active[1] == 2

    def test_waiting_activations_use_no_thread_each(self) -> None:
        rt = Runtime(thread_pool_size=2, flow_registry=FlowRegistry())
        try:
            gate = LoopGate()
            lock = threading.Lock()
            entered = [0]
            all_in = threading.Event()
            n = 300

            async def wait(routine: Routine, slot_data: Any, message: Any, js: Any) -> None:
                with lock:
                    entered[0] += 1
                    if entered[0] == n:
                        all_in.set()
                await gate.wait()

            before = threading.active_count()
            states = [rt.exec(single(arout(wait, events=())), {}) for _ in range(n)]
            assert all_in.wait(WAIT)
            # workers (2) + timer thread + the one loop thread, at most
            assert threading.active_count() - before <= 4
            gate.open()
            assert rt.wait_until_all_jobs_finished(WAIT)
            assert all(s.status is JobStatus.COMPLETED for s in states)
        finally:
            rt.shutdown(timeout=WAIT)


class TestAwaitableApi:
    def test_aexec_awaits_the_job_without_blocking_the_callers_loop(
        self, runtime: Runtime
    ) -> None:
        async def slowish(routine: Routine, slot_data: Any, message: Any, js: Any) -> None:
            await asyncio.sleep(0.05)
            js.shared_data["done"] = True

        flow = single(arout(slowish, events=()))

        async def main() -> tuple[Any, int]:
            ticks = 0
            stop = asyncio.Event()

            async def ticker() -> None:
                nonlocal ticks
                while not stop.is_set():
                    ticks += 1
                    await asyncio.sleep(0.001)

            t = asyncio.create_task(ticker())
            state = await runtime.aexec(flow, {})
            stop.set()
            await t
            return state, ticks

        state, ticks = asyncio.run(main())
        assert state.status is JobStatus.COMPLETED and state.shared_data == {"done": True}
        assert ticks > 1  # the caller's loop ran while the job did

    def test_await_job_times_out_then_completes(self, runtime: Runtime) -> None:
        gate = LoopGate()

        async def held(routine: Routine, slot_data: Any, message: Any, js: Any) -> None:
            await gate.wait()

        flow = single(arout(held, events=()))

        async def main() -> tuple[bool, bool, bool]:
            state = await runtime.aexec(flow, {}, wait=False)
            early = await runtime.await_job(state.job_id, timeout=0.02)
            gate.open()
            late = await runtime.await_job(state.job_id, timeout=WAIT)
            again = await runtime.await_job(state.job_id)  # already drained: at once
            return early, late, again

        assert asyncio.run(main()) == (False, True, True)

    def test_many_awaiting_callers_park_no_threads(self, runtime: Runtime) -> None:
        gate = LoopGate()

        async def held(routine: Routine, slot_data: Any, message: Any, js: Any) -> None:
            await gate.wait()

        flow = single(arout(held, events=()))

        async def main() -> tuple[int, list[bool], bool]:
            states = [await runtime.aexec(flow, {}, wait=False) for _ in range(50)]
            waiters = [asyncio.create_task(runtime.await_job(s.job_id)) for s in states]
            all_waiter = asyncio.create_task(runtime.await_all(timeout=WAIT))
            await asyncio.sleep(0.01)
            threads = threading.active_count()
            gate.open()
            return threads, await asyncio.gather(*waiters), await all_waiter

        before = threading.active_count()
        threads, results, all_done = asyncio.run(main())
        assert results == [True] * 50 and all_done
        assert threads - before <= 6  # pool (4) + timer + loop, none per waiter

    def test_await_job_of_a_sync_flow(self, runtime: Runtime, make_routine: Any) -> None:
        flow = single(make_routine(events=()))

        async def main() -> Any:
            return await runtime.aexec(flow, {"x": 1})

        state = asyncio.run(main())
        assert state.status is JobStatus.COMPLETED and len(state.shared_log) == 1


class TestConfiguration:
    @pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
    def test_runtime_limit_must_be_a_positive_integer(self, bad: Any) -> None:
        with pytest.raises(ConfigurationError, match="async_concurrency"):
            Runtime(async_concurrency=bad)

    def test_routine_limit_must_be_a_positive_integer(self) -> None:
        flow = single(arout(forward, events=(), async_concurrency=0))
        with pytest.raises(FlowValidationError, match="async_concurrency"):
            flow.plan()

    def test_routine_limit_on_sync_logic_is_a_warning(self, make_routine: Any) -> None:
        r = make_routine(events=())
        r.set_config(async_concurrency=4)
        issues = single(r).validate().issues
        assert [i.code for i in issues if i.severity == "warning"] == [
            "routine.async_concurrency_unused"
        ]

    def test_shutdown_stops_the_loop_thread_and_cancels_what_runs(self) -> None:
        rt = Runtime(thread_pool_size=1, flow_registry=FlowRegistry())
        started = threading.Event()
        seen: list[str] = []

        async def hang(routine: Routine, slot_data: Any, message: Any, js: Any) -> None:
            started.set()
            try:
                await asyncio.sleep(WAIT * 3)
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise

        state = rt.exec(single(arout(hang, events=())), {})
        assert started.wait(WAIT)
        loop_thread = rt._aio.thread
        assert loop_thread is not None and loop_thread.is_alive()
        assert rt.shutdown(wait=False) in (True, False)
        loop_thread.join(WAIT)
        assert not loop_thread.is_alive()
        assert state.status is JobStatus.CANCELLED and seen == ["cancelled"]


class TestTestingTools:
    def test_harness_feeds_an_async_routine(self, runtime: Runtime) -> None:
        from routilux_testing import RoutineHarness, assert_emitted

        with RoutineHarness(arout(forward), runtime=runtime) as harness:
            harness.feed("input", n=1)
            assert_emitted(harness, "output", {"n": 1})  # feed returned after the coroutine
            harness.feed("input", n=2)
            assert_emitted(harness, "output", {"n": 1}, {"n": 2})

    def test_manual_clock_drives_async_timeouts(
        self, routilux_clock: Any, routilux_runtime: Runtime
    ) -> None:
        gate = LoopGate()
        started = threading.Event()
        seen: list[str] = []

        async def hang(routine: Routine, slot_data: Any, message: Any, js: Any) -> None:
            started.set()
            try:
                await gate.wait()
                seen.append("after")
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise

        state = routilux_runtime.exec(single(arout(hang, events=(), timeout=30)), {})
        assert started.wait(WAIT)
        assert routilux_runtime.wait_job(state.job_id, timeout=0.02) is False
        routilux_clock.advance(30)
        finish(routilux_runtime, state)
        assert state.status is JobStatus.FAILED and state.error_type == "RoutineTimeoutError"
        assert seen == ["cancelled"]


class TestPauseWhileWaitingForASlot:
    def test_pause_hands_back_waiting_activations_in_order_at_once(self) -> None:
        rt = Runtime(thread_pool_size=2, flow_registry=FlowRegistry(), async_concurrency=1)
        try:
            gate = LoopGate()
            started = threading.Event()

            async def hold(routine: Routine, slot_data: Any, message: Any, js: Any) -> None:
                started.set()
                await gate.wait()

            async def log(routine: Routine, slot_data: Any, message: Any, js: Any) -> None:
                js.shared_log.extend(p["i"] for p in slot_data["input"])

            blocker = rt.exec(single(arout(hold, events=()), "blocker"), {})
            assert started.wait(WAIT)
            logger = arout(log, events=())
            logger.set_max_concurrency(3)  # three activations of the job wait for the slot
            flow = single(logger, "logger")
            state = rt.exec(flow, keep_open=True)
            for i in range(5):
                rt.post(flow, "r", "input", {"i": i}, job_id=state.job_id)
            rt.pause_job(state.job_id, timeout=WAIT)  # returns although the slot stays taken
            assert state.status is JobStatus.PAUSED and list(state.shared_log) == []
            assert rt.get_job_metrics(state.job_id)["queue_depths"] == {"r.input": 5}
            assert rt.resume_job(state.job_id)
            rt.complete_job(state.job_id)
            gate.open()
            assert rt.wait_job(state.job_id, WAIT) and rt.wait_job(blocker.job_id, WAIT)
            assert state.status is JobStatus.COMPLETED
            assert list(state.shared_log) == [0, 1, 2, 3, 4]
        finally:
            rt.shutdown(timeout=WAIT)


class TestLimitsProperty:
    @settings(max_examples=25, deadline=None)
    @given(
        jobs=st.integers(1, 25),
        limit=st.integers(1, 4),
        routine_limit=st.one_of(st.none(), st.integers(1, 3)),
        cancel=st.sets(st.integers(0, 24), max_size=8),
    )
    def test_limits_hold_and_every_job_settles_with_cancels(
        self, jobs: int, limit: int, routine_limit: int | None, cancel: set[int]
    ) -> None:
        rt = Runtime(thread_pool_size=1, flow_registry=FlowRegistry(), async_concurrency=limit)
        try:
            lock = threading.Lock()
            active = [0, 0]

            async def work(routine: Routine, slot_data: Any, message: Any, js: Any) -> None:
                with lock:
                    active[0] += 1
                    active[1] = max(active[1], active[0])
                try:
                    await asyncio.sleep(0.001)
                    js.shared_log.append("done")
                finally:
                    with lock:
                        active[0] -= 1

            config = {} if routine_limit is None else {"async_concurrency": routine_limit}
            flow = single(arout(work, events=(), **config))
            states = [rt.exec(flow, {}) for _ in range(jobs)]
            for k in sorted(cancel):
                if k < jobs:
                    rt.cancel_job(states[k].job_id)
            assert rt.wait_until_all_jobs_finished(WAIT)
            for k, state in enumerate(states):
                if state.status is JobStatus.COMPLETED:
                    assert list(state.shared_log) == ["done"]
                else:
                    assert k in cancel and state.status is JobStatus.CANCELLED
            assert active[1] <= min(limit, routine_limit or limit)
            engine = rt._aio
            loop = engine._loop
            assert loop is not None

            async def nothing() -> None:
                return None

            asyncio.run_coroutine_threadsafe(nothing(), loop).result(WAIT)  # let it settle
            assert (engine._running, engine._gates, engine._jobs) == (0, {}, {})
            assert not engine._waiting  # dropped runs were pruned, not left holding their jobs
        finally:
            rt.shutdown(timeout=WAIT)
