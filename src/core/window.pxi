# Windows handed to Python: the Window type and the building of address
# and value objects from a cut window's C table.

cdef object _object_new = object.__new__


cdef bint _check_fast_addresses():
    # Materializing a window builds many address objects; ipaddress's own
    # constructors cost 3x more than filling the `_ip` slot directly.  That
    # slot is private, so use the shortcut only if it gives objects that are
    # indistinguishable from the constructors' on this Python.
    try:
        for cls, value in ((_IPv4Address, 0x64400001), (_IPv6Address, (0xfd7a << 112) | 0x53)):
            fast = _object_new(cls)
            fast._ip = value
            if cls is _IPv6Address:
                fast._scope_id = None
            slow = cls(value)
            if not (fast == slow and hash(fast) == hash(slow) and str(fast) == str(slow)
                    and fast.packed == slow.packed and repr(fast) == repr(slow)):
                return False
        return True
    except Exception:
        return False


cdef bint _FAST_ADDRESSES = _check_fast_addresses()


cdef inline uint64_t _be64(const uint8_t *p) noexcept nogil:
    cdef uint64_t v = 0
    cdef int i
    for i in range(8):
        v = (v << 8) | p[i]
    return v


cdef object _address_value(uint8_t fam, const uint8_t *raw):
    # The address as the int ipaddress stores: built from machine words, not
    # through int.from_bytes.
    if fam == 4:
        return PyLong_FromUnsignedLong((<unsigned long>raw[0] << 24) | (raw[1] << 16) |
                                       (raw[2] << 8) | raw[3])
    return (PyLong_FromUnsignedLongLong(_be64(raw)) << 64) | PyLong_FromUnsignedLongLong(_be64(raw + 8))


cdef object _address_object(uint8_t fam, object value):
    cdef object addr
    cdef object cls = _IPv4Address if fam == 4 else _IPv6Address
    if not _FAST_ADDRESSES:
        return cls(value)
    # What object.__new__ does, without the call overhead.
    addr = cs_alloc_instance(cls)
    addr._ip = value
    if fam == 6:
        addr._scope_id = None
    # It holds only an int (and None): it cannot be part of a cycle.  Left
    # tracked, 200,000 fresh addresses make the collector walk the whole
    # heap several times per window.
    PyObject_GC_UnTrack(<void *>addr)
    return addr


