# Fixed-size records of pre-parsed counts (Statistics.update_records): the
# layout is documented with RECORD_FORMAT in connstats/_types.py.  Plain C
# on raw bytes, callable without the GIL.

cdef enum:
    RECORD_BYTES = 56
    RECORD_FLAG_RECEIVE = 1
    RECORD_FLAG_PHYSICAL = 2
    # why a record is refused (_check_records); index into _RECORD_ERRORS
    RECORD_OK = 0
    RECORD_BAD_FLAGS = 1
    RECORD_BAD_SRC_FAMILY = 2
    RECORD_BAD_DST_FAMILY = 3
    RECORD_BAD_SRC_PADDING = 4
    RECORD_BAD_DST_PADDING = 5


cdef tuple _RECORD_ERRORS = (
    "",
    "flags has bits other than RECORD_RECEIVE (1) and RECORD_PHYSICAL (2)",
    "src family must be 0 (no address), 4 or 6",
    "dst family must be 0 (no address), 4 or 6",
    "src address bytes beyond its family's length must be zero",
    "dst address bytes beyond its family's length must be zero",
)


cdef extern from *:
    """
    /* Unaligned little-endian loads: one load (and a swap on big-endian
       hosts) instead of a loop over bytes. */
    #include <string.h>
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    #define CS_BSWAP64(v) __builtin_bswap64(v)
    #define CS_BSWAP16(v) __builtin_bswap16(v)
    #else
    #define CS_BSWAP64(v) (v)
    #define CS_BSWAP16(v) (v)
    #endif
    static inline uint64_t cs_le64(const uint8_t *p) {
        uint64_t v; memcpy(&v, p, 8); return CS_BSWAP64(v);
    }
    static inline uint16_t cs_le16(const uint8_t *p) {
        uint16_t v; memcpy(&v, p, 2); return (uint16_t)CS_BSWAP16(v);
    }
    /* 12 or 16 bytes all zero */
    static inline int cs_zero12(const uint8_t *p) {
        uint64_t a; uint32_t b; memcpy(&a, p, 8); memcpy(&b, p + 8, 4);
        return (a | b) == 0;
    }
    static inline int cs_zero16(const uint8_t *p) {
        uint64_t a, b; memcpy(&a, p, 8); memcpy(&b, p + 8, 8);
        return (a | b) == 0;
    }
    """
    uint64_t _le64 "cs_le64"(const uint8_t *p) noexcept nogil
    uint16_t _le16 "cs_le16"(const uint8_t *p) noexcept nogil
    bint cs_zero12(const uint8_t *p) noexcept nogil
    bint cs_zero16(const uint8_t *p) noexcept nogil


cdef inline int _check_address(uint8_t fam, const uint8_t *addr, int bad_family,
                               int bad_padding) noexcept nogil:
    # Padding must be zero: the key compares raw bytes, and the same
    # connection given with and without garbage there would be two rows.
    if fam == 4:
        return RECORD_OK if cs_zero12(addr + 4) else bad_padding
    if fam == 6:
        return RECORD_OK
    if fam == 0:
        return RECORD_OK if cs_zero16(addr) else bad_padding
    return bad_family


cdef int _check_records(const uint8_t *buf, Py_ssize_t n, Py_ssize_t *bad) noexcept nogil:
    """RECORD_OK, or why record bad[0] is refused."""
    cdef Py_ssize_t i
    cdef const uint8_t *p
    cdef int why
    for i in range(n):
        p = buf + i * RECORD_BYTES
        why = RECORD_OK
        if p[1] & ~(RECORD_FLAG_RECEIVE | RECORD_FLAG_PHYSICAL):
            why = RECORD_BAD_FLAGS
        if why == RECORD_OK:
            why = _check_address(p[2], p + 8, RECORD_BAD_SRC_FAMILY, RECORD_BAD_SRC_PADDING)
        if why == RECORD_OK:
            why = _check_address(p[3], p + 24, RECORD_BAD_DST_FAMILY, RECORD_BAD_DST_PADDING)
        if why != RECORD_OK:
            bad[0] = i
            return why
    return RECORD_OK


cdef inline uint8_t _record_address(uint8_t fam, const uint8_t *addr,
                                    uint64_t *words) noexcept nogil:
    # One address field of a record as the key's two words; its family, 0
    # for any but 4 or 6 (words left zero).
    if fam == 4:
        words[0] = cs_addr4_word(addr)
        return 4
    if fam == 6:
        words[0] = cs_load64(addr)
        words[1] = cs_load64(addr + 8)
        return 6
    return 0


cdef inline void _record_key(const uint8_t *p, cs_key *k, uint8_t *rx, uint64_t *npkts,
                             uint64_t *nbytes) noexcept nogil:
    """One record (already checked) into a key.

    Built defensively all the same: another thread may write the buffer
    while it is counted, and the key must stay well-formed whatever it reads
    (a family other than 4 or 6 becomes "no address")."""
    cdef uint8_t flags = p[1]
    cdef uint8_t kind = KIND_PHYSICAL if flags & RECORD_FLAG_PHYSICAL else KIND_VIRTUAL
    cdef uint64_t words[4]  # source address, two words, then the destination's
    cdef uint8_t sfam, dfam
    words[0] = words[1] = words[2] = words[3] = 0
    sfam = _record_address(p[2], p + 8, words)
    dfam = _record_address(p[3], p + 24, words + 2)
    rx[0] = 1 if flags & RECORD_FLAG_RECEIVE else 0
    # whole words, as _decode writes keys (cs_key_store says why)
    cs_key_store(k, cs_key_head(p[0], kind, sfam, dfam, _le16(p + 4), _le16(p + 6)),
                 words[0], words[1], words[2], words[3])
    npkts[0] = _le64(p + 40)
    nbytes[0] = _le64(p + 48)
