# Argument helpers (GIL held): turn Python arguments into C values and
# buffers, with errors that name the argument.

cdef str _argname(str argname, Py_ssize_t index):
    return argname if index < 0 else f"{argname}[{index}]"


cdef int _get_buffer(object obj, Py_buffer *view, str argname,
                     Py_ssize_t index=-1) except -1:
    # The item name is formatted only on error: batches call this per item.
    if not PyObject_CheckBuffer(obj):
        raise TypeError(
            f"{_argname(argname, index)}: expected a bytes-like object, "
            f"got {type(obj).__name__}")
    try:
        PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS)
    except BufferError as exc:
        raise ValueError(
            f"{_argname(argname, index)}: buffer is not C-contiguous ({exc})") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{_argname(argname, index)}: unusable buffer ({exc})") from None
    return 0


cdef void *_alloc_array(Py_ssize_t n, size_t size) except NULL:
    # malloc(n * size) for n >= 0 items (at least one byte), with the product
    # checked: it wraps on 32-bit builds for sizes a caller can reach.
    cdef size_t nbytes
    if n < 0 or cs_array_bytes(<size_t>n, size, &nbytes) < 0:
        raise MemoryError(f"connstats: cannot allocate {n} items of {size} bytes")
    cdef void *p = malloc(nbytes if nbytes else 1)
    if p == NULL:
        raise MemoryError(f"connstats: cannot allocate {n} items of {size} bytes")
    return p


cdef object _exact_int(object value, str argname):
    """value as an exact int, refusing bool and non-int types.

    An int subclass can override comparisons and __int__; operator.index
    copies its real value into a plain int, so every later check (done in C
    or on the copy) sees the number the C conversion will see."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{argname}: expected an int, got {type(value).__name__}")
    return PyNumber_Index(value)


cdef int64_t _int64_in(object value, str argname, int64_t low, int64_t high,
                       Py_ssize_t index=-1) except? -1:
    """value (an int) as a C integer in low..high; the range check is done in C."""
    cdef int64_t v
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{_argname(argname, index)}: expected an int, got {type(value).__name__}")
    value = PyNumber_Index(value)
    try:
        v = value
    except OverflowError:
        raise ValueError(
            f"{_argname(argname, index)}: {value} is out of range {low}..{high}") from None
    if v < low or v > high:
        raise ValueError(f"{_argname(argname, index)}: {value} is out of range {low}..{high}")
    return v


cdef object _sequence_snapshot(object obj):
    """A tuple of obj's items, taken once.

    Reading items of a live list by index while Python code can run (a
    __buffer__ method, another thread on a free-threaded build) reads freed
    or out-of-range slots when the list shrinks.  The tuple holds strong
    references and cannot change; copying a list to it is atomic (the list's
    own lock on free-threaded builds)."""
    return PySequence_Tuple(obj)


cdef uint8_t _packed_into(object packed, str argname, uint8_t *out) except 0:
    """Copy a 4- or 16-byte packed address into out[16]; its family (4 or 6).

    The length is checked on the exact bytes object itself: a subclass's
    __len__ or an address subclass's .packed can say anything."""
    cdef Py_ssize_t n
    if not PyBytes_CheckExact(packed):
        raise TypeError(f"{argname}: packed address is {type(packed).__name__}, not bytes")
    n = PyBytes_GET_SIZE(packed)
    if n != 4 and n != 16:
        raise ValueError(f"{argname}: packed address must be 4 or 16 bytes, got {n}")
    memcpy(out, PyBytes_AS_STRING(packed), n)
    return 4 if n == 4 else 6


cdef uint8_t _ip_into(object addr, str argname, uint8_t *out) except 0:
    """Copy an ipaddress.IPv4Address/IPv6Address (or subclass) into out[16]."""
    cdef uint8_t fam
    cdef bint v4 = isinstance(addr, _IPv4Address)
    fam = _packed_into(addr.packed, argname, out)
    if fam != (4 if v4 else 6):
        raise ValueError(
            f"{argname}: {type(addr).__name__}.packed has "
            f"{4 if fam == 4 else 16} bytes, expected {4 if v4 else 16}")
    return fam


cdef Py_ssize_t _native_size(char code) noexcept:
    if code == b'b' or code == b'B':
        return 1
    if code == b'h' or code == b'H':
        return 2
    if code == b'i' or code == b'I':
        return sizeof(int)
    if code == b'l' or code == b'L':
        return sizeof(long)
    return 8  # q, Q, and n, N, which are read as 64-bit


