"""Leak check workloads, run in a fresh interpreter by tests/test_leaks.py.

    python leak_cycles.py update-extract c|py CYCLES [TRACED]
    python leak_cycles.py create-shutdown c|py CYCLES [TRACED]

After a warm-up (which sizes the allocator's arenas, caches and free lists)
CYCLES cycles run untraced and RSS is compared before and after them; then
TRACED cycles (default 100,000 or CYCLES) run under tracemalloc, and the
Python memory still allocated is compared between half-way and the end
(after gc), so that bounded caches that churn do not count.  The script
prints one JSON object with the figures, the flush threads still alive and
the time taken.

* update-extract: each cycle is one update (single tx/rx, batch, buffer,
  physical with every address form, a new connection, or a bad call that
  raises) followed by ``extract()``.
* create-shutdown: each cycle creates a Statistics (with a dump thread and
  max_period, with max_conns, without dump, as a context manager, or dropped
  without shutdown for the finalizer to stop), counts a packet and shuts it
  down.
"""

from __future__ import annotations

import array
import gc
import ipaddress
import json
import os
import struct
import sys
import threading
import time
import tracemalloc


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def udp4(src: int, sport: int, dst: int, dport: int, size: int = 0) -> bytes:
    payload = struct.pack("!HHHH", sport, dport, 8 + size, 0) + bytes(size)
    return (
        struct.pack(
            "!BBHHHBBHII", 0x45, 0, 20 + len(payload), 0, 0, 64, 17, 0, src, dst
        )
        + payload
    )


def flush_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "connstats-flush")


def update_extract(stats_cls, core, cycles: int):
    a, b = 0x0A000001, 0x0A000002
    p1 = udp4(a, 1000, b, 53, 10)
    p2 = udp4(b, 53, a, 1000, 30)
    buf = p1 + p2 + p1
    offsets = array.array("q", [0, len(p1), len(p1) + len(p2)])
    lengths = array.array("q", [len(p1), len(p2), len(p1)])
    addrport = core.AddrPort(ipaddress.ip_address("198.51.100.1"), 41641)
    stats = stats_cls()

    def cycle(i: int) -> None:
        op = i % 8
        if op == 0:
            stats.update_tx_virtual(p1)
        elif op == 1:
            stats.update_rx_virtual(bytearray(p2))
        elif op == 2:
            stats.update_tx_virtual_batch([p1, memoryview(p2), p1])
        elif op == 3:
            stats.update_rx_virtual_buffer(buf, offsets, lengths)
        elif op == 4:
            stats.update_tx_physical("10.0.0.1", ("198.51.100.1", 41641), 1280)
        elif op == 5:
            stats.update_rx_physical(ipaddress.ip_address("fd00::1"), addrport, 1280)
        elif op == 6:  # a new connection every time
            stats.update_tx_virtual(
                udp4(0x0B000000 + (i & 0xFFFFF), 1 + (i & 0x7FFF), b, 443)
            )
        else:
            try:
                stats.update_tx_virtual_batch([p1, "not a packet"])
            except TypeError:
                pass
        virtual, physical = stats.extract()
        if op != 7 and not (virtual or physical):
            raise AssertionError(f"cycle {i}: nothing counted")

    return cycle, lambda: None


def create_shutdown(stats_cls, core, cycles: int):
    packet = udp4(0x0A000001, 1000, 0x0A000002, 53, 10)
    windows = [0]

    def dump(start, end, virtual, physical):
        windows[0] += 1

    def cycle(i: int) -> None:
        op = i % 5
        if op == 0:
            s = stats_cls(max_period=60, dump=dump)
            s.update_tx_virtual(packet)
            assert s.shutdown(timeout=10)
        elif op == 1:
            s = stats_cls(max_conns=1, dump=dump)
            s.update_tx_virtual(packet)
            s.update_rx_physical("10.0.0.1", ("192.0.2.1", 1), 10)
            assert s.shutdown(timeout=10)
        elif op == 2:
            s = stats_cls()
            s.update_tx_virtual(packet)
            s.extract()
            s.shutdown()
        elif op == 3:
            with stats_cls(max_period=0.5, dump=dump) as s:
                s.update_rx_virtual(packet)
        else:  # never shut down: the finalizer must stop its thread
            s = stats_cls(max_period=60, dump=dump)
            s.update_tx_virtual(packet)
            del s

    def finish() -> None:
        gc.collect()
        deadline = time.monotonic() + 10
        while flush_threads() and time.monotonic() < deadline:
            time.sleep(0.01)

    return cycle, finish


def main() -> None:
    mode, impl, cycles = sys.argv[1], sys.argv[2], int(sys.argv[3])
    from connstats import _statistics

    if impl == "c":
        from connstats import _fastparse as core
    else:
        from connstats import _fastparse_py as core

    class Stats(_statistics.Statistics):
        _core_module = core

    make = {"update-extract": update_extract, "create-shutdown": create_shutdown}[mode]
    cycle, settle = make(Stats, core, cycles)
    threads_before = threading.active_count()
    traced_cycles = min(cycles, int(sys.argv[4]) if len(sys.argv) > 4 else 100_000)
    warmup = max(cycles // 10, 40_000 if mode == "update-extract" else 1000)
    i = 0
    for i in range(warmup):
        cycle(i)
    settle()
    gc.collect()
    # RSS over all the cycles, untraced (tracemalloc would triple the time)
    rss0 = rss_bytes()
    started = time.perf_counter()
    for i in range(warmup, warmup + cycles):
        cycle(i)
    settle()
    gc.collect()
    elapsed = time.perf_counter() - started
    rss1 = rss_bytes()
    # Python allocations: tracemalloc's current size after half of a traced
    # run, and after all of it.  Bounded caches (the pure core's address
    # cache) churn in both halves, so only unbounded growth shows.
    tracemalloc.start()
    base = warmup + cycles
    half = traced_cycles // 2
    for i in range(base, base + half):
        cycle(i)
    settle()
    gc.collect()
    current1 = tracemalloc.get_traced_memory()[0]
    snap1 = tracemalloc.take_snapshot()
    for i in range(base + half, base + 2 * half):
        cycle(i)
    settle()
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    top = tracemalloc.take_snapshot().compare_to(snap1, "lineno")[:3]
    tracemalloc.stop()
    print(
        json.dumps(
            {
                "mode": mode,
                "impl": impl,
                "cycles": cycles,
                "traced_cycles": traced_cycles,
                "seconds": round(elapsed, 2),
                "rss_before": rss0,
                "rss_after": rss1,
                "rss_growth": rss1 - rss0,
                "traced_half": current1,
                "traced_current": current,
                "traced_growth": current - current1,
                "traced_peak": peak,
                "traced_top": [str(stat) for stat in top],
                "flush_threads": flush_threads(),
                "threads_before": threads_before,
                "threads_after": threading.active_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
