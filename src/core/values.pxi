# Value types handed to users: AddrPort, Connection, Counts.
#
# They are C types rather than NamedTuples because a window of 100,000
# connections must become Python objects in well under 1.5 us each: the
# hashes are computed from the raw address bytes once, at construction, so
# dict insertion never calls ipaddress's Python-level __hash__.  The
# pure-Python core uses the NamedTuples in connstats/_types.py, which behave
# the same (fields, order, str, to_dict, Counts addition).

cdef object _IPv4Address = ipaddress.IPv4Address
cdef object _IPv6Address = ipaddress.IPv6Address
cdef uint64_t _VALUE_SEED = _random_seed()


cdef inline bint _ord_cmp(int c, int op) noexcept:
    # Map a three-way comparison result to the rich comparison `op`.
    if op == Py_LT:
        return c < 0
    if op == Py_LE:
        return c <= 0
    if op == Py_EQ:
        return c == 0
    if op == Py_NE:
        return c != 0
    if op == Py_GT:
        return c > 0
    return c >= 0


cdef inline Py_hash_t _fix_hash(uint64_t h) noexcept:
    cdef Py_hash_t r = <Py_hash_t>h
    if r == -1:
        r = -2
    return r


# no_gc: an AddrPort refers only to an ipaddress object (or None) and a
# Connection only to AddrPorts, so neither can be part of a reference cycle.
# Untracked objects keep a 100,000-connection window from triggering
# collections that would cost more than building it.
@cython.final
@cython.no_gc
@cython.freelist(64)
cdef class AddrPort:
    """An IP address (``None`` when the packet had none) and a port."""

    cdef readonly object addr
    cdef readonly int port
    cdef uint8_t _fam
    cdef uint8_t _raw[16]
    cdef Py_hash_t _hash

    # Construction happens in __cinit__ (tp_new), and there is no __init__:
    # calling __init__ again on a value is object.__init__, a no-op, so a
    # value (and its hash, while it is a dict key) can never change.
    def __cinit__(self, addr=None, port=0):
        cdef int number
        if addr is None and port is 0:
            # AddrPort.__new__(AddrPort) from the table builders: they set
            # every field themselves, and tp_new zeroed the C fields.
            self._hash = _EMPTY_ADDRPORT_HASH
            return
        if addr is None:
            self._fam = 0
        elif isinstance(addr, (_IPv4Address, _IPv6Address)):
            self._fam = _ip_into(addr, "addr", self._raw)
        else:
            raise TypeError(
                f"addr: expected ipaddress.IPv4Address, IPv6Address or None, "
                f"got {type(addr).__name__}")
        number = <int>_int64_in(port, "port", 0, 0xFFFF)
        self.addr = addr
        self.port = number
        self._hash = _addrport_hash(self._fam, self._raw, <uint16_t>number)

    def __hash__(self):
        return self._hash

    def __richcmp__(self, other, int op):
        if not isinstance(other, AddrPort):
            return NotImplemented
        return _ord_cmp(_addrport_cmp(self, <AddrPort>other), op)

    def __iter__(self):
        return iter((self.addr, self.port))

    def __len__(self):
        return 2

    def __getitem__(self, index):
        return (self.addr, self.port)[index]

    def __reduce__(self):
        return (AddrPort, (self.addr, self.port))

    def __repr__(self):
        return f"AddrPort(addr={self.addr!r}, port={self.port})"

    def __str__(self):
        if self._fam == 0:
            return f"invalid:{self.port}" if self.port else "invalid"
        if self._fam == 6:
            return f"[{self.addr}]:{self.port}"
        return f"{self.addr}:{self.port}"


cdef inline Py_hash_t _addrport_hash(uint8_t fam, const uint8_t *raw, uint16_t port) noexcept:
    cdef cs_key k
    memset(&k, 0, sizeof(cs_key))
    k.sfam = fam
    k.sport = port
    if fam:
        memcpy(k.src, raw, _addr_len(fam))
    return _fix_hash(cs_hash40(&k, _VALUE_SEED))


