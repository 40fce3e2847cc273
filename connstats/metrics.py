"""Cumulative counters for dashboards: :class:`Totals`.

A :class:`Totals` is a ``dump`` callback that folds every window into
running totals per *series* (by default one per traffic kind, protocol and
address pair, ports left out, so that the number of series stays small) and
keeps the health of the instances that feed it.  Sinks read it when they are
scraped: :mod:`connstats.export.prometheus` and :mod:`connstats.export.otel`.
"""

from __future__ import annotations

import threading
import weakref
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address
from types import ModuleType
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple, Optional

from . import _impl
from ._protocols import protocol_name

if TYPE_CHECKING:
    from ._fastparse import Counts
    from ._statistics import Statistics

#: Every label a series can be keyed by, in the order of the default's.
LABELS: tuple[str, ...] = ("traffic", "proto", "src", "dst", "src_port", "dst_port")

#: The default labels: addresses without ports.
DEFAULT_LABELS: tuple[str, ...] = ("traffic", "proto", "src", "dst")

#: The value of every label of the overflow series.
OTHER = "other"

# Label value of a connection without an address (as str(AddrPort) says).
_NO_ADDRESS = "invalid"
_V6 = 1 << 128


class Health(NamedTuple):
    """The health of the instances feeding a :class:`Totals`, summed."""

    #: Windows folded into the totals.
    windows: int = 0
    #: Windows lost before they reached ``dump`` (see ``Statistics.dropped_windows``).
    dropped_windows: int = 0
    #: Packets in those windows.
    dropped_packets: int = 0
    #: Bytes in those windows.
    dropped_bytes: int = 0
    #: Failed hand-overs: ``dump`` raised, or a window could not be built.
    dump_errors: int = 0
    #: Connections (virtual + physical) in the last window folded.
    connections: int = 0


