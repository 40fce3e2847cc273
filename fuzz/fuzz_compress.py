"""Fuzzing of transparent decompression (``connstats.capture._compress``).

Every input is a whole (usually compressed) file.  Opening and reading it
through ``decompressing`` must give bytes or a clean error: ``OSError``
(corrupt data) or the stream's ``truncated`` note, never another exception,
a hang or unbounded memory.  Each read is into a buffer of a size the input
chooses, and must return at most that many bytes; the zstandard reader must
also keep within ``MAX_OUTPUT_PER_READ`` per call to its decompressor and,
when the input is valid zstd, give what the ``zstandard`` package's own
one-shot decompression gives (the oracle).

    python fuzz/fuzz_compress.py -max_total_time=60 fuzz/corpus/compress
    python fuzz/fuzz_compress.py --replay fuzz/corpus/compress
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import instrumented_imports, main

with instrumented_imports():
    from connstats.capture import _compress

try:
    import zstandard
except ImportError:  # pragma: no cover - Python 3.14 without the package
    zstandard = None

#: Decompressed bytes read per input at most (a bomb is cut off there), and
#: reads (tiny buffers make many).
MAX_TOTAL = 16 << 20
MAX_READS = 2000
SIZES = (1, 7, 4096, 65536, 1 << 20)


def _read(data: bytes) -> tuple[bytes, str]:
    """What reading ``data`` gives: (bytes, how it ended)."""
    raw = io.BufferedReader(io.BytesIO(data))  # type: ignore[arg-type]
    try:
        stream, kind = _compress.decompressing(raw, "fuzz")
    except _compress.CompressionError:
        return b"", "no decoder"
    out = bytearray()
    size = SIZES[data[-1] % len(SIZES)] if data else 4096
    buf = bytearray(size)
    try:
        for _ in range(MAX_READS):
            if len(out) >= MAX_TOTAL:
                break
            n = stream.readinto(buf)
            if not 0 <= n <= size:
                raise AssertionError(f"readinto returned {n} into {size} bytes")
            if n == 0:
                break
            out += buf[:n]
    except OSError as exc:
        return bytes(out), f"error: {type(exc).__name__}"
    ended = getattr(stream, "truncated", None) or "end"
    return bytes(out), f"{kind}: {ended}"


def _zstd_checks(data: bytes) -> None:
    if zstandard is None or not data.startswith(b"\x28\xb5\x2f\xfd"):
        return
    reader = _compress._ZstandardFrames(zstandard.ZstdDecompressor(), io.BytesIO(data))
    buf = bytearray(1 << 22)
    got = bytearray()
    outcome = "end"
    try:
        while len(got) < MAX_TOTAL:
            n = reader.readinto(buf)
            if n > _compress.MAX_OUTPUT_PER_READ:
                raise AssertionError(f"one read gave {n} bytes")
            if n == 0:
                break
            got += buf[:n]
    except EOFError:
        outcome = "cut"
    except Exception:  # zstd errors, bad magic: corrupt data
        outcome = "corrupt"
    if outcome != "end" or len(got) >= MAX_TOTAL:
        return
    # A stream the reader read to its end cleanly: the package agrees.
    try:
        want = zstandard.ZstdDecompressor().decompress(
            data, max_output_size=MAX_TOTAL, read_across_frames=True
        )
    except zstandard.ZstdError:
        return  # e.g. no content size in the header: the one-shot API refuses
    if bytes(got) != want:
        raise AssertionError(
            f"zstd output differs from zstandard's on {data[:64].hex()}"
        )


def test_one_input(data: bytes) -> None:
    _read(data)
    _zstd_checks(data)


if __name__ == "__main__":
    main(test_one_input)
