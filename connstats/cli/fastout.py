"""The fast path of ``connstats read`` output: plain connection tables.

A capture of 100,000 connections must not cost more to print than to count.
For the common report (one row per connection, sorted by a count column, no
times) the rows are never turned into :class:`~connstats.cli.report.Row`
objects: ``(Connection, Counts)`` items are sorted with a key of plain
integers and written straight to JSON or CSV text.

* Address text: ``socket.inet_ntop`` on the packed address (several times
  faster than ``str(IPv4Address)``, same text: RFC 5952 for IPv6), except
  IPv4-mapped/compatible IPv6 addresses, for which libc and ``ipaddress``
  disagree; those keep ``str()``.  The text and the sort key of each address
  are cached by object identity: the core builds one object per distinct
  address of a window, and the cache keeps a reference so an identity is
  never reused while cached.
* Sorting: by the count column, then the other count (bytes, then packets),
  ties broken by (protocol, source, source port, destination, destination
  port) in address order (IPv4 before IPv6, then numerically): the order of
  ``Connection`` and of the general path, the same from run to run although
  the core's hash table is seeded per process.

:func:`ordered`, :func:`write_json` and :func:`write_csv` are what the
writers call: the compiled twin of this module (``src/core/textout.pxi``, part
of the compiled core, whose values it reads) when the core is compiled, else
the Python functions here, which stay the reference it is tested against.  The
compiled rows go to the output's binary layer in chunks where it has one that
writes what its text layer would (``GuardedOutput.binary_writer``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .._impl import IS_COMPILED, core
from .._protocols import PROTOCOL_NAMES, protocol_name
from .report import row_kind

# The compiled row loops (src/core/textout.pxi) read the compiled core's
# values; the pure-Python core's are written by the functions here.
_compiled: Any = core if IS_COMPILED else None


Item = tuple[Any, Any, bool]  # (Connection, Counts, physical)


class AddrCache:
    """Text and sort key of address objects, by identity."""

    __slots__ = ("_keys", "_ntop", "_texts")

    LIMIT = 2_000_000

    def __init__(self) -> None:
        self._texts: dict[int, tuple[Any, str]] = {}
        self._keys: dict[int, tuple[Any, tuple[int, int]]] = {}
        # (inet_ntop, AF_INET, AF_INET6) once an address needs text: the
        # compiled core writes its own, and importing socket costs every
        # command's start-up.
        self._ntop: tuple[Callable[[int, bytes], str], int, int] | None = None

    def text(self, addr: Any) -> str:
        hit = self._texts.get(id(addr))
        if hit is not None and hit[0] is addr:
            return hit[1]
        if self._ntop is None:
            import socket

            self._ntop = (socket.inet_ntop, socket.AF_INET, socket.AF_INET6)
        ntop, af_inet, af_inet6 = self._ntop
        if addr is None:
            text = "-"
        elif addr.version == 4:
            text = ntop(af_inet, addr.packed)
        else:
            text = ntop(af_inet6, addr.packed)
            if "." in text:
                text = str(addr)  # ::ffff:a.b.c.d: libc and ipaddress differ
        if len(self._texts) >= self.LIMIT:
            self._texts.clear()
        self._texts[id(addr)] = (addr, text)
        return text

    def key(self, addr: Any) -> tuple[int, int]:
        hit = self._keys.get(id(addr))
        if hit is not None and hit[0] is addr:
            return hit[1]
        key = (0, 0) if addr is None else (addr.version, int(addr))
        if len(self._keys) >= self.LIMIT:
            self._keys.clear()
        self._keys[id(addr)] = (addr, key)
        return key

    def endpoint(self, ap: Any, with_port: bool) -> str:
        if ap.addr is None:
            return "-"
        text = self.text(ap.addr)
        if not with_port:
            return text
        if ap.addr.version == 6:
            return f"[{text}]:{ap.port}"
        return f"{text}:{ap.port}"


#: count column -> (index pair into Counts summed for the key, descending)
_COUNT_COLUMNS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "bytes": ((1, 3), (0, 2)),
    "packets": ((0, 2), (1, 3)),
    "tx-packets": ((0,), ()),
    "tx-bytes": ((1,), ()),
    "rx-packets": ((2,), ()),
    "rx-bytes": ((3,), ()),
}


def handles(column: str) -> bool:
    return column in _COUNT_COLUMNS


def sorted_items(
    tables: Iterable[tuple[dict[Any, Any], bool]],
    column: str,
    reverse: bool,
    top: int,
    cache: AddrCache,
) -> tuple[list[Item], int]:
    """(items in order, number before --top): virtual rows before physical ones.

    Sorting is by a pair of integers first (C comparisons only); the tie
    break on the connection is computed only for runs of equal counts.
    """
    first, second = _COUNT_COLUMNS[column]
    sign = 1 if reverse else -1
    akey = cache.key

    def tie(conn: Any) -> tuple[Any, ...]:
        src, dst = conn.src, conn.dst
        a, b = src.addr, dst.addr
        try:
            # ipaddress keeps the version and the integer in slots; reading
            # them is several times cheaper than int() or str().
            return (
                conn.proto,
                a._version,
                a._ip,
                src.port,
                b._version,
                b._ip,
                dst.port,
                _vni(conn),
            )
        except AttributeError:  # no address (undecoded), or another ipaddress
            ka, kb = akey(a), akey(b)
            return (
                conn.proto,
                ka[0],
                ka[1],
                src.port,
                kb[0],
                kb[1],
                dst.port,
                _vni(conn),
            )

    out: list[Item] = []
    total = 0
    for table, physical in tables:
        total += len(table)
        need = top - len(out) if top > 0 else len(table)
        if need <= 0 or not table:
            continue
        items = list(table.items())
        counts = [c for _, c in items]
        if column == "bytes":
            nk = [(sign * (c[1] + c[3]), sign * (c[0] + c[2])) for c in counts]
        elif column == "packets":
            nk = [(sign * (c[0] + c[2]), sign * (c[1] + c[3])) for c in counts]
        else:
            (i,) = first
            nk = [(sign * c[i], 0) for c in counts]
        get = nk.__getitem__
        if need >= len(items):
            # Everything is shown: one sort on complete integer keys.
            full = _full_keys(items, nk)
            order = sorted(range(len(items)), key=full.__getitem__)
            out += [(items[i][0], items[i][1], physical) for i in order]
            continue
        if need < len(items):
            import heapq

            order = heapq.nsmallest(need, range(len(items)), key=get)
            cut = nk[order[-1]]
            # Everything tied with the last one chosen competes for its place.
            chosen = set(order)
            order += [i for i in range(len(items)) if nk[i] == cut and i not in chosen]
            order.sort(key=get)
        else:
            order = sorted(range(len(items)), key=get)
        ranked: list[int] = []
        run = 0
        while run < len(order):
            end = run + 1
            key = nk[order[run]]
            while end < len(order) and nk[order[end]] == key:
                end += 1
            if end - run == 1:
                ranked.append(order[run])
            else:
                ranked += sorted(order[run:end], key=lambda i: tie(items[i][0]))
            run = end
        out += [(items[i][0], items[i][1], physical) for i in ranked[:need]]
    return out, total


class _NoAddr:
    """Stands for a missing address in sort keys: before every real one."""

    _version = 0
    _ip = 0


_NO_ADDR = _NoAddr()


def _full_keys(items: list[tuple[Any, Any]], nk: list[tuple[int, int]]) -> list[Any]:
    """(counts, protocol, source, port, destination, port) per item, as integers.

    ipaddress keeps the version and the integer in slots; reading them is
    several times cheaper than ``int()`` or ``str()``.
    """
    try:
        return [
            (*k, c.proto, c.src.addr._version, c.src.addr._ip, c.src.port,
             c.dst.addr._version, c.dst.addr._ip, c.dst.port, _vni(c))
            for k, (c, _) in zip(nk, items)
        ]  # fmt: skip
    except AttributeError:  # the undecoded row has no addresses
        none = _NO_ADDR
        return [
            (*k, c.proto, (c.src.addr or none)._version, (c.src.addr or none)._ip,
             c.src.port, (c.dst.addr or none)._version, (c.dst.addr or none)._ip,
             c.dst.port, _vni(c))
            for k, (c, _) in zip(nk, items)
        ]  # fmt: skip


def _vni(conn: Any) -> int:
    """A connection's VNI in sort keys: -1 (before every VNI) for none."""
    vni = conn.vni
    return -1 if vni is None else int(vni)


