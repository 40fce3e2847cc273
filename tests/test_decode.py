"""One test per decoding rule of docs/contract.md §4, on hand-built packets.

Every rule is pinned from both sides of its boundary (19 and 20 bytes for
TCP, fragment offset 9 and 10, ...), so that changing any rule fails a test.
Ports are always asymmetric big-endian values (0x1234 -> 0xABCD) so that a
byte-order or src/dst mix-up shows.
"""

from __future__ import annotations

import array
import ipaddress
import struct
from typing import Any, Optional

import pytest

SRC4 = "192.0.2.1"
DST4 = "198.51.100.254"
SRC6 = "2001:db8::1"
DST6 = "fd7a:115c:a1e0:ab12:4843:cd96:6258:b240"
SPORT = 0x1234
DPORT = 0xABCD

ICMP, IGMP, TCP, UDP, FRAG6, ICMP6, TSMP, SCTP, FRAGMENT = (
    1,
    2,
    6,
    17,
    44,
    58,
    99,
    132,
    255,
)
NO_NEXT_HEADER = 59
MF = 0x2000


# --------------------------------------------------------------------------
# packet builders: every header field can be set independently, including
# to inconsistent values


def transport(size: int, sport: int = SPORT, dport: int = DPORT) -> bytes:
    """``size`` bytes starting with the two ports, then filler."""
    return (struct.pack("!HH", sport, dport) + bytes(range(1, 256)))[:size]


