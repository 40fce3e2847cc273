# cython: language_level=3, freethreading_compatible=True, embedsignature=True
# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# cython: binding=False, always_allow_keywords=False
"""The compiled core of connstats: IP header decoding and the counter table.

Layout of the table (one per window):

* 8 shards, chosen by the top bits of a keyed 64-bit hash, each with its own
  mutex, so that threads feeding disjoint connections through the batch entry
  points (which run without the GIL) rarely meet on a lock.
* Each shard is an open-addressed index of 64-bit slots
  (32-bit hash tag << 32 | entry number + 1, linear probing, load <= 3/4)
  over a dense array of 72-byte entries (40-byte key + four u64 counters).
  Dense entries make a window cheap to walk and ~92 bytes per connection at
  a million connections.

A window is swapped out by taking every shard lock (in index order) and
replacing one pointer, so the packet path is never held up by turning a
window into Python objects.  The mutexes are plain C (cs_platform.h): no
Python object is touched while one is held, so the critical sections can run
with the GIL released.
"""

cimport cython
from cpython.buffer cimport (
    PyBUF_ANY_CONTIGUOUS, PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBuffer_Release,
    PyObject_CheckBuffer, PyObject_GetBuffer,
)
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_GET_SIZE
from cpython.long cimport PyLong_FromUnsignedLong, PyLong_FromUnsignedLongLong
from cpython.object cimport Py_EQ, Py_GE, Py_GT, Py_LE, Py_LT, Py_NE, PyObject
from cpython.pythread cimport (
    PY_LOCK_ACQUIRED, PyLockStatus, PyThread_acquire_lock, PyThread_allocate_lock,
    PyThread_free_lock, PyThread_release_lock, PyThread_type_lock, WAIT_LOCK,
)
from cpython.ref cimport Py_DECREF, Py_INCREF
from cpython.sequence cimport PySequence_Check, PySequence_Fast, PySequence_Fast_GET_ITEM, PySequence_Fast_GET_SIZE
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcmp, memcpy, memset

import ipaddress
import os

from connstats import _addr
from connstats._types import PROTOCOL_NAMES, TAILSCALE_SERVICE_ADDRESSES, protocol_name

cdef extern from "Python.h":
    void PyObject_GC_UnTrack(void *op)

cdef extern from "pythread.h" nogil:
    PyLockStatus PyThread_acquire_lock_timed(PyThread_type_lock, long long, int)

cdef extern from "cs_platform.h" nogil:
    ctypedef struct cs_mutex:
        pass
    int cs_mutex_init(cs_mutex *m)
    void cs_mutex_lock(cs_mutex *m)
    bint cs_mutex_trylock(cs_mutex *m)
    void cs_mutex_unlock(cs_mutex *m)
    int64_t cs_atomic_add64(int64_t *p, int64_t v)
    int64_t cs_atomic_load64(const int64_t *p)
    int cs_atomic_exchange_int(int *p, int v)
    int cs_atomic_load_int(const int *p)
    void cs_atomic_store_int(int *p, int v)
    void cs_prefetch(const void *p)
    int64_t cs_now_ns()
    uint64_t cs_mix64(uint64_t h)
    uint64_t cs_hash40(const void *key, uint64_t seed)
    bint cs_key40_equal(const void *a, const void *b)
    object cs_alloc_instance(object cls)


# ---------------------------------------------------------------------------
# Keys and decoding (SPEC section 3)
# ---------------------------------------------------------------------------

cdef struct cs_key:
    # 40 bytes, no padding, zeroed before use so that it hashes and compares
    # as raw memory.  kind: 0 virtual, 1 physical.  fam: 0 none, 4, 6.
    uint8_t proto
    uint8_t kind
    uint8_t sfam
    uint8_t dfam
    uint16_t sport
    uint16_t dport
    uint8_t src[16]
    uint8_t dst[16]


cdef enum:
    KIND_VIRTUAL = 0
    KIND_PHYSICAL = 1


cdef inline Py_ssize_t _addr_len(uint8_t fam) noexcept nogil:
    return 4 if fam == 4 else 16


cdef inline uint16_t _be16(const uint8_t *p) noexcept nogil:
    return <uint16_t>((p[0] << 8) | p[1])


cdef inline void _ports(cs_key *k, int proto, const uint8_t *t, Py_ssize_t tlen,
                        Py_ssize_t need) noexcept nogil:
    if tlen < need:
        k.proto = 0
    else:
        k.proto = proto
        k.sport = _be16(t)
        k.dport = _be16(t + 2)


cdef inline void _transport4(cs_key *k, int proto, const uint8_t *t, Py_ssize_t tlen,
                             bint more_fragments) noexcept nogil:
    if proto == 6:
        _ports(k, proto, t, tlen, 20)
    elif proto == 17:
        _ports(k, proto, t, tlen, 8)
    elif proto == 132:
        _ports(k, proto, t, tlen, 12)
    elif proto == 1:
        k.proto = proto if tlen >= 4 else 0
    elif proto == 2:
        k.proto = proto if tlen >= 8 else 0
    elif proto == 99:
        k.proto = 0 if (more_fragments or tlen < 7) else proto
    elif proto == 255:
        k.proto = 0
    else:
        k.proto = proto


cdef inline void _transport6(cs_key *k, int proto, const uint8_t *t,
                             Py_ssize_t tlen) noexcept nogil:
    if proto == 6:
        _ports(k, proto, t, tlen, 20)
    elif proto == 17:
        _ports(k, proto, t, tlen, 8)
    elif proto == 132:
        _ports(k, proto, t, tlen, 12)
    elif proto == 58:
        k.proto = proto if tlen >= 4 else 0
    elif proto == 99:
        k.proto = proto if tlen >= 7 else 0
    elif proto == 255:
        k.proto = 0
    else:
        k.proto = proto


