"""CPU cost of the bounded zstd reader against the unbounded one it replaced.

``connstats read`` of a zstd capture (``zstandard`` package, Python < 3.14)
now walks frames block by block in Python and gives the decompressor at
most 1 MiB worth of blocks per call (``capture/_compress.py``); before, it
gave it each 64 KiB of input, whatever that expanded to.  This probe
decompresses the same stream through both, interleaved round by round, and
prints the CPU seconds of each and their ratio.

    python benchmarks/zstd_reader_probe.py [MIB] [ROUNDS]   # default 256 MiB, 7 rounds

The input is a pcap of small UDP packets (what captures hold), compressed
at level 3 into one frame, plus the same in 1 MiB frames (as pzstd and
`zstd --adapt` write them).
"""

from __future__ import annotations

import io
import struct
import sys
import time
from typing import Any

import zstandard

from connstats.capture import _compress


class Unbounded(io.RawIOBase):
    """The reader before the fix: each 64 KiB of input decompressed whole."""

    def __init__(self, raw: Any) -> None:
        super().__init__()
        self._d = zstandard.ZstdDecompressor()
        self._frame = self._d.decompressobj()
        self._raw = raw
        self._out = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._out:
            data = self._raw.read(1 << 16)
            if not data:
                return 0
            parts = []
            while data:
                parts.append(self._frame.decompress(data))
                if not self._frame.eof:
                    break
                data = self._frame.unused_data
                self._frame = self._d.decompressobj()
            self._out = memoryview(b"".join(parts))
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        self._out = self._out[n:]
        return n


def capture(mib: int) -> bytes:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)]
    size = 24
    i = 0
    while size < mib << 20:
        payload = bytes((i + k) & 0xFF for k in range(18 + i % 40))
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), i & 0xFFFF, 0, 64,
                         17, 0, bytes([10, 0, i >> 8 & 0xFF, i & 0xFF]),
                         bytes([192, 0, 2, 1]))  # fmt: skip
        rec = (
            ip + struct.pack(">HHHH", 1024 + i % 500, 53, 8 + len(payload), 0) + payload
        )
        out.append(
            struct.pack(
                "<IIII", 1_700_000_000 + i // 1000, i % 1000, len(rec), len(rec)
            )
        )
        out.append(rec)
        size += 16 + len(rec)
        i += 1
    return b"".join(out)


def drain(stream: Any) -> int:
    buf = bytearray(4 << 20)  # what CaptureReader hands its stream
    total = 0
    while n := stream.readinto(buf):
        total += n
    return total


def main() -> None:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    plain = capture(mib)
    cctx = zstandard.ZstdCompressor(level=3)
    one = cctx.compress(plain)
    chunked = b"".join(
        cctx.compress(plain[i : i + (1 << 20)]) for i in range(0, len(plain), 1 << 20)
    )
    print(f"{len(plain) >> 20} MiB of pcap; zstd: {len(one) >> 20} MiB (one frame), "
          f"{len(chunked) >> 20} MiB (1 MiB frames); {rounds} rounds interleaved")  # fmt: skip
    for name, data in (("one frame", one), ("1 MiB frames", chunked)):
        cpu = {"unbounded (before)": [], "bounded (now)": []}
        for _ in range(rounds):
            for label, make in (
                ("unbounded (before)", lambda d=data: Unbounded(io.BytesIO(d))),
                (
                    "bounded (now)",
                    lambda d=data: _compress._ZstandardFrames(
                        zstandard.ZstdDecompressor(), io.BytesIO(d)
                    ),
                ),  # fmt: skip
            ):
                start = time.process_time()
                assert drain(make()) == len(plain)
                cpu[label].append(time.process_time() - start)
        best = {k: min(v) for k, v in cpu.items()}
        median = {k: sorted(v)[len(v) // 2] for k, v in cpu.items()}
        print(f"{name}: " + ", ".join(
            f"{k} min {best[k]:.3f} s / median {median[k]:.3f} s" for k in cpu)
            + f"; now/before (median) {median['bounded (now)'] / median['unbounded (before)']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