cdef inline int _addrport_cmp(AddrPort a, AddrPort b) noexcept:
    cdef int c
    if a._fam != b._fam:
        return -1 if a._fam < b._fam else 1
    if a._fam:
        c = memcmp(a._raw, b._raw, _addr_len(a._fam))
        if c:
            return -1 if c < 0 else 1
    if a.port != b.port:
        return -1 if a.port < b.port else 1
    return 0


cdef AddrPort _make_addrport(object addr, uint8_t fam, const uint8_t *raw, uint16_t port):
    # Fast construction from the table: AddrPort.__new__(AddrPort) takes
    # __cinit__'s no-argument path, without validation.
    cdef AddrPort ap = AddrPort.__new__(AddrPort)
    ap.addr = addr
    ap.port = port
    ap._fam = fam
    if fam:
        memcpy(ap._raw, raw, _addr_len(fam))
    ap._hash = _addrport_hash(fam, raw, port)
    return ap


cdef Py_hash_t _EMPTY_ADDRPORT_HASH = _addrport_hash(0, NULL, 0)
cdef AddrPort _NO_ADDRPORT = _make_addrport(None, 0, NULL, 0)


cdef inline AddrPort _as_addrport(object value, str argname):
    if isinstance(value, AddrPort):
        return <AddrPort>value
    if isinstance(value, tuple) and len(<tuple>value) == 2:
        return AddrPort(value[0], value[1])
    raise TypeError(f"{argname}: expected an AddrPort, got {type(value).__name__}")


@cython.final
@cython.no_gc
@cython.freelist(64)
cdef class Connection:
    """A connection: IP protocol number, source and destination AddrPort.

    For tx packets src/dst are the packet's own; for rx they are swapped, so
    both directions of a flow land on the same Connection.  Physical
    connections counted by ``update_*_physical`` have proto 0 and src.port 0.
    ``vni`` is the VNI or key of the tunnel a decapsulated packet came
    through (docs/tunnels.md), else None; it is not one of the three items.
    """

    cdef readonly int proto
    cdef readonly AddrPort src
    cdef readonly AddrPort dst
    cdef int64_t _vni   # -1: none
    cdef Py_hash_t _hash

    # Built in __cinit__ with no __init__, as AddrPort: immutable.
    def __cinit__(self, proto=0, src=None, dst=None, vni=None):
        # src and dst are never None, even for Connection.__new__(Connection).
        if proto is 0 and src is None and dst is None and vni is None:
            self.src = _NO_ADDRPORT
            self.dst = _NO_ADDRPORT
            self._vni = -1
            self._hash = _EMPTY_CONNECTION_HASH
            return
        self.proto = <int>_int64_in(proto, "proto", 0, 255)
        self.src = _NO_ADDRPORT if src is None else _as_addrport(src, "src")
        self.dst = _NO_ADDRPORT if dst is None else _as_addrport(dst, "dst")
        self._vni = -1 if vni is None else _int64_in(vni, "vni", 0, 0xFFFFFFFF)
        self._hash = _connection_hash(self.proto, self.src._hash, self.dst._hash, self._vni)

    @property
    def vni(self):
        """The tunnel's VNI or key (an int), or None."""
        return None if self._vni < 0 else self._vni

    def __hash__(self):
        return self._hash

    def __richcmp__(self, other, int op):
        cdef Connection o
        cdef int c
        if not isinstance(other, Connection):
            return NotImplemented
        o = <Connection>other
        if self.proto != o.proto:
            c = -1 if self.proto < o.proto else 1
        else:
            c = _addrport_cmp(self.src, o.src)
            if c == 0:
                c = _addrport_cmp(self.dst, o.dst)
            if c == 0 and self._vni != o._vni:
                c = -1 if self._vni < o._vni else 1
        return _ord_cmp(c, op)

    def __iter__(self):
        return iter((self.proto, self.src, self.dst))

    def __len__(self):
        return 3

    def __getitem__(self, index):
        return (self.proto, self.src, self.dst)[index]

    def __reduce__(self):
        if self._vni >= 0:
            return (Connection, (self.proto, self.src, self.dst, self._vni))
        return (Connection, (self.proto, self.src, self.dst))

    def __repr__(self):
        if self._vni >= 0:
            return (f"Connection(proto={self.proto}, src={self.src!r}, dst={self.dst!r}, "
                    f"vni={self._vni})")
        return f"Connection(proto={self.proto}, src={self.src!r}, dst={self.dst!r})"

    def __str__(self):
        name = protocol_name(self.proto) or "ip"
        if self._vni >= 0:
            return f"{name} {self.src} -> {self.dst} vni {self._vni}"
        return f"{name} {self.src} -> {self.dst}"

    def to_dict(self):
        """JSON-ready dict in the shape of Tailscale's network log (plus ``vni``)."""
        out = {}
        if self.proto:
            out["proto"] = self.proto
        if self.src._fam:
            out["src"] = str(self.src)
        if self.dst._fam:
            out["dst"] = str(self.dst)
        if self._vni >= 0:
            out["vni"] = self._vni
        return out


