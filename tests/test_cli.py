"""The ``connstats`` command line: read, output formats, errors."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import captures as cap

from connstats import __version__
from connstats.cli import main
from connstats.cli.output import Progress, human_bytes, rfc3339

S = 1_000_000_000
T0 = 1_700_000_000 * S

# The built-in sample, as tcpdump -nr shows it (sizes are IP lengths).
SAMPLE_V4_TCP_SERVER = {"proto": 6, "src": "192.0.2.1:8080", "dst": "192.0.2.10:46228"}
# server -> client: SYN-ACK 60, ACK 52, 3041 bytes of data 3093, FIN 52, ACK 52
SAMPLE_V4_TCP_SERVER_BYTES = 60 + 52 + 3093 + 52 + 52
# client -> server: SYN 60, ACK 52, 39 bytes of data 91, ACK 52, FIN 52
SAMPLE_V4_TCP_CLIENT_BYTES = 60 + 52 + 91 + 52 + 52


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


# -- the built-in sample -------------------------------------------------------------


def test_read_without_files_shows_the_sample(capsys):
    code, out, err = run(capsys, "read")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("Total: 20")
    assert "15 connections, 48 packets" in lines[0]
    assert lines[1].split() == [
        "PROTO",
        "SOURCE",
        "DESTINATION",
        "TX",
        "PKTS",
        "TX",
        "BYTES",
        "RX",
        "PKTS",
        "RX",
        "BYTES",
    ]
    assert any(
        line.split()[:4] == ["tcp", "192.0.2.1:8080", "192.0.2.10:46228", "5"]
        for line in lines
    )
    assert any(
        line.split()[:3] == ["icmp", "192.0.2.1", "192.0.2.10"] for line in lines
    )
    assert (
        lines[-1]
        == "sample.pcap (built-in sample): pcap, EN10MB, 48 IP packets, 2 non-IP frames skipped"
    )


def test_sample_counts_match_the_packets(capsys):
    code, out, _ = run(
        capsys,
        "read",
        "--format",
        "jsonl",
        "--local",
        "192.0.2.1",
        "--local",
        "2001:db8::1",
    )
    assert code == 0
    (message,) = jsonl(out)
    traffic = {(e["proto"], e["src"], e["dst"]): e for e in message["virtualTraffic"]}
    tcp = traffic[(6, "192.0.2.1:8080", "192.0.2.10:46228")]
    assert tcp == {
        **SAMPLE_V4_TCP_SERVER,
        "txPkts": 5,
        "txBytes": SAMPLE_V4_TCP_SERVER_BYTES,
        "rxPkts": 5,
        "rxBytes": SAMPLE_V4_TCP_CLIENT_BYTES,
    }
    # Three pings of 56 bytes (84-byte packets) each way.
    assert traffic[(1, "192.0.2.1:0", "192.0.2.10:0")] == {
        "proto": 1, "src": "192.0.2.1:0", "dst": "192.0.2.10:0",
        "txPkts": 3, "txBytes": 252, "rxPkts": 3, "rxBytes": 252,
    }  # fmt: skip
    # Three UDP queries of 64, 200 and 512 bytes, answered with twice as much.
    assert traffic[(17, "192.0.2.1:5353", "192.0.2.10:40000")] == {
        "proto": 17, "src": "192.0.2.1:5353", "dst": "192.0.2.10:40000",
        "txPkts": 3, "txBytes": 3 * 28 + 2 * (64 + 200 + 512), "rxPkts": 3, "rxBytes": 3 * 28 + 64 + 200 + 512,
    }  # fmt: skip
    assert sum(e.get("txPkts", 0) + e.get("rxPkts", 0) for e in traffic.values()) == 48


# -- a generated capture, field by field ------------------------------------------------

P1 = cap.tcp4("192.0.2.1", 40000, "198.51.100.7", 443, b"q" * 100)  # 140 bytes
P2 = cap.tcp4("198.51.100.7", 443, "192.0.2.1", 40000, b"r" * 1000)  # 1040 bytes
P3 = cap.udp6("2001:db8::1", 5000, "2001:db8:1::9", 53, b"s" * 22)  # 70 bytes
P4 = cap.icmp4("203.0.113.5", "192.0.2.1", b"t" * 56)  # 84 bytes


@pytest.fixture
def trace(tmp_path) -> str:
    recs = [
        (T0, cap.ethernet(P1)),
        (T0 + S // 2, cap.ethernet(P2)),
        (T0 + S, cap.ARP_FRAME),
        (T0 + 3 * S, cap.ethernet(P3)),
        (T0 + 3 * S + 1000, cap.ethernet(P4, pad_to=60)),
        (T0 + 4 * S, cap.ethernet(P2)),
    ]
    return write(tmp_path, "trace.pcap", cap.pcap(recs, 1, nanosecond=True))


def test_jsonl_windows_field_by_field(capsys, trace):
    code, out, err = run(
        capsys,
        "read",
        trace,
        "--format",
        "jsonl",
        "--local",
        "192.0.2.0/24",
        "--max-period",
        "2s",
    )
    assert code == 0 and err == ""
    first, second = jsonl(out)
    assert list(first) == [
        "start",
        "end",
        "virtualTraffic",
    ]  # no physical traffic: omitted
    assert first["start"] == "2023-11-14T22:13:20Z"
    assert first["end"] == "2023-11-14T22:13:22Z"
    assert first["virtualTraffic"] == [
        {
            "proto": 6,
            "src": "192.0.2.1:40000",
            "dst": "198.51.100.7:443",
            "txPkts": 1,
            "txBytes": 140,
            "rxPkts": 1,
            "rxBytes": 1040,
        },
    ]
    assert second["start"] == "2023-11-14T22:13:23Z"
    assert second["end"] == "2023-11-14T22:13:24Z"
    assert second["virtualTraffic"] == [
        # Sorted by bytes: the rx-only TCP packet, the ICMP packet (padding not
        # counted), then the UDP one, sent to a non-local address.
        {
            "proto": 6,
            "src": "192.0.2.1:40000",
            "dst": "198.51.100.7:443",
            "rxPkts": 1,
            "rxBytes": 1040,
        },
        {
            "proto": 1,
            "src": "192.0.2.1:0",
            "dst": "203.0.113.5:0",
            "rxPkts": 1,
            "rxBytes": 84,
        },
        {
            "proto": 17,
            "src": "[2001:db8::1]:5000",
            "dst": "[2001:db8:1::9]:53",
            "txPkts": 1,
            "txBytes": 70,
        },
    ]


def test_jsonl_times_keep_nanoseconds(capsys, tmp_path):
    path = write(
        tmp_path,
        "ns.pcap",
        cap.pcap([(T0 + 123_456_780, P1), (T0 + S + 5, P1)], 101, nanosecond=True),
    )
    code, out, _ = run(capsys, "read", path, "--format", "jsonl")
    assert code == 0
    (message,) = jsonl(out)
    assert (message["start"], message["end"]) == (
        "2023-11-14T22:13:20.12345678Z",
        "2023-11-14T22:13:21.000000005Z",
    )


def test_without_local_every_packet_is_tx(capsys, trace):
    code, out, _ = run(capsys, "read", trace, "--format", "jsonl")
    (message,) = jsonl(out)
    assert {
        (e["src"], e["dst"]): (e.get("txPkts"), e.get("txBytes"), e.get("rxPkts"))
        for e in message["virtualTraffic"]
    } == {
        ("198.51.100.7:443", "192.0.2.1:40000"): (2, 2080, None),
        ("192.0.2.1:40000", "198.51.100.7:443"): (1, 140, None),
        ("203.0.113.5:0", "192.0.2.1:0"): (1, 84, None),
        ("[2001:db8::1]:5000", "[2001:db8:1::9]:53"): (1, 70, None),
    }


def test_table_windows_total_and_top(capsys, trace):
    code, out, _ = run(
        capsys, "read", trace, "--local", "192.0.2.1", "--max-period", "2"
    )
    assert code == 0
    assert out.count("Window ") == 2
    assert (
        "Window 1: 2023-11-14 22:13:20 -> 22:13:22 UTC (2.00 s), 1 connection, 2 packets, 1.2 KiB"
        in out
    )
    code, out, _ = run(
        capsys,
        "read",
        trace,
        "--local",
        "192.0.2.1",
        "--max-period",
        "2",
        "--total",
        "--top",
        "1",
    )
    lines = out.splitlines()
    assert (
        lines[0]
        == "Total: 2023-11-14 22:13:20 -> 22:13:24 UTC (4.00 s), 3 connections, 5 packets, 2.3 KiB"
    )
    assert lines[2].split() == [
        "tcp",
        "192.0.2.1:40000",
        "198.51.100.7:443",
        "1",
        "140",
        "B",
        "2",
        "2.0",
        "KiB",
    ]
    assert lines[3] == "... 2 more connections (--top 0 shows all)"
    assert lines[-1] == f"{trace}: pcap, EN10MB, 5 IP packets, 1 non-IP frames skipped"


def test_max_conns_option(capsys, trace):
    code, out, _ = run(
        capsys,
        "read",
        trace,
        "--format",
        "jsonl",
        "--max-conns",
        "1",
        "--local",
        "192.0.2.1",
    )
    assert code == 0
    assert [len(m["virtualTraffic"]) for m in jsonl(out)] == [1, 1, 1, 1]


def test_output_file(capsys, trace, tmp_path):
    target = tmp_path / "out.jsonl"
    code, out, err = run(capsys, "read", trace, "--format", "jsonl", "-o", str(target))
    assert (code, out, err) == (0, "", "")
    assert len(jsonl(target.read_text())) == 1


def test_several_files_and_stdin(capsys, trace, tmp_path, monkeypatch):
    other = write(
        tmp_path,
        "more.pcapng",
        cap.pcapng(cap.Section([cap.Interface(101)], [(0, T0 + 5 * S, P3)])),
    )
    monkeypatch.setattr(
        sys, "stdin", io.TextIOWrapper(io.BytesIO(Path(other).read_bytes()))
    )
    code, out, _ = run(capsys, "read", trace, "-", "--format", "table")
    assert code == 0
    assert "[2001:db8::1]:5000  [2001:db8:1::9]:53        2" in out
    lines = out.splitlines()
    assert lines[-2] == (
        f"<stdin>: pcapng, RAW, 1 IP packets ({len(P3)} B), 0 non-IP frames skipped"
    )
    assert lines[-1].startswith("all 2 files: 6 IP packets (")


def test_empty_capture(capsys, tmp_path):
    path = write(tmp_path, "empty.pcap", cap.pcap([(T0, cap.ARP_FRAME)], 1))
    code, out, _ = run(capsys, "read", path)
    assert code == 0
    assert out.splitlines()[0] == "No IP packets."
    code, out, _ = run(capsys, "read", path, "--format", "jsonl")
    assert (code, out) == (0, "")


# -- errors ------------------------------------------------------------------------------


def test_truncated_file_reports_what_came_before_then_fails(capsys, trace, tmp_path):
    data = Path(trace).read_bytes()
    path = write(tmp_path, "cut.pcap", data[:-20])
    code, out, err = run(capsys, "read", path, "--format", "jsonl")
    assert code == 1
    (message,) = jsonl(out)
    assert sum(e["txPkts"] for e in message["virtualTraffic"]) == 4
    assert err.count("\n") == 1
    assert err.startswith(
        f"connstats: {path}: truncated: the input ends inside the record at byte "
    )


def test_corrupt_file_reports_what_came_before_then_fails(capsys, tmp_path):
    good = cap.pcapng(cap.Section([cap.Interface(101)], [(0, T0, P1)]))
    path = write(
        tmp_path, "bad.pcapng", good + b"\x06\x00\x00\x00\x0d\x00\x00\x00" + bytes(40)
    )
    code, out, err = run(capsys, "read", path)
    assert code == 1
    assert "1 connection, 1 packets" in out
    assert (
        err
        == f"connstats: {path}: corrupt pcapng record at byte {len(good)}: block of type 0x00000006 has a bad length 13\n"
    )


@pytest.mark.parametrize(
    "content, message",
    [
        (
            b"hello world, not a capture",
            "{path}: not a pcap or pcapng capture (starts with 68656c6c)\n",
        ),
        (b"", "{path}: empty input, not a pcap or pcapng capture\n"),
        (
            cap.pcap([], 192),
            "{path}: unsupported link type 192 (PPI); connstats reads ",
        ),
    ],
    ids=["text", "empty", "linktype"],
)
def test_unreadable_files_give_one_line(capsys, tmp_path, content, message):
    path = write(tmp_path, "input.bin", content)
    code, out, err = run(capsys, "read", path)
    assert code == 1 and out == ""
    assert err.startswith("connstats: " + message.format(path=path))
    assert err.count("\n") == 1


def test_missing_file(capsys, tmp_path):
    code, out, err = run(capsys, "read", str(tmp_path / "nope.pcap"))
    assert (code, out) == (1, "")
    assert err == f"connstats: {tmp_path / 'nope.pcap'}: No such file or directory\n"


def test_stops_at_the_first_bad_file(capsys, trace, tmp_path):
    bad = write(tmp_path, "bad.txt", b"nope nope")
    code, out, err = run(capsys, "read", trace, bad, trace)
    assert code == 1
    assert out.count("5 IP packets") == 1  # the first file is reported
    assert (
        err
        == f"connstats: {bad}: not a pcap or pcapng capture (starts with 6e6f7065)\n"
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["read", "--max-period", "0"], "must be greater than 0"),
        (["read", "--max-period", "soon"], "is not a duration"),
        (["read", "--max-conns", "-1"], "must be 0 or more"),
        (["read", "--local", "10.0.0.0/33"], "is not an IP network"),
        (["read", "--format", "xml"], "invalid choice"),
        (["capture"], "the following arguments are required: --interface"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_usage_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["--help"], ["read", "--help"], ["capture", "--help"]]
)
def test_help(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: connstats")


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"connstats {__version__}\n"


def test_durations():
    from connstats.cli.arguments import seconds as _seconds

    assert [_seconds(t) for t in ("10", "2.5", "500ms", "5m", "1h", "1e-3")] == [
        10,
        2.5,
        0.5,
        300,
        3600,
        0.001,
    ]


# -- as a program ------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    if "connstats" not in sys.modules or Path(
        sys.modules["connstats"].__file__ or ""
    ).resolve().is_relative_to(root):
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (root, env.get("PYTHONPATH")) if p
        )
    return env


def test_python_dash_m_on_a_truncated_file_has_no_traceback(trace, tmp_path):
    path = write(tmp_path, "cut.pcap", Path(trace).read_bytes()[:-3])
    proc = subprocess.run(
        [sys.executable, "-m", "connstats", "read", path],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"connstats: {path}: truncated")
    assert "4 packets" in proc.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="uses a POSIX shell pipe")
def test_broken_pipe_is_quiet(tmp_path):
    recs = [(T0 + i, cap.udp4("10.0.0.1", i, "10.0.0.2", 9)) for i in range(3000)]
    path = write(tmp_path, "many.pcap", cap.pcap(recs, 101, nanosecond=True))
    proc = subprocess.run(
        f"{sys.executable} -m connstats read {path} --top 0 | head -n 2",
        shell=True, capture_output=True, text=True, env=_env(), timeout=60,
    )  # fmt: skip
    assert len(proc.stdout.splitlines()) == 2
    assert proc.stderr == ""


# -- helpers ------------------------------------------------------------------------------


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_on_terminals_only():
    tty = FakeTTY()
    progress = Progress(tty, 4 * 1024 * 1024, enabled=True)
    progress.DELAY = progress.INTERVAL = 0
    progress._next = 0
    progress.current = lambda: ("big.pcap", 1024 * 1024, 12345)
    progress.update()
    assert (
        tty.getvalue()
        == "\r\x1b[Kbig.pcap: [######..................]  25% 1.0 MiB of 4.0 MiB, 12,345 packets"
    )
    progress.clear()
    assert tty.getvalue().endswith("\r\x1b[K")
    quiet = io.StringIO()
    off = Progress(quiet, 100, enabled=False)
    off.current = lambda: ("x", 1, 1)
    off.update()
    assert quiet.getvalue() == ""


def test_read_is_silent_on_stderr_when_not_a_terminal(capsys, trace):
    code, _, err = run(capsys, "read", trace)
    assert (code, err) == (0, "")


def test_formatting_helpers():
    assert [human_bytes(n) for n in (0, 1023, 1024, 1536, 10 * 1024**2, 300 * 1024**3)] == [
        "0 B", "1023 B", "1.0 KiB", "1.5 KiB", "10.0 MiB", "300 GiB",
    ]  # fmt: skip
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(1_500_000_000) == "1970-01-01T00:00:01.5Z"


# -- against Wireshark ---------------------------------------------------------------

TSHARK_FIELDS = [
    "ip.proto", "ipv6.nxt", "ip.src", "ipv6.src", "ip.dst", "ipv6.dst",
    "tcp.srcport", "udp.srcport", "tcp.dstport", "udp.dstport", "ip.len", "ipv6.plen",
]  # fmt: skip


def tshark_table(path: str) -> dict[tuple, list[int]]:
    """Packets and IP bytes per (proto, src, dst) as Wireshark dissects the file."""
    argv = [
        "tshark",
        "-r",
        path,
        "-T",
        "fields",
        "-E",
        "separator=,",
        "-E",
        "occurrence=f",
    ]
    for name in TSHARK_FIELDS:
        argv += ["-e", name]
    proc = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120)
    table: dict[tuple, list[int]] = {}
    for line in proc.stdout.splitlines():
        f = line.split(",")
        if not (f[0] or f[1]):
            continue  # not IP (ARP)
        v6 = not f[0]
        proto = int(f[1] if v6 else f[0])
        src, dst = (f[3], f[5]) if v6 else (f[2], f[4])
        # Ports of TCP/UDP only: in an ICMP error they belong to the quoted packet.
        sport = int(f[6] or f[7] or 0) if proto in (6, 17) else 0
        dport = int(f[8] or f[9] or 0) if proto in (6, 17) else 0
        size = 40 + int(f[11]) if v6 else int(f[10])
        if v6:
            src, dst = f"[{src}]", f"[{dst}]"
        entry = table.setdefault((proto, f"{src}:{sport}", f"{dst}:{dport}"), [0, 0])
        entry[0] += 1
        entry[1] += size
    return table


@pytest.mark.skipif(
    shutil.which("tshark") is None, reason="tshark (Wireshark) is not installed"
)
def test_counts_match_wireshark(capsys, trace):
    from importlib import resources

    sample = resources.files("connstats") / "data" / "sample.pcap"
    with resources.as_file(sample) as sample_path:
        for path in (str(sample_path), trace):
            code, out, _ = run(capsys, "read", path, "--format", "jsonl")
            assert code == 0
            ours = {
                (e["proto"], e["src"], e["dst"]): [e["txPkts"], e["txBytes"]]
                for m in jsonl(out)
                for e in m["virtualTraffic"]
            }
            assert ours == tshark_table(path)


@pytest.mark.skipif(sys.platform == "win32", reason="closes fd 0 in the child")
@pytest.mark.parametrize("stdin", ["closed", "devnull"])
def test_read_without_standard_input_reads_the_sample(stdin):
    # cron, CI runners and daemons start programs with /dev/null or no fd 0 at
    # all (sys.stdin is None then): the sample is read, and closing the
    # reader must not look for sys.stdin.buffer
    proc = subprocess.run(
        [sys.executable, "-m", "connstats", "read"],
        stdin=subprocess.DEVNULL if stdin == "devnull" else None,
        preexec_fn=(lambda: os.close(0)) if stdin == "closed" else None,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "sample.pcap (built-in sample)" in proc.stdout
