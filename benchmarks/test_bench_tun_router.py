"""What counting costs a real forwarder: iperf3 through examples/tun_router.py.

Not a timed test (no pytest-benchmark fixture, no timed assertion): it runs
iperf3 through the example router with counting off, single-packet counting
and batch counting, interleaved (the order rotates every round), and prints
medians per mode:

* ``tcp``: one iperf3 TCP stream from site A to site B (MTU 1500);
* ``udp64``: iperf3 UDP with 64-byte payloads (92-byte IP packets) at full
  speed (``-b 0``): the router is the bottleneck, so its packets/s is the
  forwarder's small-packet rate.

For each run it records the iperf3 throughput (TCP: bits/s received; UDP:
datagrams/s received), the forwarder's own packets/s over the iperf3 run,
and the forwarding thread's CPU time per packet (``time.thread_time``; this
includes the kernel work of each ``os.write``, which delivers the packet
into the other namespace's stack).  The overhead of counting is given both
as the throughput lost against ``off`` and as the extra CPU per packet.
End-to-end figures on a shared 2-CPU machine are noisy, so it also times, in
isolation, exactly the work each loop adds to ``off`` (the ``count(packet)``
calls; the list appends and the batch call per burst) on the last ~1,000
packets the router read in a 1 s run of the same workload, in the bursts it
read them (fastest of 300 passes, so that preemption by other processes does
not count), and gives that cost over the ``off`` CPU per packet.

Needs root, /dev/net/tun, iproute2 and iperf3 (``.ci/run`` installs it);
skipped with the reason elsewhere.  By default (and always under
``--benchmark-disable``, as CI runs it) one round of 1 s per mode and
workload, about 25 s.  The full run (about 10 minutes), as in RESULTS.md:

    CONNSTATS_TUN_BENCH_ROUNDS=5 CONNSTATS_TUN_BENCH_JSON=tun.json \
        python -m pytest benchmarks/test_bench_tun_router.py -p no:cacheprovider -s

``CONNSTATS_TUN_BENCH_ROUNDS`` sets the rounds, ``CONNSTATS_TUN_BENCH_SECONDS``
(default 5) the seconds per iperf3 run; ``CONNSTATS_TUN_BENCH_JSON=path``
writes every run and the medians as JSON (``path-q1``, ``path-q2``).
"""

from __future__ import annotations

import collections
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import connstats

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tun_router.py"
if str(EXAMPLE.parent) not in sys.path:
    sys.path.insert(0, str(EXAMPLE.parent))

import tun_router as tr  # noqa: E402  (examples/ is no package)

PORT = 5299
WORKLOADS = {
    "tcp": [],
    "udp64": ["-u", "-b", "0", "-l", "64"],
}


REASON = tr.unavailable("iperf3")
pytestmark = pytest.mark.skipif(
    REASON is not None, reason=f"TUN router benchmark cannot run here: {REASON}"
)


