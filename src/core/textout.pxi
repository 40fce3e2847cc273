# Connection tables as sorted JSON/CSV text, for `connstats read`.
#
# The C twin of the row loops in connstats/cli/fastout.py, which is the
# reference: the same order and the same text, byte for byte
# (tests/test_textout.py compares both on random windows).  It lives in the
# core because it reads the values' C fields (the address bytes kept inside
# each AddrPort, the counters inside Counts) once per row, into a struct that
# both the sort and the text are made from: printing every connection of a
# large window through Python attributes and ipaddress objects cost more than
# counting the capture, and through the same attributes from a separate
# extension still about 1.2 us a row (a dozen attribute lookups, and cache
# misses on the ipaddress objects and their integers, twice: once to sort,
# once, in sorted order, to write).
#
# Address text is str() of the ipaddress object: dotted quads and RFC 5952
# for IPv6 are written here, and str() itself is called for the IPv6
# addresses whose text embeds or may embed an IPv4 address (::a.b.c.d,
# ::ffff:a.b.c.d), on which Python versions differ.
#
# Runs with the GIL (it builds Python objects), except around the sort.

# The longest row either format writes without its variable parts (window
# head, protocol name, str() of an address): two bracketed IPv6 endpoints
# with ports (2 x 47), four 20-digit counters with their names, the kind.
cdef enum:
    _TO_ROW_ROOM = 512
    _TO_AHEAD = 8  # rows _to_rows fetches ahead
    _TO_CHUNK = 262144  # bytes json_rows_to and csv_rows_to pass to write()


# -- one item as C values ----------------------------------------------------


cdef struct _ToAddr:
    uint64_t hi
    uint64_t lo
    uint8_t ver  # 0: no address (None)


cdef struct _ToConn:
    uint64_t c[4]
    _ToAddr s
    _ToAddr d
    int64_t vni  # -1: none
    uint16_t sport
    uint16_t dport
    uint8_t proto
    uint8_t phys
    uint8_t odd  # an address whose text str() must write


cdef inline uint64_t _to_be(const uint8_t *p, int n) noexcept nogil:
    cdef uint64_t v = 0
    cdef int i
    for i in range(n):
        v = (v << 8) | p[i]
    return v


cdef inline bint _to_embeds_v4(const _ToAddr *a) noexcept nogil:
    # ::a.b.c.d and ::ffff:a.b.c.d: their text is str()'s (Python versions
    # write them differently)
    return a.ver == 6 and a.hi == 0 and ((a.lo >> 32) == 0 or (a.lo >> 32) == 0xFFFF)


cdef inline bint _to_addr(AddrPort ap, _ToAddr *out) noexcept:
    # The address bytes kept inside the AddrPort: no ipaddress object is
    # read.  True if its text must come from str() (_to_embeds_v4).
    out.ver = ap._fam
    out.hi = 0
    out.lo = 0
    if ap._fam == 4:
        out.lo = _to_be(ap._raw, 4)
    elif ap._fam == 6:
        out.hi = _to_be(ap._raw, 8)
        out.lo = _to_be(ap._raw + 8, 8)
    return _to_embeds_v4(out)


cdef inline bint _to_addr_raw(uint8_t fam, const uint8_t *raw, _ToAddr *out) noexcept nogil:
    # _to_addr from a table entry's bytes
    out.ver = fam
    out.hi = 0
    out.lo = 0
    if fam == 4:
        out.lo = _to_be(raw, 4)
    elif fam == 6:
        out.hi = _to_be(raw, 8)
        out.lo = _to_be(raw + 8, 8)
    return _to_embeds_v4(out)


cdef inline void _to_read_entry(uint8_t proto, uint8_t kind,
                                uint8_t sfam, const uint8_t *src, uint16_t sport,
                                uint8_t dfam, const uint8_t *dst, uint16_t dport,
                                const cs_counts *c, int64_t vni, _ToConn *r) noexcept nogil:
    r.proto = proto
    r.vni = vni
    r.odd = _to_addr_raw(sfam, src, &r.s) | _to_addr_raw(dfam, dst, &r.d)
    r.sport = sport
    r.dport = dport
    r.c[0] = c.tx_packets
    r.c[1] = c.tx_bytes
    r.c[2] = c.rx_packets
    r.c[3] = c.rx_bytes
    r.phys = kind == KIND_PHYSICAL


cdef int _to_read(object conn, object counts, bint phys, _ToConn *r) except -1:
    cdef Connection k
    cdef Counts c
    if not isinstance(conn, Connection):
        raise TypeError(f"items: expected a Connection, got {type(conn).__name__}")
    if not isinstance(counts, Counts):
        raise TypeError(f"items: expected Counts, got {type(counts).__name__}")
    k = <Connection>conn
    c = <Counts>counts
    r.proto = <uint8_t>k.proto  # 0..255 and ports 0..65535: checked when built
    r.odd = _to_addr(k.src, &r.s) | _to_addr(k.dst, &r.d)
    r.sport = <uint16_t>k.src.port
    r.dport = <uint16_t>k.dst.port
    r.vni = k._vni
    r.c[0] = c.tx_packets
    r.c[1] = c.tx_bytes
    r.c[2] = c.rx_packets
    r.c[3] = c.rx_bytes
    r.phys = phys
    return 0


