"""The compiled JSON/CSV rows of `connstats read` against their Python reference.

src/core/textout.pxi must order and write exactly what connstats/cli/fastout.py
does: random windows (IPv4, IPv6, IPv4-mapped and -compatible IPv6, missing
addresses, every protocol number, special and physical rows, zero and
64-bit counts, many ties) through both, then real captures through
``connstats read`` with the compiled loops and with the Python ones.
"""

from __future__ import annotations

import gc
import io
import json
import sys
from collections.abc import Iterator
from importlib import resources
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connstats._impl import IS_COMPILED, core
from connstats._protocols import PROTOCOL_NAMES
from connstats.cli import fastout as _fastout
from connstats.cli.outstream import GuardedOutput, OutputError

pytestmark = pytest.mark.skipif(
    not IS_COMPILED, reason="the compiled core is not in use (pure-Python core)"
)

DATA = Path(__file__).parent / "data"

# database=None: no .hypothesis/ directory in the source tree.
SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

U64 = 2**64 - 1
COLUMNS = ["bytes", "packets", "tx-packets", "tx-bytes", "rx-packets", "rx-bytes"]


def _hextets(groups: list[int]) -> IPv6Address:
    value = 0
    for g in groups:
        value = value << 16 | g
    return IPv6Address(value)


ipv4 = st.one_of(
    st.sampled_from([0, 1, 0x7F000001, 0xC0000209, 0xFFFFFFFF]),
    st.integers(0, 2**32 - 1),
).map(IPv4Address)
ipv6 = st.one_of(
    st.integers(0, 2**128 - 1).map(IPv6Address),
    # zero runs of every length and place: RFC 5952 "::" choice and ties
    st.lists(
        st.sampled_from([0, 0, 0, 1, 0xA, 0xFF, 0x100, 0xFFFF, 0x2001, 0xDB8]),
        min_size=8,
        max_size=8,
    ).map(_hextets),
    # IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d, ::, ::1)
    st.integers(0, 2**32 - 1).map(lambda v: IPv6Address(0xFFFF << 32 | v)),
    st.integers(0, 2**32 - 1).map(IPv6Address),
    st.integers(0, 2**48 - 1).map(IPv6Address),
    st.integers(0, 0xFFFF).map(lambda v: IPv6Address(v << 32 | 0x01020304)),
)
ports = st.one_of(st.sampled_from([0, 1, 53, 443, 65535]), st.integers(0, 65535))
protos = st.one_of(
    st.sampled_from([0, 1, 6, 17, 58, 99, 132, 255]), st.integers(0, 255)
)
# tunnel rows (connstats read --decap): mostly none, some shared, some any
vnis = st.one_of(
    st.none(), st.none(), st.sampled_from([0, 1, 5001]), st.integers(0, 2**32 - 1)
)
counts = st.one_of(
    st.sampled_from([0, 0, 1, 2, 3, 2**32, 2**63, U64 - 1, U64]),
    st.integers(0, U64),
)


@st.composite
def windows(draw: st.DrawFn) -> tuple[dict, dict]:
    # A small pool of addresses and counters makes rows share prefixes and
    # counts, so every tie-break field decides somewhere.
    pool = draw(st.lists(st.one_of(ipv4, ipv6), min_size=1, max_size=6))
    addr = st.one_of(st.sampled_from(pool), ipv4, ipv6)
    some_counts = draw(st.lists(counts, min_size=1, max_size=4))
    count = st.one_of(st.sampled_from(some_counts), counts)

    def endpoint(may_miss: bool) -> object:
        a = draw(st.one_of(st.none(), addr) if may_miss else addr)
        return core.AddrPort(a, draw(ports))

    virtual = {}
    for _ in range(draw(st.integers(0, 40))):
        shape = draw(st.sampled_from(["plain"] * 6 + ["undecoded", "half"]))
        if shape == "undecoded":  # the "-" row: nothing could be decoded
            conn = core.Connection()
        else:
            half = shape == "half"
            conn = core.Connection(
                draw(protos), endpoint(half), endpoint(half), draw(vnis)
            )
        virtual[conn] = core.Counts(*(draw(count) for _ in range(4)))
    physical = {}
    for _ in range(draw(st.integers(0, 6))):
        conn = core.Connection(
            draw(st.sampled_from([0, 17, 47])),
            core.AddrPort(draw(addr), draw(ports)),
            core.AddrPort(draw(addr), draw(ports)),
            draw(vnis),
        )
        physical[conn] = core.Counts(*(draw(count) for _ in range(4)))
    return virtual, physical


