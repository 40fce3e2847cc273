# CountingMethods: the per-packet methods of connstats.Statistics, as C
# methods of its base class.
#
# Why a base class and not the core's bound methods stored on each instance:
# on free-threaded CPython 3.13 every call through an object that several
# threads share writes that object's reference count, one cache line moving
# between cores on each packet.  A bound method stored on the instance is
# one such object for every thread.  Here ``stats.update_tx_virtual`` is a
# method descriptor of the class (immortal on 3.13t, deferred on 3.14t), so
# each access makes a new bound method: a thread that fetches it once
# (``update = stats.update_tx_virtual``) calls an object of its own, and the
# call does not touch the shared instance's reference count.  On GIL builds
# this path is as fast as the stored bound method (benchmarks/RESULTS.md,
# "Free-threaded scaling").

cdef class CountingMethods:
    """Base of connstats.Statistics: its per-packet counting methods."""

    cdef Core _counting_core    # the compiled core, or None
    cdef object _counting_any   # any core (the pure-Python twin in tests)

    def _attach_core(self, core):
        """Route the counting methods to ``core``; once per instance.

        Returns True if the methods call the compiled core directly, False if
        they go through ``core``'s Python methods.
        """
        # Write-once: a second call from another thread would replace the
        # core under a call that is using it.
        if self._counting_any is not None:
            raise RuntimeError("the counting methods already have a core")
        if type(core) is Core:
            self._counting_core = <Core>core
        self._counting_any = core
        return self._counting_core is not None

    cdef inline object _fallback(self):
        if self._counting_any is None:
            raise RuntimeError("Statistics.__init__ was not called")
        return self._counting_any

    def update_tx_virtual(self, packet):
        """Count one transmitted IP packet (any C-contiguous bytes-like object)."""
        if self._counting_core is not None:
            self._counting_core._virtual(packet, False)
        else:
            self._fallback().update_tx_virtual(packet)

    def update_rx_virtual(self, packet):
        """Count one received IP packet; its src and dst are swapped."""
        if self._counting_core is not None:
            self._counting_core._virtual(packet, True)
        else:
            self._fallback().update_rx_virtual(packet)

    def update_tx_physical(self, src, dst, n, *, packets=1):
        """Count ``packets`` transmitted WireGuard packets of ``n`` bytes in all to physical peer ``dst``."""
        if self._counting_core is not None:
            self._counting_core._physical(src, dst, n, False, packets)
        else:
            self._fallback().update_tx_physical(src, dst, n, packets=packets)

    def update_rx_physical(self, src, dst, n, *, packets=1):
        """Count ``packets`` received WireGuard packets of ``n`` bytes in all from physical peer ``dst``."""
        if self._counting_core is not None:
            self._counting_core._physical(src, dst, n, True, packets)
        else:
            self._fallback().update_rx_physical(src, dst, n, packets=packets)

    def update_virtual(self, proto, src, dst, packets, bytes, receive=False):
        """Count ``packets`` packets, ``bytes`` bytes in all, on the virtual connection ``(proto, src, dst)`` as given (no swap); ``receive`` selects the rx counters."""
        if self._counting_core is not None:
            self._counting_core._preparsed(proto, src, dst, packets, bytes, receive, False)
        else:
            self._fallback().update_virtual(proto, src, dst, packets, bytes, receive)

    def update_physical(self, proto, src, dst, packets, bytes, receive=False):
        """Count ``packets`` packets, ``bytes`` bytes in all, on the physical connection ``(proto, src, dst)`` as given; ``receive`` selects the rx counters."""
        if self._counting_core is not None:
            self._counting_core._preparsed(proto, src, dst, packets, bytes, receive, True)
        else:
            self._fallback().update_physical(proto, src, dst, packets, bytes, receive)

    def update_records(self, records):
        """Count a buffer of fixed-size records (``RECORD_FORMAT``), the batch form of update_virtual/update_physical (GIL released while counting)."""
        if self._counting_core is not None:
            self._counting_core._records(records)
        else:
            self._fallback().update_records(records)

    def update_tx_virtual_batch(self, packets):
        """Count a sequence of transmitted packets (GIL released while counting)."""
        if self._counting_core is not None:
            self._counting_core._batch(packets, False)
        else:
            self._fallback().update_tx_virtual_batch(packets)

    def update_rx_virtual_batch(self, packets):
        """Count a sequence of received packets (GIL released while counting)."""
        if self._counting_core is not None:
            self._counting_core._batch(packets, True)
        else:
            self._fallback().update_rx_virtual_batch(packets)

    def update_tx_virtual_buffer(self, buffer, offsets, lengths):
        """Count transmitted packets ``buffer[offsets[i]:offsets[i] + lengths[i]]``."""
        if self._counting_core is not None:
            self._counting_core._buffer(buffer, offsets, lengths, False)
        else:
            self._fallback().update_tx_virtual_buffer(buffer, offsets, lengths)

    def update_rx_virtual_buffer(self, buffer, offsets, lengths):
        """Count received packets ``buffer[offsets[i]:offsets[i] + lengths[i]]``."""
        if self._counting_core is not None:
            self._counting_core._buffer(buffer, offsets, lengths, True)
        else:
            self._fallback().update_rx_virtual_buffer(buffer, offsets, lengths)


# -- FASTCALL entries of update_virtual / update_physical ----------------------
#
# Cython's wrapper of a def method with six parameters takes a reference to
# each argument, fills a default and drops them all again; with the
# interpreter's own cost of passing five arguments, a call cost 1.55x
# update_tx_virtual(packet) (benchmarks/RESULTS.md, "Pre-parsed counting").
# These entries take the arguments as the interpreter passes them
# (METH_FASTCALL | METH_KEYWORDS: an array and the keyword names, no tuple
# or dict) and read them borrowed.  Positional calls and keywords spelled
# as the parameters (interned names, as every call site's are) are handled
# here; anything else (a missing, repeated or unknown argument, names built
# at run time) calls the method Cython made, which raises its usual errors.
# Either way the values then go through Core._preparsed_values: the same
# checks, filters and counting as before.

