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


class _ConnectionFields(NamedTuple):
    proto: int = 0
    src: AddrPort = _NO_ADDR
    dst: AddrPort = _NO_ADDR


def _as_addrport(value: Any, argname: str) -> AddrPort:
    # as the compiled Connection: an AddrPort, or an (address, port) pair
    if isinstance(value, AddrPort):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        return AddrPort(value[0], value[1])
    raise TypeError(f"{argname}: expected an AddrPort, got {type(value).__name__}")


class Connection(_ConnectionFields):
    """A connection: IP protocol number, source and destination.

    For tx packets ``src``/``dst`` are the packet's own; for rx packets they
    are swapped, so both directions of a flow land on the same Connection.
    Physical connections counted by ``update_*_physical`` have ``proto == 0``
    and ``src.port == 0``.  ``vni`` is the VNI or key of the tunnel a
    decapsulated packet came through (docs/tunnels.md), else None; it is not
    one of the three items.
    """

    __slots__ = ()

    #: The tunnel's VNI or key; None (a class attribute) for most connections.
    vni: Optional[int] = None

    def __new__(
        cls,
        proto: int = 0,
        src: AddrPort = _NO_ADDR,
        dst: AddrPort = _NO_ADDR,
        vni: Optional[int] = None,
    ) -> Connection:
        if type(src) is not AddrPort:
            src = _as_addrport(src, "src")
        if type(dst) is not AddrPort:
            dst = _as_addrport(dst, "dst")
        if vni is None:
            # type(conn)(proto, src, dst) of a tunnel row is a plain one
            plain = Connection if issubclass(cls, _TunnelConnection) else cls
            return _ConnectionFields.__new__(plain, proto, src, dst)
        if isinstance(vni, bool) or not isinstance(vni, int):
            raise TypeError(f"vni: expected an int or None, got {type(vni).__name__}")
        if not 0 <= vni <= 0xFFFFFFFF:
            raise ValueError(f"vni: {vni} is out of range 0..4294967295")
        conn = _ConnectionFields.__new__(_TunnelConnection, proto, src, dst)
        conn.__dict__["vni"] = int(vni)
        return conn

    def __str__(self) -> str:
        name = protocol_name(self.proto) or "ip"
        if self.vni is not None:
            return f"{name} {self.src} -> {self.dst} vni {self.vni}"
        return f"{name} {self.src} -> {self.dst}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict in the shape of Tailscale's network log (plus ``vni``)."""
        out: dict[str, Any] = {}
        if self.proto:
            out["proto"] = self.proto
        if self.src.addr is not None:
            out["src"] = str(self.src)
        if self.dst.addr is not None:
            out["dst"] = str(self.dst)
        if self.vni is not None:
            out["vni"] = self.vni
        return out


def _vni_key(conn: Any) -> int:
    vni = getattr(conn, "vni", None)
    return -1 if vni is None else vni


