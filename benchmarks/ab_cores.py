"""Two builds of the compiled core timed in one process, round after round.

    python benchmarks/ab_cores.py OTHER_FASTPARSE_SO --conns 100000 --path single
    python benchmarks/ab_cores.py /tmp/main/connstats/_fastparse.cpython-311-x86_64-linux-gnu.so \\
        --conns 1000000 --path batch --rounds 21 --ignore

On a machine shared with other jobs, timings of separate runs cannot be
compared: whole runs land in busy or quiet periods.  Here the other build's
``_fastparse`` extension is loaded next to the installed one (under another
package name), each gets its own ``Core`` with its table warmed by one round,
and rounds over the very same packet objects alternate A B B A A B ...,
with a round of the interpreter's floor (``[].count``) in each pair.  The
ratio of each pair (other / this build) is kept; the median of those ratios
and the minimum round of each side are printed as JSON.

Packets are ``scale_probe.build`` (IPv4 UDP, 789 bytes, ``--conns``
connections in a cycle).  ``--path``: ``single``/``rx-single`` one call per
packet, ``batch``/``rx-batch`` lists of 256, ``buffer`` one buffer with
offsets and lengths per 256, ``records`` one ``update_records`` buffer per
256 packets, ``preparsed`` ``update_virtual(proto, src, dst, 1, n)`` per
packet (decoded by the same core beforehand).  Cores are called directly
(``Core.update_*``), so both builds go through the same entry point.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scale_probe
from harness import preparsed_record
from workloads import BATCH, joined


def load_other(path: str) -> object:
    """The extension at ``path`` as module ``ab_other._fastparse``."""
    spec = importlib.util.spec_from_file_location("ab_other._fastparse", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: not an extension module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PATHS = ("single", "rx-single", "batch", "rx-batch", "buffer", "records", "preparsed")


def make_round(core: object, path: str, packets: list[bytes], decode: Any = None):
    """One round of ``path`` over ``packets`` with ``core`` (None: the floor).

    ``decode``: the core's module's ``decode``, for ``preparsed``."""
    if path == "floor":
        update = [].count

        def run() -> None:
            for p in packets:
                update(p)

        return run
    if path in ("single", "rx-single"):
        update = getattr(
            core, "update_rx_virtual" if path == "rx-single" else "update_tx_virtual"
        )

        def run() -> None:
            for p in packets:
                update(p)

        return run
    if path == "preparsed":
        # flows decoded by this core: its own AddrPort type, as a caller has
        flows = [(*decode(p), len(p)) for p in packets]
        counted = core.update_virtual  # type: ignore[attr-defined]

        def run() -> None:
            for proto, src, dst, n in flows:
                counted(proto, src, dst, 1, n)

        return run
    batches = [packets[i : i + BATCH] for i in range(0, len(packets), BATCH)]
    if path == "buffer":
        buffers = [joined(b) for b in batches]
        into = core.update_tx_virtual_buffer  # type: ignore[attr-defined]

        def run() -> None:
            for data, offsets, lengths in buffers:
                into(data, offsets, lengths)

        return run
    if path == "records":
        blobs = [
            b"".join(preparsed_record(*decode(p), len(p)) for p in b) for b in batches
        ]
        add = core.update_records  # type: ignore[attr-defined]

        def run() -> None:
            for blob in blobs:
                add(blob)

        return run
    update = getattr(
        core,
        "update_rx_virtual_batch" if path == "rx-batch" else "update_tx_virtual_batch",
    )

    def run() -> None:
        for b in batches:
            update(b)

    return run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("other", help="the other build's _fastparse extension file")
    p.add_argument("--conns", type=int, default=100_000)
    p.add_argument("--path", choices=PATHS, default="single")
    p.add_argument("--rounds", type=int, default=21, help="pairs of rounds")
    p.add_argument("--ignore", action="store_true", help="TAILSCALE_SERVICE_ADDRESSES")
    args = p.parse_args(argv)

    import connstats

    this = connstats._impl.core
    other = load_other(args.other)
    packets = scale_probe.build(args.conns, scale_probe.PACKET_SIZE)
    repeat = max(1, 100_000 // len(packets))
    kwargs = {}
    if args.ignore:
        kwargs["ignore_destinations"] = connstats.TAILSCALE_SERVICE_ADDRESSES
    rounds = {}
    for name, module in (("this", this), ("other", other)):
        core = module.Core(**kwargs)  # type: ignore[attr-defined]
        # warm: every connection in, in the direction the path counts
        make_round(
            core, "rx-batch" if args.path.startswith("rx") else "batch", packets
        )()
        rounds[name] = make_round(core, args.path, packets, module.decode)  # type: ignore[attr-defined]
    rounds["floor"] = make_round(None, "floor", packets)
    times: dict[str, list[float]] = {k: [] for k in rounds}
    ratios = []
    for i in range(args.rounds):
        order = ["this", "other"] if i % 2 == 0 else ["other", "this"]
        for name in [*order, "floor"]:
            run = rounds[name]
            t = time.perf_counter_ns()
            for _ in range(repeat):
                run()
            times[name].append((time.perf_counter_ns() - t) / (len(packets) * repeat))
        ratios.append(times["other"][-1] / times["this"][-1])
    print(
        json.dumps(
            {
                "conns": args.conns,
                "path": args.path,
                "ignore": args.ignore,
                "pairs": args.rounds,
                "this": this.__file__,
                "other": args.other,
                "ns_min": {k: round(min(v), 1) for k, v in times.items()},
                "ns_median": {
                    k: round(statistics.median(v), 1) for k, v in times.items()
                },
                "other_over_this": round(statistics.median(ratios), 3),
                "loadavg": os.getloadavg(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
