"""Rows of a ``connstats read`` report: connections, conversations or groups.

A window's table (``Connection -> Counts``) becomes a list of :class:`Row`:

* ``connections`` (default): one row per connection, as the core counted it.
* ``conversations`` (``--conversations``): A->B and B->A merged into one row
  per (protocol, endpoint pair), as ``tshark -z conv,tcp``/``conv,udp``
  (with ports) and ``conv,ip`` (without) show them.  Endpoint A is the lower
  of the two (IPv4 before IPv6, then by address, then port), so the same
  pair always gives the same row; ``a_to_b``/``b_to_a`` are the two
  directions.
* ``host``/``port``/``proto`` (``--group-by``): totals per address, per
  (protocol, port) or per protocol.  For host and port every connection adds
  to both of its endpoints' groups (as ``nfdump -s ip``/``-s port`` do), tx
  meaning "sent by this endpoint" and rx "received by it", so the groups
  add up to twice the traffic; for proto each connection counts once.

Special rows keep their meaning in every shape (see :func:`row_kind`).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import Any

from .._protocols import protocol_name

_NS = 1_000_000_000

#: Row kinds other than a plain connection.
KIND_UNDECODED = "undecoded"  # the zero connection: no addresses could be read
KIND_NO_TRANSPORT = "ip"  # addresses, but no usable transport header (proto 0)
KIND_FRAGMENT = "fragment"  # later IP fragments (proto 255): addresses, no ports
KIND_PHYSICAL = "physical"

KIND_NOTES = {
    KIND_UNDECODED: "undecoded: packets too short or malformed to read their IP addresses "
    "(counted under no connection)",
    KIND_NO_TRANSPORT: "ip: IP packets whose transport header is missing, cut short or "
    "not to be trusted (counted by addresses, protocol 0)",
    KIND_FRAGMENT: "fragment: IP fragments after the first (no ports; counted by addresses)",
}


def row_kind(conn: Any, physical: bool = False) -> str:
    """ "" for an ordinary connection, else one of the KIND_* labels."""
    if physical:
        return KIND_PHYSICAL
    if conn.src.addr is None and conn.dst.addr is None:
        return KIND_UNDECODED
    if conn.proto == 0:
        return KIND_NO_TRANSPORT
    if conn.proto == 255:
        return KIND_FRAGMENT
    return ""


class Row:
    """One output line: a key, four counters and optionally first/last seen."""

    __slots__ = (
        "a",
        "b",
        "first_ns",
        "kind",
        "last_ns",
        "proto",
        "rx_bytes",
        "rx_packets",
        "tx_bytes",
        "tx_packets",
        "vni",
    )

    def __init__(
        self,
        proto: int,
        a: Any,
        b: Any,
        counts: Iterable[int],
        kind: str = "",
        first_ns: int | None = None,
        last_ns: int | None = None,
        vni: int | None = None,
    ) -> None:
        self.proto = proto
        self.vni = vni  # the tunnel's VNI or key (--decap), else None
        self.a = a  # AddrPort (source / endpoint A), an address (host) or a port
        self.b = b  # AddrPort (destination / endpoint B) or None for groups
        self.tx_packets, self.tx_bytes, self.rx_packets, self.rx_bytes = counts
        self.kind = kind
        self.first_ns = first_ns
        self.last_ns = last_ns

    @property
    def packets(self) -> int:
        return self.tx_packets + self.rx_packets

    @property
    def bytes(self) -> int:
        return self.tx_bytes + self.rx_bytes

    @property
    def proto_name(self) -> str:
        if self.kind in (KIND_UNDECODED, KIND_NO_TRANSPORT, KIND_FRAGMENT):
            return self.kind
        if self.kind == KIND_PHYSICAL:
            return "phys"
        return protocol_name(self.proto)

    @property
    def duration_ns(self) -> int | None:
        if self.first_ns is None or self.last_ns is None:
            return None
        return self.last_ns - self.first_ns

    @property
    def packets_per_second(self) -> float | None:
        d = self.duration_ns
        return self.packets * _NS / d if d else None

    @property
    def bits_per_second(self) -> float | None:
        d = self.duration_ns
        return self.bytes * 8 * _NS / d if d else None

    def add(self, counts: Iterable[int], first: int | None, last: int | None) -> None:
        tp, tb, rp, rb = counts
        self.tx_packets += tp
        self.tx_bytes += tb
        self.rx_packets += rp
        self.rx_bytes += rb
        if first is not None and (self.first_ns is None or first < self.first_ns):
            self.first_ns = first
        if last is not None and (self.last_ns is None or last > self.last_ns):
            self.last_ns = last


Times = dict[Any, list[int]]  # Connection -> [first_ns, last_ns]


def connection_rows(
    tables: Iterable[tuple[dict[Any, Any], bool]], times: Times | None = None
) -> list[Row]:
    rows = []
    for table, physical in tables:
        for conn, counts in table.items():
            t = times.get(conn) if times is not None else None
            rows.append(
                Row(
                    conn.proto,
                    conn.src,
                    conn.dst,
                    counts,
                    row_kind(conn, physical),
                    t[0] if t else None,
                    t[1] if t else None,
                    conn.vni,
                )
            )
    return rows


def _endpoint_key(ap: Any) -> tuple[int, int, int]:
    addr = ap.addr
    if addr is None:
        return (0, 0, ap.port)
    return (addr.version, int(addr), ap.port)


def conversation_rows(rows: Iterable[Row]) -> list[Row]:
    """Merge each pair of opposite directions into one row (see the module doc)."""
    out: dict[tuple[Any, ...], Row] = {}
    for r in rows:
        forward = _endpoint_key(r.a) <= _endpoint_key(r.b)
        a, b = (r.a, r.b) if forward else (r.b, r.a)
        key = (r.kind, r.proto, a, b, r.vni)
        # tx of a connection went src->dst; rx came dst->src (--local).
        counts = (
            (r.tx_packets, r.tx_bytes, r.rx_packets, r.rx_bytes)
            if forward
            else (r.rx_packets, r.rx_bytes, r.tx_packets, r.tx_bytes)
        )
        row = out.get(key)
        if row is None:
            out[key] = Row(r.proto, a, b, counts, r.kind, r.first_ns, r.last_ns, r.vni)
        else:
            row.add(counts, r.first_ns, r.last_ns)
    return list(out.values())


GROUPS = ("host", "port", "proto")


def group_rows(rows: Iterable[Row], by: str) -> list[Row]:
    """Totals per host, (proto, port) or proto (see the module doc)."""
    out: dict[tuple[Any, ...], Row] = {}

    def add(
        key: tuple[Any, ...],
        proto: int,
        a: Any,
        kind: str,
        counts: tuple[int, int, int, int],
        r: Row,
    ) -> None:
        row = out.get(key)
        if row is None:
            out[key] = Row(proto, a, None, counts, kind, r.first_ns, r.last_ns)
        else:
            row.add(counts, r.first_ns, r.last_ns)

    for r in rows:
        sent = (r.tx_packets, r.tx_bytes, r.rx_packets, r.rx_bytes)
        received = (r.rx_packets, r.rx_bytes, r.tx_packets, r.tx_bytes)
        if by == "proto":
            add((r.kind, r.proto), r.proto, None, r.kind, sent, r)
        elif by == "host":
            if r.kind == KIND_UNDECODED:
                add((r.kind,), 0, None, r.kind, sent, r)
                continue
            add(("", r.a.addr), 0, r.a.addr, "", sent, r)
            add(("", r.b.addr), 0, r.b.addr, "", received, r)
        elif by == "port":
            if r.kind:
                add((r.kind, r.proto), r.proto, None, r.kind, sent, r)
                continue
            add(("", r.proto, r.a.port), r.proto, r.a.port, "", sent, r)
            add(("", r.proto, r.b.port), r.proto, r.b.port, "", received, r)
        else:
            raise ValueError(f"unknown grouping {by!r}")
    return list(out.values())


# -- sorting ----------------------------------------------------------------------

_NONE_LAST = float("inf")


def _num(value: float | None) -> float:
    return -1.0 if value is None else value


def _key_sort(r: Row) -> tuple[Any, ...]:
    # Connection order (protocol, source, destination), as the fast path.
    return (
        r.proto,
        _any_key(r.a),
        _any_key(r.b),
        -1 if r.vni is None else r.vni,
        r.kind,
    )


def _any_key(v: Any) -> tuple[Any, ...]:
    if v is None:
        return (0,)
    if hasattr(v, "addr"):
        return (1, *_endpoint_key(v))
    if isinstance(v, int):
        return (2, v)
    return (3, v.version, int(v))


#: column -> (key function, descending by default)
SORT_KEYS: dict[str, tuple[Callable[[Row], Any], bool]] = {
    "bytes": (lambda r: (r.bytes, r.packets), True),
    "packets": (lambda r: (r.packets, r.bytes), True),
    "tx-packets": (lambda r: r.tx_packets, True),
    "tx-bytes": (lambda r: r.tx_bytes, True),
    "rx-packets": (lambda r: r.rx_packets, True),
    "rx-bytes": (lambda r: r.rx_bytes, True),
    "proto": (lambda r: (r.proto_name,), False),
    "source": (lambda r: _any_key(r.a), False),
    "destination": (lambda r: _any_key(r.b), False),
    "first": (lambda r: _NONE_LAST if r.first_ns is None else r.first_ns, False),
    "last": (lambda r: _num(r.last_ns), True),
    "duration": (lambda r: _num(r.duration_ns), True),
    "pps": (lambda r: _num(r.packets_per_second), True),
    "bps": (lambda r: _num(r.bits_per_second), True),
}
SORT_ALIASES = {
    "pkts": "packets",
    "src": "source",
    "dst": "destination",
    "a": "source",
    "b": "destination",
    "host": "source",
    "port": "source",
    "tx-pkts": "tx-packets",
    "rx-pkts": "rx-packets",
    "rate": "bps",
    "bits/s": "bps",
    "packets/s": "pps",
}
#: columns that need first/last seen
TIME_COLUMNS = frozenset({"first", "last", "duration", "pps", "bps"})


def sort_column(text: str) -> str:
    key = text.strip().lower().replace("_", "-")
    key = SORT_ALIASES.get(key, key)
    if key not in SORT_KEYS:
        raise ValueError(
            f"{text!r} is not a column to sort by (one of: {', '.join(SORT_KEYS)})"
        )
    return key


def sort_rows(
    rows: list[Row], column: str = "bytes", reverse: bool = False, top: int = 0
) -> list[Row]:
    """Rows ordered by ``column`` in its natural direction (counts, rates and
    durations largest first; names, endpoints and first seen ascending),
    flipped by ``reverse``.  Ties are broken by the row key, so the output is
    deterministic.  ``top > 0`` keeps the first ``top`` (a partial selection)."""
    keyfn, descending = SORT_KEYS[column]
    numeric = descending or column == "first"
    flip = descending != reverse
    if numeric and flip:

        def full(r: Row) -> tuple[Any, ...]:
            return (_negate(keyfn(r)), _key_sort(r))

        flip = False
    else:

        def full(r: Row) -> tuple[Any, ...]:
            return (keyfn(r), _key_sort(r))

    if 0 < top < len(rows):
        pick = heapq.nlargest if flip else heapq.nsmallest
        return pick(top, rows, key=full)
    return sorted(rows, key=full, reverse=flip)


def _negate(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_negate(v) for v in value)
    return -value
