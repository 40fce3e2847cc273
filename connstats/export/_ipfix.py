"""IPFIX (RFC 7011) message encoding: templates, data sets, framing.

A window's table is turned into data records, one per connection and
direction that carried traffic, packed with ``struct.pack_into`` straight
into a preallocated message buffer.  Three templates cover every
Connection: IPv4 addresses, IPv6 addresses, and no addresses (the zero
connection of undecodable packets).  One message holds one data set, so it
carries one observation domain and one template.

The sequence number is not known here: it counts the records the transport
actually accepted (RFC 7011 section 3.1), so the exporter writes it into the
header just before sending (:func:`set_sequence`).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from .._select import NO_EXTENSIONS

_Packer = Callable[
    [Mapping[Any, Any], int, int, bool], tuple[bytes, int, bytes, int, list[Any]]
]
_compiled_pack: _Packer | None = None
if not NO_EXTENSIONS:
    try:  # the compiled record packer (src/_ipfix_encode.pyx); Python otherwise
        from ._ipfix_encode import pack_records as _compiled_pack
    except ImportError:  # pragma: no cover - depends on the install
        pass

#: True when records are packed by the compiled helper.
IS_COMPILED: Final = _compiled_pack is not None
VERSION: Final = 10
HEADER_LEN: Final = 16
SET_HEADER_LEN: Final = 4
TEMPLATE_SET_ID: Final = 2

#: Template IDs (data set IDs); 256 is the first one RFC 7011 allows.
TEMPLATE_IPV4: Final = 256
TEMPLATE_IPV6: Final = 257
TEMPLATE_NOADDR: Final = 258

#: flowDirection (IE 61) values.
INGRESS: Final = 0
EGRESS: Final = 1

#: IANA information elements: (id, length in octets).
IE_OCTET_DELTA_COUNT: Final = (1, 8)
IE_PACKET_DELTA_COUNT: Final = (2, 8)
IE_PROTOCOL_IDENTIFIER: Final = (4, 1)
IE_SOURCE_TRANSPORT_PORT: Final = (7, 2)
IE_SOURCE_IPV4_ADDRESS: Final = (8, 4)
IE_DESTINATION_TRANSPORT_PORT: Final = (11, 2)
IE_DESTINATION_IPV4_ADDRESS: Final = (12, 4)
IE_SOURCE_IPV6_ADDRESS: Final = (27, 16)
IE_DESTINATION_IPV6_ADDRESS: Final = (28, 16)
IE_FLOW_DIRECTION: Final = (61, 1)
IE_FLOW_START_MILLISECONDS: Final = (152, 8)
IE_FLOW_END_MILLISECONDS: Final = (153, 8)

_COMMON_HEAD = (
    IE_FLOW_START_MILLISECONDS,
    IE_FLOW_END_MILLISECONDS,
    IE_PACKET_DELTA_COUNT,
    IE_OCTET_DELTA_COUNT,
)
_COMMON_TAIL = (
    IE_SOURCE_TRANSPORT_PORT,
    IE_DESTINATION_TRANSPORT_PORT,
    IE_PROTOCOL_IDENTIFIER,
    IE_FLOW_DIRECTION,
)

#: Field layout of each template, in record order.
TEMPLATES: Final[dict[int, tuple[tuple[int, int], ...]]] = {
    TEMPLATE_IPV4: _COMMON_HEAD
    + (IE_SOURCE_IPV4_ADDRESS, IE_DESTINATION_IPV4_ADDRESS)
    + _COMMON_TAIL,
    TEMPLATE_IPV6: _COMMON_HEAD
    + (IE_SOURCE_IPV6_ADDRESS, IE_DESTINATION_IPV6_ADDRESS)
    + _COMMON_TAIL,
    TEMPLATE_NOADDR: _COMMON_HEAD + _COMMON_TAIL,
}

_HEADER = struct.Struct(">HHIII")
_SET_HEADER = struct.Struct(">HH")
_SEQUENCE = struct.Struct(">I")
_SET_LENGTH = struct.Struct(">H")
# start ms, end ms, packets, octets, addresses, sport, dport, proto, direction.
# IPv6 addresses go in as two 64-bit halves each.
_REC_V4 = struct.Struct(">QQQQIIHHBB")
_REC_V6 = struct.Struct(">QQQQQQQQHHBB")
_REC_NOADDR = struct.Struct(">QQQQHHBB")
RECORD_SIZES: Final = {
    TEMPLATE_IPV4: _REC_V4.size,
    TEMPLATE_IPV6: _REC_V6.size,
    TEMPLATE_NOADDR: _REC_NOADDR.size,
}
assert all(
    sum(n for _, n in fields) == RECORD_SIZES[tid] for tid, fields in TEMPLATES.items()
)

_U64: Final = (1 << 64) - 1
_V4 = ipaddress.IPv4Address
_V6 = ipaddress.IPv6Address
_MAPPED = 0xFFFF << 32  # ::ffff:0:0/96, IPv4-mapped IPv6 addresses


def min_message_size() -> int:
    """The smallest message size that holds every template and any one record."""
    return max(template_message_size(), HEADER_LEN + SET_HEADER_LEN + _REC_V6.size)


def template_message_size() -> int:
    return (
        HEADER_LEN
        + SET_HEADER_LEN
        + sum(4 + 4 * len(fields) for fields in TEMPLATES.values())
    )


def template_message(export_time: int, sequence: int, domain: int) -> bytes:
    """A message with one template set defining all three templates."""
    body = bytearray()
    for tid, fields in TEMPLATES.items():
        body += _SET_HEADER.pack(tid, len(fields))
        for ie, length in fields:
            body += _SET_HEADER.pack(ie, length)
    length = HEADER_LEN + SET_HEADER_LEN + len(body)
    return (
        _HEADER.pack(VERSION, length, export_time, sequence, domain)
        + _SET_HEADER.pack(TEMPLATE_SET_ID, SET_HEADER_LEN + len(body))
        + bytes(body)
    )


def set_sequence(message: memoryview | bytearray, sequence: int) -> None:
    _SEQUENCE.pack_into(message, 8, sequence & 0xFFFFFFFF)


class Encoder:
    """Turns tables into IPFIX data messages of at most ``max_size`` bytes."""

    def __init__(self, max_size: int, *, compiled: bool | None = None) -> None:
        if max_size < min_message_size():
            raise ValueError(
                f"max message size {max_size} is below the {min_message_size()} "
                "bytes needed for the templates and one record"
            )
        self.max_size = max_size
        if compiled and _compiled_pack is None:
            raise ValueError("compiled: the compiled IPFIX packer is not available")
        self.compiled = IS_COMPILED if compiled is None else compiled
        self.per_message = {
            tid: (max_size - HEADER_LEN - SET_HEADER_LEN) // size
            for tid, size in RECORD_SIZES.items()
        }

    def messages(
        self,
        table: Mapping[Any, Any],
        start_ms: int,
        end_ms: int,
        export_time: int,
        domain: int,
    ) -> Iterator[tuple[memoryview, int]]:
        """Yield ``(message, records)`` for every data record of ``table``.

        Each message is a buffer reused after the next iteration: send or
        copy it before asking for the next one.  Its sequence number is 0
        until :func:`set_sequence` fills it in.
        """
        if start_ms < 0 or end_ms < 0:
            # IPFIX times are unsigned; the same refusal from both packers,
            # also for windows whose records carry their own (clamped) times
            raise OverflowError(
                f"a window before 1970 ({start_ms} ms) cannot be encoded"
            )
        if self.compiled:
            yield from self._compiled_messages(
                table, start_ms, end_ms, export_time, domain
            )
            return
        # The reference loop (the compiled one mirrors it record for record).
        # One buffer per template; a full one is framed and handed out.
        bufs = {tid: bytearray(self.max_size) for tid in TEMPLATES}
        for tid, buf in bufs.items():
            _SET_HEADER.pack_into(buf, HEADER_LEN, tid, 0)
        v4buf = bufs[TEMPLATE_IPV4]
        v6buf = bufs[TEMPLATE_IPV6]
        v4cap = self.per_message[TEMPLATE_IPV4]
        v6cap = self.per_message[TEMPLATE_IPV6]
        v4size = _REC_V4.size
        v6size = _REC_V6.size
        pack4 = _REC_V4.pack_into
        pack6 = _REC_V6.pack_into
        first = HEADER_LEN + SET_HEADER_LEN
        v4off = v6off = first
        v4n = v6n = 0
        noaddr: list[tuple[Any, Any]] = []
        frame = self._frame
        timed = _timed(table)
        t0, t1 = start_ms, end_ms
        # Typed Any: the checks below must not narrow to ipaddress classes,
        # whose stubs do not know _ip (the int behind every address).
        v4type: Any = _V4
        v6type: Any = _V6
        # The four record blocks below (IPv4/IPv6 x tx/rx) are written out
        # rather than shared through a helper: a Python call per record
        # would cost more than packing it.
        for conn, counts in table.items():
            # each connection's own first/last packet when the window keeps
            # them (as nfpcapd's flows), else the window's bounds
            if timed:
                t0, t1 = _span(counts)
            src = conn.src
            dst = conn.dst
            sa = src.addr
            da = dst.addr
            tp = counts.tx_packets
            tb = counts.tx_bytes
            rp = counts.rx_packets
            rb = counts.rx_bytes
            if type(sa) is v4type and type(da) is v4type:
                s = sa._ip
                d = da._ip
                if tp or tb:
                    if v4n == v4cap:
                        yield frame(v4buf, v4off, v4n, export_time, domain)
                        v4off = first
                        v4n = 0
                    pack4(
                        v4buf,
                        v4off,
                        t0,
                        t1,
                        tp,
                        tb,
                        s,
                        d,
                        src.port,
                        dst.port,
                        conn.proto,
                        1,
                    )
                    v4off += v4size
                    v4n += 1
                if rp or rb:
                    if v4n == v4cap:
                        yield frame(v4buf, v4off, v4n, export_time, domain)
                        v4off = first
                        v4n = 0
                    pack4(
                        v4buf,
                        v4off,
                        t0,
                        t1,
                        rp,
                        rb,
                        d,
                        s,
                        dst.port,
                        src.port,
                        conn.proto,
                        0,
                    )
                    v4off += v4size
                    v4n += 1
                continue
            if type(sa) is v6type and type(da) is v6type:
                s = sa._ip
                d = da._ip
            elif sa is None and da is None:
                noaddr.append((conn, counts))  # the zero connection, below
                continue
            else:
                s, d = _as_v6(sa), _as_v6(da)
            sh, sl, dh, dl = s >> 64, s & _U64, d >> 64, d & _U64
            if tp or tb:
                if v6n == v6cap:
                    yield frame(v6buf, v6off, v6n, export_time, domain)
                    v6off = first
                    v6n = 0
                pack6(
                    v6buf,
                    v6off,
                    t0,
                    t1,
                    tp,
                    tb,
                    sh,
                    sl,
                    dh,
                    dl,
                    src.port,
                    dst.port,
                    conn.proto,
                    1,
                )
                v6off += v6size
                v6n += 1
            if rp or rb:
                if v6n == v6cap:
                    yield frame(v6buf, v6off, v6n, export_time, domain)
                    v6off = first
                    v6n = 0
                pack6(
                    v6buf,
                    v6off,
                    t0,
                    t1,
                    rp,
                    rb,
                    dh,
                    dl,
                    sh,
                    sl,
                    dst.port,
                    src.port,
                    conn.proto,
                    0,
                )
                v6off += v6size
                v6n += 1
        if v4n:
            yield frame(v4buf, v4off, v4n, export_time, domain)
        if v6n:
            yield frame(v6buf, v6off, v6n, export_time, domain)
        # Address-less connections are rare (undecodable packets): packed
        # after the others.
        yield from self._noaddr(noaddr, start_ms, end_ms, export_time, domain)

    def _compiled_messages(
        self,
        table: Mapping[Any, Any],
        start_ms: int,
        end_ms: int,
        export_time: int,
        domain: int,
    ) -> Iterator[tuple[memoryview, int]]:
        assert _compiled_pack is not None
        v4, n4, v6, n6, noaddr = _compiled_pack(table, start_ms, end_ms, _timed(table))
        first = HEADER_LEN + SET_HEADER_LEN
        for tid, blob, count in ((TEMPLATE_IPV4, v4, n4), (TEMPLATE_IPV6, v6, n6)):
            buf = bytearray(self.max_size)
            _SET_HEADER.pack_into(buf, HEADER_LEN, tid, 0)
            cap = self.per_message[tid]
            size = RECORD_SIZES[tid]
            view = memoryview(blob)
            for i in range(0, count, cap):
                k = min(cap, count - i)
                buf[first : first + k * size] = view[i * size : (i + k) * size]
                yield self._frame(buf, first + k * size, k, export_time, domain)
        pairs = [(conn, table[conn]) for conn in noaddr]
        yield from self._noaddr(pairs, start_ms, end_ms, export_time, domain)

    def _noaddr(
        self,
        pairs: list[tuple[Any, Any]],
        t0: int,
        t1: int,
        export_time: int,
        domain: int,
    ) -> Iterator[tuple[memoryview, int]]:
        if not pairs:
            return
        buf = bytearray(self.max_size)
        _SET_HEADER.pack_into(buf, HEADER_LEN, TEMPLATE_NOADDR, 0)
        cap = self.per_message[TEMPLATE_NOADDR]
        first = HEADER_LEN + SET_HEADER_LEN
        off, n = first, 0
        timed = bool(pairs) and hasattr(pairs[0][1], "first_ns")
        for conn, counts in pairs:
            src, dst = conn.src, conn.dst
            r0, r1 = _span(counts) if timed else (t0, t1)
            for direction, packets, octets, sport, dport in (
                (EGRESS, counts.tx_packets, counts.tx_bytes, src.port, dst.port),
                (INGRESS, counts.rx_packets, counts.rx_bytes, dst.port, src.port),
            ):
                if not (packets or octets):
                    continue
                if n == cap:
                    yield self._frame(buf, off, n, export_time, domain)
                    off, n = first, 0
                _REC_NOADDR.pack_into(
                    buf,
                    off,
                    r0,
                    r1,
                    packets,
                    octets,
                    sport,
                    dport,
                    conn.proto,
                    direction,
                )
                off += _REC_NOADDR.size
                n += 1
        if n:
            yield self._frame(buf, off, n, export_time, domain)

    @staticmethod
    def _frame(
        buf: bytearray, end: int, records: int, export_time: int, domain: int
    ) -> tuple[memoryview, int]:
        # The set ID is already in place: fill in the lengths and the header.
        _HEADER.pack_into(buf, 0, VERSION, end, export_time, 0, domain)
        _SET_LENGTH.pack_into(buf, HEADER_LEN + 2, end - HEADER_LEN)
        return memoryview(buf)[:end], records


def _timed(table: Mapping[Any, Any]) -> bool:
    """Whether the values carry first/last times (TimedCounts): all of a
    window's do or none does, so the first one tells."""
    for counts in table.values():
        return hasattr(counts, "first_ns")
    return False


def _span(counts: Any) -> tuple[int, int]:
    """flowStart/EndMilliseconds of one connection (never before the epoch)."""
    return max(0, counts.first_ns // 1_000_000), max(0, counts.last_ns // 1_000_000)


def _as_v6(addr: Any) -> int:
    """A mixed-family or half-missing pair goes into the IPv6 template."""
    if addr is None:
        return 0
    value = int(addr)
    return value | _MAPPED if addr.version == 4 else value
