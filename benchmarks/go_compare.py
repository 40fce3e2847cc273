"""connstats against a Go port of Tailscale's net/connstats, on the same packets.

    python benchmarks/go_compare.py                      # 1, 100k, 1M; single and batch
    python benchmarks/go_compare.py --conns 100000 --pairs 9 --path single
    python benchmarks/go_compare.py --check              # same counts (mixed workload), then exit

``benchmarks/goport`` is a small Go program written for this comparison: it
decodes each packet into a ``packet.Parsed``-like struct with
``netip.AddrPort`` endpoints, skips Tailscale's service addresses, and counts
in a ``map[Connection]Counts`` under one ``sync.Mutex``, as the Go package's
``UpdateTxVirtual`` does (read ``net/connstats/stats.go`` and
``net/packet/packet.go`` in github.com/tailscale/tailscale for the shape).
It is built here with the ``go`` found on PATH (Debian's golang-go, Go 1.19).

Both sides get the packets of ``scale_probe.build`` (IPv4 UDP, 789 bytes,
``--conns`` connections in a cycle), warm their table with one round, then
time rounds; connstats runs in ``scale_probe.py`` (the single path calls
``update_tx_virtual`` per packet, the batch path ``update_tx_virtual_batch``
with 256 packets), the Go port loops over the same packets (it has no batch
entry point: its "batch" is the same loop over batches of 256).  Each pair
runs the two back to back, alternating which goes first, in fresh
processes; the ratio Go ns / connstats ns of every pair is kept and the
median over pairs reported, so a loaded machine slows both sides of a pair
alike.  Prints one JSON object per case.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import scale_probe  # noqa: E402

GOPORT = HERE / "goport"


def go_available() -> bool:
    return shutil.which("go") is not None


def build_goport(out_dir: Path) -> Path:
    """Build benchmarks/goport into out_dir; offline (it has no dependencies)."""
    exe = out_dir / "goport"
    env = dict(
        os.environ,
        GOPROXY="off",
        GOFLAGS="-mod=mod",
        GOCACHE=os.environ.get("GOCACHE") or str(out_dir / "gocache"),
        GOPATH=os.environ.get("GOPATH") or str(out_dir / "gopath"),
    )
    subprocess.run(
        ["go", "build", "-o", str(exe), "."],
        cwd=GOPORT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return exe


def write_packets(packets: list[bytes], path: Path) -> None:
    head = struct.Struct("<I").pack
    with open(path, "wb") as f:
        for p in packets:
            f.write(head(len(p)))
            f.write(p)


def _repeat(conns: int) -> int:
    # what scale_probe does for the one-connection case (1,000 packets)
    return max(1, 100_000 // 1000) if conns == 1 else 1


def run_go(exe: Path, packet_file: Path, conns: int, path: str, rounds: int) -> dict:
    out = subprocess.run(
        [
            str(exe),
            "-packets",
            str(packet_file),
            "-path",
            path,
            "-rounds",
            str(rounds),
            "-repeat",
            str(_repeat(conns)),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    return json.loads(out.stdout)


def run_connstats(conns: int, path: str, rounds: int) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            str(HERE / "scale_probe.py"),
            "--conns",
            str(conns),
            "--path",
            path,
            "--rounds",
            str(rounds),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    return json.loads(out.stdout)


def compare(
    exe: Path, tmp: Path, conns: int, path: str, pairs: int, rounds: int
) -> dict:
    packet_file = tmp / f"packets-{conns}.bin"
    if not packet_file.exists():
        write_packets(scale_probe.build(conns, scale_probe.PACKET_SIZE), packet_file)
    go_ns, cs_ns, ratios = [], [], []
    for i in range(pairs):
        if i % 2 == 0:
            g = run_go(exe, packet_file, conns, path, rounds)
            c = run_connstats(conns, path, rounds)
        else:
            c = run_connstats(conns, path, rounds)
            g = run_go(exe, packet_file, conns, path, rounds)
        assert g["connections"] == conns, g
        # the minimum of each side's rounds: the least disturbed round
        go_ns.append(g["ns_min"])
        cs_ns.append(c["ns_min"])
        ratios.append(g["ns_min"] / c["ns_min"])
    return {
        "conns": conns,
        "path": path,
        "pairs": pairs,
        "rounds": rounds,
        "go_ns": round(statistics.median(go_ns), 1),
        "connstats_ns": round(statistics.median(cs_ns), 1),
        "go_over_connstats": round(statistics.median(ratios), 2),
        "ratios": [round(r, 2) for r in ratios],
        "loadavg": os.getloadavg(),
    }


def go_table(exe: Path, packets: list[bytes], tmp: Path) -> list[str]:
    """What the Go port counts for one pass over packets, as sorted lines."""
    packet_file = tmp / "check.bin"
    write_packets(packets, packet_file)
    out = subprocess.run(
        [str(exe), "-packets", str(packet_file), "-dump"],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return out.stdout.splitlines()


def connstats_table(packets: list[bytes]) -> list[str]:
    """The same lines from connstats (netip's AddrPort text is str(AddrPort))."""
    import connstats

    stats = connstats.Statistics(
        ignore_destinations=connstats.TAILSCALE_SERVICE_ADDRESSES
    )
    for p in packets:
        stats.update_tx_virtual(p)
    virtual, _ = stats.extract()
    return sorted(
        f"{c.proto} {c.src} {c.dst} {n.tx_packets} {n.tx_bytes} {n.rx_packets} {n.rx_bytes}"
        for c, n in virtual.items()
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--conns", type=int, action="append")
    p.add_argument("--path", choices=("single", "batch"), action="append")
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--check", action="store_true", help="compare the tables only")
    args = p.parse_args(argv)
    if not go_available():
        print(
            "go not found on PATH (Debian: apt-get install golang-go)", file=sys.stderr
        )
        return 2
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        exe = build_goport(tmp)
        if args.check:
            import workloads

            packets = workloads.mixed(packets=20_000, flows=2_000)
            ok = go_table(exe, packets, tmp) == connstats_table(packets)
            print(json.dumps({"same_counts": ok}))
            return 0 if ok else 1
        for conns in args.conns or [1, 100_000, 1_000_000]:
            for path in args.path or ["single", "batch"]:
                result = compare(exe, tmp, conns, path, args.pairs, args.rounds)
                print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
