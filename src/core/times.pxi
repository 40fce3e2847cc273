# First and last packet time per connection, for windows that track times
# (Core(track_times=True): Statistics(track_times=True), and the capture
# replay of `connstats read`).
#
# The times live in an array of their own beside each shard's entries (two
# int64 per entry, same index), not in the entry: a window that does not
# track them (the default) keeps its entries, its memory and its update path
# as they are, apart from one test of a flag on the window.  Callers hold
# the shard's lock, as for the entries.

cdef extern from *:
    """
    #define CS_TIME_NONE_FIRST INT64_MAX
    #define CS_TIME_NONE_LAST INT64_MIN
    """
    int64_t CS_TIME_NONE_FIRST
    int64_t CS_TIME_NONE_LAST


cdef inline int _times_grow(cs_table *t, uint32_t cap) noexcept nogil:
    """Room for cap entries' times; -1 out of memory (nothing changed)."""
    cdef size_t nbytes
    cdef int64_t *grown
    if cs_array_bytes(cap, 2 * sizeof(int64_t), &nbytes) < 0:
        return -1
    grown = <int64_t *>realloc(t.times, nbytes)
    if grown == NULL:
        return -1
    t.times = grown
    return 0


cdef inline void _times_open(cs_table *t, uint32_t idx) noexcept nogil:
    t.times[2 * idx] = CS_TIME_NONE_FIRST
    t.times[2 * idx + 1] = CS_TIME_NONE_LAST


cdef inline void _times_note(cs_table *t, uint32_t idx, const int64_t *span) noexcept nogil:
    # min/max, not "first write wins": batches of a merged capture may come
    # out of time order.
    cdef int64_t *times = &t.times[2 * idx]
    if span == NULL:
        return
    if span[0] < times[0]:
        times[0] = span[0]
    if span[1] > times[1]:
        times[1] = span[1]
