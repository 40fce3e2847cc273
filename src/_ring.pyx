# cython: language_level=3, freethreading_compatible=True, embedsignature=True
# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""PACKET_MMAP TPACKET_V3 receive ring for live capture: ``connstats.capture._ring`` (Linux).

The C walk lives in ``src/cs_ring.h``; this module owns the ring's memory and
hands each block to the counting core as one buffer plus offset and length
arrays (tx and rx apart), so no Python object is made per packet.  The GIL
is released while waiting for a block and while walking it.
"""

from array import array

cimport cython
from cpython.buffer cimport PyBuffer_FillInfo
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport EINTR, errno
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free
from libc.string cimport memset, strerror

import os

cdef extern from "cs_ring.h" nogil:
    ctypedef struct cs_ring:
        int fd
        uint8_t *map
        size_t map_len
        size_t area_len
        uint32_t block_size
        uint32_t block_nr
        uint32_t cur
        int held
    ctypedef struct cs_walk:
        uint32_t *tx_off
        uint32_t *tx_len
        uint32_t *rx_off
        uint32_t *rx_len
        uint32_t cap
        uint32_t n_tx
        uint32_t n_rx
        uint64_t skipped
        uint64_t loopback_copies
        uint64_t packets
        uint64_t bytes
        uint64_t frames
        uint64_t truncated
        uint8_t *tee
        size_t tee_len
        size_t tee_cap
        size_t tee_hint
        int tee_on
    int cs_ring_setup(cs_ring *r, int fd, uint32_t block_size, uint32_t block_nr,
                      uint32_t retire_ms)
    void cs_ring_free(cs_ring *r)
    int cs_ring_wait(cs_ring *r, int timeout_ms, int wake_fd)
    int cs_ring_walk(cs_ring *r, cs_walk *w, uint64_t limit)
    void cs_ring_release(cs_ring *r)
    int cs_ring_pending(cs_ring *r)
    int munmap(void *addr, size_t length)
    int eventfd(unsigned int initval, int flags)
    int EFD_NONBLOCK
    int EFD_CLOEXEC

cdef extern from "<unistd.h>" nogil:
    ssize_t write(int fd, const void *buf, size_t count)
    int close(int fd)

# The smallest frame a packet takes in a block (aligned tpacket3_hdr,
# sockaddr_ll, data start aligned to 16) is well over 64 bytes.
cdef uint32_t _MIN_FRAME = 64


@cython.final
cdef class _Memory:
    """Read-only memory that lives as long as this object or any view of it.

    The ring's mapping and each tee buffer are handed out as memoryviews of
    one of these: a view (or a slice of one) a caller keeps can never point
    at memory that was unmapped or freed (Python keeps the exporter alive).
    """

    cdef uint8_t *ptr
    cdef size_t size
    cdef size_t unmap_len  # 0: the memory came from malloc

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        PyBuffer_FillInfo(buffer, self, self.ptr, <Py_ssize_t>self.size, 1, flags)

    def __releasebuffer__(self, Py_buffer *buffer):
        pass

    def __dealloc__(self):
        if self.ptr != NULL:
            if self.unmap_len:
                munmap(self.ptr, self.unmap_len)
            else:
                free(self.ptr)
        self.ptr = NULL


cdef _Memory _own(uint8_t *ptr, size_t size, size_t unmap_len):
    cdef _Memory m = _Memory.__new__(_Memory)
    m.ptr = ptr
    m.size = size
    m.unmap_len = unmap_len
    return m


cdef class Ring:
    """A TPACKET_V3 ring on an AF_PACKET socket (``fd``), not yet bound.

    ``block_size`` must be a multiple of the page size; ``block_nr`` blocks
    make the ring; a block that holds packets is handed over at the latest
    ``retire_ms`` milliseconds after it was opened.

    One thread at a time walks the ring: a call made while another thread is
    inside ``next_block``, ``count``, ``tee_bytes`` or ``release`` raises
    ``RuntimeError``.  ``close`` may be called from any thread at any time:
    it wakes a thread waiting in ``next_block`` (which then raises
    ``ValueError``).  The memory behind a view returned by ``count`` (to its
    callbacks) or ``tee_bytes`` stays valid as long as the view exists.
    """

    cdef cs_ring r
    cdef cs_walk w
    cdef object _arrays
    cdef _Memory _map       # the mapping; None once closed
    cdef object _view       # memoryview of _map
    cdef _Memory _tee_out   # the tee of the last walk, once handed out
    cdef object _tx_off, _tx_len, _rx_off, _rx_len
    cdef int _wake_fd
    cdef bint _initialized
    cdef bint _closed
    cdef bint _busy
    cdef cython.pymutex _lock

    def __cinit__(self):
        self._wake_fd = -1

    def __init__(self, int fd, uint32_t block_size, uint32_t block_nr,
                 uint32_t retire_ms, bint tee=False):
        cdef int rc
        cdef uint32_t cap
        cdef uint32_t[::1] mv
        with self._lock:
            again = self._initialized
            self._initialized = True
        if again:
            raise RuntimeError("Ring: already initialized (make a new Ring)")
        self._closed = True  # until the mapping exists
        if block_nr < 1:
            raise ValueError("block_nr: must be 1 or more")
        page = os.sysconf("SC_PAGE_SIZE")
        if block_size < page or block_size % page:
            raise ValueError(
                f"block_size: {block_size} is not a multiple of the page size ({page})")
        if <uint64_t>block_size * block_nr >= (<uint64_t>1 << 32):
            # offsets into the mapping are 32-bit
            raise ValueError("ring size: must be under 4 GiB")
        self._wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        if self._wake_fd < 0:
            rc = errno
            raise OSError(rc, strerror(rc).decode())
        rc = cs_ring_setup(&self.r, fd, block_size, block_nr, retire_ms)
        if rc < 0:
            cs_ring_free(&self.r)
            raise OSError(-rc, strerror(-rc).decode())
        # From here on the mapping belongs to _map (unmapped when it and
        # every view of it are gone), never to self.r.
        self._map = _own(self.r.map, self.r.area_len, self.r.area_len)
        cap = block_size // _MIN_FRAME + 1
        self._arrays = [array("I", bytes(4 * cap)) for _ in range(4)]
        self._tx_off, self._tx_len, self._rx_off, self._rx_len = [
            memoryview(a) for a in self._arrays]
        mv = self._arrays[0]
        self.w.tx_off = &mv[0]
        mv = self._arrays[1]
        self.w.tx_len = &mv[0]
        mv = self._arrays[2]
        self.w.rx_off = &mv[0]
        mv = self._arrays[3]
        self.w.rx_len = &mv[0]
        self.w.cap = cap
        self.w.tee_on = tee
        self._view = memoryview(self._map)
        self._closed = False

    def __dealloc__(self):
        free(self.w.tee)
        self.w.tee = NULL
        if self._wake_fd >= 0:
            close(self._wake_fd)
            self._wake_fd = -1

    cdef _Memory _enter(self, str what):
        """Mark the ring busy and return its mapping (kept alive by the caller)."""
        cdef int state = 0
        with self._lock:
            if self._closed or self._map is None:
                state = 1
            elif self._busy:
                state = 2
            else:
                self._busy = True
        if state == 1:
            raise ValueError(f"{what}: the ring is closed")
        if state == 2:
            raise RuntimeError(f"{what}: the ring is in use by another thread")
        return self._map

    cdef void _leave(self) noexcept:
        with self._lock:
            self._busy = False

    def close(self):
        """Stop using the ring (the socket stays open; close it afterwards).

        The mapping is unmapped once no view of it is left.  A thread
        waiting in ``next_block`` is woken and raises ``ValueError``.
        """
        cdef uint64_t one = 1
        cdef bint busy
        with self._lock:
            if self._closed:
                return
            self._closed = True
            busy = self._busy
        if busy:
            write(self._wake_fd, &one, 8)
        # The walker (if any) holds its own reference until it returns.
        self._map = None
        self._view = None

    def next_block(self, int timeout_ms, uint64_t limit=0):
        """Wait up to ``timeout_ms`` for a block and walk it; release() it after counting.

        Returns the number of IP packets found (tx + rx), or -1 on timeout.
        ``limit`` > 0 hands over at most that many (the rest of the block is
        not counted).  A signal (Ctrl-C) raises its exception here.
        """
        cdef int rc = 0, wrc = 0
        cdef _Memory keep = self._enter("next_block")
        try:
            cs_ring_release(&self.r)
            # The last tee stays with whoever holds it; the walk starts a new one.
            self._tee_out = None
            with nogil:
                rc = cs_ring_wait(&self.r, timeout_ms, self._wake_fd)
                if rc == 1:
                    wrc = cs_ring_walk(&self.r, &self.w, limit)
        finally:
            self._leave()
        del keep
        if rc == 2:
            raise ValueError("next_block: the ring was closed while waiting")
        if rc == -EINTR:
            PyErr_CheckSignals()
            return -1
        if rc < 0:
            raise OSError(-rc, strerror(-rc).decode())
        if rc == 0:
            return -1
        if wrc < 0:
            raise MemoryError("connstats: cannot grow the pcapng output buffer")
        return self.w.n_tx + self.w.n_rx

    def count(self, update_tx_buffer, update_rx_buffer):
        """Hand the walked block to the core's buffer entry points (tx, then rx)."""
        cdef _Memory keep = self._enter("count")
        cdef uint32_t n_tx = self.w.n_tx, n_rx = self.w.n_rx
        view = self._view
        try:
            if n_tx:
                update_tx_buffer(view, self._tx_off[:n_tx], self._tx_len[:n_tx])
            if n_rx:
                update_rx_buffer(view, self._rx_off[:n_rx], self._rx_len[:n_rx])
        finally:
            self._leave()

    def tee_bytes(self):
        """The pcapng enhanced packet blocks of the walked block.

        The memory is handed over: it stays valid as long as the returned
        view (or a view of it) exists, whatever the ring does meanwhile.
        """
        cdef _Memory keep = self._enter("tee_bytes")
        try:
            if self._tee_out is None:
                if self.w.tee == NULL or self.w.tee_len == 0:
                    return b""
                self._tee_out = _own(self.w.tee, self.w.tee_len, 0)
                # the next walk allocates a new buffer, as large as this one
                self.w.tee_hint = self.w.tee_cap
                self.w.tee = NULL
                self.w.tee_cap = 0
                self.w.tee_len = 0
            return memoryview(self._tee_out)
        finally:
            self._leave()

    def release(self):
        """Give the walked block back to the kernel (nothing once closed)."""
        cdef _Memory keep
        with self._lock:
            closed = self._closed
        if closed:
            return
        keep = self._enter("release")
        try:
            cs_ring_release(&self.r)
        finally:
            self._leave()

    def pending(self):
        """Whether packets wait in the ring that were not walked yet.

        True if the next block is ready or the kernel is filling it (it
        hands that one over when it is full or at the retire timeout).  At
        the end of a capture, once no more packets come in (the socket's
        filter drops all), walking blocks while this is true counts every
        packet the kernel received.  False once closed.
        """
        cdef _Memory keep
        with self._lock:
            closed = self._closed
        if closed:
            return False
        keep = self._enter("pending")
        try:
            return cs_ring_pending(&self.r) != 0
        finally:
            self._leave()

    @property
    def n_tx(self):
        return self.w.n_tx

    @property
    def n_rx(self):
        return self.w.n_rx

    @property
    def packets(self):
        """IP packets handed over so far."""
        return self.w.packets

    @property
    def bytes(self):
        return self.w.bytes

    @property
    def skipped(self):
        """Frames that were not IPv4/IPv6."""
        return self.w.skipped

    @property
    def loopback_copies(self):
        """Outgoing copies on loopback devices, not counted (the received copy is)."""
        return self.w.loopback_copies

    @property
    def frames(self):
        return self.w.frames

    @property
    def truncated(self):
        """IP packets the ring cut short (larger than a block allows)."""
        return self.w.truncated

    @property
    def size(self):
        return self.r.map_len


