"""Community ID v1 (connstats.community_id) against two independent oracles:
the ``communityid`` package (the specification's reference implementation in
Python) and Wireshark's Community ID dissector on real captures."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from importlib import resources
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import pytest
from captures import ipv4 as ip4
from captures import pcap, read_windows, tcp4, tcp6, udp4, udp6
from hypothesis import given, settings
from hypothesis import strategies as st

import connstats

communityid = pytest.importorskip(
    "communityid", reason="the communityid package is not installed (test extra)"
)

DATA = Path(__file__).parent / "data"
SETTINGS = settings(max_examples=300, deadline=None, database=None)

ipv4 = st.integers(0, 2**32 - 1).map(IPv4Address)
ipv6 = st.integers(0, 2**128 - 1).map(IPv6Address)
ports = st.integers(0, 65535)


@st.composite
def connections(draw, module):
    v6 = draw(st.booleans())
    addr = ipv6 if v6 else ipv4
    src = draw(addr)
    # equal addresses too: then the ports decide the order
    dst = draw(st.one_of(st.just(src), addr))
    proto = draw(st.sampled_from([6, 17, 132, 2, 47, 50, 89, 99, 103]))
    if proto in (6, 17, 132):
        sport, dport = draw(ports), draw(st.one_of(st.just(0), ports))
    else:
        sport = dport = 0
    return module.Connection(
        proto, module.AddrPort(src, sport), module.AddrPort(dst, dport)
    )


def reference(conn, seed=0):
    calc = communityid.CommunityID(seed=seed)
    src, dst = str(conn.src.addr), str(conn.dst.addr)
    if conn.proto in (6, 17, 132):
        flow = communityid.FlowTuple(conn.proto, src, dst, conn.src.port, conn.dst.port)
    else:
        flow = communityid.FlowTuple(conn.proto, src, dst)
    return calc.calc(flow)


def test_matches_the_communityid_package(impl):
    @SETTINGS
    @given(connections(impl.module), st.integers(0, 65535))
    def check(conn, seed):
        ours = connstats.community_id(conn, seed=seed)
        assert ours == reference(conn, seed)
        # both directions of a flow: one ID
        back = impl.Connection(conn.proto, conn.dst, conn.src)
        assert connstats.community_id(back, seed=seed) == ours

    check()


def test_icmp_is_hashed_without_type_and_code(impl, monkeypatch):
    # The counting key keeps no ICMP type/code: the ID is the specification's
    # for a protocol without ports (docs/analysing.md), which the package
    # computes once ICMP is taken out of its port protocols.
    from communityid import algo

    monkeypatch.setattr(algo, "PORT_PROTOS", algo.PORT_PROTOS - {1, 58})
    for proto, a, b in (
        (1, "192.0.2.1", "198.51.100.2"),
        (58, "2001:db8::1", "fe80::2"),
    ):
        conn = impl.Connection(
            proto, impl.AddrPort(ip_address(a), 0), impl.AddrPort(ip_address(b), 0)
        )
        flow = communityid.FlowTuple(proto, a, b)
        assert connstats.community_id(conn) == communityid.CommunityID().calc(flow)


def test_connections_without_an_id(impl):
    a = impl.AddrPort(IPv4Address("192.0.2.1"), 5)
    b = impl.AddrPort(IPv4Address("192.0.2.2"), 6)
    six = impl.AddrPort(IPv6Address("::1"), 6)
    for conn, why in (
        (impl.Connection(), "no addresses"),
        (impl.Connection(6, a, impl.AddrPort(None, 0)), "no addresses"),
        (impl.Connection(0, a, b), "protocol 0"),  # physical / unreadable transport
        (impl.Connection(255, a, b), "protocol 255"),  # later fragments
        (impl.Connection(6, a, six), "mixes"),
    ):
        with pytest.raises(ValueError, match=why):
            connstats.community_id(conn)


@pytest.mark.parametrize(
    "seed, error",
    [(-1, ValueError), (65536, ValueError), (True, TypeError), ("1", TypeError)],
)
def test_bad_seed(seed, error):
    conn = connstats.Connection(
        6,
        connstats.AddrPort(IPv4Address("1.2.3.4"), 1),
        connstats.AddrPort(IPv4Address("1.2.3.5"), 2),
    )
    with pytest.raises(error, match="seed"):
        connstats.community_id(conn, seed=seed)
    with pytest.raises(TypeError, match="connection"):
        connstats.community_id("tcp 1.2.3.4:1 -> 1.2.3.5:2")


# -- against Wireshark ---------------------------------------------------------------


def tshark_ids(path: Path, seed: int) -> set[str]:
    """The Community IDs Wireshark gives the TCP, UDP and SCTP packets of a capture."""
    out = subprocess.run(
        [
            "tshark", "--enable-protocol", "communityid", "-o", f"communityid.seed:{seed}",
            "-r", str(path), "-T", "fields", "-E", "separator=,",
            "-e", "ip.proto", "-e", "ipv6.nxt", "-e", "communityid",
        ],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    ids = set()
    for line in out.splitlines():
        v4, v6, cid = line.split(",")
        proto = int(v4 or v6 or -1)
        if proto in (6, 17, 132) and cid:
            ids.add(cid)
    return ids


def generated_capture(tmp_path: Path) -> Path:
    packets = [
        tcp4("192.0.2.1", 40000, "198.51.100.7", 443, b"hello"),
        tcp4("198.51.100.7", 443, "192.0.2.1", 40000, b"world"),
        udp4("10.1.2.3", 5353, "10.1.2.3", 53, b"q"),
        udp6("2001:db8::1", 53, "2001:db8::1", 5353, b"a"),
        tcp6("fe80::1", 22, "2001:db8:ffff::2", 51000),
        # SCTP: common header (ports, tag, checksum) and an empty DATA chunk
        ip4(
            "192.0.2.9",
            "192.0.2.10",
            132,
            struct.pack(">HHII", 36412, 2905, 7, 0) + bytes(16),
        ),
    ]
    frames = [(1_700_000_000_000_000_000 + i * 1000, p) for i, p in enumerate(packets)]
    path = tmp_path / "flows.pcap"
    path.write_bytes(pcap(frames, 101))  # LINKTYPE_RAW
    return path


@pytest.mark.skipif(
    shutil.which("tshark") is None, reason="tshark (Wireshark) is not installed"
)
@pytest.mark.parametrize("seed", [0, 123])
def test_matches_wireshark_on_captures(impl, tmp_path, seed):
    sample = resources.files("connstats") / "data" / "sample.pcap"
    with resources.as_file(sample) as sample_path:
        paths = [
            Path(sample_path),
            DATA / "lo-s96.pcap",
            DATA / "lo-s96.pcapng",
            generated_capture(tmp_path),
        ]
        for path in paths:
            windows, _ = read_windows(path.read_bytes())
            ours = {
                connstats.community_id(conn, seed=seed)
                for w in windows
                for conn in w.virtual
                if conn.proto in (6, 17, 132)
            }
            theirs = tshark_ids(path, seed)
            assert theirs, path  # the capture has such flows
            assert ours == theirs, path


def test_loaded_when_first_used():
    # `import connstats` leaves hashlib out (start-up of the command line);
    # the name still works as an attribute, through `from connstats import`
    # and in dir().
    code = (
        "import sys\n"
        "import connstats\n"
        "assert 'hashlib' not in sys.modules, 'hashlib loaded by import connstats'\n"
        "assert 'community_id' in dir(connstats)\n"
        "from connstats import community_id\n"
        "from connstats.export.community_id import community_id as original\n"
        "assert community_id is original is connstats.community_id\n"
        "from ipaddress import ip_address as ip\n"
        "a, b = connstats.AddrPort(ip('10.0.0.1'), 1), connstats.AddrPort(ip('10.0.0.2'), 2)\n"
        "print(community_id(connstats.Connection(6, a, b)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("1:")
