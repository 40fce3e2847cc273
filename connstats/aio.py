"""asyncio: :class:`AsyncStatistics`, whose windows come to an event loop.

``Statistics(dump=...)`` calls ``dump`` from its flush thread, where an
``async def`` callback would never run.  An :class:`AsyncStatistics` counts
exactly as a :class:`~connstats.Statistics` does (it is one), but its flush
thread puts each window into a bounded queue and wakes the loop
(``call_soon_threadsafe``); ``async for window in stats.windows()`` takes
them out.  When the loop falls behind and the queue is full, the oldest
window waiting is dropped and counted in ``dropped_windows``; the packet path
never waits for the loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterable, NamedTuple, Optional

from ._flusher import DROP_WARNING_INTERVAL
from ._statistics import Statistics

if TYPE_CHECKING:
    from ._fastparse import Connection, Counts

logger = logging.getLogger("connstats")

_U64 = (1 << 64) - 1

#: Windows that may wait for the loop before the oldest is dropped.
DEFAULT_MAX_WINDOWS = 64


class Window(NamedTuple):
    """One window: its UTC ``start`` and ``end`` and its two tables."""

    start: datetime
    end: datetime
    virtual: dict[Connection, Counts]
    physical: dict[Connection, Counts]


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Inbox:
    """The bounded queue between the flush thread and the event loop.

    It is the instance's ``dump`` and holds no reference to the instance, so
    that an AsyncStatistics nobody uses any more is still collected (and its
    flush thread stopped) as a Statistics is.
    """

    def __init__(self, max_windows: int) -> None:
        self._max = max_windows
        self._lock = threading.Lock()
        self._windows: deque[Window] = deque()
        self._waiters: list[asyncio.Future[None]] = []
        self._closed = False
        #: (windows, packets, bytes) dropped because the queue was full.
        self.dropped: tuple[int, int, int] = (0, 0, 0)
        self._last_warning = -float("inf")

    # -- the flush thread --------------------------------------------------------

    def __call__(
        self,
        start: datetime,
        end: datetime,
        virtual: dict[Any, Any],
        physical: dict[Any, Any],
    ) -> None:
        window = Window(start, end, virtual, physical)
        with self._lock:
            old = self._windows.popleft() if len(self._windows) >= self._max else None
            self._windows.append(window)
            waiters, self._waiters = self._waiters, []
        self._wake(waiters)
        if old is not None:
            self._drop(old)

    def _drop(self, window: Window) -> None:
        packets = bytes_ = 0
        for table in (window.virtual, window.physical):
            for counts in table.values():
                packets += counts.tx_packets + counts.rx_packets
                bytes_ += counts.tx_bytes + counts.rx_bytes
        with self._lock:
            windows, packets_before, bytes_before = self.dropped
            self.dropped = (
                windows + 1,
                (packets_before + packets) & _U64,
                (bytes_before + bytes_) & _U64,
            )
        now = time.monotonic()
        if now - self._last_warning >= DROP_WARNING_INTERVAL:
            self._last_warning = now
            logger.warning(
                "connstats: the event loop fell behind; dropped %d window(s) so far "
                "(%d packets, %d bytes) from the queue of %d",
                self.dropped[0],
                self.dropped[1],
                self.dropped[2],
                self._max,
            )

    @staticmethod
    def _wake(waiters: list[asyncio.Future[None]]) -> None:
        for future in waiters:
            try:
                future.get_loop().call_soon_threadsafe(_wake, future)
            except RuntimeError:
                pass  # that loop is closed: nobody is waiting any more

    def close(self) -> None:
        """No more windows will come: waiters end once the queue is empty."""
        with self._lock:
            self._closed = True
            waiters, self._waiters = self._waiters, []
        self._wake(waiters)

    # -- the event loop ------------------------------------------------------------

    async def get(self) -> Optional[Window]:
        """The next window; None once closed and empty."""
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if self._windows:
                    return self._windows.popleft()
                if self._closed:
                    return None
                future: asyncio.Future[None] = loop.create_future()
                self._waiters.append(future)
            try:
                await future
            finally:
                with self._lock:
                    if future in self._waiters:
                        self._waiters.remove(future)

    def __len__(self) -> int:
        return len(self._windows)


class AsyncStatistics(Statistics):
    """A :class:`~connstats.Statistics` whose windows go to an event loop.

    Same arguments (less ``dump``) and the same counting methods, which stay
    synchronous and cheap: call them from the loop or from any thread.
    Windows cut every ``max_period`` seconds or at ``max_conns`` connections
    wait in a queue of at most ``max_windows``; when it is full the oldest
    is dropped and counted in ``dropped_windows``/``dropped_packets``/
    ``dropped_bytes`` (and logged).

    ::

        async with AsyncStatistics(max_period=10) as stats:
            ...  # count packets
            async for window in stats.windows():
                ...

    Leaving the ``async with`` block (or :meth:`aclose`) cuts the final
    window and puts it in the queue; :meth:`windows` ends once every window
    has been taken.
    """

    def __init__(
        self,
        max_period: float | timedelta = 0,
        max_conns: int = 0,
        *,
        ignore_destinations: Iterable[Any] = (),
        max_windows: int = DEFAULT_MAX_WINDOWS,
    ) -> None:
        if isinstance(max_windows, bool) or not isinstance(max_windows, int):
            raise TypeError(
                f"max_windows: expected an int, got {type(max_windows).__name__}"
            )
        if max_windows < 1:
            raise ValueError(f"max_windows: must be >= 1, got {max_windows}")
        inbox = _Inbox(max_windows)
        self._inbox = inbox
        super().__init__(
            max_period, max_conns, inbox, ignore_destinations=ignore_destinations
        )

    async def windows(self) -> AsyncIterator[Window]:
        """Windows in the order they were cut; ends after the final one."""
        inbox = self._inbox
        while True:
            window = await inbox.get()
            if window is None:
                return
            yield window

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """As :meth:`Statistics.shutdown`; this blocks: from a coroutine
        ``await stats.aclose()`` instead."""
        done = super().shutdown(timeout)
        if done:
            self._inbox.close()
        return done

    async def aclose(self, timeout: Optional[float] = None) -> bool:
        """Stop counting and queue the final window, without blocking the loop.

        Returns True once the final window is queued (then :meth:`windows`
        ends after it), False if ``timeout`` seconds passed first.
        """
        return await asyncio.to_thread(self.shutdown, timeout)

    async def __aenter__(self) -> AsyncStatistics:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    @property
    def queued_windows(self) -> int:
        """Windows waiting for :meth:`windows`."""
        return len(self._inbox)

    @property
    def dropped_windows(self) -> int:
        """Windows lost: ``dump`` fell behind in the core (as for Statistics)
        or the queue to the event loop was full."""
        return super().dropped_windows + self._inbox.dropped[0]

    @property
    def dropped_packets(self) -> int:
        """Packets counted in windows that were lost (see ``dropped_windows``)."""
        return (super().dropped_packets + self._inbox.dropped[1]) & _U64

    @property
    def dropped_bytes(self) -> int:
        """Bytes counted in windows that were lost (see ``dropped_windows``)."""
        return (super().dropped_bytes + self._inbox.dropped[2]) & _U64

    def __repr__(self) -> str:
        state = "shut down" if self.is_shutdown else "running"
        return (
            f"<connstats.aio.AsyncStatistics max_period={self._period:g}s "
            f"max_conns={self._max_conns} connections={self.connections} "
            f"queued={self.queued_windows} {state}>"
        )


__all__ = ["DEFAULT_MAX_WINDOWS", "AsyncStatistics", "Window"]
