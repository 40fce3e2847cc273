"""Turn windows of counts into text: an aligned table or JSON lines.

The JSON shape follows Tailscale's network-log message (``netlogtype.Message``):
``start``/``end`` as RFC 3339 UTC with nanoseconds and trailing zeros trimmed
(Go's ``time.RFC3339Nano``), ``virtualTraffic``/``physicalTraffic`` as lists of
``{proto, src, dst, txPkts, txBytes, rxPkts, rxBytes}`` with zero fields and
empty lists omitted, as Go's ``omitempty`` does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from ._fastout import AddrCache, Item, csv_text, json_text, ordered
from ._fastout import handles as fast_handles
from ._filters import filter_table
from ._report import (
    GROUPS,
    KIND_NOTES,
    KIND_PHYSICAL,
    Row,
    connection_rows,
    conversation_rows,
    group_rows,
    row_kind,
    sort_rows,
)
from .capture.windows import Window

_NS = 1_000_000_000


def rfc3339(ns: int) -> str:
    """``2024-05-01T12:00:00.5Z`` for a time in ns since the epoch (Go's RFC3339Nano)."""
    seconds, frac = divmod(ns, _NS)
    try:
        text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    except (OverflowError, OSError, ValueError):
        # A garbage pcapng timestamp beyond year 9999: still one valid JSON string.
        return f"{ns}ns"
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


def human_time(ns: int, *, date: bool = True) -> str:
    """``2024-05-01 12:00:00.123456`` (UTC), microseconds only when not zero."""
    seconds, frac = divmod(ns, _NS)
    try:
        moment = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return f"{ns}ns"
    text = moment.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")
    micros = frac // 1000
    return f"{text}.{micros:06d}" if micros else text


def human_bytes(n: int) -> str:
    """``512 B``, ``1.5 KiB``, ``23.4 MiB``: binary units, three significant digits."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024.0
        if value < 1024.0 or unit == "PiB":
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    raise AssertionError("unreachable")


def human_duration(ns: int) -> str:
    seconds = ns / _NS
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms" if seconds else "0 s"
    if seconds < 120:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def merge_windows(windows: Iterable[Window]) -> Window | None:
    """One window spanning all of them, with counts added per connection."""
    virtual: dict[Any, Any] = {}
    physical: dict[Any, Any] = {}
    start: int | None = None
    end: int | None = None
    for w in windows:
        start = w.start_ns if start is None else min(start, w.start_ns)
        end = w.end_ns if end is None else max(end, w.end_ns)
        for src, dst in ((w.virtual, virtual), (w.physical, physical)):
            for conn, counts in src.items():
                old = dst.get(conn)
                dst[conn] = counts if old is None else old + counts
    if start is None or end is None:
        return None
    return Window(start, end, virtual, physical)


@dataclass
class ReportOptions:
    """How windows become rows: filters, shape, sorting (see :mod:`connstats._report`)."""

    top: int = 20
    #: "connections", "conversations", or a --group-by value ("host", "port", "proto")
    shape: str = "connections"
    sort: str = "bytes"
    reverse: bool = False
    #: Connection -> bool; None selects everything
    select: Callable[[Any], bool] | None = None
    #: show first/last seen, duration and rates
    times: bool = False


@dataclass
class Report:
    """One window, shaped: the rows to show and the window's totals.

    Plain connection reports keep ``items`` (see :mod:`connstats._fastout`)
    and build :class:`Row` objects only when asked for ``rows``.
    """

    window: Window
    title: str | None
    shown: list[Row] | None  # in order, or None when ``items`` holds them
    total_rows: int  # before --top
    packets: int  # of the selected connections
    nbytes: int
    times: bool
    shape: str
    items: Sequence[Item] | None = None

    @property
    def rows(self) -> list[Row]:
        if self.shown is None:
            self.shown = [
                Row(conn.proto, conn.src, conn.dst, counts, row_kind(conn, phys))
                for conn, counts, phys in self.items or ()
            ]
        return self.shown


def build_report(
    w: Window,
    opts: ReportOptions,
    title: str | None = None,
    times: dict[Any, list[int]] | None = None,
    cache: AddrCache | None = None,
) -> Report:
    """Apply filters, shape, sort and --top to one window."""
    tables: list[tuple[dict[Any, Any], bool]] = [(w.virtual, False), (w.physical, True)]
    if opts.select is not None:
        tables = [(filter_table(t, opts.select), phys) for t, phys in tables]
    packets = nbytes = 0
    for t, _phys in tables:
        for c in t.values():
            packets += c[0] + c[2]
            nbytes += c[1] + c[3]
    times_on = opts.times and times is not None
    if opts.shape == "connections" and not times_on and fast_handles(opts.sort):
        items, total = ordered(
            tables, opts.sort, opts.reverse, opts.top, cache or AddrCache()
        )
        return Report(w, title, None, total, packets, nbytes, False, opts.shape, items)
    rows = connection_rows(tables, times if times_on else None)
    if opts.shape == "conversations":
        rows = conversation_rows(rows)
    elif opts.shape in GROUPS:
        rows = group_rows(rows, opts.shape)
    total = len(rows)
    shown = sort_rows(rows, opts.sort, opts.reverse, opts.top)
    return Report(w, title, shown, total, packets, nbytes, times_on, opts.shape)


def _addr_text(addr: Any, cache: dict[Any, str]) -> str:
    text = cache.get(addr)
    if text is None:
        text = "-" if addr is None else str(addr)
        if len(cache) < 1_000_000:
            cache[addr] = text
    return text


def _endpoint_text(ap: Any, cache: dict[Any, str], with_port: bool) -> str:
    if ap is None or ap.addr is None:
        return "-"
    text = _addr_text(ap.addr, cache)
    if not with_port:
        return text
    if ap.addr.version == 6:
        return f"[{text}]:{ap.port}"
    return f"{text}:{ap.port}"


def _rate(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    for prefix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f} {prefix}{unit}"
    return f"{value:.1f} {unit}"


_SHAPE_HEADERS = {
    "connections": (
        "PROTO",
        "SOURCE",
        "DESTINATION",
        "TX PKTS",
        "TX BYTES",
        "RX PKTS",
        "RX BYTES",
    ),
    "conversations": (
        "PROTO",
        "ADDRESS A",
        "ADDRESS B",
        "A->B PKTS",
        "A->B BYTES",
        "B->A PKTS",
        "B->A BYTES",
    ),
    "host": ("HOST", "TX PKTS", "TX BYTES", "RX PKTS", "RX BYTES"),
    "port": ("PROTO", "PORT", "TX PKTS", "TX BYTES", "RX PKTS", "RX BYTES"),
    "proto": ("PROTO", "TX PKTS", "TX BYTES", "RX PKTS", "RX BYTES"),
}
_TIME_HEADERS = ("FIRST SEEN", "LAST SEEN", "DURATION", "PKTS/S", "BITS/S")
_UNITS_NOUN = {
    "connections": "connection",
    "conversations": "conversation",
    "host": "host",
    "port": "port",
    "proto": "protocol",
}


def _key_cells(r: Row, shape: str, cache: dict[Any, str]) -> list[str]:
    if shape in ("connections", "conversations"):
        with_port = bool(r.a is not None and r.b is not None and (r.a.port or r.b.port))
        return [
            r.proto_name,
            _endpoint_text(r.a, cache, with_port),
            _endpoint_text(r.b, cache, with_port),
        ]
    if shape == "host":
        return [r.kind or _addr_text(r.a, cache)]
    if shape == "port":
        return [r.proto_name, "-" if r.kind else str(r.a)]
    return [r.proto_name]


class _Writer:
    """What the three writers share: the output, the options and the text caches."""

    def __init__(
        self, out: TextIO, top: int = 0, options: ReportOptions | None = None
    ) -> None:
        self._out = out
        self._opts = options if options is not None else ReportOptions(top=top)
        self._cache: dict[Any, str] = {}
        self._addrs = AddrCache()

    def _build(
        self, w: Window, title: str | None, times: dict[Any, list[int]] | None
    ) -> Report:
        return build_report(w, self._opts, title, times, self._addrs)

    def note(self, text: str) -> None:
        """Summaries are for people; machine formats leave them out."""


class TableWriter(_Writer):
    """Aligned, human-readable tables, one per window."""

    HEADERS = _SHAPE_HEADERS["connections"]

    def __init__(
        self, out: TextIO, top: int = 20, options: ReportOptions | None = None
    ) -> None:
        super().__init__(out, top, options)
        self._count = 0

    def window(
        self,
        w: Window,
        title: str | None = None,
        times: dict[Any, list[int]] | None = None,
    ) -> None:
        self.report(self._build(w, title, times))

    def report(self, rep: Report) -> None:
        self._count += 1
        w = rep.window
        label = rep.title if rep.title is not None else f"Window {self._count}"
        same_day = w.start_ns // (86400 * _NS) == w.end_ns // (86400 * _NS)
        span = (
            f"{human_time(w.start_ns)} -> {human_time(w.end_ns, date=not same_day)} UTC"
        )
        noun = _UNITS_NOUN[rep.shape]
        count = f"{rep.total_rows} {noun}{'s' if rep.total_rows != 1 else ''}"
        out = self._out
        if self._count > 1:
            out.write("\n")
        out.write(
            f"{label}: {span} ({human_duration(w.end_ns - w.start_ns)}), {count}, "
            f"{rep.packets} packets, {human_bytes(rep.nbytes)}\n"
        )
        headers = _SHAPE_HEADERS[rep.shape]
        nkey = len(headers) - 4
        if rep.times:
            headers = headers + _TIME_HEADERS
        lines: list[tuple[str, ...]] = [headers]
        kinds: dict[str, None] = {}
        cache = self._cache
        for r in rep.rows:
            cells = _key_cells(r, rep.shape, cache) + [
                str(r.tx_packets),
                human_bytes(r.tx_bytes),
                str(r.rx_packets),
                human_bytes(r.rx_bytes),
            ]
            if rep.times:
                d = r.duration_ns
                cells += [
                    "-" if r.first_ns is None else human_time(r.first_ns, date=False),
                    "-" if r.last_ns is None else human_time(r.last_ns, date=False),
                    "-" if d is None else human_duration(d),
                    _rate(r.packets_per_second, "").strip() or "-",
                    _rate(r.bits_per_second, "b/s"),
                ]
            if r.kind in KIND_NOTES:
                kinds[r.kind] = None
            lines.append(tuple(cells))
        widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
        for line in lines:
            left = [line[i].ljust(widths[i]) for i in range(nkey)]
            right = [line[i].rjust(widths[i]) for i in range(nkey, len(headers))]
            out.write("  ".join(left + right).rstrip() + "\n")
        if len(rep.rows) < rep.total_rows:
            hidden = rep.total_rows - len(rep.rows)
            out.write(
                f"... {hidden} more {noun}{'s' if hidden != 1 else ''} (--top 0 shows all)\n"
            )
        for kind in kinds:
            out.write(f"  {KIND_NOTES[kind]}\n")
        out.flush()

    def note(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()


def _time_fields(r: Row, out: dict[str, Any]) -> None:
    if r.first_ns is None or r.last_ns is None:
        return
    out["firstSeen"] = rfc3339(r.first_ns)
    out["lastSeen"] = rfc3339(r.last_ns)
    d = r.last_ns - r.first_ns
    out["durationSec"] = d / _NS
    if d:
        out["pktsPerSec"] = round(r.packets * _NS / d, 3)
        out["bitsPerSec"] = round(r.bytes * 8 * _NS / d, 3)


def _counts_fields(
    r: Row, out: dict[str, Any], names: tuple[str, str, str, str]
) -> None:
    for name, value in zip(names, (r.tx_packets, r.tx_bytes, r.rx_packets, r.rx_bytes)):
        if value:
            out[name] = value


_TX_RX = ("txPkts", "txBytes", "rxPkts", "rxBytes")
_A_B = ("aToBPkts", "aToBBytes", "bToAPkts", "bToABytes")


def row_dict(r: Row, shape: str, cache: dict[Any, str]) -> dict[str, Any]:
    """One row as JSON: the network log's field names, ``kind`` on special rows."""
    out: dict[str, Any] = {}
    if r.kind and r.kind != KIND_PHYSICAL:
        out["kind"] = r.kind
    if shape in ("connections", "conversations"):
        if r.proto:
            out["proto"] = r.proto
        with_port = (
            bool(r.a is not None and r.b is not None and (r.a.port or r.b.port))
            or not r.kind
        )
        names = ("src", "dst") if shape == "connections" else ("a", "b")
        for name, ap in zip(names, (r.a, r.b)):
            if ap is not None and ap.addr is not None:
                out[name] = _endpoint_text(ap, cache, with_port)
        _counts_fields(r, out, _TX_RX if shape == "connections" else _A_B)
    elif shape == "host":
        if r.a is not None:
            out["host"] = _addr_text(r.a, cache)
        _counts_fields(r, out, _TX_RX)
    else:
        out["proto"] = r.proto
        if shape == "port" and not r.kind:
            out["port"] = r.a
        _counts_fields(r, out, _TX_RX)
    _time_fields(r, out)
    return out


_JSON_KEYS = {
    "connections": "virtualTraffic",
    "conversations": "conversations",
    "host": "groups",
    "port": "groups",
    "proto": "groups",
}


def window_message(
    w: Window,
    top: int = 0,
    rep: Report | None = None,
    cache: dict[Any, str] | None = None,
) -> dict[str, Any]:
    """The network-log message for one window, as a JSON-ready dict."""
    if rep is None:
        rep = build_report(w, ReportOptions(top=top))
    cache = cache if cache is not None else {}
    message: dict[str, Any] = {"start": rfc3339(w.start_ns), "end": rfc3339(w.end_ns)}
    if rep.shape in GROUPS:
        message["groupBy"] = rep.shape
    virtual = [r for r in rep.rows if r.kind != KIND_PHYSICAL]
    physical = [r for r in rep.rows if r.kind == KIND_PHYSICAL]
    if virtual:
        message[_JSON_KEYS[rep.shape]] = [
            row_dict(r, rep.shape, cache) for r in virtual
        ]
    if physical:
        message["physicalTraffic"] = [row_dict(r, rep.shape, cache) for r in physical]
    return message


class JsonlWriter(_Writer):
    """One JSON object per window and line; compact, like Go's encoding/json."""

    def __init__(
        self, out: TextIO, top: int = 0, options: ReportOptions | None = None
    ) -> None:
        super().__init__(out, top, options)
        self._encode = json.JSONEncoder(separators=(",", ":")).encode

    def window(
        self,
        w: Window,
        title: str | None = None,
        times: dict[Any, list[int]] | None = None,
    ) -> None:
        rep = self._build(w, title, times)
        if rep.items is not None:
            virtual, physical = json_text(rep.items, self._addrs)
            # in pieces: the rows of a large window are megabytes of text,
            # not worth copying into one string
            out = self._out
            out.write(f'{{"start":"{rfc3339(w.start_ns)}","end":"{rfc3339(w.end_ns)}"')
            if virtual:
                out.write(',"virtualTraffic":[')
                out.write(virtual)
                out.write("]")
            if physical:
                out.write(',"physicalTraffic":[')
                out.write(physical)
                out.write("]")
            out.write("}\n")
        else:
            message = window_message(w, rep=rep, cache=self._cache)
            self._out.write(self._encode(message) + "\n")
        self._out.flush()


_CSV_KEY_COLUMNS = {
    "connections": (
        "proto",
        "proto_name",
        "src_addr",
        "src_port",
        "dst_addr",
        "dst_port",
    ),
    "conversations": ("proto", "proto_name", "a_addr", "a_port", "b_addr", "b_port"),
    "host": ("host",),
    "port": ("proto", "proto_name", "port"),
    "proto": ("proto", "proto_name"),
}
_CSV_COUNTS = {
    "conversations": (
        "a_to_b_packets",
        "a_to_b_bytes",
        "b_to_a_packets",
        "b_to_a_bytes",
    ),
}
_CSV_TIMES = ("first_seen", "last_seen", "duration_s", "packets_per_s", "bits_per_s")


class CsvWriter(_Writer):
    """RFC 4180 CSV: one header line, then one line per row of every window.

    Every line repeats its window (number, start, end) so the file can be
    loaded as one table; ``kind`` is empty for ordinary rows.
    """

    def __init__(
        self, out: TextIO, top: int = 0, options: ReportOptions | None = None
    ) -> None:
        import csv

        super().__init__(out, top, options)
        self._writer = csv.writer(out, lineterminator="\r\n")
        self._count = 0
        self._header = False

    def _write_header(self, times: bool) -> None:
        shape = self._opts.shape
        counts = _CSV_COUNTS.get(
            shape, ("tx_packets", "tx_bytes", "rx_packets", "rx_bytes")
        )
        self._writer.writerow(
            ("window", "window_start", "window_end", "kind")
            + _CSV_KEY_COLUMNS[shape]
            + counts
            + (_CSV_TIMES if times else ())
        )
        self._header = True

    def window(
        self,
        w: Window,
        title: str | None = None,
        times: dict[Any, list[int]] | None = None,
    ) -> None:
        rep = self._build(w, title, times)
        self._count += 1
        if not self._header:
            self._write_header(self._opts.times)
        head = (self._count, rfc3339(w.start_ns), rfc3339(w.end_ns))
        if rep.items is not None:
            self._out.write(
                csv_text(rep.items, ",".join(map(str, head)) + ",", self._addrs)
            )
            self._out.flush()
            return
        cache = self._cache
        shape = rep.shape
        rows = []
        for r in rep.rows:
            kind = r.kind
            if shape in ("connections", "conversations"):
                key: tuple[Any, ...] = (
                    r.proto,
                    r.proto_name,
                    _addr_text(r.a.addr, cache) if r.a.addr is not None else "",
                    r.a.port if r.a.addr is not None else "",
                    _addr_text(r.b.addr, cache) if r.b.addr is not None else "",
                    r.b.port if r.b.addr is not None else "",
                )
            elif shape == "host":
                key = (_addr_text(r.a, cache) if r.a is not None else "",)
            elif shape == "port":
                key = (r.proto, r.proto_name, "" if kind else r.a)
            else:
                key = (r.proto, r.proto_name)
            line = (
                head
                + (kind,)
                + key
                + (r.tx_packets, r.tx_bytes, r.rx_packets, r.rx_bytes)
            )
            if self._opts.times:
                d = r.duration_ns
                pps, bps = r.packets_per_second, r.bits_per_second
                line += (
                    "" if r.first_ns is None else rfc3339(r.first_ns),
                    "" if r.last_ns is None else rfc3339(r.last_ns),
                    "" if d is None else d / _NS,
                    "" if pps is None else round(pps, 3),
                    "" if bps is None else round(bps, 3),
                )
            rows.append(line)
        self._writer.writerows(rows)
        self._out.flush()


class Progress:
    """A one-line progress bar on stderr, for terminals only.

    It stays invisible for the first half second, so that small files never
    flash a bar, and redraws at most ten times a second: the reader calls
    :meth:`update` after every batch, so it must be cheap.
    """

    DELAY = 0.5
    INTERVAL = 0.1
    WIDTH = 24

    def __init__(self, stream: TextIO, total: int | None, enabled: bool) -> None:
        import time

        self._stream = stream
        self._total = total
        self._enabled = enabled
        self._clock = time.monotonic
        self._next = self._clock() + self.DELAY
        self._shown = False
        self._done_bytes = 0  # bytes of files already finished
        #: () -> (name, offset, packets) of the file being read
        self.current: Callable[[], tuple[str, int, int]] | None = None

    def file_done(self, size: int) -> None:
        self._done_bytes += size

    def update(self) -> None:
        if not self._enabled or self.current is None:
            return
        now = self._clock()
        if now < self._next:
            return
        self._next = now + self.INTERVAL
        name, offset, packets = self.current()
        done = self._done_bytes + offset
        if self._total:
            frac = min(done / self._total, 1.0)
            filled = int(frac * self.WIDTH)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            text = f"[{bar}] {frac * 100:3.0f}% {human_bytes(done)} of {human_bytes(self._total)}"
        else:
            text = f"{human_bytes(done)}"
        line = f"{name}: {text}, {packets:,} packets"
        self._stream.write("\r\x1b[K" + line)
        self._stream.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._shown = False
            # Let the output stand a moment before the bar comes back.
            self._next = self._clock() + self.INTERVAL
