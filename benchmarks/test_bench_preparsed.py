"""Pre-parsed counting (issue 18) against the packet path and the baseline.

``update_virtual(proto, src, dst, 1, n)`` for a caller that has parsed its
packets (src/dst as the AddrPort objects it keeps per flow), against
``update_tx_virtual(packet)`` on the same packets (test_bench_single.py) and
the pure-Python baseline's ``update_virtual`` (a dict keyed by the caller's
own tuple).  The batch form, ``update_records``, one 56-byte record per
packet in batches of 256, against ``update_tx_virtual_batch`` /
``update_tx_virtual_buffer`` (test_bench_batch.py) and the baseline's list
form.  Records and flows are built once, outside the timing.
"""

import baseline
import pytest
from harness import each_batch, each_flow, flows, records, run_packets, warm

import connstats

CASES = ["ipv4-1conn", "ipv4-1k", "ipv4-100k", "ipv6-1k", "mixed-10k"]


@pytest.mark.parametrize("name", CASES)
def test_single_preparsed(benchmark, workloads, name):
    benchmark.group = name
    w = workloads[name]
    s = warm(w)
    run_packets(
        benchmark, each_flow(s.update_virtual, flows(w)), w, "preparsed", stats=s
    )


@pytest.mark.parametrize("name", CASES)
def test_baseline_preparsed(benchmark, workloads, name):
    benchmark.group = name
    w = workloads[name]
    s = baseline.Statistics()
    each_flow(s.update_virtual, flows(w))()  # warm
    run_packets(
        benchmark,
        each_flow(s.update_virtual, flows(w)),
        w,
        "baseline-preparsed",
        stats=s,
    )


@pytest.mark.parametrize("name", CASES)
def test_records_preparsed(benchmark, workloads, name):
    benchmark.group = name
    w = workloads[name]
    s = warm(w)
    run_packets(
        benchmark, each_batch(s.update_records, records(w)), w, "records", stats=s
    )


@pytest.mark.parametrize("name", CASES)
def test_baseline_records_preparsed(benchmark, workloads, name):
    benchmark.group = name
    w = workloads[name]
    s = baseline.Statistics()
    items = [(proto, src, dst, 1, n) for proto, src, dst, n in flows(w)]
    step = len(w.batches[0])
    batches = [items[i : i + step] for i in range(0, len(items), step)]
    each_batch(s.update_virtual_many, batches)()  # warm
    run_packets(
        benchmark,
        each_batch(s.update_virtual_many, batches),
        w,
        "baseline-records",
        stats=s,
    )


def test_records_count_what_the_packets_count(workloads):
    """Not a benchmark: the pre-parsed paths must do the same work."""
    w = workloads["mixed-10k"]
    by_packet, single, batch = (connstats.Statistics() for _ in range(3))
    for p in w.packets:
        by_packet.update_tx_virtual(p)
    each_flow(single.update_virtual, flows(w))()
    each_batch(batch.update_records, records(w))()
    expected = by_packet.extract()
    assert single.extract() == expected
    assert batch.extract() == expected