cdef int _read_index_array(object obj, str argname, Py_ssize_t *out_len,
                           int64_t **out) except -1:
    """Copy a 1-D buffer (or sequence) of integers into a new int64 array."""
    cdef Py_buffer view
    cdef Py_ssize_t n, i
    cdef int64_t *values
    cdef bytes fmt
    cdef char code
    cdef const char *p
    cdef tuple seq
    if not PyObject_CheckBuffer(obj):
        # lists and other sequences of ints: slower, but accepted
        try:
            seq = tuple(obj)
        except TypeError:
            raise TypeError(
                f"{argname}: expected a buffer or sequence of integers, "
                f"got {type(obj).__name__}") from None
        n = len(seq)
        values = <int64_t *>_alloc_array(n, sizeof(int64_t))
        try:
            for i in range(n):
                # Converted to C first, range-checked in C: an int subclass
                # cannot pass a negative number through its own __lt__.
                values[i] = _int64_in(seq[i], argname, 0, 0x3FFFFFFFFFFFFFFF, i)
        except BaseException:
            free(values)
            raise
        out_len[0] = n
        out[0] = values
        return 0
    try:
        PyObject_GetBuffer(obj, &view, PyBUF_ANY_CONTIGUOUS | PyBUF_FORMAT)
    except BufferError as exc:
        raise ValueError(f"{argname}: buffer is not contiguous ({exc})") from None
    try:
        fmt = (view.format if view.format != NULL else b"B")
        fmt = fmt.lstrip(b"@=<")
        if view.ndim > 1 or len(fmt) != 1 or fmt not in b"bBhHiIlLqQnN":
            raise TypeError(
                f"{argname}: expected a 1-D buffer of integers, got format "
                f"{fmt.decode('ascii', 'replace')!r}")
        code = fmt[0]
        if view.itemsize != _native_size(code):
            # e.g. "<l" means 4 bytes to struct; reading it as a C long would
            # run past the buffer.
            raise TypeError(
                f"{argname}: item size {view.itemsize} does not match format "
                f"{fmt.decode('ascii', 'replace')!r}; use native-size integers")
        n = view.len // view.itemsize
        values = <int64_t *>_alloc_array(n, sizeof(int64_t))
        p = <const char *>view.buf
        for i in range(n):
            if code == b'B':
                values[i] = (<const uint8_t *>p)[i]
            elif code == b'H':
                values[i] = (<const uint16_t *>p)[i]
            elif code == b'I':
                values[i] = (<const uint32_t *>p)[i]
            elif code == b'b':
                values[i] = (<const signed char *>p)[i]
            elif code == b'h':
                values[i] = (<const short *>p)[i]
            elif code == b'i':
                values[i] = (<const int *>p)[i]
            elif code == b'l':
                values[i] = (<const long *>p)[i]
            elif code == b'L':
                values[i] = <int64_t>(<const unsigned long *>p)[i]
            elif code == b'q' or code == b'n':
                values[i] = (<const int64_t *>p)[i]
            else:  # Q, N: reject values that do not fit in int64
                if (<const uint64_t *>p)[i] > <uint64_t>0x3FFFFFFFFFFFFFFF:
                    free(values)
                    raise ValueError(f"{argname}[{i}]: value is out of range")
                values[i] = <int64_t>(<const uint64_t *>p)[i]
            if values[i] < 0:
                v = values[i]
                free(values)
                raise ValueError(f"{argname}[{i}]: {v} is negative")
    finally:
        PyBuffer_Release(&view)
    out_len[0] = n
    out[0] = values
    return 0


