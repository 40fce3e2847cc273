"""Live capture on Linux with an AF_PACKET socket (imported only on Linux).

The socket is ``SOCK_DGRAM``: the kernel removes the link header, so each
frame is the IP packet a TUN device would deliver, with its ``sockaddr_ll``
(interface, protocol, packet type).  Packets reach user space through a
``PACKET_MMAP`` ``TPACKET_V3`` ring walked in C (``connstats.capture._ring``), one
block of packets per wakeup, and go to the counting core through its buffer
entry points.  Without the compiled ring (pure-Python installs) the same
socket is read one packet per ``recvfrom_into`` call: correct, but it keeps
up with far less traffic.

Direction comes from the packet type the kernel reports (``sll_pkttype``):

- ``PACKET_OUTGOING`` (sent by this host): tx, with source and destination
  as they are.
- ``PACKET_HOST``, ``PACKET_BROADCAST``, ``PACKET_MULTICAST`` and
  ``PACKET_OTHERHOST`` (received; the last only in promiscuous mode or on a
  bridge port): rx, source and destination swapped, as the core's
  ``update_rx_*`` does.
- Loopback devices (``ARPHRD_LOOPBACK``, e.g. ``lo``) show every packet
  twice, once as sent and once as received: only the received copy is
  counted, so each packet counts once, as rx (tcpdump shows it once too).
  The skipped copies are reported as ``loopback_copies``.
- With ``-i any`` the rule applies per interface, so a packet forwarded by
  the host counts as rx on its way in and tx on its way out.

Kernel drops (the ring was full) come from ``PACKET_STATISTICS``.

At the end (``--duration``, Ctrl-C, SIGTERM) the socket's filter is swapped
for one that drops everything, so no packet is received any more, and the
packets still in the ring are counted: the blocks ready and the one the
kernel was filling, which it hands over at its retire timeout
(``--block-timeout``).  Every packet the kernel received is then either
counted or reported as dropped.  A second signal ends that wait.

Packets larger than a block allows are cut short by the ring; they count
with their IP length when their headers were captured, as ``connstats
read`` counts packets cut by the snap length (``src/cs_ring.h``).  Bytes
after the IP packet (Ethernet padding of short frames) are not counted, as
``connstats read`` does not count them either.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from . import bpf

# The ring's defaults live in _consts, where the command line reads them
# without importing this module.
from ._consts import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_BLOCK_TIMEOUT_MS,
    DEFAULT_RING_SIZE,
    MIB,
)

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4
ARPHRD_LOOPBACK = 772
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_ATTACH_FILTER = 26
# Larger than any IP packet, including GSO/GRO super-packets (up to 64 KiB,
# more with BIG TCP); a bigger one is counted by the bytes that fit.
_RECV_BUFFER = 256 * 1024

_POLL_MS = 100  # longest sleep between checks of --duration and the drop counter


class LiveCaptureError(Exception):
    """A live capture could not start; the message is one line for the user."""


@dataclass
class KernelStats:
    """Cumulative PACKET_STATISTICS of a socket (the kernel resets them on each read)."""

    received: int = 0  # packets that passed the filter, dropped ones included
    dropped: int = 0  # packets the kernel could not queue (ring or buffer full)


@dataclass
class LiveResult:
    packets: int = 0  # IP packets counted
    bytes: int = 0  # IP bytes counted
    skipped: int = 0  # frames of other protocols (ARP, LLDP, ...)
    loopback_copies: int = 0  # outgoing copies on loopback, not counted
    truncated: int = 0  # IP packets the ring cut short (counted by their IP length)
    kernel: KernelStats = field(default_factory=KernelStats)
    interrupted: bool = False  # ended by Ctrl-C
    error: str | None = None  # the socket failed (interface gone or down)
    tunnels: int = 0  # packets decapsulated (capture(decap=...))
    bad_tunnels: int = 0  # malformed tunnels, counted as the outer packet


class LiveSource:
    """An AF_PACKET socket bound to one interface, several, or all of them."""

    def __init__(
        self,
        sock: socket.socket,
        name: str,
        ring: Any | None,
        block_timeout_ms: int = DEFAULT_BLOCK_TIMEOUT_MS,
    ) -> None:
        self.sock = sock
        self.name = name
        self.ring = ring
        self.block_timeout_ms = block_timeout_ms
        self.stats = KernelStats()

    @property
    def mode(self) -> str:
        if self.ring is None:
            return "recvfrom (no compiled ring)"
        size = self.ring.size
        return (
            f"TPACKET_V3 ring of {size // MIB} MiB"
            if size >= MIB
            else (f"TPACKET_V3 ring of {size // 1024} KiB")
        )

    def read_stats(self) -> KernelStats:
        """Add the counters the kernel gathered since the last call."""
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
        packets, drops = struct.unpack_from("=II", raw)
        self.stats.received += packets
        self.stats.dropped += drops
        return self.stats

    def close(self) -> None:
        if self.ring is not None:
            self.ring.close()
        self.sock.close()


def _ifindex(name: str) -> int:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        raise LiveCaptureError(f"no such network interface: {name}") from None


_libc: Any = None


def _bind(sock: socket.socket, ifindex: int) -> None:
    # Python's AF_PACKET bind() takes an interface name and refuses ifindex 0
    # ("all interfaces"); the C call takes a struct sockaddr_ll.
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    addr = struct.pack(
        "=HHiHBB8s", socket.AF_PACKET, socket.htons(ETH_P_ALL), ifindex, 0, 0, 0, b""
    )
    buf = ctypes.create_string_buffer(addr, len(addr))
    if _libc.bind(sock.fileno(), buf, len(addr)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


#: A filter that accepts nothing: what the socket gets once the capture ends.
DROP_ALL: list[bpf.Insn] = [(bpf.RET_K, 0, 0, 0)]


def attach_filter(sock: socket.socket, program: Sequence[bpf.Insn]) -> None:
    """SO_ATTACH_FILTER: the kernel runs ``program`` before queueing a packet."""
    code = bpf.pack(program)
    buf = ctypes.create_string_buffer(code, len(code))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    fprog = struct.pack("@HP", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def open_source(
    interfaces: Sequence[str],
    *,
    program: Sequence[bpf.Insn] | None = None,
    ring_size: int = DEFAULT_RING_SIZE,
    block_size: int = DEFAULT_BLOCK_SIZE,
    block_timeout_ms: int = DEFAULT_BLOCK_TIMEOUT_MS,
    tee: bool = False,
    use_ring: bool = True,
) -> LiveSource:
    """Open, filter, map and bind the capture socket, in that order.

    ``interfaces``: names; ``["any"]`` is every interface.  The socket gets
    its filter and ring before bind(), so no packet is queued unfiltered or
    outside the ring.
    """
    names = list(dict.fromkeys(interfaces))
    if not names:
        raise LiveCaptureError("no interface given")
    if "any" in names:
        if len(names) > 1:
            raise LiveCaptureError("-i any already captures every interface")
        indexes: list[int] = []
    else:
        indexes = [_ifindex(n) for n in names]
    try:
        # Protocol 0 receives nothing until bind(): no frames of other
        # interfaces are queued while the socket is being set up.
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
    except PermissionError:
        raise LiveCaptureError(
            "capturing needs root or the CAP_NET_RAW capability "
            "(try sudo, or 'setcap cap_net_raw+ep' on the Python binary)"
        ) from None
    ring = None
    try:
        if len(indexes) > 1:
            # One socket can be bound to one interface or all: take all and
            # let the kernel filter keep the chosen ones.
            program = bpf.ifindex_program(indexes, program)
        if program:
            try:
                attach_filter(sock, program)
            except OSError as exc:
                raise LiveCaptureError(
                    f"the kernel refused the capture filter: {exc.strerror}"
                ) from None
        if use_ring:
            ring = _make_ring(sock, ring_size, block_size, block_timeout_ms, tee)
        if ring is None:
            _grow_buffer(sock, ring_size)
        try:
            _bind(sock, indexes[0] if len(indexes) == 1 else 0)
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                raise LiveCaptureError(
                    f"no such network interface: {names[0]}"
                ) from None
            if exc.errno == errno.ENETDOWN:
                raise LiveCaptureError(f"interface {names[0]} is down") from None
            raise LiveCaptureError(
                f"cannot capture on {', '.join(names)}: {exc.strerror}"
            ) from None
        source = LiveSource(sock, ", ".join(names), ring, block_timeout_ms)
        source.read_stats()  # start from zero: nothing before bind counts
        source.stats = KernelStats()
        return source
    except BaseException:
        if ring is not None:
            ring.close()
        sock.close()
        raise


def _grow_buffer(sock: socket.socket, size: int) -> None:
    # Without a ring, the socket's receive buffer is what absorbs stalls; the
    # default (~200 KiB) holds only a few hundred small packets.
    so_rcvbufforce = 33
    try:
        sock.setsockopt(socket.SOL_SOCKET, so_rcvbufforce, min(size, 1 << 30))
    except OSError:  # not root: as much as net.core.rmem_max allows
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, min(size, 1 << 30))


def _make_ring(
    sock: socket.socket, ring_size: int, block_size: int, timeout_ms: int, tee: bool
) -> Any | None:
    from .._select import NO_EXTENSIONS

    if NO_EXTENSIONS:
        return None  # pure Python asked for: the recvfrom fallback
    try:
        from ._ring import Ring
    except ImportError:
        return None  # pure-Python install: recvfrom fallback
    block_size = min(block_size, ring_size)
    block_nr = max(1, ring_size // block_size)
    try:
        return Ring(sock.fileno(), block_size, block_nr, timeout_ms, tee)
    except ValueError as exc:
        raise LiveCaptureError(f"--ring-size/--block-size: {exc}") from None
    except OSError as exc:
        raise LiveCaptureError(
            f"cannot set up a {ring_size // 1024} KiB capture ring of "
            f"{block_size // 1024} KiB blocks: {exc.strerror} (try a smaller "
            "--ring-size, or a --block-size that is a power of two)"
        ) from None


Tick = Callable[[LiveResult], None]


@dataclass
class _Run:
    """What ends a capture and where its packets go besides the core."""

    deadline: float | None
    count: int | None
    tee: BinaryIO | None
    tick: Tick | None
    clock: Callable[[], float]
    stopped: bool = False  # set by SIGINT/SIGTERM
    signals: int = 0  # SIGINT/SIGTERM received: one more ends the final drain

    def wait_ms(self) -> int:
        if self.deadline is None:
            return _POLL_MS
        left = self.deadline - self.clock()
        return max(0, min(_POLL_MS, int(left * 1000) + 1))

    def more(self, result: LiveResult) -> bool:
        if self.stopped:
            return False
        if self.count is not None and result.packets >= self.count:
            return False
        return self.deadline is None or self.clock() < self.deadline


def capture(
    source: LiveSource,
    core: Any,
    *,
    duration: float | None = None,
    count: int | None = None,
    tee: BinaryIO | None = None,
    tick: Tick | None = None,
    clock: Callable[[], float] = time.monotonic,
    decap: int = 0,
) -> LiveResult:
    """Count IP packets until ``duration`` seconds, ``count`` packets or Ctrl-C.

    ``core``: anything with the ``update_{tx,rx}_virtual_buffer`` and
    ``update_{tx,rx}_virtual`` entry points (a Statistics).  ``tee``: a
    binary file that gets a pcapng enhanced packet block per counted packet
    (the caller writes the header).  ``tick(result)`` is called at least
    every 100 ms with the kernel counters refreshed.  ``decap``: the tunnels
    to open (a mask, docs/tunnels.md): their innermost packets count as
    virtual traffic and the packets themselves as physical traffic, in the
    packet's own direction.
    """
    result = LiveResult()
    result.kernel = source.stats
    deadline = None if duration is None else clock() + duration
    run = _Run(deadline, count, tee, tick, clock)
    if decap:
        core = _Decapsulating(core, decap, result)
    # Ctrl-C and SIGTERM end the capture between blocks, never inside one:
    # an exception raised between counting a block and writing it to the
    # tee would leave the two different.
    previous = _on_stop_signals(run)
    try:
        if source.ring is not None:
            _ring_loop(source, core, result, run)
        else:
            _recv_loop(source, core, result, run)
    except KeyboardInterrupt:
        run.stopped = True
        run.signals += 1
    except OSError as exc:
        # Counted packets stay counted; the caller reports them, then this.
        reason = exc.strerror or str(exc)
        if exc.errno == errno.ENETDOWN:
            reason = "the interface went down"
        result.error = f"capture on {source.name} stopped: {reason}"
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    result.interrupted = run.stopped
    try:
        source.read_stats()
    except OSError:
        pass
    return result


class _Decapsulating:
    """The buffer and single-packet entry points of a Statistics, with the
    packets sorted into plain ones, tunnels' innermost packets (virtual) and
    tunnel packets (physical) first (the core's decap_split)."""

    def __init__(self, stats: Any, mask: int, result: LiveResult) -> None:
        import importlib

        # The Statistics' own core: its buffer entry points take VNIs and
        # count physical traffic, the Statistics' methods do not.
        self._core = getattr(stats, "_core", stats)
        self._split = importlib.import_module(type(self._core).__module__).decap_split
        self._mask = mask
        self._result = result
        self.update_tx_virtual_buffer = self._counter(False)
        self.update_rx_virtual_buffer = self._counter(True)

    def _counter(self, rx: bool) -> Callable[[Any, Any, Any], None]:
        core = self._core
        virtual = core.update_rx_virtual_buffer if rx else core.update_tx_virtual_buffer
        physical = (
            core.update_rx_physical_buffer if rx else core.update_tx_physical_buffer
        )
        split, mask, result = self._split, self._mask, self._result

        def count(buffer: Any, offsets: Any, lengths: Any) -> None:
            po, pl, io, il, iv, oo, ol, ov, bad = split(buffer, offsets, lengths, mask)
            if len(po):
                virtual(buffer, po, pl)
            if len(io):
                virtual(buffer, io, il, iv)
            if len(oo):
                physical(buffer, oo, ol, ov)
            result.tunnels += len(oo)
            result.bad_tunnels += bad

        return count

    def update_tx_virtual(self, packet: Any) -> None:
        self.update_tx_virtual_buffer(packet, (0,), (len(packet),))

    def update_rx_virtual(self, packet: Any) -> None:
        self.update_rx_virtual_buffer(packet, (0,), (len(packet),))


def _on_stop_signals(run: _Run) -> dict[int, Any]:
    """Make SIGINT and SIGTERM set ``run.stopped``; returns the old handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}  # only the main thread may set handlers; Ctrl-C raises there

    def stop(signum: int, frame: Any) -> None:
        run.stopped = True
        run.signals += 1

    return {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}


def _ring_loop(source: LiveSource, core: Any, result: LiveResult, run: _Run) -> None:
    ring = source.ring
    assert ring is not None
    update_tx = core.update_tx_virtual_buffer
    update_rx = core.update_rx_virtual_buffer
    clock, tee, tick = run.clock, run.tee, run.tick
    next_tick = clock()

    def walk(timeout_ms: int) -> int:
        limit = 0 if run.count is None else run.count - result.packets
        n = ring.next_block(timeout_ms, limit)
        if n > 0:
            ring.count(update_tx, update_rx)
            if tee is not None:
                tee.write(ring.tee_bytes())
        ring.release()
        result.packets = ring.packets
        return n

    try:
        while run.more(result):
            n = walk(run.wait_ms())
            if tick is not None and (n < 0 or clock() >= next_tick):
                next_tick = clock() + _POLL_MS / 1000
                _refresh(source, result)
                tick(result)
        _drain(source, run, result, walk)
    finally:
        ring.release()
        _refresh(source, result)


def _ended(run: _Run, result: LiveResult) -> bool:
    """Whether the capture ended by time or signal (not by reaching --count)."""
    return run.count is None or result.packets < run.count


def _drain(
    source: LiveSource, run: _Run, result: LiveResult, walk: Callable[[int], int]
) -> None:
    """Count what the ring still holds once no packet comes in any more."""
    if not _ended(run, result):
        return
    ring = source.ring
    assert ring is not None
    try:
        attach_filter(source.sock, DROP_ALL)
    except OSError:
        return  # the socket is gone: nothing more will be handed over
    signals = run.signals
    # The kernel hands the block it fills over at its retire timeout.
    give_up = run.clock() + (source.block_timeout_ms + 100) / 1000
    while ring.pending() and run.signals == signals:
        left = give_up - run.clock()
        if left <= 0:
            break
        walk(max(1, min(_POLL_MS, int(left * 1000))))


def _refresh(source: LiveSource, result: LiveResult) -> None:
    ring = source.ring
    if ring is not None:
        result.packets = ring.packets
        result.bytes = ring.bytes
        result.skipped = ring.skipped
        result.loopback_copies = ring.loopback_copies
        result.truncated = ring.truncated
    source.read_stats()


def _ip_length(packet: memoryview, n: int) -> int:
    """Bytes of the IP packet in a frame of ``n`` bytes (without padding after it).

    The rule of ``connstats read`` (and of the ring's walk): bytes after the
    IP total length are not part of the packet; a zero total means unknown.
    """
    if n >= 20 and packet[0] >> 4 == 4:
        total = (packet[2] << 8) | packet[3]
        if 20 <= total < n:
            return total
    elif n >= 40 and packet[0] >> 4 == 6:
        payload = (packet[4] << 8) | packet[5]
        if payload and 40 + payload < n:
            return 40 + payload
    return n


def _recv_loop(source: LiveSource, core: Any, result: LiveResult, run: _Run) -> None:
    from ._pcapng_out import enhanced_packet

    clock, tee, tick = run.clock, run.tee, run.tick
    sock = source.sock
    update_tx = core.update_tx_virtual
    update_rx = core.update_rx_virtual
    buf = bytearray(_RECV_BUFFER)
    view = memoryview(buf)  # slices of it hand packets over without a copy
    next_tick = clock()

    def receive(timeout: float | None) -> int:
        sock.settimeout(timeout)
        try:
            n, address = sock.recvfrom_into(buf)
        except (TimeoutError, BlockingIOError):
            return -1
        # address: (ifname, protocol in host order, pkttype, hatype, hwaddr)
        protocol, pkttype, hatype = address[1], address[2], address[3]
        outbound = pkttype == PACKET_OUTGOING
        if protocol != ETH_P_IP and protocol != ETH_P_IPV6:
            result.skipped += 1
        elif outbound and hatype == ARPHRD_LOOPBACK:
            result.loopback_copies += 1
        else:
            length = _ip_length(view, n)
            (update_tx if outbound else update_rx)(view[:length])
            result.packets += 1
            result.bytes += length
            if tee is not None:
                tee.write(enhanced_packet(view[:n], time.time_ns(), outbound))
        return n

    while run.more(result):
        n = receive(run.wait_ms() / 1000)
        if tick is not None and (n < 0 or clock() >= next_tick):
            next_tick = clock() + _POLL_MS / 1000
            source.read_stats()
            tick(result)
    if _ended(run, result):
        # What the socket queued before the end is counted, nothing after.
        try:
            attach_filter(sock, DROP_ALL)
        except OSError:
            return
        signals = run.signals
        while run.signals == signals and _ended(run, result) and receive(0.0) >= 0:
            pass
