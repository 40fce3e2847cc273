"""Nanoseconds since the epoch <-> aware UTC datetimes, exactly.

Capture windows keep integer nanoseconds; ``dump`` receives datetimes.  The
command line (read and capture), the IPFIX exporter and the examples convert
between the two here, by integer arithmetic on microseconds (a datetime's
resolution), never through floats.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def ns_of(moment: datetime) -> int:
    """Nanoseconds since the epoch of an aware datetime."""
    return (moment - EPOCH) // _US * 1000


def datetime_of(ns: int) -> datetime:
    """The aware UTC datetime of ``ns`` nanoseconds since the epoch (to the µs)."""
    return EPOCH + timedelta(microseconds=ns // 1000)
