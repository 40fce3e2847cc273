"""The pure-Python baseline the benchmarks compare connstats against.

What a competent developer would write without a C extension: ``struct``
header parsing following docs/contract.md §4, a ``dict`` keyed by a tuple, a
``threading.Lock``, and the usual CPython speed habits (precompiled
``struct.Struct`` objects, ``unpack_from`` instead of slicing, globals bound
to locals, in-place counter lists instead of new tuples).  It has the same
API as :class:`connstats.Statistics` for what the benchmarks call
(``update_tx_virtual``, ``update_rx_virtual``, their ``_batch`` forms and
``extract``), and the same results for every packet the benchmarks send
(checked in ``test_bench_baseline.py``).  It lives here, not in the package.

Differences that do not affect the benchmarks: counters are Python ints and do
not wrap at 2**64, and there is no dump callback or flush thread.
"""

from __future__ import annotations

import ipaddress
import struct
import threading
from typing import Any, NamedTuple, Optional, Union

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

# version/IHL, total length, fragment field, protocol, src, dst
_IPV4 = struct.Struct("!BxH2xHxB2x4s4s")
# payload length, next header, src, dst
_IPV6 = struct.Struct("!4xHBx16s16s")
_PORTS = struct.Struct("!HH")
_U16 = struct.Struct("!H")

_ZERO = (0, None, 0, None, 0)
# bytes the transport view needs for the ports to count
_PORTED = {6: 20, 17: 8, 132: 12}


def decode(
    b: Any,
    _v4: Any = _IPV4.unpack_from,
    _v6: Any = _IPV6.unpack_from,
    _ports: Any = _PORTS.unpack_from,
    _u16: Any = _U16.unpack_from,
    _ported: Any = _PORTED,
) -> tuple[int, Optional[bytes], int, Optional[bytes], int]:
    """Decode ``b`` into the key ``(proto, src, sport, dst, dport)`` (docs/contract.md §4).

    Addresses are packed bytes (or None), so the key is cheap to hash.
    """
    n = len(b)
    if not n:
        return _ZERO
    version = b[0] >> 4
    if version == 4:
        if n < 20:
            return _ZERO
        vihl, tl, frag, proto, src, dst = _v4(b)
        if n < tl:
            return _ZERO
        hl = (vihl & 0x0F) << 2
        if hl > tl:
            return (0, src, 0, dst, 0)
        off = frag & 0x1FFF
        if off:
            return (0 if off < 10 else 255, src, 0, dst, 0)
        need = _ported.get(proto)
        if need is not None:
            if n - hl < need:
                return (0, src, 0, dst, 0)
            sport, dport = _ports(b, hl)
            return (proto, src, sport, dst, dport)
        tlen = n - hl
        if proto == 1:
            ok = tlen >= 4
        elif proto == 2:
            ok = tlen >= 8
        elif proto == 99:
            ok = not (frag & 0x2000) and tlen >= 7
        else:
            ok = proto != 255
        return (proto if ok else 0, src, 0, dst, 0)
    if version == 6:
        if n < 40:
            return _ZERO
        plen, proto, src, dst = _v6(b)
        if n < 40 + plen:
            return _ZERO
        t = 40
        if proto == 44:
            if n < 48:
                return (0, src, 0, dst, 0)
            proto = b[40]
            off = _u16(b, 42)[0] >> 3
            if off:
                return (0 if off < 10 else 255, src, 0, dst, 0)
            t = 48
        need = _ported.get(proto)
        if need is not None:
            if n - t < need:
                return (0, src, 0, dst, 0)
            sport, dport = _ports(b, t)
            return (proto, src, sport, dst, dport)
        tlen = n - t
        if proto == 58:
            ok = tlen >= 4
        elif proto == 99:
            ok = tlen >= 7
        else:
            ok = proto != 255
        return (proto if ok else 0, src, 0, dst, 0)
    return _ZERO


class AddrPort(NamedTuple):
    addr: Optional[IPAddress]
    port: int


class Connection(NamedTuple):
    proto: int
    src: AddrPort
    dst: AddrPort


class Counts(NamedTuple):
    tx_packets: int = 0
    tx_bytes: int = 0
    rx_packets: int = 0
    rx_bytes: int = 0


