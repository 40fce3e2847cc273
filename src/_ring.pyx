# cython: language_level=3, freethreading_compatible=True, embedsignature=True
# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""PACKET_MMAP TPACKET_V3 receive ring for live capture: ``connstats.capture._ring`` (Linux).

The C walk lives in ``src/cs_ring.h``; this module owns the ring's memory and
hands each block to the counting core as one buffer plus offset and length
arrays (tx and rx apart), so no Python object is made per packet.  The GIL
is released while waiting for a block and while walking it.
"""

from array import array

from cpython.buffer cimport PyBUF_READ
from cpython.exc cimport PyErr_CheckSignals
from cpython.memoryview cimport PyMemoryView_FromMemory
from libc.errno cimport EINTR
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free
from libc.string cimport strerror

import os

cdef extern from "cs_ring.h" nogil:
    ctypedef struct cs_ring:
        int fd
        uint8_t *map
        size_t map_len
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
        uint8_t *tee
        size_t tee_len
        size_t tee_cap
        int tee_on
    int cs_ring_setup(cs_ring *r, int fd, uint32_t block_size, uint32_t block_nr,
                      uint32_t retire_ms)
    void cs_ring_free(cs_ring *r)
    int cs_ring_wait(cs_ring *r, int timeout_ms)
    int cs_ring_walk(cs_ring *r, cs_walk *w, uint64_t limit)
    void cs_ring_release(cs_ring *r)

# The smallest frame a packet takes in a block (aligned tpacket3_hdr,
# sockaddr_ll, data start aligned to 16) is well over 64 bytes.
cdef uint32_t _MIN_FRAME = 64


cdef class Ring:
    """A TPACKET_V3 ring on an AF_PACKET socket (``fd``), not yet bound.

    ``block_size`` must be a multiple of the page size; ``block_nr`` blocks
    make the ring; a block that holds packets is handed over at the latest
    ``retire_ms`` milliseconds after it was opened.
    """

    cdef cs_ring r
    cdef cs_walk w
    cdef object _arrays
    cdef object _view
    cdef object _tx_off, _tx_len, _rx_off, _rx_len
    cdef bint _open

    def __cinit__(self):
        self._open = False

    def __init__(self, int fd, uint32_t block_size, uint32_t block_nr,
                 uint32_t retire_ms, bint tee=False):
        cdef int rc
        cdef uint32_t cap
        cdef uint32_t[::1] mv
        if block_nr < 1:
            raise ValueError("block_nr: must be 1 or more")
        page = os.sysconf("SC_PAGE_SIZE")
        if block_size < page or block_size % page:
            raise ValueError(
                f"block_size: {block_size} is not a multiple of the page size ({page})")
        if <uint64_t>block_size * block_nr >= (<uint64_t>1 << 32):
            # offsets into the mapping are 32-bit
            raise ValueError("ring size: must be under 4 GiB")
        rc = cs_ring_setup(&self.r, fd, block_size, block_nr, retire_ms)
        if rc < 0:
            cs_ring_free(&self.r)
            raise OSError(-rc, strerror(-rc).decode())
        self._open = True
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
        self._view = PyMemoryView_FromMemory(<char *>self.r.map, <Py_ssize_t>self.r.map_len,
                                             PyBUF_READ)

    def __dealloc__(self):
        if self._open:
            cs_ring_free(&self.r)
        free(self.w.tee)
        self.w.tee = NULL

    def close(self):
        """Unmap the ring (the socket stays open; close it afterwards)."""
        if self._view is not None:
            self._view.release()
            self._view = None
        if self._open:
            cs_ring_free(&self.r)
            self._open = False

    def next_block(self, int timeout_ms, uint64_t limit=0):
        """Wait up to ``timeout_ms`` for a block and walk it; release() it after counting.

        Returns the number of IP packets found (tx + rx), or -1 on timeout.
        ``limit`` > 0 hands over at most that many (the rest of the block is
        not counted).  A signal (Ctrl-C) raises its exception here.
        """
        cdef int rc = 0, wrc = 0
        if not self._open:
            raise ValueError("the ring is closed")
        cs_ring_release(&self.r)
        with nogil:
            rc = cs_ring_wait(&self.r, timeout_ms)
            if rc == 1:
                wrc = cs_ring_walk(&self.r, &self.w, limit)
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
        if self.w.n_tx:
            update_tx_buffer(self._view, self._tx_off[:self.w.n_tx],
                             self._tx_len[:self.w.n_tx])
        if self.w.n_rx:
            update_rx_buffer(self._view, self._rx_off[:self.w.n_rx],
                             self._rx_len[:self.w.n_rx])

    def tee_bytes(self):
        """The pcapng enhanced packet blocks of the walked block (valid until the next walk)."""
        if self.w.tee == NULL or self.w.tee_len == 0:
            return b""
        return PyMemoryView_FromMemory(<char *>self.w.tee, <Py_ssize_t>self.w.tee_len,
                                       PyBUF_READ)

    def release(self):
        """Give the walked block back to the kernel."""
        if self._open:
            cs_ring_release(&self.r)

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
    def size(self):
        return self.r.map_len
