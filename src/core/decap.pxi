# Tunnel decapsulation, shared by the counting core (connstats.decap) and the
# capture scanner (connstats.capture._capture, which includes this file too).
# The pure-Python reference is the decap section of connstats/_fastparse_py.py
# (decap_walk), and docs/tunnels.md says what is decapsulated.  Plain C on
# raw bytes, callable without the GIL; the names carry a _dc prefix so that
# they meet nothing of either module.


cdef inline uint32_t _dc_be16(const uint8_t *p) noexcept nogil:
    return (<uint32_t>p[0] << 8) | p[1]


cdef inline uint32_t _dc_be32(const uint8_t *p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


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
    DC_VXLAN = 1
    DC_GENEVE = 2
    DC_GRE = 4
    DC_IPIP = 8
    DC_MPLS_UDP = 16
    DC_ALL = 31
    DC_MAX_DEPTH = 8
    DC_MAX_EXTENSIONS = 8
    DC_NONE = 0
    DC_INNER = 1
    DC_NO_IP = 2
    DC_BAD = 3
    DC_L_NOT = 0
    DC_L_IP = 1
    DC_L_NONIP = 2
    DC_L_BAD = 3
    DC_NO_VNI = -1

cdef struct DcLayer:
    int what
    Py_ssize_t start
    Py_ssize_t end
    int64_t vni
    int version

cdef struct DcResult:
    int found
    Py_ssize_t start
    Py_ssize_t length
    int64_t outer_vni
    int64_t inner_vni


cdef inline DcLayer _dc_lay(int what, Py_ssize_t start, Py_ssize_t end, int64_t vni,
                       int version) noexcept nogil:
    cdef DcLayer r
    r.what = what
    r.start = start
    r.end = end
    r.vni = vni
    r.version = version
    return r

cdef inline Py_ssize_t _dc_min(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a < b else b

cdef inline uint32_t _dc_be24(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 16) | (<uint32_t>p[1] << 8) | p[2]


cdef inline int _dc_ip_payload(const uint8_t* b, Py_ssize_t p, Py_ssize_t end, Py_ssize_t lim,
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
        total = _dc_be16(b + p + 2)
        if total == 0:
            total = end - p
        if hl < 20 or hl > total or p + total > end or p + hl > lim:
            return -1
        if _dc_be16(b + p + 6) & 0x3FFF:
            return -1
        pay[0] = p + hl
        pay_end[0] = p + total
        return b[p + 9]
    if version == 6:
        if p + 40 > lim:
            return -1
        total = _dc_be16(b + p + 4)
        stop = p + 40 + total if total else end
        if stop > end:
            return -1
        proto = b[p + 6]
        q = p + 40
        n = 0
        while proto == 0 or proto == 43 or proto == 60:
            n += 1
            if n > DC_MAX_EXTENSIONS or q + 8 > lim or q + 8 > stop:
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


cdef DcLayer _dc_mpls(const uint8_t* b, Py_ssize_t at, Py_ssize_t end, Py_ssize_t lim,
                       int64_t vni) noexcept nogil:
    cdef Py_ssize_t bound = _dc_min(end, lim)
    cdef int bottom, version
    while True:
        if at + 4 > bound:
            return _dc_lay(DC_L_BAD, 0, 0, vni, 0)
        bottom = b[at + 2] & 1
        at += 4
        if bottom:
            break
    if at >= bound:
        return _dc_lay(DC_L_BAD, 0, 0, vni, 0)
    version = b[at] >> 4
    if version == 4 or version == 6:
        return _dc_lay(DC_L_IP, at, end, vni, version)
    return _dc_lay(DC_L_NONIP, 0, 0, vni, 0)


cdef DcLayer _dc_ethertype(const uint8_t* b, uint32_t etype, Py_ssize_t at, Py_ssize_t end,
                            Py_ssize_t lim, int64_t vni) noexcept nogil:
    cdef Py_ssize_t bound = _dc_min(end, lim)
    while True:
        if etype == 0x8100 or etype == 0x88A8 or etype == 0x9100:
            if at + 4 > bound:
                return _dc_lay(DC_L_BAD, 0, 0, vni, 0)
            etype = _dc_be16(b + at + 2)
            at += 4
        elif etype == 0x8909:
            if at + 8 > bound:
                return _dc_lay(DC_L_BAD, 0, 0, vni, 0)
            etype = _dc_be16(b + at + 6)
            at += 8
        else:
            break
    if etype == 0x0800:
        return _dc_lay(DC_L_IP, at, end, vni, 4)
    if etype == 0x86DD:
        return _dc_lay(DC_L_IP, at, end, vni, 6)
    if etype == 0x8847 or etype == 0x8848:
        return _dc_mpls(b, at, end, lim, vni)
    return _dc_lay(DC_L_NONIP, 0, 0, vni, 0)


cdef inline DcLayer _dc_ether(const uint8_t* b, Py_ssize_t at, Py_ssize_t end, Py_ssize_t lim,
                               int64_t vni) noexcept nogil:
    if at + 14 > _dc_min(end, lim):
        return _dc_lay(DC_L_BAD, 0, 0, vni, 0)
    return _dc_ethertype(b, _dc_be16(b + at + 12), at + 14, end, lim, vni)


cdef DcLayer _dc_gre(const uint8_t* b, Py_ssize_t at, Py_ssize_t end,
                      Py_ssize_t lim) noexcept nogil:
    cdef Py_ssize_t bound = _dc_min(end, lim)
    cdef uint32_t flags, ptype
    cdef Py_ssize_t hl, body
    cdef int64_t vni = DC_NO_VNI, session
    cdef bint sequence
    cdef int frame_type
    if at + 4 > bound:
        return _dc_lay(DC_L_BAD, 0, 0, DC_NO_VNI, 0)
    flags = _dc_be16(b + at)
    ptype = _dc_be16(b + at + 2)
    if flags & 0x0007:
        return _dc_lay(DC_L_NOT, 0, 0, DC_NO_VNI, 0)
    if flags & 0x4000:
        return _dc_lay(DC_L_BAD, 0, 0, DC_NO_VNI, 0)
    hl = 4
    if flags & 0x8000:
        hl += 4
    if flags & 0x2000:
        if at + hl + 4 > bound:
            return _dc_lay(DC_L_BAD, 0, 0, DC_NO_VNI, 0)
        vni = _dc_be32(b + at + hl)
        hl += 4
    sequence = (flags & 0x1000) != 0
    if sequence:
        hl += 4
    body = at + hl
    if body > bound:
        return _dc_lay(DC_L_BAD, 0, 0, vni, 0)
    if ptype == 0x6558:
        return _dc_ether(b, body, end, lim, vni)
    if ptype == 0x88BE:
        if not sequence:
            return _dc_ether(b, body, end, lim, vni)
        if body + 8 > bound or b[body] >> 4 != 1:
            return _dc_lay(DC_L_BAD, 0, 0, vni, 0)
        return _dc_ether(b, body + 8, end, lim, _dc_be16(b + body + 2) & 0x3FF)
    if ptype == 0x22EB:
        if body + 12 > bound or b[body] >> 4 != 2:
            return _dc_lay(DC_L_BAD, 0, 0, vni, 0)
        session = _dc_be16(b + body + 2) & 0x3FF
        frame_type = (b[body + 10] >> 2) & 0x1F
        hl = 20 if b[body + 11] & 1 else 12
        if body + hl > bound:
            return _dc_lay(DC_L_BAD, 0, 0, session, 0)
        if frame_type == 0:
            return _dc_ether(b, body + hl, end, lim, session)
        if frame_type == 2:
            return _dc_lay(DC_L_IP, body + hl, end, session, 0)
        return _dc_lay(DC_L_NONIP, 0, 0, session, 0)
    if ptype == 0x8909:
        if body + 8 > bound:
            return _dc_lay(DC_L_BAD, 0, 0, vni, 0)
        return _dc_ethertype(b, _dc_be16(b + body), body + 8, end, lim, vni)
    return _dc_ethertype(b, ptype, body, end, lim, vni)


cdef DcLayer _dc_nsh(const uint8_t* b, Py_ssize_t at, Py_ssize_t end, Py_ssize_t lim,
                      int64_t vni) noexcept nogil:
    cdef Py_ssize_t bound = _dc_min(end, lim)
    cdef Py_ssize_t hl
    if at + 8 > bound or b[at] >> 6 != 0:
        return _dc_lay(DC_L_BAD, 0, 0, vni, 0)
    hl = (b[at + 1] & 0x3F) * 4
    if hl < 8 or at + hl > bound:
        return _dc_lay(DC_L_BAD, 0, 0, vni, 0)
    return _dc_next_protocol(b, b[at + 3], at + hl, end, lim, vni, False)


cdef DcLayer _dc_next_protocol(const uint8_t* b, int proto, Py_ssize_t at, Py_ssize_t end,
                          Py_ssize_t lim, int64_t vni, bint nsh) noexcept nogil:
    if proto == 1:
        return _dc_lay(DC_L_IP, at, end, vni, 4)
    if proto == 2:
        return _dc_lay(DC_L_IP, at, end, vni, 6)
    if proto == 3:
        return _dc_ether(b, at, end, lim, vni)
    if proto == 4 and nsh:
        return _dc_nsh(b, at, end, lim, vni)
    if proto == 5:
        return _dc_mpls(b, at, end, lim, vni)
    return _dc_lay(DC_L_NONIP, 0, 0, vni, 0)


cdef DcLayer _dc_udp(const uint8_t* b, Py_ssize_t at, Py_ssize_t end, Py_ssize_t lim,
                      int mask) noexcept nogil:
    cdef uint32_t port, size, flags
    cdef int kind
    cdef Py_ssize_t body, bound, hl
    cdef int64_t vni
    cdef uint32_t ptype
    cdef int proto
    if at + 8 > lim or at + 8 > end:
        return _dc_lay(DC_L_NOT, 0, 0, DC_NO_VNI, 0)
    port = _dc_be16(b + at + 2)
    if port == 4789 or port == 8472:
        kind = DC_VXLAN
    elif port == 4790:
        kind = DC_VXLAN
    elif port == 6081:
        kind = DC_GENEVE
    elif port == 6635:
        kind = DC_MPLS_UDP
    else:
        return _dc_lay(DC_L_NOT, 0, 0, DC_NO_VNI, 0)
    if not mask & kind:
        return _dc_lay(DC_L_NOT, 0, 0, DC_NO_VNI, 0)
    size = _dc_be16(b + at + 4)
    if size == 0:
        size = <uint32_t>(end - at)
    if size < 8 or at + size > end:
        return _dc_lay(DC_L_BAD, 0, 0, DC_NO_VNI, 0)
    end = at + size
    body = at + 8
    bound = _dc_min(end, lim)
    if kind == DC_MPLS_UDP:
        return _dc_mpls(b, body, end, lim, DC_NO_VNI)
    if body + 8 > bound:
        return _dc_lay(DC_L_BAD, 0, 0, DC_NO_VNI, 0)
    flags = b[body]
    if kind == DC_GENEVE:
        if flags >> 6 != 0:
            return _dc_lay(DC_L_BAD, 0, 0, DC_NO_VNI, 0)
        hl = 8 + (flags & 0x3F) * 4
        vni = _dc_be24(b + body + 4)
        if body + hl > bound:
            return _dc_lay(DC_L_BAD, 0, 0, vni, 0)
        ptype = _dc_be16(b + body + 2)
        if ptype == 0x6558:
            return _dc_ether(b, body + hl, end, lim, vni)
        return _dc_ethertype(b, ptype, body + hl, end, lim, vni)
    if port == 4790:
        if (flags >> 4) & 3:
            return _dc_lay(DC_L_BAD, 0, 0, DC_NO_VNI, 0)
        vni = <int64_t>_dc_be24(b + body + 4) if flags & 0x08 else DC_NO_VNI
        proto = b[body + 3] if flags & 0x04 else 3
        return _dc_next_protocol(b, proto, body + 8, end, lim, vni, True)
    if not flags & 0x08:
        return _dc_lay(DC_L_BAD, 0, 0, DC_NO_VNI, 0)
    return _dc_ether(b, body + 8, end, lim, _dc_be24(b + body + 4))


cdef inline DcLayer _dc_layer(const uint8_t* b, int proto, Py_ssize_t at, Py_ssize_t end,
                                Py_ssize_t lim, int mask) noexcept nogil:
    if proto == 17:
        return _dc_udp(b, at, end, lim, mask)
    if proto == 47 and mask & DC_GRE:
        return _dc_gre(b, at, end, lim)
    if proto == 4 and mask & DC_IPIP:
        return _dc_lay(DC_L_IP, at, end, DC_NO_VNI, 4)
    if proto == 41 and mask & DC_IPIP:
        return _dc_lay(DC_L_IP, at, end, DC_NO_VNI, 6)
    return _dc_lay(DC_L_NOT, 0, 0, DC_NO_VNI, 0)


cdef inline Py_ssize_t _dc_inner(const uint8_t* b, Py_ssize_t at, Py_ssize_t end, Py_ssize_t lim,
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
        total = _dc_be16(b + at + 2)
        if total == 0:
            total = end - at
        if hl < 20 or hl > total or at + total > end:
            return -1
        return total
    if found == 6:
        if at + 40 > end or at + 40 > lim:
            return -1
        total = _dc_be16(b + at + 4)
        total = 40 + total if total else end - at
        if at + total > end:
            return -1
        return total
    return -1


cdef inline bint _dc_captured(const uint8_t* b, Py_ssize_t at, Py_ssize_t total,
                           Py_ssize_t lim) noexcept nogil:
    cdef Py_ssize_t sub, header
    cdef int proto
    if b[at] >> 4 == 4:
        sub = (b[at] & 0x0F) * 4
        proto = b[at + 9]
        if _dc_be16(b + at + 6) & 0x1FFF:
            proto = -1
    else:
        sub = 40
        proto = b[at + 6]
        if proto == 44 and total >= 48:
            if at + 48 > lim:
                return False
            sub = 48
            proto = b[at + 40] if not (_dc_be16(b + at + 42) >> 3) else -1
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


# What the quick test looks for after an IP header: 1 a tunnel protocol
# (GRE, IP in IP), 2 UDP (then the port decides), 3 an IPv6 extension header
# (hop-by-hop, routing, destination options) that may precede one.
cdef uint8_t _DC_PROTOS[256]
_DC_PROTOS[47] = 1
_DC_PROTOS[4] = 1
_DC_PROTOS[41] = 1
_DC_PROTOS[17] = 2
_DC_PROTOS[0] = 3
_DC_PROTOS[43] = 3
_DC_PROTOS[60] = 3


cdef inline bint _dc_port(uint32_t port) noexcept nogil:
    return port - 4789 <= 1 or port == 6081 or port == 6635 or port == 8472


cdef inline bint _dc_candidate(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    """False only for a packet _dc_walk would find no tunnel in (DC_NONE): a
    transport that carries none, or UDP to another port.  p[0:n] is what may
    be read.  Most packets of most captures stop here, a few instructions in."""
    cdef int what
    cdef Py_ssize_t hl
    if n < 20:
        return False  # no IP header to walk (_dc_ip_payload: -1)
    if p[0] >> 4 == 4:
        what = _DC_PROTOS[p[9]]
        if what == 2:
            hl = (p[0] & 0x0F) * 4
            if hl >= 20 and hl + 4 <= n:
                return _dc_port(_dc_be16(p + hl + 2))
            return True
        return what == 1
    if p[0] >> 4 == 6 and n >= 40:
        what = _DC_PROTOS[p[6]]
        if what == 2:
            return _dc_port(_dc_be16(p + 42)) if n >= 44 else True
        return what != 0
    return False


cdef DcResult _dc_walk(const uint8_t* b, Py_ssize_t at, Py_ssize_t avail, Py_ssize_t length,
                  int mask) noexcept nogil:
    """See decap_walk in connstats/_fastparse_py.py."""
    cdef DcResult r
    cdef Py_ssize_t lim = at + _dc_min(avail, length)
    cdef Py_ssize_t cur = at
    cdef Py_ssize_t cur_end = at + length
    cdef Py_ssize_t pay = 0, pay_end = 0, size
    cdef int depth = 0, proto
    cdef DcLayer layer
    r.found = DC_NONE
    r.start = 0
    r.length = 0
    r.outer_vni = DC_NO_VNI
    r.inner_vni = DC_NO_VNI
    while True:
        proto = _dc_ip_payload(b, cur, cur_end, lim, &pay, &pay_end)
        if proto >= 0:
            layer = _dc_layer(b, proto, pay, pay_end, lim, mask)
        else:
            layer = _dc_lay(DC_L_NOT, 0, 0, DC_NO_VNI, 0)
        if layer.what == DC_L_NOT:
            if depth == 0:
                return r
            break
        if layer.what == DC_L_BAD:
            return _dc_bad(&r)
        depth += 1
        if depth > DC_MAX_DEPTH:
            return _dc_bad(&r)
        if depth == 1:
            r.outer_vni = layer.vni
        if layer.what == DC_L_NONIP:
            if depth == 1:
                r.found = DC_NO_IP
                return r
            break
        size = _dc_inner(b, layer.start, layer.end, lim, layer.version)
        if size < 0:
            return _dc_bad(&r)
        if layer.vni != DC_NO_VNI:
            r.inner_vni = layer.vni
        cur = layer.start
        cur_end = layer.start + size
    if not _dc_captured(b, cur, cur_end - cur, lim):
        return _dc_bad(&r)
    r.found = DC_INNER
    r.start = cur
    r.length = cur_end - cur
    return r


cdef inline DcResult _dc_bad(DcResult* r) noexcept nogil:
    r.found = DC_BAD
    r.outer_vni = DC_NO_VNI
    r.inner_vni = DC_NO_VNI
    return r[0]


def decap_walk(buf, Py_ssize_t at, Py_ssize_t avail, Py_ssize_t length, int mask):
    """The walk on buf[at:at+length], avail bytes of it captured: (result,
    offset, length, outer VNI, inner VNI); see connstats/_fastparse_py.py."""
    cdef const uint8_t[::1] view = buf
    cdef DcResult r
    if at < 0 or avail < 0 or length < 0 or at > view.shape[0] or at + _dc_min(avail, length) > view.shape[0]:
        raise ValueError("decap: at/avail/length out of the buffer")
    if view.shape[0] == 0:
        return (DC_NONE, 0, 0, DC_NO_VNI, DC_NO_VNI)
    with nogil:
        r = _dc_walk(&view[0], at, avail, length, mask)
    return (r.found, r.start, r.length, r.outer_vni, r.inner_vni)
