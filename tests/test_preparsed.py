"""Pre-parsed counting (issue 18): update_virtual, update_physical,
update_records and the ``packets=`` keyword of the physical updates.

Upstream (Tailscale, v1.90 on) counts a connection its caller has already
decoded: ``ConnectionCounter(proto, src, dst, packets, bytes, recv)``, and
tstun passes ``(dst, src)`` on receive so that src is the local side.  The
oracle here is the decoder itself: counting ``decode(packet)`` pre-parsed
must give exactly what counting the packet gives.  Every test runs on both
cores; the differential tests at the end compare their errors word for word.
"""

from __future__ import annotations

import array
import ipaddress
import struct
import sys
import threading
from typing import Any

import pytest
from captures import icmp4, tcp4, tcp6, udp4, udp6
from hostile import HugeV4, LyingInt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tables import extract, plain

import connstats

# the compiled core also with its lane in use from a window's second packet
pytestmark = pytest.mark.with_lanes

U64 = 2**64 - 1
RECORD = struct.Struct(connstats.RECORD_FORMAT)
RX = connstats.RECORD_RECEIVE
PHYS = connstats.RECORD_PHYSICAL
ip = ipaddress.ip_address

A, B = "10.1.0.1", "10.1.0.2"
A6, B6 = "fd00::a", "fd00::b"

PACKETS = [
    tcp4(A, 40000, B, 443, b"x" * 10),
    udp4(B, 53, A, 5353, b"y" * 3),
    icmp4(A, B, b"ping"),
    tcp6(A6, 1, B6, 2),
    udp6(B6, 7, A6, 7, b"z"),
    b"\x00garbage",
    b"",
    bytes(range(60)),
]


def record(
    proto: int,
    src: tuple[Any, int],
    dst: tuple[Any, int],
    packets: int,
    nbytes: int,
    flags: int = 0,
) -> bytes:
    def side(endpoint: tuple[Any, int]) -> tuple[int, bytes, int]:
        addr, port = endpoint
        if addr is None:
            return 0, b"", port
        packed = ip(addr).packed if isinstance(addr, str) else addr.packed
        return (4 if len(packed) == 4 else 6), packed, port

    sfam, sraw, sport = side(src)
    dfam, draw, dport = side(dst)
    return RECORD.pack(
        proto, flags, sfam, dfam, sport, dport, sraw, draw, packets, nbytes
    )


# -- what is counted ------------------------------------------------------------


def test_update_virtual_counts_what_the_packet_path_counts(impl):
    """tx: the decoded connection as it is; rx: (dst, src) as tstun passes it."""
    by_packet = impl.Statistics()
    preparsed = impl.Statistics()
    for rx in (False, True):
        for p in PACKETS:
            proto, src, dst = impl.decode(p)
            if rx:
                by_packet.update_rx_virtual(p)
                preparsed.update_virtual(proto, dst, src, 1, len(p), receive=True)
            else:
                by_packet.update_tx_virtual(p)
                preparsed.update_virtual(proto, src, dst, 1, len(p))
    got = extract(preparsed)
    assert got == extract(by_packet)
    assert any(c[0] for c in got[0].values()) and any(c[2] for c in got[0].values())


def test_connection_is_taken_as_given_and_receive_selects_rx(impl):
    stats = impl.Statistics()
    stats.update_virtual(6, (A, 1000), (B, 80), 3, 300)
    stats.update_virtual(6, (A, 1000), (B, 80), 2, 20, receive=True)
    stats.update_virtual(6, (B, 80), (A, 1000), 1, 7, True)  # not swapped
    virtual, physical = extract(stats)
    assert physical == {}
    assert virtual == {
        (6, ip(A), 1000, ip(B), 80): (3, 300, 2, 20),
        (6, ip(B), 80, ip(A), 1000): (0, 0, 1, 7),
    }


