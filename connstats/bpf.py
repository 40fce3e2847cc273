"""Deprecated alias of :mod:`connstats.capture.bpf` (moved there in 0.2.0).

Importing it warns; it will be removed in the release after 0.2.0.
"""

from __future__ import annotations

import warnings
from typing import Any

from .capture import bpf as _moved

warnings.warn(
    "connstats.bpf moved to connstats.capture.bpf; the old name will be removed "
    "in the release after 0.2.0",
    DeprecationWarning,
    stacklevel=2,
)


def __getattr__(name: str) -> Any:
    return getattr(_moved, name)
