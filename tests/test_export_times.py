"""IPFIX flowStartMilliseconds/flowEndMilliseconds per connection, as
nfdump's nfcapd stores them: each connection's own first and last packet
(TimedCounts: Statistics(track_times=True), ``connstats read --export``),
not the window's bounds, as nfpcapd's flows have them."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import captures as cap
import pytest
from ipfix_tools import Nfcapd, need, random_window

from connstats import TimedCounts
from connstats.export import _ipfix

S = 1_000_000_000
MS = 1_000_000


def nfdump_flows(collector: Nfcapd) -> dict[tuple, tuple[int, int, int]]:
    """(proto, src, sport, dst, dport) -> (first ms, last ms, packets) as nfdump reads them."""
    out = {}
    for f in sorted(str(p) for p in collector.dir.rglob("nfcapd.*")):
        text = subprocess.run(
            ["nfdump", "-r", f, "-o", "json"], check=True, capture_output=True,
            text=True, env={**os.environ, "TZ": "UTC"},
        ).stdout  # fmt: skip
        for r in json.loads(text or "[]"):
            if r.get("type") != "FLOW":
                continue
            key = (
                r["proto"],
                r.get("src4_addr") or r.get("src6_addr"),
                r.get("src_port", 0),
                r.get("dst4_addr") or r.get("dst6_addr"),
                r.get("dst_port", 0),
            )
            out[key] = (_ms(r["first"]), _ms(r["last"]), r["in_packets"])
    return out


def _ms(text: str) -> int:
    moment = datetime.fromisoformat(text + "+00:00")
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


@pytest.mark.parametrize("compiled", [False, True])
def test_records_carry_each_connections_times(compiled):
    if compiled and not _ipfix.IS_COMPILED:
        pytest.skip("the compiled IPFIX packer is not in use")
    rng = random.Random(4)
    start, end, virtual, physical = random_window(
        rng, 300, start=datetime(2026, 5, 1, tzinfo=UTC)
    )
    base = 1_777_593_600 * S
    timed = {}
    for _i, (conn, c) in enumerate(virtual.items()):
        first = base + rng.randrange(0, 10 * S)
        timed[conn] = TimedCounts(
            *c, first_ns=first, last_ns=first + rng.randrange(0, 5 * S)
        )
    enc = _ipfix.Encoder(1400, compiled=compiled)
    seen = {}
    from ipfix_tools import decode_message

    templates: dict = {}
    decode_message(_ipfix.template_message(0, 0, 1), templates)

    for message, _n in enc.messages(timed, 1, 2, 0, 1):
        for rec in decode_message(bytes(message), templates)["records"]:
            span = (rec["start_ms"], rec["end_ms"])
            seen[span] = seen.get(span, 0) + 1
    want: dict = {}
    for c in timed.values():
        k = (c.first_ns // MS, c.last_ns // MS)
        want[k] = (
            want.get(k, 0)
            + bool(c.tx_packets or c.tx_bytes)
            + bool(c.rx_packets or c.rx_bytes)
        )
    assert seen == want


def test_nfcapd_stores_each_connections_first_and_last(tmp_path):
    need("nfcapd")
    need("nfdump")
    # a 4 ms TCP exchange and a 2.5 s UDP one in an 8 s capture
    t0 = 1_777_593_600 * S
    records = [
        (t0, cap.udp4("10.0.0.9", 53, "10.0.0.8", 5353, b"x")),
        (t0 + 1 * S, cap.tcp4("10.0.0.1", 40000, "10.0.0.2", 443, b"a")),
        (t0 + 1 * S + 4 * MS, cap.tcp4("10.0.0.1", 40000, "10.0.0.2", 443, b"b")),
        (t0 + 2_500 * MS, cap.udp4("10.0.0.9", 53, "10.0.0.8", 5353, b"y")),
        (t0 + 8 * S, cap.udp4("10.0.0.7", 1, "10.0.0.6", 2, b"z")),
    ]
    path = tmp_path / "flows.pcap"
    path.write_bytes(cap.pcap(records, 101, nanosecond=True))
    with Nfcapd(tmp_path) as collector:
        run = subprocess.run(
            [sys.executable, "-m", "connstats", "read", str(path), "--format", "csv",
             "--export", f"ipfix://127.0.0.1:{collector.port}"],
            capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip
        collector.stop()
    assert "0 not sent, 0 errors" in run.stderr
    t0_ms = t0 // MS
    assert nfdump_flows(collector) == {
        (6, "10.0.0.1", 40000, "10.0.0.2", 443): (t0_ms + 1000, t0_ms + 1004, 2),
        (17, "10.0.0.9", 53, "10.0.0.8", 5353): (t0_ms, t0_ms + 2500, 2),
        (17, "10.0.0.7", 1, "10.0.0.6", 2): (t0_ms + 8000, t0_ms + 8000, 1),
    }


def test_window_bounds_without_times(tmp_path):
    # Counts without times: the window's start and end, as before
    rng = random.Random(5)
    start, end, virtual, physical = random_window(
        rng, 20, start=datetime(2026, 5, 1, tzinfo=UTC)
    )
    from ipfix_tools import decode_message, ms

    templates: dict = {}
    decode_message(_ipfix.template_message(0, 0, 1), templates)
    for message, _n in _ipfix.Encoder(1400).messages(virtual, ms(start), ms(end), 0, 1):
        for rec in decode_message(bytes(message), templates)["records"]:
            assert (rec["start_ms"], rec["end_ms"]) == (ms(start), ms(end))