def test_update_physical_keeps_proto_and_ports(impl):
    stats = impl.Statistics()
    stats.update_physical(17, (A, 41641), (B6, 41641), 4, 400)
    stats.update_physical(0, (A, 0), (B, 9), 1, 1, receive=True)
    virtual, physical = extract(stats)
    assert virtual == {}
    assert physical == {
        (17, ip(A), 41641, ip(B6), 41641): (4, 400, 0, 0),
        (0, ip(A), 0, ip(B), 9): (0, 0, 1, 1),
    }


def test_update_tx_physical_is_update_physical_with_proto_and_sport_zero(impl):
    one = impl.Statistics()
    two = impl.Statistics()
    one.update_tx_physical(A, (B, 41641), 1500)
    one.update_rx_physical(A, (B, 41641), 100, packets=3)
    two.update_physical(0, (A, 0), (B, 41641), 1, 1500)
    two.update_physical(0, (A, 0), (B, 41641), 3, 100, receive=True)
    assert extract(one) == extract(two)


def test_physical_packets_keyword_counts_a_batched_send(impl):
    """Upstream's e0d711c47: a batch of UDP sends is len(buffs) packets."""
    stats = impl.Statistics()
    stats.update_tx_physical(A, (B, 41641), 64 * 1400, packets=64)
    stats.update_tx_physical(A, (B, 41641), 1400)  # the default stays one
    stats.update_rx_physical(A, (B, 41641), 0, packets=0)  # zero or more
    (counts,) = extract(stats)[1].values()
    assert counts == (65, 65 * 1400, 0, 0)


def test_physical_packets_is_keyword_only(impl):
    stats = impl.Statistics()
    with pytest.raises(TypeError):
        stats.update_tx_physical(A, (B, 1), 100, 2)  # type: ignore[misc]
    with pytest.raises(TypeError):
        stats.update_rx_physical(A, (B, 1), 100, 2)  # type: ignore[misc]
    assert stats.connections == 0


def test_zero_packets_still_makes_the_connection(impl):
    """As upstream's map insert: the connection appears with zero counts."""
    stats = impl.Statistics()
    stats.update_virtual(17, (A, 1), (B, 2), 0, 0)
    assert extract(stats)[0] == {(17, ip(A), 1, ip(B), 2): (0, 0, 0, 0)}


def test_counters_wrap_at_2_to_the_64(impl):
    stats = impl.Statistics()
    stats.update_virtual(6, (A, 1), (B, 2), U64, U64)
    stats.update_virtual(6, (A, 1), (B, 2), 2, 3)
    stats.update_records(record(6, (A, 1), (B, 2), U64, U64))
    assert extract(stats)[0] == {(6, ip(A), 1, ip(B), 2): ((U64 + 2 + U64) % 2**64,
                                                           (U64 + 3 + U64) % 2**64, 0, 0)}  # fmt: skip


def test_endpoint_forms(impl):
    forms = [
        (impl.AddrPort(ip(A), 1), impl.AddrPort(ip(B6), 2)),
        ((A, 1), (B6, 2)),
        ((ip(A), 1), (ip(B6), 2)),
        ((ip(A).packed, 1), (ip(B6).packed, 2)),
        (f"{A}:1", f"[{B6}]:2"),
        ((A, LyingInt(1)), (B6, LyingInt(2))),  # honest value, lying comparisons
    ]
    for src, dst in forms:
        stats = impl.Statistics()
        stats.update_virtual(17, src, dst, 1, 10)
        stats.update_physical(17, src, dst, 1, 10)
        expected = {(17, ip(A), 1, ip(B6), 2): (1, 10, 0, 0)}
        assert extract(stats) == (expected, expected), (src, dst)


def test_endpoints_without_address(impl):
    """What the decoder gives for a packet without addresses can be given back."""
    stats = impl.Statistics()
    stats.update_virtual(0, impl.AddrPort(None, 0), (None, 0), 1, 8)
    stats.update_tx_virtual(b"\x00garbage")
    stats.update_virtual(0, (None, 5), (B, 0), 1, 1)
    assert extract(stats)[0] == {
        (0, None, 0, None, 0): (2, 16, 0, 0),
        (0, None, 5, ip(B), 0): (1, 1, 0, 0),
    }


