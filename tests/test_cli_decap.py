"""``connstats read --decap``: the option, the vni in every format, the summary.

tshark is the oracle for the rows (tests/tshark_tunnels.py): the JSON lines
and CSV rows of tcpdump's tunnel captures must carry its counts and VNIs.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import captures as cap
import pytest
import tshark_tunnels as tt

from connstats.cli import main
from connstats.cli.arguments import attach_optional_lists

DATA = Path(__file__).parent / "data" / "tunnels"
FILES = ["vxlan.pcap", "geneve.pcap", "various_gre.pcap", "erspan-type-ii-2.pcap"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _key(row: dict) -> tuple:
    return (row.get("proto", 0), row["src"], row["dst"], row.get("vni"))


@pytest.fixture(scope="module")
def oracle():
    if tt.TSHARK is None:
        pytest.skip("tshark is not installed (apt-get install tshark)")
    found = tt.frames_of_files([DATA / f for f in FILES])
    return {p.name: tt.expected(f) for p, f in found.items()}


@pytest.mark.parametrize("name", FILES)
def test_jsonl_rows_are_tsharks(capsys, oracle, name):
    code, out, _ = run(capsys, "read", "--decap", str(DATA / name), "--format", "jsonl")
    assert code == 0
    (message,) = [json.loads(line) for line in out.splitlines()]
    got = []
    for table in ("virtualTraffic", "physicalTraffic"):
        got.append(
            {
                _key(r): (r.get("txPkts", 0), r.get("txBytes", 0))
                for r in message.get(table, [])
            }
        )
    want_virtual, want_physical = oracle[name]
    assert got[0] == want_virtual
    assert got[1] == want_physical


@pytest.mark.parametrize("name", FILES)
def test_csv_rows_are_tsharks(capsys, oracle, name):
    code, out, _ = run(capsys, "read", str(DATA / name), "--decap", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0])[-1] == "vni"
    virtual: dict = {}
    physical: dict = {}
    for r in rows:
        port = r["src_port"]
        src = f"[{r['src_addr']}]" if ":" in r["src_addr"] else r["src_addr"]
        dst = f"[{r['dst_addr']}]" if ":" in r["dst_addr"] else r["dst_addr"]
        key = (
            int(r["proto"]),
            f"{src}:{port}",
            f"{dst}:{r['dst_port']}",
            int(r["vni"]) if r["vni"] else None,
        )
        table = physical if r["kind"] == "physical" else virtual
        table[key] = (int(r["tx_packets"]), int(r["tx_bytes"]))
    assert (virtual, physical) == oracle[name]


def test_the_general_path_writes_the_vni_too(capsys):
    """--times and --conversations leave the fast row writers: same VNIs."""
    path = str(DATA / "geneve.pcap")
    code, out, _ = run(capsys, "read", path, "--decap", "--format", "csv", "--times")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {r["vni"] for r in rows} == {"10", "11"}
    code, out, _ = run(
        capsys, "read", path, "--decap", "--format", "jsonl", "--conversations"
    )
    message = json.loads(out)
    assert {r["vni"] for r in message["conversations"]} == {10, 11}
    assert {r["vni"] for r in message["physicalTraffic"]} == {10, 11}


def test_table_shows_a_vni_column_only_when_a_row_has_one(capsys):
    code, out, _ = run(capsys, "read", str(DATA / "vxlan.pcap"), "--decap")
    header = next(line for line in out.splitlines() if line.startswith("PROTO"))
    assert header.split()[:4] == ["PROTO", "SOURCE", "DESTINATION", "VNI"]
    assert "10 decapsulated" in out
    code, out, _ = run(capsys, "read", str(DATA / "vxlan.pcap"))
    assert "VNI" not in out and "decapsulated" not in out
    # IP in IP has no VNI: no column, but the summary
    packet = cap.ip_tunnel(
        "192.0.2.1", "192.0.2.2", 4, cap.udp4("10.0.0.1", 1, "10.0.0.2", 2)
    )
    data = cap.pcap([(0, packet)], 101)
    code, out, _ = run_stdin(capsys, data, "read", "-", "--decap")
    assert "VNI" not in out and "1 decapsulated" in out
    assert "udp    10.0.0.1:1" in out and "phys   192.0.2.1" in out


def run_stdin(capsys, data: bytes, *argv: str) -> tuple[int, str, str]:
    import sys

    class Stdin:
        buffer = io.BytesIO(data)

    real = sys.stdin
    sys.stdin = Stdin()  # type: ignore[assignment]
    try:
        return run(capsys, *argv)
    finally:
        sys.stdin = real


def test_without_decap_nothing_changes(capsys):
    path = str(DATA / "vxlan.pcap")
    code, out, _ = run(capsys, "read", path, "--format", "csv")
    assert out.splitlines()[0].split(",")[-1] == "rx_bytes"
    code, out, _ = run(capsys, "read", path, "--format", "jsonl")
    message = json.loads(out)
    assert "physicalTraffic" not in message
    assert all("vni" not in r for r in message["virtualTraffic"])
    assert {r["dst"] for r in message["virtualTraffic"]} == {
        "192.168.203.1:4789",
        "192.168.202.1:4789",
    }


def test_decap_lists(capsys):
    path = str(DATA / "vxlan.pcap")
    # a list that leaves VXLAN out: the capture reads as without --decap
    code, out, _ = run(capsys, "read", path, "--decap=gre,ipip", "--format", "jsonl")
    assert "physicalTraffic" not in json.loads(out)
    code, out, _ = run(capsys, "read", "--decap", "vxlan", path, "--format", "jsonl")
    assert "physicalTraffic" in json.loads(out)
    code, _, err = run_usage(capsys, "read", path, "--decap=vxlan,l2tp")
    assert code == 2 and "'vxlan,l2tp' is not a list of tunnels" in err


def run_usage(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_a_bare_decap_before_a_file_means_all():
    assert attach_optional_lists(["read", "--decap", "a.pcap"], ("--decap",)) == [
        "read",
        "--decap=all",
        "a.pcap",
    ]
    assert attach_optional_lists(["read", "--decap"], ("--decap",)) == [
        "read",
        "--decap=all",
    ]
    assert attach_optional_lists(["read", "--decap", "-"], ("--decap",))[1] == (
        "--decap=all"
    )
    assert attach_optional_lists(
        ["read", "--decap", "VXLAN,gre", "a.pcap"], ("--decap",)
    ) == ["read", "--decap", "VXLAN,gre", "a.pcap"]
    assert attach_optional_lists(["read", "--decap=gre", "a"], ("--decap",)) == [
        "read",
        "--decap=gre",
        "a",
    ]


def test_malformed_tunnels_are_counted_whole_and_said(capsys):
    inner = cap.udp4("10.0.0.1", 1, "10.0.0.2", 2)
    bad = cap.udp_tunnel(
        "192.0.2.1", "192.0.2.2", 4789, cap.vxlan(cap.ethernet(inner), 5, flags=0)
    )
    data = cap.pcap([(0, bad)], 101)
    code, out, _ = run_stdin(capsys, data, "read", "-", "--decap", "--format", "jsonl")
    message = json.loads(out)
    assert "physicalTraffic" not in message
    assert message["virtualTraffic"][0]["dst"] == "192.0.2.2:4789"
    code, out, _ = run_stdin(capsys, data, "read", "-", "--decap")
    assert "0 decapsulated, 1 malformed tunnel counted whole" in out


def test_several_files_add_up(capsys):
    paths = [str(DATA / f) for f in FILES[:2]]
    code, out, _ = run(capsys, "read", *paths, "--decap")
    assert "all 2 files: 49 IP packets" in out and "49 decapsulated" in out


@pytest.mark.parametrize("name", FILES)
def test_parquet_rows_are_tsharks(capsys, oracle, name, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed")
    out_path = tmp_path / "out.parquet"
    code, _, _ = run(
        capsys, "read", str(DATA / name), "--decap", "--format", "parquet",
        "-o", str(out_path),
    )  # fmt: skip
    assert code == 0
    table = pq.read_table(out_path)
    assert table.schema.field("vni").type.bit_width == 32
    virtual: dict = {}
    physical: dict = {}
    for r in table.to_pylist():
        src = f"[{r['src_addr']}]" if ":" in r["src_addr"] else r["src_addr"]
        dst = f"[{r['dst_addr']}]" if ":" in r["dst_addr"] else r["dst_addr"]
        key = (r["proto"], f"{src}:{r['src_port']}", f"{dst}:{r['dst_port']}", r["vni"])
        table_of = physical if r["traffic"] == "physical" else virtual
        table_of[key] = (r["tx_packets"], r["tx_bytes"])
    assert (virtual, physical) == oracle[name]
