"""shutdown() under real signals, in a process of its own.

    python shutdown_signals.py SCENARIO ROUNDS

reentry    a SIGALRM handler calls shutdown() (no timeout) every 200 µs while
           the main thread is inside shutdown() of the same instance; a
           deadlock hangs the process (tests/test_shutdown_signals.py kills it).
interrupt  a one-shot timer raises KeyboardInterrupt at a random moment during
           shutdown(); the next shutdown() must complete the delivery.

Each round: one instance, one counted packet, which must reach dump exactly
once; an update after shutdown must not be counted.  Prints ``OK ...`` and
exits 0, or prints what went wrong and exits 1.
"""

from __future__ import annotations

import random
import signal
import struct
import sys
import time
from typing import Any, Optional

import connstats


def udp4(i: int) -> bytes:
    payload = struct.pack("!HHHH", 1000 + i % 30000, 53, 8, 0)
    header = struct.pack(
        "!BBHHHBBHII", 0x45, 0, 28, 0, 0, 64, 17, 0, 0x0A000000 + i, 0xC0000201
    )
    return header + payload


class Recorder:
    def __init__(self) -> None:
        self.packets = 0
        self.calls = 0

    def __call__(self, start: Any, end: Any, virtual: dict, physical: dict) -> None:
        time.sleep(0.0005)  # the main thread is waiting in shutdown() meanwhile
        self.calls += 1
        self.packets += sum(c.tx_packets for c in virtual.values())


def check(i: int, stats: connstats.Statistics, rec: Recorder) -> Optional[str]:
    if not stats.shutdown(timeout=10):
        return f"round {i}: a later shutdown() did not complete the delivery"
    stats.update_tx_virtual(udp4(i))
    if not stats.is_shutdown or stats.connections:
        return f"round {i}: still counting after shutdown() returned True"
    if (rec.calls, rec.packets) != (1, 1):
        return f"round {i}: dump got {rec.calls} windows, {rec.packets} packets"
    return None


def reentry(rounds: int) -> int:
    current: list[Optional[connstats.Statistics]] = [None]
    nested = [0, 0]  # handler calls, of which returned True

    busy = [False]

    def handler(signum: int, frame: Any) -> None:
        # One level of nesting: the handler's own shutdown() waits too, and
        # more signals arrive meanwhile.
        stats = current[0]
        if stats is not None and not busy[0]:
            busy[0] = True
            try:
                nested[0] += 1
                nested[1] += stats.shutdown() is True
            finally:
                busy[0] = False

    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
    try:
        for i in range(rounds):
            rec = Recorder()
            stats = connstats.Statistics(max_period=3600, dump=rec)
            stats.update_tx_virtual(udp4(i))
            current[0] = stats
            if stats.shutdown() is not True:
                print(f"round {i}: shutdown() returned False", flush=True)
                return 1
            current[0] = None
            error = check(i, stats, rec)
            if error:
                print(error, flush=True)
                return 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    print(f"OK reentry rounds={rounds} nested={nested[0]}", flush=True)
    return 0 if nested[0] and nested[0] == nested[1] else 1


def interrupt(rounds: int) -> int:
    armed = [False]

    def handler(signum: int, frame: Any) -> None:
        if armed[0]:
            armed[0] = False
            raise KeyboardInterrupt

    signal.signal(signal.SIGALRM, handler)
    rng = random.Random(7)
    interrupted = 0
    for i in range(rounds):
        rec = Recorder()
        stats = connstats.Statistics(max_period=3600, dump=rec)
        stats.update_tx_virtual(udp4(i))
        try:
            armed[0] = True
            signal.setitimer(signal.ITIMER_REAL, rng.uniform(1e-6, 400e-6))
            stats.shutdown()
            armed[0] = False
        except KeyboardInterrupt:
            interrupted += 1
        error = check(i, stats, rec)
        if error:
            print(error, flush=True)
            return 1
    print(f"OK interrupt rounds={rounds} interrupted={interrupted}", flush=True)
    return 0


if __name__ == "__main__":
    name, count = sys.argv[1], int(sys.argv[2])
    sys.exit({"reentry": reentry, "interrupt": interrupt}[name](count))
