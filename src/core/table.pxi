# The counter table: one cs_window per window, 8 shards of an open-addressed
# index over two dense arrays of entries, compact ones for IPv4 and wide ones
# for the rest (layout in the module docstring of _fastparse.pyx).  Callers
# hold the shard lock; nothing here touches Python.

cdef struct cs_key4:
    # The compact key of a connection whose addresses are IPv4 or none: the
    # first 8 bytes of its cs_key (proto, kind, families, ports), then the
    # two 4-byte addresses.  16 bytes, no padding.
    uint8_t proto
    uint8_t kind
    uint8_t sfam
    uint8_t dfam
    uint16_t sport
    uint16_t dport
    uint8_t src[4]
    uint8_t dst[4]


cdef struct cs_counts:
    uint64_t tx_packets
    uint64_t tx_bytes
    uint64_t rx_packets
    uint64_t rx_bytes


cdef struct cs_entry4:
    # 48 bytes.  A tx update reads the key and writes tx_*: the first 32
    # bytes, which sit in one cache line for 3 of every 4 entries.
    cs_key4 key
    cs_counts c


cdef struct cs_entry:
    # 72 bytes: any other connection (an IPv6 address on either side).
    cs_key key
    cs_counts c


cdef struct cs_table:
    uint64_t *slots     # tag << 32 | SLOT_WIDE if wide | (entry index + 1); 0 = empty
    cs_entry4 *narrow   # dense, in insertion order
    cs_entry *wide      # dense, in insertion order
    uint32_t mask       # number of slots - 1; 0 while unallocated
    uint32_t count      # narrow + wide entries
    uint32_t nnarrow
    uint32_t cap_narrow
    uint32_t nwide
    uint32_t cap_wide
    # first/last ns per entry (two int64), parallel to each array, only in
    # windows that track times (core/times.pxi)
    int64_t *times_narrow
    int64_t *times_wide
    uint32_t tcap_narrow    # entries the times arrays have room for
    uint32_t tcap_wide


cdef enum:
    NSHARDS = 8
    MATERIALIZE_SLICE = 2048   # connections built between returns to the eval loop
    SHARD_SHIFT = 61    # 64 - log2(NSHARDS)
    FIRST_SLOTS = 16
    CHUNK = 256         # packets parsed per lock round in the batch paths
    FIRST_ENTRIES = 8
    MAX_ENTRIES = 1 << 30   # per array: the index must fit SLOT_INDEX


# Slot bits below the tag.  Macros, not a cdef enum: an enum constant must
# fit a C int, and 1 << 31 does not (MSVC would make it negative, and a
# negative mask ANDed with a u64 slot keeps the tag's bits too).
cdef extern from *:
    """
    #define CS_SLOT_WIDE ((uint64_t)1 << 31)         /* the entry is in cs_table.wide */
    #define CS_SLOT_INDEX (((uint32_t)1 << 31) - 1)  /* entry index + 1 */
    """
    const uint64_t SLOT_WIDE "CS_SLOT_WIDE"
    const uint32_t SLOT_INDEX "CS_SLOT_INDEX"


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
    ADD_IGNORED = 3     # a new connection to an ignored destination: not counted
    ADD_NOMEM = -1


cdef struct cs_ignore:
    uint8_t fam
    uint8_t addr[16]


cdef inline bint _is_ignored(const cs_ignore *ignore, int n_ignore,
                             const cs_key *k) noexcept nogil:
    # Virtual traffic only, as the reference: a WireGuard peer's endpoint is
    # counted even if it is listed.
    cdef int i
    if k.kind != KIND_VIRTUAL:
        return False
    for i in range(n_ignore):
        if (ignore[i].fam == k.dfam and
                memcmp(ignore[i].addr, k.dst, _addr_len(k.dfam)) == 0):
            return True
    return False


