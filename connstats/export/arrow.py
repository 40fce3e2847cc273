"""Windows as Arrow tables, for pandas, Polars, DuckDB and Parquet.

``table(start, end, virtual, physical)`` takes what a ``dump`` callback
receives and returns a :class:`pyarrow.Table` with one row per connection::

    window_start, window_end   timestamp[ns, UTC]
    traffic                    dictionary<int8, string>: "virtual" / "physical"
    proto                      uint8
    src_addr, dst_addr         large_string (str() of the address; null if none)
    src_port, dst_port         uint16
    tx_packets, tx_bytes,
    rx_packets, rx_bytes       uint64
    first_seen, last_seen      timestamp[ns, UTC]   (values are TimedCounts)
    communityId                string               (community_id=True)
    vni                        uint32               (vni=True: a decapsulated
                                                    tunnel's VNI or key, null
                                                    on other rows)

The columns are filled by one C pass of the core over the window (or over
the C fields of the dicts' values) into buffers that pyarrow wraps as they
are: no Python object is made per connection (the Community ID column
excepted).  ``table.to_pandas()`` and ``polars.from_arrow(table)`` work as
for any Arrow table.  Needs ``pyarrow`` (``pip install connstats[arrow]``).
"""

from __future__ import annotations

import array
import struct
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Optional

from .. import _types
from .._impl import core as _core
from . import community_id as _community_id

if TYPE_CHECKING:
    import pyarrow

__all__ = ["COLUMNS", "schema", "table", "window_table", "with_schema"]

#: The columns every table has, in order.
COLUMNS = (
    "window_start",
    "window_end",
    "traffic",
    "proto",
    "src_addr",
    "src_port",
    "dst_addr",
    "dst_port",
    "tx_packets",
    "tx_bytes",
    "rx_packets",
    "rx_bytes",
)
TIME_COLUMNS = ("first_seen", "last_seen")
COMMUNITY_ID_COLUMN = "communityId"
VNI_COLUMN = "vni"

_TRAFFIC = ("virtual", "physical")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError(
            "connstats.export.arrow needs pyarrow: pip install 'connstats[arrow]'"
        ) from None
    return pyarrow


def schema(
    *, times: bool = False, community_id: bool = False, vni: bool = False
) -> pyarrow.Schema:
    """The schema of :func:`table`'s results (with the optional columns asked for)."""
    pa = _pyarrow()
    ts = pa.timestamp("ns", tz="UTC")
    fields = [
        pa.field("window_start", ts, nullable=False),
        pa.field("window_end", ts, nullable=False),
        pa.field("traffic", pa.dictionary(pa.int8(), pa.string()), nullable=False),
        pa.field("proto", pa.uint8(), nullable=False),
        pa.field("src_addr", pa.large_string()),
        pa.field("src_port", pa.uint16(), nullable=False),
        pa.field("dst_addr", pa.large_string()),
        pa.field("dst_port", pa.uint16(), nullable=False),
        pa.field("tx_packets", pa.uint64(), nullable=False),
        pa.field("tx_bytes", pa.uint64(), nullable=False),
        pa.field("rx_packets", pa.uint64(), nullable=False),
        pa.field("rx_bytes", pa.uint64(), nullable=False),
    ]
    if times:
        fields += [pa.field(name, ts) for name in TIME_COLUMNS]
    if community_id:
        fields.append(pa.field(COMMUNITY_ID_COLUMN, pa.string()))
    if vni:
        fields.append(pa.field(VNI_COLUMN, pa.uint32()))
    return pa.schema(fields)


