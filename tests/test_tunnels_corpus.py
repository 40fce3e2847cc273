"""tcpdump's tunnel captures read with decapsulation, tshark as the oracle.

``tests/data/tunnels/`` (see its README) holds VXLAN, VXLAN-GPE, Geneve, GRE,
ERSPAN I/II/III and MPLS-over-UDP captures from tcpdump's test suite.  For
every frame tshark's innermost IP header is the virtual row and its
outermost the physical row (tests/tshark_tunnels.py); the counts per
(proto, src, dst, vni) must be tshark's, packets and IP bytes, on both
scanners and both cores.
"""

from __future__ import annotations

import io
from pathlib import Path

import captures as cap
import pytest
import tshark_tunnels as tt

from connstats.capture import CaptureReader
from connstats.capture.windows import Replayer

DATA = Path(__file__).parent / "data" / "tunnels"
CORPUS = sorted(p for p in DATA.glob("*.pcap") if "heapoverflow" not in p.name)
MALFORMED = sorted(DATA.glob("*heapoverflow*.pcap"))
ALL = 31


def replay(path: Path, scanner, impl, decap: int = ALL):
    windows: list = []
    replayer = Replayer(windows.append, core_module=impl.module)
    reader = CaptureReader(
        io.BytesIO(path.read_bytes()), path.name, scanner_class=scanner, decap=decap
    )
    replayer.feed(reader)
    replayer.finish()
    virtual: dict = {}
    physical: dict = {}
    for w in windows:
        for table, out in ((w.virtual, virtual), (w.physical, physical)):
            for c, n in table.items():
                key = (c.proto, str(c.src), str(c.dst), c.vni)
                assert n.rx_packets == n.rx_bytes == 0
                before = out.get(key, (0, 0))
                out[key] = (before[0] + n.tx_packets, before[1] + n.tx_bytes)
    return virtual, physical, reader


@pytest.fixture(scope="module")
def oracle():
    if tt.TSHARK is None:
        pytest.skip("tshark is not installed (apt-get install tshark)")
    found = tt.frames_of_files(CORPUS)
    cache = {p: (*tt.expected(f), f) for p, f in found.items()}
    return cache.__getitem__


@pytest.mark.parametrize("scanner_name", cap.SCANNERS)
@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_counts_are_tsharks(path, scanner_name, impl, oracle):
    virtual, physical, reader = replay(path, cap.scanner_class(scanner_name), impl)
    expected_virtual, expected_physical, frames = oracle(path)
    assert virtual == expected_virtual
    assert physical == expected_physical
    # each IP frame is one packet, whichever way it was counted
    assert reader.packets == sum(1 for f in frames if f["layers"])


def test_the_corpus_has_every_kind(oracle):
    """The comparison above is not vacuous: each kind is in it, decapsulated."""
    found: dict[str, int] = {}
    for path in CORPUS:
        for frame in oracle(path)[2]:
            if len(frame["layers"]) >= 2:
                found[path.name.split("-")[0].split("_")[0].split(".")[0]] = 1
    assert {"vxlan", "nsh", "geneve", "gso", "various", "erspan", "mpls"} <= set(found)


@pytest.mark.parametrize(
    "path", CORPUS + MALFORMED, ids=[p.name for p in CORPUS + MALFORMED]
)
def test_scanners_agree_and_decap_only_moves_counts(path, impl):
    """Both scanners give the same tables; decapsulation moves packets from
    the outer rows to inner and physical rows but loses none."""
    results = [replay(path, cap.scanner_class(s), impl) for s in cap.SCANNERS]
    assert all(r[:2] == results[0][:2] for r in results)
    for s in cap.SCANNERS:
        plain, none, reader = replay(path, cap.scanner_class(s), impl, decap=0)
        assert none == {}
        virtual, physical, decapsulated = replay(path, cap.scanner_class(s), impl)
        assert reader.packets == decapsulated.packets
        assert sum(n for n, _ in plain.values()) == decapsulated.packets
        assert sum(n for n, _ in physical.values()) == decapsulated.tunnels
