# Keys and decoding (docs/contract.md §4): one IP packet to a 40-byte key.
# Everything here is plain C on raw bytes, callable without the GIL.

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
    """Decode packet b[0:L] into k (tx orientation) following docs/contract.md §4."""
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
