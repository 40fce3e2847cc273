/* Portable primitives for the connstats core: a mutex that can be taken
 * without the GIL, a few atomics, and wall-clock time.  Kept in C so that
 * the .pyx stays free of #ifdefs and builds with gcc, clang and MSVC. */
#ifndef CONNSTATS_PLATFORM_H
#define CONNSTATS_PLATFORM_H

#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* ---- mutex ------------------------------------------------------------ */
/* A lock that can be taken without the GIL.  PyMutex is not used because it
 * has no public try-lock, which the batch path uses to work on another shard
 * instead of waiting.  Holders never touch Python objects or wait for
 * anything else, so blocking while attached to the interpreter cannot
 * deadlock.
 *
 * Each lock sits on its own cache line: the locks live in one array, and
 * threads counting into different shards must not bounce a shared line. */
#define CS_CACHE_LINE 64
#if defined(_WIN32)
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
typedef struct { SRWLOCK l; char pad[CS_CACHE_LINE - sizeof(SRWLOCK)]; } cs_mutex;
static inline int cs_mutex_init(cs_mutex *m) { InitializeSRWLock(&m->l); return 0; }
static inline void cs_mutex_lock(cs_mutex *m) { AcquireSRWLockExclusive(&m->l); }
static inline int cs_mutex_trylock(cs_mutex *m) { return TryAcquireSRWLockExclusive(&m->l) != 0; }
static inline void cs_mutex_unlock(cs_mutex *m) { ReleaseSRWLockExclusive(&m->l); }
#else
/* Test-and-test-and-set rather than pthread_mutex_t.  The single-packet path
 * takes a shard lock once per packet for a critical section of a few
 * nanoseconds; pthread_mutex_lock/unlock are two out-of-line calls with an
 * atomic read-modify-write each (about 19 ns per packet, half of connstats'
 * cost above the interpreter's floor, see benchmarks/RESULTS.md).  This lock
 * is inline, takes one atomic exchange and releases with a plain store.
 *
 * The price is that a waiter polls instead of sleeping in the kernel.
 * Critical sections are short (one packet, one chunk of at most 256 packets,
 * or a table grow), so a waiter spins briefly, then yields its CPU, and only
 * if the holder is still busy (a large grow, or the holder was preempted on
 * an oversubscribed machine) sleeps in short naps so it does not burn a core.
 * A fork child reinitializes its locks (Core._allocate_runtime). */
#include <sched.h>
#if defined(__x86_64__) || defined(__i386__)
#define cs_cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__) || (defined(__arm__) && defined(__ARM_ARCH) && __ARM_ARCH >= 7)
#define cs_cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#else
#define cs_cpu_relax() __asm__ __volatile__("" ::: "memory")
#endif
#define CS_LOCK_SPINS 128
#define CS_LOCK_YIELDS 64
#define CS_LOCK_NAP_NS 20000
typedef struct { int held; char pad[CS_CACHE_LINE - sizeof(int)]; } cs_mutex;
static inline int cs_mutex_init(cs_mutex *m) {
    __atomic_store_n(&m->held, 0, __ATOMIC_RELEASE);
    return 0;
}
static inline int cs_mutex_trylock(cs_mutex *m) {
    /* The relaxed read first keeps waiters from stealing the line from the
     * holder with failed exchanges. */
    return __atomic_load_n(&m->held, __ATOMIC_RELAXED) == 0 &&
           __atomic_exchange_n(&m->held, 1, __ATOMIC_ACQUIRE) == 0;
}
static void cs_mutex_lock_slow(cs_mutex *m) {
    unsigned waits = 0;
    struct timespec nap = {0, CS_LOCK_NAP_NS};
    for (;;) {
        if (cs_mutex_trylock(m))
            return;
        waits++;
        if (waits < CS_LOCK_SPINS)
            cs_cpu_relax();
        else if (waits < CS_LOCK_SPINS + CS_LOCK_YIELDS)
            sched_yield();
        else
            nanosleep(&nap, NULL);
    }
}
static inline void cs_mutex_lock(cs_mutex *m) {
    if (__builtin_expect(__atomic_exchange_n(&m->held, 1, __ATOMIC_ACQUIRE) != 0, 0))
        cs_mutex_lock_slow(m);
}
static inline void cs_mutex_unlock(cs_mutex *m) {
    __atomic_store_n(&m->held, 0, __ATOMIC_RELEASE);
}
#endif