class Totals:
    """Cumulative tx/rx packet and byte counters per series, and the health.

    Pass it as ``Statistics(dump=totals)`` (it then also reports that
    instance's dropped windows and dump errors), or call it from your own
    dump with the same four arguments and :meth:`watch` the instance.

    ``labels`` choose what a series is keyed by, from :data:`LABELS`:
    ``traffic`` (``"virtual"`` or ``"physical"``), ``proto`` (``"tcp"``,
    ``"udp"``, ...; ``"ip"`` for protocol 0), ``src`` and ``dst`` (the
    addresses, ``"invalid"`` for none) and ``src_port``/``dst_port``.  The
    first ``max_series`` series seen get counters of their own; counts of any
    later series go to one overflow series whose every label is ``"other"``,
    so the sum over all series is always what was counted.  Counters wrap
    modulo 2**64 like every connstats counter.

    Thread-safe: windows may come from several instances, and
    :meth:`snapshot` may be called from any thread meanwhile.
    """

    #: The core module (compiled or pure Python); tests override it.
    _core_module: Optional[ModuleType] = None

    def __init__(
        self,
        max_series: int = 1000,
        labels: tuple[str, ...] = DEFAULT_LABELS,
    ) -> None:
        if isinstance(max_series, bool) or not isinstance(max_series, int):
            raise TypeError(
                f"max_series: expected an int, got {type(max_series).__name__}"
            )
        if max_series < 0:
            raise ValueError(f"max_series: must be >= 0, got {max_series}")
        if isinstance(labels, str):
            raise TypeError(
                f"labels: expected a sequence of label names, got the string {labels!r}"
            )
        try:
            labels = tuple(labels)
        except TypeError:
            raise TypeError(
                f"labels: expected a sequence of label names, got {type(labels).__name__}"
            ) from None
        for label in labels:
            if label not in LABELS:
                raise ValueError(
                    f"labels: unknown label {label!r} (choose from {', '.join(LABELS)})"
                )
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels: each label at most once, got {labels!r}")
        self._max_series = max_series
        self._labels = labels
        module = self._core_module or _impl.core
        self._counts_type = module.Counts
        self._table = module.SeriesTable(
            tuple(LABELS.index(label) for label in labels), max_series
        )
        self._lock = threading.Lock()
        self._windows = 0
        self._connections = 0
        # Label values of series keys seen so far (series are never removed,
        # so this holds at most max_series + 1 entries).
        self._names: dict[Optional[tuple[Any, ...]], tuple[str, ...]] = {
            None: (OTHER,) * len(labels)
        }
        # Watched instances: weak references (a Totals kept by a metrics
        # registry must not keep an instance, and its flush thread, alive)
        # and the health last read from each, which stays in the sums once
        # the instance is gone, so that no counter ever goes down.
        self._watched: dict[int, tuple[weakref.ref[Any], tuple[int, ...]]] = {}
        self._watch_keys = 0
        self._retired: tuple[int, ...] = (0, 0, 0, 0)

    @property
    def labels(self) -> tuple[str, ...]:
        """The label names of a series key, in order."""
        return self._labels

    @property
    def max_series(self) -> int:
        """Series with counters of their own; later ones go to ``"other"``."""
        return self._max_series

    @property
    def series(self) -> int:
        """Series with counters of their own so far (at most ``max_series``)."""
        with self._lock:
            return len(self._table)

    def __call__(
        self,
        start: datetime,
        end: datetime,
        virtual: Mapping[Any, Any],
        physical: Mapping[Any, Any],
    ) -> None:
        """Fold one window in (the signature of ``Statistics(dump=...)``)."""
        with self._lock:
            table = self._table
            for _ in table.fold_slices(virtual, "virtual"):
                pass
            for _ in table.fold_slices(physical, "physical"):
                pass
            self._windows += 1
            self._connections = len(virtual) + len(physical)
            # Read the instances' figures here too: the last window of an
            # instance about to be dropped is the last chance to.
            if self._watched:
                self._refresh_watched()

    def watch(self, statistics: Statistics) -> None:
        """Report the health (dropped windows, dump errors) of ``statistics`` too.

        ``Statistics(dump=totals)`` does this itself.  Several instances may
        be watched; their figures are summed.  Only a weak reference is kept.
        """
        for name in (
            "dropped_windows",
            "dropped_packets",
            "dropped_bytes",
            "dump_errors",
        ):
            if not hasattr(type(statistics), name):
                raise TypeError(
                    f"statistics: expected a connstats.Statistics, got {type(statistics).__name__}"
                )
        with self._lock:
            for ref, _ in self._watched.values():
                if ref() is statistics:
                    return
            self._watch_keys += 1
            self._watched[self._watch_keys] = (
                weakref.ref(statistics),
                _read(statistics),
            )

    # Statistics(dump=totals) calls this (see Statistics.__init__).
    _connstats_watch = watch

    def snapshot(self) -> dict[tuple[str, ...], Counts]:
        """``{series key: Counts}``: the totals so far.

        A key is the tuple of label values in the order of :attr:`labels`;
        the overflow series, once used, is ``("other", ...)``.
        """
        with self._lock:
            items = self._table.items()
        counts = self._counts_type
        names = self._names
        out: dict[tuple[str, ...], Counts] = {}
        for key, values in items:
            name = names.get(key)
            if name is None:
                name = names[key] = self._label_values(key)
            out[name] = counts(*values)
        return out

    def health(self) -> Health:
        """The :class:`Health` figures now."""
        with self._lock:
            windows_, packets, bytes_, errors = self._refresh_watched()
            return Health(
                self._windows, windows_, packets, bytes_, errors, self._connections
            )

    def __repr__(self) -> str:
        with self._lock:
            series, windows = len(self._table), self._windows
        return (
            f"<connstats.metrics.Totals labels={self._labels!r} "
            f"series={series}/{self._max_series} windows={windows}>"
        )

    def _refresh_watched(self) -> list[int]:
        # Reads every watched instance (under self._lock) and returns the
        # sums of their figures, those of instances already gone included.
        dropped = list(self._retired)
        for key, (ref, last) in list(self._watched.items()):
            statistics = ref()
            if statistics is None:
                # Gone: its last figures move to the retired sums.
                del self._watched[key]
                self._retired = tuple(
                    a + b for a, b in zip(self._retired, last, strict=True)
                )
            else:
                last = _read(statistics)
                self._watched[key] = (ref, last)
            for i, value in enumerate(last):
                dropped[i] += value
        return dropped

    def _label_values(self, key: tuple[Any, ...]) -> tuple[str, ...]:
        return tuple(
            _label_value(label, value)
            for label, value in zip(self._labels, key, strict=True)
        )


def _read(statistics: Any) -> tuple[int, ...]:
    return (
        statistics.dropped_windows,
        statistics.dropped_packets,
        statistics.dropped_bytes,
        statistics.dump_errors,
    )


def _label_value(label: str, value: Any) -> str:
    if label == "traffic":
        return str(value)
    if label == "proto":
        return protocol_name(value) if value else "ip"
    if label in ("src", "dst"):
        if value < 0:
            return _NO_ADDRESS
        if value >= _V6:
            return str(IPv6Address(value ^ _V6))
        return str(IPv4Address(value))
    return str(value)


__all__ = ["DEFAULT_LABELS", "LABELS", "OTHER", "Health", "Totals"]
