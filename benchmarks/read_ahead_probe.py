"""Read and count a capture with and without the reader's read-ahead.

    python benchmarks/read_ahead_probe.py CAPTURE [--rounds 15] [--buffers 1024,2048,4096]
    python benchmarks/read_ahead_probe.py CAPTURE.zst --decompress --buffers 2048

Each round reads the whole capture once per configuration (read-ahead off
and on, for each buffer size in KiB), in turn, through the replayer that
``connstats read`` uses, into a fresh table of the compiled core, and prints the medians of wall and CPU time of the read and
count loop (start-up and output excluded).  Read-ahead needs a buffer of at
least twice the head room (256 KiB); smaller ones read without it.
``--decompress``: open the capture as ``connstats read`` does (gzip, bzip2,
xz, zstd by content) and read the decompressing stream ahead, which
``connstats read`` does not do.
"""

from __future__ import annotations

import argparse
import statistics
import time

from connstats import _fastparse
from connstats.capture import CaptureReader, open_capture
from connstats.capture._compress import open_input
from connstats.capture.windows import Replayer, Window


def count_once(
    path: str, read_ahead: bool, buffer_kib: int, decompress: bool = False
) -> tuple[float, float, int]:
    size = buffer_kib * 1024
    if decompress:
        stream = open_input(path)[0]
        reader = CaptureReader(stream, path, read_ahead=read_ahead, buffer_size=size)
    else:
        reader = open_capture(path, read_ahead=read_ahead, buffer_size=size)
    # The replayer, as `connstats read` counts: one window, the compiled core.
    windows: list[Window] = []
    replayer = Replayer(windows.append, core_module=_fastparse)
    with reader:
        wall, cpu = time.perf_counter(), time.process_time()
        replayer.feed(reader)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    replayer.finish()
    return wall, cpu, sum(len(w.table) for w in windows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("capture")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--buffers", default="1024,2048,4096", help="KiB, comma-separated"
    )
    parser.add_argument("--decompress", action="store_true")
    args = parser.parse_args()
    configs = [
        (ahead, int(kib)) for kib in args.buffers.split(",") for ahead in (False, True)
    ]
    results: dict[tuple[bool, int], list[tuple[float, float, int]]] = {
        c: [] for c in configs
    }
    for _ in range(args.rounds):
        for config in configs:
            results[config].append(count_once(args.capture, *config, args.decompress))
    print(
        f"{'read-ahead':>10} {'buffer KiB':>10} {'wall ms':>8} {'CPU ms':>8} connections"
    )
    for (ahead, kib), runs in results.items():
        wall = statistics.median(r[0] for r in runs) * 1e3
        cpu = statistics.median(r[1] for r in runs) * 1e3
        print(f"{str(ahead):>10} {kib:>10} {wall:8.1f} {cpu:8.1f} {runs[0][2]}")


if __name__ == "__main__":
    main()
