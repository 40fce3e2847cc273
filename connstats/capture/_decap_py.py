"""Tunnel decapsulation: the reference for the decap section of ``src/_capture.pyx``.

:func:`decap` walks from an outer IP packet through tunnel headers to the
innermost IP packet (docs/tunnels.md says what is decapsulated and why).  It
reads only ``buf[at : at + min(avail, length)]``: ``length`` is the packet's
length as counted (for a packet cut by the snap length, its full IP length,
docs/contract.md §5) and ``avail`` the bytes that were captured, so a header
past the capture is never read but treated as truncated.

Both implementations must give the same result for any bytes: every rule here
is mirrored line for line in the compiled scanner, and the tests and the
capture fuzzer compare them.
"""

from __future__ import annotations

from typing import Union

ByteView = Union[bytes, bytearray, memoryview]

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
_NOT = 0  # not a tunnel: this IP packet is the innermost
_IP = 1  # an IP packet
_NONIP = 2  # something else, well formed
_BAD = 3

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

# Bytes of the transport header that docs/contract.md §4 needs to read ports.
_PORTED_HEADER_LEN = {6: 20, 17: 8, 132: 12}


def _be16(buf: ByteView, at: int) -> int:
    return (buf[at] << 8) | buf[at + 1]


def _be24(buf: ByteView, at: int) -> int:
    return (buf[at] << 16) | (buf[at + 1] << 8) | buf[at + 2]


def _be32(buf: ByteView, at: int) -> int:
    return (buf[at] << 24) | (buf[at + 1] << 16) | (buf[at + 2] << 8) | buf[at + 3]


Layer = tuple[int, int, int, int, int]  # (what, start, end, vni, IP version wanted)


def _ip_payload(buf: ByteView, p: int, end: int, lim: int) -> tuple[int, int, int]:
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
        total = _be16(buf, p + 2)
        if total == 0:
            total = end - p  # segmentation offload: the length is unknown
        if hl < 20 or hl > total or p + total > end or p + hl > lim:
            return -1, 0, 0
        if _be16(buf, p + 6) & 0x3FFF:
            return -1, 0, 0  # a fragment: its payload is not a whole tunnel packet
        return buf[p + 9], p + hl, p + total
    if version == 6:
        if p + 40 > lim:
            return -1, 0, 0
        payload = _be16(buf, p + 4)
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


def _mpls(buf: ByteView, at: int, end: int, lim: int, vni: int) -> Layer:
    """A label stack down to the bottom-of-stack label, then IPv4 or IPv6."""
    bound = min(end, lim)
    while True:
        if at + 4 > bound:
            return _BAD, 0, 0, vni, 0
        bottom = buf[at + 2] & 1
        at += 4
        if bottom:
            break
    if at >= bound:
        return _BAD, 0, 0, vni, 0
    version = buf[at] >> 4
    if version == 4 or version == 6:
        return _IP, at, end, vni, version
    return _NONIP, 0, 0, vni, 0  # a pseudowire (control word, Ethernet), ...


def _ethertype(
    buf: ByteView, etype: int, at: int, end: int, lim: int, vni: int
) -> Layer:
    """What an EtherType at ``at`` carries: VLAN tags and Cisco MetaData are skipped."""
    bound = min(end, lim)
    while True:
        if etype == 0x8100 or etype == 0x88A8 or etype == 0x9100:
            if at + 4 > bound:
                return _BAD, 0, 0, vni, 0
            etype = _be16(buf, at + 2)
            at += 4
        elif etype == _ETH_CMD:
            # version, length, option, SGT, then the EtherType
            if at + 8 > bound:
                return _BAD, 0, 0, vni, 0
            etype = _be16(buf, at + 6)
            at += 8
        else:
            break
    if etype == _ETH_IPV4:
        return _IP, at, end, vni, 4
    if etype == _ETH_IPV6:
        return _IP, at, end, vni, 6
    if etype == _ETH_MPLS or etype == _ETH_MPLS_MULTICAST:
        return _mpls(buf, at, end, lim, vni)
    return _NONIP, 0, 0, vni, 0


def _ether(buf: ByteView, at: int, end: int, lim: int, vni: int) -> Layer:
    if at + 14 > min(end, lim):
        return _BAD, 0, 0, vni, 0
    return _ethertype(buf, _be16(buf, at + 12), at + 14, end, lim, vni)