cdef inline void _decode(const uint8_t *b, Py_ssize_t L, cs_key *k) noexcept nogil:
    """Decode packet b[0:L] into k (tx orientation) following SPEC section 3."""
    cdef Py_ssize_t tl, hl
    cdef int proto, frag, off
    memset(k, 0, sizeof(cs_key))
    if L <= 0:
        return
    if (b[0] >> 4) == 4:
        if L < 20:
            return
        tl = _be16(b + 2)
        if L < tl:
            return
        k.sfam = 4
        k.dfam = 4
        memcpy(k.src, b + 12, 4)
        memcpy(k.dst, b + 16, 4)
        hl = (b[0] & 0x0F) * 4
        if hl > tl:
            return  # proto 0, addresses kept, ports 0
        frag = _be16(b + 6)
        off = frag & 0x1FFF
        if off != 0:
            k.proto = 0 if off < 10 else 255
            return
        # hl <= tl <= L, so the transport view b[hl:L] is in bounds.
        _transport4(k, b[9], b + hl, L - hl, (frag & 0x2000) != 0)
    elif (b[0] >> 4) == 6:
        if L < 40:
            return
        tl = 40 + <Py_ssize_t>_be16(b + 4)
        if L < tl:
            return
        k.sfam = 6
        k.dfam = 6
        memcpy(k.src, b + 8, 16)
        memcpy(k.dst, b + 24, 16)
        proto = b[6]
        if proto == 44:
            if L < 48:
                return  # proto 0, addresses kept
            proto = b[40]
            off = _be16(b + 42) >> 3
            if off != 0:
                k.proto = 0 if off < 10 else 255
                return
            _transport6(k, proto, b + 48, L - 48)
        else:
            _transport6(k, proto, b + 40, L - 40)


cdef inline void _swap(cs_key *k) noexcept nogil:
    cdef uint8_t tmp[16]
    cdef uint8_t f = k.sfam
    cdef uint16_t p = k.sport
    k.sfam = k.dfam
    k.dfam = f
    k.sport = k.dport
    k.dport = p
    memcpy(tmp, k.src, 16)
    memcpy(k.src, k.dst, 16)
    memcpy(k.dst, tmp, 16)


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------

cdef struct cs_entry:
    cs_key key
    uint64_t tx_packets
    uint64_t tx_bytes
    uint64_t rx_packets
    uint64_t rx_bytes


cdef struct cs_table:
    uint64_t *slots     # tag << 32 | (entry index + 1); 0 = empty
    cs_entry *entries   # dense, in insertion order
    uint32_t mask       # number of slots - 1; 0 while unallocated
    uint32_t count
    uint32_t capacity   # of entries


cdef enum:
    NSHARDS = 8
    MATERIALIZE_SLICE = 2048   # connections built between returns to the eval loop
    SHARD_SHIFT = 61    # 64 - log2(NSHARDS)
    FIRST_SLOTS = 16
    CHUNK = 256         # packets parsed per lock round in the batch paths


cdef struct cs_window:
    cs_table shards[NSHARDS]
    int64_t nconns      # connections in all shards; atomic
    int64_t start_ns    # first insertion; written under that shard's lock
    int64_t end_ns
    int64_t generation
    cs_window *next     # pending-queue link


cdef enum:
    ADD_OK = 0
    ADD_OPENED = 1      # first connection of the window: wake the flusher
    ADD_FULL = 2        # max_conns reached: the window must be cut first
    ADD_NOMEM = -1


cdef int _table_grow(cs_table *t) noexcept nogil:
    cdef uint32_t new_slots = FIRST_SLOTS if t.mask == 0 else (t.mask + 1) * 2
    cdef uint32_t new_mask = new_slots - 1
    cdef uint64_t *slots
    cdef uint32_t i, pos
    cdef uint64_t s
    if new_slots == 0 or new_slots > (<uint32_t>1 << 31):
        return -1
    slots = <uint64_t *>calloc(new_slots, sizeof(uint64_t))
    if slots == NULL:
        return -1
    if t.mask:
        for i in range(t.mask + 1):
            s = t.slots[i]
            if s:
                # the tag holds the hash's low bits, so no entry is touched
                pos = <uint32_t>(s >> 32) & new_mask
                while slots[pos]:
                    pos = (pos + 1) & new_mask
                slots[pos] = s
        free(t.slots)
    t.slots = slots
    t.mask = new_mask
    return 0


cdef inline int _window_add(cs_window *w, uint32_t shard, const cs_key *k, uint64_t h,
                            bint rx, uint64_t npkts, uint64_t nbytes,
                            int64_t max_conns) noexcept nogil:
    """Count npkts packets of nbytes in all on k.  The caller holds the shard's lock."""
    cdef cs_table *t = &w.shards[shard]
    cdef uint32_t tag = <uint32_t>h
    cdef uint32_t pos, idx, cap
    cdef uint64_t s
    cdef cs_entry *e = NULL
    cdef cs_entry *grown
    cdef int64_t before
    cdef int result = ADD_OK
    if t.mask == 0 or t.count >= ((t.mask + 1) >> 1) + ((t.mask + 1) >> 2):
        if _table_grow(t) < 0:
            return ADD_NOMEM
    pos = tag & t.mask
    while True:
        s = t.slots[pos]
        if s == 0:
            break
        if <uint32_t>(s >> 32) == tag:
            e = &t.entries[<uint32_t>s - 1]
            if cs_key40_equal(&e.key, k):
                break
            e = NULL
        pos = (pos + 1) & t.mask
    if e == NULL:
        if t.count == t.capacity:
            cap = 8 if t.capacity == 0 else t.capacity * 2
            grown = <cs_entry *>realloc(t.entries, cap * sizeof(cs_entry))
            if grown == NULL:
                return ADD_NOMEM
            t.entries = grown
            t.capacity = cap
        before = cs_atomic_add64(&w.nconns, 1)
        if max_conns > 0 and before >= max_conns:
            cs_atomic_add64(&w.nconns, -1)
            return ADD_FULL
        if before == 0:
            w.start_ns = cs_now_ns()
            result = ADD_OPENED
        idx = t.count
        t.count += 1
        e = &t.entries[idx]
        memcpy(&e.key, k, sizeof(cs_key))
        e.tx_packets = 0
        e.tx_bytes = 0
        e.rx_packets = 0
        e.rx_bytes = 0
        t.slots[pos] = (<uint64_t>tag << 32) | (idx + 1)
    if rx:
        e.rx_packets += npkts
        e.rx_bytes += nbytes
    else:
        e.tx_packets += npkts
        e.tx_bytes += nbytes
    return result


cdef inline void _prefetch_slot(cs_table *t, uint64_t h) noexcept nogil:
    if t.mask:
        cs_prefetch(&t.slots[<uint32_t>h & t.mask])


cdef inline void _prefetch_entry(cs_table *t, uint64_t h) noexcept nogil:
    # Only the home slot is looked at: good enough at load <= 3/4.
    cdef uint64_t s
    if t.mask:
        s = t.slots[<uint32_t>h & t.mask]
        if s:
            cs_prefetch(&t.entries[<uint32_t>s - 1])


