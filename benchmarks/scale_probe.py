"""The table at scale: ns per packet, or cache misses per update under cachegrind.

    python benchmarks/scale_probe.py --conns 100000 --path single --rounds 7
    python benchmarks/scale_probe.py --conns 1000000 --path batch --rounds 5 --ignore
    python benchmarks/scale_probe.py --cachegrind --conns 100000 --path single
    python benchmarks/scale_probe.py --conns 10000 --path single --lane-min 1 --check

Packets are the suite's (``workloads.cycling4``: IPv4 UDP, 789 bytes,
``--conns`` connections in a cycle; ``--conns 1`` is ``same_connection``).  The table is warmed with one round
(every connection already in it), then ``--rounds`` rounds are timed: the
single path calls ``update_tx_virtual`` once per packet, ``batch`` sends
lists of 256 packets, ``buffer`` one buffer with offsets and lengths per 256.
Prints one JSON object (median and minimum ns per packet over the rounds).

``--cachegrind`` runs this script twice under ``valgrind --tool=cachegrind``,
once with one timed round and once with two, and prints the difference per
packet: instructions, L1 data misses and last-level misses of one round,
i.e. per update with the table warm.  Deterministic, so it can be compared
on a loaded machine where timings cannot.  The simulated last level is this
machine's L2 (``--ll``, default 1 MiB, 8-way); pass ``--ll 33554432,16,64``
for an L3-sized one.  ``--python`` picks the interpreter (by default the
running one) and ``PYTHONPATH`` which connstats is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workloads import (
    BATCH,
    PACKET_SIZE,
    SERVER4,
    cycling4,
    joined,
    same_connection,
    udp4,
)


def build(conns: int, size: int) -> list[bytes]:
    if conns == 1:
        return same_connection(udp4(0x64400001, SERVER4, 51000, 443, size))
    return cycling4(conns, size)


def make_round(stats, path: str, packets: list[bytes]):
    if path == "floor":
        # the interpreter's floor: a C method that does almost nothing
        update = [].count

        def run() -> None:
            for p in packets:
                update(p)

        return run
    if path == "single":
        update = stats.update_tx_virtual

        def run() -> None:
            for p in packets:
                update(p)

        return run
    batches = [packets[i : i + BATCH] for i in range(0, len(packets), BATCH)]
    if path == "batch":
        update = stats.update_tx_virtual_batch

        def run() -> None:
            for b in batches:
                update(b)

        return run
    if path == "buffer":
        buffers = [joined(b) for b in batches]
        update = stats.update_tx_virtual_buffer

        def run() -> None:
            for buf, offsets, lengths in buffers:
                update(buf, offsets, lengths)

        return run
    raise SystemExit(f"unknown path {path!r}")


def measure(args: argparse.Namespace) -> dict:
    import connstats

    packets = build(args.conns, args.size)
    # Several rounds for the one-connection case: its 1,000 packets are too
    # few to time one by one.
    repeat = max(1, 100_000 // len(packets)) if args.conns == 1 else 1
    kwargs = {}
    if args.ignore:
        kwargs["ignore_destinations"] = connstats.TAILSCALE_SERVICE_ADDRESSES
    if args.lane_min:
        # GIL builds: the open window's size from which single packets go
        # through the lane (src/core/lanes.pxi); 1 = from its second packet
        connstats._impl.core._set_lane_min_default(args.lane_min)
    stats = connstats.Statistics(**kwargs)
    warm = make_round(stats, "buffer", packets)
    warm()
    run = make_round(stats, args.path, packets)
    times = []
    for _ in range(args.rounds):
        t = time.perf_counter_ns()
        for _ in range(repeat):
            run()
        times.append((time.perf_counter_ns() - t) / (len(packets) * repeat))
    if args.check and args.path != "floor":
        virtual, _ = stats.extract()
        assert len(virtual) == args.conns, len(virtual)
        counted = sum(c.tx_packets for c in virtual.values())
        assert counted == len(packets) * (1 + repeat * args.rounds), counted
    return {
        "core": connstats._impl.core.__file__,
        "conns": args.conns,
        "path": args.path,
        "ignore": args.ignore,
        "lane_min": args.lane_min or None,
        "size": args.size,
        "packets": len(packets) * repeat,
        "rounds": args.rounds,
        "ns_median": statistics.median(times) if times else None,
        "ns_min": min(times) if times else None,
    }


def _cachegrind_run(args: argparse.Namespace, rounds: int) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        cmd = [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=yes",
            f"--cachegrind-out-file={out}",
            f"--D1={args.d1}",
            f"--LL={args.ll}",
            "--I1=32768,8,64",
            args.python or sys.executable,
            __file__,
            "--conns",
            str(args.conns),
            "--path",
            args.path,
            "--size",
            str(args.size),
            "--rounds",
            str(rounds),
        ] + (["--ignore"] if args.ignore else [])
        # PYTHONHASHSEED: the same str hashes, so the same dict probes, in both runs
        env = dict(os.environ, PYTHONHASHSEED="0")
        subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
        events = summary = None
        for line in out.read_text().splitlines():
            if line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith("summary:"):
                summary = [int(x) for x in line.split()[1:]]
        assert events and summary
        return dict(zip(events, summary))


def cachegrind(args: argparse.Namespace) -> dict:
    one = _cachegrind_run(args, 1)
    two = _cachegrind_run(args, 2)
    n = args.conns if args.conns > 1 else 1000 * max(1, 100_000 // 1000)
    per = {k: (two[k] - one[k]) / n for k in one}
    return {
        "conns": args.conns,
        "path": args.path,
        "ignore": args.ignore,
        "pythonpath": os.environ.get("PYTHONPATH", ""),
        "D1": args.d1,
        "LL": args.ll,
        "instructions": round(per["Ir"], 1),
        "d1_misses": round(per["D1mr"] + per["D1mw"], 3),
        "ll_misses": round(per["DLmr"] + per["DLmw"], 3),
        "d1_read_misses": round(per["D1mr"], 3),
        "ll_read_misses": round(per["DLmr"], 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--conns", type=int, default=100_000)
    p.add_argument(
        "--path", choices=("floor", "single", "batch", "buffer"), default="single"
    )
    p.add_argument("--size", type=int, default=PACKET_SIZE)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument(
        "--ignore", action="store_true", help="TAILSCALE_SERVICE_ADDRESSES ignored"
    )
    p.add_argument(
        "--check", action="store_true", help="assert the exact counts afterwards"
    )
    p.add_argument(
        "--lane-min",
        type=int,
        default=0,
        help="connections from which single packets use the lane (default: the core's)",
    )
    p.add_argument("--cachegrind", action="store_true")
    p.add_argument("--python")
    p.add_argument("--d1", default="32768,8,64")
    p.add_argument("--ll", default="1048576,8,64")
    args = p.parse_args(argv)
    print(json.dumps(cachegrind(args) if args.cachegrind else measure(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
