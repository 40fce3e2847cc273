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
from collections import deque
from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

from ._addr import byte_count, packed_address, packed_addrport
from ._types import AddrPort, Connection, Counts

__all__ = [
    "AddrPort",
    "Connection",
    "Counts",
    "Core",
    "CountingMethods",
    "Window",
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

RawKey = tuple[int, Optional[bytes], int, Optional[bytes], int]
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
    proto, src, sport, dst, dport = key
    return Connection(proto, _addrport(src, sport), _addrport(dst, dport))


def decode(packet: Any) -> Connection:
    """Decode one packet to (proto, src, dst) in tx orientation (docs/contract.md §4).

    The result is a :class:`Connection`, i.e. a ``tuple[int, AddrPort, AddrPort]``.
    """
    return _connection(_decode_raw(_byte_view(packet, "packet")))


def _swap(key: RawKey) -> RawKey:
    proto, src, sport, dst, dport = key
    return (proto, dst, dport, src, sport)


# --------------------------------------------------------------------------
# windows and the core


class Window:
    """The counters of one window, cut out of a :class:`Core`.

    A window is never modified after it has been cut, so its methods need no
    lock.  Counters are stored as ``[tx_packets, tx_bytes, rx_packets,
    rx_bytes]`` lists keyed by raw keys.
    """

    __slots__ = ("start", "end", "_generation", "_virtual", "_physical")

    def __init__(self, generation: int, start: float) -> None:
        self.start: float = start
        self.end: float = start
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
        virtual.update((_connection(k), Counts(*c)) for k, c in self._virtual.items())
        physical.update((_connection(k), Counts(*c)) for k, c in self._physical.items())
        yield


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

    def _add_locked(self, physical: bool, column: int, key: RawKey, n: int) -> bool:
        """Add one packet of ``n`` bytes to ``key``; the caller holds the lock.

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
        counters[column] = (counters[column] + 1) & _U64
        counters[column + 1] = (counters[column + 1] + n) & _U64
        return notify

    def _count_one(self, physical: bool, rx: bool, key: RawKey, n: int) -> None:
        self._count(physical, rx, ((key, n),))

    def _count(
        self, physical: bool, rx: bool, entries: Iterable[tuple[RawKey, int]]
    ) -> None:
        """``_count_one`` for many entries, in order, under one lock."""
        column = 2 if rx else 0
        notify = False
        opened = self._next_generation
        try:
            with self._lock:
                # Checked under the lock: nothing may be counted once close()
                # has returned.
                if self._closed:
                    return
                for key, n in entries:
                    notify |= self._add_locked(physical, column, key, n)
        finally:
            # Outside the lock: the waiter takes it right after waking up.
            # Also when an entry failed (MemoryError): a window this call
            # opened must still wake the waiter.
            if notify or self._next_generation != opened:
                self._notify()

    def _virtual(self, packet: Any, rx: bool) -> None:
        if self._closed:
            return
        view = _byte_view(packet, "packet")
        key = _decode_raw(view)
        if rx:
            key = _swap(key)
        self._count_one(False, rx, key, len(view))

    def _virtual_batch(self, packets: Any, rx: bool) -> None:
        if self._closed:
            return
        views = _packet_list(packets, "packets")
        self._count(False, rx, self._keys(views, rx))

    def _virtual_buffer(
        self, buffer: Any, offsets: Any, lengths: Any, rx: bool
    ) -> None:
        if self._closed:
            return
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
        size = len(view)
        for i, (start, n) in enumerate(zip(starts, sizes)):
            if start + n > size:
                raise ValueError(
                    f"offsets[{i}]: packet {start}..{start + n} (lengths[{i}] = "
                    f"{n}) extends beyond the end of buffer ({size} bytes)"
                )
        views = [view[start : start + n] for start, n in zip(starts, sizes)]
        self._count(False, rx, self._keys(views, rx))

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

    def _physical(self, src: Any, dst: Any, n: Any, rx: bool) -> None:
        if self._closed:
            return
        # All three are validated before anything is counted.
        src_packed = packed_address(src, "src")
        dst_packed, dst_port = packed_addrport(dst, "dst")
        nbytes = byte_count(n, "n")
        key: RawKey = (0, src_packed, 0, dst_packed, dst_port)
        self._count_one(True, rx, key, nbytes)

    def update_tx_virtual(self, packet: Any) -> None:
        """Count one transmitted IP packet."""
        self._virtual(packet, False)

    def update_rx_virtual(self, packet: Any) -> None:
        """Count one received IP packet (src and dst swapped in the key)."""
        self._virtual(packet, True)

    def update_tx_physical(self, src: Any, dst: Any, n: Any) -> None:
        """Count one transmitted physical packet of ``n`` bytes."""
        self._physical(src, dst, n, False)

    def update_rx_physical(self, src: Any, dst: Any, n: Any) -> None:
        """Count one received physical packet of ``n`` bytes (no swap)."""
        self._physical(src, dst, n, True)

    def update_tx_virtual_batch(self, packets: Any) -> None:
        """Count a sequence of transmitted packets; all or nothing on bad input."""
        self._virtual_batch(packets, False)

    def update_rx_virtual_batch(self, packets: Any) -> None:
        """Count a sequence of received packets; all or nothing on bad input."""
        self._virtual_batch(packets, True)

    def update_tx_virtual_buffer(self, buffer: Any, offsets: Any, lengths: Any) -> None:
        """Count transmitted packets ``buffer[offsets[i]:offsets[i] + lengths[i]]``."""
        self._virtual_buffer(buffer, offsets, lengths, False)

    def update_rx_virtual_buffer(self, buffer: Any, offsets: Any, lengths: Any) -> None:
        """Count received packets ``buffer[offsets[i]:offsets[i] + lengths[i]]``."""
        self._virtual_buffer(buffer, offsets, lengths, True)

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

    def update_tx_physical(self, src: Any, dst: Any, n: int) -> None:
        """Count one transmitted WireGuard packet of ``n`` bytes to physical peer ``dst``."""
        self._core_for_counting().update_tx_physical(src, dst, n)

    def update_rx_physical(self, src: Any, dst: Any, n: int) -> None:
        """Count one received WireGuard packet of ``n`` bytes from physical peer ``dst``."""
        self._core_for_counting().update_rx_physical(src, dst, n)

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
