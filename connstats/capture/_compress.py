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


class _ZstandardFrames(io.RawIOBase):
    """The ``zstandard`` package's decompression as a stream of every frame.

    Its ``stream_reader`` ends quietly when the input stops inside a frame,
    so a truncated file would read as an empty (or shorter) capture.  Here
    the input is fed to one decompression object per frame, and an input that
    ends inside a frame raises ``EOFError``, as ``gzip``, ``lzma`` and
    Python 3.14's ``compression.zstd`` do.
    """

    CHUNK = 1 << 16

    def __init__(self, decompressor: Any, raw: BinaryIO) -> None:
        super().__init__()
        self._decompressor = decompressor
        self._frame = decompressor.decompressobj()
        self._raw = raw
        self._in_frame = False  # a frame has begun and has not ended
        self._out = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._out:
            data = self._raw.read(self.CHUNK)
            if not data:
                if self._in_frame:
                    raise EOFError("the zstd stream ends inside a frame")
                return 0
            self._out = memoryview(self._feed(data))
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def _feed(self, data: bytes) -> bytes:
        parts = []
        while data:
            self._in_frame = True
            parts.append(self._frame.decompress(data))
            if not self._frame.eof:
                break
            # Frames follow one another (zstd -c a b > c, pzstd): go on.
            self._in_frame = False
            data = self._frame.unused_data
            self._frame = self._decompressor.decompressobj()
        return b"".join(parts)


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
