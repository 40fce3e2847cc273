"""Status codes and limits shared by the two record scanners, and the live
capture ring's defaults.

The compiled scanner (``src/_capture.pyx``) repeats the scanner numbers and
exports them; ``tests/test_capture_scan.py`` checks that both agree.
"""

from __future__ import annotations

#: The output arrays are full or ``max_packets`` packets were emitted.
ST_FULL = 0
#: ``pos`` is at a record that does not fit in the buffer yet.
ST_NEED_MORE = 1
#: The next IP packet (at ``pos``, time ``next_ns``) is at or after ``stop_ns``.
ST_STOP_TIME = 2
#: ``pos`` is at a pcapng section header or interface description block,
#: which the (rare, option-heavy) Python code parses.
ST_BLOCK = 3
#: The record at ``pos`` is malformed; ``error`` says how.
ST_CORRUPT = 4
#: The packet at ``pos`` is on an interface whose link type is unsupported.
ST_UNSUPPORTED = 5

#: Largest pcapng block and pcap record accepted.  A length above this is
#: almost surely garbage; refusing it keeps one bad length field from making
#: the reader buffer the rest of the input looking for the record's end.
MAX_RECORD = 64 * 1024 * 1024

#: libpcap's own bound for a record when the file header's snap length is
#: smaller (some writers put 0 or 65535 there and still write bigger records).
MIN_MAX_CAPLEN = 262144

PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_IDB = 0x00000001
PCAPNG_SPB = 0x00000003
PCAPNG_EPB = 0x00000006

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

MIB = 1024 * 1024
#: Live capture (capture._live) defaults: a 64 MiB ring of 1 MiB blocks,
#: handed over at the latest 10 ms after a block got its first packet.  At
#: 1 Mpps of small packets a block fills in ~10 ms, so the ring absorbs
#: ~0.6 s of stall (a window being printed, another process on the CPU).
#: Here so that the command line's options read them without loading the
#: capture code (ctypes, sockets).
DEFAULT_RING_SIZE = 64 * MIB
DEFAULT_BLOCK_SIZE = 1 * MIB
DEFAULT_BLOCK_TIMEOUT_MS = 10
