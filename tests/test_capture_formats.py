"""pcap/pcapng reading: every format, byte order, resolution and link type.

Expected tables are written out by hand from the packet sizes below; the
packets go through the real reader, scanner and counting core.
"""

from __future__ import annotations

import io
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import captures as cap
from captures import Interface, Section

from connstats.capture import (
    CaptureReader,
    CorruptCaptureError,
    NotACaptureError,
    TruncatedCaptureError,
    UnsupportedLinkTypeError,
)
from connstats.capture.windows import Replayer

T0 = 1_700_000_000_123_456_000  # a whole number of microseconds
MS = 1_000_000

P_TCP4 = cap.tcp4("192.0.2.1", 1234, "192.0.2.2", 80, b"a" * 10)  # 20 + 20 + 10 = 50
P_UDP6 = cap.udp6("2001:db8::1", 5353, "2001:db8::2", 53, b"b" * 12)  # 40 + 8 + 12 = 60
P_ICMP4 = cap.icmp4("192.0.2.2", "192.0.2.1", b"c" * 20)  # 20 + 8 + 20 = 48
P_TCP4R = cap.tcp4(
    "192.0.2.2", 80, "192.0.2.1", 1234, b"d" * 100
)  # 20 + 20 + 100 = 140
P_ICMP6 = cap.icmp6("2001:db8::2", "2001:db8::1", b"e" * 4)  # 40 + 8 + 4 = 52
PACKETS = [P_TCP4, P_UDP6, P_ICMP4, P_TCP4R, P_ICMP6]

# Every packet is tx, with its own src and dst.
EXPECTED = {
    (6, "192.0.2.1:1234", "192.0.2.2:80"): (1, 50, 0, 0),
    (17, "[2001:db8::1]:5353", "[2001:db8::2]:53"): (1, 60, 0, 0),
    (1, "192.0.2.2:0", "192.0.2.1:0"): (1, 48, 0, 0),
    (6, "192.0.2.2:80", "192.0.2.1:1234"): (1, 140, 0, 0),
    (58, "[2001:db8::2]:0", "[2001:db8::1]:0"): (1, 52, 0, 0),
}
# --local 192.0.2.1 --local 2001:db8::1: packets to those are rx (src/dst
# swapped), so the two TCP directions merge.
EXPECTED_LOCAL = {
    (6, "192.0.2.1:1234", "192.0.2.2:80"): (1, 50, 1, 140),
    (17, "[2001:db8::1]:5353", "[2001:db8::2]:53"): (1, 60, 0, 0),
    (1, "192.0.2.1:0", "192.0.2.2:0"): (0, 0, 1, 48),
    (58, "[2001:db8::1]:0", "[2001:db8::2]:0"): (0, 0, 1, 52),
}
LOCAL = ["192.0.2.1/32", "2001:db8::1"]

LINKTYPES = [101, 12, 14, 228, 229, 0, 108, 1, 113, 276]
LINKTYPES += [8, 9, 50, 51, 104, 105, 107, 109, 117, 127, 226, 239]


@pytest.fixture(params=cap.SCANNERS)
def scanner(request):
    return cap.scanner_class(request.param)


def records(packets=PACKETS, wrap=lambda p: p, step=MS):
    return [(T0 + i * step, wrap(p)) for i, p in enumerate(packets)]


def table(data: bytes, scanner, **kw):
    return cap.read_table(data, scanner_class=scanner, **kw)


# -- formats and link types ----------------------------------------------------------


@pytest.mark.parametrize("linktype", LINKTYPES)
@pytest.mark.parametrize("big_endian", [False, True], ids=["le", "be"])
@pytest.mark.parametrize("nanosecond", [False, True], ids=["us", "ns"])
def test_pcap_every_linktype(scanner, linktype, big_endian, nanosecond):
    data = cap.pcap(
        records(wrap=cap.LINK_WRAPPERS[linktype]),
        linktype,
        big_endian=big_endian,
        nanosecond=nanosecond,
    )
    windows, reader = cap.read_windows(data, scanner_class=scanner)
    assert reader.format == "pcap"
    assert reader.linktypes == [linktype]
    assert reader.packets == 5 and reader.skipped == 0
    assert len(windows) == 1
    assert cap.as_table(windows[0].virtual) == EXPECTED
    assert windows[0].physical == {}
    assert (windows[0].start_ns, windows[0].end_ns) == (T0, T0 + 4 * MS)