cdef void _window_free(cs_window *w) noexcept nogil:
    cdef int i
    if w == NULL:
        return
    for i in range(NSHARDS):
        free(w.shards[i].slots)
        free(w.shards[i].entries)
    free(w)


cdef Py_ssize_t _window_table_bytes(cs_window *w) noexcept nogil:
    cdef Py_ssize_t total = sizeof(cs_window)
    cdef int i
    for i in range(NSHARDS):
        if w.shards[i].mask:
            total += (w.shards[i].mask + 1) * sizeof(uint64_t)
        total += w.shards[i].capacity * sizeof(cs_entry)
    return total


cdef void _window_totals(cs_window *w, uint64_t *packets, uint64_t *nbytes) noexcept nogil:
    cdef int i
    cdef uint32_t j
    cdef cs_entry *e
    packets[0] = 0
    nbytes[0] = 0
    for i in range(NSHARDS):
        for j in range(w.shards[i].count):
            e = &w.shards[i].entries[j]
            packets[0] += e.tx_packets + e.rx_packets
            nbytes[0] += e.tx_bytes + e.rx_bytes


cdef uint64_t _random_seed():
    return int.from_bytes(os.urandom(8), "little")


include "_values.pxi"


# ---------------------------------------------------------------------------
# Argument helpers (GIL held)
# ---------------------------------------------------------------------------

cdef str _argname(str argname, Py_ssize_t index):
    return argname if index < 0 else f"{argname}[{index}]"


cdef int _get_buffer(object obj, Py_buffer *view, str argname,
                     Py_ssize_t index=-1) except -1:
    # The item name is formatted only on error: batches call this per item.
    if not PyObject_CheckBuffer(obj):
        raise TypeError(
            f"{_argname(argname, index)}: expected a bytes-like object, "
            f"got {type(obj).__name__}")
    try:
        PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS)
    except BufferError as exc:
        raise ValueError(
            f"{_argname(argname, index)}: buffer is not C-contiguous ({exc})") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{_argname(argname, index)}: unusable buffer ({exc})") from None
    return 0


cdef object _object_new = object.__new__


cdef bint _check_fast_addresses():
    # Materializing a window builds many address objects; ipaddress's own
    # constructors cost 3x more than filling the `_ip` slot directly.  That
    # slot is private, so use the shortcut only if it gives objects that are
    # indistinguishable from the constructors' on this Python.
    try:
        for cls, value in ((_IPv4Address, 0x64400001), (_IPv6Address, (0xfd7a << 112) | 0x53)):
            fast = _object_new(cls)
            fast._ip = value
            if cls is _IPv6Address:
                fast._scope_id = None
            slow = cls(value)
            if not (fast == slow and hash(fast) == hash(slow) and str(fast) == str(slow)
                    and fast.packed == slow.packed and repr(fast) == repr(slow)):
                return False
        return True
    except Exception:
        return False


cdef bint _FAST_ADDRESSES = _check_fast_addresses()


cdef inline uint64_t _be64(const uint8_t *p) noexcept nogil:
    cdef uint64_t v = 0
    cdef int i
    for i in range(8):
        v = (v << 8) | p[i]
    return v


cdef object _address_value(uint8_t fam, const uint8_t *raw):
    # The address as the int ipaddress stores: built from machine words, not
    # through int.from_bytes.
    if fam == 4:
        return PyLong_FromUnsignedLong((<unsigned long>raw[0] << 24) | (raw[1] << 16) |
                                       (raw[2] << 8) | raw[3])
    return (PyLong_FromUnsignedLongLong(_be64(raw)) << 64) | PyLong_FromUnsignedLongLong(_be64(raw + 8))


cdef object _address_object(uint8_t fam, object value):
    cdef object addr
    cdef object cls = _IPv4Address if fam == 4 else _IPv6Address
    if not _FAST_ADDRESSES:
        return cls(value)
    # What object.__new__ does, without the call overhead.
    addr = cs_alloc_instance(cls)
    addr._ip = value
    if fam == 6:
        addr._scope_id = None
    # It holds only an int (and None): it cannot be part of a cycle.  Left
    # tracked, 200,000 fresh addresses make the collector walk the whole
    # heap several times per window.
    PyObject_GC_UnTrack(<void *>addr)
    return addr


cdef Py_ssize_t _native_size(char code) noexcept:
    if code == b'b' or code == b'B':
        return 1
    if code == b'h' or code == b'H':
        return 2
    if code == b'i' or code == b'I':
        return sizeof(int)
    if code == b'l' or code == b'L':
        return sizeof(long)
    return 8  # q, Q, and n, N, which are read as 64-bit


cdef int _read_index_array(object obj, str argname, Py_ssize_t *out_len,
                           int64_t **out) except -1:
    """Copy a 1-D buffer (or sequence) of integers into a new int64 array."""
    cdef Py_buffer view
    cdef Py_ssize_t n, i
    cdef int64_t *values
    cdef bytes fmt
    cdef char code
    cdef const char *p
    if not PyObject_CheckBuffer(obj):
        # lists and other sequences of ints: slower, but accepted
        try:
            seq = list(obj)
        except TypeError:
            raise TypeError(
                f"{argname}: expected a buffer or sequence of integers, "
                f"got {type(obj).__name__}") from None
        n = len(seq)
        values = <int64_t *>malloc((n if n else 1) * sizeof(int64_t))
        if values == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                v = seq[i]
                if isinstance(v, bool) or not isinstance(v, int):
                    raise TypeError(f"{argname}[{i}]: expected an int, got {type(v).__name__}")
                if not 0 <= v < 2 ** 62:
                    raise ValueError(f"{argname}[{i}]: {v} is out of range")
                values[i] = v
        except BaseException:
            free(values)
            raise
        out_len[0] = n
        out[0] = values
        return 0
    try:
        PyObject_GetBuffer(obj, &view, PyBUF_ANY_CONTIGUOUS | PyBUF_FORMAT)
    except BufferError as exc:
        raise ValueError(f"{argname}: buffer is not contiguous ({exc})") from None
    try:
        fmt = (view.format if view.format != NULL else b"B")
        fmt = fmt.lstrip(b"@=<")
        if view.ndim > 1 or len(fmt) != 1 or fmt not in b"bBhHiIlLqQnN":
            raise TypeError(
                f"{argname}: expected a 1-D buffer of integers, got format "
                f"{fmt.decode('ascii', 'replace')!r}")
        code = fmt[0]
        if view.itemsize != _native_size(code):
            # e.g. "<l" means 4 bytes to struct; reading it as a C long would
            # run past the buffer.
            raise TypeError(
                f"{argname}: item size {view.itemsize} does not match format "
                f"{fmt.decode('ascii', 'replace')!r}; use native-size integers")
        n = view.len // view.itemsize
        values = <int64_t *>malloc((n if n else 1) * sizeof(int64_t))
        if values == NULL:
            raise MemoryError()
        p = <const char *>view.buf
        for i in range(n):
            if code == b'B':
                values[i] = (<const uint8_t *>p)[i]
            elif code == b'H':
                values[i] = (<const uint16_t *>p)[i]
            elif code == b'I':
                values[i] = (<const uint32_t *>p)[i]
            elif code == b'b':
                values[i] = (<const signed char *>p)[i]
            elif code == b'h':
                values[i] = (<const short *>p)[i]
            elif code == b'i':
                values[i] = (<const int *>p)[i]
            elif code == b'l':
                values[i] = (<const long *>p)[i]
            elif code == b'L':
                values[i] = <int64_t>(<const unsigned long *>p)[i]
            elif code == b'q' or code == b'n':
                values[i] = (<const int64_t *>p)[i]
            else:  # Q, N: reject values that do not fit in int64
                if (<const uint64_t *>p)[i] > <uint64_t>0x3FFFFFFFFFFFFFFF:
                    free(values)
                    raise ValueError(f"{argname}[{i}]: value is out of range")
                values[i] = <int64_t>(<const uint64_t *>p)[i]
            if values[i] < 0:
                v = values[i]
                free(values)
                raise ValueError(f"{argname}[{i}]: {v} is negative")
    finally:
        PyBuffer_Release(&view)
    out_len[0] = n
    out[0] = values
    return 0


