"""connstats.export.otel: Totals as OpenTelemetry observable instruments.

Read through the SDK's InMemoryMetricReader: exact totals across many
windows, and while several threads count and another collects.  (No OTLP
receiver installs from Debian or PyPI here, so OTLP export is not tested:
see docs/metrics.md.)
"""

from __future__ import annotations

import ipaddress
import threading

import pytest

pytest.importorskip("opentelemetry.sdk.metrics")
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
)

from connstats import metrics
from connstats.export import otel

SERIES = {
    "connstats.tx.packets": 0,
    "connstats.tx.bytes": 1,
    "connstats.rx.packets": 2,
    "connstats.rx.bytes": 3,
}
HEALTH = {
    "connstats.windows": "windows",
    "connstats.dropped.windows": "dropped_windows",
    "connstats.dropped.packets": "dropped_packets",
    "connstats.dropped.bytes": "dropped_bytes",
    "connstats.dump.errors": "dump_errors",
    "connstats.connections": "connections",
}


def bound_totals(impl, **kwargs):
    class BoundTotals(metrics.Totals):
        _core_module = impl.module

    return BoundTotals(**kwargs)


def setup(totals):
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instruments = otel.register(totals, provider.get_meter("connstats-test"))
    assert len(instruments) == 11
    return reader, provider


def collect(reader):
    """{name: {attributes tuple: value}} and the metrics' units/temporality."""
    out: dict[str, dict[tuple, int]] = {}
    info = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                points = out.setdefault(metric.name, {})
                for p in metric.data.data_points:
                    points[tuple(sorted(p.attributes.items()))] = p.value
                info[metric.name] = (
                    metric.unit,
                    getattr(metric.data, "is_monotonic", None),
                    getattr(metric.data, "aggregation_temporality", None),
                )
    return out, info


def expected_points(totals):
    snapshot = totals.snapshot()
    return {
        name: {
            tuple(sorted(zip(totals.labels, key))): counts[index]
            for key, counts in snapshot.items()
        }
        for name, index in SERIES.items()
    }


def test_many_windows_exact(impl):
    totals = bound_totals(impl, max_series=30)
    reader, provider = setup(totals)
    sent = 0
    sent_bytes = 0
    with impl.Statistics(max_conns=17, dump=totals) as stats:
        for rnd in range(5):
            for i in range(400):
                n = 40 + (i * 3 + rnd) % 200
                stats.update_rx_physical(
                    f"10.5.{i % 7}.1", (f"198.51.100.{i % 13}", 41641 + i % 3), n
                )
                sent += 1
                sent_bytes += n
            # a collection between batches of windows: cumulative values go on
            points, _ = collect(reader)
    points, info = collect(reader)
    health = totals.health()
    assert health.windows > 50
    for name in SERIES:
        assert points[name] == expected_points(totals)[name]
        assert info[name][1] is True
        assert info[name][2] == AggregationTemporality.CUMULATIVE
    assert sum(points["connstats.rx.packets"].values()) + health.dropped_packets == sent
    if health.dropped_windows == 0:
        assert sum(points["connstats.rx.bytes"].values()) == sent_bytes
        # 7 sources x 13 destinations: 30 of their own, the rest in "other"
        assert len(points["connstats.rx.packets"]) == 31
        assert sum(points["connstats.tx.packets"].values()) == 0
    for name, field in HEALTH.items():
        assert points[name] == {(): getattr(health, field)}
    assert points["connstats.series"] == {(): 30}
    assert info["connstats.tx.bytes"][0] == "By"
    assert info["connstats.connections"][1] is None  # a gauge
    provider.shutdown()


def test_threads_count_while_the_sdk_collects(impl):
    """Three threads count into one instance (a window every 50 connections)
    while a fourth collects over and over: every collection's totals only
    grow, and the last one equals what was counted."""
    totals = bound_totals(impl)
    reader, provider = setup(totals)
    threads, per_thread = 3, 4000
    stop = threading.Event()
    seen: list[int] = []

    def collector():
        while not stop.is_set():
            points, _ = collect(reader)
            seen.append(sum(points.get("connstats.tx.packets", {}).values()))

    with impl.Statistics(max_conns=50, dump=totals) as stats:

        def feed(t):
            for i in range(per_thread):
                stats.update_tx_physical(
                    f"10.6.{t}.1",
                    (str(ipaddress.ip_address(0x0A070000 + i % 61)), 9),
                    5,
                )

        reader_thread = threading.Thread(target=collector)
        reader_thread.start()
        feeders = [threading.Thread(target=feed, args=(t,)) for t in range(threads)]
        for f in feeders:
            f.start()
        for f in feeders:
            f.join()
    stop.set()
    reader_thread.join()
    points, _ = collect(reader)
    health = totals.health()
    assert seen == sorted(seen)
    total = sum(points["connstats.tx.packets"].values())
    assert total + health.dropped_packets == threads * per_thread
    if health.dropped_windows == 0:
        for t in range(threads):
            for j in range(61):
                key = (
                    ("dst", str(ipaddress.ip_address(0x0A070000 + j))),
                    ("proto", "ip"),
                    ("src", f"10.6.{t}.1"),
                    ("traffic", "physical"),
                )
                assert points["connstats.tx.packets"][key] == len(
                    range(j, per_thread, 61)
                )
                assert points["connstats.tx.bytes"][key] == 5 * len(
                    range(j, per_thread, 61)
                )
    provider.shutdown()


def test_register_checks_its_arguments(impl):
    totals = bound_totals(impl)
    provider = MeterProvider()
    with pytest.raises(TypeError, match="totals"):
        otel.register(object(), provider.get_meter("x"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="meter"):
        otel.register(totals, object())  # type: ignore[arg-type]
    provider.shutdown()
