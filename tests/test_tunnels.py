"""Tunnel decapsulation (docs/tunnels.md): the walk, the library's decap(),
the core's physical buffers and VNIs, the capture scanner's outputs.

Packets are built by hand (tests/captures.py) from the RFCs, so the builder
knows where the inner packet is and what the VNI is: that is the oracle here.
The same walk is compiled into the core and into the capture scanner, and
written in Python in connstats/_fastparse_py.py: every case runs on all
three, and a property test compares them on mutated packets.
"""

from __future__ import annotations

import importlib
import io
import ipaddress
import pickle
import struct
from array import array

import captures as cap
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import connstats
from connstats import _fastparse_py as ref
from connstats._protocols import TUNNELS, tunnel_mask

ALL = ref.TUNNEL_ALL
INNER4 = cap.tcp4("10.1.0.1", 1000, "10.1.0.2", 80, b"hello")
INNER6 = cap.udp6("fd00::1", 53, "fd00::2", 5353, b"x" * 11)
O4 = ("192.0.2.1", "192.0.2.2")
O6 = ("2001:db8::1", "2001:db8::2")


def _walks():
    """decap_walk of every implementation: the reference, the compiled core's,
    the compiled scanner's."""
    out = [pytest.param(ref.decap_walk, id="py")]
    try:
        core = importlib.import_module("connstats._fastparse")
        scanner = importlib.import_module("connstats.capture._capture")
    except ImportError:
        return out
    out.append(pytest.param(core.decap_walk, id="core"))
    out.append(pytest.param(scanner.decap_walk, id="scanner"))
    return out


WALKS = _walks()


def walk_all(packet: bytes, mask: int = ALL, avail: int | None = None):
    """The result of every implementation, checked to agree."""
    n = len(packet)
    results = {
        p.id: p.values[0](packet, 0, n if avail is None else avail, n, mask)
        for p in WALKS
    }
    first = results["py"]
    assert all(r == first for r in results.values()), results
    return first


# -- the walk, one tunnel kind at a time ---------------------------------------------

