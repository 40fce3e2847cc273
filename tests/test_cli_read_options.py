"""``connstats read`` rows and selection: conversations, groups, sorting, times,
filters (--host/--net/--port/--proto and libpcap's --bpf), CSV, compressed
inputs, several files, protocol names and the labelled special rows.

The built-in sample is a real capture; tshark and tcpdump are the oracles
where they are installed.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import captures as cap
from test_cli import jsonl, run, write

from connstats._protocols import IANA_PROTOCOLS, protocol_name, protocol_number
from connstats.capture import _libpcap
from connstats.cli import main

S = 1_000_000_000
MS = 1_000_000
T0 = 1_700_000_000 * S

needs_tshark = pytest.mark.skipif(
    shutil.which("tshark") is None, reason="tshark (Wireshark) is not installed"
)
needs_libpcap = pytest.mark.skipif(
    not _libpcap.available(), reason="libpcap is not installed (apt install libpcap0.8)"
)


@pytest.fixture(scope="module")
def sample() -> str:
    ref = resources.files("connstats") / "data" / "sample.pcap"
    with resources.as_file(ref) as path:
        yield str(path)


def rows_of(out: str, key: str = "virtualTraffic") -> list[dict]:
    return [row for m in jsonl(out) for row in m.get(key, [])]


# -- protocol names ---------------------------------------------------------------


def test_every_iana_protocol_number_has_a_name():
    assigned = {n for n, _k, _d in IANA_PROTOCOLS}
    assert assigned >= set(range(146)) | {253, 254, 255}
    for n in range(256):
        name = protocol_name(n)
        assert (name == f"proto-{n}") == (n not in assigned), n
        assert protocol_number(name) == n
    expected = {47: "gre", 50: "esp", 51: "ah", 89: "ospfigp", 112: "vrrp", 132: "sctp",
                6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6", 255: "fragment", 4: "ipv4"}  # fmt: skip
    assert {n: protocol_name(n) for n in expected} == expected
    assert protocol_number("OSPF") == 89 and protocol_number("47") == 47
    with pytest.raises(ValueError, match="not an IP protocol"):
        protocol_number("nope")


@pytest.mark.skipif(not Path("/etc/protocols").exists(), reason="no /etc/protocols")
def test_names_agree_with_etc_protocols_where_both_use_the_iana_keyword():
    ours = {n: kw for n, kw, _d in IANA_PROTOCOLS}
    # netbase keeps some historical names: why the table is not read from it.
    netbase_aliases = {0: "ip", 4: "ip-encap", 50: "ipsec-esp", 51: "ipsec-ah",
                       73: "rspf", 124: "isis"}  # fmt: skip
    checked = 0
    for line in Path("/etc/protocols").read_text().splitlines():
        fields = line.split("#")[0].split()
        if len(fields) >= 3 and fields[1].isdigit():
            n, keyword = int(fields[1]), fields[2]
            if n in ours and ours[n] != "-":
                assert keyword.lower() in (ours[n].lower(), netbase_aliases.get(n)), n
                checked += 1
    assert checked > 40


def test_table_names_gre_esp_ospf(capsys, tmp_path):
    recs = [
        (T0, cap.ipv4("10.0.0.1", "10.0.0.2", 47, b"\0" * 8)),
        (T0 + 1, cap.ipv4("10.0.0.1", "10.0.0.2", 50, b"\0" * 16)),
        (T0 + 2, cap.ipv4("10.0.0.1", "224.0.0.5", 89, b"\0" * 24)),
        (T0 + 3, cap.ipv4("10.0.0.1", "224.0.0.18", 112, b"\0" * 8)),
    ]
    path = write(tmp_path, "protos.pcap", cap.pcap(recs, 101, nanosecond=True))
    code, out, _ = run(capsys, "read", path)
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()[2:6]] == [
        "ospfigp", "esp", "gre", "vrrp"]  # fmt: skip


# -- special rows -------------------------------------------------------------------


def special_capture(tmp_path: Path) -> str:
    recs = [
        (T0, b"\x45\x00\x00"),  # too short for addresses: undecoded
        (T0 + 1, cap.ipv4("10.0.0.1", "10.0.0.2", 6, b"\x00\x50")),  # cut TCP header
        (
            T0 + 2,
            cap.ipv4("10.0.0.1", "10.0.0.2", 17, b"\0" * 200, frag=100),
        ),  # later fragment
        (T0 + 3, cap.udp4("10.0.0.1", 5000, "10.0.0.2", 53, b"q")),
    ]
    return write(tmp_path, "special.pcap", cap.pcap(recs, 101, nanosecond=True))


NETLOG_FIELDS = ("proto", "src", "dst", "txPkts", "txBytes", "rxPkts", "rxBytes")


def test_special_rows_are_labelled_and_explained(capsys, tmp_path):
    code, out, _ = run(capsys, "read", special_capture(tmp_path))
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:6]}
    assert rows["undecoded"][1:3] == ["-", "-"]
    assert rows["ip"][1:3] == ["10.0.0.1", "10.0.0.2"]
    assert rows["fragment"][1:3] == ["10.0.0.1", "10.0.0.2"]
    assert rows["udp"][1:3] == ["10.0.0.1:5000", "10.0.0.2:53"]
    notes = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    assert [n.split(":")[0] for n in notes] == ["fragment", "ip", "undecoded"]


def netlog_addrport(text: str) -> tuple[Any, int]:
    """Parse ADDR:PORT the way Go's netip.ParseAddrPort does (a port is required)."""
    host, sep, port = text.rpartition(":")
    assert sep and port.isdigit() and int(port) <= 65535, text
    if host.startswith("["):
        assert host.endswith("]"), text
        host = host[1:-1]
        assert ":" in host, text
    else:
        assert ":" not in host, text
    return ipaddress.ip_address(host), int(port)


