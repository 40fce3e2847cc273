# A window's connections as packed columns, for Arrow and Parquet
# (connstats.export.arrow): one C pass over the window's entries (or over the
# C fields of the Connection and Counts objects of a dump's dicts) fills one
# bytes object per column, which pyarrow wraps without a copy and without a
# Python object per connection.  The pure-Python twin is
# connstats._fastparse_py.columns; tests/test_export_arrow.py compares them.
#
# Layout of each column (native byte order, as Arrow's buffers on this
# machine):
#   kind, proto, src_family, dst_family   uint8 (kind: 0 virtual, 1 physical;
#                                         family: 0 none, 4, 6)
#   src_port, dst_port                    uint16
#   tx_packets ... rx_bytes               uint64
#   src_valid, dst_valid                  validity bitmap (bit i: row i has an
#                                         address; LSB first), None if all do
#   src_offsets, dst_offsets              int64, n + 1 (Arrow large_string)
#   src_text, dst_text                    UTF-8 of the addresses, as str()
#   src_packed, dst_packed                16 bytes per row (packed=True only)
#   first_ns, last_ns                     int64, or None without times
#   vni, vni_valid                        uint32 and its validity bitmap: the
#                                         VNI of decapsulated tunnel rows
#                                         (docs/tunnels.md); None if no row has one
# Rows come in the order the window's dicts would have them.

cdef struct _ColRow:
    uint64_t c[4]
    int64_t first
    int64_t last
    int64_t vni  # -1: none
    uint16_t sport
    uint16_t dport
    uint8_t proto
    uint8_t phys
    uint8_t sfam
    uint8_t dfam
    uint8_t src[16]
    uint8_t dst[16]


cdef struct _ColOut:
    Py_ssize_t n
    bint packed
    bint times
    uint8_t *kind
    uint8_t *proto
    uint8_t *sfam
    uint8_t *dfam
    uint16_t *sport
    uint16_t *dport
    uint64_t *c[4]
    uint8_t *svalid
    uint8_t *dvalid
    int64_t *soff
    int64_t *doff
    uint8_t *spacked
    uint8_t *dpacked
    int64_t *first
    int64_t *last
    uint32_t *vni
    uint8_t *vvalid
    bint v_any
    bint s_missing
    bint d_missing
    _ToOut stext
    _ToOut dtext


cdef bytes _col_bytes(Py_ssize_t nbytes, uint8_t **out):
    # An uninitialised bytes object to write into (it is not shared yet).
    cdef bytes b = PyBytes_FromStringAndSize(NULL, nbytes)
    out[0] = <uint8_t *>PyBytes_AS_STRING(b)
    return b


# "0".."255" and their lengths: an IPv4 address is four copies and three dots
# (the general writer divides by ten for every digit).
cdef char _COL_OCTETS[256][4]
cdef uint8_t _COL_OCTET_LEN[256]


cdef void _col_init_octets() noexcept:
    cdef int i, n
    cdef bytes text
    for i in range(256):
        text = str(i).encode()
        n = len(text)
        memcpy(_COL_OCTETS[i], <const char *>text, n)
        _COL_OCTET_LEN[i] = <uint8_t>n


_col_init_octets()


cdef inline void _col_v4(_ToOut *o, const uint8_t *raw) noexcept nogil:
    # the caller made room for 15 bytes
    cdef int i
    cdef uint8_t n
    cdef char *p = o.data + o.size
    for i in range(4):
        n = _COL_OCTET_LEN[raw[i]]
        memcpy(p, _COL_OCTETS[raw[i]], 4)  # fixed size: one move; the tail is overwritten
        p += n
        if i < 3:
            p[0] = c'.'
            p += 1
    o.size = p - o.data


cdef int _col_text(_ToOut *o, uint8_t fam, const uint8_t *raw) except -1:
    cdef _ToAddr a
    cdef bytes text
    if fam == 4:
        _to_room(o, 16)  # 15, and the last octet's 4-byte copy may reach one past
        _col_v4(o, raw)
        return 0
    a.ver = fam
    a.hi = 0
    a.lo = 0
    if fam == 4:
        a.lo = _to_be(raw, 4)
    else:
        a.hi = _to_be(raw, 8)
        a.lo = _to_be(raw + 8, 8)
    if _to_embeds_v4(&a):
        # ::a.b.c.d and ::ffff:a.b.c.d: str()'s text, which Python versions
        # write differently (as textout does)
        text = str(_IPv6Address(PyBytes_FromStringAndSize(<const char *>raw, 16))).encode()
        _to_room(o, len(text))
        _to_put(o, text, len(text))
        return 0
    _to_room(o, 48)
    _to_put_addr(o, &a, None, False)
    return 0


