"""Regenerate the checked-in seed corpora in fuzz/corpus/.

    python fuzz/make_seeds.py

Seeds are small valid inputs that reach the interesting branches quickly:
one file per packet shape for the decoder, a few operation scripts for the
core, and small pcap/pcapng files (every supported link type, both byte
orders, nanosecond timestamps, VLAN tags, junk blocks) for the capture
reader.  The capture files are built with tests/captures.py, the test suite's
hand-written encoder.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import captures as cap  # noqa: E402


def _write(directory: Path, seeds: dict[str, bytes]) -> None:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    seen = set()
    for name, data in seeds.items():
        digest = hashlib.sha1(data).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        (directory / name).write_bytes(data)
    print(
        f"{directory.relative_to(HERE.parent)}: {len(seen)} seeds, "
        f"{sum(len(d) for d in seeds.values())} bytes"
    )


def decode_seeds() -> dict[str, bytes]:
    s4, d4 = "10.0.0.1", "192.0.2.7"
    s6, d6 = "fd00::1", "2001:db8::7"
    seeds = {
        "tcp4": cap.tcp4(s4, 40000, d4, 443, b"hi"),
        "udp4": cap.udp4(s4, 5353, d4, 53, b"q"),
        "icmp4": cap.icmp4(s4, d4),
        "igmp4": cap.ipv4(s4, "224.0.0.1", 2, bytes(8)),
        "sctp4": cap.ipv4(s4, d4, 132, struct.pack(">HH", 9, 10) + bytes(8)),
        "tsmp4": cap.ipv4(s4, d4, 99, bytes(8)),
        "tsmp4_mf": cap.ipv4(s4, d4, 99, bytes(8), frag=0x2000),
        "gre4": cap.ipv4(s4, d4, 47, bytes(4)),
        "proto255_4": cap.ipv4(s4, d4, 255, bytes(4)),
        "frag4_first": cap.ipv4(s4, d4, 17, cap.udp(1, 2), frag=0x2000),
        "frag4_late": cap.ipv4(s4, d4, 17, bytes(16), frag=0x000A),
        "frag4_early": cap.ipv4(s4, d4, 17, bytes(16), frag=0x0003),
        "trunc4": cap.udp4(s4, 1, d4, 2, b"abc")[:-2],
        "short_tcp4": cap.ipv4(s4, d4, 6, bytes(12)),
        "v4_options": bytes([0x47]) + cap.udp4(s4, 1, d4, 2)[1:] + bytes(8),
        "v4_hl_gt_tl": bytes([0x4F]) + cap.ipv4(s4, d4, 6, bytes(20))[1:],
        "tcp6": cap.tcp6(s6, 40000, d6, 443),
        "udp6": cap.udp6(s6, 1, d6, 2),
        "icmp6": cap.icmp6(s6, d6),
        "sctp6": cap.ipv6(s6, d6, 132, struct.pack(">HH", 9, 10) + bytes(8)),
        "tsmp6": cap.ipv6(s6, d6, 99, bytes(8)),
        "hopbyhop6": cap.ipv6(s6, d6, 0, bytes(8)),
        "frag6_first": cap.ipv6(
            s6, d6, 44, struct.pack(">BBHI", 17, 0, 0x0001, 1) + cap.udp(7, 8)
        ),
        "frag6_late": cap.ipv6(
            s6, d6, 44, struct.pack(">BBHI", 17, 0, 80 << 3, 1) + bytes(8)
        ),
        "frag6_short": cap.ipv6(s6, d6, 44, bytes(4)),
        "v4mapped6": cap.udp6("::ffff:10.0.0.1", 1, "::ffff:10.0.0.2", 2),
        "trunc6": cap.tcp6(s6, 1, d6, 2)[:50],
        "empty": b"",
        "version5": b"\x50" + bytes(30),
    }
    seeds.update({f"tunnel_{k}": v for k, v in tunnel_packets().items()})
    return seeds


def tunnel_packets() -> dict[str, bytes]:
    """One packet per tunnel kind and shape docs/tunnels.md names, a few
    nested, and the malformed ones (counted as the outer packet)."""
    inner4 = cap.tcp4("10.1.0.1", 1000, "10.1.0.2", 80, b"hi")
    inner6 = cap.udp6("fd00::1", 53, "fd00::2", 5353, b"q")
    o4 = ("192.0.2.1", "192.0.2.2")
    o6 = ("2001:db8::1", "2001:db8::2")
    eth = cap.ethernet(inner4, vlans=[(0x8100, 7)])
    packets = {
        "vxlan": cap.udp_tunnel(
            *o4, 4789, cap.vxlan(cap.ethernet(inner4, pad_to=60), 5001)
        ),
        "vxlan_8472_v6": cap.udp_tunnel(*o6, 8472, cap.vxlan(cap.ethernet(inner6), 1)),
        "vxlan_arp": cap.udp_tunnel(*o4, 4789, cap.vxlan(cap.ARP_FRAME, 3)),
        "vxlan_no_i_flag": cap.udp_tunnel(*o4, 4789, cap.vxlan(eth, 5, flags=0)),
        "gpe_nsh": cap.udp_tunnel(
            *o4, 4790, cap.vxlan_gpe(cap.nsh(inner4, 1, context=2), 4, vni=9)
        ),
        "gpe_mpls": cap.udp_tunnel(*o4, 4790, cap.vxlan_gpe(cap.mpls(inner6), 5)),
        "geneve_options": cap.udp_tunnel(
            *o6, 6081, cap.geneve(eth, 10, options=bytes(range(8)))
        ),
        "geneve_ipv4": cap.udp_tunnel(
            *o4, 6081, cap.geneve(inner4, 11, protocol=0x0800)
        ),
        "gre_all_flags": cap.ip_tunnel(
            *o4, 47, cap.gre(inner6, 0x86DD, key=7, seq=1, checksum=True)
        ),
        "gre_teb": cap.ip_tunnel(*o6, 47, cap.gre(eth, 0x6558, key=8)),
        "gre_cmd": cap.ip_tunnel(
            *o4, 47, cap.gre(bytes([8, 0, 1, 1, 0, 1, 0, 0]) + inner4, 0x8909, key=40)
        ),
        "gre_keepalive": cap.ip_tunnel(*o4, 47, cap.gre(b"", 0, key=40)),
        "erspan1": cap.ip_tunnel(*o4, 47, cap.gre(eth, 0x88BE)),
        "erspan2": cap.ip_tunnel(
            *o4, 47, cap.gre(cap.erspan2(eth, 300), 0x88BE, seq=2)
        ),
        "erspan3_sub": cap.ip_tunnel(
            *o4, 47, cap.gre(cap.erspan3(eth, 301, subheader=True), 0x22EB, seq=3)
        ),
        "erspan3_ip": cap.ip_tunnel(
            *o4, 47, cap.gre(cap.erspan3(inner4, 302, frame_type=2), 0x22EB, seq=4)
        ),
        "ipip": cap.ip_tunnel(*o4, 4, inner4),
        "6in4": cap.ip_tunnel(*o4, 41, inner6),
        "4in6_encaplimit": cap.ip_tunnel(*o6, 60, cap.dest_options(4, inner4)),
        "6in6": cap.ip_tunnel(*o6, 41, inner6),
        "mpls_udp": cap.udp_tunnel(*o4, 6635, cap.mpls(inner4, 3)),
        "nested": cap.udp_tunnel(
            *o4,
            4789,
            cap.vxlan(
                cap.ethernet(
                    cap.ip_tunnel("10.9.0.1", "10.9.0.2", 47, cap.gre(inner6, 0x86DD))
                ),
                5,
            ),
        ),
    }
    loop = inner4
    for _ in range(9):  # one level deeper than decapsulation follows
        loop = cap.ip_tunnel(*o4, 4, loop)
    packets["nested_too_deep"] = loop
    packets["vxlan_cut"] = packets["vxlan"][:60]
    return packets


def core_seeds() -> dict[str, bytes]:
    # fuzz_core.py reads: config byte, then ops (op byte + operands); see there.
    tx_tcp4 = bytes([0, 0, 0, 1, 0, 0, 1, 0, 0, 0])  # op 0, template 0, pools, form 0
    rx_tcp4 = bytes([1, 0, 0, 1, 0, 0, 1, 0, 0, 0])
    batch = bytes([2, 4]) + bytes([0, 0, 1, 0, 0, 1, 0, 0]) * 4 + bytes([1])
    buffer = (
        bytes([5, 3]) + bytes([3, 0, 1, 2, 3, 0, 1, 0, 1]) * 3 + bytes([1, 1, 1, 2])
    )
    physical = bytes([6, 0, 1, 1, 40, 5, 7, 2, 3, 0x85, 2])
    cut, pop, bad, close = (
        bytes([8]),
        bytes([10]),
        bytes([11, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        bytes([12, 0]),
    )
    script = tx_tcp4 + rx_tcp4 + batch + buffer + physical
    return {
        "unbounded": bytes([0]) + script + cut + script + bad + cut,
        "max_conns_1": bytes([2]) + script * 2 + pop + script + pop + pop + cut,
        "max_conns_3_pending_1": bytes([4]) + script * 3 + pop + cut,
        "ignore_service": bytes([0x20])
        + script
        + bytes([0, 2, 2, 2, 0, 0, 1, 0, 0, 0])
        + cut,
        "close": bytes([5]) + script + close + script + cut,
        "bad_calls": bytes([0])
        + b"".join(bytes([11, 0, 0, 0, 0, 0, 0, 0, i & 1, i]) for i in range(12)),
        "hostile_objects": bytes([0x20])
        + hostile_script()
        + cut
        + hostile_script()
        + cut,
        "hostile_max_conns_2": bytes([3]) + hostile_script() + pop + cut,
        "preparsed": bytes([0x20]) + preparsed_script() + cut,
        "preparsed_max_conns_2": bytes([3]) + preparsed_script() + pop + pop + cut,
    }


def preparsed_script() -> bytes:
    """fuzz_core.py ops 17-19: update_virtual/update_physical, update_records."""

    # a record's operands: flags, proto, src, sport, dst, dport, packets, bytes
    def record(flags: int, pool: int) -> bytes:
        return bytes([flags, 3, pool, 2, pool + 1, 1, 1, 2])

    # every direction and kind, every endpoint form, then each bad argument
    singles = b"".join(
        bytes([17, flags, 2, flags, 3, 4 + flags, 1, 1, 2, forms])
        for flags in range(4)
        for forms in (0, 9, 18, 27, 36, 45)
    )
    singles += b"".join(
        bytes([17, bad << 2, 2, 0, 3, 4, 1, 1, 2, 0]) for bad in range(1, 8)
    )
    singles += bytes([17, 0, 6, 8, 0, 8, 0, 5, 5, 1])  # no addresses, u64 counts
    records = bytes([18, 4]) + b"".join(record(f, f) for f in range(4)) + bytes([0, 0])
    records += bytes([18, 3]) + b"".join(record(f, 4 + f) for f in range(3))
    records += bytes([3, 2, 7, 3])  # corrupt: record 1, byte 2 (src family) = 7
    records += bytes([18, 2]) + record(0, 1) + record(2, 5) + bytes([2, 1])  # cut short
    raw = bytes([19, 2]) + bytes([6, 1, 4, 6, 0x50, 0, 0x35, 0]) + bytes(48)
    raw += bytes([17, 2, 0, 0, 1, 0, 1, 0]) + bytes(32) + bytes([5] + [0] * 15)
    return singles + records + raw


def hostile_script() -> bytes:
    """fuzz_core.py ops 14-16 and the odd packet forms of op 0/1."""

    def tpl(kind: int) -> bytes:  # a template packet: kind, 4 pools, ports, pad
        return bytes([kind, 0, 1, 0, 1, 0, 1, 2])

    # single packets as every odd form: exporter, array views, 2-D, subclass
    odd = b"".join(
        bytes([i & 1]) + tpl(i) + bytes([form]) for i, form in enumerate((4, 5, 6, 7))
    )
    # batches whose list an item clears / replaces / truncates (op, rx,
    # count-1, packets, where, how, forms)
    batches = b"".join(
        bytes([14, how & 1, 2]) + tpl(0) + tpl(3) + tpl(1) + bytes([how, how, 4, 5, 7])
        for how in range(3)
    )
    # physical: honest subclasses (0x78), then each lying kind (0x79-0x7c)
    physical = b"".join(
        bytes([15, sel & 1, 0, 5, 2, 40, sel]) for sel in range(0x78, 0x7D)
    )
    # offsets/lengths of lying ints: honest, then negative offset / length,
    # offset past the end
    buffers = bytes([16, 1, 2]) + tpl(0) + tpl(4) + bytes([1, 2, 0])
    buffers += b"".join(
        bytes([16, 0, 2]) + tpl(0) + tpl(4) + bytes([0, 1, bad, 1, 5])
        for bad in (1, 2, 3)
    )
    return odd + batches + physical + buffers


def capture_seeds() -> dict[str, bytes]:
    t0 = 1_700_000_000 * 1_000_000_000
    packets = [
        cap.tcp4("10.0.0.1", 40000, "192.0.2.7", 443, b"hello"),
        cap.tcp4("192.0.2.7", 443, "10.0.0.1", 40000, b"world"),
        cap.udp6("fd00::1", 5353, "2001:db8::7", 53, b"q"),
        cap.icmp4("10.0.0.2", "192.0.2.8"),
    ]
    seeds: dict[str, bytes] = {}
    for linktype, wrap in cap.LINK_WRAPPERS.items():
        records = [(t0 + i * 700_000_000, wrap(p)) for i, p in enumerate(packets)]
        seeds[f"pcap_lt{linktype}"] = cap.pcap(records, linktype)
    raw = [(t0 + i * 400_000_000, p) for i, p in enumerate(packets)]
    seeds["pcap_big_ns"] = cap.pcap(raw, 101, big_endian=True, nanosecond=True)
    seeds["pcap_snaplen"] = cap.pcap(raw, 101, snaplen=30)
    eth = [
        (t0, cap.ethernet(packets[0], vlans=[(0x8100, 5), (0x88A8, 6)])),
        (t0 + 1, cap.ARP_FRAME),
        (t0 + 2, cap.LLDP_FRAME),
        (t0 + 3, cap.ethernet(packets[2], pad_to=80)),
    ]
    seeds["pcap_eth_vlan_arp"] = cap.pcap(eth, 1)
    tunnels = [
        (t0, cap.ethernet(cap.mpls(packets[0], 2), ethertype=0x8847)),
        (t0 + 1, cap.ethernet(cap.pppoe(packets[2]), ethertype=0x8864)),
        (t0 + 2, cap.ethernet(packets[1], vlans=[(0x8100, 9)])),
    ]
    seeds["pcap_eth_mpls_pppoe"] = cap.pcap(tunnels, 1)
    big = cap.tcp4("10.0.0.1", 40000, "192.0.2.7", 443, b"x" * 900)
    seeds["pcap_eth_snaplen_cut"] = cap.pcap(
        [(t0, cap.ethernet(big)), (t0 - 5, cap.ethernet(packets[2]))], 1, snaplen=70
    )
    seeds["pcap_radiotap_pad"] = cap.pcap(
        [(t0, cap.radiotap(p, flags=True)) for p in packets], 127
    )
    seeds["pcap_truncated"] = cap.pcap(raw, 101)[:-7]
    seeds["pcap_header_only"] = cap.pcap([], 101)
    seeds["pcap_unsupported_lt"] = cap.pcap(raw[:1], 147)
    section = cap.Section(
        interfaces=[
            cap.Interface(101),
            cap.Interface(1, tsresol=9),
            cap.Interface(113, tsresol=0x80 | 20, tsoffset=3),
        ],
        packets=[
            (0, t0, packets[0]),
            (1, t0 + 5, cap.ethernet(packets[1])),
            (2, t0 + 9, cap.sll(packets[2])),
            (None, 0, packets[3]),
        ],
    )
    seeds["pcapng_le"] = cap.pcapng(section)
    seeds["pcapng_unsupported_iface"] = cap.pcapng(
        cap.Section(
            interfaces=[cap.Interface(147), cap.Interface(1)],
            packets=[(0, t0, b"\0" * 12), (1, t0 + 1, cap.ethernet(packets[0]))],
        )
    )
    seeds["pcapng_be_junk"] = cap.pcapng(
        cap.Section(
            interfaces=[cap.Interface(101, snaplen=40)],
            packets=[(0, t0 + i, p) for i, p in enumerate(packets)],
            big_endian=True,
            junk=True,
        )
    )
    seeds["pcapng_two_sections"] = cap.pcapng(
        [
            cap.Section(interfaces=[cap.Interface(101)], packets=[(0, t0, packets[0])]),
            cap.Section(
                interfaces=[cap.Interface(276)],
                packets=[(0, t0 + 2_000_000_000, cap.sll2(packets[1]))],
                big_endian=True,
            ),
        ]
    )
    seeds["pcapng_truncated"] = seeds["pcapng_le"][:-5]
    # epb_flags directions (and a comment before one), both byte orders
    for big in (False, True):
        o = ">" if big else "<"
        comment = struct.pack(o + "HH", 1, 3) + b"hi\0\0"
        seeds[f"pcapng_epb_flags_{'be' if big else 'le'}"] = cap.pcapng(
            cap.Section(
                interfaces=[cap.Interface(101)],
                packets=[(0, t0 + i, p) for i, p in enumerate(packets)],
                big_endian=big,
                epb_options={
                    0: cap.epb_flags(o, 2),
                    1: comment + cap.epb_flags(o, 1),
                    2: struct.pack(o + "HH", 2, 40) + b"\1\0\0\0",  # runs past
                },
            )
        )
    # an interface block whose if_tsoffset runs past it
    seeds["pcapng_idb_option_overrun"] = _idb_option_overrun(packets[0])
    tunnels = list(tunnel_packets().items())
    seeds["pcap_tunnels_raw"] = cap.pcap(
        [(t0 + i * 300_000_000, p) for i, (_, p) in enumerate(tunnels)], 101
    )
    seeds["pcap_tunnels_eth_snaplen"] = cap.pcap(
        [(t0 + i, cap.ethernet(p)) for i, (_, p) in enumerate(tunnels)], 1, snaplen=96
    )
    seeds["gzip_magic"] = b"\x1f\x8b\x08\x00" + bytes(20)
    return seeds


def _idb_option_overrun(packet: bytes) -> bytes:
    shb = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1)
    shb += struct.pack("<I", 28)
    idb = struct.pack("<IIHHIHH", 1, 24, 101, 0, 0, 14, 8) + struct.pack("<I", 24)
    body = struct.pack("<IIIII", 0, 0, 1, len(packet), len(packet)) + packet
    body += bytes(-len(body) % 4)
    epb = (
        struct.pack("<II", 6, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))
    )
    return shb + idb + epb


def compress_seeds() -> dict[str, bytes]:
    """Compressed captures of every kind, multi-frame zstd, a small bomb, cuts."""
    import bz2
    import gzip
    import lzma

    capture = capture_seeds()["pcapng_le"]
    seeds = {
        "gzip": gzip.compress(capture),
        "bzip2": bz2.compress(capture),
        "xz": lzma.compress(capture),
    }
    try:
        import zstandard
    except ImportError:  # Python 3.14 without the package: no zstd seeds
        return seeds
    plain = zstandard.ZstdCompressor(level=3)
    checked = zstandard.ZstdCompressor(level=19, write_checksum=True)
    half = len(capture) // 2
    skippable = struct.pack("<II", 0x184D2A50, 3) + b"abc"
    seeds["zstd"] = plain.compress(capture)
    seeds["zstd_frames"] = (
        checked.compress(capture[:half]) + skippable + plain.compress(capture[half:])
    )
    # RLE blocks of 128 KiB each: 4 bytes in, 128 KiB out (2 MiB in all)
    bomb = bytearray(struct.pack("<I", 0xFD2FB528) + bytes([0x00, 0x38]))
    for i in range(16):
        bomb += ((i == 15) | (1 << 1) | (128 * 1024 << 3)).to_bytes(3, "little") + b"\0"
    seeds["zstd_rle_bomb"] = bytes(bomb)
    seeds["zstd_cut"] = seeds["zstd_frames"][: len(seeds["zstd_frames"]) * 2 // 3]
    seeds["gzip_cut"] = seeds["gzip"][:-9]
    return seeds


def main() -> None:
    corpus = HERE / "corpus"
    _write(corpus / "decode", decode_seeds())
    _write(corpus / "core", core_seeds())
    _write(corpus / "capture", capture_seeds())
    _write(corpus / "compress", compress_seeds())


if __name__ == "__main__":
    main()
