"""Prometheus: expose a :class:`~connstats.metrics.Totals` to scrapes.

``register(totals)`` adds a custom collector to a ``prometheus_client``
registry: the metric families are built from ``totals.snapshot()`` when
Prometheus scrapes, so nothing runs on the packet path or per window.
Needs ``prometheus_client`` (``pip install connstats[prometheus]``).

Metrics (series labels as chosen in ``Totals(labels=...)``)::

    connstats_tx_packets_total{traffic, proto, src, dst}
    connstats_tx_bytes_total{...}
    connstats_rx_packets_total{...}
    connstats_rx_bytes_total{...}
    connstats_windows_total           windows folded into the totals
    connstats_dropped_windows_total   windows lost before dump (see Statistics)
    connstats_dropped_packets_total
    connstats_dropped_bytes_total
    connstats_dump_errors_total
    connstats_connections             gauge: connections in the last window
    connstats_series                  gauge: series with counters of their own
"""

from __future__ import annotations

from typing import Iterator, Optional

from prometheus_client.core import (
    REGISTRY,
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)

from ..metrics import Totals

# (name without _total, help, index into Counts)
_SERIES = (
    ("connstats_tx_packets", "Packets sent, per series.", 0),
    ("connstats_tx_bytes", "Bytes sent, per series.", 1),
    ("connstats_rx_packets", "Packets received, per series.", 2),
    ("connstats_rx_bytes", "Bytes received, per series.", 3),
)
# (name, help, Health field); counters, then gauges.
_HEALTH_COUNTERS = (
    ("connstats_windows", "Windows folded into the totals.", "windows"),
    (
        "connstats_dropped_windows",
        "Windows lost before they reached dump (dump or the consumer fell behind).",
        "dropped_windows",
    ),
    ("connstats_dropped_packets", "Packets in the windows lost.", "dropped_packets"),
    ("connstats_dropped_bytes", "Bytes in the windows lost.", "dropped_bytes"),
    (
        "connstats_dump_errors",
        "Failed hand-overs: dump raised, or a window could not be built.",
        "dump_errors",
    ),
)
_CONNECTIONS = ("connstats_connections", "Connections in the last window.")
_SERIES_GAUGE = (
    "connstats_series",
    "Series with counters of their own (the rest go to the series labelled other).",
)


class TotalsCollector:
    """A ``prometheus_client`` collector reading one :class:`Totals`."""

    def __init__(self, totals: Totals) -> None:
        self.totals = totals

    def describe(self) -> Iterator[Metric]:
        # Registration checks names against describe() instead of running a
        # collection.
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        snapshot = self.totals.snapshot()
        health = self.totals.health()
        families = self._families()
        for (_, _, index), family in zip(_SERIES, families[:4], strict=True):
            assert isinstance(family, CounterMetricFamily)
            for key, counts in snapshot.items():
                family.add_metric(list(key), counts[index])
        for (_, _, field), family in zip(_HEALTH_COUNTERS, families[4:9], strict=True):
            assert isinstance(family, CounterMetricFamily)
            family.add_metric([], getattr(health, field))
        connections, series = families[9:]
        assert isinstance(connections, GaugeMetricFamily)
        assert isinstance(series, GaugeMetricFamily)
        connections.add_metric([], health.connections)
        series.add_metric([], self.totals.series)
        yield from families

    def _families(self) -> list[Metric]:
        labels = list(self.totals.labels)
        families: list[Metric] = [
            CounterMetricFamily(name, text, labels=labels) for name, text, _ in _SERIES
        ]
        families.extend(
            CounterMetricFamily(name, text, labels=[])
            for name, text, _ in _HEALTH_COUNTERS
        )
        families.append(GaugeMetricFamily(*_CONNECTIONS, labels=[]))
        families.append(GaugeMetricFamily(*_SERIES_GAUGE, labels=[]))
        return families


def register(
    totals: Totals, registry: Optional[CollectorRegistry] = None
) -> TotalsCollector:
    """Expose ``totals`` through ``registry`` (default: prometheus_client's
    global ``REGISTRY``, which ``start_http_server`` serves).

    Returns the collector; ``registry.unregister(collector)`` removes it.
    """
    if not isinstance(totals, Totals):
        raise TypeError(
            f"totals: expected a connstats.metrics.Totals, got {type(totals).__name__}"
        )
    if registry is None:
        registry = REGISTRY
    elif not isinstance(registry, CollectorRegistry):
        raise TypeError(
            "registry: expected a prometheus_client CollectorRegistry or None, "
            f"got {type(registry).__name__}"
        )
    collector = TotalsCollector(totals)
    registry.register(collector)
    return collector


__all__ = ["TotalsCollector", "register"]
