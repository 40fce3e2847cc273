"""Interleaved A/B figures for issue 20 (benchmarks/RESULTS.md, "Arrow windows"
and "Times per connection").

    python benchmarks/arrow_times_probe.py [ROUNDS]

* Arrow: a cut window of 1,000,000 connections to an Arrow table
  (``connstats.export.arrow.window_table``) against building its dicts
  (``window.to_dicts()``), each on a fresh window, alternating, ROUNDS times.
* Times: the cost per packet of ``Core(track_times=True)`` against the default
  core, single-packet and batch paths, 1,000 and 100,000 connections,
  alternating rounds; and the table's bytes per connection at 1,000,000.

Medians of the rounds, and the ratio of the medians.  The machine is shared:
read the ratios, not the absolute times.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workloads import joined, window_packets

from connstats._impl import core
from connstats.export import arrow


def fill(buffers, track_times=False):
    c = core.Core(track_times=track_times)
    for buf, offsets, lengths in buffers:
        c.update_tx_virtual_buffer(buf, offsets, lengths)
    return c


def timed(fn) -> float:
    gc.collect()
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def arrow_vs_dicts(rounds: int) -> None:
    n = 1_000_000
    packets = window_packets("realistic", n)
    buffers = [joined(packets[i : i + 8192]) for i in range(0, n, 8192)]
    del packets
    a, d = [], []
    for _ in range(rounds):
        w = fill(buffers).cut()
        a.append(timed(lambda w=w: arrow.window_table(w, 0, 1)))
        del w
        w = fill(buffers).cut()
        d.append(timed(lambda w=w: w.to_dicts()))
        del w
    ma, md = statistics.median(a), statistics.median(d)
    print(f"arrow, 1M connections: window_table {ma * 1e3:.1f} ms "
          f"({ma / n * 1e9:.0f} ns/conn), to_dicts {md * 1e3:.1f} ms "
          f"({md / n * 1e9:.0f} ns/conn): Arrow {md / ma:.1f}x faster")  # fmt: skip
    w = fill(buffers).cut()
    virtual, physical = w.to_dicts()
    f = [timed(lambda: arrow.table(0, 1, virtual, physical)) for _ in range(rounds)]
    print(f"arrow.table from the 1M dicts: {statistics.median(f) * 1e3:.1f} ms")
    for track in (False, True):
        c = fill(buffers, track)
        print(f"table bytes per connection at 1M, track_times={track}: "
              f"{c.table_bytes / c.connections:.1f}")  # fmt: skip


def per_packet(rounds: int) -> None:
    for conns in (1_000, 100_000):
        packets = window_packets("realistic", conns)
        stream = packets * max(1, 200_000 // conns)
        buf, offsets, lengths = joined(stream)
        for path in ("single", "batch"):
            res = {False: [], True: []}
            for _ in range(rounds):
                for track in (False, True):
                    c = core.Core(track_times=track)
                    if path == "single":
                        c.update_tx_virtual_batch(packets)  # the table is warm
                        up = c.update_tx_virtual

                        def run(up=up, stream=stream):
                            for p in stream:
                                up(p)
                    else:
                        c.update_tx_virtual_buffer(buf, offsets, lengths)

                        def run(c=c, b=(buf, offsets, lengths)):
                            c.update_tx_virtual_buffer(*b)

                    res[track].append(timed(run) / len(stream) * 1e9)
            off, on = statistics.median(res[False]), statistics.median(res[True])
            print(f"{path:6s} {conns:>7,} conns: default {off:6.1f} ns/pkt, "
                  f"track_times {on:6.1f} ns/pkt ({on / off:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    arrow_vs_dicts(rounds)
    per_packet(rounds)
