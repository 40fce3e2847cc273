"""connstats.export.IPFIXExporter against an independent decoder (tests/ipfix_tools.py).

The exporter sends to real loopback sockets (a UDP socket or a TCP server
this test runs); the decoder, written from RFC 7011 with ``struct``, reads
every message back.  Collector programs are in test_export_collectors.py.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import socket
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ipfix_tools import (
    AddrPort,
    Connection,
    Counts,
    DecodeError,
    decode_message,
    decode_stream,
    expected,
    has_ipv6_loopback,
    ms,
    random_window,
    records_counter,
)

from connstats.export import IPFIXExporter, _ipfix, parse_collector

T0 = datetime(2026, 11, 28, 12, 0, 0, 123000, tzinfo=UTC)
U64 = (1 << 64) - 1


class UDPReceiver:
    """A real UDP socket on loopback that keeps every datagram it receives."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.host = host

    def datagrams(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(70000))
            except TimeoutError:
                return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def receiver():
    r = UDPReceiver()
    yield r
    r.close()


def _decode_all(datagrams: list[bytes]) -> list[dict]:
    templates: dict = {}
    return [decode_message(d, templates) for d in datagrams]


def _records(messages: list[dict]) -> list[dict]:
    return [dict(r, domain=m["domain"]) for m in messages for r in m["records"]]


def _check_sequences(messages: list[dict]) -> None:
    """RFC 7011 3.1: a message's sequence number counts the data records sent
    before it in its observation domain (modulo 2**32)."""
    seen: Counter = Counter()
    for m in messages:
        assert m["sequence"] == seen[m["domain"]] % 2**32, m
        seen[m["domain"]] += len(m["records"])


def _export(
    receiver: UDPReceiver, windows, **options
) -> tuple[IPFIXExporter, list[dict]]:
    options.setdefault("observation_domain_id", 7)
    exporter = IPFIXExporter((receiver.host, receiver.port), **options)
    with exporter:
        for w in windows:
            exporter(*w)
    return exporter, _decode_all(receiver.datagrams())


def test_records_directions_and_domains(receiver):
    a = ipaddress.ip_address
    virtual = {
        Connection(
            6, AddrPort(a("100.64.0.1"), 443), AddrPort(a("100.64.0.2"), 51000)
        ): Counts(5, 3309, 4, 307),
        Connection(
            17,
            AddrPort(a("fd7a:115c:a1e0::1"), 53),
            AddrPort(a("fd7a:115c:a1e0::2"), 5353),
        ): Counts(0, 0, 2, 180),
        Connection(1, AddrPort(a("10.0.0.1"), 0), AddrPort(a("10.0.0.9"), 0)): Counts(
            U64, U64, 0, 0
        ),
    }
    physical = {
        Connection(
            0, AddrPort(a("192.0.2.1"), 0), AddrPort(a("198.51.100.7"), 41641)
        ): Counts(9, 1480, 8, 1312),
    }
    end = T0 + timedelta(seconds=5)
    exporter, messages = _export(receiver, [(T0, end, virtual, physical)])
    got = {
        (
            r["domain"],
            r["proto"],
            str(r["src"]),
            r["sport"],
            str(r["dst"]),
            r["dport"],
            r["direction"],
        ): (r["packets"], r["octets"], r["start_ms"], r["end_ms"])
        for r in _records(messages)
    }
    t = (ms(T0), ms(end))
    assert got == {
        (7, 6, "100.64.0.1", 443, "100.64.0.2", 51000, 1): (5, 3309, *t),
        (7, 6, "100.64.0.2", 51000, "100.64.0.1", 443, 0): (4, 307, *t),
        (7, 17, "fd7a:115c:a1e0::2", 5353, "fd7a:115c:a1e0::1", 53, 0): (2, 180, *t),
        (7, 1, "10.0.0.1", 0, "10.0.0.9", 0, 1): (U64, U64, *t),
        (8, 0, "192.0.2.1", 0, "198.51.100.7", 41641, 1): (9, 1480, *t),
        (8, 0, "198.51.100.7", 41641, "192.0.2.1", 0, 0): (8, 1312, *t),
    }
    assert exporter.records_sent == 6 and exporter.records_not_sent == 0
    # templates come first in each domain, then data
    assert [m["templates"] for m in messages if m["templates"]] == [[256, 257, 258]] * 2
    _check_sequences(messages)


