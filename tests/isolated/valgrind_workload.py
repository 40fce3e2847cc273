"""A short workload that drives every entry point of the compiled core.

scripts/valgrind.sh runs it under memcheck (and it runs as a plain script in
a second or two): the decoder and the core over the fuzz corpora, every
update form with every kind of buffer and index array, windows cut by
max_conns and dropped by a blocked dump, bad arguments, value types, and
Statistics objects shut down, used as context managers and dropped without
shutdown.  It prints one line per part and exits 0; memcheck decides.
"""

from __future__ import annotations

import array
import gc
import importlib
import ipaddress
import pickle
import random
import struct
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.argv.append("--replay")  # the fuzz harnesses: no atheris instrumentation
sys.path.insert(0, str(ROOT / "fuzz"))

from connstats import Statistics  # noqa: E402
from connstats import _fastparse as core_module  # noqa: E402


def step(name: str) -> None:
    print(f"valgrind_workload: {name}", flush=True)


def udp4(src: str, sport: int, dst: str, dport: int, size: int = 0) -> bytes:
    payload = struct.pack("!HHHH", sport, dport, 8 + size, 0) + bytes(size)
    return (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(payload),
            0,
            0,
            64,
            17,
            0,
            ipaddress.IPv4Address(src).packed,
            ipaddress.IPv4Address(dst).packed,
        )
        + payload
    )


def fuzz_corpora() -> None:
    for name in ("decode", "core", "capture"):
        corpus = ROOT / "fuzz" / "corpus" / name
        if not corpus.is_dir():
            continue
        try:
            harness = importlib.import_module(f"fuzz_{name}")
        except SystemExit:  # fuzz_capture without connstats.capture
            continue
        files = sorted(p for p in corpus.iterdir() if p.is_file())
        for path in files:
            harness.test_one_input(path.read_bytes())
        step(f"fuzz corpus {name}: {len(files)} inputs")


def random_packets() -> None:
    rng = random.Random(1)
    seeds = [
        p.read_bytes() for p in sorted((ROOT / "fuzz" / "corpus" / "decode").glob("*"))
    ]
    seeds = [s for s in seeds if s] or [udp4("10.0.0.1", 1, "10.0.0.2", 2)]
    core = core_module.Core(max_conns=7, max_pending=2)
    for i in range(3000):
        packet = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(4)):
            if packet:
                packet[rng.randrange(len(packet))] = rng.randrange(256)
        packet = packet[: rng.randrange(len(packet) + 1)]
        core_module.decode(bytes(packet))
        if i % 3 == 0:
            core.update_tx_virtual(packet)
        elif i % 3 == 1:
            core.update_rx_virtual(memoryview(packet))
        else:
            core.update_tx_virtual_batch(
                [bytes(packet), packet, memoryview(bytes(packet))]
            )
        if i % 100 == 0:
            window = core.cut()
            if window is not None and i % 200 == 0:
                window.to_dicts()
            core.pop_pending()
    step(f"random packets: dropped {core.dropped_windows} windows")


def buffers_and_index_arrays() -> None:
    packets = [udp4("10.0.0.1", 1000 + i, "10.0.0.2", 53, i) for i in range(40)]
    buf = b"".join(packets)
    offsets, lengths, pos = [], [], 0
    for p in packets:
        offsets.append(pos)
        lengths.append(len(p))
        pos += len(p)
    core = core_module.Core()
    for code in "bBhHiIlLqQ":
        try:
            offs = array.array(code, offsets)
            lens = array.array(code, lengths)
        except OverflowError:
            continue
        core.update_tx_virtual_buffer(buf, offs, lens)
        core.update_rx_virtual_buffer(bytearray(buf), memoryview(offs), lens)
    core.update_tx_virtual_buffer(memoryview(buf), offsets, lengths)
    core.update_tx_virtual_buffer(buf, [], [])
    ints = array.array("i", range(64))
    core.update_tx_virtual(ints)  # any buffer: its raw bytes
    core.update_tx_virtual_batch([ints, memoryview(ints)[2:10]])
    virtual, physical = core.cut().to_dicts()
    assert len(virtual) >= 40, len(virtual)
    step(f"buffers and index arrays: {len(virtual)} connections")