@cython.final
cdef class Window:
    """A window of counts cut from a Core; owns its C table."""

    cdef cs_window *w

    def __init__(self, *args, **kwargs):
        raise TypeError("Window objects come from Core.cut() and Core.pop_pending()")

    def __dealloc__(self):
        _window_free(self.w)
        self.w = NULL

    cdef inline cs_window *_table(self) except NULL:
        # Window.__new__(Window) from Python has no table.
        if self.w == NULL:
            raise ValueError("this Window has no table (made with Window.__new__)")
        return self.w

    @property
    def start(self):
        """Epoch seconds of the window's first insertion."""
        return self._table().start_ns / 1e9

    @property
    def end(self):
        """Epoch seconds at which the window was cut."""
        return self._table().end_ns / 1e9

    @property
    def generation(self):
        return self._table().generation

    @property
    def track_times(self):
        """True if the window's counts carry first/last times (TimedCounts)."""
        return bool(self._table().track_times)

    @property
    def packets(self):
        cdef uint64_t packets, nbytes
        _window_totals(self._table(), &packets, &nbytes)
        return packets

    @property
    def bytes(self):
        cdef uint64_t packets, nbytes
        _window_totals(self._table(), &packets, &nbytes)
        return nbytes

    def totals(self):
        """``(packets, bytes)`` of every connection, virtual and physical, as
        exact integers (the sum of u64 counters does not wrap)."""
        cdef uint64_t p_lo = 0, p_hi = 0, b_lo = 0, b_hi = 0
        _window_sums(self._table(), &p_lo, &p_hi, &b_lo, &b_hi)
        return ((<object>p_hi << 64) | p_lo, (<object>b_hi << 64) | b_lo)

    def sorted_items(self, str column not None, bint reverse, Py_ssize_t top):
        """``(items in order, number before top)`` over this window's table,
        as ``cli.fastout.sorted_items`` orders its dicts: virtual rows, then
        physical ones, each by ``column`` with ``top`` > 0 keeping the first.

        The items are an ``OrderedItems``: only the rows asked for become
        Python objects, and ``json_rows``/``csv_rows`` write from the table's
        values without any."""
        return _window_sorted_items(self, column, reverse, top)

    @property
    def table_bytes(self):
        """Bytes of C memory the window's table holds."""
        return _window_table_bytes(self._table())

    def __len__(self):
        return self._table().nconns

    def to_dicts(self):
        """Return (virtual, physical): dict[Connection, Counts] each.

        One C call that holds the GIL throughout; connstats itself uses
        materialize_slices (see connstats._impl.materialize)."""
        cdef dict virtual = {}
        cdef dict physical = {}
        for _ in self.materialize_slices(virtual, physical):
            pass
        return virtual, physical

    def materialize_slices(self, dict virtual not None, dict physical not None):
        """Fill virtual and physical (dict[Connection, Counts]) with this
        window's connections, yielding after every MATERIALIZE_SLICE of them.

        A single C call never reaches the eval loop, which is where CPython
        hands the GIL to a thread that has waited for a switch interval: a
        packet thread would stall for the whole window (tens of ms at 100k
        connections).  Driven by a Python-level loop, each yield is such a
        point.  (Releasing the GIL from C instead does not work: the waiter
        only asks for the GIL after its 5 ms timeout, and every release
        shorter than that wakes it, loses the race and restarts its wait.)
        The window is immutable, so other threads may run in between."""
        cdef dict addresses = {}
        cdef cs_window *w = self._table()
        cdef int i
        cdef uint32_t j
        cdef uint32_t since_yield = 0
        cdef cs_entry4 *e4
        cdef cs_entry *e
        cdef cs_ttable *t = <cs_ttable *>w.tagged
        cdef cs_tentry *te
        cdef int64_t first = CS_TIME_NONE_FIRST, last = CS_TIME_NONE_LAST
        cdef bint timed = w.track_times
        for i in range(NSHARDS):
            for j in range(w.shards[i].nnarrow):
                e4 = &w.shards[i].narrow[j]
                if timed:
                    _times_of(&w.shards[i], False, j, &first, &last)
                _materialize_entry(addresses, virtual, physical, e4.key.proto, e4.key.kind,
                                   e4.key.sfam, e4.key.src, e4.key.sport,
                                   e4.key.dfam, e4.key.dst, e4.key.dport, &e4.c,
                                   -1, timed, first, last)
                since_yield += 1
                if since_yield == MATERIALIZE_SLICE:
                    since_yield = 0
                    yield
            for j in range(w.shards[i].nwide):
                e = &w.shards[i].wide[j]
                if timed:
                    _times_of(&w.shards[i], True, j, &first, &last)
                _materialize_entry(addresses, virtual, physical, e.key.proto, e.key.kind,
                                   e.key.sfam, e.key.src, e.key.sport,
                                   e.key.dfam, e.key.dst, e.key.dport, &e.c,
                                   -1, timed, first, last)
                since_yield += 1
                if since_yield == MATERIALIZE_SLICE:
                    since_yield = 0
                    yield
        if t != NULL:
            for j in range(t.count):
                te = &t.entries[j]
                _materialize_entry(addresses, virtual, physical, te.key.key.proto,
                                   te.key.key.kind, te.key.key.sfam, te.key.key.src,
                                   te.key.key.sport, te.key.key.dfam, te.key.key.dst,
                                   te.key.key.dport, &te.c, te.key.vni, timed,
                                   te.first_ns, te.last_ns)
                since_yield += 1
                if since_yield == MATERIALIZE_SLICE:
                    since_yield = 0
                    yield


cdef inline tuple _entry_pair(dict addresses, uint8_t proto,
                              uint8_t sfam, const uint8_t *src, uint16_t sport,
                              uint8_t dfam, const uint8_t *dst, uint16_t dport,
                              const cs_counts *c, int64_t vni, bint timed,
                              int64_t first, int64_t last):
    """(Connection, Counts) of one table entry: TimedCounts with first and
    last if timed; vni -1 for a row without one."""
    cdef Connection conn = Connection.__new__(Connection)
    cdef Counts counts
    cdef TimedCounts tc
    conn.proto = proto
    conn.src = _materialize_addrport(addresses, sfam, src, sport)
    conn.dst = _materialize_addrport(addresses, dfam, dst, dport)
    conn._vni = vni
    conn._hash = _connection_hash(conn.proto, conn.src._hash, conn.dst._hash, vni)
    if timed:
        tc = TimedCounts.__new__(TimedCounts)
        tc.first_ns = first
        tc.last_ns = last
        counts = tc
    else:
        counts = Counts.__new__(Counts)
    counts.tx_packets = c.tx_packets
    counts.tx_bytes = c.tx_bytes
    counts.rx_packets = c.rx_packets
    counts.rx_bytes = c.rx_bytes
    return (conn, counts)


cdef inline int _materialize_entry(dict addresses, dict virtual, dict physical,
                                   uint8_t proto, uint8_t kind,
                                   uint8_t sfam, const uint8_t *src, uint16_t sport,
                                   uint8_t dfam, const uint8_t *dst, uint16_t dport,
                                   const cs_counts *c, int64_t vni, bint timed,
                                   int64_t first, int64_t last) except -1:
    cdef tuple pair = _entry_pair(addresses, proto, sfam, src, sport, dfam, dst, dport, c,
                                  vni, timed, first, last)
    if kind == KIND_PHYSICAL:
        physical[pair[0]] = pair[1]
    else:
        virtual[pair[0]] = pair[1]
    return 0


