"""Reading pcap/pcapng captures into batches of IP packets for the core.

``open_capture(path)`` detects the format by its magic number, and
:class:`CaptureReader` hands out :class:`Batch` objects of offsets and
lengths into its buffer, split into tx and rx, for
``update_*_virtual_buffer``.  :mod:`connstats.capture.windows` replays a
capture into per-window tables that follow the capture's own clock.
"""

from __future__ import annotations

from .errors import (
    CaptureError,
    CorruptCaptureError,
    NotACaptureError,
    TruncatedCaptureError,
    UnsupportedLinkTypeError,
)
from .linktypes import LINKTYPE_NAMES, SUPPORTED_LINKTYPES, linktype_name
from .reader import Batch, CaptureReader, Stop, local_networks, open_capture

__all__ = [
    "LINKTYPE_NAMES",
    "SUPPORTED_LINKTYPES",
    "Batch",
    "CaptureError",
    "CaptureReader",
    "CorruptCaptureError",
    "NotACaptureError",
    "Stop",
    "TruncatedCaptureError",
    "UnsupportedLinkTypeError",
    "linktype_name",
    "local_networks",
    "open_capture",
]
