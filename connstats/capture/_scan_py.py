"""Pure-Python record scanner: the reference for the compiled ``connstats._capture``.

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
    KIND_ETHERNET,
    KIND_LOOP,
    KIND_NULL,
    KIND_RAW,
    KIND_SLL,
    KIND_SLL2,
    KIND_UNSUPPORTED,
    kind_of,
)

_U64 = (1 << 64) - 1
_MODE_NONE = 0
_MODE_PCAP = 1
_MODE_PCAPNG = 2

_ETH_IPV4 = 0x0800
_ETH_IPV6 = 0x86DD
_VLAN_TYPES = (0x8100, 0x88A8, 0x9100)
# Address families that mean IPv6 in NULL/LOOP headers: Linux, NetBSD and
# OpenBSD, FreeBSD, macOS (the value depends on the OS that wrote the file).
_AF_INET = 2
_AF_INET6 = (10, 24, 28, 30)


def _wrap64(value: int) -> int:
    """Wrap to a signed 64-bit integer, as the C code's arithmetic does."""
    return ((value + (1 << 63)) & _U64) - (1 << 63)


def _strip(kind: int, buf: bytes | memoryview, off: int, caplen: int) -> int:
    """Return the length of the link header in front of the IP packet, or -1.

    -1 means "not an IP frame" (another protocol, or too short to tell).
    """
    if kind == KIND_RAW:
        return 0
    if kind == KIND_ETHERNET:
        if caplen < 14:
            return -1
        hdr = 14
        etype = (buf[off + 12] << 8) | buf[off + 13]
    elif kind == KIND_SLL:
        if caplen < 16:
            return -1
        hdr = 16
        etype = (buf[off + 14] << 8) | buf[off + 15]
    elif kind == KIND_SLL2:
        if caplen < 20:
            return -1
        hdr = 20
        etype = (buf[off] << 8) | buf[off + 1]
    elif kind == KIND_NULL or kind == KIND_LOOP:
        if caplen < 4:
            return -1
        if kind == KIND_LOOP:
            family = int.from_bytes(buf[off : off + 4], "big")
        else:
            # Host byte order of the machine that wrote it, which need not be
            # the file's: families are small, so a value in the high half
            # means the other order (what Wireshark does too).
            family = int.from_bytes(buf[off : off + 4], "little")
            if family > 0xFFFF:
                family = int.from_bytes(buf[off : off + 4], "big")
        if family == _AF_INET or family in _AF_INET6:
            return 4
        return -1
    else:
        return -1
    # 802.1Q (0x8100), 802.1ad (0x88a8) and the pre-standard QinQ 0x9100:
    # each tag is 2 bytes of TCI then the next EtherType.
    while etype in _VLAN_TYPES:
        if hdr + 4 > caplen:
            return -1
        etype = (buf[off + hdr + 2] << 8) | buf[off + hdr + 3]
        hdr += 4
    if etype == _ETH_IPV4 or etype == _ETH_IPV6:
        return hdr
    return -1


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
        self.n_tx = 0
        self.n_rx = 0
        self.skipped = 0
        self.pos = 0
        self.first_ns = 0
        self.last_ns = 0
        self.next_ns = 0
        self.error = ""
        self.error_linktype = 0
        self._mode = _MODE_NONE
        self._big = False
        self._ts_frac_mul = 1000
        self._kind = KIND_UNSUPPORTED
        self._max_caplen = 0
        # pcapng interfaces: (kind, linktype, snaplen, mul, div, factor, offset)
        self._ifaces: list[tuple[int, int, int, int, int, float, int]] = []
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
            self.skipped = 0
            self.error = ""
            if end > len(buf) or pos < 0 or pos > end:
                raise ValueError("scan: pos/end out of the buffer")
            mv = memoryview(buf).cast("B") if not isinstance(buf, bytes) else buf
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

    def _emit(self, buf: bytes | memoryview, off: int, caplen: int, hdr: int) -> None:
        ip = off + hdr
        length = caplen - hdr
        version = buf[ip] >> 4 if length > 0 else 0
        # Drop bytes after the IP packet's own total length (Ethernet padding
        # of short frames, a trailing FCS): they are not part of the packet a
        # TUN device would have delivered.  Zero totals (TSO, jumbograms)
        # mean "unknown" and are left alone.
        if version == 4 and length >= 20:
            total = (buf[ip + 2] << 8) | buf[ip + 3]
            if 20 <= total < length:
                length = total
        elif version == 6 and length >= 40:
            payload = (buf[ip + 4] << 8) | buf[ip + 5]
            if payload and 40 + payload < length:
                length = 40 + payload
        rx = False
        if version == 4 and self._nets4 and length >= 20:
            dst = int.from_bytes(buf[ip + 16 : ip + 20], "big")
            for net, mask in self._nets4:
                if dst & mask == net:
                    rx = True
                    break
        elif version == 6 and self._nets6 and length >= 40:
            dst = int.from_bytes(buf[ip + 24 : ip + 40], "big")
            for net, mask in self._nets6:
                if dst & mask == net:
                    rx = True
                    break
        if rx:
            self.rx_offsets[self.n_rx] = ip
            self.rx_lengths[self.n_rx] = length
            self.n_rx += 1
        else:
            self.tx_offsets[self.n_tx] = ip
            self.tx_lengths[self.n_tx] = length
            self.n_tx += 1

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
            sec, frac, caplen, _orig = rec.unpack_from(buf, pos)
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
            if self.n_tx + self.n_rx == 0:
                self.first_ns = ts
            self.last_ns = ts
            self._emit(buf, pos + 16, caplen, hdr)
            pos += 16 + caplen
            if self.n_tx + self.n_rx >= limit:
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
                iface, ts_hi, ts_lo, caplen, _orig = epb.unpack_from(buf, pos + 8)
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
                    self.pos = pos
                    self.error_linktype = linktype
                    return ST_UNSUPPORTED
                data = pos + 28
                hdr = _strip(kind, buf, data, caplen)
                if hdr < 0:
                    self.skipped += 1
                    pos += blen
                    continue
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
                    self.pos = pos
                    self.error_linktype = linktype
                    return ST_UNSUPPORTED
                caplen = u32.unpack_from(buf, pos + 8)[0]
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
            else:
                pos += blen  # name resolution, statistics, custom...: not ours
                continue
            if has_stop and ts >= stop_ns:
                self.pos = pos
                self.next_ns = ts
                return ST_STOP_TIME
            if self.n_tx + self.n_rx == 0:
                self.first_ns = ts
            self.last_ns = ts
            self._emit(buf, data, caplen, hdr)
            pos += blen
            if self.n_tx + self.n_rx >= limit:
                self.pos = pos
                return ST_FULL
