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
    if not PyObject_CheckBuffer(obj):
        # lists and other sequences of ints: slower, but accepted
        try:
            seq = list(obj)
        except TypeError:
            raise TypeError(
                f"{argname}: expected a buffer or sequence of integers, "
                f"got {type(obj).__name__}") from None
        n = len(seq)
        values = <int64_t *>malloc((n if n else 1) * sizeof(int64_t))
        if values == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                v = seq[i]
                if isinstance(v, bool) or not isinstance(v, int):
                    raise TypeError(f"{argname}[{i}]: expected an int, got {type(v).__name__}")
                if not 0 <= v < 2 ** 62:
                    raise ValueError(f"{argname}[{i}]: {v} is out of range")
                values[i] = v
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
        values = <int64_t *>malloc((n if n else 1) * sizeof(int64_t))
        if values == NULL:
            raise MemoryError()
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
