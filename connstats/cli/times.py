"""First and last seen per connection for ``connstats read --times``.

The counting core keeps no times (the reference keeps none either, and a
timestamp per update would cost the packet path).  ``read`` derives them
from the capture clock instead: the replayer cuts windows every
``resolution`` of capture time, and :class:`TimedWindows` merges those short
windows back into the windows the user asked for, noting for each connection
the first short window it appears in and the last.  So:

* first seen is the start of the first short window holding the connection
  (the time of that window's first packet): at most ``resolution`` before
  the connection's real first packet, never after it;
* last seen is the end of the last short window holding it: at most
  ``resolution`` after its real last packet, never before it;
* durations and rates (packets/s, bits/s over last - first) carry the same
  bound; a connection seen within one short window of a one-packet capture
  has duration 0 and no rate.

With ``--max-period P`` a user window is the run of short windows that start
before ``window start + P``, so window boundaries fall on short-window
boundaries (``resolution`` is lowered to ``P`` when larger).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._types import Counts
from ..capture.windows import Window

DEFAULT_RESOLUTION_NS = 1_000_000_000

Times = dict[Any, list[int]]


class TimedWindows:
    """Collect short windows; hand out user windows with per-connection times."""

    def __init__(
        self, on_window: Callable[[Window, Times], None], period_ns: int = 0
    ) -> None:
        self._on_window = on_window
        self._period = period_ns
        self._start: int | None = None
        self._end = 0
        self._acc: dict[Any, list[int]] = {}

    def sub_window(self, w: Window) -> None:
        if (
            self._start is not None
            and self._period
            and w.start_ns >= self._start + self._period
        ):
            self.flush()
        if self._start is None:
            self._start = w.start_ns
        self._end = max(self._end, w.end_ns)
        acc = self._acc
        start, end = w.start_ns, w.end_ns
        for conn, (tp, tb, rp, rb) in w.virtual.items():
            entry = acc.get(conn)
            if entry is None:
                acc[conn] = [tp, tb, rp, rb, start, end]
            else:
                entry[0] += tp
                entry[1] += tb
                entry[2] += rp
                entry[3] += rb
                if start < entry[4]:
                    entry[4] = start
                if end > entry[5]:
                    entry[5] = end

    def flush(self) -> None:
        if self._start is None:
            return
        mask = (1 << 64) - 1
        table = {
            conn: Counts(e[0] & mask, e[1] & mask, e[2] & mask, e[3] & mask)
            for conn, e in self._acc.items()
        }
        times = {conn: [e[4], e[5]] for conn, e in self._acc.items()}
        window = Window(self._start, max(self._end, self._start), table, {})
        self._start = None
        self._end = 0
        self._acc = {}
        self._on_window(window, times)
