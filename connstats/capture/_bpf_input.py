"""``connstats read --bpf EXPR``: keep only the records a BPF expression accepts.

The expression is compiled by libpcap (:mod:`connstats.capture._libpcap`) for each
link type (and byte order) the capture declares, against a savefile of that
link type and byte order as ``tcpdump -r`` compiles it, and run on every
record, link header included, exactly as ``tcpdump -r FILE EXPR`` would.  The filter sits between
the input and the capture reader: :class:`BpfFilteredStream` is a read-only
binary stream that yields the same capture (same format, byte order,
headers and pcapng blocks) with the rejected packet records left out, so the
reader and the counting core see an ordinary capture.

It walks the records in Python and calls libpcap once per packet, so it costs
a few microseconds per packet; without ``--bpf`` nothing of this runs.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from typing import BinaryIO

from ._libpcap import Program, compile_filter, offline_filter

_PCAP_MAGICS = {
    b"\xa1\xb2\xc3\xd4": ">",
    b"\xd4\xc3\xb2\xa1": "<",
    b"\xa1\xb2\x3c\x4d": ">",
    b"\x4d\x3c\xb2\xa1": "<",
}
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_IDB = 1
_PCAPNG_PB = 2  # obsolete packet block
_PCAPNG_SPB = 3
_PCAPNG_EPB = 6
_MAX_BLOCK = 64 * 1024 * 1024


class BpfFilteredStream(io.RawIOBase):
    """The capture read from ``source`` without the packets ``expr`` rejects.

    Anything that is not a well-formed pcap/pcapng stream is passed through
    unchanged from the point where it stops making sense, so the capture
    reader reports the problem with its usual message and offset.
    """

    def __init__(self, source: BinaryIO, expr: str) -> None:
        super().__init__()
        self._source = source
        self._expr = expr
        self._programs: dict[tuple[int, str], Program] = {}
        self._chunks = self._generate()
        self._pending = b""
        #: Packet records read and rejected by the expression.
        self.packets_seen = 0
        self.packets_rejected = 0

    # -- io.RawIOBase ------------------------------------------------------------
    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = chunk
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self._source.close()
            for program in self._programs.values():
                program.close()
        super().close()

    # -- filtering ---------------------------------------------------------------
    def _program(self, linktype: int, snaplen: int, order: str) -> Program:
        program = self._programs.get((linktype, order))
        if program is None:
            program = compile_filter(
                self._expr, linktype, max(snaplen, 65535), byte_order=order
            )
            self._programs[(linktype, order)] = program
        return program

    def _keep(self, program: Program, frame: bytes, wire: int) -> bool:
        self.packets_seen += 1
        if offline_filter(program, frame, wire):
            return True
        self.packets_rejected += 1
        return False

    def _read(self, n: int) -> bytes:
        data = self._source.read(n)
        if data is None:
            return b""
        while len(data) < n:
            more = self._source.read(n - len(data))
            if not more:
                break
            data += more
        return data

    def _rest(self) -> Iterator[bytes]:
        while True:
            chunk = self._source.read(1 << 16)
            if not chunk:
                return
            yield chunk

    def _generate(self) -> Iterator[bytes]:
        head = self._read(4)
        if head in _PCAP_MAGICS:
            yield from self._pcap(head, _PCAP_MAGICS[head])
        elif head == b"\x0a\x0d\x0d\x0a":
            yield from self._pcapng(head)
        else:
            yield head
            yield from self._rest()

    def _pcap(self, magic: bytes, order: str) -> Iterator[bytes]:
        header = magic + self._read(20)
        yield header
        if len(header) < 24:
            return
        snaplen, network = struct.unpack(order + "II", header[16:24])
        program = self._program(network & 0xFFFF, snaplen, order)
        record = struct.Struct(order + "IIII")
        while True:
            rec = self._read(16)
            if len(rec) < 16:
                yield rec
                return
            _sec, _frac, caplen, wire = record.unpack(rec)
            if caplen > _MAX_BLOCK:
                yield rec
                yield from self._rest()
                return
            frame = self._read(caplen)
            if len(frame) < caplen or self._keep(program, frame, wire):
                yield rec + frame

    def _pcapng(self, first: bytes) -> Iterator[bytes]:
        order = "<"
        # (linktype, snaplen, section byte order) per interface
        interfaces: list[tuple[int, int, str]] = []
        head = first + self._read(8)
        while True:
            if len(head) < 8:
                yield head
                return
            if head[:4] == b"\x0a\x0d\x0d\x0a" and len(head) >= 12:
                # A section header (its type reads the same in both orders)
                # sets the byte order of the blocks that follow.
                bom = head[8:12]
                order = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
                interfaces = []
            btype = struct.unpack(order + "I", head[:4])[0]
            blen = struct.unpack(order + "I", head[4:8])[0]
            if blen < 12 or blen % 4 or blen > _MAX_BLOCK:
                yield head
                yield from self._rest()
                return
            block = head + self._read(blen - len(head))
            if len(block) < blen:
                yield block
                return
            if btype == _PCAPNG_IDB and blen >= 20:
                linktype, _res, snaplen = struct.unpack(order + "HHI", block[8:16])
                interfaces.append((linktype, snaplen, order))
                yield block
            elif btype in (_PCAPNG_EPB, _PCAPNG_PB) and blen >= 32:
                if btype == _PCAPNG_EPB:
                    ifid, _hi, _lo, caplen, wire = struct.unpack(
                        order + "IIIII", block[8:28]
                    )
                else:
                    ifid = struct.unpack(order + "H", block[8:10])[0]
                    caplen, wire = struct.unpack(order + "II", block[20:28])
                if ifid < len(interfaces) and 28 + caplen <= blen - 4:
                    program = self._program(*interfaces[ifid])
                    if self._keep(program, block[28 : 28 + caplen], wire):
                        yield block
                else:
                    yield block  # malformed: the reader will say so
            elif btype == _PCAPNG_SPB and blen >= 16 and interfaces:
                wire = struct.unpack(order + "I", block[8:12])[0]
                linktype, snaplen, order0 = interfaces[0]
                caplen = min(wire, blen - 16, snaplen or wire)
                if self._keep(
                    self._program(linktype, snaplen, order0),
                    block[12 : 12 + caplen],
                    wire,
                ):
                    yield block
            else:
                yield block
            head = self._read(8)
            if head[:4] == b"\x0a\x0d\x0d\x0a":
                head += self._read(4)
