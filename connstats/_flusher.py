"""The flush thread: the one thread that calls ``dump``.

It sleeps in the core's ``wait()`` (a C wait with the GIL released) and is
woken by the core when a window opens, when a window is cut because of
``max_conns``, or by ``shutdown``.  While no window is open and nothing is
pending it does not wake at all.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

from ._impl import materialize

logger = logging.getLogger("connstats")

# (start, end, virtual, physical); the tables map Connection to Counts.
#: Seconds between two "dropped windows" warnings.
DROP_WARNING_INTERVAL = 10.0

DumpCallback = Callable[[datetime, datetime, dict[Any, Any], dict[Any, Any]], Any]


class Flusher:
    """Owns the flush thread of one Statistics instance."""

    def __init__(self, core: Any, dump: DumpCallback, period: float) -> None:
        self._core = core
        self._dump = dump
        self._period = period
        self._stopping = False
        self.finished = threading.Event()
        self.dump_errors = 0
        self.windows_delivered = 0
        self._reported_drops = 0
        self._last_drop_warning = 0.0
        self.thread = threading.Thread(
            target=self._run, name="connstats-flush", daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        """Ask the thread to deliver what is left and exit."""
        self._stopping = True
        self._core.notify()

    def _run(self) -> None:
        core = self._core
        try:
            while not self._stopping:
                self._deliver_pending()
                if self._stopping:
                    break
                info = core.window_info() if self._period else None
                if info is None:
                    core.wait(None)
                    continue
                generation, start = info
                # Clamped so that a wall clock stepped backwards cannot
                # postpone a flush by more than one period.
                remaining = min(start + self._period - time.time(), self._period)
                if remaining > 0:
                    core.wait(remaining)
                    continue
                window = core.cut(generation)
                if window is not None:
                    self._deliver(window)
            # Shutdown: the core is closed, so nothing new can arrive.
            self._deliver_pending()
            window = core.cut()
            if window is not None:
                self._deliver(window)
            self._report_drops(final=True)
        except BaseException:  # pragma: no cover - a bug in connstats itself
            logger.exception("connstats: flush thread failed")
        finally:
            self.finished.set()

    def _deliver_pending(self) -> None:
        while True:
            window = self._core.pop_pending()
            if window is None:
                break
            self._deliver(window)
        self._report_drops()

    def _report_drops(self, final: bool = False) -> None:
        # At most one warning per DROP_WARNING_INTERVAL under sustained
        # overload, and a last one when the thread ends.
        dropped = self._core.dropped_windows
        now = time.monotonic()
        if dropped != self._reported_drops and (
            final or now - self._last_drop_warning >= DROP_WARNING_INTERVAL
        ):
            self._last_drop_warning = now
            logger.warning(
                "connstats: dropped %d window(s) so far (%d packets, %d bytes): "
                "dump is slower than max_conns cuts windows",
                dropped,
                self._core.dropped_packets,
                self._core.dropped_bytes,
            )
            self._reported_drops = dropped

    def _deliver(self, window: Any) -> None:
        virtual, physical = materialize(window)
        if not virtual and not physical:
            return
        start = datetime.fromtimestamp(window.start, timezone.utc)
        end = datetime.fromtimestamp(window.end, timezone.utc)
        try:
            self._dump(start, end, virtual, physical)
        except Exception:
            self.dump_errors += 1
            logger.exception(
                "connstats: dump callback raised; later windows are still delivered"
            )
        self.windows_delivered += 1
