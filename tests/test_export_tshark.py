"""Wireshark's IPFIX dissector (tshark, ``-d udp.port==PORT,cflow``) reads every
exported message with no malformed-packet or error expert info."""

from __future__ import annotations

import ipaddress
import random
import struct
import subprocess
from datetime import UTC, datetime, timedelta

from ipfix_tools import AddrPort, Connection, Counts, expected, need, random_window
from test_export_ipfix import UDPReceiver

from connstats.export import IPFIXExporter

PORT = 4739


def _pcap(datagrams: list[bytes], path) -> None:
    """A raw-IP (linktype 101) pcap of IPv4/UDP packets carrying ``datagrams``."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
    for i, payload in enumerate(datagrams):
        udp = struct.pack(">HHHH", 40000, PORT, 8 + len(payload), 0) + payload
        ip = struct.pack(
            ">BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(udp),
            i & 0xFFFF,
            0,
            64,
            17,
            0,
            bytes([127, 0, 0, 1]),
            bytes([127, 0, 0, 1]),
        )
        csum = sum(struct.unpack(">10H", ip))
        csum = (csum & 0xFFFF) + (csum >> 16)
        csum = (csum & 0xFFFF) + (csum >> 16)
        ip = ip[:10] + struct.pack(">H", ~csum & 0xFFFF) + ip[12:]
        packet = ip + udp
        out += struct.pack(
            "<IIII", 1796000000 + i // 1000, i % 1000, len(packet), len(packet)
        )
        out += packet
    path.write_bytes(bytes(out))


def test_tshark_decodes_every_message(tmp_path):
    need("tshark")
    rng = random.Random(21)
    t0 = datetime(2026, 11, 28, 12, tzinfo=UTC)
    windows = [random_window(rng, 5000, start=t0)]
    windows += [
        random_window(rng, 40, start=t0 + timedelta(seconds=s)) for s in (10, 20)
    ]
    # the zero connection and a mixed-family physical pair
    a = ipaddress.ip_address
    windows.append(
        (
            t0,
            t0 + timedelta(seconds=1),
            {Connection(): Counts(2, 80, 0, 0)},
            {
                Connection(
                    0, AddrPort(a("192.0.2.1"), 0), AddrPort(a("2001:db8::1"), 41641)
                ): Counts(1, 2, 3, 4)
            },
        )
    )
    receiver = UDPReceiver()
    try:
        with IPFIXExporter(
            (receiver.host, receiver.port), template_refresh_messages=100
        ) as exporter:
            for w in windows:
                exporter(*w)
        datagrams = receiver.datagrams()
    finally:
        receiver.close()
    pcap = tmp_path / "ipfix.pcap"
    _pcap(datagrams, pcap)
    base = ["tshark", "-n", "-r", str(pcap), "-d", f"udp.port=={PORT},cflow"]
    verbose = subprocess.run(
        base + ["-V"], capture_output=True, text=True, check=True
    ).stdout
    assert "Malformed" not in verbose
    assert "[Expert Info (Error" not in verbose and "[Expert Info (Warn" not in verbose
    flagged = subprocess.run(
        base + ["-Y", "_ws.malformed || _ws.expert.severity >= warning"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert flagged == ""
    # every message dissected as IPFIX, with every record counted
    fields = subprocess.run(
        base
        + [
            "-T",
            "fields",
            "-e",
            "cflow.version",
            "-e",
            "cflow.len",
            "-e",
            "cflow.packets",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len(fields) == len(datagrams)
    assert all(line.split("\t")[0] == "10" for line in fields)
    packets = [int(p) for line in fields for p in line.split("\t")[2].split(",") if p]
    want = expected(windows, (1, 2))
    assert len(packets) == sum(1 for k in want if k[-1] == "p")
    assert sum(packets) == sum(v for k, v in want.items() if k[-1] == "p")
    # the check can fail: a data set length below its own header is flagged
    damaged = bytearray(datagrams[1])
    damaged[18:20] = (2).to_bytes(2, "big")
    bad = tmp_path / "damaged.pcap"
    _pcap([datagrams[0], bytes(damaged)], bad)
    flagged = subprocess.run(
        [
            "tshark",
            "-n",
            "-r",
            str(bad),
            "-d",
            f"udp.port=={PORT},cflow",
            "-Y",
            "_ws.malformed || _ws.expert.severity >= warning",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert flagged != ""
    print(f"tshark: {len(datagrams)} messages, {len(packets)} records, none malformed")
