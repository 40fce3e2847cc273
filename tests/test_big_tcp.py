"""IPv4 packets with a total length of 0 (TSO, BIG TCP) in ``connstats read``.

Segmentation offload and BIG TCP (IPv4 GSO packets over 64 KiB) reach a
capture with the total length field still 0: the length is the captured one.
tshark keys such a packet by its protocol and ports and takes its length
from the capture; ``connstats read`` does the same (the oracle is tshark's own
dissection of the same file).  The library's entry points keep the reference
rule, under which a total length of 0 leaves no transport header: proto 0,
ports 0 (docs/contract.md §4).
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import captures as cap
import pytest

T0 = 1_700_000_000 * 10**9


def big_tcp() -> bytes:
    return cap.ipv4("192.0.2.1", "198.51.100.7", 6, cap.tcp(40000, 443, b"b" * 70_000),
                    total=0)  # fmt: skip


def tso_udp() -> bytes:
    return cap.ipv4("192.0.2.1", "198.51.100.7", 17, cap.udp(5000, 53, b"u" * 300),
                    total=0)  # fmt: skip


def capture(linktype: int = 1) -> bytes:
    wrap = cap.LINK_WRAPPERS[linktype]
    packets = [
        big_tcp(),
        tso_udp(),
        cap.tcp4("192.0.2.1", 40001, "198.51.100.7", 443, b"n"),
    ]
    return cap.pcap([(T0 + i, wrap(p)) for i, p in enumerate(packets)], linktype)


WANT = {
    (6, "192.0.2.1:40000", "198.51.100.7:443"): (1, 70_040, 0, 0),
    (17, "192.0.2.1:5000", "198.51.100.7:53"): (1, 328, 0, 0),
    (6, "192.0.2.1:40001", "198.51.100.7:443"): (1, 41, 0, 0),
}


@pytest.fixture(params=cap.SCANNERS)
def scanner(request):
    return cap.scanner_class(request.param)


@pytest.mark.parametrize("linktype", [1, 101])
def test_read_keys_them_by_protocol_and_ports(scanner, linktype):
    windows, reader = cap.read_windows(capture(linktype), scanner_class=scanner)
    total: dict = {}
    for w in windows:
        total.update(cap.as_table(w.virtual))
    assert total == WANT
    assert reader.zero_total == 2


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_the_command_agrees_with_tshark(tmp_path):
    path = tmp_path / "big-tcp.pcap"
    path.write_bytes(capture())
    fields = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", "-e", "ip.proto", "-e", "ip.src",
         "-e", "tcp.srcport", "-e", "udp.srcport", "-e", "ip.dst", "-e", "tcp.dstport",
         "-e", "udp.dstport", "-e", "ip.len"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    theirs = {}
    for line in fields.splitlines():
        proto, src, tsport, usport, dst, tdport, udport, length = line.split("\t")
        sport, dport = tsport or usport, tdport or udport
        theirs[(int(proto), f"{src}:{sport}", f"{dst}:{dport}")] = (
            1,
            int(length),
            0,
            0,
        )
    assert theirs == WANT  # tshark says what WANT says
    run = subprocess.run(
        [sys.executable, "-m", "connstats", "read", str(path), "--format", "csv"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    ours = {}
    for line in run.stdout.splitlines()[1:]:
        f = line.split(",")
        ours[(int(f[4]), f"{f[6]}:{f[7]}", f"{f[8]}:{f[9]}")] = tuple(
            map(int, f[10:14])
        )
    assert ours == theirs


def test_the_library_keeps_the_reference_rule(impl):
    stats = impl.Statistics()
    stats.update_tx_virtual(big_tcp())
    stats.update_tx_virtual(tso_udp())
    virtual, _ = stats.extract()
    assert cap.as_table(virtual) == {
        (0, "192.0.2.1:0", "198.51.100.7:0"): (2, 70_040 + 328, 0, 0)
    }