cdef inline tuple _to_tuple(object x, Py_ssize_t n, str what):
    if not isinstance(x, tuple) or len(<tuple>x) != n:
        raise TypeError(f"{what}: expected tuples of {n}, got {type(x).__name__}")
    return <tuple>x


# -- sorting -----------------------------------------------------------------


cdef struct _ToKey:
    uint64_t k1  # the count column (65 bits with k1c)
    uint64_t k2  # the other count (65 bits with k2c), or 0
    uint64_t shi
    uint64_t slo
    uint64_t dhi
    uint64_t dlo
    int64_t vni
    Py_ssize_t idx  # dict order: the order of equal keys in Python's stable sort
    uint16_t sport
    uint16_t dport
    uint8_t k1c
    uint8_t k2c
    uint8_t proto
    uint8_t sver
    uint8_t dver


cdef int _to_cmp(const void *pa, const void *pb) noexcept nogil:
    cdef const _ToKey *a = <const _ToKey *>pa
    cdef const _ToKey *b = <const _ToKey *>pb
    if a.k1c != b.k1c:
        return -1 if a.k1c < b.k1c else 1
    if a.k1 != b.k1:
        return -1 if a.k1 < b.k1 else 1
    if a.k2c != b.k2c:
        return -1 if a.k2c < b.k2c else 1
    if a.k2 != b.k2:
        return -1 if a.k2 < b.k2 else 1
    if a.proto != b.proto:
        return -1 if a.proto < b.proto else 1
    if a.sver != b.sver:
        return -1 if a.sver < b.sver else 1
    if a.shi != b.shi:
        return -1 if a.shi < b.shi else 1
    if a.slo != b.slo:
        return -1 if a.slo < b.slo else 1
    if a.sport != b.sport:
        return -1 if a.sport < b.sport else 1
    if a.dver != b.dver:
        return -1 if a.dver < b.dver else 1
    if a.dhi != b.dhi:
        return -1 if a.dhi < b.dhi else 1
    if a.dlo != b.dlo:
        return -1 if a.dlo < b.dlo else 1
    if a.dport != b.dport:
        return -1 if a.dport < b.dport else 1
    if a.vni != b.vni:
        return -1 if a.vni < b.vni else 1
    if a.idx != b.idx:
        return -1 if a.idx < b.idx else 1
    return 0


cdef inline void _to_count_key(
    const _ToConn *r, int i, int j, bint desc, uint64_t *lo, uint8_t *carry
) noexcept nogil:
    # counter i (+ counter j when j >= 0) in 65 bits, as Python's integers
    # add; descending order is the ascending order of the complement
    cdef uint64_t v = r.c[i]
    cdef uint8_t c = 0
    if j >= 0:
        v = r.c[i] + r.c[j]
        c = v < r.c[i]
    if desc:
        v = ~v
        c = 1 - c
    lo[0] = v
    carry[0] = c


#: --sort column -> (first counter, added counter, second counter, added); -1: none
cdef dict _TO_COLUMNS = {
    "bytes": (1, 3, 0, 2),
    "packets": (0, 2, 1, 3),
    "tx-packets": (0, -1, -1, -1),
    "tx-bytes": (1, -1, -1, -1),
    "rx-packets": (2, -1, -1, -1),
    "rx-bytes": (3, -1, -1, -1),
}


@cython.final
cdef class OrderedItems:
    """The items of a report in order, a sequence of ``(Connection, Counts,
    physical)`` tuples built on demand.

    Made by :func:`sorted_items`; keeps every row's values as C structs, from
    which :func:`json_rows` and :func:`csv_rows` write without touching the
    Python objects again.
    """

    cdef tuple _snaps  # per table: its (Connection, Counts) pairs in dict order
    cdef tuple _physical  # per table: the physical flag as given
    cdef Py_ssize_t *_starts  # per table: index of its first row in _conns
    cdef Py_ssize_t _tables
    cdef _ToConn *_conns  # every row read, table after table, in dict order
    cdef Py_ssize_t *_order  # position -> index into _conns
    cdef Py_ssize_t _n
    # Made from a Window's table instead (Window.sorted_items): the rows'
    # entries, from which a row's objects are built when it is asked for.
    cdef Window _window
    cdef _ToRef *_refs  # per row of _conns
    cdef dict _addresses  # address objects already built, as materialize does

    def __dealloc__(self):
        free(self._starts)
        free(self._conns)
        free(self._order)
        free(self._refs)

    def __len__(self):
        return self._n

    def __getitem__(self, Py_ssize_t i):
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError("OrderedItems index out of range")
        return self._item(i)

    def __iter__(self):
        cdef Py_ssize_t i
        for i in range(self._n):
            yield self._item(i)

    cdef Py_ssize_t _table_of(self, Py_ssize_t g) noexcept:
        cdef Py_ssize_t t = 0
        while t + 1 < self._tables and self._starts[t + 1] <= g:
            t += 1
        return t

    cdef tuple _pair(self, Py_ssize_t g):
        cdef Py_ssize_t t
        if self._window is not None:
            return _ref_pair(self._window, &self._refs[g], self._addresses)
        t = self._table_of(g)
        return <tuple>(<list>self._snaps[t])[g - self._starts[t]]

    cdef tuple _item(self, Py_ssize_t i):
        cdef Py_ssize_t g = self._order[i]
        cdef tuple pair = self._pair(g)
        if self._window is not None:
            return (pair[0], pair[1], bool(self._conns[g].phys))
        return (pair[0], pair[1], self._physical[self._table_of(g)])


