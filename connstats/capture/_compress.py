"""Transparent decompression of capture files for ``connstats read``.

The compression is detected from the content (magic numbers), never from
the file name, so ``zcat``-less pipelines work too (``curl ... | connstats
read -``).  gzip, bzip2 and xz use the standard library; zstd uses
``compression.zstd`` on Python 3.14 and later, else the ``zstandard``
package (``pip install "connstats[zstd]"``), and a clear error names it when
neither is there.
"""

from __future__ import annotations

import io
import sys
from typing import Any, BinaryIO

_MAGICS = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)


class CompressionError(Exception):
    """The input is compressed in a way that cannot be read here."""


def detect(head: bytes) -> str | None:
    """``gzip``, ``bzip2``, ``xz``, ``zstd`` or None, from the first bytes."""
    for magic, name in _MAGICS:
        if head.startswith(magic):
            return name
    return None


def _zstd_reader(raw: BinaryIO, name: str) -> BinaryIO:
    import importlib

    zstd: Any
    try:
        zstd = importlib.import_module("compression.zstd")  # Python 3.14+
    except ImportError:
        pass
    else:
        return zstd.ZstdFile(raw)  # type: ignore[no-any-return, unused-ignore]
    try:
        zstandard: Any = importlib.import_module("zstandard")
    except ImportError:
        raise CompressionError(
            f"{name}: zstd-compressed; reading it needs Python 3.14 or the "
            "'zstandard' package (pip install zstandard), or decompress first: "
            "zstdcat FILE | connstats read -"
        ) from None
    return _ZstandardFrames(zstandard.ZstdDecompressor(), raw)  # type: ignore[return-value]


#: The most one call to the zstd decompressor produces: whatever the input,
#: decompression never runs further ahead of the reader than this (a
#: "decompression bomb" of a few KB that expands to GBs costs this much
#: memory, not GBs).  The size of the capture reader's buffer: smaller
#: steps cost more calls (1 MiB: +13 % CPU over decompressing whole
#: chunks, 4 MiB: +6 %; benchmarks/RESULTS.md).
MAX_OUTPUT_PER_READ = 4 << 20

_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_BLOCK_MAX = 128 * 1024  # the most one block regenerates (RFC 8878 3.1.1.2.4)


class _ZstandardFrames(io.RawIOBase):
    """The ``zstandard`` package's decompression as a stream of every frame.

    Its ``stream_reader`` ends quietly when the input stops inside a frame,
    so a truncated file would read as an empty (or shorter) capture, and its
    ``decompressobj`` returns everything a chunk of input expands to (a few
    KB of RLE blocks are GBs).  Here the input is walked block by block (the
    frame and block headers say where each ends, RFC 8878): a block
    regenerates at most 128 KiB, and one call to the decompressor gets at
    most :data:`MAX_OUTPUT_PER_READ` worth of blocks.  An input that ends
    inside a frame raises ``EOFError``, as ``gzip``, ``lzma`` and Python
    3.14's ``compression.zstd`` do; frames follow one another (``zstd -c a b
    > c``, pzstd), skippable frames are skipped.  Malformed headers are left
    to the decompressor, whose error the caller reports as corrupt data.
    """

    READ = 1 << 18

    def __init__(self, decompressor: Any, raw: BinaryIO) -> None:
        super().__init__()
        self._decompressor = decompressor
        self._frame = decompressor.decompressobj()
        self._raw = raw
        # Input read: _in[_mark:_pos] is the piece being gathered for the
        # decompressor, _in[_pos:] not looked at yet.
        self._in = b""
        self._mark = 0
        self._pos = 0
        self._eof = False
        self._state = "magic"  # what the next input bytes are
        self._checksum = False
        self._out = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._out:
            piece = self._next_piece()
            if piece is None:
                return 0
            if piece:
                self._out = memoryview(self._frame.decompress(piece))
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def _have(self, n: int) -> bool:
        """Read until ``n`` input bytes follow ``_pos``; False at the end of input."""
        while len(self._in) - self._pos < n and not self._eof:
            data = self._raw.read(max(self.READ, n))
            if not data:
                self._eof = True
            else:
                # keep the piece being gathered, drop what went before it
                self._in = self._in[self._mark :] + data
                self._pos -= self._mark
                self._mark = 0
        return len(self._in) - self._pos >= n

    def _u(self, offset: int, size: int) -> int:
        """A little-endian integer ``offset`` bytes after ``_pos``."""
        at = self._pos + offset
        return int.from_bytes(self._in[at : at + size], "little")

    def _piece(self) -> memoryview:
        piece = memoryview(self._in)[self._mark : self._pos]
        self._mark = self._pos
        return piece

    def _next_piece(self) -> memoryview | None:
        """Input for one decompressor call (whole blocks), or None at the end.

        Raises EOFError once the input ended inside a frame, after handing
        over the blocks before that point (and what there is of the cut one).
        """
        if self._state == "cut":
            raise EOFError("the zstd stream ends inside a frame")
        budget = MAX_OUTPUT_PER_READ
        while True:
            if self._state == "magic":
                if self._pos > self._mark:
                    break  # a frame ended: hand its last blocks over first
                if not self._have(1):
                    return None  # the input ends between frames: done
                if not self._have(8):
                    return self._cut()
                magic = self._u(0, 4)
                if magic & 0xFFFFFFF0 == 0x184D2A50:  # a skippable frame
                    size = 8 + self._u(4, 4)
                    if not self._have(size):
                        return self._cut()
                    self._pos += size
                    self._mark = self._pos
                    continue
                if magic != _ZSTD_MAGIC:
                    # (legacy v0.x frames included: their blocks are not walked)
                    raise ValueError(f"not a zstd frame (magic 0x{magic:08x})")
                self._frame = self._decompressor.decompressobj()
                fhd = self._u(4, 1)
                fcs = (0, 2, 4, 8)[fhd >> 6]
                single = fhd & 0x20
                if single and fcs == 0:
                    fcs = 1
                header = 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + fcs
                self._checksum = bool(fhd & 0x04)
                if not self._have(header):
                    return self._cut()
                self._pos += header
                self._state = "block"
            else:  # "block": the next block header
                if budget < _ZSTD_BLOCK_MAX:
                    break
                pos = self._pos
                if len(self._in) - pos < 3 and not self._have(3):
                    return self._cut()
                pos = self._pos  # (_have may have moved the data)
                word = int.from_bytes(self._in[pos : pos + 3], "little")
                last, kind, size = word & 1, (word >> 1) & 3, word >> 3
                length = 3 + (1 if kind == 1 else size)
                if len(self._in) - pos < length and not self._have(length):
                    return self._cut()
                self._pos += length
                budget -= _ZSTD_BLOCK_MAX
                if last:
                    if self._checksum:
                        if not self._have(4):
                            return self._cut()
                        self._pos += 4
                    self._state = "magic"
        return self._piece()

    def _cut(self) -> memoryview:
        """The input ended inside a frame: what is left, then EOFError next time."""
        if self._state == "block":  # (a frame header cut short gives nothing)
            self._pos += min(len(self._in) - self._pos, _ZSTD_BLOCK_MAX)
        else:
            self._mark = self._pos
        self._state = "cut"
        return self._piece()


