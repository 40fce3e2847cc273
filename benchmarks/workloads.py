"""Deterministic packet workloads shared by the benchmarks (and memory.py).

Every workload is a list of IP packets (no link header, as read from a TUN
device) plus the same packets cut into batches: lists for the
``*_virtual_batch`` entry points, and one joined buffer with ``array('I')``
offsets and lengths for the ``*_virtual_buffer`` ones.  One benchmark round
sends every packet of the workload once, so ns/packet = round time / len(packets).
"""

from __future__ import annotations

import array
import itertools
import random
import struct
from dataclasses import dataclass, field
from typing import Optional

#: Packets per batch call.  wireguard-go reads up to 128 packets per call and
#: recvmmsg-style readers 64..1024; 256 is also the core's internal chunk.
BATCH = 256

PACKET_SIZE = 789  # the Go reference's benchmark packet size

_V4 = struct.Struct("!BBHHHBBH4s4s")
_V6 = struct.Struct("!IHBB16s16s")
_UDP = struct.Struct("!HHHH")
_TCP = struct.Struct("!HHIIBBHHH")
_ICMP = struct.Struct("!BBHHH")


def _transport(proto: int, sport: int, dport: int, payload: int) -> bytes:
    if proto == 17:
        return _UDP.pack(sport, dport, 8 + payload, 0) + bytes(payload)
    if proto == 6:
        return _TCP.pack(sport, dport, 1, 0, 5 << 4, 0x18, 65535, 0, 0) + bytes(payload)
    if proto in (1, 58):  # echo request; ports are 0 for ICMP
        return _ICMP.pack(8 if proto == 1 else 128, 0, 0, 1, 1) + bytes(payload)
    raise ValueError(f"unsupported proto {proto}")


_HEADER = {17: 8, 6: 20, 1: 8, 58: 8}


def ipv4(src: int, dst: int, proto: int, sport: int, dport: int, size: int) -> bytes:
    """An IPv4 packet of exactly ``size`` bytes (addresses as 32-bit ints)."""
    payload = size - 20 - _HEADER[proto]
    body = _transport(proto, sport, dport, payload)
    head = _V4.pack(
        0x45,
        0,
        size,
        0,
        0x4000,
        64,
        proto,
        0,
        src.to_bytes(4, "big"),
        dst.to_bytes(4, "big"),
    )
    return head + body


def ipv6(src: int, dst: int, proto: int, sport: int, dport: int, size: int) -> bytes:
    """An IPv6 packet of exactly ``size`` bytes (addresses as 128-bit ints)."""
    payload = size - 40 - _HEADER[proto]
    body = _transport(proto, sport, dport, payload)
    head = _V6.pack(
        6 << 28, len(body), proto, 64, src.to_bytes(16, "big"), dst.to_bytes(16, "big")
    )
    return head + body


def udp4(src: int, dst: int, sport: int, dport: int, size: int = PACKET_SIZE) -> bytes:
    return ipv4(src, dst, 17, sport, dport, size)


CLIENT4 = 0x64400001  # 100.64.0.1
SERVER4 = 0x64400002  # 100.64.0.2
CLIENT6 = 0xFD7A115CA1E0AB124800000000000001
SERVER6 = 0xFD7A115CA1E0AB124800000000000002