cdef inline Py_hash_t _connection_hash(int proto, Py_hash_t src, Py_hash_t dst,
                                       int64_t vni) noexcept:
    cdef uint64_t h = cs_mix64((<uint64_t>src) * 0x9E3779B97F4A7C15ULL + <uint64_t>proto)
    h = cs_mix64(h ^ (<uint64_t>dst) * 0xbf58476d1ce4e5b9ULL)
    if vni >= 0:
        h = cs_mix64(h ^ (<uint64_t>vni + 1) * 0x94d049bb133111ebULL)
    return _fix_hash(h)


cdef Py_hash_t _EMPTY_CONNECTION_HASH = _connection_hash(0, _NO_ADDRPORT._hash, _NO_ADDRPORT._hash, -1)


# Not final: TimedCounts extends it.
@cython.freelist(64)
cdef class Counts:
    """Packet and byte counters of one connection (unsigned 64-bit, wrapping)."""

    cdef readonly uint64_t tx_packets
    cdef readonly uint64_t tx_bytes
    cdef readonly uint64_t rx_packets
    cdef readonly uint64_t rx_bytes

    # Built in __cinit__ with no __init__, as AddrPort: immutable.  The
    # keyword-only times are TimedCounts' (a subclass's tp_new calls this
    # __cinit__ with its own arguments first).
    def __cinit__(self, tx_packets=0, tx_bytes=0, rx_packets=0, rx_bytes=0, *,
                  first_ns=None, last_ns=None):
        if (first_ns is not None or last_ns is not None) and not isinstance(self, TimedCounts):
            raise TypeError("Counts() takes no times; use TimedCounts")
        if tx_packets is 0 and tx_bytes is 0 and rx_packets is 0 and rx_bytes is 0:
            return  # Counts.__new__(Counts): tp_new zeroed the counters
        self.tx_packets = _u64_arg(tx_packets, "tx_packets")
        self.tx_bytes = _u64_arg(tx_bytes, "tx_bytes")
        self.rx_packets = _u64_arg(rx_packets, "rx_packets")
        self.rx_bytes = _u64_arg(rx_bytes, "rx_bytes")

    def __add__(self, other):
        cdef Counts a, b, r
        if not isinstance(self, Counts) or not isinstance(other, Counts):
            return NotImplemented
        a = <Counts>self
        b = <Counts>other
        r = Counts.__new__(Counts)
        # uint64_t arithmetic wraps, as the reference's does
        r.tx_packets = a.tx_packets + b.tx_packets
        r.tx_bytes = a.tx_bytes + b.tx_bytes
        r.rx_packets = a.rx_packets + b.rx_packets
        r.rx_bytes = a.rx_bytes + b.rx_bytes
        return r

    def _astuple(self):
        return (self.tx_packets, self.tx_bytes, self.rx_packets, self.rx_bytes)

    def __hash__(self):
        return hash(self._astuple())

    def __richcmp__(self, other, int op):
        if not isinstance(other, Counts):
            return NotImplemented
        a = self._astuple()
        b = (<Counts>other)._astuple()
        if op == Py_LT:
            return a < b
        if op == Py_LE:
            return a <= b
        if op == Py_EQ:
            return a == b
        if op == Py_NE:
            return a != b
        if op == Py_GT:
            return a > b
        return a >= b

    def __iter__(self):
        return iter(self._astuple())

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return self._astuple()[index]

    def __reduce__(self):
        return (Counts, self._astuple())

    def __repr__(self):
        return (f"Counts(tx_packets={self.tx_packets}, tx_bytes={self.tx_bytes}, "
                f"rx_packets={self.rx_packets}, rx_bytes={self.rx_bytes})")

    def __str__(self):
        return (f"tx {self.tx_packets} pkts / {self.tx_bytes} B, "
                f"rx {self.rx_packets} pkts / {self.rx_bytes} B")

    def to_dict(self):
        """JSON-ready dict with Tailscale's field names; zero fields omitted."""
        out = {}
        if self.tx_packets:
            out["txPkts"] = self.tx_packets
        if self.tx_bytes:
            out["txBytes"] = self.tx_bytes
        if self.rx_packets:
            out["rxPkts"] = self.rx_packets
        if self.rx_bytes:
            out["rxBytes"] = self.rx_bytes
        return out


