"""What tshark sees in tunnel captures: the oracle of the decapsulation tests.

For each frame, tshark's PDML output lists the dissected protocols in order
(``eth``, ``ip``, ``udp``, ``vxlan``, ``eth``, ``ip``, ``icmp``, ...).  The IP
headers joined by tunnel protocols are the frame's layers: the innermost one
is its virtual traffic, the outermost its physical traffic (docs/tunnels.md),
and a frame whose only IP header carries a tunnel with no IP inside (ARP in
VXLAN, a GRE keepalive) is physical traffic only.  Keys follow
docs/contract.md §4 from tshark's own fields: the protocol of the IP header
(``ip.proto``, ``ipv6.nxt``), its addresses, and the ports of the TCP or UDP
header right after it.  The VNI is the tunnel identifier tshark shows
(``vxlan.vni`` when its I flag is set, ``geneve.vni``, ``gre.key``,
``erspan.spanid``): the physical row's is the outermost tunnel's, the
virtual row's that of the innermost tunnel that has one.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

TSHARK = shutil.which("tshark")

#: Decode-as rules: MPLS over UDP has no port of its own in tshark, and
#: Linux's VXLAN port is not tshark's default.
DECODE_AS = ("-d", "udp.port==6635,mpls", "-d", "udp.port==8472,vxlan")

_TUNNELS = {"vxlan", "geneve", "gre", "mpls", "nsh", "erspan", "cmd"}
_STOP = {"icmp", "icmpv6"}  # an IP header quoted in an ICMP error is no tunnel

Key = tuple[int, str, str, "int | None"]  # (proto, "src", "dst", vni)
Table = dict[Key, tuple[int, int]]  # -> (packets, bytes)


def _fields(proto: ET.Element) -> dict[str, str]:
    out: dict[str, str] = {}
    for field in proto.iter("field"):
        name = field.get("name", "")
        if name and name not in out:
            out[name] = field.get("show", "")
    return out


def _endpoint(addr: str, port: int | None) -> str:
    if ":" in addr:
        return f"[{addr}]:{port or 0}"
    return f"{addr}:{port or 0}"


def _tunnel_id(name: str, f: dict[str, str]) -> int | None:
    # vxlan.flag_i (VXLAN) or vxlan.i_bit (VXLAN-GPE): the VNI is valid
    if name == "vxlan" and "1" in (f.get("vxlan.flag_i"), f.get("vxlan.i_bit")):
        vni = f.get("vxlan.vni")
        return int(vni) if vni else None
    if name == "geneve" and f.get("geneve.vni"):
        return int(f["geneve.vni"], 0)
    if name == "gre" and f.get("gre.flags.key") == "1" and f.get("gre.key"):
        return int(f["gre.key"], 0)
    if name == "erspan" and f.get("erspan.spanid"):
        return int(f["erspan.spanid"], 0)
    return None


def _pdml(path: Path) -> bytes:
    assert TSHARK is not None
    return subprocess.run(
        [TSHARK, "-n", "-r", str(path), *DECODE_AS, "-T", "pdml"],
        check=True,
        capture_output=True,
    ).stdout


def _pcap_frames(path: Path) -> int:
    """Records in a classic little- or big-endian pcap file."""
    data = path.read_bytes()
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    at, n = 24, 0
    while at + 16 <= len(data):
        (caplen,) = struct.unpack_from(order + "I", data, at + 8)
        at += 16 + caplen
        n += 1
    return n


def frames_of_files(paths: list[Path]) -> dict[Path, list[dict]]:
    """:func:`frames` of several classic pcap files with one tshark run
    (tshark's start-up costs more than these files): they are concatenated
    with mergecap and the frames split back by count."""
    mergecap = shutil.which("mergecap")
    if mergecap is None or len(paths) < 2:
        return {p: frames(p) for p in paths}
    with tempfile.TemporaryDirectory() as tmp:
        merged = Path(tmp) / "all.pcapng"
        subprocess.run(
            [mergecap, "-a", "-w", str(merged), *map(str, paths)],
            check=True,
            capture_output=True,
        )
        everything = _parse(_pdml(merged))
    out: dict[Path, list[dict]] = {}
    at = 0
    for p in paths:
        n = _pcap_frames(p)
        out[p] = everything[at : at + n]
        at += n
    assert at == len(everything)
    return out


def frames(path: Path) -> list[dict]:
    """Per frame: its IP layers (outermost first), the tunnel id between each
    layer and the next, whether the last layer carries a tunnel, and whether
    tshark found a tunnel header cut short (``_ws.short``) or malformed."""
    return _parse(_pdml(path))


def _parse(pdml: bytes) -> list[dict]:
    out = []
    for packet in ET.fromstring(pdml).iter("packet"):
        layers: list[dict] = []
        gaps: list[int | None] = []  # tunnel id after each layer
        tunnel_after = False
        cut = False  # a tunnel header tshark found truncated or malformed
        for proto in packet.findall("proto"):
            name = proto.get("name", "")
            if name in _STOP and layers:
                break
            if name in ("_ws.short", "_ws.malformed") and tunnel_after:
                cut = True
                break
            f = _fields(proto)
            if name in ("ip", "ipv6"):
                if layers and not tunnel_after and layers[-1]["transport"]:
                    break  # e.g. an IP header inside a TCP payload
                if name == "ip":
                    layer = {
                        "src": f["ip.src"],
                        "dst": f["ip.dst"],
                        "len": int(f["ip.len"]),
                        "proto": int(f["ip.proto"]),
                    }
                else:
                    layer = {
                        "src": f["ipv6.src"],
                        "dst": f["ipv6.dst"],
                        "len": 40 + int(f["ipv6.plen"]),
                        "proto": int(f["ipv6.nxt"]),
                    }
                layer["ports"] = None
                layer["transport"] = None
                layers.append(layer)
                gaps.append(None)
                tunnel_after = False
                continue
            if not layers:
                continue
            last = layers[-1]
            if name in ("tcp", "udp", "sctp") and last["transport"] is None:
                last["transport"] = name
                number = {"tcp": 6, "udp": 17, "sctp": 132}[name]
                if last["proto"] == number:
                    last["ports"] = (
                        int(f[f"{name}.srcport"]),
                        int(f[f"{name}.dstport"]),
                    )
                continue
            if name in _TUNNELS:
                tunnel_after = True
                tid = _tunnel_id(name, f)
                if tid is not None:
                    gaps[-1] = tid
        out.append(
            {"layers": layers, "gaps": gaps, "tunnel_after": tunnel_after, "cut": cut}
        )
    return out


def _key(layer: dict, vni: int | None) -> Key:
    sport, dport = layer["ports"] or (0, 0)
    return (
        layer["proto"] if layer["ports"] or layer["proto"] not in (6, 17, 132) else 0,
        _endpoint(layer["src"], sport),
        _endpoint(layer["dst"], dport),
        vni,
    )


def expected(path_or_frames: Path | list[dict]) -> tuple[Table, Table]:
    """(virtual, physical) tables, every packet tx."""
    virtual: dict = defaultdict(lambda: [0, 0])
    physical: dict = defaultdict(lambda: [0, 0])
    found = path_or_frames
    for frame in frames(found) if isinstance(found, Path) else found:
        layers = frame["layers"]
        if not layers:
            continue
        if frame["cut"] or (len(layers) == 1 and not frame["tunnel_after"]):
            # Not a tunnel, or a tunnel too short to decapsulate: the outer
            # packet, as without --decap.
            row = virtual[_key(layers[0], None)]
            row[0] += 1
            row[1] += layers[0]["len"]
            continue
        gaps = frame["gaps"]
        outer_vni = gaps[0]
        row = physical[_key(layers[0], outer_vni)]
        row[0] += 1
        row[1] += layers[0]["len"]
        if len(layers) >= 2:
            inner_vni = next(
                (g for g in reversed(gaps[: len(layers) - 1]) if g is not None), None
            )
            row = virtual[_key(layers[-1], inner_vni)]
            row[0] += 1
            row[1] += layers[-1]["len"]
    return (
        {k: (v[0], v[1]) for k, v in virtual.items()},
        {k: (v[0], v[1]) for k, v in physical.items()},
    )
