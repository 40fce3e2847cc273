# cython: language_level=3, freethreading_compatible=True, embedsignature=True
# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled record scanner for pcap/pcapng buffers: ``connstats.capture._capture``.

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
KIND_PPP = 6
KIND_PPP_HDLC = 7
KIND_PPP_ETHER = 8
KIND_C_HDLC = 9
KIND_IEEE802_11 = 10
KIND_RADIOTAP = 11
KIND_NFLOG = 12
KIND_PFLOG = 13
KIND_ENC = 14
KIND_IPNET = 15
KIND_FRELAY = 16
KIND_SLIP = 17
KIND_UNSUPPORTED = 255

cdef enum:
    K_RAW = 0
    K_NULL = 1
    K_LOOP = 2
    K_ETHERNET = 3
    K_SLL = 4
    K_SLL2 = 5
    K_PPP = 6
    K_PPP_HDLC = 7
    K_PPP_ETHER = 8
    K_C_HDLC = 9
    K_IEEE802_11 = 10
    K_RADIOTAP = 11
    K_NFLOG = 12
    K_PFLOG = 13
    K_ENC = 14
    K_IPNET = 15
    K_FRELAY = 16
    K_SLIP = 17
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
    if linktype == 8:
        return K_SLIP
    if linktype == 9:
        return K_PPP
    if linktype == 50:
        return K_PPP_HDLC
    if linktype == 51:
        return K_PPP_ETHER
    if linktype == 104:
        return K_C_HDLC
    if linktype == 105:
        return K_IEEE802_11
    if linktype == 107:
        return K_FRELAY
    if linktype == 109:
        return K_ENC
    if linktype == 117:
        return K_PFLOG
    if linktype == 127:
        return K_RADIOTAP
    if linktype == 226:
        return K_IPNET
    if linktype == 239:
        return K_NFLOG
    return K_UNSUPPORTED


cdef struct Iface:
    int kind
    long linktype
    uint32_t snaplen
    uint64_t mul
    uint64_t div
    double factor
    int64_t offset
    bint announced

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


cdef inline uint32_t _le16(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[1] << 8) | p[0]

cdef inline uint32_t _host_family(const uint8_t* p) noexcept nogil:
    cdef uint32_t family = _le32(p)
    if family > 0xFFFF:
        family = _be32(p)
    return family

cdef inline bint _is_ip_family(uint32_t family) noexcept nogil:
    return family == 2 or family == 10 or family == 24 or family == 28 or family == 30

cdef inline long _ppp_ethertype(uint32_t proto) noexcept nogil:
    if proto == 0x0021:
        return 0x0800
    if proto == 0x0057:
        return 0x86DD
    if proto == 0x0281 or proto == 0x0283:
        return 0x8847
    return -1

# The helpers below return the header length and set etype[0]; -1: not IP.
cdef inline Py_ssize_t _ppp(const uint8_t* f, Py_ssize_t hdr, Py_ssize_t caplen,
                            long* etype) noexcept nogil:
    if hdr >= caplen:
        return -1
    if f[hdr] & 1:
        etype[0] = _ppp_ethertype(f[hdr])
        return hdr + 1
    if hdr + 2 > caplen:
        return -1
    etype[0] = _ppp_ethertype(_be16(f + hdr))
    return hdr + 2

cdef inline Py_ssize_t _wifi(const uint8_t* f, Py_ssize_t at, Py_ssize_t caplen, bint pad,
                             long* etype) noexcept nogil:
    cdef uint32_t fc0, fc1
    cdef Py_ssize_t length, hdr
    cdef const uint8_t* llc
    if at + 24 > caplen:
        return -1
    fc0 = f[at]
    fc1 = f[at + 1]
    if (fc0 & 0x0F) != 0x08 or fc0 & 0x40 or fc1 & 0x40:
        return -1
    length = 24
    if (fc1 & 0x03) == 0x03:
        length += 6
    if fc0 & 0x80:
        length += 2
        if fc1 & 0x80:
            length += 4
    if pad:
        length = (length + 3) & ~3
    hdr = at + length
    if hdr + 8 > caplen:
        return -1
    llc = f + hdr
    if (llc[0] != 0xAA or llc[1] != 0xAA or llc[2] != 0x03 or llc[3] != 0 or llc[4] != 0
            or (llc[5] != 0 and llc[5] != 0xF8)):
        return -1
    etype[0] = _be16(llc + 6)
    return hdr + 8

