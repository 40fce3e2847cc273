"""connstats.aio.AsyncStatistics: windows handed to an event loop.

Exact totals across many windows (from the loop and from threads), the
bounded queue's overflow counted as dropped windows, the final window on
``aclose()`` and on leaving ``async with``.  Both cores (``impl``); CI also
runs this file on the free-threaded build.
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import threading
import weakref
from datetime import timezone

import pytest
from captures import udp4

import connstats
from connstats import aio, metrics


@pytest.fixture
def AsyncStatistics(impl):
    class BoundAsyncStatistics(aio.AsyncStatistics):
        _core_module = impl.module

    return BoundAsyncStatistics


def run(coro, timeout=60):
    async def bounded():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def packet(i: int, size: int = 10) -> bytes:
    return udp4(
        f"10.3.{i // 250}.{i % 250 + 1}", 3000 + i % 11, "192.0.2.5", 443, b"y" * size
    )


def conn_key(impl, i: int):
    return impl.Connection(
        17,
        impl.AddrPort(
            ipaddress.ip_address(f"10.3.{i // 250}.{i % 250 + 1}"), 3000 + i % 11
        ),
        impl.AddrPort(ipaddress.ip_address("192.0.2.5"), 443),
    )


def add(total: dict, window: aio.Window) -> None:
    for table in (window.virtual, window.physical):
        for conn, counts in table.items():
            before = total.get(conn)
            total[conn] = counts if before is None else before + counts


def test_many_windows_exact_from_the_loop(impl, AsyncStatistics):
    """Packets counted from a coroutine, a window cut every 29 connections:
    the windows add up to exactly what was sent, connection by connection."""

    async def main():
        sent = {}
        got: dict = {}
        windows = []
        async with AsyncStatistics(max_conns=29, max_windows=10_000) as stats:

            async def consume():
                async for window in stats.windows():
                    windows.append(window)
                    add(got, window)

            consumer = asyncio.create_task(consume())
            for rnd in range(4):
                for i in range(700):
                    size = (i * 7 + rnd) % 40
                    stats.update_tx_virtual(packet(i, size))
                    key = conn_key(impl, i)
                    c = impl.Counts(1, 28 + size, 0, 0)
                    sent[key] = sent[key] + c if key in sent else c
                    if i % 50 == 0:
                        await asyncio.sleep(0)
        await consumer
        return stats, sent, got, windows

    stats, sent, got, windows = run(main())
    assert stats.dropped_windows == 0
    assert got == sent
    assert len(windows) > 50
    for w in windows:
        assert w.start.tzinfo is timezone.utc and w.start <= w.end
        assert len(w.virtual) + len(w.physical) <= 29
    assert stats.queued_windows == 0 and stats.is_shutdown


def test_threads_feed_while_the_loop_consumes(impl, AsyncStatistics):
    """Four threads count packets (the update methods are synchronous and
    thread-safe) while the loop takes windows cut every 10 ms and every 50
    connections: exact totals."""
    threads, per_thread = 4, 3000

    async def main():
        got: dict = {}
        async with AsyncStatistics(
            max_period=0.01, max_conns=50, max_windows=100_000
        ) as stats:

            async def consume():
                async for window in stats.windows():
                    add(got, window)

            consumer = asyncio.create_task(consume())

            def feed(t):
                for i in range(per_thread):
                    stats.update_rx_physical(
                        f"10.4.{t}.1", (f"192.0.2.{i % 97}", 41641), 100 + t
                    )

            await asyncio.gather(*(asyncio.to_thread(feed, t) for t in range(threads)))
        await consumer
        return stats, got

    stats, got = run(main())
    assert stats.dropped_windows == 0
    expected = {}
    for t in range(threads):
        for j in range(97):
            n = len(range(j, per_thread, 97))
            conn = impl.Connection(
                0,
                impl.AddrPort(ipaddress.ip_address(f"10.4.{t}.1"), 0),
                impl.AddrPort(ipaddress.ip_address(f"192.0.2.{j}"), 41641),
            )
            expected[conn] = impl.Counts(0, 0, n, n * (100 + t))
    assert got == expected


def test_full_queue_drops_the_oldest_and_counts_it(impl, AsyncStatistics, caplog):
    """Nobody takes windows: with max_windows=3, all but the newest three are
    dropped, counted in dropped_windows/packets/bytes, and logged; the final
    window (cut on leaving the block) is among the three kept."""
    caplog.set_level(logging.WARNING, logger="connstats")
    cuts = 40

    async def main():
        async with AsyncStatistics(max_conns=1, max_windows=3) as stats:
            for i in range(cuts + 1):
                # a new connection per packet: each cuts the previous window
                stats.update_tx_virtual(packet(i, i))
                # let the flush thread hand each window over (no core drops)
                for _ in range(200):
                    if stats._flusher.windows_delivered == i:
                        break
                    await asyncio.sleep(0.005)
        return stats, [w async for w in stats.windows()]

    stats, kept = run(main())
    assert stats.dropped_windows == cuts + 1 - 3
    assert stats._core.dropped_windows == 0
    assert len(kept) == 3
    kept_conns = [next(iter(w.virtual)) for w in kept]
    assert kept_conns == [conn_key(impl, i) for i in (cuts - 2, cuts - 1, cuts)]
    dropped = range(cuts - 2)
    assert stats.dropped_packets == len(dropped)
    assert stats.dropped_bytes == sum(28 + i for i in dropped)
    assert "event loop fell behind" in caplog.text


def test_final_window_on_aclose_reaches_a_waiting_consumer(impl, AsyncStatistics):
    async def main():
        stats = AsyncStatistics(max_period=3600)
        windows = []

        async def consume():
            async for window in stats.windows():
                windows.append(window)

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0.05)  # the consumer is waiting now
        for i in range(100):
            stats.update_tx_virtual(packet(i))
            stats.update_rx_virtual(packet(i))
        assert await stats.aclose()
        await consumer  # ends after the final window
        assert await stats.aclose()  # idempotent
        return windows

    windows = run(main())
    assert len(windows) == 1
    (window,) = windows
    assert len(window.virtual) == 200  # rx swaps src and dst: other connections
    assert sum(c.tx_packets + c.rx_packets for c in window.virtual.values()) == 200


def test_leaving_the_block_delivers_the_final_window(impl, AsyncStatistics):
    async def main():
        async with AsyncStatistics() as stats:
            stats.update_tx_physical("10.0.0.1", ("10.0.0.2", 1), 1234)
        return [w async for w in stats.windows()]

    (window,) = run(main())
    assert window.physical == {
        impl.Connection(
            0,
            impl.AddrPort(ipaddress.ip_address("10.0.0.1"), 0),
            impl.AddrPort(ipaddress.ip_address("10.0.0.2"), 1),
        ): impl.Counts(1, 1234, 0, 0)
    }
    assert window.virtual == {}


def test_sync_shutdown_also_ends_the_iterator(AsyncStatistics):
    async def main():
        stats = AsyncStatistics()
        stats.update_tx_physical("10.0.0.1", ("10.0.0.2", 1), 1)
        stats.shutdown()
        return [w async for w in stats.windows()]

    assert len(run(main())) == 1


def test_a_cancelled_consumer_leaves_the_queue_working(AsyncStatistics):
    async def main():
        stats = AsyncStatistics(max_period=3600)
        waiting = asyncio.create_task(anext(aiter(stats.windows())))
        await asyncio.sleep(0.02)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert not stats._inbox._waiters
        stats.update_tx_physical("10.0.0.1", ("10.0.0.2", 1), 1)
        await stats.aclose()
        return [w async for w in stats.windows()]

    assert len(run(main())) == 1


def test_totals_from_the_loop(impl, AsyncStatistics):
    """Windows to Totals from the consumer: totals(*window), and watch()
    brings in the queue's dropped windows."""

    class BoundTotals(metrics.Totals):
        _core_module = impl.module

    totals = BoundTotals()

    async def main():
        async with AsyncStatistics(max_conns=5) as stats:
            totals.watch(stats)

            async def consume():
                async for window in stats.windows():
                    totals(*window)

            consumer = asyncio.create_task(consume())
            for i in range(60):
                stats.update_tx_virtual(packet(i, 2))
                await asyncio.sleep(0)
        await consumer
        return stats

    stats = run(main())
    snapshot = totals.snapshot()
    packets = sum(c.tx_packets for c in snapshot.values())
    assert packets + totals.health().dropped_packets == 60
    assert totals.health().dropped_windows == stats.dropped_windows