def _python(tables: list, column: str, reverse: bool, top: int) -> tuple:
    cache = _fastout.AddrCache()
    items, total = _fastout.sorted_items(tables, column, reverse, top, cache)
    virtual, physical = _fastout.json_items(items, cache)
    head = "7,2026-01-01T00:00:00Z,x,"
    text = _fastout.csv_items(items, head, cache)
    text_vni = _fastout.csv_items(items, head, cache, True)
    return items, total, (",".join(virtual), ",".join(physical)), (text, text_vni)


@SETTINGS
@given(
    window=windows(),
    column=st.sampled_from(COLUMNS),
    reverse=st.booleans(),
    top=st.one_of(st.just(0), st.integers(1, 50)),
)
def test_compiled_rows_are_the_python_rows(window, column, reverse, top):
    virtual, physical = window
    tables = [(virtual, False), (physical, True)]
    want_items, want_total, want_json, (want_csv, want_csv_vni) = _python(
        tables, column, reverse, top
    )

    items, total = core.sorted_items(tables, column, reverse, top)
    assert total == want_total
    assert len(items) == len(want_items)
    # the same objects, in the same order (ties included)
    assert [(c, n, p) for c, n, p in items] == want_items
    assert all(a[0] is b[0] and a[1] is b[1] for a, b in zip(items, want_items))

    head = "7,2026-01-01T00:00:00Z,x,"
    assert core.json_rows(items) == want_json
    assert core.csv_rows(items, head, PROTOCOL_NAMES) == want_csv
    assert core.csv_rows(items, head, PROTOCOL_NAMES, True) == want_csv_vni
    # the same text from plain (Connection, Counts, physical) tuples
    assert core.json_rows(want_items) == want_json
    assert core.csv_rows(want_items, head, PROTOCOL_NAMES) == want_csv
    # and streamed as bytes (json_rows_to, csv_rows_to)
    for source in (items, want_items):
        assert _streamed_json(source) == want_json
        chunks: list[bytes] = []
        rows = core.csv_rows_to(source, chunks.append, head, PROTOCOL_NAMES, True)
        assert b"".join(chunks).decode() == want_csv_vni
        assert rows == len(want_items)
    # and it is JSON
    for text in want_json:
        json.loads(f"[{text}]")


def _streamed_json(items) -> tuple[str, str]:
    # json_rows_to's bytes, as json_rows's (virtual, physical) texts
    texts = []
    for physical in (False, True):
        chunks: list[bytes] = []
        rows = core.json_rows_to(items, chunks.append, physical, b"<", b">")
        text = b"".join(chunks).decode()
        assert (rows == 0) == (text == "")
        if text:
            assert text[0] == "<" and text[-1] == ">"
            assert text.count("{") == rows
        texts.append(text[1:-1])
    return texts[0], texts[1]