def test_zero_connection_and_mixed_families(receiver):
    a = ipaddress.ip_address
    virtual = {Connection(): Counts(3, 120, 0, 0)}
    physical = {
        Connection(
            0, AddrPort(a("192.0.2.1"), 0), AddrPort(a("2001:db8::7"), 41641)
        ): Counts(1, 100, 2, 200),
    }
    _, messages = _export(receiver, [(T0, T0, virtual, physical)])
    recs = {
        (r["template"], str(r["src"]), str(r["dst"]), r["direction"]): r["packets"]
        for r in _records(messages)
    }
    # IPv4-mapped; str() spells it ::ffff:192.0.2.1 from Python 3.13 on
    mapped = str(a("::ffff:c000:201"))
    assert recs == {
        (258, "None", "None", 1): 3,  # no address fields at all
        (257, mapped, "2001:db8::7", 1): 1,
        (257, "2001:db8::7", mapped, 0): 2,
    }


@pytest.mark.parametrize("mtu", [1400, 576, 9000])
def test_big_window_fits_the_mtu_and_counts_exactly(receiver, mtu):
    windows = [
        random_window(random.Random(mtu), 5000, start=T0 + timedelta(seconds=i))
        for i in range(3)
    ]
    exporter, messages = _export(
        receiver, windows, mtu=mtu, template_refresh_messages=50
    )
    overhead = 28  # IPv4 + UDP headers
    assert max(m["length"] for m in messages) <= mtu - overhead
    # full messages are nearly full: no wasted room beyond one record
    assert sorted(m["length"] for m in messages)[-1] > mtu - overhead - 70
    assert records_counter(_records(messages)) == expected(windows, (7, 8))
    _check_sequences(messages)
    # refreshed every 50 data messages per domain, and before the first
    data = [m for m in messages if m["records"]]
    assert sum(1 for m in messages if m["templates"]) >= len(data) // 51
    assert exporter.templates_sent == sum(1 for m in messages if m["templates"])


def test_sequence_numbers_wrap_modulo_2_32(receiver):
    windows = [random_window(random.Random(4), 2000, start=T0)]
    exporter = IPFIXExporter((receiver.host, receiver.port), observation_domain_id=7)
    exporter._sequence[7] = 2**32 - 100  # as after ~4 billion records
    with exporter:
        exporter(*windows[0])
    messages = _decode_all(receiver.datagrams())
    virtual = [m for m in messages if m["domain"] == 7 and m["records"]]
    assert virtual[0]["sequence"] == 2**32 - 100
    seq = 2**32 - 100
    for m in virtual:
        assert m["sequence"] == seq
        seq = (seq + len(m["records"])) % 2**32
    assert virtual[-1]["sequence"] < 2**32 - 100  # went past 2**32 and wrapped


def test_template_refresh_by_time(receiver):
    w = random_window(random.Random(5), 10, start=T0)
    exporter = IPFIXExporter(
        (receiver.host, receiver.port),
        template_refresh=0.2,
        template_refresh_messages=0,
    )
    with exporter:
        exporter(*w)
        exporter(*w)  # within 0.2 s: no templates
        time.sleep(0.3)
        exporter(*w)
    messages = _decode_all(receiver.datagrams())
    kinds = "".join("T" if m["templates"] else "D" for m in messages)
    # one per domain before the first window and after 0.3 s; none in between
    per_window = len(kinds.replace("T", "")) // 3
    assert kinds.count("T") == exporter.templates_sent == 4
    assert "T" not in kinds[2 + per_window : 2 + 2 * per_window]


