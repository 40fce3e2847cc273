"""Differential tests: the compiled decoder must agree with the pure twin.

Random bytes mostly exercise the early rejections, so most examples are
well-formed IPv4/IPv6 headers (options, fragments, extension header) around
every length threshold of docs/contract.md §4, then mutated by byte flips,
truncation or extension.  Results are compared as plain tuples because the
two cores may return different AddrPort classes.
"""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# database=None: no .hypothesis/ directory in the source tree.
SETTINGS = settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Protocols with a rule of their own, plus neighbours and extremes.
INTERESTING_PROTOS = [
    0,
    1,
    2,
    3,
    4,
    6,
    17,
    41,
    43,
    44,
    58,
    59,
    60,
    98,
    99,
    100,
    131,
    132,
    133,
    254,
    255,
]


def mostly(common: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> Any:
    """Draw from ``common`` about three times in four, else from ``other``.

    Uniformly random header fields would make nearly every packet a later
    fragment or truncated; this keeps the interesting paths well fed.
    """
    return st.integers(0, 3).flatmap(lambda i: common if i else other)


protos = mostly(
    st.sampled_from([6, 17, 132]) | st.sampled_from(INTERESTING_PROTOS),
    st.integers(0, 255),
)

# Transport sizes straddling every threshold (4, 7, 8, 12, 20) and beyond.
transport_sizes = st.one_of(st.integers(0, 24), st.integers(0, 200))

# Fragment offsets: mostly 0 (unfragmented), else around the 10-block limit.
frag_offsets = mostly(
    st.just(0), st.sampled_from([1, 9, 10, 11, 0x1FFF]) | st.integers(0, 0x1FFF)
)

header_words = mostly(st.just(5), st.integers(0, 15))


def norm_addrport(ap: Any) -> tuple:
    addr = ap.addr
    if addr is None:
        return (None, ap.port)
    return (addr.version, str(addr), ap.port)


def norm(result: Any) -> tuple:
    proto, src, dst = result
    return (int(proto), norm_addrport(src), norm_addrport(dst))


def assert_same(c_impl: Any, py_impl: Any, packet: bytes) -> None:
    assert norm(c_impl.decode(packet)) == norm(py_impl.decode(packet)), packet.hex()


@st.composite
def ipv4_packets(draw: st.DrawFn) -> bytes:
    ihl = draw(header_words)
    options = draw(
        st.binary(min_size=max(0, ihl * 4 - 20), max_size=max(0, ihl * 4 - 20))
    )
    size = draw(transport_sizes)
    payload = draw(st.binary(min_size=size, max_size=size))
    flags = draw(st.sampled_from([0, 0, 0x2000, 0x4000, 0x8000, 0xE000]))
    frag = flags | draw(frag_offsets)
    real_length = 20 + len(options) + len(payload)
    total_length = draw(
        mostly(
            st.just(real_length),
            st.integers(max(0, real_length - 3), real_length + 3)
            | st.integers(0, 0xFFFF),
        )
    )
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        draw(st.integers(0, 255)),
        total_length & 0xFFFF,
        draw(st.integers(0, 0xFFFF)),
        frag,
        draw(st.integers(0, 255)),
        draw(protos),
        0,
        draw(st.binary(min_size=4, max_size=4)),
        draw(st.binary(min_size=4, max_size=4)),
    )
    return header + options + payload


@st.composite
def ipv6_packets(draw: st.DrawFn) -> bytes:
    payload = b""
    next_header = draw(protos)
    if draw(st.booleans()):
        # a Fragment extension header first
        field = (draw(frag_offsets) << 3) | draw(st.integers(0, 7))
        inner = draw(protos)
        reserved = draw(st.integers(0, 255))
        ident = draw(st.integers(0, 2**32 - 1))
        payload = struct.pack("!BBHI", inner, reserved, field, ident)
        next_header = 44
    size = draw(transport_sizes)
    payload += draw(st.binary(min_size=size, max_size=size))
    plen = draw(
        mostly(
            st.just(len(payload)),
            st.integers(max(0, len(payload) - 3), len(payload) + 3)
            | st.integers(0, 0xFFFF),
        )
    )
    v4_mapped = draw(st.booleans())

    def address() -> bytes:
        if v4_mapped:
            return bytes(10) + b"\xff\xff" + draw(st.binary(min_size=4, max_size=4))
        return draw(st.binary(min_size=16, max_size=16))

    header = struct.pack(
        "!IHBB16s16s",
        0x6000_0000 | draw(st.integers(0, 0x0FFF_FFFF)),
        plen & 0xFFFF,
        next_header,
        draw(st.integers(0, 255)),
        address(),
        address(),
    )
    return header + payload


@st.composite
def mutated(draw: st.DrawFn, packets: st.SearchStrategy[bytes]) -> bytes:
    packet = bytearray(draw(packets))
    for _ in range(draw(st.integers(0, 3))):
        if not packet:
            break
        i = draw(st.integers(0, len(packet) - 1))
        packet[i] ^= draw(st.integers(1, 255))
    cut = draw(st.sampled_from(["none", "none", "truncate", "extend"]))
    if cut == "truncate":
        packet = packet[: draw(st.integers(0, len(packet)))]
    elif cut == "extend":
        packet += draw(st.binary(min_size=1, max_size=40))
    return bytes(packet)


@SETTINGS
@given(packet=st.binary(max_size=128))
def test_random_bytes(c_impl, py_impl, packet):
    assert_same(c_impl, py_impl, packet)


@SETTINGS
@given(
    first=st.sampled_from([0x40, 0x45, 0x4F, 0x60, 0x6F]) | st.integers(0, 255),
    rest=st.binary(max_size=100),
)
def test_random_bytes_with_ip_version(c_impl, py_impl, first, rest):
    assert_same(c_impl, py_impl, bytes([first]) + rest)


@SETTINGS
@given(packet=ipv4_packets())
def test_ipv4_headers(c_impl, py_impl, packet):
    assert_same(c_impl, py_impl, packet)


@SETTINGS
@given(packet=ipv6_packets())
def test_ipv6_headers(c_impl, py_impl, packet):
    assert_same(c_impl, py_impl, packet)


@SETTINGS
@given(packet=mutated(ipv4_packets() | ipv6_packets()))
def test_mutated_headers(c_impl, py_impl, packet):
    assert_same(c_impl, py_impl, packet)


@SETTINGS
@given(packet=mutated(ipv4_packets() | ipv6_packets()))
def test_bytes_like_wrappers_agree(c_impl, py_impl, packet):
    expected = norm(py_impl.decode(packet))
    for wrapped in (
        bytearray(packet),
        memoryview(packet),
        memoryview(b"\x00" + packet)[1:],
    ):
        assert norm(c_impl.decode(wrapped)) == expected
