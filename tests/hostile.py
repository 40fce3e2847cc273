"""Python objects that lie or change things under a call, for the tests
(tests/test_hostile_callers.py) and the fuzz harness (fuzz/fuzz_core.py)."""

from __future__ import annotations

import gc
import ipaddress
from typing import Any

HUGE = b"\x01" * 256  # far beyond the 16 bytes of an address field


class LyingInt(int):
    """An int whose comparisons say it is within any range."""

    def __lt__(self, other: object) -> bool:
        return False

    def __le__(self, other: object) -> bool:
        return True

    def __gt__(self, other: object) -> bool:
        return False

    def __ge__(self, other: object) -> bool:
        return True


class MyV4(ipaddress.IPv4Address):
    """An honest subclass."""


class MyV6(ipaddress.IPv6Address):
    """An honest subclass."""


class HugeV4(ipaddress.IPv4Address):
    @property
    def packed(self) -> bytes:  # type: ignore[override]
        return HUGE


class HugeV6(ipaddress.IPv6Address):
    @property
    def packed(self) -> bytes:  # type: ignore[override]
        return HUGE


class ShortV6(ipaddress.IPv6Address):
    @property
    def packed(self) -> bytes:  # type: ignore[override]
        return b"\x01\x02\x03\x04"  # an IPv6 address claiming 4 bytes


class LyingBytes(bytes):
    def __len__(self) -> int:
        return 4


class Exporter:
    """A buffer exporter written in Python (PEP 688: used on 3.12+)."""

    def __init__(self, packet: bytes) -> None:
        self.data = bytearray(packet)

    def __buffer__(self, flags: int) -> memoryview:
        return memoryview(self.data)


class Mutating(Exporter):
    """An exporter that changes `victim` (the list being read) when read:
    "clear" (and collect what only the list kept alive), "replace" (with
    more, other items) or "truncate" (to its first half)."""

    def __init__(self, victim: list[Any], packet: bytes, how: str) -> None:
        super().__init__(packet)
        self.victim = victim
        self.how = how

    def __buffer__(self, flags: int) -> memoryview:
        if self.how == "clear":
            self.victim.clear()
            gc.collect()
        elif self.how == "replace":
            self.victim[:] = [b"\x45 not counted"] * 1000
        else:
            del self.victim[len(self.victim) // 2 :]
        return super().__buffer__(flags)