def _gre(buf: ByteView, at: int, end: int, lim: int) -> Layer:
    bound = min(end, lim)
    if at + 4 > bound:
        return _BAD, 0, 0, NO_VNI, 0
    flags = _be16(buf, at)
    ptype = _be16(buf, at + 2)
    if flags & 0x0007:
        return _NOT, 0, 0, NO_VNI, 0  # version 1 is PPTP's enhanced GRE: not a tunnel here
    if flags & 0x4000:
        return _BAD, 0, 0, NO_VNI, 0  # RFC 1701 source routing: not supported
    hl = 4
    if flags & 0x8000:
        hl += 4  # checksum and reserved
    vni = NO_VNI
    if flags & 0x2000:
        if at + hl + 4 > bound:
            return _BAD, 0, 0, NO_VNI, 0
        vni = _be32(buf, at + hl)
        hl += 4
    sequence = flags & 0x1000
    if sequence:
        hl += 4
    body = at + hl
    if body > bound:
        return _BAD, 0, 0, vni, 0
    if ptype == _ETH_TEB:
        return _ether(buf, body, end, lim, vni)
    if ptype == _ETH_ERSPAN_2:
        if not sequence:
            return _ether(buf, body, end, lim, vni)  # type I: no ERSPAN header
        if body + 8 > bound or buf[body] >> 4 != 1:
            return _BAD, 0, 0, vni, 0
        return _ether(buf, body + 8, end, lim, _be16(buf, body + 2) & 0x3FF)
    if ptype == _ETH_ERSPAN_3:
        if body + 12 > bound or buf[body] >> 4 != 2:
            return _BAD, 0, 0, vni, 0
        session = _be16(buf, body + 2) & 0x3FF
        frame_type = (buf[body + 10] >> 2) & 0x1F
        hl = 20 if buf[body + 11] & 1 else 12  # with the platform-specific subheader
        if body + hl > bound:
            return _BAD, 0, 0, session, 0
        if frame_type == 0:
            return _ether(buf, body + hl, end, lim, session)
        if frame_type == 2:
            return _IP, body + hl, end, session, 0
        return _NONIP, 0, 0, session, 0
    if ptype == _ETH_CMD:
        # In GRE the EtherType comes first, then version, length, option, SGT.
        if body + 8 > bound:
            return _BAD, 0, 0, vni, 0
        return _ethertype(buf, _be16(buf, body), body + 8, end, lim, vni)
    return _ethertype(buf, ptype, body, end, lim, vni)


def _nsh(buf: ByteView, at: int, end: int, lim: int, vni: int) -> Layer:
    """Network Service Header (RFC 8300), as VXLAN-GPE carries it."""
    bound = min(end, lim)
    if at + 8 > bound or buf[at] >> 6 != 0:
        return _BAD, 0, 0, vni, 0
    hl = (buf[at + 1] & 0x3F) * 4
    if hl < 8 or at + hl > bound:
        return _BAD, 0, 0, vni, 0
    return _next_protocol(buf, buf[at + 3], at + hl, end, lim, vni, False)


def _next_protocol(
    buf: ByteView, proto: int, at: int, end: int, lim: int, vni: int, nsh: bool
) -> Layer:
    """The next-protocol numbers of VXLAN-GPE and NSH."""
    if proto == 1:
        return _IP, at, end, vni, 4
    if proto == 2:
        return _IP, at, end, vni, 6
    if proto == 3:
        return _ether(buf, at, end, lim, vni)
    if proto == 4 and nsh:
        return _nsh(buf, at, end, lim, vni)
    if proto == 5:
        return _mpls(buf, at, end, lim, vni)
    return _NONIP, 0, 0, vni, 0


