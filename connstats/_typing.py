"""Type aliases of the public API, for type checkers only.

Packets are buffers: anything that exports the buffer protocol (bytes,
bytearray, memoryview, array, numpy arrays).  ``collections.abc.Buffer``
exists from Python 3.12 on; before that type checkers take the same protocol
from ``typing_extensions``, which they always have (it ships in typeshed), so
connstats needs no runtime dependency (the package imports this module
under ``TYPE_CHECKING`` only).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Union

if sys.version_info >= (3, 12):
    from collections.abc import Buffer
elif TYPE_CHECKING:
    from typing_extensions import Buffer
else:  # importable at run time all the same, without typing_extensions
    Buffer = object

#: Offsets or lengths into a buffer: an integer buffer (array('I'), numpy) or ints.
IndexArray = Union[Buffer, Sequence[int]]

__all__ = ["Buffer", "IndexArray"]