def _ns(value: Any, argname: str) -> int:
    """A window bound as ns since the epoch: an aware datetime or an int of ns."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{argname}: expected a timezone-aware datetime")
        # exact (timestamp() is a float: it loses microseconds in ns)
        delta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + (
            delta.microseconds * 1000
        )
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{argname}: expected a datetime or int nanoseconds, got {type(value).__name__}"
        )
    return value


def _from_columns(
    cols: Any,
    start_ns: int,
    end_ns: int,
    *,
    community_id: bool,
    seed: int,
    vni: bool = False,
) -> pyarrow.Table:
    pa = _pyarrow()
    n = cols.n
    times = cols.first_ns is not None
    sch = schema(times=times, community_id=community_id, vni=vni)
    buf = pa.py_buffer

    def plain(typ: Any, data: bytes, valid: Optional[bytes] = None) -> Any:
        return pa.Array.from_buffers(
            typ, n, [None if valid is None else buf(valid), buf(data)]
        )

    def text(offsets: bytes, data: bytes, valid: Optional[bytes]) -> Any:
        return pa.Array.from_buffers(
            pa.large_string(),
            n,
            [None if valid is None else buf(valid), buf(offsets), buf(data)],
        )

    ts = sch.field("window_start").type
    traffic = pa.DictionaryArray.from_arrays(
        plain(pa.int8(), cols.kind), _strings(pa, _TRAFFIC)
    )
    arrays = [
        plain(ts, struct.pack("=q", start_ns) * n),  # not pa.scalar: see _strings
        plain(ts, struct.pack("=q", end_ns) * n),
        traffic,
        plain(pa.uint8(), cols.proto),
        text(cols.src_offsets, cols.src_text, cols.src_valid),
        plain(pa.uint16(), cols.src_port),
        text(cols.dst_offsets, cols.dst_text, cols.dst_valid),
        plain(pa.uint16(), cols.dst_port),
        plain(pa.uint64(), cols.tx_packets),
        plain(pa.uint64(), cols.tx_bytes),
        plain(pa.uint64(), cols.rx_packets),
        plain(pa.uint64(), cols.rx_bytes),
    ]
    if times:
        arrays += [plain(ts, cols.first_ns), plain(ts, cols.last_ns)]
    if community_id:
        arrays.append(_strings(pa, _community_id.column(cols, seed)))
    if vni:
        if cols.vni is None:
            arrays.append(pa.nulls(n, pa.uint32()))
        else:
            arrays.append(plain(pa.uint32(), cols.vni, cols.vni_valid))
    return pa.Table.from_arrays(arrays, schema=sch)


def _strings(pa: Any, values: Sequence[Optional[str]]) -> Any:
    """A string array of ``values`` (None: null), made from its buffers.

    Not ``pa.array(values)`` (nor ``pa.scalar``): those first ask whether
    pandas is installed, and where it is, importing it to learn that takes
    longer (0.3 s) than writing a window of 150,000 rows to Parquet.
    """
    n = len(values)
    offsets = array.array("i", bytes(4 * (n + 1)))
    valid = bytearray((n + 7) // 8)
    parts = []
    end = 0
    for i, value in enumerate(values):
        if value is not None:
            data = value.encode()
            parts.append(data)
            end += len(data)
            valid[i >> 3] |= 1 << (i & 7)
        offsets[i + 1] = end
    if end > 0x7FFFFFFF:
        raise OverflowError("more than 2 GiB of text in one string column")
    nulls = n - len(parts)
    return pa.Array.from_buffers(
        pa.string(),
        n,
        [
            pa.py_buffer(valid) if nulls else None,
            pa.py_buffer(offsets),
            pa.py_buffer(b"".join(parts)),
        ],
        null_count=nulls,
    )


def _columns_of(virtual: Any, physical: Any) -> Any:
    # The values of the pure-Python core (NamedTuples) may meet the compiled
    # one (the test suite runs both cores in one process): each core reads
    # its own types.
    for part in (virtual, physical):
        if isinstance(part, dict) and part:
            return _core_of(next(iter(part))).columns
    return _core.columns


def _core_of(value: Any) -> Any:
    # The core whose type ``value`` is: the compiled one's values may meet
    # the pure-Python core in use (CONNSTATS_NO_EXTENSIONS=1), and back.
    if isinstance(value, _types.Connection):  # the pure core's NamedTuple
        from .. import _fastparse_py

        return _fastparse_py
    owner = sys.modules.get(type(value).__module__)
    if owner is not None and owner.__name__ in _CORES:
        return owner
    return _core


_CORES = ("connstats._fastparse", "connstats._fastparse_py")


def table(
    start: datetime | int,
    end: datetime | int,
    virtual: dict[Any, Any],
    physical: dict[Any, Any],
    *,
    community_id: bool = False,
    seed: int = 0,
    vni: bool = False,
) -> pyarrow.Table:
    """One window (the arguments of a ``dump`` callback) as an Arrow table.

    ``start``/``end``: timezone-aware datetimes, or ints of nanoseconds since
    the epoch.  ``first_seen``/``last_seen`` are included when every value is
    a :class:`~connstats.TimedCounts` (``Statistics(track_times=True)``);
    ``community_id=True`` adds the ``communityId`` column (Community ID v1
    with ``seed``; null where a connection has none, see
    :func:`connstats.community_id`); ``vni=True`` the ``vni`` column (the
    VNI or key of decapsulated tunnel rows, docs/tunnels.md; null on others).
    """
    start_ns = _ns(start, "start")
    end_ns = _ns(end, "end")
    cols = _columns_of(virtual, physical)((virtual, physical), community_id)
    return _from_columns(
        cols, start_ns, end_ns, community_id=community_id, seed=seed, vni=vni
    )


def window_table(
    window: Any,
    start_ns: int,
    end_ns: int,
    *,
    community_id: bool = False,
    seed: int = 0,
    vni: bool = False,
) -> pyarrow.Table:
    """A cut core window as an Arrow table, without building its dicts."""
    cols = _core_of(window).columns(window, community_id)
    return _from_columns(
        cols, start_ns, end_ns, community_id=community_id, seed=seed, vni=vni
    )


def with_schema(table: pyarrow.Table, target: pyarrow.Schema) -> pyarrow.Table:
    """``table`` with ``target``'s columns: missing optional ones as nulls."""
    pa = _pyarrow()
    columns = [
        table.column(field.name)
        if field.name in table.column_names
        else pa.nulls(table.num_rows, field.type)
        for field in target
    ]
    return pa.Table.from_arrays(columns, schema=target)