cdef inline Py_ssize_t _radiotap(const uint8_t* f, Py_ssize_t caplen, long* etype) noexcept nogil:
    cdef Py_ssize_t rlen, at
    cdef uint32_t first, word
    cdef bint pad = False
    if caplen < 8 or f[0] != 0:
        return -1
    rlen = _le16(f + 2)
    if rlen < 8 or rlen > caplen:
        return -1
    first = _le32(f + 4)
    word = first
    at = 8
    while (word >> 31) & 1:
        if at + 4 > rlen:
            return -1
        word = _le32(f + at)
        at += 4
    if first & 0x02:
        if first & 0x01:
            at = ((at + 7) & ~7) + 8
        if at < rlen:
            pad = (f[at] & 0x20) != 0
    return _wifi(f, rlen, caplen, pad, etype)

cdef inline Py_ssize_t _frelay(const uint8_t* f, Py_ssize_t caplen, long* etype) noexcept nogil:
    cdef Py_ssize_t at = 0
    cdef uint32_t nlpid
    while at < 4 and at < caplen and not (f[at] & 1):
        at += 1
    at += 1
    if at + 2 > caplen:
        return -1
    if f[at] != 0x03:
        etype[0] = _be16(f + at)
        return at + 2
    at += 1
    if f[at] == 0 and at + 1 < caplen:
        at += 1
    nlpid = f[at]
    if nlpid == 0xCC:
        etype[0] = 0x0800
        return at + 1
    if nlpid == 0x8E:
        etype[0] = 0x86DD
        return at + 1
    if nlpid == 0x80 and at + 6 <= caplen and (f[at + 1] | f[at + 2] | f[at + 3]) == 0:
        etype[0] = _be16(f + at + 4)
        return at + 6
    return -1

cdef inline Py_ssize_t _nflog(const uint8_t* f, Py_ssize_t caplen) noexcept nogil:
    cdef Py_ssize_t at = 4
    cdef uint32_t tlen
    if caplen < 4 or f[1] != 0 or (f[0] != 2 and f[0] != 10):
        return -1
    while at + 4 <= caplen:
        tlen = _le16(f + at)
        if (_le16(f + at + 2) & 0x7FFF) == 9:
            return at + 4
        if tlen < 4:
            return -1
        at += (tlen + 3) & ~3
    return -1


