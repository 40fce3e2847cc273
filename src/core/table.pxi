# The counter table: one cs_window per window, 8 shards of an open-addressed
# index over dense entries (layout in the module docstring of
# _fastparse.pyx).  Callers hold the shard lock; nothing here touches Python.

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
    int64_t *times      # first/last ns per entry, parallel to entries; only in
    uint32_t times_cap  # windows that track times (core/times.pxi)


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
    int track_times     # entries carry first/last times (core/times.pxi)
    void *tagged        # rows with a tunnel's VNI (cs_ttable, tagged.pxi), or NULL


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
    cdef size_t grown_bytes
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
            if t.capacity >= (<uint32_t>1 << 31):
                return ADD_NOMEM  # the capacity would wrap
            cap = 8 if t.capacity == 0 else t.capacity * 2
            if cs_array_bytes(cap, sizeof(cs_entry), &grown_bytes) < 0:
                return ADD_NOMEM
            grown = <cs_entry *>realloc(t.entries, grown_bytes)
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
        free(w.shards[i].times)
    _tagged_free(w.tagged)
    free(w)


cdef Py_ssize_t _window_table_bytes(cs_window *w) noexcept nogil:
    cdef Py_ssize_t total = sizeof(cs_window)
    cdef int i
    for i in range(NSHARDS):
        if w.shards[i].mask:
            total += (w.shards[i].mask + 1) * sizeof(uint64_t)
        total += w.shards[i].capacity * sizeof(cs_entry)
        if w.shards[i].times != NULL:
            total += w.shards[i].capacity * 2 * sizeof(int64_t)
    return total + _tagged_bytes(w.tagged)


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
    _tagged_totals(w.tagged, packets, nbytes)


cdef uint64_t _random_seed():
    return int.from_bytes(os.urandom(8), "little")