@pytest.mark.parametrize("linktype", LINKTYPES)
@pytest.mark.parametrize("big_endian", [False, True], ids=["le", "be"])
@pytest.mark.parametrize(
    "tsresol", [None, 3, 9, 0x80 | 30], ids=["us", "ms", "ns", "2^-30"]
)
def test_pcapng_every_linktype(scanner, linktype, big_endian, tsresol):
    step = MS if tsresol != 3 else 1000 * MS
    recs = records(wrap=cap.LINK_WRAPPERS[linktype], step=step)
    sec = Section(
        [Interface(linktype, tsresol=tsresol)],
        [(0, ts, f) for ts, f in recs],
        big_endian=big_endian,
    )
    windows, reader = cap.read_windows(cap.pcapng(sec), scanner_class=scanner)
    assert reader.format == "pcapng"
    assert reader.linktypes == [linktype]
    assert cap.as_table(windows[0].virtual) == EXPECTED
    start, end = windows[0].start_ns, windows[0].end_ns
    if tsresol == 0x80 | 30:
        # Binary fractions of a second: exact to about a nanosecond.
        assert abs(start - T0) <= 2 and abs(end - (T0 + 4 * step)) <= 2
    elif tsresol == 3:
        assert (start, end) == (T0 - 456_000, T0 - 456_000 + 4 * step)
    else:
        assert (start, end) == (T0, T0 + 4 * step)


@pytest.mark.parametrize("linktype", [1, 113, 276, 0])
def test_pcap_and_pcapng_give_identical_windows(scanner, linktype):
    """Same frames, same times: same windows, whatever the container."""
    recs = records(packets=PACKETS * 4, wrap=cap.LINK_WRAPPERS[linktype], step=300 * MS)
    files = [
        cap.pcap(recs, linktype),
        cap.pcap(recs, linktype, big_endian=True, nanosecond=True),
        cap.pcapng(Section([Interface(linktype)], [(0, ts, f) for ts, f in recs])),
        cap.pcapng(
            Section(
                [Interface(linktype, tsresol=9)],
                [(0, ts, f) for ts, f in recs],
                big_endian=True,
                junk=True,
            )
        ),
    ]
    results = []
    for data in files:
        windows, _ = cap.read_windows(
            data, scanner_class=scanner, max_period_ns=1000 * MS
        )
        results.append(
            [(w.start_ns, w.end_ns, cap.as_table(w.virtual)) for w in windows]
        )
    # 20 packets 300 ms apart in 1 s windows opened by a packet: 0-0.9 s,
    # 1.2-2.1 s, 2.4-3.3 s, 3.6-4.5 s, 4.8-5.7 s.
    assert [len(w[2]) for w in results[0]] == [4, 4, 4, 4, 4]
    for other in results[1:]:
        assert other == results[0]


def test_local_merges_both_directions(scanner):
    data = cap.pcap(records(wrap=cap.ethernet), 1)
    assert table(data, scanner, local=LOCAL) == EXPECTED_LOCAL


def test_local_networks_with_prefixes(scanner):
    # 192.0.2.0/31 holds 192.0.2.1 but not .2; fd00::/8 holds nothing here.
    data = cap.pcap(records(wrap=cap.sll), 113)
    assert (
        table(data, scanner, local=["192.0.2.0/31", "fd00::/8", "2001:db8::/127"])
        == EXPECTED_LOCAL
    )


# -- link-layer details ------------------------------------------------------------------


