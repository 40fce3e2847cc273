# First and last packet time per connection, for windows that track times
# (Core(track_times=True): Statistics(track_times=True), and the capture
# replay of `connstats read`).
#
# The times live in arrays of their own beside each shard's two arrays of
# entries (times_narrow, times_wide: two int64 per entry, same index), and
# are noted by a second step after
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


cdef inline int _times_grow(int64_t **times, uint32_t *tcap, uint32_t capacity) noexcept nogil:
    """Room for the times of entries up to capacity (new ones: none yet);
    -1 out of memory."""
    cdef size_t nbytes
    cdef int64_t *grown
    cdef uint32_t i
    if cs_array_bytes(capacity, 2 * sizeof(int64_t), &nbytes) < 0:
        return -1
    grown = <int64_t *>realloc(times[0], nbytes)
    if grown == NULL:
        return -1
    for i in range(tcap[0], capacity):
        grown[2 * i] = CS_TIME_NONE_FIRST
        grown[2 * i + 1] = CS_TIME_NONE_LAST
    times[0] = grown
    tcap[0] = capacity
    return 0


cdef int _times_mark(cs_window *w, uint32_t shard, const cs_key *k, const cs_key4 *n,
                     bint narrow, uint64_t h, const int64_t *span) noexcept nogil:
    """Note span (first, last ns) on k's entry (h, n, narrow from _prepare),
    which _window_add has just counted; the caller holds the shard's lock.
    -1 out of memory (the packets stay counted, without their times)."""
    cdef cs_table *t = &w.shards[shard]
    cdef uint32_t pos, idx
    cdef int64_t *times
    cdef cs_counts *c
    if t.mask == 0:
        return 0
    c = _table_probe(t, k, n, narrow, <uint32_t>h, &pos)
    if c == NULL:
        return 0  # not there (the add failed or was ignored): nothing to note
    if narrow:
        # c is the counters of entry idx of its array
        idx = <uint32_t>((<char *>c - <char *>&t.narrow[0].c) // sizeof(cs_entry4))
        if t.tcap_narrow < t.cap_narrow:
            if _times_grow(&t.times_narrow, &t.tcap_narrow, t.cap_narrow) < 0:
                return -1
        times = &t.times_narrow[2 * idx]
    else:
        idx = <uint32_t>((<char *>c - <char *>&t.wide[0].c) // sizeof(cs_entry))
        if t.tcap_wide < t.cap_wide:
            if _times_grow(&t.times_wide, &t.tcap_wide, t.cap_wide) < 0:
                return -1
        times = &t.times_wide[2 * idx]
    # min/max, not "first write wins": batches of a merged capture may come
    # out of time order
    if span[0] < times[0]:
        times[0] = span[0]
    if span[1] > times[1]:
        times[1] = span[1]
    return 0


cdef inline void _times_of(const cs_table *t, bint wide, uint32_t idx, int64_t *first,
                           int64_t *last) noexcept nogil:
    """Times of entry idx of the wide or narrow array; the "none" pair if they
    could not be stored (out of memory when the entry was added)."""
    if not wide and idx < t.tcap_narrow:
        first[0] = t.times_narrow[2 * idx]
        last[0] = t.times_narrow[2 * idx + 1]
    elif wide and idx < t.tcap_wide:
        first[0] = t.times_wide[2 * idx]
        last[0] = t.times_wide[2 * idx + 1]
    else:
        first[0] = CS_TIME_NONE_FIRST
        last[0] = CS_TIME_NONE_LAST
