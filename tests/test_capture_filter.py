"""The classic BPF programs of ``connstats capture --host/--net/--port/--proto``.

The programs are run by ``connstats.capture.bpf.run`` (an interpreter of classic
BPF) on generated packets and checked against the rule the options state;
where libpcap is installed, the same filter written as a tcpdump expression
and compiled by libpcap must give the same verdict on every packet, and
libpcap's own interpreter must agree with ours on our programs.  The live
kernel behaviour is tested in ``test_capture_live.py``.
"""

from __future__ import annotations

import ipaddress
import struct
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connstats.capture import bpf
from connstats.cli import main

ADDRS4 = ["192.0.2.1", "192.0.2.2", "198.51.100.7", "10.1.2.3"]
ADDRS6 = ["2001:db8::1", "2001:db8::2", "2001:db8:1::5", "fd00::9"]
PORTS = [9, 53, 443, 40000]
PROTOS = [1, 6, 17, 58, 132]


def packet(version: int, src: str, dst: str, proto: int, sport: int, dport: int,
           frag_offset: int = 0, payload: bytes = b"xyz") -> bytes:  # fmt: skip
    if proto in (6, 17, 132):
        l4 = struct.pack(">HH", sport, dport) + b"\0" * 16 + payload
    else:
        l4 = b"\x08\0\0\0\0\0\0\0" + payload
    s = ipaddress.ip_address(src).packed
    d = ipaddress.ip_address(dst).packed
    if version == 4:
        return struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, frag_offset,
                           64, proto, 0, s, d) + l4  # fmt: skip
    if frag_offset:
        # IPv6: a fragment header (next header 44) before the transport one;
        # frag_offset as in IPv4: 0x2000 more fragments, low 13 bits the offset
        offset, more = frag_offset & 0x1FFF, bool(frag_offset & 0x2000)
        l4 = struct.pack(">BBHI", proto, 0, offset << 3 | more, 7) + l4
        proto = 44
    return struct.pack(">IHBB16s16s", 6 << 28, len(l4), proto, 64, s, d) + l4


def expected(f: bpf.Filter, version: int, src: str, dst: str, proto: int,
             sport: int, dport: int, frag_offset: int = 0) -> bool:  # fmt: skip
    if f.nets:
        addrs = [ipaddress.ip_address(src), ipaddress.ip_address(dst)]
        if not any(a in n for n in f.nets for a in addrs if a.version == n.version):
            return False
    # --proto P keeps IPv6 fragments of P (the fragment header's next
    # header), as libpcap's 'ip6 proto P' does; IPv4 fragments carry P
    if f.protos and proto not in f.protos:
        return False
    if f.ports:
        if proto not in (6, 17, 132) or frag_offset & 0x1FFF:
            return False
        if version == 6 and frag_offset:
            return False  # the ports are not right after the fixed header
        if sport not in f.ports and dport not in f.ports:
            return False
    return True