@pytest.mark.parametrize(
    "tags",
    [
        [(0x8100, 10)],  # 802.1Q
        [(0x88A8, 100), (0x8100, 10)],  # 802.1ad QinQ
        [(0x9100, 100), (0x8100, 10)],  # pre-standard QinQ
        [(0x8100, 1), (0x8100, 2), (0x8100, 3)],  # stacked
    ],
    ids=["dot1q", "qinq", "9100", "triple"],
)
def test_vlan_tags(scanner, tags):
    recs = records(wrap=lambda p: cap.ethernet(p, vlans=tags))
    assert table(cap.pcap(recs, 1), scanner) == EXPECTED
    assert (
        table(
            cap.pcapng(Section([Interface(1)], [(0, t, f) for t, f in recs])), scanner
        )
        == EXPECTED
    )


def test_vlan_tags_in_cooked_captures(scanner):
    recs = records(
        wrap=lambda p: (
            cap.sll(p, protocol=0x8100)[: -len(p)]
            + b"\x00\x0a"
            + cap.ethertype_of(p).to_bytes(2, "big")
            + p
        )
    )
    assert table(cap.pcap(recs, 113), scanner) == EXPECTED


def test_non_ip_frames_are_skipped_and_counted(scanner):
    frames = [
        (T0, cap.ARP_FRAME),
        (T0 + 1000, cap.ethernet(P_TCP4)),
        (T0 + 2000, cap.LLDP_FRAME),
        (T0 + 3000, cap.ethernet(b"\x00" * 30, ethertype=0x0040)),  # 802.3 length field
        (
            T0 + 4000,
            cap.ethernet(P_UDP6, vlans=[(0x8100, 5)], ethertype=0x0806),
        ),  # ARP in a VLAN
        (T0 + 5000, b"\x02\x00\x00"),  # shorter than an Ethernet header
        (T0 + 6000, cap.ethernet(b"", vlans=[(0x8100, 5)])[:16]),  # cut inside the tag
    ]
    windows, reader = cap.read_windows(cap.pcap(frames, 1), scanner_class=scanner)
    assert reader.skipped == 6 and reader.packets == 1
    assert cap.as_table(windows[0].virtual) == {
        (6, "192.0.2.1:1234", "192.0.2.2:80"): (1, 50, 0, 0)
    }
    # The window starts at the first IP packet, not at the ARP frame before it.
    assert windows[0].start_ns == T0 + 1000


@pytest.mark.parametrize(
    "linktype, frame",
    [
        (113, cap.sll(bytes(28), protocol=0x0806)),
        (276, cap.sll2(bytes(28), protocol=0x0806)),
        (0, cap.null(P_TCP4, family=7)),
        (108, cap.loop(P_TCP4, family=7)),
        (0, b"\x02\x00"),
    ],
    ids=["sll-arp", "sll2-arp", "null-af7", "loop-af7", "null-short"],
)
def test_non_ip_frames_of_other_linktypes(scanner, linktype, frame):
    windows, reader = cap.read_windows(
        cap.pcap([(T0, frame)], linktype), scanner_class=scanner
    )
    assert (reader.packets, reader.skipped, windows) == (0, 1, [])


@pytest.mark.parametrize("family", [10, 24, 28, 30])
@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_null_address_families_in_either_byte_order(scanner, family, byteorder):
    recs = [
        (T0, cap.null(P_ICMP6, family=family, byteorder=byteorder)),
        (T0 + 1, cap.null(P_TCP4, byteorder=byteorder)),
    ]
    assert table(cap.pcap(recs, 0), scanner) == {
        (58, "[2001:db8::2]:0", "[2001:db8::1]:0"): (1, 52, 0, 0),
        (6, "192.0.2.1:1234", "192.0.2.2:80"): (1, 50, 0, 0),
    }


def test_ethernet_padding_and_fcs_are_not_counted(scanner):
    # A 48-byte ICMP packet in a minimum 60-byte frame, and a frame with a
    # 4-byte FCS after the IP packet: only the IP bytes count.
    recs = [
        (T0, cap.ethernet(P_ICMP4, pad_to=60)),
        (T0 + 1, cap.ethernet(P_TCP4) + b"\xde\xad\xbe\xef"),
    ]
    recs.append((T0 + 2, cap.ethernet(P_ICMP6, pad_to=200)))
    assert table(cap.pcap(recs, 1), scanner) == {
        (1, "192.0.2.2:0", "192.0.2.1:0"): (1, 48, 0, 0),
        (6, "192.0.2.1:1234", "192.0.2.2:80"): (1, 50, 0, 0),
        (58, "[2001:db8::2]:0", "[2001:db8::1]:0"): (1, 52, 0, 0),
    }