@pytest.mark.parametrize("extra", [(), ("--times",)], ids=["fast", "general"])
def test_special_rows_in_json_and_csv(capsys, tmp_path, extra):
    path = special_capture(tmp_path)
    code, out, _ = run(capsys, "read", path, "--format", "jsonl", *extra)
    assert code == 0
    rows = rows_of(out)
    by_kind = {r.get("kind", ""): r for r in rows}
    ip_row = {k: v for k, v in by_kind["ip"].items() if k in NETLOG_FIELDS}
    assert by_kind["undecoded"]["kind"] == "undecoded"
    assert "src" not in by_kind["undecoded"] and "dst" not in by_kind["undecoded"]
    # "ip" and fragment rows too: ADDR:PORT, as Go writes a netip.AddrPort
    assert ip_row == {"src": "10.0.0.1:0", "dst": "10.0.0.2:0", "txPkts": 1,
                      "txBytes": 22}  # fmt: skip
    assert by_kind["fragment"]["proto"] == 255 and "kind" not in by_kind[""]
    assert by_kind["fragment"]["src"] == "10.0.0.1:0"
    for row in rows:
        for name in ("src", "dst"):
            if name in row:
                netlog_addrport(row[name])
    code, out, _ = run(capsys, "read", path, "--format", "csv")
    table = list(csv.DictReader(io.StringIO(out)))
    assert {r["kind"] for r in table} == {"", "undecoded", "ip", "fragment"}
    undecoded = next(r for r in table if r["kind"] == "undecoded")
    assert undecoded["src_addr"] == "" and undecoded["tx_bytes"] == "3"


# -- conversations and groups ----------------------------------------------------------