def bad_arguments() -> None:
    core = core_module.Core()
    good = udp4("10.0.0.1", 1, "10.0.0.2", 2)
    calls = [
        lambda: core.update_tx_virtual("text"),
        lambda: core.update_tx_virtual(None),
        lambda: core.update_tx_virtual(memoryview(bytearray(64))[::2]),
        lambda: core.update_rx_virtual_batch([good, good, 3]),
        lambda: core.update_rx_virtual_batch([good, memoryview(bytearray(64))[::2]]),
        lambda: core.update_rx_virtual_batch(7),
        lambda: core.update_tx_virtual_buffer(good, [0, 5], [1]),
        lambda: core.update_tx_virtual_buffer(good, [0], [len(good) + 1]),
        lambda: core.update_tx_virtual_buffer(good, [-1], [1]),
        lambda: core.update_tx_virtual_buffer(good, array.array("d", [0.0]), [1]),
        lambda: core.update_tx_virtual_buffer(good, ["0"], [1]),
        lambda: core.update_tx_virtual_buffer(good, array.array("Q", [1 << 63]), [1]),
        lambda: core.update_tx_physical("10.0.0.1", ("10.0.0.2", 70000), 1),
        lambda: core.update_tx_physical("10.0.0.1", ("10.0.0.2", 1), -5),
        lambda: core.update_tx_physical(b"\x01\x02\x03", ("10.0.0.2", 1), 5),
        lambda: core.update_rx_physical("10.0.0.1", "10.0.0.2", 5),
        lambda: core_module.Core(max_conns=-1),
        lambda: core_module.Core(ignore_destinations=["not an address"]),
        lambda: core_module.Counts(-1),
        lambda: core_module.AddrPort("10.0.0.1", 1),
        lambda: core_module.Connection(300),
    ]
    raised = 0
    for call in calls:
        try:
            call()
        except (TypeError, ValueError, OverflowError):
            raised += 1
    assert core.cut() is None
    step(f"bad arguments: {raised}/{len(calls)} raised")


def value_types() -> None:
    a = core_module.AddrPort(ipaddress.ip_address("fd00::1"), 443)
    b = core_module.AddrPort(ipaddress.ip_address("10.0.0.1"), 80)
    none = core_module.AddrPort(None, 0)
    conns = [
        core_module.Connection(6, a, b),
        core_module.Connection(17, b, a),
        core_module.Connection(0, none, (ipaddress.ip_address("10.0.0.2"), 1)),
    ]
    counts = core_module.Counts(1, 2, 3, 4) + core_module.Counts(2**64 - 1, 0, 0, 0)
    table = dict.fromkeys(conns, counts)
    assert pickle.loads(pickle.dumps(table)) == table
    sorted(conns)
    for c in conns:
        str(c), repr(c), c.to_dict(), hash(c), tuple(c)
    str(counts), repr(counts), counts.to_dict(), tuple(counts), counts < counts
    step("value types")


def statistics_objects() -> None:
    packets = [udp4("10.0.0.1", 1000 + i, "10.0.0.2", 53, i % 7) for i in range(300)]
    sent = sum(len(p) for p in packets)
    release = threading.Event()
    delivered = []

    def slow_dump(start, end, virtual, physical):
        release.wait(10)
        delivered.append(sum(c.tx_bytes for c in virtual.values()))

    stats = Statistics(max_conns=2, dump=slow_dump)
    stats.update_tx_virtual_batch(packets)
    release.set()
    assert stats.shutdown(timeout=60)
    assert sum(delivered) + stats.dropped_bytes == sent, (
        sum(delivered),
        stats.dropped_bytes,
        sent,
    )

    def raising_dump(start, end, virtual, physical):
        raise RuntimeError("dump failed on purpose")

    import logging

    logging.getLogger("connstats").disabled = True
    with Statistics(max_period=0.001, dump=raising_dump) as s:
        for p in packets[:20]:
            s.update_rx_virtual(p)
            time.sleep(0.0005)
    logging.getLogger("connstats").disabled = False

    def shutting_dump(start, end, virtual, physical):
        holder[0].shutdown()

    holder = [Statistics(max_conns=1, dump=shutting_dump)]
    holder[0].update_tx_virtual_batch(packets[:10])
    holder[0].shutdown(timeout=30)

    for i in range(50):  # never shut down: the finalizer stops the thread
        s = Statistics(max_period=1, dump=lambda *a: None)
        s.update_tx_virtual(packets[i])
        s.update_tx_physical("10.0.0.1", ("192.0.2.1", 41641), 100)
        del s
    gc.collect()
    plain = Statistics()
    plain.update_tx_virtual_buffer(
        b"".join(packets[:3]), [0, len(packets[0])], [len(packets[0])] * 2
    )
    plain.extract()
    plain.shutdown()
    deadline = time.monotonic() + 30
    while any(t.name == "connstats-flush" for t in threading.enumerate()):
        if time.monotonic() > deadline:
            raise AssertionError("flush threads left behind")
        time.sleep(0.01)
    step(
        f"statistics objects: {len(delivered)} windows delivered, {stats.dropped_windows} dropped"
    )


def main() -> None:
    started = time.perf_counter()
    fuzz_corpora()
    random_packets()
    buffers_and_index_arrays()
    bad_arguments()
    value_types()
    statistics_objects()
    step(f"done in {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