cdef int _read_vni_array(object obj, Py_ssize_t *out_len, int64_t **out) except -1:
    """Copy VNIs (-1: none, else 0..2**32-1) from an int buffer or sequence."""
    cdef Py_buffer view
    cdef Py_ssize_t n, i
    cdef int64_t *values
    cdef tuple seq
    if PyObject_CheckBuffer(obj):
        try:
            PyObject_GetBuffer(obj, &view, PyBUF_ANY_CONTIGUOUS | PyBUF_FORMAT)
        except BufferError as exc:
            raise ValueError(f"vnis: buffer is not contiguous ({exc})") from None
        try:
            fmt = (view.format if view.format != NULL else b"B").lstrip(b"@=<")
            if view.ndim > 1 or fmt not in (b"q", b"n") or view.itemsize != 8:
                raise TypeError(
                    f"vnis: expected a 1-D buffer of int64 ('q'), got format "
                    f"{fmt.decode('ascii', 'replace')!r}")
            n = view.len // 8
            values = <int64_t *>_alloc_array(n, sizeof(int64_t))
            memcpy(values, view.buf, n * sizeof(int64_t))
        finally:
            PyBuffer_Release(&view)
    else:
        try:
            seq = tuple(obj)
        except TypeError:
            raise TypeError(
                f"vnis: expected a buffer or sequence of integers, "
                f"got {type(obj).__name__}") from None
        n = len(seq)
        values = <int64_t *>_alloc_array(n, sizeof(int64_t))
        try:
            for i in range(n):
                values[i] = _int64_in(seq[i], "vnis", -1, 0xFFFFFFFF, i)
        except BaseException:
            free(values)
            raise
    for i in range(n):
        if values[i] < -1 or values[i] > 0xFFFFFFFF:
            v = values[i]
            free(values)
            raise ValueError(f"vnis[{i}]: {v} is out of range -1..4294967295")
    out_len[0] = n
    out[0] = values
    return 0


# -- pre-parsed counting (update_virtual/update_physical/update_records) -----
#
# These run on every update_virtual call: the common argument types are read
# in C without raising (an exception set and cleared costs more than the
# whole update), everything else goes through the checks shared with the
# pure-Python core (connstats._addr), which also word the errors.

cdef extern from *:
    """
    /* An exact int into *out when it is in 0..max (max < 2**64), without
       raising: 1 on success, 0 when the caller must take the slow path.
       Small ints (the common case) are read from CPython's compact form. */
    static inline int cs_small_uint(PyObject *o, unsigned long long max,
                                    unsigned long long *out) {
        unsigned long long v;
        if (!PyLong_CheckExact(o))
            return 0;
    #if PY_VERSION_HEX >= 0x030C0000
        if (PyUnstable_Long_IsCompact((PyLongObject *)o)) {
            Py_ssize_t c = PyUnstable_Long_CompactValue((PyLongObject *)o);
            if (c < 0 || (unsigned long long)c > max)
                return 0;
            *out = (unsigned long long)c;
            return 1;
        }
    #elif !defined(Py_LIMITED_API)
        if (Py_SIZE(o) == 0) { *out = 0; return 1; }
        if (Py_SIZE(o) == 1) {
            v = ((PyLongObject *)o)->ob_digit[0];
            if (v > max)
                return 0;
            *out = v;
            return 1;
        }
    #endif
        v = PyLong_AsUnsignedLongLong(o);
        if (v == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();  /* negative or too large: the slow path says which */
            return 0;
        }
        if (v > max)
            return 0;
        *out = v;
        return 1;
    }
    """
    bint cs_small_uint(object o, unsigned long long max, unsigned long long *out) noexcept
    # The same, for a borrowed pointer (no reference taken around the call).
    bint _cs_small_uint_p "cs_small_uint"(PyObject *o, unsigned long long max,
                                         unsigned long long *out) noexcept


cdef extern from "Python.h":
    # Declared without an exception value: the callers test PyErr_Occurred
    # themselves and fall back to the slow path.
    unsigned long long _cs_long_as_u64_mask "PyLong_AsUnsignedLongLongMask"(object) noexcept
    PyObject *_cs_err_occurred "PyErr_Occurred"() noexcept
    void _cs_err_clear "PyErr_Clear"() noexcept


cdef inline bint _u64_fast(object value, uint64_t *out) noexcept:
    """An exact int in 0 .. 2**64 - 1 into out; False (nothing raised) otherwise."""
    cdef unsigned long long v
    if not cs_small_uint(value, 0xFFFFFFFFFFFFFFFF, &v):
        return False
    out[0] = v
    return True


cdef inline bint _small_fast(object value, long high, long *out) noexcept:
    """An exact int in 0 .. high into out; False (nothing raised) otherwise."""
    cdef unsigned long long v
    if not cs_small_uint(value, <unsigned long long>high, &v):
        return False
    out[0] = <long>v
    return True


