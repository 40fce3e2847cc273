"""Every exported record is accounted for, and the command says when some were not.

- A window whose records cannot be encoded (a start before 1970: IPFIX
  times are unsigned) is logged and its records counted as not sent.
- An ``mtu`` no UDP datagram can have is refused at construction.
- ``connstats read/capture --export`` exits with status 4 when records were
  not sent (collector down), and exports the connections the selection
  options keep, every one of them.

Real loopback sockets and the independent decoder of ``tests/ipfix_tools.py``.
"""

from __future__ import annotations

import logging
import socket
import struct
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path

import captures as cap
import pytest
from captures import Interface, Section
from ipfix_tools import Connection, Counts, decode_message

from connstats.export import IPFIXExporter

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


def _conn(sport: int, dport: int = 53) -> Connection:
    return Connection(
        17, (ip_address("10.0.0.1"), sport), (ip_address("10.0.0.2"), dport)
    )


@pytest.fixture
def receiver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.3)
    yield sock
    sock.close()


def _datagrams(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(70000))
        except TimeoutError:
            return out


def _closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
def test_records_that_cannot_be_encoded_are_counted_not_sent(
    receiver, caplog, monkeypatch, compiled
):
    from connstats.export import _ipfix

    if compiled and not _ipfix.IS_COMPILED:
        pytest.skip("the compiled IPFIX packer is not built here")
    monkeypatch.setattr(_ipfix, "IS_COMPILED", compiled)
    caplog.set_level(logging.ERROR, logger="connstats.export")
    before_1970 = datetime(1969, 12, 31, 23, 59, tzinfo=UTC)
    virtual = {_conn(1000): Counts(2, 60, 1, 40), _conn(1001): Counts(1, 30, 0, 0)}
    physical = {_conn(4000): Counts(0, 0, 3, 300)}
    with IPFIXExporter(receiver.getsockname()) as exporter:
        exporter(before_1970, before_1970 + timedelta(seconds=1), virtual, physical)
        # the next window goes out as usual
        exporter(T0, T0 + timedelta(seconds=1), {_conn(1002): Counts(1, 28, 0, 0)}, {})
    assert (exporter.records_sent, exporter.records_not_sent) == (1, 4)
    assert exporter.export_errors == 1
    assert "4 records not sent" in caplog.records[0].getMessage()
    templates: dict = {}
    records = [
        r for d in _datagrams(receiver) for r in decode_message(d, templates)["records"]
    ]
    assert [r["sport"] for r in records] == [1002]


def test_a_callers_table_of_odd_values_is_counted_too(receiver, caplog):
    caplog.set_level(logging.ERROR, logger="connstats.export")
    with IPFIXExporter(receiver.getsockname()) as exporter:
        exporter(T0, T0, {_conn(1): "not counts", _conn(2): Counts(1, 1, 1, 1)}, {})
    assert exporter.records_sent + exporter.records_not_sent == 3
    assert exporter.records_not_sent >= 1


@pytest.mark.parametrize(
    ("host", "family", "largest"),
    [("127.0.0.1", socket.AF_INET, 65535), ("::1", socket.AF_INET6, 65575)],
)
def test_udp_mtu_must_fit_a_datagram(host, family, largest):
    try:
        probe = socket.socket(family, socket.SOCK_DGRAM)
        probe.bind((host, 0))
    except OSError:
        pytest.skip(f"no {host} here")
    with probe:
        port = probe.getsockname()[1]
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        with pytest.raises(
            ValueError, match=f"mtu: {largest + 1} is larger than any UDP"
        ):
            IPFIXExporter((host, port), mtu=largest + 1)
        # the largest one works: a window of many records goes out in full
        table = {_conn(sport): Counts(1, 100, 1, 100) for sport in range(1, 3000)}
        with IPFIXExporter((host, port), mtu=largest) as exporter:
            exporter(T0, T0, table, {})
        assert (exporter.records_sent, exporter.records_not_sent) == (2 * 2999, 0)
        assert exporter.max_message_size == largest - (
            28 if family == socket.AF_INET else 48
        )
        probe.settimeout(0.3)
        got = 0
        templates: dict = {}
        try:
            while True:
                got += len(decode_message(probe.recv(70000), templates)["records"])
        except TimeoutError:
            pass
        assert got == 2 * 2999
    # over TCP the message size is bounded by IPFIX's 16-bit length instead
    assert (
        IPFIXExporter(f"ipfix+tcp://{host}:{port}", mtu=100_000).max_message_size
        == 0xFFFF
    )


