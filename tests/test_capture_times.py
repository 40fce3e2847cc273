"""Exact first/last packet times per connection in the capture replay
(``connstats read --times``, Parquet), against Wireshark's frame times and a
plain-Python reading of the same records."""

from __future__ import annotations

import io
import json
import random
import shutil
import subprocess
from decimal import Decimal
from importlib import resources
from pathlib import Path

import captures as cap
import pytest

from connstats.capture import CaptureReader
from connstats.capture.windows import Replayer
from connstats.cli import main

DATA = Path(__file__).parent / "data"
S = 1_000_000_000
T0 = 1_700_000_000 * S


def replay_times(data: bytes, module, *, scanner=None, **kw):
    """{(proto, "src", "dst"): (first_ns, last_ns, packets)} over every window."""
    out: dict = {}

    def take(window):
        for conn, c in window.virtual.items():
            key = (conn.proto, str(conn.src), str(conn.dst))
            first, last, n = out.get(key, (c.first_ns, c.last_ns, 0))
            out[key] = (
                min(first, c.first_ns),
                max(last, c.last_ns),
                n + c.tx_packets + c.rx_packets,
            )

    replayer = Replayer(take, core_module=module, track_times=True, **kw)
    reader = CaptureReader(io.BytesIO(data), "test", scanner_class=scanner)
    replayer.feed(reader)
    replayer.finish()
    return out


def tshark_times(path: Path) -> dict:
    """Wireshark's per-direction first/last frame time (ns) of IP packets."""
    fields = ["frame.time_epoch", "ip.proto", "ipv6.nxt", "ip.src", "ipv6.src", "ip.dst",
              "ipv6.dst", "tcp.srcport", "udp.srcport", "tcp.dstport", "udp.dstport"]  # fmt: skip
    argv = [
        "tshark",
        "-r",
        str(path),
        "-T",
        "fields",
        "-E",
        "separator=,",
        "-E",
        "occurrence=f",
    ]
    for f in fields:
        argv += ["-e", f]
    lines = subprocess.run(
        argv, capture_output=True, text=True, check=True, timeout=120
    ).stdout
    out: dict = {}
    for line in lines.splitlines():
        f = line.split(",")
        if not (f[1] or f[2]):
            continue
        v6 = not f[1]
        proto = int(f[2] if v6 else f[1])
        src, dst = (f[4], f[6]) if v6 else (f[3], f[5])
        sport = int(f[7] or f[8] or 0) if proto in (6, 17) else 0
        dport = int(f[9] or f[10] or 0) if proto in (6, 17) else 0
        if v6:
            src, dst = f"[{src}]", f"[{dst}]"
        t = int(Decimal(f[0]) * S)
        key = (proto, f"{src}:{sport}", f"{dst}:{dport}")
        first, last, n = out.get(key, (t, t, 0))
        out[key] = (min(first, t), max(last, t), n + 1)
    return out


def _captures():
    sample = resources.files("connstats") / "data" / "sample.pcap"
    with resources.as_file(sample) as path:
        yield Path(path)
    for name in (
        "lo-s96.pcap",
        "lo-s96.pcapng",
        "lo-s96-reordered.pcap",
        "lo-s96-user0.pcapng",
    ):
        yield DATA / name


@pytest.mark.skipif(
    shutil.which("tshark") is None, reason="tshark (Wireshark) is not installed"
)
@pytest.mark.parametrize("scanner", cap.SCANNERS)
def test_first_last_are_wiresharks_frame_times(impl, scanner):
    for path in _captures():
        ours = replay_times(
            path.read_bytes(), impl.module, scanner=cap.scanner_class(scanner)
        )
        assert ours == tshark_times(path), path