cdef int _table_grow(cs_table *t) noexcept nogil:
    cdef uint32_t new_slots = FIRST_SLOTS if t.mask == 0 else (t.mask + 1) * 2
    cdef uint32_t new_mask = new_slots - 1
    cdef uint64_t *slots
    cdef uint32_t i, pos
    cdef uint64_t s
    if new_slots == 0 or new_slots > (<uint32_t>1 << 31):
        return -1
    slots = <uint64_t *>cs_slots_alloc(new_slots, sizeof(uint64_t))
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


cdef inline bint _is_narrow(const cs_key *k) noexcept nogil:
    return k.sfam != 6 and k.dfam != 6


cdef inline void _to_narrow(const cs_key *k, cs_key4 *n) noexcept nogil:
    memcpy(n, k, 8)
    memcpy(n.src, k.src, 4)
    memcpy(n.dst, k.dst, 4)


cdef inline int _grow_entries(void **entries, uint32_t *capacity, size_t size) noexcept nogil:
    cdef uint32_t cap
    cdef size_t nbytes
    cdef void *grown
    if capacity[0] >= MAX_ENTRIES:
        return -1
    cap = FIRST_ENTRIES if capacity[0] == 0 else capacity[0] * 2
    if cs_array_bytes(cap, size, &nbytes) < 0:
        return -1
    grown = realloc(entries[0], nbytes)
    if grown == NULL:
        return -1
    entries[0] = grown
    capacity[0] = cap
    return 0


# Probing: the slot's tag and wide bit are compared first, so an entry is
# read only when its low 32 hash bits and its kind of entry match.  One loop
# per kind of entry, each with one key comparison.

cdef inline cs_counts *_probe_narrow(cs_table *t, const cs_key4 *n, uint32_t tag,
                                     uint32_t *where) noexcept nogil:
    cdef uint32_t pos = tag & t.mask
    cdef uint64_t s
    cdef uint64_t want = <uint64_t>tag << 1
    cdef cs_entry4 *e
    while True:
        s = t.slots[pos]
        if s == 0:
            where[0] = pos
            return NULL
        if (s >> 31) == want:
            e = &t.narrow[<uint32_t>s - 1]
            if cs_key16_equal(&e.key, n):
                return &e.c
        pos = (pos + 1) & t.mask


cdef inline cs_counts *_probe_wide(cs_table *t, const cs_key *k, uint32_t tag,
                                   uint32_t *where) noexcept nogil:
    cdef uint32_t pos = tag & t.mask
    cdef uint64_t s
    cdef uint64_t want = (<uint64_t>tag << 1) | 1
    cdef cs_entry *e
    while True:
        s = t.slots[pos]
        if s == 0:
            where[0] = pos
            return NULL
        if (s >> 31) == want:
            e = &t.wide[(<uint32_t>s & SLOT_INDEX) - 1]
            if cs_key40_equal(&e.key, k):
                return &e.c
        pos = (pos + 1) & t.mask


cdef inline cs_counts *_table_probe(cs_table *t, const cs_key *k, const cs_key4 *n,
                                    bint narrow, uint32_t tag, uint32_t *where) noexcept nogil:
    """The counters of k (n: its compact form if narrow), or NULL with *where
    the empty slot that ends its probe.  t has slots."""
    if narrow:
        return _probe_narrow(t, n, tag, where)
    return _probe_wide(t, k, tag, where)


cdef inline uint64_t _prepare(const cs_key *k, uint64_t seed, cs_key4 *n, bint *narrow) noexcept nogil:
    """The table's hash of k, of its compact form where it has one; that
    form in n, and whether it has one in narrow."""
    narrow[0] = _is_narrow(k)
    if narrow[0]:
        _to_narrow(k, n)
        return cs_hash16(n, seed)
    return cs_hash40(k, seed)


cdef inline cs_counts *_table_find(cs_table *t, const cs_key *k, const cs_key4 *n,
                                   bint narrow, uint64_t h) noexcept nogil:
    """The counters of k if it is in t (h, n, narrow from _prepare), else NULL."""
    cdef uint32_t pos
    if t.mask == 0:
        return NULL
    return _table_probe(t, k, n, narrow, <uint32_t>h, &pos)


