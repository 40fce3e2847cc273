"""The Go reference package's own benchmark shapes (net/connstats BenchmarkConnStats).

Each round builds a fresh Statistics and sends 1,000 IPv4 UDP 789-byte
packets: ``same`` repeats one connection, ``unique`` writes the loop index
into the port bytes (p[20:24] = j) so every packet is a new connection.  The
two-thread forms run 1,000 packets in each of two threads on one fresh
Statistics (``unique``: thread j uses ports j*1000+k), like the reference's
MultiRoutine cases on a 2-CPU machine.  Threads are long-lived and released
per round by a barrier; ``test_reference_harness_*`` times the barrier round
trip alone (per packet of the two-thread rounds) so it can be subtracted.
"""

import baseline
import pytest
from harness import Workers, record
from workloads import same_connection, udp4

import connstats

SAME = udp4(0xC0A80001, 0xC0A80002, 123, 456)


def _unique(start, count=1000):
    return [udp4(0, 0, j >> 16, j & 0xFFFF) for j in range(start, start + count)]


# Keep a reference to each Statistics while it is fed: a dropped Statistics
# is finalized, which shuts it down, and later updates are then dropped.


def _one_thread(factory, packets, sink):
    def run():
        s = factory()
        f = s.update_tx_virtual
        for p in packets:
            f(p)
        sink[0] = s

    return run


def _one_batch(packets, sink):
    def run():
        s = connstats.Statistics()
        s.update_tx_virtual_batch(packets)
        sink[0] = s

    return run


def _check(sink, packets, connections):
    virtual, _ = sink[0].extract()
    assert len(virtual) == connections
    assert sum(c.tx_packets for c in virtual.values()) == packets


def _two_threads(workers, factory, per_thread):
    box = [None]

    def job(packets):
        def run():
            f = box[0].update_tx_virtual
            for p in packets:
                f(p)

        return run

    workers.jobs = [job(p) for p in per_thread]

    def run():
        box[0] = factory()
        workers.run()

    return run, box


@pytest.fixture
def two_workers():
    with Workers(2) as w:
        yield w


def _bench(benchmark, fn, workload, path, count, threads=1):
    record(
        benchmark,
        unit="packet",
        count=count,
        path=path,
        workload=workload,
        threads=threads,
    )
    benchmark(fn)


# -- one thread ---------------------------------------------------------------------


@pytest.mark.benchmark(group="go-shapes")
def test_reference_same_1thread(benchmark):
    sink = [None]
    fn = _one_thread(connstats.Statistics, same_connection(SAME), sink)
    _bench(benchmark, fn, "go-same-1t", "single", 1000)
    _check(sink, 1000, 1)


@pytest.mark.benchmark(group="go-shapes")
def test_reference_unique_1thread(benchmark):
    sink = [None]
    fn = _one_thread(connstats.Statistics, _unique(0), sink)
    _bench(benchmark, fn, "go-unique-1t", "single", 1000)
    _check(sink, 1000, 1000)


@pytest.mark.benchmark(group="go-shapes")
def test_reference_same_1thread_batch(benchmark):
    sink = [None]
    _bench(
        benchmark, _one_batch(same_connection(SAME), sink), "go-same-1t", "batch", 1000
    )
    _check(sink, 1000, 1)


@pytest.mark.benchmark(group="go-shapes")
def test_reference_unique_1thread_batch(benchmark):
    sink = [None]
    _bench(benchmark, _one_batch(_unique(0), sink), "go-unique-1t", "batch", 1000)
    _check(sink, 1000, 1000)


@pytest.mark.benchmark(group="go-shapes")
def test_reference_same_1thread_baseline(benchmark):
    sink = [None]
    fn = _one_thread(baseline.Statistics, same_connection(SAME), sink)
    _bench(benchmark, fn, "go-same-1t", "baseline", 1000)
    _check(sink, 1000, 1)


@pytest.mark.benchmark(group="go-shapes")
def test_reference_unique_1thread_baseline(benchmark):
    sink = [None]
    fn = _one_thread(baseline.Statistics, _unique(0), sink)
    _bench(benchmark, fn, "go-unique-1t", "baseline", 1000)
    _check(sink, 1000, 1000)


# -- two threads -----------------------------------------------------------------


@pytest.mark.benchmark(group="go-shapes")
def test_reference_harness_2threads(benchmark, two_workers):
    two_workers.jobs = [None, None]
    _bench(benchmark, two_workers.run, "go-harness-2t", "harness", 2000, threads=2)


@pytest.mark.benchmark(group="go-shapes")
def test_reference_same_2threads(benchmark, two_workers):
    fn, box = _two_threads(
        two_workers,
        connstats.Statistics,
        [same_connection(SAME), same_connection(SAME)],
    )
    _bench(benchmark, fn, "go-same-2t", "single", 2000, threads=2)
    _check(box, 2000, 1)


@pytest.mark.benchmark(group="go-shapes")
def test_reference_unique_2threads(benchmark, two_workers):
    fn, box = _two_threads(
        two_workers, connstats.Statistics, [_unique(0), _unique(1000)]
    )
    _bench(benchmark, fn, "go-unique-2t", "single", 2000, threads=2)
    _check(box, 2000, 2000)


@pytest.mark.benchmark(group="go-shapes")
def test_reference_same_2threads_baseline(benchmark, two_workers):
    fn, box = _two_threads(
        two_workers, baseline.Statistics, [same_connection(SAME), same_connection(SAME)]
    )
    _bench(benchmark, fn, "go-same-2t", "baseline", 2000, threads=2)
    _check(box, 2000, 1)


@pytest.mark.benchmark(group="go-shapes")
def test_reference_unique_2threads_baseline(benchmark, two_workers):
    fn, box = _two_threads(
        two_workers, baseline.Statistics, [_unique(0), _unique(1000)]
    )
    _bench(benchmark, fn, "go-unique-2t", "baseline", 2000, threads=2)
    _check(box, 2000, 2000)