def test_one_row_of_each_kind_by_hand():
    # What the differential test compares, spelled out once.
    ap, c = core.AddrPort, core.Connection
    v4 = IPv4Address("10.0.0.1")
    mapped = IPv6Address("::ffff:192.0.2.9")
    virtual = {
        c(6, ap(v4, 5000), ap(IPv6Address("2001:db8::1"), 443)): core.Counts(1, 60),
        c(17, ap(v4, 53), ap(mapped, 53)): core.Counts(0, 0, 2, 200),
        c(): core.Counts(3, 90),  # undecoded
        c(255, ap(v4, 0), ap(IPv4Address("10.0.0.2"), 0)): core.Counts(1, 1480),
        c(0, ap(v4, 0), ap(IPv4Address("10.0.0.3"), 0)): core.Counts(1, 20),
    }
    physical = {c(0, ap(v4, 0), ap(IPv4Address("10.9.9.9"), 0)): core.Counts(9, 999)}
    items, total = core.sorted_items(
        [(virtual, False), (physical, True)], "bytes", False, 0
    )
    assert total == 6
    assert core.json_rows(items) == (
        '{"kind":"fragment","proto":255,"src":"10.0.0.1:0","dst":"10.0.0.2:0",'
        '"txPkts":1,"txBytes":1480},'
        f'{{"proto":17,"src":"10.0.0.1:53","dst":"[{mapped}]:53",'
        '"rxPkts":2,"rxBytes":200},'
        '{"kind":"undecoded","txPkts":3,"txBytes":90},'
        '{"proto":6,"src":"10.0.0.1:5000","dst":"[2001:db8::1]:443",'
        '"txPkts":1,"txBytes":60},'
        '{"kind":"ip","src":"10.0.0.1:0","dst":"10.0.0.3:0","txPkts":1,"txBytes":20}',
        '{"src":"10.0.0.1:0","dst":"10.9.9.9:0","txPkts":9,"txBytes":999}',
    )
    assert core.csv_rows(items, "1,s,e,", PROTOCOL_NAMES).split("\r\n") == [
        "1,s,e,fragment,255,fragment,10.0.0.1,0,10.0.0.2,0,1,1480,0,0",
        f"1,s,e,,17,udp,10.0.0.1,53,{mapped},53,0,0,2,200",
        "1,s,e,undecoded,0,undecoded,,,,,3,90,0,0",
        "1,s,e,,6,tcp,10.0.0.1,5000,2001:db8::1,443,1,60,0,0",
        "1,s,e,ip,0,ip,10.0.0.1,0,10.0.0.3,0,1,20,0,0",
        "1,s,e,physical,0,hopopt,10.0.0.1,0,10.9.9.9,0,9,999,0,0",
        "",
    ]


def test_ordered_items_is_a_sequence():
    ap, c = core.AddrPort, core.Connection
    virtual = {
        c(6, ap(IPv4Address(i), 1), ap(IPv4Address(i + 1), 2)): core.Counts(i, i)
        for i in range(1, 6)
    }
    items, total = core.sorted_items([(virtual, False)], "bytes", False, 3)
    assert (len(items), total) == (3, 5)
    assert [n.tx_packets for _, n, _ in items] == [5, 4, 3]
    assert items[-1] == items[2] and items[0][2] is False
    with pytest.raises(IndexError):
        items[3]
    with pytest.raises(IndexError):
        items[-4]
    assert list(items) == [items[0], items[1], items[2]]
    empty, total = core.sorted_items([({}, False), ({}, True)], "packets", True, 0)
    assert (len(empty), list(empty), total) == (0, [], 0)
    assert (
        core.json_rows(empty) == ("", "")
        and core.csv_rows(empty, "", PROTOCOL_NAMES) == ""
    )


def test_items_outlive_the_window():
    # The sequence keeps its own references: the window's dicts may go.
    ap, c = core.AddrPort, core.Connection
    virtual = {
        c(17, ap(IPv6Address("::ffff:1.2.3.4"), 1), ap(None, 0)): core.Counts(1, 2)
    }
    items, _ = core.sorted_items([(virtual, False)], "bytes", False, 0)
    want = core.json_rows(items)
    del virtual
    gc.collect()
    assert core.json_rows(items) == want
    assert items[0][0].src.port == 1


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: core.sorted_items([({}, False)], "nope", False, 0), ValueError),
        (lambda: core.sorted_items([{}], "bytes", False, 0), TypeError),
        (lambda: core.sorted_items([([], False)], "bytes", False, 0), TypeError),
        (lambda: core.sorted_items([({1: 2}, False)], "bytes", False, 0), TypeError),
        (
            lambda: core.sorted_items(
                [({core.Connection(): (1, 2, 3, 4)}, False)], "bytes", False, 0
            ),
            TypeError,
        ),
        (lambda: core.sorted_items(None, "bytes", False, 0), TypeError),
        (lambda: core.json_rows([(core.Connection(), core.Counts())]), TypeError),
        (lambda: core.json_rows([("x", core.Counts(), False)]), TypeError),
        (lambda: core.json_rows([None]), TypeError),
        (lambda: core.csv_rows([], "", PROTOCOL_NAMES[:10]), ValueError),
        (lambda: core.csv_rows([], "", [b"x"] * 256), TypeError),
        (lambda: core.csv_rows([], None, PROTOCOL_NAMES), TypeError),
    ],
)
def test_bad_input_is_an_exception(call, error):
    with pytest.raises(error):
        call()