def test_zero_total_length_is_not_trimmed(scanner):
    # TSO/GSO packets seen on the sending host may carry total length 0:
    # nothing to trim by, so the captured bytes are the packet, keyed by its
    # protocol and ports as tshark does (tests/test_big_tcp.py).
    packet = cap.ipv4("192.0.2.1", "192.0.2.2", 17, cap.udp(1, 2, b"x" * 30), total=0)
    assert table(cap.pcap([(T0, cap.ethernet(packet))], 1), scanner) == {
        (17, "192.0.2.1:1", "192.0.2.2:2"): (1, 58, 0, 0),
    }


def test_snaplen_cut_packets_keep_their_connection_and_length(scanner):
    # Cut by the snap length, packets are shorter than their IP length.  When
    # the headers were captured they are decoded as the whole packet they
    # were and count their full IP length; the reader counts them.
    recs = [
        (T0, cap.ethernet(P_TCP4R)),  # 140-byte packet, 50 captured
        (T0 + 1, cap.ethernet(P_TCP4)),  # 50 bytes: whole
        (T0 + 2, cap.ethernet(cap.udp6("2001:db8::1", 1, "2001:db8::2", 2, b"f" * 99))),
    ]
    expected = {
        (6, "192.0.2.2:80", "192.0.2.1:1234"): (1, 140, 0, 0),
        (6, "192.0.2.1:1234", "192.0.2.2:80"): (1, 50, 0, 0),
        (17, "[2001:db8::1]:1", "[2001:db8::2]:2"): (1, 147, 0, 0),
    }
    sections = {
        "pcap": cap.pcap(recs, 1, snaplen=14 + 50),
        "epb": cap.pcapng(
            Section([Interface(1, snaplen=64)], [(0, t, f) for t, f in recs])
        ),
        "spb": cap.pcapng(
            Section([Interface(1, snaplen=64)], [(None, t, f) for t, f in recs])
        ),
    }
    for name, data in sections.items():
        assert table(data, scanner) == expected, name
        for buffer_size in (64, 150):  # packets at the very end of a buffer fill
            reader = open_bytes(data, scanner, buffer_size=buffer_size, capacity=1)
            windows: list = []
            replayer = Replayer(windows.append)
            replayer.feed(reader)
            replayer.finish()
            assert cap.as_table(windows[0].virtual) == expected, name
            assert (reader.packets, reader.truncated) == (3, 2), name


def test_snaplen_cut_packets_without_their_headers(scanner):
    # Not enough captured for the ports: the decoder's rule for a short
    # packet applies to the captured bytes (the anonymous row), still counted
    # as truncated.  A packet whose IP length exceeds what the wire carried
    # was malformed, not cut: the decoder's rule applies as well.
    big = cap.tcp4("192.0.2.1", 1, "192.0.2.2", 2, b"x" * 60)
    lying = bytearray(P_TCP4)
    lying[2:4] = (400).to_bytes(2, "big")
    recs = [(T0, cap.ethernet(big)), (T0 + 1, cap.ethernet(bytes(lying)))]
    data = cap.pcap(recs, 1, snaplen=14 + 22)
    assert table(data, scanner) == {(0, "invalid", "invalid"): (2, 44, 0, 0)}
    reader = open_bytes(data, scanner)
    cap.drain(reader)
    assert reader.truncated == 2
    # ICMP needs no transport bytes; a later fragment none either.
    icmp = cap.icmp4("192.0.2.2", "192.0.2.1", b"c" * 200)
    frag = cap.ipv4("192.0.2.3", "192.0.2.1", 17, b"z" * 300, frag=100)
    data = cap.pcap(
        [(T0, cap.ethernet(icmp)), (T0, cap.ethernet(frag))], 1, snaplen=14 + 20
    )
    assert table(data, scanner) == {
        (1, "192.0.2.2:0", "192.0.2.1:0"): (1, 228, 0, 0),
        (255, "192.0.2.3:0", "192.0.2.1:0"): (1, 320, 0, 0),
    }


