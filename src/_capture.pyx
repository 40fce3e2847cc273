# cython: language_level=3, freethreading_compatible=True, embedsignature=True
# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled record scanner for pcap/pcapng buffers: ``connstats._capture``.

The C twin of ``connstats/capture/_scan_py.py``, which is the reference and
documents the behaviour; every rule here mirrors a line there, and
``tests/test_capture_scan.py`` runs both on the same inputs.  The loop runs
without the GIL and creates no Python object per packet: it only writes the
offset and length of each IP packet into ``array('I')`` outputs.

A scanner belongs to one reader, but nothing stops two threads from sharing
one (and the GIL is released while scanning, or absent on free-threaded
builds): a ``cython.pymutex`` serializes scans and configuration, so that
such misuse can give odd results but never write outside the arrays.  No
Python object field changes after construction: the error is kept as a code
and two numbers (C fields written under the lock) and its text is made on
read, because a str field assigned by two threads at once (each dropping the
same old reference) is a double free on free-threaded builds.
"""

from array import array

cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t

# Status codes: the same numbers as connstats/capture/_consts.py.
ST_FULL = 0
ST_NEED_MORE = 1
ST_STOP_TIME = 2
ST_BLOCK = 3
ST_CORRUPT = 4
ST_UNSUPPORTED = 5

cdef enum:
    C_FULL = 0
    C_NEED_MORE = 1
    C_STOP_TIME = 2
    C_BLOCK = 3
    C_CORRUPT = 4
    C_UNSUPPORTED = 5

# Link kinds: the same numbers as connstats/capture/linktypes.py.
KIND_RAW = 0
KIND_NULL = 1
KIND_LOOP = 2
KIND_ETHERNET = 3
KIND_SLL = 4
KIND_SLL2 = 5
KIND_UNSUPPORTED = 255

cdef enum:
    K_RAW = 0
    K_NULL = 1
    K_LOOP = 2
    K_ETHERNET = 3
    K_SLL = 4
    K_SLL2 = 5
    K_UNSUPPORTED = 255

cdef enum:
    MODE_NONE = 0
    MODE_PCAP = 1
    MODE_PCAPNG = 2

# Error codes turned into the twin's messages after the nogil loop.
cdef enum:
    E_NONE = 0
    E_PCAP_CAPLEN = 1
    E_BLOCK_LENGTH = 2
    E_BLOCK_TRAILER = 3
    E_EPB_SHORT = 4
    E_EPB_OVERRUN = 5
    E_EPB_IFACE = 6
    E_SPB_SHORT = 7
    E_SPB_NO_IFACE = 8

cdef uint32_t MAX_RECORD = 64 * 1024 * 1024
cdef uint32_t PCAPNG_SHB = 0x0A0D0D0A
cdef uint32_t PCAPNG_IDB = 0x00000001
cdef uint32_t PCAPNG_SPB = 0x00000003
cdef uint32_t PCAPNG_EPB = 0x00000006
cdef int64_t INT64_MAX_ = 0x7FFFFFFFFFFFFFFF

# The lazy kind_of() of the twin, as a plain function of the link type.
cdef int _kind_of(long linktype):
    if linktype == 0:
        return K_NULL
    if linktype == 1:
        return K_ETHERNET
    if linktype == 12 or linktype == 14 or linktype == 101 or linktype == 228 or linktype == 229:
        return K_RAW
    if linktype == 108:
        return K_LOOP
    if linktype == 113:
        return K_SLL
    if linktype == 276:
        return K_SLL2
    return K_UNSUPPORTED


cdef struct Iface:
    int kind
    long linktype
    uint32_t snaplen
    uint64_t mul
    uint64_t div
    double factor
    int64_t offset

cdef struct Net4:
    uint32_t net
    uint32_t mask

cdef struct Net6:
    uint64_t hi
    uint64_t lo
    uint64_t mhi
    uint64_t mlo


cdef inline uint32_t _be16(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 8) | p[1]

cdef inline uint32_t _be32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]

cdef inline uint32_t _le32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[3] << 24) | (<uint32_t>p[2] << 16) | (<uint32_t>p[1] << 8) | p[0]

cdef inline uint32_t _rd32(const uint8_t* p, bint big) noexcept nogil:
    return _be32(p) if big else _le32(p)

cdef inline uint64_t _be64(const uint8_t* p) noexcept nogil:
    return (<uint64_t>_be32(p) << 32) | _be32(p + 4)


cdef inline Py_ssize_t _strip(int kind, const uint8_t* f, Py_ssize_t caplen) noexcept nogil:
    """Length of the link header before the IP packet; -1 for a non-IP frame."""
    cdef Py_ssize_t hdr
    cdef uint32_t etype, family
    if kind == K_RAW:
        return 0
    if kind == K_ETHERNET:
        if caplen < 14:
            return -1
        hdr = 14
        etype = _be16(f + 12)
    elif kind == K_SLL:
        if caplen < 16:
            return -1
        hdr = 16
        etype = _be16(f + 14)
    elif kind == K_SLL2:
        if caplen < 20:
            return -1
        hdr = 20
        etype = _be16(f)
    elif kind == K_NULL or kind == K_LOOP:
        if caplen < 4:
            return -1
        if kind == K_LOOP:
            family = _be32(f)
        else:
            family = _le32(f)
            if family > 0xFFFF:
                family = _be32(f)
        if family == 2 or family == 10 or family == 24 or family == 28 or family == 30:
            return 4
        return -1
    else:
        return -1
    while etype == 0x8100 or etype == 0x88A8 or etype == 0x9100:
        if hdr + 4 > caplen:
            return -1
        etype = _be16(f + hdr + 2)
        hdr += 4
    if etype == 0x0800 or etype == 0x86DD:
        return hdr
    return -1


cdef str _message(int e, uint64_t a, uint64_t b):
    """The twin's error text for an error code and its two numbers."""
    if e == E_PCAP_CAPLEN:
        return f"record length {a} exceeds the limit {b}"
    if e == E_BLOCK_LENGTH:
        return f"block of type 0x{a:08x} has a bad length {b}"
    if e == E_BLOCK_TRAILER:
        return f"block of type 0x{a:08x}: trailing length does not match {b}"
    if e == E_EPB_SHORT:
        return f"enhanced packet block too short ({b} bytes)"
    if e == E_EPB_OVERRUN:
        return f"packet length {a} overruns its block ({b} bytes)"
    if e == E_EPB_IFACE:
        return f"packet on undefined interface {a}"
    if e == E_SPB_SHORT:
        return f"simple packet block too short ({b} bytes)"
    if e == E_SPB_NO_IFACE:
        return "simple packet block before any interface description"
    return "unknown error"