def _udp(buf: ByteView, at: int, end: int, lim: int, mask: int) -> Layer:
    if at + 8 > lim or at + 8 > end:
        return _NOT, 0, 0, NO_VNI, 0
    port = _be16(buf, at + 2)
    if port == _PORT_VXLAN or port == _PORT_VXLAN_LINUX:
        kind = TUNNEL_VXLAN
    elif port == _PORT_VXLAN_GPE:
        kind = TUNNEL_VXLAN
    elif port == _PORT_GENEVE:
        kind = TUNNEL_GENEVE
    elif port == _PORT_MPLS_UDP:
        kind = TUNNEL_MPLS_UDP
    else:
        return _NOT, 0, 0, NO_VNI, 0
    if not mask & kind:
        return _NOT, 0, 0, NO_VNI, 0
    size = _be16(buf, at + 4)
    if size == 0:
        size = end - at  # a jumbogram or segmentation offload: to the IP end
    if size < 8 or at + size > end:
        return _BAD, 0, 0, NO_VNI, 0
    end = at + size
    body = at + 8
    bound = min(end, lim)
    if kind == TUNNEL_MPLS_UDP:
        return _mpls(buf, body, end, lim, NO_VNI)
    if body + 8 > bound:
        return _BAD, 0, 0, NO_VNI, 0
    flags = buf[body]
    if kind == TUNNEL_GENEVE:
        if flags >> 6 != 0:
            return _BAD, 0, 0, NO_VNI, 0
        hl = 8 + (flags & 0x3F) * 4
        vni = _be24(buf, body + 4)
        if body + hl > bound:
            return _BAD, 0, 0, vni, 0
        ptype = _be16(buf, body + 2)
        if ptype == _ETH_TEB:
            return _ether(buf, body + hl, end, lim, vni)
        return _ethertype(buf, ptype, body + hl, end, lim, vni)
    if port == _PORT_VXLAN_GPE:
        if (flags >> 4) & 3:
            return _BAD, 0, 0, NO_VNI, 0  # GPE version 0 only
        vni = _be24(buf, body + 4) if flags & 0x08 else NO_VNI
        proto = buf[body + 3] if flags & 0x04 else 3
        return _next_protocol(buf, proto, body + 8, end, lim, vni, True)
    if not flags & 0x08:
        return _BAD, 0, 0, NO_VNI, 0  # VXLAN without its I flag: no VNI
    return _ether(buf, body + 8, end, lim, _be24(buf, body + 4))


def _layer(
    buf: ByteView, proto: int, at: int, end: int, lim: int, mask: int
) -> Layer:
    """The tunnel, if any, whose header starts the IP payload ``buf[at:end]``."""
    if proto == 17:
        return _udp(buf, at, end, lim, mask)
    if proto == 47 and mask & TUNNEL_GRE:
        return _gre(buf, at, end, lim)
    if proto == 4 and mask & TUNNEL_IPIP:
        return _IP, at, end, NO_VNI, 4
    if proto == 41 and mask & TUNNEL_IPIP:
        return _IP, at, end, NO_VNI, 6
    return _NOT, 0, 0, NO_VNI, 0


def _inner(buf: ByteView, at: int, end: int, lim: int, version: int) -> int:
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
        total = _be16(buf, at + 2)
        if total == 0:
            total = end - at
        if hl < 20 or hl > total or at + total > end:
            return -1
        return total
    if found == 6:
        if at + 40 > end or at + 40 > lim:
            return -1
        payload = _be16(buf, at + 4)
        total = 40 + payload if payload else end - at
        if at + total > end:
            return -1
        return total
    return -1


def _captured(buf: ByteView, at: int, total: int, lim: int) -> bool:
    """Were the bytes docs/contract.md §4 reads of ``buf[at:at+total]`` captured?"""
    if buf[at] >> 4 == 4:
        sub = (buf[at] & 0x0F) * 4
        proto = buf[at + 9]
        if _be16(buf, at + 6) & 0x1FFF:
            proto = -1  # a later fragment: no transport header is read
    else:
        sub = 40
        proto = buf[at + 6]
        if proto == 44 and total >= 48:
            if at + 48 > lim:
                return False
            sub = 48
            proto = buf[at + 40] if not _be16(buf, at + 42) >> 3 else -1
    header = _PORTED_HEADER_LEN.get(proto, 0)
    if header and total - sub >= header:
        return at + sub + 4 <= lim
    return True


def decap(
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
        proto, pay, pay_end = _ip_payload(buf, cur, cur_end, lim)
        what, start, stop, vni, version = _NOT, 0, 0, NO_VNI, 0
        if proto >= 0:
            what, start, stop, vni, version = _layer(buf, proto, pay, pay_end, lim, mask)
        if what == _NOT:
            if depth == 0:
                return DECAP_NONE, 0, 0, NO_VNI, NO_VNI
            break
        if what == _BAD:
            return DECAP_BAD, 0, 0, NO_VNI, NO_VNI
        depth += 1
        if depth > MAX_DEPTH:
            return DECAP_BAD, 0, 0, NO_VNI, NO_VNI
        if depth == 1:
            outer_vni = vni
        if what == _NONIP:
            if depth == 1:
                return DECAP_NO_IP, 0, 0, outer_vni, NO_VNI
            break  # the IP packet that carries it is the innermost
        size = _inner(buf, start, stop, lim, version)
        if size < 0:
            return DECAP_BAD, 0, 0, NO_VNI, NO_VNI
        if vni != NO_VNI:
            inner_vni = vni
        cur = start
        cur_end = start + size
    if not _captured(buf, cur, cur_end - cur, lim):
        return DECAP_BAD, 0, 0, NO_VNI, NO_VNI
    return DECAP_INNER, cur, cur_end - cur, outer_vni, inner_vni
