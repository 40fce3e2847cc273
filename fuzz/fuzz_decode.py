"""Differential fuzzing of the packet decoder (docs/contract.md §4).

Every input is one packet.  The compiled decoder (``connstats._fastparse``)
must give the same ``(proto, src, dst)`` as the pure-Python reference
(``connstats._fastparse_py``) whatever the bytes, for a ``bytes`` object and
for a buffer that ends right before an inaccessible page (any read past the
packet's end crashes the run).  Addresses are compared as text, so an IPv4
address and its v4-mapped IPv6 twin differ, as they must.

    python fuzz/fuzz_decode.py -max_total_time=60 fuzz/corpus/decode
    python fuzz/fuzz_decode.py --replay fuzz/corpus/decode
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import GuardedBuffer, instrumented_imports, main

with instrumented_imports():
    from connstats import _fastparse_py as pure

try:
    from connstats import _fastparse as compiled
except ImportError as exc:  # pragma: no cover - a build without the C core
    raise SystemExit(
        f"fuzz_decode: the compiled core is not importable ({exc})"
    ) from None

_GUARD = GuardedBuffer(1 << 17)


def _side(addrport) -> tuple:
    addr, port = addrport.addr, addrport.port
    return (None if addr is None else str(addr), port)


def _plain(result) -> tuple:
    proto, src, dst = result
    return (proto, *_side(src), *_side(dst))


def test_one_input(data: bytes) -> None:
    expected = _plain(pure.decode(data))
    for packet in (data, _GUARD.place(data), bytearray(data)):
        got = _plain(compiled.decode(packet))
        if got != expected:
            raise AssertionError(
                f"decode mismatch for {type(packet).__name__} packet {data.hex()}: "
                f"compiled {got} != reference {expected}"
            )


if __name__ == "__main__":
    main(test_one_input)
