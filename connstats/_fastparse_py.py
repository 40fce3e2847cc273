"""Pure-Python twin of the compiled core (``src/_fastparse.pyx``).

It serves installs without a compiler (or ``CONNSTATS_NO_EXTENSIONS=1``) and
is the reference the compiled core is tested against, so it follows
docs/contract.md sections 2 to 4 and 7 literally and favours clarity over speed.

Internally a connection is a "raw key" ``(proto, src, sport, dst, dport)``
whose addresses are packed ``bytes`` (4 or 16 long) or ``None``.  Packed bytes
make the ``ignore_destinations`` test a plain set lookup and keep the
family in the key (a v4-mapped IPv6 address never equals its IPv4 twin);
``ipaddress`` objects are only built when a window is handed out.
"""

from __future__ import annotations

import _thread
import operator
import struct
import threading
import time
from array import array
from collections import deque
from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

from ._addr import (
    byte_count,
    direction,
    packed_address,
    packed_addrport,
    packed_endpoint,
    packet_count,
    protocol_number,
)
from ._types import (
    RECORD_FORMAT,
    RECORD_PHYSICAL,
    RECORD_RECEIVE,
    RECORD_SIZE,
    AddrPort,
    Connection,
    Counts,
    Decapsulated,
    TimedCounts,
)

__all__ = [
    "AddrPort",
    "Connection",
    "Counts",
    "Columns",
    "Core",
    "CountingMethods",
    "TimedCounts",
    "Window",
    "columns",
    "decap",
    "decap_split",
    "decap_walk",
    "decode",
]

_U64 = (1 << 64) - 1

# IP protocol numbers the decoder treats specially (docs/contract.md §4).
_ICMP = 1
_IGMP = 2
_TCP = 6
_UDP = 17
_IPV6_FRAGMENT = 44
_ICMPV6 = 58
_TSMP = 99
_SCTP = 132
_FRAGMENT = 255

# Transports whose first two big-endian u16s are the ports, with the number
# of bytes the transport view must hold for them to count.
_PORTED_HEADER_LEN = {_TCP: 20, _UDP: 8, _SCTP: 12}

# A later fragment starting inside the first 10 8-byte blocks could overwrite
# a transport header (a firewall bypass trick), so it is not trusted.
_MIN_FRAGMENT_BLOCKS = 10

_MORE_FRAGMENTS = 0x2000
_FRAGMENT_OFFSET_MASK = 0x1FFF

_unpack_ports = struct.Struct("!HH").unpack_from
# One unpack per header instead of a dozen index operations; the fields are
#   IPv4: version/ihl, (tos), total length, (id), flags/fragment offset,
#         (ttl), protocol, (checksum), source, destination
#   IPv6: (version/class/flow), payload length, next header, (hop limit),
#         source, destination
_unpack_ipv4 = struct.Struct("!BxHxxHxB2x4s4s").unpack_from
_unpack_ipv6 = struct.Struct("!4xHBx16s16s").unpack_from
_unpack_u16 = struct.Struct("!H").unpack_from
_RECORD = struct.Struct(RECORD_FORMAT)
assert _RECORD.size == RECORD_SIZE
_RECORD_FLAGS = RECORD_RECEIVE | RECORD_PHYSICAL

# A connection: (proto, src, sport, dst, dport), and for the packets of a
# decapsulated tunnel (docs/tunnels.md) the tunnel's VNI or key as a sixth
# item (a 5-tuple never equals a 6-tuple, so the two never meet).
RawKey = tuple[Any, ...]
ByteView = Union[bytes, memoryview]

_ZERO: RawKey = (0, None, 0, None, 0)

# Integer format codes of the struct module; offsets/lengths buffers must use one.
_INT_FORMATS = frozenset("bBhHiIlLqQnN")


# --------------------------------------------------------------------------
# argument handling


def _type_name(value: Any) -> str:
    return type(value).__name__


def _byte_view(obj: Any, argname: str) -> ByteView:
    """Return ``obj`` as bytes or a flat unsigned-byte memoryview, without copying."""
    if type(obj) is bytes:
        return obj
    try:
        view = memoryview(obj)
    except TypeError:
        raise TypeError(
            f"{argname}: expected a bytes-like object, got {_type_name(obj)}"
        ) from None
    if not view.c_contiguous:
        raise ValueError(f"{argname}: buffer is not C-contiguous")
    if view.ndim != 1 or view.format != "B":
        # docs/contract.md §4: any C-contiguous bytes-like is a packet, so a buffer of
        # wider items (or more dimensions) is read as its raw bytes.
        try:
            view = view.cast("B")
        except (TypeError, ValueError):
            view = memoryview(view.tobytes())
    return view


def _is_sequence(obj: Any) -> bool:
    # Mirrors PySequence_Check: anything indexable except mappings.
    return not isinstance(obj, dict) and hasattr(type(obj), "__getitem__")


def _packet_list(packets: Any, argname: str) -> list[ByteView]:
    if not _is_sequence(packets):
        raise TypeError(
            f"{argname}: expected a sequence of bytes-like objects, got "
            f"{_type_name(packets)}"
        )
    # A snapshot first, as the compiled core takes: a __buffer__ method (or
    # another thread) may change the caller's list while it is read.
    items = tuple(packets)
    return [_byte_view(p, f"{argname}[{i}]") for i, p in enumerate(items)]


def _int_list(obj: Any, argname: str) -> list[int]:
    """Integers from an integer buffer (array, numpy, memoryview) or a sequence."""
    try:
        view = memoryview(obj)
    except TypeError:
        view = None
    if view is not None:
        # Native integer formats only (the compiled core's rule too): a
        # byte-swapped numpy array is refused rather than silently converted.
        code = view.format[1:] if view.format.startswith("@") else view.format
        if len(code) != 1 or code not in _INT_FORMATS:
            raise TypeError(
                f"{argname}: expected a buffer of native integers, got format "
                f"{view.format!r}"
            )
        if view.ndim != 1:
            raise TypeError(
                f"{argname}: expected a one-dimensional buffer, got {view.ndim} "
                "dimensions"
            )
        values = view.tolist()  # also copes with strided views
    elif _is_sequence(obj):
        values = []
        for i, item in enumerate(tuple(obj)):  # a snapshot, as for packets
            if isinstance(item, bool):
                raise TypeError(f"{argname}[{i}]: expected an int, got bool")
            try:
                values.append(operator.index(item))
            except TypeError:
                raise TypeError(
                    f"{argname}[{i}]: expected an int, got {_type_name(item)}"
                ) from None
    else:
        raise TypeError(
            f"{argname}: expected a buffer or sequence of integers, got "
            f"{_type_name(obj)}"
        )
    for i, value in enumerate(values):
        if value < 0:
            raise ValueError(f"{argname}[{i}]: must be >= 0, got {value}")
    return values


def _vni_list(obj: Any, count: int) -> list[int]:
    """VNIs (-1: none, else 0..2**32-1), one per packet, as the compiled core reads them."""
    try:
        view = memoryview(obj)
    except TypeError:
        view = None
    if view is not None:
        code = view.format.lstrip("@=<")
        if view.ndim != 1 or code not in ("q", "n") or view.itemsize != 8:
            raise TypeError(
                f"vnis: expected a 1-D buffer of int64 ('q'), got format {code!r}"
            )
        values = view.tolist()
    else:
        try:
            items = tuple(obj)
        except TypeError:
            raise TypeError(
                f"vnis: expected a buffer or sequence of integers, got {_type_name(obj)}"
            ) from None
        values = []
        for i, item in enumerate(items):
            if isinstance(item, bool) or not isinstance(item, int):
                raise TypeError(f"vnis[{i}]: expected an int, got {_type_name(item)}")
            values.append(operator.index(item))
    if len(values) != count:
        raise ValueError(f"vnis: has {len(values)} items but offsets has {count}")
    for i, value in enumerate(values):
        if not -1 <= value <= 0xFFFFFFFF:
            raise ValueError(f"vnis[{i}]: {value} is out of range -1..4294967295")
    return values


def _times_list(obj: Any, n: int) -> list[int]:
    """n int64 times from a 1-D buffer of format 'q' (the compiled core's rule)."""
    try:
        view = memoryview(obj)
    except TypeError:
        raise TypeError(
            f"times: expected a buffer of int64, got {_type_name(obj)}"
        ) from None
    code = view.format.lstrip("@=")
    if view.ndim != 1 or view.itemsize != 8 or code not in ("q", "l"):
        raise TypeError(
            f"times: expected a 1-D buffer of int64 (format 'q'), got format "
            f"{view.format!r}"
        )
    if len(view) != n:
        raise ValueError(f"times: has {len(view)} items but offsets has {n}")
    return view.tolist()


def _require_dict(value: Any, argname: str) -> None:
    if not isinstance(value, dict):
        raise TypeError(f"{argname}: expected a dict, got {_type_name(value)}")


