"""Exit the interpreter with live, never shut down Statistics instances.

    python exit_live.py SCENARIO

tests/test_exit.py runs each scenario in a subprocess and checks that it
exits promptly with status 0 and nothing on stderr.  Each dump call prints
``DUMP <connections>`` so that the test can see what was delivered at exit.
"""

from __future__ import annotations

import struct
import sys
import threading
import time

import connstats


def udp4(i: int, size: int = 0) -> bytes:
    payload = struct.pack("!HHHH", 1000 + (i & 0x7FFF), 53, 8 + size, 0) + bytes(size)
    return (
        struct.pack(
            "!BBHHHBBHII",
            0x45,
            0,
            20 + len(payload),
            0,
            0,
            64,
            17,
            0,
            0x0A000000 + i,
            0xC0000201,
        )
        + payload
    )


def printing_dump(start, end, virtual, physical) -> None:
    print(f"DUMP {len(virtual) + len(physical)}", flush=True)


def slow_dump(start, end, virtual, physical) -> None:
    time.sleep(0.05)
    printing_dump(start, end, virtual, physical)


BLOCK = threading.Event()


def blocked_dump(start, end, virtual, physical) -> None:
    print("DUMP blocked", flush=True)
    BLOCK.wait()  # never set


KEEP: list = []


def scenario(name: str) -> None:
    packets = [udp4(i, i % 30) for i in range(200)]
    if name == "no-dump":
        s = connstats.Statistics()
        s.update_tx_virtual_batch(packets)
        KEEP.append(s)
    elif name == "dump-period":
        s = connstats.Statistics(max_period=60, dump=printing_dump)
        s.update_tx_virtual_batch(packets)
        KEEP.append(s)
    elif name == "dump-backlog":
        s = connstats.Statistics(max_conns=1, dump=slow_dump)
        s.update_tx_virtual_batch(packets)
        KEEP.append(s)
    elif name == "dump-blocked":
        s = connstats.Statistics(max_conns=1, dump=blocked_dump)
        s.update_tx_virtual_batch(packets)
        KEEP.append(s)
        time.sleep(0.1)  # the flush thread is now inside dump
    elif name == "blocked-first":
        # Registered first, so the exit hook meets it first: its dump never
        # returns, and the next instance's open window must still arrive.
        s = connstats.Statistics(max_conns=1, dump=blocked_dump)
        s.update_tx_virtual_batch(packets[:5])
        KEEP.append(s)
        s = connstats.Statistics(max_period=60, dump=printing_dump)
        s.update_tx_virtual_batch(packets[100:120])
        KEEP.append(s)
        time.sleep(0.1)  # the first flush thread is now inside dump
    elif name == "updating-threads":
        s = connstats.Statistics(max_period=0.001, max_conns=5, dump=lambda *a: None)
        KEEP.append(s)

        def hammer(batch: list) -> None:
            while True:  # still counting (without the GIL) when the interpreter exits
                s.update_rx_virtual_batch(batch)
                s.update_tx_virtual(batch[0])

        for t in range(4):
            threading.Thread(target=hammer, args=(packets[t::4],), daemon=True).start()
        time.sleep(0.2)
    elif name == "many":
        for i in range(50):
            s = connstats.Statistics(max_period=30, max_conns=10, dump=printing_dump)
            s.update_tx_virtual_batch(packets[i : i + 20])
            KEEP.append(s)
    elif name == "garbage-cycle":

        class Owner:
            pass

        for i in range(20):
            owner = Owner()
            owner.self = owner  # only the cyclic collector (or exit) frees it
            owner.stats = connstats.Statistics(max_period=30, dump=printing_dump)
            owner.stats.update_tx_virtual(packets[i])
            del owner
    elif name == "exit-from-dump":

        def dump(start, end, virtual, physical):
            printing_dump(start, end, virtual, physical)
            import os

            os._exit(0)  # the callback ends the process outright

        s = connstats.Statistics(max_conns=1, dump=dump)
        s.update_tx_virtual_batch(packets)
        KEEP.append(s)
        time.sleep(5)
    else:
        raise SystemExit(f"unknown scenario {name!r}")
    print("EXITING", flush=True)


if __name__ == "__main__":
    scenario(sys.argv[1])