cdef inline void _add_counts(cs_counts *c, bint rx, uint64_t npkts, uint64_t nbytes) noexcept nogil:
    if rx:
        c.rx_packets += npkts
        c.rx_bytes += nbytes
    else:
        c.tx_packets += npkts
        c.tx_bytes += nbytes


cdef int _window_insert(cs_window *w, uint32_t shard, const cs_key *k, const cs_key4 *n,
                        bint narrow, uint64_t h, bint rx, uint64_t npkts, uint64_t nbytes,
                        int64_t max_conns, const cs_ignore *ignore,
                        int n_ignore) noexcept nogil:
    """_window_add's path for a connection that may be new (out of line:
    the hit path stays small where it is inlined).

    ignore_destinations is checked here, and only here: a connection to an
    ignored destination is never inserted, so a connection that is found
    is never an ignored one, and the packet path pays for the list only
    once per new connection (before the max_conns check: an ignored packet
    never cuts a window)."""
    cdef cs_table *t = &w.shards[shard]
    cdef uint32_t tag = <uint32_t>h
    cdef uint32_t pos, idx
    cdef cs_entry4 *e4
    cdef cs_entry *e
    cdef cs_counts *c
    cdef int64_t before
    cdef int result = ADD_OK
    if t.mask == 0 or t.count >= ((t.mask + 1) >> 1) + ((t.mask + 1) >> 2):
        if _table_grow(t) < 0:
            return ADD_NOMEM
    c = _table_probe(t, k, n, narrow, tag, &pos)
    if c == NULL:
        if n_ignore and _is_ignored(ignore, n_ignore, k):
            return ADD_IGNORED
        if narrow:
            if t.nnarrow == t.cap_narrow and _grow_entries(
                    <void **>&t.narrow, &t.cap_narrow, sizeof(cs_entry4)) < 0:
                return ADD_NOMEM
        elif t.nwide == t.cap_wide and _grow_entries(
                <void **>&t.wide, &t.cap_wide, sizeof(cs_entry)) < 0:
            return ADD_NOMEM
        before = cs_atomic_add64(&w.nconns, 1)
        if max_conns > 0 and before >= max_conns:
            cs_atomic_add64(&w.nconns, -1)
            return ADD_FULL
        if before == 0:
            w.start_ns = cs_now_ns()
            result = ADD_OPENED
        t.count += 1
        if narrow:
            idx = t.nnarrow
            t.nnarrow += 1
            e4 = &t.narrow[idx]
            e4.key = n[0]
            c = &e4.c
            t.slots[pos] = (<uint64_t>tag << 32) | (idx + 1)
        else:
            idx = t.nwide
            t.nwide += 1
            e = &t.wide[idx]
            memcpy(&e.key, k, sizeof(cs_key))
            c = &e.c
            t.slots[pos] = (<uint64_t>tag << 32) | SLOT_WIDE | (idx + 1)
        memset(c, 0, sizeof(cs_counts))
    _add_counts(c, rx, npkts, nbytes)
    return result


cdef inline int _window_add(cs_window *w, uint32_t shard, const cs_key *k, const cs_key4 *n,
                            bint narrow, uint64_t h, bint rx, uint64_t npkts, uint64_t nbytes,
                            int64_t max_conns, const cs_ignore *ignore,
                            int n_ignore) noexcept nogil:
    """Count npkts packets of nbytes in all on k (h, n, narrow from
    _prepare).  The caller holds the shard's lock."""
    cdef cs_counts *c = _table_find(&w.shards[shard], k, n, narrow, h)
    if c != NULL:
        _add_counts(c, rx, npkts, nbytes)
        return ADD_OK
    return _window_insert(w, shard, k, n, narrow, h, rx, npkts, nbytes, max_conns,
                          ignore, n_ignore)