def test_ignore_destinations_filter_virtual_traffic_only(impl):
    quad100 = "100.100.100.100"
    stats = impl.Statistics(ignore_destinations=connstats.TAILSCALE_SERVICE_ADDRESSES)
    stats.update_virtual(17, (A, 5353), (quad100, 53), 1, 60)
    stats.update_virtual(17, (quad100, 53), (A, 5353), 1, 60, receive=True)
    stats.update_physical(17, (A, 1), (quad100, 53), 1, 60)
    stats.update_records(
        record(17, (A, 5353), (quad100, 53), 1, 60)
        + record(17, (A, 1), (quad100, 53), 1, 60, PHYS)
    )
    virtual, physical = extract(stats)
    assert virtual == {(17, ip(quad100), 53, ip(A), 5353): (0, 0, 1, 60)}
    assert physical == {(17, ip(A), 1, ip(quad100), 53): (2, 120, 0, 0)}


def test_updates_after_shutdown_count_nothing_and_bad_ones_still_raise(impl):
    """After shutdown() calls count nothing, but a bad call raises as before
    it (issue 22: every entry point checks its arguments whenever called)."""
    stats = impl.Statistics()
    stats.shutdown()
    stats.update_virtual(6, (A, 1), (B, 2), 1, 1)
    stats.update_physical(6, (A, 1), (B, 2), 1, 1, receive=True)
    stats.update_records(record(6, (A, 1), (B, 2), 1, 1))
    stats.update_tx_physical(A, (B, 1), 1, packets=3)
    with pytest.raises(ValueError, match="^proto: "):
        stats.update_virtual(256, (A, 1), (B, 2), 1, 1)
    with pytest.raises(TypeError, match="^receive: "):
        stats.update_physical(6, (A, 1), (B, 2), 1, 1, receive=3)
    with pytest.raises(ValueError, match="^records: "):
        stats.update_records(b"not a whole record")
    with pytest.raises(ValueError, match="^packets: "):
        stats.update_tx_physical(A, (B, 1), 1, packets=-1)
    assert extract(stats) == ({}, {})


# -- records (the batch form) ---------------------------------------------------


def test_record_layout_is_56_little_endian_bytes():
    assert connstats.RECORD_SIZE == RECORD.size == 56
    raw = record(6, (A, 0x1234), (B6, 0xABCD), 0x0102030405060708, 9, RX | PHYS)
    assert raw[:8] == bytes([6, 3, 4, 6, 0x34, 0x12, 0xCD, 0xAB])
    assert raw[8:24] == ip(A).packed + bytes(12)
    assert raw[24:40] == ip(B6).packed
    assert raw[40:48] == bytes([8, 7, 6, 5, 4, 3, 2, 1])


def test_records_count_like_single_calls(impl):
    single = impl.Statistics()
    batch = impl.Statistics()
    recs = []
    for i, p in enumerate(PACKETS * 3):
        proto, src, dst = impl.decode(p)
        flags = (RX if i % 2 else 0) | (PHYS if i % 3 == 0 else 0)
        call = single.update_physical if flags & PHYS else single.update_virtual
        call(proto, src, dst, i, len(p) * i, receive=bool(flags & RX))
        recs.append(record(proto, tuple(src), tuple(dst), i, len(p) * i, flags))
    batch.update_records(b"".join(recs))
    assert extract(batch) == extract(single)


def test_records_accept_any_c_contiguous_buffer(impl):
    raw = record(6, (A, 1), (B, 2), 1, 100) + record(6, (A, 1), (B, 2), 2, 5, RX)
    expected = {(6, ip(A), 1, ip(B), 2): (1, 100, 2, 5)}
    for buffer in (
        raw,
        bytearray(raw),
        memoryview(b"\xee" + raw)[1:],
        array.array("Q", raw),
        memoryview(raw).cast("B", (2, 56)),
    ):
        stats = impl.Statistics()
        stats.update_records(buffer)
        assert extract(stats) == (expected, {}), type(buffer)
    stats = impl.Statistics()
    stats.update_records(b"")
    assert stats.connections == 0