# (name, packet, inner packet, outer VNI, inner VNI)
CASES = [
    (
        "vxlan",
        cap.udp_tunnel(*O4, 4789, cap.vxlan(cap.ethernet(INNER4), 5001)),
        INNER4,
        5001,
        5001,
    ),
    (
        "vxlan-padded-frame",  # a short inner frame padded to 60 bytes
        cap.udp_tunnel(
            *O4,
            4789,
            cap.vxlan(cap.ethernet(cap.icmp4("10.1.0.1", "10.1.0.2"), pad_to=60), 1),
        ),
        cap.icmp4("10.1.0.1", "10.1.0.2"),
        1,
        1,
    ),
    (
        "vxlan-linux-port",
        cap.udp_tunnel(*O4, 8472, cap.vxlan(cap.ethernet(INNER4), 1)),
        INNER4,
        1,
        1,
    ),
    (
        "vxlan6-vlan",
        cap.udp_tunnel(
            *O6, 4789, cap.vxlan(cap.ethernet(INNER6, vlans=[(0x8100, 7)]), 0xFFFFFF)
        ),
        INNER6,
        0xFFFFFF,
        0xFFFFFF,
    ),
    (
        "vxlan-gpe-ipv4",
        cap.udp_tunnel(*O4, 4790, cap.vxlan_gpe(INNER4, 1, vni=77)),
        INNER4,
        77,
        77,
    ),
    (
        "vxlan-gpe-nsh",
        cap.udp_tunnel(
            *O4, 4790, cap.vxlan_gpe(cap.nsh(INNER6, 2, context=3), 4, vni=8)
        ),
        INNER6,
        8,
        8,
    ),
    (
        "vxlan-gpe-ethernet-no-vni",
        cap.udp_tunnel(*O4, 4790, cap.vxlan_gpe(cap.ethernet(INNER4), 3)),
        INNER4,
        -1,
        -1,
    ),
    (
        "geneve-ethernet",
        cap.udp_tunnel(*O4, 6081, cap.geneve(cap.ethernet(INNER4), 10)),
        INNER4,
        10,
        10,
    ),
    (
        "geneve-options-ipv4",
        cap.udp_tunnel(
            *O6,
            6081,
            cap.geneve(INNER4, 0x123456, protocol=0x0800, options=bytes(range(12))),
        ),
        INNER4,
        0x123456,
        0x123456,
    ),
    (
        "geneve-ipv6",
        cap.udp_tunnel(*O4, 6081, cap.geneve(INNER6, 3, protocol=0x86DD)),
        INNER6,
        3,
        3,
    ),
    ("gre-ip", cap.ip_tunnel(*O4, 47, cap.gre(INNER4, 0x0800)), INNER4, -1, -1),
    (
        "gre-key-seq-checksum",
        cap.ip_tunnel(
            *O4, 47, cap.gre(INNER6, 0x86DD, key=0xDEADBEEF, seq=9, checksum=True)
        ),
        INNER6,
        0xDEADBEEF,
        0xDEADBEEF,
    ),
    (
        "gre-ethernet",
        cap.ip_tunnel(*O6, 47, cap.gre(cap.ethernet(INNER4), 0x6558, key=5)),
        INNER4,
        5,
        5,
    ),
    (
        "gre-mpls",
        cap.ip_tunnel(*O4, 47, cap.gre(cap.mpls(INNER4, labels=3), 0x8847)),
        INNER4,
        -1,
        -1,
    ),
    (
        "gre-cisco-metadata",
        cap.ip_tunnel(
            *O4,
            47,
            cap.gre(
                struct.pack(">HBBHH", 0x0800, 1, 1, 1, 42) + INNER4, 0x8909, key=40
            ),
        ),
        INNER4,
        40,
        40,
    ),
    (
        "erspan-type-i",
        cap.ip_tunnel(*O4, 47, cap.gre(cap.ethernet(INNER4), 0x88BE)),
        INNER4,
        -1,
        -1,
    ),
    (
        "erspan-type-ii",
        cap.ip_tunnel(
            *O4, 47, cap.gre(cap.erspan2(cap.ethernet(INNER4), 513), 0x88BE, seq=1)
        ),
        INNER4,
        513,
        513,
    ),
    (
        "erspan-type-iii",
        cap.ip_tunnel(
            *O4, 47, cap.gre(cap.erspan3(cap.ethernet(INNER6), 7), 0x22EB, seq=1)
        ),
        INNER6,
        7,
        7,
    ),
    (
        "erspan-type-iii-subheader",
        cap.ip_tunnel(
            *O6,
            47,
            cap.gre(
                cap.erspan3(cap.ethernet(INNER4), 1023, subheader=True), 0x22EB, seq=1
            ),
        ),
        INNER4,
        1023,
        1023,
    ),
    (
        "erspan-type-iii-ip-frame",
        cap.ip_tunnel(
            *O4, 47, cap.gre(cap.erspan3(INNER4, 2, frame_type=2), 0x22EB, seq=1)
        ),
        INNER4,
        2,
        2,
    ),
    ("4in4", cap.ip_tunnel(*O4, 4, INNER4), INNER4, -1, -1),
    ("6in4", cap.ip_tunnel(*O4, 41, INNER6), INNER6, -1, -1),
    ("4in6", cap.ip_tunnel(*O6, 4, INNER4), INNER4, -1, -1),
    ("6in6", cap.ip_tunnel(*O6, 41, INNER6), INNER6, -1, -1),
    (
        "4in6-encaplimit",  # what ip6tnl sends: a destination options header first
        cap.ip_tunnel(*O6, 60, cap.dest_options(4, INNER4)),
        INNER4,
        -1,
        -1,
    ),
    ("mpls-udp", cap.udp_tunnel(*O4, 6635, cap.mpls(INNER4)), INNER4, -1, -1),
    ("mpls-udp6", cap.udp_tunnel(*O6, 6635, cap.mpls(INNER6, 1)), INNER6, -1, -1),
    (
        "nested-gre-in-vxlan",
        cap.udp_tunnel(
            *O4,
            4789,
            cap.vxlan(
                cap.ethernet(
                    cap.ip_tunnel(
                        "10.9.0.1", "10.9.0.2", 47, cap.gre(INNER4, 0x0800, key=9)
                    )
                ),
                5,
            ),
        ),
        INNER4,
        5,
        9,
    ),
    (
        "nested-ipip-in-geneve",  # the innermost tunnel has no key: the VNI stays
        cap.udp_tunnel(
            *O4,
            6081,
            cap.geneve(
                cap.ip_tunnel("10.9.0.1", "10.9.0.2", 4, INNER4), 6, protocol=0x0800
            ),
        ),
        INNER4,
        6,
        6,
    ),
]


@pytest.mark.parametrize(
    "name,packet,inner,outer_vni,inner_vni", CASES, ids=[c[0] for c in CASES]
)
def test_walk_finds_the_inner_packet(name, packet, inner, outer_vni, inner_vni):
    found, offset, length, ovni, ivni = walk_all(packet)
    assert found == ref.DECAP_INNER
    assert packet[offset : offset + length] == inner
    assert (ovni, ivni) == (outer_vni, inner_vni)


@pytest.mark.parametrize(
    "name,packet,inner,outer_vni,inner_vni", CASES, ids=[c[0] for c in CASES]
)
def test_walk_opens_only_the_kinds_asked(name, packet, inner, outer_vni, inner_vni):
    found, *_ = walk_all(packet, 0)
    assert found == ref.DECAP_NONE
    # the outermost tunnel's kind alone opens at least its first layer
    kinds = [m for m in TUNNELS.values() if walk_all(packet, m)[0] != ref.DECAP_NONE]
    assert len(kinds) == 1


