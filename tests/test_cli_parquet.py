"""``--format parquet`` and ``--community-id`` of ``connstats read`` (and
``capture``): the Parquet rows are the jsonl rows of the same run, one row
group per window; the Community IDs are ``connstats.community_id``'s."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import captures as cap
import pytest

import connstats
from connstats.cli import main

pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed")

S = 1_000_000_000
T0 = 1_700_000_000 * S
DATA = Path(__file__).parent / "data"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _capture(tmp_path) -> Path:
    records = []
    for i in range(40):
        records.append(
            (
                T0 + i * 50_000_000,
                cap.udp4("10.0.0.1", 1000 + i % 5, "10.0.0.2", 53, b"x" * i),
            )
        )
        records.append(
            (
                T0 + i * 50_000_000 + 7,
                cap.tcp6("2001:db8::1", 40000, "2001:db8::2", 443, b"y"),
            )
        )
    records.append((T0 + 3 * S, cap.icmp4("10.0.0.1", "10.0.0.9")))
    path = tmp_path / "in.pcap"
    path.write_bytes(cap.pcap(records, 101, nanosecond=True))
    return path


def _jsonl_rows(out: str) -> list[tuple]:
    rows = []
    for window in map(json.loads, out.splitlines()):
        for r in window.get("virtualTraffic", []):
            rows.append((window["start"], r.get("proto", 0), r["src"], r["dst"], r.get("txPkts", 0),
                         r.get("txBytes", 0), r.get("communityId")))  # fmt: skip
    return sorted(rows)


def _endpoint(addr, port, proto):
    if addr is None:
        return None
    text = f"[{addr}]" if ":" in addr else addr
    return f"{text}:{port}"


@pytest.mark.parametrize("extra", [[], ["--max-period", "0.5"], ["--max-conns", "3"]])
def test_parquet_rows_are_the_jsonl_rows(capsys, tmp_path, extra):
    path = _capture(tmp_path)
    out_file = tmp_path / "out.parquet"
    code, out, err = run(
        capsys,
        "read",
        path,
        "--format",
        "parquet",
        "-o",
        out_file,
        "--community-id",
        *extra,
    )
    assert code == 0, err
    assert out == ""
    code, text, _ = run(
        capsys, "read", path, "--format", "jsonl", "--community-id", *extra
    )
    windows = text.splitlines()
    meta = pq.ParquetFile(out_file).metadata
    assert meta.num_row_groups == len(windows)  # one per window
    table = pq.read_table(out_file)
    rows = []
    from connstats.cli.output import rfc3339

    for r in table.to_pylist():
        start_ns = (
            int(r["window_start"].timestamp()) * S
            + r["window_start"].microsecond * 1000
        )
        rows.append((rfc3339(start_ns), r["proto"], _endpoint(r["src_addr"], r["src_port"], r["proto"]),
                     _endpoint(r["dst_addr"], r["dst_port"], r["proto"]), r["tx_packets"], r["tx_bytes"],
                     r["communityId"]))  # fmt: skip
    assert sorted(rows) == _jsonl_rows(text)
    assert all(r["first_seen"] <= r["last_seen"] for r in table.to_pylist())
    # dictionaries where values repeat (addresses, ports), not for counters
    group = meta.row_group(0)
    encodings = {
        group.column(i).path_in_schema: group.column(i).encodings
        for i in range(group.num_columns)
    }
    assert "RLE_DICTIONARY" in encodings["src_addr"]
    assert "RLE_DICTIONARY" not in encodings["tx_bytes"]


def test_community_id_in_every_format(capsys, tmp_path):
    path = DATA / "lo-s96.pcap"
    code, text, _ = run(capsys, "read", path, "--format", "jsonl", "--community-id")
    windows, _ = cap.read_windows(path.read_bytes())
    want = {
        (c.proto, str(c.src), str(c.dst)): connstats.community_id(c)
        for w in windows
        for c in w.virtual
    }
    got = {(r["proto"], r["src"], r["dst"]): r["communityId"] for m in map(json.loads, text.splitlines())
           for r in m["virtualTraffic"]}  # fmt: skip
    assert got == want
    code, text, _ = run(capsys, "read", path, "--format", "csv", "--community-id")
    lines = text.splitlines()
    header = lines[0].split(",")
    assert header[-1] == "communityId"
    assert sorted(line.split(",")[-1] for line in lines[1:]) == sorted(want.values())
    # rows without an ID: empty in CSV, no field in jsonl
    code, text, _ = run(
        capsys, "read", "--format", "csv", "--community-id", "--proto", "icmp"
    )
    assert code == 0


def test_parquet_needs_a_file(capsys):
    code, _out, err = run(capsys, "read", "--format", "parquet")
    assert code != 0 and "-o FILE" in err
    code, _out, err = run(
        capsys, "read", "--format", "parquet", "-o", "x.parquet", "--group-by", "host"
    )
    assert code != 0 and "--group-by" in err


def test_parquet_top_and_filters(capsys, tmp_path):
    path = _capture(tmp_path)
    out_file = tmp_path / "top.parquet"
    code, _out, err = run(capsys, "read", path, "--format", "parquet", "-o", out_file, "--top", "2",
                          "--proto", "udp", "--sort", "packets")  # fmt: skip
    assert code == 0, err
    table = pq.read_table(out_file)
    assert table.column("proto").to_pylist() == [17, 17]
    code, text, _ = run(
        capsys,
        "read",
        path,
        "--format",
        "jsonl",
        "--top",
        "2",
        "--proto",
        "udp",
        "--sort",
        "packets",
    )
    want = [r["txPkts"] for r in json.loads(text)["virtualTraffic"]]
    assert sorted(table.column("tx_packets").to_pylist()) == sorted(want)


IS_ROOT = getattr(os, "geteuid", lambda: -1)() == 0


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not IS_ROOT,
    reason="live capture needs Linux and root",
)
@pytest.mark.skipif(
    shutil.which("ip") is None, reason="the 'ip' command (iproute2) is not installed"
)
def test_capture_writes_parquet(tmp_path):
    ns = f"cs-pq-{os.getpid()}"
    out_file = tmp_path / "live.parquet"
    try:
        made = subprocess.run(
            ["ip", "netns", "add", ns], capture_output=True, timeout=30
        )
        if made.returncode:
            pytest.skip(
                f"cannot create a network namespace: {made.stderr.decode().strip()}"
            )
        subprocess.run(
            ["ip", "-n", ns, "link", "set", "lo", "up"], check=True, timeout=30
        )
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "connstats", "capture", "-i", "lo",
             "--duration", "2", "--format", "parquet", "-o", str(out_file),
             "--community-id"],
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert proc.stderr is not None
            proc.stderr.readline()  # "capturing on lo ..."
            time.sleep(0.3)
            before = time.time_ns()
            sender = (
                "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            )
            sender += "for i in range(6): s.sendto(b'x' * 10, ('127.0.0.1', 9))"
            subprocess.run(
                ["ip", "netns", "exec", ns, sys.executable, "-c", sender],
                check=True,
                timeout=30,
            )
            _out, err = proc.communicate(timeout=60)
            after = time.time_ns()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
    rows = pq.read_table(out_file).to_pylist()
    # received on lo: swapped, the local side (port 9) first
    udp = [r for r in rows if r["proto"] == 17 and 9 in (r["src_port"], r["dst_port"])]
    assert sum(r["tx_packets"] + r["rx_packets"] for r in udp) == 6
    for r in udp:
        first = r["first_seen"].timestamp() * S
        assert before - S <= first <= r["last_seen"].timestamp() * S <= after + S
        assert r["communityId"].startswith("1:")


def test_parquet_does_not_import_pandas(tmp_path):
    # pyarrow's pa.array() of a list and pa.scalar() import pandas, where it
    # is installed, to ask whether their argument is a pandas object: 0.3 s,
    # more than the rest of writing a large window.  A stand-in pandas first
    # on the path notes whether anything tried to import it.
    from subproc import source_tree_env

    fake = tmp_path / "fake"
    (fake / "pandas").mkdir(parents=True)
    marker = tmp_path / "pandas-imported"
    (fake / "pandas" / "__init__.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nraise ImportError('stand-in pandas')\n"
    )
    env = source_tree_env()
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(fake), env.get("PYTHONPATH")) if p
    )
    out = tmp_path / "out.parquet"
    argv = ["read", str(_capture(tmp_path)), "--format", "parquet", "--community-id"]
    subprocess.run(
        [sys.executable, "-m", "connstats", *argv, "-o", str(out)], env=env, check=True
    )
    table = pq.read_table(out)
    assert table.num_rows == 7
    assert table.column("communityId").null_count == 0
    assert not marker.exists(), "writing Parquet imported pandas"
    # the stand-in is the pandas pyarrow would import
    subprocess.run(
        [sys.executable, "-c", "import pyarrow as pa; pa.scalar(1)"],
        env=env,
        check=True,
    )
    assert marker.exists()
