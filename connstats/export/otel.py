"""OpenTelemetry: observe a :class:`~connstats.metrics.Totals` through a meter.

``register(totals, meter)`` creates observable instruments whose callbacks
read ``totals`` when the SDK collects (by its reader's schedule), so nothing
runs on the packet path or per window.  Uses ``opentelemetry-api`` only
(``pip install connstats[otel]``); the application picks the SDK, reader and
exporter.

Instruments (series labels as attributes)::

    connstats.tx.packets   counter   {packet}
    connstats.tx.bytes     counter   By
    connstats.rx.packets   counter   {packet}
    connstats.rx.bytes     counter   By
    connstats.windows            counter  windows folded into the totals
    connstats.dropped.windows    counter  windows lost before dump
    connstats.dropped.packets    counter
    connstats.dropped.bytes      counter
    connstats.dump.errors        counter
    connstats.connections        gauge    connections in the last window
    connstats.series             gauge    series with counters of their own
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from ..metrics import Totals

# (name, unit, description, index into Counts)
_SERIES = (
    ("connstats.tx.packets", "{packet}", "Packets sent, per series.", 0),
    ("connstats.tx.bytes", "By", "Bytes sent, per series.", 1),
    ("connstats.rx.packets", "{packet}", "Packets received, per series.", 2),
    ("connstats.rx.bytes", "By", "Bytes received, per series.", 3),
)
# (name, unit, description, Health field)
_HEALTH_COUNTERS = (
    ("connstats.windows", "{window}", "Windows folded into the totals.", "windows"),
    (
        "connstats.dropped.windows",
        "{window}",
        "Windows lost before they reached dump (dump or the consumer fell behind).",
        "dropped_windows",
    ),
    (
        "connstats.dropped.packets",
        "{packet}",
        "Packets in the windows lost.",
        "dropped_packets",
    ),
    ("connstats.dropped.bytes", "By", "Bytes in the windows lost.", "dropped_bytes"),
    (
        "connstats.dump.errors",
        "{error}",
        "Failed hand-overs: dump raised, or a window could not be built.",
        "dump_errors",
    ),
)

_Callback = Callable[[CallbackOptions], Iterable[Observation]]


def _series_callback(totals: Totals, index: int) -> _Callback:
    labels = totals.labels

    def observe(options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(counts[index], dict(zip(labels, key, strict=True)))
            for key, counts in totals.snapshot().items()
        ]

    return observe


def _health_callback(totals: Totals, field: str) -> _Callback:
    def observe(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(getattr(totals.health(), field))]

    return observe


def _series_count(totals: Totals) -> _Callback:
    def observe(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(totals.series)]

    return observe


def register(totals: Totals, meter: Meter) -> list[Any]:
    """Create the instruments above on ``meter``, reading ``totals``.

    Returns the instruments.
    """
    if not isinstance(totals, Totals):
        raise TypeError(
            f"totals: expected a connstats.metrics.Totals, got {type(totals).__name__}"
        )
    if not isinstance(meter, Meter):
        raise TypeError(
            f"meter: expected an opentelemetry.metrics.Meter, got {type(meter).__name__}"
        )
    instruments: list[Any] = []
    for name, unit, text, index in _SERIES:
        instruments.append(
            meter.create_observable_counter(
                name,
                callbacks=[_series_callback(totals, index)],
                unit=unit,
                description=text,
            )
        )
    for name, unit, text, field in _HEALTH_COUNTERS:
        instruments.append(
            meter.create_observable_counter(
                name,
                callbacks=[_health_callback(totals, field)],
                unit=unit,
                description=text,
            )
        )
    instruments.append(
        meter.create_observable_gauge(
            "connstats.connections",
            callbacks=[_health_callback(totals, "connections")],
            unit="{connection}",
            description="Connections in the last window.",
        )
    )
    instruments.append(
        meter.create_observable_gauge(
            "connstats.series",
            callbacks=[_series_count(totals)],
            unit="{series}",
            description="Series with counters of their own (the rest go to the series labelled other).",
        )
    )
    return instruments


__all__ = ["register"]