def _non_negative_int(value: Any, argname: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{argname}: expected an int, got bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{argname}: expected an int, got {_type_name(value)}"
        ) from None
    if value < 0:
        raise ValueError(f"{argname}: must be >= 0, got {value}")
    return value


# --------------------------------------------------------------------------
# decoding (docs/contract.md §4)


def _ported(proto: int, b: ByteView, sub: int, src: bytes, dst: bytes) -> RawKey:
    """Key for a transport that carries ports (TCP, UDP, SCTP) at offset ``sub``."""
    if len(b) - sub < _PORTED_HEADER_LEN[proto]:
        return (0, src, 0, dst, 0)
    sport, dport = _unpack_ports(b, sub)
    return (proto, src, sport, dst, dport)


def _decode4(b: ByteView) -> RawKey:
    length = len(b)
    if length < 20:
        return _ZERO
    version_ihl, total_length, frag, proto, src, dst = _unpack_ipv4(b)
    if length < total_length:
        return _ZERO  # truncated: not even the addresses are trusted
    # The header length is deliberately not checked against 20: the
    # reference does not, and we must match it bit for bit.
    sub = (version_ihl & 0x0F) * 4
    if sub > total_length:
        return (0, src, 0, dst, 0)
    # From here the transport view is b[sub:length]; note length, not
    # total_length, bounds it (the reference slices to the end of the buffer).
    avail = length - sub
    offset = frag & _FRAGMENT_OFFSET_MASK
    if offset != 0:
        if offset < _MIN_FRAGMENT_BLOCKS:
            return (0, src, 0, dst, 0)
        return (_FRAGMENT, src, 0, dst, 0)
    if proto == _ICMP:
        return (_ICMP if avail >= 4 else 0, src, 0, dst, 0)
    if proto == _IGMP:
        return (_IGMP if avail >= 8 else 0, src, 0, dst, 0)
    if proto in _PORTED_HEADER_LEN:
        return _ported(proto, b, sub, src, dst)
    if proto == _TSMP:
        # A fragmented TSMP message cannot be trusted.
        ok = not (frag & _MORE_FRAGMENTS) and avail >= 7
        return (_TSMP if ok else 0, src, 0, dst, 0)
    if proto == _FRAGMENT:
        # 255 is reserved for "later fragment"; a packet may not claim it.
        return (0, src, 0, dst, 0)
    return (proto, src, 0, dst, 0)


def _decode6(b: ByteView) -> RawKey:
    length = len(b)
    if length < 40:
        return _ZERO
    payload_length, proto, src, dst = _unpack_ipv6(b)
    if length < 40 + payload_length:
        return _ZERO
    # Always IPv6, even v4-mapped: the reference keeps the 16-byte form.
    sub = 40
    if proto == _IPV6_FRAGMENT:
        if length < 48:
            return (0, src, 0, dst, 0)
        proto = b[40]
        (frag,) = _unpack_u16(b, 42)
        offset = frag >> 3
        sub = 48
        if offset != 0:
            if offset < _MIN_FRAGMENT_BLOCKS:
                return (0, src, 0, dst, 0)
            return (_FRAGMENT, src, 0, dst, 0)
    avail = length - sub
    if proto == _ICMPV6:
        return (_ICMPV6 if avail >= 4 else 0, src, 0, dst, 0)
    if proto in _PORTED_HEADER_LEN:
        return _ported(proto, b, sub, src, dst)
    if proto == _TSMP:
        return (_TSMP if avail >= 7 else 0, src, 0, dst, 0)
    if proto == _FRAGMENT:
        return (0, src, 0, dst, 0)
    # Extension headers (hop-by-hop, routing, ...) are not walked.
    return (proto, src, 0, dst, 0)


def _decode_raw(b: ByteView) -> RawKey:
    if len(b) == 0:
        return _ZERO
    version = b[0] >> 4
    if version == 4:
        return _decode4(b)
    if version == 6:
        return _decode6(b)
    return _ZERO


@lru_cache(maxsize=4096)
def _ip(packed: bytes) -> Union[IPv4Address, IPv6Address]:
    if len(packed) == 4:
        return IPv4Address(packed)
    return IPv6Address(packed)


def _addrport(packed: Optional[bytes], port: int) -> AddrPort:
    return AddrPort(None if packed is None else _ip(packed), port)


def _connection(key: RawKey) -> Connection:
    if len(key) == 6:
        proto, src, sport, dst, dport, vni = key
        return Connection(proto, _addrport(src, sport), _addrport(dst, dport), vni)
    proto, src, sport, dst, dport = key
    return Connection(proto, _addrport(src, sport), _addrport(dst, dport))


def decode(packet: Any) -> Connection:
    """Decode one packet to (proto, src, dst) in tx orientation (docs/contract.md §4).

    The result is a :class:`Connection`, i.e. a ``tuple[int, AddrPort, AddrPort]``.
    """
    return _connection(_decode_raw(_byte_view(packet, "packet")))


def _swap(key: RawKey) -> RawKey:
    proto, src, sport, dst, dport = key[:5]
    return (proto, dst, dport, src, sport) + key[5:]


# --------------------------------------------------------------------------
# tunnels (docs/tunnels.md): the reference for src/core/decap.pxi, which the
# compiled core (connstats.decap) and the compiled capture scanner share.
# decap_walk reads only buf[at : at + min(avail, length)]: ``length`` is the
# packet's length as counted (for a packet cut by the snap length, its full
# IP length, docs/contract.md §5) and ``avail`` the bytes that were
# captured, so a header past the capture is never read but is truncated.


#: Tunnel kinds, as bits of the mask given to the scanner (``--decap`` names
#: in :mod:`connstats.capture.tunnels`).
TUNNEL_VXLAN = 1  # VXLAN (UDP 4789, and Linux's 8472) and VXLAN-GPE (4790, NSH inside)
TUNNEL_GENEVE = 2  # Geneve (UDP 6081), with options
TUNNEL_GRE = 4  # GRE (IP protocol 47): IP, Ethernet, MPLS inside; ERSPAN I/II/III
TUNNEL_IPIP = 8  # IP in IP: 4in4, 6in4 (protocols 4, 41 in IPv4), 4in6, 6in6
TUNNEL_MPLS_UDP = 16  # MPLS over UDP (UDP 6635)
TUNNEL_ALL = 31

#: Tunnel layers followed at most; a packet nested deeper counts as the
#: outer packet only (a packet that contains itself, crafted, stops here).
MAX_DEPTH = 8
#: IPv6 extension headers (hop-by-hop, routing, destination options) walked
#: at most in front of a tunnel header.
MAX_EXTENSIONS = 8

#: Results of :func:`decap`.
DECAP_NONE = 0  # not a tunnel (or not one enabled): counted as it is
DECAP_INNER = 1  # the innermost IP packet is at (offset, length)
DECAP_NO_IP = 2  # a tunnel whose payload is not IP (ARP, keepalives): physical only
DECAP_BAD = 3  # a malformed tunnel: counted as the outer packet only
#: VNI/key of a layer that has none.
NO_VNI = -1

# What one tunnel layer holds (internal).
_DC_NOT = 0  # not a tunnel: this IP packet is the innermost
_DC_IP = 1  # an IP packet
_DC_NONIP = 2  # something else, well formed
_DC_BAD = 3

_ETH_IPV4 = 0x0800
_ETH_IPV6 = 0x86DD
_ETH_MPLS = 0x8847
_ETH_MPLS_MULTICAST = 0x8848
_ETH_TEB = 0x6558  # transparent Ethernet bridging: an Ethernet frame
_ETH_ERSPAN_2 = 0x88BE  # ERSPAN type II (type I without GRE sequence numbers)
_ETH_ERSPAN_3 = 0x22EB
_ETH_CMD = 0x8909  # Cisco MetaData (security group tag)

_PORT_VXLAN = 4789
_PORT_VXLAN_LINUX = 8472  # the Linux kernel's default before IANA's number (flannel)
_PORT_VXLAN_GPE = 4790
_PORT_GENEVE = 6081
_PORT_MPLS_UDP = 6635


def _dc_be16(buf: ByteView, at: int) -> int:
    return (buf[at] << 8) | buf[at + 1]


def _dc_be24(buf: ByteView, at: int) -> int:
    return (buf[at] << 16) | (buf[at + 1] << 8) | buf[at + 2]


def _dc_be32(buf: ByteView, at: int) -> int:
    return (buf[at] << 24) | (buf[at + 1] << 16) | (buf[at + 2] << 8) | buf[at + 3]


_DcLayer = tuple[int, int, int, int, int]  # (what, start, end, vni, IP version wanted)


