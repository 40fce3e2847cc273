# cython: language_level=3, freethreading_compatible=True, embedsignature=True
# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# cython: binding=False, always_allow_keywords=False
"""The compiled core of connstats: IP header decoding and the counter table.

Layout of the table (one per window):

* 8 shards, chosen by the top bits of a keyed 64-bit hash, each with its own
  mutex, so that threads feeding disjoint connections through the batch entry
  points (which run without the GIL) rarely meet on a lock.
* Each shard is an open-addressed index of 64-bit slots (32-bit hash tag
  << 32 | a bit saying which array | entry number + 1; linear probing, load
  <= 3/4) over two dense arrays of entries: 48-byte ones (a 16-byte compact
  key + four u64 counters) for connections whose addresses are IPv4 or
  absent, and 72-byte ones (the 40-byte key + the counters) for the others.
  A probe compares the slot's tag and array bit before it reads an entry.
  Dense entries make a window cheap to walk and small: ~65 bytes per IPv4
  connection at a million connections (16 of them index).  An update of a
  known connection reads one slot line and one or two entry lines; compact
  entries keep the key and the tx counters in one line for 3 of 4 entries.
  IPv4 keys are hashed in their compact form (two multiply lanes instead of
  five), with the same per-process seed.

A window is swapped out by taking every shard lock (in index order) and
replacing one pointer, so the packet path is never held up by turning a
window into Python objects.  The mutexes are plain C (cs_platform.h): no
Python object is touched while one is held, so the critical sections can run
with the GIL released.

The module is assembled from one file per concern, included below in
dependency order:

  cs_platform.h        locks, atomics, the keyed hash, the clock (C)
  core/platform.pxi    the declarations of cs_platform.h
  core/decode.pxi      an IP packet to a 40-byte key
  core/table.pxi       the sharded counter table and the window it lives in
  core/values.pxi      AddrPort, Connection, Counts
  core/args.pxi        Python arguments to C values (buffers, index arrays)
  core/window.pxi      Window, and a cut window's table to Python objects
  core/lanes.pxi       per-thread lanes of the single-packet path (free-threaded)
  core/core.pxi        Core: entry points, cutting, pending windows, wake-up
  core/methods.pxi     CountingMethods: Statistics' per-packet methods
  core/textout.pxi     connection tables as sorted JSON/CSV text (connstats read)
  core/series.pxi      SeriesTable: cumulative counts per series (connstats.metrics)
"""

cimport cython
from cpython.buffer cimport (
    PyBUF_ANY_CONTIGUOUS, PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBuffer_Release,
    PyObject_CheckBuffer, PyObject_GetBuffer,
)
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_GET_SIZE
from cpython.long cimport PyLong_FromUnsignedLong, PyLong_FromUnsignedLongLong
from cpython.number cimport PyNumber_Index
from cpython.object cimport Py_EQ, Py_GE, Py_GT, Py_LE, Py_LT, Py_NE, PyObject
from cpython.pythread cimport (
    PY_LOCK_ACQUIRED, PyLockStatus, PyThread_acquire_lock, PyThread_allocate_lock,
    PyThread_free_lock, PyThread_release_lock, PyThread_type_lock, WAIT_LOCK,
)
from cpython.ref cimport Py_DECREF, Py_INCREF
from cpython.sequence cimport PySequence_Check, PySequence_Tuple
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, qsort, realloc
from libc.string cimport memcmp, memcpy, memset

import ipaddress
import os

from connstats import _addr
from connstats._types import PROTOCOL_NAMES, TAILSCALE_SERVICE_ADDRESSES, protocol_name

include "core/platform.pxi"
include "core/decode.pxi"
include "core/table.pxi"
include "core/values.pxi"
include "core/args.pxi"
include "core/window.pxi"
include "core/lanes.pxi"
include "core/core.pxi"
include "core/methods.pxi"
include "core/textout.pxi"
include "core/series.pxi"


def decode(packet):
    """Decode one IP packet as docs/contract.md §4 says: (proto, src, dst) AddrPorts."""
    cdef Py_buffer view
    cdef cs_key k
    cdef dict cache = {}
    if PyBytes_CheckExact(packet):
        _decode(<const uint8_t *>PyBytes_AS_STRING(packet), PyBytes_GET_SIZE(packet), &k)
    else:
        _get_buffer(packet, &view, "packet")
        _decode(<const uint8_t *>view.buf, view.len, &k)
        PyBuffer_Release(&view)
    return (k.proto,
            _materialize_addrport(cache, k.sfam, k.src, k.sport),
            _materialize_addrport(cache, k.dfam, k.dst, k.dport))


SHARDS = NSHARDS
ENTRY_BYTES = sizeof(cs_entry)
IPV4_ENTRY_BYTES = sizeof(cs_entry4)
IPV4_KEY_BYTES = sizeof(cs_key4)
WINDOW_BYTES = sizeof(cs_window)