# ---------------------------------------------------------------------------
# Windows handed to Python
# ---------------------------------------------------------------------------

@cython.final
cdef class Window:
    """A window of counts cut from a Core; owns its C table."""

    cdef cs_window *w

    def __init__(self, *args, **kwargs):
        raise TypeError("Window objects come from Core.cut() and Core.pop_pending()")

    def __dealloc__(self):
        _window_free(self.w)
        self.w = NULL

    cdef inline cs_window *_table(self) except NULL:
        # Window.__new__(Window) from Python has no table.
        if self.w == NULL:
            raise ValueError("this Window has no table (made with Window.__new__)")
        return self.w

    @staticmethod
    cdef Window wrap(cs_window *w):
        cdef Window obj = Window.__new__(Window)
        obj.w = w
        return obj

    @property
    def start(self):
        """Epoch seconds of the window's first insertion."""
        return self._table().start_ns / 1e9

    @property
    def end(self):
        """Epoch seconds at which the window was cut."""
        return self._table().end_ns / 1e9

    @property
    def generation(self):
        return self._table().generation

    @property
    def packets(self):
        cdef uint64_t packets, nbytes
        _window_totals(self._table(), &packets, &nbytes)
        return packets

    @property
    def bytes(self):
        cdef uint64_t packets, nbytes
        _window_totals(self._table(), &packets, &nbytes)
        return nbytes

    @property
    def table_bytes(self):
        """Bytes of C memory the window's table holds."""
        return _window_table_bytes(self._table())

    def __len__(self):
        return self._table().nconns

    def to_dicts(self):
        """Return (virtual, physical): dict[Connection, Counts] each.

        One C call that holds the GIL throughout; connstats itself uses
        materialize_slices (see connstats._impl.materialize)."""
        cdef dict virtual = {}
        cdef dict physical = {}
        for _ in self.materialize_slices(virtual, physical):
            pass
        return virtual, physical

    def materialize_slices(self, dict virtual not None, dict physical not None):
        """Fill virtual and physical (dict[Connection, Counts]) with this
        window's connections, yielding after every MATERIALIZE_SLICE of them.

        A single C call never reaches the eval loop, which is where CPython
        hands the GIL to a thread that has waited for a switch interval: a
        packet thread would stall for the whole window (tens of ms at 100k
        connections).  Driven by a Python-level loop, each yield is such a
        point.  (Releasing the GIL from C instead does not work: the waiter
        only asks for the GIL after its 5 ms timeout, and every release
        shorter than that wakes it, loses the race and restarts its wait.)
        The window is immutable, so other threads may run in between."""
        cdef dict addresses = {}
        cdef cs_window *w = self._table()
        cdef int i
        cdef uint32_t j
        cdef uint32_t since_yield = 0
        cdef cs_entry *e
        cdef Counts counts
        cdef Connection conn
        for i in range(NSHARDS):
            for j in range(w.shards[i].count):
                e = &w.shards[i].entries[j]
                conn = Connection.__new__(Connection)
                conn.proto = e.key.proto
                conn.src = _materialize_addrport(addresses, e.key.sfam, e.key.src, e.key.sport)
                conn.dst = _materialize_addrport(addresses, e.key.dfam, e.key.dst, e.key.dport)
                conn._hash = _connection_hash(conn.proto, conn.src._hash, conn.dst._hash)
                counts = Counts.__new__(Counts)
                counts.tx_packets = e.tx_packets
                counts.tx_bytes = e.tx_bytes
                counts.rx_packets = e.rx_packets
                counts.rx_bytes = e.rx_bytes
                if e.key.kind == KIND_PHYSICAL:
                    physical[conn] = counts
                else:
                    virtual[conn] = counts
                since_yield += 1
                if since_yield == MATERIALIZE_SLICE:
                    since_yield = 0
                    yield


cdef inline AddrPort _materialize_addrport(dict cache, uint8_t fam, const uint8_t *raw,
                                           uint16_t port):
    # Address objects repeat across connections: build each one once.  The
    # cache is keyed by (int value, family): 1.2.3.4 and ::102:304 differ.
    cdef object value, key, addr
    if fam == 0:
        return _NO_ADDRPORT if port == 0 else _make_addrport(None, 0, raw, port)
    value = _address_value(fam, raw)
    key = value if fam == 4 else (value, 6)
    addr = cache.get(key)
    if addr is None:
        addr = _address_object(fam, value)
        cache[key] = addr
    return _make_addrport(addr, fam, raw, port)


# ---------------------------------------------------------------------------
# The core
# ---------------------------------------------------------------------------

cdef struct cs_ignore:
    uint8_t fam
    uint8_t addr[16]