def _json_counts(c: Any) -> list[str]:
    """The non-zero counters with the network log's names (Go's omitempty)."""
    return [
        f'"{name}":{value}'
        for name, value in zip(("txPkts", "txBytes", "rxPkts", "rxBytes"), c)
        if value
    ]


def json_items(items: Iterable[Item], cache: AddrCache) -> tuple[list[str], list[str]]:
    """(virtual, physical) rows as compact JSON objects, as ``json.dumps`` would write."""
    endpoint = cache.endpoint
    text = cache.text
    texts = cache._texts.get
    virtual: list[str] = []
    physical: list[str] = []
    add = virtual.append
    for conn, c, phys in items:
        proto = conn.proto
        src, dst = conn.src, conn.dst
        a, b = src.addr, dst.addr
        vni = conn.vni
        if (
            not phys
            and proto
            and proto != 255
            and a is not None
            and b is not None
            and vni is None
        ):
            # The common row, inlined: one f-string, cached address text.
            hit = texts(id(a))
            sa = hit[1] if hit is not None and hit[0] is a else text(a)
            hit = texts(id(b))
            sb = hit[1] if hit is not None and hit[0] is b else text(b)
            se = f"[{sa}]:{src.port}" if ":" in sa else f"{sa}:{src.port}"
            de = f"[{sb}]:{dst.port}" if ":" in sb else f"{sb}:{dst.port}"
            tp, tb, rp, rb = c
            if tp and tb and not rp and not rb:
                add(
                    f'{{"proto":{proto},"src":"{se}","dst":"{de}",'
                    f'"txPkts":{tp},"txBytes":{tb}}}'
                )
                continue
            counts = _json_counts(c)
            tail = "," + ",".join(counts) if counts else ""
            add(f'{{"proto":{proto},"src":"{se}","dst":"{de}"{tail}}}')
            continue
        parts = []
        kind = "" if phys else row_kind(conn)
        if kind:
            parts.append(f'"kind":"{kind}"')
        if conn.proto:
            parts.append(f'"proto":{conn.proto}')
        # Every address is written ADDR:PORT (":0" for ICMP, fragments and
        # rows without a transport), as Go writes a netip.AddrPort: a
        # network-log consumer cannot parse a bare address.
        if conn.src.addr is not None:
            parts.append(f'"src":"{endpoint(conn.src, True)}"')
        if conn.dst.addr is not None:
            parts.append(f'"dst":"{endpoint(conn.dst, True)}"')
        if vni is not None:
            parts.append(f'"vni":{vni}')
        parts += _json_counts(c)
        (physical if phys else virtual).append("{" + ",".join(parts) + "}")
    return virtual, physical


