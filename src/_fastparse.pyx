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
  cs_args.h            argument forms read in C, method replacement (args, methods)
  core/decode.pxi      an IP packet to a 40-byte key
  core/decap.pxi       tunnels: the innermost IP packet (also in the scanner)
  core/records.pxi     a fixed-size record of pre-parsed counts to a key
  core/table.pxi       the sharded counter table and the window it lives in
  core/times.pxi       first/last time per connection (windows that track times)
  core/tagged.pxi      the window's table of tunnel rows with a VNI
  core/values.pxi      AddrPort, Connection, Counts
  core/args.pxi        Python arguments to C values (buffers, index arrays)
  core/window.pxi      Window, and a cut window's table to Python objects
  core/lanes.pxi       per-thread lanes of the single-packet path (free-threaded)
  core/core.pxi        Core: entry points, cutting, pending windows, wake-up
  core/methods.pxi     CountingMethods: Statistics' per-packet methods
  core/textout.pxi     connection tables as sorted JSON/CSV text (connstats read)
  core/series.pxi      SeriesTable: cumulative counts per series (connstats.metrics)
  core/columns.pxi     a window as packed columns (Arrow, Parquet)
"""

cimport cython
from cpython.buffer cimport (
    PyBUF_ANY_CONTIGUOUS, PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBuffer_Release,
    PyObject_CheckBuffer, PyObject_GetBuffer,
)
from cpython.bytes cimport (
    PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE,
)
from cpython.long cimport (
    PyLong_AsLongAndOverflow, PyLong_AsUnsignedLongLong, PyLong_CheckExact,
    PyLong_FromUnsignedLong, PyLong_FromUnsignedLongLong,
)
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
from array import array

from connstats import _addr
from connstats._types import (
    PROTOCOL_NAMES, TAILSCALE_SERVICE_ADDRESSES, Decapsulated, protocol_name,
)

include "core/platform.pxi"
include "core/decode.pxi"
include "core/decap.pxi"
include "core/records.pxi"
include "core/table.pxi"
include "core/times.pxi"
include "core/tagged.pxi"
include "core/values.pxi"
include "core/args.pxi"
include "core/window.pxi"
include "core/lanes.pxi"
include "core/core.pxi"
include "core/methods.pxi"
include "core/textout.pxi"
include "core/series.pxi"
include "core/columns.pxi"


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


def decap(packet, int mask=DC_ALL):
    """The tunnel around one IP packet (docs/tunnels.md): a Decapsulated
    (outer, offset, length, vni); mask: the TUNNEL_* kinds to open."""
    cdef Py_buffer view
    cdef const uint8_t *p
    cdef Py_ssize_t n
    cdef DcResult r
    cdef cs_key k
    cdef Connection outer
    cdef dict cache = {}
    if not 0 <= mask <= DC_ALL:
        raise ValueError(f"tunnels: {mask} is not a set of tunnel kinds")
    if PyBytes_CheckExact(packet):
        p = <const uint8_t *>PyBytes_AS_STRING(packet)
        n = PyBytes_GET_SIZE(packet)
        r = _dc_walk(p, 0, n, n, mask)
        _decode(p, n, &k)
    else:
        _get_buffer(packet, &view, "packet")
        p = <const uint8_t *>view.buf
        n = view.len
        r = _dc_walk(p, 0, n, n, mask)
        _decode(p, n, &k)
        PyBuffer_Release(&view)
    if r.found != DC_INNER and r.found != DC_NO_IP:
        return Decapsulated(None, 0, n, None)
    outer = Connection.__new__(Connection)
    outer.proto = k.proto
    outer.src = _materialize_addrport(cache, k.sfam, k.src, k.sport)
    outer.dst = _materialize_addrport(cache, k.dfam, k.dst, k.dport)
    outer._vni = r.outer_vni
    outer._hash = _connection_hash(outer.proto, outer.src._hash, outer.dst._hash, outer._vni)
    if r.found == DC_NO_IP:
        return Decapsulated(outer, 0, 0, None)
    return Decapsulated(outer, r.start, r.length, None if r.inner_vni < 0 else r.inner_vni)


def decap_split(buffer, offsets, lengths, int mask):
    """Sort packets buffer[offsets[i]:offsets[i]+lengths[i]] by what they hold
    (docs/tunnels.md), for the buffer entry points: ``(plain_offsets,
    plain_lengths, inner_offsets, inner_lengths, inner_vnis, outer_offsets,
    outer_lengths, outer_vnis, malformed)`` as int64 arrays, ``malformed``
    the number of tunnels counted as plain packets.  Every packet is whole
    (live capture: what the kernel delivered is what is counted)."""
    cdef Py_buffer view
    cdef int64_t *offs = NULL
    cdef int64_t *lns = NULL
    cdef Py_ssize_t n_off, n_len, i
    cdef Py_ssize_t n_plain = 0, n_inner = 0, n_outer = 0, bad = 0
    cdef const uint8_t *base
    cdef DcResult r
    cdef int64_t[::1] po, pl, io, il, iv, oo, ol, ov
    if not 0 <= mask <= DC_ALL:
        raise ValueError(f"mask: {mask} is not a set of tunnel kinds")
    _get_buffer(buffer, &view, "buffer")
    try:
        _read_index_array(offsets, "offsets", &n_off, &offs)
        _read_index_array(lengths, "lengths", &n_len, &lns)
        if n_off != n_len:
            raise ValueError(f"lengths: has {n_len} items but offsets has {n_off}")
        for i in range(n_off):
            if offs[i] > view.len or lns[i] > view.len - offs[i]:
                raise ValueError(
                    f"offsets[{i}]/lengths[{i}]: packet {offs[i]}.."
                    f"{<uint64_t>offs[i] + <uint64_t>lns[i]} "
                    f"is beyond the buffer's {view.len} bytes")
        out = [array("q", bytes(8 * n_off)) for _ in range(8)]
        po, pl, io, il, iv, oo, ol, ov = out
        base = <const uint8_t *>view.buf
        with nogil:
            for i in range(n_off):
                if _dc_candidate(base + offs[i], lns[i]):
                    r = _dc_walk(base, offs[i], lns[i], lns[i], mask)
                else:
                    r.found = DC_NONE
                if r.found == DC_INNER or r.found == DC_NO_IP:
                    oo[n_outer] = offs[i]
                    ol[n_outer] = lns[i]
                    ov[n_outer] = r.outer_vni
                    n_outer += 1
                    if r.found == DC_INNER:
                        io[n_inner] = r.start
                        il[n_inner] = r.length
                        iv[n_inner] = r.inner_vni
                        n_inner += 1
                    continue
                if r.found == DC_BAD:
                    bad += 1
                po[n_plain] = offs[i]
                pl[n_plain] = lns[i]
                n_plain += 1
    finally:
        PyBuffer_Release(&view)
        free(offs)
        free(lns)
    sizes = (n_plain, n_plain, n_inner, n_inner, n_inner, n_outer, n_outer, n_outer)
    return (*[a[:k] for a, k in zip(out, sizes)], bad)


SHARDS = NSHARDS
ENTRY_BYTES = sizeof(cs_entry)
IPV4_ENTRY_BYTES = sizeof(cs_entry4)
IPV4_KEY_BYTES = sizeof(cs_key4)
WINDOW_BYTES = sizeof(cs_window)

# The record layout is written down once, in connstats/_types.py.
from connstats._types import RECORD_SIZE as _RECORD_SIZE
if _RECORD_SIZE != RECORD_BYTES:
    raise ImportError(f"connstats: RECORD_SIZE {_RECORD_SIZE} != the core's {RECORD_BYTES}")
