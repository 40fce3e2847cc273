"""Read pcap and pcapng streams into batches of IP packets.

A :class:`CaptureReader` owns one growing buffer that it fills from the input
(a file, a pipe, stdin) and lets the scanner walk; a large regular file is
read ahead into a second buffer on a helper thread, the two taking turns.
Each :meth:`read` returns a :class:`Batch`: memoryviews of the buffer and of
the scanner's offset and length arrays, ready for
``update_*_virtual_buffer``.  A batch stays valid until the next call to
:meth:`read`, which may move the buffer's contents or read into it.

Errors are raised only after every packet before the bad record has been
returned, so the caller can count and report them first.
"""

from __future__ import annotations

import enum
import io
import ipaddress
import os
import stat
import struct
import sys
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    import queue

from ._consts import (
    MAX_RECORD,
    MIN_MAX_CAPLEN,
    PCAPNG_IDB,
    PCAPNG_SHB,
    ST_BLOCK,
    ST_CORRUPT,
    ST_FULL,
    ST_NEED_MORE,
    ST_STOP_TIME,
    ST_UNSUPPORTED,
)
from ._scan import Scanner
from .errors import (
    CaptureError,
    CorruptCaptureError,
    NotACaptureError,
    TruncatedCaptureError,
    UnsupportedLinkTypeError,
)
from .linktypes import KIND_UNSUPPORTED, describe_linktype, kind_of, supported_summary

_PCAP_MAGICS: dict[bytes, tuple[bool, bool]] = {
    # first four bytes -> (big endian, nanosecond timestamps)
    b"\xa1\xb2\xc3\xd4": (True, False),
    b"\xd4\xc3\xb2\xa1": (False, False),
    b"\xa1\xb2\x3c\x4d": (True, True),
    b"\x4d\x3c\xb2\xa1": (False, True),
}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_BOM_LITTLE = b"\x4d\x3c\x2b\x1a"
_BOM_BIG = b"\x1a\x2b\x3c\x4d"

_IDB_OPT_TSRESOL = 9
_IDB_OPT_TSOFFSET = 14
_MAX_WARNINGS = 20

DEFAULT_CAPACITY = 65536
DEFAULT_BUFFER = 4 * 1024 * 1024
#: Bytes kept free after the data in the buffer.  A packet cut by the snap
#: length is handed to the core with its full IP length (docs/contract.md
#: §5), so its view may reach this far past the captured bytes; the core
#: reads only the headers, which were captured.  The largest IP packet is an
#: IPv6 one with a 65535-byte payload.
SLACK = 40 + 65535
#: Room before the data of a read-ahead buffer, for the unread tail of the
#: buffer before it: a whole record at the common snap length of 262144.
HEAD_ROOM = 262144 + 64
#: Inputs at least this large (regular files, whose size is known) are read
#: ahead on a helper thread, while the caller scans and counts.
READ_AHEAD_MIN = 2 * DEFAULT_BUFFER
#: The chunk read ahead.  Smaller than DEFAULT_BUFFER: the two buffers and the
#: table then stay in this machine's share of the cache (benchmarks/RESULTS.md,
#: 4 MiB chunks read ahead were slower than none).
AHEAD_BUFFER = 2 * 1024 * 1024


class Stop(enum.Enum):
    """Why :meth:`CaptureReader.read` returned."""

    MORE = "more"  # a batch was filled; call again
    TIME = "time"  # the next packet is at or after the requested stop time
    EOF = "eof"  # the input is exhausted (cleanly)


_TUNNELED_FIELDS = tuple(
    f"{name}_{part}"
    for name in ("vtx", "vrx", "ptx", "prx")
    for part in ("offsets", "lengths", "vnis", "times")
)