class _Recorder:
    """Stands in for Statistics in the batch loop to keep the latest real bursts.

    The latest ``limit`` packets, not the first: the bursts of a transfer's
    steady state.  Few enough to stay in the CPU caches when timed, as a
    packet just copied out of the kernel is.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.bursts: collections.deque[tuple[str, list[bytes]]] = collections.deque()
        self.n = 0

    def _keep(self, direction: str, packets: Any) -> None:
        self.bursts.append((direction, list(packets)))
        self.n += len(packets)
        while self.n - len(self.bursts[0][1]) >= self.limit:
            self.n -= len(self.bursts.popleft()[1])

    def update_tx_virtual_batch(self, packets: Any) -> None:
        self._keep("tx", packets)

    def update_rx_virtual_batch(self, packets: Any) -> None:
        self._keep("rx", packets)

    def update_tx_virtual(self, packet: Any) -> None:
        self._keep("tx", [packet])

    def update_rx_virtual(self, packet: Any) -> None:
        self._keep("rx", [packet])


def _iperf(router: Any, args: list[str], seconds: float, streams: int) -> dict:
    cmd = ["ip", "netns", "exec", router.ns_a, "iperf3", "-c", router.addr_b]
    cmd += ["-p", str(PORT), "-J", "-t", f"{seconds:g}", "-P", str(streams), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode:
        raise AssertionError(f"{' '.join(cmd)}: {out.stdout[-500:]} {out.stderr}")
    end = json.loads(out.stdout)["end"]
    if "-u" in args:
        s = end["sum"]
        received = s["packets"] - s["lost_packets"]
        return {"throughput": received / s["seconds"], "unit": "datagrams/s"}
    return {"throughput": end["sum_received"]["bits_per_second"], "unit": "bit/s"}


def _one_run(
    router: Any, workload: str, mode: str, seconds: float, streams: int
) -> dict:
    stats = connstats.Statistics() if mode != "off" else None
    router.start(mode, stats)
    before, t0 = router.progress(), time.monotonic()
    result = _iperf(router, WORKLOADS[workload], seconds, streams)
    after, t1 = router.progress(), time.monotonic()
    totals = router.stop()
    assert totals.write_errors == 0
    if stats is not None:
        virtual, _ = stats.extract()
        stats.shutdown()
        # Every packet forwarded was counted, whichever loop ran.
        assert sum(c.tx_packets for c in virtual.values()) == totals.a_to_b
        assert sum(c.rx_packets for c in virtual.values()) == totals.b_to_a
    moved = sum(after) - sum(before)
    return dict(
        result,
        workload=workload,
        mode=mode,
        forwarder_pps=moved / (t1 - t0),
        cpu_ns_per_packet=totals.cpu_seconds * 1e9 / max(totals.packets, 1),
        packets=totals.packets,
        load1=os.getloadavg()[0],
    )


def _record_packets(router: Any, workload: str, streams: int) -> list:
    recorder = _Recorder(1000)
    batch_min, tr.BATCH_MIN = tr.BATCH_MIN, 1  # every burst, however short
    router.start("batch", recorder)
    try:
        _iperf(router, WORKLOADS[workload], 1, streams)
    finally:
        router.stop()
        tr.BATCH_MIN = batch_min
    return list(recorder.bursts)


def _best_of(fn: Any, repeat: int = 300) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _isolated_costs(bursts: list) -> dict:
    """ns per packet that each loop adds to the ``off`` loop, on recorded bursts."""
    stats = connstats.Statistics()
    tx, rx = stats.update_tx_virtual, stats.update_rx_virtual
    txb, rxb = stats.update_tx_virtual_batch, stats.update_rx_virtual_batch
    single = [(tx if d == "tx" else rx, b) for d, b in bursts]
    batch = [((txb, tx) if d == "tx" else (rxb, rx), b) for d, b in bursts]
    batch_min = tr.BATCH_MIN
    n = sum(len(b) for _, b in bursts)

    def plain() -> None:
        for _, burst in single:
            for _packet in burst:
                pass

    def one_call_each() -> None:
        for count, burst in single:
            for packet in burst:
                count(packet)

    def append_then_batch() -> None:
        # what pump_batch adds to pump_off
        for (count_batch, count_one), burst in batch:
            packets: list[bytes] = []
            append = packets.append
            for packet in burst:
                append(packet)
            if len(packets) >= batch_min:
                count_batch(packets)
            else:
                for packet in packets:
                    count_one(packet)

    base = _best_of(plain)
    costs = {
        "single_ns": (_best_of(one_call_each) - base) * 1e9 / n,
        "batch_ns": (_best_of(append_then_batch) - base) * 1e9 / n,
        "packets": n,
        "packets_per_burst": n / max(len(bursts), 1),
        "bursts_batch_called": sum(len(b) >= batch_min for _, b in bursts)
        / max(len(bursts), 1),
    }
    stats.shutdown()
    return costs


def _median(runs: list[dict], workload: str, mode: str, key: str) -> float:
    return statistics.median(
        r[key] for r in runs if r["workload"] == workload and r["mode"] == mode
    )


def _report(runs: list[dict], costs: dict, queues: int, seconds: float) -> dict:
    rows = []
    for workload in WORKLOADS:
        off = {
            k: _median(runs, workload, "off", k)
            for k in ("throughput", "forwarder_pps", "cpu_ns_per_packet")
        }
        for mode in tr.MODES:
            row = {
                k: _median(runs, workload, mode, k)
                for k in ("throughput", "forwarder_pps", "cpu_ns_per_packet")
            }
            row.update(workload=workload, mode=mode)
            row["throughput_loss"] = 1 - row["throughput"] / off["throughput"]
            row["cpu_overhead"] = (
                row["cpu_ns_per_packet"] / off["cpu_ns_per_packet"] - 1
            )
            extra = costs[workload].get(f"{mode}_ns", 0.0)
            row["isolated_ns"] = extra
            row["isolated_overhead"] = extra / off["cpu_ns_per_packet"]
            rows.append(row)
    return {
        "queues": queues,
        "seconds": seconds,
        "rounds": len(runs) // (len(WORKLOADS) * len(tr.MODES)),
        "loadavg": os.getloadavg(),
        "rows": rows,
        "isolated": costs,
        "runs": runs,
    }


def _print(report: dict) -> None:
    print(
        f"\nTUN router, {report['queues']} queue(s), {report['rounds']} rounds of "
        f"{report['seconds']:g} s, load {report['loadavg'][0]:.2f}"
    )
    print(
        f"{'workload':8} {'mode':7} {'throughput':>15} {'loss':>7} {'fwd pkt/s':>10} "
        f"{'cpu ns/pkt':>10} {'cpu +':>7} {'isolated ns':>11} {'isolated +':>10}"
    )
    for r in report["rows"]:
        thr = (
            f"{r['throughput'] / 1e9:.3f} Gbit/s"
            if r["workload"] == "tcp"
            else f"{r['throughput']:,.0f} dgr/s"
        )
        print(
            f"{r['workload']:8} {r['mode']:7} {thr:>15} {r['throughput_loss']:7.1%} "
            f"{r['forwarder_pps']:10,.0f} {r['cpu_ns_per_packet']:10.0f} "
            f"{r['cpu_overhead']:7.1%} {r['isolated_ns']:11.1f} "
            f"{r['isolated_overhead']:10.2%}"
        )
    for workload, c in report["isolated"].items():
        print(
            f"isolated costs, {workload}: {c['packets']:,} recorded packets, "
            f"{c['packets_per_burst']:.1f} per read burst, "
            f"{c['bursts_batch_called']:.0%} of bursts >= BATCH_MIN"
        )


@pytest.mark.parametrize("queues", [1, 2])
def test_tun_router_overhead(is_quick: bool, queues: int, capsys: Any) -> None:
    # The full run is asked for by name: a plain `pytest benchmarks` (ten of
    # them for RESULTS.md) should not grow by ten minutes each.
    rounds = int(os.environ.get("CONNSTATS_TUN_BENCH_ROUNDS", 0))
    seconds = float(os.environ.get("CONNSTATS_TUN_BENCH_SECONDS", 5))
    if is_quick or rounds <= 0:
        rounds, seconds = 1, 1.0
    streams = queues  # one flow per queue: the kernel spreads flows, not packets
    suffix = f"-{os.getpid()}-bench{queues}"
    runs: list[dict] = []
    with tr.TunRouter(suffix, queues=queues) as router:
        server = subprocess.Popen(
            ["ip", "netns", "exec", router.ns_b, "iperf3", "-s", "-p", str(PORT)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.5)  # the server's listen socket
            costs = {
                w: _isolated_costs(_record_packets(router, w, streams))
                for w in WORKLOADS
            }
            for i in range(rounds):
                order = tr.MODES[i % 3 :] + tr.MODES[: i % 3]
                for workload in WORKLOADS:
                    for mode in order:
                        runs.append(_one_run(router, workload, mode, seconds, streams))
        finally:
            server.terminate()
            server.wait()
    report = _report(runs, costs, queues, seconds)
    with capsys.disabled():
        _print(report)
    path = os.environ.get("CONNSTATS_TUN_BENCH_JSON")
    if path:
        stem, ext = os.path.splitext(path)
        Path(f"{stem}-q{queues}{ext or '.json'}").write_text(
            json.dumps(report, indent=1)
        )
    assert all(r["packets"] > 0 for r in runs)