# -- the command -------------------------------------------------------------------


def _run(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connstats", *args],
        capture_output=True, text=True, timeout=120, **kw,
    )  # fmt: skip


def _capture(path: Path) -> None:
    packets = [
        cap.udp4("192.0.2.1", 5000, "198.51.100.7", 53, b"q"),
        cap.udp4("192.0.2.1", 5001, "198.51.100.8", 123, b"ntp"),
        cap.tcp4("192.0.2.1", 40000, "198.51.100.9", 443, b"tls"),
        cap.udp4("192.0.2.1", 5002, "198.51.100.7", 53, b"qq"),
    ]
    path.write_bytes(cap.pcap([(10**18 + i, p) for i, p in enumerate(packets)], 101))


def test_read_exits_4_when_the_collector_is_down(tmp_path):
    path = tmp_path / "c.pcap"
    _capture(path)
    port = _closed_udp_port()
    run = _run(
        "read", str(path), "--export", f"ipfix://127.0.0.1:{port}", "-o", "/dev/null"
    )
    assert run.returncode == 4, run.stderr
    assert "connstats: 4 flow records were not exported (exit status 4)" in run.stderr
    assert "(4 not sent," in run.stderr
    # a collector there: status 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        run = _run("read", str(path), "--export",
                   f"ipfix://127.0.0.1:{sink.getsockname()[1]}", "-o", "/dev/null")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "(0 not sent, 0 errors)" in run.stderr


def test_read_exits_4_for_records_it_cannot_encode(tmp_path):
    # A pcapng interface whose if_tsoffset puts the packets before 1970.
    o = "<"
    packet = cap.udp4("192.0.2.1", 5000, "198.51.100.7", 53, b"q")
    data = cap.pcapng(Section([Interface(101, tsoffset=-100)], [(0, 10**9, packet)]))
    # captures.py compensates the offset in the ticks; write 1 s of ticks instead
    idb_end = data.index(struct.pack(o + "I", 6))
    epb = bytearray(data[idb_end:])
    struct.pack_into(o + "II", epb, 12, 0, 1_000_000)
    path = tmp_path / "old.pcapng"
    path.write_bytes(data[:idb_end] + bytes(epb))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        run = _run("read", str(path), "--format", "csv", "--export",
                   f"ipfix://127.0.0.1:{sink.getsockname()[1]}")  # fmt: skip
    assert ",1969-12-31T23:58:21Z," in run.stdout
    assert run.returncode == 4, run.stderr
    assert "(1 not sent, 1 errors)" in run.stderr


def test_read_exports_what_the_selection_keeps(tmp_path):
    path = tmp_path / "c.pcap"
    _capture(path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(0.5)
        # --top 1 shows one row; both port-53 connections are exported
        run = _run("read", str(path), "--proto", "udp", "--port", "53", "--top", "1",
                   "--export", f"ipfix://127.0.0.1:{sink.getsockname()[1]}")  # fmt: skip
        assert run.returncode == 0, run.stderr
        templates: dict = {}
        records = [
            r for d in _datagrams(sink) for r in decode_message(d, templates)["records"]
        ]
    assert sorted((r["proto"], r["sport"], r["dport"]) for r in records) == [
        (17, 5000, 53),
        (17, 5002, 53),
    ]
    assert "exported 2 flow records" in run.stderr


def test_help_says_what_is_exported_and_the_exit_status():
    text = _run("read", "--help").stdout
    flat = " ".join(text.split())
    assert "The connections the selection options keep are exported" in flat
    assert "Exit status 4 if any record could not be sent" in flat
