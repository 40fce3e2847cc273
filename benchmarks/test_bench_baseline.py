"""The pure-Python baseline (baseline.py) on every workload, tx and rx.

The tables are warm: one round runs before timing, so the cycling
workloads measure the steady state (every connection already tracked).
The first tests check that the baseline counts what connstats counts.
"""

import baseline
import pytest
from harness import each, each_batch, run_packets
from workloads import WORKLOADS

import connstats


def _connstats_view(virtual):
    return {
        (c.proto, c.src.addr, c.src.port, c.dst.addr, c.dst.port): tuple(n)
        for c, n in virtual.items()
    }


def _baseline_view(virtual):
    return {
        (c.proto, c.src.addr, c.src.port, c.dst.addr, c.dst.port): tuple(n)
        for c, n in virtual.items()
    }


@pytest.mark.parametrize("name", WORKLOADS)
def test_baseline_counts_like_connstats(workloads, name):
    """Not a benchmark: the baseline must do the same work to be a fair baseline."""
    w = workloads[name]
    ours, theirs = connstats.Statistics(), baseline.Statistics()
    for p in w.packets[:20_000]:
        ours.update_tx_virtual(p)
        theirs.update_tx_virtual(p)
    ours.update_rx_virtual_batch(w.packets[:5000])
    theirs.update_rx_virtual_batch(w.packets[:5000])
    virtual, physical = ours.extract()
    expected, _ = theirs.extract()
    assert _connstats_view(virtual) == _baseline_view(expected)
    assert not physical


def warm(stats, w, rx=False):
    update = stats.update_rx_virtual_batch if rx else stats.update_tx_virtual_batch
    for b in w.batches:
        update(b)
    return stats


# -- tx, one packet per call ---------------------------------------------------


@pytest.mark.benchmark(group="ipv4-1M")
def test_baseline_tx_ipv4_1m(benchmark, workloads, is_quick):
    if is_quick:
        pytest.skip("1,000,000 connections: timed runs only")
    w = workloads["ipv4-1M"]
    s = warm(baseline.Statistics(), w)
    run_packets(benchmark, each(s.update_tx_virtual, w.packets), w, "baseline", stats=s)


@pytest.mark.benchmark(group="ipv4-1conn")
def test_baseline_tx_ipv4_1conn(benchmark, workloads):
    w = workloads["ipv4-1conn"]
    s = warm(baseline.Statistics(), w)
    run_packets(benchmark, each(s.update_tx_virtual, w.packets), w, "baseline", stats=s)


@pytest.mark.benchmark(group="ipv4-1k")
def test_baseline_tx_ipv4_1k(benchmark, workloads):
    w = workloads["ipv4-1k"]
    s = warm(baseline.Statistics(), w)
    run_packets(benchmark, each(s.update_tx_virtual, w.packets), w, "baseline", stats=s)


@pytest.mark.benchmark(group="ipv4-100k")
def test_baseline_tx_ipv4_100k(benchmark, workloads):
    w = workloads["ipv4-100k"]
    s = warm(baseline.Statistics(), w)
    run_packets(benchmark, each(s.update_tx_virtual, w.packets), w, "baseline", stats=s)


@pytest.mark.benchmark(group="ipv4-100k-64B")
def test_baseline_tx_ipv4_100k_64b(benchmark, workloads):
    w = workloads["ipv4-100k-64B"]
    s = warm(baseline.Statistics(), w)
    run_packets(benchmark, each(s.update_tx_virtual, w.packets), w, "baseline", stats=s)


@pytest.mark.benchmark(group="ipv6-1k")
def test_baseline_tx_ipv6_1k(benchmark, workloads):
    w = workloads["ipv6-1k"]
    s = warm(baseline.Statistics(), w)
    run_packets(benchmark, each(s.update_tx_virtual, w.packets), w, "baseline", stats=s)


@pytest.mark.benchmark(group="mixed-10k")
def test_baseline_tx_mixed_10k(benchmark, workloads):
    w = workloads["mixed-10k"]
    s = warm(baseline.Statistics(), w)
    run_packets(benchmark, each(s.update_tx_virtual, w.packets), w, "baseline", stats=s)


# -- tx, batches (parse all, lock once per batch) --------------------------------


@pytest.mark.benchmark(group="ipv4-1conn")
def test_baseline_batch_tx_ipv4_1conn(benchmark, workloads):
    w = workloads["ipv4-1conn"]
    s = warm(baseline.Statistics(), w)
    run_packets(
        benchmark,
        each_batch(s.update_tx_virtual_batch, w.batches),
        w,
        "baseline-batch",
        stats=s,
    )


@pytest.mark.benchmark(group="ipv4-100k")
def test_baseline_batch_tx_ipv4_100k(benchmark, workloads):
    w = workloads["ipv4-100k"]
    s = warm(baseline.Statistics(), w)
    run_packets(
        benchmark,
        each_batch(s.update_tx_virtual_batch, w.batches),
        w,
        "baseline-batch",
        stats=s,
    )


@pytest.mark.benchmark(group="mixed-10k")
def test_baseline_batch_tx_mixed_10k(benchmark, workloads):
    w = workloads["mixed-10k"]
    s = warm(baseline.Statistics(), w)
    run_packets(
        benchmark,
        each_batch(s.update_tx_virtual_batch, w.batches),
        w,
        "baseline-batch",
        stats=s,
    )


# -- rx --------------------------------------------------------------------------


@pytest.mark.benchmark(group="ipv4-1conn-rx")
def test_baseline_rx_ipv4_1conn(benchmark, workloads):
    w = workloads["ipv4-1conn"]
    s = warm(baseline.Statistics(), w, rx=True)
    run_packets(
        benchmark, each(s.update_rx_virtual, w.packets), w, "baseline", "rx", stats=s
    )


@pytest.mark.benchmark(group="ipv4-100k-rx")
def test_baseline_rx_ipv4_100k(benchmark, workloads):
    w = workloads["ipv4-100k"]
    s = warm(baseline.Statistics(), w, rx=True)
    run_packets(
        benchmark, each(s.update_rx_virtual, w.packets), w, "baseline", "rx", stats=s
    )


@pytest.mark.benchmark(group="mixed-10k-rx")
def test_baseline_rx_mixed_10k(benchmark, workloads):
    w = workloads["mixed-10k"]
    s = warm(baseline.Statistics(), w, rx=True)
    run_packets(
        benchmark, each(s.update_rx_virtual, w.packets), w, "baseline", "rx", stats=s
    )
