"""Live capture at rate: ``connstats capture`` against ``tcpdump -w /dev/null``.

Not a timed pytest-benchmark case: a lab (``tests/netlab.py``: two network
namespaces joined by a veth pair, ``cs-cap-*``, removed afterwards) carries
UDP packets from a C ``sendmmsg`` sender; on the receiving side
``connstats capture`` and then ``tcpdump -w /dev/null`` run in turn on the
same traffic.  For each rate it records packets sent, packets that reached
the receiving interface (its kernel counter), packets counted, kernel drops
and the CPU time of the capturing process, and prints a table; the JSON goes
to ``benchmarks/results/capture-<time>.json``.

Rates: the issue's three (17k, 68k, ~220k packets/s of small UDP datagrams
through both IP stacks), then raw frames flat out (an AF_PACKET sender to a
MAC nobody owns: the cheapest traffic the receiver can get, so the highest
rate this machine can offer the capture), last from two sender processes.

Run (root; a quiet machine gives the real figures):

    python -m pytest benchmarks/test_bench_capture.py -s -p no:cacheprovider

With ``--benchmark-disable`` (CI's smoke run) it sends a few thousand
packets per case only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import netlab  # noqa: E402

# (label, packets per second (0: flat out), packets, raw frames, senders)
CASES = [
    ("17k", 17_000, 50_000, False, 1),
    ("68k", 68_000, 50_000, False, 1),
    ("220k", 220_000, 300_000, False, 1),
    ("500k raw", 500_000, 1_000_000, True, 1),
    ("1M raw", 1_000_000, 2_000_000, True, 1),
    ("flat out raw", 0, 3_000_000, True, 1),
    # Two sender processes: on a quiet 2-CPU machine the only way to offer
    # more than one CPU's worth (~450k/s) of delivery work.
    ("flat out raw x2", 0, 4_000_000, True, 2),
]
QUICK = [
    ("17k", 17_000, 5_000, False, 1),
    ("flat out raw x2", 0, 20_000, True, 2),
]


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start(lab: netlab.Lab, cmd: list[str], ready: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", lab.b, *cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    netlab.wait_for_line(proc, ready)
    time.sleep(0.3)
    return proc


def _stop(proc: subprocess.Popen[str], cpu0: float) -> tuple[str, str, float]:
    """SIGINT after a drain; returns stdout, stderr and the CPU used since ``cpu0``."""
    # tcpdump hands over a partly filled block after 1 s (libpcap's timeout);
    # wait for that before stopping either tool.
    time.sleep(1.5)
    cpu = _proc_cpu(proc.pid) - cpu0
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return out, err, cpu


def _measure(
    lab: netlab.Lab, cmd: list[str], ready: str, case: tuple
) -> tuple[dict[str, Any], str, str]:
    """Run ``cmd`` on the receiving side while the sender blasts; the common figures."""
    _label, rate, count, raw, senders = case
    rx0 = lab.rx_packets()
    proc = _start(lab, cmd, ready)
    cpu0 = _proc_cpu(proc.pid)
    sent, took, sender_cpu = lab.send(count, rate, raw=raw, senders=senders)
    out, err, cpu = _stop(proc, cpu0)
    row = {
        "sent": sent,
        "seconds": took,
        "offered_pps": sent / took,
        "arrived": lab.rx_packets() - rx0,
        "capture_cpu_s": cpu,
        "sender_cpu_s": sender_cpu,
    }
    return row, out, err


def run_connstats(lab: netlab.Lab, case: tuple) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "connstats", "capture", "-i", lab.dev_b]
    row, out, _err = _measure(
        lab, [*cmd, "--format", "jsonl"], "connstats: capturing", case
    )
    summary = json.loads(out.splitlines()[-1])["captureSummary"]
    row.update(
        tool="connstats",
        counted=summary["packets"],
        kernel_drops=summary["kernelDrops"],
        mode=summary["mode"],
    )
    return row


def run_tcpdump(lab: netlab.Lab, case: tuple) -> dict[str, Any]:
    cmd = ["tcpdump", "-n", "-i", lab.dev_b, "-w", "/dev/null"]
    row, _out, err = _measure(lab, cmd, "tcpdump: listening", case)
    found = {
        key: int(m.group(1))
        for key, pattern in (
            ("captured", r"(\d+) packets captured"),
            ("received", r"(\d+) packets received by filter"),
            ("drops", r"(\d+) packets dropped by kernel"),
        )
        if (m := re.search(pattern, err))
    }
    row.update(
        tool="tcpdump",
        counted=found.get("captured"),
        kernel_drops=found.get("drops"),
        received_by_filter=found.get("received"),
    )
    return row


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'rate':>15} {'tool':>9} {'sent':>9} {'arrived':>9} {'counted':>9} "
        f"{'drops':>7} {'offered pps':>11} {'capture CPU':>11}"
    ]
    for r in rows:
        lines.append(
            f"{r['case']:>15} {r['tool']:>9} {r['sent']:>9} {r['arrived']:>9} "
            f"{r['counted'] if r['counted'] is not None else '?':>9} "
            f"{r['kernel_drops'] if r['kernel_drops'] is not None else '?':>7} "
            f"{r['offered_pps']:>11,.0f} {r['capture_cpu_s']:>10.2f}s"
        )
    return "\n".join(lines)


def test_capture_rates(is_quick: bool) -> None:
    reason = netlab.can_run()
    if reason:
        pytest.skip(reason)
    tcpdump = shutil.which("tcpdump")
    rows: list[dict[str, Any]] = []
    load = os.getloadavg()
    with netlab.Lab("bench") as lab:
        for case in QUICK if is_quick else CASES:
            label, rate, count, raw, senders = case
            tools = [run_connstats] + ([run_tcpdump] if tcpdump else [])
            for tool in tools:
                row = tool(lab, case)
                row.update(
                    case=label, rate=rate, packets=count, raw=raw, senders=senders
                )
                rows.append(row)
                # Every packet the sender got out must reach the interface
                # (the veth has no queue to drop in) and be seen.
                assert row["counted"] is not None
    table = _table(rows)
    print("\n" + table)
    print(f"load average before: {load}, after: {os.getloadavg()}")
    if not tcpdump:
        print("tcpdump is not installed: its rows are missing")
    if not is_quick:
        out = HERE / "results" / f"capture-{time.strftime('%Y%m%dT%H%M%S')}.json"
        out.write_text(
            json.dumps(
                {
                    "loadavg_before": load,
                    "loadavg_after": os.getloadavg(),
                    "rows": rows,
                },
                indent=1,
            )
        )
        print(f"written {out}")
    for r in rows:
        if r["tool"] == "connstats":
            # What the capture saw is what arrived, minus what it said it dropped.
            assert r["counted"] + r["kernel_drops"] == r["arrived"], r
