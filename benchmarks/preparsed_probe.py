"""Interleaved A/B of update_virtual against update_tx_virtual (issue 18).

    ROUNDS=60 python benchmarks/preparsed_probe.py [WORKLOAD...]

For each workload (default: ipv4-1k ipv4-100k mixed-10k) every round times,
back to back and in a rotating order, one pass over the workload's packets
through: ``update_tx_virtual(p)``, ``update_virtual(proto, src, dst, 1, n)``
(AddrPort arguments, decoded once beforehand), and the two loops with a
Python no-op of the same arguments (the interpreter's share).  It prints the
median ns per packet of each and the median of the per-round ratios, which
stay meaningful on a loaded machine where absolute times do not.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads  # noqa: E402

import connstats  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "60"))


def noop1(p):  # noqa: ANN001, ANN201
    pass


def noop5(a, b, c, d, e):  # noqa: ANN001, ANN201
    pass


def main(names: list[str]) -> None:
    print(f"python {sys.version.split()[0]}, compiled core: {connstats.IS_COMPILED}")
    for name in names:
        w = workloads.build(name)
        packets = w.packets
        flows = [(*connstats.decode(p), len(p)) for p in packets]
        stats = connstats.Statistics()
        tx, uv = stats.update_tx_virtual, stats.update_virtual
        for p in packets:  # every connection tracked before timing
            tx(p)

        def run_tx() -> None:
            for p in packets:
                tx(p)

        def run_uv() -> None:
            for proto, src, dst, n in flows:
                uv(proto, src, dst, 1, n)

        def run_noop1() -> None:
            for p in packets:
                noop1(p)

        def run_noop5() -> None:
            for proto, src, dst, n in flows:
                noop5(proto, src, dst, 1, n)

        cases = {"tx": run_tx, "uv": run_uv, "noop1": run_noop1, "noop5": run_noop5}
        times: dict[str, list[float]] = {k: [] for k in cases}
        order = list(cases)
        for r in range(ROUNDS):
            order = order[1:] + order[:1]  # rotate: no case always runs first
            for k in order:
                t0 = time.perf_counter_ns()
                cases[k]()
                times[k].append((time.perf_counter_ns() - t0) / len(packets))
        stats.extract()
        med = {k: statistics.median(v) for k, v in times.items()}
        ratio = statistics.median(u / t for u, t in zip(times["uv"], times["tx"]))
        net = statistics.median(
            (u - n5) / (t - n1)
            for u, t, n1, n5 in zip(
                times["uv"], times["tx"], times["noop1"], times["noop5"]
            )
        )
        print(
            f"{name:10} ns/packet: tx {med['tx']:.1f}  uv {med['uv']:.1f}  "
            f"noop1 {med['noop1']:.1f}  noop5 {med['noop5']:.1f}  |  uv/tx {ratio:.2f}  "
            f"(uv - noop5)/(tx - noop1) {net:.2f}"
        )


if __name__ == "__main__":
    main(sys.argv[1:] or ["ipv4-1k", "ipv4-100k", "mixed-10k"])
