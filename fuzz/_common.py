"""Shared plumbing of the connstats fuzz harnesses.

Each harness is a script with a ``test_one_input(data: bytes)`` function that
raises on any finding.  :func:`main` runs it either under atheris (libFuzzer
flags and corpus directories on the command line, as usual) or, with
``--replay PATH...``, over the files of a corpus without atheris at all, which
is what the sanitizer and valgrind scripts and the test suite use.

:class:`GuardedBuffer` places an input at the very end of a mapped page that
is followed by an inaccessible one, so that a read even one byte past the end
of a packet faults at once, with or without AddressSanitizer.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import mmap
import os
import sys
import time
from pathlib import Path
from typing import Callable, ContextManager, Iterable, Iterator, Optional

REPLAY_FLAG = "--replay"
_PROT_NONE = 0


def replaying(argv: Optional[list[str]] = None) -> bool:
    return REPLAY_FLAG in (sys.argv if argv is None else argv)


def instrumented_imports() -> ContextManager[object]:
    """atheris's import instrumentation (Python coverage), when fuzzing."""
    if replaying():
        return contextlib.nullcontext()
    try:
        import atheris
    except ImportError:
        return contextlib.nullcontext()
    return atheris.instrument_imports(include=["connstats"])


def _corpus_files(paths: Iterable[str]) -> Iterator[Path]:
    for name in paths:
        path = Path(name)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            yield path
        else:
            raise SystemExit(f"{name}: no such file or directory")


def replay(test_one_input: Callable[[bytes], None], paths: list[str]) -> int:
    """Run every corpus file through the harness; return how many ran."""
    count = 0
    started = time.perf_counter()
    for path in _corpus_files(paths):
        try:
            test_one_input(path.read_bytes())
        except BaseException:
            print(f"replay: failing input {path}", file=sys.stderr)
            raise
        count += 1
    elapsed = time.perf_counter() - started
    print(f"replay: {count} inputs in {elapsed:.2f} s, no finding", flush=True)
    return count


def main(test_one_input: Callable[[bytes], None]) -> None:
    argv = sys.argv
    if replaying(argv):
        paths = [a for a in argv[1:] if a != REPLAY_FLAG]
        if not paths:
            raise SystemExit(f"usage: {argv[0]} {REPLAY_FLAG} CORPUS_DIR_OR_FILE...")
        replay(test_one_input, paths)
        return
    try:
        import atheris
    except ImportError:
        raise SystemExit(
            "atheris is not installed: `pip install atheris` (or run with "
            f"{REPLAY_FLAG} CORPUS_DIR to replay a corpus without it)"
        ) from None
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


class GuardedBuffer:
    """A reusable buffer whose last usable byte is followed by a PROT_NONE page."""

    def __init__(self, capacity: int = 1 << 20) -> None:
        page = mmap.PAGESIZE
        self._size = (capacity + page - 1) // page * page
        self._view: Optional[memoryview] = None
        self._base = 0
        libc_name = ctypes.util.find_library("c")
        if sys.platform != "linux" or libc_name is None:
            return  # no guard page: place() falls back to a plain copy
        libc = ctypes.CDLL(libc_name, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_long,
        ]
        libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        base = libc.mmap(
            None,
            self._size + page,
            mmap.PROT_READ | mmap.PROT_WRITE,
            mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
            -1,
            0,
        )
        if base in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "mmap failed")
        if libc.mprotect(base + self._size, page, _PROT_NONE) != 0:
            raise OSError(ctypes.get_errno(), "mprotect failed")
        self._base = base  # never unmapped: one per process

    def place(self, data: bytes) -> memoryview:
        """A writable view of a copy of ``data`` that ends right at the guard page."""
        n = len(data)
        if not self._base or n > self._size:
            return memoryview(bytearray(data))
        addr = self._base + self._size - n
        ctypes.memmove(addr, data, n)
        return memoryview((ctypes.c_ubyte * n).from_address(addr)).cast("B")


class Reader:
    """Consume an input as a stream of small integers; zeros once exhausted."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def remaining(self) -> int:
        return len(self._data) - self._pos

    def u8(self) -> int:
        if self._pos >= len(self._data):
            return 0
        value = self._data[self._pos]
        self._pos += 1
        return value

    def u16(self) -> int:
        return (self.u8() << 8) | self.u8()

    def u64(self) -> int:
        value = 0
        for _ in range(8):
            value = (value << 8) | self.u8()
        return value

    def take(self, n: int) -> bytes:
        chunk = self._data[self._pos : self._pos + n]
        self._pos += len(chunk)
        return chunk


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")
