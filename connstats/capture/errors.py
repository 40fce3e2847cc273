"""Errors raised while reading capture files.

They all derive from :class:`CaptureError`, itself a ``ValueError`` (the
input is bad, not the program), so the command line can turn any of them into
one line on stderr without a traceback.  Each message already names the file.
"""

from __future__ import annotations


class CaptureError(ValueError):
    """A capture file could not be read (to the end)."""


class NotACaptureError(CaptureError):
    """The input is neither a pcap nor a pcapng file."""


class TruncatedCaptureError(CaptureError):
    """The input ends in the middle of a header or a record."""


class CorruptCaptureError(CaptureError):
    """A record or block is malformed (bad length, unknown interface...)."""


class UnsupportedLinkTypeError(CaptureError):
    """Packets use a link layer that connstats cannot strip."""

    def __init__(self, message: str, linktype: int) -> None:
        super().__init__(message)
        self.linktype = linktype


class FilterError(ValueError):
    """libpcap refused the expression; the message is libpcap's."""


class LibpcapMissingError(OSError):
    """libpcap (libpcap.so.0.8 / libpcap.so.1 / libpcap.dylib / wpcap.dll) is not installed."""
