"""A small pcapng writer for the ``connstats capture --write`` tee.

One section, one interface of link type RAW (101: packets start at the IP
header, as the capture socket delivers them) with nanosecond timestamps.
Each packet is an enhanced packet block whose ``epb_flags`` option carries
its direction (inbound/outbound), which Wireshark and tcpdump show.  At the
end an interface statistics block records the kernel's counts
(``isb_ifrecv``, ``isb_ifdrop``) and the packets written (``isb_osdrop`` is
left out: connstats itself drops nothing).  Host byte order throughout: the
section header's byte-order magic tells readers which one.

The compiled ring writes the enhanced packet blocks itself
(``src/cs_ring.h``, same layout); this module writes them for the
pure-Python fallback.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

LINKTYPE_RAW = 101
_SHB = 0x0A0D0D0A
_IDB = 1
_EPB = 6
_ISB = 5


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("=HH", code, len(value)) + _pad(value)


def _block(btype: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("=II", btype, total) + body + struct.pack("=I", total)


def header(interface: str, application: str) -> bytes:
    """Section header and interface description blocks."""
    shb_opts = _option(4, application.encode()) + _option(0, b"")  # shb_userappl
    shb = _block(_SHB, struct.pack("=IHHq", 0x1A2B3C4D, 1, 0, -1) + shb_opts)
    idb_opts = (
        _option(2, interface.encode())  # if_name
        + _option(9, bytes([9]))  # if_tsresol: 10^-9 s
        + _option(0, b"")
    )
    idb = _block(_IDB, struct.pack("=HHI", LINKTYPE_RAW, 0, 0) + idb_opts)
    return shb + idb


def enhanced_packet(data: bytes | memoryview, ts_ns: int, outbound: bool) -> bytes:
    """One enhanced packet block on interface 0."""
    n = len(data)
    body = (
        struct.pack("=IIIII", 0, ts_ns >> 32, ts_ns & 0xFFFFFFFF, n, n)
        + _pad(bytes(data))
        + _option(2, struct.pack("=I", 2 if outbound else 1))  # epb_flags
        + _option(0, b"")
    )
    return _block(_EPB, body)


def statistics(ts_ns: int, received: int, dropped: int, delivered: int) -> bytes:
    """Interface statistics block: kernel received/dropped, packets written."""
    opts = (
        _option(4, struct.pack("=Q", received))  # isb_ifrecv
        + _option(5, struct.pack("=Q", dropped))  # isb_ifdrop
        + _option(8, struct.pack("=Q", delivered))  # isb_usrdeliv
        + _option(0, b"")
    )
    return _block(_ISB, struct.pack("=III", 0, ts_ns >> 32, ts_ns & 0xFFFFFFFF) + opts)


def write_header(out: BinaryIO, interface: str, application: str) -> None:
    out.write(header(interface, application))
