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