@cython.final
cdef class Core:
    """Counter table with C locks; see connstats.Statistics for the public API."""

    cdef cs_mutex *locks        # NSHARDS shard locks + the pending-queue lock
    cdef cs_window *cur
    cdef int closed
    cdef int64_t max_conns
    cdef int64_t next_generation
    cdef uint64_t seed
    cdef cs_ignore *ignore
    cdef int n_ignore
    # pending windows (cut by max_conns), guarded by locks[NSHARDS]
    cdef cs_window *qhead
    cdef cs_window *qtail
    cdef int64_t qlen
    cdef int64_t qconns
    cdef int64_t max_pending
    cdef int64_t max_pending_conns
    cdef uint64_t dropped_windows_
    cdef uint64_t dropped_packets_
    cdef uint64_t dropped_bytes_
    # wake-up for the flush thread: a lock used as a binary semaphore
    cdef PyThread_type_lock sig
    cdef int signaled

    def __cinit__(self, max_conns=0, ignore_destinations=(), max_pending=1024,
                  max_pending_conns=1 << 21):
        cdef int i
        cdef bytes packed
        if isinstance(max_conns, bool) or not isinstance(max_conns, int):
            raise TypeError(f"max_conns: expected an int, got {type(max_conns).__name__}")
        if max_conns < 0:
            raise ValueError(f"max_conns: must be >= 0, got {max_conns}")
        for name, value in (("max_pending", max_pending), ("max_pending_conns", max_pending_conns)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
            if value < 1:
                raise ValueError(f"{name}: must be >= 1, got {value}")
        try:
            destinations = list(ignore_destinations)
        except TypeError:
            raise TypeError(
                f"ignore_destinations: expected an iterable of addresses, "
                f"got {type(ignore_destinations).__name__}") from None
        ignored = [_addr.packed_address(a, "ignore_destinations") for a in destinations]
        self.max_conns = min(max_conns, 2 ** 62)
        self.max_pending = min(max_pending, 2 ** 62)
        self.max_pending_conns = min(max_pending_conns, 2 ** 62)
        self.seed = _random_seed()
        self._allocate_runtime()
        if ignored:
            self.ignore = <cs_ignore *>calloc(len(ignored), sizeof(cs_ignore))
            if self.ignore == NULL:
                raise MemoryError()
            for i, packed in enumerate(ignored):
                self.ignore[i].fam = 4 if len(packed) == 4 else 6
                memcpy(self.ignore[i].addr, <const char *>packed, len(packed))
            self.n_ignore = len(ignored)

    cdef int _allocate_runtime(self) except -1:
        # Locks, the empty window and the wake-up lock; also used after fork.
        cdef int i
        self.locks = <cs_mutex *>malloc((NSHARDS + 1) * sizeof(cs_mutex))
        if self.locks == NULL:
            raise MemoryError()
        for i in range(NSHARDS + 1):
            if cs_mutex_init(&self.locks[i]) != 0:
                raise MemoryError("connstats: cannot initialise a mutex")
        self.cur = self._new_window()
        if self.cur == NULL:
            raise MemoryError()
        self.qhead = NULL
        self.qtail = NULL
        self.qlen = 0
        self.qconns = 0
        self.sig = PyThread_allocate_lock()
        if self.sig == NULL:
            raise MemoryError()
        PyThread_acquire_lock(self.sig, WAIT_LOCK)
        self.signaled = 0
        return 0

    def __dealloc__(self):
        cdef cs_window *w
        _window_free(self.cur)
        w = self.qhead
        while w != NULL:
            nxt = w.next
            _window_free(w)
            w = nxt
        if self.sig != NULL:
            PyThread_free_lock(self.sig)
        free(self.locks)
        free(self.ignore)

    cdef cs_window *_new_window(self) noexcept nogil:
        cdef cs_window *w = <cs_window *>calloc(1, sizeof(cs_window))
        if w != NULL:
            w.generation = self.next_generation
            self.next_generation += 1
        return w

    # -- locking -----------------------------------------------------------

    cdef inline void _lock_all(self) noexcept nogil:
        cdef int i
        for i in range(NSHARDS):
            cs_mutex_lock(&self.locks[i])

    cdef inline void _unlock_all(self) noexcept nogil:
        cdef int i
        for i in range(NSHARDS - 1, -1, -1):
            cs_mutex_unlock(&self.locks[i])

    cdef inline void _notify(self) noexcept nogil:
        if cs_atomic_exchange_int(&self.signaled, 1) == 0:
            PyThread_release_lock(self.sig)

    cdef int _cut_full(self, int64_t generation) noexcept nogil:
        """Replace the open window by a new one and queue it, if it still has
        `generation` (compared by generation, not by pointer: a freed window's
        address can come back as a new window's)."""
        cdef cs_window *fresh
        cdef cs_window *full
        cdef cs_window *dropped = NULL
        cdef uint64_t packets, nbytes
        self._lock_all()
        full = self.cur
        if self.closed or full.generation != generation:
            # Closed: the window stays current, so that shutdown's final
            # cut() delivers it instead of it being stranded in the queue.
            self._unlock_all()  # or another thread cut it first
            return 0
        fresh = self._new_window()
        if fresh == NULL:
            self._unlock_all()
            return -1
        self.cur = fresh
        full.end_ns = cs_now_ns()
        cs_mutex_lock(&self.locks[NSHARDS])
        # Bounded by windows and by connections (memory); one window is
        # always accepted so that a huge max_conns still gets delivered.
        if self.qlen == 0 or (self.qlen < self.max_pending and
                              self.qconns + full.nconns <= self.max_pending_conns):
            full.next = NULL
            if self.qtail == NULL:
                self.qhead = full
            else:
                self.qtail.next = full
            self.qtail = full
            self.qlen += 1
            self.qconns += full.nconns
        else:
            dropped = full
        cs_mutex_unlock(&self.locks[NSHARDS])
        self._unlock_all()
        if dropped != NULL:
            # Accounted outside the shard locks: walking it is O(n).
            _window_totals(dropped, &packets, &nbytes)
            _window_free(dropped)
            cs_mutex_lock(&self.locks[NSHARDS])
            self.dropped_windows_ += 1
            self.dropped_packets_ += packets
            self.dropped_bytes_ += nbytes
            cs_mutex_unlock(&self.locks[NSHARDS])
        self._notify()
        return 0

    # -- counting (no Python objects; callable without the GIL) ------------

    cdef inline bint _is_ignored(self, const cs_key *k) noexcept nogil:
        cdef int i
        for i in range(self.n_ignore):
            if (self.ignore[i].fam == k.dfam and
                    memcmp(self.ignore[i].addr, k.dst, _addr_len(k.dfam)) == 0):
                return True
        return False

    cdef inline int _count_key(self, const cs_key *k, bint rx, uint64_t nbytes) noexcept nogil:
        cdef uint64_t h = cs_hash40(k, self.seed)
        cdef uint32_t shard = <uint32_t>(h >> SHARD_SHIFT)
        cdef cs_window *w
        cdef int64_t generation
        cdef int r
        while True:
            cs_mutex_lock(&self.locks[shard])
            if self.closed:
                cs_mutex_unlock(&self.locks[shard])
                return 0
            w = self.cur
            generation = w.generation
            r = _window_add(w, shard, k, h, rx, 1, nbytes, self.max_conns)
            cs_mutex_unlock(&self.locks[shard])
            if r == ADD_FULL:
                if self._cut_full(generation) < 0:
                    return -1
                continue
            if r == ADD_OPENED:
                self._notify()
                return 0
            return r

    cdef inline int _count_packet(self, const uint8_t *p, Py_ssize_t n, bint rx) noexcept nogil:
        cdef cs_key k
        if cs_atomic_load_int(&self.closed):
            return 0  # shut down: drop without parsing
        _decode(p, n, &k)
        if rx:
            _swap(&k)
        if self.n_ignore and self._is_ignored(&k):
            return 0
        return self._count_key(&k, rx, <uint64_t>n)

    cdef int _count_many(self, const uint8_t **ptrs, const int64_t *lens,
                         Py_ssize_t n, bint rx) noexcept nogil:
        """Count n packets: parse a chunk, then take each shard lock once."""
        cdef cs_key keys[CHUNK]
        cdef uint64_t hashes[CHUNK]
        cdef uint64_t sizes[CHUNK]
        cdef uint64_t npkts[CHUNK]
        cdef uint16_t order[CHUNK]
        cdef uint16_t fill[NSHARDS + 1]
        cdef uint8_t shard_of[CHUNK]
        cdef Py_ssize_t base = 0, m, i, pos, ahead
        cdef uint32_t s, first, todo, step
        cdef bint progressed
        cdef cs_window *w
        cdef int64_t generation
        cdef int r
        cdef bint opened = False
        while base < n:
            if cs_atomic_load_int(&self.closed):
                return 0
            m = n - base if n - base < CHUNK else CHUNK
            pos = 0
            for i in range(m):
                # Packet headers are scattered in memory: fetch ahead.
                ahead = base + i + 8
                if ahead < n:
                    cs_prefetch(ptrs[ahead])
                _decode(ptrs[base + i], lens[base + i], &keys[pos])
                if rx:
                    _swap(&keys[pos])
                if self.n_ignore and self._is_ignored(&keys[pos]):
                    continue
                if pos and cs_key40_equal(&keys[pos], &keys[pos - 1]):
                    # Flows come in bursts: fold a run of one connection
                    # into one table update (exact, and order-preserving).
                    npkts[pos - 1] += 1
                    sizes[pos - 1] += <uint64_t>lens[base + i]
                    continue
                hashes[pos] = cs_hash40(&keys[pos], self.seed)
                shard_of[pos] = <uint8_t>(hashes[pos] >> SHARD_SHIFT)
                sizes[pos] = <uint64_t>lens[base + i]
                npkts[pos] = 1
                pos += 1
            m = pos
            if self.max_conns > 0:
                # Packet order decides where a max_conns cut falls: keep it.
                i = 0
                while i < m:
                    s = shard_of[i]
                    cs_mutex_lock(&self.locks[s])
                    if self.closed:
                        cs_mutex_unlock(&self.locks[s])
                        return 0
                    w = self.cur
                    generation = w.generation
                    r = ADD_OK
                    while i < m and shard_of[i] == s:
                        r = _window_add(w, s, &keys[i], hashes[i], rx, npkts[i], sizes[i],
                                        self.max_conns)
                        if r == ADD_FULL or r == ADD_NOMEM:
                            break
                        if r == ADD_OPENED:
                            opened = True
                        i += 1
                    cs_mutex_unlock(&self.locks[s])
                    if r == ADD_NOMEM:
                        return -1
                    if r == ADD_FULL:
                        if self._cut_full(generation) < 0:
                            return -1
            else:
                # Group the chunk by shard (counting sort) so that each shard
                # lock is taken once per chunk.
                memset(fill, 0, sizeof(fill))
                for i in range(m):
                    fill[shard_of[i] + 1] += 1
                for s in range(NSHARDS):
                    fill[s + 1] += fill[s]
                self._group(m, shard_of, fill, order)
                todo = 0
                for s in range(NSHARDS):
                    if fill[s] != (0 if s == 0 else fill[s - 1]):
                        todo |= 1u << s
                # Take the shards whose locks are free first and come back
                # for the busy ones, so that two threads feeding batches
                # work on different shards instead of queueing in lockstep.
                # A per-thread starting shard (stack addresses differ).
                first = <uint32_t>((<size_t>&keys[0]) >> 14) + <uint32_t>(base // CHUNK)
                while todo:
                    progressed = False
                    for step in range(NSHARDS):
                        s = (first + step) & (NSHARDS - 1)
                        if not (todo >> s) & 1:
                            continue
                        if not cs_mutex_trylock(&self.locks[s]):
                            continue
                        todo &= ~(1u << s)
                        progressed = True
                        r = self._add_run(s, keys, hashes, npkts, sizes, order,
                                          0 if s == 0 else fill[s - 1], fill[s], rx)
                        if r < 0:
                            return r
                        if r == ADD_OPENED:
                            opened = True
                    if not progressed:
                        # every remaining shard is busy: wait for one
                        for s in range(NSHARDS):
                            if (todo >> s) & 1:
                                break
                        cs_mutex_lock(&self.locks[s])
                        todo &= ~(1u << s)
                        r = self._add_run(s, keys, hashes, npkts, sizes, order,
                                          0 if s == 0 else fill[s - 1], fill[s], rx)
                        if r < 0:
                            return r
                        if r == ADD_OPENED:
                            opened = True
            if opened:
                self._notify()
                opened = False
            base += CHUNK
        return 0

    cdef int _add_run(self, uint32_t s, cs_key *keys, uint64_t *hashes, uint64_t *npkts,
                      uint64_t *sizes, uint16_t *order, Py_ssize_t j,
                      Py_ssize_t end, bint rx) noexcept nogil:
        """Add order[j:end] to shard s and unlock it.  The caller holds its lock."""
        cdef cs_window *w = self.cur
        cdef Py_ssize_t i
        cdef int r, result = ADD_OK
        if self.closed:
            cs_mutex_unlock(&self.locks[s])
            return ADD_OK
        while j < end:
            # Two-stage prefetch for large tables: the slot of item j+16,
            # then the entry that item j+8's slot names.
            if j + 16 < end:
                _prefetch_slot(&w.shards[s], hashes[order[j + 16]])
            if j + 8 < end:
                _prefetch_entry(&w.shards[s], hashes[order[j + 8]])
            i = order[j]
            r = _window_add(w, s, &keys[i], hashes[i], rx, npkts[i], sizes[i], 0)
            if r == ADD_NOMEM:
                cs_mutex_unlock(&self.locks[s])
                return ADD_NOMEM
            if r == ADD_OPENED:
                result = ADD_OPENED
            j += 1
        cs_mutex_unlock(&self.locks[s])
        return result

    cdef inline void _group(self, Py_ssize_t m, const uint8_t *shard_of, uint16_t *fill,
                            uint16_t *order) noexcept nogil:
        # Stable counting sort of chunk indices by shard into `order`.
        # On entry fill[s] is the start of shard s's run; on exit its end.
        cdef Py_ssize_t i
        for i in range(m):
            order[fill[shard_of[i]]] = <uint16_t>i
            fill[shard_of[i]] += 1

    # -- single-packet entry points ----------------------------------------
    #
    # These keep the GIL: see benchmarks/RESULTS.md ("GIL decision").  The
    # work is ~20-40 ns, and dropping and retaking the GIL costs more than
    # that and makes a second Python thread pay for the hand-off.

    def update_tx_virtual(self, packet):
        """Count one transmitted IP packet (any C-contiguous bytes-like)."""
        self._virtual(packet, False)

    def update_rx_virtual(self, packet):
        """Count one received IP packet; src and dst are swapped."""
        self._virtual(packet, True)

    cdef int _virtual(self, object packet, bint rx) except -1:
        cdef Py_buffer view
        cdef int r
        if PyBytes_CheckExact(packet):
            r = self._count_packet(<const uint8_t *>PyBytes_AS_STRING(packet),
                                   PyBytes_GET_SIZE(packet), rx)
        else:
            _get_buffer(packet, &view, "packet")
            r = self._count_packet(<const uint8_t *>view.buf, view.len, rx)
            PyBuffer_Release(&view)
        if r < 0:
            raise MemoryError("connstats: cannot grow the connection table")
        return 0

    def update_tx_physical(self, src, dst, n):
        """Count one transmitted WireGuard packet of n bytes to peer dst."""
        self._physical(src, dst, n, False)

    def update_rx_physical(self, src, dst, n):
        """Count one received WireGuard packet of n bytes from peer dst."""
        self._physical(src, dst, n, True)

    cdef int _physical(self, object src, object dst, object n, bint rx) except -1:
        cdef cs_key k
        cdef bytes sp, dp
        cdef int port
        cdef uint64_t nbytes
        if cs_atomic_load_int(&self.closed):
            return 0
        sp = _addr.packed_address(src, "src")
        dp, port = _addr.packed_addrport(dst, "dst")
        nbytes = _addr.byte_count(n, "n")
        memset(&k, 0, sizeof(cs_key))
        k.kind = KIND_PHYSICAL
        k.sfam = 4 if len(sp) == 4 else 6
        k.dfam = 4 if len(dp) == 4 else 6
        memcpy(k.src, <const char *>sp, len(sp))
        memcpy(k.dst, <const char *>dp, len(dp))
        k.dport = <uint16_t>port
        if self.n_ignore and self._is_ignored(&k):
            return 0
        if self._count_key(&k, rx, nbytes) < 0:
            raise MemoryError("connstats: cannot grow the connection table")
        return 0

    # -- batch entry points (GIL released for the whole batch) -------------

    def update_tx_virtual_batch(self, packets):
        """Count a sequence of transmitted packets; the GIL is released while counting."""
        self._batch(packets, False)

    def update_rx_virtual_batch(self, packets):
        """Count a sequence of received packets; the GIL is released while counting."""
        self._batch(packets, True)

    cdef int _batch(self, object packets, bint rx) except -1:
        cdef object seq
        cdef Py_ssize_t n, i, held = 0, nviews = 0
        cdef const uint8_t **ptrs = NULL
        cdef int64_t *lens = NULL
        cdef PyObject **refs = NULL
        cdef Py_buffer *views = NULL
        cdef PyObject *item
        cdef int r = 0
        if isinstance(packets, (bytes, bytearray, memoryview, str)):
            raise TypeError(
                f"packets: expected a sequence of bytes-like objects, got "
                f"{type(packets).__name__} (use update_*_virtual for one packet)")
        if not PySequence_Check(packets):
            # sets, dicts and iterators have no stable order or length
            raise TypeError(
                f"packets: expected a sequence of bytes-like objects, "
                f"got {type(packets).__name__}")
        try:
            seq = PySequence_Fast(packets, "packets: expected a sequence of bytes-like objects")
        except TypeError:
            raise TypeError(
                f"packets: expected a sequence of bytes-like objects, "
                f"got {type(packets).__name__}") from None
        n = PySequence_Fast_GET_SIZE(seq)
        if n == 0:
            return 0
        ptrs = <const uint8_t **>malloc(n * sizeof(uint8_t *))
        lens = <int64_t *>malloc(n * sizeof(int64_t))
        refs = <PyObject **>malloc(n * sizeof(PyObject *))
        try:
            if ptrs == NULL or lens == NULL or refs == NULL:
                raise MemoryError()
            for i in range(n):
                item = PySequence_Fast_GET_ITEM(seq, i)
                if PyBytes_CheckExact(<object>item):
                    # A reference keeps the bytes alive even if another thread
                    # replaces the list item while the GIL is released.
                    Py_INCREF(<object>item)
                    refs[held] = item
                    held += 1
                    ptrs[i] = <const uint8_t *>PyBytes_AS_STRING(<object>item)
                    lens[i] = PyBytes_GET_SIZE(<object>item)
                else:
                    if views == NULL:
                        views = <Py_buffer *>malloc(n * sizeof(Py_buffer))
                        if views == NULL:
                            raise MemoryError()
                    _get_buffer(<object>item, &views[nviews], "packets", i)
                    ptrs[i] = <const uint8_t *>views[nviews].buf
                    lens[i] = views[nviews].len
                    nviews += 1
            with nogil:
                r = self._count_many(ptrs, lens, n, rx)
            if r < 0:
                raise MemoryError("connstats: cannot grow the connection table")
        finally:
            for i in range(held):
                Py_DECREF(<object>refs[i])
            for i in range(nviews):
                PyBuffer_Release(&views[i])
            free(views)
            free(refs)
            free(<void *>ptrs)
            free(lens)
        return 0

    def update_tx_virtual_buffer(self, buffer, offsets, lengths):
        """Count transmitted packets buffer[offsets[i]:offsets[i]+lengths[i]]."""
        self._buffer(buffer, offsets, lengths, False)

    def update_rx_virtual_buffer(self, buffer, offsets, lengths):
        """Count received packets buffer[offsets[i]:offsets[i]+lengths[i]]."""
        self._buffer(buffer, offsets, lengths, True)

    cdef int _buffer(self, object buffer, object offsets, object lengths, bint rx) except -1:
        cdef Py_buffer view
        cdef int64_t *offs = NULL
        cdef int64_t *lns = NULL
        cdef Py_ssize_t n_off, n_len, i
        cdef const uint8_t **ptrs = NULL
        cdef const uint8_t *base
        cdef int r = 0
        _get_buffer(buffer, &view, "buffer")
        try:
            _read_index_array(offsets, "offsets", &n_off, &offs)
            _read_index_array(lengths, "lengths", &n_len, &lns)
            if n_off != n_len:
                raise ValueError(
                    f"lengths: has {n_len} items but offsets has {n_off}")
            for i in range(n_off):
                if offs[i] > view.len or lns[i] > view.len - offs[i]:
                    raise ValueError(
                        f"offsets[{i}]/lengths[{i}]: packet {offs[i]}..{offs[i] + lns[i]} "
                        f"is beyond the buffer's {view.len} bytes")
            if n_off:
                ptrs = <const uint8_t **>malloc(n_off * sizeof(uint8_t *))
                if ptrs == NULL:
                    raise MemoryError()
                base = <const uint8_t *>view.buf
                for i in range(n_off):
                    ptrs[i] = base + offs[i]
                with nogil:
                    r = self._count_many(ptrs, lns, n_off, rx)
                if r < 0:
                    raise MemoryError("connstats: cannot grow the connection table")
        finally:
            PyBuffer_Release(&view)
            free(<void *>ptrs)
            free(offs)
            free(lns)
        return 0

    # -- windows -----------------------------------------------------------

    def cut(self, generation=-1):
        """Swap out the current window and return it (None if empty).

        With generation >= 0, only cut if the open window has that generation.
        """
        cdef cs_window *w
        cdef cs_window *fresh
        cdef int64_t gen = generation
        with nogil:
            self._lock_all()
            w = self.cur
            if cs_atomic_load64(&w.nconns) == 0 or (gen >= 0 and w.generation != gen):
                w = NULL
            else:
                fresh = self._new_window()
                if fresh == NULL:
                    w = NULL
                else:
                    self.cur = fresh
                    w.end_ns = cs_now_ns()
            self._unlock_all()
        if w == NULL:
            return None
        return Window.wrap(w)

    def window_info(self):
        """(generation, start epoch seconds) of the open window, or None if empty."""
        cdef int64_t gen = 0, start = 0, count
        with nogil:
            self._lock_all()
            count = cs_atomic_load64(&self.cur.nconns)
            if count:
                gen = self.cur.generation
                start = self.cur.start_ns
            self._unlock_all()
        if count == 0:
            return None
        return (gen, start / 1e9)

    def pop_pending(self):
        """The oldest window cut by max_conns that is not handed out yet, or None."""
        cdef cs_window *w
        cs_mutex_lock(&self.locks[NSHARDS])
        w = self.qhead
        if w != NULL:
            self.qhead = w.next
            if self.qhead == NULL:
                self.qtail = NULL
            self.qlen -= 1
            self.qconns -= w.nconns
            w.next = NULL
        cs_mutex_unlock(&self.locks[NSHARDS])
        if w == NULL:
            return None
        return Window.wrap(w)

    def wait(self, timeout=None):
        """Block until notify() (True) or until timeout seconds pass (False)."""
        cdef long long micros
        cdef PyLockStatus status
        if timeout is None:
            micros = -1
        else:
            # clamp: PY_TIMEOUT_MAX is platform-dependent; callers loop anyway
            micros = <long long>(max(0.0, min(float(timeout), 2000.0)) * 1e6)
        with nogil:
            status = PyThread_acquire_lock_timed(self.sig, micros, 0)
        if status == PY_LOCK_ACQUIRED:
            cs_atomic_store_int(&self.signaled, 0)
            return True
        return False

    def notify(self):
        """Wake a thread blocked in wait()."""
        self._notify()

    def close(self):
        """Drop every later update.  Already counted windows stay."""
        with nogil:
            self._lock_all()
            cs_atomic_store_int(&self.closed, 1)
            self._unlock_all()

    @property
    def closed(self):
        return bool(cs_atomic_load_int(&self.closed))

    @property
    def connections(self):
        """Connections in the open window."""
        cdef int64_t count
        cs_mutex_lock(&self.locks[0])
        count = cs_atomic_load64(&self.cur.nconns)
        cs_mutex_unlock(&self.locks[0])
        return count

    @property
    def table_bytes(self):
        """Bytes of C memory held by the open window's table."""
        cdef Py_ssize_t total
        with nogil:
            self._lock_all()
            total = _window_table_bytes(self.cur)
            self._unlock_all()
        return total

    @property
    def pending(self):
        """Windows cut by max_conns waiting to be handed out."""
        return self.qlen

    @property
    def dropped_windows(self):
        return self.dropped_windows_

    @property
    def dropped_packets(self):
        return self.dropped_packets_

    @property
    def dropped_bytes(self):
        return self.dropped_bytes_

    def _after_fork_in_child(self):
        """Give the child fresh locks and an empty table.

        Locks inherited from the parent may be held by threads that do not
        exist in the child: they and the windows they guard are leaked on
        purpose, never unlocked or freed.
        """
        self._allocate_runtime()
        self.dropped_windows_ = 0
        self.dropped_packets_ = 0
        self.dropped_bytes_ = 0


def decode(packet):
    """Decode one IP packet as SPEC section 3 says: (proto, src, dst) AddrPorts."""
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