@pytest.mark.parametrize(
    "encap", ["mpls", "mpls3", "pppoe", "vlan-pppoe", "pppoe-mpls"]
)
def test_ip_inside_mpls_and_pppoe(scanner, encap):
    def frame(packet: bytes) -> bytes:
        if encap == "mpls":
            return cap.ethernet(cap.mpls(packet, 1), ethertype=0x8847)
        if encap == "mpls3":
            return cap.ethernet(cap.mpls(packet, 3), ethertype=0x8848)
        if encap == "pppoe":
            return cap.ethernet(cap.pppoe(packet), ethertype=0x8864)
        if encap == "vlan-pppoe":
            return cap.ethernet(
                cap.pppoe(packet), ethertype=0x8864, vlans=[(0x8100, 7)]
            )
        # PPP protocol 0x0281: MPLS inside the PPPoE session
        body = cap.mpls(packet, 2)
        return cap.ethernet(
            struct.pack(">BBHH", 0x11, 0, 1, len(body) + 2) + b"\x02\x81" + body,
            ethertype=0x8864,
        )

    data = cap.pcap(records(wrap=frame), 1)
    assert table(data, scanner) == EXPECTED
    # Not IP after the labels (an Ethernet pseudowire) or another PPP protocol.
    other = cap.pcap(
        [
            (T0, cap.ethernet(cap.mpls(cap.ARP_FRAME), ethertype=0x8847)),
            (T0, cap.ethernet(b"\x11\x00\x00\x01\x00\x02\xc0\x21", ethertype=0x8864)),
        ],
        1,
    )
    reader = open_bytes(other, scanner)
    cap.drain(reader)
    assert (reader.packets, reader.skipped) == (0, 2)


@pytest.mark.parametrize(
    "linktype, wrap",
    [
        (9, cap.ppp_bare),
        (107, cap.frelay_cisco),
        (50, lambda p: cap.c_hdlc(p)),  # Cisco HDLC framing inside PPP_HDLC
        (105, lambda p: cap.wifi(p, qos=True, wds=True)),
        (127, lambda p: cap.radiotap(p, flags=True)),
    ],
    ids=[
        "ppp-compressed",
        "frelay-cisco",
        "ppp-hdlc-cisco",
        "wifi-qos-wds",
        "radiotap-pad",
    ],
)
def test_link_layer_variants(scanner, linktype, wrap):
    assert table(cap.pcap(records(wrap=wrap), linktype), scanner) == EXPECTED


def test_wifi_frames_that_carry_no_ip_are_skipped(scanner):
    data_frame = cap.wifi(P_TCP4)
    protected = data_frame[:1] + bytes([data_frame[1] | 0x40]) + data_frame[2:]
    null_function = bytes([0x48]) + data_frame[1:]
    beacon = bytes([0x80]) + data_frame[1:]
    recs = [(T0, f) for f in (protected, null_function, beacon, data_frame)]
    reader = open_bytes(cap.pcap(recs, 105), scanner)
    cap.drain(reader)
    assert (reader.packets, reader.skipped) == (1, 3)


def test_pcapng_interfaces_with_their_own_linktypes_and_resolutions(scanner):
    ifaces = [
        Interface(1),
        Interface(276, tsresol=9),
        Interface(101, tsresol=3),
        Interface(113, tsoffset=-100),
    ]
    wrap = [cap.ethernet, cap.sll2, lambda p: p, cap.sll]
    pkts = [
        (i % 4, T0 + i * MS, wrap[i % 4](p))
        for i, p in enumerate(PACKETS + [P_TCP4, P_UDP6, P_ICMP4])
    ]
    windows, reader = cap.read_windows(
        cap.pcapng(Section(ifaces, pkts)), scanner_class=scanner
    )
    assert reader.linktypes == [1, 276, 101, 113]
    got = cap.as_table(windows[0].virtual)
    assert got[(6, "192.0.2.1:1234", "192.0.2.2:80")] == (2, 100, 0, 0)
    assert got[(17, "[2001:db8::1]:5353", "[2001:db8::2]:53")] == (2, 120, 0, 0)
    assert got[(1, "192.0.2.2:0", "192.0.2.1:0")] == (2, 96, 0, 0)
    assert windows[0].start_ns == T0 and windows[0].end_ns == T0 + 7 * MS