/* ---- atomics (sequentially consistent; only off the per-packet fast path
 * except cs_atomic_load_int, which is a plain relaxed read) --------------- */
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
static inline int64_t cs_atomic_add64(int64_t *p, int64_t v) {
    return _InterlockedExchangeAdd64((volatile __int64 *)p, v);
}
static inline int cs_atomic_exchange_int(int *p, int v) {
    return (int)_InterlockedExchange((volatile long *)p, (long)v);
}
static inline int cs_atomic_load_int(const int *p) { return *(const volatile int *)p; }
static inline void cs_atomic_store_int(int *p, int v) {
    _InterlockedExchange((volatile long *)p, (long)v);
}
static inline int64_t cs_atomic_load64(const int64_t *p) {
    return _InterlockedCompareExchange64((volatile __int64 *)p, 0, 0);
}
#else
static inline int64_t cs_atomic_add64(int64_t *p, int64_t v) {
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
static inline int cs_atomic_exchange_int(int *p, int v) {
    return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}
static inline int cs_atomic_load_int(const int *p) {
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}
static inline void cs_atomic_store_int(int *p, int v) {
    __atomic_store_n(p, v, __ATOMIC_SEQ_CST);
}
static inline int64_t cs_atomic_load64(const int64_t *p) {
    return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}
#endif

/* ---- prefetch --------------------------------------------------------- */
#if defined(__GNUC__) || defined(__clang__)
#define cs_prefetch(p) __builtin_prefetch((p), 1, 1)
#else
#define cs_prefetch(p) ((void)(p))
#endif

/* ---- wall clock ------------------------------------------------------- */
/* Nanoseconds since the Unix epoch.  timespec_get is C11 and exists in
 * glibc, musl, macOS >= 10.15 and the MSVC UCRT, so no #ifdef is needed. */
static inline int64_t cs_now_ns(void) {
    struct timespec ts;
    if (timespec_get(&ts, TIME_UTC) != TIME_UTC) return 0;
    return (int64_t)ts.tv_sec * 1000000000LL + (int64_t)ts.tv_nsec;
}

/* ---- hashing ---------------------------------------------------------- */
/* A keyed multiply-xorshift over the 40-byte key.  Not cryptographic, but
 * the per-process random seed keeps precomputed collision sets (hash
 * flooding from untrusted traffic) from working across processes. */
static inline uint64_t cs_load64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t cs_mix64(uint64_t h) {
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ULL;
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ULL;
    h ^= h >> 32;
    return h;
}

static inline uint64_t cs_rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

/* Five independent multiply lanes (they pipeline instead of forming one long
 * dependency chain), folded with rotations and finished by a full-avalanche
 * mix, so both the low bits (slot tag) and top bits (shard) are well mixed. */
static inline uint64_t cs_hash40(const void *key, uint64_t seed) {
    const unsigned char *p = (const unsigned char *)key;
    uint64_t a = (cs_load64(p) ^ seed) * 0x9E3779B97F4A7C15ULL;
    uint64_t b = (cs_load64(p + 8) ^ cs_rotl(seed, 13)) * 0xbf58476d1ce4e5b9ULL;
    uint64_t c = (cs_load64(p + 16) ^ cs_rotl(seed, 29)) * 0x94d049bb133111ebULL;
    uint64_t d = (cs_load64(p + 24) ^ cs_rotl(seed, 41)) * 0xd6e8feb86659fd93ULL;
    uint64_t e = (cs_load64(p + 32) ^ cs_rotl(seed, 53)) * 0xa0761d6478bd642fULL;
    return cs_mix64(a ^ cs_rotl(b, 21) ^ cs_rotl(c, 37) ^ cs_rotl(d, 49) ^ cs_rotl(e, 11));
}

/* The same over the 16-byte compact key of an IPv4 connection: two lanes. */
static inline uint64_t cs_hash16(const void *key, uint64_t seed) {
    const unsigned char *p = (const unsigned char *)key;
    uint64_t a = (cs_load64(p) ^ seed) * 0x9E3779B97F4A7C15ULL;
    uint64_t b = (cs_load64(p + 8) ^ cs_rotl(seed, 13)) * 0xbf58476d1ce4e5b9ULL;
    return cs_mix64(a ^ cs_rotl(b, 21));
}

static inline int cs_key16_equal(const void *a, const void *b) {
    const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
    return ((cs_load64(x) ^ cs_load64(y)) | (cs_load64(x + 8) ^ cs_load64(y + 8))) == 0;
}

/* ---- keys written whole ---------------------------------------------- */
/* The decoder writes a key as five 8-byte words, never field by field.  A
 * key is read back at once as 8-byte words (hashed, compared with the one
 * before), and a load that spans several narrower stores still in flight
 * cannot take its value from them: it waits for them to reach the cache
 * (a store-to-load forwarding stall).  Written byte by byte, the batch
 * loop at one connection spent most of its time in that wait
 * (benchmarks/RESULTS.md, issue 24). */
static inline void cs_store64(unsigned char *p, uint64_t v) {
    memcpy(p, &v, 8);
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define CS_BIG_ENDIAN 1
#else
#define CS_BIG_ENDIAN 0
#endif

/* The first word of a key (proto, kind, sfam, dfam, then sport and dport as
 * host uint16s), with the layout those fields have in memory. */
static inline uint64_t cs_key_head(unsigned proto, unsigned kind, unsigned sfam,
                                   unsigned dfam, unsigned sport, unsigned dport) {
#if CS_BIG_ENDIAN
    return ((uint64_t)proto << 56) | ((uint64_t)kind << 48) | ((uint64_t)sfam << 40) |
           ((uint64_t)dfam << 32) | ((uint64_t)sport << 16) | (uint64_t)dport;
#else
    return (uint64_t)proto | ((uint64_t)kind << 8) | ((uint64_t)sfam << 16) |
           ((uint64_t)dfam << 24) | ((uint64_t)sport << 32) | ((uint64_t)dport << 48);
#endif
}

/* A head word with source and destination swapped (families and ports). */
static inline uint64_t cs_key_head_swapped(uint64_t h) {
#if CS_BIG_ENDIAN
    return (h & 0xFFFF000000000000ULL) | ((h << 8) & 0x0000FF0000000000ULL) |
           ((h >> 8) & 0x000000FF00000000ULL) | ((h << 16) & 0x00000000FFFF0000ULL) |
           ((h >> 16) & 0x000000000000FFFFULL);
#else
    return (h & 0x000000000000FFFFULL) | ((h >> 8) & 0x0000000000FF0000ULL) |
           ((h << 8) & 0x00000000FF000000ULL) | ((h >> 16) & 0x0000FFFF00000000ULL) |
           ((h << 16) & 0xFFFF000000000000ULL);
#endif
}

/* The word of an IPv4 address in a key: its 4 bytes, then 4 zero bytes. */
static inline uint64_t cs_addr4_word(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
#if CS_BIG_ENDIAN
    return (uint64_t)v << 32;
#else
    return (uint64_t)v;
#endif
}

/* All 40 bytes of a key: the head word, then two words of each address. */
static inline void cs_key_store(void *key, uint64_t head, uint64_t s0, uint64_t s1,
                                uint64_t d0, uint64_t d1) {
    unsigned char *p = (unsigned char *)key;
    cs_store64(p, head);
    cs_store64(p + 8, s0);
    cs_store64(p + 16, s1);
    cs_store64(p + 24, d0);
    cs_store64(p + 32, d1);
}

/* Key equality without a call to memcmp. */
static inline int cs_key40_equal(const void *a, const void *b) {
    const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
    return ((cs_load64(x) ^ cs_load64(y)) | (cs_load64(x + 8) ^ cs_load64(y + 8)) |
            (cs_load64(x + 16) ^ cs_load64(y + 16)) | (cs_load64(x + 24) ^ cs_load64(y + 24)) |
            (cs_load64(x + 32) ^ cs_load64(y + 32))) == 0;
}

/* A new, empty instance of a heap type (what object.__new__(cls) does,
 * without the call).  Returns a new reference. */
static inline PyObject *cs_alloc_instance(PyObject *cls) {
    PyTypeObject *type = (PyTypeObject *)cls;
    return type->tp_alloc(type, 0);
}

/* ---- sizes ------------------------------------------------------------ */
/* *out = n * size unless that exceeds PY_SSIZE_T_MAX (what PyMem_Malloc
 * also refuses); then -1.  Every array allocation of the core sizes itself
 * with this: on 32-bit builds n * sizeof(...) wraps for reachable n. */
static inline int cs_array_bytes(size_t n, size_t size, size_t *out) {
    if (size != 0 && n > (size_t)PY_SSIZE_T_MAX / size)
        return -1;
    *out = n * size;
    return 0;
}

/* ---- the index's slot arrays ------------------------------------------- */
/* An update reads one slot at a random place of its shard's slot array.  At a
 * million connections that array is 2 MiB per shard, and such a read is also
 * a TLB miss, which under a hypervisor walks two page tables.  Slot arrays of
 * 2 MiB and more therefore go on transparent huge pages where Linux offers
 * them (madvise: a hint, ignored where THP is off): single updates at a
 * million connections took ~5% less time (benchmarks/RESULTS.md, issue 24).
 * Every page of such an array is written at once anyway (the rehash spreads
 * slots all over it), so the resident size does not change.  The entry
 * arrays stay on ordinary pages: they are filled from the front, and a huge
 * page at their end would be resident before it is used (IPv6 entries at a
 * million connections: +10 bytes per connection).  Elsewhere, and for small
 * arrays: calloc.  Either way the array is released with free(). */
#if defined(__linux__)
#include <stdlib.h>
#include <sys/mman.h>
#endif
#define CS_HUGE_PAGE ((size_t)2 << 20)
static inline void *cs_slots_alloc(size_t n, size_t size) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    size_t bytes;
    if (cs_array_bytes(n, size, &bytes) == 0 && bytes >= CS_HUGE_PAGE) {
        void *p = NULL;
        if (posix_memalign(&p, CS_HUGE_PAGE, bytes) != 0)
            return NULL;
        (void)madvise(p, bytes, MADV_HUGEPAGE);
        memset(p, 0, bytes);
        return p;
    }
#endif
    return calloc(n, size);
}

#endif /* CONNSTATS_PLATFORM_H */
