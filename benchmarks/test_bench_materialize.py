"""Turning an extracted window of 100,000 connections into Python objects.

``Statistics.extract()`` is ``core.cut()`` (swap the window out under the
shard locks: the only time the table is locked against the packet path)
followed by building Connection/Counts objects with no table lock held.
Both are timed separately (the second as ``window.to_dicts()``, one C call),
on two windows:

* realistic: 1,000 client addresses x 100 source ports to 4 servers:443
  (about 1,000 distinct addresses, so address objects are mostly shared);
* adversarial: every connection has its own source and destination address
  (200,000 distinct address objects to build).

Building the objects needs the GIL.  ``extract()`` builds them in slices of
2,048 connections from a Python loop (``connstats._impl.materialize``), so a
Python packet thread waiting for the GIL gets it after one switch interval:
``test_materialize_stall_*`` measures the longest pause such a thread sees
during ``extract()``.
"""

import sys
import threading
import time

import baseline
import pytest
from harness import record
from workloads import joined, window_packets

import connstats

CONNS = 100_000


@pytest.fixture(scope="session")
def windows():
    out = {}
    for kind in ("realistic", "adversarial"):
        packets = window_packets(kind, CONNS)
        out[kind] = [joined(packets[i : i + 4096]) for i in range(0, CONNS, 4096)]
    return out


def _filled(buffers):
    s = connstats.Statistics()
    for buf, offsets, lengths in buffers:
        s.update_tx_virtual_buffer(buf, offsets, lengths)
    assert s.connections == CONNS
    return s


def _filled_baseline(buffers):
    s = baseline.Statistics()
    for buf, offsets, lengths in buffers:
        s.update_tx_virtual_batch([buf[o : o + n] for o, n in zip(offsets, lengths)])
    return s


def _cut(benchmark, windows, kind):
    record(benchmark, unit="call", count=1, path="cut", workload=f"window-{kind}")

    def setup():
        return (_filled(windows[kind]),), {}

    window = benchmark.pedantic(lambda stats: stats._core.cut(), setup=setup, rounds=20)
    assert len(window) == CONNS


def _to_dicts(benchmark, windows, kind):
    record(
        benchmark,
        unit="connection",
        count=CONNS,
        path="to_dicts",
        workload=f"window-{kind}",
    )

    def setup():
        return (_filled(windows[kind])._core.cut(),), {}

    virtual, _ = benchmark.pedantic(
        lambda window: window.to_dicts(), setup=setup, rounds=10
    )
    assert len(virtual) == CONNS


@pytest.mark.benchmark(group="materialize")
def test_materialize_cut_realistic_100k(benchmark, windows):
    _cut(benchmark, windows, "realistic")


@pytest.mark.benchmark(group="materialize")
def test_materialize_cut_adversarial_100k(benchmark, windows):
    _cut(benchmark, windows, "adversarial")


@pytest.mark.benchmark(group="materialize")
def test_materialize_to_dicts_realistic_100k(benchmark, windows):
    _to_dicts(benchmark, windows, "realistic")


@pytest.mark.benchmark(group="materialize")
def test_materialize_to_dicts_adversarial_100k(benchmark, windows):
    _to_dicts(benchmark, windows, "adversarial")


@pytest.mark.benchmark(group="materialize")
def test_materialize_extract_realistic_100k(benchmark, windows):
    record(
        benchmark,
        unit="connection",
        count=CONNS,
        path="extract",
        workload="window-realistic",
    )
    virtual, _ = benchmark.pedantic(
        lambda s: s.extract(),
        rounds=10,
        setup=lambda: ((_filled(windows["realistic"]),), {}),
    )
    assert len(virtual) == CONNS


@pytest.mark.benchmark(group="materialize")
def test_materialize_baseline_realistic_100k(benchmark, windows):
    record(
        benchmark,
        unit="connection",
        count=CONNS,
        path="baseline",
        workload="window-realistic",
    )
    out = benchmark.pedantic(
        baseline.to_dicts,
        rounds=5,
        setup=lambda: ((_filled_baseline(windows["realistic"]).cut(),), {}),
    )
    assert len(out) == CONNS


@pytest.mark.benchmark(group="materialize")
def test_materialize_baseline_adversarial_100k(benchmark, windows):
    record(
        benchmark,
        unit="connection",
        count=CONNS,
        path="baseline",
        workload="window-adversarial",
    )
    out = benchmark.pedantic(
        baseline.to_dicts,
        rounds=5,
        setup=lambda: ((_filled_baseline(windows["adversarial"]).cut(),), {}),
    )
    assert len(out) == CONNS


def _stall(benchmark, windows, kind):
    """extract() while another thread sends single packets into the same Statistics."""
    holder = [_filled(windows[kind])]
    packet = window_packets("realistic", 1)[0]
    stop = threading.Event()
    gaps = []  # (start, end) of every pause > 0.2 ms seen by the packet thread
    calls = []  # (start, end) of every extract()

    def packet_thread():
        clock = time.perf_counter
        last = clock()
        while not stop.is_set():
            holder[0].update_tx_virtual(packet)
            now = clock()
            if now - last > 0.0002:
                gaps.append((last, now))
            last = now

    def setup():
        holder[0] = _filled(windows[kind])
        return (holder[0],), {}

    def target(stats):
        start = time.perf_counter()
        out = stats.extract()
        calls.append((start, time.perf_counter()))
        return out

    thread = threading.Thread(
        target=packet_thread, name="bench-packet-path", daemon=True
    )
    thread.start()
    try:
        time.sleep(0.05)
        benchmark.pedantic(target, setup=setup, rounds=5)
    finally:
        stop.set()
        thread.join()
    worst = []
    for start, end in calls:
        overlapping = [b - a for a, b in gaps if a < end and b > start]
        worst.append(max(overlapping, default=0.0))
    record(
        benchmark,
        unit="connection",
        count=CONNS,
        path="extract+packet-thread",
        workload=f"window-{kind}",
        stall_max_ms=max(worst) * 1e3,
        stall_median_ms=sorted(worst)[len(worst) // 2] * 1e3,
        switch_interval_ms=sys.getswitchinterval() * 1e3,
    )


@pytest.mark.benchmark(group="materialize")
def test_materialize_stall_realistic_100k(benchmark, windows):
    _stall(benchmark, windows, "realistic")


@pytest.mark.benchmark(group="materialize")
def test_materialize_stall_adversarial_100k(benchmark, windows):
    _stall(benchmark, windows, "adversarial")
