"""Statistics: the public object.  A thin owner of a core, a flush thread and shutdown."""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
import weakref
from datetime import timedelta
from types import ModuleType
from typing import TYPE_CHECKING, Any, Iterable, Optional

from . import _impl
from ._flusher import DumpCallback, Flusher
from ._impl import materialize

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._fastparse import Connection, Counts
    from ._typing import Buffer, IndexArray


def _period_seconds(value: Any) -> float:
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"max_period: expected seconds (int or float) or datetime.timedelta, "
            f"got {type(value).__name__}"
        )
    else:
        seconds = float(value)
    if math.isnan(seconds) or seconds < 0 or math.isinf(seconds):
        raise ValueError(f"max_period: must be a finite number >= 0, got {value!r}")
    return seconds


def _stop_flusher(flusher: Optional[Flusher], core: Any) -> None:
    # weakref.finalize callback: a Statistics dropped without shutdown()
    # must not leave its thread behind.
    core.close()
    if flusher is not None:
        flusher.stop()


# The per-packet methods bound on each instance (see _bind_hot_path).
_HOT_PATH = (
    "update_tx_virtual",
    "update_rx_virtual",
    "update_tx_physical",
    "update_rx_physical",
    "update_tx_virtual_batch",
    "update_rx_virtual_batch",
    "update_tx_virtual_buffer",
    "update_rx_virtual_buffer",
)