def test_plain_packets_are_not_tunnels():
    for packet in (
        INNER4,
        INNER6,
        cap.udp4("10.0.0.1", 4789, "10.0.0.2", 53, b"q" * 20),  # 4789 as a source port
        cap.ipv4(*O4, 47, bytes(4), frag=0x2000),  # a fragment: not a whole tunnel
        cap.ipv4(*O4, 4, INNER4, frag=0x0010),
        cap.ip_tunnel(
            *O4, 47, struct.pack(">HH", 0x3001, 0x880B) + bytes(8)
        ),  # PPTP GRE
        cap.ipv6(*O6, 44, struct.pack(">BBHI", 4, 0, 1, 7) + INNER4),  # IPv6 fragment
        b"",
        b"\x45",
    ):
        assert walk_all(packet)[0] == ref.DECAP_NONE, packet.hex()


@pytest.mark.parametrize(
    "packet",
    [
        cap.udp_tunnel(*O4, 4789, cap.vxlan(cap.ARP_FRAME, 3)),
        cap.udp_tunnel(*O4, 6081, cap.geneve(cap.LLDP_FRAME, 4)),
        cap.ip_tunnel(*O4, 47, cap.gre(b"", 0x0000, key=40)),  # a GRE keepalive
        cap.ip_tunnel(*O4, 47, cap.gre(bytes(40), 0x2000)),  # CDP
        cap.udp_tunnel(
            *O4, 6635, cap.mpls(bytes(4) + cap.ethernet(INNER4))
        ),  # pseudowire
        cap.ip_tunnel(
            *O4, 47, cap.gre(cap.erspan3(bytes(30), 9, frame_type=7), 0x22EB, seq=1)
        ),
        cap.udp_tunnel(*O4, 4790, cap.vxlan_gpe(bytes(20), 0x41, vni=2)),
    ],
)
def test_tunnels_without_ip_inside_are_physical_only(packet):
    found, offset, length, ovni, ivni = walk_all(packet)
    assert (found, offset, length, ivni) == (ref.DECAP_NO_IP, 0, 0, -1)


def test_a_non_ip_payload_deeper_down_leaves_the_ip_packet_that_carries_it():
    # GRE keepalive inside GRE (as in tcpdump's various_gre.pcap)
    keepalive = cap.ip_tunnel("10.0.0.6", "10.0.0.7", 47, cap.gre(b"", 0, key=40))
    packet = cap.ip_tunnel(*O4, 47, cap.gre(keepalive, 0x0800, key=41))
    found, offset, length, ovni, ivni = walk_all(packet)
    assert found == ref.DECAP_INNER
    assert packet[offset : offset + length] == keepalive
    assert (ovni, ivni) == (41, 41)  # the key of the tunnel that carries it


@pytest.mark.parametrize(
    "name,packet,inner,outer_vni,inner_vni", CASES, ids=[c[0] for c in CASES]
)
def test_every_truncation_counts_as_the_outer_packet(
    name, packet, inner, outer_vni, inner_vni
):
    """Cut anywhere, with the IP lengths fixed up as a packet that short would
    have them, the walk never finds a packet that is not whole."""
    for cut in range(len(packet)):
        short = _fix_lengths(packet[:cut])
        found, offset, length, *_ = walk_all(short)
        if found == ref.DECAP_INNER:
            assert offset + length <= len(short)
            assert short[offset] >> 4 in (4, 6)


def _fix_lengths(packet: bytes) -> bytes:
    """The outer IP and UDP lengths set to what is there (a short tunnel)."""
    b = bytearray(packet)
    if len(b) >= 20 and b[0] >> 4 == 4:
        b[2:4] = struct.pack(">H", len(b))
        hl = (b[0] & 15) * 4
        if b[9] == 17 and len(b) >= hl + 8:
            b[hl + 4 : hl + 6] = struct.pack(">H", len(b) - hl)
    elif len(b) >= 40 and b[0] >> 4 == 6:
        b[4:6] = struct.pack(">H", len(b) - 40)
        if b[6] == 17 and len(b) >= 48:
            b[44:46] = struct.pack(">H", len(b) - 40)
    return bytes(b)


@pytest.mark.parametrize(
    "name,packet,inner,outer_vni,inner_vni", CASES, ids=[c[0] for c in CASES]
)
def test_headers_past_the_capture_are_never_read(
    name, packet, inner, outer_vni, inner_vni
):
    """A packet cut by the snap length (avail < length): a tunnel whose
    headers or inner IP header were not captured is malformed; the bytes
    after the capture are garbage that must not change the result."""
    n = len(packet)
    for avail in range(n + 1):
        found, offset, length, ovni, ivni = walk_all(packet, avail=avail)
        junk = packet[:avail] + bytes(b ^ 0xA5 for b in packet[avail:])
        assert walk_all(junk, avail=avail) == (found, offset, length, ovni, ivni)
        if found == ref.DECAP_INNER:
            assert (offset, length) == (packet.rfind(inner), len(inner))


