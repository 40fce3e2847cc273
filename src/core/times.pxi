# First and last packet time per connection, for windows that track times
# (Core(track_times=True): Statistics(track_times=True), and the capture
# replay of `connstats read`).
#
# The times live in an array of their own beside each shard's entries (two
# int64 per entry, same index), and are noted by a second step after
# _window_add has counted the packets, under the same shard lock: the entry
# is found again through the slots, which that add has just brought into the
# cache.  So _window_add, the entries and the default update path are those
# of a core without times; a core that tracks them pays the second probe, the
# clock read and 16 bytes per connection.

cdef extern from *:
    """
    #define CS_TIME_NONE_FIRST INT64_MAX
    #define CS_TIME_NONE_LAST INT64_MIN
    """
    int64_t CS_TIME_NONE_FIRST
    int64_t CS_TIME_NONE_LAST


cdef inline int _times_grow(cs_table *t, uint32_t have) noexcept nogil:
    """Times for entries have..capacity-1 (new ones: none yet); -1 out of memory."""
    cdef size_t nbytes
    cdef int64_t *grown
    cdef uint32_t i
    if cs_array_bytes(t.capacity, 2 * sizeof(int64_t), &nbytes) < 0:
        return -1
    grown = <int64_t *>realloc(t.times, nbytes)
    if grown == NULL:
        return -1
    for i in range(have, t.capacity):
        grown[2 * i] = CS_TIME_NONE_FIRST
        grown[2 * i + 1] = CS_TIME_NONE_LAST
    t.times = grown
    return 0


cdef int _times_mark(cs_window *w, uint32_t shard, const cs_key *k, uint64_t h,
                     const int64_t *span) noexcept nogil:
    """Note span (first, last ns) on k's entry, which _window_add has just
    counted; the caller holds the shard's lock.  -1 out of memory (the
    packets stay counted, without their times)."""
    cdef cs_table *t = &w.shards[shard]
    cdef uint32_t tag = <uint32_t>h
    cdef uint32_t pos, idx
    cdef uint64_t s
    cdef int64_t *times
    if t.mask == 0:
        return 0
    pos = tag & t.mask
    while True:
        s = t.slots[pos]
        if s == 0:
            return 0  # not there (the add failed): nothing to note
        if <uint32_t>(s >> 32) == tag and cs_key40_equal(&t.entries[<uint32_t>s - 1].key, k):
            break
        pos = (pos + 1) & t.mask
    idx = <uint32_t>s - 1
    if t.times_cap < t.capacity:
        if _times_grow(t, t.times_cap) < 0:
            return -1
        t.times_cap = t.capacity
    times = &t.times[2 * idx]
    # min/max, not "first write wins": batches of a merged capture may come
    # out of time order
    if span[0] < times[0]:
        times[0] = span[0]
    if span[1] > times[1]:
        times[1] = span[1]
    return 0


cdef inline void _times_of(const cs_table *t, uint32_t idx, int64_t *first,
                           int64_t *last) noexcept nogil:
    """Entry idx's times; the "none" pair if they could not be stored (out of
    memory when the entry was added)."""
    if idx < t.times_cap:
        first[0] = t.times[2 * idx]
        last[0] = t.times[2 * idx + 1]
    else:
        first[0] = CS_TIME_NONE_FIRST
        last[0] = CS_TIME_NONE_LAST