cdef class Scanner:
    """Walk capture records into offset/length arrays (see ``_scan_py.Scanner``)."""

    cdef readonly Py_ssize_t capacity
    cdef readonly object tx_offsets
    cdef readonly object tx_lengths
    cdef readonly object rx_offsets
    cdef readonly object rx_lengths
    cdef uint32_t[::1] _txo
    cdef uint32_t[::1] _txl
    cdef uint32_t[::1] _rxo
    cdef uint32_t[::1] _rxl
    cdef readonly Py_ssize_t n_tx
    cdef readonly Py_ssize_t n_rx
    cdef readonly Py_ssize_t skipped
    cdef readonly Py_ssize_t pos
    cdef readonly int64_t first_ns
    cdef readonly int64_t last_ns
    cdef readonly int64_t next_ns
    cdef readonly long error_linktype
    cdef int _mode
    cdef bint _big
    cdef int64_t _frac_mul
    cdef int _kind
    cdef long _linktype
    cdef uint32_t _max_caplen
    cdef Iface* _ifaces
    cdef Py_ssize_t _n_ifaces
    cdef Py_ssize_t _cap_ifaces
    cdef Net4* _nets4
    cdef Py_ssize_t _n4
    cdef Net6* _nets6
    cdef Py_ssize_t _n6
    # The last scan's error (``error`` is made from them): filled without the
    # GIL, read and written only under the lock.
    cdef int _err
    cdef uint64_t _ea
    cdef uint64_t _eb
    cdef cython.pymutex _lock

    def __cinit__(self, Py_ssize_t capacity=65536):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.tx_offsets = array("I", bytes(4 * capacity))
        self.tx_lengths = array("I", bytes(4 * capacity))
        self.rx_offsets = array("I", bytes(4 * capacity))
        self.rx_lengths = array("I", bytes(4 * capacity))
        self._txo = self.tx_offsets
        self._txl = self.tx_lengths
        self._rxo = self.rx_offsets
        self._rxl = self.rx_lengths
        self._mode = MODE_NONE
        self._frac_mul = 1000
        self._kind = K_UNSUPPORTED

    def __dealloc__(self):
        PyMem_Free(self._ifaces)
        PyMem_Free(self._nets4)
        PyMem_Free(self._nets6)

    # -- configuration -------------------------------------------------------
    def set_pcap(self, bint big_endian, bint nanosecond, long linktype, uint32_t max_caplen):
        with self._lock:
            self._mode = MODE_PCAP
            self._big = big_endian
            self._frac_mul = 1 if nanosecond else 1000
            self._kind = _kind_of(linktype)
            self._linktype = linktype
            self._max_caplen = max_caplen

    def set_pcapng_section(self, bint big_endian):
        with self._lock:
            self._mode = MODE_PCAPNG
            self._big = big_endian
            self._n_ifaces = 0

    def add_interface(self, long linktype, uint32_t snaplen, uint64_t ts_mul, uint64_t ts_div,
                      double ts_factor, int64_t ts_offset_ns):
        if ts_div == 0:
            raise ValueError("ts_div must not be 0")
        cdef Iface* grown
        cdef Iface* it
        cdef bint failed = False
        with self._lock:
            if self._n_ifaces == self._cap_ifaces:
                grown = <Iface*>PyMem_Realloc(self._ifaces, (2 * self._cap_ifaces + 4) * sizeof(Iface))
                if grown == NULL:
                    failed = True
                else:
                    self._ifaces = grown
                    self._cap_ifaces = 2 * self._cap_ifaces + 4
            if not failed:
                it = &self._ifaces[self._n_ifaces]
                it.kind = _kind_of(linktype)
                it.linktype = linktype
                it.snaplen = snaplen
                it.mul = ts_mul
                it.div = ts_div
                it.factor = ts_factor
                it.offset = ts_offset_ns
                self._n_ifaces += 1
        if failed:
            raise MemoryError()

    def set_local(self, nets4, nets6):
        """Networks whose destination makes a packet rx: (network, mask) ints."""
        nets4 = list(nets4)
        nets6 = list(nets6)
        cdef Net4* n4 = <Net4*>PyMem_Realloc(NULL, (len(nets4) + 1) * sizeof(Net4))
        cdef Net6* n6 = <Net6*>PyMem_Realloc(NULL, (len(nets6) + 1) * sizeof(Net6))
        if n4 == NULL or n6 == NULL:
            PyMem_Free(n4)
            PyMem_Free(n6)
            raise MemoryError()
        cdef Py_ssize_t i
        m64 = (1 << 64) - 1
        for i, (net, mask) in enumerate(nets4):
            n4[i].mask = mask
            n4[i].net = net & mask
        for i, (net, mask) in enumerate(nets6):
            net = net & mask
            n6[i].hi = net >> 64
            n6[i].lo = net & m64
            n6[i].mhi = mask >> 64
            n6[i].mlo = mask & m64
        cdef Py_ssize_t c4 = len(nets4)
        cdef Py_ssize_t c6 = len(nets6)
        with self._lock:
            n4, self._nets4 = self._nets4, n4
            n6, self._nets6 = self._nets6, n6
            self._n4 = c4
            self._n6 = c6
        PyMem_Free(n4)
        PyMem_Free(n6)

    # -- scanning --------------------------------------------------------------
    def scan(self, buf, Py_ssize_t pos, Py_ssize_t end, bint has_stop, int64_t stop_ns,
             Py_ssize_t max_packets):
        """Scan ``buf[pos:end]``; return a status (``ST_*``)."""
        cdef const uint8_t[::1] view = buf
        cdef Py_ssize_t limit = self.capacity
        cdef int status
        if end > view.shape[0] or pos < 0 or pos > end:
            self._clear_error()
            raise ValueError("scan: pos/end out of the buffer")
        if 0 < max_packets < limit:
            limit = max_packets
        if self._mode == MODE_NONE:
            self._clear_error()
            raise ValueError("scan: the scanner was not configured")
        cdef const uint8_t* base = &view[0] if view.shape[0] else NULL
        if base == NULL:
            with self._lock:
                self.n_tx = 0
                self.n_rx = 0
                self.skipped = 0
                self._err = E_NONE
                self.pos = pos
            return C_NEED_MORE
        with nogil:
            with self._lock:
                # Reset under the lock: a scanner shared between threads must
                # never see another scan's counters (they index its arrays).
                self.n_tx = 0
                self.n_rx = 0
                self.skipped = 0
                self._err = E_NONE
                if self._mode == MODE_PCAP:
                    status = self._scan_pcap(base, pos, end, has_stop, stop_ns, limit)
                else:
                    status = self._scan_pcapng(base, pos, end, has_stop, stop_ns, limit)
        return status

    cdef void _clear_error(self) noexcept:
        with self._lock:
            self._err = E_NONE

    @property
    def error(self):
        """The reason of the last ``ST_CORRUPT`` scan; "" after any other."""
        cdef int err
        cdef uint64_t ea, eb
        with self._lock:
            err, ea, eb = self._err, self._ea, self._eb
        return _message(err, ea, eb) if err != E_NONE else ""

    cdef inline void _emit(self, const uint8_t* base, Py_ssize_t off, Py_ssize_t caplen,
                           Py_ssize_t hdr) noexcept nogil:
        cdef Py_ssize_t ip = off + hdr
        cdef Py_ssize_t length = caplen - hdr
        cdef const uint8_t* p = base + ip
        cdef int version = p[0] >> 4 if length > 0 else 0
        cdef uint32_t total, dst4
        cdef uint64_t hi, lo
        cdef bint rx = False
        cdef Py_ssize_t i
        if version == 4 and length >= 20:
            total = _be16(p + 2)
            if 20 <= total and total < length:
                length = total
        elif version == 6 and length >= 40:
            total = _be16(p + 4)
            if total and 40 + total < length:
                length = 40 + total
        if version == 4 and self._n4 and length >= 20:
            dst4 = _be32(p + 16)
            for i in range(self._n4):
                if (dst4 & self._nets4[i].mask) == self._nets4[i].net:
                    rx = True
                    break
        elif version == 6 and self._n6 and length >= 40:
            hi = _be64(p + 24)
            lo = _be64(p + 32)
            for i in range(self._n6):
                if (hi & self._nets6[i].mhi) == self._nets6[i].hi and (lo & self._nets6[i].mlo) == self._nets6[i].lo:
                    rx = True
                    break
        if rx:
            self._rxo[self.n_rx] = <uint32_t>ip
            self._rxl[self.n_rx] = <uint32_t>length
            self.n_rx += 1
        else:
            self._txo[self.n_tx] = <uint32_t>ip
            self._txl[self.n_tx] = <uint32_t>length
            self.n_tx += 1

    cdef int _scan_pcap(self, const uint8_t* b, Py_ssize_t pos, Py_ssize_t end, bint has_stop,
                        int64_t stop_ns, Py_ssize_t limit) noexcept nogil:
        cdef bint big = self._big
        cdef int kind = self._kind
        cdef int64_t frac_mul = self._frac_mul
        cdef uint32_t max_caplen = self._max_caplen
        cdef uint32_t sec, frac, caplen
        cdef Py_ssize_t hdr
        cdef int64_t ts
        if kind == K_UNSUPPORTED:
            self.pos = pos
            self.error_linktype = self._linktype
            return C_UNSUPPORTED
        while True:
            if pos + 16 > end:
                self.pos = pos
                return C_NEED_MORE
            sec = _rd32(b + pos, big)
            frac = _rd32(b + pos + 4, big)
            caplen = _rd32(b + pos + 8, big)
            if caplen > max_caplen:
                self.pos = pos
                self._err = E_PCAP_CAPLEN
                self._ea = caplen
                self._eb = max_caplen
                return C_CORRUPT
            if pos + 16 + <Py_ssize_t>caplen > end:
                self.pos = pos
                return C_NEED_MORE
            hdr = _strip(kind, b + pos + 16, caplen)
            if hdr < 0:
                self.skipped += 1
                pos += 16 + caplen
                continue
            ts = <int64_t>sec * 1000000000 + <int64_t>frac * frac_mul
            if has_stop and ts >= stop_ns:
                self.pos = pos
                self.next_ns = ts
                return C_STOP_TIME
            if self.n_tx + self.n_rx == 0:
                self.first_ns = ts
            self.last_ns = ts
            self._emit(b, pos + 16, caplen, hdr)
            pos += 16 + caplen
            if self.n_tx + self.n_rx >= limit:
                self.pos = pos
                return C_FULL

    cdef int _scan_pcapng(self, const uint8_t* b, Py_ssize_t pos, Py_ssize_t end, bint has_stop,
                          int64_t stop_ns, Py_ssize_t limit) noexcept nogil:
        cdef bint big = self._big
        cdef uint32_t btype, blen, iface, caplen, snap
        cdef uint64_t raw
        cdef double value
        cdef int64_t ts
        cdef Py_ssize_t hdr, data
        cdef Iface* it
        while True:
            if pos + 8 > end:
                self.pos = pos
                return C_NEED_MORE
            btype = _rd32(b + pos, big)
            if btype == PCAPNG_SHB:
                self.pos = pos
                return C_BLOCK
            blen = _rd32(b + pos + 4, big)
            if blen < 12 or blen % 4 or blen > MAX_RECORD:
                self.pos = pos
                self._err = E_BLOCK_LENGTH
                self._ea = btype
                self._eb = blen
                return C_CORRUPT
            if pos + <Py_ssize_t>blen > end:
                self.pos = pos
                return C_NEED_MORE
            if _rd32(b + pos + blen - 4, big) != blen:
                self.pos = pos
                self._err = E_BLOCK_TRAILER
                self._ea = btype
                self._eb = blen
                return C_CORRUPT
            if btype == PCAPNG_IDB:
                self.pos = pos
                return C_BLOCK
            if btype == PCAPNG_EPB:
                if blen < 32:
                    self.pos = pos
                    self._err = E_EPB_SHORT
                    self._eb = blen
                    return C_CORRUPT
                iface = _rd32(b + pos + 8, big)
                caplen = _rd32(b + pos + 20, big)
                if caplen > blen - 32:
                    self.pos = pos
                    self._err = E_EPB_OVERRUN
                    self._ea = caplen
                    self._eb = blen
                    return C_CORRUPT
                if iface >= self._n_ifaces:
                    self.pos = pos
                    self._err = E_EPB_IFACE
                    self._ea = iface
                    return C_CORRUPT
                it = &self._ifaces[iface]
                if it.kind == K_UNSUPPORTED:
                    self.pos = pos
                    self.error_linktype = it.linktype
                    return C_UNSUPPORTED
                data = pos + 28
                hdr = _strip(it.kind, b + data, caplen)
                if hdr < 0:
                    self.skipped += 1
                    pos += blen
                    continue
                raw = (<uint64_t>_rd32(b + pos + 12, big) << 32) | _rd32(b + pos + 16, big)
                if it.factor != 0.0:
                    value = <double>raw * it.factor
                    ts = INT64_MAX_ if value >= 9.2e18 else <int64_t>value
                else:
                    ts = <int64_t>((raw * it.mul) / it.div)
                ts = <int64_t>(<uint64_t>ts + <uint64_t>it.offset)
            elif btype == PCAPNG_SPB:
                if blen < 16:
                    self.pos = pos
                    self._err = E_SPB_SHORT
                    self._eb = blen
                    return C_CORRUPT
                if self._n_ifaces == 0:
                    self.pos = pos
                    self._err = E_SPB_NO_IFACE
                    return C_CORRUPT
                it = &self._ifaces[0]
                if it.kind == K_UNSUPPORTED:
                    self.pos = pos
                    self.error_linktype = it.linktype
                    return C_UNSUPPORTED
                caplen = _rd32(b + pos + 8, big)
                if caplen > blen - 16:
                    caplen = blen - 16
                snap = it.snaplen
                if snap and caplen > snap:
                    caplen = snap
                data = pos + 12
                hdr = _strip(it.kind, b + data, caplen)
                if hdr < 0:
                    self.skipped += 1
                    pos += blen
                    continue
                ts = self.last_ns
            else:
                pos += blen
                continue
            if has_stop and ts >= stop_ns:
                self.pos = pos
                self.next_ns = ts
                return C_STOP_TIME
            if self.n_tx + self.n_rx == 0:
                self.first_ns = ts
            self.last_ns = ts
            self._emit(b, data, caplen, hdr)
            pos += blen
            if self.n_tx + self.n_rx >= limit:
                self.pos = pos
                return C_FULL