# Tunneled and Batch are plain classes, not dataclasses: importing
# dataclasses (and inspect, which it loads) adds milliseconds to the start-up
# of every `connstats read`, and start-up is most of a small file's read.
class Tunneled:
    """The decapsulated packets of one scan (``CaptureReader(decap=...)``).

    ``v*``: the innermost IP packets (virtual traffic), ``p*``: the outer
    ones (physical traffic), split into tx and rx as the other packets are
    (their record's direction, or their own destination and ``--local``);
    ``*_vnis`` hold the VNI or key of each one's tunnel, -1 where it has
    none, and ``*_times`` each one's capture time.  A tunnel that carries no
    IP packet has a physical entry only.

    Built from the sixteen arrays, in the order of the attributes below.
    """

    __slots__ = _TUNNELED_FIELDS

    vtx_offsets: memoryview
    vtx_lengths: memoryview
    vtx_vnis: memoryview
    vtx_times: memoryview
    vrx_offsets: memoryview
    vrx_lengths: memoryview
    vrx_vnis: memoryview
    vrx_times: memoryview
    ptx_offsets: memoryview
    ptx_lengths: memoryview
    ptx_vnis: memoryview
    ptx_times: memoryview
    prx_offsets: memoryview
    prx_lengths: memoryview
    prx_vnis: memoryview
    prx_times: memoryview

    def __init__(self, *arrays: memoryview) -> None:
        if len(arrays) != len(_TUNNELED_FIELDS):
            raise TypeError(
                f"Tunneled takes {len(_TUNNELED_FIELDS)} arrays, got {len(arrays)}"
            )
        for name, array in zip(_TUNNELED_FIELDS, arrays):
            setattr(self, name, array)

    def __repr__(self) -> str:
        return (
            f"Tunneled(virtual={len(self.vtx_offsets)}+{len(self.vrx_offsets)}, "
            f"physical={len(self.ptx_offsets)}+{len(self.prx_offsets)})"
        )

    @property
    def packets(self) -> int:
        """Packets decapsulated: one physical entry each."""
        return len(self.ptx_offsets) + len(self.prx_offsets)


class Batch:
    """IP packets of one scan, split into tx and rx (see ``--local``).

    ``data`` is the reader's buffer; offsets index into it.  ``first_ns`` and
    ``last_ns`` are the capture times (ns since the epoch) of the first and
    last packet in file order, ``min_ns`` and ``max_ns`` the earliest and
    latest (captures merged from several interfaces are not always in time
    order); ``next_ns`` the time of the packet that stopped a ``Stop.TIME``
    read.  ``tx_times``/``rx_times``: each packet's capture time (int64 ns),
    beside its offset.  ``tunneled``: the decapsulated packets, when the
    reader decapsulates and found any; the ``tx``/``rx`` arrays then hold the
    packets that were not tunnels.
    """

    __slots__ = (
        "data",
        "tx_offsets",
        "tx_lengths",
        "rx_offsets",
        "rx_lengths",
        "first_ns",
        "last_ns",
        "stop",
        "next_ns",
        "min_ns",
        "max_ns",
        "tx_times",
        "rx_times",
        "tunneled",
    )

    def __init__(
        self,
        data: memoryview,
        tx_offsets: memoryview,
        tx_lengths: memoryview,
        rx_offsets: memoryview,
        rx_lengths: memoryview,
        first_ns: int,
        last_ns: int,
        stop: Stop,
        next_ns: int = 0,
        min_ns: int = 0,
        max_ns: int = 0,
        tx_times: memoryview | None = None,
        rx_times: memoryview | None = None,
        tunneled: Tunneled | None = None,
    ) -> None:
        self.data = data
        self.tx_offsets = tx_offsets
        self.tx_lengths = tx_lengths
        self.rx_offsets = rx_offsets
        self.rx_lengths = rx_lengths
        self.first_ns = first_ns
        self.last_ns = last_ns
        self.stop = stop
        self.next_ns = next_ns
        self.min_ns = min_ns
        self.max_ns = max_ns
        self.tx_times = tx_times
        self.rx_times = rx_times
        self.tunneled = tunneled

    def __repr__(self) -> str:
        return (
            f"Batch(tx={len(self.tx_offsets)}, rx={len(self.rx_offsets)}, "
            f"tunneled={self.tunneled!r}, first_ns={self.first_ns}, "
            f"last_ns={self.last_ns}, stop={self.stop})"
        )

    @property
    def packets(self) -> int:
        """IP packets in the batch (a decapsulated packet counts once)."""
        n = len(self.tx_offsets) + len(self.rx_offsets)
        if self.tunneled is not None:
            n += self.tunneled.packets
        return n


