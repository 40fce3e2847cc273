"""Pure-Python record scanner: the reference for the compiled ``connstats.capture._capture``.

A scanner walks the records of a pcap or pcapng buffer, strips each frame's
link header and writes the offset and length of the IP packet inside it into
``array('I')`` outputs, split into tx and rx by the ``--local`` rule, so that
the caller hands thousands of packets to the core in one call with no Python
object per packet.  It stops when the outputs are full, at a packet time
bound (``stop_ns``, for windows that follow the capture's clock), at a record
that is not in the buffer yet, or at a pcapng block that Python must parse.

Both scanners must give identical results for any input, including garbage:
every rule below is mirrored line for line in ``src/_capture.pyx``.
"""

from __future__ import annotations

import struct
import threading
from array import array

from .._fastparse_py import DECAP_BAD, DECAP_INNER, DECAP_NO_IP, TUNNEL_ALL, decap_walk
from ._consts import (
    INT64_MAX,
    MAX_RECORD,
    PCAPNG_EPB,
    PCAPNG_IDB,
    PCAPNG_SHB,
    PCAPNG_SPB,
    ST_BLOCK,
    ST_CORRUPT,
    ST_FULL,
    ST_NEED_MORE,
    ST_STOP_TIME,
    ST_UNSUPPORTED,
)
from .linktypes import (
    KIND_C_HDLC,
    KIND_ENC,
    KIND_ETHERNET,
    KIND_FRELAY,
    KIND_IEEE802_11,
    KIND_IPNET,
    KIND_LOOP,
    KIND_NFLOG,
    KIND_NULL,
    KIND_PFLOG,
    KIND_PPP,
    KIND_PPP_ETHER,
    KIND_PPP_HDLC,
    KIND_RADIOTAP,
    KIND_RAW,
    KIND_SLIP,
    KIND_SLL,
    KIND_SLL2,
    KIND_UNSUPPORTED,
    kind_of,
)

_U64 = (1 << 64) - 1
_EMPTY_U32 = array("I")
_EMPTY_I64 = array("q")
_MODE_NONE = 0
_MODE_PCAP = 1
_MODE_PCAPNG = 2

_ETH_IPV4 = 0x0800
_ETH_IPV6 = 0x86DD
_ETH_MPLS = 0x8847
_ETH_MPLS_MULTICAST = 0x8848
_ETH_PPPOE_SESSION = 0x8864
# Address families that mean IPv6 in NULL/LOOP headers: Linux, NetBSD and
# OpenBSD, FreeBSD, macOS (the value depends on the OS that wrote the file).
_AF_INET = 2
_AF_INET6 = (10, 24, 28, 30)
# Transports whose ports the decoder reads, and the header length it requires
# of the packet for that (docs/contract.md §4).
_PORTED_HEADER_LEN = {6: 20, 17: 8, 132: 12}


def _wrap64(value: int) -> int:
    """Wrap to a signed 64-bit integer, as the C code's arithmetic does."""
    return ((value + (1 << 63)) & _U64) - (1 << 63)


def _be16(buf: bytes | memoryview, at: int) -> int:
    return (buf[at] << 8) | buf[at + 1]


def _le16(buf: bytes | memoryview, at: int) -> int:
    return buf[at] | (buf[at + 1] << 8)


def _host_family(buf: bytes | memoryview, at: int) -> int:
    """A 4-byte address family in the writer's host byte order.

    That order need not be the file's: families are small, so a value in the
    high half means the other order (what Wireshark does too).
    """
    family = int.from_bytes(buf[at : at + 4], "little")
    if family > 0xFFFF:
        family = int.from_bytes(buf[at : at + 4], "big")
    return family


def _ppp_ethertype(proto: int) -> int:
    """The EtherType of a PPP protocol number that carries IP or MPLS; -1 else."""
    if proto == 0x0021:
        return _ETH_IPV4
    if proto == 0x0057:
        return _ETH_IPV6
    if proto == 0x0281 or proto == 0x0283:
        return _ETH_MPLS
    return -1


def _ppp(buf: bytes | memoryview, off: int, hdr: int, caplen: int) -> tuple[int, int]:
    """(header length, EtherType) after a PPP protocol field at ``hdr``.

    The field is one byte when compressed (RFC 1661: its low bit is then set).
    """
    if hdr >= caplen:
        return -1, -1
    if buf[off + hdr] & 1:
        return hdr + 1, _ppp_ethertype(buf[off + hdr])
    if hdr + 2 > caplen:
        return -1, -1
    return hdr + 2, _ppp_ethertype(_be16(buf, off + hdr))