def test_wrong_versions_and_flags_are_malformed():
    bad = [
        # VXLAN without its I flag
        cap.udp_tunnel(*O4, 4789, cap.vxlan(cap.ethernet(INNER4), 5, flags=0)),
        # Geneve version 1
        cap.udp_tunnel(
            *O4, 6081, bytes([0x40]) + cap.geneve(INNER4, 1, protocol=0x0800)[1:]
        ),
        # VXLAN-GPE version 1
        cap.udp_tunnel(*O4, 4790, bytes([0x1C]) + cap.vxlan_gpe(INNER4, 1, vni=1)[1:]),
        # NSH version 1
        cap.udp_tunnel(
            *O4, 4790, cap.vxlan_gpe(bytes([0x4F]) + cap.nsh(INNER4, 1)[1:], 4)
        ),
        # ERSPAN II with version 2, ERSPAN III with version 1
        cap.ip_tunnel(
            *O4,
            47,
            cap.gre(b"\x20" + cap.erspan2(cap.ethernet(INNER4), 1)[1:], 0x88BE, seq=1),
        ),
        cap.ip_tunnel(
            *O4,
            47,
            cap.gre(b"\x10" + cap.erspan3(cap.ethernet(INNER4), 1)[1:], 0x22EB, seq=1),
        ),
        # GRE with RFC 1701 routing
        cap.ip_tunnel(*O4, 47, struct.pack(">HH", 0x4000, 0x0800) + bytes(4) + INNER4),
        # the inner packet's version is not the one its EtherType says
        cap.ip_tunnel(*O4, 47, cap.gre(INNER6, 0x0800)),
        cap.ip_tunnel(*O4, 41, INNER4),
        # an inner IPv4 header of 16 bytes, an inner length longer than the tunnel
        cap.ip_tunnel(*O4, 4, bytes([0x44]) + INNER4[1:]),
        cap.ip_tunnel(
            *O4, 4, INNER4[:2] + struct.pack(">H", len(INNER4) + 1) + INNER4[4:]
        ),
        # a UDP length shorter than its header
        cap.ipv4(
            *O4,
            17,
            struct.pack(">HHHH", 1, 4789, 4, 0) + cap.vxlan(cap.ethernet(INNER4), 1),
        ),
    ]
    for packet in bad:
        assert walk_all(packet)[0] == ref.DECAP_BAD, packet.hex()


def _ipip_nest(depth: int) -> bytes:
    packet = INNER4
    for _ in range(depth):
        packet = cap.ip_tunnel(*O4, 4, packet)
    return packet


def test_nesting_stops_at_the_fixed_depth():
    for depth in range(1, ref.MAX_DEPTH + 1):
        found, offset, length, *_ = walk_all(_ipip_nest(depth))
        assert found == ref.DECAP_INNER
        assert offset == 20 * depth
    # one level more (a packet built to contain itself, say) is malformed
    assert walk_all(_ipip_nest(ref.MAX_DEPTH + 1))[0] == ref.DECAP_BAD
    assert walk_all(_ipip_nest(200))[0] == ref.DECAP_BAD


def test_zero_lengths_mean_to_the_end():
    """Segmentation offload: an IPv4 total length or UDP length of 0 is unknown."""
    frame = cap.ethernet(INNER4)
    packet = bytearray(cap.udp_tunnel(*O4, 4789, cap.vxlan(frame, 1)))
    packet[2:4] = b"\0\0"
    packet[24:26] = b"\0\0"
    found, offset, length, *_ = walk_all(bytes(packet))
    assert (found, bytes(packet[offset : offset + length])) == (ref.DECAP_INNER, INNER4)


def test_the_compiled_walk_checks_its_bounds():
    for p in WALKS[1:]:
        with pytest.raises(ValueError):
            p.values[0](b"abc", 2, 5, 5, ALL)
        with pytest.raises(ValueError):
            p.values[0](b"abc", -1, 1, 1, ALL)
        assert p.values[0](b"", 0, 0, 0, ALL) == (0, 0, 0, -1, -1)


