# Rows of decapsulated tunnels that carry a VNI or key (docs/tunnels.md).
#
# They live in a table of their own in each window (cs_window.tagged), so
# that every other row keeps its compact (16-byte) or wide (40-byte) key and
# the table its layout: a 32-bit VNI does not fit in the key, and widening
# it for every connection would cost each row 8 bytes and every packet a
# longer hash.  The table is
# the shards' open addressing on 48-byte keys (a key and the VNI), made on
# the first such row.  Callers hold shard 0's lock: cut() takes every shard
# lock, so a window is never swapped under an add, and the window's
# connection count (nconns) is the one every row shares.

cdef struct cs_tkey:
    cs_key key
    uint32_t vni
    uint32_t reserved   # always 0


cdef struct cs_tentry:
    cs_tkey key
    cs_counts c
    int64_t first_ns    # first/last packet time, in a window that keeps them
    int64_t last_ns


cdef struct cs_ttable:
    uint64_t *slots     # tag << 32 | (entry index + 1); 0 = empty
    cs_tentry *entries  # dense, in insertion order
    uint32_t mask       # number of slots - 1; 0 while unallocated
    uint32_t count
    uint32_t capacity


cdef inline uint64_t _tagged_hash(const cs_tkey *k, uint64_t seed) noexcept nogil:
    return cs_mix64(cs_hash40(&k.key, seed) ^ (<uint64_t>k.vni + 1) * 0x9E3779B97F4A7C15ULL)


cdef int _tagged_grow(cs_ttable *t) noexcept nogil:
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
                pos = <uint32_t>(s >> 32) & new_mask
                while slots[pos]:
                    pos = (pos + 1) & new_mask
                slots[pos] = s
        free(t.slots)
    t.slots = slots
    t.mask = new_mask
    return 0


cdef inline int _tagged_add(cs_window *w, const cs_tkey *k, uint64_t h, bint rx,
                            uint64_t nbytes, int64_t max_conns, bint timed,
                            int64_t when) noexcept nogil:
    """One packet of nbytes on k, at time `when` if timed; ADD_* as _window_add.
    Shard 0's lock is held."""
    return _tagged_add_n(w, k, h, rx, 1, nbytes, max_conns, timed, when, when)


cdef int _tagged_add_n(cs_window *w, const cs_tkey *k, uint64_t h, bint rx, uint64_t npkts,
                       uint64_t nbytes, int64_t max_conns, bint timed, int64_t first,
                       int64_t last) noexcept nogil:
    """npkts packets of nbytes in all on k, seen from first to last if timed."""
    cdef cs_ttable *t = <cs_ttable *>w.tagged
    cdef uint32_t tag = <uint32_t>h
    cdef uint32_t pos, idx, cap
    cdef uint64_t s
    cdef cs_tentry *e = NULL
    cdef cs_tentry *grown
    cdef size_t grown_bytes
    cdef int64_t before
    cdef int result = ADD_OK
    if t == NULL:
        t = <cs_ttable *>calloc(1, sizeof(cs_ttable))
        if t == NULL:
            return ADD_NOMEM
        w.tagged = t
    if t.mask == 0 or t.count >= ((t.mask + 1) >> 1) + ((t.mask + 1) >> 2):
        if _tagged_grow(t) < 0:
            return ADD_NOMEM
    pos = tag & t.mask
    while True:
        s = t.slots[pos]
        if s == 0:
            break
        if <uint32_t>(s >> 32) == tag:
            e = &t.entries[<uint32_t>s - 1]
            if e.key.vni == k.vni and cs_key40_equal(&e.key.key, &k.key):
                break
            e = NULL
        pos = (pos + 1) & t.mask
    if e == NULL:
        if t.count == t.capacity:
            if t.capacity >= (<uint32_t>1 << 31):
                return ADD_NOMEM
            cap = 8 if t.capacity == 0 else t.capacity * 2
            if cs_array_bytes(cap, sizeof(cs_tentry), &grown_bytes) < 0:
                return ADD_NOMEM
            grown = <cs_tentry *>realloc(t.entries, grown_bytes)
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
        memcpy(&e.key, k, sizeof(cs_tkey))
        memset(&e.c, 0, sizeof(cs_counts))
        e.first_ns = CS_TIME_NONE_FIRST
        e.last_ns = CS_TIME_NONE_LAST
        t.slots[pos] = (<uint64_t>tag << 32) | (idx + 1)
    _add_counts(&e.c, rx, npkts, nbytes)
    if timed:
        # min/max: the packets of a merged capture may come out of order
        if first < e.first_ns:
            e.first_ns = first
        if last > e.last_ns:
            e.last_ns = last
    return result


cdef void _tagged_free(void *p) noexcept nogil:
    cdef cs_ttable *t = <cs_ttable *>p
    if t != NULL:
        free(t.slots)
        free(t.entries)
        free(t)


cdef Py_ssize_t _tagged_bytes(void *p) noexcept nogil:
    cdef cs_ttable *t = <cs_ttable *>p
    if t == NULL:
        return 0
    return sizeof(cs_ttable) + ((t.mask + 1) * sizeof(uint64_t) if t.mask else 0) + \
        t.capacity * sizeof(cs_tentry)