cdef inline void _col_bit(uint8_t *bitmap, Py_ssize_t i, bint valid) noexcept nogil:
    if valid:
        bitmap[i >> 3] |= <uint8_t>(1 << (i & 7))


cdef int _col_put(_ColOut *o, Py_ssize_t i, const _ColRow *r) except -1:
    cdef int j
    o.kind[i] = r.phys
    o.proto[i] = r.proto
    o.sfam[i] = r.sfam
    o.dfam[i] = r.dfam
    o.sport[i] = r.sport
    o.dport[i] = r.dport
    for j in range(4):
        o.c[j][i] = r.c[j]
    if r.sfam:
        _col_text(&o.stext, r.sfam, r.src)
    else:
        o.s_missing = True
    if r.dfam:
        _col_text(&o.dtext, r.dfam, r.dst)
    else:
        o.d_missing = True
    _col_bit(o.svalid, i, r.sfam != 0)
    _col_bit(o.dvalid, i, r.dfam != 0)
    o.soff[i + 1] = o.stext.size
    o.doff[i + 1] = o.dtext.size
    if o.packed:
        memcpy(o.spacked + 16 * i, r.src, 16)
        memcpy(o.dpacked + 16 * i, r.dst, 16)
    if o.times:
        o.first[i] = r.first
        o.last[i] = r.last
    o.vni[i] = <uint32_t>r.vni if r.vni >= 0 else 0
    _col_bit(o.vvalid, i, r.vni >= 0)
    if r.vni >= 0:
        o.v_any = True
    return 0


cdef inline void _col_from_key(uint8_t proto, uint8_t kind, uint8_t sfam, const uint8_t *src,
                               uint16_t sport, uint8_t dfam, const uint8_t *dst,
                               uint16_t dport, int alen, const cs_counts *c,
                               _ColRow *r) noexcept nogil:
    # alen address bytes of each side (4 in a compact key, 16 in a wide
    # one); the key's bytes past the family's length are zero
    r.proto = proto
    r.phys = kind == KIND_PHYSICAL
    r.sfam = sfam
    r.dfam = dfam
    r.sport = sport
    r.dport = dport
    memset(r.src, 0, 16)
    memset(r.dst, 0, 16)
    memcpy(r.src, src, alen)
    memcpy(r.dst, dst, alen)
    r.c[0] = c.tx_packets
    r.c[1] = c.tx_bytes
    r.c[2] = c.rx_packets
    r.c[3] = c.rx_bytes
    r.vni = -1


cdef inline void _col_from_entry(const cs_table *t, bint wide, uint32_t j, bint times,
                                 _ColRow *r) noexcept nogil:
    cdef const cs_entry *e
    cdef const cs_entry4 *e4
    if wide:
        e = &t.wide[j]
        _col_from_key(e.key.proto, e.key.kind, e.key.sfam, e.key.src, e.key.sport,
                      e.key.dfam, e.key.dst, e.key.dport, 16, &e.c, r)
    else:
        e4 = &t.narrow[j]
        _col_from_key(e4.key.proto, e4.key.kind, e4.key.sfam, e4.key.src, e4.key.sport,
                      e4.key.dfam, e4.key.dst, e4.key.dport, 4, &e4.c, r)
    if times:
        _times_of(t, wide, j, &r.first, &r.last)


cdef inline void _col_from_tagged(const cs_ttable *t, uint32_t j, bint times,
                                  _ColRow *r) noexcept nogil:
    cdef const cs_tentry *e = &t.entries[j]
    r.proto = e.key.key.proto
    r.phys = e.key.key.kind == KIND_PHYSICAL
    r.sfam = e.key.key.sfam
    r.dfam = e.key.key.dfam
    r.sport = e.key.key.sport
    r.dport = e.key.key.dport
    memcpy(r.src, e.key.key.src, 16)
    memcpy(r.dst, e.key.key.dst, 16)
    r.c[0] = e.c.tx_packets
    r.c[1] = e.c.tx_bytes
    r.c[2] = e.c.rx_packets
    r.c[3] = e.c.rx_bytes
    r.vni = e.key.vni
    if times:
        r.first = e.first_ns
        r.last = e.last_ns


