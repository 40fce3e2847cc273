"""``--format table``: aligned, human-readable tables, one per window."""

from __future__ import annotations

from typing import Any, TextIO

from ..capture.windows import Window
from .output import (
    Report,
    ReportOptions,
    Writer,
    _addr_text,
    _endpoint_text,
    human_bytes,
    human_duration,
    human_time,
)
from .report import KIND_NOTES, Row

_NS = 1_000_000_000


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


class TableWriter(Writer):
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
        # a VNI column when a row shown has one (connstats read --decap)
        vni = any(r.vni is not None for r in rep.rows)
        if vni:
            headers = headers[:nkey] + ("VNI",) + headers[nkey:]
            nkey += 1
        if rep.times:
            headers = headers + _TIME_HEADERS
        lines: list[tuple[str, ...]] = [headers]
        kinds: dict[str, None] = {}
        cache = self._cache
        for r in rep.rows:
            cells = _key_cells(r, rep.shape, cache)
            if vni:
                cells.append("-" if r.vni is None else str(r.vni))
            cells += [
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
