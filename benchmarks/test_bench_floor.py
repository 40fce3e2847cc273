"""The interpreter's floor: what calling anything once per packet costs.

``[].count(pkt)`` is a prebound C method (METH_O) doing almost nothing; the
no-op Python function adds a Python frame.  Each workload has its own floor
because the loop touches the same packet objects (cold objects cost more).
"""

import pytest
from harness import each, noop, run_packets


@pytest.mark.benchmark(group="ipv4-1conn")
def test_floor_cmethod_ipv4_1conn(benchmark, workloads):
    w = workloads["ipv4-1conn"]
    run_packets(benchmark, each([].count, w.packets), w, "floor")


@pytest.mark.benchmark(group="ipv4-1conn")
def test_floor_noop_ipv4_1conn(benchmark, workloads):
    w = workloads["ipv4-1conn"]
    run_packets(benchmark, each(noop, w.packets), w, "noop")


@pytest.mark.benchmark(group="ipv4-1k")
def test_floor_cmethod_ipv4_1k(benchmark, workloads):
    w = workloads["ipv4-1k"]
    run_packets(benchmark, each([].count, w.packets), w, "floor")


@pytest.mark.benchmark(group="ipv4-100k")
def test_floor_cmethod_ipv4_100k(benchmark, workloads):
    w = workloads["ipv4-100k"]
    run_packets(benchmark, each([].count, w.packets), w, "floor")


@pytest.mark.benchmark(group="ipv4-100k-64B")
def test_floor_cmethod_ipv4_100k_64b(benchmark, workloads):
    w = workloads["ipv4-100k-64B"]
    run_packets(benchmark, each([].count, w.packets), w, "floor")


@pytest.mark.benchmark(group="ipv6-1k")
def test_floor_cmethod_ipv6_1k(benchmark, workloads):
    w = workloads["ipv6-1k"]
    run_packets(benchmark, each([].count, w.packets), w, "floor")


@pytest.mark.benchmark(group="mixed-10k")
def test_floor_cmethod_mixed_10k(benchmark, workloads):
    w = workloads["mixed-10k"]
    run_packets(benchmark, each([].count, w.packets), w, "floor")


@pytest.mark.benchmark(group="ipv4-1M")
def test_floor_cmethod_ipv4_1m(benchmark, workloads, is_quick):
    if is_quick:
        pytest.skip("1,000,000 connections: timed runs only")
    w = workloads["ipv4-1M"]
    run_packets(benchmark, each([].count, w.packets), w, "floor")
