"""Value types handed to users: AddrPort, Connection, Counts; buffer type aliases.

They are NamedTuples so that they are immutable, hashable and cheap to build
from the C core.  Ordering is overridden where plain tuple ordering would
raise (``None < IPv4Address`` or IPv4 vs IPv6 comparisons).
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Optional, Union

# Packets are buffers: anything that exports the buffer protocol (bytes,
# bytearray, memoryview, array, numpy arrays).  ``collections.abc.Buffer``
# exists from Python 3.12 on; before that type checkers take the same protocol
# from ``typing_extensions``, which they always have (it ships in typeshed), so
# connstats needs no runtime dependency for it.
if sys.version_info >= (3, 12):
    from collections.abc import Buffer as Buffer
elif TYPE_CHECKING:
    from typing_extensions import Buffer as Buffer
else:  # importable at run time all the same, without typing_extensions
    Buffer = object

#: Offsets or lengths into a buffer: an integer buffer (array('I'), numpy) or ints.
IndexArray = Union[Buffer, Sequence[int]]

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

_U64 = (1 << 64) - 1

#: IANA protocol numbers users meet most often, for readable output.
PROTOCOL_NAMES = {
    0: "",
    1: "icmp",
    2: "igmp",
    6: "tcp",
    17: "udp",
    58: "icmpv6",
    99: "tsmp",
    132: "sctp",
    255: "fragment",
}


def protocol_name(proto: int) -> str:
    """Return a short name for an IP protocol number ("tcp", "proto-47")."""
    name = PROTOCOL_NAMES.get(proto)
    if name is None:
        return f"proto-{proto}"
    return name


def _addr_sort_key(addr: Optional[IPAddress]) -> tuple[int, int]:
    if addr is None:
        return (0, 0)
    return (addr.version, int(addr))


class AddrPort(NamedTuple):
    """An IP address (or ``None`` when the packet had none) and a port."""

    addr: Optional[IPAddress]
    port: int

    def __str__(self) -> str:
        if self.addr is None:
            return f"invalid:{self.port}" if self.port else "invalid"
        if self.addr.version == 6:
            return f"[{self.addr}]:{self.port}"
        return f"{self.addr}:{self.port}"

    def _key(self) -> tuple[tuple[int, int], int]:
        return (_addr_sort_key(self.addr), self.port)

    # Total order across families and the "no address" case; tuple ordering
    # would raise TypeError comparing None or IPv4 with IPv6.
    def __lt__(self, other: Any) -> bool:
        if not isinstance(other, AddrPort):
            return NotImplemented
        return self._key() < other._key()

    def __le__(self, other: Any) -> bool:
        if not isinstance(other, AddrPort):
            return NotImplemented
        return self._key() <= other._key()

    def __gt__(self, other: Any) -> bool:
        if not isinstance(other, AddrPort):
            return NotImplemented
        return self._key() > other._key()

    def __ge__(self, other: Any) -> bool:
        if not isinstance(other, AddrPort):
            return NotImplemented
        return self._key() >= other._key()


_NO_ADDR = AddrPort(None, 0)


class Connection(NamedTuple):
    """A connection: IP protocol number, source and destination.

    For tx packets ``src``/``dst`` are the packet's own; for rx packets they
    are swapped, so both directions of a flow land on the same Connection.
    Physical connections have ``proto == 0`` and ``src.port == 0``.
    """

    proto: int = 0
    src: AddrPort = _NO_ADDR
    dst: AddrPort = _NO_ADDR

    def __str__(self) -> str:
        name = protocol_name(self.proto) or "ip"
        return f"{name} {self.src} -> {self.dst}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict in the shape of Tailscale's network log."""
        out: dict[str, Any] = {}
        if self.proto:
            out["proto"] = self.proto
        if self.src.addr is not None:
            out["src"] = str(self.src)
        if self.dst.addr is not None:
            out["dst"] = str(self.dst)
        return out


class Counts(NamedTuple):
    """Packet and byte counters of one connection (unsigned 64-bit, wrapping)."""

    tx_packets: int = 0
    tx_bytes: int = 0
    rx_packets: int = 0
    rx_bytes: int = 0

    def __add__(self, other: Any) -> Counts:
        if not isinstance(other, Counts):
            return NotImplemented
        return Counts(
            (self.tx_packets + other.tx_packets) & _U64,
            (self.tx_bytes + other.tx_bytes) & _U64,
            (self.rx_packets + other.rx_packets) & _U64,
            (self.rx_bytes + other.rx_bytes) & _U64,
        )

    def __str__(self) -> str:
        return (
            f"tx {self.tx_packets} pkts / {self.tx_bytes} B, "
            f"rx {self.rx_packets} pkts / {self.rx_bytes} B"
        )

    def to_dict(self) -> dict[str, int]:
        """JSON-ready dict with Tailscale's field names; zero fields omitted."""
        out: dict[str, int] = {}
        if self.tx_packets:
            out["txPkts"] = self.tx_packets
        if self.tx_bytes:
            out["txBytes"] = self.tx_bytes
        if self.rx_packets:
            out["rxPkts"] = self.rx_packets
        if self.rx_bytes:
            out["rxBytes"] = self.rx_bytes
        return out


#: Tailscale's service addresses (MagicDNS/quad-100), for ``ignore_destinations``.
TAILSCALE_SERVICE_ADDRESSES: tuple[IPAddress, ...] = (
    ipaddress.IPv4Address("100.100.100.100"),
    ipaddress.IPv6Address("fd7a:115c:a1e0::53"),
)
