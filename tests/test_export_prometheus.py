"""connstats.export.prometheus: Totals as a Prometheus collector.

The exposition is parsed back with prometheus_client's own parser, and a
real Prometheus server (Debian's ``prometheus``, installed by
scripts/ci_packages.sh) scrapes prometheus_client's HTTP server on loopback:
the values its query API returns are what was counted.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

import pytest
from captures import udp4

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from connstats import metrics  # noqa: E402
from connstats.export import prometheus  # noqa: E402

SERIES_METRICS = {
    "connstats_tx_packets": 0,
    "connstats_tx_bytes": 1,
    "connstats_rx_packets": 2,
    "connstats_rx_bytes": 3,
}
HEALTH_COUNTERS = {
    "connstats_windows": "windows",
    "connstats_dropped_windows": "dropped_windows",
    "connstats_dropped_packets": "dropped_packets",
    "connstats_dropped_bytes": "dropped_bytes",
    "connstats_dump_errors": "dump_errors",
}


def bound_totals(impl, **kwargs):
    class BoundTotals(metrics.Totals):
        _core_module = impl.module

    return BoundTotals(**kwargs)


def traffic(stats, rounds=3, flows=120):
    """Virtual tx/rx and physical traffic; returns the packets counted."""
    packets = 0
    for rnd in range(rounds):
        for i in range(flows):
            payload = b"z" * ((i + rnd) % 30)
            stats.update_tx_virtual(
                udp4(
                    f"100.64.{i % 3}.{i % 50 + 1}", 5000 + i, "100.64.9.9", 53, payload
                )
            )
            stats.update_rx_virtual(
                udp4(
                    "100.64.9.9", 53, f"100.64.{i % 3}.{i % 50 + 1}", 5000 + i, payload
                )
            )
            stats.update_tx_physical(
                "192.0.2.1", (f"198.51.100.{i % 4}", 41641), 60 + i
            )
            packets += 3
    return packets


def parsed(registry):
    text = generate_latest(registry).decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return family, samples


def test_exposition_is_the_snapshot_and_the_health(impl):
    totals = bound_totals(impl, max_series=5)
    registry = CollectorRegistry()
    collector = prometheus.register(totals, registry)
    with impl.Statistics(max_conns=40, dump=totals) as stats:
        counted = traffic(stats)
    _, samples = parsed(registry)
    snapshot = totals.snapshot()
    health = totals.health()
    assert ("other",) * 4 in snapshot  # the overflow series is exported too
    for name, index in SERIES_METRICS.items():
        for key, counts in snapshot.items():
            labels = tuple(sorted(zip(totals.labels, key)))
            assert samples[(name + "_total", labels)] == counts[index]
        exported = [v for (n, _), v in samples.items() if n == name + "_total"]
        assert len(exported) == len(snapshot)
    assert (
        sum(
            v
            for (n, _), v in samples.items()
            if n in ("connstats_tx_packets_total", "connstats_rx_packets_total")
        )
        + health.dropped_packets
        == counted
    )
    for name, field in HEALTH_COUNTERS.items():
        assert samples[(name + "_total", ())] == getattr(health, field)
    assert samples[("connstats_connections", ())] == health.connections
    assert samples[("connstats_series", ())] == 5
    assert health.windows > 1
    registry.unregister(collector)
    assert "connstats" not in generate_latest(registry).decode()


def test_register_checks_its_arguments(impl):
    totals = bound_totals(impl)
    with pytest.raises(TypeError, match="totals"):
        prometheus.register(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="registry"):
        prometheus.register(totals, registry=object())  # type: ignore[arg-type]
    registry = CollectorRegistry()
    prometheus.register(totals, registry)
    with pytest.raises(ValueError, match="Duplicated"):
        prometheus.register(bound_totals(impl), registry)


def test_default_registry(impl):
    totals = bound_totals(impl)
    collector = prometheus.register(totals)
    try:
        assert (
            prometheus_client.REGISTRY.get_sample_value("connstats_windows_total") == 0
        )
    finally:
        prometheus_client.REGISTRY.unregister(collector)


def test_custom_labels(impl):
    totals = bound_totals(impl, labels=("traffic", "dst_port"))
    registry = CollectorRegistry()
    prometheus.register(totals, registry)
    with impl.Statistics(max_period=60, dump=totals) as stats:
        traffic(stats, rounds=1, flows=10)
    _, samples = parsed(registry)
    # rx is swapped back to the connection's orientation: dst port 53 too
    for name in ("connstats_tx_packets_total", "connstats_rx_packets_total"):
        assert samples[(name, (("dst_port", "53"), ("traffic", "virtual")))] == 10
    physical = (("dst_port", "41641"), ("traffic", "physical"))
    assert samples[("connstats_tx_packets_total", physical)] == 10
    assert samples[("connstats_tx_bytes_total", physical)] == sum(range(60, 70))
    assert len([n for n, _ in samples if n == "connstats_tx_packets_total"]) == 2


# -- a real Prometheus server ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(base: str, path: str, **params) -> dict:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}" if params else base + path
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]


def test_a_real_prometheus_server_scrapes_the_totals(impl):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip(
            "the prometheus binary is not installed (Debian package prometheus; "
            "scripts/ci_packages.sh installs it)"
        )
    totals = bound_totals(impl, max_series=20)
    registry = CollectorRegistry()
    prometheus.register(totals, registry)
    with impl.Statistics(max_conns=25, dump=totals) as stats:
        counted = traffic(stats)
    # frozen from here on: the instance is shut down
    snapshot = totals.snapshot()
    health = totals.health()
    frozen_at = time.time()
    assert health.windows > 5 and ("other",) * 4 in snapshot

    server, thread = prometheus_client.start_http_server(
        0, addr="127.0.0.1", registry=registry
    )
    workdir = tempfile.mkdtemp(prefix="connstats-prometheus-")
    process = None
    log = None
    try:
        target = f"127.0.0.1:{server.server_port}"
        config = os.path.join(workdir, "prometheus.yml")
        with open(config, "w") as f:
            f.write(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                "scrape_configs:\n  - job_name: connstats\n"
                f"    static_configs:\n      - targets: ['{target}']\n"
            )
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = open(os.path.join(workdir, "prometheus.log"), "w")
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={os.path.join(workdir, 'data')}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        result = None
        while time.monotonic() < deadline:
            assert process.poll() is None, open(log.name).read()[-3000:]
            try:
                targets = api(base, "/api/v1/targets")["activeTargets"]
                up = [t for t in targets if t["health"] == "up"]
                if up:
                    # a scrape that happened after the totals froze (the
                    # endpoint only started then, so this is the first one)
                    data = api(
                        base,
                        "/api/v1/query",
                        query="timestamp(connstats_windows_total)",
                    )
                    if (
                        data["result"]
                        and float(data["result"][0]["value"][1]) > frozen_at
                    ):
                        result = api(
                            base, "/api/v1/query", query="connstats_windows_total"
                        )["result"]
                        break
            except (OSError, ValueError):
                pass  # not listening yet
            time.sleep(0.5)
        else:
            pytest.fail(
                f"Prometheus did not scrape {target} in 60 s: "
                + open(log.name).read()[-3000:]
            )
        assert float(result[0]["value"][1]) == health.windows
        assert result[0]["metric"]["job"] == "connstats"

        for name, index in SERIES_METRICS.items():
            data = api(base, "/api/v1/query", query=name + "_total")
            scraped = {
                tuple(r["metric"][label] for label in totals.labels): float(
                    r["value"][1]
                )
                for r in data["result"]
            }
            assert scraped == {k: float(c[index]) for k, c in snapshot.items()}
        data = api(
            base,
            "/api/v1/query",
            query="sum(connstats_tx_packets_total) + sum(connstats_rx_packets_total)"
            " + sum(connstats_dropped_packets_total)",
        )
        assert float(data["result"][0]["value"][1]) == counted
        for name, field in HEALTH_COUNTERS.items():
            data = api(base, "/api/v1/query", query=name + "_total")
            assert float(data["result"][0]["value"][1]) == getattr(health, field)
        data = api(base, "/api/v1/query", query="connstats_connections")
        assert float(data["result"][0]["value"][1]) == health.connections
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if log is not None:
            log.close()
        server.shutdown()
        server.server_close()
        thread.join(5)
        shutil.rmtree(workdir, ignore_errors=True)
