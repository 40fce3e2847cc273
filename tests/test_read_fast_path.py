"""``connstats read`` works from the core's arrays and starts fast (issue 24).

With the compiled core, the replayer hands its windows over with the core's
own table and builds their ``dict[Connection, Counts]`` only when something
asks for them: the plain report (connections sorted by a count column, in
every format) totals, ranks and writes from the table, and only the rows
printed become Python objects.  What it prints must be exactly what the
dict path prints.  Start-up: the command imports neither the library's
``Statistics`` machinery nor the live-capture and libpcap code.
"""

from __future__ import annotations

import array
import random
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from subproc import source_tree_env

from connstats._impl import IS_COMPILED
from connstats.capture import windows as windows_mod
from connstats.cli import main

compiled_only = pytest.mark.skipif(
    not IS_COMPILED, reason="the compiled core is not in use (pure-Python core)"
)


def _capture(path: Path, packets: int = 6000, flows: int = 700) -> str:
    """A classic pcap of Ethernet frames: IPv4 and IPv6, UDP, TCP and ICMP,
    both directions, a few fragments and undecodable packets, over 3 s."""
    rng = random.Random(24)
    flow_list = []
    for _ in range(flows):
        v6 = rng.random() < 0.3
        proto = rng.choice([6, 6, 17, 17, 1])
        a = rng.randrange(1, 1 << 16)
        b = rng.randrange(1, 64)
        flow_list.append(
            (v6, proto, a, b, rng.randrange(1024, 65535), rng.choice([53, 443]))
        )
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    t = 1_700_000_000 * 10**6
    for n in range(packets):
        v6, proto, a, b, sport, dport = flow_list[int(rng.paretovariate(1.2)) % flows]
        if rng.random() < 0.5:  # the reply
            a, b, sport, dport = b, a, dport, sport
        body = struct.pack("!HH", sport, dport) + bytes(rng.choice([16, 16, 300]))
        if n % 997 == 0:
            frame_ip = b"\x45\x00"  # cut short: the undecoded row
        elif v6:
            frame_ip = (
                struct.pack(
                    "!IHBB", 0x6000_0000, len(body), 58 if proto == 1 else proto, 64
                )
                + (0xFD00 << 112 | a).to_bytes(16, "big")
                + (0xFD00 << 112 | 1 << 64 | b).to_bytes(16, "big")
                + body
            )
        else:
            frag = 0x0020 if n % 501 == 0 else 0  # a later fragment
            frame_ip = (
                struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(body), 0, frag, 64, proto, 0)
                + (0x0A000000 | a).to_bytes(4, "big")
                + (0xAC100000 | b).to_bytes(4, "big")
                + body
            )
        ethertype = 0x86DD if v6 and n % 997 else 0x0800
        frame = bytes(12) + struct.pack("!H", ethertype) + frame_ip
        t += rng.randrange(1, 1000)
        out.append(struct.pack("<IIII", t // 10**6, t % 10**6, len(frame), len(frame)))
        out.append(frame)
    path.write_bytes(b"".join(out))
    return str(path)


class _EagerWindow(windows_mod.Window):
    """The replayer's windows with their dicts built at once and no table:
    what every report was made from before."""

    __slots__ = ()

    def __init__(self, start_ns, end_ns, virtual=None, physical=None, *, table=None):
        if table is not None:
            virtual, physical = windows_mod.materialize(table)
        super().__init__(start_ns, end_ns, virtual, physical)


def _read(tmp_path: Path, name: str, argv: list[str]) -> str:
    out = tmp_path / name
    assert main(["read", *argv, "--output", str(out)]) == 0
    return out.read_text()


def _read_parquet(tmp_path: Path, name: str, argv: list[str]) -> Any:
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / name
    assert main(["read", *argv, "--format", "parquet", "--output", str(out)]) == 0
    return pq.read_table(out)


def _fast_and_dict_outputs(tmp_path, monkeypatch, argv, read=_read) -> tuple[Any, Any]:
    """The command's output on the table path (where a materialized window is
    an error: nothing but the rows printed becomes objects) and on the dict
    path (every window materialized eagerly)."""

    def no_materialize(window):
        raise AssertionError("a window was materialized")

    with monkeypatch.context() as m:
        m.setattr(windows_mod, "materialize", no_materialize)
        fast = read(tmp_path, "fast", argv)
    with monkeypatch.context() as m:
        m.setattr(windows_mod, "Window", _EagerWindow)
        slow = read(tmp_path, "slow", argv)
    return fast, slow


@compiled_only
@pytest.mark.parametrize("fmt", ["table", "jsonl", "csv"])
@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["--top", "7"],
        ["--top", "0", "--sort", "tx-bytes"],
        ["--sort", "packets", "--reverse", "--top", "30"],
        ["--max-period", "0.7"],
        ["--max-conns", "150", "--local", "10.0.0.0/8"],
        ["--max-period", "1", "--total", "--local", "fd00::/16"],
    ],
)
def test_table_path_prints_what_the_dict_path_prints(tmp_path, monkeypatch, fmt, extra):
    pcap = _capture(tmp_path / "mix.pcap")
    fast, slow = _fast_and_dict_outputs(
        tmp_path, monkeypatch, [pcap, "--format", fmt, *extra]
    )
    assert fast == slow
    assert len(fast) > 500