def _dc_ip_payload(buf: ByteView, p: int, end: int, lim: int) -> tuple[int, int, int]:
    """(protocol, start, end) of the payload of the IP packet ``buf[p:end]``.

    Protocol -1: no payload a tunnel could be in (not IPv4/IPv6, a header
    that does not fit or was not captured, a fragment).
    """
    if p >= lim:
        return -1, 0, 0
    version = buf[p] >> 4
    if version == 4:
        if p + 20 > lim:
            return -1, 0, 0
        hl = (buf[p] & 0x0F) * 4
        total = _dc_be16(buf, p + 2)
        if total == 0:
            total = end - p  # segmentation offload: the length is unknown
        if hl < 20 or hl > total or p + total > end or p + hl > lim:
            return -1, 0, 0
        if _dc_be16(buf, p + 6) & 0x3FFF:
            return -1, 0, 0  # a fragment: its payload is not a whole tunnel packet
        return buf[p + 9], p + hl, p + total
    if version == 6:
        if p + 40 > lim:
            return -1, 0, 0
        payload = _dc_be16(buf, p + 4)
        stop = p + 40 + payload if payload else end
        if stop > end:
            return -1, 0, 0
        proto = buf[p + 6]
        q = p + 40
        n = 0
        while proto == 0 or proto == 43 or proto == 60:
            n += 1
            if n > MAX_EXTENSIONS or q + 8 > lim or q + 8 > stop:
                return -1, 0, 0
            size = (buf[q + 1] + 1) * 8
            if q + size > stop:
                return -1, 0, 0
            proto = buf[q]
            q += size
        if proto == 44:
            return -1, 0, 0
        return proto, q, stop
    return -1, 0, 0


def _dc_mpls(buf: ByteView, at: int, end: int, lim: int, vni: int) -> _DcLayer:
    """A label stack down to the bottom-of-stack label, then IPv4 or IPv6."""
    bound = min(end, lim)
    while True:
        if at + 4 > bound:
            return _DC_BAD, 0, 0, vni, 0
        bottom = buf[at + 2] & 1
        at += 4
        if bottom:
            break
    if at >= bound:
        return _DC_BAD, 0, 0, vni, 0
    version = buf[at] >> 4
    if version == 4 or version == 6:
        return _DC_IP, at, end, vni, version
    return _DC_NONIP, 0, 0, vni, 0  # a pseudowire (control word, Ethernet), ...


def _dc_ethertype(
    buf: ByteView, etype: int, at: int, end: int, lim: int, vni: int
) -> _DcLayer:
    """What an EtherType at ``at`` carries: VLAN tags and Cisco MetaData are skipped."""
    bound = min(end, lim)
    while True:
        if etype == 0x8100 or etype == 0x88A8 or etype == 0x9100:
            if at + 4 > bound:
                return _DC_BAD, 0, 0, vni, 0
            etype = _dc_be16(buf, at + 2)
            at += 4
        elif etype == _ETH_CMD:
            # version, length, option, SGT, then the EtherType
            if at + 8 > bound:
                return _DC_BAD, 0, 0, vni, 0
            etype = _dc_be16(buf, at + 6)
            at += 8
        else:
            break
    if etype == _ETH_IPV4:
        return _DC_IP, at, end, vni, 4
    if etype == _ETH_IPV6:
        return _DC_IP, at, end, vni, 6
    if etype == _ETH_MPLS or etype == _ETH_MPLS_MULTICAST:
        return _dc_mpls(buf, at, end, lim, vni)
    return _DC_NONIP, 0, 0, vni, 0


def _dc_ether(buf: ByteView, at: int, end: int, lim: int, vni: int) -> _DcLayer:
    if at + 14 > min(end, lim):
        return _DC_BAD, 0, 0, vni, 0
    return _dc_ethertype(buf, _dc_be16(buf, at + 12), at + 14, end, lim, vni)


def _dc_gre(buf: ByteView, at: int, end: int, lim: int) -> _DcLayer:
    bound = min(end, lim)
    if at + 4 > bound:
        return _DC_BAD, 0, 0, NO_VNI, 0
    flags = _dc_be16(buf, at)
    ptype = _dc_be16(buf, at + 2)
    if flags & 0x0007:
        return (
            _DC_NOT,
            0,
            0,
            NO_VNI,
            0,
        )  # version 1 is PPTP's enhanced GRE: not a tunnel here
    if flags & 0x4000:
        return _DC_BAD, 0, 0, NO_VNI, 0  # RFC 1701 source routing: not supported
    hl = 4
    if flags & 0x8000:
        hl += 4  # checksum and reserved
    vni = NO_VNI
    if flags & 0x2000:
        if at + hl + 4 > bound:
            return _DC_BAD, 0, 0, NO_VNI, 0
        vni = _dc_be32(buf, at + hl)
        hl += 4
    sequence = flags & 0x1000
    if sequence:
        hl += 4
    body = at + hl
    if body > bound:
        return _DC_BAD, 0, 0, vni, 0
    if ptype == _ETH_TEB:
        return _dc_ether(buf, body, end, lim, vni)
    if ptype == _ETH_ERSPAN_2:
        if not sequence:
            return _dc_ether(buf, body, end, lim, vni)  # type I: no ERSPAN header
        if body + 8 > bound or buf[body] >> 4 != 1:
            return _DC_BAD, 0, 0, vni, 0
        return _dc_ether(buf, body + 8, end, lim, _dc_be16(buf, body + 2) & 0x3FF)
    if ptype == _ETH_ERSPAN_3:
        if body + 12 > bound or buf[body] >> 4 != 2:
            return _DC_BAD, 0, 0, vni, 0
        session = _dc_be16(buf, body + 2) & 0x3FF
        frame_type = (buf[body + 10] >> 2) & 0x1F
        hl = 20 if buf[body + 11] & 1 else 12  # with the platform-specific subheader
        if body + hl > bound:
            return _DC_BAD, 0, 0, session, 0
        if frame_type == 0:
            return _dc_ether(buf, body + hl, end, lim, session)
        if frame_type == 2:
            return _DC_IP, body + hl, end, session, 0
        return _DC_NONIP, 0, 0, session, 0
    if ptype == _ETH_CMD:
        # In GRE the EtherType comes first, then version, length, option, SGT.
        if body + 8 > bound:
            return _DC_BAD, 0, 0, vni, 0
        return _dc_ethertype(buf, _dc_be16(buf, body), body + 8, end, lim, vni)
    return _dc_ethertype(buf, ptype, body, end, lim, vni)


def _dc_nsh(buf: ByteView, at: int, end: int, lim: int, vni: int) -> _DcLayer:
    """Network Service Header (RFC 8300), as VXLAN-GPE carries it."""
    bound = min(end, lim)
    if at + 8 > bound or buf[at] >> 6 != 0:
        return _DC_BAD, 0, 0, vni, 0
    hl = (buf[at + 1] & 0x3F) * 4
    if hl < 8 or at + hl > bound:
        return _DC_BAD, 0, 0, vni, 0
    return _dc_next_protocol(buf, buf[at + 3], at + hl, end, lim, vni, False)


def _dc_next_protocol(
    buf: ByteView, proto: int, at: int, end: int, lim: int, vni: int, nsh: bool
) -> _DcLayer:
    """The next-protocol numbers of VXLAN-GPE and NSH."""
    if proto == 1:
        return _DC_IP, at, end, vni, 4
    if proto == 2:
        return _DC_IP, at, end, vni, 6
    if proto == 3:
        return _dc_ether(buf, at, end, lim, vni)
    if proto == 4 and nsh:
        return _dc_nsh(buf, at, end, lim, vni)
    if proto == 5:
        return _dc_mpls(buf, at, end, lim, vni)
    return _DC_NONIP, 0, 0, vni, 0


def _dc_udp(buf: ByteView, at: int, end: int, lim: int, mask: int) -> _DcLayer:
    if at + 8 > lim or at + 8 > end:
        return _DC_NOT, 0, 0, NO_VNI, 0
    port = _dc_be16(buf, at + 2)
    if port == _PORT_VXLAN or port == _PORT_VXLAN_LINUX:
        kind = TUNNEL_VXLAN
    elif port == _PORT_VXLAN_GPE:
        kind = TUNNEL_VXLAN
    elif port == _PORT_GENEVE:
        kind = TUNNEL_GENEVE
    elif port == _PORT_MPLS_UDP:
        kind = TUNNEL_MPLS_UDP
    else:
        return _DC_NOT, 0, 0, NO_VNI, 0
    if not mask & kind:
        return _DC_NOT, 0, 0, NO_VNI, 0
    size = _dc_be16(buf, at + 4)
    if size == 0:
        size = end - at  # a jumbogram or segmentation offload: to the IP end
    if size < 8 or at + size > end:
        return _DC_BAD, 0, 0, NO_VNI, 0
    end = at + size
    body = at + 8
    bound = min(end, lim)
    if kind == TUNNEL_MPLS_UDP:
        return _dc_mpls(buf, body, end, lim, NO_VNI)
    if body + 8 > bound:
        return _DC_BAD, 0, 0, NO_VNI, 0
    flags = buf[body]
    if kind == TUNNEL_GENEVE:
        if flags >> 6 != 0:
            return _DC_BAD, 0, 0, NO_VNI, 0
        hl = 8 + (flags & 0x3F) * 4
        vni = _dc_be24(buf, body + 4)
        if body + hl > bound:
            return _DC_BAD, 0, 0, vni, 0
        ptype = _dc_be16(buf, body + 2)
        if ptype == _ETH_TEB:
            return _dc_ether(buf, body + hl, end, lim, vni)
        return _dc_ethertype(buf, ptype, body + hl, end, lim, vni)
    if port == _PORT_VXLAN_GPE:
        if (flags >> 4) & 3:
            return _DC_BAD, 0, 0, NO_VNI, 0  # GPE version 0 only
        vni = _dc_be24(buf, body + 4) if flags & 0x08 else NO_VNI
        proto = buf[body + 3] if flags & 0x04 else 3
        return _dc_next_protocol(buf, proto, body + 8, end, lim, vni, True)
    if not flags & 0x08:
        return _DC_BAD, 0, 0, NO_VNI, 0  # VXLAN without its I flag: no VNI
    return _dc_ether(buf, body + 8, end, lim, _dc_be24(buf, body + 4))