# -- differential: the three walks on mutated tunnels --------------------------------


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    st.sampled_from([c[1] for c in CASES]),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
    st.integers(0, 400),
    st.integers(0, ALL),
)
def test_all_walks_agree_on_mutated_tunnels(packet, flips, cut, mask):
    b = bytearray(packet)
    for at, value in flips:
        if at < len(b):
            b[at] = value
    b = b[: max(cut, 1)] if cut < len(b) else b
    data = bytes(b)
    for avail in (len(data), len(data) // 2):
        walk_all(data, mask, avail=avail)


# -- connstats.decap ---------------------------------------------------------------------


@pytest.fixture(params=["c", "py"])
def core(request):
    if request.param == "py":
        return ref
    try:
        return importlib.import_module("connstats._fastparse")
    except ImportError:
        pytest.skip("no compiled core")


def test_decap_returns_the_outer_connection_and_the_inner_packet(core):
    packet = CASES[0][1]
    outer, offset, length, vni = core.decap(packet, ALL)
    assert packet[offset : offset + length] == INNER4
    assert vni == 5001
    assert outer.proto == 17
    assert (str(outer.src), str(outer.dst)) == ("192.0.2.1:49152", "192.0.2.2:4789")
    assert outer.vni == 5001
    assert outer == core.Connection(17, outer.src, outer.dst, 5001)
    # the outer connection is the packet's own §4 key
    assert tuple(outer) == tuple(core.decode(packet))


def test_decap_of_other_packets(core):
    assert core.decap(INNER4, ALL) == (None, 0, len(INNER4), None)
    arp = cap.udp_tunnel(*O4, 4789, cap.vxlan(cap.ARP_FRAME, 3))
    outer, offset, length, vni = core.decap(arp, ALL)
    assert (outer.vni, offset, length, vni) == (3, 0, 0, None)
    gre = cap.ip_tunnel(*O6, 47, cap.gre(INNER4, 0x0800))
    outer, *_ = core.decap(memoryview(gre), ALL)
    assert (outer.proto, outer.vni, outer.src.port) == (47, None, 0)
    with pytest.raises(ValueError, match="tunnels"):
        core.decap(gre, 32)
    with pytest.raises(TypeError, match="packet"):
        core.decap("not bytes", ALL)


def test_library_decap_names():
    packet = CASES[0][1]
    assert connstats.decap(packet).outer is not None
    assert connstats.decap(packet, "vxlan").outer is not None
    assert connstats.decap(packet, "gre, ipip").outer is None
    assert connstats.decap(packet, ["VXLAN"]).outer is not None
    assert connstats.decap(packet, "all").outer is not None
    assert connstats.decap(packet, "").outer is None
    assert tunnel_mask(None) == tunnel_mask("all") == ALL
    assert tunnel_mask("vxlan,geneve,gre,ipip,mpls") == ALL
    with pytest.raises(ValueError, match="unknown tunnel 'l2tp'"):
        connstats.decap(packet, "vxlan,l2tp")
    with pytest.raises(TypeError, match="tunnels"):
        connstats.decap(packet, 3.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tunnels"):
        connstats.decap(packet, True)  # type: ignore[arg-type]


def test_tunnel_names_are_the_cores_bits():
    names = {
        "vxlan": ref.TUNNEL_VXLAN,
        "geneve": ref.TUNNEL_GENEVE,
        "gre": ref.TUNNEL_GRE,
        "ipip": ref.TUNNEL_IPIP,
        "mpls": ref.TUNNEL_MPLS_UDP,
    }
    assert TUNNELS == names
    try:
        compiled = [
            importlib.import_module("connstats._fastparse"),
            importlib.import_module("connstats.capture._capture"),
        ]
    except ImportError:
        return
    for module in compiled:
        for name in (
            "TUNNEL_VXLAN TUNNEL_GENEVE TUNNEL_GRE TUNNEL_IPIP TUNNEL_MPLS_UDP "
            "TUNNEL_ALL MAX_DEPTH DECAP_NONE DECAP_INNER DECAP_NO_IP DECAP_BAD NO_VNI"
        ).split():
            assert getattr(module, name) == getattr(ref, name), (module, name)


def test_a_forwarder_counts_what_the_capture_reader_counts(impl):
    """The documented use of decap() with the 2024 counters gives the
    capture's virtual rows (the VNI aside: those counters take none)."""
    stats = impl.Statistics()
    for _, packet, *_ in CASES:
        outer, offset, length, _vni = impl.module.decap(packet, ALL)
        if length:
            stats.update_tx_virtual(memoryview(packet)[offset : offset + length])
        if outer is not None:
            stats.update_tx_physical(outer.src.addr, outer.dst, len(packet))
    virtual, physical = stats.extract()
    stats.shutdown()
    inner = {(c.proto, str(c.src), str(c.dst)) for c in virtual}
    assert inner == {
        (6, "10.1.0.1:1000", "10.1.0.2:80"),
        (17, "[fd00::1]:53", "[fd00::2]:5353"),
        (1, "10.1.0.1:0", "10.1.0.2:0"),
    }
    assert sum(n.tx_packets for n in physical.values()) == len(CASES)


# -- Connection.vni ------------------------------------------------------------------------


def test_connection_vni(impl):
    a = impl.AddrPort(ipaddress.ip_address("10.0.0.1"), 1)
    b = impl.AddrPort(ipaddress.ip_address("10.0.0.2"), 2)
    plain = impl.Connection(17, a, b)
    tagged = impl.Connection(17, a, b, 5)
    zero = impl.Connection(17, a, b, vni=0)
    assert plain.vni is None and tagged.vni == 5 and zero.vni == 0
    assert plain != tagged and tagged != zero and tagged == impl.Connection(17, a, b, 5)
    assert sorted([tagged, zero, plain]) == [plain, zero, tagged]
    assert len({plain, tagged, zero, impl.Connection(17, a, b, 5)}) == 3
    assert len(tagged) == 3 and tuple(tagged) == (17, a, b)
    proto, src, dst = tagged
    assert (proto, src, dst) == (17, a, b)
    assert pickle.loads(pickle.dumps(tagged)) == tagged
    assert pickle.loads(pickle.dumps(tagged)).vni == 5
    assert str(tagged) == "udp 10.0.0.1:1 -> 10.0.0.2:2 vni 5"
    assert repr(tagged).endswith(", vni=5)")
    assert "vni" not in repr(plain)
    assert tagged.to_dict()["vni"] == 5 and "vni" not in plain.to_dict()
    for bad, exc in (
        (-1, ValueError),
        (1 << 32, ValueError),
        ("5", TypeError),
        (True, TypeError),
    ):
        with pytest.raises(exc, match="vni"):
            impl.Connection(17, a, b, bad)


# -- the core: physical buffers and VNIs -------------------------------------------------


def _tables(window):
    virtual, physical = window.to_dicts()
    return (
        {
            (c.proto, str(c.src), str(c.dst), c.vni): tuple(n)
            for c, n in virtual.items()
        },
        {
            (c.proto, str(c.src), str(c.dst), c.vni): tuple(n)
            for c, n in physical.items()
        },
    )


def test_physical_buffers_and_vnis(impl):
    a = cap.udp4("10.0.0.1", 40000, "10.0.0.2", 4789, b"x" * 30)
    b = cap.tcp6("fd00::1", 1, "fd00::2", 2)
    buf = a + b
    offs = array("I", [0, len(a), 0])
    lens = array("I", [len(a), len(b), len(a)])
    core = impl.Core(ignore_destinations=["10.0.0.2"])
    core.update_tx_physical_buffer(buf, offs, lens, array("q", [7, -1, 7]))
    core.update_rx_physical_buffer(buf, offs[:1], lens[:1])
    core.update_tx_virtual_buffer(buf, offs, lens, array("q", [0, 1, -1]))
    core.update_rx_virtual_buffer(buf, offs[1:], lens[1:], [4294967295, 3])
    virtual, physical = _tables(core.cut())
    # physical traffic is never filtered by ignore_destinations; virtual is
    assert physical == {
        (17, "10.0.0.1:40000", "10.0.0.2:4789", 7): (2, 2 * len(a), 0, 0),
        (6, "[fd00::1]:1", "[fd00::2]:2", None): (1, len(b), 0, 0),
        (17, "10.0.0.2:4789", "10.0.0.1:40000", None): (0, 0, 1, len(a)),
    }
    assert virtual == {
        (6, "[fd00::1]:1", "[fd00::2]:2", 1): (1, len(b), 0, 0),
        (6, "[fd00::2]:2", "[fd00::1]:1", 4294967295): (0, 0, 1, len(b)),
        (17, "10.0.0.2:4789", "10.0.0.1:40000", 3): (0, 0, 1, len(a)),
    }


@pytest.mark.parametrize(
    "vnis,exc,match",
    [
        (array("q", [1]), ValueError, "vnis: has 1 items but offsets has 2"),
        (array("I", [1, 2]), TypeError, "vnis: expected a 1-D buffer of int64"),
        (array("q", [1, -2]), ValueError, r"vnis\[1\]: -2 is out of range"),
        (
            array("q", [1 << 32, 0]),
            ValueError,
            r"vnis\[0\]: 4294967296 is out of range",
        ),
        ([1, "2"], TypeError, r"vnis\[1\]: expected an int"),
        ([1, True], TypeError, r"vnis\[1\]: expected an int"),
        ([1, 1 << 40], ValueError, r"vnis\[1\]: 1099511627776 is out of range"),
        (5, TypeError, "vnis: expected a buffer or sequence"),
    ],
)
def test_bad_vnis_count_nothing(impl, vnis, exc, match):
    packet = cap.udp4("10.0.0.1", 1, "10.0.0.2", 2)
    core = impl.Core()
    core.update_tx_virtual(packet)
    for method in (core.update_tx_physical_buffer, core.update_rx_virtual_buffer):
        with pytest.raises(exc, match=match):
            method(packet * 2, [0, len(packet)], [len(packet)] * 2, vnis)
    virtual, physical = _tables(core.cut())
    assert physical == {} and list(virtual.values()) == [(1, len(packet), 0, 0)]


# -- the capture scanner ------------------------------------------------------------------


@pytest.fixture(params=cap.SCANNERS)
def scanner(request):
    return cap.scanner_class(request.param)


def _batches(data: bytes, scanner, *, decap=ALL, **kw):
    from connstats.capture import CaptureReader, Stop

    reader = CaptureReader(
        io.BytesIO(data), "t", scanner_class=scanner, decap=decap, **kw
    )
    out = []
    while True:
        batch = reader.read()
        out.append(batch_view(batch))
        if batch.stop is Stop.EOF:
            return out, reader


def batch_view(batch):
    """A batch's packets as bytes: plain tx/rx, then the tunnel outputs."""
    data = batch.data

    def packets(offsets, lengths, vnis=None):
        if vnis is None:
            return [bytes(data[o : o + n]) for o, n in zip(offsets, lengths)]
        return [(bytes(data[o : o + n]), v) for o, n, v in zip(offsets, lengths, vnis)]

    view = {
        "tx": packets(batch.tx_offsets, batch.tx_lengths),
        "rx": packets(batch.rx_offsets, batch.rx_lengths),
    }
    t = batch.tunneled
    if t is not None:
        for name in ("vtx", "vrx", "ptx", "prx"):
            view[name] = packets(
                getattr(t, f"{name}_offsets"),
                getattr(t, f"{name}_lengths"),
                getattr(t, f"{name}_vnis"),
            )
    return view


def test_scanner_splits_inner_and_outer_packets(scanner):
    vxlan = CASES[0][1]
    arp = cap.udp_tunnel(O4[1], O4[0], 4789, cap.vxlan(cap.ARP_FRAME, 3))
    bad = cap.udp_tunnel(*O4, 4789, cap.vxlan(cap.ethernet(INNER4), 5, flags=0))
    frames = [cap.ethernet(p, pad_to=60) for p in (vxlan, INNER6, arp, bad)]
    data = cap.pcap([(i * 1000, f) for i, f in enumerate(frames)], linktype=1)
    batches, reader = _batches(data, scanner, local=_local("10.1.0.2/32", "192.0.2.1"))
    assert batches[0] == {
        "tx": [INNER6, bad],
        "rx": [],
        # inner packet by its own destination (local), the outer by its own
        "vtx": [],
        "vrx": [(INNER4, 5001)],
        "ptx": [(vxlan, 5001)],
        "prx": [(arp, 3)],
    }
    assert (reader.packets, reader.tunnels, reader.bad_tunnels) == (4, 2, 1)
    # without decap the same capture is four plain packets
    plain, reader = _batches(data, scanner, decap=0)
    assert plain[0] == {"tx": [vxlan, INNER6, arp, bad], "rx": []}
    assert reader.tunnels == 0


def test_batch_repr_and_packets(scanner):
    # Batch and Tunneled are plain classes (start-up): their repr stays short
    # and says what a batch holds, whatever the size of the buffer.
    from connstats.capture import Batch, CaptureReader, Stop
    from connstats.capture.reader import Tunneled

    vxlan = CASES[0][1]
    frames = [cap.ethernet(p, pad_to=60) for p in (vxlan, INNER6, INNER6)]
    data = cap.pcap([(i * 1000, f) for i, f in enumerate(frames)], linktype=1)
    reader = CaptureReader(io.BytesIO(data), "t", scanner_class=scanner, decap=ALL)
    batch = reader.read()
    assert batch.packets == 3
    assert repr(batch).startswith("Batch(tx=2, rx=0, tunneled=Tunneled(")
    assert repr(batch.tunneled) == "Tunneled(virtual=1+0, physical=1+0)"
    assert "stop=Stop." in repr(batch)
    empty = memoryview(b"")
    again = Batch(
        batch.data,
        batch.tx_offsets,
        batch.tx_lengths,
        rx_offsets=empty,
        rx_lengths=empty,
        first_ns=1,
        last_ns=2,
        stop=Stop.EOF,
    )
    assert (again.packets, again.tunneled, again.max_ns) == (2, None, 0)
    with pytest.raises(AttributeError):
        again.extra = 1  # slots: a misspelt attribute is an error
    with pytest.raises(TypeError, match="16 arrays, got 2"):
        Tunneled(empty, empty)


def _local(*cidrs):
    from connstats.capture import local_networks

    return local_networks(cidrs)


def test_scanner_cut_tunnels(scanner):
    """A tunnel packet cut by the snap length: decapsulated when its headers
    and the inner headers were captured (both counted with their full
    lengths), else counted as the outer packet."""
    inner = cap.tcp4("10.1.0.1", 1000, "10.1.0.2", 80, b"p" * 900)
    packet = cap.udp_tunnel(*O4, 4789, cap.vxlan(cap.ethernet(inner), 9))
    frame = cap.ethernet(packet)
    headers = 14 + 20 + 8 + 8 + 14 + 20 + 4  # up to the inner ports
    whole, reader = _batches(cap.pcap([(0, frame)], 1, snaplen=headers), scanner)
    assert [(len(p), v) for p, v in whole[0]["vtx"]] == [(len(inner), 9)]
    assert [(len(p), v) for p, v in whole[0]["ptx"]] == [(len(packet), 9)]
    assert (reader.truncated, reader.tunnels, reader.bad_tunnels) == (1, 1, 0)
    short, reader = _batches(cap.pcap([(0, frame)], 1, snaplen=headers - 1), scanner)
    assert [len(p) for p in short[0]["tx"]] == [len(packet)]
    assert "ptx" not in short[0]
    assert (reader.truncated, reader.tunnels, reader.bad_tunnels) == (1, 0, 1)


def test_replayed_windows_with_decap(impl, scanner):
    from connstats.capture import CaptureReader
    from connstats.capture.windows import Replayer

    packets = [c[1] for c in CASES[:6]] + [INNER4]
    data = cap.pcap([(i * 10**9, p) for i, p in enumerate(packets)], linktype=101)
    windows: list = []
    replayer = Replayer(windows.append, max_conns=3, core_module=impl.module)
    reader = CaptureReader(io.BytesIO(data), "t", scanner_class=scanner, decap=ALL)
    replayer.feed(reader)
    replayer.finish()
    assert all(len(w.virtual) + len(w.physical) <= 3 for w in windows)
    total_v = sum(n.tx_packets for w in windows for n in w.virtual.values())
    total_p = sum(n.tx_packets for w in windows for n in w.physical.values())
    assert (total_v, total_p) == (7, 6)
    assert {c.vni for w in windows for c in w.physical} == {5001, 1, 0xFFFFFF, 77, 8}


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([c[1] for c in CASES] + [INNER4, INNER6]),
            st.lists(st.tuples(st.integers(0, 120), st.integers(0, 255)), max_size=3),
        ),
        min_size=1,
        max_size=8,
    ),
    st.sampled_from([262144, 60, 90]),
)
def test_scanners_agree_on_mutated_tunnel_captures(packets, snaplen):
    """The compiled scanner's quick test for "no tunnel here" and its walk
    give the pure-Python scanner's outputs, cut by the snap length or not."""
    frames = []
    for packet, flips in packets:
        b = bytearray(packet)
        for at, value in flips:
            if at < len(b):
                b[at] = value
        frames.append((len(frames), bytes(b)))
    data = cap.pcap(frames, 101, snaplen=snaplen)
    views = []
    for name in cap.SCANNERS:
        batches, reader = _batches(data, cap.scanner_class(name))
        views.append((batches, reader.packets, reader.tunnels, reader.bad_tunnels))
    assert views[0] == views[1]


