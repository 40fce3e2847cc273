"""What every output format shares: reports built from windows, text helpers.

The JSON shape follows Tailscale's network-log message (``netlogtype.Message``):
``start``/``end`` as RFC 3339 UTC with nanoseconds and trailing zeros trimmed
(Go's ``time.RFC3339Nano``), ``virtualTraffic``/``physicalTraffic`` as lists of
``{proto, src, dst, txPkts, txBytes, rxPkts, rxBytes}`` with zero fields and
empty lists omitted, as Go's ``omitempty`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from .._impl import core as _core
from ..capture.windows import Window
from .fastout import AddrCache, Item, ordered
from .fastout import handles as fast_handles
from .filters import filter_table
from .report import (
    GROUPS,
    Row,
    connection_rows,
    conversation_rows,
    group_rows,
    row_kind,
    sort_rows,
)

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
    windows = list(windows)
    if len(windows) == 1:
        return windows[0]  # nothing to add up: no copy
    merge = getattr(_core, "merge_windows", None)
    if windows and merge is not None and all(w.table is not None for w in windows):
        # the compiled core adds its tables up without building any object
        return Window(
            min(w.start_ns for w in windows),
            max(w.end_ns for w in windows),
            table=merge([w.table for w in windows]),
        )
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


# ReportOptions and Report are plain classes: the dataclasses module costs
# start-up (see capture.reader).
class ReportOptions:
    """How windows become rows: filters, shape, sorting (see :mod:`connstats.cli.report`).

    ``shape``: "connections", "conversations", or a --group-by value ("host",
    "port", "proto"); ``select``: Connection -> bool, None selects everything;
    ``times``: show first/last seen, duration and rates; ``vni``: a vni column
    in CSV (``connstats read --decap``; tables and JSON show a row's VNI
    whenever it has one); ``community_id``: add each connection's Community ID
    (connections and conversations).
    """

    __slots__ = (
        "top",
        "shape",
        "sort",
        "reverse",
        "select",
        "times",
        "vni",
        "community_id",
    )

    def __init__(
        self,
        top: int = 20,
        shape: str = "connections",
        sort: str = "bytes",
        reverse: bool = False,
        select: Callable[[Any], bool] | None = None,
        times: bool = False,
        vni: bool = False,
        community_id: bool = False,
    ) -> None:
        self.top = top
        self.shape = shape
        self.sort = sort
        self.reverse = reverse
        self.select = select
        self.times = times
        self.vni = vni
        self.community_id = community_id

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"ReportOptions({fields})"


class Report:
    """One window, shaped: the rows to show and the window's totals.

    Plain connection reports keep ``items`` (see :mod:`connstats.cli.fastout`)
    and build :class:`Row` objects only when asked for ``rows``; ``shown`` is
    the rows in order, or None while ``items`` holds them.  ``total_rows`` is
    the count before --top, ``packets`` and ``nbytes`` the totals of the
    selected connections.
    """

    __slots__ = (
        "window",
        "title",
        "shown",
        "total_rows",
        "packets",
        "nbytes",
        "times",
        "shape",
        "items",
    )

    def __init__(
        self,
        window: Window,
        title: str | None,
        shown: list[Row] | None,
        total_rows: int,
        packets: int,
        nbytes: int,
        times: bool,
        shape: str,
        items: Sequence[Item] | None = None,
    ) -> None:
        self.window = window
        self.title = title
        self.shown = shown
        self.total_rows = total_rows
        self.packets = packets
        self.nbytes = nbytes
        self.times = times
        self.shape = shape
        self.items = items

    @property
    def rows(self) -> list[Row]:
        if self.shown is None:
            self.shown = [
                Row(
                    conn.proto,
                    conn.src,
                    conn.dst,
                    counts,
                    row_kind(conn, phys),
                    vni=conn.vni,
                )
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
    times_on = opts.times and times is not None
    fast = (
        opts.shape == "connections"
        and not times_on
        and not opts.community_id
        and fast_handles(opts.sort)
    )
    table: Any = getattr(w, "table", None)
    if fast and opts.select is None and hasattr(table, "sorted_items"):
        # Straight from the compiled core's arrays: totals, ranking and the
        # rows' text without building the connections that are not shown.
        packets, nbytes = table.totals()
        items, total = table.sorted_items(opts.sort, opts.reverse, opts.top)
        return Report(w, title, None, total, packets, nbytes, False, opts.shape, items)
    tables: list[tuple[dict[Any, Any], bool]] = [(w.virtual, False), (w.physical, True)]
    if opts.select is not None:
        tables = [(filter_table(t, opts.select), phys) for t, phys in tables]
    packets = nbytes = 0
    for t, _phys in tables:
        for c in t.values():
            packets += c[0] + c[2]
            nbytes += c[1] + c[3]
    if fast:
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


class Writer:
    """What the format writers (out_table, out_jsonl, out_csv) share: the output, the options and the text caches."""

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
