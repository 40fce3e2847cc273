"""Type stubs for the compiled IPFIX record packer (src/_ipfix_encode.pyx)."""

from collections.abc import Mapping
from typing import Any

def pack_records(
    table: Mapping[Any, Any], start_ms: int, end_ms: int, timed: bool = False
) -> tuple[bytes, int, bytes, int, list[Any]]: ...
