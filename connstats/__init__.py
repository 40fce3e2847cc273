"""connstats: per-connection packet and byte counters for IP packets.

The Python counterpart of Tailscale's Go ``connstats`` package, with a Cython
core.  See :class:`Statistics`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._impl import IS_COMPILED
from ._impl import core as _core
from ._types import PROTOCOL_NAMES, TAILSCALE_SERVICE_ADDRESSES, protocol_name
from ._version import __version__

if TYPE_CHECKING:
    from ._fastparse import AddrPort, Connection, Counts
    from ._statistics import Statistics
    from ._types import Buffer
else:
    # Value types of the selected core: C types, or the NamedTuples of
    # _types.py when running on the pure-Python core.
    AddrPort = _core.AddrPort
    Connection = _core.Connection
    Counts = _core.Counts


def __getattr__(name: str) -> Any:
    # Statistics (and with it logging, inspect and the flush thread's code)
    # is imported when first asked for: the command line's start-up does
    # not need it (`connstats read` of a small file is mostly imports).
    if name == "Statistics":
        from ._statistics import Statistics

        globals()["Statistics"] = Statistics
        return Statistics
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"Statistics"})


def decode(packet: Buffer) -> tuple[int, AddrPort, AddrPort]:
    """Decode one IP packet into ``(proto, src, dst)`` the way the counters do."""
    return _core.decode(packet)


__all__ = [
    "AddrPort",
    "Connection",
    "Counts",
    "IS_COMPILED",
    "PROTOCOL_NAMES",
    "Statistics",
    "TAILSCALE_SERVICE_ADDRESSES",
    "__version__",
    "decode",
    "protocol_name",
]
