"""connstats batch entry points: a list of packets, or one buffer + offsets.

Batches hold 256 packets (workloads.BATCH); a round sends every packet of
the workload once, so the per-packet figure includes the per-call overhead.
For the buffer path the packets are already laid out in one buffer with
``array('I')`` offsets and lengths, as a ring buffer or recvmmsg reader
would hand them over (building that buffer is not timed).
"""

import pytest
from harness import each_batch, each_buffer, run_packets, warm

# -- list of packets ------------------------------------------------------------


@pytest.mark.benchmark(group="ipv4-1conn")
def test_batch_tx_ipv4_1conn(benchmark, workloads):
    w = workloads["ipv4-1conn"]
    s = warm(w)
    run_packets(
        benchmark, each_batch(s.update_tx_virtual_batch, w.batches), w, "batch", stats=s
    )


@pytest.mark.benchmark(group="ipv4-1k")
def test_batch_tx_ipv4_1k(benchmark, workloads):
    w = workloads["ipv4-1k"]
    s = warm(w)
    run_packets(
        benchmark, each_batch(s.update_tx_virtual_batch, w.batches), w, "batch", stats=s
    )


@pytest.mark.benchmark(group="ipv4-100k")
def test_batch_tx_ipv4_100k(benchmark, workloads):
    w = workloads["ipv4-100k"]
    s = warm(w)
    run_packets(
        benchmark, each_batch(s.update_tx_virtual_batch, w.batches), w, "batch", stats=s
    )


@pytest.mark.benchmark(group="ipv4-100k-64B")
def test_batch_tx_ipv4_100k_64b(benchmark, workloads):
    w = workloads["ipv4-100k-64B"]
    s = warm(w)
    run_packets(
        benchmark, each_batch(s.update_tx_virtual_batch, w.batches), w, "batch", stats=s
    )


@pytest.mark.benchmark(group="ipv6-1k")
def test_batch_tx_ipv6_1k(benchmark, workloads):
    w = workloads["ipv6-1k"]
    s = warm(w)
    run_packets(
        benchmark, each_batch(s.update_tx_virtual_batch, w.batches), w, "batch", stats=s
    )


@pytest.mark.benchmark(group="mixed-10k")
def test_batch_tx_mixed_10k(benchmark, workloads):
    w = workloads["mixed-10k"]
    s = warm(w)
    run_packets(
        benchmark, each_batch(s.update_tx_virtual_batch, w.batches), w, "batch", stats=s
    )


@pytest.mark.benchmark(group="ipv4-1conn-rx")
def test_batch_rx_ipv4_1conn(benchmark, workloads):
    w = workloads["ipv4-1conn"]
    s = warm(w, True)
    run_packets(
        benchmark,
        each_batch(s.update_rx_virtual_batch, w.batches),
        w,
        "batch",
        "rx",
        stats=s,
    )


@pytest.mark.benchmark(group="ipv4-100k-rx")
def test_batch_rx_ipv4_100k(benchmark, workloads):
    w = workloads["ipv4-100k"]
    s = warm(w, True)
    run_packets(
        benchmark,
        each_batch(s.update_rx_virtual_batch, w.batches),
        w,
        "batch",
        "rx",
        stats=s,
    )


@pytest.mark.benchmark(group="mixed-10k-rx")
def test_batch_rx_mixed_10k(benchmark, workloads):
    w = workloads["mixed-10k"]
    s = warm(w, True)
    run_packets(
        benchmark,
        each_batch(s.update_rx_virtual_batch, w.batches),
        w,
        "batch",
        "rx",
        stats=s,
    )


# -- one buffer + offsets/lengths -------------------------------------------------


@pytest.mark.benchmark(group="ipv4-1conn")
def test_buffer_tx_ipv4_1conn(benchmark, workloads):
    w = workloads["ipv4-1conn"]
    s = warm(w)
    run_packets(
        benchmark,
        each_buffer(s.update_tx_virtual_buffer, w.buffers),
        w,
        "buffer",
        stats=s,
    )


@pytest.mark.benchmark(group="ipv4-1k")
def test_buffer_tx_ipv4_1k(benchmark, workloads):
    w = workloads["ipv4-1k"]
    s = warm(w)
    run_packets(
        benchmark,
        each_buffer(s.update_tx_virtual_buffer, w.buffers),
        w,
        "buffer",
        stats=s,
    )


@pytest.mark.benchmark(group="ipv4-100k")
def test_buffer_tx_ipv4_100k(benchmark, workloads):
    w = workloads["ipv4-100k"]
    s = warm(w)
    run_packets(
        benchmark,
        each_buffer(s.update_tx_virtual_buffer, w.buffers),
        w,
        "buffer",
        stats=s,
    )


@pytest.mark.benchmark(group="ipv4-100k-64B")
def test_buffer_tx_ipv4_100k_64b(benchmark, workloads):
    w = workloads["ipv4-100k-64B"]
    s = warm(w)
    run_packets(
        benchmark,
        each_buffer(s.update_tx_virtual_buffer, w.buffers),
        w,
        "buffer",
        stats=s,
    )


@pytest.mark.benchmark(group="ipv6-1k")
def test_buffer_tx_ipv6_1k(benchmark, workloads):
    w = workloads["ipv6-1k"]
    s = warm(w)
    run_packets(
        benchmark,
        each_buffer(s.update_tx_virtual_buffer, w.buffers),
        w,
        "buffer",
        stats=s,
    )


@pytest.mark.benchmark(group="mixed-10k")
def test_buffer_tx_mixed_10k(benchmark, workloads):
    w = workloads["mixed-10k"]
    s = warm(w)
    run_packets(
        benchmark,
        each_buffer(s.update_tx_virtual_buffer, w.buffers),
        w,
        "buffer",
        stats=s,
    )


@pytest.mark.benchmark(group="ipv4-1conn-rx")
def test_buffer_rx_ipv4_1conn(benchmark, workloads):
    w = workloads["ipv4-1conn"]
    s = warm(w, True)
    run_packets(
        benchmark,
        each_buffer(s.update_rx_virtual_buffer, w.buffers),
        w,
        "buffer",
        "rx",
        stats=s,
    )


@pytest.mark.benchmark(group="ipv4-100k-rx")
def test_buffer_rx_ipv4_100k(benchmark, workloads):
    w = workloads["ipv4-100k"]
    s = warm(w, True)
    run_packets(
        benchmark,
        each_buffer(s.update_rx_virtual_buffer, w.buffers),
        w,
        "buffer",
        "rx",
        stats=s,
    )


@pytest.mark.benchmark(group="mixed-10k-rx")
def test_buffer_rx_mixed_10k(benchmark, workloads):
    w = workloads["mixed-10k"]
    s = warm(w, True)
    run_packets(
        benchmark,
        each_buffer(s.update_rx_virtual_buffer, w.buffers),
        w,
        "buffer",
        "rx",
        stats=s,
    )


# -- a million connections (issue 24); not in the short mode (790 MB of packets)


@pytest.mark.benchmark(group="ipv4-1M")
def test_batch_tx_ipv4_1m(benchmark, workloads, is_quick):
    if is_quick:
        pytest.skip("1,000,000 connections: timed runs only")
    w = workloads["ipv4-1M"]
    s = warm(w)
    run_packets(
        benchmark, each_batch(s.update_tx_virtual_batch, w.batches), w, "batch", stats=s
    )