class _TunnelConnection(Connection):
    """A Connection with a ``vni``: equal, hashed and ordered with it.

    Connections without one stay plain tuples (fast dict keys); these keep
    the VNI in their instance dict, which a tuple subclass may have.
    """

    def _key(self) -> tuple[Any, ...]:
        return (self.proto, self.src, self.dst, _vni_key(self))

    def __hash__(self) -> int:
        return hash(self._key())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Connection):
            return NotImplemented
        return self._key() == (other.proto, other.src, other.dst, _vni_key(other))

    def __ne__(self, other: object) -> bool:
        if not isinstance(other, Connection):
            return NotImplemented
        return not self == other

    def __lt__(self, other: Any) -> bool:
        if not isinstance(other, Connection):
            return NotImplemented
        return self._key() < (other.proto, other.src, other.dst, _vni_key(other))

    def __le__(self, other: Any) -> bool:
        if not isinstance(other, Connection):
            return NotImplemented
        return self._key() <= (other.proto, other.src, other.dst, _vni_key(other))

    def __gt__(self, other: Any) -> bool:
        if not isinstance(other, Connection):
            return NotImplemented
        return self._key() > (other.proto, other.src, other.dst, _vni_key(other))

    def __ge__(self, other: Any) -> bool:
        if not isinstance(other, Connection):
            return NotImplemented
        return self._key() >= (other.proto, other.src, other.dst, _vni_key(other))

    def __repr__(self) -> str:
        return (
            f"Connection(proto={self.proto!r}, src={self.src!r}, dst={self.dst!r}, "
            f"vni={self.vni!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (Connection, (self.proto, self.src, self.dst, self.vni))

    def __copy__(self) -> _TunnelConnection:
        return self

    def __deepcopy__(self, memo: Any) -> _TunnelConnection:
        return self


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


class Decapsulated(NamedTuple):
    """What :func:`connstats.decap` found in a packet (docs/tunnels.md).

    ``outer`` is the physical connection of a tunnel packet (its protocol,
    outer addresses and ports, ``vni`` of the outermost tunnel), None when
    the packet is not a tunnel or a malformed one.  The innermost IP packet
    is ``packet[offset:offset + length]``: the whole packet when ``outer`` is
    None, nothing (length 0) for a tunnel that carries no IP packet.
    ``vni`` is the VNI or key of the innermost tunnel that has one.
    """

    outer: Any
    offset: int
    length: int
    vni: Optional[int]


class TimedCounts(Counts):
    """Counts with the time of the connection's first and last packet.

    Windows of ``Statistics(track_times=True)`` (and of the capture replay)
    hold these: ``first_ns``/``last_ns`` are nanoseconds since the Unix epoch
    (UTC).  Iteration, equality, hashing and ordering are those of Counts
    (the four counters); adding two TimedCounts keeps the earliest first and
    the latest last time (adding a plain Counts gives a Counts).
    """

    first_ns: int
    last_ns: int

    def __new__(
        cls,
        tx_packets: int = 0,
        tx_bytes: int = 0,
        rx_packets: int = 0,
        rx_bytes: int = 0,
        *,
        first_ns: int = 0,
        last_ns: int = 0,
    ) -> TimedCounts:
        self = super().__new__(cls, tx_packets, tx_bytes, rx_packets, rx_bytes)
        for name, value in (("first_ns", first_ns), ("last_ns", last_ns)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
            if not -(1 << 63) <= value < (1 << 63):
                raise ValueError(f"{name}: {value} is out of range of int64")
        self.first_ns = int(first_ns)
        self.last_ns = int(last_ns)
        return self

    def __add__(self, other: Any) -> Counts:
        total = Counts.__add__(self, other)
        if total is NotImplemented or not isinstance(other, TimedCounts):
            return total
        return TimedCounts(
            *total,
            first_ns=min(self.first_ns, other.first_ns),
            last_ns=max(self.last_ns, other.last_ns),
        )

    def __reduce__(self) -> tuple[Any, tuple[int, ...]]:
        return (_timed_counts, (*self, self.first_ns, self.last_ns))

    def __repr__(self) -> str:
        return (
            f"TimedCounts(tx_packets={self.tx_packets}, tx_bytes={self.tx_bytes}, "
            f"rx_packets={self.rx_packets}, rx_bytes={self.rx_bytes}, "
            f"first_ns={self.first_ns}, last_ns={self.last_ns})"
        )


def _timed_counts(
    tx_packets: int,
    tx_bytes: int,
    rx_packets: int,
    rx_bytes: int,
    first_ns: int,
    last_ns: int,
) -> TimedCounts:
    return TimedCounts(
        tx_packets, tx_bytes, rx_packets, rx_bytes, first_ns=first_ns, last_ns=last_ns
    )


#: Tailscale's service addresses (MagicDNS/quad-100), for ``ignore_destinations``.
TAILSCALE_SERVICE_ADDRESSES: tuple[IPAddress, ...] = (
    ipaddress.IPv4Address("100.100.100.100"),
    ipaddress.IPv6Address("fd7a:115c:a1e0::53"),
)


# Fixed-size records for Statistics.update_records: the batch form of
# update_virtual/update_physical.  One record is
#
#   offset  size  field
#        0     1  proto (IP protocol number)
#        1     1  flags: RECORD_RECEIVE, RECORD_PHYSICAL; other bits zero
#        2     1  src family: 0 (no address), 4 or 6
#        3     1  dst family
#        4     2  src port
#        6     2  dst port
#        8    16  src address, network byte order (IPv4: first 4 bytes, rest zero)
#       24    16  dst address
#       40     8  packets
#       48     8  bytes
#
# Integers are little-endian on every platform, so that a buffer written
# with struct (``RECORD_FORMAT``) or a numpy structured dtype means the same
# everywhere.

#: ``struct`` format of one record (little-endian, no padding).
RECORD_FORMAT = "<BBBBHH16s16sQQ"
#: Bytes per record.
RECORD_SIZE = 56
#: Flag bit: count into the rx counters (``receive=True``).
RECORD_RECEIVE = 1
#: Flag bit: a physical connection (``update_physical``), not a virtual one.
RECORD_PHYSICAL = 2

#: Upstream's JSON size of a network log message without connections
#: (``netlogtype.MinMessageJSONSize``) and the most one connection adds
#: (``netlogtype.MaxConnectionCountsJSONSize``): ``Statistics(max_bytes=)``
#: bounds ``MESSAGE_OVERHEAD_BYTES + CONNECTION_BYTES * connections``.
MESSAGE_OVERHEAD_BYTES = 219
CONNECTION_BYTES = 247