def tshark_conv(path: str, kind: str) -> dict[frozenset, dict[str, list[int]]]:
    """{frozenset(A, B): {A: [frames, bytes] sent by A, B: [...]}} from tshark -z conv."""
    proc = subprocess.run(
        ["tshark", "-r", path, "-q", "-z", f"conv,{kind}"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    out: dict[frozenset, dict[str, list[int]]] = {}
    pattern = re.compile(
        r"^(\S+)\s+<->\s+(\S+)\s+(\d+)\s+([\d,]+) bytes\s+(\d+)\s+([\d,]+) bytes"
    )
    for line in proc.stdout.splitlines():
        m = pattern.match(line)
        if m:
            a, b = m.group(1), m.group(2)
            # "<-": frames to A (sent by B); "->": frames from A.
            from_b = [int(m.group(3)), int(m.group(4).replace(",", ""))]
            from_a = [int(m.group(5)), int(m.group(6).replace(",", ""))]
            out[frozenset((a, b))] = {a: from_a, b: from_b}
    return out


def _split(endpoint: str) -> tuple[str, int]:
    m = re.fullmatch(r"\[(.*)\]:(\d+)", endpoint) or re.fullmatch(
        r"(.*):(\d+)", endpoint
    )
    assert m, endpoint
    return m.group(1), int(m.group(2))


@needs_tshark
@pytest.mark.parametrize("kind", ["tcp", "udp", "ip", "ipv6"])
def test_conversations_match_tshark_conv(capsys, sample, kind):
    code, out, _ = run(capsys, "read", sample, "--conversations", "--format", "jsonl")
    assert code == 0
    ours: dict[frozenset, dict[str, list[int]]] = defaultdict(
        lambda: defaultdict(lambda: [0, 0])
    )
    for row in rows_of(out, "conversations"):
        proto = row.get("proto", 0)
        (a_addr, a_port), (b_addr, b_port) = _split(row["a"]), _split(row["b"])
        if kind in ("tcp", "udp"):
            if proto != {"tcp": 6, "udp": 17}[kind]:
                continue
            a, b = f"{a_addr}:{a_port}", f"{b_addr}:{b_port}"
        else:
            if (":" in a_addr) != (kind == "ipv6"):
                continue
            a, b = a_addr, b_addr  # tshark's ip conversations span protocols
        # tshark counts frame bytes: the sample is Ethernet without padding.
        pair = ours[frozenset((a, b))]
        for who, pk, by in ((a, "aToBPkts", "aToBBytes"), (b, "bToAPkts", "bToABytes")):
            n = row.get(pk, 0)
            pair[who][0] += n
            pair[who][1] += row.get(by, 0) + 14 * n
    theirs = tshark_conv(sample, kind)
    assert theirs, "tshark found no conversations"
    assert {k: dict(d) for k, d in ours.items()} == theirs


def test_conversations_merge_directions_exactly(capsys, tmp_path):
    recs = [
        (T0, cap.tcp4("10.0.0.9", 40000, "10.0.0.1", 80, b"x" * 10)),
        (T0 + 1, cap.tcp4("10.0.0.1", 80, "10.0.0.9", 40000, b"y" * 100)),
        (T0 + 2, cap.tcp4("10.0.0.1", 80, "10.0.0.9", 40000, b"y" * 100)),
        (T0 + 3, cap.udp4("10.0.0.9", 5000, "10.0.0.1", 53)),
    ]
    path = write(tmp_path, "conv.pcap", cap.pcap(recs, 101, nanosecond=True))
    for local in ([], ["--local", "10.0.0.1"]):
        code, out, _ = run(
            capsys, "read", path, "--conversations", "--format", "jsonl", *local
        )
        assert rows_of(out, "conversations") == [
            {"proto": 6, "a": "10.0.0.1:80", "b": "10.0.0.9:40000",
             "aToBPkts": 2, "aToBBytes": 280, "bToAPkts": 1, "bToABytes": 50},
            {"proto": 17, "a": "10.0.0.1:53", "b": "10.0.0.9:5000",
             "bToAPkts": 1, "bToABytes": 28},
        ]  # fmt: skip
    code, out, _ = run(capsys, "read", path, "--conversations")
    assert "2 conversations" in out.splitlines()[0]
    assert out.splitlines()[1].split()[:3] == ["PROTO", "ADDRESS", "A"]


def test_group_by_host_port_proto_add_up(capsys, sample):
    code, out, _ = run(capsys, "read", sample, "--format", "jsonl")
    conns = rows_of(out)
    total_p = sum(r.get("txPkts", 0) for r in conns)
    total_b = sum(r.get("txBytes", 0) for r in conns)
    for by in ("host", "port", "proto"):
        code, out, _ = run(
            capsys, "read", sample, "--group-by", by, "--format", "jsonl"
        )
        assert code == 0
        (message,) = jsonl(out)
        assert message["groupBy"] == by
        groups = message["groups"]
        tx = (
            sum(g.get("txPkts", 0) for g in groups),
            sum(g.get("txBytes", 0) for g in groups),
        )
        rx = (
            sum(g.get("rxPkts", 0) for g in groups),
            sum(g.get("rxBytes", 0) for g in groups),
        )
        if by == "proto":
            assert tx == (total_p, total_b) and rx == (0, 0)
        else:
            # every packet is sent by one endpoint and received by the other
            assert tx == rx == (total_p, total_b)
    code, out, _ = run(
        capsys, "read", sample, "--group-by", "host", "--format", "jsonl"
    )
    hosts = {g["host"]: g for g in jsonl(out)[0]["groups"]}
    sent = sum(r.get("txBytes", 0) for r in conns if r["src"].startswith("192.0.2.1:"))
    assert hosts["192.0.2.1"]["txBytes"] == sent
    code, out, _ = run(capsys, "read", sample, "--group-by", "proto")
    assert [line.split()[0] for line in out.splitlines()[2:6]] == [
        "tcp",
        "udp",
        "icmpv6",
        "icmp",
    ]


# -- sorting -------------------------------------------------------------------------


def test_sort_by_any_column(capsys, sample):
    def col(*extra: str) -> list[dict]:
        code, out, _ = run(capsys, "read", sample, "--format", "jsonl", *extra)
        assert code == 0
        return rows_of(out)

    by_packets = col("--sort", "packets")
    assert [r["txPkts"] for r in by_packets] == sorted(
        (r["txPkts"] for r in by_packets), reverse=True)  # fmt: skip
    by_src = col("--sort", "source")
    assert by_src[0]["src"].startswith("192.0.2.1:")  # IPv4 before IPv6
    assert col("--sort", "source", "--reverse") == list(reversed(by_src))
    by_first = col("--sort", "first", "--resolution", "1ms")
    # as times: RFC 3339 text with trimmed fractions does not sort as text
    firsts = [_ns(r["firstSeen"]) for r in by_first]
    assert firsts == sorted(firsts)
    smallest = col("--sort", "bytes", "--reverse", "--top", "2")
    assert [r["txBytes"] for r in smallest] == sorted(r["txBytes"] for r in col())[:2]


def test_bad_sort_column_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["read", "--sort", "size"])
    assert exc.value.code == 2
    assert "--sort: 'size' is not a column to sort by" in capsys.readouterr().err


# -- first/last seen -----------------------------------------------------------------


def test_times_are_within_the_resolution(capsys, tmp_path):
    a = [
        (T0 + i * 250 * MS, cap.udp4("10.0.0.1", 1, "10.0.0.2", 2, b"x" * 72))
        for i in range(9)
    ]
    b = [(T0 + 1_100 * MS, cap.tcp4("10.0.0.3", 3, "10.0.0.4", 4))]
    path = write(tmp_path, "times.pcap", cap.pcap(sorted(a + b), 101, nanosecond=True))
    for resolution, slack in (("1ms", MS), ("100ms", 100 * MS), ("1s", S)):
        code, out, _ = run(capsys, "read", path, "--times", "--resolution", resolution,
                           "--format", "jsonl")  # fmt: skip
        assert code == 0
        rows = {r["proto"]: r for r in rows_of(out)}
        udp = rows[17]
        first = _ns(udp["firstSeen"])
        last = _ns(udp["lastSeen"])
        assert T0 - slack <= first <= T0
        assert T0 + 2 * S <= last <= T0 + 2 * S + slack
        assert udp["durationSec"] == pytest.approx((last - first) / S)
        assert udp["pktsPerSec"] == pytest.approx(9 / ((last - first) / S), rel=1e-3)
        assert udp["bitsPerSec"] == pytest.approx(
            9 * 100 * 8 / ((last - first) / S), rel=1e-3
        )
        tcp = rows[6]
        assert T0 + 1_100 * MS - slack <= _ns(tcp["firstSeen"]) <= T0 + 1_100 * MS
    code, out, _ = run(capsys, "read", path, "--times", "--resolution", "1ms")
    header = out.splitlines()[1]
    assert header.split()[-7:] == [
        "FIRST",
        "SEEN",
        "LAST",
        "SEEN",
        "DURATION",
        "PKTS/S",
        "BITS/S",
    ]
    # Windows with times keep their boundaries and counts.
    code, out, _ = run(
        capsys, "read", path, "--times", "--max-period", "1s", "--format", "jsonl"
    )
    msgs = jsonl(out)
    assert sum(r.get("txPkts", 0) for m in msgs for r in m["virtualTraffic"]) == 10
    assert len(msgs) == 3


def _ns(text: str) -> int:
    from datetime import datetime

    whole, _, frac = text.rstrip("Z").partition(".")
    moment = datetime.fromisoformat(whole + "+00:00")
    return int(moment.timestamp()) * S + int((frac or "0").ljust(9, "0"))


def test_times_with_max_conns(capsys):
    # exact times come from the core, whatever cuts the windows
    code, out, _err = run(
        capsys, "read", "--times", "--max-conns", "3", "--format", "jsonl"
    )
    assert code == 0
    rows = [r for m in jsonl(out) for r in m["virtualTraffic"]]
    assert rows and all(_ns(r["firstSeen"]) <= _ns(r["lastSeen"]) for r in rows)


# -- filters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "keep"),
    [
        (["--host", "192.0.2.1"], lambda r: "192.0.2.1:" in r["src"] + " " + r["dst"]
         or r["src"] == "192.0.2.1" or r["dst"] == "192.0.2.1"),
        (["--net", "2001:db8::/32"], lambda r: r["src"].startswith("[2001:db8:")
         or r["dst"].startswith("[2001:db8:") or r["src"].startswith("2001:db8:")),
        (["--port", "5353"], lambda r: r["src"].endswith(":5353") or r["dst"].endswith(":5353")),
        (["--port", "8000-9000", "--proto", "tcp"],
         lambda r: r["proto"] == 6 and any(8000 <= int(e.rsplit(":", 1)[1]) <= 9000
                                           for e in (r["src"], r["dst"]))),
        (["--proto", "icmp", "--proto", "58"], lambda r: r["proto"] in (1, 58)),
        (["--host", "192.0.2.10", "--port", "53"], lambda r: False),
    ],
)  # fmt: skip
def test_connection_filters_select_exactly(capsys, sample, args, keep):
    code, out, _ = run(capsys, "read", sample, "--format", "jsonl")
    everything = rows_of(out)
    code, out, _ = run(capsys, "read", sample, "--format", "jsonl", *args)
    assert code == 0
    assert rows_of(out) == [r for r in everything if keep(r)]