def test_records_from_a_numpy_structured_array(impl):
    np = pytest.importorskip("numpy")
    dtype = np.dtype(
        [
            ("proto", "u1"), ("flags", "u1"), ("sfam", "u1"), ("dfam", "u1"),
            ("sport", "<u2"), ("dport", "<u2"), ("src", "V16"), ("dst", "V16"),
            ("packets", "<u8"), ("bytes", "<u8"),
        ]
    )  # fmt: skip
    assert dtype.itemsize == connstats.RECORD_SIZE
    table = np.zeros(2, dtype)
    table["proto"] = 17
    table["flags"] = [0, RX]
    table["sfam"] = table["dfam"] = 4
    table["sport"], table["dport"] = 5353, 53
    table["src"] = np.void(ip(A).packed + bytes(12))
    table["dst"] = np.void(ip(B).packed + bytes(12))
    table["packets"] = [3, 4]
    table["bytes"] = [300, 400]
    stats = impl.Statistics()
    stats.update_records(table)
    assert extract(stats)[0] == {(17, ip(A), 5353, ip(B), 53): (3, 300, 4, 400)}


GOOD = record(6, (A, 1), (B, 2), 1, 100)


@pytest.mark.parametrize(
    ("records", "error", "pattern"),
    [
        ("text", TypeError, r"^records: expected a bytes-like object, got str$"),
        (None, TypeError, r"^records: expected a bytes-like object, got NoneType$"),
        ([GOOD], TypeError, r"^records: expected a bytes-like object, got list$"),
        (GOOD[:-1], ValueError, r"^records: 55 bytes is not a whole number of 56-byte"),
        (GOOD * 2 + b"\x00", ValueError, r"^records: 113 bytes is not a whole"),
        (
            memoryview(bytearray(GOOD * 2))[::2],
            ValueError,
            r"^records: buffer is not C-contiguous",
        ),
        (GOOD + GOOD[:1] + b"\x04" + GOOD[2:], ValueError, r"^records\[1\]: flags has bits"),
        (GOOD[:2] + b"\x05" + GOOD[3:], ValueError, r"^records\[0\]: src family must be"),
        (GOOD * 3 + GOOD[:3] + b"\x10" + GOOD[4:], ValueError, r"^records\[3\]: dst family"),
        (GOOD[:12] + b"\x01" + GOOD[13:], ValueError, r"^records\[0\]: src address bytes"),
        (GOOD[:39] + b"\x01" + GOOD[40:], ValueError, r"^records\[0\]: dst address bytes"),
        (
            record(6, (None, 1), (B, 2), 1, 1)[:8] + b"\x01" + GOOD[9:],
            ValueError,
            r"^records\[0\]: src address bytes beyond its family",
        ),
    ],
)  # fmt: skip
def test_bad_records_raise_naming_the_record_and_count_nothing(
    impl, records, error, pattern
):
    stats = impl.Statistics()
    stats.update_virtual(6, (A, 1), (B, 2), 1, 1)
    with pytest.raises(error, match=pattern):
        stats.update_records(records)
    # nothing of the batch counted (its good records included), nothing lost
    assert extract(stats) == ({(6, ip(A), 1, ip(B), 2): (1, 1, 0, 0)}, {})


def test_records_batch_is_counted_without_the_gil(c_impl):
    """Another thread runs while a records batch counts (compiled core).

    With a switch interval of an hour the GIL is never taken from a running
    thread: the main thread gets it back only when the counting thread
    releases it itself.  Without a GIL-free section the main thread could
    only run once all LIMIT calls have returned.
    """
    stats = c_impl.Statistics()
    table = b"".join(record(6, (A, i), (B, 80), 1, 64) for i in range(2048))
    limit = 20_000
    calls = [0]
    seen_at: list[int] = []
    started = threading.Event()

    def count() -> None:
        started.set()
        while not seen_at and calls[0] < limit:
            stats.update_records(table)
            calls[0] += 1

    before = sys.getswitchinterval()
    sys.setswitchinterval(3600)
    try:
        worker = threading.Thread(target=count)
        worker.start()
        started.wait()
        seen_at.append(calls[0])
        worker.join()
    finally:
        sys.setswitchinterval(before)
    assert seen_at[0] < limit
    virtual, _ = stats.extract()
    assert len(virtual) == 2048
    assert {c.tx_packets for c in virtual.values()} == {calls[0]}