cdef inline uint64_t _count_arg(object value, str argname, bint packets) except? 0xFFFFFFFFFFFFFFFF:
    """A packet or byte count: an int in 0 .. 2**64 - 1."""
    cdef uint64_t v
    if _u64_fast(value, &v):
        return v
    return _count_arg_slow(value, argname, packets)


cdef uint64_t _count_arg_slow(object value, str argname, bint packets) except? 0xFFFFFFFFFFFFFFFF:
    # Validated (and copied to an exact int) by the same code as the
    # pure-Python core, so that both raise the same errors.
    if packets:
        value = _addr.packet_count(value, argname)
    else:
        value = _addr.byte_count(value, argname)
    return PyLong_AsUnsignedLongLong(value)


cdef inline uint8_t _proto_arg(object value) except? 0xFF:
    cdef long v
    if _small_fast(value, 0xFF, &v):
        return <uint8_t>v
    # bool, int subclasses, other types, out of range: the shared checks
    return <uint8_t>_int64_in(_addr.protocol_number(value, "proto"), "proto", 0, 0xFF)


cdef bint _receive_arg(object value) except -1:
    if value is True:
        return True
    if value is False:
        return False
    return _addr.direction(value, "receive")  # raises TypeError


cdef inline void _put_be64(uint8_t *p, uint64_t v) noexcept:
    cdef int i
    for i in range(7, -1, -1):
        p[i] = <uint8_t>v
        v >>= 8


cdef inline uint8_t _ip_fast(object addr, uint8_t *raw) noexcept:
    """An exact IPv4Address/IPv6Address into raw; its family, or 0 (not handled).

    Reads the integer ipaddress keeps in ``_ip`` (the shortcut window.pxi
    takes the other way, checked at import by _check_fast_addresses):
    ``.packed`` builds a bytes object per call."""
    cdef object value
    cdef uint64_t lo, hi
    cdef type t = type(addr)
    if not _FAST_ADDRESSES or (t is not _IPv4Address and t is not _IPv6Address):
        return 0
    value = getattr(addr, "_ip", None)  # None: made without __init__
    if value is None:
        return 0
    if t is _IPv4Address:
        if not _u64_fast(value, &lo) or (lo >> 32) != 0:
            return 0
        raw[0] = <uint8_t>(lo >> 24)
        raw[1] = <uint8_t>(lo >> 16)
        raw[2] = <uint8_t>(lo >> 8)
        raw[3] = <uint8_t>lo
        return 4
    if not PyLong_CheckExact(value):
        return 0
    lo = _cs_long_as_u64_mask(value)
    if lo == <uint64_t>-1 and _cs_err_occurred() != NULL:
        _cs_err_clear()
        return 0
    try:
        if not _u64_fast(value >> 64, &hi):
            return 0
    except BaseException:
        return 0
    _put_be64(raw, hi)
    _put_be64(raw + 8, lo)
    return 6


cdef inline int _endpoint_into(object value, str argname, uint8_t *fam, uint8_t *raw,
                               uint16_t *port) except -1:
    """An endpoint argument into a key's (family, address, port).

    The caller zeroed raw[16].  This module's AddrPort, and (address, port)
    tuples of an exact ipaddress object or None and an int, are read in C;
    every other form goes through _addr.packed_endpoint, shared with the
    pure-Python core, and its result is checked again here on the exact
    bytes copied."""
    cdef AddrPort ap
    if type(value) is AddrPort:
        ap = <AddrPort>value
        fam[0] = ap._fam
        if ap._fam == 4:
            memcpy(raw, ap._raw, 4)
        elif ap._fam:
            memcpy(raw, ap._raw, 16)
        port[0] = <uint16_t>ap.port
        return 0
    return _endpoint_other(value, argname, fam, raw, port)


cdef int _endpoint_other(object value, str argname, uint8_t *fam, uint8_t *raw,
                         uint16_t *port) except -1:
    cdef object addr, packed, number
    cdef long p
    cdef uint8_t f
    if type(value) is tuple and len(<tuple>value) == 2 and _small_fast(
            (<tuple>value)[1], 0xFFFF, &p):
        addr = (<tuple>value)[0]
        f = 0 if addr is None else _ip_fast(addr, raw)
        if f or addr is None:
            fam[0] = f
            port[0] = <uint16_t>p
            return 0
        memset(raw, 0, 16)  # a partial write of a refused address
    packed, number = _addr.packed_endpoint(value, argname)
    fam[0] = 0 if packed is None else _packed_into(packed, argname, raw)
    port[0] = <uint16_t>_int64_in(number, argname, 0, 0xFFFF)
    return 0