def _wifi(
    buf: bytes | memoryview, off: int, at: int, caplen: int, pad: bool
) -> tuple[int, int]:
    """(header length, EtherType) of an 802.11 data frame at ``at`` with LLC/SNAP."""
    if at + 24 > caplen:
        return -1, -1
    fc0 = buf[off + at]
    fc1 = buf[off + at + 1]
    # Version 0, type data; no null-function subtypes (no body); not protected.
    if (fc0 & 0x0F) != 0x08 or fc0 & 0x40 or fc1 & 0x40:
        return -1, -1
    length = 24
    if fc1 & 0x03 == 0x03:
        length += 6  # a fourth address (wireless distribution system)
    if fc0 & 0x80:
        length += 2  # QoS control
        if fc1 & 0x80:
            length += 4  # HT control
    if pad:
        length = (length + 3) & ~3
    hdr = at + length
    if hdr + 8 > caplen:
        return -1, -1
    llc = off + hdr
    # LLC AA AA 03, then SNAP with the Ethernet (000000) or bridge-tunnel (0000F8) OUI.
    if (
        buf[llc] != 0xAA
        or buf[llc + 1] != 0xAA
        or buf[llc + 2] != 0x03
        or buf[llc + 3] != 0
        or buf[llc + 4] != 0
        or (buf[llc + 5] != 0 and buf[llc + 5] != 0xF8)
    ):
        return -1, -1
    return hdr + 8, _be16(buf, llc + 6)


def _radiotap(buf: bytes | memoryview, off: int, caplen: int) -> tuple[int, int]:
    """(header length, EtherType) of a radiotap header and the 802.11 frame after it."""
    if caplen < 8 or buf[off] != 0:
        return -1, -1
    rlen = _le16(buf, off + 2)
    if rlen < 8 or rlen > caplen:
        return -1, -1
    first = int.from_bytes(buf[off + 4 : off + 8], "little")
    word = first
    at = 8
    while word & 0x80000000:  # extended presence bitmaps
        if at + 4 > rlen:
            return -1, -1
        word = int.from_bytes(buf[off + at : off + at + 4], "little")
        at += 4
    pad = False
    if first & 0x02:  # the Flags field is present
        if first & 0x01:  # after the 8-byte, 8-aligned TSFT
            at = ((at + 7) & ~7) + 8
        if at < rlen:
            pad = bool(buf[off + at] & 0x20)  # "data pad" after the 802.11 header
    return _wifi(buf, off, rlen, caplen, pad)


def _frelay(buf: bytes | memoryview, off: int, caplen: int) -> tuple[int, int]:
    """(header length, EtherType) after a Q.922 address, then UI control and
    NLPID (RFC 2427) or an EtherType (Cisco)."""
    at = 0
    while at < 4 and at < caplen and not buf[off + at] & 1:
        at += 1  # the address ends at the byte with its EA bit set
    at += 1
    if at + 2 > caplen:
        return -1, -1
    if buf[off + at] != 0x03:
        # Cisco's encapsulation: an EtherType right after the address.
        return at + 2, _be16(buf, off + at)
    at += 1
    if buf[off + at] == 0 and at + 1 < caplen:
        at += 1  # padding before the NLPID
    nlpid = buf[off + at]
    if nlpid == 0xCC:
        return at + 1, _ETH_IPV4
    if nlpid == 0x8E:
        return at + 1, _ETH_IPV6
    if (
        nlpid == 0x80
        and at + 6 <= caplen
        and buf[off + at + 1] | buf[off + at + 2] | buf[off + at + 3] == 0
    ):
        return at + 6, _be16(buf, off + at + 4)
    return -1, -1


def _nflog(buf: bytes | memoryview, off: int, caplen: int) -> int:
    """Offset of the payload TLV's value (the IP packet) in an NFLOG frame; -1 if none."""
    if caplen < 4 or buf[off + 1] != 0 or (buf[off] != _AF_INET and buf[off] != 10):
        return -1
    at = 4
    # TLV lengths and types are in the writer's host byte order: little-endian
    # on every machine that runs NFLOG in practice.
    while at + 4 <= caplen:
        tlen = _le16(buf, off + at)
        if _le16(buf, off + at + 2) & 0x7FFF == 9:  # NFULA_PAYLOAD
            return at + 4
        if tlen < 4:
            return -1
        at += (tlen + 3) & ~3
    return -1