@pytest.mark.skipif(
    not has_ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine"
)
def test_ipv6_collector():
    r = UDPReceiver("::1")
    try:
        windows = [random_window(random.Random(6), 300, start=T0)]
        exporter, messages = _export(r, windows, mtu=1280)
        assert max(m["length"] for m in messages) <= 1280 - 48  # IPv6 + UDP headers
        assert records_counter(_records(messages)) == expected(windows, (7, 8))
        assert "[::1]" in repr(exporter)
    finally:
        r.close()


_addr4 = st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1))
_addr6 = st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1))
_u64 = st.integers(0, U64)


@st.composite
def _conn(draw):
    addrs = draw(st.sampled_from([_addr4, _addr6]))
    proto = draw(st.integers(0, 255))
    return Connection(
        proto,
        AddrPort(draw(addrs), draw(st.integers(0, 65535))),
        AddrPort(draw(addrs), draw(st.integers(0, 65535))),
    )


_table = st.dictionaries(
    _conn(), st.builds(Counts, _u64, _u64, _u64, _u64), max_size=120
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    windows=st.lists(
        st.tuples(_table, _table, st.integers(0, 2**41)), min_size=1, max_size=4
    ),
    mtu=st.integers(300, 2000),
)
def test_hypothesis_roundtrip(receiver, windows, mtu):
    ws = []
    for virtual, physical, start in windows:
        t = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=start)
        ws.append((t, t + timedelta(milliseconds=1500), virtual, physical))
    exporter, messages = _export(receiver, ws, mtu=mtu)
    assert records_counter(_records(messages)) == +expected(ws, (7, 8))
    assert all(m["length"] <= mtu - 28 for m in messages)
    _check_sequences(messages)
    assert exporter.records_sent == sum(len(m["records"]) for m in messages)


@st.composite
def _mixed_conn(draw):
    a = draw(st.one_of(_addr4, st.none()))
    b = draw(st.one_of(_addr6, st.none()))
    src, dst = (a, b) if draw(st.booleans()) else (b, a)
    return Connection(draw(st.integers(0, 255)), AddrPort(src, 1), AddrPort(dst, 2))


@pytest.mark.skipif(not _ipfix.IS_COMPILED, reason="compiled IPFIX packer not built")
@settings(max_examples=150, deadline=None)
@given(
    table=st.dictionaries(
        st.one_of(_conn(), st.just(Connection()), _mixed_conn()),
        st.builds(Counts, _u64, _u64, _u64, _u64),
        max_size=150,
    ),
    size=st.integers(_ipfix.min_message_size(), 1500),
)
def test_compiled_and_python_encoders_agree(table, size):
    """The compiled packer gives byte for byte the messages of the Python loop."""
    compiled = [
        (bytes(m), n)
        for m, n in _ipfix.Encoder(size, compiled=True).messages(table, 5, 9, 77, 3)
    ]
    python = [
        (bytes(m), n)
        for m, n in _ipfix.Encoder(size, compiled=False).messages(table, 5, 9, 77, 3)
    ]

    # per template the same messages in the same order (the Python loop
    # interleaves templates as buffers fill, the compiled one does not)
    def by_template(messages):
        return {
            t: [m for m in messages if m[0][16:18] == t]
            for t in {m[0][16:18] for m in messages}
        }

    assert by_template(compiled) == by_template(python)
    assert len(compiled) == len(python)


def test_decoder_rejects_damage():
    """The decoder is strict, so the round trips above mean something."""
    templates: dict = {}
    good = _capture_one()
    decode_stream(good[0] + good[1], templates)
    bad = bytearray(good[1])
    bad[2:4] = (len(bad) + 4).to_bytes(2, "big")
    with pytest.raises(DecodeError):
        decode_stream(bytes(bad), templates)
    with pytest.raises(DecodeError):
        decode_stream(good[1], {})  # data before its template
    cut = bytearray(good[1][:-1])
    cut[2:4] = len(cut).to_bytes(2, "big")
    with pytest.raises(DecodeError):
        decode_stream(bytes(cut), templates)