cdef inline void _prefetch_slot(cs_table *t, uint64_t h) noexcept nogil:
    if t.mask:
        cs_prefetch(&t.slots[<uint32_t>h & t.mask])


cdef inline void _prefetch_entry(cs_table *t, uint64_t h) noexcept nogil:
    # Only the home slot is looked at: good enough at load <= 3/4.  Both
    # ends of the entry, which may lie in two cache lines.
    cdef uint64_t s
    cdef const char *p
    if t.mask:
        s = t.slots[<uint32_t>h & t.mask]
        if s & SLOT_WIDE:
            p = <const char *>&t.wide[(<uint32_t>s & SLOT_INDEX) - 1]
            cs_prefetch(p)
            cs_prefetch(p + sizeof(cs_entry) - 1)
        elif s:
            p = <const char *>&t.narrow[<uint32_t>s - 1]
            cs_prefetch(p)
            cs_prefetch(p + sizeof(cs_entry4) - 1)


cdef void _window_free(cs_window *w) noexcept nogil:
    cdef int i
    if w == NULL:
        return
    for i in range(NSHARDS):
        free(w.shards[i].slots)
        free(w.shards[i].narrow)
        free(w.shards[i].wide)
        free(w.shards[i].times_narrow)
        free(w.shards[i].times_wide)
    _tagged_free(w.tagged)
    free(w)


cdef Py_ssize_t _window_table_bytes(cs_window *w) noexcept nogil:
    cdef Py_ssize_t total = sizeof(cs_window)
    cdef int i
    for i in range(NSHARDS):
        if w.shards[i].mask:
            total += (w.shards[i].mask + 1) * sizeof(uint64_t)
        total += w.shards[i].cap_narrow * sizeof(cs_entry4)
        total += w.shards[i].cap_wide * sizeof(cs_entry)
        total += (w.shards[i].tcap_narrow + w.shards[i].tcap_wide) * 2 * sizeof(int64_t)
    return total + _tagged_bytes(w.tagged)


cdef inline void _add128(uint64_t *lo, uint64_t *hi, uint64_t v) noexcept nogil:
    lo[0] += v
    hi[0] += lo[0] < v


cdef inline void _sum_counts(const cs_counts *c, uint64_t *p_lo, uint64_t *p_hi,
                             uint64_t *b_lo, uint64_t *b_hi) noexcept nogil:
    _add128(p_lo, p_hi, c.tx_packets)
    _add128(p_lo, p_hi, c.rx_packets)
    _add128(b_lo, b_hi, c.tx_bytes)
    _add128(b_lo, b_hi, c.rx_bytes)


cdef void _window_sums(cs_window *w, uint64_t *p_lo, uint64_t *p_hi,
                       uint64_t *b_lo, uint64_t *b_hi) noexcept nogil:
    # every entry's counters as 128-bit sums (lo, hi), tagged rows too
    cdef int i
    cdef uint32_t j
    cdef cs_ttable *t = <cs_ttable *>w.tagged
    for i in range(NSHARDS):
        for j in range(w.shards[i].nnarrow):
            _sum_counts(&w.shards[i].narrow[j].c, p_lo, p_hi, b_lo, b_hi)
        for j in range(w.shards[i].nwide):
            _sum_counts(&w.shards[i].wide[j].c, p_lo, p_hi, b_lo, b_hi)
    if t != NULL:
        for j in range(t.count):
            _sum_counts(&t.entries[j].c, p_lo, p_hi, b_lo, b_hi)


cdef void _window_totals(cs_window *w, uint64_t *packets, uint64_t *nbytes) noexcept nogil:
    # The wrapping 64-bit totals are the low words of the exact sums: one
    # walk over the entry kinds serves both.
    cdef uint64_t p_hi = 0, b_hi = 0
    packets[0] = 0
    nbytes[0] = 0
    _window_sums(w, packets, &p_hi, nbytes, &b_hi)


cdef uint64_t _random_seed():
    return int.from_bytes(os.urandom(8), "little")