def random_capture(seed: int, *, shuffle: bool) -> tuple[bytes, dict]:
    """A nanosecond pcap of a few flows, and the (first, last, packets) of each."""
    rng = random.Random(seed)
    flows = [
        cap.udp4("10.0.0.1", 1000 + i, "10.0.0.2", 53, b"q")
        if i % 3
        else cap.tcp6("2001:db8::1", 40000 + i, "2001:db8::2", 443)
        for i in range(12)
    ]
    records = []
    t = T0
    for _ in range(3000):
        t += rng.randrange(0, 3 * S // 1000)  # ties too
        records.append((t, rng.choice(flows)))
    if shuffle:  # a merged capture: time goes backwards now and then
        for i in range(0, len(records) - 1, 7):
            records[i], records[i + 1] = records[i + 1], records[i]
    want: dict = {}
    for ts, packet in records:
        proto, src, dst = cap_decode(packet)
        key = (proto, src, dst)
        first, last, n = want.get(key, (ts, ts, 0))
        want[key] = (min(first, ts), max(last, ts), n + 1)
    return cap.pcap(records, 101, nanosecond=True), want


def cap_decode(packet: bytes):
    from connstats import _fastparse_py

    conn = _fastparse_py.decode(packet)
    return conn.proto, str(conn.src), str(conn.dst)


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize(
    "window", [{}, {"max_period_ns": 5 * S // 1000}, {"max_conns": 5}]
)
def test_first_last_over_windows_and_disorder(impl, shuffle, window):
    data, want = random_capture(7, shuffle=shuffle)
    assert replay_times(data, impl.module, **window) == want


def test_counts_are_the_same_with_and_without_times(impl):
    data, _ = random_capture(3, shuffle=True)
    plain, timed = [], []
    for out, track in ((plain, False), (timed, True)):
        replayer = Replayer(
            out.append, core_module=impl.module, track_times=track, max_conns=7
        )
        replayer.feed(CaptureReader(io.BytesIO(data), "t"))
        replayer.finish()
    assert [(w.start_ns, w.end_ns, w.virtual) for w in plain] == [
        (w.start_ns, w.end_ns, w.virtual) for w in timed
    ]
    assert all(type(c).__name__ == "Counts" for w in plain for c in w.virtual.values())
    assert all(
        type(c).__name__ == "TimedCounts" for w in timed for c in w.virtual.values()
    )


# -- the command line -------------------------------------------------------------------


def _ns(text: str) -> int:
    from datetime import datetime, timezone

    whole, _, frac = text.rstrip("Z").partition(".")
    moment = datetime.fromisoformat(whole).replace(tzinfo=timezone.utc)
    return int(moment.timestamp()) * S + int((frac or "0").ljust(9, "0"))


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("extra", [[], ["--max-conns", "2"], ["--max-period", "0.002"]])
def test_read_times_are_exact(capsys, tmp_path, extra):
    data, want = random_capture(11, shuffle=False)
    path = tmp_path / "t.pcap"
    path.write_bytes(data)
    code, out, err = run(
        capsys, "read", str(path), "--times", "--format", "jsonl", *extra
    )
    assert code == 0, err
    got: dict = {}
    for line in out.splitlines():
        for r in json.loads(line)["virtualTraffic"]:
            key = (r["proto"], r["src"], r["dst"])
            first, last = _ns(r["firstSeen"]), _ns(r["lastSeen"])
            f0, l0, n0 = got.get(key, (first, last, 0))
            got[key] = (min(f0, first), max(l0, last), n0 + r.get("txPkts", 0))
            if first == last:
                assert "pktsPerSec" not in r
            else:
                assert r["pktsPerSec"] == pytest.approx(
                    r["txPkts"] / ((last - first) / S), rel=1e-3
                )
    assert got == want


def test_read_sorts_by_exact_rates(capsys, tmp_path):
    # one fast flow (10 packets in 1 ms) and one slow one (10 packets over 9 s):
    # 1-second buckets made them look alike
    fast = [
        (T0 + i * S // 10_000, cap.udp4("10.0.0.1", 1, "10.0.0.2", 2, b"x"))
        for i in range(10)
    ]
    slow = [
        (T0 + i * S, cap.udp4("10.0.0.3", 3, "10.0.0.4", 4, b"x")) for i in range(10)
    ]
    path = tmp_path / "r.pcap"
    path.write_bytes(cap.pcap(sorted(fast + slow), 101, nanosecond=True))
    for column in ("pps", "bps"):
        code, out, _ = run(
            capsys, "read", str(path), "--sort", column, "--format", "jsonl"
        )
        rows = json.loads(out)["virtualTraffic"]
        assert [r["src"] for r in rows] == ["10.0.0.1:1", "10.0.0.3:3"]
        assert rows[0]["pktsPerSec"] == pytest.approx(10 / 0.0009, rel=1e-6)
    code, out, _ = run(
        capsys, "read", str(path), "--sort", "duration", "--format", "jsonl"
    )
    rows = json.loads(out)["virtualTraffic"]
    assert [r["durationSec"] for r in rows] == [9.0, 0.0009]
