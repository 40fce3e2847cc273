/* Per-thread lane numbers for the single-packet path of free-threaded builds.
 *
 * A thread gets a number the first time it counts a packet; lanes are chosen
 * by it, so that threads started one after another use different lanes
 * (a hash of the thread id would put two of them in one lane 1 time in
 * CS_LANES).  The number only spreads contention: any thread may use any
 * lane, each lane has its own lock.
 */
#ifndef CS_LANES_H
#define CS_LANES_H

#ifdef Py_GIL_DISABLED
#define CS_FREE_THREADED 1
#else
#define CS_FREE_THREADED 0
#endif

#if defined(_MSC_VER)
#include <windows.h>
static __declspec(thread) unsigned cs_lane_tls;
static volatile LONG cs_lane_next;
static inline unsigned cs_thread_lane(void) {
    unsigned v = cs_lane_tls;
    if (v == 0) {
        v = (unsigned)InterlockedIncrement(&cs_lane_next);
        cs_lane_tls = v;
    }
    return v - 1;
}
#else
static _Thread_local unsigned cs_lane_tls;
static unsigned cs_lane_next;
static inline unsigned cs_thread_lane(void) {
    unsigned v = cs_lane_tls;
    if (v == 0) {
        v = __atomic_add_fetch(&cs_lane_next, 1, __ATOMIC_RELAXED);
        cs_lane_tls = v;
    }
    return v - 1;
}
#endif

#endif
