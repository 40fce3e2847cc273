"""Two builds of the compiled core ranking and writing one capture's window.

    python benchmarks/ab_textout.py OTHER_FASTPARSE_SO /tmp/speed-bench.pcap
    python benchmarks/ab_textout.py OTHER_FASTPARSE_SO /tmp/speed-bench.pcap --column packets

The capture is counted once by each build (its own ``Core``, the window cut),
then rounds alternate A B B A ... over the stages that ``connstats read
--format jsonl|csv`` runs after counting: ``Window.sorted_items`` of every
row (``--top 0``), ``json_rows`` and ``csv_rows`` of those items, and the
20-row selection of the table.  The median of the per-pair ratios (other /
this build) and each side's fastest round are printed as JSON, per stage.
``--ties`` counts every packet with the same length instead, so that every
row of a stage ties on the count column.
"""

from __future__ import annotations

import argparse
import array
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ab_cores import load_other

from connstats._fastparse import __file__ as this_so
from connstats._protocols import PROTOCOL_NAMES
from connstats.capture.reader import CaptureReader, Stop


def window_of(module: Any, path: str, ties: bool) -> Any:
    """The capture counted by ``module``'s core, as one cut window."""
    core = module.Core()
    with open(path, "rb") as f:
        reader = CaptureReader(f, path)
        while True:
            batch = reader.read(None, 0)
            if len(batch.tx_offsets):
                lengths: Any = batch.tx_lengths
                if ties:  # every packet counted as at most 64 bytes: counts tie
                    size = len(batch.data)
                    lengths = array.array(
                        batch.tx_lengths.format,
                        [min(64, size - off) for off in batch.tx_offsets],
                    )
                core.update_tx_virtual_buffer(batch.data, batch.tx_offsets, lengths)
            if batch.stop is Stop.EOF:
                break
    return core.cut()


def stages(module: Any, window: Any, column: str) -> dict[str, Callable[[], Any]]:
    def every_row() -> Any:
        return window.sorted_items(column, False, 0)

    items = every_row()[0]
    return {
        "sort every row": every_row,
        "json_rows": lambda: module.json_rows(items),
        "csv_rows": lambda: module.csv_rows(items, "1,s,e,", PROTOCOL_NAMES),
        "top 20": lambda: window.sorted_items(column, False, 20),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("other", help="the other build's _fastparse extension")
    parser.add_argument("pcap")
    parser.add_argument("--column", default="bytes")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--ties", action="store_true")
    args = parser.parse_args()

    import connstats._fastparse as this

    other = load_other(args.other)
    runs = {
        "this": stages(this, window_of(this, args.pcap, args.ties), args.column),
        "other": stages(other, window_of(other, args.pcap, args.ties), args.column),
    }
    report: dict[str, Any] = {"this": this_so, "other": args.other}
    for stage in runs["this"]:
        times: dict[str, list[float]] = {"this": [], "other": []}
        ratios = []
        for i in range(args.rounds):
            sides = ("this", "other") if i % 2 == 0 else ("other", "this")
            took = {}
            for side in sides:
                start = time.perf_counter()
                runs[side][stage]()
                took[side] = time.perf_counter() - start
                times[side].append(took[side])
            ratios.append(took["other"] / took["this"])
        report[stage] = {
            "other / this (median of pairs)": round(statistics.median(ratios), 3),
            "this fastest ms": round(min(times["this"]) * 1e3, 2),
            "other fastest ms": round(min(times["other"]) * 1e3, 2),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
