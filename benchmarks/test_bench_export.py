"""IPFIX export of a 100,000-connection window, next to materializing it.

Same window as test_bench_materialize's "realistic" one (1,000 clients x 100
ports to 4 servers), with traffic in both directions, so every connection
gives two data records (200,000 per window).  Run with
test_bench_materialize's ``extract`` of that window (the dicts ``dump`` gets)
for the ratio in one run:

    pytest benchmarks/test_bench_export.py benchmarks/test_bench_materialize.py -k "export or extract_realistic"

* encode: ``Encoder.messages`` over those dicts, no socket, with the
  compiled record packer and with the pure-Python loop;
* export: ``IPFIXExporter(...)(start, end, virtual, physical)``, encoding and
  sending every message over UDP to a loopback socket.

ns per record of "export" is the issue's figure (<= 2 us per record, within
about 1.5x of materializing the window).
"""

import socket
from datetime import UTC, datetime, timedelta

import pytest
from harness import record
from test_bench_materialize import _filled
from workloads import joined, window_packets

from connstats.export import IPFIXExporter, _ipfix
from connstats.export._ipfix import Encoder

CONNS = 100_000
T0 = datetime(2026, 11, 28, 12, tzinfo=UTC)


@pytest.fixture(scope="session")
def export_window():
    packets = window_packets("realistic", CONNS)
    return [joined(packets[i : i + 4096]) for i in range(0, CONNS, 4096)]


@pytest.fixture(scope="session")
def tables(export_window):
    virtual, physical = _filled(export_window).extract()
    # both directions: rx counts as large as tx (the Counts type of the core)
    counts = type(next(iter(virtual.values())))
    both = {
        c: counts(v.tx_packets, v.tx_bytes, v.tx_packets, v.tx_bytes)
        for c, v in virtual.items()
    }
    return both, physical


@pytest.fixture
def sink():
    # a real loopback socket; what overflows its buffer is dropped by the
    # kernel after the exporter has paid for sending it
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    yield s
    s.close()


@pytest.mark.benchmark(group="export")
@pytest.mark.parametrize("packer", ["compiled", "python"])
def test_export_encode_100k(benchmark, tables, packer):
    virtual, _ = tables
    if packer == "compiled" and not _ipfix.IS_COMPILED:
        pytest.skip("compiled IPFIX packer not built")
    encoder = Encoder(1372, compiled=packer == "compiled")
    record(
        benchmark,
        unit="record",
        count=2 * CONNS,
        path=f"ipfix-encode-{packer}",
        workload="window-realistic",
    )

    def encode():
        n = 0
        for _, records in encoder.messages(virtual, 0, 1000, 0, 1):
            n += records
        return n

    assert benchmark.pedantic(encode, rounds=10) == 2 * CONNS


@pytest.mark.benchmark(group="export")
def test_export_send_udp_100k(benchmark, tables, sink):
    virtual, physical = tables
    exporter = IPFIXExporter(sink.getsockname())
    record(
        benchmark,
        unit="record",
        count=2 * CONNS,
        path="ipfix-export-udp",
        workload="window-realistic",
    )
    end = T0 + timedelta(seconds=10)
    benchmark.pedantic(lambda: exporter(T0, end, virtual, physical), rounds=10)
    exporter.close()
    assert exporter.records_not_sent == 0 and exporter.export_errors == 0
    assert exporter.records_sent >= 2 * CONNS
