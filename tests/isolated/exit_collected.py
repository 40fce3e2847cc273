"""End the program while instances that nobody shut down are being collected.

    python exit_collected.py BUDGET BUSY SHAPE [SHAPE...]

Each shape counts a known number of packets in an instance that is never shut
down, and its ``dump`` writes one ``DELIVERED <name> <packets>`` line per
connection, in one write.  tests/test_exit_collected.py checks that every
expected line appears, whole and exactly once, and that nothing is written on
stderr.  BUSY daemon threads keep the interpreter busy through exit: half of
them loop in Python (competing for the GIL on GIL builds, for the CPU on
free-threaded ones), half count packets into a live instance of their own
(without dump, so that the exit hook's shutdown of it returns at once and
gives no other flush thread time to finish by chance).  Once every exit
hook has run, the busy threads park (block on a lock, off the GIL): a daemon
thread that takes or drops the GIL while CPython tears the interpreter down
can crash the process after everything was delivered, in CPython's own code
(python/cpython#110052, up to 3.13), and that is not what this tests.

BUDGET replaces connstats._statistics.EXIT_FLUSH_BUDGET ("default" keeps it):
the test raises it so that a loaded machine cannot make a run fail by timing
(what is tested is that exit waits for these flushes at all; that exit stays
prompt with the default budget is tests/test_exit.py's business).

The shapes (the collected ones run last, in this order, so that their flush
threads have had no time to run when the exit hook starts):

backlog     a local with max_conns=2 and a slow dump: three windows are queued
            or open when it is collected (DELIVERED backlog-<port> 1, 6 lines).
cycle       the instance hangs off a reference cycle that gc.collect() frees
            just before the end (DELIVERED cycle 3).
local       the issue's program: the instance is a local of the function that
            ends the program, collected as it returns (DELIVERED local 5).
late-local  an atexit hook that runs after connstats' own hook (it was
            registered before connstats was imported) makes a local instance,
            counts and returns (DELIVERED late-local 4).
"""

from __future__ import annotations

import atexit
import gc
import struct
import sys
import threading
import time

SHAPES = ("backlog", "cycle", "local", "late-local")

# Set by the last exit hook: the busy threads stop where they are safe to
# stop (between calls) and wait forever, each saying so on `_parked`.
_PARK = threading.Event()
_parked = threading.Semaphore(0)
_busy_threads: list[threading.Thread] = []


def park_busy_threads() -> None:
    _PARK.set()
    for _ in _busy_threads:
        _parked.acquire(timeout=10)


def park() -> None:
    _parked.release()
    threading.Event().wait()


# atexit runs hooks last-in first-out: registered first, this one runs after
# connstats' hook and after late_local's.
atexit.register(park_busy_threads)


def udp4(i: int) -> bytes:
    payload = struct.pack("!HHHH", 1000 + i, 53, 8, 0)
    header = struct.pack(
        "!BBHHHBBHII", 0x45, 0, 28, 0, 0, 64, 17, 0, 0x0A000000 + i, 0xC0000201
    )
    return header + payload


def out(name: str, virtual: dict) -> None:
    # One write per window, so that a line cut short is visible as such.
    sys.stdout.write(
        "".join(f"DELIVERED {name} {c.tx_packets}\n" for c in virtual.values())
    )
    sys.stdout.flush()


def late_local() -> None:
    import connstats

    def dump(start, end, virtual, physical):
        out("late-local", virtual)

    s = connstats.Statistics(max_period=3600, dump=dump)
    for _ in range(4):
        s.update_tx_virtual(udp4(4))


if "late-local" in sys.argv[3:]:
    # atexit runs hooks last-in first-out: registered before connstats is
    # imported, this one runs after connstats' exit hook has finished.
    atexit.register(late_local)

import connstats  # noqa: E402
import connstats._statistics  # noqa: E402

if sys.argv[1] != "default":
    connstats._statistics.EXIT_FLUSH_BUDGET = float(sys.argv[1])


def backlog() -> None:
    def dump(start, end, virtual, physical):
        time.sleep(0.02)
        for conn, counts in virtual.items():
            out(f"backlog-{conn.src.port}", {conn: counts})

    s = connstats.Statistics(max_conns=2, dump=dump)
    for i in range(6):
        s.update_tx_virtual(udp4(100 + i))


class Owner:
    pass


def cycle() -> None:
    def dump(start, end, virtual, physical):
        out("cycle", virtual)

    owner = Owner()
    owner.self = owner
    owner.stats = connstats.Statistics(max_period=3600, dump=dump)
    for _ in range(3):
        owner.stats.update_tx_virtual(udp4(2))


def local() -> None:
    def dump(start, end, virtual, physical):
        out("local", virtual)

    s = connstats.Statistics(max_period=3600, dump=dump)
    for _ in range(5):
        s.update_tx_virtual(udp4(1))


def spin() -> None:
    x = 0
    while not _PARK.is_set():
        x += 1
    park()


def count(i: int) -> None:
    s = connstats.Statistics()
    packets = [udp4(200 + i * 10 + j) for j in range(10)]
    while not _PARK.is_set():
        s.update_tx_virtual_batch(packets)
        s.update_tx_virtual(packets[0])
    park()


def main(busy: int, shapes: list[str]) -> None:
    unknown = set(shapes) - set(SHAPES)
    if unknown:
        raise SystemExit(f"unknown shapes {sorted(unknown)}; known: {SHAPES}")
    for i in range(busy):
        target, args = (spin, ()) if i % 2 == 0 else (count, (i,))
        thread = threading.Thread(target=target, args=args, daemon=True)
        _busy_threads.append(thread)
        thread.start()
    if busy:
        time.sleep(0.05)
    if "backlog" in shapes:
        backlog()
    if "cycle" in shapes:
        cycle()
        gc.collect()
    if "local" in shapes:
        local()
    sys.stdout.write("EXITING\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main(int(sys.argv[2]), sys.argv[3:])
