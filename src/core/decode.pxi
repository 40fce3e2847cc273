# Keys and decoding (docs/contract.md §4): one IP packet to a 40-byte key.
# Everything here is plain C on raw bytes, callable without the GIL.

cdef struct cs_key:
    # 40 bytes, no padding, every byte written (zero where unused) so that it
    # hashes and compares as raw memory; the hot paths write it as five
    # whole words (cs_key_store says why).  kind: 0 virtual, 1 physical.
    # fam: 0 none, 4, 6.
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


cdef inline int _ports(int proto, const uint8_t *t, Py_ssize_t tlen, Py_ssize_t need,
                       uint32_t *ports) noexcept nogil:
    # the key's protocol: 0 (and no ports) when the header is cut short
    if tlen < need:
        return 0
    ports[0] = (<uint32_t>_be16(t) << 16) | _be16(t + 2)
    return proto


cdef inline int _transport4(int proto, const uint8_t *t, Py_ssize_t tlen,
                            bint more_fragments, uint32_t *ports) noexcept nogil:
    # the key's protocol for an IPv4 payload t[0:tlen]; its ports into *ports
    if proto == 6:
        return _ports(proto, t, tlen, 20, ports)
    elif proto == 17:
        return _ports(proto, t, tlen, 8, ports)
    elif proto == 132:
        return _ports(proto, t, tlen, 12, ports)
    elif proto == 1:
        return proto if tlen >= 4 else 0
    elif proto == 2:
        return proto if tlen >= 8 else 0
    elif proto == 99:
        return 0 if (more_fragments or tlen < 7) else proto
    elif proto == 255:
        return 0
    return proto


cdef inline int _transport6(int proto, const uint8_t *t, Py_ssize_t tlen,
                            uint32_t *ports) noexcept nogil:
    # the same for an IPv6 payload
    if proto == 6:
        return _ports(proto, t, tlen, 20, ports)
    elif proto == 17:
        return _ports(proto, t, tlen, 8, ports)
    elif proto == 132:
        return _ports(proto, t, tlen, 12, ports)
    elif proto == 58:
        return proto if tlen >= 4 else 0
    elif proto == 99:
        return proto if tlen >= 7 else 0
    elif proto == 255:
        return 0
    return proto


cdef inline uint8_t _decode4(const uint8_t *b, Py_ssize_t L, int *proto, uint32_t *ports,
                             uint64_t *words) noexcept nogil:
    # An IPv4 packet's part of the key: its family (0: none, the key stays
    # empty); protocol, ports and address words through the pointers.
    cdef Py_ssize_t tl, hl
    cdef int frag, off
    if L < 20:
        return 0
    tl = _be16(b + 2)
    if L < tl:
        return 0
    words[0] = cs_addr4_word(b + 12)
    words[2] = cs_addr4_word(b + 16)
    hl = (b[0] & 0x0F) * 4
    if hl > tl:
        return 4  # proto 0, addresses kept, ports 0
    frag = _be16(b + 6)
    off = frag & 0x1FFF
    if off != 0:
        proto[0] = 0 if off < 10 else 255
        return 4
    # hl <= tl <= L, so the transport view b[hl:L] is in bounds.
    proto[0] = _transport4(b[9], b + hl, L - hl, (frag & 0x2000) != 0, ports)
    return 4


cdef inline uint8_t _decode6(const uint8_t *b, Py_ssize_t L, int *proto, uint32_t *ports,
                             uint64_t *words) noexcept nogil:
    # the same for an IPv6 packet
    cdef Py_ssize_t tl
    cdef int next_header, off
    if L < 40:
        return 0
    tl = 40 + <Py_ssize_t>_be16(b + 4)
    if L < tl:
        return 0
    words[0] = cs_load64(b + 8)
    words[1] = cs_load64(b + 16)
    words[2] = cs_load64(b + 24)
    words[3] = cs_load64(b + 32)
    next_header = b[6]
    if next_header == 44:
        if L < 48:
            return 6  # proto 0, addresses kept
        next_header = b[40]
        off = _be16(b + 42) >> 3
        if off != 0:
            proto[0] = 0 if off < 10 else 255
            return 6
        proto[0] = _transport6(next_header, b + 48, L - 48, ports)
    else:
        proto[0] = _transport6(next_header, b + 40, L - 40, ports)
    return 6


cdef inline void _decode(const uint8_t *b, Py_ssize_t L, cs_key *k) noexcept nogil:
    """Decode packet b[0:L] into k (tx orientation) following docs/contract.md §4.

    The key is written once, as five whole words (cs_key_store says why)."""
    cdef uint64_t words[4]  # source address, two words, then the destination's
    cdef uint32_t ports = 0  # source port << 16 | destination port
    cdef int proto = 0
    cdef uint8_t fam = 0
    words[0] = words[1] = words[2] = words[3] = 0
    if L > 0:
        if (b[0] >> 4) == 4:
            fam = _decode4(b, L, &proto, &ports, words)
        elif (b[0] >> 4) == 6:
            fam = _decode6(b, L, &proto, &ports, words)
    cs_key_store(k, cs_key_head(<unsigned>proto, KIND_VIRTUAL, fam, fam, ports >> 16,
                                ports & 0xFFFF),
                 words[0], words[1], words[2], words[3])


cdef inline void _swap(cs_key *k) noexcept nogil:
    # src and dst exchanged, word by word as _decode wrote them
    cdef const unsigned char *p = <const unsigned char *>k
    cs_key_store(k, cs_key_head_swapped(cs_load64(p)), cs_load64(p + 24), cs_load64(p + 32),
                 cs_load64(p + 8), cs_load64(p + 16))


cdef inline void _set_physical(cs_key *k) noexcept nogil:
    # kind = KIND_PHYSICAL as a whole-word write too (cs_key_store says why)
    cdef unsigned char *p = <unsigned char *>k
    cs_store64(p, cs_load64(p) | cs_key_head(0, KIND_PHYSICAL, 0, 0, 0, 0))
