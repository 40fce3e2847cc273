"""Generate the benchmark capture: deterministic, realistic enough, big.

Defaults: 1,000,000 Ethernet frames in a classic pcap, 10,000 flows whose
packet counts follow a Zipf-like law (a few elephants, many mice), 70% TCP,
25% UDP, 5% ICMP, 30% of flows over IPv6, packets in both directions of each
flow, payload sizes mixing empty ACKs, small and MTU-sized packets, and
timestamps advancing by exponential gaps (about 10 s of traffic).  The same
seed always gives the same bytes, so runs on different machines compare.

    python benchmarks/gen_pcap.py /tmp/bench.pcap            # 1M packets
    python benchmarks/gen_pcap.py --packets 100000 small.pcap
"""

from __future__ import annotations

import argparse
import ipaddress
import itertools
import random
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PACKETS = 1_000_000
DEFAULT_FLOWS = 10_000
DEFAULT_SEED = 20240601
ZIPF_EXPONENT = 1.1
START_SECONDS = 1_700_000_000
MEAN_GAP_NS = 10_000

_ETH_SRC = bytes.fromhex("020000000001")
_ETH_DST = bytes.fromhex("020000000002")
_PAYLOAD = bytes(range(256)) * 6  # 1536 bytes to slice payloads from


@dataclass
class _Flow:
    proto: int
    v6: bool
    # link + IP header pieces for each direction: (before length, after length)
    heads: tuple[tuple[bytes, bytes], tuple[bytes, bytes]]
    l4: tuple[bytes, bytes]  # transport header per direction (fixed length fields)


def _ip_header_parts(
    v6: bool, proto: int, src: bytes, dst: bytes
) -> tuple[bytes, bytes]:
    """The IP header split around its length field, behind an Ethernet header."""
    if v6:
        eth = _ETH_DST + _ETH_SRC + b"\x86\xdd"
        return eth + struct.pack(">I", 6 << 28), struct.pack(
            ">BB", proto, 64
        ) + src + dst
    eth = _ETH_DST + _ETH_SRC + b"\x08\x00"
    return eth + b"\x45\x00", struct.pack(">HHBBH", 0, 0x4000, 64, proto, 0) + src + dst


def _make_flows(rng: random.Random, count: int) -> list[_Flow]:
    flows = []
    for i in range(count):
        r = rng.random()
        proto = 6 if r < 0.70 else 17 if r < 0.95 else 1
        v6 = rng.random() < 0.30
        if v6:
            client = ipaddress.IPv6Address(
                0xFD000000000000000000000000000000 + rng.randrange(1 << 32)
            ).packed
            server = ipaddress.IPv6Address(
                0xFD000000000000010000000000000000 + rng.randrange(1 << 16)
            ).packed
            if proto == 1:
                proto = 58
        else:
            client = ipaddress.IPv4Address(0x0A000000 + rng.randrange(1 << 16)).packed
            server = ipaddress.IPv4Address(0xAC100000 + rng.randrange(1 << 12)).packed
        sport = 1024 + rng.randrange(64000)
        dport = rng.choice((80, 443, 53, 22, 8080, 5201, 3478, 41641))
        heads = (
            _ip_header_parts(v6, proto, client, server),
            _ip_header_parts(v6, proto, server, client),
        )
        if proto == 6:
            l4 = tuple(
                struct.pack(">HHIIBBHHH", a, b, i, 0, 5 << 4, 0x18, 65535, 0, 0)
                for a, b in ((sport, dport), (dport, sport))
            )
        elif proto == 17:
            l4 = tuple(
                struct.pack(">HH", a, b) for a, b in ((sport, dport), (dport, sport))
            )
        else:
            l4 = (
                struct.pack(">BBHHH", 8 if proto == 1 else 128, 0, 0, i & 0xFFFF, 1),
            ) * 2
        flows.append(_Flow(proto, v6, heads, l4))  # type: ignore[arg-type]
    return flows


def _payload_size(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.45:
        return 0
    if r < 0.90:
        return rng.randrange(1, 300)
    return rng.randrange(1000, 1400)


def generate(
    path: str | Path,
    packets: int = DEFAULT_PACKETS,
    flows: int = DEFAULT_FLOWS,
    seed: int = DEFAULT_SEED,
) -> Path:
    """Write the capture to ``path`` and return it."""
    rng = random.Random(seed)
    table = _make_flows(rng, flows)
    weights = list(
        itertools.accumulate(1.0 / (k**ZIPF_EXPONENT) for k in range(1, flows + 1))
    )
    # Every flow gets at least one packet so the flow count is as stated.
    picks = list(range(flows)) + rng.choices(
        range(flows), cum_weights=weights, k=max(packets - flows, 0)
    )
    rng.shuffle(picks)
    picks = picks[:packets]
    record = struct.Struct("<IIII")
    u16 = struct.Struct(">H")
    ts = START_SECONDS * 1_000_000_000
    out = Path(path)
    with open(out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        chunk: list[bytes] = []
        for index in picks:
            flow = table[index]
            direction = 0 if rng.random() < 0.6 else 1
            size = _payload_size(rng)
            l4 = flow.l4[direction]
            if flow.proto == 17:
                l4 = l4 + u16.pack(8 + size) + b"\0\0"
            before, after = flow.heads[direction]
            body = l4 + _PAYLOAD[:size]
            if flow.v6:
                frame = before + u16.pack(len(body)) + after + body
            else:
                frame = before + u16.pack(20 + len(body)) + after + body
            ts += int(rng.expovariate(1.0 / MEAN_GAP_NS))
            sec, ns = divmod(ts, 1_000_000_000)
            chunk.append(record.pack(sec, ns // 1000, len(frame), len(frame)))
            chunk.append(frame)
            if len(chunk) >= 20000:
                f.write(b"".join(chunk))
                chunk.clear()
        f.write(b"".join(chunk))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="pcap file to write")
    parser.add_argument("--packets", type=int, default=DEFAULT_PACKETS)
    parser.add_argument("--flows", type=int, default=DEFAULT_FLOWS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    path = generate(args.output, args.packets, args.flows, args.seed)
    print(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {args.packets} packets, {args.flows} flows)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