def _is_ip_family(family: int) -> bool:
    return family == _AF_INET or family in _AF_INET6


def _strip(kind: int, buf: bytes | memoryview, off: int, caplen: int) -> int:
    """Return the length of the link header in front of the IP packet, or -1.

    -1 means "not an IP frame" (another protocol, or too short to tell).
    """
    if kind == KIND_RAW:
        return 0
    # Fixed-size headers with an EtherType at a fixed offset.
    at = -1
    if kind == KIND_ETHERNET:
        hdr, at = 14, 12
    elif kind == KIND_SLL:
        hdr, at = 16, 14
    elif kind == KIND_SLL2:
        hdr, at = 20, 0
    elif kind == KIND_C_HDLC:
        hdr, at = 4, 2  # address, control, EtherType
    if at >= 0:
        if caplen < hdr:
            return -1
        etype = _be16(buf, off + at)
    elif kind == KIND_NULL or kind == KIND_LOOP:
        if caplen < 4:
            return -1
        if kind == KIND_LOOP:
            family = int.from_bytes(buf[off : off + 4], "big")
        else:
            family = _host_family(buf, off)
        return 4 if _is_ip_family(family) else -1
    elif kind == KIND_ENC:
        if caplen < 12:
            return -1
        return 12 if _is_ip_family(_host_family(buf, off)) else -1
    elif kind == KIND_IPNET:
        if caplen < 24:
            return -1
        return 24 if buf[off + 1] == _AF_INET or buf[off + 1] == 26 else -1
    elif kind == KIND_PFLOG:
        if caplen < 4:
            return -1
        hdr = (buf[off] + 3) & ~3  # its length, padded to 32 bits
        if hdr < 4 or hdr > caplen or not _is_ip_family(buf[off + 1]):
            return -1
        return hdr
    elif kind == KIND_SLIP:
        # The header does not say what follows: compressed TCP is not IP.
        if caplen <= 16 or (buf[off + 16] >> 4 != 4 and buf[off + 16] >> 4 != 6):
            return -1
        return 16
    elif kind == KIND_NFLOG:
        return _nflog(buf, off, caplen)
    elif kind == KIND_PPP or kind == KIND_PPP_HDLC:
        if caplen >= 2 and buf[off] == 0xFF and buf[off + 1] == 0x03:
            hdr, etype = _ppp(buf, off, 2, caplen)
        elif (
            kind == KIND_PPP_HDLC
            and caplen >= 4
            and (buf[off] == 0x0F or buf[off] == 0x8F)
            and buf[off + 1] == 0
        ):
            hdr, etype = 4, _be16(buf, off + 2)
        else:
            hdr, etype = _ppp(buf, off, 0, caplen)
    elif kind == KIND_PPP_ETHER:
        hdr, etype = _ppp(buf, off, 6, caplen)
    elif kind == KIND_IEEE802_11:
        hdr, etype = _wifi(buf, off, 0, caplen, False)
    elif kind == KIND_RADIOTAP:
        hdr, etype = _radiotap(buf, off, caplen)
    elif kind == KIND_FRELAY:
        hdr, etype = _frelay(buf, off, caplen)
    else:
        return -1
    if hdr < 0:
        return -1
    while True:
        if etype == 0x8100 or etype == 0x88A8 or etype == 0x9100:
            # 802.1Q, 802.1ad and the pre-standard QinQ 0x9100: each tag
            # is 2 bytes of TCI then the next EtherType.
            if hdr + 4 > caplen:
                return -1
            etype = _be16(buf, off + hdr + 2)
            hdr += 4
        elif etype == _ETH_PPPOE_SESSION:
            # PPPoE session: version/type, code, session id, length, then PPP.
            if hdr + 8 > caplen:
                return -1
            etype = _ppp_ethertype(_be16(buf, off + hdr + 6))
            hdr += 8
        elif etype == _ETH_MPLS or etype == _ETH_MPLS_MULTICAST:
            # Labels of 4 bytes until the bottom-of-stack bit; MPLS does not
            # say what follows, so the first nibble tells IPv4 from IPv6.
            while True:
                if hdr + 4 > caplen:
                    return -1
                bottom = buf[off + hdr + 2] & 1
                hdr += 4
                if bottom:
                    break
            if hdr >= caplen:
                return -1
            version = buf[off + hdr] >> 4
            return hdr if version == 4 or version == 6 else -1
        else:
            break
    if etype == _ETH_IPV4 or etype == _ETH_IPV6:
        return hdr
    return -1


