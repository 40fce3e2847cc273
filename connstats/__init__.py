"""connstats: per-connection packet and byte counters for IP packets.

The Python counterpart of Tailscale's Go ``connstats`` package, with a Cython
core.  See :class:`Statistics`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Union

from ._impl import IS_COMPILED
from ._impl import core as _core
from ._protocols import tunnel_mask
from ._types import (
    PROTOCOL_NAMES,
    RECORD_FORMAT,
    RECORD_PHYSICAL,
    RECORD_RECEIVE,
    RECORD_SIZE,
    TAILSCALE_SERVICE_ADDRESSES,
    Decapsulated,
    protocol_name,
)
from ._version import __version__

if TYPE_CHECKING:
    from ._fastparse import AddrPort, Connection, Counts, TimedCounts
    from ._statistics import Statistics
    from ._types import Buffer
    from .export.community_id import community_id
else:
    # Value types of the selected core: C types, or the NamedTuples of
    # _types.py when running on the pure-Python core.
    AddrPort = _core.AddrPort
    Connection = _core.Connection
    Counts = _core.Counts
    TimedCounts = _core.TimedCounts


def __getattr__(name: str) -> Any:
    # Statistics (and with it logging, inspect and the flush thread's code)
    # and community_id (hashlib: 4 ms, a quarter of `import connstats`) are
    # imported when first asked for: the command line's start-up does not
    # need them (`connstats read` of a small file is mostly imports).
    if name == "Statistics":
        from ._statistics import Statistics

        globals()["Statistics"] = Statistics
        return Statistics
    if name == "community_id":
        from .export.community_id import community_id

        globals()["community_id"] = community_id
        return community_id
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"Statistics", "community_id"})


def decode(packet: Buffer) -> tuple[int, AddrPort, AddrPort]:
    """Decode one IP packet into ``(proto, src, dst)`` the way the counters do."""
    return _core.decode(packet)


def decap(
    packet: Buffer, tunnels: Union[str, Iterable[str], None] = None
) -> Decapsulated:
    """Find the innermost IP packet of a tunnel packet (docs/tunnels.md).

    ``tunnels``: the kinds to open, by name (``"vxlan,gre"``; ``vxlan``,
    ``geneve``, ``gre``, ``ipip``, ``mpls``), None for all.  Returns
    ``(outer, offset, length, vni)``: ``outer`` is the physical connection
    of a tunnel packet (with the outermost tunnel's ``vni``), None for a
    packet that is not a tunnel or is a malformed one;
    ``packet[offset:offset + length]`` is the innermost IP packet (the whole
    packet when ``outer`` is None; empty for a tunnel that carries no IP).
    """
    return _core.decap(packet, tunnel_mask(tunnels))


__all__ = [
    "AddrPort",
    "Connection",
    "Counts",
    "Decapsulated",
    "IS_COMPILED",
    "PROTOCOL_NAMES",
    "RECORD_FORMAT",
    "RECORD_PHYSICAL",
    "RECORD_RECEIVE",
    "RECORD_SIZE",
    "Statistics",
    "TAILSCALE_SERVICE_ADDRESSES",
    "TimedCounts",
    "__version__",
    "community_id",
    "decap",
    "decode",
    "protocol_name",
]
