"""libpcap's filter compiler, loaded at run time with ctypes.

BPF expressions (``tcp port 443 and not host 10.0.0.1``) are compiled by
libpcap itself, never by a hand-written parser, so they mean exactly what
they mean to tcpdump.  connstats has no build-time dependency on libpcap:
the shared library is looked up when a filter is first compiled, and
:class:`LibpcapMissingError` says so clearly when it is not installed.

Stable API (used by ``connstats read --bpf`` and by live capture):

``compile_filter(expr, linktype, snaplen=262144, *, byte_order=None) -> Program``
    Compile ``expr`` for frames of the given LINKTYPE_* value, as capture
    files carry it (1 Ethernet, 101 raw IP, 113 Linux cooked, ...).
    ``byte_order`` (``"<"`` or ``">"``): the frames come from a capture file
    written in that byte order, and the program is compiled as ``tcpdump -r``
    compiles it, against a savefile of that link type and byte order: the
    NULL/ENC link headers' address family in the writer's byte order, and
    every BSD and macOS value of AF_INET6 (24, 28, 30) for ``ip6``.  Without
    it, as for a live capture on this machine.  Raises :class:`FilterError`
    (a ``ValueError``) with libpcap's message for a bad expression,
    :class:`LibpcapMissingError` (an ``OSError``) when libpcap cannot be
    loaded.

``offline_filter(program, packet, wire_length=None) -> bool``
    Run a compiled program on one frame (``bytes``/``bytearray``/
    ``memoryview``, starting at the link header).  ``wire_length`` is the
    length the frame had on the wire (default: ``len(packet)``; a
    snaplen-truncated record passes its original length).

``Program.instructions``
    The compiled program as ``(code, jt, jf, k)`` tuples: what a
    ``struct sock_fprog`` for ``SO_ATTACH_FILTER`` needs.

``available() -> bool``
    Whether libpcap can be loaded here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from typing import Any, Union

# defined with the other capture errors, so that catching them does not load ctypes
from .errors import FilterError, LibpcapMissingError

__all__ = [
    "FilterError",
    "LibpcapMissingError",
    "Program",
    "available",
    "compile_filter",
    "offline_filter",
]

Packet = Union[bytes, bytearray, memoryview]

#: libpcap's PCAP_NETMASK_UNKNOWN: "broadcast" primitives are then refused
#: with a clear message instead of matching the wrong addresses.
_NETMASK_UNKNOWN = 0xFFFFFFFF
DEFAULT_SNAPLEN = 262144

# Capture files carry LINKTYPE_* values; pcap_open_dead wants the platform's
# DLT_* value, which differs for the few types below (libpcap maps them the
# same way when it reads a file).
_LINKTYPE_TO_DLT = {100: 11, 101: 12, 102: 15, 103: 16}


class _BpfInsn(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    ]


class _BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_BpfInsn))]


class _Timeval(ctypes.Structure):
    # struct timeval: two C longs on every platform libpcap runs on (Windows'
    # long is 32-bit there as well, matching its timeval).
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _PktHdr(ctypes.Structure):
    _fields_ = [("ts", _Timeval), ("caplen", ctypes.c_uint32), ("len", ctypes.c_uint32)]


_lib: Any = None
_lib_error: str | None = None
# pcap_compile is not thread-safe in libpcap < 1.8 (a global parser).
_compile_lock = threading.Lock()

_CANDIDATES = (
    "libpcap.so.1",
    "libpcap.so.0.8",
    "libpcap.so",
    "libpcap.A.dylib",
    "libpcap.dylib",
    "wpcap.dll",
)


def _load() -> Any:
    global _lib, _lib_error
    if _lib is not None:
        return _lib
    if _lib_error is not None:
        raise LibpcapMissingError(_lib_error)
    names = [n for n in (ctypes.util.find_library("pcap"),) if n] + list(_CANDIDATES)
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
            lib.pcap_open_dead.restype = ctypes.c_void_p
            lib.pcap_open_offline.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
            lib.pcap_open_offline.restype = ctypes.c_void_p
            lib.pcap_compile.argtypes = [
                ctypes.c_void_p,
                ctypes.POINTER(_BpfProgram),
                ctypes.c_char_p,
                ctypes.c_int,
                ctypes.c_uint32,
            ]
            lib.pcap_compile.restype = ctypes.c_int
            lib.pcap_geterr.argtypes = [ctypes.c_void_p]
            lib.pcap_geterr.restype = ctypes.c_char_p
            lib.pcap_offline_filter.argtypes = [
                ctypes.POINTER(_BpfProgram),
                ctypes.POINTER(_PktHdr),
                ctypes.c_char_p,
            ]
            lib.pcap_offline_filter.restype = ctypes.c_int
            lib.pcap_freecode.argtypes = [ctypes.POINTER(_BpfProgram)]
            lib.pcap_freecode.restype = None
            lib.pcap_close.argtypes = [ctypes.c_void_p]
            lib.pcap_close.restype = None
        except AttributeError:
            continue  # some other library called libpcap; keep looking
        _lib = lib
        return lib
    _lib_error = (
        "libpcap is not installed, so BPF filters cannot be compiled "
        "(Debian/Ubuntu: apt install libpcap0.8; Fedora: dnf install libpcap; "
        "macOS ships it; Windows: install Npcap)"
    )
    raise LibpcapMissingError(_lib_error)


def available() -> bool:
    """True when libpcap can be loaded on this machine."""
    try:
        _load()
    except LibpcapMissingError:
        return False
    return True


class Program:
    """A compiled BPF program; freed with :meth:`close` or when collected."""

    __slots__ = ("_lib", "_prog", "expression", "linktype", "snaplen")

    def __init__(
        self, lib: Any, prog: _BpfProgram, expression: str, linktype: int, snaplen: int
    ) -> None:
        self._lib = lib
        self._prog: _BpfProgram | None = prog
        self.expression = expression
        self.linktype = linktype
        self.snaplen = snaplen

    @property
    def instructions(self) -> list[tuple[int, int, int, int]]:
        prog = self._program()
        return [
            (i.code, i.jt, i.jf, i.k)
            for i in (prog.bf_insns[n] for n in range(prog.bf_len))
        ]

    def _program(self) -> _BpfProgram:
        if self._prog is None:
            raise ValueError("the BPF program is closed")
        return self._prog

    def close(self) -> None:
        if self._prog is not None:
            self._lib.pcap_freecode(ctypes.byref(self._prog))
            self._prog = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may be gone
            pass

    def __enter__(self) -> Program:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Program({self.expression!r}, linktype={self.linktype})"


def _open_savefile(lib: Any, linktype: int, snaplen: int, byte_order: str) -> Any:
    """A libpcap handle reading an empty savefile of this link type and byte order.

    libpcap compiles some primitives differently for a file than for a live
    capture (``ip6`` on NULL/LOOP/ENC, address families written in the other
    byte order): a handle on a file with the capture's own header is what
    ``tcpdump -r`` compiles against.
    """
    import os
    import struct
    import tempfile

    header = struct.pack(
        byte_order + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype
    )
    fd, path = tempfile.mkstemp(prefix="connstats-bpf-", suffix=".pcap")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header)
        errbuf = ctypes.create_string_buffer(512)  # PCAP_ERRBUF_SIZE is 256
        handle = lib.pcap_open_offline(os.fsencode(path), errbuf)
    finally:
        os.unlink(path)  # libpcap has read the header
    if not handle:
        message = errbuf.value.decode(errors="replace")
        raise FilterError(f"libpcap cannot compile for link type {linktype}: {message}")
    return handle


def compile_filter(
    expr: str,
    linktype: int,
    snaplen: int = DEFAULT_SNAPLEN,
    *,
    byte_order: str | None = None,
) -> Program:
    """Compile a BPF expression with libpcap for the given link type (see above)."""
    if not isinstance(expr, str):
        raise TypeError(f"expr must be a str, not {type(expr).__name__}")
    if byte_order not in (None, "<", ">"):
        raise ValueError(f"byte_order: expected '<', '>' or None, got {byte_order!r}")
    lib = _load()
    if byte_order is not None:
        handle = _open_savefile(lib, int(linktype), int(snaplen), byte_order)
    else:
        handle = lib.pcap_open_dead(
            _LINKTYPE_TO_DLT.get(int(linktype), int(linktype)), int(snaplen)
        )
    if not handle:
        raise FilterError(f"libpcap cannot open a handle for link type {linktype}")
    try:
        prog = _BpfProgram()
        with _compile_lock:
            status = lib.pcap_compile(
                handle, ctypes.byref(prog), expr.encode(), 1, _NETMASK_UNKNOWN
            )
            if status != 0:
                message = (lib.pcap_geterr(handle) or b"").decode(errors="replace")
                raise FilterError(f"bad BPF expression {expr!r}: {message}")
    finally:
        lib.pcap_close(handle)
    return Program(lib, prog, expr, int(linktype), int(snaplen))


def offline_filter(
    program: Program, packet: Packet, wire_length: int | None = None
) -> bool:
    """True when ``program`` accepts the frame ``packet``."""
    data = bytes(packet)
    header = _PktHdr()
    header.caplen = len(data)
    header.len = len(data) if wire_length is None else max(int(wire_length), len(data))
    prog = program._program()
    return bool(
        program._lib.pcap_offline_filter(ctypes.byref(prog), ctypes.byref(header), data)
    )