# -- bad arguments --------------------------------------------------------------

SRC, DST = (A, 1000), (B, 80)

BAD_PREPARSED = [
    # (args, kwargs, error, message start)
    ((256, SRC, DST, 1, 1), {}, ValueError, "proto: protocol 256 is out of range 0..255"),
    ((-1, SRC, DST, 1, 1), {}, ValueError, "proto: protocol -1 is out of range"),
    ((True, SRC, DST, 1, 1), {}, TypeError, "proto: expected an int, got bool"),
    ((6.0, SRC, DST, 1, 1), {}, TypeError, "proto: expected an int protocol number"),
    ((LyingInt(300), SRC, DST, 1, 1), {}, ValueError, "proto: protocol 300 is out"),
    ((6, "10.1.0.1", DST, 1, 1), {}, ValueError, "src: '10.1.0.1' is not an 'ip:port'"),
    ((6, SRC, B, 1, 1), {}, ValueError, "dst: '10.1.0.2' is not an 'ip:port'"),
    ((6, (A,), DST, 1, 1), {}, ValueError, "src: expected (address, port), got a tuple of 1"),
    ((6, SRC, (B, 65536), 1, 1), {}, ValueError, "dst: port 65536 is out of range"),
    ((6, SRC, (B, LyingInt(-1)), 1, 1), {}, ValueError, "dst: port -1 is out of range"),
    ((6, SRC, (HugeV4(B), 1), 1, 1), {}, ValueError, "dst: HugeV4.packed gave"),
    ((6, ("nope", 1), DST, 1, 1), {}, ValueError, "src: 'nope' is not an IPv4 or IPv6"),
    ((6, 12, DST, 1, 1), {}, TypeError, "src: expected (address, port), AddrPort or"),
    ((6, SRC, DST, -1, 1), {}, ValueError, "packets: packet count must be >= 0, got -1"),
    ((6, SRC, DST, 2**64, 1), {}, ValueError, "packets: packet count must be < 2**64"),
    ((6, SRC, DST, 1.5, 1), {}, TypeError, "packets: expected an int packet count"),
    ((6, SRC, DST, 1, LyingInt(-5)), {}, ValueError, "bytes: byte count must be >= 0"),
    ((6, SRC, DST, 1, 2**64), {}, ValueError, "bytes: byte count must be < 2**64"),
    ((6, SRC, DST, 1, "1"), {}, TypeError, "bytes: expected an int byte count"),
    ((6, SRC, DST, 1, 1, 1), {}, TypeError, "receive: expected True or False, got int 1"),
    ((6, SRC, DST, 1, 1), {"receive": None}, TypeError, "receive: expected True or"),
]  # fmt: skip


@pytest.mark.parametrize("method", ["update_virtual", "update_physical"])
@pytest.mark.parametrize(("args", "kwargs", "error", "message"), BAD_PREPARSED)
def test_bad_preparsed_arguments_raise_naming_the_argument(
    impl, method, args, kwargs, error, message
):
    stats = impl.Statistics()
    stats.update_virtual(6, SRC, DST, 1, 1)
    with pytest.raises(error) as info:
        getattr(stats, method)(*args, **kwargs)
    assert str(info.value).startswith(message), str(info.value)
    assert extract(stats) == ({(6, ip(A), 1000, ip(B), 80): (1, 1, 0, 0)}, {})