def _rows(table: Any) -> list[tuple[Any, ...]]:
    # Parquet rows come in no promised order (the core's, or the dicts'):
    # the same rows, each once.
    rows = [tuple(r.values()) for r in table.to_pylist()]
    return sorted(rows, key=lambda r: [(v is None, str(v)) for v in r])


@compiled_only
@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["--max-period", "0.7", "--community-id"],
        ["--max-conns", "150", "--local", "10.0.0.0/8"],
        ["--max-period", "1", "--total", "--local", "fd00::/16"],
    ],
)
def test_parquet_rows_come_from_the_table(tmp_path, monkeypatch, extra):
    # Every row with its first/last times: the columns are read from the
    # core's arrays, the file is the one the dicts give, row for row.
    pcap = _capture(tmp_path / "mix.pcap")
    fast, slow = _fast_and_dict_outputs(
        tmp_path, monkeypatch, [pcap, *extra], read=_read_parquet
    )
    assert fast.num_rows > 100
    assert fast.column("first_seen").null_count == 0
    assert fast.schema == slow.schema
    assert _rows(fast) == _rows(slow)


@compiled_only
@pytest.mark.parametrize("name", ["vxlan.pcap", "various_gre.pcap"])
def test_parquet_decap_rows_come_from_the_table(tmp_path, monkeypatch, name):
    argv = [str(_TUNNELS / name), "--decap", "--total", "--max-period", "0.001"]
    fast, slow = _fast_and_dict_outputs(tmp_path, monkeypatch, argv, read=_read_parquet)
    assert fast.column("vni").null_count < fast.num_rows
    assert fast.schema == slow.schema
    assert _rows(fast) == _rows(slow)


def test_other_reports_still_get_their_dicts(tmp_path):
    # filters, conversations and groups read the dicts, built on demand
    pcap = _capture(tmp_path / "mix.pcap", packets=2000)
    for extra in (["--conversations"], ["--group-by", "host"], ["--port", "53"]):
        assert _read(tmp_path, "o", [pcap, *extra]).count("\n") > 3


def test_window_needs_dicts_or_a_table():
    w = windows_mod.Window(1, 2, {}, {})
    assert (w.start_ns, w.end_ns, w.virtual, w.physical, w.table) == (
        1,
        2,
        {},
        {},
        None,
    )
    with pytest.raises(TypeError):
        windows_mod.Window(1, 2)


@pytest.mark.parametrize("fmt", ["table", "jsonl", "csv"])
def test_read_of_the_sample_imports_little(fmt):
    # Start-up is most of `connstats read` on a small file: the command must
    # not pull in what only other commands, options or the library need.
    code = (
        "import os, sys\n"
        "from connstats.cli.main import main\n"
        f"assert main(['read', '--format', {fmt!r}, '--output', os.devnull]) == 0\n"
        "from connstats._impl import IS_COMPILED\n"
        "print(IS_COMPILED)\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=source_tree_env(),  # the connstats this process tests
        check=True,
    )
    child_compiled, modules = out.stdout.splitlines()
    assert child_compiled == str(IS_COMPILED)
    loaded = set(modules.split())
    assert f"connstats.cli.out_{fmt}" in loaded  # the command did run
    unwanted = {
        "connstats._statistics",  # the library's Statistics (logging, flusher)
        "connstats._flusher",
        "connstats.capture._live",  # live capture (sockets, ctypes)
        "connstats.capture._libpcap",  # --bpf only
        "ctypes",
        "logging",
        "importlib.resources",  # the sample is read from the package directory
        "connstats.export.community_id",  # --community-id only
        "hashlib",
        "dataclasses",  # loads inspect, dis, ast, tokenize: milliseconds
        "inspect",
        "shutil",  # argparse's way to the terminal width (bz2, lzma, zlib)
    }
    unwanted |= {
        f"connstats.cli.out_{other}" for other in ("table", "csv") if other != fmt
    }
    if fmt == "table":
        unwanted.add("connstats.cli.out_jsonl")  # (CSV shares its Community ID code)
    if IS_COMPILED:
        unwanted.add("socket")  # address text: the compiled core writes its own
    assert loaded & unwanted == set()


_TUNNELS = Path(__file__).parent / "data" / "tunnels"


