"""Replay captures into windows that follow the capture's own clock.

The library's :class:`connstats.Statistics` cuts windows on wall time, which
is right for live traffic but meaningless for a file read in a fraction of a
second.  :class:`Replayer` drives a core directly instead and cuts on packet
time:

* A window starts at the capture time of its first packet.
* ``max_period``: the window holds the packets before ``start + max_period``
  and ends at that instant (when the library's timer would have fired); the
  next window starts at the next packet, so idle gaps produce no empty windows.
* ``max_conns``: as in the library, the window ends when a packet of a new
  connection would make it hold more than ``max_conns`` connections; that
  packet opens the next window and its capture time is the end of the old one
  and the start of the new one.  To know that time exactly, the replayer feeds
  at most ``max_conns - connections`` packets per call (none of which can
  overflow the window) and single packets once the window is full, so this
  mode is slower than the default one when windows stay full.
* The last window ends at the capture time of the last packet.

With ``track_times=True`` every connection also gets the capture time of
its first and last packet (the windows' values are TimedCounts), exact to
the capture's own resolution.

Packets whose time goes backwards (merged captures, files given out of date
order) stay in the open window, which then starts at its earliest packet and
ends no earlier than its latest (docs/contract.md §6).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._impl import materialize
from ._consts import INT64_MAX
from .reader import CaptureReader, Stop


class Window:
    """One window of counts; times are nanoseconds since the Unix epoch (UTC).

    ``virtual`` and ``physical`` are ``dict[Connection, Counts]``.  A window
    the replayer cut also keeps the core's own ``table`` (a cut window of
    the compiled core) and builds the dicts only when they are first asked
    for: ``connstats read`` totals, ranks and prints a table from the core's
    arrays (``table.totals()``, ``table.sorted_items()``), so the objects of
    connections it does not print are never made.
    """

    __slots__ = ("_physical", "_virtual", "end_ns", "start_ns", "table")

    def __init__(
        self,
        start_ns: int,
        end_ns: int,
        virtual: dict[Any, Any] | None = None,
        physical: dict[Any, Any] | None = None,
        *,
        table: Any = None,
    ) -> None:
        if table is None and (virtual is None or physical is None):
            raise TypeError("Window needs its virtual and physical dicts, or a table")
        self.start_ns = start_ns
        self.end_ns = end_ns
        self._virtual = virtual
        self._physical = physical
        self.table = table

    def _materialize(self) -> None:
        self._virtual, self._physical = materialize(self.table)

    @property
    def virtual(self) -> dict[Any, Any]:
        if self._virtual is None:
            self._materialize()
        assert self._virtual is not None
        return self._virtual

    @property
    def physical(self) -> dict[Any, Any]:
        if self._physical is None:
            self._materialize()
        assert self._physical is not None
        return self._physical

    def __repr__(self) -> str:
        return f"Window(start_ns={self.start_ns}, end_ns={self.end_ns})"


def _default_core_module() -> Any:
    from .._impl import core

    return core


def _feed_tunneled(core: Any, data: memoryview, t: Any, timed: bool) -> None:
    """Count the decapsulated packets of a batch: inner ones virtual, outer
    physical (with their capture times when the core keeps them)."""
    for direction in ("tx", "rx"):
        offsets = getattr(t, f"v{direction}_offsets")
        if len(offsets):
            lengths = getattr(t, f"v{direction}_lengths")
            vnis = getattr(t, f"v{direction}_vnis")
            if timed:
                getattr(core, f"update_{direction}_virtual_buffer_at")(
                    data, offsets, lengths, getattr(t, f"v{direction}_times"), vnis
                )
            else:
                getattr(core, f"update_{direction}_virtual_buffer")(
                    data, offsets, lengths, vnis
                )
        offsets = getattr(t, f"p{direction}_offsets")
        if len(offsets):
            getattr(core, f"update_{direction}_physical_buffer")(
                data,
                offsets,
                getattr(t, f"p{direction}_lengths"),
                getattr(t, f"p{direction}_vnis"),
                getattr(t, f"p{direction}_times") if timed else None,
            )


class Replayer:
    """Feed one or more captures, in order, into a core; emit windows as they close."""

    def __init__(
        self,
        on_window: Callable[[Window], None],
        *,
        max_period_ns: int = 0,
        max_conns: int = 0,
        core_module: Any = None,
        track_times: bool = False,
    ) -> None:
        if max_period_ns < 0:
            raise ValueError("max_period_ns must be >= 0")
        if max_conns < 0:
            raise ValueError("max_conns must be >= 0")
        module = core_module if core_module is not None else _default_core_module()
        self._core = module.Core(max_conns=max_conns, track_times=track_times)
        self._track_times = track_times
        self._on_window = on_window
        self._period = max_period_ns
        self._max_conns = max_conns
        self._open_start: int | None = None  # start of the open window
        self._last_ns: int | None = None  # time of the last packet fed
        # Earliest and latest packet times of the open window.
        self._min_ns: int | None = None
        self._max_ns: int | None = None
        #: IP packets fed to the core so far.
        self.packets = 0
        #: Windows emitted so far.
        self.windows = 0

    def feed(
        self, reader: CaptureReader, progress: Callable[[], None] | None = None
    ) -> None:
        """Count every packet of ``reader``.

        Raises the reader's :class:`~connstats.capture.CaptureError` after
        counting everything before the bad record; the open window is kept,
        so :meth:`finish` still reports it.
        """
        core = self._core
        period = self._period
        max_conns = self._max_conns
        while True:
            stop: int | None = None
            limit = 0
            if period:
                if self._open_start is None:
                    limit = 1  # learn the window's start before reading on
                elif self._open_start + period < INT64_MAX:
                    stop = self._open_start + period
                # else: packet times saturate at INT64_MAX, so no packet can
                # be later than this window's end: it runs to the end.
            if max_conns:
                room = max_conns - core.connections
                if getattr(reader, "decap", 0):
                    room //= 2  # a tunnel packet may open two: virtual and physical
                room = max(1, room)
                limit = room if limit == 0 else min(limit, room)
            batch = reader.read(stop, limit)
            if batch.packets:
                if self._open_start is None:
                    self._open_start = batch.first_ns
                if self._track_times:
                    if len(batch.tx_offsets):
                        core.update_tx_virtual_buffer_at(
                            batch.data,
                            batch.tx_offsets,
                            batch.tx_lengths,
                            batch.tx_times,
                        )
                    if len(batch.rx_offsets):
                        core.update_rx_virtual_buffer_at(
                            batch.data,
                            batch.rx_offsets,
                            batch.rx_lengths,
                            batch.rx_times,
                        )
                else:
                    if len(batch.tx_offsets):
                        core.update_tx_virtual_buffer(
                            batch.data, batch.tx_offsets, batch.tx_lengths
                        )
                    if len(batch.rx_offsets):
                        core.update_rx_virtual_buffer(
                            batch.data, batch.rx_offsets, batch.rx_lengths
                        )
                if batch.tunneled is not None:
                    _feed_tunneled(core, batch.data, batch.tunneled, self._track_times)
                self.packets += batch.packets
                self._last_ns = batch.last_ns
                if max_conns:
                    # Only a single-packet feed can overflow (see the module
                    # doc), so that packet opened the new window.  A tunnel
                    # packet opens two connections: with max_conns 1 each
                    # of them can cut one.
                    while (full := core.pop_pending()) is not None:
                        self._emit(full, self._open_start, batch.first_ns)
                        self._open_start = batch.first_ns
                self._note(batch.min_ns, batch.max_ns)
            if progress is not None:
                progress()
            if batch.stop is Stop.TIME:
                assert stop is not None
                window = core.cut()
                if window is not None:
                    self._emit(window, self._open_start, stop)
                self._open_start = batch.next_ns
            elif batch.stop is Stop.EOF:
                return

    def finish(self) -> None:
        """Emit the open window (ending at the last packet's time), if any."""
        while (full := self._core.pop_pending()) is not None:  # defensive
            self._emit(full, self._open_start, self._last_ns)
        window = self._core.cut()
        if window is not None:
            self._emit(window, self._open_start, self._last_ns)
        self._open_start = None

    def _note(self, min_ns: int, max_ns: int) -> None:
        if self._min_ns is None or min_ns < self._min_ns:
            self._min_ns = min_ns
        if self._max_ns is None or max_ns > self._max_ns:
            self._max_ns = max_ns

    def _emit(self, window: Any, start: int | None, end: int | None) -> None:
        start_ns = start if start is not None else 0
        end_ns = end if end is not None else start_ns
        # A window spans every packet it holds, whatever order they came in.
        if self._min_ns is not None and self._min_ns < start_ns:
            start_ns = self._min_ns
        if self._max_ns is not None and self._max_ns > end_ns:
            end_ns = self._max_ns
        self._min_ns = self._max_ns = None
        self.windows += 1
        self._on_window(Window(start_ns, max(end_ns, start_ns), table=window))
