"""Live capture on Linux with an AF_PACKET socket (imported only on Linux).

A ``SOCK_DGRAM`` packet socket hands over each frame with its link header
already removed, i.e. the IP packet a TUN device would deliver, together with
the kernel's packet type: ``PACKET_OUTGOING`` frames were sent by this host
(tx), everything else was received (rx).  Counting goes through the public
:class:`connstats.Statistics`, whose windows follow wall-clock time here, as
they would in a forwarder.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4
# Larger than any IP packet, including GSO/GRO super-packets (up to 64 KiB,
# more with BIG TCP); a bigger one is counted by the bytes that fit.
_RECV_BUFFER = 256 * 1024


class LiveCaptureError(Exception):
    """A live capture could not start; the message is one line for the user."""


@dataclass
class LiveResult:
    packets: int = 0  # IP packets counted
    skipped: int = 0  # frames of other protocols (ARP, LLDP, ...)
    interrupted: bool = False  # ended by Ctrl-C


def open_socket(interface: str) -> socket.socket:
    """An AF_PACKET/SOCK_DGRAM socket bound to ``interface``, or LiveCaptureError."""
    try:
        # Protocol 0 receives nothing until bind(): binding with ETH_P_ALL then
        # limits the socket to the interface, with no frames of other
        # interfaces queued in between.
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
    except PermissionError:
        raise LiveCaptureError(
            "capturing needs root or the CAP_NET_RAW capability "
            "(try sudo, or 'setcap cap_net_raw+ep' on the Python binary)"
        ) from None
    try:
        sock.bind((interface, ETH_P_ALL))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.ENODEV:
            raise LiveCaptureError(f"no such network interface: {interface}") from None
        raise LiveCaptureError(
            f"cannot capture on {interface}: {exc.strerror}"
        ) from None
    return sock


def capture(
    sock: socket.socket,
    update_tx: Callable[[memoryview], None],
    update_rx: Callable[[memoryview], None],
    *,
    duration: float | None = None,
    count: int | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> LiveResult:
    """Count IP packets from ``sock`` until ``duration`` seconds, ``count`` packets or Ctrl-C."""
    result = LiveResult()
    buf = bytearray(_RECV_BUFFER)
    view = memoryview(buf)  # slices of it hand packets over without a copy
    deadline = None if duration is None else clock() + duration
    try:
        while count is None or result.packets < count:
            if deadline is not None:
                left = deadline - clock()
                if left <= 0:
                    break
                # Wake up at the deadline even on an idle interface.
                sock.settimeout(left)
            try:
                n, address = sock.recvfrom_into(buf)
            except TimeoutError:
                break
            # address: (ifname, protocol in host order, pkttype, hatype, hwaddr)
            protocol, pkttype = address[1], address[2]
            if protocol != ETH_P_IP and protocol != ETH_P_IPV6:
                result.skipped += 1
                continue
            if pkttype == PACKET_OUTGOING:
                update_tx(view[:n])
            else:
                update_rx(view[:n])
            result.packets += 1
    except KeyboardInterrupt:
        result.interrupted = True
    return result
