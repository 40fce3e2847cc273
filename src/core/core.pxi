# The core: the Core type, its locks, the open window, the pending-window
# queue and every entry point that counts.

@cython.final
cdef class Core:
    """Counter table with C locks; see connstats.Statistics for the public API."""

    cdef cs_mutex *locks        # NSHARDS shard locks + the pending-queue lock
    cdef cs_window *cur
    cdef int closed
    cdef int64_t max_conns
    cdef int64_t next_generation
    cdef uint64_t seed
    cdef cs_ignore *ignore
    cdef int n_ignore
    # pending windows (cut by max_conns), guarded by locks[NSHARDS]
    cdef cs_window *qhead
    cdef cs_window *qtail
    cdef int64_t qlen
    cdef int64_t qconns
    cdef int64_t max_pending
    cdef int64_t max_pending_conns
    cdef uint64_t dropped_windows_
    cdef uint64_t dropped_packets_
    cdef uint64_t dropped_bytes_
    # wake-up for the flush thread: a lock used as a binary semaphore
    cdef PyThread_type_lock sig
    cdef int signaled
    # max_conns == 0, no times: lanes (lanes.pxi); per thread on
    # free-threaded builds, one on GIL builds (used by large windows only)
    cdef cs_lane *lanes
    cdef int n_lanes
    # Lanes are in use: on free-threaded builds once the open window has a
    # connection, on GIL builds once it has lane_min; atomic
    cdef int window_open
    cdef int64_t lane_min
    cdef bint track_times       # first/last time per connection (times.pxi)

    def __cinit__(self, max_conns=0, ignore_destinations=(), max_pending=1024,
                  max_pending_conns=1 << 21, track_times=False):
        cdef Py_ssize_t i, n
        cdef list ignored
        # Exact ints before any comparison (an int subclass can lie in its
        # own comparisons); clamped so that they fit int64 counters.
        max_conns = _exact_int(max_conns, "max_conns")
        if max_conns < 0:
            raise ValueError(f"max_conns: must be >= 0, got {max_conns}")
        max_pending = _exact_int(max_pending, "max_pending")
        max_pending_conns = _exact_int(max_pending_conns, "max_pending_conns")
        for name, value in (("max_pending", max_pending), ("max_pending_conns", max_pending_conns)):
            if value < 1:
                raise ValueError(f"{name}: must be >= 1, got {value}")
        try:
            destinations = tuple(ignore_destinations)
        except TypeError:
            raise TypeError(
                f"ignore_destinations: expected an iterable of addresses, "
                f"got {type(ignore_destinations).__name__}") from None
        ignored = [_addr.packed_address(a, "ignore_destinations") for a in destinations]
        if not isinstance(track_times, bool):
            raise TypeError(f"track_times: expected a bool, got {type(track_times).__name__}")
        self.track_times = track_times
        self.max_conns = min(max_conns, 2 ** 62)
        self.max_pending = min(max_pending, 2 ** 62)
        self.max_pending_conns = min(max_pending_conns, 2 ** 62)
        self.seed = _random_seed()
        self._allocate_runtime()
        n = len(ignored)
        if n:
            if n > 0x7FFFFFFF:
                raise ValueError(f"ignore_destinations: too many addresses ({n})")
            self.ignore = <cs_ignore *>_alloc_array(n, sizeof(cs_ignore))
            memset(self.ignore, 0, n * sizeof(cs_ignore))
            for i in range(n):
                # packed_address() already checks; _packed_into re-checks on
                # the exact bytes it copies from.
                self.ignore[i].fam = _packed_into(ignored[i], "ignore_destinations",
                                                  self.ignore[i].addr)
            self.n_ignore = <int>n

    cdef int _allocate_runtime(self) except -1:
        # Locks, the empty window and the wake-up lock; also used after fork.
        cdef int i
        self.locks = <cs_mutex *>malloc((NSHARDS + 1) * sizeof(cs_mutex))
        if self.locks == NULL:
            raise MemoryError()
        for i in range(NSHARDS + 1):
            if cs_mutex_init(&self.locks[i]) != 0:
                raise MemoryError("connstats: cannot initialise a mutex")
        self.cur = self._new_window()
        if self.cur == NULL:
            raise MemoryError()
        self.qhead = NULL
        self.qtail = NULL
        self.qlen = 0
        self.qconns = 0
        self.sig = PyThread_allocate_lock()
        if self.sig == NULL:
            raise MemoryError()
        PyThread_acquire_lock(self.sig, WAIT_LOCK)
        self.signaled = 0
        self.window_open = 0
        self.lanes = NULL
        self.n_lanes = 0
        if self.lane_min == 0:
            self.lane_min = 1 if CS_FREE_THREADED else _lane_min_default
        # Lanes hold packets back, so they would lose the time of the update
        # call: a core that tracks times counts straight into the table.
        if self.max_conns == 0 and not self.track_times:
            self.n_lanes = LANES if CS_FREE_THREADED else 1
            self.lanes = <cs_lane *>calloc(self.n_lanes, sizeof(cs_lane))
            if self.lanes == NULL:
                raise MemoryError()
            for i in range(self.n_lanes):
                if cs_mutex_init(&self.lanes[i].lock) != 0:
                    raise MemoryError("connstats: cannot initialise a mutex")
        return 0

    def __dealloc__(self):
        cdef cs_window *w
        _window_free(self.cur)
        w = self.qhead
        while w != NULL:
            nxt = w.next
            _window_free(w)
            w = nxt
        if self.sig != NULL:
            PyThread_free_lock(self.sig)
        free(self.locks)
        free(self.ignore)
        free(self.lanes)

    cdef cs_window *_new_window(self) noexcept nogil:
        cdef cs_window *w = <cs_window *>calloc(1, sizeof(cs_window))
        if w != NULL:
            w.generation = self.next_generation
            w.track_times = self.track_times
            self.next_generation += 1
        return w

    # -- locking -----------------------------------------------------------

    cdef inline void _lock_all(self) noexcept nogil:
        cdef int i
        for i in range(NSHARDS):
            cs_mutex_lock(&self.locks[i])

    cdef inline void _unlock_all(self) noexcept nogil:
        cdef int i
        for i in range(NSHARDS - 1, -1, -1):
            cs_mutex_unlock(&self.locks[i])

    cdef inline void _notify(self) noexcept nogil:
        if cs_atomic_exchange_int(&self.signaled, 1) == 0:
            PyThread_release_lock(self.sig)

    cdef int _cut_full(self, int64_t generation) noexcept nogil:
        """Replace the open window by a new one and queue it, if it still has
        `generation` (compared by generation, not by pointer: a freed window's
        address can come back as a new window's)."""
        cdef cs_window *fresh
        cdef cs_window *full
        cdef cs_window *dropped = NULL
        cdef uint64_t packets, nbytes
        self._lock_all()
        full = self.cur
        if self.closed or full.generation != generation:
            # Closed: the window stays current, so that shutdown's final
            # cut() delivers it instead of it being stranded in the queue.
            self._unlock_all()  # or another thread cut it first
            return 0
        fresh = self._new_window()
        if fresh == NULL:
            self._unlock_all()
            # The full window stays open: wake the flush thread anyway, so it
            # delivers it (and frees memory) instead of waiting for its period.
            self._notify()
            return -1
        self.cur = fresh
        full.end_ns = cs_now_ns()
        cs_mutex_lock(&self.locks[NSHARDS])
        # Bounded by windows and by connections (memory); one window is
        # always accepted so that a huge max_conns still gets delivered.
        if self.qlen == 0 or (self.qlen < self.max_pending and
                              self.qconns + full.nconns <= self.max_pending_conns):
            full.next = NULL
            if self.qtail == NULL:
                self.qhead = full
            else:
                self.qtail.next = full
            self.qtail = full
            self.qlen += 1
            self.qconns += full.nconns
        else:
            dropped = full
        cs_mutex_unlock(&self.locks[NSHARDS])
        self._unlock_all()
        if dropped != NULL:
            # Accounted outside the shard locks: walking it is O(n).
            _window_totals(dropped, &packets, &nbytes)
            _window_free(dropped)
            cs_mutex_lock(&self.locks[NSHARDS])
            self.dropped_windows_ += 1
            self.dropped_packets_ += packets
            self.dropped_bytes_ += nbytes
            cs_mutex_unlock(&self.locks[NSHARDS])
        self._notify()
        return 0

    # -- counting (no Python objects; callable without the GIL) ------------

    cdef inline int _count_key(self, const cs_key *k, bint rx, uint64_t npkts,
                               uint64_t nbytes) noexcept nogil:
        cdef cs_key4 n
        cdef bint narrow
        cdef uint64_t h = _prepare(k, self.seed, &n, &narrow)
        cdef uint32_t shard = <uint32_t>(h >> SHARD_SHIFT)
        cdef cs_counts *c
        cs_mutex_lock(&self.locks[shard])
        if not self.closed and not self.track_times:
            # The hit path, kept small: everything else is in _count_new.
            c = _table_find(&self.cur.shards[shard], k, &n, narrow, h)
            if c != NULL:
                _add_counts(c, rx, npkts, nbytes)
                cs_mutex_unlock(&self.locks[shard])
                return 0
        return self._count_new(k, &n, narrow, h, shard, rx, npkts, nbytes)

    cdef int _count_new(self, const cs_key *k, const cs_key4 *n, bint narrow, uint64_t h,
                        uint32_t shard, bint rx, uint64_t npkts,
                        uint64_t nbytes) noexcept nogil:
        """The rest of _count_key, which holds the shard's lock and found no k
        (or keeps times: noted here, after the add)."""
        cdef cs_window *w
        cdef int64_t generation
        cdef int r
        cdef int64_t span[2]
        cdef bint no_time = False
        if self.track_times:
            span[0] = cs_now_ns()
            span[1] = span[0]
        while True:
            if self.closed:
                cs_mutex_unlock(&self.locks[shard])
                return 0
            w = self.cur
            generation = w.generation
            r = _window_insert(w, shard, k, n, narrow, h, rx, npkts, nbytes, self.max_conns,
                               self.ignore, self.n_ignore)
            if self.track_times and (r == ADD_OK or r == ADD_OPENED):
                no_time = _times_mark(w, shard, k, n, narrow, h, span) < 0
            if r == ADD_OK:
                self._note_size(w)
            cs_mutex_unlock(&self.locks[shard])
            if r == ADD_FULL:
                if self._cut_full(generation) < 0:
                    return -1
                cs_mutex_lock(&self.locks[shard])
                continue
            if r == ADD_OPENED:
                self._notify()
                return -1 if no_time else 0
            return -1 if no_time else r

    cdef inline void _note_size(self, cs_window *w) noexcept nogil:
        # GIL builds: open the lane once the window w is large.  Called under
        # a shard lock with w current: cut() clears window_open under every
        # shard lock after the swap, so it never stays set for a new window.
        if (not CS_FREE_THREADED and self.lanes != NULL
                and not cs_atomic_load_int(&self.window_open)
                and cs_atomic_load64(&w.nconns) >= self.lane_min):
            cs_atomic_store_int(&self.window_open, 1)

    cdef int _count_tagged(self, const cs_key *k, uint32_t vni, bint rx, uint64_t nbytes,
                           bint timed, int64_t t) noexcept nogil:
        """_count_key for a row with a tunnel's VNI (tagged.pxi), under shard 0's
        lock; t: the packet's time when the core keeps times (timed)."""
        cdef cs_tkey tk
        cdef uint64_t h
        cdef cs_window *w
        cdef int64_t generation
        cdef int r
        memset(&tk, 0, sizeof(cs_tkey))
        memcpy(&tk.key, k, sizeof(cs_key))
        tk.vni = vni
        h = _tagged_hash(&tk, self.seed)
        while True:
            cs_mutex_lock(&self.locks[0])
            if self.closed:
                cs_mutex_unlock(&self.locks[0])
                return 0
            w = self.cur
            generation = w.generation
            r = _tagged_add(w, &tk, h, rx, nbytes, self.max_conns, timed, t)
            cs_mutex_unlock(&self.locks[0])
            if r == ADD_FULL:
                if self._cut_full(generation) < 0:
                    return -1
                continue
            if r == ADD_OPENED:
                self._notify()
                return 0
            return r  # ADD_OK or ADD_NOMEM

    cdef inline int _count_packet(self, const uint8_t *p, Py_ssize_t n, bint rx) noexcept nogil:
        cdef cs_key k
        if cs_atomic_load_int(&self.closed):
            return 0  # shut down: drop without parsing
        _decode(p, n, &k)
        if rx:
            _swap(&k)
        # ignore_destinations is checked where a connection would be
        # inserted (_window_insert): an ignored one is never in the table.
        if self.lanes != NULL and (CS_FREE_THREADED or cs_atomic_load_int(&self.window_open)):
            return self._count_lane(&k, rx, <uint64_t>n)
        return self._count_key(&k, rx, 1, <uint64_t>n)

    # -- lanes (per thread on free-threaded builds; see lanes.pxi) ----------

    cdef int _count_lane(self, const cs_key *k, bint rx, uint64_t nbytes) noexcept nogil:
        cdef cs_lane *lane = &self.lanes[
            (cs_thread_lane() & (LANES - 1)) if CS_FREE_THREADED else 0]
        cdef int r = 0
        cdef int i
        cs_mutex_lock(&lane.lock)
        if not cs_atomic_load_int(&self.window_open):
            # The window's first packet goes straight in (clock, wake-up);
            # on GIL builds, a window cut since the caller looked.
            r = self._count_key(k, rx, 1, nbytes)
            if r == ADD_OK and CS_FREE_THREADED:
                cs_atomic_store_int(&self.window_open, 1)
            elif r > 0:
                r = 0  # ignored: the window may still be empty
        else:
            if lane.n == LANE_N:
                r = self._lane_drain(lane)
            if r == 0:
                i = lane.n
                memcpy(&lane.keys[i], k, sizeof(cs_key))
                lane.sizes[i] = nbytes
                lane.rx[i] = rx
                lane.n = i + 1
        cs_mutex_unlock(&lane.lock)
        return r

    cdef int _lane_drain(self, cs_lane *lane) noexcept nogil:
        """Add a lane's packets to the table; the caller holds the lane's lock.

        Each shard lock is taken once.  Out of memory, the packets not added
        stay in the lane and -1 is returned.
        """
        cdef uint64_t hashes[LANE_N]
        cdef cs_key4 compact[LANE_N]
        cdef bint narrow[LANE_N]
        cdef uint8_t shard_of[LANE_N]
        cdef uint8_t added[LANE_N]
        cdef uint16_t order[LANE_N]
        cdef uint16_t fill[NSHARDS + 1]
        cdef Py_ssize_t i, j = 0, kept = 0, m = lane.n
        cdef uint32_t s
        cdef cs_window *w
        cdef int r
        cdef bint opened = False, failed = False
        if m == 0:
            return 0
        memset(fill, 0, sizeof(fill))
        for i in range(m):
            hashes[i] = _prepare(&lane.keys[i], self.seed, &compact[i], &narrow[i])
            shard_of[i] = <uint8_t>(hashes[i] >> SHARD_SHIFT)
            fill[shard_of[i] + 1] += 1
            added[i] = 0
        for s in range(NSHARDS):
            fill[s + 1] += fill[s]
        self._group(m, shard_of, fill, order)
        for s in range(NSHARDS):
            if j == fill[s]:
                continue
            cs_mutex_lock(&self.locks[s])
            if self.closed:
                # counted after close(): dropped, as every later update
                cs_mutex_unlock(&self.locks[s])
                lane.n = 0
                return 0
            w = self.cur
            # As _add_run: the slot of item j+16, then the entry that item
            # j+8's slot names; what makes a lane pay off on a large table.
            # Written out in both loops: the same steps as shared inline
            # helpers measured 15-28% slower on both paths (gcc 12 did not
            # inline them alike; RESULTS.md, "Single packets through a lane").
            for i in range(j, j + 16 if j + 16 < fill[s] else fill[s]):
                _prefetch_slot(&w.shards[s], hashes[order[i]])
            while j < fill[s]:
                if j + 16 < fill[s]:
                    _prefetch_slot(&w.shards[s], hashes[order[j + 16]])
                if j + 8 < fill[s]:
                    _prefetch_entry(&w.shards[s], hashes[order[j + 8]])
                i = order[j]
                r = _window_add(w, s, &lane.keys[i], &compact[i], narrow[i], hashes[i],
                                lane.rx[i], 1, lane.sizes[i], 0, self.ignore, self.n_ignore)
                if r == ADD_NOMEM:
                    failed = True
                    break
                if r == ADD_OPENED:
                    opened = True
                added[i] = 1
                j += 1
            cs_mutex_unlock(&self.locks[s])
            if failed:
                break
        if failed:
            for i in range(m):
                if not added[i]:
                    if kept != i:
                        memcpy(&lane.keys[kept], &lane.keys[i], sizeof(cs_key))
                        lane.sizes[kept] = lane.sizes[i]
                        lane.rx[kept] = lane.rx[i]
                    kept += 1
        lane.n = <int>kept
        if opened:
            self._notify()
        return -1 if failed else 0

    cdef int _lanes_lock_drain(self) noexcept nogil:
        """Take every lane lock (in order) and empty the lanes into the table."""
        cdef int i, r = 0
        if self.lanes == NULL:
            return 0
        for i in range(self.n_lanes):
            cs_mutex_lock(&self.lanes[i].lock)
            if self._lane_drain(&self.lanes[i]) < 0:
                r = -1
        return r

    cdef void _lanes_unlock(self) noexcept nogil:
        cdef int i
        if self.lanes == NULL:
            return
        for i in range(self.n_lanes - 1, -1, -1):
            cs_mutex_unlock(&self.lanes[i].lock)

    cdef int _count_many(self, const uint8_t **ptrs, const int64_t *lens,
                         const uint8_t *records, Py_ssize_t n, bint rx,
                         const int64_t *times=NULL, bint physical=False,
                         const int64_t *vnis=NULL) noexcept nogil:
        """Count n packets: parse a chunk, then take each shard lock once.

        With records != NULL the n items are RECORD_BYTES records instead
        (records.pxi; checked by the caller), each with its own direction,
        kind and counts, and ptrs, lens and rx are not used.

        In a core that tracks times, times[i] is packet i's time (ns), or,
        without times, the whole call is one update at the wall-clock time.

        physical: count the packets as physical traffic (a capture's tunnel
        packets, docs/tunnels.md); vnis: the VNI or key of each one's
        tunnel, -1 none (rows with one go to the window's tagged table)."""
        cdef cs_key keys[CHUNK]
        cdef cs_key4 compact[CHUNK]
        cdef bint narrow[CHUNK]
        cdef int64_t spans[2 * CHUNK]  # first/last time of each run, if tracked
        cdef int64_t now = 0
        cdef int64_t t
        cdef bint timed = self.track_times
        cdef uint64_t hashes[CHUNK]
        cdef uint64_t sizes[CHUNK]
        cdef uint64_t npkts[CHUNK]
        cdef uint8_t rxs_store[CHUNK]
        # per-item directions (records), or NULL: every item is `rx`
        cdef const uint8_t *rxs = rxs_store if records != NULL else NULL
        cdef uint16_t order[CHUNK]
        cdef uint16_t fill[NSHARDS + 1]
        cdef uint8_t shard_of[CHUNK]
        cdef Py_ssize_t base = 0, m, i, pos, ahead
        cdef uint32_t s, first, todo, step
        cdef bint progressed
        cdef cs_window *w
        cdef int64_t generation
        cdef int r
        cdef bint opened = False
        cdef bint tagged = physical or vnis != NULL
        if timed and times == NULL:
            now = cs_now_ns()
        while base < n:
            if cs_atomic_load_int(&self.closed):
                return 0
            m = n - base if n - base < CHUNK else CHUNK
            pos = 0
            if records != NULL:
                pos = self._parse_records(records + base * RECORD_BYTES, m, keys, compact,
                                          narrow, hashes, shard_of, npkts, sizes, rxs_store)
                if timed:  # records carry no time: the call's wall-clock time
                    for i in range(pos):
                        spans[2 * i] = now
                        spans[2 * i + 1] = now
                m = 0  # parsed: nothing for the packet loop below
            for i in range(m):
                # Packet headers are scattered in memory: fetch ahead.
                ahead = base + i + 8
                if ahead < n:
                    cs_prefetch(ptrs[ahead])
                _decode(ptrs[base + i], lens[base + i], &keys[pos])
                if rx:
                    _swap(&keys[pos])
                # ignore_destinations is checked where a connection would
                # be inserted (_window_insert): an ignored one is never in
                # the table.
                if tagged:
                    if physical:
                        _set_physical(&keys[pos])
                    if vnis != NULL and vnis[base + i] >= 0:
                        # a row with a VNI: the window's tagged table, which
                        # does not look at the ignore list itself
                        if self.n_ignore and _is_ignored(self.ignore, self.n_ignore,
                                                         &keys[pos]):
                            continue
                        if timed:
                            t = now if times == NULL else times[base + i]
                        if self._count_tagged(&keys[pos], <uint32_t>vnis[base + i], rx,
                                              <uint64_t>lens[base + i], timed, t) < 0:
                            return self._failed(opened)
                        continue
                if timed:
                    t = now if times == NULL else times[base + i]
                if pos and cs_key40_equal(&keys[pos], &keys[pos - 1]):
                    # Flows come in bursts: fold a run of one connection
                    # into one table update (exact, and order-preserving).
                    npkts[pos - 1] += 1
                    sizes[pos - 1] += <uint64_t>lens[base + i]
                    if timed:
                        if t < spans[2 * pos - 2]:
                            spans[2 * pos - 2] = t
                        if t > spans[2 * pos - 1]:
                            spans[2 * pos - 1] = t
                    continue
                if timed:
                    spans[2 * pos] = t
                    spans[2 * pos + 1] = t
                hashes[pos] = _prepare(&keys[pos], self.seed, &compact[pos], &narrow[pos])
                shard_of[pos] = <uint8_t>(hashes[pos] >> SHARD_SHIFT)
                sizes[pos] = <uint64_t>lens[base + i]
                npkts[pos] = 1
                pos += 1
            m = pos
            if self.max_conns > 0:
                # Packet order decides where a max_conns cut falls: keep it.
                i = 0
                while i < m:
                    s = shard_of[i]
                    cs_mutex_lock(&self.locks[s])
                    if self.closed:
                        cs_mutex_unlock(&self.locks[s])
                        return 0
                    w = self.cur
                    generation = w.generation
                    r = ADD_OK
                    while i < m and shard_of[i] == s:
                        r = _window_add(w, s, &keys[i], &compact[i], narrow[i], hashes[i],
                                        rxs[i] if rxs != NULL else rx, npkts[i], sizes[i],
                                        self.max_conns, self.ignore, self.n_ignore)
                        if r == ADD_OPENED:
                            opened = True
                        if timed and (r == ADD_OK or r == ADD_OPENED):
                            if _times_mark(w, s, &keys[i], &compact[i], narrow[i], hashes[i],
                                           &spans[2 * i]) < 0:
                                r = ADD_NOMEM  # counted, but without its time
                        if r == ADD_FULL or r == ADD_NOMEM:
                            break
                        i += 1
                    cs_mutex_unlock(&self.locks[s])
                    if r == ADD_NOMEM:
                        return self._failed(opened)
                    if r == ADD_FULL:
                        if self._cut_full(generation) < 0:
                            return self._failed(opened)
            else:
                # Group the chunk by shard (counting sort) so that each shard
                # lock is taken once per chunk.
                memset(fill, 0, sizeof(fill))
                for i in range(m):
                    fill[shard_of[i] + 1] += 1
                for s in range(NSHARDS):
                    fill[s + 1] += fill[s]
                self._group(m, shard_of, fill, order)
                todo = 0
                for s in range(NSHARDS):
                    if fill[s] != (0 if s == 0 else fill[s - 1]):
                        todo |= 1u << s
                # Take the shards whose locks are free first and come back
                # for the busy ones, so that two threads feeding batches
                # work on different shards instead of queueing in lockstep.
                # A per-thread starting shard (stack addresses differ).
                first = <uint32_t>((<size_t>&keys[0]) >> 14) + <uint32_t>(base // CHUNK)
                while todo:
                    progressed = False
                    for step in range(NSHARDS):
                        s = (first + step) & (NSHARDS - 1)
                        if not (todo >> s) & 1:
                            continue
                        if not cs_mutex_trylock(&self.locks[s]):
                            continue
                        todo &= ~(1u << s)
                        progressed = True
                        r = self._add_run(s, keys, compact, narrow, hashes, npkts, sizes, order,
                                          0 if s == 0 else fill[s - 1], fill[s], rxs, rx,
                                          spans if timed else NULL)
                        if r < 0:
                            return self._failed(opened)
                        if r == ADD_OPENED:
                            opened = True
                    if not progressed:
                        # every remaining shard is busy: wait for one
                        for s in range(NSHARDS):
                            if (todo >> s) & 1:
                                break
                        cs_mutex_lock(&self.locks[s])
                        todo &= ~(1u << s)
                        r = self._add_run(s, keys, compact, narrow, hashes, npkts, sizes, order,
                                          0 if s == 0 else fill[s - 1], fill[s], rxs, rx,
                                          spans if timed else NULL)
                        if r < 0:
                            return self._failed(opened)
                        if r == ADD_OPENED:
                            opened = True
            if opened:
                self._notify()
                opened = False
            base += CHUNK
        return 0

    cdef inline int _failed(self, bint opened) noexcept nogil:
        # Out of memory part-way through a batch: what was counted stays
        # counted, and a window this batch opened still wakes the flusher.
        if opened:
            self._notify()
        return -1

    cdef Py_ssize_t _parse_records(self, const uint8_t *records, Py_ssize_t m, cs_key *keys,
                                   cs_key4 *compact, bint *narrow, uint64_t *hashes,
                                   uint8_t *shard_of, uint64_t *npkts, uint64_t *sizes,
                                   uint8_t *rxs) noexcept nogil:
        """m records into keys etc. (_count_many's chunk); how many are kept.

        Consecutive records of one connection and direction are folded into
        one table update (exact: the sums wrap as the counters do).
        ignore_destinations is checked on insertion (_window_insert)."""
        cdef Py_ssize_t i, pos = 0
        for i in range(m):
            _record_key(records + i * RECORD_BYTES, &keys[pos], &rxs[pos], &npkts[pos],
                        &sizes[pos])
            if (pos and rxs[pos] == rxs[pos - 1]
                    and cs_key40_equal(&keys[pos], &keys[pos - 1])):
                npkts[pos - 1] += npkts[pos]
                sizes[pos - 1] += sizes[pos]
                continue
            hashes[pos] = _prepare(&keys[pos], self.seed, &compact[pos], &narrow[pos])
            shard_of[pos] = <uint8_t>(hashes[pos] >> SHARD_SHIFT)
            pos += 1
        return pos

    cdef int _add_run(self, uint32_t s, cs_key *keys, cs_key4 *compact, bint *narrow,
                      uint64_t *hashes, uint64_t *npkts, uint64_t *sizes, uint16_t *order,
                      Py_ssize_t j, Py_ssize_t end, const uint8_t *rxs, bint rx,
                      const int64_t *spans) noexcept nogil:
        """Add order[j:end] to shard s and unlock it.  The caller holds its lock.

        The direction of item i is rxs[i], or rx when rxs is NULL."""
        cdef cs_window *w = self.cur
        cdef Py_ssize_t i
        cdef int r, result = ADD_OK
        if self.closed:
            cs_mutex_unlock(&self.locks[s])
            return ADD_OK
        # Two-stage prefetch for large tables: the slot of item j+16, then
        # the entry that item j+8's slot names.  A shard's run is short (32
        # items of a 256-packet chunk spread over 8 shards), so its first
        # slots are fetched before the loop.
        for i in range(j, j + 16 if j + 16 < end else end):
            _prefetch_slot(&w.shards[s], hashes[order[i]])
        while j < end:
            if j + 16 < end:
                _prefetch_slot(&w.shards[s], hashes[order[j + 16]])
            if j + 8 < end:
                _prefetch_entry(&w.shards[s], hashes[order[j + 8]])
            i = order[j]
            r = _window_add(w, s, &keys[i], &compact[i], narrow[i], hashes[i],
                            rxs[i] if rxs != NULL else rx, npkts[i], sizes[i], 0,
                            self.ignore, self.n_ignore)
            if spans != NULL and (r == ADD_OK or r == ADD_OPENED):
                if _times_mark(w, s, &keys[i], &compact[i], narrow[i], hashes[i],
                               &spans[2 * i]) < 0:
                    # counted, but without its time; a window it opened
                    # must still wake the flusher
                    if r == ADD_OPENED:
                        self._notify()
                    r = ADD_NOMEM
            if r == ADD_NOMEM:
                cs_mutex_unlock(&self.locks[s])
                return ADD_NOMEM
            if r == ADD_OPENED:
                result = ADD_OPENED
            j += 1
        self._note_size(w)
        cs_mutex_unlock(&self.locks[s])
        return result

    cdef inline void _group(self, Py_ssize_t m, const uint8_t *shard_of, uint16_t *fill,
                            uint16_t *order) noexcept nogil:
        # Stable counting sort of chunk indices by shard into `order`.
        # On entry fill[s] is the start of shard s's run; on exit its end.
        cdef Py_ssize_t i
        for i in range(m):
            order[fill[shard_of[i]]] = <uint16_t>i
            fill[shard_of[i]] += 1

    # -- single-packet entry points ----------------------------------------
    #
    # These keep the GIL: see benchmarks/RESULTS.md ("GIL decision").  The
    # work is ~20-40 ns, and dropping and retaking the GIL costs more than
    # that and makes a second Python thread pay for the hand-off.

    def update_tx_virtual(self, packet):
        """Count one transmitted IP packet (any C-contiguous bytes-like)."""
        self._virtual(packet, False)

    def update_rx_virtual(self, packet):
        """Count one received IP packet; src and dst are swapped."""
        self._virtual(packet, True)

    cdef int _virtual(self, object packet, bint rx) except -1:
        cdef Py_buffer view
        cdef int r
        if PyBytes_CheckExact(packet):
            r = self._count_packet(<const uint8_t *>PyBytes_AS_STRING(packet),
                                   PyBytes_GET_SIZE(packet), rx)
        else:
            _get_buffer(packet, &view, "packet")
            r = self._count_packet(<const uint8_t *>view.buf, view.len, rx)
            PyBuffer_Release(&view)
        if r < 0:
            raise MemoryError("connstats: cannot grow the connection table")
        return 0

    def update_tx_physical(self, src, dst, n, *, packets=1):
        """Count transmitted WireGuard packets (n bytes in all) to peer dst."""
        self._physical(src, dst, n, False, packets)

    def update_rx_physical(self, src, dst, n, *, packets=1):
        """Count received WireGuard packets (n bytes in all) from peer dst."""
        self._physical(src, dst, n, True, packets)

    cdef int _physical(self, object src, object dst, object n, bint rx,
                       object packets) except -1:
        cdef cs_key k
        cdef object sp, dp, port
        cdef uint64_t nbytes, npkts = 1
        # Checked even once closed, as the virtual entry points do: a bad
        # call raises whenever it is made (the twin does the same).
        sp = _addr.packed_address(src, "src")
        dp, port = _addr.packed_addrport(dst, "dst")
        nbytes = _addr.byte_count(n, "n")
        if packets is not 1:
            npkts = _count_arg(packets, "packets", True)
        if cs_atomic_load_int(&self.closed):
            return 0
        memset(&k, 0, sizeof(cs_key))
        k.kind = KIND_PHYSICAL
        # Lengths checked on the exact bytes copied (an address subclass's
        # .packed can be any size), the port in C.
        k.sfam = _packed_into(sp, "src", k.src)
        k.dfam = _packed_into(dp, "dst", k.dst)
        k.dport = <uint16_t>_int64_in(port, "dst", 0, 0xFFFF)
        # ignore_destinations filters virtual traffic only (as the reference
        # does): a WireGuard peer's endpoint is counted even if it is listed.
        if self._count_key(&k, rx, npkts, nbytes) < 0:
            raise MemoryError("connstats: cannot grow the connection table")
        return 0

    # -- pre-parsed counting (the caller decoded the packets) --------------

    def update_virtual(self, proto, src, dst, packets, bytes, receive=False):
        """Count packets of the virtual connection (proto, src, dst) as given."""
        self._preparsed(proto, src, dst, packets, bytes, receive, False)

    def update_physical(self, proto, src, dst, packets, bytes, receive=False):
        """Count packets of the physical connection (proto, src, dst) as given."""
        self._preparsed(proto, src, dst, packets, bytes, receive, True)

    cdef int _preparsed(self, object proto, object src, object dst, object packets,
                        object nbytes, object receive, bint physical) except -1:
        cdef cs_key k
        cdef uint64_t npkts, size
        cdef bint rx
        # Every argument is checked before anything is counted, and even once
        # closed, as every other entry point checks them (the twin too).
        memset(&k, 0, sizeof(cs_key))
        k.kind = KIND_PHYSICAL if physical else KIND_VIRTUAL
        k.proto = _proto_arg(proto)
        _endpoint_into(src, "src", &k.sfam, k.src, &k.sport)
        _endpoint_into(dst, "dst", &k.dfam, k.dst, &k.dport)
        npkts = _count_arg(packets, "packets", True)
        size = _count_arg(nbytes, "bytes", False)
        rx = _receive_arg(receive)
        return self._count_preparsed(&k, rx, npkts, size, physical)

    cdef inline int _preparsed_values(self, PyObject **values, PyObject *receive,
                                      bint physical) except -1:
        # The FASTCALL entries' path (methods.pxi): the five count arguments
        # and receive, borrowed.  Forms read in C go straight to the count;
        # any other, and every bad value, through _preparsed's checks.
        cdef cs_key k
        cdef uint64_t npkts, size
        cdef bint rx
        if _preparsed_fast(values, receive, physical, &k, &npkts, &size, &rx):
            return self._count_preparsed(&k, rx, npkts, size, physical)
        return self._preparsed(<object>values[0], <object>values[1], <object>values[2],
                               <object>values[3], <object>values[4], <object>receive,
                               physical)

    cdef inline int _count_preparsed(self, const cs_key *k, bint rx, uint64_t npkts,
                                     uint64_t size, bint physical) except -1:
        cdef int r
        if cs_atomic_load_int(&self.closed):
            return 0
        # No swap: the caller gives the connection in the orientation it
        # wants counted (as upstream's ConnectionCounter).
        # ignore_destinations (virtual rows) is checked on insertion.
        if (not physical and npkts == 1 and self.lanes != NULL
                and (CS_FREE_THREADED or cs_atomic_load_int(&self.window_open))):
            r = self._count_lane(k, rx, size)
        else:
            r = self._count_key(k, rx, npkts, size)
        if r < 0:
            raise MemoryError("connstats: cannot grow the connection table")
        return 0

    def update_records(self, records):
        """Count a buffer of RECORD_SIZE-byte records; the GIL is released while counting."""
        self._records(records)

    cdef int _records(self, object records) except -1:
        cdef Py_buffer view
        cdef Py_ssize_t n, bad = 0
        cdef int why, r = 0
        if isinstance(records, str):
            raise TypeError("records: expected a bytes-like object, got str")
        _get_buffer(records, &view, "records")
        try:
            if view.len % RECORD_BYTES:
                raise ValueError(
                    f"records: {view.len} bytes is not a whole number of "
                    f"{RECORD_BYTES}-byte records")
            n = view.len // RECORD_BYTES
            # All or nothing: every record is checked before any is counted.
            why = _check_records(<const uint8_t *>view.buf, n, &bad)
            if why != RECORD_OK:
                raise ValueError(f"records[{bad}]: {_RECORD_ERRORS[why]}")
            if n and not cs_atomic_load_int(&self.closed):
                with nogil:
                    r = self._count_many(NULL, NULL, <const uint8_t *>view.buf, n, False)
                if r < 0:
                    raise MemoryError("connstats: cannot grow the connection table")
        finally:
            PyBuffer_Release(&view)
        return 0

    # -- batch entry points (GIL released for the whole batch) -------------

    def update_tx_virtual_batch(self, packets):
        """Count a sequence of transmitted packets; the GIL is released while counting."""
        self._batch(packets, False)

    def update_rx_virtual_batch(self, packets):
        """Count a sequence of received packets; the GIL is released while counting."""
        self._batch(packets, True)

    cdef int _batch(self, object packets, bint rx) except -1:
        cdef tuple seq
        cdef Py_ssize_t n, i, nviews = 0
        cdef const uint8_t **ptrs = NULL
        cdef int64_t *lens = NULL
        cdef Py_buffer *views = NULL
        cdef object item
        cdef int r = 0
        if isinstance(packets, (bytes, bytearray, memoryview, str)):
            raise TypeError(
                f"packets: expected a sequence of bytes-like objects, got "
                f"{type(packets).__name__} (use update_*_virtual for one packet)")
        if not PySequence_Check(packets):
            # sets, dicts and iterators have no stable order or length
            raise TypeError(
                f"packets: expected a sequence of bytes-like objects, "
                f"got {type(packets).__name__}")
        # A snapshot: getting a buffer runs Python code (__buffer__), and on
        # free-threaded builds other threads run anyway, so the caller's list
        # may shrink or change under us.  The tuple keeps every item alive
        # until the batch is counted.
        try:
            seq = _sequence_snapshot(packets)
        except TypeError:
            raise TypeError(
                f"packets: expected a sequence of bytes-like objects, "
                f"got {type(packets).__name__}") from None
        n = len(seq)
        if n == 0:
            return 0
        try:
            ptrs = <const uint8_t **>_alloc_array(n, sizeof(uint8_t *))
            lens = <int64_t *>_alloc_array(n, sizeof(int64_t))
            for i in range(n):
                item = seq[i]
                if PyBytes_CheckExact(item):
                    ptrs[i] = <const uint8_t *>PyBytes_AS_STRING(item)
                    lens[i] = PyBytes_GET_SIZE(item)
                else:
                    if views == NULL:
                        views = <Py_buffer *>_alloc_array(n, sizeof(Py_buffer))
                    _get_buffer(item, &views[nviews], "packets", i)
                    ptrs[i] = <const uint8_t *>views[nviews].buf
                    lens[i] = views[nviews].len
                    nviews += 1
            with nogil:
                r = self._count_many(ptrs, lens, NULL, n, rx)
            if r < 0:
                raise MemoryError("connstats: cannot grow the connection table")
        finally:
            for i in range(nviews):
                PyBuffer_Release(&views[i])
            free(views)
            free(<void *>ptrs)
            free(lens)
        return 0

    def update_tx_virtual_buffer(self, buffer, offsets, lengths, vnis=None):
        """Count transmitted packets buffer[offsets[i]:offsets[i]+lengths[i]];
        vnis: the VNI or key of each one's tunnel (-1: none), or None."""
        self._buffer(buffer, offsets, lengths, False, None, vnis)

    def update_rx_virtual_buffer(self, buffer, offsets, lengths, vnis=None):
        """Count received packets buffer[offsets[i]:offsets[i]+lengths[i]]."""
        self._buffer(buffer, offsets, lengths, True, None, vnis)

    def update_tx_virtual_buffer_at(self, buffer, offsets, lengths, times, vnis=None):
        """update_tx_virtual_buffer with each packet's time: times[i] in ns
        since the epoch (a buffer of int64, format 'q').  The times are kept
        only by a core that tracks them (the capture replay's)."""
        if times is None:
            raise TypeError("times: expected a buffer of int64, got None")
        self._buffer(buffer, offsets, lengths, False, times, vnis)

    def update_rx_virtual_buffer_at(self, buffer, offsets, lengths, times, vnis=None):
        """update_rx_virtual_buffer with each packet's time (see the tx one)."""
        if times is None:
            raise TypeError("times: expected a buffer of int64, got None")
        self._buffer(buffer, offsets, lengths, True, times, vnis)

    def update_tx_physical_buffer(self, buffer, offsets, lengths, vnis=None, times=None):
        """Count transmitted packets buffer[offsets[i]:offsets[i]+lengths[i]] as
        physical traffic, each under its own decoded connection (the outer
        packets of decapsulated tunnels); vnis: each one's VNI or key, -1 none;
        times as for update_tx_virtual_buffer_at, or None."""
        self._buffer(buffer, offsets, lengths, False, times, vnis, True)

    def update_rx_physical_buffer(self, buffer, offsets, lengths, vnis=None, times=None):
        """Count received packets as physical traffic (see update_tx_physical_buffer)."""
        self._buffer(buffer, offsets, lengths, True, times, vnis, True)

    cdef int _buffer(self, object buffer, object offsets, object lengths, bint rx,
                     object times=None, object vnis=None, bint physical=False) except -1:
        cdef Py_buffer view
        cdef Py_buffer tview
        cdef bint has_times = False
        cdef const int64_t *tp = NULL
        cdef int64_t *offs = NULL
        cdef int64_t *lns = NULL
        cdef int64_t *vns = NULL
        cdef Py_ssize_t n_off, n_len, n_vni, i
        cdef const uint8_t **ptrs = NULL
        cdef const uint8_t *base
        cdef int r = 0
        _get_buffer(buffer, &view, "buffer")
        try:
            _read_index_array(offsets, "offsets", &n_off, &offs)
            _read_index_array(lengths, "lengths", &n_len, &lns)
            if n_off != n_len:
                raise ValueError(
                    f"lengths: has {n_len} items but offsets has {n_off}")
            if vnis is not None:
                _read_vni_array(vnis, &n_vni, &vns)
                if n_vni != n_off:
                    raise ValueError(f"vnis: has {n_vni} items but offsets has {n_off}")
            if times is not None:
                _get_times(times, &tview, n_off)
                has_times = True
                tp = <const int64_t *>tview.buf
            for i in range(n_off):
                # Both are in 0..2**63-1 (checked in C when read), so the
                # end is computed as unsigned: it cannot wrap.
                if offs[i] > view.len or lns[i] > view.len - offs[i]:
                    raise ValueError(
                        f"offsets[{i}]/lengths[{i}]: packet {offs[i]}.."
                        f"{<uint64_t>offs[i] + <uint64_t>lns[i]} "
                        f"is beyond the buffer's {view.len} bytes")
            if n_off:
                ptrs = <const uint8_t **>_alloc_array(n_off, sizeof(uint8_t *))
                base = <const uint8_t *>view.buf
                for i in range(n_off):
                    ptrs[i] = base + offs[i]
                with nogil:
                    if vns != NULL and self.max_conns > 0:
                        # Rows with a VNI are counted as they come, the others
                        # a chunk at a time: one packet per call keeps the
                        # order, which decides where a max_conns cut falls.
                        for i in range(n_off):
                            r = self._count_many(&ptrs[i], &lns[i], NULL, 1, rx,
                                                 &tp[i] if tp != NULL else NULL,
                                                 physical, &vns[i])
                            if r < 0:
                                break
                    else:
                        r = self._count_many(ptrs, lns, NULL, n_off, rx, tp, physical, vns)
                if r < 0:
                    raise MemoryError("connstats: cannot grow the connection table")
        finally:
            PyBuffer_Release(&view)
            if has_times:
                PyBuffer_Release(&tview)
            free(<void *>ptrs)
            free(offs)
            free(lns)
            free(vns)
        return 0

    # -- windows -----------------------------------------------------------

    def cut(self, generation=-1):
        """Swap out the current window and return it (None if empty).

        With generation >= 0, only cut if the open window has that generation.
        """
        cdef cs_window *w
        cdef cs_window *fresh
        cdef int64_t gen = generation
        cdef bint nomem = False
        # The Python object first: once the window is cut, nothing may fail
        # before it is handed out, or its counts would be lost.
        cdef Window out = Window.__new__(Window)
        with nogil:
            # Lanes first (their packets were counted before this cut), and
            # held until the new window is in, so none lands in it unseen.
            self._lanes_lock_drain()
            self._lock_all()
            w = self.cur
            if cs_atomic_load64(&w.nconns) == 0 or (gen >= 0 and w.generation != gen):
                w = NULL
            else:
                fresh = self._new_window()
                if fresh == NULL:
                    w = NULL
                    nomem = True  # the window stays open, with its counts
                else:
                    self.cur = fresh
                    w.end_ns = cs_now_ns()
                    cs_atomic_store_int(&self.window_open, 0)
            self._unlock_all()
            self._lanes_unlock()
        if nomem:
            # Not None: None means "nothing counted", which is not true.
            raise MemoryError("connstats: cannot allocate a new window; the open one is kept")
        if w == NULL:
            return None
        out.w = w
        return out

    def window_info(self):
        """(generation, start epoch seconds) of the open window, or None if empty."""
        cdef int64_t gen = 0, start = 0, count
        with nogil:
            self._lock_all()
            count = cs_atomic_load64(&self.cur.nconns)
            if count:
                gen = self.cur.generation
                start = self.cur.start_ns
            self._unlock_all()
        if count == 0:
            return None
        return (gen, start / 1e9)

    def pop_pending(self):
        """The oldest window cut by max_conns that is not handed out yet, or None."""
        cdef cs_window *w
        cdef Window out = Window.__new__(Window)  # before the window leaves the queue
        cs_mutex_lock(&self.locks[NSHARDS])
        w = self.qhead
        if w != NULL:
            self.qhead = w.next
            if self.qhead == NULL:
                self.qtail = NULL
            self.qlen -= 1
            self.qconns -= w.nconns
            w.next = NULL
        cs_mutex_unlock(&self.locks[NSHARDS])
        if w == NULL:
            return None
        out.w = w
        return out

    def wait(self, timeout=None):
        """Block until notify() (True) or until timeout seconds pass (False)."""
        cdef long long micros
        cdef double seconds
        cdef PyLockStatus status
        if timeout is None:
            micros = -1
        else:
            # Clamped in C (NaN included: a C cast of NaN is undefined):
            # PY_TIMEOUT_MAX is platform-dependent; callers loop anyway.
            seconds = float(timeout)
            if not seconds > 0.0:
                seconds = 0.0
            elif seconds > 2000.0:
                seconds = 2000.0
            micros = <long long>(seconds * 1e6)
        with nogil:
            status = PyThread_acquire_lock_timed(self.sig, micros, 0)
        if status == PY_LOCK_ACQUIRED:
            cs_atomic_store_int(&self.signaled, 0)
            return True
        return False

    def notify(self):
        """Wake a thread blocked in wait()."""
        self._notify()

    def close(self):
        """Drop every later update.  Already counted windows stay."""
        with nogil:
            self._lanes_lock_drain()
            self._lock_all()
            cs_atomic_store_int(&self.closed, 1)
            self._unlock_all()
            self._lanes_unlock()

    @property
    def closed(self):
        return bool(cs_atomic_load_int(&self.closed))

    @property
    def _lane_state(self):
        """(lanes in use, packets held in them): for tests."""
        cdef int i
        cdef int64_t held = 0
        cdef bint used
        with nogil:
            for i in range(self.n_lanes):
                cs_mutex_lock(&self.lanes[i].lock)
                held += self.lanes[i].n
            used = self.lanes != NULL and cs_atomic_load_int(&self.window_open)
            for i in range(self.n_lanes - 1, -1, -1):
                cs_mutex_unlock(&self.lanes[i].lock)
        return (bool(used), held)

    @property
    def connections(self):
        """Connections in the open window."""
        cdef int64_t count
        with nogil:
            self._lanes_lock_drain()
            cs_mutex_lock(&self.locks[0])
            count = cs_atomic_load64(&self.cur.nconns)
            cs_mutex_unlock(&self.locks[0])
            self._lanes_unlock()
        return count

    @property
    def table_bytes(self):
        """Bytes of C memory held by the open window's table."""
        cdef Py_ssize_t total
        with nogil:
            self._lanes_lock_drain()
            self._lock_all()
            total = _window_table_bytes(self.cur)
            self._unlock_all()
            self._lanes_unlock()
        return total

    @property
    def pending(self):
        """Windows cut by max_conns waiting to be handed out."""
        return self.qlen

    @property
    def dropped_windows(self):
        return self.dropped_windows_

    @property
    def dropped_packets(self):
        return self.dropped_packets_

    @property
    def dropped_bytes(self):
        return self.dropped_bytes_

    def _after_fork_in_child(self):
        """Give the child fresh locks and an empty table.

        Locks inherited from the parent may be held by threads that do not
        exist in the child: they and the windows they guard are leaked on
        purpose, never unlocked or freed.
        """
        self._allocate_runtime()
        self.dropped_windows_ = 0
        self.dropped_packets_ = 0
        self.dropped_bytes_ = 0