# -- the fast entry of update_virtual/update_physical -------------------------
#
# The methods' FASTCALL entries (methods.pxi) hand the argument values over
# as borrowed pointers: no reference is taken or dropped per argument (on a
# free-threaded build each one is an atomic write to a count that every
# thread sharing the object writes).  These functions read the common
# argument forms from them and return False, raising nothing, for anything
# else; the caller then runs the checked path above on the same values.

cdef extern from "cs_args.h":
    bint cs_ipv4_text(PyObject *o, uint8_t *raw) noexcept
    bint cs_ipv4_port_text(PyObject *o, uint8_t *raw, uint16_t *port) noexcept
    PyObject *cs_ip_value(PyObject *addr, int v6) noexcept
    bint cs_u128_be(PyObject *v, uint8_t *raw) noexcept
    ctypedef struct PyMemberDef:
        pass
    PyMemberDef *cs_find_ip_slot(PyObject *descr) noexcept
    void cs_set_ip_slots(PyMemberDef *v4, PyMemberDef *v6) noexcept


cdef extern from "Python.h":
    ctypedef struct _cs_type_t "PyTypeObject":
        pass
    _cs_type_t _cs_tuple_type "PyTuple_Type"
    _cs_type_t *_cs_type "Py_TYPE"(PyObject *o) noexcept
    void _cs_decref "Py_DECREF"(PyObject *o) noexcept
    bint _cs_bytes_check_exact "PyBytes_CheckExact"(PyObject *o) noexcept
    Py_ssize_t _cs_bytes_size "PyBytes_GET_SIZE"(PyObject *o) noexcept
    char *_cs_bytes_data "PyBytes_AS_STRING"(PyObject *o) noexcept
    Py_ssize_t _cs_tuple_size "PyTuple_GET_SIZE"(PyObject *o) noexcept
    PyObject *_cs_tuple_item "PyTuple_GET_ITEM"(PyObject *o, Py_ssize_t i) noexcept
    PyObject *_cs_none "Py_None"
    PyObject *_cs_true "Py_True"
    PyObject *_cs_false "Py_False"


cdef bint _init_ip_slots():
    # The `_ip` slot of the exact address types, read without an attribute
    # lookup; only if _check_fast_addresses (window.pxi) found that slot to
    # be the address's value, and it is a plain object slot of the class.
    if not _FAST_ADDRESSES:
        return False
    v4 = vars(_IPv4Address).get("_ip")
    v6 = vars(_IPv6Address).get("_ip")
    if v4 is None or v6 is None:
        return False
    cdef PyMemberDef *m4 = cs_find_ip_slot(<PyObject *>v4)
    cdef PyMemberDef *m6 = cs_find_ip_slot(<PyObject *>v6)
    if m4 == NULL or m6 == NULL:
        return False
    cs_set_ip_slots(m4, m6)
    return True


cdef _cs_type_t *_IPV4_TYPE = <_cs_type_t *>_IPv4Address
cdef _cs_type_t *_IPV6_TYPE = <_cs_type_t *>_IPv6Address
cdef _cs_type_t *_ADDRPORT_TYPE = <_cs_type_t *>AddrPort


cdef inline uint8_t _address_fast(PyObject *addr, uint8_t *raw) noexcept:
    """An exact IPv4Address/IPv6Address, 4- or 16-byte exact bytes, or IPv4
    text into raw[16] (zeroed by the caller); its family, or 0 (not read
    here; raw may be partly written)."""
    cdef _cs_type_t *t = _cs_type(addr)
    cdef PyObject *value
    cdef unsigned long long v
    cdef uint8_t fam = 0
    cdef Py_ssize_t n
    if t == _IPV4_TYPE or t == _IPV6_TYPE:
        value = cs_ip_value(addr, t == _IPV6_TYPE)
        if value == NULL:
            return 0
        if t == _IPV4_TYPE:
            if _cs_small_uint_p(value, 0xFFFFFFFF, &v):
                raw[0] = <uint8_t>(v >> 24)
                raw[1] = <uint8_t>(v >> 16)
                raw[2] = <uint8_t>(v >> 8)
                raw[3] = <uint8_t>v
                fam = 4
        elif cs_u128_be(value, raw):
            fam = 6
        _cs_decref(value)
        return fam
    if _cs_bytes_check_exact(addr):
        n = _cs_bytes_size(addr)
        if n == 4 or n == 16:
            memcpy(raw, _cs_bytes_data(addr), n)
            return 4 if n == 4 else 6
        return 0
    if cs_ipv4_text(addr, raw):
        return 4
    return 0