def _capture_one() -> list[bytes]:
    r = UDPReceiver()
    try:
        _export(r, [random_window(random.Random(9), 3, start=T0)])
    finally:
        pass
    r2 = UDPReceiver()
    try:
        exporter = IPFIXExporter((r2.host, r2.port))
        exporter(*random_window(random.Random(9), 3, start=T0))
        exporter.close()
        return r2.datagrams()
    finally:
        r.close()
        r2.close()


# -- arguments ----------------------------------------------------------------------------


def test_parse_collector_forms():
    assert parse_collector("ipfix://127.0.0.1:4739") == ("127.0.0.1", 4739, "udp")
    assert parse_collector("ipfix+tcp://[::1]:4739") == ("::1", 4739, "tcp")
    assert parse_collector("collector.example:2055") == (
        "collector.example",
        2055,
        None,
    )
    assert parse_collector(("10.0.0.1", 9995)) == ("10.0.0.1", 9995, None)


@pytest.mark.parametrize(
    ("collector", "options", "exc", "words"),
    [
        ("127.0.0.1", {}, ValueError, "collector"),
        ("127.0.0.1:0", {}, ValueError, "collector"),
        ("http://127.0.0.1:80", {}, ValueError, "scheme"),
        (4739, {}, TypeError, "collector"),
        (
            "no-such-host.invalid:4739",
            {},
            ValueError,
            "cannot resolve 'no-such-host.invalid'",
        ),
        ("127.0.0.1:4739", {"transport": "sctp"}, ValueError, "transport"),
        ("ipfix+tcp://127.0.0.1:4739", {"transport": "udp"}, ValueError, "transport"),
        ("127.0.0.1:4739", {"mtu": 100}, ValueError, "mtu"),
        (
            "127.0.0.1:4739",
            {"observation_domain_id": -1},
            ValueError,
            "observation_domain_id",
        ),
        (
            "127.0.0.1:4739",
            {"observation_domain_id": 3, "physical_observation_domain_id": 3},
            ValueError,
            "physical_observation_domain_id",
        ),
        ("127.0.0.1:4739", {"max_rate": -1}, ValueError, "max_rate"),
        ("127.0.0.1:4739", {"template_refresh": "60"}, TypeError, "template_refresh"),
    ],
)
def test_bad_arguments(collector, options, exc, words):
    with pytest.raises(exc, match=words):
        IPFIXExporter(collector, **options)


# -- faults ----------------------------------------------------------------------------------


def _closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_icmp_unreachable_counted_and_flush_thread_keeps_going(impl, caplog, receiver):
    """Export to a closed port while a second exporter feeds a live one."""
    import captures as cap

    dead = IPFIXExporter(("127.0.0.1", _closed_udp_port()))
    live = IPFIXExporter((receiver.host, receiver.port))
    seen = []

    def dump(start, end, virtual, physical):  # a user's own dump, composed
        seen.append((start, end, dict(virtual), dict(physical)))
        dead(start, end, virtual, physical)
        live(start, end, virtual, physical)

    caplog.set_level(logging.WARNING, logger="connstats.export")
    stats = impl.Statistics(max_period=0.05, dump=dump)
    try:
        for i in range(40):
            stats.update_tx_virtual(
                cap.udp4("100.64.0.1", 1000 + i, "100.64.0.2", 53, b"x" * i)
            )
            time.sleep(0.01)
    finally:
        stats.shutdown()
        dead.close()
        live.close()
    assert len(seen) >= 4
    assert stats.dump_errors == 0
    assert dead.export_errors >= 1 and dead.records_not_sent >= 1
    assert dead.records_sent + dead.records_not_sent == sum(
        len(v) for _, _, v, _ in seen
    )
    # rate-limited: one warning for many errors
    warnings = [r for r in caplog.records if r.name == "connstats.export"]
    assert 1 <= len(warnings) < dead.export_errors or dead.export_errors == 1
    assert "Connection refused" in warnings[0].getMessage()
    # the live collector got every window, exactly
    messages = _decode_all(receiver.datagrams())
    assert records_counter(_records(messages)) == expected(seen, (1, 2))
    _check_sequences(messages)