cdef enum:
    REF_NARROW = 0
    REF_WIDE = 1
    REF_TAGGED = 2  # the window's table of rows with a VNI (tagged.pxi)


cdef struct _ToRef:
    # where a row's entry is: shard, array (REF_*), index
    uint32_t index
    uint8_t shard
    uint8_t array


cdef tuple _ref_pair(Window win, const _ToRef *ref, dict addresses):
    cdef cs_window *w = win._table()
    cdef cs_table *t = &w.shards[ref.shard]
    cdef cs_entry4 *e4
    cdef cs_entry *e
    cdef cs_tentry *te
    cdef int64_t first = CS_TIME_NONE_FIRST, last = CS_TIME_NONE_LAST
    if ref.array == REF_TAGGED:
        te = &(<cs_ttable *>w.tagged).entries[ref.index]
        return _entry_pair(addresses, te.key.key.proto, te.key.key.sfam, te.key.key.src,
                           te.key.key.sport, te.key.key.dfam, te.key.key.dst,
                           te.key.key.dport, &te.c, te.key.vni, w.track_times,
                           te.first_ns, te.last_ns)
    if w.track_times:
        _times_of(t, ref.array == REF_WIDE, ref.index, &first, &last)
    if ref.array == REF_WIDE:
        e = &t.wide[ref.index]
        return _entry_pair(addresses, e.key.proto, e.key.sfam, e.key.src, e.key.sport,
                           e.key.dfam, e.key.dst, e.key.dport, &e.c, -1, w.track_times,
                           first, last)
    e4 = &t.narrow[ref.index]
    return _entry_pair(addresses, e4.key.proto, e4.key.sfam, e4.key.src, e4.key.sport,
                       e4.key.dfam, e4.key.dst, e4.key.dport, &e4.c, -1, w.track_times,
                       first, last)


cdef inline void _to_swap(_ToKey *a, _ToKey *b) noexcept nogil:
    cdef _ToKey t = a[0]
    a[0] = b[0]
    b[0] = t