def test_filters_apply_to_the_table_totals(capsys, sample):
    code, out, _ = run(capsys, "read", sample, "--proto", "icmp")
    assert "2 connections, 6 packets, 504 B" in out.splitlines()[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--host", "10.0.0.300"], "--host: '10.0.0.300' is not an IP address"),
        (["--net", "10/33"], "--net: '10/33' is not an IP network"),
        (["--port", "70000"], "--port: '70000': ports are 0 to 65535"),
        (["--proto", "tcpp"], "--proto: 'tcpp' is not an IP protocol name"),
        (["--group-by", "host", "--conversations"], "not allowed with argument"),
    ],
)
def test_bad_filters_are_usage_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(["read", *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def tcpdump_filtered(path: str, expr: str, out: Path) -> None:
    subprocess.run(["tcpdump", "-r", path, "-w", str(out), expr],
                   capture_output=True, check=True, timeout=60)  # fmt: skip


@needs_libpcap
@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
@pytest.mark.parametrize(
    "expr",
    ["tcp", "udp port 5353", "ip6 and not icmp6", "host 192.0.2.1", "greater 200"],
)
def test_bpf_selects_what_tcpdump_selects(capsys, sample, tmp_path, expr):
    oracle = tmp_path / "tcpdump.pcap"
    tcpdump_filtered(sample, expr, oracle)
    code, want, _ = run(capsys, "read", str(oracle), "--format", "jsonl")
    code, got, _ = run(capsys, "read", sample, "--bpf", expr, "--format", "jsonl")
    assert code == 0
    assert rows_of(got) == rows_of(want)


@needs_libpcap
def test_bpf_on_pcapng_with_two_link_types(capsys, tmp_path):
    dns = cap.udp4("10.0.0.1", 5000, "10.0.0.2", 53, b"q")
    web = cap.tcp4("10.0.0.1", 5001, "10.0.0.2", 443)
    section = cap.Section(
        [cap.Interface(1), cap.Interface(101)],
        [(0, T0, cap.ethernet(dns)), (1, T0 + 1, web), (1, T0 + 2, dns), (0, T0 + 3, cap.ethernet(web))],
    )  # fmt: skip
    path = write(tmp_path, "two.pcapng", cap.pcapng(section))
    code, out, _ = run(capsys, "read", path, "--bpf", "udp port 53")
    assert code == 0
    assert "2 packets" in out.splitlines()[0]
    assert out.splitlines()[-1].endswith("2 packets rejected by --bpf")


@needs_libpcap
def test_bad_bpf_expression_is_one_line(capsys, sample):
    code, out, err = run(capsys, "read", sample, "--bpf", "tcp prt 80")
    assert code == 1
    assert err.startswith("connstats: bad BPF expression 'tcp prt 80'")
    assert len(err.splitlines()) == 1


def test_bpf_without_libpcap_is_one_line(capsys, sample, monkeypatch):
    monkeypatch.setattr(_libpcap, "_lib", None)
    monkeypatch.setattr(_libpcap, "_lib_error", "libpcap is not installed, so BPF ...")
    code, out, err = run(capsys, "read", sample, "--bpf", "tcp")
    assert code == 1
    assert err == "connstats: --bpf: libpcap is not installed, so BPF ...\n"


# -- formats and inputs ------------------------------------------------------------------


def test_csv_matches_jsonl(capsys, sample):
    code, out, _ = run(
        capsys, "read", sample, "--format", "jsonl", "--max-period", "0.5"
    )
    want = [
        (i + 1, m["start"], r["proto"], r["src"], r["dst"], r.get("txPkts", 0), r.get("txBytes", 0))
        for i, m in enumerate(jsonl(out)) for r in m["virtualTraffic"]
    ]  # fmt: skip
    code, out, _ = run(capsys, "read", sample, "--format", "csv", "--max-period", "0.5")
    assert code == 0
    assert out.startswith(
        "window,window_start,window_end,kind,proto,proto_name,src_addr,"
    )
    got = []
    for r in csv.DictReader(io.StringIO(out)):
        v6 = ":" in r["src_addr"]
        src = (
            f"[{r['src_addr']}]:{r['src_port']}"
            if v6
            else f"{r['src_addr']}:{r['src_port']}"
        )
        dst = (
            f"[{r['dst_addr']}]:{r['dst_port']}"
            if v6
            else f"{r['dst_addr']}:{r['dst_port']}"
        )
        got.append((int(r["window"]), r["window_start"], int(r["proto"]), src, dst,
                    int(r["tx_packets"]), int(r["tx_bytes"])))  # fmt: skip
    assert got == want


def _compressors() -> list:
    import bz2
    import gzip
    import lzma

    out = [("gzip", gzip.compress), ("bzip2", bz2.compress), ("xz", lzma.compress)]
    try:
        import zstandard

        out.append(("zstd", zstandard.ZstdCompressor().compress))
    except ImportError:
        try:
            from compression import zstd  # type: ignore[import-not-found]

            out.append(("zstd", zstd.compress))
        except ImportError:
            pass
    return out


@pytest.mark.parametrize(
    ("kind", "compress"), _compressors(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_compressed_captures_read_transparently(
    capsys, sample, tmp_path, kind, compress, monkeypatch
):
    code, plain, _ = run(capsys, "read", sample, "--top", "0")
    packed = write(tmp_path, "sample.pcap.data", compress(Path(sample).read_bytes()))
    code, out, _ = run(capsys, "read", packed, "--top", "0")
    assert code == 0
    body = lambda text: text.split("\n\n")[0]  # noqa: E731
    assert body(out) == body(plain)
    assert out.splitlines()[-1] == (
        f"{packed}: pcap, EN10MB, {kind}-compressed, 48 IP packets, 2 non-IP frames skipped"
    )
    monkeypatch.setattr(
        sys,
        "stdin",
        io.TextIOWrapper(io.BufferedReader(io.BytesIO(Path(packed).read_bytes()))),
    )
    code, out, _ = run(capsys, "read", "-", "--top", "0")
    assert code == 0 and body(out) == body(plain)


def test_zstd_without_a_decoder_is_one_line(capsys, tmp_path, monkeypatch):
    import importlib

    real_import = importlib.import_module

    def no_zstd(name, *args, **kwargs):
        if name in ("zstandard", "compression.zstd"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    path = write(tmp_path, "x.pcap.zst", b"\x28\xb5\x2f\xfd" + bytes(20))
    monkeypatch.setattr(importlib, "import_module", no_zstd)
    code, _out, err = run(capsys, "read", path)
    assert code == 1
    assert err.startswith(f"connstats: {path}: zstd-compressed; reading it needs")


def test_several_files_have_their_own_and_combined_totals(capsys, sample, tmp_path):
    import gzip

    recs = [(T0, cap.udp4("10.0.0.1", 1, "10.0.0.2", 2, b"x" * 72))] * 3
    small = write(tmp_path, "small.pcap", cap.pcap(recs, 101, nanosecond=True))
    packed = write(tmp_path, "sample.pcap.gz", gzip.compress(Path(sample).read_bytes()))
    code, out, _ = run(capsys, "read", small, packed, "--total")
    assert code == 0
    lines = out.splitlines()
    assert "51 packets" in lines[0]
    assert (
        lines[-3]
        == f"{small}: pcap, RAW, 3 IP packets (300 B), 0 non-IP frames skipped"
    )
    assert lines[-2].startswith(
        f"{packed}: pcap, EN10MB, gzip-compressed, 48 IP packets ("
    )
    assert lines[-1].startswith("all 2 files: 51 IP packets (")
    assert lines[-1].endswith(", 2 non-IP frames skipped")


# -- the fast output path against the general one ------------------------------------


def _many_ties_capture(tmp_path: Path) -> str:
    recs = []
    t = T0
    for i in range(300):
        src = f"10.0.{i % 7}.{i % 13}" if i % 3 else f"2001:db8::{i % 11:x}"
        dst = "192.0.2.9" if i % 3 else "::ffff:192.0.2.9" if i % 2 else "2001:db8::1"
        if ":" in src:
            pkt = cap.udp6(src, 1000 + i % 5, dst, 53, b"x" * (i % 3))
        else:
            pkt = cap.udp4(src, 1000 + i % 5, dst, 53, b"x" * (i % 3))
        recs.append((t, pkt))
        t += MS
    recs.append((t, b"\x45\x00"))
    recs.append((t + 1, cap.ipv4("10.0.0.1", "10.0.0.2", 17, b"\0" * 40, frag=64)))
    return write(tmp_path, "ties.pcap", cap.pcap(recs, 101, nanosecond=True))


@pytest.mark.parametrize("sort", ["bytes", "packets", "tx-bytes", "rx-packets"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("top", [0, 5])
def test_fast_path_writes_what_the_general_path_writes(tmp_path, sort, reverse, top):
    from connstats.capture import open_capture
    from connstats.capture.windows import Replayer
    from connstats.cli.out_csv import CsvWriter
    from connstats.cli.out_jsonl import JsonlWriter, window_message
    from connstats.cli.out_table import TableWriter
    from connstats.cli.output import ReportOptions, build_report

    windows: list = []
    replayer = Replayer(windows.append)
    with open_capture(_many_ties_capture(tmp_path)) as reader:
        replayer.feed(reader)
    replayer.finish()
    (w,) = windows
    opts = ReportOptions(top=top, sort=sort, reverse=reverse)
    fast = build_report(w, opts)
    assert fast.items is not None
    # The general path: Row objects sorted by _report.sort_rows.
    general = build_report(
        w, ReportOptions(top=0, sort=sort, reverse=reverse, times=True), times={}
    )
    assert general.items is None
    key = {
        "bytes": lambda r: (r.bytes, r.packets),
        "packets": lambda r: (r.packets, r.bytes),
        "tx-bytes": lambda r: r.tx_bytes,
        "rx-packets": lambda r: r.rx_packets,
    }[sort]
    got = [key(r) for r in fast.rows]
    want = [key(r) for r in general.rows][: top or None]
    assert got == want

    def ident(r):
        return (r.kind, r.proto, str(r.a), str(r.b), r.tx_packets, r.tx_bytes)

    # Same rows in the same order, ties included.
    assert list(map(ident, fast.rows)) == list(map(ident, general.rows))[: top or None]
    # The same rows through the JSON encoder of the general path.
    out = io.StringIO()
    JsonlWriter(out, options=opts).window(w)
    slow = build_report(w, opts)
    slow.shown, slow.items = slow.rows, None
    assert (
        out.getvalue()
        == json.dumps(window_message(w, rep=slow), separators=(",", ":")) + "\n"
    )
    # And CSV: the fast lines against the csv module's.
    out = io.StringIO()
    CsvWriter(out, options=opts).window(w)
    lines = list(csv.reader(io.StringIO(out.getvalue())))
    assert len(lines) == 1 + len(slow.rows)
    for line, r in zip(lines[1:], slow.rows):
        assert line[3] == r.kind and int(line[4]) == r.proto and line[5] == r.proto_name
        assert [int(v) for v in line[10:14]] == [
            r.tx_packets,
            r.tx_bytes,
            r.rx_packets,
            r.rx_bytes,
        ]
    TableWriter(io.StringIO(), options=opts).window(
        w
    )  # the table takes the fast rows too


@needs_libpcap
@pytest.mark.parametrize("big_endian", [False, True])
def test_bpf_on_simple_packet_blocks_junk_and_two_sections(
    capsys, tmp_path, big_endian
):
    dns = cap.ethernet(cap.udp4("10.0.0.1", 5000, "10.0.0.2", 53, b"q"))
    web = cap.ethernet(cap.tcp4("10.0.0.1", 5001, "10.0.0.2", 443))
    first = cap.Section(
        [cap.Interface(1)], [(None, 0, dns), (None, 0, web), (0, T0, cap.ARP_FRAME)],
        big_endian=big_endian, junk=True,
    )  # fmt: skip
    second = cap.Section([cap.Interface(1)], [(0, T0 + S, web), (0, T0 + 2 * S, dns)])
    path = write(tmp_path, "spb.pcapng", cap.pcapng([first, second]))
    code, out, _ = run(capsys, "read", path, "--bpf", "tcp", "--format", "jsonl")
    assert code == 0
    assert [(r["dst"], r["txPkts"]) for r in rows_of(out)] == [("10.0.0.2:443", 2)]
    code, out, _ = run(capsys, "read", path, "--bpf", "arp or udp")
    assert out.splitlines()[-1].endswith(
        "2 IP packets, 1 non-IP frames skipped, 2 packets rejected by --bpf"
    )


def _big_capture(tmp_path: Path) -> bytes:
    recs = [
        (
            T0 + i * MS,
            cap.udp4("10.0.0.1", 1000 + i % 50, "10.0.0.2", 53, bytes(range(200))),
        )
        for i in range(2000)
    ]
    return cap.pcap(recs, 101, nanosecond=True)


@pytest.mark.parametrize("kind", [k for k, _ in _compressors()])
def test_truncated_compressed_capture_counts_what_came_then_fails(
    capsys, tmp_path, kind
):
    compress = dict(_compressors())[kind]
    data = compress(_big_capture(tmp_path))
    path = write(tmp_path, "cut.data", data[: len(data) * 2 // 3])
    code, out, err = run(capsys, "read", path)
    assert code == 1
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert err.startswith(f"connstats: {path}: truncated")
    if kind != "bzip2":  # a bzip2 block decompresses whole or not at all
        packets = int(out.splitlines()[-1].split(", ")[-2].split()[0])
        assert 0 < packets < 2000


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.999])
def test_truncated_zstd_is_reported_wherever_it_is_cut(capsys, tmp_path, cut):
    """The zstandard package ends a cut stream quietly: the reader must not."""
    compressors = dict(_compressors())
    if "zstd" not in compressors:
        pytest.skip("no zstd decoder: Python < 3.14 without the zstandard package")
    data = compressors["zstd"](_big_capture(tmp_path))
    path = write(tmp_path, "cut.pcap.zst", data[: int(len(data) * cut)])
    code, out, err = run(capsys, "read", path)
    assert code == 1
    # the stream's end, or the record it cut through: either way one line
    assert err.startswith(f"connstats: {path}: truncated: ") and err.count("\n") == 1
    if cut > 0.5:
        packets = int(out.splitlines()[-1].split(", ")[-2].split()[0])
        assert 0 < packets < 2000


def test_zstd_frames_one_after_another_are_one_capture(capsys, tmp_path):
    compressors = dict(_compressors())
    if "zstd" not in compressors:
        pytest.skip("no zstd decoder: Python < 3.14 without the zstandard package")
    whole = _big_capture(tmp_path)
    cut = 24 + 3 * (16 + 42 + 200)  # the header and three records, then the rest
    data = compressors["zstd"](whole[:cut]) + compressors["zstd"](whole[cut:])
    path = write(tmp_path, "two-frames.pcap.zst", data)
    code, out, err = run(capsys, "read", path)
    assert (code, err) == (0, "")
    assert "zstd-compressed, 2000 IP packets," in out.splitlines()[-1]


def test_corrupt_compressed_capture_is_one_line(capsys, tmp_path):
    import gzip

    data = bytearray(gzip.compress(_big_capture(tmp_path)))
    data[len(data) // 2] ^= 0xFF
    path = write(tmp_path, "bad.gz", bytes(data))
    code, _out, err = run(capsys, "read", path)
    assert code == 1
    assert err.startswith(f"connstats: {path}: ") and len(err.splitlines()) == 1