LocalNetworks = tuple[list[tuple[int, int]], list[tuple[int, int]]]


def local_networks(cidrs: Iterable[str]) -> LocalNetworks:
    """Parse ``--local`` CIDRs into the (network, mask) integer pairs the scanner takes.

    Host bits are allowed ("192.168.1.7/24" means the /24), as people paste
    their interface address; a bare address means that one host.
    """
    nets4: list[tuple[int, int]] = []
    nets6: list[tuple[int, int]] = []
    for text in cidrs:
        net = ipaddress.ip_network(text.strip(), strict=False)
        pair = (int(net.network_address), int(net.netmask))
        (nets4 if net.version == 4 else nets6).append(pair)
    return nets4, nets6


class _ReadAhead:
    """One read at a time on a helper thread, into a buffer nobody scans.

    The kernel's copy of a file into memory is about a fifth of ``connstats
    read``'s time; on a second core it overlaps the scan and the count of
    the buffer before.  The helper holds no reference to the reader, so a
    reader dropped without :meth:`CaptureReader.close` still ends it (a
    ``weakref.finalize`` on the reader calls :meth:`close`).

    Requests and results go through two queues, and no state is kept about
    which read is in flight: Ctrl-C may interrupt :meth:`wait` anywhere,
    even after it took a result, and :meth:`close` still only has to queue
    the request to stop and join the helper.
    """

    __slots__ = ("_requests", "_results", "_thread")

    def __init__(self, readinto: Callable[[memoryview], int | None]) -> None:
        import queue  # here: 2 ms of start-up that a small file does not need

        self._requests: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
        self._results: queue.SimpleQueue[tuple[int, BaseException | None]] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = threading.Thread(
            target=_read_ahead,
            args=(readinto, self._requests, self._results),
            name="connstats-read-ahead",
            daemon=True,
        )
        self._thread.start()

    def start(self, view: memoryview) -> None:
        """Read into ``view`` (at most its length) on the helper thread, which
        releases the view when done."""
        self._requests.put(view)

    def wait(self) -> int:
        """Bytes the read started last gave (0: end of input); its error, raised."""
        n, error = self._results.get()
        if error is not None:
            raise error
        return n

    def close(self) -> None:
        """End the helper thread, after the read in flight (if any) is done."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._requests.put(None)
        if thread is not threading.current_thread():
            thread.join()


def _read_ahead(
    readinto: Callable[[memoryview], int | None],
    requests: queue.SimpleQueue[memoryview | None],
    results: queue.SimpleQueue[tuple[int, BaseException | None]],
) -> None:
    """The helper thread: read into each view requested, until None."""
    while (view := requests.get()) is not None:
        try:
            with view:  # released before the reader hears of the result
                n = readinto(view) or 0
        except BaseException as exc:  # raised in the reader's thread by wait()
            results.put((0, exc))
        else:
            results.put((n, None))


class CaptureReader:
    """Iterate over the IP packets of one pcap or pcapng stream, in batches.

    ``read_ahead``: read the next chunk of the input on a helper thread
    (named ``connstats-read-ahead``) while the caller scans and counts the
    one before.  The default (``None``) does so for a regular file of at
    least 8 MiB whose ``size`` is given, as :func:`open_capture` gives it; a
    pipe, standard input or a decompressing stream is read on the caller's
    thread.  ``True`` reads any stream ahead, and that stream must then be
    left to the reader until :meth:`close` (which waits for a read in
    flight: on a pipe, until its writer writes or ends).  Batches and
    counters are the same either way, and a batch stays valid until the
    next :meth:`read`.
    ``buffer_size``: bytes per read (default 4 MiB, 2 MiB read ahead).
    Call :meth:`close` (or use ``with``) to end the helper thread; a reader
    that is dropped unclosed ends it too.  A reader opened before
    ``os.fork()`` must not be used in the child (its helper stays in the
    parent).
    """

    #: Bytes before a read-ahead chunk for the tail of the chunk before it.
    _head_room = HEAD_ROOM

    def __init__(
        self,
        stream: BinaryIO,
        name: str,
        *,
        local: LocalNetworks | None = None,
        capacity: int = DEFAULT_CAPACITY,
        buffer_size: int | None = None,
        size: int | None = None,
        scanner_class: type | None = None,
        decap: int = 0,
        read_ahead: bool | None = None,
    ) -> None:
        self.name = name
        #: Total size of the input when known (a regular file), for progress.
        self.size = size
        self._stream = stream
        # readinto1 returns what one read gives: a pipe fed slowly (tcpdump
        # -w -) yields windows as they come instead of after 4 MiB.
        readinto = getattr(stream, "readinto1", None) or getattr(stream, "readinto")  # noqa: B009
        self._readinto: Callable[[memoryview], int | None] = readinto
        if read_ahead is None:
            read_ahead = (
                size is not None and size >= READ_AHEAD_MIN and _is_regular_file(stream)
            )
        if buffer_size is None:
            buffer_size = AHEAD_BUFFER if read_ahead else DEFAULT_BUFFER
        self._buf = bytearray(max(buffer_size, 64) + SLACK)
        self._start = 0  # first unconsumed byte in _buf
        self._end = 0  # end of valid data in _buf
        self._base = 0  # input offset of _buf[0]
        self._eof = False
        self._pending: CaptureError | None = None
        self._scanner = (scanner_class or Scanner)(capacity)
        self._big = False  # byte order of the current pcapng section
        if local is not None:
            self._scanner.set_local(*local)
        #: The tunnel kinds decapsulated (``tunnels.parse_tunnels``; 0: none).
        self.decap = decap
        if decap:
            self._scanner.set_decap(decap)
        #: Packets decapsulated, and tunnels too malformed to be (counted as
        #: their outer packet).
        self.tunnels = 0
        self.bad_tunnels = 0
        #: IP packets returned so far.
        self.packets = 0
        #: Frames that were not IPv4/IPv6 (ARP, LLDP, ...) and were skipped.
        self.skipped = 0
        #: IP packets cut short by the capture's snap length (counted with
        #: their full IP length when their headers were captured).
        self.truncated = 0
        #: IPv4 packets whose total length field is 0 (TCP segmentation
        #: offload, BIG TCP): keyed by their captured length, as tshark does.
        self.zero_total = 0
        #: Packets skipped because their pcapng interface's link type is not
        #: supported, and those link types (in the order met).
        self.unsupported = 0
        self.unsupported_linktypes: list[int] = []
        #: "pcap" or "pcapng".
        self.format = ""
        #: Link types declared by the file (pcapng: one per interface).
        self.linktypes: list[int] = []
        #: Malformed parts of the file that were skipped (one message each,
        #: without the file name); the records around them are read.
        self.warnings: list[str] = []
        self._ahead: _ReadAhead | None = None
        self._ahead_end: weakref.finalize[[], CaptureReader] | None = None
        self._spare: bytearray | None = None
        self._open()
        if read_ahead and not self._eof:
            self._start_ahead()

    # -- input buffer --------------------------------------------------------
    @property
    def offset(self) -> int:
        """Input bytes consumed so far (for progress reporting)."""
        return self._base + self._start

    def _start_ahead(self) -> None:
        """Read the next chunk on a helper thread from now on (see _fill_ahead)."""
        room = self._head_room
        if len(self._buf) - SLACK < 2 * room:
            return  # too small a buffer to leave room for a tail
        self._spare = bytearray(room + len(self._buf))
        ahead = self._ahead = _ReadAhead(self._readinto)
        self._ahead_end = weakref.finalize(self, ahead.close)
        ahead.start(memoryview(self._spare)[room : len(self._spare) - SLACK])

    def _stop_ahead(self) -> None:
        if self._ahead is not None:
            assert self._ahead_end is not None
            self._ahead_end.detach()
            self._ahead.close()
            self._ahead = self._spare = None

    def _fill_ahead(self, ahead: _ReadAhead) -> None:
        """Take the chunk the helper read, and start it on the next one.

        Two buffers take turns: the helper reads into one while the caller
        scans the other.  The unread tail of the scanned one (a record cut
        by the chunk's end) is copied into the head room before the new
        chunk, and the helper goes on into the old buffer, whose batches the
        caller has used by now (a batch stays valid until the next read).
        """
        try:
            self._take_chunk(ahead, ahead.wait())
        except BaseException:
            # The read's error, or Ctrl-C anywhere in here: end the helper,
            # so that no read is left in flight for a later wait().
            self._stop_ahead()
            raise

    def _take_chunk(self, ahead: _ReadAhead, n: int) -> None:
        buf, spare, room = self._buf, self._spare, self._head_room
        assert spare is not None
        pending = self._end - self._start
        if not n:
            self._stop_ahead()
            self._eof = True
        elif pending > room:
            # A record longer than the head room: both parts in one buffer,
            # and read without the helper from here on.
            self._stop_ahead()
            merged = bytearray(max(len(buf) - SLACK, 2 * (pending + n)) + SLACK)
            merged[:pending] = buf[self._start : self._end]
            merged[pending : pending + n] = spare[room : room + n]
            self._base += self._start
            self._buf = merged
            self._start, self._end = 0, pending + n
        else:
            spare[room - pending : room] = buf[self._start : self._end]
            self._base += self._end - room
            self._buf, self._spare = spare, buf
            self._start, self._end = room - pending, room + n
            ahead.start(memoryview(buf)[room : len(buf) - SLACK])

    def _fill(self) -> None:
        """Read more input after the unconsumed bytes, moving or growing the buffer."""
        if self._ahead is not None:
            self._fill_ahead(self._ahead)
            return
        buf = self._buf
        pending = self._end - self._start
        usable = len(buf) - SLACK
        if self._start and pending < usable // 2:
            # Same-size slice assignment: allowed while batches still export
            # the buffer (those are documented as stale by now).
            buf[:pending] = buf[self._start : self._end]
            self._base += self._start
            self._start, self._end = 0, pending
        elif self._end >= usable:
            # One record larger than the buffer (or nothing consumed yet):
            # copy into a bigger one rather than resize an exported buffer.
            bigger = bytearray(max(2 * usable, pending + 65536) + SLACK)
            bigger[:pending] = buf[self._start : self._end]
            self._base += self._start
            self._buf = buf = bigger
            self._start, self._end = 0, pending
        with memoryview(buf) as view:
            n = self._readinto(view[self._end : len(buf) - SLACK])
        if not n:
            self._eof = True
        else:
            self._end += n

    def _ensure(self, n: int) -> bool:
        """Make ``n`` bytes available from ``_start``; False at end of input."""
        while self._end - self._start < n:
            if self._eof:
                return False
            self._fill()
        return True

    def _bytes(self, off: int, n: int) -> bytes:
        return bytes(self._buf[self._start + off : self._start + off + n])

    # -- headers ---------------------------------------------------------------
    def _open(self) -> None:
        if not self._ensure(4):
            if self._end == self._start:
                raise NotACaptureError(
                    f"{self.name}: empty input, not a pcap or pcapng capture"
                )
            size = self._end - self._start
            raise NotACaptureError(
                f"{self.name}: not a pcap or pcapng capture (only {size} bytes)"
            )
        magic = self._bytes(0, 4)
        if magic in _PCAP_MAGICS:
            self._open_pcap(*_PCAP_MAGICS[magic])
        elif magic == _PCAPNG_MAGIC:
            self.format = "pcapng"
            # The section header is parsed by the generic block path.
            self._scanner.set_pcapng_section(False)
            if not self._ensure(12) or self._bytes(8, 4) not in (_BOM_LITTLE, _BOM_BIG):
                raise NotACaptureError(
                    f"{self.name}: not a pcap or pcapng capture (pcapng magic without byte-order mark)"
                )
        else:
            hint = ""
            if magic[:2] == b"\x1f\x8b":
                hint = "; it is gzip-compressed: try 'zcat FILE | connstats read -'"
            raise NotACaptureError(
                f"{self.name}: not a pcap or pcapng capture (starts with {magic.hex()}){hint}"
            )

    def _open_pcap(self, big: bool, nanosecond: bool) -> None:
        self.format = "pcap"
        if not self._ensure(24):
            raise TruncatedCaptureError(f"{self.name}: truncated pcap file header")
        order = ">" if big else "<"
        _magic, major, _minor, _zone, _sigfigs, snaplen, network = struct.unpack(
            order + "IHHiIII", self._bytes(0, 24)
        )
        if major != 2:
            raise CorruptCaptureError(f"{self.name}: unsupported pcap version {major}")
        # The upper bits may carry FCS-length flags; the link type is the low 16.
        linktype = network & 0xFFFF
        self.linktypes.append(linktype)
        self._check_linktype(linktype)
        max_caplen = min(max(snaplen, MIN_MAX_CAPLEN), MAX_RECORD)
        self._scanner.set_pcap(big, nanosecond, linktype, max_caplen)
        self._start += 24

    def _check_linktype(self, linktype: int) -> None:
        if kind_of(linktype) == KIND_UNSUPPORTED:
            raise UnsupportedLinkTypeError(
                f"{self.name}: unsupported link type {describe_linktype(linktype)}; "
                f"connstats reads {supported_summary()}",
                linktype,
            )

    def _block(self) -> None:
        """Parse the pcapng SHB or IDB at ``_start`` (the scanner stopped at it)."""
        at = self.offset
        if not self._ensure(12):
            raise TruncatedCaptureError(
                f"{self.name}: input ends inside a pcapng block at byte {at}"
            )
        btype = struct.unpack("<I", self._bytes(0, 4))[0]  # SHB's type is a palindrome
        if btype == PCAPNG_SHB:
            bom = self._bytes(8, 4)
            if bom == _BOM_LITTLE:
                big = False
            elif bom == _BOM_BIG:
                big = True
            else:
                raise CorruptCaptureError(
                    f"{self.name}: corrupt pcapng section header at byte {at}: bad byte-order mark {bom.hex()}"
                )
        else:
            big = self._big
        order = ">" if big else "<"
        btype, blen = struct.unpack(order + "II", self._bytes(0, 8))
        if blen < 12 or blen % 4 or blen > MAX_RECORD:
            raise CorruptCaptureError(
                f"{self.name}: corrupt pcapng block at byte {at}: bad length {blen}"
            )
        if not self._ensure(blen):
            raise TruncatedCaptureError(
                f"{self.name}: input ends inside a pcapng block at byte {at}"
            )
        block = self._bytes(0, blen)
        if struct.unpack(order + "I", block[-4:])[0] != blen:
            raise CorruptCaptureError(
                f"{self.name}: corrupt pcapng block at byte {at}: trailing length does not match {blen}"
            )
        if btype == PCAPNG_SHB:
            if blen < 28:
                raise CorruptCaptureError(
                    f"{self.name}: corrupt pcapng section header at byte {at}"
                )
            major = struct.unpack(order + "H", block[12:14])[0]
            if major != 1:
                raise CorruptCaptureError(
                    f"{self.name}: unsupported pcapng version {major} at byte {at}"
                )
            self._scanner.set_pcapng_section(big)
            self._big = big
        elif btype == PCAPNG_IDB:
            self._interface(block, order, at)
        self._start += blen

    def _interface(self, block: bytes, order: str, at: int) -> None:
        if len(block) < 20:
            raise CorruptCaptureError(
                f"{self.name}: corrupt interface description block at byte {at}"
            )
        linktype, _reserved, snaplen = struct.unpack(order + "HHI", block[8:16])
        tsresol = 6
        tsoffset = 0
        opt = 16
        end = len(block) - 4
        while opt + 4 <= end:
            code, length = struct.unpack(order + "HH", block[opt : opt + 4])
            if code == 0:
                break
            if opt + 4 + length > end:
                # The options read so far stand; the interface is kept.
                self._warn(
                    f"interface description block at byte {at}: option {code} "
                    f"({length} bytes) runs past its block; options from there on ignored"
                )
                break
            value = block[opt + 4 : opt + 4 + length]
            if code == _IDB_OPT_TSRESOL and length >= 1:
                tsresol = value[0]
            elif code == _IDB_OPT_TSOFFSET and length >= 8:
                tsoffset = struct.unpack(order + "q", value[:8])[0]
            opt += 4 + (length + 3) // 4 * 4
        mul, div, factor = _ts_scale(tsresol)
        offset_ns = ((tsoffset * 1_000_000_000 + (1 << 63)) % (1 << 64)) - (1 << 63)
        self.linktypes.append(linktype)
        self._scanner.add_interface(linktype, snaplen, mul, div, factor, offset_ns)

    def _warn(self, message: str) -> None:
        if len(self.warnings) < _MAX_WARNINGS:
            self.warnings.append(message)
        elif len(self.warnings) == _MAX_WARNINGS:
            self.warnings.append("more malformed options: not listed")

    # -- packets ---------------------------------------------------------------
    def read(self, stop_ns: int | None = None, max_packets: int = 0) -> Batch:
        """Return the next batch of IP packets.

        ``stop_ns``: return ``Stop.TIME`` before the first IP packet whose
        capture time is at or after it.  ``max_packets``: at most that many
        packets (0: as many as fit).  Raises a :class:`CaptureError` for a
        truncated or corrupt input, after returning every packet before it.
        """
        if self._pending is not None:
            pending, self._pending = self._pending, None
            raise pending
        scanner = self._scanner
        has_stop = stop_ns is not None
        stop = stop_ns if stop_ns is not None else 0
        while True:
            status = scanner.scan(
                self._buf, self._start, self._end, has_stop, stop, max_packets
            )
            self._start = scanner.pos
            self.skipped += scanner.skipped
            self.truncated += scanner.truncated
            self.unsupported += scanner.unsupported
            self.tunnels += scanner.tunnels
            self.bad_tunnels += scanner.bad_tunnels
            if scanner.n_zero_total:
                self._zero_totals(scanner)
            n = scanner.n_packets
            self.packets += n
            if status == ST_FULL:
                return self._batch(Stop.MORE)
            if status == ST_STOP_TIME:
                return self._batch(Stop.TIME, scanner.next_ns)
            if status == ST_NEED_MORE:
                if n:
                    return self._batch(Stop.MORE)
                if self._eof:
                    if self._start == self._end:
                        return self._batch(Stop.EOF)
                    raise TruncatedCaptureError(
                        f"{self.name}: truncated: the input ends inside the record at byte "
                        f"{self.offset} ({self._end - self._start} bytes of it present)"
                    )
                self._fill()
                continue
            if status == ST_BLOCK:
                if n:
                    return self._batch(Stop.MORE)  # parse it on the next call
                self._block()
                continue
            if status == ST_UNSUPPORTED and self.format == "pcapng":
                # The first packet of an interface with an unsupported link
                # type (now skipped): note the type and go on.
                lt = scanner.error_linktype
                if lt not in self.unsupported_linktypes:
                    self.unsupported_linktypes.append(lt)
                if n:
                    return self._batch(Stop.MORE)
                continue
            if status == ST_CORRUPT:
                error: CaptureError = CorruptCaptureError(
                    f"{self.name}: corrupt {self.format} record at byte {self.offset}: {scanner.error}"
                )
            elif status == ST_UNSUPPORTED:
                lt = scanner.error_linktype
                error = UnsupportedLinkTypeError(
                    f"{self.name}: packet at byte {self.offset} has unsupported link type "
                    f"{describe_linktype(lt)}; connstats reads {supported_summary()}",
                    lt,
                )
            else:  # pragma: no cover - a scanner bug
                raise AssertionError(f"unknown scanner status {status}")
            if n:
                self._pending = error
                return self._batch(Stop.MORE)
            raise error

    def _zero_totals(self, scanner: Any) -> None:
        """Give IPv4 packets with a total length of 0 the length they have.

        Segmentation offload (TSO) and BIG TCP hand packets to the capture
        before (or without) writing their total length: 0, and the real
        length is the captured one (more than 65535 bytes for BIG TCP).
        tshark then takes the length from the capture; so does ``connstats
        read``: the field is set to the emitted length (65535 at most, which
        a longer packet still is) in the reader's own copy of the data, and
        the core keys the packet by its protocol and ports.  The library's
        entry points keep the reference rule (docs/contract.md §4): a total
        length of 0 there means proto 0, ports 0.
        """
        n = scanner.n_zero_total
        buf = self._buf
        for off, length in zip(
            scanner.zero_total_offsets[:n], scanner.zero_total_lengths[:n]
        ):
            value = min(length, 0xFFFF)
            buf[off + 2] = value >> 8
            buf[off + 3] = value & 0xFF
        self.zero_total += n

    def _batch(self, stop: Stop, next_ns: int = 0) -> Batch:
        s = self._scanner
        tunneled = None
        if s.n_ptx or s.n_prx:
            tunneled = Tunneled(
                *(
                    memoryview(getattr(s, f"{name}_{part}"))[: getattr(s, f"n_{name}")]
                    for name in ("vtx", "vrx", "ptx", "prx")
                    for part in ("offsets", "lengths", "vnis", "times")
                )
            )
        return Batch(
            memoryview(self._buf),
            memoryview(s.tx_offsets)[: s.n_tx],
            memoryview(s.tx_lengths)[: s.n_tx],
            memoryview(s.rx_offsets)[: s.n_rx],
            memoryview(s.rx_lengths)[: s.n_rx],
            s.first_ns,
            s.last_ns,
            stop,
            next_ns,
            s.min_ns,
            s.max_ns,
            memoryview(s.tx_times)[: s.n_tx],
            memoryview(s.rx_times)[: s.n_rx],
            tunneled,
        )

    def close(self) -> None:
        self._stop_ahead()  # the helper may be reading from the stream
        # never close standard input (sys.stdin is None when there is none)
        if self._stream is not getattr(sys.stdin, "buffer", None):
            self._stream.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_regular_file(stream: BinaryIO) -> bool:
    """True for a plain file object on a regular file: a stream whose reads
    cannot block for long, and that nothing else reads while the helper does."""
    if not isinstance(stream, (io.FileIO, io.BufferedReader)):
        return False
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError):
        return False


def _ts_scale(tsresol: int) -> tuple[int, int, float]:
    """(mul, div, factor) turning if_tsresol units into nanoseconds."""
    exponent = tsresol & 0x7F
    if tsresol & 0x80:
        return 1, 1, 1e9 / float(1 << exponent)
    if exponent <= 9:
        return 10 ** (9 - exponent), 1, 0.0
    if exponent > 28:
        # 10**-28 s ticks are nonsense already; 10**19 is the largest divisor
        # that fits the compiled scanner's uint64.
        exponent = 28
    return 1, 10 ** (exponent - 9), 0.0


def open_capture(path: str, *, name: str | None = None, **kwargs: Any) -> CaptureReader:
    """Open a capture file (``"-"`` for stdin) and read its header.

    ``name`` is how messages call the input (default: the path, ``<stdin>``).
    Raises ``OSError`` if the file cannot be opened and a
    :class:`CaptureError` if it is not a capture we can read.
    """
    if path == "-":
        return CaptureReader(sys.stdin.buffer, name or "<stdin>", **kwargs)
    stream = open(path, "rb", buffering=0)
    try:
        size = os.fstat(stream.fileno()).st_size
        return CaptureReader(stream, name or path, size=size, **kwargs)
    except BaseException:
        stream.close()
        raise


__all__ = [
    "Batch",
    "CaptureReader",
    "LocalNetworks",
    "Stop",
    "Tunneled",
    "local_networks",
    "open_capture",
]