cdef uint64_t _u64_arg(object value, str argname) except? 0:
    # Converted to an exact int before any comparison (see _exact_int).
    value = _exact_int(value, argname)
    if not 0 <= value < 2 ** 64:
        raise ValueError(f"{argname}: {value} is out of range 0..2**64-1")
    return <uint64_t>value


@cython.final
cdef class TimedCounts(Counts):
    """Counts with the time of the connection's first and last packet.

    Windows of ``Statistics(track_times=True)`` (and of the capture replay)
    hold these: ``first_ns``/``last_ns`` are nanoseconds since the Unix
    epoch (UTC).  Iteration, equality, hashing and ordering are those of
    Counts (the four counters); adding two TimedCounts keeps the earliest
    first and the latest last time (adding a plain Counts gives a Counts).
    """

    cdef readonly int64_t first_ns
    cdef readonly int64_t last_ns

    def __cinit__(self, tx_packets=0, tx_bytes=0, rx_packets=0, rx_bytes=0, *,
                  first_ns=None, last_ns=None):
        # None: 0 (TimedCounts.__new__(TimedCounts) from the builders, which
        # set the fields themselves, gives None)
        if first_ns is None:
            first_ns = 0
        if last_ns is None:
            last_ns = 0
        if first_ns is 0 and last_ns is 0:
            return
        self.first_ns = _int64_in(first_ns, "first_ns", CS_TIME_NONE_LAST,
                                  CS_TIME_NONE_FIRST)
        self.last_ns = _int64_in(last_ns, "last_ns", CS_TIME_NONE_LAST,
                                 CS_TIME_NONE_FIRST)

    def __add__(self, other):
        cdef TimedCounts a, b, r
        if not isinstance(self, TimedCounts) or not isinstance(other, TimedCounts):
            return Counts.__add__(self, other)
        a = <TimedCounts>self
        b = <TimedCounts>other
        r = TimedCounts.__new__(TimedCounts)
        r.tx_packets = a.tx_packets + b.tx_packets
        r.tx_bytes = a.tx_bytes + b.tx_bytes
        r.rx_packets = a.rx_packets + b.rx_packets
        r.rx_bytes = a.rx_bytes + b.rx_bytes
        r.first_ns = a.first_ns if a.first_ns < b.first_ns else b.first_ns
        r.last_ns = a.last_ns if a.last_ns > b.last_ns else b.last_ns
        return r

    def __reduce__(self):
        return (_timed_counts, (self.tx_packets, self.tx_bytes, self.rx_packets,
                                self.rx_bytes, self.first_ns, self.last_ns))

    def __repr__(self):
        return (f"TimedCounts(tx_packets={self.tx_packets}, tx_bytes={self.tx_bytes}, "
                f"rx_packets={self.rx_packets}, rx_bytes={self.rx_bytes}, "
                f"first_ns={self.first_ns}, last_ns={self.last_ns})")


def _timed_counts(tx_packets, tx_bytes, rx_packets, rx_bytes, first_ns, last_ns):
    return TimedCounts(tx_packets, tx_bytes, rx_packets, rx_bytes,
                       first_ns=first_ns, last_ns=last_ns)