def csv_items(
    items: Iterable[Item], head: str, cache: AddrCache, vni: bool = False
) -> str:
    """CSV lines (CRLF) for the connection shape; ``head`` is the window columns + ','.

    Every field is a number, an address or a protocol name: no quoting needed.
    ``vni``: end each line with the VNI column (``connstats read --decap``).
    """
    text = cache.text
    name: Callable[[int], str] = protocol_name
    texts = cache._texts.get
    names = PROTOCOL_NAMES
    lines: list[str] = []
    add = lines.append
    for conn, c, phys in items:
        src, dst = conn.src, conn.dst
        proto = conn.proto
        a, b = src.addr, dst.addr
        if (
            not phys
            and proto
            and proto != 255
            and a is not None
            and b is not None
            and not vni
        ):
            # The common row, inlined.
            hit = texts(id(a))
            sa = hit[1] if hit is not None and hit[0] is a else text(a)
            hit = texts(id(b))
            sb = hit[1] if hit is not None and hit[0] is b else text(b)
            add(
                f"{head},{proto},{names[proto]},{sa},{src.port},{sb},{dst.port},"
                f"{c[0]},{c[1]},{c[2]},{c[3]}\r\n"
            )
            continue
        kind = "physical" if phys else row_kind(conn)
        pname = kind if kind and kind != "physical" else name(conn.proto)
        if src.addr is None:
            s = ","
        else:
            s = f"{text(src.addr)},{src.port}"
        if dst.addr is None:
            d = ","
        else:
            d = f"{text(dst.addr)},{dst.port}"
        tail = ""
        if vni:
            tail = "," if conn.vni is None else f",{conn.vni}"
        add(
            f"{head}{kind},{conn.proto},{pname},{s},{d},{c[0]},{c[1]},{c[2]},{c[3]}"
            f"{tail}\r\n"
        )
    return "".join(lines)