def decompressing(raw: BinaryIO, name: str) -> tuple[BinaryIO, str | None]:
    """(stream of the capture, compression name or None) for ``raw``.

    ``raw`` must support ``peek`` (a BufferedReader) so that nothing is
    consumed when the input is not compressed.
    """
    head = raw.peek(6)[:6] if hasattr(raw, "peek") else b""
    kind = detect(head)
    if kind is None:
        return raw, None
    stream: Any
    if kind == "gzip":
        import gzip

        stream = gzip.GzipFile(fileobj=raw, mode="rb")
    elif kind == "bzip2":
        import bz2

        stream = bz2.BZ2File(raw, mode="rb")
    elif kind == "xz":
        import lzma

        stream = lzma.LZMAFile(raw, mode="rb")
    else:
        stream = _zstd_reader(raw, name)
    return _ClosingBoth(stream, raw, kind), kind  # type: ignore[return-value]


class _ClosingBoth(io.RawIOBase):
    """A decompressing stream that also closes the file below it (not stdin).

    A compressed stream cut short ends like a file cut short: the reader sees
    the end of its input (and counts every whole record before it), and
    :attr:`truncated` says what happened, for the caller to report.  Corrupt
    compressed data is an ``OSError`` naming the compression.
    """

    def __init__(self, stream: Any, raw: BinaryIO, kind: str) -> None:
        super().__init__()
        self._stream = stream
        self._raw = raw
        self.kind = kind
        #: Why the stream ended early, or None.
        self.truncated: str | None = None
        # One decompressed chunk per call: a full-size read would lose what
        # it had gathered when a truncated stream raises EOFError.
        self._readinto = getattr(stream, "readinto1", None) or stream.readinto

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            return self._readinto(buffer)  # type: ignore[no-any-return, unused-ignore]
        except EOFError:
            self.truncated = f"truncated: the {self.kind} stream ends early"
            return 0
        except OSError:
            raise
        except Exception as exc:  # zlib.error, lzma.LZMAError, zstd errors
            raise OSError(f"corrupt {self.kind} data: {exc}") from None

    def close(self) -> None:
        if not self.closed:
            try:
                self._stream.close()
            finally:
                if self._raw is not sys.stdin.buffer:
                    self._raw.close()
        super().close()


def open_input(path: str) -> tuple[BinaryIO, int | None, str | None]:
    """(binary stream, size on disk or None, compression) of a path or ``-``."""
    import os

    if path == "-":
        raw: BinaryIO = sys.stdin.buffer
        size = None
    else:
        raw = open(path, "rb")  # handed to the caller, who closes it
        try:
            size = os.fstat(raw.fileno()).st_size
        except BaseException:
            raw.close()
            raise
    try:
        stream, kind = decompressing(raw, path)
    except BaseException:
        if raw is not sys.stdin.buffer:
            raw.close()
        raise
    return stream, (size if kind is None else None), kind