# -- TCP -------------------------------------------------------------------------------------


class TCPCollector:
    """A TCP server on loopback; ``reading`` controls whether it drains its socket."""

    def __init__(self) -> None:
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # small window before listen(): a collector that stops reading
        # backs up into the exporter quickly
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen()
        self.port = self.server.getsockname()[1]
        self.data = bytearray()
        self.reading = threading.Event()
        self.reading.set()
        self.stop = threading.Event()
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.server.settimeout(0.05)
        conn = None
        while not self.stop.is_set():
            if conn is None:
                try:
                    conn, _ = self.server.accept()
                    conn.settimeout(0.05)
                    self.conns.append(conn)
                except TimeoutError:
                    continue
            if not self.reading.is_set():
                time.sleep(0.01)
                continue
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                conn.close()
                conn = None
                continue
            self.data += chunk

    def close(self) -> bytes:
        time.sleep(0.2)
        self.stop.set()
        self.thread.join()
        for c in self.conns:
            c.close()
        self.server.close()
        return bytes(self.data)


def test_tcp_exact():
    collector = TCPCollector()
    windows = [
        random_window(random.Random(11), n, start=T0 + timedelta(seconds=i))
        for i, n in enumerate([3000, 10, 500])
    ]
    exporter = IPFIXExporter(
        f"ipfix+tcp://127.0.0.1:{collector.port}", observation_domain_id=7
    )
    for w in windows:
        exporter(*w)
    exporter.close()
    messages = decode_stream(collector.close())
    assert records_counter(_records(messages)) == expected(windows, (7, 8))
    _check_sequences(messages)
    assert exporter.records_not_sent == 0 and exporter.export_errors == 0
    # templates once per domain per connection, never refreshed over TCP
    assert sum(1 for m in messages if m["templates"]) == 2


def test_tcp_slow_collector_bounded_wait_then_recovers():
    collector = TCPCollector()
    collector.reading.clear()  # accepts, then reads nothing
    exporter = IPFIXExporter(
        f"ipfix+tcp://127.0.0.1:{collector.port}", timeout=0.2, max_buffer=64 << 10
    )
    big = random_window(random.Random(12), 100_000, start=T0)
    t = time.monotonic()
    exporter(*big)
    took = time.monotonic() - t
    # it waited for the collector a bounded time, then dropped whole messages
    assert took < 10
    assert exporter.records_not_sent > 0 and exporter.export_errors > 0
    lost = exporter.records_not_sent
    collector.reading.set()
    small = random_window(random.Random(13), 50, start=T0 + timedelta(seconds=1))
    exporter(*small)
    exporter.close(timeout=5)
    messages = decode_stream(collector.close())  # the stream is intact
    _check_gaps_only_where_dropped(messages)
    recs = _records(messages)
    assert exporter.records_sent == len(recs)
    assert exporter.records_sent + lost == sum(
        1 for k in expected([big, small], (1, 2)) if k[-1] == "p"
    )
    # every record of the later window arrived
    later = expected([small], (1, 2))
    got = records_counter([r for r in recs if r["start_ms"] == ms(small[0])])
    assert got == later


def _check_gaps_only_where_dropped(messages):
    seen: Counter = Counter()
    for m in messages:
        assert m["sequence"] == seen[m["domain"]], (
            "sequence must count records that were queued"
        )
        seen[m["domain"]] += len(m["records"])


def test_tcp_collector_down_then_up():
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    server.close()  # nobody listens: connection refused
    exporter = IPFIXExporter(f"ipfix+tcp://127.0.0.1:{port}", timeout=0.5)
    w = random_window(random.Random(14), 20, start=T0)
    exporter(*w)
    exporter.close()
    assert exporter.export_errors == 1 and exporter.records_sent == 0
    assert exporter.records_not_sent == sum(
        1 for k in expected([w], (1, 2)) if k[-1] == "p"
    )