def _dc_layer(
    buf: ByteView, proto: int, at: int, end: int, lim: int, mask: int
) -> _DcLayer:
    """The tunnel, if any, whose header starts the IP payload ``buf[at:end]``."""
    if proto == 17:
        return _dc_udp(buf, at, end, lim, mask)
    if proto == 47 and mask & TUNNEL_GRE:
        return _dc_gre(buf, at, end, lim)
    if proto == 4 and mask & TUNNEL_IPIP:
        return _DC_IP, at, end, NO_VNI, 4
    if proto == 41 and mask & TUNNEL_IPIP:
        return _DC_IP, at, end, NO_VNI, 6
    return _DC_NOT, 0, 0, NO_VNI, 0


def _dc_inner(buf: ByteView, at: int, end: int, lim: int, version: int) -> int:
    """Length of the inner IP packet at ``at`` (trailing padding left out); -1 if bad.

    Its IP header must be whole and captured, and its length must fit in what
    carries it; a length of 0 means "unknown" (segmentation offload) and
    takes all of it.
    """
    if at >= end or at >= lim:
        return -1
    found = buf[at] >> 4
    if version and found != version:
        return -1
    if found == 4:
        if at + 20 > end or at + 20 > lim:
            return -1
        hl = (buf[at] & 0x0F) * 4
        total = _dc_be16(buf, at + 2)
        if total == 0:
            total = end - at
        if hl < 20 or hl > total or at + total > end:
            return -1
        return total
    if found == 6:
        if at + 40 > end or at + 40 > lim:
            return -1
        payload = _dc_be16(buf, at + 4)
        total = 40 + payload if payload else end - at
        if at + total > end:
            return -1
        return total
    return -1


def _dc_captured(buf: ByteView, at: int, total: int, lim: int) -> bool:
    """Were the bytes docs/contract.md §4 reads of ``buf[at:at+total]`` captured?"""
    if buf[at] >> 4 == 4:
        sub = (buf[at] & 0x0F) * 4
        proto = buf[at + 9]
        if _dc_be16(buf, at + 6) & 0x1FFF:
            proto = -1  # a later fragment: no transport header is read
    else:
        sub = 40
        proto = buf[at + 6]
        if proto == 44 and total >= 48:
            if at + 48 > lim:
                return False
            sub = 48
            proto = buf[at + 40] if not _dc_be16(buf, at + 42) >> 3 else -1
    header = _PORTED_HEADER_LEN.get(proto, 0)
    if header and total - sub >= header:
        return at + sub + 4 <= lim
    return True


def decap_walk(
    buf: ByteView, at: int, avail: int, length: int, mask: int
) -> tuple[int, int, int, int, int]:
    """Decapsulate the IP packet ``buf[at:at+length]`` of which ``avail`` bytes were captured.

    Returns ``(result, offset, length, outer_vni, inner_vni)``: for
    ``DECAP_INNER`` the innermost IP packet is ``buf[offset:offset+length]``;
    ``outer_vni`` is the VNI or key of the outermost tunnel (the physical
    row's), ``inner_vni`` that of the innermost tunnel that has one (the
    virtual row's); ``NO_VNI`` where there is none.
    """
    lim = at + min(avail, length)
    cur = at
    cur_end = at + length
    depth = 0
    outer_vni = NO_VNI
    inner_vni = NO_VNI
    while True:
        proto, pay, pay_end = _dc_ip_payload(buf, cur, cur_end, lim)
        what, start, stop, vni, version = _DC_NOT, 0, 0, NO_VNI, 0
        if proto >= 0:
            what, start, stop, vni, version = _dc_layer(
                buf, proto, pay, pay_end, lim, mask
            )
        if what == _DC_NOT:
            if depth == 0:
                return DECAP_NONE, 0, 0, NO_VNI, NO_VNI
            break
        if what == _DC_BAD:
            return DECAP_BAD, 0, 0, NO_VNI, NO_VNI
        depth += 1
        if depth > MAX_DEPTH:
            return DECAP_BAD, 0, 0, NO_VNI, NO_VNI
        if depth == 1:
            outer_vni = vni
        if what == _DC_NONIP:
            if depth == 1:
                return DECAP_NO_IP, 0, 0, outer_vni, NO_VNI
            break  # the IP packet that carries it is the innermost
        size = _dc_inner(buf, start, stop, lim, version)
        if size < 0:
            return DECAP_BAD, 0, 0, NO_VNI, NO_VNI
        if vni != NO_VNI:
            inner_vni = vni
        cur = start
        cur_end = start + size
    if not _dc_captured(buf, cur, cur_end - cur, lim):
        return DECAP_BAD, 0, 0, NO_VNI, NO_VNI
    return DECAP_INNER, cur, cur_end - cur, outer_vni, inner_vni


def decap(packet: Any, mask: int = TUNNEL_ALL) -> Decapsulated:
    """The tunnel around one IP packet: a Decapsulated (outer, offset, length, vni)."""
    if isinstance(mask, bool) or not isinstance(mask, int):
        raise TypeError(f"tunnels: expected an int, got {_type_name(mask)}")
    if not 0 <= mask <= TUNNEL_ALL:
        raise ValueError(f"tunnels: {mask} is not a set of tunnel kinds")
    view = _byte_view(packet, "packet")
    n = len(view)
    found, offset, length, outer_vni, inner_vni = decap_walk(view, 0, n, n, mask)
    if found != DECAP_INNER and found != DECAP_NO_IP:
        return Decapsulated(None, 0, n, None)
    proto, src, sport, dst, dport = _decode_raw(view)
    key = (
        (proto, src, sport, dst, dport)
        if outer_vni < 0
        else (proto, src, sport, dst, dport, outer_vni)
    )
    outer = _connection(key)
    if found == DECAP_NO_IP:
        return Decapsulated(outer, 0, 0, None)
    return Decapsulated(outer, offset, length, None if inner_vni < 0 else inner_vni)


def decap_split(buffer: Any, offsets: Any, lengths: Any, mask: int) -> tuple[Any, ...]:
    """Sort whole packets by what they hold (see the compiled core's decap_split)."""
    if isinstance(mask, bool) or not isinstance(mask, int):
        raise TypeError(f"mask: expected an int, got {_type_name(mask)}")
    if not 0 <= mask <= TUNNEL_ALL:
        raise ValueError(f"mask: {mask} is not a set of tunnel kinds")
    view = _byte_view(buffer, "buffer")
    starts = _int_list(offsets, "offsets")
    sizes = _int_list(lengths, "lengths")
    if len(starts) != len(sizes):
        raise ValueError(
            f"lengths: has {len(sizes)} items but offsets has {len(starts)}"
        )
    for i, (start, n) in enumerate(zip(starts, sizes)):
        if start > len(view) or n > len(view) - start:
            raise ValueError(
                f"offsets[{i}]/lengths[{i}]: packet {start}..{start + n} "
                f"is beyond the buffer's {len(view)} bytes"
            )
    out = [array("q") for _ in range(8)]
    po, pl, io, il, iv, oo, ol, ov = out
    bad = 0
    for start, n in zip(starts, sizes):
        found, inner, size, outer_vni, inner_vni = decap_walk(view, start, n, n, mask)
        if found == DECAP_INNER or found == DECAP_NO_IP:
            oo.append(start)
            ol.append(n)
            ov.append(outer_vni)
            if found == DECAP_INNER:
                io.append(inner)
                il.append(size)
                iv.append(inner_vni)
            continue
        if found == DECAP_BAD:
            bad += 1
        po.append(start)
        pl.append(n)
    return (*out, bad)