cdef void _to_smallest(const _ToConn *conns, Py_ssize_t n, Py_ssize_t k, int f1, int f2,
                       int s1, int s2, bint reverse, Py_ssize_t base,
                       _ToKey *heap) noexcept nogil:
    """The k smallest keys of conns[0:n] (by _to_cmp) into heap[0:k], in order.

    A max-heap of the k best so far, each row's key made in turn: n log k
    comparisons, and memory for k keys only (a key per row of a large
    window was megabytes of fresh pages, slower to fault in than the
    selection itself)."""
    cdef Py_ssize_t i
    cdef _ToKey key
    if k <= 0:
        return
    for i in range(k):
        _to_fill_key(&conns[i], f1, f2, s1, s2, reverse, base + i, &heap[i])
    # heapify heap[0:k] as a max-heap
    for i in range(k // 2 - 1, -1, -1):
        _to_sift(heap, k, i)
    for i in range(k, n):
        _to_fill_key(&conns[i], f1, f2, s1, s2, reverse, base + i, &key)
        if _to_cmp(&key, &heap[0]) < 0:
            heap[0] = key
            _to_sift(heap, k, 0)
    qsort(heap, k, sizeof(_ToKey), _to_cmp)


cdef inline void _to_sift(_ToKey *heap, Py_ssize_t k, Py_ssize_t i) noexcept nogil:
    cdef Py_ssize_t c
    while True:
        c = 2 * i + 1
        if c >= k:
            return
        if c + 1 < k and _to_cmp(&heap[c + 1], &heap[c]) > 0:
            c += 1
        if _to_cmp(&heap[c], &heap[i]) <= 0:
            return
        _to_swap(&heap[c], &heap[i])
        i = c


cdef inline void _to_fill_key(const _ToConn *r, int f1, int f2, int s1, int s2, bint reverse,
                              Py_ssize_t idx, _ToKey *k) noexcept nogil:
    _to_count_key(r, f1, f2, not reverse, &k.k1, &k.k1c)
    if s1 >= 0:
        _to_count_key(r, s1, s2, not reverse, &k.k2, &k.k2c)
    else:
        k.k2 = 0
        k.k2c = 0
    k.proto = r.proto
    k.sver = r.s.ver
    k.shi = r.s.hi
    k.slo = r.s.lo
    k.sport = r.sport
    k.dver = r.d.ver
    k.dhi = r.d.hi
    k.dlo = r.d.lo
    k.dport = r.dport
    k.vni = r.vni
    k.idx = idx


cdef struct _ToRank:
    uint64_t k  # the count column's low 64 bits (as _to_count_key gives them)
    uint64_t tag  # its 65th bit << 63 | the row's index


cdef extern from *:
    """
    #define _TO_INDEX (~((uint64_t)1 << 63))
    """
    const uint64_t _TO_INDEX  # a _ToRank tag's row index


cdef inline void _to_prefetch_conn(const _ToConn *r) noexcept nogil:
    # every line of a row (96 bytes: two or three lines)
    cdef const char *p = <const char *>r
    cs_prefetch(p)
    cs_prefetch(p + sizeof(_ToConn) // 2)
    cs_prefetch(p + sizeof(_ToConn) - 1)


cdef inline uint32_t _to_digit(const _ToRank *r, int d) noexcept nogil:
    # radix digit d: bytes 0-7 of k, then (8) the 65th bit
    if d == 8:
        return <uint32_t>(r.tag >> 63)
    return <uint32_t>(r.k >> (8 * d)) & 0xFF


cdef inline Py_ssize_t _to_run_end(const _ToRank *a, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    # the end of the run of rows with a[i]'s count (all 65 bits) from i
    cdef Py_ssize_t j = i + 1
    while j < n and a[j].k == a[i].k and (a[j].tag >> 63) == (a[i].tag >> 63):
        j += 1
    return j


cdef int _to_rank(const _ToConn *conns, Py_ssize_t n, Py_ssize_t need, int f1, int f2,
                  int s1, int s2, bint reverse, Py_ssize_t base,
                  Py_ssize_t *out) except -1:
    """The indices (base + i) of the first ``need`` of conns[0:n] in report
    order (_to_cmp's), into out[0:need].

    A few rows of many (``--top``): a heap of ``need`` full keys
    (_to_smallest).  Most or all of them (JSON lines, CSV): a radix sort on
    the count column alone (16-byte items, a pass per byte that varies),
    and _to_cmp only within runs of equal counts, which captures have many
    of.  qsort of every row's full 80-byte key took 63 ms for 150k rows,
    most of it in cache misses (benchmarks/RESULTS.md)."""
    cdef _ToKey *keys = NULL
    cdef _ToRank *a = NULL
    cdef _ToRank *b = NULL
    cdef _ToRank *tmp
    cdef Py_ssize_t *counts = NULL
    cdef Py_ssize_t i, j, pos, got = 0, run, longest = 1, total, row
    cdef uint64_t k
    cdef uint8_t c
    cdef int d
    cdef uint32_t x
    if need <= 0 or n <= 0:
        return 0
    try:
        if need * 4 < n:
            keys = <_ToKey *>_alloc_array(need, sizeof(_ToKey))
            with nogil:
                _to_smallest(conns, n, need, f1, f2, s1, s2, reverse, base, keys)
                for i in range(need):
                    out[i] = keys[i].idx
            return 0
        a = <_ToRank *>_alloc_array(n, sizeof(_ToRank))
        b = <_ToRank *>_alloc_array(n, sizeof(_ToRank))
        counts = <Py_ssize_t *>_alloc_array(9 * 256, sizeof(Py_ssize_t))
        with nogil:
            memset(counts, 0, 9 * 256 * sizeof(Py_ssize_t))
            for i in range(n):
                _to_count_key(&conns[i], f1, f2, not reverse, &k, &c)
                a[i].k = k
                a[i].tag = (<uint64_t>c << 63) | <uint64_t>i
                for d in range(8):
                    counts[d * 256 + ((k >> (8 * d)) & 0xFF)] += 1
                counts[8 * 256 + c] += 1
            # least significant digit first; each pass is stable, so rows of
            # equal counts stay in index order
            for d in range(9):
                if counts[d * 256 + _to_digit(&a[0], d)] == n:
                    continue  # every row has this digit: nothing moves
                total = 0
                for x in range(256):
                    run = counts[d * 256 + x]
                    counts[d * 256 + x] = total
                    total += run
                for i in range(n):
                    x = _to_digit(&a[i], d)
                    b[counts[d * 256 + x]] = a[i]
                    counts[d * 256 + x] += 1
                tmp = a
                a = b
                b = tmp
            i = 0
            while i < n:
                j = _to_run_end(a, i, n)
                if j - i > longest:
                    longest = j - i
                i = j
        if longest > 1:
            keys = <_ToKey *>_alloc_array(longest, sizeof(_ToKey))
        with nogil:
            i = 0
            while i < n and got < need:
                j = _to_run_end(a, i, n)
                if j - i == 1:
                    out[got] = base + <Py_ssize_t>(a[i].tag & _TO_INDEX)
                    got += 1
                else:
                    # equal counts: the rest of the key decides
                    for pos in range(i, j):
                        if pos + _TO_AHEAD < j:
                            _to_prefetch_conn(&conns[a[pos + _TO_AHEAD].tag & _TO_INDEX])
                        row = <Py_ssize_t>(a[pos].tag & _TO_INDEX)
                        _to_fill_key(&conns[row], f1, f2, s1, s2, reverse, base + row,
                                     &keys[pos - i])
                    qsort(keys, j - i, sizeof(_ToKey), _to_cmp)
                    for pos in range(j - i):
                        if got == need:
                            break
                        out[got] = keys[pos].idx
                        got += 1
                i = j
        return 0
    finally:
        free(keys)
        free(a)
        free(b)
        free(counts)


cdef object _window_sorted_items(Window win, str column, bint reverse, Py_ssize_t top):
    """Window.sorted_items: the rows of a cut window's table, virtual first."""
    cdef tuple spec = _TO_COLUMNS.get(column)
    cdef cs_window *w = win._table()
    cdef OrderedItems res = OrderedItems.__new__(OrderedItems)
    cdef cs_table *t
    cdef cs_entry4 *e4
    cdef cs_entry *e
    cdef Py_ssize_t n = 0, nv, lo, hi, need, shown = 0, i, g, count
    cdef int f1, f2, s1, s2, sh
    cdef uint32_t j
    cdef _ToConn row
    cdef cs_ttable *tt = <cs_ttable *>w.tagged
    cdef cs_tentry *te
    cdef uint32_t ntagged = 0
    if spec is None:
        raise ValueError(f"column: not a count column: {column!r}")
    f1, f2, s1, s2 = spec
    for sh in range(NSHARDS):
        n += w.shards[sh].nnarrow + w.shards[sh].nwide
    if tt != NULL:
        ntagged = tt.count
        n += ntagged
    res._window = win
    res._addresses = {}
    res._tables = 0
    res._conns = <_ToConn *>_alloc_array(n, sizeof(_ToConn))
    res._refs = <_ToRef *>_alloc_array(n, sizeof(_ToRef))
    # Virtual rows fill _conns from the front, physical ones from the back.
    lo = 0
    hi = n
    with nogil:
        for sh in range(NSHARDS):
            t = &w.shards[sh]
            for j in range(t.nnarrow + t.nwide):
                if j < t.nnarrow:
                    e4 = &t.narrow[j]
                    _to_read_entry(e4.key.proto, e4.key.kind, e4.key.sfam, e4.key.src,
                                   e4.key.sport, e4.key.dfam, e4.key.dst, e4.key.dport,
                                   &e4.c, -1, &row)
                else:
                    e = &t.wide[j - t.nnarrow]
                    _to_read_entry(e.key.proto, e.key.kind, e.key.sfam, e.key.src,
                                   e.key.sport, e.key.dfam, e.key.dst, e.key.dport,
                                   &e.c, -1, &row)
                if row.phys:
                    hi -= 1
                    g = hi
                else:
                    g = lo
                    lo += 1
                res._conns[g] = row
                res._refs[g].shard = <uint8_t>sh
                res._refs[g].array = REF_WIDE if j >= t.nnarrow else REF_NARROW
                res._refs[g].index = j if j < t.nnarrow else j - t.nnarrow
        # then the rows with a tunnel's VNI, as materialize orders them
        for j in range(ntagged):
            te = &tt.entries[j]
            _to_read_entry(te.key.key.proto, te.key.key.kind, te.key.key.sfam,
                           te.key.key.src, te.key.key.sport, te.key.key.dfam,
                           te.key.key.dst, te.key.key.dport, &te.c, te.key.vni, &row)
            if row.phys:
                hi -= 1
                g = hi
            else:
                g = lo
                lo += 1
            res._conns[g] = row
            res._refs[g].shard = 0
            res._refs[g].array = REF_TAGGED
            res._refs[g].index = j
    nv = lo
    res._order = <Py_ssize_t *>_alloc_array(n, sizeof(Py_ssize_t))
    for lo, hi in ((0, nv), (nv, n)):
        count = hi - lo
        need = top - shown if top > 0 else count
        need = min(max(need, 0), count)
        if need == 0:
            continue
        _to_rank(&res._conns[lo], count, need, f1, f2, s1, s2, reverse, lo,
                 &res._order[res._n])
        res._n += need
        shown += need
    return res, n


def sorted_items(tables, str column, bint reverse, Py_ssize_t top):
    """``(items in order, number before --top)``, as ``cli.fastout.sorted_items``.

    ``tables`` is a sequence of ``(dict of Connection -> Counts, physical)``;
    the items are an :class:`OrderedItems`.
    """
    cdef tuple spec = _TO_COLUMNS.get(column)
    cdef tuple tabs = tuple(tables)
    cdef Py_ssize_t nt = len(tabs)
    cdef list snaps = [], physical = []
    cdef list needs = []
    cdef OrderedItems res = OrderedItems.__new__(OrderedItems)
    cdef list snap
    cdef tuple pair
    cdef Py_ssize_t total = 0, rows = 0, shown = 0, n, need, i, t, start
    cdef int f1, f2, s1, s2
    cdef bint phys
    if spec is None:
        raise ValueError(f"column: not a count column: {column!r}")
    f1, f2, s1, s2 = spec
    # What each table contributes, as cli.fastout.sorted_items decides it.
    for t in range(nt):
        table, flag = _to_tuple(tabs[t], 2, "tables")
        if not isinstance(table, dict):
            raise TypeError(f"tables: expected dicts, got {type(table).__name__}")
        n = len(<dict>table)
        total += n
        need = top - shown if top > 0 else n
        # a private snapshot: nothing below depends on the dict staying as it is
        snap = list((<dict>table).items()) if need > 0 and n > 0 else []
        need = min(max(need, 0), len(snap))
        snaps.append(snap)
        physical.append(flag)
        needs.append(need)
        rows += len(snap)
        shown += need
    res._snaps = tuple(snaps)
    res._physical = tuple(physical)
    res._tables = nt
    # sizes overflow-checked (_alloc_array); MemoryError frees what was got
    res._starts = <Py_ssize_t *>_alloc_array(nt + 1, sizeof(Py_ssize_t))
    res._conns = <_ToConn *>_alloc_array(rows, sizeof(_ToConn))
    res._order = <Py_ssize_t *>_alloc_array(shown, sizeof(Py_ssize_t))
    start = 0
    for t in range(nt):
        res._starts[t] = start
        snap = <list>snaps[t]
        n = len(snap)
        need = needs[t]
        if need == 0:
            start += n
            continue
        phys = physical[t]
        for i in range(n):
            pair = _to_tuple(snap[i], 2, "tables")
            _to_read(pair[0], pair[1], phys, &res._conns[start + i])
        _to_rank(&res._conns[start], n, need, f1, f2, s1, s2, reverse, start,
                 &res._order[res._n])
        res._n += need
        start += n
    res._starts[nt] = start
    return res, total


# -- writing -----------------------------------------------------------------


cdef struct _ToOut:
    char *data
    Py_ssize_t size
    Py_ssize_t cap
    Py_ssize_t rows  # rows written (JSON separates rows with a comma)
    # Streaming (json_rows_to, csv_rows_to): the text goes to write(bytes)
    # in chunks of about _TO_CHUNK bytes instead of into one growing block
    # (megabytes of fresh pages, then a str and an encoded copy of it).
    PyObject *write  # borrowed; NULL: collect everything
    const char *opener  # written before the first row, if any
    Py_ssize_t opener_len


cdef void _to_init(_ToOut *o) noexcept:
    memset(o, 0, sizeof(_ToOut))


cdef int _to_stream(_ToOut *o, object write) except -1:
    # o, empty, writing through write(bytes); the caller keeps write alive
    _to_init(o)
    if not callable(write):
        raise TypeError(f"write: expected a callable, got {type(write).__name__}")
    o.write = <PyObject *>write
    return 0


cdef int _to_flush(_ToOut *o) except -1:
    cdef bytes chunk
    if o.size:
        chunk = PyBytes_FromStringAndSize(o.data, o.size)
        o.size = 0
        (<object>o.write)(chunk)
    return 0


cdef int _to_room(_ToOut *o, Py_ssize_t n) except -1:
    cdef Py_ssize_t cap
    cdef char *grown
    if o.size + n <= o.cap:
        return 0
    if o.write != NULL:
        _to_flush(o)
        if n <= o.cap:
            return 0
    cap = max(o.cap * 2, o.size + n, 65536 if o.write == NULL else _TO_CHUNK)
    grown = <char *>realloc(o.data, cap)
    if grown == NULL:
        raise MemoryError()
    o.data = grown
    o.cap = cap
    return 0


cdef inline void _to_put(_ToOut *o, const char *s, Py_ssize_t n) noexcept nogil:
    memcpy(o.data + o.size, s, n)
    o.size += n


cdef inline void _to_putc(_ToOut *o, char ch) noexcept nogil:
    o.data[o.size] = ch
    o.size += 1


# "00" to "99": _to_putu writes two digits per division
cdef char _TO_PAIRS[200]
# "0" to "255" and each one's length: an IPv4 address's bytes
cdef char _TO_OCTETS[256][3]
cdef uint8_t _TO_OCTET_LEN[256]


cdef void _to_tables_init() noexcept:
    cdef int i
    cdef bytes text
    for i in range(100):
        _TO_PAIRS[2 * i] = <char>(48 + i // 10)
        _TO_PAIRS[2 * i + 1] = <char>(48 + i % 10)
    for i in range(256):
        text = str(i).encode()
        memcpy(_TO_OCTETS[i], <const char *>text, len(text))
        _TO_OCTET_LEN[i] = <uint8_t>len(text)


_to_tables_init()


cdef inline void _to_putu(_ToOut *o, uint64_t v) noexcept nogil:
    cdef char buf[20]
    cdef int n = 20
    while v >= 100:
        n -= 2
        memcpy(&buf[n], &_TO_PAIRS[2 * (v % 100)], 2)
        v //= 100
    if v >= 10:
        n -= 2
        memcpy(&buf[n], &_TO_PAIRS[2 * v], 2)
    else:
        n -= 1
        buf[n] = <char>(48 + v)
    _to_put(o, &buf[n], 20 - n)


cdef inline void _to_puthex(_ToOut *o, unsigned int v) noexcept nogil:
    cdef const char *digits = b"0123456789abcdef"
    if v >= 0x1000:
        _to_putc(o, digits[v >> 12])
    if v >= 0x100:
        _to_putc(o, digits[(v >> 8) & 15])
    if v >= 0x10:
        _to_putc(o, digits[(v >> 4) & 15])
    _to_putc(o, digits[v & 15])


cdef int _to_put_addr(_ToOut *o, const _ToAddr *a, object conn, bint dst) except -1:
    cdef unsigned int w[8]
    cdef unsigned int octet
    cdef int i, best = -1, best_len = 0, run = -1, run_len = 0
    cdef bytes text
    if a.ver == 4:
        for i in range(4):
            if i:
                _to_putc(o, c'.')
            octet = (a.lo >> (24 - 8 * i)) & 0xFF
            _to_put(o, _TO_OCTETS[octet], _TO_OCTET_LEN[octet])
        return 0
    if _to_embeds_v4(a):
        # rare, so ask str()
        if not isinstance(conn, Connection):
            raise TypeError("items: the Connection is needed for this address")
        text = str(((<Connection>conn).dst if dst else (<Connection>conn).src).addr).encode()
        # the rest of the row keeps the room reserved for it
        _to_room(o, len(text) + _TO_ROW_ROOM)
        _to_put(o, text, len(text))
        return 0
    for i in range(4):
        w[i] = (a.hi >> (48 - 16 * i)) & 0xFFFF
        w[4 + i] = (a.lo >> (48 - 16 * i)) & 0xFFFF
    # RFC 5952: the first longest run of two or more zero groups becomes "::"
    for i in range(8):
        if w[i] == 0:
            if run < 0:
                run = i
                run_len = 0
            run_len += 1
            if run_len > best_len:
                best = run
                best_len = run_len
        else:
            run = -1
    if best_len < 2:
        best = -1
    for i in range(8):
        if best >= 0 and best <= i < best + best_len:
            if i == best:
                _to_put(o, b"::", 2)
            continue
        if i > 0 and not (best >= 0 and i == best + best_len):
            _to_putc(o, c':')
        _to_puthex(o, w[i])
    return 0


cdef int _to_put_endpoint(
    _ToOut *o, const _ToAddr *a, uint16_t port, object conn, bint dst, bint with_port
) except -1:
    if with_port and a.ver == 6:
        _to_putc(o, c'[')
    _to_put_addr(o, a, conn, dst)
    if with_port:
        if a.ver == 6:
            _to_putc(o, c']')
        _to_putc(o, c':')
        _to_putu(o, port)
    return 0


cdef const char *_to_kind(const _ToConn *r, bint json) noexcept nogil:
    # cli.report.row_kind; JSON keeps physical rows apart instead of labelling them
    if r.phys:
        return b"" if json else b"physical"
    if r.s.ver == 0 and r.d.ver == 0:
        return b"undecoded"
    if r.proto == 0:
        return b"ip"
    if r.proto == 255:
        return b"fragment"
    return b""


cdef inline Py_ssize_t _to_strlen(const char *s) noexcept nogil:
    cdef Py_ssize_t n = 0
    while s[n]:
        n += 1
    return n


cdef inline void _to_sep(_ToOut *o, bint *first) noexcept nogil:
    if not first[0]:
        _to_putc(o, c',')
    first[0] = False


cdef const char *_TO_JSON_NAMES[4]
_TO_JSON_NAMES[0] = b'"txPkts":'
_TO_JSON_NAMES[1] = b'"txBytes":'
_TO_JSON_NAMES[2] = b'"rxPkts":'
_TO_JSON_NAMES[3] = b'"rxBytes":'


cdef int _to_json_row(_ToOut *o, const _ToConn *r, object conn) except -1:
    # `conn` is needed only when r.odd (str() of an address)
    cdef const char *kind = _to_kind(r, True)
    cdef Py_ssize_t kind_len = _to_strlen(kind)
    # Every address is written ADDR:PORT (":0" for ICMP, fragments and rows
    # without a transport), as Go writes a netip.AddrPort: a network-log
    # consumer cannot parse a bare address.
    cdef bint with_port = True
    cdef bint first = True
    cdef int i
    _to_room(o, _TO_ROW_ROOM + o.opener_len)
    if o.rows:
        _to_putc(o, c',')
    elif o.opener_len:
        _to_put(o, o.opener, o.opener_len)
    o.rows += 1
    _to_putc(o, c'{')
    if kind_len:
        _to_sep(o, &first)
        _to_put(o, b'"kind":"', 8)
        _to_put(o, kind, kind_len)
        _to_putc(o, c'"')
    if r.proto:
        _to_sep(o, &first)
        _to_put(o, b'"proto":', 8)
        _to_putu(o, r.proto)
    if r.s.ver:
        _to_sep(o, &first)
        _to_put(o, b'"src":"', 7)
        _to_put_endpoint(o, &r.s, r.sport, conn, False, with_port)
        _to_putc(o, c'"')
    if r.d.ver:
        _to_sep(o, &first)
        _to_put(o, b'"dst":"', 7)
        _to_put_endpoint(o, &r.d, r.dport, conn, True, with_port)
        _to_putc(o, c'"')
    if r.vni >= 0:
        _to_sep(o, &first)
        _to_put(o, b'"vni":', 6)
        _to_putu(o, <uint64_t>r.vni)
    for i in range(4):
        if r.c[i]:
            _to_sep(o, &first)
            _to_put(o, _TO_JSON_NAMES[i], _to_strlen(_TO_JSON_NAMES[i]))
            _to_putu(o, r.c[i])
    _to_putc(o, c'}')
    return 0


cdef int _to_csv_row(
    _ToOut *o, const _ToConn *r, object conn, bytes head, tuple names, bint vni
) except -1:
    cdef const char *kind = _to_kind(r, False)
    cdef Py_ssize_t kind_len = _to_strlen(kind)
    cdef bytes name = <bytes>names[r.proto]
    cdef int i
    _to_room(o, _TO_ROW_ROOM + len(head) + len(name))
    o.rows += 1
    _to_put(o, head, len(head))
    _to_put(o, kind, kind_len)
    _to_putc(o, c',')
    _to_putu(o, r.proto)
    _to_putc(o, c',')
    if kind_len and not r.phys:
        _to_put(o, kind, kind_len)
    else:
        _to_put(o, name, len(name))
    _to_putc(o, c',')
    if r.s.ver:
        _to_put_addr(o, &r.s, conn, False)
        _to_putc(o, c',')
        _to_putu(o, r.sport)
    else:
        _to_putc(o, c',')
    _to_putc(o, c',')
    if r.d.ver:
        _to_put_addr(o, &r.d, conn, True)
        _to_putc(o, c',')
        _to_putu(o, r.dport)
    else:
        _to_putc(o, c',')
    for i in range(4):
        _to_putc(o, c',')
        _to_putu(o, r.c[i])
    if vni:
        # the last column, present with connstats read --decap
        _to_putc(o, c',')
        if r.vni >= 0:
            _to_putu(o, <uint64_t>r.vni)
    _to_put(o, b"\r\n", 2)
    return 0


cdef object _to_text(_ToOut *o):
    return PyUnicode_DecodeUTF8(o.data, o.size, NULL) if o.size else ""


cdef int _to_rows(
    object items, bint csv, _ToOut *ov, _ToOut *op, bytes head, tuple names, bint vni
) except -1:
    # JSON: virtual rows to ov, physical ones to op (NULL: physical rows are
    # left out; ov NULL: virtual ones are); CSV: all to ov
    cdef OrderedItems ordered
    cdef const _ToConn *r
    cdef _ToConn one
    cdef tuple it
    cdef object conn
    cdef Py_ssize_t i
    if isinstance(items, OrderedItems):
        ordered = <OrderedItems>items
        for i in range(ordered._n):
            if i + _TO_AHEAD < ordered._n:
                # rows in report order are scattered over _conns: a miss
                # each, megabytes apart, unless fetched ahead
                _to_prefetch_conn(&ordered._conns[ordered._order[i + _TO_AHEAD]])
            r = &ordered._conns[ordered._order[i]]
            if not csv and (op if r.phys else ov) == NULL:
                continue
            conn = ordered._pair(ordered._order[i])[0] if r.odd else None
            if csv:
                _to_csv_row(ov, r, conn, head, names, vni)
            else:
                _to_json_row(op if r.phys else ov, r, conn)
        return 0
    for item in tuple(items):
        it = _to_tuple(item, 3, "items")
        _to_read(it[0], it[1], it[2], &one)
        if csv:
            _to_csv_row(ov, &one, it[0], head, names, vni)
        elif (op if one.phys else ov) != NULL:
            _to_json_row(op if one.phys else ov, &one, it[0])
    return 0


def json_rows(items):
    """``(virtual, physical)``: the rows of ``items`` as compact JSON objects
    joined by commas, as ``cli.fastout.json_items`` writes them.

    ``items``: an :class:`OrderedItems` or ``(Connection, Counts, physical)``
    tuples.
    """
    cdef _ToOut ov, op
    _to_init(&ov)
    _to_init(&op)
    try:
        _to_rows(items, False, &ov, &op, b"", (), False)
        return _to_text(&ov), _to_text(&op)
    finally:
        free(ov.data)
        free(op.data)


def json_rows_to(items, write, bint physical, bytes opener not None, bytes closer not None):
    """Write the virtual (or, ``physical``, the physical) rows of ``items`` as
    :func:`json_rows` makes them, through ``write(bytes)`` in chunks of about
    256 KiB: ``opener``, the rows joined by commas, ``closer``; nothing when
    there is no such row.  Returns the number of rows written.

    For an output whose text layer adds nothing (UTF-8, no newline
    translation): megabytes of rows never become one block, one ``str`` and
    one encoded copy of it.
    """
    cdef _ToOut o
    _to_stream(&o, write)
    o.opener = opener
    o.opener_len = len(opener)
    try:
        _to_rows(items, False, NULL if physical else &o, &o if physical else NULL,
                 b"", (), False)
        if o.rows:
            _to_room(&o, len(closer))
            _to_put(&o, closer, len(closer))
        _to_flush(&o)
        return o.rows
    finally:
        free(o.data)


cdef bytes _to_name(object name):
    if not isinstance(name, str):
        raise TypeError(f"names: expected str, got {type(name).__name__}")
    return (<str>name).encode()


def csv_rows(items, str head not None, names, bint vni=False):
    """CSV lines (CRLF) of ``items``, as ``cli.fastout.csv_items`` writes them.

    ``head`` is the window columns followed by ','; ``names`` the 256
    protocol names; ``vni``: end each line with the VNI column.
    """
    cdef tuple texts = _to_names(names)
    cdef _ToOut o
    _to_init(&o)
    try:
        _to_rows(items, True, &o, NULL, head.encode(), texts, vni)
        return _to_text(&o)
    finally:
        free(o.data)


def csv_rows_to(items, write, str head not None, names, bint vni=False):
    """Write :func:`csv_rows` of ``items`` through ``write(bytes)`` in chunks
    of about 256 KiB (see :func:`json_rows_to`); the number of rows."""
    cdef tuple texts = _to_names(names)
    cdef _ToOut o
    _to_stream(&o, write)
    try:
        _to_rows(items, True, &o, NULL, head.encode(), texts, vni)
        _to_flush(&o)
        return o.rows
    finally:
        free(o.data)


cdef tuple _to_names(object names):
    cdef tuple texts = tuple([_to_name(n) for n in names])
    if len(texts) != 256:
        raise ValueError(f"names: expected 256 protocol names, got {len(texts)}")
    return texts