cdef int _col_from_objects(object conn, object counts, bint phys, _ColRow *r) except -1:
    cdef Connection k
    cdef Counts c
    if not isinstance(conn, Connection):
        raise TypeError(f"virtual/physical: expected Connection keys, got {type(conn).__name__}")
    if not isinstance(counts, Counts):
        raise TypeError(f"virtual/physical: expected Counts values, got {type(counts).__name__}")
    k = <Connection>conn
    c = <Counts>counts
    r.proto = <uint8_t>k.proto
    r.phys = phys
    r.sfam = k.src._fam
    r.dfam = k.dst._fam
    r.sport = <uint16_t>k.src.port
    r.dport = <uint16_t>k.dst.port
    memset(r.src, 0, 16)
    memset(r.dst, 0, 16)
    if r.sfam:
        memcpy(r.src, k.src._raw, _addr_len(r.sfam))
    if r.dfam:
        memcpy(r.dst, k.dst._raw, _addr_len(r.dfam))
    r.c[0] = c.tx_packets
    r.c[1] = c.tx_bytes
    r.c[2] = c.rx_packets
    r.c[3] = c.rx_bytes
    r.vni = k._vni
    if isinstance(counts, TimedCounts):
        r.first = (<TimedCounts>counts).first_ns
        r.last = (<TimedCounts>counts).last_ns
    return 0


@cython.final
cdef class Columns:
    """A window's connections as packed columns; see core/columns.pxi."""

    cdef readonly Py_ssize_t n
    cdef readonly bytes kind
    cdef readonly bytes proto
    cdef readonly bytes src_family
    cdef readonly bytes dst_family
    cdef readonly bytes src_port
    cdef readonly bytes dst_port
    cdef readonly bytes tx_packets
    cdef readonly bytes tx_bytes
    cdef readonly bytes rx_packets
    cdef readonly bytes rx_bytes
    cdef readonly object src_valid
    cdef readonly object dst_valid
    cdef readonly bytes src_offsets
    cdef readonly bytes dst_offsets
    cdef readonly bytes src_text
    cdef readonly bytes dst_text
    cdef readonly object src_packed
    cdef readonly object dst_packed
    cdef readonly object first_ns
    cdef readonly object last_ns
    cdef readonly object vni
    cdef readonly object vni_valid

    def __init__(self, *args, **kwargs):
        raise TypeError("Columns objects come from connstats' columns()")


cdef Columns _col_begin(_ColOut *o, Py_ssize_t n, bint packed, bint times):
    cdef Columns cols = Columns.__new__(Columns)
    cdef Py_ssize_t nbits = (n + 7) // 8
    cdef uint8_t *p
    cdef int j
    memset(o, 0, sizeof(_ColOut))
    o.n = n
    o.packed = packed
    o.times = times
    cols.n = n
    cols.kind = _col_bytes(n, &o.kind)
    cols.proto = _col_bytes(n, &o.proto)
    cols.src_family = _col_bytes(n, &o.sfam)
    cols.dst_family = _col_bytes(n, &o.dfam)
    cols.src_port = _col_bytes(2 * n, &p)
    o.sport = <uint16_t *>p
    cols.dst_port = _col_bytes(2 * n, &p)
    o.dport = <uint16_t *>p
    cols.tx_packets = _col_bytes(8 * n, &p)
    o.c[0] = <uint64_t *>p
    cols.tx_bytes = _col_bytes(8 * n, &p)
    o.c[1] = <uint64_t *>p
    cols.rx_packets = _col_bytes(8 * n, &p)
    o.c[2] = <uint64_t *>p
    cols.rx_bytes = _col_bytes(8 * n, &p)
    o.c[3] = <uint64_t *>p
    cols.src_valid = _col_bytes(nbits, &o.svalid)
    cols.dst_valid = _col_bytes(nbits, &o.dvalid)
    memset(o.svalid, 0, nbits)
    memset(o.dvalid, 0, nbits)
    cols.src_offsets = _col_bytes(8 * (n + 1), &p)
    o.soff = <int64_t *>p
    cols.dst_offsets = _col_bytes(8 * (n + 1), &p)
    o.doff = <int64_t *>p
    o.soff[0] = 0
    o.doff[0] = 0
    if packed:
        cols.src_packed = _col_bytes(16 * n, &o.spacked)
        cols.dst_packed = _col_bytes(16 * n, &o.dpacked)
    if times:
        cols.first_ns = _col_bytes(8 * n, &p)
        o.first = <int64_t *>p
        cols.last_ns = _col_bytes(8 * n, &p)
        o.last = <int64_t *>p
    cols.vni = _col_bytes(4 * n, &p)
    o.vni = <uint32_t *>p
    cols.vni_valid = _col_bytes(nbits, &o.vvalid)
    memset(o.vvalid, 0, nbits)
    return cols