cdef inline Py_ssize_t _strip(int kind, const uint8_t* f, Py_ssize_t caplen) noexcept nogil:
    """Length of the link header before the IP packet; -1 for a non-IP frame."""
    cdef Py_ssize_t hdr
    cdef long etype = -1
    cdef uint32_t family, version
    cdef bint bottom
    cdef Py_ssize_t at = -1
    if kind == K_RAW:
        return 0
    if kind == K_ETHERNET:
        hdr = 14
        at = 12
    elif kind == K_SLL:
        hdr = 16
        at = 14
    elif kind == K_SLL2:
        hdr = 20
        at = 0
    elif kind == K_C_HDLC:
        hdr = 4
        at = 2
    if at >= 0:
        if caplen < hdr:
            return -1
        etype = _be16(f + at)
    elif kind == K_NULL or kind == K_LOOP:
        if caplen < 4:
            return -1
        if kind == K_LOOP:
            family = _be32(f)
        else:
            family = _host_family(f)
        return 4 if _is_ip_family(family) else -1
    elif kind == K_ENC:
        if caplen < 12:
            return -1
        return 12 if _is_ip_family(_host_family(f)) else -1
    elif kind == K_IPNET:
        if caplen < 24:
            return -1
        return 24 if f[1] == 2 or f[1] == 26 else -1
    elif kind == K_PFLOG:
        if caplen < 4:
            return -1
        hdr = (f[0] + 3) & ~3
        if hdr < 4 or hdr > caplen or not _is_ip_family(f[1]):
            return -1
        return hdr
    elif kind == K_SLIP:
        if caplen <= 16 or (f[16] >> 4 != 4 and f[16] >> 4 != 6):
            return -1
        return 16
    elif kind == K_NFLOG:
        return _nflog(f, caplen)
    elif kind == K_PPP or kind == K_PPP_HDLC:
        if caplen >= 2 and f[0] == 0xFF and f[1] == 0x03:
            hdr = _ppp(f, 2, caplen, &etype)
        elif kind == K_PPP_HDLC and caplen >= 4 and (f[0] == 0x0F or f[0] == 0x8F) and f[1] == 0:
            hdr = 4
            etype = _be16(f + 2)
        else:
            hdr = _ppp(f, 0, caplen, &etype)
    elif kind == K_PPP_ETHER:
        hdr = _ppp(f, 6, caplen, &etype)
    elif kind == K_IEEE802_11:
        hdr = _wifi(f, 0, caplen, False, &etype)
    elif kind == K_RADIOTAP:
        hdr = _radiotap(f, caplen, &etype)
    elif kind == K_FRELAY:
        hdr = _frelay(f, caplen, &etype)
    else:
        return -1
    if hdr < 0:
        return -1
    while True:
        if etype == 0x8100 or etype == 0x88A8 or etype == 0x9100:
            if hdr + 4 > caplen:
                return -1
            etype = _be16(f + hdr + 2)
            hdr += 4
        elif etype == 0x8864:
            if hdr + 8 > caplen:
                return -1
            etype = _ppp_ethertype(_be16(f + hdr + 6))
            hdr += 8
        elif etype == 0x8847 or etype == 0x8848:
            while True:
                if hdr + 4 > caplen:
                    return -1
                bottom = f[hdr + 2] & 1
                hdr += 4
                if bottom:
                    break
            if hdr >= caplen:
                return -1
            version = f[hdr] >> 4
            return hdr if version == 4 or version == 6 else -1
        else:
            break
    if etype == 0x0800 or etype == 0x86DD:
        return hdr
    return -1


include "core/decap.pxi"


cdef enum:
    EPB_INBOUND = 1
    EPB_OUTBOUND = 2

