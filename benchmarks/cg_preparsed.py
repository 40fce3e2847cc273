"""Instruction counts of the pre-parsed entry points (issue 18), for callgrind.

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python benchmarks/cg_preparsed.py CASE

runs one CASE over ``workloads.cycling4(1000)`` (1,000 connections, 789-byte
UDP packets) ROUNDS times (default 100: 100,000 packets) into a Statistics
that already tracks every connection, and prints what it did.  Wall time on
a loaded 2-CPU guest is too noisy for differences of a few ns; instruction
counts repeat.  The per-packet cost of a CASE is its total minus that of the
``none*`` case of the same loop shape (same data, no call), divided by the
packets: ``cg_report.sh`` below in RESULTS.md does the arithmetic.

Cases (``*_py`` run the pure-Python baseline, benchmarks/baseline.py):

  none1            for p in packets: pass
  tx / tx_py       update_tx_virtual(p)
  none5            for proto, src, dst, n in flows: pass
  uv / uv_py       update_virtual(proto, src, dst, 1, n), src/dst AddrPort
  uv_rx            the same with receive=True
  uv_tuple         src/dst as (ipaddress object, port) tuples
  uv_text          src/dst as "a.b.c.d:port" strings
  none_b           for b in batches: pass         (256 packets a batch)
  txb / txb_py     update_tx_virtual_batch(list of 256 packets)
  txbuf            update_tx_virtual_buffer(buffer, offsets, lengths)
  rec / rec_py     update_records(256 records) / the baseline's list form
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import baseline  # noqa: E402
import workloads  # noqa: E402

import connstats  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "100"))


def main(case: str) -> None:
    packets = workloads.cycling4(1000)
    flows = [(*connstats.decode(p), len(p)) for p in packets]
    batch = workloads.BATCH
    batches = [packets[i : i + batch] for i in range(0, len(packets), batch)]
    buffers = [workloads.joined(b) for b in batches]
    records = []
    if case == "rec":
        record = struct.Struct(connstats.RECORD_FORMAT)
        records = [
            b"".join(
                record.pack(
                    proto, 0, 4, 4, s.port, d.port, s.addr.packed, d.addr.packed, 1, n
                )
                for proto, s, d, n in flows[i : i + batch]
            )
            for i in range(0, len(flows), batch)
        ]
    plain = [(proto, s, d, 1, n) for proto, s, d, n in flows]
    plain_batches = [plain[i : i + batch] for i in range(0, len(plain), batch)]
    stats = baseline.Statistics() if case.endswith("_py") else connstats.Statistics()
    for p in packets:  # every connection tracked before counting starts
        stats.update_tx_virtual(p)
    if case == "uv_tuple":
        flows = [(pr, (s.addr, s.port), (d.addr, d.port), n) for pr, s, d, n in flows]
    elif case == "uv_text":
        flows = [(pr, str(s), str(d), n) for pr, s, d, n in flows]

    for _ in range(ROUNDS):
        if case == "none1":
            for p in packets:
                pass
        elif case in ("tx", "tx_py"):
            f = stats.update_tx_virtual
            for p in packets:
                f(p)
        elif case == "none5":
            for proto, src, dst, n in flows:
                pass
        elif case in ("uv", "uv_py", "uv_tuple", "uv_text"):
            f = stats.update_virtual
            for proto, src, dst, n in flows:
                f(proto, src, dst, 1, n)
        elif case == "uv_rx":
            f = stats.update_virtual
            for proto, src, dst, n in flows:
                f(proto, src, dst, 1, n, receive=True)
        elif case == "none_b":
            for b in batches:
                pass
        elif case in ("txb", "txb_py"):
            f = stats.update_tx_virtual_batch
            for b in batches:
                f(b)
        elif case == "txbuf":
            f = stats.update_tx_virtual_buffer
            for buf, offsets, lengths in buffers:
                f(buf, offsets, lengths)
        elif case == "rec":
            f = stats.update_records
            for b in records:
                f(b)
        elif case == "rec_py":
            f = stats.update_virtual_many
            for b in plain_batches:
                f(b)
        else:
            raise SystemExit(f"unknown case {case!r}")
    virtual, _ = stats.extract()
    counted = sum(c.tx_packets + c.rx_packets for c in virtual.values())
    print(f"{case}: {ROUNDS} rounds, {len(virtual)} connections, {counted} packets")


if __name__ == "__main__":
    main(sys.argv[1])