def test_pcapng_sections_may_change_byte_order(scanner):
    first = Section([Interface(1)], [(0, T0, cap.ethernet(P_TCP4))])
    second = Section(
        [Interface(101, tsresol=9)],
        [(0, T0 + MS, P_TCP4), (0, T0 + 2 * MS, P_UDP6)],
        big_endian=True,
    )
    third = Section([Interface(229)], [(0, T0 + 3 * MS, P_ICMP6)], junk=True)
    windows, reader = cap.read_windows(
        cap.pcapng([first, second, third]), scanner_class=scanner
    )
    assert reader.linktypes == [1, 101, 229]
    assert cap.as_table(windows[0].virtual) == {
        (6, "192.0.2.1:1234", "192.0.2.2:80"): (2, 100, 0, 0),
        (17, "[2001:db8::1]:5353", "[2001:db8::2]:53"): (1, 60, 0, 0),
        (58, "[2001:db8::2]:0", "[2001:db8::1]:0"): (1, 52, 0, 0),
    }
    assert windows[0].end_ns == T0 + 3 * MS


def test_pcapng_simple_packet_blocks_take_the_previous_time(scanner):
    pkts = [
        (0, T0, cap.ethernet(P_TCP4)),
        (None, 0, cap.ethernet(P_UDP6)),
        (None, 0, cap.ethernet(P_ICMP4)),
    ]
    pkts.append((0, T0 + 5 * MS, cap.ethernet(P_ICMP6)))
    windows, reader = cap.read_windows(
        cap.pcapng(Section([Interface(1)], pkts, junk=True)), scanner_class=scanner
    )
    assert reader.packets == 4
    assert len(cap.as_table(windows[0].virtual)) == 4
    assert (windows[0].start_ns, windows[0].end_ns) == (T0, T0 + 5 * MS)


def test_pcapng_interface_with_unsupported_linktype_but_no_packets(scanner):
    sec = Section([Interface(192), Interface(1)], [(1, T0, cap.ethernet(P_TCP4))])
    assert table(cap.pcapng(sec), scanner) == {
        (6, "192.0.2.1:1234", "192.0.2.2:80"): (1, 50, 0, 0)
    }


# -- buffering -------------------------------------------------------------------------------