cdef void _col_end(_ColOut *o, Columns cols):
    cols.src_text = PyBytes_FromStringAndSize(o.stext.data, o.stext.size) if o.stext.size else b""
    cols.dst_text = PyBytes_FromStringAndSize(o.dtext.data, o.dtext.size) if o.dtext.size else b""
    if not o.s_missing:
        cols.src_valid = None
    if not o.d_missing:
        cols.dst_valid = None
    if not o.v_any:
        cols.vni = None
        cols.vni_valid = None


def columns(source, bint packed=False):
    """The connections of ``source`` as a :class:`Columns`.

    ``source``: a cut :class:`Window`, or a ``(virtual, physical)`` pair of
    dicts of Connection -> Counts (first/last times are included when every
    value is a TimedCounts).  ``packed``: also the 16-byte packed addresses.
    """
    cdef _ColOut o
    cdef _ColRow r
    cdef Columns cols
    cdef cs_window *w
    cdef Window window
    cdef Py_ssize_t n, i = 0
    cdef int s
    cdef uint32_t j
    cdef bint times
    cdef list parts
    cdef tuple pair
    cdef cs_ttable *tagged
    memset(&r, 0, sizeof(_ColRow))
    if isinstance(source, Window):
        window = <Window>source
        w = window._table()
        n = w.nconns
        cols = _col_begin(&o, n, packed, w.track_times)
        try:
            for s in range(NSHARDS):
                for j in range(w.shards[s].nnarrow + w.shards[s].nwide):
                    if i == n:
                        raise RuntimeError("columns: the window changed")  # pragma: no cover
                    if j < w.shards[s].nnarrow:
                        _col_from_entry(&w.shards[s], False, j, w.track_times, &r)
                    else:
                        _col_from_entry(&w.shards[s], True, j - w.shards[s].nnarrow,
                                        w.track_times, &r)
                    _col_put(&o, i, &r)
                    i += 1
            tagged = <cs_ttable *>w.tagged
            if tagged != NULL:
                for j in range(tagged.count):
                    if i == n:
                        raise RuntimeError("columns: the window changed")  # pragma: no cover
                    _col_from_tagged(tagged, j, w.track_times, &r)
                    _col_put(&o, i, &r)
                    i += 1
            _col_end(&o, cols)
        finally:
            free(o.stext.data)
            free(o.dtext.data)
        return cols
    if not isinstance(source, tuple) or len(<tuple>source) != 2:
        raise TypeError(
            f"source: expected a Window or a (virtual, physical) pair of dicts, "
            f"got {type(source).__name__}")
    # Private snapshots: nothing below depends on the dicts staying as they are.
    parts = []
    for table in <tuple>source:
        if not isinstance(table, dict):
            raise TypeError(f"virtual/physical: expected a dict, got {type(table).__name__}")
        parts.append(list((<dict>table).items()))
    n = len(<list>parts[0]) + len(<list>parts[1])
    times = n > 0
    for part in parts:
        for pair in <list>part:
            if not isinstance(pair[1], TimedCounts):
                times = False
                break
    cols = _col_begin(&o, n, packed, times)
    try:
        for s in range(2):
            for pair in <list>parts[s]:
                _col_from_objects(pair[0], pair[1], s == 1, &r)
                _col_put(&o, i, &r)
                i += 1
        _col_end(&o, cols)
    finally:
        free(o.stext.data)
        free(o.dtext.data)
    return cols