def ipv4(
    proto: int,
    payload: bytes = b"",
    *,
    src: str = SRC4,
    dst: str = DST4,
    ihl: int = 5,
    total_length: Optional[int] = None,
    frag: int = 0,
    options: bytes = b"",
    version: int = 4,
) -> bytes:
    """IPv4 header (+ options) + payload; ``total_length`` defaults to the real length."""
    body = options + payload
    tl = 20 + len(body) if total_length is None else total_length
    header = struct.pack(
        "!BBHHHBBH4s4s",
        (version << 4) | ihl,
        0,
        tl,
        0x5A5A,  # identification: nonzero so that a wrong offset shows
        frag,
        64,
        proto,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    return header + body


def ipv6(
    next_header: int,
    payload: bytes = b"",
    *,
    src: str = SRC6,
    dst: str = DST6,
    payload_length: Optional[int] = None,
) -> bytes:
    plen = len(payload) if payload_length is None else payload_length
    header = struct.pack(
        "!IHBB16s16s",
        0x6000_0000,
        plen,
        next_header,
        64,
        ipaddress.IPv6Address(src).packed,
        ipaddress.IPv6Address(dst).packed,
    )
    return header + payload


def frag6(
    inner: int, offset: int = 0, more: bool = False, raw: Optional[int] = None
) -> bytes:
    """IPv6 Fragment extension header (8 bytes); ``raw`` overrides bytes 2..3."""
    field = (offset << 3) | int(more) if raw is None else raw
    return struct.pack("!BBHI", inner, 0, field, 0xDEADBEEF)


# --------------------------------------------------------------------------
# expected values, as plain tuples so both cores compare alike


def dec(impl: Any, packet: Any) -> tuple:
    proto, src, dst = impl.decode(packet)
    return (proto, (src.addr, src.port), (dst.addr, dst.port))


def conn(proto: int, src: str, dst: str, sport: int = 0, dport: int = 0) -> tuple:
    return (
        proto,
        (ipaddress.ip_address(src), sport),
        (ipaddress.ip_address(dst), dport),
    )


def v4(proto: int, sport: int = 0, dport: int = 0) -> tuple:
    return conn(proto, SRC4, DST4, sport, dport)


def v6(proto: int, sport: int = 0, dport: int = 0) -> tuple:
    return conn(proto, SRC6, DST6, sport, dport)


ZERO = (0, (None, 0), (None, 0))

TCP4 = ipv4(TCP, transport(20))
TCP6 = ipv6(TCP, transport(20))


# --------------------------------------------------------------------------
# any packet


def test_empty_packet_is_zero(impl):
    assert dec(impl, b"") == ZERO


@pytest.mark.parametrize("version", [0, 1, 2, 3, 5, 7, 8, 15])
def test_version_nibble_other_than_4_or_6_is_zero(impl, version):
    assert dec(impl, TCP4) == v4(TCP, SPORT, DPORT)  # control: only the nibble changes
    assert dec(impl, ipv4(TCP, transport(20), version=version)) == ZERO
    # A 60-byte buffer is long enough for both decoders, so only the nibble decides.
    assert dec(impl, bytes([version << 4]) + TCP6[1:]) == ZERO


def test_zero_connection_has_no_addresses(impl):
    proto, src, dst = impl.decode(b"\x00")
    assert (proto, src.addr, src.port, dst.addr, dst.port) == (0, None, 0, None, 0)


@pytest.mark.parametrize(
    "wrap",
    [
        bytes,
        bytearray,
        memoryview,
        lambda b: array.array("B", b),
        lambda b: memoryview(b"\xff" * 7 + b + b"\xff" * 5)[7:-5],
    ],
    ids=["bytes", "bytearray", "memoryview", "array", "memoryview-slice"],
)
def test_any_contiguous_bytes_like_decodes_alike(impl, wrap):
    for packet in (TCP4, TCP6, ipv4(TCP, transport(19))):
        assert dec(impl, wrap(packet)) == dec(impl, packet)


@pytest.mark.parametrize("bad", ["45000014", 17, None, [0x45, 0], 1.5])
def test_non_bytes_like_packet_raises_type_error_naming_packet(impl, bad):
    with pytest.raises(
        TypeError, match=r"^packet: expected a bytes-like object"
    ) as info:
        impl.decode(bad)
    assert type(bad).__name__ in str(info.value)


def test_non_contiguous_packet_raises_value_error(impl):
    strided = memoryview(bytes(TCP4 * 2))[::2]
    with pytest.raises(ValueError, match=r"^packet: buffer is not C-contiguous"):
        impl.decode(strided)


# --------------------------------------------------------------------------
# IPv4


def test_ipv4_shorter_than_20_bytes_is_zero(impl):
    # total length says 19 so that only the L < 20 rule can reject it
    assert dec(impl, ipv4(253, total_length=19)[:19]) == ZERO
    assert dec(impl, ipv4(253)) == v4(253)  # exactly 20 bytes


def test_ipv4_buffer_shorter_than_total_length_is_zero(impl):
    packet = ipv4(TCP, transport(20))  # L = 40
    assert dec(impl, ipv4(TCP, transport(20), total_length=41)) == ZERO
    assert dec(impl, ipv4(TCP, transport(20), total_length=40)) == v4(TCP, SPORT, DPORT)
    assert dec(impl, ipv4(TCP, transport(20), total_length=39)) == v4(TCP, SPORT, DPORT)
    assert dec(impl, packet) == v4(TCP, SPORT, DPORT)


def test_ipv4_addresses_and_protocol_come_from_fixed_offsets(impl):
    packet = ipv4(UDP, transport(8), src="0.0.0.1", dst="255.255.255.254")
    proto, src, dst = impl.decode(packet)
    assert (proto, src.addr, dst.addr) == (
        UDP,
        ipaddress.IPv4Address("0.0.0.1"),
        ipaddress.IPv4Address("255.255.255.254"),
    )
    assert type(src.addr) is ipaddress.IPv4Address
    assert type(dst.addr) is ipaddress.IPv4Address


def test_ipv4_header_length_beyond_total_length_keeps_addresses_only(impl):
    options = b"\x01\x01\x01\x00"  # 4 bytes of NOPs/EOL: ihl = 6 -> hl = 24
    payload = transport(20)
    # tl = 23 < hl = 24 (the buffer itself is longer): proto 0, addresses kept
    assert dec(impl, ipv4(TCP, payload, ihl=6, options=options, total_length=23)) == v4(
        0
    )
    # tl = 24 = hl: transport view starts at 24 and runs to the end of the buffer
    assert dec(impl, ipv4(TCP, payload, ihl=6, options=options, total_length=24)) == v4(
        TCP, SPORT, DPORT
    )
    # the usual ihl = 5 with a total length below 20
    assert dec(impl, ipv4(TCP, payload, total_length=19)) == v4(0)


@pytest.mark.parametrize("ihl", [0, 1, 2, 3, 4])
def test_ipv4_header_length_below_20_is_not_validated(impl, ihl):
    packet = ipv4(TCP, transport(20), ihl=ihl)  # L = 40, tl = 40
    hl = ihl * 4
    sport, dport = struct.unpack_from("!HH", packet, hl)  # "ports" inside the IP header
    assert dec(impl, packet) == v4(TCP, sport, dport)


def test_ipv4_transport_starts_at_header_length(impl):
    options = bytes(range(100, 140))  # 40 bytes: ihl = 15 -> hl = 60
    # the TCP rule is measured on b[60:]: 19 bytes there -> 0, 20 -> ports
    assert dec(impl, ipv4(TCP, transport(19), ihl=15, options=options)) == v4(0)
    assert dec(impl, ipv4(TCP, transport(20), ihl=15, options=options)) == v4(
        TCP, SPORT, DPORT
    )


def test_ipv4_transport_view_runs_to_buffer_end_not_total_length(impl):
    # total length covers only the IP header; the TCP header after it still counts
    assert dec(impl, ipv4(TCP, transport(20), total_length=20)) == v4(TCP, SPORT, DPORT)
    assert dec(impl, ipv4(UDP, transport(8), total_length=21)) == v4(UDP, SPORT, DPORT)
    # the same for the rules that only need a length
    assert dec(impl, ipv4(ICMP, transport(4), total_length=20)) == v4(ICMP)
    assert dec(impl, ipv4(IGMP, transport(8), total_length=23)) == v4(IGMP)
    assert dec(impl, ipv4(TSMP, transport(7), total_length=20)) == v4(TSMP)


@pytest.mark.parametrize(
    "frag, proto",
    [
        (1, 0),
        (9, 0),
        (9 | MF, 0),
        (10, FRAGMENT),
        (10 | MF, FRAGMENT),
        (11, FRAGMENT),
        (0x1FFF, FRAGMENT),
        (0x4000 | 10, FRAGMENT),  # DF does not change the offset
        (0x4000 | 9, 0),
    ],
)
def test_ipv4_later_fragment_offset_below_10_is_zero_else_255(impl, frag, proto):
    packet = ipv4(TCP, transport(20), frag=frag)
    assert dec(impl, packet) == v4(proto)


@pytest.mark.parametrize("inner", [TCP, TSMP, FRAGMENT, 253, ICMP])
def test_ipv4_later_fragment_is_decided_before_the_protocol(impl, inner):
    assert dec(impl, ipv4(inner, transport(40), frag=9)) == v4(0)
    assert dec(impl, ipv4(inner, transport(40), frag=10)) == v4(FRAGMENT)
    # a later fragment needs no transport bytes at all
    assert dec(impl, ipv4(inner, frag=10)) == v4(FRAGMENT)


@pytest.mark.parametrize("flags", [MF, 0x4000, 0x8000, 0xE000])
def test_ipv4_flag_bits_are_not_part_of_the_offset(impl, flags):
    assert dec(impl, ipv4(TCP, transport(20), frag=flags)) == v4(TCP, SPORT, DPORT)


@pytest.mark.parametrize("proto, need", [(ICMP, 4), (IGMP, 8)], ids=["icmp", "igmp"])
def test_ipv4_icmp_igmp_need_header_bytes_and_have_no_ports(impl, proto, need):
    assert dec(impl, ipv4(proto, transport(need - 1))) == v4(0)
    assert dec(impl, ipv4(proto, transport(need))) == v4(proto)
    assert dec(impl, ipv4(proto, transport(need + 30))) == v4(proto)


@pytest.mark.parametrize(
    "proto, need", [(TCP, 20), (UDP, 8), (SCTP, 12)], ids=["tcp", "udp", "sctp"]
)
def test_ipv4_tcp_udp_sctp_need_header_bytes_and_read_ports(impl, proto, need):
    assert dec(impl, ipv4(proto, transport(need - 1))) == v4(0)
    assert dec(impl, ipv4(proto, transport(need))) == v4(proto, SPORT, DPORT)
    assert dec(impl, ipv4(proto, transport(need, 0xFFFF, 0))) == v4(proto, 0xFFFF, 0)
    assert dec(impl, ipv4(proto, transport(0))) == v4(0)


def test_ipv4_tsmp_needs_7_bytes_and_no_more_fragments_flag(impl):
    assert dec(impl, ipv4(TSMP, transport(6))) == v4(0)
    assert dec(impl, ipv4(TSMP, transport(7))) == v4(TSMP)  # ports stay 0
    assert dec(impl, ipv4(TSMP, transport(100))) == v4(TSMP)
    assert dec(impl, ipv4(TSMP, transport(7), frag=MF)) == v4(0)
    assert dec(impl, ipv4(TSMP, transport(100), frag=MF)) == v4(0)
    assert dec(impl, ipv4(TSMP, transport(7), frag=0x4000)) == v4(TSMP)  # DF is fine


def test_ipv4_protocol_255_is_zero(impl):
    assert dec(impl, ipv4(FRAGMENT, transport(40))) == v4(0)
    assert dec(impl, ipv4(FRAGMENT)) == v4(0)


@pytest.mark.parametrize(
    "proto", [0, 3, 4, 41, 47, 50, ICMP6, 98, 100, 131, 133, 253, 254]
)
def test_ipv4_other_protocols_are_kept_with_ports_0(impl, proto):
    assert dec(impl, ipv4(proto)) == v4(proto)  # no transport bytes needed
    assert dec(impl, ipv4(proto, transport(40))) == v4(proto)


# --------------------------------------------------------------------------
# IPv6


def test_ipv6_shorter_than_40_bytes_is_zero(impl):
    assert dec(impl, ipv6(NO_NEXT_HEADER)[:39]) == ZERO
    assert dec(impl, ipv6(NO_NEXT_HEADER)) == v6(NO_NEXT_HEADER)  # exactly 40 bytes


def test_ipv6_buffer_shorter_than_40_plus_payload_length_is_zero(impl):
    payload = transport(20)  # L = 60
    assert dec(impl, ipv6(TCP, payload, payload_length=21)) == ZERO
    assert dec(impl, ipv6(TCP, payload, payload_length=20)) == v6(TCP, SPORT, DPORT)
    assert dec(impl, ipv6(TCP, payload, payload_length=19)) == v6(TCP, SPORT, DPORT)
    assert dec(impl, ipv6(TCP, payload, payload_length=0xFFFF)) == ZERO


def test_ipv6_transport_view_runs_to_buffer_end_not_payload_length(impl):
    assert dec(impl, ipv6(TCP, transport(20), payload_length=0)) == v6(
        TCP, SPORT, DPORT
    )
    assert dec(impl, ipv6(ICMP6, transport(4), payload_length=0)) == v6(ICMP6)
    assert dec(impl, ipv6(TSMP, transport(7), payload_length=3)) == v6(TSMP)
    assert dec(impl, ipv6(FRAG6, frag6(UDP) + transport(8), payload_length=8)) == v6(
        UDP, SPORT, DPORT
    )


@pytest.mark.parametrize(
    "src, dst",
    [
        ("::ffff:192.0.2.1", "::ffff:198.51.100.254"),  # v4-mapped
        ("::192.0.2.1", "::"),  # v4-compatible and unspecified
        ("2002:c000:201::1", "ff02::1"),  # 6to4, multicast
    ],
)
def test_ipv6_addresses_are_always_ipv6(impl, src, dst):
    proto, s, d = impl.decode(ipv6(UDP, transport(8), src=src, dst=dst))
    assert (proto, s.addr, s.port, d.addr, d.port) == (
        UDP,
        ipaddress.IPv6Address(src),
        SPORT,
        ipaddress.IPv6Address(dst),
        DPORT,
    )
    assert type(s.addr) is ipaddress.IPv6Address
    assert type(d.addr) is ipaddress.IPv6Address


def test_ipv6_fragment_header_needs_48_bytes(impl):
    whole = ipv6(FRAG6, frag6(NO_NEXT_HEADER))  # 48 bytes
    assert dec(impl, ipv6(FRAG6, whole[40:47])) == v6(0)  # 47: proto 0, addresses kept
    assert dec(impl, whole) == v6(NO_NEXT_HEADER)


@pytest.mark.parametrize("more", [False, True], ids=["last", "more-fragments"])
def test_ipv6_first_fragment_continues_with_inner_header_at_48(impl, more):
    assert dec(impl, ipv6(FRAG6, frag6(TCP, 0, more) + transport(20))) == v6(
        TCP, SPORT, DPORT
    )
    # the TCP rule is measured from 48, not 40
    assert dec(impl, ipv6(FRAG6, frag6(TCP, 0, more) + transport(19))) == v6(0)
    assert dec(impl, ipv6(FRAG6, frag6(UDP, 0, more) + transport(8))) == v6(
        UDP, SPORT, DPORT
    )
    assert dec(impl, ipv6(FRAG6, frag6(ICMP6, 0, more) + transport(3))) == v6(0)
    assert dec(impl, ipv6(FRAG6, frag6(ICMP6, 0, more) + transport(4))) == v6(ICMP6)
    assert dec(impl, ipv6(FRAG6, frag6(253, 0, more))) == v6(253)


@pytest.mark.parametrize(
    "offset, proto",
    [(1, 0), (9, 0), (10, FRAGMENT), (11, FRAGMENT), (0x1FFF, FRAGMENT)],
)
@pytest.mark.parametrize("more", [False, True], ids=["last", "more-fragments"])
def test_ipv6_later_fragment_offset_below_10_is_zero_else_255(
    impl, offset, proto, more
):
    for inner in (TCP, UDP, TSMP, FRAGMENT, NO_NEXT_HEADER):
        packet = ipv6(FRAG6, frag6(inner, offset, more) + transport(20))
        assert dec(impl, packet) == v6(proto)


def test_ipv6_fragment_offset_is_the_top_13_bits(impl):
    # raw 0x0006: reserved bits only -> offset 0 -> inner header decides
    assert dec(impl, ipv6(FRAG6, frag6(TCP, raw=0x0006) + transport(20))) == v6(
        TCP, SPORT, DPORT
    )
    assert dec(impl, ipv6(FRAG6, frag6(TCP, raw=0x0048) + transport(20))) == v6(0)  # 9
    assert dec(impl, ipv6(FRAG6, frag6(TCP, raw=0x0050) + transport(20))) == v6(
        FRAGMENT
    )  # 10
    assert dec(impl, ipv6(FRAG6, frag6(TCP, raw=0xFFF8) + transport(20))) == v6(
        FRAGMENT
    )


def test_ipv6_fragment_header_is_followed_only_once(impl):
    packet = ipv6(FRAG6, frag6(FRAG6) + frag6(TCP) + transport(20))
    assert dec(impl, packet) == v6(FRAG6)


def test_ipv6_icmpv6_needs_4_bytes(impl):
    assert dec(impl, ipv6(ICMP6, transport(3))) == v6(0)
    assert dec(impl, ipv6(ICMP6, transport(4))) == v6(ICMP6)
    assert dec(impl, ipv6(ICMP6, transport(64))) == v6(ICMP6)


@pytest.mark.parametrize(
    "proto, need", [(TCP, 20), (UDP, 8), (SCTP, 12)], ids=["tcp", "udp", "sctp"]
)
def test_ipv6_tcp_udp_sctp_need_header_bytes_and_read_ports(impl, proto, need):
    assert dec(impl, ipv6(proto, transport(need - 1))) == v6(0)
    assert dec(impl, ipv6(proto, transport(need))) == v6(proto, SPORT, DPORT)
    assert dec(impl, ipv6(proto, transport(need, 0, 0xFFFF))) == v6(proto, 0, 0xFFFF)
    assert dec(impl, ipv6(proto)) == v6(0)


def test_ipv6_tsmp_needs_7_bytes(impl):
    assert dec(impl, ipv6(TSMP, transport(6))) == v6(0)
    assert dec(impl, ipv6(TSMP, transport(7))) == v6(TSMP)
    # unlike IPv4 there is no more-fragments rule: a first fragment is fine
    assert dec(impl, ipv6(FRAG6, frag6(TSMP, 0, True) + transport(7))) == v6(TSMP)
    assert dec(impl, ipv6(FRAG6, frag6(TSMP, 0, True) + transport(6))) == v6(0)


def test_ipv6_next_header_255_is_zero(impl):
    assert dec(impl, ipv6(FRAGMENT, transport(40))) == v6(0)
    assert dec(impl, ipv6(FRAG6, frag6(FRAGMENT) + transport(40))) == v6(0)


@pytest.mark.parametrize(
    "next_header",
    [0, ICMP, IGMP, 4, 41, 43, 50, 51, NO_NEXT_HEADER, 60, 135, 253, 254],
)
def test_ipv6_other_next_headers_are_kept_with_ports_0(impl, next_header):
    # ICMP/IGMP are IPv4-only rules: in IPv6 they need no bytes either
    assert dec(impl, ipv6(next_header)) == v6(next_header)
    assert dec(impl, ipv6(next_header, transport(40))) == v6(next_header)
