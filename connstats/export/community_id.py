"""Community ID v1 of a connection (https://github.com/corelight/community-id-spec).

The flow hash that Zeek, Suricata, Wireshark and Elastic put on their flow
records, so that one connection can be joined across tools: the base64 of the
SHA-1 of the seed, the two endpoints in a fixed order, the protocol and the
ports, prefixed with the version ``1:``.

connstats' counting key keeps an ICMP/ICMPv6 connection's addresses but not
its type and code (the ports are 0), while the specification hashes type
and code like ports.  So for ICMP and ICMPv6 the ID here is computed without
ports, the way the specification does for protocols without them: it is the
same for every ICMP exchange between two hosts, and it does not match the ID
another tool gives one ICMP flow.

Only ``hashlib`` and ``base64``; ``connstats.community_id`` loads this module
when first used.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any, Optional

__all__ = ["community_id"]

#: Protocols whose ports (first two u16 of the transport header) are hashed.
_PORTED = frozenset((6, 17, 132))
#: connstats' own protocol numbers: 0 when the transport header could not be
#: read, 255 for IP fragments after the first; neither is the real protocol.
_NO_PROTOCOL = frozenset((0, 255))


def _seed(seed: Any) -> bytes:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
    if not 0 <= seed <= 0xFFFF:
        raise ValueError(f"seed: must be in 0..65535, got {seed}")
    return seed.to_bytes(2, "big")


def _hash(
    seed: bytes, proto: int, src: bytes, sport: int, dst: bytes, dport: int
) -> str:
    # The endpoint that sorts first goes first, so both directions of a flow
    # hash the same.
    if (src, sport) > (dst, dport):
        src, sport, dst, dport = dst, dport, src, sport
    data = seed + src + dst + bytes((proto, 0))
    if proto in _PORTED:
        data += sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")


def community_id(connection: Any, seed: int = 0) -> str:
    """The Community ID v1 of ``connection`` (a :class:`connstats.Connection`).

    ``seed``: 0..65535, as the other tools' ``community_id_seed``.  Raises
    ``ValueError`` for a connection that has no ID: one without both
    addresses (undecoded packets), with protocol 0 or 255 (connstats' marks
    for an unreadable transport header and for later fragments, which are
    not the real protocol; physical connections have protocol 0), or with
    an IPv4 and an IPv6 endpoint.  ICMP and ICMPv6: see the module doc.
    """
    seed_bytes = _seed(seed)
    try:
        proto, src, dst = connection
        src_addr, sport = src
        dst_addr, dport = dst
    except (TypeError, ValueError):
        raise TypeError(
            f"connection: expected a Connection, got {type(connection).__name__}"
        ) from None
    if src_addr is None or dst_addr is None:
        raise ValueError(f"connection: {connection} has no Community ID (no addresses)")
    if proto in _NO_PROTOCOL:
        raise ValueError(
            f"connection: {connection} has no Community ID (protocol {proto} is "
            "connstats' mark, not the real protocol)"
        )
    if src_addr.version != dst_addr.version:
        raise ValueError(f"connection: {connection} mixes IPv4 and IPv6")
    return _hash(seed_bytes, proto, src_addr.packed, sport, dst_addr.packed, dport)


def column(cols: Any, seed: int = 0) -> list[Optional[str]]:
    """The Community IDs of a ``columns(..., packed=True)`` result, one per
    row; None where :func:`community_id` raises ValueError."""
    seed_bytes = _seed(seed)
    out: list[Optional[str]] = []
    proto_col = cols.proto
    sfam, dfam = cols.src_family, cols.dst_family
    spacked, dpacked = cols.src_packed, cols.dst_packed
    sports = memoryview(cols.src_port).cast("H")
    dports = memoryview(cols.dst_port).cast("H")
    for i in range(cols.n):
        proto = proto_col[i]
        fam = sfam[i]
        if fam == 0 or fam != dfam[i] or proto in _NO_PROTOCOL:
            out.append(None)
            continue
        size = 4 if fam == 4 else 16
        at = 16 * i
        out.append(
            _hash(
                seed_bytes,
                proto,
                spacked[at : at + size],
                sports[i],
                dpacked[at : at + size],
                dports[i],
            )
        )
    return out
