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