cdef extern from "<sys/mman.h>" nogil:
    void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset)
    int mprotect(void *addr, size_t length, int prot)
    void *MAP_FAILED
    int PROT_READ
    int PROT_WRITE
    int PROT_NONE
    int MAP_PRIVATE
    int MAP_ANONYMOUS

from libc.string cimport memcpy


def _walk_image(image, uint64_t limit=0, bint tee=False):
    """Walk one block image given as bytes, as if the kernel had written it.

    For tests and the fuzzer (the kernel writes real blocks, so a malformed
    one cannot be made otherwise).  The image is copied to the end of a page
    followed by an inaccessible one: a read past the block faults at once.
    Returns ``(tx, rx, counters)``: lists of ``(offset, length)`` and a dict.
    """
    cdef const uint8_t[::1] src = image
    cdef size_t n = src.shape[0]
    cdef size_t page = os.sysconf("SC_PAGE_SIZE")
    cdef size_t span, i
    cdef uint8_t *area
    cdef cs_ring r
    cdef cs_walk w
    cdef int rc
    if n < 48 or n >= (<size_t>1 << 31) or n % 16:
        # a multiple of 16: the block starts aligned, as the kernel's do
        raise ValueError(
            "image: must hold a block descriptor (48 bytes), be a multiple of 16 "
            "bytes and under 2 GiB")
    span = (n + page - 1) // page * page
    area = <uint8_t *>mmap(NULL, span + page, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    if <void *>area == MAP_FAILED:
        raise MemoryError()
    cap = n // _MIN_FRAME + 1
    arrays = [array("I", bytes(4 * cap)) for _ in range(4)]
    cdef uint32_t[::1] txo = arrays[0], txl = arrays[1], rxo = arrays[2], rxl = arrays[3]
    try:
        mprotect(area + span, page, PROT_NONE)
        memcpy(area + span - n, &src[0], n)
        memset(&r, 0, sizeof(r))
        memset(&w, 0, sizeof(w))
        r.map = area + span - n
        r.map_len = n
        r.area_len = n
        r.block_size = <uint32_t>n
        r.block_nr = 1
        w.tx_off, w.tx_len, w.rx_off, w.rx_len = &txo[0], &txl[0], &rxo[0], &rxl[0]
        w.cap = <uint32_t>cap
        w.tee_on = tee
        with nogil:
            rc = cs_ring_walk(&r, &w, limit)
        tx = [(txo[i], txl[i]) for i in range(w.n_tx)]
        rx = [(rxo[i], rxl[i]) for i in range(w.n_rx)]
        counters = {
            "packets": w.packets, "bytes": w.bytes, "skipped": w.skipped,
            "loopback_copies": w.loopback_copies, "frames": w.frames,
            "truncated": w.truncated,
            "tee": (<char *>w.tee)[:w.tee_len] if w.tee_len else b"",
        }
    finally:
        free(w.tee)
        munmap(area, span + page)
    if rc < 0:
        raise MemoryError("cannot grow the pcapng output buffer")
    return tx, rx, counters