cdef inline bint _endpoint_fast(PyObject *value, uint8_t *fam, uint8_t *raw,
                                uint16_t *port) noexcept:
    """An AddrPort, an (address, port) tuple of the forms _address_fast reads
    (or None) and an int port, or "a.b.c.d:port" text, into a key's fields
    (raw zeroed by the caller); False: not read here."""
    cdef PyObject *addr
    cdef unsigned long long p
    if _cs_type(value) == _ADDRPORT_TYPE:
        fam[0] = (<AddrPort>value)._fam
        memcpy(raw, (<AddrPort>value)._raw, 16)
        port[0] = <uint16_t>(<AddrPort>value).port
        return True
    if _cs_type(value) == &_cs_tuple_type:
        if _cs_tuple_size(value) != 2 or not _cs_small_uint_p(
                _cs_tuple_item(value, 1), 0xFFFF, &p):
            return False
        addr = _cs_tuple_item(value, 0)
        if addr == _cs_none:
            fam[0] = 0
        else:
            fam[0] = _address_fast(addr, raw)
            if fam[0] == 0:
                return False
        port[0] = <uint16_t>p
        return True
    if cs_ipv4_port_text(value, raw, port):
        fam[0] = 4
        return True
    return False


cdef inline bint _preparsed_fast(PyObject **values, PyObject *receive, bint physical,
                                 cs_key *k, uint64_t *npkts, uint64_t *size,
                                 bint *rx) noexcept:
    """update_virtual's arguments (proto, src, dst, packets, bytes in values,
    and receive) into a key and counts; False (nothing raised) if any of them
    is not of a form read here."""
    cdef unsigned long long v, p, b
    cdef uint8_t sfam, dfam
    cdef uint16_t sport, dport
    memset(k, 0, sizeof(cs_key))
    if not _cs_small_uint_p(values[0], 0xFF, &v):
        return False
    if receive == _cs_false:
        rx[0] = False
    elif receive == _cs_true:
        rx[0] = True
    else:
        return False
    if not (_endpoint_fast(values[1], &sfam, k.src, &sport)
            and _endpoint_fast(values[2], &dfam, k.dst, &dport)
            and _cs_small_uint_p(values[3], 0xFFFFFFFFFFFFFFFF, &p)
            and _cs_small_uint_p(values[4], 0xFFFFFFFFFFFFFFFF, &b)):
        return False
    # the first eight bytes as one word (cs_key_store says why)
    cs_store64(<unsigned char *>k, cs_key_head(<unsigned>v, KIND_PHYSICAL if physical else KIND_VIRTUAL,
                                               sfam, dfam, sport, dport))
    npkts[0] = p
    size[0] = b
    return True
cdef int _get_times(object obj, Py_buffer *view, Py_ssize_t n) except -1:
    """A read-only view of n int64 times (ns): a 1-D buffer of format 'q'.

    Any int64 is a valid time (a capture's clock can be anything); only the
    shape is checked, so the core reads exactly n items."""
    cdef bytes fmt
    if not PyObject_CheckBuffer(obj):
        raise TypeError(f"times: expected a buffer of int64, got {type(obj).__name__}")
    try:
        PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
    except BufferError as exc:
        raise ValueError(f"times: buffer is not C-contiguous ({exc})") from None
    fmt = view.format if view.format != NULL else b"B"
    fmt = fmt.lstrip(b"@=")
    if view.ndim > 1 or view.itemsize != 8 or fmt not in (b"q", b"l"):
        PyBuffer_Release(view)
        raise TypeError(
            f"times: expected a 1-D buffer of int64 (format 'q'), got format "
            f"{fmt.decode('ascii', 'replace')!r}")
    if view.len // 8 != n:
        PyBuffer_Release(view)
        raise ValueError(f"times: has {view.len // 8} items but offsets has {n}")
    return 0