# -- through connstats read ------------------------------------------------------------


def _captures() -> Iterator[str]:
    yield from sorted(str(p) for p in DATA.glob("lo-s96*.pcap*"))
    ref = resources.files("connstats") / "data" / "sample.pcap"
    with resources.as_file(ref) as path:
        yield str(path)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize(
    "extra",
    [
        (),
        ("--sort", "packets", "--reverse"),
        ("--sort", "rx-bytes", "--top", "2"),
        ("--max-period", "0.05", "--sort", "tx-packets"),
        ("--total",),
    ],
)
def test_read_writes_what_the_python_rows_write(capsys, monkeypatch, fmt, extra):
    from connstats.cli import main

    for path in _captures():
        argv = ["read", path, "--format", fmt, *extra]
        assert main(argv) == 0
        compiled = capsys.readouterr().out
        with monkeypatch.context() as m:
            m.setattr(_fastout, "_compiled", None)
            assert main(argv) == 0
            python = capsys.readouterr().out
        assert compiled == python, path
        assert compiled.count("\n") >= 1


def test_many_rows_one_window(tmp_path):
    # A window large enough for every buffer to grow several times.
    from connstats.cli.out_csv import CsvWriter
    from connstats.cli.out_jsonl import JsonlWriter
    from connstats.cli.output import ReportOptions, Window

    ap, c = core.AddrPort, core.Connection
    virtual = {}
    for i in range(20000):
        src = IPv4Address(0x0A000000 + i) if i % 3 else IPv6Address((0x2001 << 112) + i)
        dst = (
            IPv6Address(0xFFFF << 32 | i)
            if i % 7 == 0
            else IPv4Address(0xC0000200 + i % 9)
        )
        virtual[c(6 if i % 2 else 17, ap(src, i % 65536), ap(dst, 443))] = core.Counts(
            i % 13, U64 - i % 5, i % 3, i
        )
    w = Window(0, 10**9, virtual, {})
    for writer in (JsonlWriter, CsvWriter):
        out = [io.StringIO(), io.StringIO()]
        writer(out[0], options=ReportOptions(top=0)).window(w)
        saved = _fastout._compiled
        _fastout._compiled = None
        try:
            writer(out[1], options=ReportOptions(top=0)).window(w)
        finally:
            _fastout._compiled = saved
        assert out[0].getvalue() == out[1].getvalue()
        assert out[0].getvalue().count("\n") >= 1
        # the same through a file's binary layer, in chunks, as the text
        # layer writes it (two windows: text after the bytes, then bytes
        # after the text)
        assert len(out[0].getvalue()) > 2 * 256 * 1024  # several chunks
        raw = io.BytesIO()
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        streamed = GuardedOutput(text, "a file")
        assert streamed.binary_writer() is not None
        as_text = io.StringIO()
        for stream in (streamed, as_text):
            two = writer(stream, options=ReportOptions(top=0))
            two.window(w)
            two.window(w)
        text.flush()
        assert raw.getvalue().decode() == as_text.getvalue()


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("top", [0, 700, 2999])
def test_large_orders_with_long_runs_of_ties(column, reverse, top):
    # Thousands of rows whose counts repeat in long runs (as a capture's
    # one-packet flows do) and pass 64 bits when two are added: the full
    # sort (a radix sort on the count column, then the rest of the key
    # within each run of equal counts) against Python's sort.  top=700
    # still sorts every row; 2999 ends among the physical rows.
    import random

    rng = random.Random(f"{column}{reverse}{top}")
    ap, c = core.AddrPort, core.Connection
    pool = [0, 1, 40, 60, 2**32, 2**63, U64 - 1, U64]
    virtual = {}
    for i in range(3000):
        src = IPv4Address(0x0A000000 + rng.randrange(256))
        dst = (
            IPv6Address((0x2001 << 112) + rng.randrange(4))
            if i % 5 == 0
            else IPv4Address(0xC0000200 + rng.randrange(3))
        )
        conn = c(rng.choice([6, 17]), ap(src, rng.randrange(8)), ap(dst, 443))
        virtual[conn] = core.Counts(*(rng.choice(pool) for _ in range(4)))
    physical = {
        c(
            17,
            ap(IPv4Address(0x0B000000 + i), 41641),
            ap(IPv4Address(0x0B000001), 41641),
        ): core.Counts(*(rng.choice(pool) for _ in range(4)))
        for i in range(50)
    }
    tables = [(virtual, False), (physical, True)]
    want_items, want_total, want_json, (want_csv, _) = _python(
        tables, column, reverse, top
    )
    items, total = core.sorted_items(tables, column, reverse, top)
    assert total == want_total == len(virtual) + len(physical) > 2500
    assert list(items) == want_items
    assert core.json_rows(items) == want_json
    assert core.csv_rows(items, "7,2026-01-01T00:00:00Z,x,", PROTOCOL_NAMES) == want_csv


