"""Turning the address arguments of the physical entry points into bytes.

Both cores (C and pure Python) call these, so that they accept exactly the
same inputs and raise exactly the same errors.  Results of string parsing are
cached because a forwarder passes the same few peer addresses over and over.
"""

from __future__ import annotations

import ipaddress
import operator
from functools import lru_cache
from typing import Any, Optional

_MISSING = object()
_IP_TYPES = (ipaddress.IPv4Address, ipaddress.IPv6Address)
_U64_LIMIT = 1 << 64


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


@lru_cache(maxsize=4096)
def _parse_ip_text(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def _checked_packed(value: Any, argname: str) -> bytes:
    # An address subclass can override .packed (and a bytes subclass __len__
    # and __bytes__): the result must be exact bytes of the family's length,
    # as the compiled core copies it into 4- or 16-byte fields.
    packed = value.packed
    want = 4 if isinstance(value, ipaddress.IPv4Address) else 16
    if type(packed) is not bytes or len(packed) != want:
        got = f"{len(packed)} bytes" if isinstance(packed, bytes) else _describe(packed)
        raise ValueError(
            f"{argname}: {type(value).__name__}.packed gave {got}, expected {want} bytes"
        )
    return packed


def packed_address(value: Any, argname: str) -> bytes:
    """Return the 4- or 16-byte packed form of an IP address argument."""
    if type(value) in _IP_TYPES:
        return value.packed
    if isinstance(value, _IP_TYPES):
        return _checked_packed(value, argname)
    if isinstance(value, (bytes, bytearray)):
        # Copied first (through the buffer, not a subclass's __bytes__), then
        # measured: the copy is exact bytes, whose length cannot lie.
        packed = bytes(memoryview(value))
        if len(packed) in (4, 16):
            return packed
        raise ValueError(
            f"{argname}: packed address must be 4 or 16 bytes, got {len(packed)}"
        )
    if isinstance(value, str):
        try:
            return _parse_ip_text(value)
        except ValueError:
            raise ValueError(
                f"{argname}: {value!r} is not an IPv4 or IPv6 address"
            ) from None
    raise TypeError(
        f"{argname}: expected an IP address (str, ipaddress object or packed "
        f"bytes), got {_describe(value)}"
    )


def _port(value: Any, argname: str) -> int:
    try:
        # An exact int (operator.index copies an int subclass's real value),
        # so the range check cannot be fooled by overridden comparisons.
        value = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{argname}: port must be an int, got {_describe(value)}"
        ) from None
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{argname}: port {value} is out of range 0..65535")
    return value


@lru_cache(maxsize=4096)
def _parse_addrport_text(text: str) -> tuple[bytes, int]:
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError
    else:
        host, sep, port = text.rpartition(":")
        if not sep or ":" in host:
            raise ValueError
    if not port.isdigit():
        raise ValueError
    number = int(port)
    if number > 0xFFFF:
        raise ValueError
    return ipaddress.ip_address(host).packed, number


def packed_addrport(value: Any, argname: str) -> tuple[bytes, int]:
    """Return (packed address, port) for a destination argument.

    Accepts ``(addr, port)`` tuples (AddrPort included) and ``"1.2.3.4:80"`` /
    ``"[::1]:80"`` strings.
    """
    if isinstance(value, tuple):
        if len(value) != 2:
            raise ValueError(
                f"{argname}: expected (address, port), got a tuple of {len(value)}"
            )
        return packed_address(value[0], argname), _port(value[1], argname)
    if hasattr(value, "addr") and hasattr(value, "port"):
        # the compiled core's AddrPort is not a tuple
        return packed_address(value.addr, argname), _port(value.port, argname)
    if isinstance(value, str):
        try:
            return _parse_addrport_text(value)
        except ValueError:
            raise ValueError(
                f"{argname}: {value!r} is not an 'ip:port' or '[ipv6]:port' string"
            ) from None
    raise TypeError(
        f"{argname}: expected (address, port), AddrPort or 'ip:port' string, "
        f"got {_describe(value)}"
    )


def _counter(value: Any, argname: str, what: str) -> int:
    try:
        value = operator.index(value)  # an exact int, as in _port
    except TypeError:
        raise TypeError(
            f"{argname}: expected an int {what}, got {_describe(value)}"
        ) from None
    if value < 0:
        raise ValueError(f"{argname}: {what} must be >= 0, got {value}")
    if value >= _U64_LIMIT:
        raise ValueError(f"{argname}: {what} must be < 2**64, got {value}")
    return value


def byte_count(value: Any, argname: str = "n") -> int:
    """Validate the byte count of an update."""
    return _counter(value, argname, "byte count")


def packet_count(value: Any, argname: str = "packets") -> int:
    """Validate the packet count of an update (0 .. 2**64 - 1)."""
    return _counter(value, argname, "packet count")


def protocol_number(value: Any, argname: str = "proto") -> int:
    """Validate an IP protocol number (0 .. 255)."""
    if isinstance(value, bool):
        raise TypeError(f"{argname}: expected an int, got bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{argname}: expected an int protocol number, got {_describe(value)}"
        ) from None
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{argname}: protocol {value} is out of range 0..255")
    return value


def direction(value: Any, argname: str = "receive") -> bool:
    """Validate the ``receive`` flag: exactly True or False.

    An int would be accepted by truthiness and hide a misplaced argument
    (``update_virtual(proto, src, dst, bytes, packets, 1)``)."""
    if value is True or value is False:
        return value
    raise TypeError(f"{argname}: expected True or False, got {_describe(value)}")


def packed_endpoint(value: Any, argname: str) -> tuple[Optional[bytes], int]:
    """Return (packed address or None, port) for a pre-parsed endpoint.

    As :func:`packed_addrport`, and the address may also be ``None`` (a
    connection of a packet that had no address, as the decoder gives):
    ``AddrPort(None, 0)`` or ``(None, port)``.
    """
    if isinstance(value, tuple):
        if len(value) == 2 and value[0] is None:
            return None, _port(value[1], argname)
    elif getattr(value, "addr", _MISSING) is None and hasattr(value, "port"):
        return None, _port(value.port, argname)
    return packed_addrport(value, argname)