def ordered(
    tables: list[tuple[dict[Any, Any], bool]],
    column: str,
    reverse: bool,
    top: int,
    cache: AddrCache,
) -> tuple[Sequence[Item], int]:
    """:func:`sorted_items`, compiled when it can be (the compiled items are
    an ``OrderedItems`` sequence that keeps the rows' values for the text)."""
    if _compiled is not None:
        items: Sequence[Item]
        items, total = _compiled.sorted_items(tables, column, reverse, top)
        return items, total
    return sorted_items(tables, column, reverse, top, cache)


def json_text(items: Sequence[Item], cache: AddrCache) -> tuple[str, str]:
    """(virtual, physical) rows of :func:`json_items`, each joined by commas."""
    if _compiled is not None:
        virtual: str
        physical: str
        virtual, physical = _compiled.json_rows(items)
        return virtual, physical
    rows = json_items(items, cache)
    return ",".join(rows[0]), ",".join(rows[1])


def csv_text(
    items: Sequence[Item], head: str, cache: AddrCache, vni: bool = False
) -> str:
    """:func:`csv_items`, compiled when it can be."""
    if _compiled is not None:
        text: str = _compiled.csv_rows(items, head, PROTOCOL_NAMES, vni)
        return text
    return csv_items(items, head, cache, vni)


def _binary_writer(out: Any) -> Callable[[bytes], None] | None:
    # the compiled rows, written as bytes where the output allows it
    # (outstream.GuardedOutput.binary_writer)
    if _compiled is None:
        return None
    get = getattr(out, "binary_writer", None)
    return get() if get is not None else None


def write_json(out: Any, items: Sequence[Item], cache: AddrCache) -> None:
    """``,"virtualTraffic":[...]`` and ``,"physicalTraffic":[...]`` of
    :func:`json_text` to ``out``, each only when it has rows."""
    write = _binary_writer(out)
    if write is not None:
        _compiled.json_rows_to(items, write, False, b',"virtualTraffic":[', b"]")
        _compiled.json_rows_to(items, write, True, b',"physicalTraffic":[', b"]")
        return
    virtual, physical = json_text(items, cache)
    # in pieces: the rows of a large window are megabytes of text, not
    # worth copying into one string
    if virtual:
        out.write(',"virtualTraffic":[')
        out.write(virtual)
        out.write("]")
    if physical:
        out.write(',"physicalTraffic":[')
        out.write(physical)
        out.write("]")


def write_csv(
    out: Any, items: Sequence[Item], head: str, cache: AddrCache, vni: bool = False
) -> None:
    """:func:`csv_text` to ``out``."""
    write = _binary_writer(out)
    if write is not None:
        _compiled.csv_rows_to(items, write, head, PROTOCOL_NAMES, vni)
    else:
        out.write(csv_text(items, head, cache, vni))