def _record_address(i: int, side: str, family: int, raw: bytes) -> Optional[bytes]:
    # Padding must be zero: the same connection given with and without
    # garbage there must be one connection (the compiled core compares the
    # raw bytes).
    if family == 4:
        if any(raw[4:]):
            raise ValueError(
                f"records[{i}]: {side} address bytes beyond its family's length "
                "must be zero"
            )
        return raw[:4]
    if family == 6:
        return raw
    if family == 0:
        if any(raw):
            raise ValueError(
                f"records[{i}]: {side} address bytes beyond its family's length "
                "must be zero"
            )
        return None
    raise ValueError(f"records[{i}]: {side} family must be 0 (no address), 4 or 6")


def _record_entry(
    i: int, fields: tuple[Any, ...]
) -> tuple[bool, bool, RawKey, int, int]:
    """One unpacked record as a ``(physical, rx, key, packets, bytes)`` entry."""
    proto, flags, sfam, dfam, sport, dport, src, dst, packets, nbytes = fields
    if flags & ~_RECORD_FLAGS:
        raise ValueError(
            f"records[{i}]: flags has bits other than RECORD_RECEIVE (1) and "
            "RECORD_PHYSICAL (2)"
        )
    key: RawKey = (
        proto,
        _record_address(i, "src", sfam, src),
        sport,
        _record_address(i, "dst", dfam, dst),
        dport,
    )
    return (
        bool(flags & RECORD_PHYSICAL),
        bool(flags & RECORD_RECEIVE),
        key,
        packets,
        nbytes,
    )


# --------------------------------------------------------------------------
# windows and the core


class Window:
    """The counters of one window, cut out of a :class:`Core`.

    A window is never modified after it has been cut, so its methods need no
    lock.  Counters are stored as ``[tx_packets, tx_bytes, rx_packets,
    rx_bytes]`` lists keyed by raw keys, followed by the first and last time
    (ns) in a window that tracks times.
    """

    __slots__ = ("start", "end", "track_times", "_generation", "_virtual", "_physical")

    def __init__(self, generation: int, start: float) -> None:
        self.start: float = start
        self.end: float = start
        #: True if the counts carry first/last times (TimedCounts); the core
        #: sets it on the windows it opens.
        self.track_times = False
        self._generation = generation
        self._virtual: dict[RawKey, list[int]] = {}
        self._physical: dict[RawKey, list[int]] = {}

    def __len__(self) -> int:
        return len(self._virtual) + len(self._physical)

    @property
    def generation(self) -> int:
        """The number the core gave this window when it started."""
        return self._generation

    def __repr__(self) -> str:
        return (
            f"<Window {len(self._virtual)} virtual, {len(self._physical)} "
            f"physical, {self.packets} packets, {self.bytes} bytes>"
        )

    def _counters(self) -> Iterable[list[int]]:
        yield from self._virtual.values()
        yield from self._physical.values()

    @property
    def packets(self) -> int:
        """Packets counted in this window (tx + rx, modulo 2**64 like the counters)."""
        return sum(c[0] + c[2] for c in self._counters()) & _U64

    @property
    def bytes(self) -> int:
        """Bytes counted in this window (tx + rx, modulo 2**64 like the counters)."""
        return sum(c[1] + c[3] for c in self._counters()) & _U64

    def to_dicts(self) -> tuple[dict[Connection, Counts], dict[Connection, Counts]]:
        """Return fresh ``(virtual, physical)`` dicts of user-facing values."""
        virtual: dict[Connection, Counts] = {}
        physical: dict[Connection, Counts] = {}
        for _ in self.materialize_slices(virtual, physical):
            pass
        return virtual, physical

    def materialize_slices(
        self, virtual: dict[Connection, Counts], physical: dict[Connection, Counts]
    ) -> Iterator[None]:
        """Fill ``virtual`` and ``physical``; one slice (this core is Python,
        so the eval loop already hands the GIL over as it goes)."""
        _require_dict(virtual, "virtual")
        _require_dict(physical, "physical")
        value = _timed_value if self.track_times else _plain_value
        virtual.update((_connection(k), value(c)) for k, c in self._virtual.items())
        physical.update((_connection(k), value(c)) for k, c in self._physical.items())
        yield


def _plain_value(c: list[int]) -> Counts:
    return Counts(*c)


def _timed_value(c: list[int]) -> Counts:
    return TimedCounts(c[0], c[1], c[2], c[3], first_ns=c[4], last_ns=c[5])


