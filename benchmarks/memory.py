"""Memory per tracked connection, measured in a fresh process.

    python benchmarks/memory.py connstats 1000000
    python benchmarks/memory.py baseline 100000

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

from workloads import joined, udp4

CHUNK = 4096


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(impl: str, count: int) -> dict:
    template = [udp4(0x0A000000, 0xAC100001, 0, 443, 28) for _ in range(CHUNK)]
    buf, offsets, lengths = joined(template)
    buf = bytearray(buf)
    pack_into = struct.Struct("!I").pack_into
    port_into = struct.Struct("!H").pack_into

    def chunk(start: int) -> int:
        n = min(CHUNK, count - start)
        for k in range(n):
            i = start + k
            base = k * 28
            pack_into(buf, base + 12, 0x0A000000 + (i >> 8))  # client address
            port_into(buf, base + 20, 1024 + (i & 0xFF))  # client port
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
                [bytes(buf[k * 28 : k * 28 + 28]) for k in range(n)]
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
    print(json.dumps(measure(impl, count)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
