"""Turn windows of counts into text: an aligned table or JSON lines.

The JSON shape follows Tailscale's network-log message (``netlogtype.Message``):
``start``/``end`` as RFC 3339 UTC with nanoseconds and trailing zeros trimmed
(Go's ``time.RFC3339Nano``), ``virtualTraffic``/``physicalTraffic`` as lists of
``{proto, src, dst, txPkts, txBytes, rxPkts, rxBytes}`` with zero fields and
empty lists omitted, as Go's ``omitempty`` does.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from ._types import protocol_name
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


def _endpoint(addrport: Any, with_port: bool) -> str:
    if addrport.addr is None:
        return "-"
    if with_port:
        return str(addrport)
    return str(addrport.addr)


def _rank_key(item: tuple[Any, Any]) -> tuple[int, int, Any]:
    conn, counts = item
    return (
        -(counts.tx_bytes + counts.rx_bytes),
        -(counts.tx_packets + counts.rx_packets),
        conn,
    )


def ranked(table: dict[Any, Any], top: int = 0) -> list[tuple[Any, Any]]:
    """Connections by total bytes, then packets, largest first; ties in Connection order.

    With ``top > 0`` only the first ``top``: a partial selection, since a
    capture may hold far more connections than are shown.
    """
    if 0 < top < len(table):
        return heapq.nsmallest(top, table.items(), key=_rank_key)
    return sorted(table.items(), key=_rank_key)


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


class TableWriter:
    """Aligned, human-readable tables, one per window."""

    HEADERS = (
        "PROTO",
        "SOURCE",
        "DESTINATION",
        "TX PKTS",
        "TX BYTES",
        "RX PKTS",
        "RX BYTES",
    )

    def __init__(self, out: TextIO, top: int = 20) -> None:
        self._out = out
        self._top = top
        self._count = 0

    def window(self, w: Window, title: str | None = None) -> None:
        self._count += 1
        tables = (w.virtual, w.physical)
        nconns = len(w.virtual) + len(w.physical)
        packets = sum(c.tx_packets + c.rx_packets for t in tables for c in t.values())
        nbytes = sum(c.tx_bytes + c.rx_bytes for t in tables for c in t.values())
        label = title if title is not None else f"Window {self._count}"
        same_day = w.start_ns // (86400 * _NS) == w.end_ns // (86400 * _NS)
        span = (
            f"{human_time(w.start_ns)} -> {human_time(w.end_ns, date=not same_day)} UTC"
        )
        conns = f"{nconns} connection{'s' if nconns != 1 else ''}"
        out = self._out
        if self._count > 1:
            out.write("\n")
        out.write(
            f"{label}: {span} ({human_duration(w.end_ns - w.start_ns)}), {conns}, "
            f"{packets} packets, {human_bytes(nbytes)}\n"
        )
        shown = ranked(w.virtual, self._top)
        if self._top <= 0 or len(shown) < self._top:
            shown += ranked(w.physical, self._top - len(shown) if self._top > 0 else 0)
        lines = [self.HEADERS]
        for conn, counts in shown:
            with_port = bool(conn.src.port or conn.dst.port)
            lines.append(
                (
                    protocol_name(conn.proto)
                    or ("phys" if conn in w.physical else "-"),
                    _endpoint(conn.src, with_port),
                    _endpoint(conn.dst, with_port),
                    str(counts.tx_packets),
                    human_bytes(counts.tx_bytes),
                    str(counts.rx_packets),
                    human_bytes(counts.rx_bytes),
                )
            )
        widths = [max(len(line[i]) for line in lines) for i in range(len(self.HEADERS))]
        for line in lines:
            left = [line[i].ljust(widths[i]) for i in range(3)]
            right = [line[i].rjust(widths[i]) for i in range(3, 7)]
            out.write("  ".join(left + right).rstrip() + "\n")
        if len(shown) < nconns:
            hidden = nconns - len(shown)
            out.write(
                f"... {hidden} more connection{'s' if hidden != 1 else ''} (--top 0 shows all)\n"
            )
        out.flush()

    def note(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()


def window_message(w: Window, top: int = 0) -> dict[str, Any]:
    """The network-log message for one window, as a JSON-ready dict."""
    message: dict[str, Any] = {"start": rfc3339(w.start_ns), "end": rfc3339(w.end_ns)}
    for key, table in (("virtualTraffic", w.virtual), ("physicalTraffic", w.physical)):
        items = ranked(table, top)
        if items:
            message[key] = [
                {**conn.to_dict(), **counts.to_dict()} for conn, counts in items
            ]
    return message


class JsonlWriter:
    """One JSON object per window and line; compact, like Go's encoding/json."""

    def __init__(self, out: TextIO, top: int = 0) -> None:
        self._out = out
        self._top = top

    def window(self, w: Window, title: str | None = None) -> None:
        self._out.write(
            json.dumps(window_message(w, self._top), separators=(",", ":")) + "\n"
        )
        self._out.flush()

    def note(self, text: str) -> None:
        """Summaries are for people; JSON lines stay machine-readable."""


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