class Core:
    """One connection table with its window bookkeeping, safe from any thread.

    ``max_conns`` bounds the connections of a window (0 = unbounded); windows
    cut by that bound wait in a queue of at most ``max_pending`` windows and
    ``max_pending_conns`` connections (one window is always accepted) for
    :meth:`pop_pending`, and are dropped (and counted in ``dropped_*``) when
    the queue is full, so that the packet path never blocks.
    """

    def __init__(
        self,
        max_conns: int = 0,
        ignore_destinations: Iterable[bytes | str | IPv4Address | IPv6Address] = (),
        max_pending: int = 1024,
        max_pending_conns: int = 1 << 21,
        track_times: bool = False,
    ) -> None:
        if hasattr(self, "_lock"):
            # Re-running __init__ would empty a live table: counts lost.
            raise TypeError("Core objects cannot be initialised twice")
        self._max_conns = _non_negative_int(max_conns, "max_conns")
        self._max_pending = _non_negative_int(max_pending, "max_pending")
        self._max_pending_conns = _non_negative_int(
            max_pending_conns, "max_pending_conns"
        )
        for name, value in (
            ("max_pending", self._max_pending),
            ("max_pending_conns", self._max_pending_conns),
        ):
            if value < 1:
                # A queue that can hold nothing would silently turn every
                # max_conns cut into a drop; refuse the setting instead.
                raise ValueError(f"{name}: must be >= 1, got {value}")
        try:
            addresses = list(ignore_destinations)
        except TypeError:
            raise TypeError(
                "ignore_destinations: expected an iterable of addresses, "
                f"got {_type_name(ignore_destinations)}"
            ) from None
        # Packed bytes are the documented form; packed_address() also takes
        # str and ipaddress objects, which is what Statistics passes through.
        self._ignore = frozenset(
            packed_address(addr, f"ignore_destinations[{i}]")
            for i, addr in enumerate(addresses)
        )
        if not isinstance(track_times, bool):
            raise TypeError(
                f"track_times: expected a bool, got {_type_name(track_times)}"
            )
        self._track_times = track_times
        self._reset()

    def _reset(self) -> None:
        """Fresh lock, event and empty state (construction and after fork)."""
        # Re-entrant: a signal handler may call into the core (shutdown()
        # closes it) while its thread is inside a locked section.
        self._lock = threading.RLock()
        # The wake-up is a bare lock used as a binary semaphore (released =
        # a notification is pending), as in the compiled core: a notify()
        # that happens while the waiter is busy is kept, and taking or giving
        # it is one C call, so neither a signal handler nor an exception
        # raised by one (Ctrl-C) can land inside it the way they can inside
        # threading.Event's Python-level Condition and leave it locked.
        self._signal = _thread.allocate_lock()
        self._signal.acquire()
        self._closed = False
        # None while no connection has been counted since the last cut.
        self._window: Optional[Window] = None
        self._next_generation = 0
        self._pending: deque[Window] = deque()
        self._pending_conns = 0
        self._dropped_windows = 0
        self._dropped_packets = 0
        self._dropped_bytes = 0

    # -- counting ----------------------------------------------------------

    def _open_window(self) -> Window:
        window = Window(self._next_generation, time.time())
        window.track_times = self._track_times
        self._next_generation += 1
        self._window = window
        return window

    def _retire(self, window: Window) -> None:
        """Queue a window cut by max_conns, or drop it if the queue is full."""
        window.end = time.time()
        if not self._pending or (
            len(self._pending) < self._max_pending
            and self._pending_conns + len(window) <= self._max_pending_conns
        ):
            self._pending.append(window)
            self._pending_conns += len(window)
        else:
            self._dropped_windows += 1
            self._dropped_packets = (self._dropped_packets + window.packets) & _U64
            self._dropped_bytes = (self._dropped_bytes + window.bytes) & _U64

    def _add_locked(
        self,
        physical: bool,
        column: int,
        key: RawKey,
        n: int,
        packets: int = 1,
        t: int = 0,
    ) -> bool:
        """Add ``packets`` packets of ``n`` bytes in all, at time ``t`` (ns), to
        ``key``; the caller holds the lock.

        ``column`` is 0 for tx and 2 for rx; ``key`` is already oriented (rx
        swap done).  Returns whether the waiter must be notified.
        """
        notify = False
        window = self._window
        counters = None
        if window is not None:
            table = window._physical if physical else window._virtual
            counters = table.get(key)
        if counters is None:
            # ignore_destinations is checked on insertion only, as in the
            # compiled core: an ignored connection is never in a table.
            # Virtual traffic only, as the reference: a WireGuard peer's
            # endpoint is counted even if it is in ignore_destinations.
            if not physical and key[3] in self._ignore:
                return False
            if window is None:
                window = self._open_window()
                notify = True
                table = window._physical if physical else window._virtual
            if self._max_conns and len(window) + 1 > self._max_conns:
                self._retire(window)
                window = self._open_window()
                notify = True
                table = window._physical if physical else window._virtual
            counters = table[key] = [0, 0, 0, 0]
            if window.track_times:
                counters += (t, t)
        assert window is not None  # counters are in it
        counters[column] = (counters[column] + packets) & _U64
        counters[column + 1] = (counters[column + 1] + n) & _U64
        if window.track_times:
            # min/max: the packets of a merged capture may come out of order
            if t < counters[4]:
                counters[4] = t
            if t > counters[5]:
                counters[5] = t
        return notify

    def _count_one(
        self, physical: bool, rx: bool, key: RawKey, n: int, packets: int = 1
    ) -> None:
        self._count_entries(((physical, rx, key, packets, n),))

    def _count(
        self,
        physical: bool,
        rx: bool,
        entries: Iterable[tuple[RawKey, int]],
        times: Optional[Sequence[int]] = None,
    ) -> None:
        """``_count_one`` for many entries, in order, under one lock.

        ``times``: each entry's time (ns); without them, a core that tracks
        times counts the whole call at the wall-clock time.
        """
        self._count_entries(((physical, rx, key, 1, n) for key, n in entries), times)

    def _count_entries(
        self,
        entries: Iterable[tuple[bool, bool, RawKey, int, int]],
        times: Optional[Sequence[int]] = None,
    ) -> None:
        """Count ``(physical, rx, key, packets, bytes)`` entries, in order,
        under one lock (``times`` as for :meth:`_count`)."""
        notify = False
        opened = self._next_generation
        now = time.time_ns() if self._track_times and times is None else 0
        try:
            with self._lock:
                # Checked under the lock: nothing may be counted once close()
                # has returned.
                if self._closed:
                    return
                for i, (physical, rx, key, packets, n) in enumerate(entries):
                    t = now if times is None else times[i]
                    notify |= self._add_locked(
                        physical, 2 if rx else 0, key, n, packets, t
                    )
        finally:
            # Outside the lock: the waiter takes it right after waking up.
            # Also when an entry failed (MemoryError): a window this call
            # opened must still wake the waiter.
            if notify or self._next_generation != opened:
                self._notify()

    # After close() a call counts nothing, but its arguments are checked
    # first, as before close(): a bad call raises whenever it is made (the
    # compiled core does the same).

    def _virtual(self, packet: Any, rx: bool) -> None:
        view = _byte_view(packet, "packet")
        if self._closed:
            return
        key = _decode_raw(view)
        if rx:
            key = _swap(key)
        self._count_one(False, rx, key, len(view))

    def _virtual_batch(self, packets: Any, rx: bool) -> None:
        views = _packet_list(packets, "packets")
        if self._closed:
            return
        self._count(False, rx, self._keys(views, rx))

    def _virtual_buffer(
        self,
        buffer: Any,
        offsets: Any,
        lengths: Any,
        rx: bool,
        times: Any = None,
        vnis: Any = None,
        physical: bool = False,
    ) -> None:
        view = _byte_view(buffer, "buffer")
        if isinstance(view, bytes):
            # Slicing bytes would copy every packet; a memoryview does not.
            view = memoryview(view)
        starts = _int_list(offsets, "offsets")
        sizes = _int_list(lengths, "lengths")
        if len(starts) != len(sizes):
            raise ValueError(
                f"lengths: has {len(sizes)} items but offsets has {len(starts)}"
            )
        tags = None if vnis is None else _vni_list(vnis, len(starts))
        stamps = None if times is None else _times_list(times, len(starts))
        size = len(view)
        for i, (start, n) in enumerate(zip(starts, sizes)):
            if start + n > size:
                raise ValueError(
                    f"offsets[{i}]: packet {start}..{start + n} (lengths[{i}] = "
                    f"{n}) extends beyond the end of buffer ({size} bytes)"
                )
        if self._closed:
            return
        views = [view[start : start + n] for start, n in zip(starts, sizes)]
        entries = self._keys(views, rx)
        if tags is not None:
            entries = [
                ((*key, vni), n) if vni >= 0 else (key, n)
                for (key, n), vni in zip(entries, tags)
            ]
        self._count(physical, rx, entries, stamps)

    @staticmethod
    def _keys(views: Sequence[ByteView], rx: bool) -> list[tuple[RawKey, int]]:
        # Decode everything before taking the lock, as the compiled core does.
        entries = []
        for view in views:
            key = _decode_raw(view)
            if rx:
                key = _swap(key)
            entries.append((key, len(view)))
        return entries

    def _physical(self, src: Any, dst: Any, n: Any, rx: bool, packets: Any) -> None:
        # All are validated before anything is counted, and even once closed,
        # as the virtual entry points are: a bad call raises whenever it is made.
        src_packed = packed_address(src, "src")
        dst_packed, dst_port = packed_addrport(dst, "dst")
        nbytes = byte_count(n, "n")
        npkts = packet_count(packets, "packets")
        if self._closed:
            return
        key: RawKey = (0, src_packed, 0, dst_packed, dst_port)
        self._count_one(True, rx, key, nbytes, npkts)

    def _preparsed(
        self,
        proto: Any,
        src: Any,
        dst: Any,
        packets: Any,
        nbytes: Any,
        receive: Any,
        physical: bool,
    ) -> None:
        # In the compiled core's order, so that a call with several bad
        # arguments names the same one.
        number = protocol_number(proto, "proto")
        src_packed, sport = packed_endpoint(src, "src")
        dst_packed, dport = packed_endpoint(dst, "dst")
        npkts = packet_count(packets, "packets")
        size = byte_count(nbytes, "bytes")
        rx = direction(receive, "receive")
        if self._closed:  # checked all the same, as the compiled core does
            return
        # No swap: the connection is counted as the caller gives it.
        key: RawKey = (number, src_packed, sport, dst_packed, dport)
        self._count_one(physical, rx, key, size, npkts)

    def _records(self, records: Any) -> None:
        if isinstance(records, str):
            raise TypeError("records: expected a bytes-like object, got str")
        view = _byte_view(records, "records")
        if len(view) % RECORD_SIZE:
            raise ValueError(
                f"records: {len(view)} bytes is not a whole number of "
                f"{RECORD_SIZE}-byte records"
            )
        # Copied once: every record is checked, then counted from the copy.
        entries = [
            _record_entry(i, fields)
            for i, fields in enumerate(_RECORD.iter_unpack(bytes(view)))
        ]
        if self._closed:  # checked all the same, as the compiled core does
            return
        self._count_entries(entries)

    def update_virtual(
        self,
        proto: Any,
        src: Any,
        dst: Any,
        packets: Any,
        bytes: Any,
        receive: Any = False,
    ) -> None:
        """Count packets of the virtual connection ``(proto, src, dst)`` as given."""
        self._preparsed(proto, src, dst, packets, bytes, receive, False)

    def update_physical(
        self,
        proto: Any,
        src: Any,
        dst: Any,
        packets: Any,
        bytes: Any,
        receive: Any = False,
    ) -> None:
        """Count packets of the physical connection ``(proto, src, dst)`` as given."""
        self._preparsed(proto, src, dst, packets, bytes, receive, True)

    def update_records(self, records: Any) -> None:
        """Count a buffer of ``RECORD_SIZE``-byte records; all or nothing."""
        self._records(records)

    def update_tx_virtual(self, packet: Any) -> None:
        """Count one transmitted IP packet."""
        self._virtual(packet, False)

    def update_rx_virtual(self, packet: Any) -> None:
        """Count one received IP packet (src and dst swapped in the key)."""
        self._virtual(packet, True)

    def update_tx_physical(
        self, src: Any, dst: Any, n: Any, *, packets: Any = 1
    ) -> None:
        """Count ``packets`` transmitted physical packets of ``n`` bytes in all."""
        self._physical(src, dst, n, False, packets)

    def update_rx_physical(
        self, src: Any, dst: Any, n: Any, *, packets: Any = 1
    ) -> None:
        """Count ``packets`` received physical packets of ``n`` bytes in all (no swap)."""
        self._physical(src, dst, n, True, packets)

    def update_tx_virtual_batch(self, packets: Any) -> None:
        """Count a sequence of transmitted packets; all or nothing on bad input."""
        self._virtual_batch(packets, False)

    def update_rx_virtual_batch(self, packets: Any) -> None:
        """Count a sequence of received packets; all or nothing on bad input."""
        self._virtual_batch(packets, True)

    def update_tx_virtual_buffer(
        self, buffer: Any, offsets: Any, lengths: Any, vnis: Any = None
    ) -> None:
        """Count transmitted packets ``buffer[offsets[i]:offsets[i] + lengths[i]]``;
        ``vnis``: the VNI or key of each one's tunnel (-1: none), or None."""
        self._virtual_buffer(buffer, offsets, lengths, False, vnis=vnis)

    def update_rx_virtual_buffer(
        self, buffer: Any, offsets: Any, lengths: Any, vnis: Any = None
    ) -> None:
        """Count received packets ``buffer[offsets[i]:offsets[i] + lengths[i]]``."""
        self._virtual_buffer(buffer, offsets, lengths, True, vnis=vnis)

    def update_tx_physical_buffer(
        self,
        buffer: Any,
        offsets: Any,
        lengths: Any,
        vnis: Any = None,
        times: Any = None,
    ) -> None:
        """Count transmitted packets as physical traffic, each under its own
        decoded connection (the outer packets of decapsulated tunnels);
        ``times`` as for :meth:`update_tx_virtual_buffer_at`, or None."""
        self._virtual_buffer(buffer, offsets, lengths, False, times, vnis, True)

    def update_rx_physical_buffer(
        self,
        buffer: Any,
        offsets: Any,
        lengths: Any,
        vnis: Any = None,
        times: Any = None,
    ) -> None:
        """Count received packets as physical traffic (see update_tx_physical_buffer)."""
        self._virtual_buffer(buffer, offsets, lengths, True, times, vnis, True)

    def update_tx_virtual_buffer_at(
        self, buffer: Any, offsets: Any, lengths: Any, times: Any, vnis: Any = None
    ) -> None:
        """``update_tx_virtual_buffer`` with each packet's time: ``times[i]``
        in ns since the epoch (a buffer of int64, format 'q').  The times are
        kept only by a core that tracks them (the capture replay's)."""
        if times is None:
            raise TypeError("times: expected a buffer of int64, got None")
        self._virtual_buffer(buffer, offsets, lengths, False, times, vnis)

    def update_rx_virtual_buffer_at(
        self, buffer: Any, offsets: Any, lengths: Any, times: Any, vnis: Any = None
    ) -> None:
        """``update_rx_virtual_buffer`` with each packet's time (see the tx one)."""
        if times is None:
            raise TypeError("times: expected a buffer of int64, got None")
        self._virtual_buffer(buffer, offsets, lengths, True, times, vnis)

    # -- window management -------------------------------------------------

    def cut(self, generation: int = -1) -> Optional[Window]:
        """Swap out the open window and return it; None if it is empty.

        With ``generation >= 0``, only cut if the open window is still that
        generation, so that a periodic flush racing a max_conns cut does not
        cut the fresh window early.
        """
        generation = operator.index(generation)
        with self._lock:
            window = self._window
            if window is None:
                return None
            if generation >= 0 and window._generation != generation:
                return None
            self._window = None
            window.end = time.time()
            return window

    def window_info(self) -> Optional[tuple[int, float]]:
        """``(generation, start)`` of the open window, None if it is empty."""
        with self._lock:
            window = self._window
            if window is None:
                return None
            return (window._generation, window.start)

    def pop_pending(self) -> Optional[Window]:
        """The oldest window cut by max_conns that was not handed out yet."""
        with self._lock:
            if self._pending:
                window = self._pending.popleft()
                self._pending_conns -= len(window)
                return window
            return None

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until notified (True) or until ``timeout`` seconds pass (False).

        A notification sent while nobody waits is kept for the next wait().
        """
        if timeout is None:
            return self._signal.acquire()
        # clamped like the compiled core's wait: callers loop anyway
        return self._signal.acquire(True, max(0.0, min(float(timeout), 2000.0)))

    def _notify(self) -> None:
        try:
            self._signal.release()
        except RuntimeError:
            pass  # already released: a notification is pending

    def notify(self) -> None:
        """Wake the waiter."""
        self._notify()

    def close(self) -> None:
        """Drop every later update; the open window stays available to cut()."""
        with self._lock:
            self._closed = True
        # Wake the flush thread so it notices the shutdown promptly.
        self._notify()

    def _after_fork_in_child(self) -> None:
        """Start the child of a fork() from an empty table.

        The parent's lock may have been held by another thread at fork time,
        so it is replaced, never released; the parent's counts stay with the
        parent (they would otherwise be reported twice).
        """
        closed = self._closed
        self._reset()
        self._closed = closed

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        """Windows cut by max_conns waiting for pop_pending()."""
        with self._lock:
            return len(self._pending)

    @property
    def dropped_windows(self) -> int:
        """Windows lost because the pending queue was full."""
        with self._lock:
            return self._dropped_windows

    @property
    def dropped_packets(self) -> int:
        """Packets of the windows lost because the pending queue was full."""
        with self._lock:
            return self._dropped_packets

    @property
    def dropped_bytes(self) -> int:
        """Bytes of the windows lost because the pending queue was full."""
        with self._lock:
            return self._dropped_bytes

    @property
    def connections(self) -> int:
        """Connections in the open window."""
        with self._lock:
            window = self._window
            return 0 if window is None else len(window)


class CountingMethods:
    """Base of connstats.Statistics: its per-packet counting methods.

    The compiled twin calls its core in C; here each method calls the core's
    method of the same name.  Statistics stores the core's bound methods on
    the instance when the core is this module's, so these serve unbound calls
    (``Statistics.update_tx_virtual(stats, packet)``).
    """

    _counting_core: Any = None

    def _attach_core(self, core: Any) -> bool:
        """Route the counting methods to ``core``; once per instance."""
        if self._counting_core is not None:
            raise RuntimeError("the counting methods already have a core")
        self._counting_core = core
        return False

    def _core_for_counting(self) -> Any:
        if self._counting_core is None:
            raise RuntimeError("Statistics.__init__ was not called")
        return self._counting_core

    def update_tx_virtual(self, packet: Any) -> None:
        """Count one transmitted IP packet (any C-contiguous bytes-like object)."""
        self._core_for_counting().update_tx_virtual(packet)

    def update_rx_virtual(self, packet: Any) -> None:
        """Count one received IP packet; its src and dst are swapped."""
        self._core_for_counting().update_rx_virtual(packet)

    def update_tx_physical(
        self, src: Any, dst: Any, n: int, *, packets: int = 1
    ) -> None:
        """Count ``packets`` transmitted WireGuard packets of ``n`` bytes in all to physical peer ``dst``."""
        self._core_for_counting().update_tx_physical(src, dst, n, packets=packets)

    def update_rx_physical(
        self, src: Any, dst: Any, n: int, *, packets: int = 1
    ) -> None:
        """Count ``packets`` received WireGuard packets of ``n`` bytes in all from physical peer ``dst``."""
        self._core_for_counting().update_rx_physical(src, dst, n, packets=packets)

    def update_virtual(
        self,
        proto: int,
        src: Any,
        dst: Any,
        packets: int,
        bytes: int,
        receive: bool = False,
    ) -> None:
        """Count ``packets`` packets, ``bytes`` bytes in all, on the virtual connection ``(proto, src, dst)`` as given (no swap); ``receive`` selects the rx counters."""
        self._core_for_counting().update_virtual(
            proto, src, dst, packets, bytes, receive
        )

    def update_physical(
        self,
        proto: int,
        src: Any,
        dst: Any,
        packets: int,
        bytes: int,
        receive: bool = False,
    ) -> None:
        """Count ``packets`` packets, ``bytes`` bytes in all, on the physical connection ``(proto, src, dst)`` as given; ``receive`` selects the rx counters."""
        self._core_for_counting().update_physical(
            proto, src, dst, packets, bytes, receive
        )

    def update_records(self, records: Any) -> None:
        """Count a buffer of fixed-size records (``RECORD_FORMAT``), the batch form of update_virtual/update_physical (GIL released while counting)."""
        self._core_for_counting().update_records(records)

    def update_tx_virtual_batch(self, packets: Any) -> None:
        """Count a sequence of transmitted packets (GIL released while counting)."""
        self._core_for_counting().update_tx_virtual_batch(packets)

    def update_rx_virtual_batch(self, packets: Any) -> None:
        """Count a sequence of received packets (GIL released while counting)."""
        self._core_for_counting().update_rx_virtual_batch(packets)

    def update_tx_virtual_buffer(self, buffer: Any, offsets: Any, lengths: Any) -> None:
        """Count transmitted packets ``buffer[offsets[i]:offsets[i] + lengths[i]]``."""
        self._core_for_counting().update_tx_virtual_buffer(buffer, offsets, lengths)

    def update_rx_virtual_buffer(self, buffer: Any, offsets: Any, lengths: Any) -> None:
        """Count received packets ``buffer[offsets[i]:offsets[i] + lengths[i]]``."""
        self._core_for_counting().update_rx_virtual_buffer(buffer, offsets, lengths)


# -- SeriesTable: cumulative counts per series (connstats.metrics.Totals) ------
#
# Twin of src/core/series.pxi.  A series key is a tuple of the label values
# in label order: the traffic string, proto and ports as ints, addresses as
# ints (-1 for none, IPv4 as is, IPv6 | SERIES_V6).

(
    FIELD_TRAFFIC,
    FIELD_PROTO,
    FIELD_SRC,
    FIELD_DST,
    FIELD_SRC_PORT,
    FIELD_DST_PORT,
) = range(6)
_NFIELDS = 6
SERIES_V6 = 1 << 128
_SLICE = 2048  # the compiled core's MATERIALIZE_SLICE


def _addr_series_value(addr: Any) -> int:
    if addr is None:
        return -1
    if isinstance(addr, IPv4Address):
        return int(addr)
    if isinstance(addr, IPv6Address):
        return int(addr) | SERIES_V6
    raise TypeError(
        "table: a connection's address must be an ipaddress address or None, "
        f"got {type(addr).__name__}"
    )


def _u64_count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"table: Counts.{name} must be an int, got {type(value).__name__}"
        )
    if value < 0 or value > _U64:
        raise ValueError(f"table: Counts.{name} must be 0..2**64-1, got {value}")
    return value


def _series_field(code: int, conn: Any, traffic: str) -> Any:
    if code == FIELD_TRAFFIC:
        return traffic
    if code == FIELD_PROTO:
        return int(conn.proto)
    if code == FIELD_SRC:
        return _addr_series_value(conn.src.addr)
    if code == FIELD_DST:
        return _addr_series_value(conn.dst.addr)
    if code == FIELD_SRC_PORT:
        return int(conn.src.port)
    return int(conn.dst.port)


class SeriesTable:
    """Counts per series, summed over the windows folded into it.

    ``fields``: the label codes in label order (0 traffic, 1 proto, 2 src,
    3 dst, 4 src_port, 5 dst_port).  Beyond ``max_series`` series, counts go
    to the overflow series (key ``None``).  Not locked: Totals serializes
    every call.
    """

    def __init__(self, fields: Iterable[int], max_series: int) -> None:
        codes = tuple(fields)
        if len(codes) > _NFIELDS:
            raise ValueError(f"fields: at most {_NFIELDS} codes, got {len(codes)}")
        for i, code in enumerate(codes):
            if (
                not isinstance(code, int)
                or not 0 <= code < _NFIELDS
                or codes.index(code) != i
            ):
                raise ValueError(
                    f"fields: expected distinct codes 0..{_NFIELDS - 1}, got {codes!r}"
                )
        if max_series < 0:
            raise ValueError(f"max_series: must be >= 0, got {max_series}")
        self.fields = codes
        self._max_series = max_series
        self._series: dict[tuple[Any, ...], list[int]] = {}
        self._other: Optional[list[int]] = None

    def __len__(self) -> int:
        return len(self._series)

    def fold_slices(self, table: Any, traffic: str) -> Iterator[None]:
        """Add ``table`` (Mapping[Connection, Counts]) to the series, yielding
        after every 2048 connections as the compiled core does."""
        series = self._series
        codes = self.fields
        since_yield = 0
        for conn, counts in table.items():
            key = tuple(_series_field(code, conn, traffic) for code in codes)
            values = (
                _u64_count(counts.tx_packets, "tx_packets"),
                _u64_count(counts.tx_bytes, "tx_bytes"),
                _u64_count(counts.rx_packets, "rx_packets"),
                _u64_count(counts.rx_bytes, "rx_bytes"),
            )
            sums = series.get(key)
            if sums is None:
                if len(series) < self._max_series:
                    sums = series[key] = [0, 0, 0, 0]
                else:
                    if self._other is None:
                        self._other = [0, 0, 0, 0]
                    sums = self._other
            for i in range(4):
                sums[i] = (sums[i] + values[i]) & _U64
            since_yield += 1
            if since_yield == _SLICE:
                since_yield = 0
                yield

    def items(self) -> list[tuple[Optional[tuple[Any, ...]], tuple[int, ...]]]:
        """``[(key, (tx_packets, tx_bytes, rx_packets, rx_bytes)), ...]``;
        the overflow series, if used, last with key ``None``."""
        out: list[tuple[Optional[tuple[Any, ...]], tuple[int, ...]]] = [
            (key, tuple(sums)) for key, sums in self._series.items()
        ]
        if self._other is not None:
            out.append((None, tuple(self._other)))
        return out


# --------------------------------------------------------------------------
# a window as packed columns (the twin of src/core/columns.pxi)


class Columns:
    """A window's connections as packed columns (layout in src/core/columns.pxi)."""

    n: int
    kind: bytes
    proto: bytes
    src_family: bytes
    dst_family: bytes
    src_port: bytes
    dst_port: bytes
    tx_packets: bytes
    tx_bytes: bytes
    rx_packets: bytes
    rx_bytes: bytes
    src_valid: Optional[bytes]
    dst_valid: Optional[bytes]
    src_offsets: bytes
    dst_offsets: bytes
    src_text: bytes
    dst_text: bytes
    src_packed: Optional[bytes]
    dst_packed: Optional[bytes]
    first_ns: Optional[bytes]
    last_ns: Optional[bytes]
    vni: Optional[bytes]
    vni_valid: Optional[bytes]