def test_binary_writer_only_where_the_text_layer_adds_nothing():
    assert GuardedOutput(io.StringIO(), "x").binary_writer() is None
    latin = io.TextIOWrapper(io.BytesIO(), encoding="latin-1")
    assert GuardedOutput(latin, "x").binary_writer() is None
    raw = io.BytesIO()
    text = io.TextIOWrapper(raw, encoding="UTF8")
    out = GuardedOutput(text, "x")
    out.write("before,")
    write = out.binary_writer()
    assert write is not None
    assert raw.getvalue() == b"before,"  # the text was flushed first
    write(b"bytes")
    out.write(",after")
    out.flush()
    assert raw.getvalue() == b"before,bytes,after"


class _Full(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        raise OSError(28, "No space left on device")


def test_streamed_rows_report_a_failed_write():
    virtual = {
        core.Connection(
            6, core.AddrPort(IPv4Address(i), 1), core.AddrPort(IPv4Address(1), 2)
        ): core.Counts(1, 40, 0, 0)
        for i in range(30000)
    }
    items, _ = core.sorted_items([(virtual, False)], "bytes", False, 0)
    text = io.TextIOWrapper(io.BufferedWriter(_Full(), 4096), encoding="utf-8")
    write = GuardedOutput(text, "the output").binary_writer()
    assert write is not None
    with pytest.raises(OutputError, match="cannot write the output: No space left"):
        core.json_rows_to(items, write, False, b"[", b"]")
    with pytest.raises(OutputError, match="No space left"):
        core.csv_rows_to(items, write, "1,", PROTOCOL_NAMES)
    with pytest.raises(TypeError, match="write: expected a callable"):
        core.json_rows_to(items, None, False, b"", b"")
    with pytest.raises(TypeError, match="write: expected a callable"):
        core.csv_rows_to(items, 3, "1,", PROTOCOL_NAMES)
    # the rows are still there, and the text without streaming is whole
    assert core.json_rows(items)[0].count("{") == 30000


def test_threads_sort_and_write_the_same_window():
    # Read-only on the window and on each other's OrderedItems: with the GIL
    # off (free-threaded build) every thread still writes the same text.
    import threading

    ap, c = core.AddrPort, core.Connection
    virtual = {
        c(6, ap(IPv4Address(i), i % 65536), ap(IPv4Address(i * 7), 80)): core.Counts(
            i % 17, i, 1, 2
        )
        for i in range(20000)
    }
    shared, _ = core.sorted_items([(virtual, False)], "bytes", False, 0)
    want = (core.json_rows(shared), core.csv_rows(shared, "1,", PROTOCOL_NAMES))
    got: list = []

    def work() -> None:
        for _ in range(3):
            mine, _ = core.sorted_items([(virtual, False)], "bytes", False, 0)
            got.append(
                (core.json_rows(mine), core.csv_rows(shared, "1,", PROTOCOL_NAMES))
            )

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 12 and all(g == want for g in got)


# -- the same from a cut window's table (issue 24) ---------------------------
#
# `connstats read` ranks and writes a window straight from the compiled
# core's arrays (Window.sorted_items), building objects only for the rows
# asked for.  It must give what sorted_items gives on the window's dicts.


def _ip_packet(proto: int, src: object, sport: int, dst: object, dport: int) -> bytes:
    import struct

    body = struct.pack("!HH", sport, dport) + bytes(20)
    if isinstance(src, IPv4Address) and isinstance(dst, IPv4Address):
        head = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(body), 0, 0, 64, proto, 0)
        return head + src.packed + dst.packed + body
    s6 = src if isinstance(src, IPv6Address) else IPv6Address(int(src))  # type: ignore[arg-type]
    d6 = dst if isinstance(dst, IPv6Address) else IPv6Address(int(dst))  # type: ignore[arg-type]
    head = struct.pack("!IHBB", 0x6000_0000, len(body), proto, 64)
    return head + s6.packed + d6.packed + body