# -- the core's table of tunnel rows: the compiled core against its twin --------------

_POOL = [
    cap.udp4("10.0.0.1", 1, "10.0.0.2", 4789, b"a" * 10),
    cap.udp4("10.0.0.2", 4789, "10.0.0.1", 1, b"b" * 11),
    cap.tcp6("fd00::1", 2, "fd00::2", 3),
    cap.icmp4("10.0.0.3", "10.0.0.4"),
    b"\x45\x00",
]
_BUF = b"".join(_POOL)
_OFFS = [sum(len(p) for p in _POOL[:i]) for i in range(len(_POOL))]


@st.composite
def _ops(draw):
    ops = []
    for _ in range(draw(st.integers(1, 25))):
        kind = draw(
            st.sampled_from(
                ["tx_virtual", "rx_virtual", "tx_physical", "rx_physical", "cut"]
            )
        )
        if kind == "cut":
            ops.append(("cut",))
            continue
        picks = draw(st.lists(st.integers(0, len(_POOL) - 1), min_size=1, max_size=6))
        vnis = draw(
            st.one_of(
                st.none(),
                st.lists(
                    st.sampled_from([-1, -1, 0, 7, 4294967295]),
                    min_size=len(picks),
                    max_size=len(picks),
                ),
            )
        )
        ops.append((kind, picks, vnis))
    return ops


