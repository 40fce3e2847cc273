"""``--format csv``: RFC 4180 CSV, one line per row of every window."""

from __future__ import annotations

from typing import Any, TextIO

from ..capture.windows import Window
from .fastout import write_csv
from .out_jsonl import community_id_of
from .output import ReportOptions, Writer, _addr_text, rfc3339

_NS = 1_000_000_000


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


class CsvWriter(Writer):
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
            + (("communityId",) if self._opts.community_id else ())
            + (("vni",) if self._opts.vni else ())
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
            write_csv(
                self._out,
                rep.items,
                ",".join(map(str, head)) + ",",
                self._addrs,
                self._opts.vni,
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
            if self._opts.community_id:
                cid = (
                    community_id_of(r)
                    if shape in ("connections", "conversations")
                    else None
                )
                line += ("" if cid is None else cid,)
            if self._opts.vni:
                line += ("" if r.vni is None else r.vni,)
            rows.append(line)
        self._writer.writerows(rows)
        self._out.flush()
