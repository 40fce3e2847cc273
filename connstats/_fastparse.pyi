"""Type stubs for the compiled core (src/_fastparse.pyx)."""

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Final, SupportsIndex

from ._types import Buffer, Decapsulated, IndexArray

_Address = IPv4Address | IPv6Address
_AddressArg = str | bytes | bytearray | IPv4Address | IPv6Address
_AddrPortArg = tuple[_AddressArg, SupportsIndex] | str
_IndexArray = IndexArray

class AddrPort:
    """An IP address (``None`` when the packet had none) and a port."""

    @property
    def addr(self) -> _Address | None: ...
    @property
    def port(self) -> int: ...
    def __init__(self, addr: _Address | None, port: int) -> None: ...
    def __hash__(self) -> int: ...
    def __eq__(self, other: object) -> bool: ...
    def __lt__(self, other: AddrPort) -> bool: ...
    def __le__(self, other: AddrPort) -> bool: ...
    def __gt__(self, other: AddrPort) -> bool: ...
    def __ge__(self, other: AddrPort) -> bool: ...
    def __iter__(self) -> Iterator[Any]: ...
    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> Any: ...

# pre-parsed endpoints may also have no address (as decode() gives)
_EndpointArg = AddrPort | tuple[_AddressArg | None, SupportsIndex] | str

class Connection:
    """IP protocol number, source and destination."""

    @property
    def proto(self) -> int: ...
    @property
    def src(self) -> AddrPort: ...
    @property
    def dst(self) -> AddrPort: ...
    @property
    def vni(self) -> int | None:
        """The VNI or key of a decapsulated tunnel (docs/tunnels.md), else None."""
    def __init__(
        self,
        proto: int = 0,
        src: AddrPort | tuple[_Address | None, int] | None = None,
        dst: AddrPort | tuple[_Address | None, int] | None = None,
        vni: int | None = None,
    ) -> None: ...
    def __hash__(self) -> int: ...
    def __eq__(self, other: object) -> bool: ...
    def __lt__(self, other: Connection) -> bool: ...
    def __le__(self, other: Connection) -> bool: ...
    def __gt__(self, other: Connection) -> bool: ...
    def __ge__(self, other: Connection) -> bool: ...
    def __iter__(self) -> Iterator[Any]: ...
    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> Any: ...
    def to_dict(self) -> dict[str, Any]: ...

class Counts:
    """Packet and byte counters (unsigned 64-bit, wrapping)."""

    @property
    def tx_packets(self) -> int: ...
    @property
    def tx_bytes(self) -> int: ...
    @property
    def rx_packets(self) -> int: ...
    @property
    def rx_bytes(self) -> int: ...
    def __init__(
        self,
        tx_packets: int = 0,
        tx_bytes: int = 0,
        rx_packets: int = 0,
        rx_bytes: int = 0,
    ) -> None: ...
    def __add__(self, other: Counts) -> Counts: ...
    def __hash__(self) -> int: ...
    def __eq__(self, other: object) -> bool: ...
    def __lt__(self, other: Counts) -> bool: ...
    def __le__(self, other: Counts) -> bool: ...
    def __gt__(self, other: Counts) -> bool: ...
    def __ge__(self, other: Counts) -> bool: ...
    def __iter__(self) -> Iterator[int]: ...
    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> int: ...
    def to_dict(self) -> dict[str, int]: ...

class TimedCounts(Counts):
    """Counts with the time (ns since the epoch) of the first and last packet."""

    @property
    def first_ns(self) -> int: ...
    @property
    def last_ns(self) -> int: ...
    def __init__(
        self,
        tx_packets: int = 0,
        tx_bytes: int = 0,
        rx_packets: int = 0,
        rx_bytes: int = 0,
        *,
        first_ns: int = 0,
        last_ns: int = 0,
    ) -> None: ...

