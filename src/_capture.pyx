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


# -- tunnels (the twin: connstats/capture/_decap_py.py) ------------------------

TUNNEL_VXLAN = 1
TUNNEL_GENEVE = 2
TUNNEL_GRE = 4
TUNNEL_IPIP = 8
TUNNEL_MPLS_UDP = 16
TUNNEL_ALL = 31
MAX_DEPTH = 8
MAX_EXTENSIONS = 8
DECAP_NONE = 0
DECAP_INNER = 1
DECAP_NO_IP = 2
DECAP_BAD = 3
NO_VNI = -1

cdef enum:
    T_VXLAN = 1
    T_GENEVE = 2
    T_GRE = 4
    T_IPIP = 8
    T_MPLS_UDP = 16
    T_ALL = 31
    D_MAX_DEPTH = 8
    D_MAX_EXTENSIONS = 8
    D_NONE = 0
    D_INNER = 1
    D_NO_IP = 2
    D_BAD = 3
    L_NOT = 0
    L_IP = 1
    L_NONIP = 2
    L_BAD = 3
    V_NONE = -1

cdef struct Layer:
    int what
    Py_ssize_t start
    Py_ssize_t end
    int64_t vni
    int version

cdef struct Decap:
    int found
    Py_ssize_t start
    Py_ssize_t length
    int64_t outer_vni
    int64_t inner_vni


cdef inline Layer _lay(int what, Py_ssize_t start, Py_ssize_t end, int64_t vni,
                       int version) noexcept nogil:
    cdef Layer r
    r.what = what
    r.start = start
    r.end = end
    r.vni = vni
    r.version = version
    return r

