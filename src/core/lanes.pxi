# Lanes for the single-packet path: packets held back and added to the table
# LANE_N at a time.
#
# Free-threaded builds, one lane per thread: two threads counting disjoint
# connections one packet at a time through one shared table meet on its shard
# locks: every call writes the cache line of the lock it takes, and that line
# was last written by the other thread about half of the time, so the calls
# run at the speed of the line moving between cores.  Here a thread appends
# each packet's key to its own lane (a lock on a line that stays with the
# thread, and a short buffer) and the lane is added to the table LANE_N
# packets at a time, taking each shard lock once.
#
# GIL builds, one lane, once the open window has LANE_MIN_CONNS connections:
# a table that large is not in the cache, so a direct update waits for its
# slot, then for its entry, one packet after another.  A lane's drain asks
# for the slots and entries of the packets 16 and 8 ahead while it adds the
# current one, so the waits overlap (at a million connections: about 50 ns
# a call instead of 190; benchmarks/RESULTS.md).  Smaller windows count
# straight into the table as before.
#
# Exactness: cut(), close(), connections and table_bytes take every lane lock
# and add the lanes to the table first, so nothing counted before them is
# missed.  Timing: a lane is only used while the open window already has a
# connection (``window_open``); the first packet of a window goes straight to
# the table, starting the window's clock and waking the flush thread as before.
# With max_conns, where packet order decides where a window is cut, and in a
# core that keeps times (a held packet would lose its call's time), lanes are
# not used.

cdef extern from "cs_lanes.h":
    const int CS_FREE_THREADED
    unsigned cs_thread_lane() noexcept nogil

cdef enum:
    LANES = 16          # a power of two
    # Packets buffered per lane.  Each drain takes the 8 shard locks, lines
    # last written by the other threads: 256 makes that 1 lock per 32
    # packets (two threads reached 93-98% of two unshared instances on 3.13t,
    # against 85-99% with 64; benchmarks/RESULTS.md), for 200 KB of lanes
    # per instance on free-threaded builds.
    LANE_N = 256
    # GIL builds: connections in the open window from which the single-packet
    # path goes through a lane.  Below ~10,000 the table is in cache and the
    # lane gains nothing; at 30,000 it is clearly faster, as each direct
    # update waits for its slot and entry while a drain fetches ahead
    # (RESULTS.md, "Single packets through a lane").
    LANE_MIN_CONNS = 32768


cdef int64_t _lane_min_default = LANE_MIN_CONNS


def _set_lane_min_default(conns):
    """GIL builds: cores created from now on use their lane from `conns`
    connections in the open window on (1: from its second packet, as on
    free-threaded builds).  Returns the previous value.  For tests and
    benchmarks; free-threaded builds always use their lanes."""
    global _lane_min_default
    conns = _exact_int(conns, "conns")
    if conns < 1:
        raise ValueError(f"conns: must be >= 1, got {conns}")
    previous = _lane_min_default
    _lane_min_default = min(conns, 2 ** 62)
    return previous


cdef struct cs_lane:
    cs_mutex lock
    int n
    uint8_t rx[LANE_N]
    uint64_t sizes[LANE_N]
    cs_key keys[LANE_N]
    char pad[64]        # the next lane's lock on another cache line


# Deferred reference counting (CPython 3.14+, free-threaded): an object
# shared by every thread that calls it (Statistics' bound update methods)
# otherwise has its reference count written from all of them on each call,
# one cache line bouncing between cores.  The object is then freed by the
# garbage collector instead of at its last reference.  A no-op elsewhere.
cdef extern from *:
    """
    #if defined(Py_GIL_DISABLED) && PY_VERSION_HEX >= 0x030E0000
    #define CS_HAS_DEFERRED_REFCOUNT 1
    static int cs_defer_refcount(PyObject *o) { return PyUnstable_Object_EnableDeferredRefcount(o); }
    #else
    #define CS_HAS_DEFERRED_REFCOUNT 0
    static int cs_defer_refcount(PyObject *o) { (void)o; return 0; }
    #endif
    """
    const int CS_HAS_DEFERRED_REFCOUNT
    int cs_defer_refcount(object o) except -1

#: True where defer_refcount() can enable it (free-threaded CPython 3.14+).
HAS_DEFERRED_REFCOUNT = bool(CS_HAS_DEFERRED_REFCOUNT)


def defer_refcount(obj):
    """Enable deferred reference counting on ``obj`` where the runtime has it.

    Returns True if it was enabled (free-threaded CPython 3.14+ only).
    """
    return cs_defer_refcount(obj) == 1
