"""Differential fuzzing of the packet decoder (docs/contract.md §4) and of
tunnel decapsulation (docs/tunnels.md).

Every input is one packet.  The compiled decoder (``connstats._fastparse``)
must give the same ``(proto, src, dst)`` as the pure-Python reference
(``connstats._fastparse_py``) whatever the bytes, for a ``bytes`` object and
for a buffer that ends right before an inaccessible page (any read past the
packet's end crashes the run).  Addresses are compared as text, so an IPv4
address and its v4-mapped IPv6 twin differ, as they must.

The tunnel walk is compiled twice (into the core and into the capture
scanner): both must give the reference's result for every tunnel mask, and
``decap()`` the reference's outer connection and inner packet.  For a packet
cut by the snap length (the walk is told that only its first ``avail`` bytes
were captured) the captured bytes are placed right before the inaccessible
page, so a read of a byte that was not captured crashes the run too.

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
try:
    from connstats.capture import _capture as scanner
except ImportError as exc:  # pragma: no cover - a build without the C scanner
    raise SystemExit(
        f"fuzz_decode: the compiled scanner is not importable ({exc})"
    ) from None

MASKS = (pure.TUNNEL_ALL, pure.TUNNEL_VXLAN | pure.TUNNEL_GRE, pure.TUNNEL_IPIP)

_GUARD = GuardedBuffer(1 << 17)


def _side(addrport) -> tuple:
    addr, port = addrport.addr, addrport.port
    return (None if addr is None else str(addr), port)


def _plain(result) -> tuple:
    proto, src, dst = result
    return (proto, *_side(src), *_side(dst))


def _decap(result) -> tuple:
    outer, offset, length, vni = result
    if outer is None:
        return (None, offset, length, vni)
    return (_plain(outer), outer.vni, offset, length, vni)


def test_one_input(data: bytes) -> None:
    expected = _plain(pure.decode(data))
    for packet in (data, _GUARD.place(data), bytearray(data)):
        got = _plain(compiled.decode(packet))
        if got != expected:
            raise AssertionError(
                f"decode mismatch for {type(packet).__name__} packet {data.hex()}: "
                f"compiled {got} != reference {expected}"
            )
    n = len(data)
    # the last byte picks how much of the packet was captured
    avail = n if not n or data[-1] & 1 else data[-1] * n // 256
    for mask in MASKS:
        # the reference on the captured bytes alone: reading past them
        # raises IndexError
        want = pure.decap_walk(data[:avail], 0, avail, n, mask)
        captured = _GUARD.place(data[:avail])
        for name, walk in (
            ("core", compiled.decap_walk),
            ("scanner", scanner.decap_walk),
        ):
            got = walk(captured, 0, avail, n, mask)
            if got != want:
                raise AssertionError(
                    f"{name} decap_walk mismatch for {data.hex()} (avail {avail}, "
                    f"mask {mask}): {got} != reference {want}"
                )
        want = _decap(pure.decap(data, mask))
        got = _decap(compiled.decap(_GUARD.place(data), mask))
        if got != want:
            raise AssertionError(
                f"decap mismatch for {data.hex()} (mask {mask}): {got} != {want}"
            )


if __name__ == "__main__":
    main(test_one_input)
