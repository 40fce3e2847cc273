"""Build IP packets, link-layer frames and pcap/pcapng files for the tests.

Everything is written by hand from the format specifications (libpcap's
pcap-savefile(5), the pcapng draft, the LINKTYPE_* pages) rather than with a
packet library, so that the tests check the reader against the formats and
not against another implementation.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# -- IP packets ----------------------------------------------------------------


def _addr(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def ipv4(
    src: str,
    dst: str,
    proto: int,
    payload: bytes,
    *,
    frag: int = 0,
    total: int | None = None,
) -> bytes:
    """An IPv4 packet with a 20-byte header; ``total`` overrides the length field."""
    length = 20 + len(payload) if total is None else total
    header = struct.pack(
        ">BBHHHBBH4s4s",
        0x45,
        0,
        length,
        0x1234,
        frag,
        64,
        proto,
        0,
        _addr(src),
        _addr(dst),
    )
    return header + payload


def ipv6(src: str, dst: str, next_header: int, payload: bytes) -> bytes:
    header = struct.pack(
        ">IHBB16s16s", 6 << 28, len(payload), next_header, 64, _addr(src), _addr(dst)
    )
    return header + payload


def tcp(sport: int, dport: int, data: bytes = b"") -> bytes:
    return (
        struct.pack(">HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x18, 65535, 0, 0) + data
    )


def udp(sport: int, dport: int, data: bytes = b"") -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(data), 0) + data


def icmp(data: bytes = b"") -> bytes:
    return struct.pack(">BBHHH", 8, 0, 0, 1, 1) + data


def tcp4(src: str, sport: int, dst: str, dport: int, data: bytes = b"") -> bytes:
    return ipv4(src, dst, 6, tcp(sport, dport, data))


def udp4(src: str, sport: int, dst: str, dport: int, data: bytes = b"") -> bytes:
    return ipv4(src, dst, 17, udp(sport, dport, data))


def icmp4(src: str, dst: str, data: bytes = b"") -> bytes:
    return ipv4(src, dst, 1, icmp(data))


def tcp6(src: str, sport: int, dst: str, dport: int, data: bytes = b"") -> bytes:
    return ipv6(src, dst, 6, tcp(sport, dport, data))


def udp6(src: str, sport: int, dst: str, dport: int, data: bytes = b"") -> bytes:
    return ipv6(src, dst, 17, udp(sport, dport, data))


def icmp6(src: str, dst: str, data: bytes = b"") -> bytes:
    return ipv6(src, dst, 58, icmp(data))


# -- link layers -----------------------------------------------------------------

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


def ethertype_of(packet: bytes) -> int:
    return 0x86DD if packet and packet[0] >> 4 == 6 else 0x0800


def ethernet(
    packet: bytes,
    *,
    vlans: Sequence[tuple[int, int]] = (),
    ethertype: int | None = None,
    pad_to: int = 0,
) -> bytes:
    """An Ethernet frame; ``vlans`` is a list of (TPID, VLAN id) tags, outermost first."""
    frame = MAC_B + MAC_A
    for tpid, vid in vlans:
        frame += struct.pack(">H", tpid) + struct.pack(">H", vid)
    frame += (
        struct.pack(">H", ethertype if ethertype is not None else ethertype_of(packet))
        + packet
    )
    if len(frame) < pad_to:
        frame += b"\x00" * (pad_to - len(frame))
    return frame


def sll(packet: bytes, *, pkttype: int = 0, protocol: int | None = None) -> bytes:
    """LINUX_SLL: packet type, ARPHRD, address length, 8-byte address, protocol."""
    proto = protocol if protocol is not None else ethertype_of(packet)
    return struct.pack(">HHH8sH", pkttype, 1, 6, MAC_A + b"\0\0", proto) + packet


def sll2(packet: bytes, *, pkttype: int = 0, protocol: int | None = None) -> bytes:
    """LINUX_SLL2: protocol, reserved, ifindex, ARPHRD, packet type, address length, address."""
    proto = protocol if protocol is not None else ethertype_of(packet)
    return (
        struct.pack(">HHIHBB8s", proto, 0, 2, 1, pkttype, 6, MAC_A + b"\0\0") + packet
    )


def null(
    packet: bytes, *, family: int | None = None, byteorder: str = "little"
) -> bytes:
    fam = family if family is not None else (30 if packet[0] >> 4 == 6 else 2)
    return fam.to_bytes(4, byteorder) + packet  # type: ignore[arg-type]


def loop(packet: bytes, *, family: int | None = None) -> bytes:
    fam = family if family is not None else (24 if packet[0] >> 4 == 6 else 2)
    return fam.to_bytes(4, "big") + packet


def ppp_protocol(packet: bytes) -> bytes:
    return b"\x00\x57" if packet[0] >> 4 == 6 else b"\x00\x21"


def ppp(packet: bytes) -> bytes:
    """PPP in HDLC-like framing (RFC 1662): address ff, control 03, protocol."""
    return b"\xff\x03" + ppp_protocol(packet) + packet


def ppp_bare(packet: bytes) -> bytes:
    """PPP without framing, the protocol compressed to one byte (RFC 1661)."""
    return ppp_protocol(packet)[1:] + packet


def pppoe(packet: bytes) -> bytes:
    """A PPPoE session header (RFC 2516), then the PPP protocol."""
    return (
        struct.pack(">BBHH", 0x11, 0, 0x1234, len(packet) + 2)
        + ppp_protocol(packet)
        + packet
    )


def c_hdlc(packet: bytes) -> bytes:
    return b"\x0f\x00" + struct.pack(">H", ethertype_of(packet)) + packet


def mpls(packet: bytes, labels: int = 2) -> bytes:
    """An MPLS label stack (the last label has the bottom-of-stack bit) before the packet."""
    out = b""
    for i in range(labels):
        bottom = 1 if i == labels - 1 else 0
        out += struct.pack(">I", (1000 + i) << 12 | bottom << 8 | 64)
    return out + packet


def wifi(packet: bytes, *, qos: bool = False, wds: bool = False) -> bytes:
    """An 802.11 data frame (to the DS) with LLC/SNAP."""
    fc0 = 0x88 if qos else 0x08
    fc1 = 0x03 if wds else 0x01
    hdr = bytes([fc0, fc1]) + b"\0\0" + MAC_B + MAC_A + MAC_B + b"\0\0"
    if wds:
        hdr += MAC_A
    if qos:
        hdr += b"\0\0"
    snap = b"\xaa\xaa\x03\x00\x00\x00" + struct.pack(">H", ethertype_of(packet))
    return hdr + snap + packet


def radiotap(packet: bytes, *, flags: bool = False) -> bytes:
    """A radiotap header, then an 802.11 frame.

    With ``flags``: TSFT and Flags fields, "data pad" set, and the QoS
    header (26 bytes) padded to 28.
    """
    if not flags:
        return struct.pack("<BBHI", 0, 0, 8, 0) + wifi(packet)
    body = struct.pack("<Q", 1) + b"\x20"  # TSFT, then Flags = data pad
    header = struct.pack("<BBHI", 0, 0, 8 + len(body), 0x3) + body
    frame = wifi(packet, qos=True)
    return header + frame[:26] + b"\0\0" + frame[26:]


def nflog(packet: bytes) -> bytes:
    family = 10 if packet[0] >> 4 == 6 else 2
    prefix = struct.pack("<HH", 8, 10) + b"abc\0"  # NFULA_PREFIX, then the payload
    return (
        struct.pack(">BBH", family, 0, 5)
        + prefix
        + struct.pack("<HH", 4 + len(packet), 9)
        + packet
    )


def pflog(packet: bytes) -> bytes:
    family = 24 if packet[0] >> 4 == 6 else 2
    return bytes([61, family]) + bytes(62) + packet


def enc(packet: bytes) -> bytes:
    family = 24 if packet[0] >> 4 == 6 else 2
    return struct.pack("<III", family, 0x100, 0) + packet


def ipnet(packet: bytes) -> bytes:
    family = 26 if packet[0] >> 4 == 6 else 2
    return struct.pack(">BBHIIIII", 2, family, 0, len(packet), 1, 0, 0, 0) + packet


def frelay(packet: bytes) -> bytes:
    nlpid = b"\x8e" if packet[0] >> 4 == 6 else b"\xcc"
    return b"\x18\x41\x03" + nlpid + packet


def frelay_cisco(packet: bytes) -> bytes:
    return b"\x48\xe1" + struct.pack(">H", ethertype_of(packet)) + packet


def slip(packet: bytes) -> bytes:
    return b"\x00\x40" + bytes(14) + packet


# -- tunnels -----------------------------------------------------------------------
# Outer headers for the decapsulation tests (docs/tunnels.md), from the RFCs:
# VXLAN 7348, VXLAN-GPE (draft-ietf-nvo3-vxlan-gpe), NSH 8300, Geneve 8926,
# GRE 2784/2890, ERSPAN (draft-foschiano-erspan), MPLS over UDP 7510.


def vxlan(frame: bytes, vni: int, *, flags: int = 0x08) -> bytes:
    """A VXLAN header and the Ethernet frame it carries (a UDP payload)."""
    return struct.pack(">B3sI", flags, b"\0\0\0", vni << 8) + frame


def vxlan_gpe(payload: bytes, next_protocol: int, vni: int | None = None) -> bytes:
    flags = 0x04 | (0x08 if vni is not None else 0)
    return struct.pack(">BHBI", flags, 0, next_protocol, (vni or 0) << 8) + payload


def nsh(payload: bytes, next_protocol: int, *, context: int = 0) -> bytes:
    """NSH with MD type 2 and ``context`` 4-byte words of metadata."""
    words = 2 + context
    base = struct.pack(">BBBB", 0x0F, 0xC0 | words, 0x02, next_protocol)
    return base + struct.pack(">I", (42 << 8) | 255) + bytes(4 * context) + payload


def geneve(
    payload: bytes, vni: int, *, protocol: int = 0x6558, options: bytes = b""
) -> bytes:
    assert len(options) % 4 == 0
    return (
        struct.pack(">BBHI", len(options) // 4, 0, protocol, vni << 8)
        + options
        + payload
    )


def gre(
    payload: bytes,
    protocol: int,
    *,
    key: int | None = None,
    seq: int | None = None,
    checksum: bool = False,
) -> bytes:
    flags = 0
    extra = b""
    if checksum:
        flags |= 0x8000
        extra += bytes(4)
    if key is not None:
        flags |= 0x2000
        extra += struct.pack(">I", key)
    if seq is not None:
        flags |= 0x1000
        extra += struct.pack(">I", seq)
    return struct.pack(">HH", flags, protocol) + extra + payload


def erspan2(frame: bytes, session: int) -> bytes:
    """An ERSPAN type II header (use in GRE 0x88BE with a sequence number)."""
    return struct.pack(">HHI", 0x1000 | 7, session & 0x3FF, 1) + frame


def erspan3(
    payload: bytes, session: int, *, frame_type: int = 0, subheader: bool = False
) -> bytes:
    """An ERSPAN type III header (GRE 0x22EB), optionally with the platform subheader."""
    word2 = (frame_type & 0x1F) << 10 | (1 if subheader else 0)
    head = struct.pack(">HHIHH", 0x2000 | 7, session & 0x3FF, 12345, 0, word2)
    return head + (bytes(8) if subheader else b"") + payload


def udp_tunnel(
    src: str, dst: str, dport: int, payload: bytes, *, sport: int = 49152
) -> bytes:
    """An outer UDP packet (IPv4 or IPv6, by the addresses) carrying ``payload``."""
    if ":" in src:
        return udp6(src, sport, dst, dport, payload)
    return udp4(src, sport, dst, dport, payload)


def ip_tunnel(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    """An outer IPv4 or IPv6 packet of protocol ``proto`` (47 GRE, 4/41 IP in IP)."""
    if ":" in src:
        return ipv6(src, dst, proto, payload)
    return ipv4(src, dst, proto, payload)


def dest_options(next_header: int, payload: bytes, *, size: int = 8) -> bytes:
    """An IPv6 destination options header (what ip6tnl adds: the encapsulation limit)."""
    assert size % 8 == 0
    return (
        bytes([next_header, size // 8 - 1, 4, 1, 4, 1, 1, 0])
        + bytes(size - 8)
        + payload
    )


ARP_FRAME = ethernet(bytes(28), ethertype=0x0806)
LLDP_FRAME = ethernet(bytes(40), ethertype=0x88CC)

# -- files -------------------------------------------------------------------------

Record = tuple[int, bytes]  # (timestamp in ns, frame)


def pcap(
    records: Iterable[Record],
    linktype: int,
    *,
    big_endian: bool = False,
    nanosecond: bool = False,
    snaplen: int = 262144,
) -> bytes:
    """A classic pcap file; frames longer than ``snaplen`` are cut to it."""
    order = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for ts, frame in records:
        sec, ns = divmod(ts, 1_000_000_000)
        frac = ns if nanosecond else ns // 1000
        cap = frame[:snaplen]
        out.append(struct.pack(order + "IIII", sec, frac, len(cap), len(frame)) + cap)
    return b"".join(out)


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _option(order: str, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + _pad4(value)


def epb_flags(order: str, flags: int) -> bytes:
    """An epb_flags option (and the end of options): 1 inbound, 2 outbound."""
    return _option(order, 2, struct.pack(order + "I", flags)) + struct.pack(
        order + "HH", 0, 0
    )


def pcapng_block(order: str, btype: int, body: bytes) -> bytes:
    body = _pad4(body)
    length = 12 + len(body)
    return (
        struct.pack(order + "II", btype, length)
        + body
        + struct.pack(order + "I", length)
    )


@dataclass
class Interface:
    linktype: int
    tsresol: int | None = None  # if_tsresol option byte; None = default (10^-6)
    snaplen: int = 0
    tsoffset: int = 0  # if_tsoffset, seconds
    name: str = ""


@dataclass
class Section:
    interfaces: list[Interface]
    # (interface index, timestamp ns, frame); interface None = simple packet block
    packets: list[tuple[int | None, int, bytes]] = field(default_factory=list)
    big_endian: bool = False
    # blocks of unknown types to put before every packet (skipped by readers)
    junk: bool = False
    # enhanced packet blocks' options, by packet index (raw bytes, as written)
    epb_options: dict[int, bytes] = field(default_factory=dict)


def _ticks(ts_ns: int, iface: Interface) -> int:
    resol = 6 if iface.tsresol is None else iface.tsresol
    ts_ns -= iface.tsoffset * 1_000_000_000
    if resol & 0x80:
        return (ts_ns << (resol & 0x7F)) // 1_000_000_000
    exp = resol
    if exp <= 9:
        return ts_ns // 10 ** (9 - exp)
    return ts_ns * 10 ** (exp - 9)


def pcapng(sections: Section | Sequence[Section]) -> bytes:
    if isinstance(sections, Section):
        sections = [sections]
    out = []
    for sec in sections:
        o = ">" if sec.big_endian else "<"
        shb = (
            struct.pack(o + "IHHq", 0x1A2B3C4D, 1, 0, -1)
            + _option(o, 3, b"connstats tests")
            + struct.pack(o + "HH", 0, 0)
        )
        out.append(pcapng_block(o, 0x0A0D0D0A, shb))
        for iface in sec.interfaces:
            opts = b""
            if iface.name:
                opts += _option(o, 2, iface.name.encode())
            if iface.tsresol is not None:
                opts += _option(o, 9, bytes([iface.tsresol]))
            if iface.tsoffset:
                opts += _option(o, 14, struct.pack(o + "q", iface.tsoffset))
            if opts:
                opts += struct.pack(o + "HH", 0, 0)
            out.append(
                pcapng_block(
                    o,
                    1,
                    struct.pack(o + "HHI", iface.linktype, 0, iface.snaplen) + opts,
                )
            )
        for number, (index, ts, frame) in enumerate(sec.packets):
            if sec.junk:
                out.append(pcapng_block(o, 0x00000BAD, b"junk block"))
                out.append(
                    pcapng_block(o, 5, struct.pack(o + "I", 0) + b"\0" * 12)
                )  # interface statistics
            if index is None:
                snap = sec.interfaces[0].snaplen
                cap = frame[:snap] if snap else frame
                out.append(pcapng_block(o, 3, struct.pack(o + "I", len(frame)) + cap))
                continue
            iface = sec.interfaces[index]
            cap = frame[: iface.snaplen] if iface.snaplen else frame
            t = _ticks(ts, iface)
            body = (
                struct.pack(
                    o + "IIIII", index, t >> 32, t & 0xFFFFFFFF, len(cap), len(frame)
                )
                + _pad4(cap)
                + sec.epb_options.get(number, b"")
            )
            out.append(pcapng_block(o, 6, body))
    return b"".join(out)


# -- link type helpers used by the parametrized tests ---------------------------------

LINK_WRAPPERS = {
    101: lambda p: p,
    12: lambda p: p,
    14: lambda p: p,
    228: lambda p: p,
    229: lambda p: p,
    0: null,
    108: loop,
    1: ethernet,
    113: sll,
    276: sll2,
    8: slip,
    9: ppp,
    50: ppp,
    51: pppoe,
    104: c_hdlc,
    105: wifi,
    107: frelay,
    109: enc,
    117: pflog,
    127: radiotap,
    226: ipnet,
    239: nflog,
}


# -- reading back ----------------------------------------------------------------------

Table = dict[tuple[int, str, str], tuple[int, int, int, int]]


SCANNERS = ("py", "c")


def scanner_class(name: str) -> type:
    """The scanner class for a test parameter: "py", or "c" (the compiled one).

    "c" is skipped with CONNSTATS_NO_EXTENSIONS=1 or in an install without any
    compiled module, and fails when the compiled core is there but the
    compiled scanner is not: such a build is missing an extension.
    """
    import importlib
    import os

    import pytest

    if name == "py":
        from connstats.capture import _scan_py

        return _scan_py.Scanner
    if os.environ.get("CONNSTATS_NO_EXTENSIONS", "") not in ("", "0"):
        pytest.skip("CONNSTATS_NO_EXTENSIONS is set")
    try:
        return importlib.import_module("connstats.capture._capture").Scanner
    except ImportError:
        try:
            importlib.import_module("connstats._fastparse")
        except ImportError:
            pytest.skip("no compiled extensions in this install")
        pytest.fail(
            "connstats._fastparse is built but connstats.capture._capture is not (setup.py is missing the extension)"
        )
    raise AssertionError("unreachable")


def as_table(virtual: dict) -> Table:
    """{(proto, "src", "dst"): (txPkts, txBytes, rxPkts, rxBytes)} from a Connection dict."""
    return {
        (c.proto, str(c.src), str(c.dst)): (
            n.tx_packets,
            n.tx_bytes,
            n.rx_packets,
            n.rx_bytes,
        )
        for c, n in virtual.items()
    }


def drain(reader) -> None:
    """Read a reader to its end (its counters are then final)."""
    from connstats.capture import Stop

    while reader.read().stop is not Stop.EOF:
        pass


def read_windows(
    data: bytes,
    *,
    local: Sequence[str] = (),
    max_period_ns: int = 0,
    max_conns: int = 0,
    **reader_kw,
):
    """Replay capture bytes through the selected core; return (windows, reader)."""
    import io

    from connstats.capture import CaptureReader, local_networks
    from connstats.capture.windows import Replayer

    windows: list = []
    reader = CaptureReader(
        io.BytesIO(data),
        "test",
        local=local_networks(local) if local else None,
        **reader_kw,
    )
    replayer = Replayer(
        windows.append, max_period_ns=max_period_ns, max_conns=max_conns
    )
    replayer.feed(reader)
    replayer.finish()
    return windows, reader


def read_table(data: bytes, **kw) -> Table:
    """The total table of a capture (all windows merged)."""
    windows, _ = read_windows(data, **kw)
    total: Table = {}
    for w in windows:
        for key, counts in as_table(w.virtual).items():
            old = total.get(key, (0, 0, 0, 0))
            total[key] = tuple(a + b for a, b in zip(old, counts))  # type: ignore[assignment]
    return total