cdef inline Py_ssize_t _min(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a < b else b

cdef inline uint32_t _be24(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 16) | (<uint32_t>p[1] << 8) | p[2]


cdef inline int _ip_payload(const uint8_t* b, Py_ssize_t p, Py_ssize_t end, Py_ssize_t lim,
                            Py_ssize_t* pay, Py_ssize_t* pay_end) noexcept nogil:
    cdef int version, proto, n
    cdef Py_ssize_t hl, total, stop, q, size
    if p >= lim:
        return -1
    version = b[p] >> 4
    if version == 4:
        if p + 20 > lim:
            return -1
        hl = (b[p] & 0x0F) * 4
        total = _be16(b + p + 2)
        if total == 0:
            total = end - p
        if hl < 20 or hl > total or p + total > end or p + hl > lim:
            return -1
        if _be16(b + p + 6) & 0x3FFF:
            return -1
        pay[0] = p + hl
        pay_end[0] = p + total
        return b[p + 9]
    if version == 6:
        if p + 40 > lim:
            return -1
        total = _be16(b + p + 4)
        stop = p + 40 + total if total else end
        if stop > end:
            return -1
        proto = b[p + 6]
        q = p + 40
        n = 0
        while proto == 0 or proto == 43 or proto == 60:
            n += 1
            if n > D_MAX_EXTENSIONS or q + 8 > lim or q + 8 > stop:
                return -1
            size = (b[q + 1] + 1) * 8
            if q + size > stop:
                return -1
            proto = b[q]
            q += size
        if proto == 44:
            return -1
        pay[0] = q
        pay_end[0] = stop
        return proto
    return -1


cdef Layer _mpls_layer(const uint8_t* b, Py_ssize_t at, Py_ssize_t end, Py_ssize_t lim,
                       int64_t vni) noexcept nogil:
    cdef Py_ssize_t bound = _min(end, lim)
    cdef int bottom, version
    while True:
        if at + 4 > bound:
            return _lay(L_BAD, 0, 0, vni, 0)
        bottom = b[at + 2] & 1
        at += 4
        if bottom:
            break
    if at >= bound:
        return _lay(L_BAD, 0, 0, vni, 0)
    version = b[at] >> 4
    if version == 4 or version == 6:
        return _lay(L_IP, at, end, vni, version)
    return _lay(L_NONIP, 0, 0, vni, 0)


cdef Layer _ethertype_layer(const uint8_t* b, uint32_t etype, Py_ssize_t at, Py_ssize_t end,
                            Py_ssize_t lim, int64_t vni) noexcept nogil:
    cdef Py_ssize_t bound = _min(end, lim)
    while True:
        if etype == 0x8100 or etype == 0x88A8 or etype == 0x9100:
            if at + 4 > bound:
                return _lay(L_BAD, 0, 0, vni, 0)
            etype = _be16(b + at + 2)
            at += 4
        elif etype == 0x8909:
            if at + 8 > bound:
                return _lay(L_BAD, 0, 0, vni, 0)
            etype = _be16(b + at + 6)
            at += 8
        else:
            break
    if etype == 0x0800:
        return _lay(L_IP, at, end, vni, 4)
    if etype == 0x86DD:
        return _lay(L_IP, at, end, vni, 6)
    if etype == 0x8847 or etype == 0x8848:
        return _mpls_layer(b, at, end, lim, vni)
    return _lay(L_NONIP, 0, 0, vni, 0)


cdef inline Layer _ether_layer(const uint8_t* b, Py_ssize_t at, Py_ssize_t end, Py_ssize_t lim,
                               int64_t vni) noexcept nogil:
    if at + 14 > _min(end, lim):
        return _lay(L_BAD, 0, 0, vni, 0)
    return _ethertype_layer(b, _be16(b + at + 12), at + 14, end, lim, vni)


cdef Layer _gre_layer(const uint8_t* b, Py_ssize_t at, Py_ssize_t end,
                      Py_ssize_t lim) noexcept nogil:
    cdef Py_ssize_t bound = _min(end, lim)
    cdef uint32_t flags, ptype
    cdef Py_ssize_t hl, body
    cdef int64_t vni = V_NONE, session
    cdef bint sequence
    cdef int frame_type
    if at + 4 > bound:
        return _lay(L_BAD, 0, 0, V_NONE, 0)
    flags = _be16(b + at)
    ptype = _be16(b + at + 2)
    if flags & 0x0007:
        return _lay(L_NOT, 0, 0, V_NONE, 0)
    if flags & 0x4000:
        return _lay(L_BAD, 0, 0, V_NONE, 0)
    hl = 4
    if flags & 0x8000:
        hl += 4
    if flags & 0x2000:
        if at + hl + 4 > bound:
            return _lay(L_BAD, 0, 0, V_NONE, 0)
        vni = _be32(b + at + hl)
        hl += 4
    sequence = (flags & 0x1000) != 0
    if sequence:
        hl += 4
    body = at + hl
    if body > bound:
        return _lay(L_BAD, 0, 0, vni, 0)
    if ptype == 0x6558:
        return _ether_layer(b, body, end, lim, vni)
    if ptype == 0x88BE:
        if not sequence:
            return _ether_layer(b, body, end, lim, vni)
        if body + 8 > bound or b[body] >> 4 != 1:
            return _lay(L_BAD, 0, 0, vni, 0)
        return _ether_layer(b, body + 8, end, lim, _be16(b + body + 2) & 0x3FF)
    if ptype == 0x22EB:
        if body + 12 > bound or b[body] >> 4 != 2:
            return _lay(L_BAD, 0, 0, vni, 0)
        session = _be16(b + body + 2) & 0x3FF
        frame_type = (b[body + 10] >> 2) & 0x1F
        hl = 20 if b[body + 11] & 1 else 12
        if body + hl > bound:
            return _lay(L_BAD, 0, 0, session, 0)
        if frame_type == 0:
            return _ether_layer(b, body + hl, end, lim, session)
        if frame_type == 2:
            return _lay(L_IP, body + hl, end, session, 0)
        return _lay(L_NONIP, 0, 0, session, 0)
    if ptype == 0x8909:
        if body + 8 > bound:
            return _lay(L_BAD, 0, 0, vni, 0)
        return _ethertype_layer(b, _be16(b + body), body + 8, end, lim, vni)
    return _ethertype_layer(b, ptype, body, end, lim, vni)


cdef Layer _nsh_layer(const uint8_t* b, Py_ssize_t at, Py_ssize_t end, Py_ssize_t lim,
                      int64_t vni) noexcept nogil:
    cdef Py_ssize_t bound = _min(end, lim)
    cdef Py_ssize_t hl
    if at + 8 > bound or b[at] >> 6 != 0:
        return _lay(L_BAD, 0, 0, vni, 0)
    hl = (b[at + 1] & 0x3F) * 4
    if hl < 8 or at + hl > bound:
        return _lay(L_BAD, 0, 0, vni, 0)
    return _next_protocol(b, b[at + 3], at + hl, end, lim, vni, False)


cdef Layer _next_protocol(const uint8_t* b, int proto, Py_ssize_t at, Py_ssize_t end,
                          Py_ssize_t lim, int64_t vni, bint nsh) noexcept nogil:
    if proto == 1:
        return _lay(L_IP, at, end, vni, 4)
    if proto == 2:
        return _lay(L_IP, at, end, vni, 6)
    if proto == 3:
        return _ether_layer(b, at, end, lim, vni)
    if proto == 4 and nsh:
        return _nsh_layer(b, at, end, lim, vni)
    if proto == 5:
        return _mpls_layer(b, at, end, lim, vni)
    return _lay(L_NONIP, 0, 0, vni, 0)


cdef Layer _udp_layer(const uint8_t* b, Py_ssize_t at, Py_ssize_t end, Py_ssize_t lim,
                      int mask) noexcept nogil:
    cdef uint32_t port, size, flags
    cdef int kind
    cdef Py_ssize_t body, bound, hl
    cdef int64_t vni
    cdef uint32_t ptype
    cdef int proto
    if at + 8 > lim or at + 8 > end:
        return _lay(L_NOT, 0, 0, V_NONE, 0)
    port = _be16(b + at + 2)
    if port == 4789 or port == 8472:
        kind = T_VXLAN
    elif port == 4790:
        kind = T_VXLAN
    elif port == 6081:
        kind = T_GENEVE
    elif port == 6635:
        kind = T_MPLS_UDP
    else:
        return _lay(L_NOT, 0, 0, V_NONE, 0)
    if not mask & kind:
        return _lay(L_NOT, 0, 0, V_NONE, 0)
    size = _be16(b + at + 4)
    if size == 0:
        size = <uint32_t>(end - at)
    if size < 8 or at + size > end:
        return _lay(L_BAD, 0, 0, V_NONE, 0)
    end = at + size
    body = at + 8
    bound = _min(end, lim)
    if kind == T_MPLS_UDP:
        return _mpls_layer(b, body, end, lim, V_NONE)
    if body + 8 > bound:
        return _lay(L_BAD, 0, 0, V_NONE, 0)
    flags = b[body]
    if kind == T_GENEVE:
        if flags >> 6 != 0:
            return _lay(L_BAD, 0, 0, V_NONE, 0)
        hl = 8 + (flags & 0x3F) * 4
        vni = _be24(b + body + 4)
        if body + hl > bound:
            return _lay(L_BAD, 0, 0, vni, 0)
        ptype = _be16(b + body + 2)
        if ptype == 0x6558:
            return _ether_layer(b, body + hl, end, lim, vni)
        return _ethertype_layer(b, ptype, body + hl, end, lim, vni)
    if port == 4790:
        if (flags >> 4) & 3:
            return _lay(L_BAD, 0, 0, V_NONE, 0)
        vni = <int64_t>_be24(b + body + 4) if flags & 0x08 else V_NONE
        proto = b[body + 3] if flags & 0x04 else 3
        return _next_protocol(b, proto, body + 8, end, lim, vni, True)
    if not flags & 0x08:
        return _lay(L_BAD, 0, 0, V_NONE, 0)
    return _ether_layer(b, body + 8, end, lim, _be24(b + body + 4))


cdef inline Layer _tunnel_layer(const uint8_t* b, int proto, Py_ssize_t at, Py_ssize_t end,
                                Py_ssize_t lim, int mask) noexcept nogil:
    if proto == 17:
        return _udp_layer(b, at, end, lim, mask)
    if proto == 47 and mask & T_GRE:
        return _gre_layer(b, at, end, lim)
    if proto == 4 and mask & T_IPIP:
        return _lay(L_IP, at, end, V_NONE, 4)
    if proto == 41 and mask & T_IPIP:
        return _lay(L_IP, at, end, V_NONE, 6)
    return _lay(L_NOT, 0, 0, V_NONE, 0)


cdef inline Py_ssize_t _inner(const uint8_t* b, Py_ssize_t at, Py_ssize_t end, Py_ssize_t lim,
                              int version) noexcept nogil:
    cdef int found
    cdef Py_ssize_t hl, total
    if at >= end or at >= lim:
        return -1
    found = b[at] >> 4
    if version and found != version:
        return -1
    if found == 4:
        if at + 20 > end or at + 20 > lim:
            return -1
        hl = (b[at] & 0x0F) * 4
        total = _be16(b + at + 2)
        if total == 0:
            total = end - at
        if hl < 20 or hl > total or at + total > end:
            return -1
        return total
    if found == 6:
        if at + 40 > end or at + 40 > lim:
            return -1
        total = _be16(b + at + 4)
        total = 40 + total if total else end - at
        if at + total > end:
            return -1
        return total
    return -1


cdef inline bint _captured(const uint8_t* b, Py_ssize_t at, Py_ssize_t total,
                           Py_ssize_t lim) noexcept nogil:
    cdef Py_ssize_t sub, header
    cdef int proto
    if b[at] >> 4 == 4:
        sub = (b[at] & 0x0F) * 4
        proto = b[at + 9]
        if _be16(b + at + 6) & 0x1FFF:
            proto = -1
    else:
        sub = 40
        proto = b[at + 6]
        if proto == 44 and total >= 48:
            if at + 48 > lim:
                return False
            sub = 48
            proto = b[at + 40] if not (_be16(b + at + 42) >> 3) else -1
    if proto == 6:
        header = 20
    elif proto == 17:
        header = 8
    elif proto == 132:
        header = 12
    else:
        header = 0
    if header and total - sub >= header:
        return at + sub + 4 <= lim
    return True


cdef Decap _decap(const uint8_t* b, Py_ssize_t at, Py_ssize_t avail, Py_ssize_t length,
                  int mask) noexcept nogil:
    """See ``_decap_py.decap``."""
    cdef Decap r
    cdef Py_ssize_t lim = at + _min(avail, length)
    cdef Py_ssize_t cur = at
    cdef Py_ssize_t cur_end = at + length
    cdef Py_ssize_t pay = 0, pay_end = 0, size
    cdef int depth = 0, proto
    cdef Layer layer
    r.found = D_NONE
    r.start = 0
    r.length = 0
    r.outer_vni = V_NONE
    r.inner_vni = V_NONE
    while True:
        proto = _ip_payload(b, cur, cur_end, lim, &pay, &pay_end)
        if proto >= 0:
            layer = _tunnel_layer(b, proto, pay, pay_end, lim, mask)
        else:
            layer = _lay(L_NOT, 0, 0, V_NONE, 0)
        if layer.what == L_NOT:
            if depth == 0:
                return r
            break
        if layer.what == L_BAD:
            return _bad(&r)
        depth += 1
        if depth > D_MAX_DEPTH:
            return _bad(&r)
        if depth == 1:
            r.outer_vni = layer.vni
        if layer.what == L_NONIP:
            if depth == 1:
                r.found = D_NO_IP
                return r
            break
        size = _inner(b, layer.start, layer.end, lim, layer.version)
        if size < 0:
            return _bad(&r)
        if layer.vni != V_NONE:
            r.inner_vni = layer.vni
        cur = layer.start
        cur_end = layer.start + size
    if not _captured(b, cur, cur_end - cur, lim):
        return _bad(&r)
    r.found = D_INNER
    r.start = cur
    r.length = cur_end - cur
    return r


cdef inline Decap _bad(Decap* r) noexcept nogil:
    r.found = D_BAD
    r.outer_vni = V_NONE
    r.inner_vni = V_NONE
    return r[0]


def decap(buf, Py_ssize_t at, Py_ssize_t avail, Py_ssize_t length, int mask):
    """``_decap_py.decap`` in C: (result, offset, length, outer VNI, inner VNI)."""
    cdef const uint8_t[::1] view = buf
    cdef Decap r
    if at < 0 or avail < 0 or length < 0 or at > view.shape[0] or at + _min(avail, length) > view.shape[0]:
        raise ValueError("decap: at/avail/length out of the buffer")
    if view.shape[0] == 0:
        return (D_NONE, 0, 0, V_NONE, V_NONE)
    with nogil:
        r = _decap(&view[0], at, avail, length, mask)
    return (r.found, r.start, r.length, r.outer_vni, r.inner_vni)


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
    # Tunnels (set_decap): innermost packets (virtual) and outer ones
    # (physical), with the VNI of their tunnel (-1: none).
    cdef readonly object vtx_offsets, vtx_lengths, vtx_vnis
    cdef readonly object vrx_offsets, vrx_lengths, vrx_vnis
    cdef readonly object ptx_offsets, ptx_lengths, ptx_vnis
    cdef readonly object prx_offsets, prx_lengths, prx_vnis
    cdef uint32_t[::1] _vtxo, _vtxl, _vrxo, _vrxl, _ptxo, _ptxl, _prxo, _prxl
    cdef int64_t[::1] _vtxv, _vrxv, _ptxv, _prxv
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
        self._txo = self.tx_offsets
        self._txl = self.tx_lengths
        self._rxo = self.rx_offsets
        self._rxl = self.rx_lengths
        self._mode = MODE_NONE
        self._frac_mul = 1000
        self._kind = K_UNSUPPORTED
        empty = array("I")
        empty_vnis = array("q")
        self.vtx_offsets = self.vtx_lengths = self.vrx_offsets = self.vrx_lengths = empty
        self.ptx_offsets = self.ptx_lengths = self.prx_offsets = self.prx_lengths = empty
        self.vtx_vnis = self.vrx_vnis = self.ptx_vnis = self.prx_vnis = empty_vnis

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
        if not 0 <= mask <= T_ALL:
            raise ValueError(f"mask: {mask} is not a set of tunnel kinds")
        cdef Py_ssize_t n = self.capacity
        if mask and len(self.vtx_offsets) == 0:
            arrays = [array("I", bytes(4 * n)) for _ in range(8)]
            vnis = [array("q", bytes(8 * n)) for _ in range(4)]
        with self._lock:
            if mask and len(self.vtx_offsets) == 0:
                # Set once, under the lock, and never replaced: a scan that
                # holds the views is never left with a freed array.
                (self.vtx_offsets, self.vtx_lengths, self.vrx_offsets, self.vrx_lengths,
                 self.ptx_offsets, self.ptx_lengths, self.prx_offsets, self.prx_lengths) = arrays
                self.vtx_vnis, self.vrx_vnis, self.ptx_vnis, self.prx_vnis = vnis
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

    cdef inline void _emit(self, const uint8_t* base, Py_ssize_t off, Py_ssize_t caplen,
                           Py_ssize_t hdr, Py_ssize_t wirelen) noexcept nogil:
        cdef Py_ssize_t ip = off + hdr
        cdef Py_ssize_t length = caplen - hdr
        cdef const uint8_t* p = base + ip
        cdef int version = p[0] >> 4 if length > 0 else 0
        cdef uint32_t total
        cdef bint cut = caplen < wirelen
        cdef Decap d
        if version == 4 and length >= 20:
            total = _be16(p + 2)
            if 20 <= total and total < length:
                length = total
            elif cut and total > length:
                length = self._cut(p, ip, length, total, wirelen - hdr)
        elif version == 6 and length >= 40:
            total = _be16(p + 4)
            if total and 40 + total < length:
                length = 40 + total
            elif cut and total and 40 + total > length:
                length = self._cut(p, ip, length, 40 + total, wirelen - hdr)
        elif cut:
            self.truncated += 1
        self.n_packets += 1
        if self._decap:
            d = _decap(base, ip, caplen - hdr, length, self._decap)
            if d.found == D_INNER or d.found == D_NO_IP:
                self.tunnels += 1
                if d.found == D_INNER:
                    if self._is_rx(base + d.start, d.length):
                        self._vrxo[self.n_vrx] = <uint32_t>d.start
                        self._vrxl[self.n_vrx] = <uint32_t>d.length
                        self._vrxv[self.n_vrx] = d.inner_vni
                        self.n_vrx += 1
                    else:
                        self._vtxo[self.n_vtx] = <uint32_t>d.start
                        self._vtxl[self.n_vtx] = <uint32_t>d.length
                        self._vtxv[self.n_vtx] = d.inner_vni
                        self.n_vtx += 1
                if self._is_rx(p, length):
                    self._prxo[self.n_prx] = <uint32_t>ip
                    self._prxl[self.n_prx] = <uint32_t>length
                    self._prxv[self.n_prx] = d.outer_vni
                    self.n_prx += 1
                else:
                    self._ptxo[self.n_ptx] = <uint32_t>ip
                    self._ptxl[self.n_ptx] = <uint32_t>length
                    self._ptxv[self.n_ptx] = d.outer_vni
                    self.n_ptx += 1
                return
            if d.found == D_BAD:
                self.bad_tunnels += 1
        if self._is_rx(p, length):
            self._rxo[self.n_rx] = <uint32_t>ip
            self._rxl[self.n_rx] = <uint32_t>length
            self.n_rx += 1
        else:
            self._txo[self.n_tx] = <uint32_t>ip
            self._txl[self.n_tx] = <uint32_t>length
            self.n_tx += 1

    cdef inline bint _is_rx(self, const uint8_t* p, Py_ssize_t length) noexcept nogil:
        """Is the destination of the IP packet p[0:length] local (``--local``)?"""
        cdef int version = p[0] >> 4 if length > 0 else 0
        cdef uint32_t dst4
        cdef uint64_t hi, lo
        cdef Py_ssize_t i
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
            self._emit(b, pos + 16, caplen, hdr, orig)
            pos += 16 + caplen
            if self.n_packets >= limit:
                self.pos = pos
                return C_FULL

    cdef int _scan_pcapng(self, const uint8_t* b, Py_ssize_t pos, Py_ssize_t end, bint has_stop,
                          int64_t stop_ns, Py_ssize_t limit) noexcept nogil:
        cdef bint big = self._big
        cdef uint32_t btype, blen, iface, caplen, snap, orig
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
            else:
                pos += blen
                continue
            if has_stop and ts >= stop_ns:
                self.pos = pos
                self.next_ns = ts
                return C_STOP_TIME
            self._time(ts)
            self._emit(b, data, caplen, hdr, orig)
            pos += blen
            if self.n_packets >= limit:
                self.pos = pos
                return C_FULL