class Window:
    """A window of counts cut from a Core."""

    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...
    @property
    def generation(self) -> int: ...
    @property
    def track_times(self) -> bool: ...
    @property
    def packets(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def table_bytes(self) -> int: ...
    def __len__(self) -> int: ...
    def to_dicts(self) -> tuple[dict[Connection, Counts], dict[Connection, Counts]]: ...
    def materialize_slices(
        self, virtual: dict[Connection, Counts], physical: dict[Connection, Counts]
    ) -> Iterator[None]: ...
    def totals(self) -> tuple[int, int]:
        """(packets, bytes) of every connection, exact (no wrap)."""
    def sorted_items(
        self, column: str, reverse: bool, top: int
    ) -> tuple[OrderedItems, int]:
        """The report's rows straight from the table (see sorted_items)."""

def merge_windows(windows: Iterable[Window]) -> Window:
    """One window with every connection of ``windows``, counts added up."""

class Core:
    """The counter table; connstats.Statistics is the public API."""

    def __init__(
        self,
        max_conns: int = 0,
        ignore_destinations: Iterable[_AddressArg] = (),
        max_pending: int = 1024,
        max_pending_conns: int = 1 << 21,
        track_times: bool = False,
    ) -> None: ...
    def update_tx_virtual(self, packet: Buffer, /) -> None: ...
    def update_rx_virtual(self, packet: Buffer, /) -> None: ...
    def update_tx_physical(
        self, src: _AddressArg, dst: _AddrPortArg, n: int, /, *, packets: int = 1
    ) -> None: ...
    def update_rx_physical(
        self, src: _AddressArg, dst: _AddrPortArg, n: int, /, *, packets: int = 1
    ) -> None: ...
    def update_virtual(
        self,
        proto: int,
        src: _EndpointArg,
        dst: _EndpointArg,
        packets: int,
        bytes: int,
        receive: bool = False,
    ) -> None: ...
    def update_physical(
        self,
        proto: int,
        src: _EndpointArg,
        dst: _EndpointArg,
        packets: int,
        bytes: int,
        receive: bool = False,
    ) -> None: ...
    def update_records(self, records: Buffer, /) -> None: ...
    def update_tx_virtual_batch(self, packets: Sequence[Buffer], /) -> None: ...
    def update_rx_virtual_batch(self, packets: Sequence[Buffer], /) -> None: ...
    # vnis: the VNI or key of each packet's tunnel (int64, -1 for none)
    def update_tx_virtual_buffer(
        self,
        buffer: Buffer,
        offsets: _IndexArray,
        lengths: _IndexArray,
        vnis: _IndexArray | None = None,
        /,
    ) -> None: ...
    def update_rx_virtual_buffer(
        self,
        buffer: Buffer,
        offsets: _IndexArray,
        lengths: _IndexArray,
        vnis: _IndexArray | None = None,
        /,
    ) -> None: ...
    # Physical traffic under each packet's own decoded connection: the outer
    # packets of decapsulated tunnels (docs/tunnels.md).
    def update_tx_physical_buffer(
        self,
        buffer: Buffer,
        offsets: _IndexArray,
        lengths: _IndexArray,
        vnis: _IndexArray | None = None,
        /,
    ) -> None: ...
    def update_rx_physical_buffer(
        self,
        buffer: Buffer,
        offsets: _IndexArray,
        lengths: _IndexArray,
        vnis: _IndexArray | None = None,
        /,
    ) -> None: ...
    def update_tx_virtual_buffer_at(
        self,
        buffer: Buffer,
        offsets: _IndexArray,
        lengths: _IndexArray,
        times: Buffer,
        /,
    ) -> None: ...
    def update_rx_virtual_buffer_at(
        self,
        buffer: Buffer,
        offsets: _IndexArray,
        lengths: _IndexArray,
        times: Buffer,
        /,
    ) -> None: ...
    # MemoryError (the open window kept, with its counts) if no new window
    # can be allocated; None only if nothing was counted.
    def cut(self, generation: int = -1) -> Window | None: ...
    def window_info(self) -> tuple[int, float] | None: ...
    def pop_pending(self) -> Window | None: ...
    def wait(self, timeout: float | None = None) -> bool: ...
    def notify(self) -> None: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def _lane_state(self) -> tuple[bool, int]: ...
    @property
    def connections(self) -> int: ...
    @property
    def table_bytes(self) -> int: ...
    @property
    def pending(self) -> int: ...
    @property
    def dropped_windows(self) -> int: ...
    @property
    def dropped_packets(self) -> int: ...
    @property
    def dropped_bytes(self) -> int: ...
    def _after_fork_in_child(self) -> None: ...

class CountingMethods:
    """Base of connstats.Statistics: its per-packet counting methods."""

    def _attach_core(self, core: object) -> bool: ...
    def update_tx_virtual(self, packet: Buffer) -> None:
        """Count one transmitted IP packet (any C-contiguous bytes-like object)."""
    def update_rx_virtual(self, packet: Buffer) -> None:
        """Count one received IP packet; its src and dst are swapped."""
    def update_tx_physical(
        self, src: _AddressArg, dst: _AddrPortArg, n: int, *, packets: int = 1
    ) -> None:
        """Count ``packets`` transmitted WireGuard packets of ``n`` bytes in all to physical peer ``dst``."""
    def update_rx_physical(
        self, src: _AddressArg, dst: _AddrPortArg, n: int, *, packets: int = 1
    ) -> None:
        """Count ``packets`` received WireGuard packets of ``n`` bytes in all from physical peer ``dst``."""
    def update_virtual(
        self,
        proto: int,
        src: _EndpointArg,
        dst: _EndpointArg,
        packets: int,
        bytes: int,
        receive: bool = False,
    ) -> None:
        """Count ``packets`` packets, ``bytes`` bytes in all, on the virtual connection ``(proto, src, dst)`` as given (no swap); ``receive`` selects the rx counters."""
    def update_physical(
        self,
        proto: int,
        src: _EndpointArg,
        dst: _EndpointArg,
        packets: int,
        bytes: int,
        receive: bool = False,
    ) -> None:
        """Count ``packets`` packets, ``bytes`` bytes in all, on the physical connection ``(proto, src, dst)`` as given; ``receive`` selects the rx counters."""
    def update_records(self, records: Buffer) -> None:
        """Count a buffer of fixed-size records (``RECORD_FORMAT``), the batch form of update_virtual/update_physical (GIL released while counting)."""
    def update_tx_virtual_batch(self, packets: Sequence[Buffer]) -> None:
        """Count a sequence of transmitted packets (GIL released while counting)."""
    def update_rx_virtual_batch(self, packets: Sequence[Buffer]) -> None:
        """Count a sequence of received packets (GIL released while counting)."""
    def update_tx_virtual_buffer(
        self, buffer: Buffer, offsets: _IndexArray, lengths: _IndexArray
    ) -> None:
        """Count transmitted packets ``buffer[offsets[i]:offsets[i] + lengths[i]]``."""
    def update_rx_virtual_buffer(
        self, buffer: Buffer, offsets: _IndexArray, lengths: _IndexArray
    ) -> None:
        """Count received packets ``buffer[offsets[i]:offsets[i] + lengths[i]]``."""

def decode(packet: Buffer) -> tuple[int, AddrPort, AddrPort]: ...
def decap(packet: Buffer, mask: int = 31) -> Decapsulated: ...
def decap_split(
    buffer: Buffer, offsets: _IndexArray, lengths: _IndexArray, mask: int
) -> tuple[Any, ...]: ...
def decap_walk(
    buf: Buffer, at: int, avail: int, length: int, mask: int
) -> tuple[int, int, int, int, int]: ...

TUNNEL_VXLAN: Final[int]
TUNNEL_GENEVE: Final[int]
TUNNEL_GRE: Final[int]
TUNNEL_IPIP: Final[int]
TUNNEL_MPLS_UDP: Final[int]
TUNNEL_ALL: Final[int]
MAX_DEPTH: Final[int]
DECAP_NONE: Final[int]
DECAP_INNER: Final[int]
DECAP_NO_IP: Final[int]
DECAP_BAD: Final[int]
NO_VNI: Final[int]

SHARDS: Final[int]
ENTRY_BYTES: Final[int]
IPV4_ENTRY_BYTES: Final[int]
IPV4_KEY_BYTES: Final[int]
# C size of a window header (its allocation is what cut() needs to succeed)
WINDOW_BYTES: Final[int]

def defer_refcount(obj: object) -> bool: ...
def _set_lane_min_default(conns: int) -> int: ...

HAS_DEFERRED_REFCOUNT: Final[bool]

# The row loops of connstats read's JSON/CSV output (src/core/textout.pxi);
# connstats/cli/fastout.py is their reference.

class OrderedItems(Sequence[tuple[Connection, Counts, bool]]):
    """The items of a report in order, built on demand."""

    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> tuple[Connection, Counts, bool]: ...  # type: ignore[override]

def sorted_items(
    tables: Iterable[tuple[dict[Connection, Counts], bool]],
    column: str,
    reverse: bool,
    top: int,
) -> tuple[OrderedItems, int]: ...
def json_rows(items: Iterable[tuple[Connection, Counts, bool]]) -> tuple[str, str]: ...
def csv_rows(
    items: Iterable[tuple[Connection, Counts, bool]],
    head: str,
    names: Sequence[str],
    vni: bool = False,
) -> str: ...
def json_rows_to(
    items: Iterable[tuple[Connection, Counts, bool]],
    write: Callable[[bytes], object],
    physical: bool,
    opener: bytes,
    closer: bytes,
) -> int: ...
def csv_rows_to(
    items: Iterable[tuple[Connection, Counts, bool]],
    write: Callable[[bytes], object],
    head: str,
    names: Sequence[str],
    vni: bool = False,
) -> int: ...

# Cumulative counts per series (src/core/series.pxi), the store of
# connstats.metrics.Totals.

SERIES_V6: Final[int]

class SeriesTable:
    """Counts per series, summed over the windows folded into it."""

    def __init__(self, fields: Iterable[int], max_series: int) -> None: ...
    @property
    def fields(self) -> tuple[int, ...]: ...
    def __len__(self) -> int: ...
    def fold_slices(self, table: Mapping[Any, Any], traffic: str) -> Iterator[None]: ...
    def items(
        self,
    ) -> list[tuple[tuple[Any, ...] | None, tuple[int, int, int, int]]]: ...

class Columns:
    """A window's connections as packed columns (src/core/columns.pxi)."""

    @property
    def n(self) -> int: ...
    kind: bytes
    proto: bytes
    src_family: bytes
    dst_family: bytes
    src_port: bytes
    dst_port: bytes
    tx_packets: bytes
    tx_bytes: bytes
    rx_packets: bytes
    rx_bytes: bytes
    src_valid: bytes | None
    dst_valid: bytes | None
    src_offsets: bytes
    dst_offsets: bytes
    src_text: bytes
    dst_text: bytes
    src_packed: bytes | None
    dst_packed: bytes | None
    first_ns: bytes | None
    last_ns: bytes | None
    vni: bytes | None
    vni_valid: bytes | None

def columns(
    source: Window | tuple[dict[Connection, Counts], dict[Connection, Counts]],
    packed: bool = False,
) -> Columns: ...