class Statistics:
    """Per-connection counters: ``dict[key tuple, [tx_pkts, tx_bytes, rx_pkts, rx_bytes]]``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._virtual: dict[tuple, list[int]] = {}
        # pre-parsed counts, keyed by the caller's own (hashable) endpoints
        self._preparsed: dict[tuple, list[int]] = {}

    def update_tx_virtual(self, packet: Any, _decode: Any = decode) -> None:
        key = _decode(packet)
        n = len(packet)
        with self._lock:
            c = self._virtual.get(key)
            if c is None:
                self._virtual[key] = [1, n, 0, 0]
            else:
                c[0] += 1
                c[1] += n

    def update_rx_virtual(self, packet: Any, _decode: Any = decode) -> None:
        proto, src, sport, dst, dport = _decode(packet)
        key = (proto, dst, dport, src, sport)
        n = len(packet)
        with self._lock:
            c = self._virtual.get(key)
            if c is None:
                self._virtual[key] = [0, 0, 1, n]
            else:
                c[2] += 1
                c[3] += n

    def update_tx_virtual_batch(self, packets: Any, _decode: Any = decode) -> None:
        """Parse every packet first, then take the lock once for the batch."""
        keyed = [(_decode(p), len(p)) for p in packets]
        with self._lock:
            get = self._virtual.get
            table = self._virtual
            for key, n in keyed:
                c = get(key)
                if c is None:
                    table[key] = [1, n, 0, 0]
                else:
                    c[0] += 1
                    c[1] += n

    def update_rx_virtual_batch(self, packets: Any, _decode: Any = decode) -> None:
        keyed = []
        append = keyed.append
        for p in packets:
            proto, src, sport, dst, dport = _decode(p)
            append(((proto, dst, dport, src, sport), len(p)))
        with self._lock:
            get = self._virtual.get
            table = self._virtual
            for key, n in keyed:
                c = get(key)
                if c is None:
                    table[key] = [0, 0, 1, n]
                else:
                    c[2] += 1
                    c[3] += n

    def update_virtual(
        self,
        proto: int,
        src: Any,
        dst: Any,
        packets: int,
        nbytes: int,
        receive: bool = False,
    ) -> None:
        """Pre-parsed counts: the endpoints the caller holds are the key.

        No conversion at all (a dict of tuples of the caller's AddrPorts):
        the fastest pure-Python form, turned into Connections at extract().
        """
        key = (proto, src, dst)
        i = 2 if receive else 0
        with self._lock:
            c = self._preparsed.get(key)
            if c is None:
                c = self._preparsed[key] = [0, 0, 0, 0]
            c[i] += packets
            c[i + 1] += nbytes

    def update_virtual_many(self, items: Any) -> None:
        """``update_virtual`` for a list of (proto, src, dst, packets, bytes), one lock."""
        with self._lock:
            get = self._preparsed.get
            table = self._preparsed
            for proto, src, dst, packets, nbytes in items:
                key = (proto, src, dst)
                c = get(key)
                if c is None:
                    table[key] = [packets, nbytes, 0, 0]
                else:
                    c[0] += packets
                    c[1] += nbytes

    def cut(self) -> dict[tuple, list[int]]:
        """Swap the window out under the lock (O(1)); the packet path's only wait."""
        with self._lock:
            window = self._virtual
            self._virtual = {}
        return window

    def extract(self) -> tuple[dict[Connection, Counts], dict[Connection, Counts]]:
        """Take the window and reset it: ``(virtual, physical)`` as in connstats."""
        with self._lock:
            window, pre = self._virtual, self._preparsed
            self._virtual, self._preparsed = {}, {}
        out = to_dicts(window)
        for (proto, src, dst), (a, b, c, d) in pre.items():
            key = Connection(
                proto, AddrPort(src.addr, src.port), AddrPort(dst.addr, dst.port)
            )
            old = out.get(key, Counts())
            out[key] = Counts(old[0] + a, old[1] + b, old[2] + c, old[3] + d)
        return out, {}


def to_dicts(window: dict[tuple, list[int]]) -> dict[Connection, Counts]:
    """Turn a cut window into ``dict[Connection, Counts]`` (outside the lock)."""
    cache: dict[Optional[bytes], Optional[IPAddress]] = {None: None}
    v4 = ipaddress.IPv4Address
    v6 = ipaddress.IPv6Address
    out = {}
    for (proto, src, sport, dst, dport), (a, b, c, d) in window.items():
        s = cache.get(src)
        if s is None and src is not None:
            s = cache[src] = v4(src) if len(src) == 4 else v6(src)
        t = cache.get(dst)
        if t is None and dst is not None:
            t = cache[dst] = v4(dst) if len(dst) == 4 else v6(dst)
        out[Connection(proto, AddrPort(s, sport), AddrPort(t, dport))] = Counts(
            a, b, c, d
        )
    return out
