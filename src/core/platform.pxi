# The C layer under the core: shard locks, atomics, the keyed hash and
# the timer, all in cs_platform.h (portable C: gcc, clang and MSVC).
# No Python object is touched while one of these locks is held, so the
# code holding them can run without the GIL.

cdef extern from "Python.h":
    void PyObject_GC_UnTrack(void *op)

cdef extern from "pythread.h" nogil:
    PyLockStatus PyThread_acquire_lock_timed(PyThread_type_lock, long long, int)

cdef extern from "cs_platform.h" nogil:
    ctypedef struct cs_mutex:
        pass
    int cs_mutex_init(cs_mutex *m)
    void cs_mutex_lock(cs_mutex *m)
    bint cs_mutex_trylock(cs_mutex *m)
    void cs_mutex_unlock(cs_mutex *m)
    int64_t cs_atomic_add64(int64_t *p, int64_t v)
    int64_t cs_atomic_load64(const int64_t *p)
    int cs_atomic_exchange_int(int *p, int v)
    int cs_atomic_load_int(const int *p)
    void cs_atomic_store_int(int *p, int v)
    void cs_prefetch(const void *p)
    int64_t cs_now_ns()
    uint64_t cs_mix64(uint64_t h)
    uint64_t cs_hash40(const void *key, uint64_t seed)
    bint cs_key40_equal(const void *a, const void *b)
    uint64_t cs_load64(const unsigned char *p)
    void cs_store64(unsigned char *p, uint64_t v)
    uint64_t cs_key_head(unsigned proto, unsigned kind, unsigned sfam, unsigned dfam,
                         unsigned sport, unsigned dport)
    uint64_t cs_key_head_swapped(uint64_t h)
    uint64_t cs_addr4_word(const unsigned char *p)
    void cs_key_store(void *key, uint64_t head, uint64_t s0, uint64_t s1,
                      uint64_t d0, uint64_t d1)
    uint64_t cs_hash16(const void *key, uint64_t seed)
    bint cs_key16_equal(const void *a, const void *b)
    object cs_alloc_instance(object cls)
    int cs_array_bytes(size_t n, size_t size, size_t *out)
    void *cs_slots_alloc(size_t n, size_t size)