@compiled_only
@pytest.mark.parametrize("fmt", ["table", "jsonl", "csv"])
@pytest.mark.parametrize(
    "name",
    ["vxlan.pcap", "geneve.pcap", "various_gre.pcap", "gso-ipv6-vxlan-ipv4.pcap"],
)
@pytest.mark.parametrize("extra", [[], ["--total", "--max-period", "0.001"]])
def test_decap_rows_take_the_table_path_too(tmp_path, monkeypatch, fmt, name, extra):
    # Rows with a tunnel's VNI live in the window's tagged table: the table
    # path must rank, total, merge (--total) and print them as the dicts do.
    argv = [str(_TUNNELS / name), "--decap", "--format", fmt, "--top", "0", *extra]
    fast, slow = _fast_and_dict_outputs(tmp_path, monkeypatch, argv)
    assert fast == slow
    assert "vni" in fast.lower() or fmt == "csv"


def _feed(core, rng, n: int, ignored: str) -> None:
    """n IPv4 and IPv6 UDP packets, some with a VNI, some to `ignored`."""
    import ipaddress

    packets, vnis, times = [], [], []
    for i in range(n):
        v6 = rng.random() < 0.4
        if rng.random() < 0.1:
            dst = ipaddress.ip_address(ignored).packed
            v6 = len(dst) == 16
        elif v6:
            dst = (0xFD00 << 112 | rng.randrange(8)).to_bytes(16, "big")
        else:
            dst = (0x0A000000 | rng.randrange(8)).to_bytes(4, "big")
        src = (
            (0xFD00 << 112 | 1 << 64 | rng.randrange(4)).to_bytes(16, "big")
            if v6
            else (0xC0A80000 | rng.randrange(4)).to_bytes(4, "big")
        )
        body = struct.pack("!HH", 1000 + rng.randrange(3), 53) + bytes(
            rng.randrange(40)
        )
        if v6:
            ip = struct.pack("!IHBB", 0x6000_0000, len(body), 17, 64) + src + dst
        else:
            ip = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(body), 0, 0, 64, 17, 0)
            ip += src + dst
        packets.append(ip + body)
        vnis.append(rng.choice([-1, -1, 7, 9]))
        times.append(1_000_000 + i * 1000 + rng.randrange(5000))
    offsets, lengths, pos = [], [], 0
    for p in packets:
        offsets.append(pos)
        lengths.append(len(p))
        pos += len(p)
    core.update_tx_virtual_buffer_at(
        b"".join(packets), offsets, lengths, array.array("q", times), vnis
    )


def _times(c):
    return (c.first_ns, c.last_ns) if hasattr(c, "first_ns") else None


@compiled_only
@pytest.mark.parametrize("track_times", [False, True])
def test_core_merge_totals_and_ranking_match_the_dicts(track_times):
    # merge_windows, Window.totals and Window.sorted_items read the compact
    # and wide arrays, the times beside them and the tagged table: checked
    # against the windows' own dicts and the pure-Python twin.
    from connstats import _fastparse as c_core
    from connstats import _fastparse_py as py_core
    from connstats.cli.fastout import AddrCache
    from connstats.cli.fastout import sorted_items as dict_sorted_items

    ignored = "100.100.100.100"
    wins = {}
    for impl in (c_core, py_core):
        core = impl.Core(
            ignore_destinations=[ignored, "fd00::5"], track_times=track_times
        )
        rng = random.Random(7)
        wins[impl] = []
        for _ in range(3):
            _feed(core, rng, 400, ignored)
            wins[impl].append(core.cut())

    def plain(table):  # comparable across the two cores' value types
        return {
            (k.proto, str(k.src), str(k.dst), k.vni): (tuple(c), _times(c))
            for k, c in table.items()
        }

    for wc, wp in zip(wins[c_core], wins[py_core]):
        cv, cp = wc.to_dicts()
        pv, pp = wp.to_dicts()
        assert (plain(cv), plain(cp)) == (plain(pv), plain(pp))
        assert all(str(k.dst.addr) not in (ignored, "fd00::5") for k in cv)
        assert any(k.vni is not None for k in cv) and any(k.vni is None for k in cv)
        assert any(k.dst.addr.version == 6 for k in cv)
        if track_times:
            assert all(type(c).__name__ == "TimedCounts" for c in cv.values())
    expected: dict = {}
    for w in wins[c_core]:
        v, _p = w.to_dicts()
        for k, c in v.items():
            expected[k] = c if k not in expected else expected[k] + c
    merged = c_core.merge_windows(wins[c_core])
    mv, mp = merged.to_dicts()
    assert mp == {}
    assert plain(mv) == plain(expected)
    if track_times:
        assert {k: (c.first_ns, c.last_ns) for k, c in mv.items()} == {
            k: (c.first_ns, c.last_ns) for k, c in expected.items()
        }
    packets = sum(c.tx_packets + c.rx_packets for c in expected.values())
    nbytes = sum(c.tx_bytes + c.rx_bytes for c in expected.values())
    assert merged.totals() == (packets, nbytes)
    for column, reverse, top in (("bytes", False, 0), ("packets", True, 5)):
        items, total = merged.sorted_items(column, reverse, top)
        want, want_total = dict_sorted_items(
            [(mv, False), (mp, True)], column, reverse, top, AddrCache()
        )
        assert total == want_total == len(expected)
        assert [(k, c, p) for k, c, p in items] == [(k, c, p) for k, c, p in want]