cdef inline int _epb_direction(const uint8_t* b, Py_ssize_t opt, Py_ssize_t end,
                               bint big) noexcept nogil:
    """The direction epb_flags records, or 0 (see the twin's epb_direction)."""
    cdef uint32_t code, length, flags
    cdef int direction = 0
    while opt + 4 <= end:
        code = _be16(b + opt) if big else _le16(b + opt)
        length = _be16(b + opt + 2) if big else _le16(b + opt + 2)
        if code == 0 or opt + 4 + <Py_ssize_t>length > end:
            break
        if code == 2 and length == 4:
            flags = _rd32(b + opt + 4, big) & 3
            if flags == EPB_INBOUND or flags == EPB_OUTBOUND:
                direction = <int>flags
        opt += 4 + ((length + 3) & ~3)
    return direction


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
    # each packet's capture time (ns), for the cores that keep times
    cdef readonly object tx_times
    cdef readonly object rx_times
    cdef int64_t[::1] _txt
    cdef int64_t[::1] _rxt
    cdef int64_t _ts
    cdef uint32_t[::1] _txo
    cdef uint32_t[::1] _txl
    cdef uint32_t[::1] _rxo
    cdef uint32_t[::1] _rxl
    cdef readonly Py_ssize_t n_tx
    cdef readonly Py_ssize_t n_rx
    # Tunnels (set_decap): innermost packets (virtual) and outer ones
    # (physical), with the VNI of their tunnel (-1: none).
    cdef readonly object vtx_offsets, vtx_lengths, vtx_vnis, vtx_times
    cdef readonly object vrx_offsets, vrx_lengths, vrx_vnis, vrx_times
    cdef readonly object ptx_offsets, ptx_lengths, ptx_vnis, ptx_times
    cdef readonly object prx_offsets, prx_lengths, prx_vnis, prx_times
    cdef uint32_t[::1] _vtxo, _vtxl, _vrxo, _vrxl, _ptxo, _ptxl, _prxo, _prxl
    cdef int64_t[::1] _vtxv, _vrxv, _ptxv, _prxv, _vtxt, _vrxt, _ptxt, _prxt
    cdef readonly Py_ssize_t n_vtx
    cdef readonly Py_ssize_t n_vrx
    cdef readonly Py_ssize_t n_ptx
    cdef readonly Py_ssize_t n_prx
    cdef readonly Py_ssize_t n_packets
    cdef readonly Py_ssize_t tunnels
    cdef readonly Py_ssize_t bad_tunnels
    cdef int _decap
    cdef readonly Py_ssize_t skipped
    cdef readonly Py_ssize_t truncated
    cdef readonly object zero_total_offsets
    cdef readonly object zero_total_lengths
    cdef uint32_t[::1] _zto
    cdef uint32_t[::1] _ztl
    cdef readonly Py_ssize_t n_zero_total
    cdef readonly Py_ssize_t unsupported
    cdef readonly Py_ssize_t pos
    cdef readonly int64_t first_ns
    cdef readonly int64_t last_ns
    cdef readonly int64_t next_ns
    cdef readonly int64_t min_ns
    cdef readonly int64_t max_ns
    cdef readonly long error_linktype
    cdef int _mode
    cdef bint _big
    cdef int64_t _frac_mul
    cdef int _kind
    cdef long _linktype
    cdef uint32_t _max_caplen
    cdef Py_ssize_t _buflen
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
        self.zero_total_offsets = array("I", bytes(4 * capacity))
        self.zero_total_lengths = array("I", bytes(4 * capacity))
        self._zto = self.zero_total_offsets
        self._ztl = self.zero_total_lengths
        self._txo = self.tx_offsets
        self._txl = self.tx_lengths
        self._rxo = self.rx_offsets
        self._rxl = self.rx_lengths
        self.tx_times = array("q", bytes(8 * capacity))
        self.rx_times = array("q", bytes(8 * capacity))
        self._txt = self.tx_times
        self._rxt = self.rx_times
        self._mode = MODE_NONE
        self._frac_mul = 1000
        self._kind = K_UNSUPPORTED
        empty = array("I")
        empty_vnis = array("q")
        self.vtx_offsets = self.vtx_lengths = self.vrx_offsets = self.vrx_lengths = empty
        self.ptx_offsets = self.ptx_lengths = self.prx_offsets = self.prx_lengths = empty
        self.vtx_vnis = self.vrx_vnis = self.ptx_vnis = self.prx_vnis = empty_vnis
        self.vtx_times = self.vrx_times = self.ptx_times = self.prx_times = empty_vnis

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
                it.announced = False
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

    def set_decap(self, int mask):
        """Decapsulate the tunnels of ``mask`` (see ``_scan_py.Scanner.set_decap``)."""
        if not 0 <= mask <= DC_ALL:
            raise ValueError(f"mask: {mask} is not a set of tunnel kinds")
        cdef Py_ssize_t n = self.capacity
        if mask and len(self.vtx_offsets) == 0:
            zeros = bytes(4 * n)
            wide = bytes(8 * n)
            arrays = [array("I", zeros) for _ in range(8)]
            vnis = [array("q", wide) for _ in range(4)]
            times = [array("q", wide) for _ in range(4)]
            # an inner and an outer packet may both have an IPv4 total of 0
            zero_totals = [array("I", zeros + zeros) for _ in range(2)]
        with self._lock:
            if mask and len(self.vtx_offsets) == 0:
                # Set once, under the lock (which every scan holds): no scan
                # is left with a freed array.  The zero-total outputs are
                # replaced by ones twice as long.
                (self.vtx_offsets, self.vtx_lengths, self.vrx_offsets, self.vrx_lengths,
                 self.ptx_offsets, self.ptx_lengths, self.prx_offsets, self.prx_lengths) = arrays
                self.vtx_vnis, self.vrx_vnis, self.ptx_vnis, self.prx_vnis = vnis
                self.vtx_times, self.vrx_times, self.ptx_times, self.prx_times = times
                self.zero_total_offsets, self.zero_total_lengths = zero_totals
                self._zto = self.zero_total_offsets
                self._ztl = self.zero_total_lengths
                self._vtxt = self.vtx_times
                self._vrxt = self.vrx_times
                self._ptxt = self.ptx_times
                self._prxt = self.prx_times
                self._vtxo = self.vtx_offsets
                self._vtxl = self.vtx_lengths
                self._vrxo = self.vrx_offsets
                self._vrxl = self.vrx_lengths
                self._ptxo = self.ptx_offsets
                self._ptxl = self.ptx_lengths
                self._prxo = self.prx_offsets
                self._prxl = self.prx_lengths
                self._vtxv = self.vtx_vnis
                self._vrxv = self.vrx_vnis
                self._ptxv = self.ptx_vnis
                self._prxv = self.prx_vnis
            self._decap = mask

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
                self._reset_tunnels()
                self.skipped = 0
                self.truncated = 0
                self.n_zero_total = 0
                self.unsupported = 0
                self._err = E_NONE
                self.pos = pos
            return C_NEED_MORE
        with nogil:
            with self._lock:
                # Reset under the lock: a scanner shared between threads must
                # never see another scan's counters (they index its arrays).
                self.n_tx = 0
                self.n_rx = 0
                self._reset_tunnels()
                self.skipped = 0
                self.truncated = 0
                self.n_zero_total = 0
                self.unsupported = 0
                self._buflen = view.shape[0]
                self._err = E_NONE
                if self._mode == MODE_PCAP:
                    status = self._scan_pcap(base, pos, end, has_stop, stop_ns, limit)
                else:
                    status = self._scan_pcapng(base, pos, end, has_stop, stop_ns, limit)
        return status

    cdef inline void _reset_tunnels(self) noexcept nogil:
        self.n_vtx = 0
        self.n_vrx = 0
        self.n_ptx = 0
        self.n_prx = 0
        self.n_packets = 0
        self.tunnels = 0
        self.bad_tunnels = 0

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

    cdef inline Py_ssize_t _ip_length(self, const uint8_t* p, Py_ssize_t ip,
                                      Py_ssize_t caplen, Py_ssize_t hdr,
                                      Py_ssize_t wirelen) noexcept nogil:
        """The length to count of the IP packet p (see the twin's _emit)."""
        cdef Py_ssize_t length = caplen - hdr
        cdef int version = p[0] >> 4 if length > 0 else 0
        cdef uint32_t total
        cdef bint cut = caplen < wirelen
        if version == 4 and length >= 20:
            total = _be16(p + 2)
            if 20 <= total and total < length:
                length = total
            elif cut and total > length:
                length = self._cut(p, ip, length, total, wirelen - hdr)
            elif total == 0:
                self._zto[self.n_zero_total] = <uint32_t>ip
                self._ztl[self.n_zero_total] = <uint32_t>length
                self.n_zero_total += 1
        elif version == 6 and length >= 40:
            total = _be16(p + 4)
            if total and 40 + total < length:
                length = 40 + total
            elif cut and total and 40 + total > length:
                length = self._cut(p, ip, length, 40 + total, wirelen - hdr)
        elif cut:
            self.truncated += 1
        self.n_packets += 1
        return length

    cdef inline void _emit_plain(self, const uint8_t* p, Py_ssize_t ip,
                                 Py_ssize_t length, int direction) noexcept nogil:
        if self._is_rx(p, length, direction):
            self._rxo[self.n_rx] = <uint32_t>ip
            self._rxl[self.n_rx] = <uint32_t>length
            self._rxt[self.n_rx] = self._ts
            self.n_rx += 1
        else:
            self._txo[self.n_tx] = <uint32_t>ip
            self._txl[self.n_tx] = <uint32_t>length
            self._txt[self.n_tx] = self._ts
            self.n_tx += 1

    cdef inline void _emit(self, const uint8_t* base, Py_ssize_t off, Py_ssize_t caplen,
                           Py_ssize_t hdr, Py_ssize_t wirelen, int direction) noexcept nogil:
        cdef Py_ssize_t ip = off + hdr
        cdef Py_ssize_t length = self._ip_length(base + ip, ip, caplen, hdr, wirelen)
        self._emit_plain(base + ip, ip, length, direction)

    cdef inline void _emit_decap(self, const uint8_t* base, Py_ssize_t off, Py_ssize_t caplen,
                                 Py_ssize_t hdr, Py_ssize_t wirelen,
                                 int direction) noexcept nogil:
        """_emit when decapsulating: kept apart so that _emit stays as small as
        it was (it is inlined into the loops)."""
        cdef Py_ssize_t ip = off + hdr
        cdef const uint8_t* p = base + ip
        cdef Py_ssize_t length = self._ip_length(p, ip, caplen, hdr, wirelen)
        # the quick test keeps the walk off most packets
        if _dc_candidate(p, caplen - hdr if caplen - hdr < length else length):
            if self._emit_tunnel(base, ip, caplen - hdr, length, direction):
                return
        self._emit_plain(p, ip, length, direction)

    cdef bint _emit_tunnel(self, const uint8_t* base, Py_ssize_t ip, Py_ssize_t avail,
                           Py_ssize_t length, int direction) noexcept nogil:
        """Emit a tunnel packet's inner and outer packets; False if it is none."""
        cdef DcResult d = _dc_walk(base, ip, avail, length, self._decap)
        cdef const uint8_t* q
        if d.found == DC_BAD:
            self.bad_tunnels += 1
        if d.found != DC_INNER and d.found != DC_NO_IP:
            return False
        self.tunnels += 1
        if d.found == DC_INNER:
            q = base + d.start
            if q[0] >> 4 == 4 and (q[2] | q[3]) == 0:
                # an inner segmentation-offload packet: as the outer ones
                self._zto[self.n_zero_total] = <uint32_t>d.start
                self._ztl[self.n_zero_total] = <uint32_t>d.length
                self.n_zero_total += 1
            if self._is_rx(q, d.length, direction):
                self._vrxo[self.n_vrx] = <uint32_t>d.start
                self._vrxl[self.n_vrx] = <uint32_t>d.length
                self._vrxv[self.n_vrx] = d.inner_vni
                self._vrxt[self.n_vrx] = self._ts
                self.n_vrx += 1
            else:
                self._vtxo[self.n_vtx] = <uint32_t>d.start
                self._vtxl[self.n_vtx] = <uint32_t>d.length
                self._vtxv[self.n_vtx] = d.inner_vni
                self._vtxt[self.n_vtx] = self._ts
                self.n_vtx += 1
        if self._is_rx(base + ip, length, direction):
            self._prxo[self.n_prx] = <uint32_t>ip
            self._prxl[self.n_prx] = <uint32_t>length
            self._prxv[self.n_prx] = d.outer_vni
            self._prxt[self.n_prx] = self._ts
            self.n_prx += 1
        else:
            self._ptxo[self.n_ptx] = <uint32_t>ip
            self._ptxl[self.n_ptx] = <uint32_t>length
            self._ptxv[self.n_ptx] = d.outer_vni
            self._ptxt[self.n_ptx] = self._ts
            self.n_ptx += 1
        return True

    cdef inline bint _is_rx(self, const uint8_t* p, Py_ssize_t length,
                            int direction) noexcept nogil:
        """Is the IP packet p[0:length] received: by its record's direction
        (pcapng epb_flags) when known, else by its destination (``--local``)?"""
        cdef int version
        cdef uint32_t dst4
        cdef uint64_t hi, lo
        cdef Py_ssize_t i
        if direction:
            return direction == EPB_INBOUND
        version = p[0] >> 4 if length > 0 else 0
        if version == 4 and self._n4 and length >= 20:
            dst4 = _be32(p + 16)
            for i in range(self._n4):
                if (dst4 & self._nets4[i].mask) == self._nets4[i].net:
                    return True
        elif version == 6 and self._n6 and length >= 40:
            hi = _be64(p + 24)
            lo = _be64(p + 32)
            for i in range(self._n6):
                if (hi & self._nets6[i].mhi) == self._nets6[i].hi and (lo & self._nets6[i].mlo) == self._nets6[i].lo:
                    return True
        return False

    cdef inline Py_ssize_t _cut(self, const uint8_t* p, Py_ssize_t ip, Py_ssize_t captured,
                                Py_ssize_t total, Py_ssize_t wire) noexcept nogil:
        """The length to emit for an IP packet cut by the snap length (see the twin)."""
        cdef int proto
        cdef Py_ssize_t sub, need, header
        self.truncated += 1
        if total > wire or ip + total > self._buflen:
            return captured
        if p[0] >> 4 == 4:
            proto = p[9]
            sub = (p[0] & 0x0F) * 4
            need = 20
            if sub > total or (_be16(p + 6) & 0x1FFF):
                proto = -1
        else:
            proto = p[6]
            sub = 40
            need = 40
            if proto == 44:
                if total < 48:
                    proto = -1
                else:
                    need = 48
                    proto = p[40]
                    sub = 48
                    if _be16(p + 42) >> 3:
                        proto = -1
        if proto == 6:
            header = 20
        elif proto == 17:
            header = 8
        elif proto == 132:
            header = 12
        else:
            header = 0
        if header and total - sub >= header and sub + 4 > need:
            need = sub + 4
        return total if captured >= need else captured

    cdef inline void _time(self, int64_t ts) noexcept nogil:
        self._ts = ts
        if self.n_packets == 0:
            self.first_ns = ts
            self.min_ns = ts
            self.max_ns = ts
        elif ts < self.min_ns:
            self.min_ns = ts
        elif ts > self.max_ns:
            self.max_ns = ts
        self.last_ns = ts

    cdef inline bint _skip_unsupported(self, Iface* it, Py_ssize_t pos) noexcept nogil:
        self.unsupported += 1
        if it.announced:
            return False
        it.announced = True
        self.pos = pos
        self.error_linktype = it.linktype
        return True

    cdef int _scan_pcap(self, const uint8_t* b, Py_ssize_t pos, Py_ssize_t end, bint has_stop,
                        int64_t stop_ns, Py_ssize_t limit) noexcept nogil:
        cdef bint big = self._big
        cdef int kind = self._kind
        cdef int decap = self._decap
        cdef int64_t frac_mul = self._frac_mul
        cdef uint32_t max_caplen = self._max_caplen
        cdef uint32_t sec, frac, caplen, orig
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
            orig = _rd32(b + pos + 12, big)
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
            self._time(ts)
            if decap:
                self._emit_decap(b, pos + 16, caplen, hdr, orig, 0)
            else:
                self._emit(b, pos + 16, caplen, hdr, orig, 0)
            pos += 16 + caplen
            if self.n_packets >= limit:
                self.pos = pos
                return C_FULL

    cdef int _scan_pcapng(self, const uint8_t* b, Py_ssize_t pos, Py_ssize_t end, bint has_stop,
                          int64_t stop_ns, Py_ssize_t limit) noexcept nogil:
        cdef bint big = self._big
        cdef int decap = self._decap
        cdef uint32_t btype, blen, iface, caplen, snap, orig
        cdef uint64_t raw
        cdef double value
        cdef int64_t ts
        cdef Py_ssize_t hdr, data
        cdef Iface* it
        cdef int direction
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
                orig = _rd32(b + pos + 24, big)
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
                    pos += blen
                    if self._skip_unsupported(it, pos):
                        return C_UNSUPPORTED
                    continue
                data = pos + 28
                hdr = _strip(it.kind, b + data, caplen)
                if hdr < 0:
                    self.skipped += 1
                    pos += blen
                    continue
                direction = _epb_direction(b, pos + 28 + ((caplen + 3) & ~3), pos + blen - 4, big)
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
                    pos += blen
                    if self._skip_unsupported(it, pos):
                        return C_UNSUPPORTED
                    continue
                caplen = _rd32(b + pos + 8, big)
                orig = caplen
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
                direction = 0
            else:
                pos += blen
                continue
            if has_stop and ts >= stop_ns:
                self.pos = pos
                self.next_ns = ts
                return C_STOP_TIME
            self._time(ts)
            if decap:
                self._emit_decap(b, data, caplen, hdr, orig, direction)
            else:
                self._emit(b, data, caplen, hdr, orig, direction)
            pos += blen
            if self.n_packets >= limit:
                self.pos = pos
                return C_FULL