def _bitmap(valid: list[bool]) -> Optional[bytes]:
    if all(valid):
        return None
    out = bytearray((len(valid) + 7) // 8)
    for i, ok in enumerate(valid):
        if ok:
            out[i >> 3] |= 1 << (i & 7)
    return bytes(out)


def columns(source: Any, packed: bool = False) -> Columns:
    """The connections of ``source`` (a cut Window, or a ``(virtual,
    physical)`` pair of dicts of Connection -> Counts) as a :class:`Columns`;
    first/last times are included when every value is a TimedCounts."""
    import array

    if isinstance(source, Window):
        virtual, physical = source.to_dicts()
        rows = [(c, v, 0) for c, v in virtual.items()]
        rows += [(c, v, 1) for c, v in physical.items()]
    elif isinstance(source, tuple) and len(source) == 2:
        rows = []
        for flag, table in enumerate(source):
            _require_dict(table, "virtual/physical")
            for conn, counts in list(table.items()):
                if not isinstance(conn, Connection):
                    raise TypeError(
                        "virtual/physical: expected Connection keys, got "
                        f"{_type_name(conn)}"
                    )
                if not isinstance(counts, Counts):
                    raise TypeError(
                        "virtual/physical: expected Counts values, got "
                        f"{_type_name(counts)}"
                    )
                rows.append((conn, counts, flag))
    else:
        raise TypeError(
            "source: expected a Window or a (virtual, physical) pair of dicts, "
            f"got {_type_name(source)}"
        )
    cols = Columns()
    n = cols.n = len(rows)
    cols.kind = bytes(flag for _c, _v, flag in rows)
    cols.proto = bytes(c.proto for c, _v, _f in rows)
    for side in ("src", "dst"):
        ends = [c.src if side == "src" else c.dst for c, _v, _f in rows]
        family = bytes(0 if e.addr is None else e.addr.version for e in ends)
        setattr(cols, f"{side}_family", family)
        setattr(
            cols, f"{side}_port", array.array("H", [e.port for e in ends]).tobytes()
        )
        setattr(cols, f"{side}_valid", _bitmap([e.addr is not None for e in ends]))
        texts = [b"" if e.addr is None else str(e.addr).encode() for e in ends]
        offsets = [0]
        for text in texts:
            offsets.append(offsets[-1] + len(text))
        setattr(cols, f"{side}_offsets", array.array("q", offsets).tobytes())
        setattr(cols, f"{side}_text", b"".join(texts))
        setattr(
            cols,
            f"{side}_packed",
            b"".join(
                b"\0" * 16 if e.addr is None else e.addr.packed.ljust(16, b"\0")
                for e in ends
            )
            if packed
            else None,
        )
    for i, name in enumerate(("tx_packets", "tx_bytes", "rx_packets", "rx_bytes")):
        setattr(cols, name, array.array("Q", [v[i] for _c, v, _f in rows]).tobytes())
    spans = [
        (v.first_ns, v.last_ns) for _c, v, _f in rows if isinstance(v, TimedCounts)
    ]
    cols.first_ns = cols.last_ns = None
    if n > 0 and len(spans) == n:  # times only when every value has them
        cols.first_ns = array.array("q", [first for first, _ in spans]).tobytes()
        cols.last_ns = array.array("q", [last for _, last in spans]).tobytes()
    vnis = [c.vni for c, _v, _f in rows]
    cols.vni = cols.vni_valid = None
    if any(v is not None for v in vnis):  # decapsulated tunnel rows
        cols.vni = array.array("I", [v or 0 for v in vnis]).tobytes()
        valid = bytearray((n + 7) // 8)
        for i, v in enumerate(vnis):
            if v is not None:
                valid[i >> 3] |= 1 << (i & 7)
        cols.vni_valid = bytes(valid)
    return cols