cdef inline AddrPort _materialize_addrport(dict cache, uint8_t fam, const uint8_t *raw,
                                           uint16_t port):
    # Address objects repeat across connections: build each one once.  The
    # cache is keyed by (int value, family): 1.2.3.4 and ::102:304 differ.
    cdef object value, key, addr
    if fam == 0:
        return _NO_ADDRPORT if port == 0 else _make_addrport(None, 0, raw, port)
    value = _address_value(fam, raw)
    key = value if fam == 4 else (value, 6)
    addr = cache.get(key)
    if addr is None:
        addr = _address_object(fam, value)
        cache[key] = addr
    return _make_addrport(addr, fam, raw, port)


cdef inline void _from_narrow(const cs_key4 *n, cs_key *k) noexcept nogil:
    memset(k, 0, sizeof(cs_key))
    memcpy(k, n, 8)
    memcpy(k.src, n.src, 4)
    memcpy(k.dst, n.dst, 4)


cdef int _merge_entry(cs_window *into, const cs_key *k, const cs_counts *c,
                      const int64_t *span, uint64_t seed) noexcept nogil:
    """Add c (and span, first and last ns, if into tracks times) to k's row."""
    cdef cs_key4 n
    cdef bint narrow
    cdef uint64_t h = _prepare(k, seed, &n, &narrow)
    cdef uint32_t shard = <uint32_t>(h >> SHARD_SHIFT)
    # tx, then rx (a hit): u64 additions that wrap, as Counts + Counts
    if _window_add(into, shard, k, &n, narrow, h, False, c.tx_packets, c.tx_bytes,
                   0, NULL, 0) == ADD_NOMEM:
        return -1
    if _window_add(into, shard, k, &n, narrow, h, True, c.rx_packets, c.rx_bytes,
                   0, NULL, 0) == ADD_NOMEM:
        return -1
    if into.track_times and span[0] <= span[1]:
        if _times_mark(into, shard, k, &n, narrow, h, span) < 0:
            return -1
    return 0


cdef int _merge_window(cs_window *into, cs_window *src, uint64_t seed) noexcept nogil:
    """Add every row of src to into; -1 out of memory."""
    cdef cs_table *t
    cdef cs_ttable *tt = <cs_ttable *>src.tagged
    cdef cs_tentry *te
    cdef cs_key k
    cdef int64_t span[2]
    cdef int i
    cdef uint32_t j
    cdef uint64_t h
    span[0] = CS_TIME_NONE_FIRST
    span[1] = CS_TIME_NONE_LAST
    for i in range(NSHARDS):
        t = &src.shards[i]
        for j in range(t.nnarrow):
            _from_narrow(&t.narrow[j].key, &k)
            if into.track_times:
                _times_of(t, False, j, &span[0], &span[1])
            if _merge_entry(into, &k, &t.narrow[j].c, span, seed) < 0:
                return -1
        for j in range(t.nwide):
            if into.track_times:
                _times_of(t, True, j, &span[0], &span[1])
            if _merge_entry(into, &t.wide[j].key, &t.wide[j].c, span, seed) < 0:
                return -1
    if tt != NULL:
        for j in range(tt.count):
            te = &tt.entries[j]
            h = _tagged_hash(&te.key, seed)
            if _tagged_add_n(into, &te.key, h, False, te.c.tx_packets, te.c.tx_bytes, 0,
                             into.track_times, te.first_ns, te.last_ns) == ADD_NOMEM:
                return -1
            if _tagged_add_n(into, &te.key, h, True, te.c.rx_packets, te.c.rx_bytes, 0,
                             False, 0, 0) == ADD_NOMEM:
                return -1
    return 0


def merge_windows(windows):
    """One Window holding the connections of all ``windows`` (cut windows),
    tunnel rows with a VNI included, the counts of a connection found in
    several added up (wrapping at 2**64 as ``Counts + Counts``) and, if every
    window tracks times, its first and last times the earliest and latest.
    Start, end and generation are the first window's; callers keep their own
    times."""
    cdef list tables = list(windows)
    cdef Window out = Window.__new__(Window)
    cdef Window src
    cdef cs_window *into
    cdef uint64_t seed = _random_seed()
    cdef int i
    cdef int failed = 0
    cdef bint timed = True
    for i in range(len(tables)):
        # each a cut window with its table
        timed = timed and (<Window?>tables[i])._table().track_times
    into = <cs_window *>calloc(1, sizeof(cs_window))
    if into == NULL:
        raise MemoryError()
    out.w = into  # freed with out, also on failure
    into.track_times = timed and len(tables) > 0
    for src in tables:
        if src is tables[0]:
            into.start_ns = src.w.start_ns
            into.end_ns = src.w.end_ns
            into.generation = src.w.generation
        with nogil:
            failed = _merge_window(into, src.w, seed)
        if failed:
            raise MemoryError("connstats: cannot grow the merged table")
    return out
