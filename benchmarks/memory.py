"""Memory per tracked connection, measured in a fresh process.

    python benchmarks/memory.py connstats 1000000
    python benchmarks/memory.py baseline 100000
    python benchmarks/memory.py connstats 1000000 ipv6

Prints one JSON object: the table's own byte count (connstats:
``Statistics()._core.table_bytes``), the process RSS growth while the
connections were inserted, both per connection, and the insert cost.  The
input is generated in reused chunks of 4,096 minimal packets, and RSS is read
after the first chunk exists, so the growth is the table's (plus allocator
slack), not the input's.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workloads import CLIENT6, SERVER6, ipv6, joined, udp4

CHUNK = 4096


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(impl: str, count: int, family: str = "ipv4") -> dict:
    if family == "ipv6":
        # 48-byte IPv6 UDP packets; the client address varies in its last
        # 32 bits, its port as for IPv4
        size, addr_at, port_at, pack_addr = 48, 20, 40, struct.Struct("!I").pack_into
        template = [ipv6(CLIENT6, SERVER6, 17, 0, 443, size) for _ in range(CHUNK)]
        base = CLIENT6 & 0xFFFFFFFF
    else:
        size, addr_at, port_at, pack_addr = 28, 12, 20, struct.Struct("!I").pack_into
        template = [udp4(0x0A000000, 0xAC100001, 0, 443, 28) for _ in range(CHUNK)]
        base = 0x0A000000
    buf, offsets, lengths = joined(template)
    buf = bytearray(buf)
    port_into = struct.Struct("!H").pack_into

    def chunk(start: int) -> int:
        n = min(CHUNK, count - start)
        for k in range(n):
            i = start + k
            at = k * size
            pack_addr(buf, at + addr_at, base + (i >> 8))  # client address
            port_into(buf, at + port_at, 1024 + (i & 0xFF))  # client port
        return n

    if impl == "connstats":
        import connstats

        stats = connstats.Statistics()

        def insert(n: int) -> None:
            stats.update_tx_virtual_buffer(buf, offsets[:n], lengths[:n])
    elif impl == "baseline":
        import baseline

        stats = baseline.Statistics()

        def insert(n: int) -> None:
            stats.update_tx_virtual_batch(
                [bytes(buf[k * size : k * size + size]) for k in range(n)]
            )
    else:
        raise SystemExit(f"unknown implementation {impl!r}")

    chunk(0)
    before = rss_bytes()
    inserting = 0.0
    start = 0
    while start < count:
        n = chunk(start)
        t = time.perf_counter()
        insert(n)
        inserting += time.perf_counter() - t
        start += n
    after = rss_bytes()
    result = {
        "impl": impl,
        "family": family,
        "connections": count,
        "rss_growth_bytes": after - before,
        "rss_per_connection": (after - before) / count,
        "insert_ns_per_connection": inserting / count * 1e9,
    }
    if impl == "connstats":
        assert stats.connections == count, stats.connections
        result["table_bytes"] = stats._core.table_bytes
        result["table_per_connection"] = stats._core.table_bytes / count
    else:
        assert len(stats._virtual) == count
    return result


def main(argv: list[str]) -> int:
    impl, count = argv[0], int(argv[1])
    family = argv[2] if len(argv) > 2 else "ipv4"
    if family not in ("ipv4", "ipv6"):
        raise SystemExit(f"unknown family {family!r}")
    print(json.dumps(measure(impl, count, family)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
