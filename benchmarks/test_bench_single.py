"""connstats, one packet per call (``Statistics.update_tx_virtual`` / ``rx``).

The GIL is kept for single packets (see RESULTS.md, "GIL decision").  Tables
are warm: one round runs before timing.
"""

import pytest
from harness import each, run_packets, warm


@pytest.mark.benchmark(group="ipv4-1conn")
def test_single_tx_ipv4_1conn(benchmark, workloads):
    w = workloads["ipv4-1conn"]
    s = warm(w)
    run_packets(benchmark, each(s.update_tx_virtual, w.packets), w, "single", stats=s)


@pytest.mark.benchmark(group="ipv4-1k")
def test_single_tx_ipv4_1k(benchmark, workloads):
    w = workloads["ipv4-1k"]
    s = warm(w)
    run_packets(benchmark, each(s.update_tx_virtual, w.packets), w, "single", stats=s)


@pytest.mark.benchmark(group="ipv4-100k")
def test_single_tx_ipv4_100k(benchmark, workloads):
    w = workloads["ipv4-100k"]
    s = warm(w)
    run_packets(benchmark, each(s.update_tx_virtual, w.packets), w, "single", stats=s)


@pytest.mark.benchmark(group="ipv4-100k-64B")
def test_single_tx_ipv4_100k_64b(benchmark, workloads):
    w = workloads["ipv4-100k-64B"]
    s = warm(w)
    run_packets(benchmark, each(s.update_tx_virtual, w.packets), w, "single", stats=s)


@pytest.mark.benchmark(group="ipv6-1k")
def test_single_tx_ipv6_1k(benchmark, workloads):
    w = workloads["ipv6-1k"]
    s = warm(w)
    run_packets(benchmark, each(s.update_tx_virtual, w.packets), w, "single", stats=s)


@pytest.mark.benchmark(group="mixed-10k")
def test_single_tx_mixed_10k(benchmark, workloads):
    w = workloads["mixed-10k"]
    s = warm(w)
    run_packets(benchmark, each(s.update_tx_virtual, w.packets), w, "single", stats=s)


@pytest.mark.benchmark(group="ipv4-1conn-rx")
def test_single_rx_ipv4_1conn(benchmark, workloads):
    w = workloads["ipv4-1conn"]
    s = warm(w, True)
    run_packets(
        benchmark, each(s.update_rx_virtual, w.packets), w, "single", "rx", stats=s
    )


@pytest.mark.benchmark(group="ipv4-100k-rx")
def test_single_rx_ipv4_100k(benchmark, workloads):
    w = workloads["ipv4-100k"]
    s = warm(w, True)
    run_packets(
        benchmark, each(s.update_rx_virtual, w.packets), w, "single", "rx", stats=s
    )


@pytest.mark.benchmark(group="mixed-10k-rx")
def test_single_rx_mixed_10k(benchmark, workloads):
    w = workloads["mixed-10k"]
    s = warm(w, True)
    run_packets(
        benchmark, each(s.update_rx_virtual, w.packets), w, "single", "rx", stats=s
    )


# -- a million connections (issue 24); not in the short mode (790 MB of packets)


@pytest.mark.benchmark(group="ipv4-1M")
def test_single_tx_ipv4_1m(benchmark, workloads, is_quick):
    if is_quick:
        pytest.skip("1,000,000 connections: timed runs only")
    w = workloads["ipv4-1M"]
    s = warm(w)
    run_packets(benchmark, each(s.update_tx_virtual, w.packets), w, "single", stats=s)
