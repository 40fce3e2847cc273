"""Decompression never runs far ahead of the reader (``capture/_compress.py``).

A few KB of zstd RLE blocks expand to GBs: the ``zstandard`` path used to
decompress each 64 KiB of input whole (a 32 KB file took ``connstats read``
to 1 GiB).  Every decompressor's output per read is bounded now; these tests
measure the memory of real ``connstats read`` runs on bombs of each kind,
check the zstandard reader's bound read by read, and check its output
against the ``zstd`` tool on streams with several frames, skippable frames
and checksums.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import resource
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

zstandard = pytest.importorskip(
    "zstandard", reason="the zstandard package (connstats[zstd]) is not installed"
)

from connstats.capture import _compress  # noqa: E402

GIB = 1 << 30


def zstd_rle_bomb(size: int, byte: bytes = b"\0") -> bytes:
    """A zstd frame of RLE blocks (4 bytes each) that regenerates ``size`` bytes."""
    block = 128 * 1024
    assert size % block == 0
    # frame header: magic, descriptor (no content size, not single segment,
    # no checksum, no dictionary), window descriptor (2**17 bytes)
    out = bytearray(struct.pack("<I", 0xFD2FB528) + bytes([0x00, 0x38]))
    count = size // block
    for i in range(count):
        last = 1 if i == count - 1 else 0
        out += (last | (1 << 1) | (block << 3)).to_bytes(3, "little") + byte
    return bytes(out)


def run_measured(args: list[str], limit: int = 3 * GIB) -> tuple[int, str, int]:
    """Run a command with its address space capped; (status, stderr, peak RSS bytes)."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    proc = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=cap
    )
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    return proc.returncode, err, usage.ru_maxrss * 1024


def _read(path: Path) -> tuple[int, str, int]:
    return run_measured([sys.executable, "-m", "connstats", "read", str(path)])


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> int:
    """Peak RSS of `connstats read` failing on a small file that is not a capture."""
    path = tmp_path_factory.mktemp("base") / "zeros"
    path.write_bytes(bytes(64))
    status, err, peak = _read(path)
    assert status == 1 and "not a pcap or pcapng capture" in err
    return peak


def test_zstd_bomb_costs_no_more_than_a_plain_file(tmp_path, baseline):
    path = tmp_path / "bomb.zst"
    path.write_bytes(zstd_rle_bomb(GIB))
    assert path.stat().st_size < 40_000
    status, err, peak = _read(path)
    assert status == 1, err
    assert "not a pcap or pcapng capture (starts with 00000000)" in err
    assert peak < baseline + 64 * (1 << 20), (peak, baseline)


@pytest.mark.parametrize("kind", ["gzip", "bzip2", "xz"], ids=["gzip", "bzip2", "xz"])
def test_standard_library_bombs_are_bounded_too(tmp_path, baseline, kind):
    size = 256 << 20
    path = tmp_path / "bomb"
    # Written in 1 MiB steps: this process must not hold the 256 MiB itself.
    # run_measured forks (preexec_fn), and Linux keeps a process's peak RSS
    # across exec, so the child's peak would include this process's memory
    # wherever the allocator keeps freed memory (mimalloc on free-threaded
    # builds does).
    opener = {
        "gzip": lambda f: gzip.GzipFile(fileobj=f, mode="wb", compresslevel=1),
        "bzip2": lambda f: bz2.BZ2File(f, "wb", compresslevel=1),
        "xz": lambda f: lzma.LZMAFile(f, "wb", preset=0),
    }[kind]
    chunk = bytes(1 << 20)
    with open(path, "wb") as raw, opener(raw) as out:
        for _ in range(size // len(chunk)):
            out.write(chunk)
    status, err, peak = _read(path)
    assert status == 1 and "not a pcap or pcapng capture" in err, err
    assert peak < baseline + 64 * (1 << 20), (peak, baseline)


def _reader(data: bytes) -> _compress._ZstandardFrames:
    return _compress._ZstandardFrames(zstandard.ZstdDecompressor(), io.BytesIO(data))


def _drain(stream, size: int = 64 << 20) -> tuple[bytes, int]:
    """All of a stream, read into a big buffer; (data, largest single read)."""
    buf = bytearray(size)
    out = bytearray()
    largest = 0
    while n := stream.readinto(buf):
        largest = max(largest, n)
        out += buf[:n]
    return bytes(out), largest


def test_each_read_of_the_zstandard_stream_is_bounded():
    stream = _reader(zstd_rle_bomb(64 << 20, b"x"))
    data, largest = _drain(stream)
    assert data == b"x" * (64 << 20)
    assert largest <= _compress.MAX_OUTPUT_PER_READ


@pytest.mark.skipif(
    shutil.which("zstd") is None, reason="the zstd tool is not installed"
)
def test_zstandard_stream_matches_the_zstd_tool(tmp_path):
    # several frames (levels, checksums, content sizes), a skippable frame
    # between them, and the bomb's RLE frame: decompressed by the zstd tool
    rng = __import__("random").Random(7)
    parts = [bytes(rng.getrandbits(8) for _ in range(300_000)), b"abc" * 200_000, b""]
    frames = []
    for i, part in enumerate(parts):
        src = tmp_path / f"p{i}"
        src.write_bytes(part)
        flags = ["--check"] if i % 2 else ["--no-check"]
        subprocess.run(["zstd", "-q", f"-{i * 9 + 1}", *flags, "-f", str(src)],
                       check=True, timeout=60)  # fmt: skip
        frames.append((tmp_path / f"p{i}.zst").read_bytes())
    skippable = struct.pack("<II", 0x184D2A5A, 5) + b"12345"
    data = frames[0] + skippable + frames[1] + zstd_rle_bomb(1 << 20) + frames[2]
    path = tmp_path / "all.zst"
    path.write_bytes(data)
    want = subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True,
                          timeout=60).stdout  # fmt: skip
    got, largest = _drain(_reader(data))
    assert got == want == parts[0] + parts[1] + bytes(1 << 20)
    assert largest <= _compress.MAX_OUTPUT_PER_READ
    # cut anywhere: what came before is handed over, then EOFError
    for cut in (3, 7, len(frames[0]) // 2, len(frames[0]) + 9, len(data) - 2):
        stream = _reader(data[:cut])
        buf = bytearray(1 << 20)
        got = bytearray()
        with pytest.raises(EOFError):
            while n := stream.readinto(buf):
                got += buf[:n]
        assert want.startswith(bytes(got))


def test_garbage_after_a_frame_is_corrupt_data(tmp_path):
    path = tmp_path / "x.zst"
    path.write_bytes(zstd_rle_bomb(1 << 17) + b"garbage!")
    stream, _size, kind = _compress.open_input(str(path))
    with stream:
        assert kind == "zstd"
        buf = bytearray(1 << 20)
        assert stream.readinto(buf) == 1 << 17
        with pytest.raises(OSError, match="corrupt zstd data: not a zstd frame"):
            stream.readinto(buf)