filters = st.builds(
    lambda hosts, nets, ports, protos: bpf.parse_filter(hosts, nets, ports, protos),
    st.lists(st.sampled_from(ADDRS4 + ADDRS6), max_size=2),
    st.lists(
        st.sampled_from(
            [
                "192.0.2.0/24",
                "10.0.0.0/8",
                "2001:db8::/32",
                "2001:db8:1::/48",
                "0.0.0.0/0",
            ]
        ),
        max_size=2,
    ),  # fmt: skip
    st.lists(st.sampled_from(PORTS), max_size=2),
    st.lists(st.sampled_from(PROTOS), max_size=2),
)
packets = st.one_of(
    st.tuples(st.just(4), st.sampled_from(ADDRS4), st.sampled_from(ADDRS4),
              st.sampled_from(PROTOS[:3] + [132]), st.sampled_from(PORTS),
              st.sampled_from(PORTS), st.sampled_from([0, 0, 0x2000, 0x0001])),
    st.tuples(st.just(6), st.sampled_from(ADDRS6), st.sampled_from(ADDRS6),
              st.sampled_from(PROTOS), st.sampled_from(PORTS), st.sampled_from(PORTS),
              st.sampled_from([0, 0, 0x2000, 0x0001, 0x2003])),
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(filters, packets)
def test_program_matches_the_rule(f, fields):
    program = bpf.compile_filter(f)
    verdict = bpf.run(program, packet(*fields))
    assert bool(verdict) == expected(f, *fields), (f.expression(), fields)
    if verdict:
        assert verdict == bpf.ACCEPT  # whole packets, never cut


@pytest.mark.parametrize(
    "frag", [0x2000, 0x0001, 0x2003], ids=["first", "last", "middle"]
)
def test_proto_keeps_ipv6_fragments_of_that_protocol(frag):
    # capture --proto udp used to drop every IPv6 fragment of a UDP datagram,
    # the first one included, which `read --proto udp` counts
    pkt = packet(6, ADDRS6[0], ADDRS6[1], 17, 53, 40000, frag)
    assert pkt[6] == 44 and pkt[40] == 17
    assert bpf.run(bpf.compile_filter(bpf.parse_filter(protos=["udp"])), pkt)
    assert not bpf.run(bpf.compile_filter(bpf.parse_filter(protos=["tcp"])), pkt)
    if frag == 0x2000:  # the first fragment decodes as UDP (`read --proto udp`)
        from connstats import _fastparse_py

        assert _fastparse_py.decode(pkt)[0] == 17


def test_non_ip_and_truncated_packets_never_pass():
    f = bpf.parse_filter(ports=[53])
    program = bpf.compile_filter(f)
    arp = bytes.fromhex("0001080006040001") + b"\0" * 20
    assert bpf.run(program, arp) == 0
    whole = packet(4, "192.0.2.1", "192.0.2.2", 17, 53, 9)
    assert bpf.run(program, whole) == bpf.ACCEPT
    assert bpf.run(program, whole[:21]) == 0  # ports cut off
    # no filter options at all: no program (everything is captured)
    assert not bpf.parse_filter()


def test_several_interfaces_prefix():
    body = bpf.compile_filter(bpf.parse_filter(protos=["udp"]))
    program = bpf.ifindex_program([3, 7], body)
    udp = packet(4, "192.0.2.1", "192.0.2.2", 17, 53, 9)
    tcp = packet(4, "192.0.2.1", "192.0.2.2", 6, 53, 9)
    assert [bpf.run(program, udp, ifindex=i) for i in (3, 7, 5)] == [bpf.ACCEPT] * 2 + [
        0
    ]
    assert bpf.run(program, tcp, ifindex=3) == 0
    assert bpf.run(bpf.ifindex_program([4], None), tcp, ifindex=4) == bpf.ACCEPT


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--host", "192.0.2.0/24", "--host: '192.0.2.0/24' is not an IP address"),
        ("--net", "nonsense", "--net: 'nonsense' is not an IP network"),
        ("--port", "70000", "--port: '70000' is not in 0..65535"),
        ("--proto", "bogus", "--proto: 'bogus' is not a protocol number"),
    ],
)
def test_bad_filter_values_name_the_option(option, value, message, capsys):
    assert main(["capture", "-i", "lo", option, value, "--duration", "0.1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"connstats: {message}"), err


def test_other_platforms_are_named(monkeypatch, capsys):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert main(["capture", "-i", "en0", "--count", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        "connstats: live capture is not supported on macOS: it needs Linux"
    )
    monkeypatch.setattr(sys, "platform", "freebsd14")
    assert main(["capture", "-i", "em0", "--count", "1"]) == 1
    assert "not supported on freebsd:" in capsys.readouterr().err


@settings(max_examples=150, deadline=None)
@given(filters, packets)
def test_same_verdicts_as_libpcap(f, fields):
    # libpcap compiles the equivalent tcpdump expression on its own
    from connstats.capture import _libpcap

    if not _libpcap.available():
        pytest.skip("libpcap is not installed")
    if fields[0] == 4 and fields[6] & 0x1FFF and f.ports:
        return  # libpcap's 'port' on IPv4 later fragments: same (no match), skip noise
    pkt = packet(*fields)
    ours = bpf.compile_filter(f)
    try:
        theirs = _libpcap.compile_filter(f.expression(), 101)
    except _libpcap.FilterError as exc:
        # libpcap's optimizer proves 'port 9 and proto icmp' empty and refuses it
        assert "rejects all packets" in str(exc)
        assert bpf.run(ours, pkt) == 0
        return
    with theirs:
        assert bool(bpf.run(theirs.instructions, pkt)) == bool(bpf.run(ours, pkt)), (
            f.expression(),
            fields,
        )
        assert _libpcap.offline_filter(theirs, pkt) == bool(bpf.run(ours, pkt))


def test_conjoin_with_a_libpcap_program():
    from connstats.capture import _libpcap

    if not _libpcap.available():
        pytest.skip("libpcap is not installed")
    ours = bpf.compile_filter(bpf.parse_filter(ports=[53]))
    with _libpcap.compile_filter("udp", 101) as udp:
        both = bpf.conjoin(ours, udp.instructions)
    assert bpf.run(both, packet(4, "192.0.2.1", "192.0.2.2", 17, 53, 9))
    assert not bpf.run(both, packet(4, "192.0.2.1", "192.0.2.2", 6, 53, 9))
    assert not bpf.run(both, packet(4, "192.0.2.1", "192.0.2.2", 17, 54, 9))


def test_bad_bpf_expression_is_one_line(capsys):
    from connstats.capture import _libpcap

    if not _libpcap.available():
        pytest.skip("libpcap is not installed")
    # packets start at the IP header: libpcap refuses link-layer primitives
    argv = ["capture", "-i", "lo", "--bpf", "ether host 02:00:00:00:00:01"]
    assert main([*argv, "--duration", "0.1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("connstats: --bpf: bad BPF expression 'ether host"), err
    assert err.count("\n") == 1
