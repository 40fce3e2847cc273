"""``--format jsonl``: one network-log message per window and line.

The shape follows Tailscale's network-log message (``netlogtype.Message``):
``start``/``end`` as RFC 3339 UTC with nanoseconds and trailing zeros trimmed
(Go's ``time.RFC3339Nano``), ``virtualTraffic``/``physicalTraffic`` as lists of
``{proto, src, dst, txPkts, txBytes, rxPkts, rxBytes}`` with zero fields and
empty lists omitted, as Go's ``omitempty`` does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TextIO

from ..capture.windows import Window
from .fastout import write_json
from .output import (
    Report,
    ReportOptions,
    Writer,
    _addr_text,
    _endpoint_text,
    build_report,
    rfc3339,
)
from .report import GROUPS, KIND_PHYSICAL, Row

_NS = 1_000_000_000


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


# connstats.export.community_id, loaded by the first row that needs it:
# hashlib (OpenSSL) costs the start-up of every command that never asks for
# --community-id, and an import statement per row costs a third of the row.
_community_id: Callable[[Any], str] | None = None


def community_id_of(r: Row) -> str | None:
    """The Community ID of a connection or conversation row; None if it has none."""
    global _community_id
    if r.kind or r.a is None or r.b is None:
        return None  # physical, undecoded, "ip" and fragment rows
    if _community_id is None:
        from ..export.community_id import community_id

        _community_id = community_id
    try:
        return _community_id((r.proto, r.a, r.b))
    except ValueError:
        return None


def row_dict(
    r: Row, shape: str, cache: dict[Any, str], with_id: bool = False
) -> dict[str, Any]:
    """One row as JSON: the network log's field names, ``kind`` on special rows."""
    out: dict[str, Any] = {}
    if r.kind and r.kind != KIND_PHYSICAL:
        out["kind"] = r.kind
    if shape in ("connections", "conversations"):
        if r.proto:
            out["proto"] = r.proto
        names = ("src", "dst") if shape == "connections" else ("a", "b")
        for name, ap in zip(names, (r.a, r.b)):
            # ADDR:PORT always (":0" on fragment and "ip" rows too), as Go
            # writes a netip.AddrPort: a network-log consumer cannot parse a
            # bare address.
            if ap is not None and ap.addr is not None:
                out[name] = _endpoint_text(ap, cache, True)
        if r.vni is not None:
            out["vni"] = r.vni
        if with_id:
            cid = community_id_of(r)
            if cid is not None:
                out["communityId"] = cid
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
    community_id: bool = False,
) -> dict[str, Any]:
    """The network-log message for one window, as a JSON-ready dict."""
    if rep is None:
        rep = build_report(w, ReportOptions(top=top, community_id=community_id))
    cache = cache if cache is not None else {}
    message: dict[str, Any] = {"start": rfc3339(w.start_ns), "end": rfc3339(w.end_ns)}
    if rep.shape in GROUPS:
        message["groupBy"] = rep.shape
    virtual = [r for r in rep.rows if r.kind != KIND_PHYSICAL]
    physical = [r for r in rep.rows if r.kind == KIND_PHYSICAL]
    if virtual:
        message[_JSON_KEYS[rep.shape]] = [
            row_dict(r, rep.shape, cache, community_id) for r in virtual
        ]
    if physical:
        message["physicalTraffic"] = [
            row_dict(r, rep.shape, cache, community_id) for r in physical
        ]
    return message


class JsonlWriter(Writer):
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
            out = self._out
            out.write(f'{{"start":"{rfc3339(w.start_ns)}","end":"{rfc3339(w.end_ns)}"')
            write_json(out, rep.items, self._addrs)
            out.write("}\n")
        else:
            message = window_message(
                w, rep=rep, cache=self._cache, community_id=self._opts.community_id
            )
            self._out.write(self._encode(message) + "\n")
        self._out.flush()