#: epb_flags directions (pcapng, the option's two low bits); 0: not recorded.
EPB_INBOUND = 1
EPB_OUTBOUND = 2
_OPT_EPB_FLAGS = 2


def epb_direction(buf: bytes | memoryview, opt: int, end: int, big: bool) -> int:
    """The direction an enhanced packet block's epb_flags option records, or 0.

    ``buf[opt:end]`` are the block's options.  Inbound packets count as rx
    (source and destination swapped), outbound as tx, whatever ``--local``
    says; without the option (or with "unknown", or options that run past
    the block: the options read so far are kept) ``--local`` decides.
    """
    u16 = ">H" if big else "<H"
    direction = 0
    while opt + 4 <= end:
        code = struct.unpack_from(u16, buf, opt)[0]
        length = struct.unpack_from(u16, buf, opt + 2)[0]
        if code == 0 or opt + 4 + length > end:
            break
        if code == _OPT_EPB_FLAGS and length == 4:
            flags = struct.unpack_from(">I" if big else "<I", buf, opt + 4)[0]
            if flags & 3 in (EPB_INBOUND, EPB_OUTBOUND):
                direction = flags & 3
        opt += 4 + ((length + 3) & ~3)
    return direction


class Scanner:
    """Walk capture records into offset/length arrays (see the module doc)."""

    def __init__(self, capacity: int = 65536) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.tx_offsets = array("I", bytes(4 * capacity))
        self.tx_lengths = array("I", bytes(4 * capacity))
        self.rx_offsets = array("I", bytes(4 * capacity))
        self.rx_lengths = array("I", bytes(4 * capacity))
        # IPv4 packets whose total length is 0 (TSO, BIG TCP): where they are
        # and their emitted length, for the reader (see CaptureReader).
        self.zero_total_offsets = array("I", bytes(4 * capacity))
        self.zero_total_lengths = array("I", bytes(4 * capacity))
        self.n_zero_total = 0
        # each packet's capture time (ns), for the cores that keep times
        self.tx_times = array("q", bytes(8 * capacity))
        self.rx_times = array("q", bytes(8 * capacity))
        self._ts = 0
        self.n_tx = 0
        self.n_rx = 0
        # Tunnels (set_decap): the innermost packets (virtual, with the VNI
        # of their tunnel, -1 for none) and the outer ones (physical).
        self.vtx_offsets = self.vtx_lengths = _EMPTY_U32
        self.vtx_vnis = self.vtx_times = _EMPTY_I64
        self.vrx_offsets = self.vrx_lengths = _EMPTY_U32
        self.vrx_vnis = self.vrx_times = _EMPTY_I64
        self.ptx_offsets = self.ptx_lengths = _EMPTY_U32
        self.ptx_vnis = self.ptx_times = _EMPTY_I64
        self.prx_offsets = self.prx_lengths = _EMPTY_U32
        self.prx_vnis = self.prx_times = _EMPTY_I64
        self.n_vtx = 0
        self.n_vrx = 0
        self.n_ptx = 0
        self.n_prx = 0
        #: IP packets emitted by the last scan (a tunnel packet once).
        self.n_packets = 0
        #: Packets decapsulated, and tunnels too malformed to be (counted as
        #: the outer packet), in the last scan.
        self.tunnels = 0
        self.bad_tunnels = 0
        self._decap = 0
        self.skipped = 0
        self.truncated = 0
        self.unsupported = 0
        self.pos = 0
        self.first_ns = 0
        self.last_ns = 0
        self.min_ns = 0
        self.max_ns = 0
        self.next_ns = 0
        self.error = ""
        self.error_linktype = 0
        self._mode = _MODE_NONE
        self._big = False
        self._ts_frac_mul = 1000
        self._kind = KIND_UNSUPPORTED
        self._max_caplen = 0
        self._buflen = 0
        # pcapng interfaces: (kind, linktype, snaplen, mul, div, factor, offset)
        self._ifaces: list[tuple[int, int, int, int, int, float, int]] = []
        # Interfaces (of this section) whose unsupported link type was reported.
        self._announced: set[int] = set()
        self._nets4: list[tuple[int, int]] = []
        self._nets6: list[tuple[int, int]] = []
        # As in the compiled twin: a scanner shared between threads (misuse)
        # may give odd results but must not fail mid-scan, e.g. by writing
        # past its arrays when two scans advance one counter at once.  Scans
        # and configuration run under this lock, and so does every write of
        # a field after construction.
        self._lock = threading.Lock()

    # -- configuration -----------------------------------------------------
    def set_pcap(
        self, big_endian: bool, nanosecond: bool, linktype: int, max_caplen: int
    ) -> None:
        with self._lock:
            self._mode = _MODE_PCAP
            self._big = bool(big_endian)
            self._ts_frac_mul = 1 if nanosecond else 1000
            self._kind = kind_of(linktype)
            self._linktype = linktype
            self._max_caplen = max_caplen

    def set_pcapng_section(self, big_endian: bool) -> None:
        with self._lock:
            self._mode = _MODE_PCAPNG
            self._big = bool(big_endian)
            self._ifaces = []
            self._announced = set()

    def add_interface(
        self,
        linktype: int,
        snaplen: int,
        ts_mul: int,
        ts_div: int,
        ts_factor: float,
        ts_offset_ns: int,
    ) -> None:
        """Describe the next pcapng interface (ids count from 0 per section).

        Timestamps in units of the interface's if_tsresol become nanoseconds
        as ``ts * ts_mul // ts_div`` (decimal resolutions), or as
        ``int(float(ts) * ts_factor)`` when ``ts_factor`` is not 0 (binary
        ones, rare enough that double precision is acceptable).
        """
        entry = (
            kind_of(linktype),
            linktype,
            snaplen,
            ts_mul,
            ts_div,
            ts_factor,
            ts_offset_ns,
        )
        with self._lock:
            self._ifaces.append(entry)

    def set_local(
        self, nets4: list[tuple[int, int]], nets6: list[tuple[int, int]]
    ) -> None:
        """Networks whose destination makes a packet rx: (network, mask) ints."""
        n4 = [(n & m, m) for n, m in nets4]
        n6 = [(n & m, m) for n, m in nets6]
        with self._lock:
            self._nets4 = n4
            self._nets6 = n6

    def set_decap(self, mask: int) -> None:
        """Decapsulate the tunnels of ``mask`` (``TUNNEL_*`` bits of connstats._fastparse_py; 0: none).

        A decapsulated packet's innermost IP packet goes to the ``v*``
        outputs and its outer packet to the ``p*`` outputs, each with the
        VNI or key of its tunnel in ``*_vnis`` (-1 for none) and its time
        in ``*_times``.  Both may have an IPv4 total length of 0: the
        zero-total outputs get room for two per packet.
        """
        if not 0 <= mask <= TUNNEL_ALL:
            raise ValueError(f"mask: {mask} is not a set of tunnel kinds")
        n = self.capacity
        with self._lock:
            if mask and not len(self.vtx_offsets):
                zeros = bytes(4 * n)
                wide = bytes(8 * n)
                for name in ("vtx", "vrx", "ptx", "prx"):
                    setattr(self, f"{name}_offsets", array("I", zeros))
                    setattr(self, f"{name}_lengths", array("I", zeros))
                    setattr(self, f"{name}_vnis", array("q", wide))
                    setattr(self, f"{name}_times", array("q", wide))
                self.zero_total_offsets = array("I", zeros + zeros)
                self.zero_total_lengths = array("I", zeros + zeros)
            self._decap = mask

    # -- scanning ----------------------------------------------------------
    def scan(
        self,
        buf: bytes | bytearray | memoryview,
        pos: int,
        end: int,
        has_stop: bool,
        stop_ns: int,
        max_packets: int,
    ) -> int:
        """Scan ``buf[pos:end]``; return a status (``_consts.ST_*``)."""
        with self._lock:
            self.n_tx = 0
            self.n_rx = 0
            self.n_vtx = 0
            self.n_vrx = 0
            self.n_ptx = 0
            self.n_prx = 0
            self.n_packets = 0
            self.tunnels = 0
            self.bad_tunnels = 0
            self.n_zero_total = 0
            self.skipped = 0
            self.truncated = 0
            self.unsupported = 0
            self.error = ""
            if end > len(buf) or pos < 0 or pos > end:
                raise ValueError("scan: pos/end out of the buffer")
            mv = memoryview(buf).cast("B") if not isinstance(buf, bytes) else buf
            self._buflen = len(mv)
            limit = self.capacity
            if 0 < max_packets < limit:
                limit = max_packets
            if self._mode == _MODE_PCAP:
                status = self._scan_pcap(mv, pos, end, has_stop, stop_ns, limit)
            elif self._mode == _MODE_PCAPNG:
                status = self._scan_pcapng(mv, pos, end, has_stop, stop_ns, limit)
            else:
                raise ValueError("scan: the scanner was not configured")
            return status

    def _emit(
        self,
        buf: bytes | memoryview,
        off: int,
        caplen: int,
        hdr: int,
        wirelen: int,
        direction: int = 0,
    ) -> None:
        ip = off + hdr
        length = caplen - hdr
        version = buf[ip] >> 4 if length > 0 else 0
        cut = caplen < wirelen
        # Drop bytes after the IP packet's own total length (Ethernet padding
        # of short frames, a trailing FCS): they are not part of the packet a
        # TUN device would have delivered.  Zero totals (TSO, jumbograms)
        # mean "unknown" and are left alone.
        if version == 4 and length >= 20:
            total = (buf[ip + 2] << 8) | buf[ip + 3]
            if 20 <= total < length:
                length = total
            elif cut and total > length:
                length = self._cut(buf, ip, length, total, wirelen - hdr)
            elif total == 0:
                self.zero_total_offsets[self.n_zero_total] = ip
                self.zero_total_lengths[self.n_zero_total] = length
                self.n_zero_total += 1
        elif version == 6 and length >= 40:
            payload = (buf[ip + 4] << 8) | buf[ip + 5]
            if payload and 40 + payload < length:
                length = 40 + payload
            elif cut and payload and 40 + payload > length:
                length = self._cut(buf, ip, length, 40 + payload, wirelen - hdr)
        elif cut:
            self.truncated += 1  # not even the IP header was captured
        self.n_packets += 1
        if self._decap:
            found, inner, size, outer_vni, inner_vni = decap_walk(
                buf, ip, caplen - hdr, length, self._decap
            )
            if found == DECAP_BAD:
                self.bad_tunnels += 1
            elif found == DECAP_INNER or found == DECAP_NO_IP:
                self.tunnels += 1
                if found == DECAP_INNER:
                    if buf[inner] >> 4 == 4 and buf[inner + 2] | buf[inner + 3] == 0:
                        # an inner segmentation-offload packet: as the outer ones
                        self.zero_total_offsets[self.n_zero_total] = inner
                        self.zero_total_lengths[self.n_zero_total] = size
                        self.n_zero_total += 1
                    if self._is_rx(buf, inner, size, direction):
                        i = self.n_vrx
                        self.vrx_offsets[i] = inner
                        self.vrx_lengths[i] = size
                        self.vrx_vnis[i] = inner_vni
                        self.vrx_times[i] = self._ts
                        self.n_vrx += 1
                    else:
                        i = self.n_vtx
                        self.vtx_offsets[i] = inner
                        self.vtx_lengths[i] = size
                        self.vtx_vnis[i] = inner_vni
                        self.vtx_times[i] = self._ts
                        self.n_vtx += 1
                if self._is_rx(buf, ip, length, direction):
                    i = self.n_prx
                    self.prx_offsets[i] = ip
                    self.prx_lengths[i] = length
                    self.prx_vnis[i] = outer_vni
                    self.prx_times[i] = self._ts
                    self.n_prx += 1
                else:
                    i = self.n_ptx
                    self.ptx_offsets[i] = ip
                    self.ptx_lengths[i] = length
                    self.ptx_vnis[i] = outer_vni
                    self.ptx_times[i] = self._ts
                    self.n_ptx += 1
                return
        if self._is_rx(buf, ip, length, direction):
            self.rx_offsets[self.n_rx] = ip
            self.rx_lengths[self.n_rx] = length
            self.rx_times[self.n_rx] = self._ts
            self.n_rx += 1
        else:
            self.tx_offsets[self.n_tx] = ip
            self.tx_lengths[self.n_tx] = length
            self.tx_times[self.n_tx] = self._ts
            self.n_tx += 1

    def _is_rx(
        self, buf: bytes | memoryview, ip: int, length: int, direction: int = 0
    ) -> bool:
        """Is the IP packet ``buf[ip:ip+length]`` received: by its record's
        direction (pcapng epb_flags) when known, else by its destination
        (``--local``)?"""
        if direction:
            return direction == EPB_INBOUND
        version = buf[ip] >> 4 if length > 0 else 0
        if version == 4 and self._nets4 and length >= 20:
            dst = int.from_bytes(buf[ip + 16 : ip + 20], "big")
            for net, mask in self._nets4:
                if dst & mask == net:
                    return True
        elif version == 6 and self._nets6 and length >= 40:
            dst = int.from_bytes(buf[ip + 24 : ip + 40], "big")
            for net, mask in self._nets6:
                if dst & mask == net:
                    return True
        return False

    def _cut(
        self, buf: bytes | memoryview, ip: int, captured: int, total: int, wire: int
    ) -> int:
        """The length to emit for an IP packet cut by the snap length.

        The decoding rule (docs/contract.md §4) reads only the IP header and
        the first bytes of the transport header.  When those were captured,
        the packet is emitted with its full IP length: the decoder then sees
        it as the whole packet it was (the bytes past the capture, which
        belong to the next records, are never read) and its bytes count in
        full.  Otherwise the captured bytes are emitted, and the decoder's
        rule for a short packet applies.  The caller's buffer must extend far
        enough past the data (the reader keeps 64 KiB spare); a length the
        wire could not have carried is not a cut but a malformed packet.
        """
        self.truncated += 1
        if total > wire or ip + total > self._buflen:
            return captured
        if buf[ip] >> 4 == 4:
            frag = ((buf[ip + 6] << 8) | buf[ip + 7]) & 0x1FFF
            proto = buf[ip + 9]
            sub = (buf[ip] & 0x0F) * 4
            need = 20
            if sub > total or frag:
                proto = -1  # no transport header is read
        else:
            proto = buf[ip + 6]
            sub = 40
            need = 40
            if proto == 44:  # IPv6 fragment header
                if total < 48:
                    proto = -1
                else:
                    need = 48
                    proto = buf[ip + 40]
                    sub = 48
                    if ((buf[ip + 42] << 8) | buf[ip + 43]) >> 3:
                        proto = -1
        header = _PORTED_HEADER_LEN.get(proto, 0)
        if header and total - sub >= header:
            need = max(need, sub + 4)  # the two ports
        return total if captured >= need else captured

    def _time(self, ts: int) -> None:
        """Note the time of a packet about to be emitted."""
        self._ts = ts
        if self.n_packets == 0:
            self.first_ns = self.min_ns = self.max_ns = ts
        elif ts < self.min_ns:
            self.min_ns = ts
        elif ts > self.max_ns:
            self.max_ns = ts
        self.last_ns = ts

    def _skip_unsupported(self, iface: int, linktype: int, pos: int) -> bool:
        """Count a skipped packet; True (stop and say so) for an interface's first."""
        self.unsupported += 1
        if iface in self._announced:
            return False
        self._announced.add(iface)
        self.pos = pos
        self.error_linktype = linktype
        return True

    def _scan_pcap(
        self,
        buf: bytes | memoryview,
        pos: int,
        end: int,
        has_stop: bool,
        stop_ns: int,
        limit: int,
    ) -> int:
        rec = struct.Struct(">IIII" if self._big else "<IIII")
        kind = self._kind
        frac_mul = self._ts_frac_mul
        max_caplen = self._max_caplen
        if kind == KIND_UNSUPPORTED:
            self.pos = pos
            self.error_linktype = self._linktype
            return ST_UNSUPPORTED
        while True:
            if pos + 16 > end:
                self.pos = pos
                return ST_NEED_MORE
            sec, frac, caplen, orig = rec.unpack_from(buf, pos)
            if caplen > max_caplen:
                self.pos = pos
                self.error = f"record length {caplen} exceeds the limit {max_caplen}"
                return ST_CORRUPT
            if pos + 16 + caplen > end:
                self.pos = pos
                return ST_NEED_MORE
            hdr = _strip(kind, buf, pos + 16, caplen)
            if hdr < 0:
                self.skipped += 1
                pos += 16 + caplen
                continue
            ts = sec * 1_000_000_000 + frac * frac_mul
            if has_stop and ts >= stop_ns:
                self.pos = pos
                self.next_ns = ts
                return ST_STOP_TIME
            self._time(ts)
            self._emit(buf, pos + 16, caplen, hdr, orig)
            pos += 16 + caplen
            if self.n_packets >= limit:
                self.pos = pos
                return ST_FULL

    def _scan_pcapng(
        self,
        buf: bytes | memoryview,
        pos: int,
        end: int,
        has_stop: bool,
        stop_ns: int,
        limit: int,
    ) -> int:
        u32 = struct.Struct(">I" if self._big else "<I")
        epb = struct.Struct(">IIIII" if self._big else "<IIIII")
        while True:
            if pos + 8 > end:
                self.pos = pos
                return ST_NEED_MORE
            btype = u32.unpack_from(buf, pos)[0]
            if btype == PCAPNG_SHB:
                # Its byte order may differ from the current section's.
                self.pos = pos
                return ST_BLOCK
            blen = u32.unpack_from(buf, pos + 4)[0]
            if blen < 12 or blen % 4 or blen > MAX_RECORD:
                self.pos = pos
                self.error = f"block of type 0x{btype:08x} has a bad length {blen}"
                return ST_CORRUPT
            if pos + blen > end:
                self.pos = pos
                return ST_NEED_MORE
            if u32.unpack_from(buf, pos + blen - 4)[0] != blen:
                self.pos = pos
                self.error = f"block of type 0x{btype:08x}: trailing length does not match {blen}"
                return ST_CORRUPT
            if btype == PCAPNG_IDB:
                self.pos = pos
                return ST_BLOCK
            if btype == PCAPNG_EPB:
                if blen < 32:
                    self.pos = pos
                    self.error = f"enhanced packet block too short ({blen} bytes)"
                    return ST_CORRUPT
                iface, ts_hi, ts_lo, caplen, orig = epb.unpack_from(buf, pos + 8)
                if caplen > blen - 32:
                    self.pos = pos
                    self.error = (
                        f"packet length {caplen} overruns its block ({blen} bytes)"
                    )
                    return ST_CORRUPT
                if iface >= len(self._ifaces):
                    self.pos = pos
                    self.error = f"packet on undefined interface {iface}"
                    return ST_CORRUPT
                kind, linktype, _snap, mul, div, factor, offset = self._ifaces[iface]
                if kind == KIND_UNSUPPORTED:
                    pos += blen
                    if self._skip_unsupported(iface, linktype, pos):
                        return ST_UNSUPPORTED
                    continue
                data = pos + 28
                hdr = _strip(kind, buf, data, caplen)
                if hdr < 0:
                    self.skipped += 1
                    pos += blen
                    continue
                direction = epb_direction(
                    buf, pos + 28 + ((caplen + 3) & ~3), pos + blen - 4, self._big
                )
                raw = (ts_hi << 32) | ts_lo
                if factor:
                    value = float(raw) * factor
                    ts = INT64_MAX if value >= 9.2e18 else int(value)
                else:
                    ts = _wrap64(((raw * mul) & _U64) // div)
                ts = _wrap64(ts + offset)
            elif btype == PCAPNG_SPB:
                if blen < 16:
                    self.pos = pos
                    self.error = f"simple packet block too short ({blen} bytes)"
                    return ST_CORRUPT
                if not self._ifaces:
                    self.pos = pos
                    self.error = "simple packet block before any interface description"
                    return ST_CORRUPT
                kind, linktype, snap, *_ = self._ifaces[0]
                if kind == KIND_UNSUPPORTED:
                    pos += blen
                    if self._skip_unsupported(0, linktype, pos):
                        return ST_UNSUPPORTED
                    continue
                orig = caplen = u32.unpack_from(buf, pos + 8)[0]
                if caplen > blen - 16:
                    caplen = blen - 16
                if snap and caplen > snap:
                    caplen = snap
                data = pos + 12
                hdr = _strip(kind, buf, data, caplen)
                if hdr < 0:
                    self.skipped += 1
                    pos += blen
                    continue
                # Simple packet blocks carry no time: reuse the previous one.
                ts = self.last_ns
                direction = 0
            else:
                pos += blen  # name resolution, statistics, custom...: not ours
                continue
            if has_stop and ts >= stop_ns:
                self.pos = pos
                self.next_ns = ts
                return ST_STOP_TIME
            self._time(ts)
            self._emit(buf, data, caplen, hdr, orig, direction)
            pos += blen
            if self.n_packets >= limit:
                self.pos = pos
                return ST_FULL