@dataclass
class Workload:
    name: str
    title: str
    packets: list[bytes]
    connections: int
    batches: list[list[bytes]] = field(default_factory=list)
    buffers: list[tuple[bytes, array.array, array.array]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.batches = [
            self.packets[i : i + BATCH] for i in range(0, len(self.packets), BATCH)
        ]
        self.buffers = [joined(b) for b in self.batches]


def joined(packets: list[bytes]) -> tuple[bytes, array.array, array.array]:
    """One buffer holding ``packets`` back to back, with offsets and lengths."""
    lengths = array.array("I", map(len, packets))
    offsets = array.array("I", itertools.accumulate(lengths, initial=0))
    offsets.pop()
    return b"".join(packets), offsets, lengths


def same_connection(packet: bytes, count: int = 1000, copies: int = 16) -> list[bytes]:
    """``count`` packets of one connection: ``copies`` equal bytes objects in turn.

    A forwarder hands over a new buffer per packet; one object sent 1,000 times
    would also make the figures depend on where that one object happens to
    sit in memory (4 KiB aliasing with the interpreter's own stores moved the
    floor between 24 and 42 ns/packet from run to run).  16 copies are 12.6 KB:
    still hot in L1, like a packet just read from a TUN device.
    """
    pool = [bytes(bytearray(packet)) for _ in range(copies)]
    return [pool[i % copies] for i in range(count)]


def cycling4(
    count: int, size: int = PACKET_SIZE, client_base: int = 0x0A000000
) -> list[bytes]:
    """``count`` IPv4 UDP connections, one packet each, in order (a cycle).

    Client address and port vary (256 ports per client address) towards one
    server port, as many clients of one service look.  Built by writing the
    varying fields into copies of one packet (strided slice assignments):
    a million of them take about a second.
    """
    template = udp4(client_base, SERVER4, 1024, 443, size)
    buf = bytearray(template * count)
    src = [client_base + (i >> 8) for i in range(count)]
    for byte in range(4):
        shift = 24 - 8 * byte
        buf[12 + byte :: size] = bytes((a >> shift) & 0xFF for a in src)
    buf[20::size] = bytes(((1024 + (i & 0xFF)) >> 8) for i in range(count))
    buf[21::size] = bytes(((1024 + (i & 0xFF)) & 0xFF) for i in range(count))
    view = memoryview(buf)
    return [bytes(view[i * size : (i + 1) * size]) for i in range(count)]


def cycling6(count: int, size: int = PACKET_SIZE) -> list[bytes]:
    return [
        ipv6(CLIENT6 + (i >> 8), SERVER6, 17, 1024 + (i & 0xFF), 443, size)
        for i in range(count)
    ]


def mixed(
    packets: int = 100_000,
    flows: int = 10_000,
    seed: int = 20240601,
    exponent: float = 1.1,
) -> list[bytes]:
    """A mixed workload: ``flows`` flows with Zipf-like packet counts.

    80% of flows IPv4, 20% IPv6; 70% TCP, 25% UDP, 5% ICMP; packet sizes mix
    bare ACK-sized, small and MTU-sized packets; flows interleave in random
    order (elephants recur often, mice once or twice).  Every flow sends at
    least one packet, so the window holds ``flows`` connections.
    """
    rng = random.Random(seed)
    shapes = []
    for _ in range(flows):
        r = rng.random()
        proto = 6 if r < 0.70 else 17 if r < 0.95 else 1
        v6 = rng.random() >= 0.80
        sport = 1024 + rng.randrange(64000)
        dport = rng.choice((443, 80, 53, 22, 8080, 3478, 41641))
        if v6:
            shapes.append(
                (
                    True,
                    58 if proto == 1 else proto,
                    CLIENT6 + rng.randrange(1 << 24),
                    SERVER6 + rng.randrange(64),
                    sport,
                    dport,
                )
            )
        else:
            shapes.append(
                (
                    False,
                    proto,
                    0x0A000000 + rng.randrange(1 << 20),
                    0xAC100000 + rng.randrange(256),
                    sport,
                    dport,
                )
            )
    weights = list(
        itertools.accumulate(1.0 / (k**exponent) for k in range(1, flows + 1))
    )
    picks = list(range(flows)) + rng.choices(
        range(flows), cum_weights=weights, k=max(packets - flows, 0)
    )
    rng.shuffle(picks)
    out = []
    for index in picks[:packets]:
        v6, proto, src, dst, sport, dport = shapes[index]
        r = rng.random()
        minimum = (40 if v6 else 20) + _HEADER[proto]
        if r < 0.40:
            size = minimum + (12 if proto == 6 else 0)  # ACK with options / empty
        elif r < 0.85:
            size = minimum + rng.randrange(1, 400)
        else:
            size = rng.randrange(1200, 1420)
        make = ipv6 if v6 else ipv4
        out.append(
            make(
                src,
                dst,
                proto,
                sport if proto in (6, 17) else 0,
                dport if proto in (6, 17) else 0,
                size,
            )
        )
    return out


def build(name: str) -> Workload:
    """The named workload (see WORKLOADS)."""
    if name == "ipv4-1conn":
        return Workload(
            name,
            "IPv4 UDP, 1 connection",
            same_connection(udp4(CLIENT4, SERVER4, 51000, 443)),
            1,
        )
    if name == "ipv4-1k":
        return Workload(
            name, "IPv4 UDP, 1,000 connections cycling", cycling4(1000), 1000
        )
    if name == "ipv4-100k":
        return Workload(
            name, "IPv4 UDP, 100,000 connections cycling", cycling4(100_000), 100_000
        )
    if name == "ipv4-100k-64B":
        # same connections, 64-byte packets: 10 MB of packets instead of 79 MB,
        # to show how much of the 100k figure is cold packet memory
        return Workload(
            name,
            "IPv4 UDP, 100,000 connections cycling, 64-byte packets",
            cycling4(100_000, size=64),
            100_000,
        )
    if name == "ipv4-1M":
        # issue 24: the table at a million connections (790 MB of packets)
        return Workload(
            name,
            "IPv4 UDP, 1,000,000 connections cycling",
            cycling4(1_000_000),
            1_000_000,
        )
    if name == "ipv6-1k":
        return Workload(
            name, "IPv6 UDP, 1,000 connections cycling", cycling6(1000), 1000
        )
    if name == "mixed-10k":
        return Workload(
            name,
            "mixed: 10,000 flows, Zipf, 80% v4, 70/25/5 TCP/UDP/ICMP",
            mixed(),
            10_000,
        )
    raise KeyError(name)


#: Too big for the short mode and the correctness checks over WORKLOADS.
SCALE_WORKLOADS = ("ipv4-1M",)

WORKLOADS = (
    "ipv4-1conn",
    "ipv4-1k",
    "ipv4-100k",
    "ipv4-100k-64B",
    "ipv6-1k",
    "mixed-10k",
)


def window_packets(kind: str, count: int = 100_000, servers: int = 4) -> list[bytes]:
    """Packets that open ``count`` connections, for materialization benchmarks.

    ``realistic``: 1,000 client addresses x ``count // 1000`` source ports
    towards ``servers`` server addresses on port 443 (about 1,000 distinct
    addresses in the window).  ``adversarial``: every connection has its own
    source and destination address (2 x ``count`` distinct addresses).
    Packets are minimal (28 bytes): only the keys matter here.
    """
    out = []
    if kind == "realistic":
        ports = max(count // 1000, 1)
        for i in range(count):
            client, port = divmod(i, ports)
            out.append(
                udp4(
                    0x0A000000 + client, 0xAC100000 + i % servers, 1024 + port, 443, 28
                )
            )
    elif kind == "adversarial":
        for i in range(count):
            out.append(
                udp4(0x0A000000 + i, 0x40000000 + i, 1024 + (i & 0x3FFF), 443, 28)
            )
    else:
        raise KeyError(kind)
    return out


def fill(stats: object, packets: list[bytes], buffers: Optional[list] = None) -> None:
    """Count ``packets`` once on ``stats`` through the buffer entry point."""
    update = stats.update_tx_virtual_buffer  # type: ignore[attr-defined]
    for buf, offsets, lengths in buffers if buffers is not None else [joined(packets)]:
        update(buf, offsets, lengths)
