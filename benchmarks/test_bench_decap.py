"""What ``connstats read --decap`` costs (issue 21): on a capture without
tunnels it must stay within 5% of reading without it.

Run on purpose (``benchmarks/`` is outside the default test paths)::

    python -m pytest benchmarks/test_bench_decap.py -p no:cacheprovider -s

The capture is ``gen_pcap.py``'s (1M Ethernet frames, no tunnel;
CONNSTATS_BENCH_PACKETS changes the count; 20,000 with
``--benchmark-disable``), and a VXLAN copy of it: every frame wrapped in
Ethernet/IPv4/UDP 4789/VXLAN, for the cost of decapsulating for real.

* pytest-benchmark rounds: ``connstats read`` without and with ``--decap``
  on the plain capture, ``--decap`` on the VXLAN one, and the dpkt loop of
  ``test_bench_read.py`` as the pure-Python baseline of the same run.
* ``test_decap_cpu_interleaved``: the command's CPU time (user + system of
  this process), plain and ``--decap`` alternating round after round
  (CONNSTATS_BENCH_ROUNDS, default 9), medians and their ratio, and the same
  for the record scanner alone (``Scanner.scan`` over the whole file in
  memory, the only stage ``--decap`` changes on such a capture).
* ``test_decap_instructions``: instructions of the whole command under
  ``valgrind --tool=cachegrind --cache-sim=no`` on a 1M-packet capture
  (CONNSTATS_BENCH_GRIND_PACKETS), plain and ``--decap``, each less its own
  run on a one-packet capture (start-up, and the arrays ``--decap``
  allocates once per file): deterministic, the figure for a loaded machine.

No timed assertion: the figures are printed and recorded in
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

import gen_pcap
import pytest

from connstats.cli import main as connstats_main

PACKETS = int(os.environ.get("CONNSTATS_BENCH_PACKETS", gen_pcap.DEFAULT_PACKETS))
QUICK_PACKETS = 20_000
ROUNDS = int(os.environ.get("CONNSTATS_BENCH_ROUNDS", "9"))
GRIND_PACKETS = int(os.environ.get("CONNSTATS_BENCH_GRIND_PACKETS", "1000000"))


@pytest.fixture(scope="session")
def plain_pcap(tmp_path_factory, is_quick) -> tuple[str, int]:
    packets = QUICK_PACKETS if is_quick else PACKETS
    path = tmp_path_factory.mktemp("decap") / "plain.pcap"
    return str(gen_pcap.generate(path, packets)), packets


def vxlan_copy(src: str, dst: str) -> str:
    """Every Ethernet frame of ``src`` inside VXLAN (VNI 42) between two hosts."""
    outer_eth = bytes.fromhex("020000000002020000000001") + b"\x08\x00"
    record = struct.Struct("<IIII")
    with open(src, "rb") as f, open(dst, "wb") as out:
        out.write(f.read(24))
        data = f.read()
        at = 0
        chunk = []
        while at + 16 <= len(data):
            sec, frac, caplen, orig = record.unpack_from(data, at)
            frame = data[at + 16 : at + 16 + caplen]
            at += 16 + caplen
            payload = struct.pack(">B3sI", 8, b"\0\0\0", 42 << 8) + frame
            udp = struct.pack(
                ">HHHH", 49152 + (caplen & 0xFF), 4789, 8 + len(payload), 0
            )
            ip = struct.pack(
                ">BBHHHBBH4s4s",
                0x45,
                0,
                20 + len(udp) + len(payload),
                0,
                0x4000,
                64,
                17,
                0,
                bytes([192, 0, 2, 1]),
                bytes([192, 0, 2, 2]),
            )
            wrapped = outer_eth + ip + udp + payload
            chunk.append(record.pack(sec, frac, len(wrapped), len(wrapped)) + wrapped)
            if len(chunk) >= 20000:
                out.write(b"".join(chunk))
                chunk.clear()
        out.write(b"".join(chunk))
    return dst


@pytest.fixture(scope="session")
def vxlan_pcap(plain_pcap, tmp_path_factory) -> tuple[str, int]:
    path, packets = plain_pcap
    dst = tmp_path_factory.mktemp("decap") / "vxlan.pcap"
    return vxlan_copy(path, str(dst)), packets


def _read(path: str, *extra: str) -> int:
    return connstats_main(["read", path, "--output", os.devnull, *extra])


def _info(benchmark, path: str, count: int, what: str) -> None:
    benchmark.extra_info.update(
        unit="packet",
        count=count,
        workload=f"decap-pcap-{count}",
        path=what,
        direction="tx",
    )


@pytest.mark.benchmark(group="read-decap")
def test_read_plain(benchmark, plain_pcap):
    path, count = plain_pcap
    _info(benchmark, path, count, "read")
    assert benchmark.pedantic(_read, args=(path,), rounds=5, warmup_rounds=1) == 0


@pytest.mark.benchmark(group="read-decap")
def test_read_plain_with_decap(benchmark, plain_pcap):
    path, count = plain_pcap
    _info(benchmark, path, count, "read --decap (no tunnel)")
    result = benchmark.pedantic(
        _read, args=(path, "--decap"), rounds=5, warmup_rounds=1
    )
    assert result == 0


@pytest.mark.benchmark(group="read-decap")
def test_read_vxlan_with_decap(benchmark, vxlan_pcap):
    path, count = vxlan_pcap
    _info(benchmark, path, count, "read --decap (all VXLAN)")
    result = benchmark.pedantic(
        _read, args=(path, "--decap"), rounds=5, warmup_rounds=1
    )
    assert result == 0


@pytest.mark.benchmark(group="read-decap")
def test_dpkt_baseline(benchmark, plain_pcap):
    pytest.importorskip("dpkt")
    from test_bench_read import run_dpkt

    path, count = plain_pcap
    _info(benchmark, path, count, "baseline")
    counts = benchmark.pedantic(run_dpkt, args=(path,), rounds=1, iterations=1)
    assert sum(c[0] for c in counts.values()) == count


def _cpu(fn, *args) -> float:
    start = time.process_time()
    fn(*args)
    return time.process_time() - start


def _scan_all(data: bytes, decap: int) -> int:
    """The compiled scanner over a whole classic pcap in memory."""
    from connstats.capture._scan import Scanner

    scanner = Scanner(65536)
    scanner.set_pcap(False, False, 1, 262144)
    if decap:
        scanner.set_decap(decap)
    pos, end, packets = 24, len(data), 0
    while True:
        status = scanner.scan(data, pos, end, False, 0, 0)
        packets += scanner.n_packets
        pos = scanner.pos
        if status != 0:  # not full: the end of the data
            return packets


def test_decap_cpu_interleaved(plain_pcap, vxlan_pcap, is_quick, capsys):
    from connstats.capture._scan import IS_COMPILED

    path, count = plain_pcap
    rounds = 1 if is_quick else ROUNDS
    plain: list[float] = []
    decap: list[float] = []
    load = os.getloadavg()[0]
    for _ in range(rounds):
        plain.append(_cpu(_read, path))
        decap.append(_cpu(_read, path, "--decap"))
    data = Path(path).read_bytes()
    scan_plain: list[float] = []
    scan_decap: list[float] = []
    if IS_COMPILED:
        for _ in range(rounds * 3):
            scan_plain.append(_cpu(_scan_all, data, 0))
            scan_decap.append(_cpu(_scan_all, data, 31))
    tunnel = [_cpu(_read, vxlan_pcap[0], "--decap") for _ in range(max(1, rounds // 3))]
    with capsys.disabled():
        mp, md = statistics.median(plain), statistics.median(decap)
        print(
            f"\nconnstats read, {count} packets without tunnels, CPU s (median of "
            f"{rounds}, interleaved; load {load:.2f} -> {os.getloadavg()[0]:.2f}):\n"
            f"  plain   {mp:.3f}  ({' '.join(f'{t:.3f}' for t in plain)})\n"
            f"  --decap {md:.3f}  ({' '.join(f'{t:.3f}' for t in decap)})\n"
            f"  ratio   {md / mp:.3f}"
        )
        if scan_plain:
            sp, sd = statistics.median(scan_plain), statistics.median(scan_decap)
            print(
                f"scanner alone (Scanner.scan over the file in memory), median of "
                f"{len(scan_plain)}: plain {sp * 1e9 / count:.1f} ns/packet, "
                f"decap {sd * 1e9 / count:.1f} ns/packet, ratio {sd / sp:.3f}"
            )
        print(
            f"the same traffic all in VXLAN, --decap: "
            f"{statistics.median(tunnel):.3f} s ({statistics.median(tunnel) / mp:.2f}x "
            "the plain read)"
        )
    assert plain and decap


def _instructions(path: str, *extra: str) -> int:
    env = dict(os.environ, PYTHONHASHSEED="0")
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(root), env.get("PYTHONPATH")) if p
    )
    proc = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
         sys.executable, "-m", "connstats", "read", path, "-o", os.devnull, *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    match = re.search(r"I\s+refs:\s+([\d,]+)", proc.stderr)
    assert match, proc.stderr[-2000:]
    return int(match.group(1).replace(",", ""))


def test_decap_instructions(tmp_path, is_quick, capsys):
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed")
    if is_quick:
        pytest.skip("instruction counts take minutes; not in the smoke run")
    path = str(gen_pcap.generate(tmp_path / "grind.pcap", GRIND_PACKETS))
    one = str(gen_pcap.generate(tmp_path / "one.pcap", 1, flows=1))
    fixed_plain = _instructions(one)
    fixed_decap = _instructions(one, "--decap")
    plain = (_instructions(path) - fixed_plain) / GRIND_PACKETS
    decap = (_instructions(path, "--decap") - fixed_decap) / GRIND_PACKETS
    with capsys.disabled():
        print(
            f"\ninstructions per packet, {GRIND_PACKETS} packets without tunnels "
            f"(cachegrind, one-packet run subtracted): plain {plain:.1f}, --decap "
            f"{decap:.1f}, ratio {decap / plain:.4f}; once per file: "
            f"{(fixed_decap - fixed_plain) / 1e6:.1f} M more with --decap"
        )
    assert plain > 0 and decap > 0