@pytest.mark.parametrize(
    ("packets", "error", "message"),
    [
        (-1, ValueError, "packets: packet count must be >= 0, got -1"),
        (2**64, ValueError, "packets: packet count must be < 2**64"),
        ("3", TypeError, "packets: expected an int packet count, got str '3'"),
        (LyingInt(-2), ValueError, "packets: packet count must be >= 0, got -2"),
    ],
)
@pytest.mark.parametrize("method", ["update_tx_physical", "update_rx_physical"])
def test_bad_physical_packets_raise_and_count_nothing(
    impl, method, packets, error, message
):
    stats = impl.Statistics()
    with pytest.raises(error) as info:
        getattr(stats, method)(A, (B, 1), 100, packets=packets)
    assert str(info.value).startswith(message), str(info.value)
    assert stats.connections == 0


# -- the two cores agree ---------------------------------------------------------


def _outcome(call: Any) -> Any:
    try:
        call()
    except (TypeError, ValueError) as exc:
        return (type(exc), str(exc))
    return None


def test_both_cores_raise_the_same_errors(c_impl, py_impl):
    cases = [
        (method, args, kwargs)
        for method in ("update_virtual", "update_physical")
        for args, kwargs, _, _ in BAD_PREPARSED
    ]
    cases += [
        ("update_records", (r,), {})
        for r in ("x", GOOD[:-1], GOOD[:1] + b"\x80" + GOOD[2:],
                  GOOD[:2] + b"\x07" + GOOD[3:], GOOD[:30] + b"\x01" + GOOD[31:])
    ]  # fmt: skip
    cases += [
        ("update_tx_physical", (A, (B, 1), 100), {"packets": p})
        for p in (-1, 2**64, 1.0, None)
    ]
    for method, args, kwargs in cases:
        outcomes = []
        for impl in (c_impl, py_impl):
            stats = impl.Statistics()
            outcomes.append(_outcome(lambda: getattr(stats, method)(*args, **kwargs)))
            assert stats.connections == 0
        assert outcomes[0] == outcomes[1] and outcomes[0] is not None, (method, args)


# Connections the decoder can give (addresses of both families or none,
# any ports), counts anywhere in the u64 range.
addresses = st.sampled_from([None, A, B, A6, B6, "::ffff:10.1.0.1", "100.100.100.100"])
endpoints = st.tuples(addresses, st.integers(0, 65535)).map(
    lambda t: (None if t[0] is None else ip(t[0]), t[1])
)
counts = st.one_of(st.integers(0, 2000), st.sampled_from([U64, U64 - 1, 2**63]))
operations = st.lists(
    st.tuples(
        st.sampled_from(["v", "p", "rec"]),
        st.integers(0, 255),
        endpoints,
        endpoints,
        counts,
        counts,
        st.booleans(),
        st.booleans(),
    ),
    max_size=30,
)


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(max_conns=st.integers(0, 3), ops=operations)
def test_cores_agree_on_random_preparsed_traffic(c_impl, py_impl, max_conns, ops):
    """Same windows, same cuts, on both cores, through all three entry points."""
    windows: list[list[Any]] = []
    for impl in (c_impl, py_impl):
        got: list[Any] = []
        stats = impl.Statistics(
            max_conns=max_conns,
            dump=lambda s, e, v, p, got=got: got.append((plain(v), plain(p))),
            ignore_destinations=connstats.TAILSCALE_SERVICE_ADDRESSES,
        )
        pending: list[bytes] = []
        for kind, proto, src, dst, packets, nbytes, rx, physical in ops:
            if kind == "rec":
                flags = (RX if rx else 0) | (PHYS if physical else 0)
                pending.append(record(proto, src, dst, packets, nbytes, flags))
                continue
            if pending:
                stats.update_records(b"".join(pending))
                pending = []
            call = stats.update_physical if kind == "p" else stats.update_virtual
            call(proto, src, dst, packets, nbytes, receive=rx)
        if pending:
            stats.update_records(b"".join(pending))
        stats.shutdown()
        windows.append(got)
    assert windows[0] == windows[1]
