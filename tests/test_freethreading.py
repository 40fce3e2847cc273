"""Many threads on one Statistics through the single-packet path.

On free-threaded builds the compiled core buffers these packets in per-thread
lanes (src/core/lanes.pxi) and adds them to the table in groups; these tests
pin what that must not change, on both cores and on either kind of build:
totals are exact across concurrent extracts, ``connections`` sees every
packet counted before it, a window's first packet still starts the window
(a lone packet reaches ``dump`` through ``max_period``), and nothing counted
before ``shutdown()`` is lost.
"""

from __future__ import annotations

import sys
import sysconfig
import threading
import time
from collections import Counter

import pytest
from captures import udp4

# the compiled core also with its lane in use from a window's second packet
pytestmark = pytest.mark.with_lanes

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
NTHREADS = 8


def _packets(index: int, conns: int) -> list[bytes]:
    return [
        udp4(
            f"10.{index}.{c // 250}.{c % 250 + 1}",
            1000 + c,
            "192.0.2.1",
            53,
            b"x" * index,
        )
        for c in range(conns)
    ]


def _add(total: Counter, virtual: dict) -> None:
    for conn, counts in virtual.items():
        total[(str(conn.src.addr), conn.src.port, "tx")] += counts.tx_packets
        total[(str(conn.src.addr), conn.src.port, "txb")] += counts.tx_bytes
        total[(str(conn.dst.addr), conn.dst.port, "rx")] += counts.rx_packets


def _run(threads: list[threading.Thread]) -> None:
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_single_packet_threads_with_extracts_add_up_exactly(impl):
    """8 threads, one Statistics, extracts racing: every packet exactly once."""
    stats = impl.Statistics()
    conns, rounds = (200, 60) if impl.name == "c" else (50, 20)
    work = [_packets(i, conns) for i in range(NTHREADS)]
    total: Counter = Counter()
    done = threading.Event()
    errors: list[BaseException] = []

    def sender(i: int) -> None:
        try:
            for _ in range(rounds):
                for p in work[i]:
                    stats.update_tx_virtual(p)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    def extractor() -> None:
        while not done.is_set():
            _add(total, stats.extract()[0])
            time.sleep(0.001)

    ex = threading.Thread(target=extractor)
    ex.start()
    try:
        _run([threading.Thread(target=sender, args=(i,)) for i in range(NTHREADS)])
    finally:
        done.set()
        ex.join()
    _add(total, stats.extract()[0])
    stats.shutdown()
    assert not errors, errors
    for i in range(NTHREADS):
        for c in range(conns):
            key = (f"10.{i}.{c // 250}.{c % 250 + 1}", 1000 + c)
            assert total[(*key, "tx")] == rounds, key
            assert total[(*key, "txb")] == rounds * (28 + i), key


def test_connections_sees_every_packet_counted_before_it(impl):
    stats = impl.Statistics()
    barrier = threading.Barrier(NTHREADS)

    def sender(i: int) -> None:
        barrier.wait()
        for p in _packets(i, 10):
            stats.update_tx_virtual(p)
            stats.update_rx_virtual(p)

    _run([threading.Thread(target=sender, args=(i,)) for i in range(NTHREADS)])
    # 10 connections per thread, tx and rx of one packet are two directions
    # of two distinct keys (rx swaps src and dst)
    assert stats.connections == NTHREADS * 10 * 2
    virtual, _ = stats.extract()
    assert sum(c.tx_packets for c in virtual.values()) == NTHREADS * 10
    assert sum(c.rx_packets for c in virtual.values()) == NTHREADS * 10
    assert stats.connections == 0
    stats.shutdown()


def test_lone_packets_from_threads_reach_dump_through_max_period(impl):
    """The first packet of a window must start it, whatever thread sends it."""
    windows: list[dict] = []
    got = threading.Event()

    def dump(start, end, virtual, physical):
        windows.append(virtual)
        if sum(c.tx_packets for w in windows for c in w.values()) >= 3:
            got.set()

    stats = impl.Statistics(max_period=0.05, dump=dump)
    for i in range(3):
        # one packet per thread; the first opens the window, the others may
        # land in it or in the next one
        t = threading.Thread(target=stats.update_tx_virtual, args=(_packets(i, 1)[0],))
        t.start()
        t.join()
        time.sleep(0.02)
    # no shutdown before the wait: the flush thread alone must deliver them
    assert got.wait(30), windows
    stats.shutdown()


def test_packets_counted_before_shutdown_are_in_the_final_window(impl):
    windows: list[dict] = []
    stats = impl.Statistics(dump=lambda s, e, v, p: windows.append(v))
    barrier = threading.Barrier(NTHREADS)

    def sender(i: int) -> None:
        barrier.wait()
        for p in _packets(i, 30) * 3:
            stats.update_tx_virtual(p)

    _run([threading.Thread(target=sender, args=(i,)) for i in range(NTHREADS)])
    stats.shutdown()
    assert sum(c.tx_packets for w in windows for c in w.values()) == NTHREADS * 90


@pytest.mark.skipif(not FREE_THREADED, reason="needs a free-threaded CPython build")
def test_the_gil_stays_disabled():
    import connstats
    import connstats.capture  # noqa: F401

    assert not sys._is_gil_enabled()  # type: ignore[attr-defined]
