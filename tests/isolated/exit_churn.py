"""Interpreter exit while daemon threads create and drop instances.

    python exit_churn.py KEEP

KEEP instances each hold one counted window and are never shut down; their
dump prints ``KEPT <n>``.  Meanwhile daemon threads keep creating instances
and dropping them (or shutting them down) while the exit hook walks the live
instances.  tests/test_exit_churn.py checks that every kept window is
delivered and that nothing is reported on stderr.  A tiny switch interval
makes the threads interleave with the hook's walk on GIL builds too.
"""

from __future__ import annotations

import struct
import sys
import threading
import time

import connstats


def udp4(i: int) -> bytes:
    payload = struct.pack("!HHHH", 1000 + i % 30000, 53, 8, 0)
    header = struct.pack(
        "!BBHHHBBHII", 0x45, 0, 28, 0, 0, 64, 17, 0, 0x0A000000 + i, 0xC0000201
    )
    return header + payload


def kept_dump(start, end, virtual, physical) -> None:
    print(f"KEPT {sum(c.tx_packets for c in virtual.values())}", flush=True)


def quiet_dump(start, end, virtual, physical) -> None:
    pass


KEEP: list = []


def churn(seed: int) -> None:
    mine: list = []
    i = seed
    while True:
        i += 1
        s = connstats.Statistics(max_period=30, dump=quiet_dump)
        s.update_tx_virtual(udp4(i))
        mine.append(s)
        if len(mine) > 50:
            old = mine.pop(0)
            if i % 3 == 0:
                old.shutdown(timeout=0)
            del old


def main(keep: int) -> None:
    sys.setswitchinterval(1e-6)
    for i in range(keep):
        s = connstats.Statistics(max_period=3600, dump=kept_dump)
        s.update_tx_virtual(udp4(i))
        KEEP.append(s)
    for t in range(6):
        threading.Thread(target=churn, args=(t * 1_000_000,), daemon=True).start()
    time.sleep(0.3)
    print("EXITING", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]))