class Trickle(io.RawIOBase):
    """A pipe that delivers at most ``chunk`` bytes per read."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self._data = memoryview(data)
        self._chunk = chunk

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        n = min(len(b), self._chunk, len(self._data))
        b[:n] = self._data[:n]
        self._data = self._data[n:]
        return n


@pytest.mark.parametrize(
    "buffer_size, capacity, chunk",
    [(64, 1, 7), (100, 2, 1000), (1000, 3, 13), (64, 65536, 1 << 20)],
)
def test_small_buffers_and_slow_pipes_give_the_same_result(
    scanner, buffer_size, capacity, chunk
):
    big = cap.tcp4(
        "192.0.2.1", 1234, "192.0.2.2", 80, b"z" * 9000
    )  # larger than the buffer
    pkts = PACKETS * 3 + [big]
    expected = dict(EXPECTED)
    for key in expected:
        expected[key] = tuple(3 * v for v in expected[key])
    expected[(6, "192.0.2.1:1234", "192.0.2.2:80")] = (4, 150 + 9040, 0, 0)
    for data in (
        cap.pcap(records(pkts, cap.ethernet), 1),
        cap.pcapng(
            Section(
                [Interface(276)],
                [(0, t, f) for t, f in records(pkts, cap.sll2)],
                junk=True,
            )
        ),
    ):
        reader = CaptureReader(
            Trickle(data, chunk),
            "pipe",
            scanner_class=scanner,
            buffer_size=buffer_size,
            capacity=capacity,
        )  # type: ignore[arg-type]
        windows: list = []
        replayer = Replayer(windows.append)
        replayer.feed(reader)
        replayer.finish()
        assert cap.as_table(windows[0].virtual) == expected
        assert reader.offset == len(data)


# -- errors ------------------------------------------------------------------------------------


def open_bytes(data: bytes, scanner, name: str = "bad.pcap", **kw) -> CaptureReader:
    return CaptureReader(io.BytesIO(data), name, scanner_class=scanner, **kw)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "bad.pcap: empty input, not a pcap or pcapng capture"),
        (
            b"GET / HTTP/1.1\r\n",
            "bad.pcap: not a pcap or pcapng capture (starts with 47455420)",
        ),
        (b"\x1f\x8b\x08\x00" + bytes(20), "gzip-compressed"),
        (b"\xd4\xc3", "bad.pcap: not a pcap or pcapng capture (only 2 bytes)"),
        (
            b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x00\x00\x00\x00",
            "pcapng magic without byte-order mark",
        ),
    ],
    ids=["empty", "text", "gzip", "short", "pcapng-no-bom"],
)
def test_not_a_capture(scanner, data, message):
    with pytest.raises(
        NotACaptureError, match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        open_bytes(data, scanner)


def test_truncated_pcap_header(scanner):
    with pytest.raises(
        TruncatedCaptureError, match="bad.pcap: truncated pcap file header"
    ):
        open_bytes(cap.pcap([], 1)[:20], scanner)


@pytest.mark.parametrize(
    "linktype, name", [(119, "PRISM_HEADER"), (192, "PPI"), (4242, None)]
)
def test_unsupported_linktype_is_named(scanner, linktype, name):
    with pytest.raises(UnsupportedLinkTypeError) as info:
        open_bytes(cap.pcap([(T0, b"\0" * 40)], linktype), scanner)
    text = str(info.value)
    assert text.startswith(f"bad.pcap: unsupported link type {linktype}")
    if name:
        assert f"({name})" in text
    assert "EN10MB" in text and info.value.linktype == linktype


def count_until_error(data: bytes, scanner):
    """Feed a capture; return (table counted before the error, the error)."""
    windows: list = []
    replayer = Replayer(windows.append)
    reader = open_bytes(data, scanner)
    with pytest.raises(Exception) as info:
        replayer.feed(reader)
    replayer.finish()
    total = cap.as_table(windows[0].virtual) if windows else {}
    return total, info.value


FIRST_FOUR = {k: v for k, v in EXPECTED.items() if k[0] != 58}


@pytest.mark.parametrize("cut", [1, 10, 16, 17, 30])
def test_truncated_last_pcap_record(scanner, cut):
    data = cap.pcap(records(wrap=cap.ethernet), 1)
    counted, error = count_until_error(data[:-cut], scanner)
    assert isinstance(error, TruncatedCaptureError)
    assert counted == FIRST_FOUR
    assert str(error).startswith(
        "bad.pcap: truncated: the input ends inside the record at byte "
    )


@pytest.mark.parametrize("cut", [1, 4, 40])
def test_truncated_last_pcapng_block(scanner, cut):
    data = cap.pcapng(
        Section([Interface(1)], [(0, t, f) for t, f in records(wrap=cap.ethernet)])
    )
    counted, error = count_until_error(data[:-cut], scanner)
    assert isinstance(error, TruncatedCaptureError)
    assert counted == FIRST_FOUR


def test_corrupt_pcap_record_length(scanner):
    good = cap.pcap(records(PACKETS[:4], cap.ethernet), 1)
    bad_record = b"\0" * 8 + (1 << 30).to_bytes(4, "little") * 2 + b"\0" * 64
    counted, error = count_until_error(good + bad_record + b"\0" * 100, scanner)
    assert isinstance(error, CorruptCaptureError)
    assert counted == FIRST_FOUR
    assert str(error) == (
        f"bad.pcap: corrupt pcap record at byte {len(good)}: record length 1073741824 exceeds the limit 262144"
    )


@pytest.mark.parametrize(
    "damage, reason",
    [
        (
            lambda b: b[:4] + (len(b) + 2).to_bytes(4, "little") + b[8:],
            "has a bad length",
        ),
        (lambda b: b[:-4] + b"\x99\x99\x00\x00", "trailing length does not match"),
        (
            lambda b: b[:8] + (7).to_bytes(4, "little") + b[12:],
            "packet on undefined interface 7",
        ),
        (
            lambda b: b[:20] + (5000).to_bytes(4, "little") + b[24:],
            "packet length 5000 overruns its block",
        ),
    ],
    ids=["length", "trailer", "interface", "caplen"],
)
def test_corrupt_pcapng_block(scanner, damage, reason):
    head = cap.pcapng(
        Section(
            [Interface(1)], [(0, t, f) for t, f in records(PACKETS[:4], cap.ethernet)]
        )
    )
    last = cap.pcapng(Section([Interface(1)], [(0, T0, cap.ethernet(P_ICMP6))]))
    epb = last[len(cap.pcapng(Section([Interface(1)], []))) :]
    counted, error = count_until_error(head + damage(epb), scanner)
    assert isinstance(error, CorruptCaptureError), error
    assert counted == FIRST_FOUR
    assert reason in str(error) and str(error).startswith(
        f"bad.pcap: corrupt pcapng record at byte {len(head)}"
    )


def test_packets_on_unsupported_pcapng_interfaces_are_skipped_and_counted(scanner):
    # One PPI interface (unsupported) among Ethernet ones must not end the
    # file: its packets are skipped and counted, its link type noted once.
    frames = [(0, T0, cap.ethernet(P_TCP4))]
    frames += [(1, T0 + i, b"\0" * 30) for i in range(1, 4)]
    frames += [(2, T0 + 5, cap.ethernet(P_TCP4R)), (1, T0 + 6, b"\0" * 8)]
    frames += [(None, T0 + 7, b"\0" * 8)]  # simple packet block: interface 0
    sec = Section([Interface(1), Interface(192), Interface(1)], frames)
    expected = {
        (6, "192.0.2.1:1234", "192.0.2.2:80"): (1, 50, 0, 0),
        (6, "192.0.2.2:80", "192.0.2.1:1234"): (1, 140, 0, 0),
    }
    for capacity in (1, 65536):
        reader = open_bytes(cap.pcapng(sec), scanner, capacity=capacity)
        windows: list = []
        replayer = Replayer(windows.append)
        replayer.feed(reader)
        replayer.finish()
        assert cap.as_table(windows[0].virtual) == expected
        assert (reader.unsupported, reader.unsupported_linktypes) == (4, [192])
        assert (reader.packets, reader.skipped) == (2, 1)
    # Interface 0 unsupported: simple packet blocks are skipped too.
    sec = Section(
        [Interface(192), Interface(1)],
        [(None, T0, b"\0" * 9), (1, T0, cap.ethernet(P_TCP4))],
    )
    assert table(cap.pcapng(sec), scanner) == {
        (6, "192.0.2.1:1234", "192.0.2.2:80"): (1, 50, 0, 0)
    }


def test_bad_section_header(scanner):
    data = cap.pcapng(Section([Interface(1)], [(0, T0, cap.ethernet(P_TCP4))]))
    bad_version = data[:12] + (2).to_bytes(2, "little") + data[14:]
    with pytest.raises(CorruptCaptureError, match="unsupported pcapng version 2"):
        cap.read_windows(bad_version, scanner_class=scanner)
    second_bad = data + data[:8] + b"\x01\x02\x03\x04" + data[12:]
    counted, error = count_until_error(second_bad, scanner)
    assert counted == {(6, "192.0.2.1:1234", "192.0.2.2:80"): (1, 50, 0, 0)}
    assert "bad byte-order mark 01020304" in str(error)