def _run_ops(module, ops, max_conns, ignore):
    core = module.Core(max_conns=max_conns, ignore_destinations=ignore)
    windows = []

    def take(window):
        if window is not None:
            virtual, physical = window.to_dicts()
            windows.append(
                (
                    sorted((str(c), c.vni, tuple(n)) for c, n in virtual.items()),
                    sorted((str(c), c.vni, tuple(n)) for c, n in physical.items()),
                    len(window),
                    window.packets,
                    window.bytes,
                )
            )

    for op in ops:
        if op[0] == "cut":
            while (w := core.pop_pending()) is not None:
                take(w)
            take(core.cut())
            continue
        kind, picks, vnis = op
        offsets = [_OFFS[i] for i in picks]
        lengths = [len(_POOL[i]) for i in picks]
        args = (_BUF, offsets, lengths) + (() if vnis is None else (array("q", vnis),))
        getattr(core, f"update_{kind}_buffer")(*args)
    while (w := core.pop_pending()) is not None:
        take(w)
    take(core.cut())
    return windows, core.dropped_windows


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ops(), st.sampled_from([0, 1, 2, 5]), st.sampled_from([(), ("10.0.0.2",)]))
def test_tunnel_rows_compiled_core_is_the_twin(ops, max_conns, ignore):
    """Rows with a VNI (the compiled core's separate table) and without,
    virtual and physical, cut by max_conns or by hand: the same windows in
    the same order as the pure-Python core."""
    try:
        compiled = importlib.import_module("connstats._fastparse")
    except ImportError:
        pytest.skip("no compiled core")
    assert _run_ops(compiled, ops, max_conns, ignore) == _run_ops(
        ref, ops, max_conns, ignore
    )


def test_tunnel_rows_in_window_totals_and_memory(impl):
    packet = _POOL[0]
    core = impl.Core()
    core.update_tx_virtual_buffer(packet, [0], [len(packet)], array("q", [5]))
    core.update_tx_physical_buffer(
        packet, [0, 0], [len(packet)] * 2, array("q", [5, 6])
    )
    assert core.connections == 3
    window = core.cut()
    assert (len(window), window.packets, window.bytes) == (3, 3, 3 * len(packet))
    if impl.name == "c":
        assert window.table_bytes > impl.module.WINDOW_BYTES
