"""Real captures cut by the snap length, merged out of order, or with an
unsupported interface; tshark is the oracle.

``tests/data/lo-s96.pcap`` is a loopback capture of the traffic that
``tests/data/make_truncated_traffic.py`` makes (TCP with 300- to 2,200-byte
writes, IPv6 UDP up to 1,400 bytes), cut with ``editcap -s 96``; the pcapng
twin is ``editcap -F pcapng -s 96``; ``lo-s96-reordered.pcap`` is its second
half then its first (``mergecap -a``); ``lo-s96-user0.pcapng`` merges it with
two USER0 (link type 147) interfaces made by ``text2pcap -l 147``.
``EXPECTED`` was computed by tshark from the uncut capture (IP total length,
or 40 + payload length, per packet); where tshark is installed the test also
asks it about the cut files themselves.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import captures as cap

from connstats.capture import open_capture
from connstats.capture.windows import Replayer

DATA = Path(__file__).parent / "data"

# (proto, src, dst) -> (packets, bytes), all tx: tshark on the uncut capture.
EXPECTED = {
    (6, "127.0.0.1:48634", "127.0.0.1:47311"): (25, 25738),
    (6, "127.0.0.1:47311", "127.0.0.1:48634"): (23, 50064),
    (17, "[::1]:35804", "[::1]:47312"): (10, 7730),
}


@pytest.fixture(params=cap.SCANNERS)
def scanner(request):
    return cap.scanner_class(request.param)


def replay(path: Path, scanner):
    windows: list = []
    replayer = Replayer(windows.append)
    with open_capture(str(path), scanner_class=scanner) as reader:
        replayer.feed(reader)
    replayer.finish()
    assert len(windows) == 1
    table = {k: (v[0], v[1]) for k, v in cap.as_table(windows[0].virtual).items()}
    return windows[0], table, reader


def tshark_table(path: Path) -> dict:
    fields = (
        "ip.proto ipv6.nxt ip.src ipv6.src ip.dst ipv6.dst tcp.srcport udp.srcport "
    )
    fields += "tcp.dstport udp.dstport ip.len ipv6.plen"
    cmd = ["tshark", "-r", str(path), "-T", "fields", "-E", "separator=,"]
    for field in fields.split():
        cmd += ["-e", field]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    counts: Counter = Counter()
    sizes: Counter = Counter()
    for line in out.splitlines():
        p4, p6, s4, s6, d4, d6, ts, us, td, ud, len4, plen6 = line.split(",")
        if not (p4 or p6):
            continue
        src = f"{s4}:{ts or us or 0}" if s4 else f"[{s6}]:{ts or us or 0}"
        dst = f"{d4}:{td or ud or 0}" if d4 else f"[{d6}]:{td or ud or 0}"
        key = (int(p4 or p6), src, dst)
        counts[key] += 1
        sizes[key] += int(len4) if len4 else 40 + int(plen6)
    return {k: (counts[k], sizes[k]) for k in counts}


@pytest.mark.parametrize("name", ["lo-s96.pcap", "lo-s96.pcapng"])
def test_snaplen_cut_capture_counts_like_tshark(scanner, name):
    window, table, reader = replay(DATA / name, scanner)
    assert table == EXPECTED
    # 8 packets (handshake, ACKs, FINs) fit in 96 bytes; the other 50 were cut.
    assert (reader.packets, reader.truncated) == (58, 50)
    if shutil.which("tshark"):
        assert tshark_table(DATA / name) == EXPECTED


def test_out_of_order_capture_spans_earliest_to_latest(scanner):
    window, table, _ = replay(DATA / "lo-s96-reordered.pcap", scanner)
    ordered, _, _ = replay(DATA / "lo-s96.pcap", scanner)
    assert table == EXPECTED
    assert (window.start_ns, window.end_ns) == (ordered.start_ns, ordered.end_ns)
    assert window.end_ns - window.start_ns > 200_000_000


def test_unsupported_interface_does_not_end_the_file(scanner):
    window, table, reader = replay(DATA / "lo-s96-user0.pcapng", scanner)
    assert table == EXPECTED
    assert (reader.unsupported, reader.unsupported_linktypes) == (2, [147])


def test_cli_says_what_was_cut_and_skipped(tmp_path):
    cmd = [sys.executable, "-m", "connstats", "read", str(DATA / "lo-s96-user0.pcapng")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (
        "58 IP packets, 0 non-IP frames skipped, 50 cut by the snap length"
        in done.stdout
    )
    assert done.stderr.count("unsupported link type 147 (USER0)") == 1
    assert "skipped 2 packets" in done.stderr


@pytest.mark.skipif(not shutil.which("tshark"), reason="tshark is not installed")
@pytest.mark.parametrize(
    "linktype", [8, 9, 50, 51, 104, 105, 107, 109, 117, 127, 226, 239]
)
def test_link_types_decode_like_tshark(tmp_path, linktype):
    # The frames the unit tests build by hand for each link type, read back
    # by tshark: its dissectors must find the same IP packets in them.
    packets = [
        cap.tcp4("192.0.2.1", 1234, "192.0.2.2", 80, b"a" * 10),
        cap.udp6("2001:db8::1", 5353, "2001:db8::2", 53, b"b" * 12),
        cap.tcp6("2001:db8::2", 443, "2001:db8::1", 5000, b"c" * 33),
    ]
    wrap = cap.LINK_WRAPPERS[linktype]
    path = tmp_path / "x.pcap"
    path.write_bytes(
        cap.pcap([(10**18 + i, wrap(p)) for i, p in enumerate(packets)], linktype)
    )
    _, table, _ = replay(path, cap.scanner_class("py"))
    if linktype != 8:
        assert tshark_table(path) == table
        return
    # tshark does not dissect the BSD/OS SLIP header; tcpdump does.
    if not shutil.which("tcpdump"):
        pytest.skip("tcpdump is not installed (the SLIP oracle)")
    out = subprocess.run(
        ["tcpdump", "-n", "-r", str(path)], capture_output=True, text=True, check=True
    ).stdout
    theirs = set()
    for line in out.splitlines():  # "TIME IP 192.0.2.1.1234 > 192.0.2.2.80: ..."
        src, _, dst = line.split()[2:5]
        theirs.add((*src.rsplit(".", 1), *dst.rstrip(":").rsplit(".", 1)))
    ours = set()
    for _, src, dst in table:  # "192.0.2.1:1234", "[2001:db8::1]:5353"
        src_addr, src_port = src.rsplit(":", 1)
        dst_addr, dst_port = dst.rsplit(":", 1)
        ours.add((src_addr.strip("[]"), src_port, dst_addr.strip("[]"), dst_port))
    assert theirs == ours and len(ours) == len(packets)