class Statistics:
    """Per-connection packet and byte counters for IP packets of a TUN device.

    ``Statistics()`` with no arguments is ready for use: counts accumulate
    until :meth:`extract`.  With ``dump``, windows are handed to
    ``dump(start, end, virtual, physical)`` from one background thread every
    ``max_period`` seconds and whenever a new connection would make the
    window hold more than ``max_conns`` connections.

    All methods are safe to call from any thread.
    """

    #: The core module (compiled or pure Python); tests override it.
    _core_module: Optional[ModuleType] = None

    def __init__(
        self,
        max_period: float | timedelta = 0,
        max_conns: int = 0,
        dump: Optional[DumpCallback] = None,
        *,
        ignore_destinations: Iterable[Any] = (),
    ) -> None:
        period = _period_seconds(max_period)
        if isinstance(max_conns, bool) or not isinstance(max_conns, int):
            raise TypeError(
                f"max_conns: expected an int, got {type(max_conns).__name__}"
            )
        if max_conns < 0:
            raise ValueError(f"max_conns: must be >= 0, got {max_conns}")
        if dump is not None and not callable(dump):
            raise TypeError(f"dump: expected a callable, got {type(dump).__name__}")
        if dump is None and (period or max_conns):
            raise ValueError(
                "dump: max_period and max_conns hand windows to dump(); "
                "pass a dump callback (or use extract() without them)"
            )
        if isinstance(ignore_destinations, (str, bytes, bytearray)):
            raise TypeError(
                "ignore_destinations: expected an iterable of addresses, "
                f"got a single {type(ignore_destinations).__name__}"
            )
        module = self._core_module or _impl.core
        core = module.Core(
            max_conns=max_conns, ignore_destinations=tuple(ignore_destinations)
        )
        self._core = core
        self._period = period
        self._max_conns = max_conns
        self._dump = dump
        self._shutdown_lock = threading.Lock()
        self._shut_down = False
        self._bind_hot_path()
        self._flusher = Flusher(core, dump, period) if dump is not None else None
        self._finalizer = weakref.finalize(self, _stop_flusher, self._flusher, core)
        _live_instances.add(self)

    def _bind_hot_path(self) -> None:
        # The per-packet methods are the core's bound C methods stored on the
        # instance, so a call costs what calling any builtin method costs: no
        # Python frame in between.  The class-level definitions below are
        # the documented signatures and serve unbound calls.
        core = self._core
        self.update_tx_virtual = core.update_tx_virtual  # type: ignore[method-assign]
        self.update_rx_virtual = core.update_rx_virtual  # type: ignore[method-assign]
        self.update_tx_physical = core.update_tx_physical  # type: ignore[method-assign]
        self.update_rx_physical = core.update_rx_physical  # type: ignore[method-assign]
        self.update_tx_virtual_batch = core.update_tx_virtual_batch  # type: ignore[method-assign]
        self.update_rx_virtual_batch = core.update_rx_virtual_batch  # type: ignore[method-assign]
        self.update_tx_virtual_buffer = core.update_tx_virtual_buffer  # type: ignore[method-assign]
        self.update_rx_virtual_buffer = core.update_rx_virtual_buffer  # type: ignore[method-assign]
        # Free-threaded CPython 3.14+: threads sharing this instance share
        # these objects; deferred reference counting keeps each call from
        # writing their reference count (a no-op elsewhere).
        defer = getattr(self._core_module or _impl.core, "defer_refcount", None)
        if defer is not None:
            for name in _HOT_PATH:
                defer(self.__dict__[name])

    # -- counting ------------------------------------------------------------

    def update_tx_virtual(self, packet: Buffer) -> None:
        """Count one transmitted IP packet (any C-contiguous bytes-like object)."""
        self._core.update_tx_virtual(packet)

    def update_rx_virtual(self, packet: Buffer) -> None:
        """Count one received IP packet; its src and dst are swapped."""
        self._core.update_rx_virtual(packet)

    def update_tx_physical(self, src: Any, dst: Any, n: int) -> None:
        """Count one transmitted WireGuard packet of ``n`` bytes to physical peer ``dst``."""
        self._core.update_tx_physical(src, dst, n)

    def update_rx_physical(self, src: Any, dst: Any, n: int) -> None:
        """Count one received WireGuard packet of ``n`` bytes from physical peer ``dst``."""
        self._core.update_rx_physical(src, dst, n)

    def update_tx_virtual_batch(self, packets: Sequence[Buffer]) -> None:
        """Count a sequence of transmitted packets (GIL released while counting)."""
        self._core.update_tx_virtual_batch(packets)

    def update_rx_virtual_batch(self, packets: Sequence[Buffer]) -> None:
        """Count a sequence of received packets (GIL released while counting)."""
        self._core.update_rx_virtual_batch(packets)

    def update_tx_virtual_buffer(
        self, buffer: Buffer, offsets: IndexArray, lengths: IndexArray
    ) -> None:
        """Count transmitted packets ``buffer[offsets[i]:offsets[i] + lengths[i]]``."""
        self._core.update_tx_virtual_buffer(buffer, offsets, lengths)

    def update_rx_virtual_buffer(
        self, buffer: Buffer, offsets: IndexArray, lengths: IndexArray
    ) -> None:
        """Count received packets ``buffer[offsets[i]:offsets[i] + lengths[i]]``."""
        self._core.update_rx_virtual_buffer(buffer, offsets, lengths)

    # -- windows ---------------------------------------------------------------

    def extract(self) -> tuple[dict[Connection, Counts], dict[Connection, Counts]]:
        """Synchronously take the open window's counts and reset them.

        Returns ``(virtual, physical)``, each ``dict[Connection, Counts]``.
        Windows already cut for ``dump`` are not included.
        """
        window = self._core.cut()
        if window is None:
            return {}, {}
        return materialize(window)

    def test_extract(self) -> tuple[dict[Connection, Counts], dict[Connection, Counts]]:
        """Alias of :meth:`extract`, kept for parity with the Go package."""
        return self.extract()

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Stop counting, hand the final window to ``dump`` and stop the thread.

        Idempotent and safe from any thread, including from inside ``dump``
        (which cannot wait for itself: the final window is then delivered
        right after ``dump`` returns).  Returns True when the final flush has
        completed, False if ``timeout`` seconds passed first.  Updates after
        shutdown are dropped silently.
        """
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise TypeError(
                    f"timeout: expected seconds or None, got {type(timeout).__name__}"
                )
            if math.isnan(timeout) or timeout < 0:
                raise ValueError(f"timeout: must be >= 0, got {timeout!r}")
        with self._shutdown_lock:
            first = not self._shut_down
            self._shut_down = True
        if first:
            self._core.close()
            if self._flusher is not None:
                self._flusher.stop()
        flusher = self._flusher
        if flusher is None:
            return True
        if threading.current_thread() is flusher.thread:
            return flusher.finished.is_set()
        if not flusher.finished.wait(timeout):
            return False
        flusher.thread.join(timeout)
        return True

    def __enter__(self) -> Statistics:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.shutdown()

    # -- introspection ---------------------------------------------------------

    @property
    def is_shutdown(self) -> bool:
        """True once shutdown() has been called."""
        return self._shut_down

    @property
    def connections(self) -> int:
        """Connections (virtual + physical) in the open window."""
        return int(self._core.connections)

    @property
    def dropped_windows(self) -> int:
        """Windows lost because ``dump`` fell behind (see the README's Guarantees)."""
        return int(self._core.dropped_windows)

    @property
    def dropped_packets(self) -> int:
        """Packets counted in windows that were lost (see ``dropped_windows``)."""
        return int(self._core.dropped_packets)

    @property
    def dropped_bytes(self) -> int:
        """Bytes counted in windows that were lost (see ``dropped_windows``)."""
        return int(self._core.dropped_bytes)

    @property
    def dump_errors(self) -> int:
        """How many times ``dump`` raised (each is logged on logger "connstats")."""
        return self._flusher.dump_errors if self._flusher is not None else 0

    def __repr__(self) -> str:
        state = "shut down" if self._shut_down else "running"
        return (
            f"<connstats.Statistics max_period={self._period:g}s max_conns={self._max_conns} "
            f"connections={self.connections} {state}>"
        )

    def _after_fork_in_child(self) -> None:
        # Locks and threads of the parent do not survive fork(); the child
        # starts from an empty table and, if needed, its own flush thread.
        self._shutdown_lock = threading.Lock()
        self._core._after_fork_in_child()
        if self._flusher is not None and self._shut_down:
            # The parent's flush thread (maybe still delivering) does not
            # exist here, and the child's table is empty: nothing is left to
            # flush, so shutdown() must not wait for that thread.  A fresh
            # Event: the inherited one's lock may be held by a parent thread.
            self._flusher.finished = threading.Event()
            self._flusher.finished.set()
        elif self._flusher is not None:
            self._flusher = Flusher(self._core, self._flusher._dump, self._period)
            self._finalizer.detach()
            self._finalizer = weakref.finalize(
                self, _stop_flusher, self._flusher, self._core
            )


_live_instances: "weakref.WeakSet[Statistics]" = weakref.WeakSet()


def _reset_after_fork() -> None:
    for stats in list(_live_instances):
        stats._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)

#: Seconds that interpreter exit may spend delivering the final windows of
#: instances nobody shut down (all instances together).
EXIT_FLUSH_BUDGET = 1.0


def _shutdown_at_exit() -> None:
    # Runs after non-daemon threads are joined and before daemon threads
    # (the flush threads) are stopped: deliver what is left, within a budget,
    # so that a blocked dump cannot hold up exit.
    deadline = time.monotonic() + EXIT_FLUSH_BUDGET
    for stats in list(_live_instances):
        try:
            stats.shutdown(timeout=max(0.0, deadline - time.monotonic()))
        except Exception:  # pragma: no cover - exit must go on
            logging.getLogger("connstats").exception(
                "connstats: shutdown at exit failed"
            )


atexit.register(_shutdown_at_exit)