def test_arguments(AsyncStatistics):
    with pytest.raises(TypeError, match="max_windows"):
        AsyncStatistics(max_windows=2.0)
    with pytest.raises(ValueError, match="max_windows"):
        AsyncStatistics(max_windows=0)
    with pytest.raises(TypeError):
        AsyncStatistics(dump=print)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="max_conns"):
        AsyncStatistics(max_conns=-1)
    stats = AsyncStatistics(max_period=1, max_conns=10)
    assert isinstance(stats, connstats.Statistics)
    assert "AsyncStatistics" in repr(stats) and "queued=0" in repr(stats)
    stats.shutdown()


def test_an_unused_instance_is_collected(AsyncStatistics):
    """The queue is the dump and does not refer back to the instance: one
    dropped without shutdown is collected and its flush thread stopped."""
    stats = AsyncStatistics(max_period=1)
    stats.update_tx_physical("10.0.0.1", ("10.0.0.2", 1), 1)
    thread = stats._flusher.thread
    ref = weakref.ref(stats)
    del stats
    gc.collect()
    assert ref() is None
    thread.join(10)
    assert not thread.is_alive()


def test_windows_from_another_thread_wake_the_loop(AsyncStatistics):
    """The flush thread wakes a consumer blocked in windows() through
    call_soon_threadsafe: windows arrive while the loop does nothing else."""

    async def main():
        async with AsyncStatistics(max_period=0.02) as stats:
            it = aiter(stats.windows())
            stop = threading.Event()

            def feed():
                while not stop.is_set():
                    stats.update_tx_physical("10.0.0.1", ("10.0.0.2", 1), 1)
                    stop.wait(0.001)

            feeder = threading.Thread(target=feed)
            feeder.start()
            try:
                first = await anext(it)
                second = await anext(it)
            finally:
                stop.set()
                feeder.join()
        rest = [w async for w in it]
        return first, second, rest

    first, second, rest = run(main())
    assert first.end <= second.start