@st.composite
def counted_windows(draw: st.DrawFn) -> object:
    pool = draw(st.lists(st.one_of(ipv4, ipv6), min_size=1, max_size=6))
    addr = st.one_of(st.sampled_from(pool), ipv4, ipv6)
    c = core.Core()
    for _ in range(draw(st.integers(0, 60))):
        kind = draw(st.sampled_from(["tx", "tx", "rx", "garbage", "physical"]))
        if kind == "garbage":
            c.update_tx_virtual(draw(st.binary(max_size=30)))
        elif kind == "physical":
            n = draw(counts)
            c.update_tx_physical(draw(addr), (draw(addr), draw(ports)), n)
        else:
            p = _ip_packet(
                draw(protos), draw(addr), draw(ports), draw(addr), draw(ports)
            )
            for _ in range(draw(st.integers(1, 3))):
                getattr(c, f"update_{kind}_virtual")(p)
    return c.cut()


@SETTINGS
@given(
    window=counted_windows(),
    column=st.sampled_from(COLUMNS),
    reverse=st.booleans(),
    top=st.one_of(st.just(0), st.integers(1, 50)),
)
def test_window_rows_are_the_dict_rows(window, column, reverse, top):
    if window is None:
        return
    virtual, physical = window.to_dicts()
    tables = [(virtual, False), (physical, True)]
    want_items, want_total = core.sorted_items(tables, column, reverse, top)
    items, total = window.sorted_items(column, reverse, top)
    assert total == want_total == len(virtual) + len(physical)
    assert list(items) == list(want_items)
    head = "1,s,e,"
    assert core.json_rows(items) == core.json_rows(want_items)
    assert core.csv_rows(items, head, PROTOCOL_NAMES) == core.csv_rows(
        want_items, head, PROTOCOL_NAMES
    )
    everything = list(virtual.values()) + list(physical.values())
    assert window.totals() == (
        sum(n.tx_packets + n.rx_packets for n in everything),
        sum(n.tx_bytes + n.rx_bytes for n in everything),
    )


def test_window_totals_do_not_wrap():
    c = core.Core()
    for i in range(3):
        c.update_tx_physical("10.0.0.1", (f"10.0.0.{2 + i}", 1), U64)
        c.update_rx_physical("10.0.0.1", (f"10.0.0.{2 + i}", 1), U64 - 1)
    assert c.cut().totals() == (6, 3 * U64 + 3 * (U64 - 1))


def test_window_items_build_only_the_rows_asked_for():
    c = core.Core()
    c.update_tx_virtual_batch(
        [
            _ip_packet(17, IPv4Address(i), 1, IPv4Address(0x0A000001), 53)
            for i in range(1, 2001)
        ]
    )
    w = c.cut()
    gc.collect()
    before = sys.getallocatedblocks()
    items, total = w.sorted_items("bytes", False, 5)
    assert (len(items), total) == (5, 2000)
    first = items[0]
    # a few dozen blocks (the items, one row's objects), not the objects of
    # 2,000 connections (materializing them all takes over 8,000)
    assert sys.getallocatedblocks() - before < 200
    assert first[0] in w.to_dicts()[0] and first[2] is False
    del w
    gc.collect()
    # the items keep the table they read alive
    assert items[4][0].proto == 17 and items[4][1].tx_packets == 1
