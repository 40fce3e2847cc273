"""``connstats read --bpf`` on the captures libpcap compiles differently for files.

A BPF expression is compiled against a savefile of the capture's link type
and byte order, as ``tcpdump -r`` compiles it: on BSD loopback (NULL, LOOP)
and ENC captures ``ip6`` must match every BSD and macOS value of AF_INET6
(24, 28, 30), and the NULL/ENC address family is in the byte order of the
machine that wrote the file.  Compiled for a live capture (``pcap_open_dead``)
the program rejected every such packet.

Two captures from tcpdump's own test corpus (tests/data/README.md) and the
variants derived from them here (the other byte order, LOOP, ENC, pcapng):
for each, the packets ``connstats read --bpf EXPR`` counts are the packets
``tcpdump -r FILE EXPR`` prints.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from connstats.capture import _libpcap

pytestmark = [
    pytest.mark.skipif(
        shutil.which("tcpdump") is None, reason="tcpdump is not installed"
    ),
    pytest.mark.skipif(
        not _libpcap.available(),
        reason="libpcap is not installed (apt-get install libpcap0.8)",
    ),
]

DATA = Path(__file__).parent / "data"
SOURCES = {
    "freebsd-icmpv6": DATA / "tcpdump-null-freebsd-icmpv6.pcap",  # AF_INET6 = 28
    "macos-quic": DATA / "tcpdump-null-macos-quic.pcap",  # AF_INET6 = 30
}
EXPRESSIONS = ["ip6", "icmp6", "ip6 and udp port 443", "not ip6"]


def records(path: Path) -> list[tuple[int, int, bytes, int]]:
    """(sec, usec, frame, wire length) of a little-endian pcap file."""
    data = path.read_bytes()
    assert data[:4] == b"\xd4\xc3\xb2\xa1"
    assert struct.unpack_from("<I", data, 20)[0] == 0  # LINKTYPE_NULL
    out, pos = [], 24
    while pos < len(data):
        sec, usec, caplen, wire = struct.unpack_from("<IIII", data, pos)
        out.append((sec, usec, data[pos + 16 : pos + 16 + caplen], wire))
        pos += 16 + caplen
    return out


def _family(frame: bytes) -> int:
    return struct.unpack_from("<I", frame)[0]  # little-endian NULL header


def as_null(order: str) -> Callable[[bytes], bytes]:
    # the address family in the byte order of the machine that wrote the file
    return lambda f: struct.pack(order + "I", _family(f)) + f[4:]


def as_loop(order: str) -> Callable[[bytes], bytes]:
    return lambda f: struct.pack(">I", _family(f)) + f[4:]  # always network order


def as_enc(order: str) -> Callable[[bytes], bytes]:
    # struct enchdr: af (host order), spi (network order), flags (host order)
    return lambda f: (
        struct.pack(order + "I", _family(f))
        + struct.pack(">I", 0x1000)
        + bytes(4)
        + f[4:]
    )


VARIANTS = {
    "null": (0, as_null),
    "loop": (108, as_loop),
    "enc": (109, as_enc),
}


def write_pcap(path: Path, recs, linktype: int, order: str, wrap) -> None:
    out = [struct.pack(order + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)]
    for sec, usec, frame, wire in recs:
        wrapped = wrap(frame)
        wire += len(wrapped) - len(frame)  # the ENC header is longer
        out.append(struct.pack(order + "IIII", sec, usec, len(wrapped), wire))
        out.append(wrapped)
    path.write_bytes(b"".join(out))


def write_pcapng(path: Path, recs, linktype: int, order: str, wrap) -> None:
    def block(btype: int, body: bytes) -> bytes:
        body += bytes(-len(body) % 4)
        n = 12 + len(body)
        return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)

    out = [block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))]
    out.append(block(1, struct.pack(order + "HHI", linktype, 0, 65535)))
    for sec, usec, frame, _wire in recs:
        frame = wrap(frame)
        ts = sec * 1_000_000 + usec
        out.append(
            block(
                6,
                struct.pack(
                    order + "IIIII",
                    0,
                    ts >> 32,
                    ts & 0xFFFFFFFF,
                    len(frame),
                    len(frame),
                )
                + frame,
            )  # fmt: skip
        )
    path.write_bytes(b"".join(out))


def tcpdump_count(path: Path, expr: str) -> int:
    run = subprocess.run(["tcpdump", "-nr", str(path), expr], capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stderr
    return len(run.stdout.splitlines())


def connstats_count(path: Path, expr: str) -> int:
    """IP packets `connstats read --bpf EXPR` counts (its reader, in this process)."""
    from connstats.capture import Stop
    from connstats.cli.read import open_reader

    with open_reader(str(path), path.name, bpf=expr) as reader:
        while reader.read().stop is not Stop.EOF:
            pass
        return reader.packets


def command_count(path: Path, expr: str) -> int:
    """The same, from the command's CSV."""
    run = subprocess.run(
        [sys.executable, "-m", "connstats", "read", str(path), "--bpf", expr,
         "--format", "csv"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    total = 0
    for line in run.stdout.splitlines()[1:]:
        fields = line.split(",")
        total += int(fields[10]) + int(fields[12])
    return total


@pytest.mark.parametrize("source", sorted(SOURCES))
@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("order", ["<", ">"], ids=["le", "be"])
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_bpf_counts_what_tcpdump_prints(tmp_path, source, variant, order, fmt):
    recs = records(SOURCES[source])
    linktype, wrap = VARIANTS[variant]
    path = tmp_path / f"{source}-{variant}.{fmt}"
    (write_pcap if fmt == "pcap" else write_pcapng)(
        path, recs, linktype, order, wrap(order)
    )
    # without a filter both tools see every packet as IPv6
    assert tcpdump_count(path, "") == len(recs)
    for expr in EXPRESSIONS:
        want = tcpdump_count(path, expr)
        assert connstats_count(path, expr) == want, (expr, want)
    # and ip6 is not vacuous: every packet of these captures is IPv6
    assert tcpdump_count(path, "ip6") == len(recs)


def test_the_files_as_tcpdump_ships_them():
    for name, path in SOURCES.items():
        n = len(records(path))
        assert command_count(path, "ip6") == tcpdump_count(path, "ip6") == n, name


def test_byte_order_is_checked():
    with pytest.raises(ValueError, match="byte_order"):
        _libpcap.compile_filter("ip6", 0, byte_order="big")
