# Cumulative counts per series: the store of connstats.metrics.Totals.
#
# Totals folds every window (often 100,000 connections) into at most
# max_series series on the flush thread.  Keyed by ipaddress objects, each
# connection would call ipaddress's Python-level __hash__ twice (~1 us);
# here a series key is a tuple of ints (and the traffic string), built from
# the C values' raw address bytes, so a connection costs only C work.
#
# Key encoding, shared with the pure-Python twin (SeriesTable in
# connstats/_fastparse_py.py) and decoded to label values by Totals:
#   address: -1 when the connection has none, the IPv4 address as an int,
#            the IPv6 address as an int | SERIES_V6 (so 1.2.3.4 and
#            ::102:304 differ);
#   proto, ports: the ints; traffic: the string Totals passes in.

cdef enum:
    FIELD_TRAFFIC = 0
    FIELD_PROTO = 1
    FIELD_SRC = 2
    FIELD_DST = 3
    FIELD_SRC_PORT = 4
    FIELD_DST_PORT = 5
    NFIELDS = 6

SERIES_V6 = 1 << 128
cdef object _SERIES_V6 = SERIES_V6


@cython.final
@cython.no_gc
cdef class _Sums:
    # Four u64 counters, wrapping as Counts addition does.
    cdef uint64_t v[4]


cdef object _addr_series_value(object addr):
    # Any object with an IPv4Address/IPv6Address or None: a user's dump may
    # hand Totals tables it built itself.
    if addr is None:
        return -1
    if isinstance(addr, _IPv4Address):
        return int(addr)
    if isinstance(addr, _IPv6Address):
        return int(addr) | _SERIES_V6
    raise TypeError(
        f"table: a connection's address must be an ipaddress address or None, "
        f"got {type(addr).__name__}")


cdef object _addrport_series_value(AddrPort ap):
    if ap._fam == 0:
        return -1
    if ap._fam == 4:
        return _address_value(4, ap._raw)
    return _address_value(6, ap._raw) | _SERIES_V6


cdef inline uint64_t _u64_count(object value, str name) except? 0xFFFFFFFFFFFFFFFF:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"table: Counts.{name} must be an int, got {type(value).__name__}")
    if value < 0 or value > 0xFFFFFFFFFFFFFFFF:
        raise ValueError(f"table: Counts.{name} must be 0..2**64-1, got {value}")
    return <uint64_t>value


@cython.final
cdef class SeriesTable:
    """Counts per series, summed over the windows folded into it.

    ``fields``: the label codes in label order (0 traffic, 1 proto, 2 src,
    3 dst, 4 src_port, 5 dst_port).  Beyond ``max_series`` series, counts go
    to the overflow series (key ``None``).  Not locked: Totals serializes
    every call.
    """

    cdef dict _series
    cdef _Sums _other
    cdef int _codes[NFIELDS]
    cdef Py_ssize_t _nfields
    cdef Py_ssize_t _max_series
    cdef readonly object fields

    def __init__(self, fields, Py_ssize_t max_series):
        cdef Py_ssize_t i
        cdef object code
        fields = tuple(fields)
        if len(fields) > NFIELDS:
            raise ValueError(f"fields: at most {NFIELDS} codes, got {len(fields)}")
        for i in range(len(fields)):
            code = fields[i]
            if not isinstance(code, int) or not 0 <= code < NFIELDS or fields.index(code) != i:
                raise ValueError(f"fields: expected distinct codes 0..{NFIELDS - 1}, got {fields!r}")
            self._codes[i] = code
        if max_series < 0:
            raise ValueError(f"max_series: must be >= 0, got {max_series}")
        self._nfields = len(fields)
        self._max_series = max_series
        self._series = {}
        self._other = None
        self.fields = fields

    def __len__(self):
        return len(self._series)

    def fold_slices(self, table, traffic):
        """Add ``table`` (Mapping[Connection, Counts]) to the series, yielding
        after every MATERIALIZE_SLICE connections (as Window.materialize_slices
        does, so that packet threads get the GIL back between slices)."""
        cdef Py_ssize_t since_yield = 0
        cdef Py_ssize_t i
        cdef int code
        cdef tuple key
        cdef object value, src, dst, sums_obj
        cdef Connection c
        cdef Counts n
        cdef _Sums sums
        cdef uint64_t tp, tb, rp, rb
        cdef dict series = self._series
        for conn, counts in table.items():
            key = PyTuple_New(self._nfields)
            if type(conn) is Connection:
                c = <Connection>conn
                for i in range(self._nfields):
                    code = self._codes[i]
                    if code == FIELD_TRAFFIC:
                        value = traffic
                    elif code == FIELD_PROTO:
                        value = c.proto
                    elif code == FIELD_SRC:
                        value = _addrport_series_value(c.src)
                    elif code == FIELD_DST:
                        value = _addrport_series_value(c.dst)
                    elif code == FIELD_SRC_PORT:
                        value = c.src.port
                    else:
                        value = c.dst.port
                    Py_INCREF(value)
                    PyTuple_SET_ITEM(key, i, value)
            else:
                for i in range(self._nfields):
                    code = self._codes[i]
                    if code == FIELD_TRAFFIC:
                        value = traffic
                    elif code == FIELD_PROTO:
                        value = int(conn.proto)
                    elif code == FIELD_SRC:
                        value = _addr_series_value(conn.src.addr)
                    elif code == FIELD_DST:
                        value = _addr_series_value(conn.dst.addr)
                    elif code == FIELD_SRC_PORT:
                        value = int(conn.src.port)
                    else:
                        value = int(conn.dst.port)
                    Py_INCREF(value)
                    PyTuple_SET_ITEM(key, i, value)
            if type(counts) is Counts:
                n = <Counts>counts
                tp = n.tx_packets
                tb = n.tx_bytes
                rp = n.rx_packets
                rb = n.rx_bytes
            else:
                tp = _u64_count(counts.tx_packets, "tx_packets")
                tb = _u64_count(counts.tx_bytes, "tx_bytes")
                rp = _u64_count(counts.rx_packets, "rx_packets")
                rb = _u64_count(counts.rx_bytes, "rx_bytes")
            sums_obj = series.get(key)
            if sums_obj is None:
                if len(series) < self._max_series:
                    sums = _Sums.__new__(_Sums)
                    series[key] = sums
                else:
                    if self._other is None:
                        self._other = _Sums.__new__(_Sums)
                    sums = self._other
            else:
                sums = <_Sums>sums_obj
            # uint64_t arithmetic wraps, as Counts addition does
            sums.v[0] += tp
            sums.v[1] += tb
            sums.v[2] += rp
            sums.v[3] += rb
            since_yield += 1
            if since_yield == MATERIALIZE_SLICE:
                since_yield = 0
                yield

    def items(self):
        """``[(key, (tx_packets, tx_bytes, rx_packets, rx_bytes)), ...]``;
        the overflow series, if used, last with key ``None``."""
        cdef _Sums sums
        out = []
        for key, sums_obj in self._series.items():
            sums = <_Sums>sums_obj
            out.append((key, (sums.v[0], sums.v[1], sums.v[2], sums.v[3])))
        if self._other is not None:
            sums = self._other
            out.append((None, (sums.v[0], sums.v[1], sums.v[2], sums.v[3])))
        return out