cdef extern from "cs_args.h":
    ctypedef struct _cs_method_def "PyMethodDef":
        pass
    ctypedef object (*cs_fastcall_fn)(object, PyObject **, Py_ssize_t, PyObject *)
    void cs_fastcall_def(_cs_method_def *d, const char *name, cs_fastcall_fn f)
    int cs_replace_method(_cs_type_t *t, _cs_method_def *d, PyObject **original) except -1
    object cs_call_original(PyObject *original, PyObject *self, PyObject **args,
                            Py_ssize_t nargs, PyObject *kwnames)

cdef extern from "Python.h":
    PyObject *_cs_intern "PyUnicode_InternFromString"(const char *s) except NULL

# The parameters in order; interned, so a call site's keyword names (which
# the compiler interns) are found by identity.
cdef PyObject *_PREPARSED_NAMES[6]


cdef PyObject **_preparsed_keywords(PyObject **args, Py_ssize_t nargs, PyObject *kwnames,
                                    PyObject **values) noexcept:
    """A call with keywords: values[0..6) filled, borrowed, in parameter
    order (receive False if not given); NULL if this entry does not handle
    the call (unknown, repeated or missing arguments, names not interned)."""
    cdef Py_ssize_t i, j, nkw
    cdef PyObject *name
    if nargs > 6:
        return NULL
    for i in range(nargs):
        values[i] = args[i]
    for i in range(nargs, 6):
        values[i] = NULL
    nkw = _cs_tuple_size(kwnames)
    for i in range(nkw):
        name = _cs_tuple_item(kwnames, i)
        j = nargs
        while j < 6 and _PREPARSED_NAMES[j] != name:
            j += 1
        if j == 6 or values[j] != NULL:
            return NULL
        values[j] = args[nargs + i]
    if values[5] == NULL:
        values[5] = _cs_false
    for i in range(5):
        if values[i] == NULL:
            return NULL
    return values


cdef PyObject *_ORIGINAL[4]  # the replaced descriptors, for the calls refused here


cdef inline object _preparsed_entry(PyObject *core, object self, PyObject **args,
                                    Py_ssize_t nargs, PyObject *kwnames, bint physical,
                                    PyObject *original):
    cdef PyObject *store[6]
    cdef PyObject **values = args
    cdef PyObject *receive
    if kwnames == NULL and nargs == 5:
        receive = _cs_false
    elif kwnames == NULL and nargs == 6:
        receive = args[5]
    elif (nargs == 5 and _cs_tuple_size(kwnames) == 1
            and _cs_tuple_item(kwnames, 0) == _PREPARSED_NAMES[5]):
        receive = args[5]  # update_virtual(..., receive=...)
    else:
        values = NULL if kwnames == NULL else _preparsed_keywords(args, nargs, kwnames, store)
        if values == NULL or core == _cs_none:
            return cs_call_original(original, <PyObject *>self, args, nargs, kwnames)
        receive = store[5]
    if core == _cs_none:
        return cs_call_original(original, <PyObject *>self, args, nargs, kwnames)
    # core is borrowed (the instance holds it for good: _attach_core is
    # write-once), so that no shared reference count is written per call.
    (<Core>core)._preparsed_values(values, receive, physical)
    return None


cdef object _counting_update_virtual(object self, PyObject **args, Py_ssize_t nargs,
                                     PyObject *kwnames):
    return _preparsed_entry(<PyObject *>(<CountingMethods>self)._counting_core, self, args,
                            nargs, kwnames, False, _ORIGINAL[0])


cdef object _counting_update_physical(object self, PyObject **args, Py_ssize_t nargs,
                                      PyObject *kwnames):
    return _preparsed_entry(<PyObject *>(<CountingMethods>self)._counting_core, self, args,
                            nargs, kwnames, True, _ORIGINAL[1])


cdef object _core_update_virtual(object self, PyObject **args, Py_ssize_t nargs,
                                 PyObject *kwnames):
    return _preparsed_entry(<PyObject *>self, self, args, nargs, kwnames, False, _ORIGINAL[2])


cdef object _core_update_physical(object self, PyObject **args, Py_ssize_t nargs,
                                  PyObject *kwnames):
    return _preparsed_entry(<PyObject *>self, self, args, nargs, kwnames, True, _ORIGINAL[3])


# Static: a method descriptor keeps a pointer to its PyMethodDef.
cdef _cs_method_def _FASTCALL_DEFS[4]


cdef int _install_fastcall_entries() except -1:
    cdef int i
    cdef cs_fastcall_fn entries[4]
    cdef _cs_type_t *types[4]
    entries[0] = _counting_update_virtual
    entries[1] = _counting_update_physical
    entries[2] = _core_update_virtual
    entries[3] = _core_update_physical
    types[0] = types[1] = <_cs_type_t *>CountingMethods
    types[2] = types[3] = <_cs_type_t *>Core
    for i, name in enumerate((b"proto", b"src", b"dst", b"packets", b"bytes", b"receive")):
        _PREPARSED_NAMES[i] = _cs_intern(name)  # kept for the module's life
    for i in range(4):
        cs_fastcall_def(&_FASTCALL_DEFS[i],
                        b"update_virtual" if i % 2 == 0 else b"update_physical",
                        entries[i])
        cs_replace_method(types[i], &_FASTCALL_DEFS[i], &_ORIGINAL[i])
    return 0


_init_ip_slots()
_install_fastcall_entries()
