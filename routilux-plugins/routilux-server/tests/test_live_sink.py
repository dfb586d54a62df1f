"""The live sink on its own: every subscriber gets every record once, whenever it joins, and a
slow subscriber never holds the writer up."""

from __future__ import annotations

import asyncio
import threading

from hypothesis import given, settings
from hypothesis import strategies as st
from routilux.tracking import JobStarted
from routilux_server import LiveSink


def _records(job: str, start: int, n: int) -> list[JobStarted]:
    return [JobStarted(job_id=job, flow="f", seq=s, ts=0.0) for s in range(start, start + n)]


class TestLiveSink:
    @settings(max_examples=25, deadline=None)
    @given(batches=st.lists(st.integers(1, 40), min_size=1, max_size=30),
           joins=st.lists(st.integers(0, 30), min_size=1, max_size=4))
    def test_snapshot_plus_live_is_every_record_once(self, batches: list[int],
                                                     joins: list[int]) -> None:
        """Subscribers join while another thread writes; each ends with seq 1..N exactly."""
        sink = LiveSink(trace_size=10_000, trace_jobs=10, queue_size=100_000)
        total = sum(batches)

        async def main() -> list[list[int]]:
            loop = asyncio.get_running_loop()
            gates = {i: threading.Event() for i in range(len(batches))}
            subscribed = [asyncio.Event() for _ in joins]

            def writer() -> None:
                seq = 1
                for i, n in enumerate(batches):
                    for k, j in enumerate(joins):
                        if j == i:
                            asyncio.run_coroutine_threadsafe(_mark(k), loop).result()
                    sink.write(_records("job", seq, n))
                    seq += n
                    gates[i].set()

            async def _mark(k: int) -> None:
                subscribed[k].set()

            seen: list[list[int]] = [[] for _ in joins]

            async def subscriber(k: int) -> None:
                await subscribed[k].wait() if joins[k] < len(batches) else None
                sub, snap = sink.subscribe(job_id="job")
                seen[k].extend(int(t.split('"seq": ')[1].split(",")[0]) for t in snap)
                while len(seen[k]) < total:
                    text = await asyncio.wait_for(sub.queue.get(), 10)
                    seen[k].append(int(text.split('"seq": ')[1].split(",")[0]))
                sink.unsubscribe(sub)

            thread = threading.Thread(target=writer)
            tasks = [asyncio.ensure_future(subscriber(k)) for k in range(len(joins))]
            thread.start()
            await asyncio.gather(*tasks)
            await asyncio.to_thread(thread.join)
            return seen

        for seqs in asyncio.run(main()):
            assert seqs == list(range(1, total + 1))

    def test_slow_subscriber_closed_counted_and_writer_never_blocks(self) -> None:
        sink = LiveSink(trace_size=100, trace_jobs=10, queue_size=3)

        async def main() -> None:
            fast, _ = sink.subscribe(job_id="j")
            slow, _ = sink.subscribe(job_id="j")

            def write(start: int, n: int) -> None:
                t = threading.Thread(target=sink.write, args=(_records("j", start, n),))
                t.start()
                t.join(5)
                assert not t.is_alive()  # write() returned: nobody waits for subscribers

            async def settle() -> None:  # let the loop run the delivered callbacks
                for _ in range(3):
                    await asyncio.sleep(0)

            write(1, 2)
            await settle()
            while not fast.queue.empty():
                fast.queue.get_nowait()
            write(3, 2)  # slow now holds 4 > 3
            await settle()
            assert slow.overflowed and slow.closed and not fast.overflowed
            assert sink.stats() == {"subscribers": 1, "slow_closed": 1, "records_received": 4,
                                    "jobs_traced": 1}
            while not fast.queue.empty():
                fast.queue.get_nowait()
            write(5, 3)
            await settle()
            assert fast.queue.qsize() == 3 and fast.delivered == 7

        asyncio.run(main())

    def test_traces_are_bounded(self) -> None:
        sink = LiveSink(trace_size=5, trace_jobs=2, queue_size=10)
        for job in ("a", "b", "c"):
            sink.write(_records(job, 1, 8))
        assert sink.trace("a") is None
        trace = sink.trace("c")
        assert trace is not None and [r["seq"] for r in trace] == [4, 5, 6, 7, 8]


def test_flow_snapshot_holds_the_most_recent_jobs() -> None:
    from routilux_server._live import FLOW_SNAPSHOT_JOBS

    sink = LiveSink(trace_size=10, trace_jobs=1000, queue_size=10)
    for i in range(FLOW_SNAPSHOT_JOBS + 5):
        sink.write(_records(f"j{i}", 1, 2))

    async def main() -> list[str]:
        _, snap = sink.subscribe(flow="f")
        return snap

    snap = asyncio.run(main())
    jobs = [text.split('"job_id": "')[1].split('"')[0] for text in snap]
    assert len(snap) == 2 * FLOW_SNAPSHOT_JOBS
    assert jobs[0] == "j5" and jobs[-1] == f"j{FLOW_SNAPSHOT_JOBS + 4}"
