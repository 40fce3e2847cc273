# Per-thread lanes for the single-packet path, on free-threaded builds only.
#
# Two threads counting disjoint connections one packet at a time through one
# shared table meet on its shard locks: every call writes the cache line of
# the lock it takes, and that line was last written by the other thread about
# half of the time, so the calls run at the speed of the line moving between
# cores.  Here a thread appends each packet's key to its own lane (a lock on a
# line that stays with the thread, and a short buffer) and the lane is added
# to the table LANE_N packets at a time, taking each shard lock once.
#
# Exactness: cut(), close(), connections and table_bytes take every lane lock
# and add the lanes to the table first, so nothing counted before them is
# missed.  Timing: a lane is only used while the open window already has a
# connection (``window_open``); the first packet of a window goes straight to
# the table, starting the window's clock and waking the flush thread as before.
# With max_conns, where packet order decides where a window is cut, lanes are
# not used.  GIL builds compile none of this (CS_FREE_THREADED is 0).

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
