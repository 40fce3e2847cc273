"""Sending IPFIX messages over UDP and TCP without ever waiting long.

Both transports are driven from one thread (the exporter holds a lock).
UDP: one connected, non-blocking socket; a message is one datagram, sent or
not (an ICMP unreachable from an earlier datagram comes back as
ECONNREFUSED on a later send).  TCP: one non-blocking connection and a
bounded queue of whole messages; :meth:`TCPTransport.flush` writes for at
most ``timeout`` seconds, so a slow collector costs the flush thread that
long at most and then messages are dropped whole, never cut in the middle
of the stream.
"""

from __future__ import annotations

import collections
import errno
import select
import socket
import time
from typing import Any, Final

#: Socket addresses as getaddrinfo returns them.
SockAddr = tuple[Any, ...]

_SNDBUF: Final = 4 << 20


class UDPTransport:
    """One connected UDP socket; ``send`` hands one datagram to the kernel."""

    reliable: Final = False

    def __init__(self, family: int, address: SockAddr) -> None:
        self.family = family
        self.address = address
        self._sock: socket.socket | None = None

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(self.family, socket.SOCK_DGRAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SNDBUF)
                sock.setblocking(False)
                # connect(): ICMP errors for this peer come back as errors on send.
                sock.connect(self.address)
            except OSError:
                sock.close()
                raise
            self._sock = sock
        return self._sock

    def send(self, message: memoryview | bytes, deadline: float) -> bool:
        """Send one message; False if it was not sent (OSError for errors).

        A full socket buffer (a burst faster than the interface) is waited
        out until ``deadline`` (time.monotonic()), then raises.
        """
        sock = self._socket()
        while True:
            try:
                return sock.send(message) == len(message)
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                select.select([], [sock], [], left)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class TCPTransport:
    """A non-blocking TCP connection with a bounded queue of whole messages."""

    reliable: Final = True

    def __init__(
        self, family: int, address: SockAddr, *, max_buffer: int, timeout: float
    ) -> None:
        self.family = family
        self.address = address
        self.max_buffer = max_buffer
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._connected = False
        # Whole messages waiting to be written: (bytes, records); the first
        # one may be partly written (self._sent bytes of it).
        self._queue: collections.deque[tuple[bytes, int]] = collections.deque()
        self._queued = 0
        self._sent = 0
        #: Set when a new connection starts: templates must be sent first.
        self.new_session = False

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def queued_bytes(self) -> int:
        return self._queued

    def connect(self, deadline: float) -> None:
        """Connect, waiting until ``deadline`` (time.monotonic()) at most."""
        if self._connected:
            return
        if self._sock is None:
            sock = socket.socket(self.family, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            err = sock.connect_ex(self.address)
            if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
                sock.close()
                raise OSError(err, f"connect: {errno.errorcode.get(err, err)}")
            self._sock = sock
        sock = self._sock
        _, writable, _ = select.select(
            [], [sock], [], max(0.0, deadline - time.monotonic())
        )
        if not writable:
            raise TimeoutError("connect timed out")
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._reset()
            raise OSError(err, f"connect: {errno.errorcode.get(err, err)}")
        self._connected = True
        self.new_session = True

    def enqueue(self, message: memoryview | bytes, records: int) -> bool:
        """Queue one whole message; False (nothing queued) if the queue is full."""
        if self._queued + len(message) > self.max_buffer:
            return False
        self._queue.append((bytes(message), records))
        self._queued += len(message)
        return True

    @property
    def queued_records(self) -> int:
        return sum(r for _, r in self._queue)

    def flush(self, deadline: float) -> tuple[int, int]:
        """Write queued messages until done or ``deadline``.

        Returns how many messages and data records were written completely.

        Raises OSError when the connection fails; the queue is then dropped
        (:meth:`drop` tells how many records it held).
        """
        sock = self._sock
        if sock is None or not self._connected:
            return 0, 0
        messages = records_done = 0
        while self._queue:
            data, records = self._queue[0]
            try:
                n = sock.send(memoryview(data)[self._sent :])
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                select.select([], [sock], [], left)
                continue
            except OSError:
                self._reset()
                raise
            self._sent += n
            if self._sent == len(data):
                self._queue.popleft()
                self._queued -= len(data)
                self._sent = 0
                messages += 1
                records_done += records
        return messages, records_done

    def drop(self) -> int:
        """Forget every queued message; return how many records they held."""
        records = self.queued_records
        self._queue.clear()
        self._queued = 0
        self._sent = 0
        return records

    def _reset(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._connected = False

    def close(self) -> None:
        self._reset()
